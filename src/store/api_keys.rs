//! API keys of the HTTP API: the row of each key (never the key itself, only the
//! SHA-256 digest of its secret part), looked up by the id the key carries.

use chrono::{DateTime, Utc};

use super::Store;
use super::error::{StoreError, db, not_found};
use super::rows::{now, stored};
use crate::model::TenantId;

/// One API key as stored: who it is for and what it may do, never its secret (and
/// neither `Debug` nor serialization shows the digest).
#[derive(Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    /// `None`: an operator key.
    pub tenant_id: Option<String>,
    /// `admin` or `viewer`.
    pub role: String,
    /// The hex SHA-256 digest of the key's secret part (not serialized).
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ApiKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("tenant_id", &self.tenant_id)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A key to store; its secret already digested.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub tenant: Option<&'a TenantId>,
    pub role: &'a str,
    pub secret_hash: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

macro_rules! key_columns {
    () => {
        "id, name, tenant_id, role, secret_hash, created_at, expires_at, revoked_at"
    };
}

impl Store {
    /// Stores a new key. A name already taken is an error naming it.
    pub async fn create_api_key(&self, key: &NewApiKey<'_>) -> Result<ApiKeyRow, StoreError> {
        if let Some(tenant) = key.tenant
            && self.get_tenant(tenant).await?.is_none()
        {
            return Err(not_found(format_args!("no tenant `{tenant}`")));
        }
        if self.api_keys().await?.iter().any(|k| k.name == key.name) {
            return Err(StoreError::Conflict { what: format!("an API key named `{}` exists already", key.name) });
        }
        let sql = concat!(
            "INSERT INTO api_keys (id, name, tenant_id, role, secret_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            key_columns!()
        );
        let created = now();
        on_backend!(self, |s| {
            sqlx::query_as::<_, ApiKeyRow>(sql)
                .bind(key.id)
                .bind(key.name)
                .bind(key.tenant.map(TenantId::as_str))
                .bind(key.role)
                .bind(key.secret_hash)
                .bind(created)
                .bind(key.expires_at.map(stored))
                .fetch_one(&s.pool)
                .await
                .map_err(db("storing an API key"))
        })
    }

    /// The key with `id`, revoked or not.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1");
        on_backend!(self, |s| {
            sqlx::query_as::<_, ApiKeyRow>(sql).bind(id).fetch_optional(&s.pool).await.map_err(db("reading an API key"))
        })
    }

    /// Every key, by name.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        let sql = concat!("SELECT ", key_columns!(), " FROM api_keys ORDER BY name");
        on_backend!(self, |s| {
            sqlx::query_as::<_, ApiKeyRow>(sql).fetch_all(&s.pool).await.map_err(db("listing API keys"))
        })
    }

    /// Revokes the key named `name` (or with id `name`) at once; `None` when there is none.
    /// Revoking a revoked key keeps its first revocation time.
    pub async fn revoke_api_key(&self, name: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let sql = concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1 OR id = $1 RETURNING ",
            key_columns!()
        );
        let at = now();
        on_backend!(self, |s| {
            sqlx::query_as::<_, ApiKeyRow>(sql)
                .bind(name)
                .bind(at)
                .fetch_optional(&s.pool)
                .await
                .map_err(db("revoking an API key"))
        })
    }
}
