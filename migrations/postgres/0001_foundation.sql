-- Foundation schema (PostgreSQL). Keep in step with migrations/sqlite/0001_foundation.sql.
-- Timestamps are written by the application (never `now()` defaults), so both
-- backends hold the same values.

CREATE TABLE tenants (
    id              TEXT        NOT NULL PRIMARY KEY,
    name            TEXT        NOT NULL,
    subdomain       TEXT        NOT NULL UNIQUE,
    timezone        TEXT        NOT NULL,
    preset          TEXT        NOT NULL,
    preset_revision TEXT        NOT NULL,
    preset_snapshot JSONB       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE overrides (
    tenant_id  TEXT        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider   TEXT        NOT NULL,
    layer      JSONB       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);

CREATE TABLE connections (
    id                     BIGSERIAL   PRIMARY KEY,
    tenant_id              TEXT        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider               TEXT        NOT NULL,
    owner_user             TEXT        NOT NULL DEFAULT '',
    owner_role             TEXT,
    status                 TEXT        NOT NULL,
    status_reason          TEXT,
    credentials            BYTEA,
    credentials_key_id     TEXT,
    credentials_version    BIGINT      NOT NULL DEFAULT 0,
    credentials_updated_at TIMESTAMPTZ,
    auth_state             BYTEA,
    auth_state_updated_at  TIMESTAMPTZ,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, provider, owner_user),
    -- Target of the tenant-checked foreign keys below.
    UNIQUE (id, tenant_id)
);

CREATE TABLE jobs (
    id                   BIGSERIAL   PRIMARY KEY,
    tenant_id            TEXT        NOT NULL,
    connection_id        BIGINT      NOT NULL,
    provider             TEXT        NOT NULL,
    stream               TEXT        NOT NULL,
    schedule             TEXT        NOT NULL,
    next_run_at          TIMESTAMPTZ,
    cursor               TEXT,
    lease_owner          TEXT,
    lease_expires_at     TIMESTAMPTZ,
    attempts             BIGINT      NOT NULL DEFAULT 0,
    consecutive_failures BIGINT      NOT NULL DEFAULT 0,
    paused               BOOLEAN     NOT NULL DEFAULT FALSE,
    enabled              BOOLEAN     NOT NULL DEFAULT TRUE,
    last_run_id          UUID,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    UNIQUE (connection_id, stream),
    UNIQUE (id, tenant_id),
    -- A job always belongs to the tenant of its connection.
    FOREIGN KEY (connection_id, tenant_id) REFERENCES connections (id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX jobs_due ON jobs (enabled, paused, next_run_at);
CREATE INDEX jobs_tenant ON jobs (tenant_id);

CREATE TABLE records (
    tenant_id    TEXT        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    entity       TEXT        NOT NULL,
    provider     TEXT        NOT NULL,
    external_id  TEXT        NOT NULL,
    data         JSONB       NOT NULL,
    content_hash TEXT        NOT NULL,
    first_seen   TIMESTAMPTZ NOT NULL,
    last_synced  TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, entity, provider, external_id)
);

CREATE TABLE runs (
    id                 UUID        NOT NULL PRIMARY KEY,
    tenant_id          TEXT        NOT NULL,
    job_id             BIGINT      NOT NULL,
    provider           TEXT        NOT NULL,
    stream             TEXT        NOT NULL,
    "trigger"          TEXT        NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    outcome            TEXT        NOT NULL,
    cursor_before      TEXT,
    cursor_after       TEXT,
    fetched            BIGINT      NOT NULL DEFAULT 0,
    inserted           BIGINT      NOT NULL DEFAULT 0,
    updated            BIGINT      NOT NULL DEFAULT 0,
    unchanged          BIGINT      NOT NULL DEFAULT 0,
    filtered           BIGINT      NOT NULL DEFAULT 0,
    dead_lettered      BIGINT      NOT NULL DEFAULT 0,
    pages              BIGINT      NOT NULL DEFAULT 0,
    http_calls         BIGINT      NOT NULL DEFAULT 0,
    retries            BIGINT      NOT NULL DEFAULT 0,
    rate_limit_waits   BIGINT      NOT NULL DEFAULT 0,
    rate_limit_wait_ms BIGINT      NOT NULL DEFAULT 0,
    error              TEXT,
    -- A run always belongs to the tenant of its job.
    FOREIGN KEY (job_id, tenant_id) REFERENCES jobs (id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX runs_tenant_started ON runs (tenant_id, started_at);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_job_started ON runs (job_id, started_at);

-- Audit entries outlive what they describe: no foreign key to tenants.
CREATE TABLE audit_log (
    id        BIGSERIAL   PRIMARY KEY,
    at        TIMESTAMPTZ NOT NULL,
    actor     TEXT        NOT NULL,
    action    TEXT        NOT NULL,
    tenant_id TEXT,
    subject   TEXT,
    details   JSONB       NOT NULL
);

CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);
CREATE INDEX audit_log_at ON audit_log (at);
