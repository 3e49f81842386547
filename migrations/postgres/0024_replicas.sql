-- The fleet in one view (postgres). Keep in step with migrations/sqlite/0024_replicas.sql.
--
-- Every daemon sharing the store keeps its row here: written at start-up, its heartbeat
-- and busy count on every housekeeping tick, removed when it stops cleanly. A row whose
-- heartbeat is older than a few ticks belongs to a replica that died (its leases expire
-- and are reclaimed as before); `ctl status` shows it as stale, and rows stale for a
-- day are removed by any daemon.
CREATE TABLE replicas (
    id           TEXT        NOT NULL PRIMARY KEY,
    host         TEXT        NOT NULL,
    pid          BIGINT      NOT NULL,
    version      TEXT        NOT NULL,
    workers      BIGINT      NOT NULL,
    busy         BIGINT      NOT NULL DEFAULT 0,
    state        TEXT        NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
