//! Tenants, their overrides and their connections: SQL shared by both backends.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use super::error::{StoreError, db, is_unique_violation};
use super::jobs::insert_audit;
use super::statement::{Bind, all, connection, optional};
use super::types::TenantState;
use super::{Conn, Store};
use crate::model::{AuditEntry, ConnectionRow, ConnectionStatus, Owner, ProviderId, SealedBlob, TenantId, TenantRow};

/// Why tenant saves disable a connection.
const NOT_ENABLED_REASON: &str = "provider is not enabled for the tenant";

/// `owner`'s connection to `provider` at the tenant.
pub(super) const SELECT_CONNECTION: &str =
    concat!("SELECT ", connection_columns!(), " FROM connections WHERE ", connection_key!());

/// The tenant (`$1`).
const SELECT_TENANT: &str = concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1");

/// The tenant's (`$1`) connections, by provider then owner.
const CONNECTIONS_OF_TENANT: &str = concat!(
    "SELECT ",
    connection_columns!(),
    " FROM connections WHERE tenant_id = $1 ORDER BY provider, owner_user, id"
);

/// The sealed credentials of `owner`'s connection to `provider` at the tenant, if it has some.
const SELECT_CREDENTIALS: &str = concat!(
    "SELECT credentials, credentials_key_id, credentials_version FROM connections WHERE ",
    connection_key!(),
    " AND credentials IS NOT NULL"
);

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

impl Store {
    // --- tenants -------------------------------------------------------------------------

