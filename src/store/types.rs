//! What the store's methods take (tenant states, page and token writes, claims,
//! job completions) and the token-refresh view of a connection: plain data exchanged
//! only between the store and its callers; no database types leak out. The domain
//! rows the store returns are `crate::model`'s.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{ConnectionStatus, EntityName, PresetName, ProviderId, SealedBlob, StreamName, TenantId};

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
    /// Marks every record of the page seen now (`seen_at`), changed or not: the page
    /// belongs to a stream that sweeps.
    pub mark_seen: bool,
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
