-- Foundation schema (SQLite). Keep in step with migrations/postgres/0001_foundation.sql.
-- Timestamps are RFC 3339 TEXT written by the application (UTC, microseconds);
-- JSON is TEXT; run ids are 16-byte BLOBs (UUID v7); booleans are 0/1 INTEGERs.

CREATE TABLE tenants (
    id              TEXT    NOT NULL PRIMARY KEY,
    name            TEXT    NOT NULL,
    subdomain       TEXT    NOT NULL UNIQUE,
    timezone        TEXT    NOT NULL,
    preset          TEXT    NOT NULL,
    preset_revision TEXT    NOT NULL,
    preset_snapshot TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

CREATE TABLE overrides (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    layer      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);

CREATE TABLE connections (
    id                     INTEGER PRIMARY KEY,
    tenant_id              TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider               TEXT    NOT NULL,
    owner_user             TEXT    NOT NULL DEFAULT '',
    owner_role             TEXT,
    status                 TEXT    NOT NULL,
    status_reason          TEXT,
    credentials            BLOB,
    credentials_key_id     TEXT,
    credentials_version    INTEGER NOT NULL DEFAULT 0,
    credentials_updated_at TEXT,
    auth_state             BLOB,
    auth_state_updated_at  TEXT,
    created_at             TEXT    NOT NULL,
    updated_at             TEXT    NOT NULL,
    UNIQUE (tenant_id, provider, owner_user),
    -- Target of the tenant-checked foreign keys below.
    UNIQUE (id, tenant_id)
);

CREATE TABLE jobs (
    id                   INTEGER PRIMARY KEY,
    tenant_id            TEXT    NOT NULL,
    connection_id        INTEGER NOT NULL,
    provider             TEXT    NOT NULL,
    stream               TEXT    NOT NULL,
    schedule             TEXT    NOT NULL,
    next_run_at          TEXT,
    cursor               TEXT,
    lease_owner          TEXT,
    lease_expires_at     TEXT,
    attempts             INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    paused               INTEGER NOT NULL DEFAULT 0,
    enabled              INTEGER NOT NULL DEFAULT 1,
    last_run_id          BLOB,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL,
    UNIQUE (connection_id, stream),
    UNIQUE (id, tenant_id),
    -- A job always belongs to the tenant of its connection.
    FOREIGN KEY (connection_id, tenant_id) REFERENCES connections (id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX jobs_due ON jobs (enabled, paused, next_run_at);
CREATE INDEX jobs_tenant ON jobs (tenant_id);

CREATE TABLE records (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    entity       TEXT NOT NULL,
    provider     TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    data         TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    first_seen   TEXT NOT NULL,
    last_synced  TEXT NOT NULL,
    deleted_at   TEXT,
    PRIMARY KEY (tenant_id, entity, provider, external_id)
);

CREATE TABLE runs (
    id                 BLOB    NOT NULL PRIMARY KEY,
    tenant_id          TEXT    NOT NULL,
    job_id             INTEGER NOT NULL,
    provider           TEXT    NOT NULL,
    stream             TEXT    NOT NULL,
    "trigger"          TEXT    NOT NULL,
    started_at         TEXT    NOT NULL,
    finished_at        TEXT,
    outcome            TEXT    NOT NULL,
    cursor_before      TEXT,
    cursor_after       TEXT,
    fetched            INTEGER NOT NULL DEFAULT 0,
    inserted           INTEGER NOT NULL DEFAULT 0,
    updated            INTEGER NOT NULL DEFAULT 0,
    unchanged          INTEGER NOT NULL DEFAULT 0,
    filtered           INTEGER NOT NULL DEFAULT 0,
    dead_lettered      INTEGER NOT NULL DEFAULT 0,
    pages              INTEGER NOT NULL DEFAULT 0,
    http_calls         INTEGER NOT NULL DEFAULT 0,
    retries            INTEGER NOT NULL DEFAULT 0,
    rate_limit_waits   INTEGER NOT NULL DEFAULT 0,
    rate_limit_wait_ms INTEGER NOT NULL DEFAULT 0,
    error              TEXT,
    -- A run always belongs to the tenant of its job.
    FOREIGN KEY (job_id, tenant_id) REFERENCES jobs (id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX runs_tenant_started ON runs (tenant_id, started_at);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_job_started ON runs (job_id, started_at);

-- Audit entries outlive what they describe: no foreign key to tenants.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    tenant_id TEXT,
    subject   TEXT,
    details   TEXT NOT NULL
);

CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);
CREATE INDEX audit_log_at ON audit_log (at);
