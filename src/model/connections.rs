//! Connections (tenant × provider × optional owner), who owns them, and the sealed
//! bytes their credentials are stored as.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::column::OwnerColumn;
use super::{ConnectionStatus, ProviderId, RoleName, TenantId, UserId};

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
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ConnectionRow {
    pub id: i64,
    pub tenant_id: TenantId,
    pub provider: ProviderId,
    /// Owning user; `None` for a company-owned connection.
    #[sqlx(try_from = "OwnerColumn")]
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
