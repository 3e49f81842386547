//! Rows and inputs of the store contract. Plain data; no database types leak out.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::model::{
    ConnectionStatus, EntityName, PresetName, ProviderId, RoleName, RunOutcome, RunTrigger, StreamName, TenantId,
    TriggerKind, UserId,
};

/// A tenant and the preset revision it pinned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub subdomain: String,
    /// IANA time zone name, e.g. `Europe/London`.
    pub timezone: String,
    pub preset: PresetName,
    /// Revision of the preset the snapshot was taken at.
    pub preset_revision: String,
    /// The resolved preset defaults at `preset_revision` (provider → layer, JSON).
    pub preset_snapshot: Value,
    /// A paused tenant's jobs are not claimed (running ones finish).
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Everything `Store::create_tenant` / `Store::update_tenant` write in one transaction.
#[derive(Debug, Clone)]
pub struct TenantState {
    pub id: TenantId,
    pub name: String,
    pub subdomain: String,
    pub timezone: String,
    pub preset: PresetName,
    pub preset_revision: String,
    pub preset_snapshot: Value,
    /// Per-provider override layers (only the differences from the preset). Replaces all
    /// previously stored overrides of the tenant.
    pub overrides: Vec<(ProviderId, Value)>,
    /// Providers whose connection must exist and be enabled. Every other connection of
    /// the tenant is set to `disabled` (its records and jobs' cursors stay).
    pub enabled_providers: Vec<ProviderId>,
}

/// Who owns a connection: the company (tenant) itself, or one of its users (a "user
/// integration"). Every store function that addresses one connection takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner<'a> {
    /// The tenant's own connection to a provider (`connections.owner_user = ''`).
    Company,
    /// A user's own connection to a provider at the tenant.
    User(&'a UserId),
}

impl<'a> Owner<'a> {
    /// `Company` for `None`.
    pub fn of(user: Option<&'a UserId>) -> Self {
        user.map_or(Self::Company, Self::User)
    }

    /// The owning user, if any.
    pub fn user(self) -> Option<&'a UserId> {
        match self {
            Self::Company => None,
            Self::User(user) => Some(user),
        }
    }

    /// The stored `connections.owner_user`: empty for the company.
    pub fn as_str(self) -> &'a str {
        self.user().map_or("", UserId::as_str)
    }
}

impl std::fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Company => f.write_str("the company"),
            Self::User(user) => write!(f, "user `{user}`"),
        }
    }
}

/// A connection (tenant × provider × optional owner). Never carries secret material:
/// sealed credentials are read through `get_credentials`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionRow {
    pub id: i64,
    pub tenant_id: TenantId,
    pub provider: ProviderId,
    /// Owning user; `None` for a company-owned connection.
    pub owner_user: Option<UserId>,
    /// The owning user's role at the tenant (kept in step with the membership; `None`
    /// for company connections and after the membership was removed).
    pub owner_role: Option<RoleName>,
    /// A user connection's own schedule; `None`: the tenant's effective schedule.
    pub schedule: Option<String>,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    pub has_credentials: bool,
    /// Key id of the master key that sealed the stored credentials.
    pub credentials_key_id: Option<String>,
    /// Incremented on every credential write (compare-and-swap for token refresh).
    pub credentials_version: i64,
    pub credentials_updated_at: Option<DateTime<Utc>>,
    /// A paused connection's jobs are not claimed (running ones finish).
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ConnectionRow {
    /// Who owns the connection.
    pub fn owner(&self) -> Owner<'_> {
        Owner::of(self.owner_user.as_ref())
    }
}

/// A person who uses tributary at one or more companies, with their memberships.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRow {
    pub id: UserId,
    pub name: String,
    pub email: Option<String>,
    /// By tenant; see `Store::get_user` and `Store::list_users` for which ones.
    pub memberships: Vec<MembershipRow>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user's membership of a company (tenant), with the role they have there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipRow {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub role: RoleName,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an idempotent write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Saved {
    Created,
    Updated,
    /// Already as asked; nothing was written (not even the audit entry).
    Unchanged,
}

/// Sealed (encrypted) bytes plus the id of the key that sealed them.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedBlob(key {}, {} bytes)", self.key_id, self.bytes.len())
    }
}

/// A connection's credentials and shared access token as a token refresh sees them
/// ([`super::Store::get_auth`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthRow {
    /// The sealed credentials; `None` if none are stored.
    pub credentials: Option<SealedBlob>,
    pub credentials_version: i64,
    pub status: ConnectionStatus,
    /// The sealed access token, only if it was obtained with the current credentials.
    pub auth_state: Option<SealedBlob>,
    /// Grows with every token stored: a runner that read serial S and finds another
    /// knows someone refreshed since.
    pub auth_state_serial: i64,
    /// The provider refused the current credentials' grant; they must not be spent again.
    pub refused: bool,
    /// Who holds the refresh lease, and until when.
    pub refresh_lock_owner: Option<String>,
    pub refresh_lock_until: Option<DateTime<Utc>>,
}

