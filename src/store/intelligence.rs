//! Contributions and company intelligence: SQL shared by both backends.
//!
//! Every contribution change is folded into the
//! integration's aggregate (`company_intelligence.state`) in the same transaction, under
//! a lock on the aggregate's row: PostgreSQL `SELECT … FOR UPDATE` (the row is created
//! first if absent), SQLite the write lock of `BEGIN IMMEDIATE`. Concurrent writers to one
//! integration, in any replica, therefore fold one after another and no update is lost.
//! How a contribution changes the aggregate is the caller's [`Fold`].

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::error::{StoreError, db, not_found};
use super::rows::{now, stored};
use super::statement::{Bind, all, integration, optional};
use super::users::ROLE_AT_TENANT;
use super::{Conn, Store};
use crate::model::{
    ContributionKind, ContributionRow, ContributionStatus, IntelligenceRow, PairRow, ProviderId, Responsibility,
    TenantId, UserId,
};

/// A contribution to record ([`Store::record_contribution`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewContribution {
    pub user: UserId,
    /// The connection whose run it comes from (one of the tenant's, to the same provider).
    pub connection_id: Option<i64>,
    /// The run it was derived from (one of the tenant's, of the same provider).
    pub run_id: Option<Uuid>,
    pub kind: ContributionKind,
    /// 0 to 1.
    pub confidence: f64,
    pub data: Value,
    /// When the data it describes was observed.
    pub data_freshness: DateTime<Utc>,
    /// Scores, 0 to 100.
    pub quality: f64,
    pub impact: f64,
    pub reliability: f64,
    pub consistency: f64,
}

/// Which contributions [`Store::contributions`] lists; `None` matches anything.
#[derive(Debug, Clone, PartialEq)]
pub struct ContributionFilter {
    pub provider: Option<ProviderId>,
    pub user: Option<UserId>,
    pub kind: Option<ContributionKind>,
    pub status: Option<ContributionStatus>,
    /// At most this many (newest first).
    pub limit: i64,
}

impl Default for ContributionFilter {
    /// Every contribution, up to 100.
    fn default() -> Self {
        Self { provider: None, user: None, kind: None, status: None, limit: 100 }
    }
}

/// What folding one changed contribution produces: the integration's new state, and the
/// contribution's user's relations to the other contributors, which replace all of that
/// user's stored ones (none: the user has no relations, or no longer contributes).
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    pub state: Value,
    pub user: UserId,
    pub pairs: Vec<PairRow>,
}

/// Folds one changed contribution into an integration's aggregate state (None: no state yet).
pub type Fold<'a> = &'a (dyn Fn(Option<&Value>, &ContributionRow) -> Folded + Send + Sync);

/// Columns of [`ContributionRow`].
macro_rules! contribution_columns {
    () => {
        "id, tenant_id, provider, user_id, connection_id, run_id, kind, status, confidence, \
         data, data_freshness, quality, impact, reliability, consistency, superseded_by, \
         reviewed_by, reviewed_at, created_at, updated_at"
    };
}

/// Columns of [`IntelligenceRow`].
macro_rules! intelligence_columns {
    () => {
        "tenant_id, provider, state, version, updated_at"
    };
}

/// The tenant's (`$1`) contribution `$2`.
macro_rules! contribution_key {
    () => {
        "tenant_id = $1 AND id = $2"
    };
}

/// The tenant's connection `$3` to the provider (`$1`, `$2`).
const CONNECTION_OF_INTEGRATION: &str =
    concat!("SELECT id FROM connections WHERE ", integration_key!(), " AND id = $3");

/// The tenant's run `$3` of the provider (`$1`, `$2`).
const RUN_OF_INTEGRATION: &str = concat!("SELECT provider FROM runs WHERE ", integration_key!(), " AND id = $3");

/// The error for a user without a membership at the tenant.
pub(super) fn not_a_member(tenant: &TenantId, user: &UserId) -> StoreError {
    StoreError::NotFound { what: format!("user `{user}` is not a member of tenant `{tenant}`") }
}

/// The error for a contribution that does not exist at the tenant.
fn no_contribution(tenant: &TenantId, id: i64) -> StoreError {
    StoreError::NotFound { what: format!("no contribution {id} at tenant `{tenant}`") }
}

/// Whether `err` is a foreign-key violation.
pub(super) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_foreign_key_violation())
}

