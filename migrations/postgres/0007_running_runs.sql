-- Runs still marked `running`: the daemon looks for those whose lease expired (their
-- process died) on every housekeeping tick, without reading the whole runs table.
CREATE INDEX runs_running ON runs (job_id) WHERE outcome = 'running';
