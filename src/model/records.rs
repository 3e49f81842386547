//! Records as stored, the records that could not be mapped, and what a page write did.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{EntityName, ProviderId, TenantId};

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
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RecordRow {
    pub tenant_id: TenantId,
    pub entity: EntityName,
    pub provider: ProviderId,
    pub external_id: String,
    #[sqlx(json)]
    pub data: Value,
    pub content_hash: String,
    pub first_seen: DateTime<Utc>,
    pub last_synced: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}
