//! The demo's webhooks, both ways.
//!
//! Inbound: every few seconds one of the simulated HubSpot, Slack and Jira changes a
//! record and sends its signed webhook to the daemon's `/webhooks/{tenant}/{provider}`;
//! the demo follows the tenant's change feed until the run the webhook triggered has
//! stored the change, and logs the latency from the webhook sent to the record stored.
//!
//! Outbound: a local receiver (an HTTP server on `127.0.0.1`) is registered as one
//! tenant's endpoint for every event; it verifies each delivery's Standard Webhooks
//! signature with its own HMAC (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64>` over `id.timestamp.body`, the `whsec_` secret) and prints one line per
//! delivery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use tokio::sync::{mpsc, oneshot};

use crate::model::{ChangeRow, TenantId};
use crate::secrets::MasterKey;
use crate::store::{NewWebhookEndpoint, Store};
use tributary_simulator::{SimHandle, WebhookSent, WebhookTarget};

/// How long the demo waits for a webhook's change to be stored before saying so.
const SYNC_PATIENCE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// How often the change feed is read.
const FEED_POLL: Duration = Duration::from_millis(100);
/// Changes remembered to match a webhook announced after its change was read.
const RECENT: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

/// A simulator that sends webhooks to one demo tenant, and the entity its webhook
/// stream's records become there.
pub(super) struct Source {
    pub sim: SimHandle,
    pub tenant: &'static str,
    pub entity: &'static str,
}

