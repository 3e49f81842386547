//! The audit log as its readers filter it, and the one call that writes an entry
//! outside a larger write ([`Store::audit`]). Changes that write an entry in their own
//! transaction use `jobs::insert_audit`.

use chrono::{DateTime, Utc};

use super::Store;
use super::error::{StoreError, db};
use super::rows::stored;
use crate::model::{AuditEntry, TenantId};

/// Which audit entries to read: of one tenant, since a time, newest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub tenant: Option<TenantId>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self { tenant: None, since: None, limit: 100 }
    }
}

impl Store {
    /// Appends `entry` to the audit log (a control action, a denied request, a change made
    /// outside a store transaction). Never give it secret values.
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.record_audit(&entry).await
    }

    /// The entries `filter` selects, newest first.
    pub async fn list_audit_filtered(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<AuditEntry> = sqlx::query_as(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR at >= $2) \
                 ORDER BY at DESC, id DESC LIMIT $3"
            ))
            .bind(filter.tenant.as_ref().map(TenantId::as_str))
            .bind(filter.since.map(stored))
            .bind(filter.limit.max(0))
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing audit entries"))?;
            Ok(rows)
        })
    }
}
