//! The daemon (`tributary run`): the composition root and its one main loop.
//!
//! The main loop and the daemon's state live here; the rest along its seams: start-up
//! and teardown (`startup`), claiming and finishing runs (`dispatch`, with the caps in
//! `caps`), the periodic tick (`housekeeping`: gauges, stall checks, closing dead
//! processes' runs), the store probe and outage handling (`health`), configuration
//! reload (`reload`) and the job reconciliation that start-up and reload share
//! (`reconcile`), control requests (`requests`), signals and drain (`shutdown`), and one
//! run task (`worker`).
//!
//! Start-up is a sequence of logged steps: configuration, store, reconciliation, HTTP
//! server, control socket, signals, then `READY=1`. The main loop owns all state and
//! handles, in one place, every control message (socket requests and signals), run
//! completions and the scheduler's wake-ups; it sleeps until the store's earliest due
//! time, a trigger, or a run ending — never polling every job. Shutdown is ordered and
//! bounded: stop claiming, cancel runs at their next page boundary, release leases,
//! stop the servers, exit within the drain deadline.

mod access;
mod caps;
mod dispatch;
mod health;
mod housekeeping;
mod reconcile;
mod reload;
mod requests;
mod retention;
mod shutdown;
mod startup;
mod webhooks;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::health::Unsettled;
use self::housekeeping::HOUSEKEEPING;
pub use self::reconcile::{
    QueueReconciled, Reconciled, reconcile, reconcile_in_batches, reconcile_queued, reconcile_tenant,
};
pub use self::startup::run;
use crate::config::{Catalog, ConfigDir, DaemonSettings};
use crate::control::{self, ControlMessage};
use crate::http::RateLimiters;
use crate::model::{ClaimedJob, ProviderId, RunRow, RunStats, StreamName, TenantId};
use crate::scheduler::FailurePolicy;
use crate::secrets::MasterKey;
use crate::store::{Store, StoreHealth};
use crate::telemetry::Metrics;

/// Daily and cron jobs spread over at most this much.
pub const FIXED_JITTER: Duration = Duration::from_secs(60);
/// Recent errors kept for `status`.
const RECENT_ERRORS: usize = 20;

/// How to start the daemon.
pub struct DaemonOptions {
    pub config_dir: ConfigDir,
    pub connectors: Option<PathBuf>,
    pub store: Store,
    pub key: Arc<MasterKey>,
    pub settings: DaemonSettings,
    /// `[webhooks]`: outbound event deliveries.
    pub webhooks: crate::config::WebhookSettings,
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
    /// The configuration the webhook handler and the inbox worker read (replaced with
    /// `catalog` on reload).
    shared_catalog: Arc<std::sync::RwLock<Arc<Catalog>>>,
    /// `[control]` resolved: which peers are operators and tenant admins (replaced on
    /// reload).
    access: crate::config::control::ControlAccess,
    /// The daemon's own uid (the control socket's owner): an operator unless
    /// `[control] operators` says otherwise.
    uid: u32,
    /// The HTTP listener's certificate (`[server] tls_cert`), loaded again on reload.
    tls: Option<Arc<crate::server::tls::ReloadableTls>>,
}

/// The daemon's addresses, once it is up.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub socket: PathBuf,
    pub http: SocketAddr,
    /// Where `POST /webhooks/…` is served (`http` unless `[daemon] webhook_listen` is set).
    pub webhooks: SocketAddr,
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
}

/// The socket path from settings, or the default beside the state.
pub fn socket_path(settings: &DaemonSettings, state_dir: &Path) -> PathBuf {
    settings.control_socket.clone().unwrap_or_else(|| control::default_socket_path(state_dir))
}
