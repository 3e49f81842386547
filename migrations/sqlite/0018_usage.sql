-- Usage analytics (sqlite). Keep in step with migrations/postgres/0018_usage.sql.
--
-- Runs also record the bytes of the response bodies they read and how many of their
-- requests failed (4xx, 5xx or no response). usage_daily is maintained in the same
-- transaction that finishes a run: one row per tenant, provider, stream, UTC day of the
-- run's end and error class ('' for a run without one), so `tributary usage` reads a
-- tenant's days by the primary key and never scans the run log.
ALTER TABLE runs ADD COLUMN bytes_received INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN http_errors INTEGER NOT NULL DEFAULT 0;

CREATE TABLE usage_daily (
    tenant_id          TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    stream             TEXT    NOT NULL,
    day                TEXT    NOT NULL,
    error_class        TEXT    NOT NULL,
    runs               INTEGER NOT NULL DEFAULT 0,
    failed_runs        INTEGER NOT NULL DEFAULT 0,
    http_calls         INTEGER NOT NULL DEFAULT 0,
    http_errors        INTEGER NOT NULL DEFAULT 0,
    retries            INTEGER NOT NULL DEFAULT 0,
    fetched            INTEGER NOT NULL DEFAULT 0,
    written            INTEGER NOT NULL DEFAULT 0,
    dead_lettered      INTEGER NOT NULL DEFAULT 0,
    bytes_received     INTEGER NOT NULL DEFAULT 0,
    rate_limit_waits   INTEGER NOT NULL DEFAULT 0,
    rate_limit_wait_ms INTEGER NOT NULL DEFAULT 0,
    run_ms             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, provider, stream, day, error_class)
);
