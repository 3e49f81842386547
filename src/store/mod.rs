//! Persistence. One narrow contract (`Store`) with two implementations on native sqlx
//! pools: SQLite (the embedded default) and PostgreSQL (replicas). Every method that
//! touches tenant data takes the tenant id and scopes its queries by it.
//!
//! The store keeps the model's rows (`crate::model`), one file per area (`tenants.rs`,
//! `jobs.rs`, `scheduling.rs`, `users.rs`, `tokens.rs`, `intelligence.rs`, `writes.rs`, `export.rs`, …). Each
//! method is written once, on [`Store`], with its documentation, and its body is
//! expanded for [`SqliteStore`] and [`PgStore`] by `on_backend!`; steps several writes
//! share (the audit entry, locking a tenant) take either backend's connection
//! (`Conn`, `on_connection!`). Statements address rows by shared keys and bind their
//! parameters in one call (`statement.rs`); rows decode straight into the model types
//! (`rows.rs` lists their columns). SQL that differs between the dialects lives in a few
//! associated constants of each backend (`sqlite.rs`, `postgres.rs`); what both share
//! when they open a database or begin a write is in `connect.rs`. What the methods take
//! (page and token writes, claims) is in `types.rs`. The record page write
//! (`records.rs`) is still expanded per backend by its own macro, behind `dispatch!`.
//! The typed entity views over the records follow `entities.toml` (`views.rs`).
//! Migrations are embedded from `migrations/sqlite` and `migrations/postgres` (same
//! version numbers) and run by [`Store::connect`].

/// Calls the same method on whichever backend `self` is (the methods `records.rs`
/// expands for each backend).
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

/// Runs `$body` on whichever backend `$store` is: `$s` is the backend's store and `$b`,
/// when named, its type (for the SQL constants that differ). The body is written once
/// and expanded for each backend; it is not a closure: `?`, `return` and `.await` act on
/// the method it is in.
macro_rules! on_backend {
    ($store:expr, |$s:ident $(: $b:ident)?| $body:expr) => {
        on_each!(Store, $store, |$s $(: $b)?| $body)
    };
}

/// `on_backend!` for a step of a larger write: `$conn` (anything that converts into a
/// [`Conn`], e.g. `&mut *tx`) is the backend's connection in `$c`.
macro_rules! on_connection {
    ($conn:expr, |$c:ident $(: $b:ident)?| $body:expr) => {
        on_each!(Conn, Into::<$crate::store::Conn<'_>>::into($conn), |$c $(: $b)?| $body)
    };
}

/// The `match` behind `on_backend!` and `on_connection!`.
macro_rules! on_each {
    ($enum:ident, $value:expr, |$s:ident| $body:expr) => {
        match $value {
            $crate::store::$enum::Sqlite($s) => $body,
            $crate::store::$enum::Postgres($s) => $body,
        }
    };
    ($enum:ident, $value:expr, |$s:ident: $b:ident| $body:expr) => {
        match $value {
            $crate::store::$enum::Sqlite($s) => {
                type $b = $crate::store::SqliteStore;
                $body
            }
            $crate::store::$enum::Postgres($s) => {
                type $b = $crate::store::PgStore;
                $body
            }
        }
    };
}

// After the macros above, which they use.
#[macro_use]
mod statement;
#[macro_use]
mod rows;
mod api_keys;
mod audit;
pub mod budgets;
mod connect;
mod error;
mod export;
mod gauges;
mod health;
mod inbox;
mod intelligence;
mod jobs;
mod keys;
mod outbox;
mod pg_pool;
mod postgres;
mod prune;
mod reconcile;
mod replicas;
pub use self::budgets::{BudgetShareRow, SentCounts, ShareGrant, ShareRequest, share_burst};
pub use self::reconcile::{
    JobConnection, JobPlan, QueuedReconcile, RECONCILE_BATCH, RECONCILE_PAYLOAD, ReconcileInputs, ReconcileTenant,
    StoredJob, TenantJobs, plan_jobs,
};
pub use self::replicas::ReplicaRow;
mod records;
mod responsibilities;
mod scheduling;
pub use self::scheduling::FleetCaps;
mod sqlite;
mod sqlite_page;
mod sweep;
mod tenants;
mod tokens;
mod types;
mod usage;
mod users;
mod views;
mod webhooks;
mod write_effects;
mod writes;

use std::path::Path;

use uuid::Uuid;

pub use api_keys::{ApiKeyRow, NewApiKey};
pub use audit::AuditFilter;
use connect::invalid_url;
pub use error::StoreError;
pub use export::{RecordFilter, RecordKey};
pub use health::{HealthChange, Outage, StoreHealth};
pub use inbox::{InboxRow, NewDelivery, WAKE_CHANNEL};
pub use intelligence::{ContributionFilter, Fold, Folded, NewContribution};
pub use keys::{Forgotten, KeyRotation, RotationProgress, SealedCount, SealedKind, SealedValue};
pub use outbox::{WebhookAttemptRecord, WebhookDelivery, WebhookMessage, WebhookOutboxRow, WebhookSettle};
pub use pg_pool::{DEFAULT_MAX_CONNECTIONS, PgOptions, Pooler};
pub use postgres::PgStore;
pub use prune::PruneReport;
pub use sqlite::SqliteStore;
pub use sweep::{SweepOutcome, SweepRequest, within_share};
pub use types::*;
pub use usage::{UsageCounts, UsageDay, UsageLine, UsagePeriod, UsageReport, parse_usage_since, usage_error_class};
pub use users::NOT_A_MEMBER_REASON;
pub use views::{VIEW_PREFIX, ViewsRefreshed};
pub use webhooks::{NewWebhookEndpoint, WebhookEndpoint, envelope};
pub use writes::{
    MAX_PROVIDER_MESSAGE, NewWrite, RecordEffect, WriteAttempt, WriteDetail, WriteFilter, WriteRow, WriteSettle,
    WriteState,
};

use crate::model::{ChangeRange, ChangeRow, DeadLetterRow, EntityName, PageOutcome, ProviderId, RecordRow, TenantId};

/// The state store: a SQLite file or a PostgreSQL database. Cheap to clone (the pools
/// are shared).
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite file (or in-memory database), the embedded default.
    Sqlite(SqliteStore),
    /// A PostgreSQL database, shared by replicas.
    Postgres(PgStore),
}