/// A newly obtained token for [`super::Store::save_token`].
#[derive(Debug, Clone)]
pub struct TokenWrite<'a> {
    /// The refresh lease holder; the write is fenced on it.
    pub lock_owner: &'a str,
    /// The credentials version the token was obtained with (compare-and-swap).
    pub expected_version: i64,
    /// New sealed credentials when the provider rotated the refresh token.
    pub credentials: Option<&'a SealedBlob>,
    /// The sealed token.
    pub auth_state: &'a SealedBlob,
    /// When the token expires, if it does.
    pub expires_at: Option<DateTime<Utc>>,
}

/// One (connection, stream) job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub tenant_id: TenantId,
    pub connection_id: i64,
    pub provider: ProviderId,
    pub stream: StreamName,
    pub schedule: String,
    pub next_run_at: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub consecutive_failures: i64,
    pub paused: bool,
    pub enabled: bool,
    /// When a manual or webhook trigger asked for a run ahead of the schedule.
    pub trigger_requested_at: Option<DateTime<Utc>>,
    pub trigger_kind: Option<TriggerKind>,
    /// When the current lease was taken.
    pub claimed_at: Option<DateTime<Utc>>,
    /// The owner whose expired lease the current claim replaced.
    pub reclaimed_from: Option<String>,
    pub last_run_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One normalized record, as the sync writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordInput {
    pub external_id: String,
    pub data: Value,
}

/// A page of records of one entity from one provider, plus the job cursor to commit.
#[derive(Debug, Clone)]
pub struct PageWrite<'a> {
    pub entity: &'a EntityName,
    pub provider: &'a ProviderId,
    pub records: &'a [RecordInput],
    /// The job whose cursor moves with this page.
    pub job_id: i64,
    /// `None` leaves the cursor as it is.
    pub cursor: Option<&'a str>,
    /// When set, the cursor write is fenced on this lease owner.
    pub lease_owner: Option<&'a str>,
    /// Records of this page that could not be mapped, stored in the same transaction.
    pub dead_letters: &'a [DeadLetterInput],
    /// What becomes of the job's resumable position (fenced like the cursor).
    pub position: PositionWrite<'a>,
    /// The run whose counters this page adds to, in the same transaction.
    pub run: Option<RunProgress>,
}

/// What a page write does to the job's resumable position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PositionWrite<'a> {
    /// Leaves it as it is.
    #[default]
    Keep,
    /// Stores this position (JSON): where the pass continues after this page.
    Save(&'a str),
    /// Clears it: the pass is complete.
    Clear,
}

/// What one page adds to its run's row, written with the page so that a run that dies
/// mid-way still says what it stored. Counts are this page's; `pages` and the HTTP
/// figures are the run's totals so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunProgress {
    pub run_id: Uuid,
    pub fetched: i64,
    pub filtered: i64,
    pub dead_lettered: i64,
    pub pages: i64,
    pub http_calls: i64,
    pub retries: i64,
    pub rate_limit_waits: i64,
    pub rate_limit_wait_ms: i64,
}

/// A record that failed mapping, with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetterInput {
    pub run_id: Option<Uuid>,
    pub stream: String,
    /// The provider's id of the record, when readable.
    pub source_id: Option<String>,
    pub reason: String,
    /// The record as the provider sent it.
    pub record: Box<serde_json::value::RawValue>,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterRow {
    pub id: i64,
    pub run_id: Option<Uuid>,
    pub provider: ProviderId,
    pub stream: String,
    pub entity: EntityName,
    pub source_id: Option<String>,
    pub reason: String,
    pub record: Value,
    pub created_at: DateTime<Utc>,
}

/// What a page write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PageOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordRow {
    pub tenant_id: TenantId,
    pub entity: EntityName,
    pub provider: ProviderId,
    pub external_id: String,
    pub data: Value,
    pub content_hash: String,
    pub first_seen: DateTime<Utc>,
    pub last_synced: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Counters and outcome written when a run finishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunStats {
    pub fetched: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub filtered: i64,
    pub dead_lettered: i64,
    pub pages: i64,
    pub http_calls: i64,
    pub retries: i64,
    pub rate_limit_waits: i64,
    pub rate_limit_wait_ms: i64,
    /// Response time percentiles of the run's HTTP requests, in milliseconds.
    pub http_p50_ms: Option<f64>,
    pub http_p95_ms: Option<f64>,
    pub http_p99_ms: Option<f64>,
    pub cursor_after: Option<String>,
    pub error: Option<String>,
    /// What kind of error failed the run (`auth`, `client`, `transient`, `rate_limited`,
    /// `config`, `data`, `store`, `cancelled`), and the HTTP status and endpoint involved.
    pub error_class: Option<String>,
    pub error_status: Option<i64>,
    pub error_endpoint: Option<String>,
    /// The number of records the read returns, as the API reports it: progress while
    /// the run runs (not stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// The replica (process) that ran it: the daemon's lease owner id, or
    /// `hostname-pid` for `tributary sync`.
    pub replica: Option<String>,
    /// How the run began, when there is something to say: which pass it resumed and
    /// from where, or that a saved position had expired and the pass restarted.
    pub note: Option<String>,
}

