//! Webhooks, both directions, on `tributary run` (a child process) with one tenant
//! connected to the HubSpot simulator (on a runtime of its own in this process).
//!
//! Outbound: `MESSAGES` (default 5,000) events are written to the outbox of one endpoint
//! (subscribed to every event) before the daemon starts; a receiver in this process
//! (axum on 127.0.0.1) checks each delivery's Standard Webhooks signature and stamps it.
//! Deliveries per second = deliveries between the first and the last stamp. Reference in
//! the same run: the same receiver and bodies posted by a plain HTTP client at the
//! daemon's delivery concurrency, with no store (what the HTTP exchange alone allows).
//!
//! Inbound: `REQUESTS` (default 10,000) HubSpot v3-signed `contact.propertyChange`
//! deliveries, each with its own `eventId`, posted by `CLIENTS` (default 16) concurrent
//! clients to `POST /webhooks/acme/hubspot`; each request's latency from send to the
//! whole answer, p50/p90/p99/max, and the accept rate. Reference in the same run, same
//! clients: `GET /healthz` (the HTTP stack alone). While the load runs the inbox worker
//! turns the deliveries into triggered runs of `contacts`, as in production.
//!
//! `cargo bench --bench webhooks` (SQLite) or
//! `cargo bench --bench webhooks -- postgres://user@host/db` (also PostgreSQL, on a
//! scratch database).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tributary::http::webhook::hmac_sha256;
use tributary::model::TenantId;
use tributary::store::{NewWebhookEndpoint, Store};
use tributary_simulator::{Provider, SimConfig};

use support::Scratch;

/// Deliveries run this many at once (the daemon's `[webhooks] concurrency`, default).
const CONCURRENCY: usize = 16;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages = env_or("MESSAGES", 5_000);
    let requests = env_or("REQUESTS", 10_000);
    let clients = env_or("CLIENTS", 16);
    println!("machine: {}", support::machine());
    let sim = support::simulator_thread(SimConfig::new(Provider::HubSpot, 50))?;
    for pg in Scratch::backends() {
        let scratch = Scratch::new(pg.as_deref()).await?;
        let result = measure(&scratch, &sim, messages, requests, clients).await;
        let backend = scratch.backend;
        scratch.drop_database().await?;
        let r = result?;
        println!(
            "{backend}: outbound {} deliveries in {:.2} s = {:.0}/s (all signatures valid) | reference: plain \
             client to the same receiver {:.0} requests/s",
            r.delivered,
            r.delivery_secs,
            r.delivered as f64 / r.delivery_secs,
            r.reference_rps
        );
        let ms = |v: &[f64], q: f64| support::quantile(v, q) * 1e3;
        println!(
            "{backend}: inbound {} accepted by {clients} clients in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p90 \
             {:.2} ms, p99 {:.2} ms, max {:.2} ms | reference GET /healthz: p50 {:.2} ms, p99 {:.2} ms",
            r.accept.len(),
            r.accept_secs,
            r.accept.len() as f64 / r.accept_secs,
            ms(&r.accept, 0.5),
            ms(&r.accept, 0.9),
            ms(&r.accept, 0.99),
            ms(&r.accept, 1.0),
            ms(&r.health, 0.5),
            ms(&r.health, 0.99),
        );
    }
    sim.shutdown();
    Ok(())
}

struct Results {
    delivered: usize,
    delivery_secs: f64,
    reference_rps: f64,
    accept: Vec<f64>,
    accept_secs: f64,
    health: Vec<f64>,
}

/// What the receiver saw: distinct message ids, bad signatures, first and last stamp.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    bad: usize,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Receiver {
    key: Vec<u8>,
    seen: Mutex<Seen>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let expected =
        format!("v1,{}", B64.encode(hmac_sha256(&r.key, &[id.as_bytes(), b".", ts.as_bytes(), b".", &body])));
    let ok = sig.split(' ').any(|s| s == expected);
    let now = Instant::now();
    let mut seen = r.seen.lock().expect("the receiver's lock");
    if ok {
        seen.ids.insert(id);
    } else {
        seen.bad += 1;
    }
    seen.first.get_or_insert(now);
    seen.last = Some(now);
    StatusCode::NO_CONTENT
}

