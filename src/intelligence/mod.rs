//! Usage contributions and company integration intelligence.
//!
//! After every run of a user's connection, the run's real figures (and the connection's
//! recent runs) become contributions of the kinds the user's responsibility on that
//! company integration covers ([`derive`]); each contribution supersedes the user's
//! previous one of its kind and is folded into the integration's aggregate
//! ([`aggregate`]) in the same store transaction. [`report`] shows the result.

pub mod aggregate;
pub mod derive;
pub mod report;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use self::aggregate::{IntegrationState, Observation, Pair};
use self::derive::{Derived, RunContext};
use crate::config::Catalog;
use crate::config::RoleGrants;
use crate::model::{
    ContributionRow, IntelligenceRow, PairRow, ProviderId, RunOutcome, RunRow, Schedule, TenantId, UserId,
};
use crate::store::{Folded, NewContribution, Store, StoreError};
use crate::telemetry::{ContributionRecorded, Metrics};
use crate::tenants::{TenantError, Tenants};

/// Recent runs of a connection that contributions are derived from.
pub const HISTORY_RUNS: i64 = 20;

/// Why contributions could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IntelligenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    NotFound(String),
}

impl<'a> From<&'a ContributionRow> for Observation<'a> {
    fn from(r: &'a ContributionRow) -> Self {
        Observation {
            id: r.id,
            user: r.user.as_str(),
            kind: r.kind,
            status: r.status,
            confidence: r.confidence,
            quality: r.quality,
            impact: r.impact,
            reliability: r.reliability,
            consistency: r.consistency,
            freshness: r.data_freshness,
            data: &r.data,
        }
    }
}

/// The store's fold: the stored state with one changed contribution applied, and the
/// contribution's user's pairs. A stored state this build cannot read is replaced by one
/// built from this contribution alone (with a warning); `intelligence show --recompute`
/// rebuilds it from every contribution.
pub fn fold(state: Option<&Value>, row: &ContributionRow) -> Folded {
    let state = match state.map(IntegrationState::from_json) {
        None => IntegrationState::default(),
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tracing::warn!(tenant = %row.tenant, provider = %row.provider, "unreadable intelligence state, restarting it: {e}");
            IntegrationState::default()
        }
    };
    let (state, pairs) = aggregate::apply(state, &Observation::from(row));
    Folded { state: state.to_json(), user: row.user.clone(), pairs: pair_rows(&pairs) }
}

fn pair_rows(pairs: &[Pair]) -> Vec<PairRow> {
    pairs
        .iter()
        .filter_map(|p| {
            Some(PairRow {
                user_a: UserId::parse(&p.a).ok()?,
                user_b: UserId::parse(&p.b).ok()?,
                relation: serde_json::to_value(p).ok()?,
            })
        })
        .collect()
}

/// One company integration's intelligence as read from the store.
#[derive(Debug, Clone)]
pub struct Integration {
    pub row: IntelligenceRow,
    pub state: IntegrationState,
    pub pairs: Vec<Pair>,
}

impl Integration {
    /// As operators and tenant admins see it ([`report::to_json`]).
    pub fn to_json(&self) -> Value {
        report::to_json(&self.row, &self.state, &self.pairs)
    }
}

/// Rebuilds one integration's state and pairs from all its current contributions and
/// stores them.
pub async fn recompute(store: &Store, tenant: &TenantId, provider: &ProviderId) -> Result<IntelligenceRow, StoreError> {
    let rows = store.current_contributions(tenant, provider).await?;
    let (state, pairs) = aggregate::recompute(rows.iter().map(Observation::from));
    store.replace_intelligence(tenant, provider, &state.to_json(), &pair_rows(&pairs)).await
}

/// The tenant's company integrations (or one), each with its state and pairs; with
/// `recompute`, each is first rebuilt from its contributions.
pub async fn integrations(
    store: &Store,
    tenant: &TenantId,
    provider: Option<&ProviderId>,
    recompute_first: bool,
) -> Result<Vec<Integration>, StoreError> {
    let mut rows = store.intelligence(tenant, provider).await?;
    if recompute_first {
        let mut fresh = Vec::with_capacity(rows.len());
        for row in &rows {
            fresh.push(recompute(store, tenant, &row.provider).await?);
        }
        rows = fresh;
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let pairs = store
            .intelligence_pairs(tenant, &row.provider)
            .await?
            .into_iter()
            .filter_map(|p| serde_json::from_value::<Pair>(p.relation).ok())
            .collect();
        let state = IntegrationState::from_json(&row.state).unwrap_or_default();
        out.push(Integration { row, state, pairs });
    }
    Ok(out)
}

/// Approves or rejects an active contribution. The reviewer may not review their own;
/// the store requires them to be responsible for the integration as `owner` or
/// `reviewer`.
pub async fn review(
    store: &Store,
    tenant: &TenantId,
    id: i64,
    approve: bool,
    reviewer: &UserId,
) -> Result<(ContributionRow, IntelligenceRow), IntelligenceError> {
    let row = store
        .contribution(tenant, id)
        .await?
        .ok_or_else(|| IntelligenceError::NotFound(format!("contribution {id} not found at tenant `{tenant}`")))?;
    if &row.user == reviewer {
        return Err(IntelligenceError::NotAllowed(format!("`{reviewer}` made contribution {id} and cannot review it")));
    }
    Ok(store.review_contribution(tenant, id, approve, reviewer, &fold).await?)
}

