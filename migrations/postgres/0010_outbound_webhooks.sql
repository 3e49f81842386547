-- Outbound event webhooks (postgres). Keep in step with migrations/sqlite/0010_outbound_webhooks.sql.
--
-- An endpoint receives the events it subscribes to: a tenant's (tenant_id set) or every
-- tenant's (tenant_id NULL, operator-wide). Its signing secret is sealed with the master
-- key like credentials. Events are written to the outbox in the same transaction as the
-- state change they report, one row per subscribed endpoint; the row's id is the stable
-- `webhook-id` header of every attempt. Delivery workers (in any replica) claim due rows
-- with a lease; every attempt is kept in webhook_deliveries.

CREATE TABLE webhook_endpoints (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    REFERENCES tenants (id) ON DELETE CASCADE,
    url             TEXT    NOT NULL,
    events          TEXT    NOT NULL,
    secret          BYTEA    NOT NULL,
    secret_key_id   TEXT    NOT NULL,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    created_at      TIMESTAMPTZ    NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_outbox (
    id              TEXT    NOT NULL PRIMARY KEY,
    endpoint_id     TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id       TEXT,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ    NOT NULL,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ    NOT NULL,
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_endpoint ON webhook_outbox (endpoint_id, created_at);

CREATE TABLE webhook_deliveries (
    message_id      TEXT    NOT NULL REFERENCES webhook_outbox (id) ON DELETE CASCADE,
    attempt         BIGINT NOT NULL,
    endpoint_id     TEXT    NOT NULL,
    status          BIGINT,
    latency_ms      BIGINT NOT NULL,
    error           TEXT,
    at              TIMESTAMPTZ    NOT NULL,
    PRIMARY KEY (message_id, attempt)
);