async fn serve_receiver(receiver: Arc<Receiver>) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn measure(
    scratch: &Scratch,
    sim: &tributary_simulator::SimHandle,
    messages: usize,
    requests: usize,
    clients: usize,
) -> anyhow::Result<Results> {
    let dir = scratch.dir.path();
    let connectors = support::connectors_dir(dir, "hubspot", None)?;
    let config = support::config_dir(
        dir,
        &format!(
            "webhook_rate_per_source = 1000000\n[webhooks]\nallow_private_targets = true\nconcurrency = {CONCURRENCY}\n"
        ),
    )?;
    let catalog = support::catalog(&config, &connectors)?;
    let (key, key_file) = support::master_key(dir)?;
    let store = Store::connect(&scratch.url).await?;
    support::hubspot_tenant(&catalog, &store, &key, dir, "acme", sim).await?;
    let tenant = TenantId::parse("acme")?;

    // The endpoint and its messages, before the daemon starts.
    let secret = tributary::http::webhooks::generate_secret();
    let raw_key = tributary::http::webhooks::secret_key(&secret).expect("a whsec_ secret");
    let receiver = Arc::new(Receiver { key: raw_key.to_vec(), seen: Mutex::default() });
    let addr = serve_receiver(receiver.clone()).await?;
    let url = format!("http://{addr}/hook");
    let id = "ep_bench";
    let sealed = key.seal_webhook_secret(id, secret.as_bytes());
    let events = vec!["*".to_owned()];
    store
        .create_webhook_endpoint(&NewWebhookEndpoint {
            id,
            tenant: Some(&tenant),
            url: &url,
            events: &events,
            secret: &sealed,
        })
        .await?;
    let data = |i: usize| {
        serde_json::json!({
            "tenant": "acme", "provider": "hubspot", "stream": "contacts", "run_id": i,
            "trigger": "schedule", "records": {"fetched": 100, "inserted": 3, "updated": 7, "unchanged": 90},
        })
    };
    for i in 0..messages {
        store.emit_event(Some(&tenant), "run.succeeded", data(i)).await?;
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let (mut child, _socket) =
        support::spawn_daemon_on(dir, &scratch.url, &config, &connectors, &key_file, &listen).await?;

    let started = Instant::now();
    loop {
        let n = receiver.seen.lock().expect("lock").ids.len();
        if n >= messages {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "only {n} of {messages} delivered in 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (delivered, delivery_secs) = {
        let seen = receiver.seen.lock().expect("lock");
        anyhow::ensure!(seen.bad == 0, "{} deliveries with a bad signature", seen.bad);
        let (first, last) = (seen.first.expect("a first"), seen.last.expect("a last"));
        (seen.ids.len(), (last - first).as_secs_f64())
    };
    let reference_rps = reference(&url, &receiver, messages).await?;

    // Inbound: warm up, then measure.
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let secret = sim.credentials()["client_secret"].as_str().expect("the client secret").to_owned();
    let target = format!("http://{listen}/webhooks/acme/hubspot");
    post_all(&client, &target, &secret, 0, 200, clients).await?;
    let t = Instant::now();
    let accept = post_all(&client, &target, &secret, 1_000_000, requests, clients).await?;
    let accept_secs = t.elapsed().as_secs_f64();
    let health = get_all(&client, &format!("http://{listen}/healthz"), requests, clients).await?;

    child.kill().await?;
    store.close().await;
    Ok(Results { delivered, delivery_secs, reference_rps, accept, accept_secs, health })
}

/// Requests per second of a plain client posting `n` envelopes to the receiver, signed
/// as the daemon signs them, `CONCURRENCY` at a time.
async fn reference(url: &str, receiver: &Arc<Receiver>, n: usize) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, url, next, key) = (client.clone(), url.to_owned(), next.clone(), receiver.key.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let id = format!("msg_reference_{i}");
                let ts = chrono::Utc::now().timestamp().to_string();
                let body = serde_json::json!({"type": "run.succeeded", "timestamp": "2026-12-07T00:00:00.000Z",
                    "data": {"tenant": "acme", "run_id": i}})
                .to_string();
                let sig = B64.encode(hmac_sha256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body.as_bytes()]));
                let r = client
                    .post(&url)
                    .header("webhook-id", id)
                    .header("webhook-timestamp", ts)
                    .header("webhook-signature", format!("v1,{sig}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "the receiver answered {}", r.status());
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Posts `n` signed deliveries (event ids from `first_id`) from `clients` concurrent
/// clients; each one's latency in seconds. Every answer must be 200.
async fn post_all(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    first_id: usize,
    n: usize,
    clients: usize,
) -> anyhow::Result<Vec<f64>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, secret, next) = (client.clone(), url.to_owned(), secret.to_owned(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(latencies);
                }
                let event = first_id + i;
                let body = format!(
                    r#"[{{"eventId":{event},"subscriptionId":1,"portalId":62515,"occurredAt":1700000000000,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":{},"propertyName":"email","propertyValue":"a{event}@b.example","changeSource":"CRM"}}]"#,
                    100 + i % 50
                );
                let ts = chrono::Utc::now().timestamp_millis().to_string();
                let sig = B64.encode(hmac_sha256(
                    secret.as_bytes(),
                    &[b"POST", url.as_bytes(), body.as_bytes(), ts.as_bytes()],
                ));
                let started = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("X-HubSpot-Request-Timestamp", ts)
                    .header("X-HubSpot-Signature-v3", sig)
                    .body(body)
                    .send()
                    .await?;
                let status = r.status();
                r.bytes().await?;
                latencies.push(started.elapsed().as_secs_f64());
                anyhow::ensure!(status == StatusCode::OK, "delivery {event} answered {status}");
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    Ok(all)
}

/// `n` GETs of `url` from `clients` concurrent clients; each one's latency in seconds.
async fn get_all(client: &reqwest::Client, url: &str, n: usize, clients: usize) -> anyhow::Result<Vec<f64>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let started = Instant::now();
                let r = client.get(&url).send().await?;
                anyhow::ensure!(r.status().is_success(), "GET answered {}", r.status());
                r.bytes().await?;
                latencies.push(started.elapsed().as_secs_f64());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    Ok(all)
}
