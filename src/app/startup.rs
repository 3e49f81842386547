//! Start-up and teardown: the logged sequence of steps that brings the daemon up
//! (configuration, store, reconciliation, HTTP server, control socket, signals, the
//! store probe, `READY=1`), the main loop, then the ordered stop.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::health::watch_store;
use super::shutdown::signals;
use super::{Daemon, DaemonOptions, Endpoints, FIXED_JITTER, reconcile};
use crate::config::Catalog;
use crate::control::{self, ControlMessage};
use crate::http::RateLimiters;
use crate::scheduler::FailurePolicy;
use crate::store::StoreHealth;
use crate::telemetry::Metrics;

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
    tracing::info!(
        step = 2,
        backend = opts.store.backend(),
        pooler = opts.store.pooler(),
        "store open, migrations applied"
    );
    let metrics = Arc::new(Metrics::new());
    let settings = opts.settings.clone();
    let write_share = catalog.settings.writes.rate_share;
    let catalog = Arc::new(catalog);
    // Replicas on PostgreSQL lease shares of every quota; one daemon on SQLite has them whole.
    let limits = Arc::new(
        match &opts.store {
            crate::store::Store::Postgres(_) => RateLimiters::leased(),
            crate::store::Store::Sqlite(_) => RateLimiters::new(),
        }
        .with_write_share(write_share),
    );
    let mut daemon = Daemon {
        config_dir: opts.config_dir,
        connectors: opts.connectors,
        shared_catalog: Arc::new(std::sync::RwLock::new(Arc::clone(&catalog))),
        catalog,
        store: opts.store,
        key: opts.key,
        policy: FailurePolicy {
            base: Duration::from_secs(settings.failure_base_secs.max(1)),
            max: Duration::from_secs(settings.failure_max_secs.max(1)),
            error_after: settings.error_after,
        },
        limits,
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
        access: Default::default(),
        uid: 0,
        tls: None,
    };
    let counts =
        reconcile(&daemon.catalog, &daemon.store, daemon.settings.apply_tenant_files, FIXED_JITTER, &daemon.metrics)
            .await?;
    for e in &counts.errors {
        daemon.remember(None, None, None, e.clone());
    }
    tracing::info!(step = 3, tenants = counts.tenants, jobs = %counts.jobs, "jobs reconciled with the configuration");
    daemon.close_expired_runs().await;

    let accepted = Arc::new(tokio::sync::Notify::new());
    let intake = Arc::new(crate::server::WebhookIntake::new(
        daemon.shared_catalog.clone(),
        daemon.store.clone(),
        daemon.key.clone(),
        daemon.metrics.clone(),
        accepted.clone(),
        daemon.settings.webhook_rate_per_source,
    ));
    let webhook_listen = match &daemon.settings.webhook_listen {
        Some(a) => Some(
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| anyhow::anyhow!("daemon.webhook_listen `{a}` is not an address: {e}"))?,
        ),
        None => None,
    };
    // The control channel: the socket, signals and the HTTP API feed it.
    let (tx, rx) = mpsc::channel::<ControlMessage>(64);
    let server_settings = daemon.catalog.settings.server.clone();
    let api = crate::server::api::ApiState {
        store: daemon.store.clone(),
        control: tx.clone(),
        metrics: daemon.metrics.clone(),
        catalog: daemon.shared_catalog.clone(),
        bad_keys: Arc::new(crate::server::api::BadKeys::new(server_settings.api_bad_keys_per_minute)),
        max_body: server_settings.api_max_body_bytes,
    };
    daemon.tls = crate::server::tls::ReloadableTls::from_settings(&server_settings).map_err(|e| anyhow::anyhow!(e))?;
    let http_state = crate::server::HttpState {
        metrics: daemon.metrics.clone(),
        store: daemon.store.clone(),
        ready: daemon.ready.clone(),
        health: daemon.health.clone(),
        webhooks: webhook_listen.is_none().then(|| intake.clone()),
        api: Some(api),
    };
    let (http, http_task) =
        crate::server::serve_maybe_tls(opts.http_listen, http_state, daemon.tls.clone(), daemon.shutdown.clone())
            .await?;
    tracing::info!(
        step = 4,
        address = %http,
        tls = daemon.tls.is_some(),
        "HTTP server listening (/metrics, /healthz, /readyz, /api/v1)"
    );
    let (webhooks, webhook_task) = match webhook_listen {
        Some(addr) => {
            let (bound, task) =
                crate::server::serve_router(addr, crate::server::webhook_router(intake), daemon.shutdown.clone())
                    .await?;
            tracing::info!(step = 4, address = %bound, "webhook listener (POST /webhooks/{{tenant}}/{{provider}})");
            (bound, Some(task))
        }
        None => (http, None),
    };

    let inbox_task = tokio::spawn(super::webhooks::inbox_worker(
        daemon.store.clone(),
        daemon.shared_catalog.clone(),
        accepted,
        tx.clone(),
        daemon.shutdown.clone(),
    ));
    let wake_task =
        tokio::spawn(super::webhooks::wake_listener(daemon.store.clone(), tx.clone(), daemon.shutdown.clone()));
    let mode = daemon.catalog.settings.control.mode().map_err(|e| anyhow::anyhow!("control.socket_mode: {e}"))?;
    let listener = control::bind(&opts.socket, mode)
        .map_err(|e| anyhow::anyhow!("control socket {}: {e}", opts.socket.display()))?;
    daemon.resolve_access(&opts.socket)?;
    let socket_task = tokio::spawn(control::serve(listener, tx.clone(), daemon.shutdown.clone()));
    tracing::info!(step = 5, socket = %opts.socket.display(), "control socket listening");

    let signals_task = tokio::spawn(signals(tx.clone(), daemon.shutdown.clone()));
    let probe_task = tokio::spawn(watch_store(daemon.store.clone(), daemon.health.clone(), daemon.shutdown.clone()));
    let webhooks_task = tokio::spawn(crate::http::webhooks::run_worker(
        daemon.store.clone(),
        daemon.key.clone(),
        opts.webhooks.clone(),
        daemon.owner.clone(),
        Duration::from_millis(500),
        Arc::new(crate::http::webhooks::DeliveryCounters::exporting(daemon.metrics.clone())),
        daemon.shutdown.clone(),
    ));
    // Writes wait on the same quotas as the runs and use the same retry policy.
    let write_settings =
        daemon.shared_catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner).settings.writes.clone();
    let writes_task = tokio::spawn(
        Arc::new(crate::sync::writes::WriteWorker {
            catalog: daemon.shared_catalog.clone(),
            store: daemon.store.clone(),
            key: daemon.key.clone(),
            metrics: daemon.metrics.clone(),
            limits: daemon.limits.clone(),
            retry: crate::http::RetryPolicy::from_settings(&daemon.settings),
            owner: daemon.owner.clone(),
            concurrency: write_settings.concurrency,
            lease: Duration::from_secs(write_settings.lease_secs),
            idle_poll: Duration::from_millis(500),
        })
        .run(daemon.shutdown.clone()),
    );
    let budgets_task = tokio::spawn(crate::http::budgets::run(
        daemon.store.clone(),
        daemon.limits.clone(),
        daemon.owner.clone(),
        daemon.shutdown.clone(),
    ));
    let prune_task = tokio::spawn(super::retention::pruner(
        daemon.store.clone(),
        daemon.shared_catalog.clone(),
        daemon.shutdown.clone(),
    ));
    tracing::info!(step = 6, owner = %daemon.owner, workers = daemon.settings.workers, "signals handled; scheduler starting");
    daemon.ready.store(true, Ordering::Relaxed);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    on_ready(&Endpoints { socket: opts.socket.clone(), http, webhooks });

    daemon.heartbeat().await;
    let result = daemon.main_loop(rx).await;

    tracing::info!("stopping: releasing leases and closing servers");
    if let Err(e) = daemon.store.release_all(&daemon.owner).await {
        tracing::warn!("releasing leases failed: {e}");
    }
    if let Err(e) = daemon.store.remove_replica(&daemon.owner).await {
        tracing::warn!("removing this replica's row failed: {e}");
    }
    daemon.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    if let Some(task) = webhook_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    inbox_task.abort();
    wake_task.abort();
    let _ = socket_task.await;
    signals_task.abort();
    probe_task.abort();
    prune_task.abort();
    // This replica's budget shares go back to the others at once.
    let _ = tokio::time::timeout(Duration::from_secs(2), budgets_task).await;
    // An attempt in flight is abandoned; its lease expires and it is attempted again
    // with the same webhook-id.
    let _ = tokio::time::timeout(Duration::from_secs(1), webhooks_task).await;
    // Likewise a write in flight is abandoned (its task aborted).
    let _ = tokio::time::timeout(Duration::from_secs(1), writes_task).await;
    // Writes abandoned in flight are given back, so the next daemon sends them at once
    // (a create is looked up first) instead of after their lease.
    match daemon.store.release_writes_of(&daemon.owner).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(writes = n, "writes in flight given back"),
        Err(e) => tracing::warn!("giving back writes in flight failed (their leases will expire): {e}"),
    }
    let _ = std::fs::remove_file(&opts.socket);
    daemon.store.close().await;
    tracing::info!("stopped");
    result
}