    /// Creates a tenant in one transaction: the tenant row, its overrides (all of
    /// `state.overrides`), a company connection (`pending`) for each provider of
    /// `state.enabled_providers`, every other connection `disabled` (see
    /// [`Store::update_tenant`]), and `audit`.
    ///
    /// [`StoreError::Conflict`] if the id exists or the subdomain is taken.
    pub async fn create_tenant(&self, state: &TenantState, audit: &AuditEntry) -> Result<TenantRow, StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO tenants (id, name, subdomain, timezone, preset, preset_revision, \
             preset_snapshot, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (id) DO NOTHING RETURNING ",
            tenant_columns!()
        );
        let missing = || StoreError::Conflict { what: format!("tenant `{}` already exists", state.id) };
        self.write_tenant(SQL, state, audit, "inserting a tenant", missing).await
    }

    /// Saves an existing tenant in one transaction, like [`Store::create_tenant`] (the
    /// creation time stays):
    ///
    /// - the overrides stored are exactly `state.overrides`;
    /// - each provider of `state.enabled_providers` gets its company connection if
    ///   missing (`pending`); its `disabled` connections return to `connected` (with
    ///   credentials) or `pending` (without), and their jobs are enabled again — except
    ///   user connections whose owner is no longer a member of the tenant; other
    ///   statuses stay;
    /// - every connection of any other provider becomes `disabled` and its jobs
    ///   `enabled = false`; records and job cursors stay.
    ///
    /// [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn update_tenant(&self, state: &TenantState, audit: &AuditEntry) -> Result<TenantRow, StoreError> {
        const SQL: &str = concat!(
            "UPDATE tenants SET name = $2, subdomain = $3, timezone = $4, preset = $5, \
             preset_revision = $6, preset_snapshot = $7, updated_at = $8 \
             WHERE id = $1 RETURNING ",
            tenant_columns!()
        );
        let missing = || StoreError::NotFound { what: format!("tenant `{}` does not exist", state.id) };
        self.write_tenant(SQL, state, audit, "updating a tenant", missing).await
    }

    /// The tenant, if it exists.
    pub async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRow>, StoreError> {
        on_backend!(self, |s| { optional(&s.pool, SELECT_TENANT, [tenant.as_str()], "reading a tenant").await })
    }

    /// Every tenant, by id.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<TenantRow> =
                sqlx::query_as(concat!("SELECT ", tenant_columns!(), " FROM tenants ORDER BY id"))
                    .fetch_all(&s.pool)
                    .await
                    .map_err(db("listing tenants"))?;
            Ok(rows)
        })
    }

    /// Every tenant's id, in order (without the rows: a preset snapshot each).
    pub async fn list_tenant_ids(&self) -> Result<Vec<TenantId>, StoreError> {
        on_backend!(self, |s| {
            sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
                .fetch_all(&s.pool)
                .await
                .map_err(db("listing tenants"))
        })
    }

    /// The tenant's override layers, by provider.
    pub async fn get_overrides(&self, tenant: &TenantId) -> Result<Vec<(ProviderId, Value)>, StoreError> {
        on_backend!(self, |s| {
            let sql = "SELECT provider, layer FROM overrides WHERE tenant_id = $1 ORDER BY provider";
            let layers: Vec<(ProviderId, Json<Value>)> =
                all(&s.pool, sql, [tenant.as_str()], "reading overrides").await?;
            Ok(layers.into_iter().map(|(provider, layer)| (provider, layer.0)).collect())
        })
    }

    // --- connections ---------------------------------------------------------------------

    /// The tenant's connections, by provider then owner.
    pub async fn list_connections(&self, tenant: &TenantId) -> Result<Vec<ConnectionRow>, StoreError> {
        on_backend!(self, |s| { all(&s.pool, CONNECTIONS_OF_TENANT, [tenant.as_str()], "listing connections").await })
    }

    /// `owner`'s connection to `provider` at the tenant.
    pub async fn get_connection(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        on_backend!(self, |s| {
            optional(&s.pool, SELECT_CONNECTION, connection(tenant, provider, owner), "reading a connection").await
        })
    }

    /// Stores sealed credentials on `owner`'s connection to `provider` at the tenant and
    /// writes `audit`, in one transaction. Increments `credentials_version`; a `pending`,
    /// `needs_reauth` or `error` connection becomes `connected`, a `disabled` one stays.
    ///
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn set_credentials(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        sealed: &SealedBlob,
        audit: &AuditEntry,
    ) -> Result<ConnectionRow, StoreError> {
        on_backend!(self, |s: B| {
            let (mut tx, now) = s.begin_write().await?;
            let before = B::connection_status_in(&mut tx, tenant, provider, owner).await?;
            let row: Option<ConnectionRow> = sqlx::query_as(concat!(
                "UPDATE connections SET credentials = $4, credentials_key_id = $5, \
                 credentials_version = credentials_version + 1, \
                 credentials_updated_at = $6, updated_at = $6, \
                 status_reason = CASE WHEN status IN ('pending', 'needs_reauth', 'error') \
                 THEN NULL ELSE status_reason END, \
                 status = CASE WHEN status IN ('pending', 'needs_reauth', 'error') \
                 THEN 'connected' ELSE status END WHERE ",
                connection_key!(),
                " RETURNING ",
                connection_columns!()
            ))
            .bind_key(connection(tenant, provider, owner))
            .bind_all((sealed.bytes.as_slice(), &sealed.key_id, now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("storing credentials"))?;
            let row = row.ok_or_else(|| no_connection(tenant, provider, owner))?;
            B::enqueue_connection_change(
                &mut tx,
                tenant,
                provider,
                owner,
                before.as_deref(),
                row.status.as_str(),
                None,
            )
            .await?;
            super::reconcile::queue_reconcile(&mut *tx, tenant, &audit.action, now).await?;
            insert_audit(&mut *tx, audit).await?;
            tx.commit().await.map_err(db("committing credentials"))?;
            Ok(row)
        })
    }

    /// The sealed credentials of `owner`'s connection to `provider` at the tenant and
    /// their version; `None` if there are none.
    pub async fn get_credentials(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
    ) -> Result<Option<(SealedBlob, i64)>, StoreError> {
        on_backend!(self, |s| {
            let key = connection(tenant, provider, owner);
            let raw: Option<(Vec<u8>, Option<String>, i64)> =
                optional(&s.pool, SELECT_CREDENTIALS, key, "reading credentials").await?;
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
        })
    }

    /// Sets the status (and why) of `owner`'s connection to `provider` at the tenant.
    /// Jobs are not touched.
    ///
    /// [`StoreError::NotFound`] if the connection does not exist.
    pub async fn set_connection_status(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        status: ConnectionStatus,
        reason: Option<&str>,
    ) -> Result<ConnectionRow, StoreError> {
        on_backend!(self, |s: B| {
            // The new status and the event that reports it commit together.
            let (mut tx, now) = s.begin_write().await?;
            let before = B::connection_status_in(&mut tx, tenant, provider, owner).await?;
            let row: Option<ConnectionRow> = sqlx::query_as(concat!(
                "UPDATE connections SET status = $4, status_reason = $5, updated_at = $6 WHERE ",
                connection_key!(),
                " RETURNING ",
                connection_columns!()
            ))
            .bind_key(connection(tenant, provider, owner))
            .bind_all((status.as_str(), reason, now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("setting a connection status"))?;
            let row = row.ok_or_else(|| no_connection(tenant, provider, owner))?;
            B::enqueue_connection_change(&mut tx, tenant, provider, owner, before.as_deref(), status.as_str(), reason)
                .await?;
            tx.commit().await.map_err(db("committing a connection status"))?;
            Ok(row)
        })
    }

    /// Writes the tenant row with `sql` (binds: id, name, subdomain, timezone, preset,
    /// revision, snapshot, now), then its overrides, connections and audit entry, in one
    /// transaction; `missing` when `sql` returns no row.
    async fn write_tenant(
        &self,
        sql: &'static str,
        state: &TenantState,
        audit: &AuditEntry,
        context: &'static str,
        missing: impl FnOnce() -> StoreError,
    ) -> Result<TenantRow, StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            let row: Option<TenantRow> = sqlx::query_as(sql)
                .bind_all((
                    state.id.as_str(),
                    &state.name,
                    &state.subdomain,
                    &state.timezone,
                    state.preset.as_str(),
                    &state.preset_revision,
                    Json(&state.preset_snapshot),
                    now,
                ))
                .fetch_optional(&mut *tx)
                .await
                .map_err(tenant_write_error(state, context))?;
            let Some(row) = row else { return Err(missing()) };
            apply_tenant_state(&mut *tx, state, now).await?;
            super::reconcile::queue_reconcile(&mut *tx, &state.id, &audit.action, now).await?;
            insert_audit(&mut *tx, audit).await?;
            tx.commit().await.map_err(db("committing a tenant"))?;
            Ok(row)
        })
    }
}

