//! The store's health as the daemon sees it: a background probe keeps
//! [`StoreHealth`] (read at once by `/readyz`, `status` and the main loop) and logs each
//! change of state once with its cause; runs that ended while the store was unreachable
//! are settled when it answers again.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Daemon;
use crate::model::{RunOutcome, RunStats, TenantId};
use crate::store::{HealthChange, Store, StoreError, StoreHealth};

/// How often the store is probed, and how long a probe may take (readiness and `status`
/// answer from the last probe). Generous: a store slow under load is not an outage; a
/// refused connection is known at once anyway.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_WITHIN: Duration = Duration::from_secs(4);

/// A run that ended while the store was unreachable: its run row and its job's lease
/// are settled once the store answers again.
pub(super) struct Unsettled {
    pub(super) tenant: TenantId,
    pub(super) job_id: i64,
    pub(super) run_id: Option<uuid::Uuid>,
    pub(super) stats: RunStats,
}

impl Daemon {
    /// Settles what runs that ended during a store outage left behind, now that the
    /// store answers: closes their rows as failed and gives their jobs back (a job that
    /// was triggered or due runs again). A job another worker took over meanwhile is its.
    pub(super) async fn settle_unsettled(&mut self) {
        let lease = chrono::Duration::seconds(i64::try_from(self.settings.lease_secs).unwrap_or(60));
        for u in std::mem::take(&mut self.unsettled) {
            if self.running.contains_key(&u.job_id) {
                continue;
            }
            match self.store.renew_lease(&u.tenant, u.job_id, &self.owner, Utc::now() + lease).await {
                Ok(()) => {}
                Err(StoreError::LeaseLost { .. } | StoreError::NotFound { .. }) => continue,
                Err(_) => {
                    self.unsettled.push(u);
                    continue;
                }
            }
            if let Some(run_id) = u.run_id {
                let _ = self.store.finish_run(&u.tenant, run_id, RunOutcome::Failed, &u.stats).await;
            }
            if let Err(e) = self.store.release_lease(&u.tenant, u.job_id, &self.owner).await {
                tracing::warn!(job_id = u.job_id, "giving a job back after a store outage failed: {e}");
            }
        }
    }
}

/// Probes the store every [`PROBE_EVERY`] and keeps `health`; logs each change of state
/// once, with the underlying cause.
pub(super) async fn watch_store(store: Store, health: Arc<StoreHealth>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match health.record(store.probe(PROBE_WITHIN).await) {
            Some(HealthChange::Down(outage)) => {
                tracing::error!(since = %outage.since, cause = %outage.cause, "store unreachable");
            }
            Some(HealthChange::Up(outage)) => {
                let secs = (Utc::now() - outage.since).num_seconds();
                tracing::info!(down_secs = secs, "store reachable again");
            }
            None => {}
        }
    }
}
