-- Resumable runs (SQLite). Keep in step with migrations/postgres/0006_resumable_runs.sql.
--
-- A job's resumable position: where an interrupted pass continues (the page position,
-- the parent being read, the high-water mark so far, the pass id and when it was saved),
-- as JSON written in the same transaction as each page's records; cleared when the pass
-- completes.
ALTER TABLE jobs ADD COLUMN position TEXT;

-- The replica (process) that ran a run, and what the run has to say about how it began
-- (resumed a pass, or restarted one whose position expired).
ALTER TABLE runs ADD COLUMN replica TEXT;
ALTER TABLE runs ADD COLUMN note TEXT;
