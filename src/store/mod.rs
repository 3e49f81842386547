//! Persistence. One narrow contract (`Store`) with two implementations on native sqlx
//! pools: SQLite (the embedded default) and PostgreSQL (replicas). Every method that
//! touches tenant data takes the tenant id and scopes its queries by it.
//!
//! Each query is written once (`tenants.rs`, `jobs.rs`, `records.rs`): a macro expands
//! the same method bodies for [`SqliteStore`] and [`PgStore`]. SQL that differs between
//! the dialects lives in a few associated constants of each backend (`sqlite.rs`,
//! `postgres.rs`). Migrations are embedded from `migrations/sqlite` and
//! `migrations/postgres` (same version numbers) and run by [`Store::connect`].

#[macro_use]
mod rows;
mod error;
mod jobs;
mod postgres;
mod records;
mod sqlite;
mod tenants;
mod types;

use std::path::Path;

use serde_json::Value;
use uuid::Uuid;

pub use error::StoreError;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use types::*;

use crate::model::{ConnectionStatus, EntityName, ProviderId, RunOutcome, RunTrigger, StreamName, TenantId};

/// The state store: a SQLite file or a PostgreSQL database. Cheap to clone (the pools
/// are shared).
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite file (or in-memory database), the embedded default.
    Sqlite(SqliteStore),
    /// A PostgreSQL database, shared by replicas.
    Postgres(PgStore),
}

/// Calls the same method on whichever backend `self` is.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

/// An [`StoreError::InvalidUrl`] for `url`, with any password in it redacted.
fn invalid_url(url: &str, reason: &str) -> StoreError {
    StoreError::InvalidUrl { url: redact_password(url), reason: reason.to_owned() }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_owned();
    };
    format!("{scheme}://{user}:***@{host}{tail}")
}

