-- Records a mapping could not turn into a valid target record: kept with the reason,
-- never silently dropped.
CREATE TABLE dead_letters (
    id         BIGSERIAL   PRIMARY KEY,
    tenant_id  TEXT        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    run_id     UUID,
    provider   TEXT        NOT NULL,
    stream     TEXT        NOT NULL,
    entity     TEXT        NOT NULL,
    source_id  TEXT,
    reason     TEXT        NOT NULL,
    record     JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX dead_letters_tenant_run ON dead_letters (tenant_id, run_id);
