-- A full pass that sweeps though its stream does not (`sweep` unset): another stream's
-- state expired (`state.expired_full_pass` in the manifest: Asana's events token), and
-- what that feed missed in the gap is found only by listing in full and sweeping what
-- the listing no longer holds. Set with `full_pass_at`; cleared with it when the full
-- pass completes.
ALTER TABLE jobs ADD COLUMN full_pass_sweeps BOOLEAN NOT NULL DEFAULT false;
