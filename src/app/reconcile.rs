//! Reconciliation: make the store's jobs and entity views follow the configuration.
//! Start-up is a reconcile from whatever the store holds, so start and reload are the
//! same code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Catalog, Effective, ProviderLayer, RoleGrants};
use crate::model::{ConnectionRow, ConnectionStatus, ProviderId, ReconcileCounts, RoleName, TenantId};
use crate::scheduler::{desired_jobs, next_due_fn};
use crate::store::{
    JobConnection, RECONCILE_BATCH, ReconcileInputs, ReconcileTenant, Store, StoreError, StoredJob, TenantJobs,
    ViewsRefreshed, plan_jobs,
};
use crate::telemetry::{Metrics, StatusLabels};
use crate::tenants::{ApplyOutcome, TenantError, TenantView, Tenants};

/// What a reconciliation did, for logs and `reload` replies.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reconciled {
    pub tenants: usize,
    pub tenant_files_applied: usize,
    pub jobs: ReconcileCounts,
    /// The entity views (`entity_<name>`) made to follow `entities.toml`.
    pub views: ViewsRefreshed,
    /// Problems with single tenants (the others were reconciled).
    pub errors: Vec<String>,
}

/// Applies tenant files (when asked), then reconciles every tenant's jobs, then the
/// entity views. A refresh of the views that fails is one of the errors (the views stay
/// as they were; the next reload tries again).
pub async fn reconcile(
    catalog: &Catalog,
    store: &Store,
    apply_files: bool,
    fixed_jitter: std::time::Duration,
    metrics: &Metrics,
) -> Result<Reconciled, StoreError> {
    reconcile_in_batches(catalog, store, apply_files, fixed_jitter, metrics, RECONCILE_BATCH).await
}

/// [`reconcile`] reading and writing `batch` tenants at a time (tests use small batches
/// to cross batch boundaries with few tenants).
pub async fn reconcile_in_batches(
    catalog: &Catalog,
    store: &Store,
    apply_files: bool,
    fixed_jitter: std::time::Duration,
    metrics: &Metrics,
    batch: usize,
) -> Result<Reconciled, StoreError> {
    let mut out = Reconciled::default();
    let tenants = Tenants::new(catalog, store, "daemon");
    if apply_files {
        for (path, spec) in &catalog.tenant_files {
            match tenants.apply(spec).await {
                Ok(ApplyOutcome::Unchanged) => {}
                Ok(_) => out.tenant_files_applied += 1,
                Err(e) => out.errors.push(format!("{}: {e}", path.display())),
            }
        }
    }
    // What was queued before this pass is covered by it (a tenant queued again while it
    // runs stays queued: its generation moved).
    let queued = store.queued_reconciles(i64::MAX).await?;
    let mut pass = Pass::new(catalog, store, fixed_jitter);
    // A batch of tenants at a time: their configuration, connections and jobs in a few
    // reads (never every tenant's at once); only tenants whose jobs differ are written,
    // a batch's in one transaction.
    let mut after: Option<TenantId> = None;
    loop {
        let inputs = store.reconcile_inputs(after.as_ref(), batch.max(1)).await?;
        let Some(last) = inputs.tenants.last() else { break };
        after = Some(last.id.clone());
        pass.batch(inputs).await?;
    }
    out.tenants = pass.tenants;
    out.jobs = pass.jobs;
    out.errors.append(&mut pass.errors);
    let done: Vec<_> = queued.into_iter().filter(|q| !pass.failed.contains(q.tenant_id.as_str())).collect();
    store.finish_reconciles(&done).await?;
    let statuses = pass.statuses;
    for status in ConnectionStatus::ALL {
        let n = statuses.get(&status).copied().unwrap_or(0);
        metrics.connections.get_or_create(&StatusLabels { status: status.as_str().into() }).set(n);
    }
    match store.refresh_views(&catalog.entities).await {
        Ok(views) => {
            if views.changed() {
                tracing::info!(
                    created = ?views.created,
                    replaced = ?views.replaced,
                    dropped = ?views.dropped,
                    "entity views follow entities.toml"
                );
            }
            out.errors.extend(views.problems.iter().cloned());
            out.views = views;
        }
        Err(e) => out.errors.push(format!("entity views not refreshed: {e}")),
    }
    Ok(out)
}