/// Overrides and connections of a tenant save (see `Store::create_tenant`).
pub(super) async fn apply_tenant_state(
    conn: impl Into<Conn<'_>>,
    state: &TenantState,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_connection!(conn, |conn: B| {
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
            .bind_all((tenant, provider.as_str(), Json(layer), now))
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
            .bind_all((now, tenant, *provider))
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
            .bind_all((now, tenant, *provider))
            .execute(&mut *conn)
            .await
            .map_err(db("enabling connections"))?;
            sqlx::query(
                "INSERT INTO connections \
                 (tenant_id, provider, owner_user, status, created_at, updated_at) \
                 VALUES ($1, $2, '', 'pending', $3, $3) \
                 ON CONFLICT (tenant_id, provider, owner_user) DO NOTHING",
            )
            .bind_all((tenant, *provider, now))
            .execute(&mut *conn)
            .await
            .map_err(db("creating a connection"))?;
        }
        sqlx::query(B::DISABLE_OTHER_JOBS)
            .bind_all((now, tenant, B::id_list(&enabled)))
            .execute(&mut *conn)
            .await
            .map_err(db("disabling jobs"))?;
        sqlx::query(B::DISABLE_OTHER_CONNECTIONS)
            .bind_all((NOT_ENABLED_REASON, now, tenant, B::id_list(&enabled)))
            .execute(&mut *conn)
            .await
            .map_err(db("disabling connections"))?;
        Ok(())
    })
}
