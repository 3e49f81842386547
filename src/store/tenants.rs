//! Tenants, their overrides and their connections: SQL shared by both backends.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::error::{StoreError, db, is_unique_violation};
use super::postgres::PgStore;
use super::rows::now;
use super::sqlite::SqliteStore;
use super::types::TenantState;
use crate::model::{AuditEntry, ConnectionRow, ConnectionStatus, Owner, ProviderId, SealedBlob, TenantId, TenantRow};

/// Why tenant saves disable a connection.
const NOT_ENABLED_REASON: &str = "provider is not enabled for the tenant";

/// A user connection whose owner is still a member of its tenant (`connections` is not
/// aliased); company connections always pass.
macro_rules! owner_is_member {
    () => {
        "(owner_user = '' OR EXISTS (SELECT 1 FROM memberships m \
         WHERE m.tenant_id = connections.tenant_id AND m.user_id = connections.owner_user))"
    };
}

/// The error for a connection that does not exist.
pub(super) fn no_connection(tenant: &TenantId, provider: &ProviderId, owner: Owner<'_>) -> StoreError {
    let what = match owner {
        Owner::Company => format!(
            "no connection for provider `{provider}` at tenant `{tenant}` \
             (is the provider enabled in its preset?)"
        ),
        Owner::User(user) => format!("user `{user}` has no connection to `{provider}` at tenant `{tenant}`"),
    };
    StoreError::NotFound { what }
}

/// Maps a failed tenant write; a taken subdomain is a conflict, not a database failure.
fn tenant_write_error(state: &TenantState, context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| {
        if is_unique_violation(&err) {
            StoreError::Conflict { what: format!("subdomain `{}` is already used by another tenant", state.subdomain) }
        } else {
            db(context)(err)
        }
    }
}

