//! The daemon (`tributary run`): the composition root and its one main loop.
//!
//! Start-up is a sequence of logged steps: configuration, store, reconciliation, HTTP
//! server, control socket, signals, then `READY=1`. The main loop owns all state and
//! handles, in one place, every control message (socket requests and signals), run
//! completions and the scheduler's wake-ups; it sleeps until the store's earliest due
//! time, a trigger, or a run ending — never polling every job. Shutdown is ordered and
//! bounded: stop claiming, cancel runs at their next page boundary, release leases,
//! stop the servers, exit within the drain deadline.

mod reconcile;
mod requests;
mod shutdown;
mod worker;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::reconcile::{Reconciled, reconcile, reconcile_tenant};
use self::shutdown::signals;
use self::worker::{RunContext, run_job};
use crate::config::{Catalog, ConfigDir, DaemonSettings};
use crate::control::{self, ControlMessage};
use crate::http::RateLimiters;
use crate::model::{ConnectionStatus, ProviderId, RunOutcome, StreamName, TenantId};
use crate::scheduler::{FailurePolicy, after_run};
use crate::secrets::MasterKey;
use crate::store::{
    ClaimRequest, ClaimedJob, Exclusions, HealthChange, Owner, RunRow, RunStats, Store, StoreError, StoreHealth,
};
use crate::telemetry::{ConfigReload, LeaseLost, Metrics, RunStalled};

/// Daily and cron jobs spread over at most this much.
pub const FIXED_JITTER: Duration = Duration::from_secs(60);
/// Housekeeping: gauges, stall checks, the systemd watchdog.
const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// The job gauges come from a full scan of the jobs table (`job_counts`), so they are
/// refreshed on a housekeeping tick only once `GAUGE_COST_FACTOR` times the last scan's
/// duration has passed (the scan takes at most ~0.2% of the time), and at least every
/// `GAUGE_MAX_AGE`. Small stores still refresh on every tick.
const GAUGE_COST_FACTOR: u32 = 500;
const GAUGE_MAX_AGE: Duration = Duration::from_secs(60);
/// Recent errors kept for `status`.
const RECENT_ERRORS: usize = 20;
/// How often the store is probed, and how long a probe may take (readiness and `status`
/// answer from the last probe).
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_WITHIN: Duration = Duration::from_millis(800);

/// How to start the daemon.
pub struct DaemonOptions {
    pub config_dir: ConfigDir,
    pub connectors: Option<PathBuf>,
    pub store: Store,
    pub key: Arc<MasterKey>,
    pub settings: DaemonSettings,
    pub socket: PathBuf,
    pub http_listen: SocketAddr,
}

/// A run in flight.
struct Running {
    tenant: TenantId,
    provider: ProviderId,
    stream: StreamName,
    claimed: ClaimedJob,
    started: Instant,
    progress: Arc<Mutex<Progress>>,
    cancel: CancellationToken,
    stall_reported: bool,
}

#[derive(Debug, Clone)]
struct Progress {
    run_id: Option<uuid::Uuid>,
    stats: RunStats,
    last_change: Instant,
}

/// What a run task hands back.
struct RunDone {
    job_id: i64,
    result: Result<RunRow, String>,
    lease_lost: bool,
}

/// A run that ended while the store was unreachable: its run row and its job's lease
/// are settled once the store answers again.
struct Unsettled {
    tenant: TenantId,
    job_id: i64,
    run_id: Option<uuid::Uuid>,
    stats: RunStats,
}

/// One entry of `status`'s recent errors.
#[derive(Debug, Clone, Serialize)]
struct RecentError {
    at: DateTime<Utc>,
    tenant: Option<String>,
    provider: Option<String>,
    stream: Option<String>,
    error: String,
}

