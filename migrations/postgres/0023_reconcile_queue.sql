-- Tenants whose jobs must follow a change (postgres). Keep in step with
-- migrations/sqlite/0023_reconcile_queue.sql.
--
-- Every store write that changes what jobs a tenant should have (the tenant row, its
-- preset, overrides, role grants, memberships, user connections, credentials) queues
-- the tenant here in the same transaction. Whoever made the change reconciles right after
-- (the CLI command, the daemon's control request); a process that died in between leaves
-- the row, and every daemon takes the queue on its housekeeping tick. `generation` grows
-- with every queueing, so a reconcile removes the row only if nothing was queued again
-- while it ran.
CREATE TABLE reconcile_queue (
    tenant_id  TEXT        NOT NULL PRIMARY KEY,
    generation BIGINT      NOT NULL DEFAULT 1,
    reason     TEXT        NOT NULL,
    queued_at  TIMESTAMPTZ NOT NULL
);
