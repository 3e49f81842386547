-- What each replica sent under its budget shares (postgres). Keep in step with
-- migrations/sqlite/0027_budget_shares_sent.sql.
--
-- A renewal reports, per quota, the requests the replica sent in each of the last
-- buckets of the quota's window (`sent`, newest first; bucket `sent_bucket` is the
-- newest, counted as wall-clock milliseconds since the epoch divided by a thirtieth of
-- the window) and when it renewed (`renewed_at`). A replica whose share of a quota
-- changes may then start its new limiter with the part of a burst that what the fleet
-- actually sent within the window leaves (a GitHub connection used for a few requests
-- of its 5,000 an hour), instead of drained. A share given back keeps `requests` (the
-- share it had, no longer held: its row has expired) and its counts, for one window.
ALTER TABLE budget_shares ADD COLUMN sent_bucket BIGINT NOT NULL DEFAULT 0;
ALTER TABLE budget_shares ADD COLUMN sent BIGINT[] NOT NULL DEFAULT '{}';
ALTER TABLE budget_shares ADD COLUMN renewed_at TIMESTAMPTZ NOT NULL DEFAULT now();
