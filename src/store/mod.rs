//! Persistence. One narrow contract (`Store`) with two implementations on native sqlx
//! pools: SQLite (the embedded default) and PostgreSQL (replicas). Every method that
//! touches tenant data takes the tenant id and scopes its queries by it.
//!
//! The store keeps the model's rows (`crate::model`): each query is written once (one
//! file per area: `tenants.rs`, `jobs.rs`, `records.rs`, `users.rs`, …), a macro expands
//! the same method bodies for [`SqliteStore`] and [`PgStore`], and rows decode straight
//! into the model types (`rows.rs` lists their columns). SQL that differs between the
//! dialects lives in a few associated constants of each backend (`sqlite.rs`,
//! `postgres.rs`); what both share when they open a database is in `connect.rs`. What the
//! methods take (page and token writes, claims) is in `types.rs`. Migrations are
//! embedded from `migrations/sqlite` and `migrations/postgres` (same version numbers)
//! and run by [`Store::connect`].

#[macro_use]
mod rows;
mod connect;
mod error;
mod health;
mod jobs;
mod postgres;
mod reconcile;
mod records;
mod scheduling;
mod sqlite;
mod tenants;
mod types;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use connect::invalid_url;
pub use error::StoreError;
pub use health::{HealthChange, Outage, StoreHealth};
pub use intelligence::{ContributionFilter, Fold, Folded, NewContribution};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use types::*;
pub use users::NOT_A_MEMBER_REASON;
pub use webhooks::{InboxRow, NewDelivery, WAKE_CHANNEL};

use crate::model::{
    AuditEntry, ClaimedJob, ConnectionRow, ConnectionStatus, DeadLetterRow, EntityName, JobCounts, JobFilter, JobRow,
    Owner, PageOutcome, PauseScope, ProviderId, ReconcileCounts, RecordRow, RunOutcome, RunRow, RunStats, RunTrigger,
    SealedBlob, StreamName, TenantId, TenantRow, TriggerKind,
};

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

