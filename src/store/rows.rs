//! How rows are read, once for both backends: the column list of each model row (the
//! `*_columns!` macros, in `SELECT` order), which `sqlx::query_as` decodes straight into
//! the model type (`#[derive(sqlx::FromRow)]` there; identifiers and statuses are TEXT,
//! parsed again on the way out by `model::column`). A value that does not decode is
//! [`StoreError::Corrupt`] (see [`super::error::db`]), never a panic. Also: the time and
//! hash of what is written, and the checks of single values read outside a row.

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};

use super::error::StoreError;

/// Columns of [`TenantRow`](crate::model::TenantRow), in `SELECT` order.
macro_rules! tenant_columns {
    () => {
        "id, name, subdomain, timezone, preset, preset_revision, preset_snapshot, paused, \
         created_at, updated_at"
    };
}

/// Columns of [`ConnectionRow`](crate::model::ConnectionRow); never the sealed credentials themselves.
macro_rules! connection_columns {
    () => {
        "id, tenant_id, provider, owner_user, owner_role, status, status_reason, \
         credentials IS NOT NULL AS has_credentials, credentials_key_id, \
         credentials_version, credentials_updated_at, paused, schedule, created_at, updated_at"
    };
}

/// Columns of [`JobRow`](crate::model::JobRow).
macro_rules! job_columns {
    () => {
        "id, tenant_id, connection_id, provider, stream, schedule, next_run_at, cursor, \
         lease_owner, lease_expires_at, attempts, consecutive_failures, paused, enabled, \
         trigger_requested_at, trigger_kind, claimed_at, reclaimed_from, last_run_id, \
         created_at, updated_at"
    };
}

/// Columns of [`RecordRow`](crate::model::RecordRow).
macro_rules! record_columns {
    () => {
        "tenant_id, entity, provider, external_id, data, content_hash, first_seen, \
         last_synced, deleted_at"
    };
}

/// Columns of [`RunRow`](crate::model::RunRow).
macro_rules! run_columns {
    () => {
        "id, tenant_id, job_id, provider, stream, \"trigger\", started_at, finished_at, \
         outcome, cursor_before, cursor_after, fetched, inserted, updated, unchanged, \
         filtered, dead_lettered, pages, http_calls, retries, rate_limit_waits, \
         rate_limit_wait_ms, error, http_p50_ms, http_p95_ms, http_p99_ms, error_class, \
         error_status, error_endpoint, replica, note, bytes_received, http_errors"
    };
}

/// Columns of [`UserRow`](crate::model::UserRow).
macro_rules! user_columns {
    () => {
        "id, name, email, created_at, updated_at"
    };
}

/// Columns of [`MembershipRow`](crate::model::MembershipRow).
macro_rules! membership_columns {
    () => {
        "tenant_id, user_id, role, created_at, updated_at"
    };
}

/// Columns of [`AuditEntry`](crate::model::AuditEntry).
macro_rules! audit_columns {
    () => {
        "at, actor, scope, action, tenant_id, subject, outcome, message, details"
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
pub(crate) fn content_hash(data: &serde_json::Value) -> String {
    content_hash_of_text(&data.to_string())
}

/// Hex of the first 16 bytes of SHA-256 over a record's compact JSON text, as it is
/// stored: the page write serializes each record once, hashes that text and binds it.
pub(crate) fn content_hash_of_text(json: &str) -> String {
    let digest = Sha256::digest(json.as_bytes());
    hex::encode(&digest[..16])
}

/// Converts every row of a result set that needs more than decoding (a claim).
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
}