/// Checks a new contribution's numbers: confidence 0 to 1, scores 0 to 100, all finite.
fn validate(new: &NewContribution) -> Result<(), StoreError> {
    let mut bad = Vec::new();
    if !(0.0..=1.0).contains(&new.confidence) {
        bad.push(format!("confidence {} is not between 0 and 1", new.confidence));
    }
    for (name, value) in [
        ("quality", new.quality),
        ("impact", new.impact),
        ("reliability", new.reliability),
        ("consistency", new.consistency),
    ] {
        if !(0.0..=100.0).contains(&value) {
            bad.push(format!("{name} {value} is not between 0 and 100"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: format!("{} contribution of user `{}`: {}", new.kind, new.user, bad.join("; ")),
        })
    }
}

impl Store {
    // --- contributions and company intelligence ------------------------------------------

    /// Records a contribution to the tenant's integration with `provider` and folds it
    /// into the integration's aggregate, in one transaction: the aggregate row is locked
    /// (created if absent), the user's previous current (`active` or `approved`)
    /// contribution of the same connection and kind becomes `superseded` by the new one,
    /// the new one is inserted `active`, and `fold(previous state, new row)` is called
    /// once; its result is stored with the version incremented. Returns the new
    /// contribution and the aggregate as stored.
    ///
    /// [`StoreError::Invalid`] if confidence is not within 0 to 1 or a score not within
    /// 0 to 100; [`StoreError::NotFound`] if the user is not a member of the tenant, or
    /// the connection or run given is not the tenant's with `provider`.
    pub async fn record_contribution(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        new: &NewContribution,
        fold: Fold<'_>,
    ) -> Result<(ContributionRow, IntelligenceRow), StoreError> {
        validate(new)?;
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            require_member(&mut *tx, tenant, &new.user).await?;
            if let Some(connection_id) = new.connection_id {
                let key = (integration(tenant, provider), connection_id);
                let found: Option<(i64,)> =
                    optional(&mut *tx, CONNECTION_OF_INTEGRATION, key, "reading a contribution's connection").await?;
                found.ok_or_else(|| {
                    not_found(format!("no connection {connection_id} to `{provider}` at tenant `{tenant}`"))
                })?;
            }
            if let Some(run_id) = new.run_id {
                let key = (integration(tenant, provider), run_id);
                let found: Option<(String,)> =
                    optional(&mut *tx, RUN_OF_INTEGRATION, key, "reading a contribution's run").await?;
                found.ok_or_else(|| not_found(format!("no run {run_id} of `{provider}` at tenant `{tenant}`")))?;
            }
            let previous = lock_intelligence(&mut *tx, tenant, provider, now).await?;
            let row: ContributionRow = sqlx::query_as(concat!(
                "INSERT INTO contributions (tenant_id, provider, user_id, connection_id, run_id, kind, \
                 status, confidence, data, data_freshness, quality, impact, reliability, consistency, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10, $11, $12, $13, $14, $14) \
                 RETURNING ",
                contribution_columns!()
            ))
            .bind_key([tenant.as_str(), provider.as_str(), new.user.as_str()])
            .bind_all((
                new.connection_id,
                new.run_id,
                new.kind.as_str(),
                new.confidence,
                Json(&new.data),
                stored(new.data_freshness),
                new.quality,
                new.impact,
                new.reliability,
                new.consistency,
                now,
            ))
            .fetch_one(&mut *tx)
            .await
            .map_err(db("inserting a contribution"))?;
            sqlx::query(
                "UPDATE contributions SET status = 'superseded', superseded_by = $6, updated_at = $7 \
                 WHERE tenant_id = $1 AND provider = $2 AND user_id = $3 AND kind = $4 \
                 AND (connection_id = $5 OR (connection_id IS NULL AND $5 IS NULL)) \
                 AND status IN ('active', 'approved') AND id <> $6",
            )
            .bind_key([tenant.as_str(), provider.as_str(), new.user.as_str(), new.kind.as_str()])
            .bind_all((new.connection_id, row.id, now))
            .execute(&mut *tx)
            .await
            .map_err(db("superseding a contribution"))?;
            let folded = fold(previous.as_ref(), &row);
            let intelligence = store_intelligence(&mut *tx, tenant, provider, &folded, now).await?;
            tx.commit().await.map_err(db("committing a contribution"))?;
            Ok((row, intelligence))
        })
    }

    /// Approves (or rejects) the tenant's `active` contribution `id` as `reviewer`, and
    /// folds the changed row into its integration's aggregate under the same lock as
    /// [`Store::record_contribution`], in one transaction. Returns the reviewed
    /// contribution and the aggregate as stored.
    ///
    /// [`StoreError::NotFound`] if the contribution is not the tenant's;
    /// [`StoreError::Conflict`] if it is not `active` (the message names its status) or
    /// `reviewer` is neither owner nor reviewer of that integration.
    pub async fn review_contribution(
        &self,
        tenant: &TenantId,
        id: i64,
        approve: bool,
        reviewer: &UserId,
        fold: Fold<'_>,
    ) -> Result<(ContributionRow, IntelligenceRow), StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            let sql = concat!("SELECT provider FROM contributions WHERE ", contribution_key!());
            let provider: Option<(ProviderId,)> =
                optional(&mut *tx, sql, ([tenant.as_str()], id), "reading a contribution").await?;
            let (provider,) = provider.ok_or_else(|| no_contribution(tenant, id))?;
            let sql = concat!("SELECT responsibility FROM responsibilities WHERE ", responsibility_key!());
            let key = [tenant.as_str(), provider.as_str(), reviewer.as_str()];
            let held: Option<(Responsibility,)> =
                optional(&mut *tx, sql, key, "reading the reviewer's responsibility").await?;
            let held = held.map(|(held,)| held);
            if !held.is_some_and(Responsibility::may_review) {
                let has = held.map_or_else(|| "none".to_owned(), |r| r.to_string());
                return Err(StoreError::Conflict {
                    what: format!(
                        "user `{reviewer}` may not review contributions to `{provider}` at tenant \
                         `{tenant}`: that takes responsibility owner or reviewer (has: {has})"
                    ),
                });
            }
            let previous = lock_intelligence(&mut *tx, tenant, &provider, now).await?;
            let decided = if approve { ContributionStatus::Approved } else { ContributionStatus::Rejected };
            let row: Option<ContributionRow> = sqlx::query_as(concat!(
                "UPDATE contributions SET status = $3, reviewed_by = $4, reviewed_at = $5, updated_at = $5 WHERE ",
                contribution_key!(),
                " AND status = 'active' RETURNING ",
                contribution_columns!()
            ))
            .bind_key(([tenant.as_str()], id))
            .bind_all((decided.as_str(), reviewer.as_str(), now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reviewing a contribution"))?;
            let Some(row) = row else {
                let sql = concat!("SELECT status FROM contributions WHERE ", contribution_key!());
                let current: Option<(String,)> =
                    optional(&mut *tx, sql, ([tenant.as_str()], id), "reading a contribution").await?;
                let (current,) = current.ok_or_else(|| no_contribution(tenant, id))?;
                return Err(StoreError::Conflict {
                    what: format!(
                        "contribution {id} at tenant `{tenant}` is {current}; only an active \
                         contribution may be approved or rejected"
                    ),
                });
            };
            let folded = fold(previous.as_ref(), &row);
            let intelligence = store_intelligence(&mut *tx, tenant, &provider, &folded, now).await?;
            tx.commit().await.map_err(db("committing a review"))?;
            Ok((row, intelligence))
        })
    }

    /// Up to `filter.limit` of the tenant's contributions that `filter` matches, newest
    /// first.
    pub async fn contributions(
        &self,
        tenant: &TenantId,
        filter: &ContributionFilter,
    ) -> Result<Vec<ContributionRow>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<ContributionRow> = sqlx::query_as(concat!(
                "SELECT ",
                contribution_columns!(),
                " FROM contributions WHERE tenant_id = $1 AND ($2 IS NULL OR provider = $2) \
                 AND ($3 IS NULL OR user_id = $3) AND ($4 IS NULL OR kind = $4) \
                 AND ($5 IS NULL OR status = $5) ORDER BY id DESC LIMIT $6"
            ))
            .bind_all((
                tenant.as_str(),
                filter.provider.as_ref().map(ProviderId::as_str),
                filter.user.as_ref().map(UserId::as_str),
                filter.kind.map(ContributionKind::as_str),
                filter.status.map(ContributionStatus::as_str),
                filter.limit.max(0),
            ))
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing contributions"))?;
            Ok(rows)
        })
    }

    /// The tenant's contribution `id`.
    pub async fn contribution(&self, tenant: &TenantId, id: i64) -> Result<Option<ContributionRow>, StoreError> {
        on_backend!(self, |s| {
            let sql = concat!("SELECT ", contribution_columns!(), " FROM contributions WHERE ", contribution_key!());
            optional(&s.pool, sql, ([tenant.as_str()], id), "reading a contribution").await
        })
    }

    /// The contributions that count towards the tenant's integration with `provider`
    /// (`active` and `approved`), oldest first: the input of a recomputation.
    pub async fn current_contributions(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
    ) -> Result<Vec<ContributionRow>, StoreError> {
        on_backend!(self, |s| {
            let sql = concat!(
                "SELECT ",
                contribution_columns!(),
                " FROM contributions WHERE ",
                integration_key!(),
                " AND status IN ('active', 'approved') ORDER BY id"
            );
            all(&s.pool, sql, integration(tenant, provider), "listing current contributions").await
        })
    }

    /// The aggregates of the tenant's integrations (of one with `Some`), by provider.
    pub async fn intelligence(
        &self,
        tenant: &TenantId,
        provider: Option<&ProviderId>,
    ) -> Result<Vec<IntelligenceRow>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<IntelligenceRow> = sqlx::query_as(concat!(
                "SELECT ",
                intelligence_columns!(),
                " FROM company_intelligence WHERE tenant_id = $1 AND ($2 IS NULL OR provider = $2) \
                 AND version > 0 ORDER BY provider"
            ))
            .bind_all((tenant.as_str(), provider.map(ProviderId::as_str)))
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading company intelligence"))?;
            Ok(rows)
        })
    }

    /// Replaces the aggregate of the tenant's integration with `provider` with `state`
    /// and its pairs of contributors with `pairs`
    /// (an on-demand recomputation), incrementing its version (1 when it is new). A
    /// contribution recorded between reading [`Store::current_contributions`] and this
    /// call is not in `state`; compare versions to detect that.
    ///
    /// [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn replace_intelligence(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        state: &Value,
        pairs: &[PairRow],
    ) -> Result<IntelligenceRow, StoreError> {
        on_backend!(self, |s| {
            let (mut tx, _) = s.begin_write().await?;
            let row: IntelligenceRow = sqlx::query_as(concat!(
                "INSERT INTO company_intelligence (tenant_id, provider, state, version, updated_at) \
                 VALUES ($1, $2, $3, 1, $4) ON CONFLICT (tenant_id, provider) DO UPDATE SET \
                 state = excluded.state, version = company_intelligence.version + 1, \
                 updated_at = excluded.updated_at RETURNING ",
                intelligence_columns!()
            ))
            .bind_key(integration(tenant, provider))
            .bind_all((Json(state), now()))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    StoreError::NotFound { what: format!("tenant `{tenant}` does not exist") }
                } else {
                    db("replacing company intelligence")(e)
                }
            })?;
            sqlx::query(concat!("DELETE FROM intelligence_pairs WHERE ", integration_key!()))
                .bind_key(integration(tenant, provider))
                .execute(&mut *tx)
                .await
                .map_err(db("replacing pairs of contributors"))?;
            insert_pairs(&mut *tx, tenant, provider, pairs).await?;
            tx.commit().await.map_err(db("committing company intelligence"))?;
            Ok(row)
        })
    }

    /// The relations between the contributors of the tenant's integration with
    /// `provider`, by user.
    pub async fn intelligence_pairs(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
    ) -> Result<Vec<PairRow>, StoreError> {
        on_backend!(self, |s| {
            let sql = concat!(
                "SELECT user_a, user_b, relation FROM intelligence_pairs WHERE ",
                integration_key!(),
                " ORDER BY user_a, user_b"
            );
            all(&s.pool, sql, integration(tenant, provider), "reading pairs of contributors").await
        })
    }

    /// How many contributions there are of each kind and status, over every tenant (for
    /// metrics), by kind then status.
    pub async fn contribution_counts(&self) -> Result<Vec<(ContributionKind, ContributionStatus, i64)>, StoreError> {
        on_backend!(self, |s| {
            sqlx::query_as(
                "SELECT kind, status, COUNT(*) FROM contributions GROUP BY kind, status ORDER BY kind, status",
            )
            .fetch_all(&s.pool)
            .await
            .map_err(db("counting contributions"))
        })
    }

    /// The numeric top-level `quality` of every aggregate, over every tenant (for
    /// metrics); `None` where it is absent or not a number.
    pub async fn intelligence_qualities(&self) -> Result<Vec<Option<f64>>, StoreError> {
        on_backend!(self, |s: B| {
            sqlx::query_scalar(B::SELECT_INTELLIGENCE_QUALITIES)
                .fetch_all(&s.pool)
                .await
                .map_err(db("reading company intelligence qualities"))
        })
    }
}