/// Refreshes the integrations-by-quality-band gauges.
pub async fn refresh_gauges(store: &Store, metrics: &Metrics) -> Result<(), StoreError> {
    let qualities = store.intelligence_qualities().await?;
    metrics.set_quality_bands(&qualities);
    Ok(())
}

/// Derives and records the contributions of a finished run of `owner`'s connection:
/// the kinds the owner's responsibility on the integration covers (none for company
/// connections, viewers, or with auto-contribute off). Each one supersedes the owner's
/// previous one of its kind and is folded into the integration's intelligence.
pub async fn after_run(
    store: &Store,
    catalog: &Catalog,
    metrics: &Metrics,
    run: &RunRow,
    owner: Option<&UserId>,
) -> Result<Vec<ContributionRow>, IntelligenceError> {
    let Some(user) = owner else { return Ok(Vec::new()) };
    if run.outcome == RunOutcome::Running {
        return Ok(Vec::new());
    }
    let (tenant, provider) = (&run.tenant_id, &run.provider);
    let Some(duty) = store.responsibility(tenant, provider, user).await? else { return Ok(Vec::new()) };
    if !duty.auto_contribute || duty.scope.is_empty() {
        return Ok(Vec::new());
    }
    let Some(job) = store.get_job(tenant, run.job_id).await? else { return Ok(Vec::new()) };
    let history = store.connection_runs(tenant, job.connection_id, HISTORY_RUNS).await?;
    let view = Tenants::new(catalog, store, "intelligence").require(tenant).await?;
    let timezone = view.tenant.timezone.parse().unwrap_or(chrono_tz::UTC);
    // The streams this user's connection may sync: enabled, and granted to the user's
    // role at this company.
    let grants = RoleGrants::from_stored(&view.roles);
    let role = store.memberships_of(user).await?.into_iter().find(|m| &m.tenant_id == tenant).map(|m| m.role);
    let streams_allowed: Vec<String> = view
        .effective
        .providers
        .get(provider)
        .map(|p| {
            p.config
                .enabled_streams()
                .filter(|(name, _)| grants.check(role.as_ref(), provider, name).is_ok())
                .map(|(name, _)| name.to_owned())
                .collect()
        })
        .unwrap_or_default();
    let auth_method = catalog.manifests.get(provider.as_str()).map_or("unknown", |m| m.auth.kind.as_str());
    let interval =
        Schedule::parse(&job.schedule).ok().and_then(|s| typical_interval(&s, run.started_at)).map(|d| d.as_secs_f64());
    let reasons = if run.stats.dead_lettered > 0 {
        let letters = store.list_dead_letters(tenant, Some(run.id), 1000).await?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for l in letters {
            *counts.entry(l.reason).or_default() += 1;
        }
        let mut v: Vec<(String, u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    } else {
        Vec::new()
    };
    // The run itself leads the history (it is finished, so the store lists it).
    let mut runs: Vec<RunRow> = history.into_iter().filter(|r| r.id != run.id).collect();
    runs.insert(0, run.clone());
    let ctx = RunContext {
        run,
        history: &runs,
        auth_method,
        schedule: &job.schedule,
        interval_secs: interval,
        streams_allowed: &streams_allowed,
        timezone,
        dead_letter_reasons: &reasons,
    };
    let mut out = Vec::new();
    for d in derive::derive(&ctx, &duty.scope) {
        let new = to_new(user, job.connection_id, run, d);
        let (row, state) = store.record_contribution(tenant, provider, &new, &fold).await?;
        ContributionRecorded {
            tenant: tenant.as_str(),
            provider: provider.as_str(),
            user: user.as_str(),
            kind: row.kind.as_str(),
            id: row.id,
            confidence: row.confidence,
            quality: state.state.get("quality").and_then(Value::as_f64),
        }
        .emit(metrics);
        out.push(row);
    }
    Ok(out)
}

fn to_new(user: &UserId, connection_id: i64, run: &RunRow, d: Derived) -> NewContribution {
    NewContribution {
        user: user.clone(),
        connection_id: Some(connection_id),
        run_id: Some(run.id),
        kind: d.kind,
        confidence: d.confidence,
        data: d.data,
        data_freshness: d.data_freshness,
        quality: d.quality,
        impact: d.impact,
        reliability: d.reliability,
        consistency: d.consistency,
    }
}

/// The typical time between runs of `schedule`: its interval, a day, or the gap between
/// a cron expression's next two occurrences after `from`.
pub fn typical_interval(schedule: &Schedule, from: DateTime<Utc>) -> Option<Duration> {
    match schedule {
        Schedule::Every(d) => Some(*d),
        Schedule::DailyAt(_) => Some(Duration::from_secs(86_400)),
        Schedule::Cron(expr) => {
            let cron = crate::model::parse_cron(expr).ok()?;
            let first = cron.find_next_occurrence(&from, false).ok()?;
            let second = cron.find_next_occurrence(&first, false).ok()?;
            (second - first).to_std().ok()
        }
    }
}
