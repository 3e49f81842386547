-- Scheduling (SQLite). Keep in step with migrations/postgres/0003_scheduling.sql.
--
-- Pause flags on tenants and connections (jobs already have one), pending triggers on
-- jobs (manual or webhook runs ahead of the schedule), and the lease bookkeeping of a
-- claim: when it was taken and whose expired lease it replaced.

ALTER TABLE tenants ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;

ALTER TABLE jobs ADD COLUMN trigger_requested_at TEXT;
ALTER TABLE jobs ADD COLUMN trigger_kind TEXT;
ALTER TABLE jobs ADD COLUMN claimed_at TEXT;
ALTER TABLE jobs ADD COLUMN reclaimed_from TEXT;

-- Claiming walks due jobs in due order: only enabled, unpaused, untriggered jobs are in
-- this index, so claiming a thousand of 150,000 jobs reads about a thousand entries
-- (plus the few running ones) instead of sorting every due job.
DROP INDEX jobs_due;
CREATE INDEX jobs_claim_due ON jobs (next_run_at, id)
    WHERE enabled AND NOT paused AND trigger_requested_at IS NULL;
-- Pending triggers are few; they are claimed first, oldest first.
CREATE INDEX jobs_claim_triggered ON jobs (trigger_requested_at, id)
    WHERE trigger_requested_at IS NOT NULL;
-- Held leases: release by owner, and the earliest expiry for the scheduler's sleep.
CREATE INDEX jobs_leased ON jobs (lease_owner, lease_expires_at)
    WHERE lease_owner IS NOT NULL;