/// [`not_a_member`] unless `user` has a membership at `tenant`.
pub(super) async fn require_member(
    conn: impl Into<Conn<'_>>,
    tenant: &TenantId,
    user: &UserId,
) -> Result<(), StoreError> {
    on_connection!(conn, |conn| {
        let found: Option<(String,)> =
            optional(&mut *conn, ROLE_AT_TENANT, [tenant.as_str(), user.as_str()], "reading a membership").await?;
        found.map(|_| ()).ok_or_else(|| not_a_member(tenant, user))
    })
}

/// Locks the integration's aggregate row until commit, creating it (version 0,
/// no state) if absent. Returns the state; `None` if there is none yet.
pub(super) async fn lock_intelligence(
    conn: impl Into<Conn<'_>>,
    tenant: &TenantId,
    provider: &ProviderId,
    now: DateTime<Utc>,
) -> Result<Option<Value>, StoreError> {
    on_connection!(conn, |conn: B| {
        sqlx::query(
            "INSERT INTO company_intelligence (tenant_id, provider, state, version, updated_at) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (tenant_id, provider) DO NOTHING",
        )
        .bind_key(integration(tenant, provider))
        .bind_all((Json(Value::Null), now))
        .execute(&mut *conn)
        .await
        .map_err(db("creating company intelligence"))?;
        let (state, version): (Json<Value>, i64) = sqlx::query_as(B::LOCK_INTELLIGENCE)
            .bind_key(integration(tenant, provider))
            .fetch_one(&mut *conn)
            .await
            .map_err(db("locking company intelligence"))?;
        Ok((version > 0).then_some(state.0))
    })
}

