//! One run task: a claimed job synced under its lease, renewed by heartbeat while the
//! run is alive; a lost lease cancels the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{Progress, RunDone};
use crate::config::Catalog;
use crate::model::{ClaimedJob, JobRow, RunRow, UserId};
use crate::secrets::MasterKey;
use crate::store::{Store, StoreError, StoreHealth};
use crate::sync::{SyncRequest, Syncer};
use crate::telemetry::Metrics;

/// What a run task needs, owned.
pub(super) struct RunContext {
    pub(super) catalog: Arc<Catalog>,
    pub(super) store: Store,
    pub(super) key: Arc<MasterKey>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) owner: String,
    pub(super) lease: Duration,
    pub(super) heartbeat: Duration,
    pub(super) started_runs: Arc<Mutex<HashMap<i64, uuid::Uuid>>>,
    /// Every run's rate limits (one registry for the process).
    pub(super) limits: Arc<crate::http::RateLimiters>,
    pub(super) retry: crate::http::RetryPolicy,
    /// The store's reachability: renewals that fail during a known outage are not logged
    /// one by one.
    pub(super) health: Arc<StoreHealth>,
}

/// Runs one claimed job, renewing its lease while it runs; a lost lease cancels it.
pub(super) async fn run_job(
    ctx: RunContext,
    claimed: ClaimedJob,
    cancel: CancellationToken,
    progress: Arc<Mutex<Progress>>,
) -> RunDone {
    let job = claimed.job.clone();
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = AbortOnDrop({
        let (store, owner, lost, cancel) = (ctx.store.clone(), ctx.owner.clone(), lost.clone(), cancel.clone());
        let health = ctx.health.clone();
        let (tenant, job_id, lease, every) = (job.tenant_id.clone(), job.id, ctx.lease, ctx.heartbeat);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
                match store.renew_lease(&tenant, job_id, &owner, until).await {
                    Ok(()) => {}
                    Err(StoreError::LeaseLost { .. }) => {
                        lost.store(true, Ordering::Relaxed);
                        cancel.cancel();
                        return;
                    }
                    Err(e) if health.outage().is_some() => tracing::debug!(job_id, "lease renewal failed: {e}"),
                    Err(e) => tracing::warn!(job_id, "lease renewal failed (will retry): {e}"),
                }
            }
        })
    });
    if let Some(previous) = &job.reclaimed_from {
        close_abandoned_runs(&ctx, &job, previous).await;
    }
    let result = async {
        let mut syncer =
            Syncer::new(&ctx.catalog, &ctx.store, &ctx.key).map_err(|e| e.to_string())?.with_limits(ctx.limits.clone());
        syncer.metrics = ctx.metrics.clone();
        syncer.retry = ctx.retry.clone();
        let req = SyncRequest {
            tenant: job.tenant_id.clone(),
            provider: job.provider.clone(),
            stream: job.stream.clone(),
            trigger: claimed.trigger,
            full_refresh: false,
            lease_owner: Some(ctx.owner.clone()),
            cancel: Some(cancel.clone()),
            owner: claimed.owner.clone(),
        };
        let started_runs = ctx.started_runs.clone();
        let job_id = job.id;
        let row = syncer
            .run(&req, &mut |run_id, stats| {
                if let Ok(mut p) = progress.lock() {
                    if p.run_id.is_none() {
                        p.run_id = Some(run_id);
                        if let Ok(mut m) = started_runs.lock() {
                            m.insert(job_id, run_id);
                        }
                    }
                    p.stats = stats.clone();
                    p.last_change = Instant::now();
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        contribute(&ctx, &row, req.owner.as_ref()).await;
        Ok(row)
    }
    .await;
    drop(heartbeat);
    RunDone { job_id: job.id, result, lease_lost: lost.load(Ordering::Relaxed) }
}

/// Records what the run contributes to its company integration (user connections
/// only). A failure to do so is logged; it never fails the run.
async fn contribute(ctx: &RunContext, run: &RunRow, owner: Option<&UserId>) {
    if owner.is_none() {
        return;
    }
    if let Err(e) = crate::intelligence::after_run(&ctx.store, &ctx.catalog, &ctx.metrics, run, owner).await {
        tracing::warn!(tenant = %run.tenant_id, provider = %run.provider, stream = %run.stream, run_id = %run.id, "recording contributions failed: {e}");
    }
}

/// A reclaimed job's runs still marked `running` belong to the worker whose lease
/// expired (it died, or lost the store): they are closed as failed, so that no run
/// stays `running` for ever.
async fn close_abandoned_runs(ctx: &RunContext, job: &JobRow, previous: &str) {
    let error = format!("abandoned: {previous} stopped renewing its lease and {} reclaimed the job", ctx.owner);
    match ctx.store.close_abandoned_runs(&job.tenant_id, job.id, &error).await {
        Ok(0) => {}
        Ok(runs) => tracing::warn!(
            tenant = %job.tenant_id, provider = %job.provider, stream = %job.stream, job_id = job.id,
            runs, previous_owner = previous, "closed runs abandoned by a worker whose lease expired"
        ),
        Err(e) => tracing::warn!(job_id = job.id, "closing abandoned runs failed: {e}"),
    }
}

/// Stops the heartbeat when the run ends — also when the run task panics or is aborted,
/// so a dead run never keeps its lease alive.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