/// A connection of either backend in the middle of a write (a transaction's): what the
/// steps several writes share take (see `on_connection!`).
pub(crate) enum Conn<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

impl<'a> From<&'a mut sqlx::SqliteConnection> for Conn<'a> {
    fn from(conn: &'a mut sqlx::SqliteConnection) -> Self {
        Self::Sqlite(conn)
    }
}

impl<'a> From<&'a mut sqlx::PgConnection> for Conn<'a> {
    fn from(conn: &'a mut sqlx::PgConnection) -> Self {
        Self::Postgres(conn)
    }
}

impl Store {
    /// Opens the store named by `url` and applies pending migrations.
    ///
    /// `sqlite://PATH` or `sqlite:PATH` opens (creating if missing) a SQLite file in WAL
    /// mode with `synchronous = NORMAL`, foreign keys on and a 5 s busy timeout;
    /// `postgres://…` or `postgresql://…` connects to PostgreSQL. Anything else is
    /// [`StoreError::InvalidUrl`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, &PgOptions::default()).await
    }

    /// [`Store::connect`] with the PostgreSQL connection settings of `[store]` (ignored
    /// for SQLite, which `Settings` checks).
    pub async fn connect_with(url: &str, pg: &PgOptions) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url, pg).await?))
        } else {
            Err(invalid_url(url, "expected `sqlite://PATH`, `sqlite:PATH` or `postgres://…`"))
        }
    }

    /// Opens an existing store, for commands that only read: like [`Store::connect`], but
    /// a missing SQLite file is an error naming the URL instead of a new empty database
    /// (a missing PostgreSQL database is an error either way).
    pub async fn connect_existing(url: &str) -> Result<Store, StoreError> {
        Self::connect_existing_with(url, &PgOptions::default()).await
    }

    /// [`Store::connect_existing`] with the PostgreSQL connection settings of `[store]`.
    pub async fn connect_existing_with(url: &str, pg: &PgOptions) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect_existing(url).await?))
        } else {
            Self::connect_with(url, pg).await
        }
    }

    /// `"pgbouncer"` when the store is behind a transaction pooler (`[store] pooler`),
    /// else `"none"`.
    pub fn pooler(&self) -> &'static str {
        match self {
            Store::Postgres(s) if s.pool.behind_pooler() => "pgbouncer",
            _ => "none",
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

    /// [`Self::write_page`] once `ready` says so: the page's records are serialized and
    /// hashed first, while `ready` is pending (e.g. the previous page's write is still
    /// under way), then the page is written if `ready` gives `true`; `Ok(None)` (nothing
    /// written) if it gives `false`.
    pub async fn write_page_when(
        &self,
        tenant: &TenantId,
        page: &PageWrite<'_>,
        ready: impl Future<Output = bool>,
    ) -> Result<Option<PageOutcome>, StoreError> {
        let records = records::prepare(page.records);
        if !ready.await {
            return Ok(None);
        }
        dispatch!(self.write_prepared(tenant, page, &records)).map(Some)
    }

    /// [`Self::write_page_when`] for a page of a deletion stream: the keys of
    /// `page.records` (their data is not read) mark the stored records of the entity
    /// deleted instead of being stored ([`Self::mark_deleted`]), with the page's dead
    /// letters, cursor, position and run counts in one transaction. A deletion counts
    /// as `updated`, a key not stored or already deleted as `unchanged`.
    pub async fn write_deletions_when(
        &self,
        tenant: &TenantId,
        page: &PageWrite<'_>,
        ready: impl Future<Output = bool>,
    ) -> Result<Option<PageOutcome>, StoreError> {
        let records = records::prepare(page.records);
        if !ready.await {
            return Ok(None);
        }
        dispatch!(self.write_deletions(tenant, page, &records)).map(Some)
    }

    /// [`Self::write_page_when`] for a page that also carries deletions: the stored
    /// records of `tombstones` (keys) are marked deleted in the page's transaction, after
    /// its records are written (`deleted_at` and a `deleted` change, as
    /// [`Self::write_deletions_when`] does). A deletion counts as `updated`, a key not
    /// stored or already deleted as `unchanged`.
    pub async fn write_page_with_tombstones_when(
        &self,
        tenant: &TenantId,
        page: &PageWrite<'_>,
        tombstones: &[String],
        ready: impl Future<Output = bool>,
    ) -> Result<Option<PageOutcome>, StoreError> {
        let records = records::prepare(page.records);
        let keys: Vec<&str> = tombstones.iter().map(String::as_str).collect();
        if !ready.await {
            return Ok(None);
        }
        dispatch!(self.write_with_tombstones(tenant, page, &records, &keys)).map(Some)
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

    /// The tenant's change feed after `since_seq`, in sequence order (of `entity`, if
    /// given): up to `limit` records with their latest change. A record changed again
    /// moves to the end of the feed; page with the last `seq` returned.
    pub async fn list_changes(
        &self,
        tenant: &TenantId,
        entity: Option<&EntityName>,
        since_seq: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, StoreError> {
        dispatch!(self.list_changes(tenant, entity, since_seq, limit))
    }

    /// Where the changes `run_id` made to the tenant's `entity` stand in the change feed:
    /// the lowest and highest sequence and the count of each kind, over the records whose
    /// latest change is the run's (a record a later run changed again counts there).
    /// `None` if there are none.
    pub async fn change_range(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        entity: &EntityName,
    ) -> Result<Option<ChangeRange>, StoreError> {
        dispatch!(self.change_range(tenant, run_id, entity))
    }

    /// Soft-deletes the tenant's records `ids` of `entity` from `provider` (those not
    /// deleted already), each taking the next number of the change sequence with kind
    /// `deleted` and `run` as its run, in one transaction. Returns how many it deleted.
    pub async fn mark_deleted(
        &self,
        tenant: &TenantId,
        entity: &EntityName,
        provider: &ProviderId,
        ids: &[&str],
        run: Option<Uuid>,
    ) -> Result<u64, StoreError> {
        dispatch!(self.mark_deleted(tenant, entity, provider, ids, run))
    }

    /// How many records the tenant has (of `entity`, if given).
    pub async fn count_records(&self, tenant: &TenantId, entity: Option<&EntityName>) -> Result<i64, StoreError> {
        dispatch!(self.count_records(tenant, entity))
    }
}

#[cfg(test)]
mod tests {
    use super::connect::redact_password;
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
