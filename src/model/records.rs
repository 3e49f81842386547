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

/// What a change did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Inserted,
    Updated,
    Deleted,
}

impl ChangeKind {
    pub const ALL: [Self; 3] = [Self::Inserted, Self::Updated, Self::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inserted => "inserted",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a tenant's change feed: the latest change of a record, at its place in
/// the tenant's change sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRow {
    pub seq: i64,
    pub entity: EntityName,
    pub provider: ProviderId,
    pub external_id: String,
    pub kind: ChangeKind,
    /// The run that made the change; `None` for records that predate the feed.
    pub run_id: Option<Uuid>,
    pub changed_at: DateTime<Utc>,
}

/// The changes a run made to one entity, as they stand in the feed: the sequence range
/// they occupy and how many of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChangeRange {
    pub from_seq: i64,
    pub to_seq: i64,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}
