-- The audit log says as which scope each action was taken and how it ended: control
-- actions (through the socket or the HTTP API) and denied requests are audited too, not
-- only changes that succeeded. Keep in step with migrations/postgres/0015_audit_outcomes.sql.
--
-- scope:   `operator`, `tenant:<id>`, `local` (a command on the store itself), or NULL
--          where none was established (an unknown peer).
-- outcome: `ok`, `denied` or `error`; message: why it was denied or failed.
ALTER TABLE audit_log ADD COLUMN scope TEXT;
ALTER TABLE audit_log ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE audit_log ADD COLUMN message TEXT;