/// Sets each source's webhook target to the daemon's `address` (once it listens), then
/// every `every` has the next source change a record and send its webhook.
pub(super) async fn send_webhooks(
    sources: Vec<Source>,
    store: Store,
    address: oneshot::Receiver<SocketAddr>,
    every: Duration,
) {
    let Ok(mut address) = address.await else {
        return;
    };
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    for s in &sources {
        if let Some((_, secret)) = s.sim.webhook_secret() {
            let url = format!("http://{address}/webhooks/{}/{}", s.tenant, s.sim.provider());
            s.sim.set_webhook_target(Some(WebhookTarget::new(url, secret)));
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let tenants: Vec<&'static str> = sources.iter().map(|s| s.tenant).collect();
    let follower = tokio::spawn(follow_changes(store, tenants, rx));
    let mut seed = 17u64;
    for turn in 0usize.. {
        tokio::time::sleep(every).await;
        let Some(source) = sources.get(turn % sources.len().max(1)) else {
            break;
        };
        let Some(stream) = source.sim.webhook_stream() else {
            continue;
        };
        seed = (seed * 7919 + 13) % source.sim.record_count(stream).max(1);
        match source.sim.change_and_notify(stream, seed).await {
            Ok(sent) => {
                tracing::info!(
                    tenant = source.tenant,
                    provider = %sent.provider,
                    event = %sent.event_type,
                    delivery = %sent.delivery_id,
                    "demo: webhook sent"
                );
                let _ = tx.send(Expected::new(source, sent));
            }
            Err(e) => tracing::warn!(tenant = source.tenant, error = %e, "demo: webhook not sent"),
        }
    }
    follower.abort();
}

/// A webhook whose change the demo waits to see stored.
struct Expected {
    tenant: &'static str,
    entity: &'static str,
    provider: String,
    external_id: String,
    event_type: String,
    sent_at: DateTime<Utc>,
}

impl Expected {
    fn new(source: &Source, sent: WebhookSent) -> Self {
        // The connectors' external ids: Slack messages are `channel:ts`.
        let external_id = match &sent.channel {
            Some(channel) => format!("{channel}:{}", sent.object_id),
            None => sent.object_id.clone(),
        };
        Self {
            tenant: source.tenant,
            entity: source.entity,
            provider: sent.provider.to_string(),
            external_id,
            event_type: sent.event_type,
            sent_at: sent.sent_at,
        }
    }

    fn key(&self) -> (String, String, String, String) {
        (self.tenant.to_owned(), self.entity.to_owned(), self.provider.clone(), self.external_id.clone())
    }
}

type Key = (String, String, String, String);

fn change_key(tenant: &str, c: &ChangeRow) -> Key {
    (tenant.to_owned(), c.entity.to_string(), c.provider.to_string(), c.external_id.clone())
}

/// Reads the tenants' change feeds and logs each expected change once it is stored.
async fn follow_changes(store: Store, tenants: Vec<&'static str>, mut rx: mpsc::UnboundedReceiver<Expected>) {
    let mut tenants: Vec<(&'static str, TenantId, i64)> =
        tenants.into_iter().filter_map(|t| Some((t, TenantId::parse(t).ok()?, 0))).collect();
    tenants.dedup_by(|a, b| a.0 == b.0);
    let mut recent: HashMap<Key, ChangeRow> = HashMap::new();
    let mut waiting: Vec<Expected> = Vec::new();
    loop {
        tokio::time::sleep(FEED_POLL).await;
        while let Ok(e) = rx.try_recv() {
            waiting.push(e);
        }
        for (name, tenant, cursor) in &mut tenants {
            loop {
                let Ok(page) = store.list_changes(tenant, None, *cursor, 1000).await else {
                    break;
                };
                let Some(last) = page.last() else {
                    break;
                };
                *cursor = last.seq;
                let full = page.len() == 1000;
                for c in page {
                    recent.insert(change_key(name, &c), c);
                }
                if !full {
                    break;
                }
            }
        }
        let now = Utc::now();
        recent.retain(|_, c| now - c.changed_at < RECENT);
        let mut still = Vec::with_capacity(waiting.len());
        for e in waiting.drain(..) {
            match recent.get(&e.key()).filter(|c| c.changed_at >= e.sent_at) {
                Some(c) => report(&store, &e, c).await,
                None if now - e.sent_at > SYNC_PATIENCE => tracing::warn!(
                    tenant = e.tenant,
                    provider = %e.provider,
                    record = %e.external_id,
                    "demo: a webhook's change was not stored within 60 s"
                ),
                None => still.push(e),
            }
        }
        waiting = still;
    }
}

/// Logs that the change a webhook announced is stored: by which run (and what triggered
/// it: usually the webhook, or a run already under way that read the change first), and
/// the latency from the webhook sent to the record stored.
async fn report(store: &Store, e: &Expected, c: &ChangeRow) {
    let tenant = TenantId::parse(e.tenant).ok();
    let run = match c.run_id {
        Some(id) => store.get_run(id, tenant.as_ref()).await.ok().flatten(),
        None => None,
    };
    tracing::info!(
        tenant = e.tenant,
        provider = %e.provider,
        event = %e.event_type,
        record = %e.external_id,
        change = %c.kind,
        seq = c.seq,
        run = %c.run_id.map(|r| r.to_string()).unwrap_or_default(),
        trigger = run.as_ref().map_or("", |r| r.trigger.as_str()),
        latency_ms = (c.changed_at - e.sent_at).num_milliseconds(),
        "demo: webhook change synced"
    );
}

type HmacSha256 = Hmac<sha2_11::Sha256>;

/// The local receiver's state: its secret's key.
struct Receiver {
    key: Vec<u8>,
}

/// Starts the local receiver on `127.0.0.1:0` and registers it as `tenant`'s endpoint
/// for every event (`*`).
pub(super) async fn start_receiver(store: &Store, key: &MasterKey, tenant: &str) -> anyhow::Result<LocalReceiver> {
    let secret = crate::http::webhooks::generate_secret();
    let receiver_key = secret
        .strip_prefix("whsec_")
        .and_then(|b| B64.decode(b).ok())
        .ok_or_else(|| anyhow::anyhow!("the generated secret is not a whsec_ secret"))?;
    let state = Arc::new(Receiver { key: receiver_key });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    let app = axum::Router::new().route("/events", post(receive)).with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let tenant = TenantId::parse(tenant)?;
    let id = format!("ep_{}", uuid::Uuid::now_v7().simple());
    let sealed = key.seal_webhook_secret(&id, secret.as_bytes());
    let events = vec!["*".to_owned()];
    store
        .create_webhook_endpoint(&NewWebhookEndpoint {
            id: &id,
            tenant: Some(&tenant),
            url: &url,
            events: &events,
            secret: &sealed,
        })
        .await?;
    Ok(LocalReceiver { url, endpoint: id, task })
}

/// The running local receiver.
pub(super) struct LocalReceiver {
    pub url: String,
    /// Its endpoint id.
    pub endpoint: String,
    pub task: tokio::task::JoinHandle<()>,
}

/// One delivery: verified with the receiver's own HMAC, printed, answered 204 (401 if
/// the signature does not verify).
async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let id = h("webhook-id");
    let verified = verify(&r.key, id, h("webhook-timestamp"), h("webhook-signature"), &body);
    let event = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    println!("  outbound webhook delivered: {event} {id} verified: {}", if verified { "yes" } else { "no" });
    if verified { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED }
}

/// Whether one of the `v1,<base64>` signatures is the HMAC-SHA256 of `id.timestamp.body`.
fn verify(key: &[u8], id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    if id.is_empty() || timestamp.is_empty() {
        return false;
    }
    signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).filter_map(|s| B64.decode(s).ok()).any(|given| {
        let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
            return false;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's example.
    #[test]
    fn the_receiver_verifies_the_standard_webhooks_example() {
        let key = B64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(verify(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig, body));
        assert!(!verify(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265331", sig, body));
        assert!(!verify(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,bad", body));
    }
}