/// Effective configurations a pass keeps at most (see [`Pass::effective`]).
const MAX_CACHED_CONFIGS: usize = 256;

/// Effective configurations by what they are computed from: (preset, revision, snapshot
/// index in [`Pass::snapshots`], overrides as JSON text by provider).
type ConfigKey = (String, String, usize, Vec<(String, String)>);

/// One reconciliation pass over every tenant, a batch at a time. Tenants on the same
/// preset snapshot with the same overrides share one effective configuration, computed
/// once; only tenants whose jobs differ from the desired ones are written.
struct Pass<'a> {
    catalog: &'a Catalog,
    store: &'a Store,
    fixed_jitter: std::time::Duration,
    now: DateTime<Utc>,
    /// Preset snapshot JSON text → its index in `snapshots`.
    snapshot_ids: HashMap<String, usize>,
    /// Parsed snapshots (or why one does not parse).
    snapshots: Vec<Result<Arc<BTreeMap<ProviderId, ProviderLayer>>, String>>,
    effective: HashMap<ConfigKey, Result<Arc<Effective>, String>>,
    tenants: usize,
    jobs: ReconcileCounts,
    errors: Vec<String>,
    /// Tenants that could not be reconciled (they stay queued).
    failed: HashSet<String>,
    statuses: BTreeMap<ConnectionStatus, i64>,
}

impl<'a> Pass<'a> {
    fn new(catalog: &'a Catalog, store: &'a Store, fixed_jitter: std::time::Duration) -> Self {
        Self {
            catalog,
            store,
            fixed_jitter,
            now: Utc::now(),
            snapshot_ids: HashMap::new(),
            snapshots: Vec::new(),
            effective: HashMap::new(),
            tenants: 0,
            jobs: ReconcileCounts::default(),
            errors: Vec::new(),
            failed: HashSet::new(),
            statuses: BTreeMap::new(),
        }
    }

    fn add(&mut self, c: ReconcileCounts) {
        self.jobs.created += c.created;
        self.jobs.updated += c.updated;
        self.jobs.reenabled += c.reenabled;
        self.jobs.disabled += c.disabled;
        self.jobs.unchanged += c.unchanged;
    }

    fn fail(&mut self, tenant: &TenantId, error: impl std::fmt::Display) {
        self.errors.push(format!("tenant `{tenant}`: {error}"));
        self.failed.insert(tenant.to_string());
    }

    /// Reconciles one tenant on its own, reading it again: for a tenant that changed
    /// while its batch was read (or whose write found it changed). A tenant deleted
    /// meanwhile is skipped.
    async fn one(&mut self, tenant: &TenantId) {
        match reconcile_one(self.catalog, self.store, tenant, self.fixed_jitter).await {
            Ok(c) => self.add(c),
            Err(TenantError::NotFound(_)) => {}
            Err(e) => self.fail(tenant, e),
        }
    }

    /// The effective configuration of a tenant on snapshot `snapshot` with `overrides`.
    fn effective(
        &mut self,
        tenant: &ReconcileTenant,
        snapshot: usize,
        overrides: &[(ProviderId, Value)],
    ) -> Result<Arc<Effective>, TenantError> {
        let key: ConfigKey = (
            tenant.preset.to_string(),
            tenant.preset_revision.clone(),
            snapshot,
            overrides.iter().map(|(p, l)| (p.to_string(), l.to_string())).collect(),
        );
        if self.effective.len() >= MAX_CACHED_CONFIGS && !self.effective.contains_key(&key) {
            // Tenants with overrides of their own each have a configuration: memory
            // stays bounded, the common shapes are computed again soon enough.
            self.effective.clear();
        }
        let catalog = self.catalog;
        let snapshots = &self.snapshots;
        let found = self.effective.entry(key).or_insert_with(|| {
            let snapshot = snapshots[snapshot].clone().map_err(|e| format!("preset snapshot: {e}"))?;
            let mut layers = BTreeMap::new();
            for (p, v) in overrides {
                let layer: ProviderLayer =
                    serde_json::from_value(v.clone()).map_err(|e| format!("overrides of `{p}`: {e}"))?;
                layers.insert(p.clone(), layer);
            }
            Ok(Arc::new(Effective::compute(catalog, &tenant.preset, &tenant.preset_revision, &snapshot, &layers)))
        });
        found.clone().map_err(|reason| TenantError::Corrupt { tenant: tenant.id.clone(), reason })
    }