/// The daemon's state, owned by the main loop.
pub struct Daemon {
    config_dir: ConfigDir,
    connectors: Option<PathBuf>,
    catalog: Arc<Catalog>,
    store: Store,
    key: Arc<MasterKey>,
    settings: DaemonSettings,
    metrics: Arc<Metrics>,
    /// Every run's rate limits (one registry for the process).
    limits: Arc<RateLimiters>,
    owner: String,
    started_at: DateTime<Utc>,
    running: HashMap<i64, Running>,
    tasks: JoinSet<RunDone>,
    /// Which job each run task runs (to clean up after a task that panicked).
    task_jobs: HashMap<tokio::task::Id, i64>,
    /// job id → run id, for `trigger` replies.
    started_runs: Arc<Mutex<HashMap<i64, uuid::Uuid>>>,
    recent_errors: VecDeque<RecentError>,
    config_error: Option<String>,
    draining: Option<Instant>,
    policy: FailurePolicy,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    wake: bool,
    /// When the job gauges are next refreshed (see [`GAUGE_COST_FACTOR`]).
    gauges_due: Instant,
    /// When the main loop next claims; `None`: read it from the store on the next turn.
    wake_at: Option<tokio::time::Instant>,
    /// The store's reachability, kept by a background probe.
    health: Arc<StoreHealth>,
    /// Whether the main loop last saw the store unreachable.
    store_down: bool,
    unsettled: Vec<Unsettled>,
}

/// The daemon's addresses, once it is up.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub socket: PathBuf,
    pub http: SocketAddr,
}

fn instance_id() -> String {
    crate::scheduler::lease::instance_id("")
}

/// Runs the daemon until it is drained. `on_ready` receives the bound addresses (tests and
/// `demo` use them); `extra` may inject control messages (tests).
pub async fn run(opts: DaemonOptions, on_ready: impl FnOnce(&Endpoints)) -> anyhow::Result<()> {
    tracing::info!(step = 1, "loading configuration");
    let catalog = Catalog::load(&opts.config_dir, opts.connectors.as_deref()).map_err(|d| anyhow::anyhow!("{d}"))?;
    tracing::info!(
        step = 1,
        connectors = catalog.manifests.iter().count(),
        presets = catalog.presets.iter().count(),
        tenant_files = catalog.tenant_files.len(),
        "configuration valid"
    );
    tracing::info!(step = 2, backend = opts.store.backend(), "store open, migrations applied");
    let metrics = Arc::new(Metrics::new());
    let settings = opts.settings.clone();
    let mut daemon = Daemon {
        config_dir: opts.config_dir,
        connectors: opts.connectors,
        catalog: Arc::new(catalog),
        store: opts.store,
        key: opts.key,
        policy: FailurePolicy {
            base: Duration::from_secs(settings.failure_base_secs.max(1)),
            max: Duration::from_secs(settings.failure_max_secs.max(1)),
            error_after: settings.error_after,
        },
        limits: Arc::new(RateLimiters::new(settings.replicas)),
        settings,
        metrics,
        owner: instance_id(),
        started_at: Utc::now(),
        running: HashMap::new(),
        tasks: JoinSet::new(),
        task_jobs: HashMap::new(),
        started_runs: Arc::new(Mutex::new(HashMap::new())),
        recent_errors: VecDeque::new(),
        config_error: None,
        draining: None,
        ready: Arc::new(AtomicBool::new(false)),
        shutdown: CancellationToken::new(),
        wake: true,
        gauges_due: Instant::now(),
        wake_at: None,
        health: Arc::new(StoreHealth::default()),
        store_down: false,
        unsettled: Vec::new(),
    };
    let counts =
        reconcile(&daemon.catalog, &daemon.store, daemon.settings.apply_tenant_files, FIXED_JITTER, &daemon.metrics)
            .await?;
    for e in &counts.errors {
        daemon.remember(None, None, None, e.clone());
    }
    tracing::info!(step = 3, tenants = counts.tenants, jobs = ?counts.jobs, "jobs reconciled with the configuration");
    daemon.close_expired_runs().await;

    let http_state = crate::server::HttpState {
        metrics: daemon.metrics.clone(),
        store: daemon.store.clone(),
        ready: daemon.ready.clone(),
        health: daemon.health.clone(),
    };
    let (http, http_task) = crate::server::serve(opts.http_listen, http_state, daemon.shutdown.clone()).await?;
    tracing::info!(step = 4, address = %http, "HTTP server listening (/metrics, /healthz, /readyz)");

    let (tx, rx) = mpsc::channel::<ControlMessage>(64);
    let listener =
        control::bind(&opts.socket).map_err(|e| anyhow::anyhow!("control socket {}: {e}", opts.socket.display()))?;
    let socket_task = tokio::spawn(control::serve(listener, tx.clone(), daemon.shutdown.clone()));
    tracing::info!(step = 5, socket = %opts.socket.display(), "control socket listening");

    let signals_task = tokio::spawn(signals(tx.clone(), daemon.shutdown.clone()));
    let probe_task = tokio::spawn(watch_store(daemon.store.clone(), daemon.health.clone(), daemon.shutdown.clone()));
    tracing::info!(step = 6, owner = %daemon.owner, workers = daemon.settings.workers, "signals handled; scheduler starting");
    daemon.ready.store(true, Ordering::Relaxed);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    on_ready(&Endpoints { socket: opts.socket.clone(), http });

    let result = daemon.main_loop(rx).await;

    tracing::info!("stopping: releasing leases and closing servers");
    if let Err(e) = daemon.store.release_all(&daemon.owner).await {
        tracing::warn!("releasing leases failed: {e}");
    }
    daemon.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    let _ = socket_task.await;
    signals_task.abort();
    probe_task.abort();
    let _ = std::fs::remove_file(&opts.socket);
    daemon.store.close().await;
    tracing::info!("stopped");
    result
}

