//! The PostgreSQL backend: shared by several daemons that split jobs through leases.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::connect::{invalid_url, next_instance};
use super::error::{StoreError, db};
use super::pg_pool::{PgDb, PgOptions, Pooler};

/// Serializes migrations behind a transaction pooler (a transaction-level advisory lock;
/// the migrator's own lock is session-level, which a transaction pooler cannot keep).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(1953653346, 2)";

/// A store on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgDb,
    /// `[store] listen_url`: where the wake-up listener connects instead of the pool.
    listen_url: Option<String>,
    /// See [`super::Store::instance_id`].
    pub(super) instance: u64,
}

impl PgStore {
    /// Connects to the database named by a `postgres://` URL and migrates it.
    pub(super) async fn connect(url: &str, settings: &PgOptions) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| invalid_url(url, &e.to_string()))?
            .application_name("tributary");
        if settings.pooler == Pooler::PgBouncer {
            // A named statement lives on one server connection, which the pooler shares
            // out between transactions: parse every statement afresh, as the unnamed one
            // (see `pg_pool.rs`). PgBouncer before 1.21 refuses a startup parameter it
            // does not know, such as `extra_float_digits` (the server's default serves).
            options = options.statement_cache_capacity(0).extra_float_digits(None);
        }
        if let Some(listen) = &settings.listen_url {
            PgConnectOptions::from_str(listen).map_err(|e| invalid_url(listen, &e.to_string()))?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            // Tolerant of a loaded server; a daemon notices an outage through its own
            // probe (`Store::probe`) within seconds, and stops using the pool meanwhile.
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(db("connecting to postgres"))?;
        let pool = PgDb::new(pool, settings.pooler);
        let migrator = sqlx::migrate!("./migrations/postgres");
        if pool.behind_pooler() {
            // One transaction holds the lock and applies every pending migration (each in
            // a savepoint of it).
            let mut migrator = migrator;
            migrator.set_locking(false);
            let mut tx = pool.begin().await.map_err(db("starting the migrations"))?;
            sqlx::query(MIGRATION_LOCK).execute(&mut *tx).await.map_err(db("locking the migrations"))?;
            // `run_direct`: `run` on a borrowed connection makes the future not `Send`.
            migrator.run_direct(None, &mut *tx, false).await?;
            tx.commit().await.map_err(db("committing the migrations"))?;
        } else {
            migrator.run(pool.pool()).await?;
        }
        Ok(Self { pool, listen_url: settings.listen_url.clone(), instance: next_instance() })
    }

    /// A connection that stays with this process (for `LISTEN`): to `[store] listen_url`
    /// if set, else from the pool; `None` behind a transaction pooler without a
    /// `listen_url` (a pooled session cannot keep listening).
    pub(super) async fn listener(&self) -> Result<Option<sqlx::postgres::PgListener>, sqlx::Error> {
        match &self.listen_url {
            Some(url) => {
                let options = PgConnectOptions::from_str(url)?.application_name("tributary");
                // A pool of its own, of one connection, through which the listener
                // reconnects after a lost connection.
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .connect_with(options)
                    .await?;
                let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                listener.ignore_pool_close_event(true);
                Ok(Some(listener))
            }
            None if self.pool.behind_pooler() => Ok(None),
            None => sqlx::postgres::PgListener::connect_with(self.pool.pool()).await.map(Some),
        }
    }

    // --- SQL that differs from SQLite ----------------------------------------------------

    /// Row locks (`FOR UPDATE`) do the serializing; a plain transaction suffices.
    pub(super) const BEGIN_WRITE: &'static str = "BEGIN";

    /// Bind parameters per statement. The protocol allows 65,535; SQLite's budget is kept
    /// so both backends split large pages the same way (and the contract tests cover it).
    pub(super) const MAX_BINDS: usize = 32_766;

    /// Locks the tenant row until commit, serializing writers of one tenant.
    pub(super) const LOCK_TENANT: &'static str = "SELECT id FROM tenants WHERE id = $1 FOR UPDATE";

    /// Locks the rows of the tenants of `id_list` `$1` until commit, in id order (the
    /// order every multi-tenant writer takes them in); returns the ids found.
    pub(super) const LOCK_TENANTS: &'static str = "SELECT id FROM tenants WHERE id = ANY($1) ORDER BY id FOR UPDATE";

    /// (id, tenant, provider, status) of the connections of the tenants of `id_list` `$1`.
    pub(super) const CONNECTIONS_OF_TENANTS: &'static str =
        "SELECT id, tenant_id, provider, status FROM connections WHERE tenant_id = ANY($1)";

    /// `$1` new job ids, from the jobs' sequence.
    pub(super) const ALLOCATE_JOB_IDS: &'static str =
        "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, $1)";

    /// The jobs of the tenants of `id_list` `$1` as reconciliation sees them.
    pub(super) const JOBS_OF_TENANTS: &'static str = "SELECT id, tenant_id, connection_id, stream, schedule, \
         enabled, next_run_at FROM jobs WHERE tenant_id = ANY($1)";

    /// The page's job (`$5`, a row with a NULL `external_id` whose `content_hash` is the
    /// lease owner; no such row if the tenant has no such job), locked until commit so
    /// its lease cannot change under the page write; then the stored hash of every record
    /// of the page (`$4`, a list built by [`Self::id_list`]): one statement.
    ///
    /// One primary-key lookup per id: with `external_id = ANY($4)` the planner, on
    /// statistics from before a large first sync (a new tenant, or a table not yet
    /// analyzed), scans every row of the tenant's entity and filters — 50 ms per
    /// 100-record page at 200,000 rows. `LIMIT 1` keeps the lateral subquery a
    /// parameterized index scan.
    pub(super) const SELECT_JOB_AND_HASHES: &'static str = "WITH job AS (SELECT lease_owner FROM jobs \
         WHERE id = $5 AND tenant_id = $1 FOR UPDATE) \
         SELECT NULL::text AS external_id, lease_owner AS content_hash, FALSE AS deleted FROM job \
         UNION ALL SELECT r.external_id, r.content_hash, r.deleted \
         FROM unnest($4::text[]) AS i(id) CROSS JOIN LATERAL (SELECT external_id, content_hash, \
         deleted_at IS NOT NULL AS deleted FROM records \
         WHERE tenant_id = $1 AND entity = $2 AND provider = $3 AND external_id = i.id LIMIT 1) r";

    /// Locks an integration's aggregate row until commit, serializing its writers.
    pub(super) const LOCK_INTELLIGENCE: &'static str =
        "SELECT state, version FROM company_intelligence WHERE tenant_id = $1 AND provider = $2 FOR UPDATE";

    /// The numeric top-level `quality` of every aggregate (NULL when absent or not a
    /// number).
    pub(super) const SELECT_INTELLIGENCE_QUALITIES: &'static str = "SELECT CASE \
         WHEN jsonb_typeof(state -> 'quality') = 'number' THEN (state ->> 'quality')::float8 END \
         FROM company_intelligence WHERE version > 0 ORDER BY tenant_id, provider";

    /// `$3` is a list built by [`Self::id_list`] of the providers that stay enabled.
    pub(super) const DISABLE_OTHER_JOBS: &'static str = "UPDATE jobs SET enabled = FALSE, \
         updated_at = $1 WHERE tenant_id = $2 AND enabled AND connection_id IN \
         (SELECT id FROM connections WHERE tenant_id = $2 AND provider <> ALL($3))";

    /// `$4` is a list built by [`Self::id_list`] of the providers that stay enabled.
    pub(super) const DISABLE_OTHER_CONNECTIONS: &'static str = "UPDATE connections \
         SET status = 'disabled', status_reason = $1, updated_at = $2 \
         WHERE tenant_id = $3 AND status <> 'disabled' AND provider <> ALL($4)";

    /// After a JSON text parameter: the server parses it into `JSONB` (as it parses the
    /// binary `JSONB` input format, which is the same text behind a version byte).
    pub(super) const JSON_PARAM: &'static str = "::jsonb";

    /// Whether a page's job-and-hashes read and its upsert go to the database as one
    /// batch of two statements: not on PostgreSQL (a prepared statement is one
    /// statement).
    pub(super) const READ_AND_UPSERT_TOGETHER: bool = false;

    /// Marks the records of `id_list` `$4` deleted (those not deleted already), leaving
    /// them for `number_changes`.
    pub(super) const MARK_DELETED: &'static str = "UPDATE records SET deleted_at = $5, change_seq = NULL, \
         change_kind = 'deleted', change_run = $6 WHERE tenant_id = $1 AND entity = $2 AND provider = $3 \
         AND external_id = ANY($4::text[]) AND deleted_at IS NULL";

    /// Marks the records of `id_list` `$4` seen at `$5` (a page of a sweeping stream).
    /// Each record found by its key (a lateral lookup: with `= ANY($4)` the generic plan
    /// of the prepared statement filters every record of the entity instead).
    pub(super) const MARK_SEEN: &'static str = "UPDATE records SET seen_at = $5 FROM (SELECT x.rid \
         FROM unnest($4::text[]) AS i(id) CROSS JOIN LATERAL (SELECT ctid AS rid FROM records \
         WHERE tenant_id = $1 AND entity = $2 AND provider = $3 AND external_id = i.id LIMIT 1) x) l \
         WHERE records.ctid = l.rid";

    /// A list of strings as one bind parameter: a `TEXT[]`.
    pub(super) fn id_list(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }
}
