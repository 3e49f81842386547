//! Rows and inputs of the store contract. Plain data; no database types leak out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::model::{
    ConnectionStatus, EntityName, PresetName, ProviderId, RunOutcome, RunTrigger, StreamName, TenantId,
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

/// A connection (tenant × provider × optional owner). Never carries secret material:
/// sealed credentials are read through `get_credentials`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionRow {
    pub id: i64,
    pub tenant_id: TenantId,
    pub provider: ProviderId,
    /// Owning user; empty for a company-owned connection.
    pub owner_user: String,
    pub owner_role: Option<String>,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    pub has_credentials: bool,
    /// Key id of the master key that sealed the stored credentials.
    pub credentials_key_id: Option<String>,
    /// Incremented on every credential write (compare-and-swap for token refresh).
    pub credentials_version: i64,
    pub credentials_updated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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
}

/// A record that failed mapping, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterInput {
    pub run_id: Option<Uuid>,
    pub stream: String,
    /// The provider's id of the record, when readable.
    pub source_id: Option<String>,
    pub reason: String,
    pub record: Value,
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
    pub cursor_after: Option<String>,
    pub error: Option<String>,
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
