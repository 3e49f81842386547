//! Housekeeping, on a fixed tick: noticing the store's outages and returns, closing
//! runs left `running` by dead processes, queued reconciliations, the job and quality gauges, rate-limit key
//! sweeps, and stall checks.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::Daemon;
use crate::telemetry::{Metrics, RunStalled};

/// Housekeeping: gauges, stall checks, the systemd watchdog.
pub(super) const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// The job gauges come from a full scan of the jobs table (`job_counts`), so they are
/// refreshed on a housekeeping tick only once `GAUGE_COST_FACTOR` times the last scan's
/// duration has passed (the scan takes at most ~0.2% of the time), and at least every
/// `GAUGE_MAX_AGE`. Small stores still refresh on every tick.
const GAUGE_COST_FACTOR: u32 = 500;
const GAUGE_MAX_AGE: Duration = Duration::from_secs(60);

impl Daemon {
    /// One tick: the store's state first; with the store reachable, what needs it; then
    /// what the daemon keeps in memory.
    pub(super) async fn housekeeping(&mut self) {
        if self.note_store_health() {
            self.settle_unsettled().await;
            self.close_expired_runs().await;
            self.refresh_gauges().await;
            self.follow_key_rotation().await;
            self.reconcile_queued().await;
            self.heartbeat().await;
        }
        self.limits.sweep();
        self.metrics.rate_limit_keys.set(i64::try_from(self.limits.keys()).unwrap_or(i64::MAX));
        self.check_stalls();
    }

    /// Follows the probe's view of the store; `true` if the store is reachable. While
    /// it is not, nothing is claimed; when it is back, the loop claims again at once
    /// (jobs whose runs failed during the outage are due).
    fn note_store_health(&mut self) -> bool {
        let outage = self.health.outage();
        let down = outage.is_some();
        if down != self.store_down {
            self.store_down = down;
            if let Some(outage) = outage {
                self.remember(None, None, None, format!("store {}", outage.describe()));
            }
            self.wake = !down;
            self.wake_at = None;
        }
        !down
    }

