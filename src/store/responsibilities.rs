//! Responsibilities: what each user is responsible for on a company integration
//! (tenant + provider), which decides what the runs of the user's connection contribute.
//! SQL shared by both backends.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;

use super::Store;
use super::error::{StoreError, db};
use super::intelligence::{is_foreign_key_violation, not_a_member, require_member};
use super::jobs::insert_audit;
use super::statement::{Bind, optional};
use crate::model::{AuditEntry, ContributionKind, ProviderId, Responsibility, ResponsibilityRow, TenantId, UserId};

/// Columns of [`RawResponsibility`].
macro_rules! responsibility_columns {
    () => {
        "tenant_id, provider, user_id, responsibility, auto_contribute, scope, created_at, updated_at"
    };
}

/// A `responsibilities` row as stored: a `scope` of NULL follows the responsibility's
/// default.
#[derive(sqlx::FromRow)]
struct RawResponsibility {
    tenant_id: TenantId,
    provider: ProviderId,
    user_id: UserId,
    responsibility: Responsibility,
    auto_contribute: bool,
    scope: Option<Json<Vec<ContributionKind>>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<RawResponsibility> for ResponsibilityRow {
    fn from(raw: RawResponsibility) -> Self {
        Self {
            explicit_scope: raw.scope.is_some(),
            scope: raw.scope.map_or_else(|| raw.responsibility.default_scope().to_vec(), |Json(kinds)| kinds),
            tenant: raw.tenant_id,
            provider: raw.provider,
            user: raw.user_id,
            responsibility: raw.responsibility,
            auto_contribute: raw.auto_contribute,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        }
    }
}

/// The audit entry of `action` by `actor` at `at` on the user's responsibility on the
/// tenant's integration with `provider`.
fn change(
    action: &str,
    actor: &str,
    at: DateTime<Utc>,
    tenant: &TenantId,
    provider: &ProviderId,
    user: &UserId,
    details: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        at,
        actor: actor.to_owned(),
        scope: actor.starts_with("cli:").then(|| "local".into()),
        outcome: crate::model::AuditOutcome::Ok,
        message: None,
        action: action.to_owned(),
        tenant_id: Some(tenant.clone()),
        subject: Some(format!("{provider}/{user}")),
        details,
    }
}

/// `scope` without duplicates, in declaration order.
fn normalized_scope(scope: &[ContributionKind]) -> Vec<&'static str> {
    let mut kinds = scope.to_vec();
    kinds.sort();
    kinds.dedup();
    kinds.into_iter().map(ContributionKind::as_str).collect()
}

impl Store {
    // --- responsibilities ----------------------------------------------------------------

    /// Makes `responsibility` the user's on the tenant's integration with `provider`
    /// (replacing any earlier one) and writes an audit entry by `actor`, in one
    /// transaction. `auto_contribute` and `scope` default to the responsibility's
    /// ([`Responsibility::default_auto_contribute`], [`Responsibility::default_scope`]);
    /// an explicit scope is stored without duplicates, in declaration order.
    ///
    /// [`StoreError::NotFound`] ("user `x` is not a member of tenant `y`") without a
    /// membership.
    #[allow(clippy::too_many_arguments)]
    pub async fn assign_responsibility(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        user: &UserId,
        responsibility: Responsibility,
        auto_contribute: Option<bool>,
        scope: Option<&[ContributionKind]>,
        actor: &str,
    ) -> Result<ResponsibilityRow, StoreError> {
        let auto_contribute = auto_contribute.unwrap_or(responsibility.default_auto_contribute());
        let scope = scope.map(normalized_scope);
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            require_member(&mut *tx, tenant, user).await?;
            let raw: RawResponsibility = sqlx::query_as(concat!(
                "INSERT INTO responsibilities (tenant_id, provider, user_id, responsibility, \
                 auto_contribute, scope, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                 ON CONFLICT (tenant_id, provider, user_id) DO UPDATE SET \
                 responsibility = excluded.responsibility, auto_contribute = excluded.auto_contribute, \
                 scope = excluded.scope, updated_at = excluded.updated_at RETURNING ",
                responsibility_columns!()
            ))
            .bind_key([tenant.as_str(), provider.as_str(), user.as_str()])
            .bind_all((responsibility.as_str(), auto_contribute, scope.as_ref().map(Json), now))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                // The membership went away since it was checked.
                if is_foreign_key_violation(&e) {
                    not_a_member(tenant, user)
                } else {
                    db("assigning a responsibility")(e)
                }
            })?;
            let row = ResponsibilityRow::from(raw);
            let details = json!({
                "provider": provider,
                "user": user,
                "responsibility": responsibility,
                "auto_contribute": auto_contribute,
                "scope": scope,
            });
            let audit = change("responsibility.assign", actor, now, tenant, provider, user, details);
            insert_audit(&mut *tx, &audit).await?;
            tx.commit().await.map_err(db("committing a responsibility"))?;
            Ok(row)
        })
    }

    /// Removes the user's responsibility on the tenant's integration with `provider` and
    /// writes an audit entry by `actor`; `false` (nothing written) if there was none.
    /// Earlier contributions stay.
    pub async fn remove_responsibility(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        user: &UserId,
        actor: &str,
    ) -> Result<bool, StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            let sql =
                concat!("DELETE FROM responsibilities WHERE ", responsibility_key!(), " RETURNING responsibility");
            let key = [tenant.as_str(), provider.as_str(), user.as_str()];
            let removed: Option<(String,)> = optional(&mut *tx, sql, key, "removing a responsibility").await?;
            let Some((was,)) = removed else {
                return Ok(false);
            };
            let details = json!({ "provider": provider, "user": user, "responsibility": was });
            let audit = change("responsibility.remove", actor, now, tenant, provider, user, details);
            insert_audit(&mut *tx, &audit).await?;
            tx.commit().await.map_err(db("committing a responsibility removal"))?;
            Ok(true)
        })
    }

    /// The tenant's responsibilities (on one integration with `Some`), by provider then
    /// user.
    pub async fn responsibilities(
        &self,
        tenant: &TenantId,
        provider: Option<&ProviderId>,
    ) -> Result<Vec<ResponsibilityRow>, StoreError> {
        on_backend!(self, |s| {
            let raws: Vec<RawResponsibility> = sqlx::query_as(concat!(
                "SELECT ",
                responsibility_columns!(),
                " FROM responsibilities WHERE tenant_id = $1 AND ($2 IS NULL OR provider = $2) \
                 ORDER BY provider, user_id"
            ))
            .bind_all((tenant.as_str(), provider.map(ProviderId::as_str)))
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing responsibilities"))?;
            Ok(raws.into_iter().map(ResponsibilityRow::from).collect())
        })
    }

    /// The user's responsibility on the tenant's integration with `provider`.
    pub async fn responsibility(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        user: &UserId,
    ) -> Result<Option<ResponsibilityRow>, StoreError> {
        on_backend!(self, |s| {
            let sql =
                concat!("SELECT ", responsibility_columns!(), " FROM responsibilities WHERE ", responsibility_key!());
            let key = [tenant.as_str(), provider.as_str(), user.as_str()];
            let raw: Option<RawResponsibility> = optional(&s.pool, sql, key, "reading a responsibility").await?;
            Ok(raw.map(ResponsibilityRow::from))
        })
    }
}
