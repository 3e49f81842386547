//! Dispatch: how long the main loop sleeps, claiming due jobs up to the free capacity,
//! starting their run tasks, and writing what each finished run means for its job and
//! connection.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::health::Unsettled;
use super::worker::{RunContext, run_job};
use super::{Daemon, FIXED_JITTER, Progress, RunDone, Running};
use crate::model::{ClaimedJob, ConnectionStatus, JobRow, Owner, RunOutcome, RunStats};
use crate::scheduler::{after_partial_run, after_run, plan_full_pass};
use crate::store::{ClaimRequest, Exclusions, FleetCaps, StoreError};
use crate::telemetry::{LeaseLost, Metrics};

impl Daemon {
    /// How long to sleep before looking at the store again.
    pub(super) async fn sleep_duration(&self) -> Duration {
        if let Some(since) = self.draining {
            // Wake at the deadline: a run that never reaches a page boundary must not keep
            // the daemon past it.
            let deadline = Duration::from_secs(self.settings.drain_deadline_secs);
            return deadline.saturating_sub(since.elapsed()) + Duration::from_millis(10);
        }
        if self.running.len() >= self.settings.workers {
            return crate::scheduler::MAX_SLEEP;
        }
        if self.health.outage().is_some() {
            // Housekeeping notices the store's return and wakes the loop.
            return crate::scheduler::MAX_SLEEP;
        }
        let (tenants, providers) = self.at_capacity();
        let now = Utc::now();
        match self.store.next_due_at(now, &Exclusions { tenants: &tenants, providers: &providers }).await {
            Ok(Some(due)) => (due - now).to_std().unwrap_or(Duration::ZERO).min(crate::scheduler::MAX_SLEEP),
            Ok(None) => crate::scheduler::MAX_SLEEP,
            Err(e) => {
                tracing::warn!("reading the next due time failed: {e}");
                Duration::from_secs(1)
            }
        }
    }

