//! HTTP: `/metrics` (Prometheus text, or OpenMetrics when the scraper asks for it), `/healthz` (the process answers) and `/readyz`
//! (configuration loaded, store reachable, not draining); and `POST /webhooks/{tenant}/{provider}`
//! (`webhooks`), here or on a listener of its own (`[daemon] webhook_listen`); and the
//! authenticated API under `/api/v1/` (`api`). The listener serves TLS itself when
//! `[server]` names a certificate (`tls`).

pub mod api;
pub mod tls;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

pub use self::webhooks::{MAX_WEBHOOK_BODY, WebhookIntake};
use crate::store::{Store, StoreHealth};
use crate::telemetry::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// Cleared while draining.
    pub ready: Arc<AtomicBool>,
    /// The store's reachability, kept by the daemon's probe.
    pub health: Arc<StoreHealth>,
    /// `POST /webhooks/…` on this listener (`None`: not here).
    pub webhooks: Option<Arc<WebhookIntake>>,
    /// `/api/v1/…` on this listener (`None`: not served).
    pub api: Option<api::ApiState>,
}

/// The longest `/readyz` waits for the store before answering that it does not answer.
const READY_PROBE: Duration = Duration::from_millis(900);

pub fn router(state: HttpState) -> Router {
    let webhooks = state.webhooks.clone();
    let api = state.api.clone();
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let router = match api {
        Some(api) => router.merge(api::router(api)),
        None => router,
    };
    match webhooks {
        Some(intake) => router.merge(webhook_router(intake)),
        None => router,
    }
}

/// Only `POST /webhooks/{tenant}/{provider}`.
pub fn webhook_router(intake: Arc<WebhookIntake>) -> Router {
    Router::new().route("/webhooks/{tenant}/{provider}", post(webhooks::receive)).with_state(intake)
}

/// The Prometheus text format; OpenMetrics when the `Accept` header names it (as
/// Prometheus itself does).
async fn metrics(State(s): State<HttpState>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            s.metrics.encode_openmetrics(),
        )
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.encode())
    }
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if !s.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned());
    }
    // During a known outage, at once from memory; otherwise a bounded check.
    if let Some(outage) = s.health.outage() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("store {}\n", outage.describe()));
    }
    match tokio::time::timeout(READY_PROBE, s.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store unreachable: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: no answer within {} ms\n", READY_PROBE.as_millis()),
        ),
    }
}

/// Binds `addr` and serves until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_router(addr, router(state), shutdown).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_maybe_tls(
    addr: SocketAddr,
    state: HttpState,
    tls: Option<Arc<tls::ReloadableTls>>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let Some(tls) = tls else { return serve(addr, state, shutdown).await };
    use axum::serve::ListenerExt as _;
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    let bound = tcp.local_addr()?;
    let listener = tls::TlsListener::new(tcp, tls, shutdown.clone())?.tap_io(|_| {});
    let router = router(state);
    let handle = tokio::spawn(async move {
        let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!("HTTPS server stopped: {e}");
        }
    });
    Ok((bound, handle))
}

/// Binds `addr` and serves `router` (with the peer's address, for per-source limits)
/// until `shutdown`; returns the bound address.
pub async fn serve_router(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
    Ok((bound, handle))
}

/// Whether the readiness flag is set.
pub fn is_ready(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_follows_the_drain_flag_and_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.set_quality_bands(&[Some(95.0), Some(40.0), None]);
        let ready = Arc::new(AtomicBool::new(true));
        let health = Arc::new(StoreHealth::default());
        let state = HttpState {
            metrics,
            store: store.clone(),
            ready: ready.clone(),
            health: health.clone(),
            webhooks: None,
            api: None,
        };
        let shutdown = CancellationToken::new();
        let (addr, handle) = serve(([127, 0, 0, 1], 0).into(), state, shutdown.clone()).await.unwrap();
        let get = |path: &'static str| async move {
            let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
        assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));
        let metrics = get("/metrics").await.1;
        assert!(metrics.contains("# TYPE tributary_integrations gauge"), "{metrics}");
        assert!(metrics.contains("tributary_integrations{band=\"excellent\"} 1"), "{metrics}");
        assert!(metrics.contains("tributary_integrations{band=\"poor\"} 1"), "{metrics}");
        assert!(metrics.contains("tributary_integrations{band=\"unknown\"} 1"), "{metrics}");
        let open = reqwest::Client::new()
            .get(format!("http://{addr}/metrics"))
            .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
            .send()
            .await
            .unwrap();
        assert!(open.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
        let open = open.text().await.unwrap();
        assert!(open.contains("# TYPE tributary_integrations gauge") && open.ends_with("# EOF\n"), "{open}");
        ready.store(false, Ordering::Relaxed);
        assert_eq!(get("/readyz").await, (503, "draining\n".to_owned()));
        ready.store(true, Ordering::Relaxed);
        // A known outage is answered from memory, with its cause.
        health.record(Err("Connection refused (os error 111)".into()));
        let (status, body) = get("/readyz").await;
        assert_eq!(status, 503);
        assert!(body.starts_with("store unreachable since ") && body.contains("Connection refused"), "{body}");
        health.record(Ok(()));
        assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));
        store.close().await;
        let (status, body) = get("/readyz").await;
        assert_eq!(status, 503);
        assert!(body.starts_with("store unreachable"), "{body}");
        shutdown.cancel();
        handle.await.unwrap();
    }
}
