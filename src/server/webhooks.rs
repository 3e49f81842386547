//! `POST /webhooks/{tenant}/{provider}`: inbound webhooks from providers.
//!
//! In order: the declared length is bounded (1 MiB), the source's rate checked, the body
//! read (at most 1 MiB, within [`BODY_TIMEOUT`]), the signature and its timestamp
//! verified with the secret stored in the tenant's company connection (as the manifest's
//! `[webhooks]` section says), a replayed delivery id refused, then the delivery is kept
//! in the store's inbox (deliveries arriving together share one transaction) and
//! answered once that commits; the daemon's inbox worker triggers the
//! streams later. An unknown tenant or provider (or a path that names none), a
//! connection without the secret and a bad signature all get the same `401` with an
//! empty body.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::{Catalog, WebhookSpec};
use crate::http::webhook::{Inbound, read_delivery, verify};
use crate::model::{Owner, ProviderId, TenantId};
use crate::secrets::{Credentials, MasterKey, Sealed};
use crate::store::{NewDelivery, Store};
use crate::telemetry::{Metrics, WebhookLabels};

/// The largest webhook body accepted.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;
/// The longest a webhook body may take to arrive once its headers have.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the webhook handler needs.
pub struct WebhookIntake {
    /// The current configuration (replaced on reload).
    pub catalog: Arc<RwLock<Arc<Catalog>>>,
    pub store: Store,
    pub key: Arc<MasterKey>,
    pub metrics: Arc<Metrics>,
    /// Woken for each accepted delivery: the daemon's inbox worker.
    pub accepted: Arc<Notify>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// The writer that keeps deliveries in the store (see [`keep_deliveries`]).
    keeper: mpsc::Sender<Keep>,
}

/// A delivery to keep, and where to say whether it was new.
type Keep = (NewDelivery, oneshot::Sender<Result<bool, ()>>);

/// Deliveries kept in one transaction at most.
const KEEP_BATCH: usize = 128;

/// Writers of deliveries on SQLite: one, since the database has one writer at a time
/// (several would queue for its lock with its busy backoff).
const SQLITE_KEEPERS: usize = 1;
/// On PostgreSQL, whose concurrent transactions commit together by themselves.
const POSTGRES_KEEPERS: usize = 8;

/// Keeps deliveries in the store as they come: waits for one, takes every other that
/// arrived meanwhile (up to [`KEEP_BATCH`]) and stores them in one transaction, then
/// answers each. Concurrent deliveries share a commit instead of queueing for the
/// database's write lock one by one. Ends when the intake is dropped.
async fn keep_deliveries(store: Store, incoming: Arc<tokio::sync::Mutex<mpsc::Receiver<Keep>>>) {
    let mut batch: Vec<Keep> = Vec::with_capacity(KEEP_BATCH);
    loop {
        // The lock is held only while waiting: another keeper takes the next batch.
        if incoming.lock().await.recv_many(&mut batch, KEEP_BATCH).await == 0 {
            return;
        }
        let (deliveries, replies): (Vec<NewDelivery>, Vec<_>) = batch.drain(..).unzip();
        match store.accept_webhooks(&deliveries).await {
            Ok(kept) => {
                for (reply, new) in replies.into_iter().zip(kept) {
                    let _ = reply.send(Ok(new));
                }
            }
            Err(e) => {
                tracing::warn!(deliveries = deliveries.len(), "webhook: storing deliveries failed: {e}");
                for reply in replies {
                    let _ = reply.send(Err(()));
                }
            }
        }
    }
}

impl WebhookIntake {
    /// `per_source` requests a second from one address (with as large a burst). Starts
    /// the writer of accepted deliveries: call within the runtime.
    pub fn new(
        catalog: Arc<RwLock<Arc<Catalog>>>,
        store: Store,
        key: Arc<MasterKey>,
        metrics: Arc<Metrics>,
        accepted: Arc<Notify>,
        per_source: u32,
    ) -> Self {
        let rate = NonZeroU32::new(per_source).unwrap_or(NonZeroU32::MIN);
        let (keeper, incoming) = mpsc::channel(KEEP_BATCH * 8);
        let incoming = Arc::new(tokio::sync::Mutex::new(incoming));
        let keepers = if store.backend() == "postgres" { POSTGRES_KEEPERS } else { SQLITE_KEEPERS };
        for _ in 0..keepers {
            tokio::spawn(keep_deliveries(store.clone(), Arc::clone(&incoming)));
        }
        Self { catalog, store, key, metrics, accepted, limiter: RateLimiter::keyed(Quota::per_second(rate)), keeper }
    }

    fn count(&self, provider: &str, outcome: &str) {
        self.metrics
            .webhooks_received
            .get_or_create(&WebhookLabels { provider: provider.to_owned(), outcome: outcome.to_owned() })
            .inc();
    }

    /// The manifest's webhook section for `provider`, if it has one.
    fn spec(&self, provider: &str) -> Option<WebhookSpec> {
        let catalog = self.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        catalog.manifests.get(provider).and_then(|m| m.webhooks.clone())
    }

