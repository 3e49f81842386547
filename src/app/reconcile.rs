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
/// its role grants, as [`reconcile`] does for every tenant: after `tenant apply`, or
/// when a user connection or a membership changed.
pub async fn reconcile_tenant(
    catalog: &Catalog,
    store: &Store,
    tenant: &TenantId,
    fixed_jitter: std::time::Duration,
) -> Result<ReconcileCounts, TenantError> {
    let view = Tenants::new(catalog, store, "reconcile").require(tenant).await?;
    let connections = store.list_connections(tenant).await?;
    Ok(reconcile_view(store, &view, &connections, Utc::now(), fixed_jitter).await?)
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