macro_rules! tenant_methods {
    ($store:ty, $db:ty) => {
        impl $store {
            pub(super) async fn create_tenant(
                &self,
                state: &TenantState,
                audit: &AuditEntry,
            ) -> Result<TenantRow, StoreError> {
                const SQL: &str = concat!(
                    "INSERT INTO tenants (id, name, subdomain, timezone, preset, preset_revision, \
                     preset_snapshot, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                     ON CONFLICT (id) DO NOTHING RETURNING ",
                    tenant_columns!()
                );
                let missing = || StoreError::Conflict { what: format!("tenant `{}` already exists", state.id) };
                self.write_tenant(SQL, state, audit, "inserting a tenant", missing).await
            }

            pub(super) async fn update_tenant(
                &self,
                state: &TenantState,
                audit: &AuditEntry,
            ) -> Result<TenantRow, StoreError> {
                const SQL: &str = concat!(
                    "UPDATE tenants SET name = $2, subdomain = $3, timezone = $4, preset = $5, \
                     preset_revision = $6, preset_snapshot = $7, updated_at = $8 \
                     WHERE id = $1 RETURNING ",
                    tenant_columns!()
                );
                let missing = || StoreError::NotFound { what: format!("tenant `{}` does not exist", state.id) };
                self.write_tenant(SQL, state, audit, "updating a tenant", missing).await
            }

            /// Writes the tenant row with `sql` (binds: id, name, subdomain, timezone,
            /// preset, revision, snapshot, now), then its overrides, connections and audit
            /// entry, in one transaction; `missing` when `sql` returns no row.
            async fn write_tenant(
                &self,
                sql: &'static str,
                state: &TenantState,
                audit: &AuditEntry,
                context: &'static str,
                missing: impl FnOnce() -> StoreError,
            ) -> Result<TenantRow, StoreError> {
                let now = now();
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                let row: Option<TenantRow> = sqlx::query_as(sql)
                    .bind(state.id.as_str())
                    .bind(&state.name)
                    .bind(&state.subdomain)
                    .bind(&state.timezone)
                    .bind(state.preset.as_str())
                    .bind(&state.preset_revision)
                    .bind(Json(&state.preset_snapshot))
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(tenant_write_error(state, context))?;
                let Some(row) = row else { return Err(missing()) };
                Self::apply_tenant_state(&mut tx, state, now).await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(db("committing a tenant"))?;
                Ok(row)
            }

            /// Overrides and connections of a tenant save (see `Store::create_tenant`).
            async fn apply_tenant_state(
                conn: &mut <$db as sqlx::Database>::Connection,
                state: &TenantState,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let tenant = state.id.as_str();
                sqlx::query("DELETE FROM overrides WHERE tenant_id = $1")
                    .bind(tenant)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("deleting overrides"))?;
                for (provider, layer) in &state.overrides {
                    sqlx::query(
                        "INSERT INTO overrides (tenant_id, provider, layer, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, provider) \
                         DO UPDATE SET layer = excluded.layer",
                    )
                    .bind(tenant)
                    .bind(provider.as_str())
                    .bind(Json(layer))
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("inserting an override"))?;
                }
                let enabled: Vec<&str> = state.enabled_providers.iter().map(ProviderId::as_str).collect();
                for provider in &enabled {
                    // A provider switched back on: its jobs run again and its connections
                    // return to where their credentials put them — except user connections
                    // whose owner has left the tenant.
                    sqlx::query(concat!(
                        "UPDATE jobs SET enabled = TRUE, updated_at = $1 \
                         WHERE tenant_id = $2 AND NOT enabled AND connection_id IN \
                         (SELECT id FROM connections WHERE tenant_id = $2 AND provider = $3 \
                          AND status = 'disabled' AND ",
                        owner_is_member!(),
                        ")"
                    ))
                    .bind(now)
                    .bind(tenant)
                    .bind(*provider)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("enabling jobs"))?;
                    sqlx::query(concat!(
                        "UPDATE connections SET status = CASE WHEN credentials IS NULL \
                         THEN 'pending' ELSE 'connected' END, status_reason = NULL, \
                         updated_at = $1 \
                         WHERE tenant_id = $2 AND provider = $3 AND status = 'disabled' AND ",
                        owner_is_member!()
                    ))
                    .bind(now)
                    .bind(tenant)
                    .bind(*provider)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("enabling connections"))?;
                    sqlx::query(
                        "INSERT INTO connections \
                         (tenant_id, provider, owner_user, status, created_at, updated_at) \
                         VALUES ($1, $2, '', 'pending', $3, $3) \
                         ON CONFLICT (tenant_id, provider, owner_user) DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(*provider)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("creating a connection"))?;
                }
                sqlx::query(Self::DISABLE_OTHER_JOBS)
                    .bind(now)
                    .bind(tenant)
                    .bind(Self::id_list(&enabled))
                    .execute(&mut *conn)
                    .await
                    .map_err(db("disabling jobs"))?;
                sqlx::query(Self::DISABLE_OTHER_CONNECTIONS)
                    .bind(NOT_ENABLED_REASON)
                    .bind(now)
                    .bind(tenant)
                    .bind(Self::id_list(&enabled))
                    .execute(&mut *conn)
                    .await
                    .map_err(db("disabling connections"))?;
                Ok(())
            }

            pub(super) async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRow>, StoreError> {
                let row: Option<TenantRow> =
                    sqlx::query_as(concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1"))
                        .bind(tenant.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db("reading a tenant"))?;
                Ok(row)
            }

            pub(super) async fn list_tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
                let rows: Vec<TenantRow> =
                    sqlx::query_as(concat!("SELECT ", tenant_columns!(), " FROM tenants ORDER BY id"))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db("listing tenants"))?;
                Ok(rows)
            }

            pub(super) async fn list_tenant_ids(&self) -> Result<Vec<TenantId>, StoreError> {
                sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("listing tenants"))
            }

            pub(super) async fn get_overrides(
                &self,
                tenant: &TenantId,
            ) -> Result<Vec<(ProviderId, serde_json::Value)>, StoreError> {
                let layers: Vec<(ProviderId, Json<serde_json::Value>)> =
                    sqlx::query_as("SELECT provider, layer FROM overrides WHERE tenant_id = $1 ORDER BY provider")
                        .bind(tenant.as_str())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db("reading overrides"))?;
                Ok(layers.into_iter().map(|(provider, layer)| (provider, layer.0)).collect())
            }

            pub(super) async fn list_connections(&self, tenant: &TenantId) -> Result<Vec<ConnectionRow>, StoreError> {
                let rows: Vec<ConnectionRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    connection_columns!(),
                    " FROM connections WHERE tenant_id = $1 ORDER BY provider, owner_user, id"
                ))
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing connections"))?;
                Ok(rows)
            }

            pub(super) async fn get_connection(
                &self,
                tenant: &TenantId,
                provider: &ProviderId,
                owner: Owner<'_>,
            ) -> Result<Option<ConnectionRow>, StoreError> {
                let row: Option<ConnectionRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    connection_columns!(),
                    " FROM connections WHERE tenant_id = $1 AND provider = $2 AND owner_user = $3"
                ))
                .bind(tenant.as_str())
                .bind(provider.as_str())
                .bind(owner.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a connection"))?;
                Ok(row)
            }

            pub(super) async fn set_credentials(
                &self,
                tenant: &TenantId,
                provider: &ProviderId,
                owner: Owner<'_>,
                sealed: &SealedBlob,
                audit: &AuditEntry,
            ) -> Result<ConnectionRow, StoreError> {
                let now = now();
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                let before = Self::connection_status_in(&mut tx, tenant, provider, owner).await?;
                let row: Option<ConnectionRow> = sqlx::query_as(concat!(
                    "UPDATE connections SET credentials = $1, credentials_key_id = $2, \
                     credentials_version = credentials_version + 1, \
                     credentials_updated_at = $3, updated_at = $3, \
                     status_reason = CASE WHEN status IN ('pending', 'needs_reauth', 'error') \
                     THEN NULL ELSE status_reason END, \
                     status = CASE WHEN status IN ('pending', 'needs_reauth', 'error') \
                     THEN 'connected' ELSE status END \
                     WHERE tenant_id = $4 AND provider = $5 AND owner_user = $6 RETURNING ",
                    connection_columns!()
                ))
                .bind(sealed.bytes.as_slice())
                .bind(&sealed.key_id)
                .bind(now)
                .bind(tenant.as_str())
                .bind(provider.as_str())
                .bind(owner.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("storing credentials"))?;
                let row = row.ok_or_else(|| no_connection(tenant, provider, owner))?;
                Self::enqueue_connection_change(
                    &mut tx,
                    tenant,
                    provider,
                    owner,
                    before.as_deref(),
                    row.status.as_str(),
                    None,
                )
                .await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(db("committing credentials"))?;
                Ok(row)
            }

            pub(super) async fn get_credentials(
                &self,
                tenant: &TenantId,
                provider: &ProviderId,
                owner: Owner<'_>,
            ) -> Result<Option<(SealedBlob, i64)>, StoreError> {
                let raw: Option<(Vec<u8>, Option<String>, i64)> = sqlx::query_as(
                    "SELECT credentials, credentials_key_id, credentials_version \
                     FROM connections WHERE tenant_id = $1 AND provider = $2 \
                     AND owner_user = $3 AND credentials IS NOT NULL",
                )
                .bind(tenant.as_str())
                .bind(provider.as_str())
                .bind(owner.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading credentials"))?;
                let Some((bytes, key_id, version)) = raw else {
                    return Ok(None);
                };
                let key_id = key_id.ok_or_else(|| StoreError::Corrupt {
                    what: format!(
                        "connections: credentials of {owner} for `{provider}` at tenant \
                         `{tenant}` have no key id"
                    ),
                })?;
                Ok(Some((SealedBlob { key_id, bytes }, version)))
            }

            pub(super) async fn set_connection_status(
                &self,
                tenant: &TenantId,
                provider: &ProviderId,
                owner: Owner<'_>,
                status: ConnectionStatus,
                reason: Option<&str>,
            ) -> Result<ConnectionRow, StoreError> {
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                let before = Self::connection_status_in(&mut tx, tenant, provider, owner).await?;
                let row: Option<ConnectionRow> = sqlx::query_as(concat!(
                    "UPDATE connections SET status = $1, status_reason = $2, updated_at = $3 \
                     WHERE tenant_id = $4 AND provider = $5 AND owner_user = $6 RETURNING ",
                    connection_columns!()
                ))
                .bind(status.as_str())
                .bind(reason)
                .bind(now())
                .bind(tenant.as_str())
                .bind(provider.as_str())
                .bind(owner.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("setting a connection status"))?;
                let row = row.ok_or_else(|| no_connection(tenant, provider, owner))?;
                Self::enqueue_connection_change(
                    &mut tx,
                    tenant,
                    provider,
                    owner,
                    before.as_deref(),
                    status.as_str(),
                    reason,
                )
                .await?;
                tx.commit().await.map_err(db("committing a connection status"))?;
                Ok(row)
            }
        }
    };
}

tenant_methods!(SqliteStore, sqlx::Sqlite);
tenant_methods!(PgStore, sqlx::Postgres);