    /// The signing secret stored in the tenant's company connection.
    async fn secret(&self, tenant: &str, provider: &str, spec: &WebhookSpec) -> Result<Option<Vec<u8>>, ()> {
        let (Ok(tenant), Ok(provider)) = (TenantId::parse(tenant), ProviderId::parse(provider)) else {
            return Ok(None);
        };
        let row = match self.store.get_auth(&tenant, &provider, Owner::Company).await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(%tenant, %provider, "webhook: reading the connection failed: {e}");
                return Err(());
            }
        };
        let Some(sealed) = row.credentials else { return Ok(None) };
        // Sealed with the key of a rotation this process has not followed yet.
        if !self.key.holds(&sealed.key_id)
            && let Err(e) = self.store.follow_key_rotation(&self.key).await
        {
            tracing::warn!(%tenant, %provider, "webhook: {e}");
        }
        let plain = match self.key.open_as(Sealed::Credentials, &tenant, &provider, Owner::Company, &sealed) {
            Ok(plain) => plain,
            Err(e) => {
                tracing::warn!(%tenant, %provider, "webhook: the stored credentials do not open: {e}");
                return Ok(None);
            }
        };
        let Ok(credentials) = Credentials::from_json(&plain) else { return Ok(None) };
        Ok(credentials.get(spec.secret_field()).map(|s| {
            use secrecy::ExposeSecret;
            s.expose_secret().as_bytes().to_vec()
        }))
    }
}

fn denied() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

/// The URL the provider called, as HubSpot v3 signs it: the forwarded scheme and host when
/// a proxy says them, else `http` and `Host`.
fn called_url(headers: &HeaderMap, uri: &Uri) -> String {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = h("x-forwarded-proto").unwrap_or("http");
    let host = h("x-forwarded-host").or_else(|| h(header::HOST.as_str())).unwrap_or("");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{host}{path}")
}

pub(super) async fn receive(
    State(intake): State<Arc<WebhookIntake>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A path that does not decode (`%FF`) names no tenant or provider: refused as such.
    let (tenant, provider) = path.map(|Path(p)| p).unwrap_or_default();
    let spec = intake.spec(&provider);
    let label = if spec.is_some() { provider.as_str() } else { "unknown" };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_WEBHOOK_BODY) {
        intake.count(label, "too_large");
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    // Before the body is read: a source over its rate costs no more than its headers.
    if intake.limiter.check_key(&peer.ip()).is_err() {
        intake.count(label, "rate_limited");
        return StatusCode::TOO_MANY_REQUESTS.into_response();
    }
    if intake.limiter.len() > 10_000 {
        intake.limiter.retain_recent();
    }
    let body: Bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_WEBHOOK_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            intake.count(label, "too_large");
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
        Err(_) => {
            intake.count(label, "timeout");
            return StatusCode::REQUEST_TIMEOUT.into_response();
        }
    };
    let Some(spec) = spec else {
        intake.count(label, "unknown");
        return denied();
    };
    let secret = match intake.secret(&tenant, &provider, &spec).await {
        Ok(Some(secret)) => zeroize::Zeroizing::new(secret),
        Ok(None) => {
            intake.count(label, "unknown");
            return denied();
        }
        Err(()) => {
            intake.count(label, "error");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let url = called_url(&headers, &uri);
    let inbound = Inbound { method: method.as_str(), url: &url, headers: &headers, body: &body };
    let now = Utc::now();
    if let Err(r) = verify(&spec, &secret, &inbound, now) {
        tracing::debug!(%tenant, %provider, reason = r.as_str(), "webhook refused");
        intake.count(label, r.as_str());
        return denied();
    }
    let delivery = match read_delivery(&spec, &headers, &body) {
        Ok(d) => d,
        Err(r) => {
            intake.count(label, r.as_str());
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    if let Some(challenge) = delivery.challenge {
        intake.count(label, "challenge");
        return ([(header::CONTENT_TYPE, "text/plain")], challenge).into_response();
    }
    // Both parsed above (the secret was found under them).
    let (Ok(tenant), Ok(provider)) = (TenantId::parse(&tenant), ProviderId::parse(&provider)) else {
        return denied();
    };
    let window = chrono::Duration::seconds(i64::try_from(spec.window_secs).unwrap_or(300));
    let new = NewDelivery {
        tenant,
        provider,
        delivery_id: delivery.delivery_id,
        event_types: delivery.event_types,
        body: body.into(),
        at: now,
        forget_before: now - window - window,
    };
    let (reply, kept) = oneshot::channel();
    let kept = match intake.keeper.send((new, reply)).await {
        Ok(()) => kept.await.unwrap_or(Err(())),
        Err(_) => Err(()),
    };
    match kept {
        Ok(true) => {
            intake.count(label, "accepted");
            intake.accepted.notify_one();
            StatusCode::OK.into_response()
        }
        Ok(false) => {
            intake.count(label, "duplicate");
            StatusCode::OK.into_response()
        }
        Err(()) => {
            intake.count(label, "error");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
