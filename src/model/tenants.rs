//! Companies and the people who use tributary there: tenants, users and their
//! memberships, and the audit log of who changed what.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{AuditOutcome, PresetName, RoleName, TenantId, UserId};

/// A tenant and the preset revision it pinned.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
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
    #[sqlx(json)]
    pub preset_snapshot: Value,
    /// A paused tenant's jobs are not claimed (running ones finish).
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A person who uses tributary at one or more companies, with their memberships.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub name: String,
    pub email: Option<String>,
    /// By tenant; see `Store::get_user` and `Store::list_users` for which ones.
    #[sqlx(skip)]
    pub memberships: Vec<MembershipRow>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user's membership of a company (tenant), with the role they have there.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
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

/// One audit entry: who did what, as which scope, and how it ended — never secret values.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// e.g. `cli:alice` (a local command), `peer:1001(alice)` (a control-socket peer),
    /// `key:deploy` (an HTTP API key), `daemon`.
    pub actor: String,
    /// The scope the actor acted with: `operator`, `tenant:acme`, or `local` for a
    /// command on the store itself; `None` where none was established (an unknown peer).
    pub scope: Option<String>,
    /// e.g. `tenant.create`, `tenant.rebase`, `credentials.set`, `control.trigger`.
    pub action: String,
    pub tenant_id: Option<TenantId>,
    /// What was acted on, e.g. `aptem` for a credential.
    pub subject: Option<String>,
    pub outcome: AuditOutcome,
    /// Why it was denied or failed.
    pub message: Option<String>,
    /// Non-secret details (what changed).
    #[sqlx(json)]
    pub details: Value,
}

impl AuditEntry {
    /// `action` by `actor`, now, done (`ok`), with no scope, tenant, subject or details:
    /// fill in the rest with `AuditEntry { tenant_id: …, ..AuditEntry::new(…) }`.
    pub fn new(actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            actor: actor.into(),
            scope: None,
            action: action.into(),
            tenant_id: None,
            subject: None,
            outcome: AuditOutcome::Ok,
            message: None,
            details: Value::Object(Default::default()),
        }
    }
}
