-- Budget shares by expiry (postgres). Keep in step with
-- migrations/sqlite/0026_budget_shares_expiry.sql.
--
-- Given-back shares stay as expired rows for one window of their quota (a day for a
-- daily quota), so the table holds many more expired rows than live ones. A renewal
-- gives back a replica's live rows (`replica`, `expires_at > now()`), and a capped claim
-- reads the live shares of other replicas (`expires_at > now()`): both read these
-- indexes instead of every row.
CREATE INDEX budget_shares_replica_expiry ON budget_shares (replica, expires_at);
CREATE INDEX budget_shares_expiry ON budget_shares (expires_at);
DROP INDEX budget_shares_replica;
