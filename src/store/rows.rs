//! Raw rows as both backends return them, and their validation into the domain rows of
//! [`super::types`]. Identifiers and enums are stored as TEXT and parsed again on the
//! way out; a value that does not parse is [`StoreError::Corrupt`], never a panic.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use uuid::Uuid;

use super::error::{StoreError, corrupt};
use crate::model::{
    AuditEntry, ConnectionRow, ConnectionStatus, EntityName, IdError, JobRow, MembershipRow, PresetName, ProviderId,
    RecordRow, RoleName, RunOutcome, RunRow, RunStats, RunTrigger, StreamName, TenantId, TenantRow, TriggerKind,
    UserId, UserRow,
};

/// Columns of [`RawTenant`], in `SELECT` order.
macro_rules! tenant_columns {
    () => {
        "id, name, subdomain, timezone, preset, preset_revision, preset_snapshot, paused, \
         created_at, updated_at"
    };
}

/// Columns of [`RawConnection`]; never the sealed credentials themselves.
macro_rules! connection_columns {
    () => {
        "id, tenant_id, provider, owner_user, owner_role, status, status_reason, \
         credentials IS NOT NULL AS has_credentials, credentials_key_id, \
         credentials_version, credentials_updated_at, paused, schedule, created_at, updated_at"
    };
}

/// Columns of [`RawJob`].
macro_rules! job_columns {
    () => {
        "id, tenant_id, connection_id, provider, stream, schedule, next_run_at, cursor, \
         lease_owner, lease_expires_at, attempts, consecutive_failures, paused, enabled, \
         trigger_requested_at, trigger_kind, claimed_at, reclaimed_from, last_run_id, \
         created_at, updated_at"
    };
}

/// Columns of [`RawRecord`].
macro_rules! record_columns {
    () => {
        "tenant_id, entity, provider, external_id, data, content_hash, first_seen, \
         last_synced, deleted_at"
    };
}

/// Columns of [`RawRun`].
macro_rules! run_columns {
    () => {
        "id, tenant_id, job_id, provider, stream, \"trigger\", started_at, finished_at, \
         outcome, cursor_before, cursor_after, fetched, inserted, updated, unchanged, \
         filtered, dead_lettered, pages, http_calls, retries, rate_limit_waits, \
         rate_limit_wait_ms, error, http_p50_ms, http_p95_ms, http_p99_ms, error_class, \
         error_status, error_endpoint, replica, note"
    };
}

/// Columns of [`RawUser`].
macro_rules! user_columns {
    () => {
        "id, name, email, created_at, updated_at"
    };
}

/// Columns of [`RawMembership`].
macro_rules! membership_columns {
    () => {
        "tenant_id, user_id, role, created_at, updated_at"
    };
}

/// Columns of [`RawAudit`].
macro_rules! audit_columns {
    () => {
        "at, actor, action, tenant_id, subject, details"
    };
}

/// The current time at the precision both backends store (microseconds).
pub(crate) fn now() -> DateTime<Utc> {
    stored(Utc::now())
}