    /// This daemon's row in `replicas`: what it is, how busy, and that it is alive.
    pub(super) fn replica_row(&self) -> crate::store::ReplicaRow {
        crate::store::ReplicaRow {
            id: self.owner.clone(),
            host: crate::scheduler::lease::host_name(),
            pid: i64::from(std::process::id()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            workers: i64::try_from(self.settings.workers).unwrap_or(i64::MAX),
            busy: i64::try_from(self.running.len()).unwrap_or(i64::MAX),
            state: if self.draining.is_some() { "draining" } else { "running" }.to_owned(),
            started_at: self.started_at,
            heartbeat_at: Utc::now(),
        }
    }

    /// Writes this daemon's heartbeat; rows of replicas silent for a day go.
    pub(super) async fn heartbeat(&self) {
        if let Err(e) = self.store.heartbeat_replica(&self.replica_row(), chrono::Duration::days(1)).await {
            tracing::debug!("replica heartbeat not written: {e}");
        }
    }

    /// Reconciles the tenants a change queued (`reconcile_queue`) that no one reconciled
    /// yet: a command that died after its change, another replica's change. New or
    /// re-enabled jobs are claimed on the next turn of the loop.
    pub(super) async fn reconcile_queued(&mut self) {
        match super::reconcile_queued(&self.catalog, &self.store, super::FIXED_JITTER, 1000).await {
            Ok(done) => {
                for d in done {
                    match d.result {
                        Ok(jobs) => {
                            tracing::info!(tenant = %d.tenant, reason = %d.reason, ?jobs, "jobs follow a queued change");
                            self.wake = true;
                        }
                        Err(e) => {
                            tracing::warn!(tenant = %d.tenant, reason = %d.reason, "queued change not reconciled: {e}")
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("reconciliation queue not read: {e}"),
        }
    }

    /// Seals with the key of a rotation registered in the store (`tributary keys
    /// rotate`) from now on, keeping the loaded keys for opening older values.
    async fn follow_key_rotation(&mut self) {
        if let Err(e) = self.store.follow_key_rotation(&self.key).await {
            tracing::error!("{e}");
        }
    }

    /// The job gauges (see [`GAUGE_COST_FACTOR`]) and the integration quality gauges.
    async fn refresh_gauges(&mut self) {
        let started = Instant::now();
        // A connection status changed in this process: the gauges follow on this tick.
        let stale = self.metrics.take_stale();
        if !stale && started < self.gauges_due {
            return;
        }
        let now = Utc::now();
        let counts = self.store.job_counts(now, Duration::from_secs(300)).await;
        match self.store.gauge_figures(now).await {
            Ok(figures) => crate::telemetry::gauges::apply(&self.metrics, &figures, now),
            Err(e) => tracing::debug!("connection and stream gauges not refreshed: {e}"),
        }
        if let Err(e) = crate::intelligence::refresh_gauges(&self.store, &self.metrics).await {
            tracing::debug!("integration quality gauges not refreshed: {e}");
        }
        let wait = (started.elapsed() * GAUGE_COST_FACTOR).min(GAUGE_MAX_AGE);
        self.gauges_due = Instant::now() + wait;
        if let Ok(c) = counts {
            for (state, n) in [
                ("total", c.total),
                ("due", c.due),
                ("overdue", c.overdue),
                ("running", c.running),
                ("paused", c.paused),
                ("blocked", c.blocked),
            ] {
                Metrics::set_gauge(&self.metrics.jobs, state, n);
            }
        }
    }

    /// Reports, once each, the runs without progress for `stall_secs`.
    fn check_stalls(&mut self) {
        let stall = Duration::from_secs(self.settings.stall_secs);
        let mut stalled = Vec::new();
        for r in self.running.values_mut() {
            let (idle, run_id) = match r.progress.lock() {
                Ok(p) => (p.last_change.elapsed(), p.run_id),
                Err(_) => continue,
            };
            if idle >= stall && !r.stall_reported {
                r.stall_reported = true;
                let run_id = run_id.map(|u| u.to_string()).unwrap_or_default();
                RunStalled {
                    tenant: r.tenant.as_str(),
                    provider: r.provider.as_str(),
                    stream: r.stream.as_str(),
                    run_id: &run_id,
                    idle_secs: idle.as_secs(),
                }
                .emit(&self.metrics);
                stalled.push((r.tenant.clone(), r.provider.clone(), r.stream.clone(), idle));
            }
        }
        for (t, p, s, idle) in &stalled {
            let store = self.store.clone();
            let data = serde_json::json!({
                "tenant_id": t.as_str(),
                "provider": p.as_str(),
                "stream": s.as_str(),
                "idle_secs": idle.as_secs(),
            });
            let tenant = t.clone();
            tokio::spawn(async move {
                if let Err(e) = store.emit_event(Some(&tenant), "job.stalled", data).await {
                    tracing::debug!("job.stalled webhook not written: {e}");
                }
            });
        }
        for (t, p, s, idle) in stalled {
            self.remember(Some(&t), Some(&p), Some(&s), format!("run stalled: no progress for {} s", idle.as_secs()));
        }
    }

    /// Closes as `abandoned` the runs left `running` by processes (other daemons,
    /// `tributary sync`) that died holding their job's lease: the lease expired at least a
    /// heartbeat ago. This daemon's own runs are its to finish.
    pub(super) async fn close_expired_runs(&mut self) {
        let grace = chrono::Duration::seconds(i64::try_from(self.settings.heartbeat_secs).unwrap_or(0));
        match self.store.close_expired_runs(Utc::now() - grace, &self.owner).await {
            Ok(0) => {}
            Ok(runs) => tracing::warn!(runs, "closed runs left `running` by processes whose lease expired"),
            Err(e) => tracing::warn!("closing runs whose lease expired failed: {e}"),
        }
    }
}
