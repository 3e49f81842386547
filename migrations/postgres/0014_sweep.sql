-- Mark and sweep (streams with `sweep = true`).
--
-- `seen_at`: when a run of a sweeping stream last listed the record (written or
-- unchanged). A complete full pass that started at T deletes the records of its entity
-- with `seen_at` before T (or never set). Records of other streams keep it NULL.
ALTER TABLE records ADD COLUMN seen_at TIMESTAMPTZ;

-- `full_pass_at`: when the job's next full pass is due (its stream's `full_schedule`);
-- NULL when the stream has none. A run that starts at or after it reads in full.
ALTER TABLE jobs ADD COLUMN full_pass_at TIMESTAMPTZ;

-- `full_schedule`: the stream's `full_schedule` as its last run read it, from which the
-- scheduler plans `full_pass_at` when a full pass completed (or none is planned yet).
ALTER TABLE jobs ADD COLUMN full_schedule TEXT;
