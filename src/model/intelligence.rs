//! Company intelligence: users' contributions to a company integration, its aggregate,
//! the relations between its contributors, and who is responsible for what on it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{ContributionKind, ContributionStatus, ProviderId, Responsibility, TenantId, UserId};

/// A stored contribution.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ContributionRow {
    pub id: i64,
    #[sqlx(rename = "tenant_id")]
    pub tenant: TenantId,
    pub provider: ProviderId,
    #[sqlx(rename = "user_id")]
    pub user: UserId,
    pub connection_id: Option<i64>,
    pub run_id: Option<Uuid>,
    pub kind: ContributionKind,
    pub status: ContributionStatus,
    pub confidence: f64,
    #[sqlx(json)]
    pub data: Value,
    pub data_freshness: DateTime<Utc>,
    pub quality: f64,
    pub impact: f64,
    pub reliability: f64,
    pub consistency: f64,
    /// The newer contribution of the same user, connection and kind that replaced it.
    pub superseded_by: Option<i64>,
    pub reviewed_by: Option<UserId>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A company integration's aggregate state.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct IntelligenceRow {
    #[sqlx(rename = "tenant_id")]
    pub tenant: TenantId,
    pub provider: ProviderId,
    #[sqlx(json)]
    pub state: Value,
    /// Grows by one with every change folded into `state` (and every replacement).
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// The relation of two contributors of one integration (`user_a` < `user_b`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PairRow {
    pub user_a: UserId,
    pub user_b: UserId,
    #[sqlx(json)]
    pub relation: Value,
}

/// A user's responsibility on a company integration (tenant + provider).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponsibilityRow {
    pub tenant: TenantId,
    pub provider: ProviderId,
    pub user: UserId,
    pub responsibility: Responsibility,
    /// Runs of the user's connection contribute without being asked.
    pub auto_contribute: bool,
    /// Effective scope: the explicit one, or the responsibility's default.
    pub scope: Vec<ContributionKind>,
    /// `scope` was set explicitly (otherwise it follows the responsibility's default).
    pub explicit_scope: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