    /// Claims due jobs up to the free capacity and starts them.
    pub(super) async fn dispatch(&mut self) {
        loop {
            let free = self.settings.workers.saturating_sub(self.running.len());
            if free == 0 || self.draining.is_some() || self.health.outage().is_some() {
                return;
            }
            if !self.unsettled.is_empty() {
                // First what runs that ended during an outage left (their jobs' leases
                // are still this daemon's): a claim would otherwise take them back
                // from under their unclosed run rows.
                self.settle_unsettled().await;
            }
            let (tenants, providers) = self.at_capacity();
            let now = Utc::now();
            let req = ClaimRequest {
                owner: &self.owner,
                now,
                lease_until: now + chrono::Duration::seconds(self.settings.lease_secs as i64),
                limit: free as u32,
                exclude: Exclusions { tenants: &tenants, providers: &providers },
            };
            // The caps hold across every daemon sharing the store (the claim counts their
            // leases); `at_capacity` above only saves the claim a look at full tenants.
            let caps = FleetCaps {
                per_tenant: self.settings.per_tenant,
                per_provider: self.settings.per_provider,
                global: self.settings.fleet_workers.unwrap_or(usize::MAX),
            };
            let claiming = std::time::Instant::now();
            let claimed = self.store.claim_due_jobs_capped(&req, caps).await;
            self.metrics.claim_duration.observe(claiming.elapsed().as_secs_f64());
            let claimed = match claimed {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("claiming jobs failed: {e}");
                    return;
                }
            };
            if claimed.is_empty() {
                return;
            }
            let mut started = 0;
            for job in claimed {
                if self.running.contains_key(&job.job.id) {
                    // Our own lease lapsed while the run is alive (late heartbeats) and the
                    // claim took it again: the run goes on under the renewed lease. A job
                    // never runs twice at once, here either.
                    tracing::warn!(tenant = %job.job.tenant_id, job_id = job.job.id, "the lease of a running job had lapsed; renewed by the claim");
                    continue;
                }
                let (tenants, providers) = self.at_capacity();
                if tenants.contains(&job.job.tenant_id) || providers.contains(&job.job.provider) {
                    // Several jobs of one tenant or provider in one claim: give this one back.
                    let _ = self.store.release_lease(&job.job.tenant_id, job.job.id, &self.owner).await;
                    continue;
                }
                self.start(job);
                started += 1;
            }
            if started == 0 {
                return;
            }
        }
    }

    /// A run task panicked or was aborted: free its slot and give its job back.
    pub(super) async fn task_died(&mut self, e: tokio::task::JoinError) {
        let Some(job_id) = self.task_jobs.remove(&e.id()) else {
            tracing::error!("a run task ended abnormally: {e}");
            return;
        };
        tracing::error!(job_id, "a run task ended abnormally: {e}; its lease is released");
        if let Some(r) = self.running.remove(&job_id) {
            let _ = self.store.release_lease(&r.tenant, job_id, &self.owner).await;
            self.remember(
                Some(&r.tenant),
                Some(&r.provider),
                Some(&r.stream),
                format!("run task ended abnormally: {e}"),
            );
        }
    }

    pub(super) fn start(&mut self, claimed: ClaimedJob) {
        if claimed.reclaimed {
            tracing::info!(tenant = %claimed.job.tenant_id, provider = %claimed.job.provider, stream = %claimed.job.stream, job_id = claimed.job.id, "reclaimed a job whose lease expired");
        }
        let progress =
            Arc::new(Mutex::new(Progress { run_id: None, stats: RunStats::default(), last_change: Instant::now() }));
        let cancel = self.shutdown.child_token();
        let running = Running {
            tenant: claimed.job.tenant_id.clone(),
            provider: claimed.job.provider.clone(),
            stream: claimed.job.stream.clone(),
            claimed: claimed.clone(),
            started: Instant::now(),
            progress: progress.clone(),
            cancel: cancel.clone(),
            stall_reported: false,
        };
        let ctx = RunContext {
            catalog: self.catalog.clone(),
            store: self.store.clone(),
            key: self.key.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits.clone(),
            retry: crate::http::RetryPolicy::from_settings(&self.settings),
            owner: self.owner.clone(),
            lease: Duration::from_secs(self.settings.lease_secs),
            heartbeat: Duration::from_secs(self.settings.heartbeat_secs),
            started_runs: self.started_runs.clone(),
            health: self.health.clone(),
        };
        self.running.insert(claimed.job.id, running);
        let job_id = claimed.job.id;
        let handle = self.tasks.spawn(run_job(ctx, claimed, cancel, progress));
        self.task_jobs.insert(handle.id(), job_id);
    }

    /// Writes what a finished run means for its job and connection.
    pub(super) async fn complete(&mut self, done: RunDone) {
        let Some(r) = self.running.remove(&done.job_id) else { return };
        if let Ok(mut m) = self.started_runs.lock() {
            m.remove(&done.job_id);
        }
        let job = &r.claimed.job;
        if done.lease_lost {
            lease_lost(job, &self.metrics);
            self.remember(
                Some(&r.tenant),
                Some(&r.provider),
                Some(&r.stream),
                "lease lost; another worker owns the job".into(),
            );
            return;
        }
        if self.health.outage().is_some() {
            // Nothing can be written now: settled when the store answers again.
            let (run_id, mut stats) = r.progress.lock().map(|p| (p.run_id, p.stats.clone())).unwrap_or_default();
            if let Err(e) = &done.result {
                stats.error = Some(e.clone());
            }
            self.remember(Some(&r.tenant), Some(&r.provider), Some(&r.stream), stats.error.clone().unwrap_or_default());
            let run_id = if done.result.is_err() { run_id } else { None };
            self.unsettled.push(Unsettled { tenant: job.tenant_id.clone(), job_id: job.id, run_id, stats });
            return;
        }
        if let Err(e) = &done.result {
            // The run ended without closing its row (e.g. the store failed under it).
            self.close_failed_run(&r, e).await;
        }
        let (succeeded, run_id, error) = match &done.result {
            Ok(row) if row.outcome == RunOutcome::Cancelled => {
                // Drain: give the job back as it is; it resumes from its committed cursor.
                let _ = self.store.release_lease(&job.tenant_id, job.id, &self.owner).await;
                return;
            }
            Ok(row) => (row.outcome == RunOutcome::Success, Some(row.id), row.stats.error.clone()),
            Err(e) => (false, None, Some(e.clone())),
        };
        if let Some(e) = &error {
            self.remember(Some(&r.tenant), Some(&r.provider), Some(&r.stream), e.clone());
        }
        // A sweep the guard held back completed its pass: the job keeps its schedule.
        let held_back = matches!(&done.result, Ok(row) if crate::sync::sweep_held_back(row));
        let partial = !held_back && matches!(&done.result, Ok(row) if row.outcome == RunOutcome::Partial);
        let plan = if partial {
            // Ended at its bounds: the pass continues soon.
            after_partial_run(Utc::now(), run_id)
        } else {
            after_run(job, r.claimed.timezone, Utc::now(), succeeded || held_back, run_id, &self.policy, FIXED_JITTER)
        };
        // The stream's next full pass (`full_schedule`), before the job's next run is
        // written: `complete_job` makes the job due by then.
        let tz = r.claimed.timezone;
        if let Err(e) = plan_full_pass(&self.store, &job.tenant_id, job.id, tz, Utc::now(), FIXED_JITTER).await {
            tracing::warn!(job_id = job.id, "planning the next full pass failed: {e}");
        }
        match self.store.complete_job(&job.tenant_id, job.id, &self.owner, &plan.completion).await {
            Ok(_) => {}
            Err(StoreError::LeaseLost { .. }) => {
                lease_lost(job, &self.metrics);
                return;
            }
            Err(e) => {
                tracing::warn!(job_id = job.id, "recording the job's next run failed: {e}");
                self.unsettled.push(Unsettled {
                    tenant: job.tenant_id.clone(),
                    job_id: job.id,
                    run_id: None,
                    stats: RunStats::default(),
                });
                return;
            }
        }
        // The job's own connection: the company's, or its owning user's.
        let owner = Owner::of(r.claimed.owner.as_ref());
        let status =
            self.store.get_connection(&job.tenant_id, &job.provider, owner).await.ok().flatten().map(|c| c.status);
        let set = |s| self.store.set_connection_status(&job.tenant_id, &job.provider, owner, s, None);
        match (succeeded, status) {
            (true, Some(ConnectionStatus::Error)) => {
                let _ = set(ConnectionStatus::Connected).await;
                self.metrics.mark_stale();
            }
            (false, Some(ConnectionStatus::Connected)) if plan.mark_connection_error => {
                tracing::warn!(tenant = %job.tenant_id, provider = %job.provider, failures = job.consecutive_failures + 1, "connection marked `error` after consecutive failed runs");
                let _ = self
                    .store
                    .set_connection_status(
                        &job.tenant_id,
                        &job.provider,
                        owner,
                        ConnectionStatus::Error,
                        error.as_deref(),
                    )
                    .await;
                self.metrics.mark_stale();
            }
            _ => {}
        }
    }

    /// Closes the row of a run whose task ended with an error instead of a row, as
    /// failed; if the store does not answer, later ([`Self::settle_unsettled`]).
    pub(super) async fn close_failed_run(&mut self, r: &Running, error: &str) {
        let Some((run_id, mut stats)) = r.progress.lock().ok().and_then(|p| Some((p.run_id?, p.stats.clone()))) else {
            return;
        };
        stats.error = Some(error.to_owned());
        let job = &r.claimed.job;
        match self.store.finish_run(&job.tenant_id, run_id, RunOutcome::Failed, &stats).await {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(_) => self.unsettled.push(Unsettled {
                tenant: job.tenant_id.clone(),
                job_id: job.id,
                run_id: Some(run_id),
                stats,
            }),
        }
    }
}

/// Reports that this daemon lost its lease on `job` (another worker owns it now).
fn lease_lost(job: &JobRow, metrics: &Metrics) {
    LeaseLost {
        tenant: job.tenant_id.as_str(),
        provider: job.provider.as_str(),
        stream: job.stream.as_str(),
        job_id: job.id,
    }
    .emit(metrics);
}