/// One run: the sync log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub job_id: i64,
    pub provider: ProviderId,
    pub stream: StreamName,
    pub trigger: RunTrigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub cursor_before: Option<String>,
    #[serde(flatten)]
    pub stats: RunStats,
}

/// One audit entry: who changed what, never secret values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// e.g. `cli:alice`, `daemon`, `ctl:operator`.
    pub actor: String,
    /// e.g. `tenant.create`, `tenant.rebase`, `credentials.set`.
    pub action: String,
    pub tenant_id: Option<TenantId>,
    /// What was acted on, e.g. `aptem` for a credential.
    pub subject: Option<String>,
    /// Non-secret details (what changed).
    pub details: Value,
}

// --- scheduling ------------------------------------------------------------------------

/// A job that should exist for a tenant: one per enabled (connection, stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredJob {
    /// The tenant's connection the job reads through.
    pub connection_id: i64,
    pub stream: StreamName,
    /// The schedule expression (`15m`, `daily at 02:00`, cron).
    pub schedule: String,
}

/// What `Store::reconcile_jobs` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileCounts {
    /// Jobs that did not exist.
    pub created: u64,
    /// Jobs whose schedule changed (or that had no next run time).
    pub updated: u64,
    /// Disabled jobs that are desired again (their cursor is kept).
    pub reenabled: u64,
    /// Enabled jobs no longer desired (stream removed, provider dropped).
    pub disabled: u64,
    /// Jobs already as desired.
    pub unchanged: u64,
}

impl std::fmt::Display for ReconcileCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} created, {} rescheduled, {} re-enabled, {} disabled, {} unchanged",
            self.created, self.updated, self.reenabled, self.disabled, self.unchanged
        )
    }
}

/// Tenants and providers a claim must skip (their concurrency caps are reached).
#[derive(Debug, Clone, Copy, Default)]
pub struct Exclusions<'a> {
    /// Tenants none of whose jobs may be claimed.
    pub tenants: &'a [TenantId],
    /// Providers none of whose jobs may be claimed.
    pub providers: &'a [ProviderId],
}

/// What `Store::claim_due_jobs` claims, for whom and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The worker (daemon instance) taking the leases.
    pub owner: &'a str,
    pub now: DateTime<Utc>,
    /// When the leases expire unless renewed.
    pub lease_until: DateTime<Utc>,
    /// At most this many jobs.
    pub limit: u32,
    pub exclude: Exclusions<'a>,
}

/// A job leased to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job as it is after the claim (lease fields set).
    pub job: JobRow,
    /// The tenant's time zone, in which its schedules are evaluated.
    pub timezone: Tz,
    /// `Scheduled`, or the pending trigger (`Manual`, `Webhook`) that made it run.
    pub trigger: RunTrigger,
    /// Whether the claim took over another worker's expired lease.
    pub reclaimed: bool,
    /// The user owning the job's connection; `None` for a company connection.
    pub owner: Option<UserId>,
}

/// How a finished run changes the job's failure streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failures {
    /// The run succeeded: the streak starts over.
    Reset,
    /// The run failed: one more failure in a row.
    Increment,
}

/// What a worker writes when its run ends (`Store::complete_job`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCompletion {
    /// The next scheduled (or backed-off) run; `None` never runs again unless triggered.
    pub next_run_at: Option<DateTime<Utc>>,
    pub failures: Failures,
    /// The run that just ended.
    pub last_run_id: Option<Uuid>,
}

/// Which jobs an operator command addresses; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub tenant: Option<TenantId>,
    pub provider: Option<ProviderId>,
    pub stream: Option<StreamName>,
}

/// What `Store::set_paused` pauses or resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseScope {
    /// Every job of the tenant.
    Tenant(TenantId),
    /// Every job of the tenant's connections to the provider.
    Connection(TenantId, ProviderId),
    /// One job of the tenant.
    Job(TenantId, i64),
}

impl std::fmt::Display for PauseScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tenant(t) => write!(f, "tenant {t}"),
            Self::Connection(t, p) => write!(f, "connection {t}/{p}"),
            Self::Job(t, job) => write!(f, "job {job} of tenant {t}"),
        }
    }
}

/// Job totals for `status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// Every job, enabled or not.
    pub total: i64,
    /// Jobs of enabled streams and providers.
    pub enabled: i64,
    /// Enabled jobs paused by themselves, their connection or their tenant.
    pub paused: i64,
    /// Enabled, unpaused jobs whose connection cannot run (`pending`, `needs_reauth`,
    /// `disabled`).
    pub blocked: i64,
    /// Claimable now: due or triggered, and not running.
    pub due: i64,
    /// Due (or triggered) for longer than the grace period.
    pub overdue: i64,
    /// Leased with an unexpired lease.
    pub running: i64,
}
