//! The SQLite backend: the embedded default store, one file in WAL mode.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::connect::{invalid_url, next_instance, redact_password};
use super::error::{StoreError, db};

/// A store on a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// The database file; `None` for an in-memory database.
    path: Option<PathBuf>,
    /// See [`super::Store::instance_id`].
    pub(super) instance: u64,
}

impl SqliteStore {
    /// Opens (creating if missing) the database named by a `sqlite:` URL and migrates it.
    pub(super) async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, true).await
    }

    /// Opens the existing database named by a `sqlite:` URL and migrates it; a missing
    /// file is an error naming the URL, not a new empty database.
    pub(super) async fn connect_existing(url: &str) -> Result<Self, StoreError> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<Self, StoreError> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let (file, params) = rest.split_once('?').unwrap_or((rest, ""));
        if file.is_empty() {
            return Err(invalid_url(url, "no database file named"));
        }
        let in_memory = file == ":memory:" || params.split('&').any(|p| p == "mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| invalid_url(url, &e.to_string()))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let path = (!in_memory).then(|| options.get_filename().to_path_buf());
        if let Some(file) = path.as_deref().filter(|f| !create && !f.exists()) {
            return Err(StoreError::NotFound {
                what: format!(
                    "no database at `{}`: the file {} does not exist (this command only reads; check \
                     --database-url, TRIBUTARY_DATABASE_URL or the working directory)",
                    redact_password(url),
                    file.display()
                ),
            });
        }
        if let Some(file) = path.as_deref().filter(|f| create && !f.exists()) {
            create_private(file).map_err(|e| invalid_url(url, &format!("cannot create {}: {e}", file.display())))?;
        }
        // A connection to a local file cannot go stale: no ping (a round trip to the
        // connection's worker thread) before every acquire.
        let mut pool = SqlitePoolOptions::new().max_connections(8).test_before_acquire(false);
        if in_memory {
            // An in-memory database lives only as long as one of its connections.
            pool = pool.min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = pool.connect_with(options).await.map_err(db("opening the sqlite database"))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, path, instance: next_instance() })
    }

    /// The database file, if the database is not in memory.
    ///
    /// (A new database file is created by [`create_private`] first, so it and the WAL
    /// and shared-memory files SQLite creates beside it with the same mode are 0600.)
    pub(super) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    // --- SQL that differs from PostgreSQL ------------------------------------------------

    /// Takes the write lock up front, so a read-then-write transaction never fails to
    /// upgrade its lock (`SQLITE_BUSY`) while another writer commits.
    pub(super) const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    /// Bind parameters per statement (SQLite's `SQLITE_MAX_VARIABLE_NUMBER` default since
    /// 3.32; the bundled library is newer).
    pub(super) const MAX_BINDS: usize = 32_766;

    /// Reads the tenant row; `BEGIN IMMEDIATE` already serializes writers.
    pub(super) const LOCK_TENANT: &'static str = "SELECT id FROM tenants WHERE id = $1";

    /// The ids of `id_list` `$1` that are tenants; `BEGIN IMMEDIATE` already serializes writers.
    pub(super) const LOCK_TENANTS: &'static str =
        "SELECT id FROM tenants WHERE id IN (SELECT value FROM json_each($1))";

    /// (id, tenant, provider, status) of the connections of the tenants of `id_list` `$1`.
    pub(super) const CONNECTIONS_OF_TENANTS: &'static str =
        "SELECT id, tenant_id, provider, status FROM connections WHERE tenant_id IN (SELECT value FROM json_each($1))";

    /// `$1` new job ids, after the largest (`BEGIN IMMEDIATE` holds the write lock until
    /// they are used; SQLite gives a row without an id the largest plus one, too).
    pub(super) const ALLOCATE_JOB_IDS: &'static str = "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         SELECT (SELECT COALESCE(MAX(id), 0) FROM jobs) + i FROM n";

    /// The jobs of the tenants of `id_list` `$1` as reconciliation sees them.
    pub(super) const JOBS_OF_TENANTS: &'static str = "SELECT id, tenant_id, connection_id, stream, schedule, \
         enabled, next_run_at FROM jobs WHERE tenant_id IN (SELECT value FROM json_each($1))";

    /// The page's job (`$5`, a row with a NULL `external_id` whose `content_hash` is the
    /// lease owner; no such row if the tenant has no such job), then the stored hash of
    /// every record of the page (`$4`, a list built by [`Self::id_list`]): one statement.
    /// `BEGIN IMMEDIATE` already holds the write lock, so the lease cannot change.
    pub(super) const SELECT_JOB_AND_HASHES: &'static str = "SELECT NULL AS external_id, \
         lease_owner AS content_hash, 0 AS deleted FROM jobs WHERE id = $5 AND tenant_id = $1 \
         UNION ALL SELECT external_id, content_hash, deleted_at IS NOT NULL FROM records \
         WHERE tenant_id = $1 AND entity = $2 AND provider = $3 \
         AND external_id IN (SELECT value FROM json_each($4))";

    /// Reads an integration's aggregate; `BEGIN IMMEDIATE` already serializes writers.
    pub(super) const LOCK_INTELLIGENCE: &'static str =
        "SELECT state, version FROM company_intelligence WHERE tenant_id = $1 AND provider = $2";

    /// The numeric top-level `quality` of every aggregate (NULL when absent or not a
    /// number).
    pub(super) const SELECT_INTELLIGENCE_QUALITIES: &'static str = "SELECT CASE \
         WHEN json_type(state, '$.quality') IN ('integer', 'real') \
         THEN CAST(json_extract(state, '$.quality') AS REAL) END \
         FROM company_intelligence WHERE version > 0 ORDER BY tenant_id, provider";

    /// `$3` is a list built by [`Self::id_list`] of the providers that stay enabled.
    pub(super) const DISABLE_OTHER_JOBS: &'static str = "UPDATE jobs SET enabled = FALSE, \
         updated_at = $1 WHERE tenant_id = $2 AND enabled AND connection_id IN \
         (SELECT id FROM connections WHERE tenant_id = $2 \
          AND provider NOT IN (SELECT value FROM json_each($3)))";

    /// `$4` is a list built by [`Self::id_list`] of the providers that stay enabled.
    pub(super) const DISABLE_OTHER_CONNECTIONS: &'static str = "UPDATE connections \
         SET status = 'disabled', status_reason = $1, updated_at = $2 \
         WHERE tenant_id = $3 AND status <> 'disabled' \
         AND provider NOT IN (SELECT value FROM json_each($4))";

    /// After a JSON text parameter: SQLite stores JSON as TEXT as it is.
    pub(super) const JSON_PARAM: &'static str = "";

    /// Whether a page's job-and-hashes read and its upsert go to the database as one
    /// batch of two statements (one round trip to the connection's thread instead of
    /// two). The upsert then skips unchanged rows itself, and a page whose job is not
    /// the tenant's or whose lease is lost is rolled back.
    pub(super) const READ_AND_UPSERT_TOGETHER: bool = true;

    /// Marks the records of `id_list` `$4` deleted (those not deleted already), leaving
    /// them for `number_changes`.
    pub(super) const MARK_DELETED: &'static str = "UPDATE records SET deleted_at = $5, change_seq = NULL, \
         change_kind = 'deleted', change_run = $6 WHERE tenant_id = $1 AND entity = $2 AND provider = $3 \
         AND external_id IN (SELECT value FROM json_each($4)) AND deleted_at IS NULL";

    /// Marks the records of `id_list` `$4` seen at `$5` (a page of a sweeping stream).
    pub(super) const MARK_SEEN: &'static str = "UPDATE records SET seen_at = $5 WHERE tenant_id = $1 \
         AND entity = $2 AND provider = $3 AND external_id IN (SELECT value FROM json_each($4))";

    /// A list of strings as one bind parameter: a JSON array, read with `json_each`.
    pub(super) fn id_list(ids: &[&str]) -> String {
        serde_json::to_string(ids).unwrap_or_default()
    }
}

/// Creates an empty database file readable and writable by its owner only (mode 0600):
/// it holds sealed credentials and every tenant's records. SQLite gives the `-wal` and
/// `-shm` files it creates beside it the same mode. An existing file is left alone.
fn create_private(file: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