// After `dispatch!`, which they use.
mod gauges;
mod intelligence;
mod responsibilities;
mod tokens;
mod users;
mod webhooks;

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

    /// Opens an existing store, for commands that only read: like [`Store::connect`], but
    /// a missing SQLite file is an error naming the URL instead of a new empty database
    /// (a missing PostgreSQL database is an error either way).
    pub async fn connect_existing(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect_existing(url).await?))
        } else {
            Self::connect(url).await
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
    ///   credentials) or `pending` (without), and their jobs are enabled again — except
    ///   user connections whose owner is no longer a member of the tenant; other
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

    /// Every tenant's id, in order (without the rows: a preset snapshot each).
    pub async fn list_tenant_ids(&self) -> Result<Vec<TenantId>, StoreError> {
        dispatch!(self.list_tenant_ids())
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

    /// `owner`'s connection to `provider` at the tenant.
    pub async fn get_connection(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        dispatch!(self.get_connection(tenant, provider, owner))
    }

    /// Stores sealed credentials on `owner`'s connection to `provider` at the tenant and
    /// writes `audit`, in one transaction. Increments `credentials_version`; a `pending`,
    /// `needs_reauth` or `error` connection becomes `connected`, a `disabled` one stays.
    ///
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn set_credentials(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        sealed: &SealedBlob,
        audit: &AuditEntry,
    ) -> Result<ConnectionRow, StoreError> {
        dispatch!(self.set_credentials(tenant, provider, owner, sealed, audit))
    }

    /// The sealed credentials of `owner`'s connection to `provider` at the tenant and
    /// their version; `None` if there are none.
    pub async fn get_credentials(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
    ) -> Result<Option<(SealedBlob, i64)>, StoreError> {
        dispatch!(self.get_credentials(tenant, provider, owner))
    }

    /// Sets the status (and why) of `owner`'s connection to `provider` at the tenant.
    /// Jobs are not touched.
    ///
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn set_connection_status(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        status: ConnectionStatus,
        reason: Option<&str>,
    ) -> Result<ConnectionRow, StoreError> {
        dispatch!(self.set_connection_status(tenant, provider, owner, status, reason))
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

    // --- scheduling ----------------------------------------------------------------------

    /// Makes the tenant's jobs match `desired` (one per enabled connection × stream), in
    /// one transaction:
    ///
    /// - a missing job is created with `next_run_at = next_due(schedule, job id)`;
    /// - a job whose schedule changed (or that has no `next_run_at`) gets the new
    ///   schedule and `next_due`'s time;
    /// - a disabled job that is desired again is enabled, keeping its `next_run_at`
    ///   (if that is past, it runs soon, catching up);
    /// - every enabled job of the tenant not in `desired` is disabled.
    ///
    /// Cursors, pauses, leases and failure counts are never touched. Jobs stay disabled
    /// while their connection is `disabled` (as in [`Store::ensure_job`]). A job running
    /// during a schedule change completes with the next run time its worker computed
    /// from the old schedule; the new one applies from then on.
    ///
    /// [`StoreError::NotFound`] if the tenant or a connection is not the tenant's,
    /// [`StoreError::Conflict`] if `desired` names a (connection, stream) twice.
    pub async fn reconcile_jobs(
        &self,
        tenant: &TenantId,
        desired: &[DesiredJob],
        next_due: &(dyn Fn(&str, i64) -> Option<DateTime<Utc>> + Sync),
    ) -> Result<ReconcileCounts, StoreError> {
        dispatch!(self.reconcile_jobs(tenant, desired, next_due))
    }

    /// Leases up to `req.limit` claimable jobs to `req.owner` until `req.lease_until`, in
    /// one transaction: triggered jobs first (oldest trigger first), then due jobs
    /// (earliest `next_run_at` first), skipping `req.exclude`. A job is claimable when it
    /// is enabled, not paused (nor its connection or tenant), its connection is
    /// `connected` or `error`, nobody holds an unexpired lease on it (an expired lease
    /// is taken over: [`ClaimedJob::reclaimed`]), and it is triggered or due at
    /// `req.now`. Each claim increments `attempts` and sets `claimed_at = req.now`.
    ///
    /// Concurrent claimers (threads, processes, replicas on one PostgreSQL) never get
    /// the same job: SQLite claims inside `BEGIN IMMEDIATE`, PostgreSQL with
    /// `FOR UPDATE SKIP LOCKED`. A batch may hold several jobs of one tenant or
    /// provider; a caller enforcing per-tenant caps releases the surplus with
    /// [`Store::release_lease`].
    pub async fn claim_due_jobs(&self, req: &ClaimRequest<'_>) -> Result<Vec<ClaimedJob>, StoreError> {
        dispatch!(self.claim_due_jobs(req))
    }

    /// Extends the lease `owner` holds on the tenant's job to `until` (the heartbeat).
    /// An expired lease that nobody took over can still be renewed.
    ///
    /// [`StoreError::LeaseLost`] if `owner` no longer holds it, `NotFound` if the job is
    /// not the tenant's.
    pub async fn renew_lease(
        &self,
        tenant: &TenantId,
        job_id: i64,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.renew_lease(tenant, job_id, owner, until))
    }

    /// Takes the lease on one job for a run outside the scheduler (`tributary sync`),
    /// whether or not it is due: `owner` holds it until `lease_until` (renew it with
    /// [`Store::renew_lease`], give it back with [`Store::release_lease`]). An expired
    /// lease is taken over (`reclaimed_from` names its holder), and so is a live lease
    /// held by `dead_holder` (a holder the caller knows has died).
    ///
    /// [`StoreError::LeaseHeld`] if another owner's lease is live, `NotFound` if the job is
    /// not the tenant's.
    pub async fn claim_job(
        &self,
        tenant: &TenantId,
        job_id: i64,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        dead_holder: Option<&str>,
    ) -> Result<JobRow, StoreError> {
        dispatch!(self.claim_job(tenant, job_id, owner, now, lease_until, dead_holder))
    }

    /// Ends `owner`'s run of the tenant's job: writes `next_run_at`, the failure streak
    /// and the last run, clears the lease and resets `attempts`. The trigger the run
    /// served is cleared; one requested after the claim stays pending, so the job runs
    /// again. Returns the job as written.
    ///
    /// Fenced: [`StoreError::LeaseLost`] (and nothing written) if `owner` no longer
    /// holds the lease, `NotFound` if the job is not the tenant's.
    pub async fn complete_job(
        &self,
        tenant: &TenantId,
        job_id: i64,
        owner: &str,
        completion: &JobCompletion,
    ) -> Result<JobRow, StoreError> {
        dispatch!(self.complete_job(tenant, job_id, owner, completion))
    }

    /// Gives up `owner`'s lease on the tenant's job without finishing it (drain, or a
    /// claim beyond a concurrency cap): `next_run_at` and any trigger stay, so the job
    /// is claimable again at once; the claim's `attempts` increment is undone. `false`
    /// if `owner` did not hold the lease.
    pub async fn release_lease(&self, tenant: &TenantId, job_id: i64, owner: &str) -> Result<bool, StoreError> {
        dispatch!(self.release_lease(tenant, job_id, owner))
    }

    /// Releases every lease `owner` holds (shutdown), like [`Store::release_lease`].
    /// Returns how many.
    pub async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        dispatch!(self.release_all(owner))
    }

    /// When the scheduler should look again: `now` if a claimable job is triggered or
    /// due; otherwise the earliest `next_run_at` of runnable unleased jobs, or the
    /// earliest expiry of a lease on a runnable job (after which it may be reclaimed);
    /// `None` if nothing is scheduled. Paused, disabled and unconnected jobs and
    /// `exclude` are left out. Never earlier than `now`. Reads a few index entries, not
    /// every job.
    pub async fn next_due_at(
        &self,
        now: DateTime<Utc>,
        exclude: &Exclusions<'_>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        dispatch!(self.next_due_at(now, exclude))
    }

    /// Requests a `kind` run at `now` of every runnable job (enabled, not paused, its
    /// connection `connected` or `error`) that `filter` matches, and returns them. Such
    /// jobs are claimed ahead of due ones. A job already triggered keeps its earlier
    /// request; a running job whose trigger its run is serving gets a new one (it runs
    /// again after this run).
    pub async fn trigger_jobs(
        &self,
        filter: &JobFilter,
        kind: TriggerKind,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobRow>, StoreError> {
        dispatch!(self.trigger_jobs(filter, kind, now))
    }

    /// Pauses or resumes a tenant, a connection (all the tenant's connections to the
    /// provider) or one job. Paused jobs are not claimed; running ones finish.
    ///
    /// [`StoreError::NotFound`] if the target does not exist.
    pub async fn set_paused(&self, scope: &PauseScope, paused: bool) -> Result<(), StoreError> {
        dispatch!(self.set_paused(scope, paused))
    }

    /// Job totals at `now`; `overdue` counts claimable jobs due (or triggered) more than
    /// `overdue_grace` before `now`.
    pub async fn job_counts(&self, now: DateTime<Utc>, overdue_grace: Duration) -> Result<JobCounts, StoreError> {
        dispatch!(self.job_counts(now, overdue_grace))
    }

    /// Up to `limit` jobs that `filter` matches, by tenant, provider and stream.
    pub async fn list_jobs_filtered(&self, filter: &JobFilter, limit: i64) -> Result<Vec<JobRow>, StoreError> {
        dispatch!(self.list_jobs_filtered(filter, limit))
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
        dispatch!(self.start_run(tenant, job_id, trigger, None))
    }

    /// [`Self::start_run`] naming the replica (process) that runs it.
    pub async fn start_run_by(
        &self,
        tenant: &TenantId,
        job_id: i64,
        trigger: RunTrigger,
        replica: &str,
    ) -> Result<RunRow, StoreError> {
        dispatch!(self.start_run(tenant, job_id, trigger, Some(replica)))
    }

    /// Sets the note of the tenant's run (how it began: a resumed pass, an expired
    /// position).
    pub async fn set_run_note(&self, tenant: &TenantId, run_id: Uuid, note: &str) -> Result<(), StoreError> {
        dispatch!(self.set_run_note(tenant, run_id, note))
    }

    /// The job's resumable position (JSON, as the last page write saved it), if a pass
    /// is under way. [`StoreError::NotFound`] if the job is not the tenant's.
    pub async fn job_position(&self, tenant: &TenantId, job_id: i64) -> Result<Option<String>, StoreError> {
        dispatch!(self.job_position(tenant, job_id))
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

    /// Closes the job's runs still marked `running` as `abandoned` with `error`, their
    /// `cursor_after` the job's committed cursor: runs of a process (daemon worker or
    /// `tributary sync`) that died holding the job's lease. Call it only while holding the
    /// job's lease, before starting a run; returns how many runs were closed.
    pub async fn close_abandoned_runs(&self, tenant: &TenantId, job_id: i64, error: &str) -> Result<u64, StoreError> {
        dispatch!(self.close_abandoned_runs(tenant, job_id, error))
    }

    /// Closes as `abandoned` every run still marked `running` whose job has no live lease
    /// holder: no lease at all, or another owner's lease that expired at or before
    /// `expired_before`. Runs under `seen_by`'s own leases are left to `seen_by`, which
    /// knows whether they are alive. Returns how many runs were closed.
    pub async fn close_expired_runs(&self, expired_before: DateTime<Utc>, seen_by: &str) -> Result<u64, StoreError> {
        dispatch!(self.close_expired_runs(expired_before, seen_by))
    }

    /// A run: any tenant's with `None` (operator scope), only that tenant's with `Some`.
    pub async fn get_run(&self, run_id: Uuid, tenant: Option<&TenantId>) -> Result<Option<RunRow>, StoreError> {
        dispatch!(self.get_run(run_id, tenant))
    }

    /// Answers when the store can run a statement (readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// Up to `limit` finished runs of one connection's jobs, newest first.
    pub async fn connection_runs(
        &self,
        tenant: &TenantId,
        connection_id: i64,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        dispatch!(self.connection_runs(tenant, connection_id, limit))
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
