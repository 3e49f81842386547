-- Users, roles, responsibilities and company intelligence (SQLite). Keep in step with
-- migrations/postgres/0005_intelligence.sql.
--
-- A user belongs to companies (tenants) through memberships, each with a role; the
-- role decides which streams that user's own connections ("user integrations",
-- `connections.owner_user`) may sync at that company (`role_grants`, from the tenant
-- file). A user's responsibility on a company integration (tenant + provider) decides
-- what the runs of the user's connection contribute. Contributions are aggregated per
-- company integration into `company_intelligence.state`, updated with each
-- contribution in the same transaction.

CREATE TABLE users (
    id         TEXT NOT NULL PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE memberships (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE INDEX memberships_user ON memberships (user_id);

-- The streams a role may sync at a company: patterns `provider.stream`, `provider.*`
-- or `*` (JSON array), written by `tenant apply` from the tenant file's `[roles]`.
CREATE TABLE role_grants (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    streams    TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, role)
);

-- A user connection's own schedule (NULL: the tenant's effective schedule).
ALTER TABLE connections ADD COLUMN schedule TEXT;

CREATE TABLE responsibilities (
    tenant_id      TEXT    NOT NULL,
    provider       TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    responsibility TEXT    NOT NULL,
    auto_contribute INTEGER NOT NULL,
    -- JSON array of contribution kinds; NULL: the responsibility's default scope.
    scope          TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, provider, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES memberships (tenant_id, user_id) ON DELETE CASCADE
);

CREATE TABLE contributions (
    id             INTEGER PRIMARY KEY,
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider       TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    -- Contributions outlive the connection and run they came from.
    connection_id  INTEGER,
    run_id         BLOB,
    kind           TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    confidence     REAL    NOT NULL,
    data           TEXT    NOT NULL,
    -- When the data it describes was observed (the run's finish).
    data_freshness TEXT    NOT NULL,
    quality        REAL    NOT NULL,
    impact         REAL    NOT NULL,
    reliability    REAL    NOT NULL,
    consistency    REAL    NOT NULL,
    superseded_by  INTEGER,
    reviewed_by    TEXT,
    reviewed_at    TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);

CREATE INDEX contributions_integration ON contributions (tenant_id, provider, created_at);
-- At most one current (active or approved) contribution per user, connection and kind.
CREATE INDEX contributions_current ON contributions (tenant_id, provider, user_id, connection_id, kind)
    WHERE status IN ('active', 'approved');

CREATE TABLE company_intelligence (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider   TEXT    NOT NULL,
    -- The aggregate (JSON), maintained incrementally from contributions.
    state      TEXT    NOT NULL,
    -- Grows with every contribution change folded into `state`.
    version    INTEGER NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);

-- The relations (correlations, synergy, conflicts) between two contributors of one
-- integration, `user_a` < `user_b`; only pairs with something to say. Kept apart from
-- the state so that a contribution rewrites only its user's pairs.
CREATE TABLE intelligence_pairs (
    tenant_id TEXT NOT NULL,
    provider  TEXT NOT NULL,
    user_a    TEXT NOT NULL,
    user_b    TEXT NOT NULL,
    relation  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, provider, user_a, user_b),
    FOREIGN KEY (tenant_id, provider) REFERENCES company_intelligence (tenant_id, provider) ON DELETE CASCADE
);

CREATE INDEX intelligence_pairs_b ON intelligence_pairs (tenant_id, provider, user_b);

-- What contributions are derived from, beyond the counts runs already keep: response
-- time percentiles of the run's HTTP requests, and the class, status and endpoint of
-- the error that failed it.
ALTER TABLE runs ADD COLUMN http_p50_ms REAL;
ALTER TABLE runs ADD COLUMN http_p95_ms REAL;
ALTER TABLE runs ADD COLUMN http_p99_ms REAL;
ALTER TABLE runs ADD COLUMN error_class TEXT;
ALTER TABLE runs ADD COLUMN error_status INTEGER;
ALTER TABLE runs ADD COLUMN error_endpoint TEXT;
