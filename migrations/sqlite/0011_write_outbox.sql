-- Write-back outbox (sqlite). Keep in step with migrations/postgres/0011_write_outbox.sql.
--
-- A write (a create, update, delete or comment of one object at a provider, in the
-- tenant's target schema) is a row here before it is acknowledged. Workers (in any
-- replica) claim due writes with a lease; at most one write per object (tenant,
-- provider, owner, entity, object_key) is pending-and-claimable at a time, the earliest,
-- so writes to one object apply in submission order. `object_key` is the external id
-- the write names, or the write's own id for a create that names none. Every attempt is
-- kept in write_attempts. `owner_user` is '' for the company, as in connections.

CREATE TABLE writes (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider        TEXT    NOT NULL,
    owner_user      TEXT    NOT NULL DEFAULT '',
    entity          TEXT    NOT NULL,
    op              TEXT    NOT NULL,
    external_id     TEXT,
    object_key      TEXT    NOT NULL,
    idempotency_key TEXT,
    base_version    TEXT,
    force           BOOLEAN NOT NULL DEFAULT FALSE,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    lease_owner     TEXT,
    lease_until     TEXT,
    result_id       TEXT,
    result_version  TEXT,
    error           TEXT,
    error_class     TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    finished_at     TEXT
);
-- One write per idempotency key and tenant.
CREATE UNIQUE INDEX writes_idempotency ON writes (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Claiming: the due writes, and in-flight ones whose lease may have expired.
CREATE INDEX writes_due ON writes (next_attempt_at) WHERE state IN ('pending', 'in_flight');
-- Listing per tenant, newest first.
CREATE INDEX writes_tenant ON writes (tenant_id, created_at, id);
-- Ordering per object: the earlier open writes to the same object.
CREATE INDEX writes_object ON writes (tenant_id, provider, owner_user, entity, object_key, created_at, id);

CREATE TABLE write_attempts (
    write_id         TEXT    NOT NULL REFERENCES writes (id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    status           INTEGER,
    provider_message TEXT,
    latency_ms       INTEGER NOT NULL,
    error            TEXT,
    at               TEXT    NOT NULL,
    PRIMARY KEY (write_id, attempt)
);