    /// Reconciles a batch of tenants read by [`Store::reconcile_inputs`].
    async fn batch(&mut self, inputs: ReconcileInputs) -> Result<(), StoreError> {
        // (preset, revision) → snapshot; `None` if the batch holds two snapshots for it.
        let mut pairs: HashMap<(String, String), Option<usize>> = HashMap::new();
        for (preset, revision, snapshot) in &inputs.snapshots {
            let next = self.snapshots.len();
            let id = *self.snapshot_ids.entry(snapshot.to_string()).or_insert(next);
            if id == next {
                self.snapshots.push(serde_json::from_value(snapshot.clone()).map(Arc::new).map_err(|e| e.to_string()));
            }
            pairs.entry((preset.to_string(), revision.clone())).and_modify(|known| *known = None).or_insert(Some(id));
        }
        let mut overrides: HashMap<String, Vec<(ProviderId, Value)>> = HashMap::new();
        for (t, p, layer) in inputs.overrides {
            overrides.entry(t.to_string()).or_default().push((p, layer));
        }
        let mut roles: HashMap<String, BTreeMap<RoleName, Vec<String>>> = HashMap::new();
        for (t, role, streams) in inputs.roles {
            roles.entry(t.to_string()).or_default().insert(role, streams);
        }
        let mut connections: HashMap<String, Vec<ConnectionRow>> = HashMap::new();
        for c in inputs.connections {
            connections.entry(c.tenant_id.to_string()).or_default().push(c);
        }
        let mut jobs: HashMap<String, Vec<&StoredJob>> = HashMap::new();
        for j in &inputs.jobs {
            jobs.entry(j.tenant_id.to_string()).or_default().push(j);
        }
        let no_roles = BTreeMap::new();
        let mut pending = Vec::new();
        let mut alone = Vec::new();
        for t in &inputs.tenants {
            self.tenants += 1;
            let conns = connections.get(t.id.as_str()).map(Vec::as_slice).unwrap_or_default();
            for c in conns {
                *self.statuses.entry(c.status).or_default() += 1;
            }
            let Some(&Some(snapshot)) = pairs.get(&(t.preset.to_string(), t.preset_revision.clone())) else {
                alone.push(t.id.clone());
                continue;
            };
            let layers = overrides.get(t.id.as_str()).map(Vec::as_slice).unwrap_or_default();
            let effective = match self.effective(t, snapshot, layers) {
                Ok(e) => e,
                Err(e) => {
                    self.fail(&t.id, e);
                    continue;
                }
            };
            let grants = RoleGrants::from_stored(roles.get(t.id.as_str()).unwrap_or(&no_roles));
            let desired = desired_jobs(&effective, conns, &grants);
            let tz: chrono_tz::Tz = t.timezone.parse().unwrap_or(chrono_tz::UTC);
            let next_due = next_due_fn(tz, self.now, self.fixed_jitter);
            let by_id: HashMap<i64, JobConnection> = conns.iter().map(|c| (c.id, c.into())).collect();
            let stored = jobs.get(t.id.as_str()).map(Vec::as_slice).unwrap_or_default();
            let planned = plan_jobs(&t.id, &desired, &by_id, stored, &next_due).map(|p| (p.is_empty(), p.counts));
            match planned {
                Ok((true, counts)) => self.add(counts),
                Ok((false, _)) => pending.push((t.id.clone(), desired, next_due)),
                Err(e) => self.fail(&t.id, e),
            }
        }
        let work: Vec<TenantJobs<'_>> =
            pending.iter().map(|(tenant, desired, next_due)| TenantJobs { tenant, desired, next_due }).collect();
        match self.store.reconcile_jobs_many(&work).await {
            Ok(results) => {
                for ((tenant, ..), result) in pending.iter().zip(results) {
                    match result {
                        Ok(c) => self.add(c),
                        // The tenant or a connection went away since the batch was read.
                        Err(StoreError::NotFound { .. }) => alone.push(tenant.clone()),
                        Err(e) => self.fail(tenant, e),
                    }
                }
            }
            // The batch's transaction failed as a whole: each of its tenants on its own,
            // so one tenant's failure is that tenant's error only.
            Err(e) => {
                tracing::warn!(
                    tenants = pending.len(),
                    "reconciling a batch of tenants failed, one at a time now: {e}"
                );
                alone.extend(pending.iter().map(|(tenant, ..)| tenant.clone()));
            }
        }
        for tenant in &alone {
            self.one(tenant).await;
        }
        Ok(())
    }
}

