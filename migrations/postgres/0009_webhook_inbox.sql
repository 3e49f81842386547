-- Inbound webhooks. The inbox keeps each accepted delivery until a daemon has triggered
-- the streams its events map to; `webhook_delivery_ids` remembers delivery ids for the
-- timestamp window, so a replayed delivery is accepted once only.
CREATE TABLE webhook_inbox (
    id           BIGSERIAL   PRIMARY KEY,
    tenant_id    TEXT        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider     TEXT        NOT NULL,
    delivery_id  TEXT,
    event_types  TEXT        NOT NULL,
    body         BYTEA       NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    processed_at TIMESTAMPTZ
);

CREATE INDEX webhook_inbox_pending ON webhook_inbox (id) WHERE processed_at IS NULL;

CREATE TABLE webhook_delivery_ids (
    tenant_id   TEXT        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider    TEXT        NOT NULL,
    delivery_id TEXT        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, provider, delivery_id)
);

CREATE INDEX webhook_delivery_ids_received ON webhook_delivery_ids (received_at);