/// `at` truncated to microseconds, so what is read back equals what was written.
pub(crate) fn stored(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// [`content_hash_of_text`] of `data`'s compact JSON text (the same bytes
/// `serde_json::to_vec` produces; `Display` is used because it cannot fail).
#[cfg(test)]
pub(crate) fn content_hash(data: &Value) -> String {
    content_hash_of_text(&data.to_string())
}

/// Hex of the first 16 bytes of SHA-256 over a record's compact JSON text, as it is
/// stored: the page write serializes each record once, hashes that text and binds it.
pub(crate) fn content_hash_of_text(json: &str) -> String {
    let digest = Sha256::digest(json.as_bytes());
    hex::encode(&digest[..16])
}

pub(crate) fn id<T>(table: &str, value: &str, parse: fn(&str) -> Result<T, IdError>) -> Result<T, StoreError> {
    parse(value).map_err(|e| corrupt(format_args!("{table}: {e}")))
}

pub(crate) fn status<T>(table: &str, kind: &str, value: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(value).ok_or_else(|| corrupt(format_args!("{table}: unknown {kind} `{value}`")))
}

/// A `tenants` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawTenant {
    id: String,
    name: String,
    subdomain: String,
    timezone: String,
    preset: String,
    preset_revision: String,
    preset_snapshot: Json<Value>,
    paused: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RawTenant> for TenantRow {
    type Error = StoreError;

    fn try_from(raw: RawTenant) -> Result<Self, StoreError> {
        Ok(Self {
            id: id("tenants", &raw.id, TenantId::parse)?,
            name: raw.name,
            subdomain: raw.subdomain,
            timezone: raw.timezone,
            preset: id("tenants", &raw.preset, PresetName::parse)?,
            preset_revision: raw.preset_revision,
            preset_snapshot: raw.preset_snapshot.0,
            paused: raw.paused,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

/// An `overrides` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawOverride {
    provider: String,
    layer: Json<Value>,
}

impl TryFrom<RawOverride> for (ProviderId, Value) {
    type Error = StoreError;

    fn try_from(raw: RawOverride) -> Result<Self, StoreError> {
        Ok((id("overrides", &raw.provider, ProviderId::parse)?, raw.layer.0))
    }
}

/// A `connections` row as stored, without secret material.
#[derive(sqlx::FromRow)]
pub(crate) struct RawConnection {
    id: i64,
    tenant_id: String,
    provider: String,
    owner_user: String,
    owner_role: Option<String>,
    status: String,
    status_reason: Option<String>,
    has_credentials: bool,
    credentials_key_id: Option<String>,
    credentials_version: i64,
    credentials_updated_at: Option<DateTime<Utc>>,
    paused: bool,
    schedule: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RawConnection> for ConnectionRow {
    type Error = StoreError;

    fn try_from(raw: RawConnection) -> Result<Self, StoreError> {
        Ok(Self {
            id: raw.id,
            tenant_id: id("connections", &raw.tenant_id, TenantId::parse)?,
            provider: id("connections", &raw.provider, ProviderId::parse)?,
            owner_user: owner_user("connections", &raw.owner_user)?,
            owner_role: raw.owner_role.map(|r| id("connections", &r, RoleName::parse)).transpose()?,
            schedule: raw.schedule,
            status: status("connections", "connection status", &raw.status, ConnectionStatus::parse)?,
            status_reason: raw.status_reason,
            has_credentials: raw.has_credentials,
            credentials_key_id: raw.credentials_key_id,
            credentials_version: raw.credentials_version,
            credentials_updated_at: raw.credentials_updated_at,
            paused: raw.paused,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

/// `connections.owner_user` as stored: empty for the company, a user id otherwise.
pub(crate) fn owner_user(table: &str, value: &str) -> Result<Option<UserId>, StoreError> {
    (!value.is_empty()).then(|| id(table, value, UserId::parse)).transpose()
}

/// A `users` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawUser {
    pub(crate) id: String,
    name: String,
    email: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl RawUser {
    /// The user with `memberships` (already theirs).
    pub(crate) fn into_row(self, memberships: Vec<MembershipRow>) -> Result<UserRow, StoreError> {
        Ok(UserRow {
            id: id("users", &self.id, UserId::parse)?,
            name: self.name,
            email: self.email,
            memberships,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A `memberships` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawMembership {
    tenant_id: String,
    user_id: String,
    role: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RawMembership> for MembershipRow {
    type Error = StoreError;

    fn try_from(raw: RawMembership) -> Result<Self, StoreError> {
        Ok(Self {
            tenant_id: id("memberships", &raw.tenant_id, TenantId::parse)?,
            user_id: id("memberships", &raw.user_id, UserId::parse)?,
            role: id("memberships", &raw.role, RoleName::parse)?,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

/// A `jobs` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawJob {
    id: i64,
    tenant_id: String,
    connection_id: i64,
    provider: String,
    stream: String,
    schedule: String,
    next_run_at: Option<DateTime<Utc>>,
    cursor: Option<String>,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    attempts: i64,
    consecutive_failures: i64,
    paused: bool,
    enabled: bool,
    trigger_requested_at: Option<DateTime<Utc>>,
    trigger_kind: Option<String>,
    claimed_at: Option<DateTime<Utc>>,
    reclaimed_from: Option<String>,
    last_run_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RawJob> for JobRow {
    type Error = StoreError;

    fn try_from(raw: RawJob) -> Result<Self, StoreError> {
        Ok(Self {
            id: raw.id,
            tenant_id: id("jobs", &raw.tenant_id, TenantId::parse)?,
            connection_id: raw.connection_id,
            provider: id("jobs", &raw.provider, ProviderId::parse)?,
            stream: id("jobs", &raw.stream, StreamName::parse)?,
            schedule: raw.schedule,
            next_run_at: raw.next_run_at,
            cursor: raw.cursor,
            lease_owner: raw.lease_owner,
            lease_expires_at: raw.lease_expires_at,
            attempts: raw.attempts,
            consecutive_failures: raw.consecutive_failures,
            paused: raw.paused,
            enabled: raw.enabled,
            trigger_requested_at: raw.trigger_requested_at,
            trigger_kind: raw
                .trigger_kind
                .map(|k| status("jobs", "trigger kind", &k, TriggerKind::parse))
                .transpose()?,
            claimed_at: raw.claimed_at,
            reclaimed_from: raw.reclaimed_from,
            last_run_id: raw.last_run_id,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

/// A `records` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawRecord {
    tenant_id: String,
    entity: String,
    provider: String,
    external_id: String,
    data: Json<Value>,
    content_hash: String,
    first_seen: DateTime<Utc>,
    last_synced: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

impl TryFrom<RawRecord> for RecordRow {
    type Error = StoreError;

    fn try_from(raw: RawRecord) -> Result<Self, StoreError> {
        Ok(Self {
            tenant_id: id("records", &raw.tenant_id, TenantId::parse)?,
            entity: id("records", &raw.entity, EntityName::parse)?,
            provider: id("records", &raw.provider, ProviderId::parse)?,
            external_id: raw.external_id,
            data: raw.data.0,
            content_hash: raw.content_hash,
            first_seen: raw.first_seen,
            last_synced: raw.last_synced,
            deleted_at: raw.deleted_at,
        })
    }
}

/// A `runs` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawRun {
    id: Uuid,
    tenant_id: String,
    job_id: i64,
    provider: String,
    stream: String,
    trigger: String,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    outcome: String,
    cursor_before: Option<String>,
    cursor_after: Option<String>,
    fetched: i64,
    inserted: i64,
    updated: i64,
    unchanged: i64,
    filtered: i64,
    dead_lettered: i64,
    pages: i64,
    http_calls: i64,
    retries: i64,
    rate_limit_waits: i64,
    rate_limit_wait_ms: i64,
    error: Option<String>,
    http_p50_ms: Option<f64>,
    http_p95_ms: Option<f64>,
    http_p99_ms: Option<f64>,
    error_class: Option<String>,
    error_status: Option<i64>,
    error_endpoint: Option<String>,
    replica: Option<String>,
    note: Option<String>,
}

impl TryFrom<RawRun> for RunRow {
    type Error = StoreError;

    fn try_from(raw: RawRun) -> Result<Self, StoreError> {
        Ok(Self {
            id: raw.id,
            tenant_id: id("runs", &raw.tenant_id, TenantId::parse)?,
            job_id: raw.job_id,
            provider: id("runs", &raw.provider, ProviderId::parse)?,
            stream: id("runs", &raw.stream, StreamName::parse)?,
            trigger: status("runs", "run trigger", &raw.trigger, RunTrigger::parse)?,
            started_at: raw.started_at,
            finished_at: raw.finished_at,
            outcome: status("runs", "run outcome", &raw.outcome, RunOutcome::parse)?,
            cursor_before: raw.cursor_before,
            stats: RunStats {
                fetched: raw.fetched,
                inserted: raw.inserted,
                updated: raw.updated,
                unchanged: raw.unchanged,
                filtered: raw.filtered,
                dead_lettered: raw.dead_lettered,
                pages: raw.pages,
                http_calls: raw.http_calls,
                retries: raw.retries,
                rate_limit_waits: raw.rate_limit_waits,
                rate_limit_wait_ms: raw.rate_limit_wait_ms,
                http_p50_ms: raw.http_p50_ms,
                http_p95_ms: raw.http_p95_ms,
                http_p99_ms: raw.http_p99_ms,
                cursor_after: raw.cursor_after,
                error: raw.error,
                error_class: raw.error_class,
                error_status: raw.error_status,
                error_endpoint: raw.error_endpoint,
                total: None,
                replica: raw.replica,
                note: raw.note,
            },
        })
    }
}

/// An `audit_log` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawAudit {
    at: DateTime<Utc>,
    actor: String,
    action: String,
    tenant_id: Option<String>,
    subject: Option<String>,
    details: Json<Value>,
}

impl TryFrom<RawAudit> for AuditEntry {
    type Error = StoreError;

    fn try_from(raw: RawAudit) -> Result<Self, StoreError> {
        Ok(Self {
            at: raw.at,
            actor: raw.actor,
            action: raw.action,
            tenant_id: raw.tenant_id.map(|t| id("audit_log", &t, TenantId::parse)).transpose()?,
            subject: raw.subject,
            details: raw.details.0,
        })
    }
}

/// Validates every raw row of a result set.
pub(crate) fn convert_all<R, T>(raws: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    raws.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_is_over_the_compact_json_bytes() {
        let data = serde_json::json!({"b": 1, "a": [true, null, "x"]});
        let bytes = serde_json::to_vec(&data).unwrap();
        assert_eq!(data.to_string().as_bytes(), bytes.as_slice());
        let hash = content_hash(&data);
        assert_eq!(hash.len(), 32);
        assert_eq!(hash, hex::encode(&Sha256::digest(&bytes)[..16]));
    }

    #[test]
    fn corrupt_identifiers_are_errors_not_panics() {
        let err = id("tenants", "Not An Id", TenantId::parse).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        let err = status("runs", "run outcome", "exploded", RunOutcome::parse).unwrap_err();
        assert!(err.to_string().contains("exploded"), "{err}");
    }
}