/// Reconciles one tenant's jobs with its effective configuration, its connections and
/// its role grants, as [`reconcile`] does for every tenant, and takes the tenant off the
/// reconciliation queue (unless it was queued again meanwhile): what every command that
/// changed a tenant runs right after its change.
pub async fn reconcile_tenant(
    catalog: &Catalog,
    store: &Store,
    tenant: &TenantId,
    fixed_jitter: std::time::Duration,
) -> Result<ReconcileCounts, TenantError> {
    let queued = store.queued_reconcile(tenant).await?;
    let result = reconcile_one(catalog, store, tenant, fixed_jitter).await;
    if let Some(q) = queued
        && matches!(result, Ok(_) | Err(TenantError::NotFound(_)))
    {
        store.finish_reconcile(&q).await?;
    }
    result
}

async fn reconcile_one(
    catalog: &Catalog,
    store: &Store,
    tenant: &TenantId,
    fixed_jitter: std::time::Duration,
) -> Result<ReconcileCounts, TenantError> {
    let view = Tenants::new(catalog, store, "reconcile").require(tenant).await?;
    let connections = store.list_connections(tenant).await?;
    Ok(reconcile_view(store, &view, &connections, Utc::now(), fixed_jitter).await?)
}

/// What [`reconcile_queued`] did for one queued tenant.
#[derive(Debug)]
pub struct QueueReconciled {
    pub tenant: TenantId,
    /// The change that queued it.
    pub reason: String,
    /// The jobs' changes, or why the tenant could not be reconciled (it stays queued).
    pub result: Result<ReconcileCounts, TenantError>,
}

/// The one path by which changes reach the jobs: every store write that changes what
/// jobs a tenant should have queues the tenant in its own transaction
/// (`reconcile_queue`); this reconciles the queued tenants (at most `limit`) and removes
/// each from the queue unless it was queued again meanwhile. The CLI runs it right after
/// its change; every daemon runs it on its housekeeping tick, so a change whose process
/// died before reconciling still reaches the jobs. A tenant deleted meanwhile leaves the
/// queue; one that fails stays queued (its error is returned and logged by the caller).
pub async fn reconcile_queued(
    catalog: &Catalog,
    store: &Store,
    fixed_jitter: std::time::Duration,
    limit: i64,
) -> Result<Vec<QueueReconciled>, StoreError> {
    let mut out = Vec::new();
    for queued in store.queued_reconciles(limit).await? {
        let result = reconcile_one(catalog, store, &queued.tenant_id, fixed_jitter).await;
        if matches!(result, Ok(_) | Err(TenantError::NotFound(_))) {
            store.finish_reconcile(&queued).await?;
        }
        out.push(QueueReconciled { tenant: queued.tenant_id, reason: queued.reason, result });
    }
    Ok(out)
}

async fn reconcile_view(
    store: &Store,
    view: &TenantView,
    connections: &[ConnectionRow],
    now: DateTime<Utc>,
    fixed_jitter: std::time::Duration,
) -> Result<ReconcileCounts, StoreError> {
    let desired = desired_jobs(&view.effective, connections, &RoleGrants::from_stored(&view.roles));
    let tz: chrono_tz::Tz = view.tenant.timezone.parse().unwrap_or(chrono_tz::UTC);
    let next_due = next_due_fn(tz, now, fixed_jitter);
    store.reconcile_jobs(&view.tenant.id, &desired, &next_due).await
}