impl Store {
    /// Opens the store named by `url` and applies pending migrations.
    ///
    /// `sqlite://PATH` or `sqlite:PATH` opens (creating if missing) a SQLite file in WAL
    /// mode with `synchronous = NORMAL`, foreign keys on and a 5 s busy timeout;
    /// `postgres://…` or `postgresql://…` connects to PostgreSQL. Anything else is
    /// [`StoreError::InvalidUrl`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url).await?))
        } else {
            Err(invalid_url(url, "expected `sqlite://PATH`, `sqlite:PATH` or `postgres://…`"))
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// The SQLite database file (e.g. to keep a key file beside it); `None` for
    /// PostgreSQL and in-memory SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Store::Sqlite(s) => s.path(),
            Store::Postgres(_) => None,
        }
    }

    /// Closes the pool, waiting for checked-out connections to be returned.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.pool.close().await,
            Store::Postgres(s) => s.pool.close().await,
        }
    }

    // --- tenants -------------------------------------------------------------------------

    /// Creates a tenant in one transaction: the tenant row, its overrides (all of
    /// `state.overrides`), a company connection (`pending`) for each provider of
    /// `state.enabled_providers`, every other connection `disabled` (see
    /// [`Store::update_tenant`]), and `audit`.
    ///
    /// [`StoreError::Conflict`] if the id exists or the subdomain is taken.
    pub async fn create_tenant(&self, state: &TenantState, audit: &AuditEntry) -> Result<TenantRow, StoreError> {
        dispatch!(self.create_tenant(state, audit))
    }

    /// Saves an existing tenant in one transaction, like [`Store::create_tenant`] (the
    /// creation time stays):
    ///
    /// - the overrides stored are exactly `state.overrides`;
    /// - each provider of `state.enabled_providers` gets its company connection if
    ///   missing (`pending`); its `disabled` connections return to `connected` (with
    ///   credentials) or `pending` (without), and their jobs are enabled again; other
    ///   statuses stay;
    /// - every connection of any other provider becomes `disabled` and its jobs
    ///   `enabled = false`; records and job cursors stay.
    ///
    /// [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn update_tenant(&self, state: &TenantState, audit: &AuditEntry) -> Result<TenantRow, StoreError> {
        dispatch!(self.update_tenant(state, audit))
    }

    /// The tenant, if it exists.
    pub async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRow>, StoreError> {
        dispatch!(self.get_tenant(tenant))
    }

    /// Every tenant, by id.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        dispatch!(self.list_tenants())
    }

    /// The tenant's override layers, by provider.
    pub async fn get_overrides(&self, tenant: &TenantId) -> Result<Vec<(ProviderId, Value)>, StoreError> {
        dispatch!(self.get_overrides(tenant))
    }

    // --- connections ---------------------------------------------------------------------

    /// The tenant's connections, by provider then owner.
    pub async fn list_connections(&self, tenant: &TenantId) -> Result<Vec<ConnectionRow>, StoreError> {
        dispatch!(self.list_connections(tenant))
    }

    /// The tenant's company-owned connection to `provider`.
    pub async fn get_connection(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        dispatch!(self.get_connection(tenant, provider))
    }

    /// Stores sealed credentials on the tenant's company connection to `provider` and
    /// writes `audit`, in one transaction. Increments `credentials_version`; a `pending`,
    /// `needs_reauth` or `error` connection becomes `connected`, a `disabled` one stays.
    ///
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn set_credentials(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        sealed: &SealedBlob,
        audit: &AuditEntry,
    ) -> Result<ConnectionRow, StoreError> {
        dispatch!(self.set_credentials(tenant, provider, sealed, audit))
    }

    /// The sealed credentials of the tenant's company connection to `provider` and their
    /// version; `None` if there are none.
    pub async fn get_credentials(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
    ) -> Result<Option<(SealedBlob, i64)>, StoreError> {
        dispatch!(self.get_credentials(tenant, provider))
    }

    /// Sets the status (and why) of the tenant's company connection to `provider`. Jobs
    /// are not touched.
    ///
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn set_connection_status(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        status: ConnectionStatus,
        reason: Option<&str>,
    ) -> Result<ConnectionRow, StoreError> {
        dispatch!(self.set_connection_status(tenant, provider, status, reason))
    }

    // --- jobs ----------------------------------------------------------------------------

    /// The job of (`connection_id`, `stream`): created if missing, otherwise its schedule
    /// is updated. It is enabled unless the connection is `disabled`; pause, cursor and
    /// lease are kept.
    ///
    /// [`StoreError::NotFound`] if the connection is not the tenant's.
    pub async fn ensure_job(
        &self,
        tenant: &TenantId,
        connection_id: i64,
        stream: &StreamName,
        schedule: &str,
    ) -> Result<JobRow, StoreError> {
        dispatch!(self.ensure_job(tenant, connection_id, stream, schedule))
    }

    /// The tenant's job `job_id`.
    pub async fn get_job(&self, tenant: &TenantId, job_id: i64) -> Result<Option<JobRow>, StoreError> {
        dispatch!(self.get_job(tenant, job_id))
    }

    /// The tenant's jobs, by provider then stream.
    pub async fn list_jobs(&self, tenant: &TenantId) -> Result<Vec<JobRow>, StoreError> {
        dispatch!(self.list_jobs(tenant))
    }

    // --- records -------------------------------------------------------------------------

    /// Upserts one page of records and moves the job cursor, in one transaction.
    ///
    /// Unchanged records (same content hash) are not written; a record seen twice in the
    /// page counts once, with its last data. With `page.cursor` the job's cursor moves;
    /// with `page.lease_owner` the whole write is fenced on that worker holding the
    /// job's lease, and [`StoreError::LeaseLost`] rolls everything back.
    ///
    /// [`StoreError::NotFound`] if the job is not the tenant's.
    pub async fn write_page(&self, tenant: &TenantId, page: &PageWrite<'_>) -> Result<PageOutcome, StoreError> {
        dispatch!(self.write_page(tenant, page))
    }

    /// Up to `limit` of the tenant's records of `entity`, by provider then external id.
    pub async fn list_records(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
        limit: i64,
    ) -> Result<Vec<RecordRow>, StoreError> {
        dispatch!(self.list_records(tenant, entity, limit))
    }

    /// The tenant's dead letters, newest first; of one run when `run_id` is given.
    pub async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        run_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRow>, StoreError> {
        dispatch!(self.list_dead_letters(tenant, run_id, limit))
    }

    /// One of the tenant's records.
    pub async fn get_record(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
        provider: &ProviderId,
        external_id: &str,
    ) -> Result<Option<RecordRow>, StoreError> {
        dispatch!(self.get_record(tenant, entity, provider, external_id))
    }

    /// How many records the tenant has (of `entity`, if given).
    pub async fn count_records(&self, tenant: &TenantId, entity: Option<&EntityName>) -> Result<i64, StoreError> {
        dispatch!(self.count_records(tenant, entity))
    }

    // --- runs ----------------------------------------------------------------------------

    /// Starts a run of the tenant's job: a new UUID v7 id, outcome `running`, the job's
    /// current cursor as `cursor_before`; the job's `last_run_id` points at it.
    ///
    /// [`StoreError::NotFound`] if the job is not the tenant's.
    pub async fn start_run(&self, tenant: &TenantId, job_id: i64, trigger: RunTrigger) -> Result<RunRow, StoreError> {
        dispatch!(self.start_run(tenant, job_id, trigger))
    }

    /// Finishes the tenant's running run with `outcome` and `stats`.
    ///
    /// [`StoreError::NotFound`] if the run is not the tenant's, [`StoreError::Conflict`]
    /// if it already finished.
    pub async fn finish_run(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        outcome: RunOutcome,
        stats: &RunStats,
    ) -> Result<RunRow, StoreError> {
        dispatch!(self.finish_run(tenant, run_id, outcome, stats))
    }

    /// A run: any tenant's with `None` (operator scope), only that tenant's with `Some`.
    pub async fn get_run(&self, run_id: Uuid, tenant: Option<&TenantId>) -> Result<Option<RunRow>, StoreError> {
        dispatch!(self.get_run(run_id, tenant))
    }

    /// Up to `limit` runs, newest first: every tenant's with `None`, one tenant's with
    /// `Some`.
    pub async fn list_runs(&self, tenant: Option<&TenantId>, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        dispatch!(self.list_runs(tenant, limit))
    }

    // --- audit ---------------------------------------------------------------------------

    /// Appends an entry to the audit log.
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        dispatch!(self.record_audit(entry))
    }

    /// Up to `limit` audit entries, newest first: all with `None`, one tenant's with
    /// `Some`.
    pub async fn list_audit(&self, tenant: Option<&TenantId>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        dispatch!(self.list_audit(tenant, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_password("postgres://app:s3cret@db.internal:5432/tributary?sslmode=require"),
            "postgres://app:***@db.internal:5432/tributary?sslmode=require"
        );
        assert_eq!(redact_password("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_password("sqlite://state.db"), "sqlite://state.db");
    }

    #[tokio::test]
    async fn unknown_schemes_are_invalid_urls() {
        for url in ["mysql://root:pw@localhost/x", "state.db", "", "sqlite://"] {
            let err = Store::connect(url).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidUrl { .. }), "{url}: {err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[tokio::test]
    async fn in_memory_sqlite_has_no_path_but_works() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        assert_eq!(store.sqlite_path(), None);
        assert!(store.list_tenants().await.unwrap().is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn sqlite_files_are_created_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::connect(&format!("sqlite:{}", path.display())).await.unwrap();
        assert_eq!(store.sqlite_path(), Some(path.as_path()));
        assert!(path.exists());
        store.close().await;
    }
}
