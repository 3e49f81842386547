//! Reconciliation: make the store's jobs and entity views follow the configuration.
//! Start-up is a reconcile from whatever the store holds, so start and reload are the
//! same code.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Catalog, RoleGrants};
use crate::model::{ConnectionRow, ConnectionStatus, ReconcileCounts, TenantId};
use crate::scheduler::{desired_jobs, next_due_fn};
use crate::store::{Store, StoreError, ViewsRefreshed};
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
    let now = Utc::now();
    let mut statuses = std::collections::BTreeMap::<ConnectionStatus, i64>::new();
    // One tenant at a time: a row carries its preset snapshot, so all of them at once
    // would hold every tenant's snapshot in memory together.
    for id in store.list_tenant_ids().await? {
        out.tenants += 1;
        let view = match tenants.view(&id).await {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                out.errors.push(format!("tenant `{id}`: {e}"));
                continue;
            }
        };
        let row = &view.tenant;
        let connections = store.list_connections(&row.id).await?;
        for c in &connections {
            *statuses.entry(c.status).or_default() += 1;
        }
        match reconcile_view(store, &view, &connections, now, fixed_jitter).await {
            Ok(c) => {
                out.jobs.created += c.created;
                out.jobs.updated += c.updated;
                out.jobs.reenabled += c.reenabled;
                out.jobs.disabled += c.disabled;
                out.jobs.unchanged += c.unchanged;
            }
            Err(e) => out.errors.push(format!("tenant `{}`: {e}", row.id)),
        }
    }
    for q in &queued {
        if !out.errors.iter().any(|e| e.starts_with(&format!("tenant `{}`", q.tenant_id))) {
            store.finish_reconcile(q).await?;
        }
    }
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