impl Daemon {
    async fn main_loop(&mut self, mut rx: mpsc::Receiver<ControlMessage>) -> anyhow::Result<()> {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchdog = sd_notify::watchdog_enabled();
        loop {
            if let Some(since) = self.draining {
                if self.running.is_empty() {
                    tracing::info!("drained: no runs in flight");
                    return Ok(());
                }
                if since.elapsed() > Duration::from_secs(self.settings.drain_deadline_secs) {
                    tracing::warn!(
                        in_flight = self.running.len(),
                        "drain deadline passed; exiting with runs in flight (their leases are released)"
                    );
                    self.stop_in_flight("the drain deadline passed before the run reached a page boundary").await;
                    return Ok(());
                }
            } else if self.wake {
                self.wake = false;
                self.dispatch().await;
            }
            // The wake-up time is read from the store only after something changed (a
            // claim, a run ending, a control message, the last wake-up), not on every
            // housekeeping tick: with many jobs that cannot run, finding the earliest
            // due one reads the whole queue.
            let wake_at = match self.wake_at {
                Some(at) => at,
                None => *self.wake_at.insert(tokio::time::Instant::now() + self.sleep_duration().await),
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(ControlMessage::ExitNow) => {
                        tracing::warn!("second stop signal: exiting now");
                        self.stop_in_flight("stopped at once by a second stop signal").await;
                        return Ok(());
                    }
                    Some(msg) => {
                        self.handle(msg).await;
                        self.wake_at = None;
                    }
                    None => return Ok(()),
                },
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    match done {
                        Ok((id, done)) => {
                            self.task_jobs.remove(&id);
                            self.complete(done).await;
                        }
                        Err(e) => self.task_died(e).await,
                    }
                    self.wake = true;
                    self.wake_at = None;
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    self.wake = true;
                    self.wake_at = None;
                }
                _ = housekeeping.tick() => {
                    self.housekeeping().await;
                    if watchdog.is_some() {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                }
            }
        }
    }

    /// How long to sleep before looking at the store again.
    async fn sleep_duration(&self) -> Duration {
        if let Some(since) = self.draining {
            // Wake at the deadline: a run that never reaches a page boundary must not keep
            // the daemon past it.
            let deadline = Duration::from_secs(self.settings.drain_deadline_secs);
            return deadline.saturating_sub(since.elapsed()) + Duration::from_millis(10);
        }
        if self.running.len() >= self.settings.workers {
            return crate::scheduler::MAX_SLEEP;
        }
        if self.store_down {
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

    /// Tenants and providers whose concurrency caps are reached.
    fn at_capacity(&self) -> (Vec<TenantId>, Vec<ProviderId>) {
        let mut per_tenant: BTreeMap<&TenantId, usize> = BTreeMap::new();
        let mut per_provider: BTreeMap<&ProviderId, usize> = BTreeMap::new();
        for r in self.running.values() {
            *per_tenant.entry(&r.tenant).or_default() += 1;
            *per_provider.entry(&r.provider).or_default() += 1;
        }
        (
            per_tenant.into_iter().filter(|(_, n)| *n >= self.settings.per_tenant).map(|(t, _)| t.clone()).collect(),
            per_provider
                .into_iter()
                .filter(|(_, n)| *n >= self.settings.per_provider)
                .map(|(p, _)| p.clone())
                .collect(),
        )
    }

    /// Claims due jobs up to the free capacity and starts them.
    async fn dispatch(&mut self) {
        loop {
            let free = self.settings.workers.saturating_sub(self.running.len());
            if free == 0 || self.draining.is_some() || self.store_down {
                return;
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
            let claimed = match self.store.claim_due_jobs(&req).await {
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
    async fn task_died(&mut self, e: tokio::task::JoinError) {
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

    fn start(&mut self, claimed: ClaimedJob) {
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
            retry: self.settings.retry_policy(),
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
    async fn complete(&mut self, done: RunDone) {
        let Some(r) = self.running.remove(&done.job_id) else { return };
        if let Ok(mut m) = self.started_runs.lock() {
            m.remove(&done.job_id);
        }
        let job = &r.claimed.job;
        if done.lease_lost {
            LeaseLost {
                tenant: job.tenant_id.as_str(),
                provider: job.provider.as_str(),
                stream: job.stream.as_str(),
                job_id: job.id,
            }
            .emit(&self.metrics);
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
        let plan = after_run(job, r.claimed.timezone, Utc::now(), succeeded, run_id, &self.policy, FIXED_JITTER);
        match self.store.complete_job(&job.tenant_id, job.id, &self.owner, &plan.completion).await {
            Ok(_) => {}
            Err(StoreError::LeaseLost { .. }) => {
                LeaseLost {
                    tenant: job.tenant_id.as_str(),
                    provider: job.provider.as_str(),
                    stream: job.stream.as_str(),
                    job_id: job.id,
                }
                .emit(&self.metrics);
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
            }
            _ => {}
        }
    }

    /// Closes as `abandoned` the runs left `running` by processes (other daemons,
    /// `tributary sync`) that died holding their job's lease: the lease expired at least a
    /// heartbeat ago. This daemon's own runs are its to finish.
    async fn close_expired_runs(&mut self) {
        let grace = chrono::Duration::seconds(i64::try_from(self.settings.heartbeat_secs).unwrap_or(0));
        match self.store.close_expired_runs(Utc::now() - grace, &self.owner).await {
            Ok(0) => {}
            Ok(runs) => tracing::warn!(runs, "closed runs left `running` by processes whose lease expired"),
            Err(e) => tracing::warn!("closing runs whose lease expired failed: {e}"),
        }
    }

    /// Closes the row of a run whose task ended with an error instead of a row, as
    /// failed; if the store does not answer, later ([`Self::settle_unsettled`]).
    async fn close_failed_run(&mut self, r: &Running, error: &str) {
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

    /// Settles what runs that ended during a store outage left behind, now that the
    /// store answers: closes their rows as failed and gives their jobs back (a job that
    /// was triggered or due runs again). A job another worker took over meanwhile is its.
    async fn settle_unsettled(&mut self) {
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

    async fn housekeeping(&mut self) {
        let down = self.health.outage().is_some();
        if down != self.store_down {
            self.store_down = down;
            if let Some(outage) = self.health.outage() {
                self.remember(None, None, None, format!("store {}", outage.describe()));
            }
            // Back: claim again at once (jobs whose runs failed during the outage are due).
            self.wake = !down;
            self.wake_at = None;
        }
        if down {
            return;
        }
        self.settle_unsettled().await;
        self.close_expired_runs().await;
        let now = Utc::now();
        let started = Instant::now();
        let counts = if started >= self.gauges_due {
            let counts = self.store.job_counts(now, Duration::from_secs(300)).await;
            if let Err(e) = crate::intelligence::refresh_gauges(&self.store, &self.metrics).await {
                tracing::debug!("integration quality gauges not refreshed: {e}");
            }
            let wait = (started.elapsed() * GAUGE_COST_FACTOR).min(GAUGE_MAX_AGE);
            self.gauges_due = Instant::now() + wait;
            counts.ok()
        } else {
            None
        };
        if let Some(c) = counts {
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
        self.limits.sweep();
        self.metrics.rate_limit_keys.set(i64::try_from(self.limits.keys()).unwrap_or(i64::MAX));
        let stall = Duration::from_secs(self.settings.stall_secs);
        let mut stalled = Vec::new();
        for (job_id, r) in &mut self.running {
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
                stalled.push((*job_id, r.tenant.clone(), r.provider.clone(), r.stream.clone(), idle));
            }
        }
        for (_, t, p, s, idle) in stalled {
            self.remember(Some(&t), Some(&p), Some(&s), format!("run stalled: no progress for {} s", idle.as_secs()));
        }
    }

    fn remember(
        &mut self,
        tenant: Option<&TenantId>,
        provider: Option<&ProviderId>,
        stream: Option<&StreamName>,
        error: String,
    ) {
        if self.recent_errors.len() >= RECENT_ERRORS {
            self.recent_errors.pop_front();
        }
        self.recent_errors.push_back(RecentError {
            at: Utc::now(),
            tenant: tenant.map(ToString::to_string),
            provider: provider.map(ToString::to_string),
            stream: stream.map(ToString::to_string),
            error,
        });
    }

    /// Loads the configuration again; a bad one is rejected and the old one keeps running.
    async fn reload(&mut self) -> Result<Reconciled, String> {
        match Catalog::load(&self.config_dir, self.connectors.as_deref()) {
            Err(d) => {
                let text = d.to_string();
                ConfigReload { ok: false, detail: &text }.emit(&self.metrics);
                self.config_error = Some(text.clone());
                self.remember(None, None, None, format!("configuration rejected: {text}"));
                Err(text)
            }
            Ok(catalog) => {
                let catalog = Arc::new(catalog);
                let result =
                    reconcile(&catalog, &self.store, self.settings.apply_tenant_files, FIXED_JITTER, &self.metrics)
                        .await;
                match result {
                    Ok(counts) => {
                        self.catalog = catalog;
                        self.config_error = None;
                        ConfigReload { ok: true, detail: &format!("{:?}", counts.jobs) }.emit(&self.metrics);
                        for e in &counts.errors {
                            self.remember(None, None, None, e.clone());
                        }
                        self.wake = true;
                        Ok(counts)
                    }
                    Err(e) => {
                        let text = format!("reconciling jobs failed: {e}");
                        ConfigReload { ok: false, detail: &text }.emit(&self.metrics);
                        self.config_error = Some(text.clone());
                        Err(text)
                    }
                }
            }
        }
    }
}

/// The socket path from settings, or the default beside the state.
pub fn socket_path(settings: &DaemonSettings, state_dir: &Path) -> PathBuf {
    settings.control_socket.clone().unwrap_or_else(|| control::default_socket_path(state_dir))
}

/// Probes the store every [`PROBE_EVERY`] and keeps `health`; logs each change of state
/// once, with the underlying cause.
async fn watch_store(store: Store, health: Arc<StoreHealth>, shutdown: CancellationToken) {
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