/// Writes the folded state of a locked aggregate row, increments its version, and
/// replaces the folded user's pairs.
pub(super) async fn store_intelligence(
    conn: impl Into<Conn<'_>>,
    tenant: &TenantId,
    provider: &ProviderId,
    folded: &Folded,
    now: DateTime<Utc>,
) -> Result<IntelligenceRow, StoreError> {
    on_connection!(conn, |conn| {
        let row: IntelligenceRow = sqlx::query_as(concat!(
            "UPDATE company_intelligence SET state = $3, version = version + 1, updated_at = $4 WHERE ",
            integration_key!(),
            " RETURNING ",
            intelligence_columns!()
        ))
        .bind_key(integration(tenant, provider))
        .bind_all((Json(&folded.state), now))
        .fetch_one(&mut *conn)
        .await
        .map_err(db("storing company intelligence"))?;
        sqlx::query(concat!(
            "DELETE FROM intelligence_pairs WHERE ",
            integration_key!(),
            " AND (user_a = $3 OR user_b = $3)"
        ))
        .bind_key([tenant.as_str(), provider.as_str(), folded.user.as_str()])
        .execute(&mut *conn)
        .await
        .map_err(db("replacing a contributor's pairs"))?;
        insert_pairs(&mut *conn, tenant, provider, &folded.pairs).await?;
        Ok(row)
    })
}

pub(super) async fn insert_pairs(
    conn: impl Into<Conn<'_>>,
    tenant: &TenantId,
    provider: &ProviderId,
    pairs: &[PairRow],
) -> Result<(), StoreError> {
    on_connection!(conn, |conn| {
        for p in pairs {
            let (a, b) = if p.user_a <= p.user_b { (&p.user_a, &p.user_b) } else { (&p.user_b, &p.user_a) };
            sqlx::query(
                "INSERT INTO intelligence_pairs (tenant_id, provider, user_a, user_b, relation) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, provider, user_a, user_b) \
                 DO UPDATE SET relation = excluded.relation",
            )
            .bind_key([tenant.as_str(), provider.as_str(), a.as_str(), b.as_str()])
            .bind(Json(&p.relation))
            .execute(&mut *conn)
            .await
            .map_err(db("storing a pair of contributors"))?;
        }
        Ok(())
    })
}
