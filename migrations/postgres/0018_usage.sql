-- Usage analytics (postgres). Keep in step with migrations/sqlite/0018_usage.sql.
--
-- Runs also record the bytes of the response bodies they read and how many of their
-- requests failed (4xx, 5xx or no response). usage_daily is maintained in the same
-- transaction that finishes a run: one row per tenant, provider, stream, UTC day of the
-- run's end and error class ('' for a run without one), so `tributary usage` reads a
-- tenant's days by the primary key and never scans the run log.
ALTER TABLE runs ADD COLUMN bytes_received BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN http_errors BIGINT  NOT NULL DEFAULT 0;

CREATE TABLE usage_daily (
    tenant_id          TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    stream             TEXT    NOT NULL,
    day                TEXT    NOT NULL,
    error_class        TEXT    NOT NULL,
    runs               BIGINT  NOT NULL DEFAULT 0,
    failed_runs        BIGINT  NOT NULL DEFAULT 0,
    http_calls         BIGINT  NOT NULL DEFAULT 0,
    http_errors        BIGINT  NOT NULL DEFAULT 0,
    retries            BIGINT  NOT NULL DEFAULT 0,
    fetched            BIGINT  NOT NULL DEFAULT 0,
    written            BIGINT  NOT NULL DEFAULT 0,
    dead_lettered      BIGINT  NOT NULL DEFAULT 0,
    bytes_received     BIGINT  NOT NULL DEFAULT 0,
    rate_limit_waits   BIGINT  NOT NULL DEFAULT 0,
    rate_limit_wait_ms BIGINT  NOT NULL DEFAULT 0,
    run_ms             BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, provider, stream, day, error_class)
);
