-- Rate-limit budgets shared by the fleet (postgres). Keep in step with
-- migrations/sqlite/0025_budget_shares.sql.
--
-- One row per (quota, replica) that used the quota in the last few seconds: the part of
-- the quota's `requests` per window the replica may send (`requests`), what it asked for
-- (`wants`), the quota's whole limit, and the lease: a replica renews all of its rows in
-- one statement every second; a replica that stops renewing (killed) loses its share
-- when `expires_at` passes, and the others grow into it. Shares are computed under an
-- advisory lock, so the unexpired shares of a quota never add up to more than its limit.
-- On SQLite (one daemon) a quota stays whole and this table stays empty.
CREATE TABLE budget_shares (
    quota        TEXT        NOT NULL,
    replica      TEXT        NOT NULL,
    requests     BIGINT      NOT NULL,
    wants        BIGINT      NOT NULL,
    quota_limit  BIGINT      NOT NULL,
    per_secs     BIGINT      NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (quota, replica)
);
CREATE INDEX budget_shares_replica ON budget_shares (replica);
