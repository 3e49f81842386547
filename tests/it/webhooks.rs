//! Outbound event webhooks: signed deliveries through a flaky receiver, stable ids across
//! retries, 410 disabling the endpoint, the SSRF guard, events written with the state
//! change they report (each connection transition once, however many changes race), the
//! delivery metrics, and two replicas on PostgreSQL delivering each message once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{KeyInit, Mac};
use tokio_util::sync::CancellationToken;
use tributary::config::WebhookSettings;
use tributary::http::webhooks::{DeliveryCounters, generate_secret, run_worker};
use tributary::model::{ConnectionStatus, Owner, ProviderId, RunOutcome, RunStats, RunTrigger, StreamName};
use tributary::secrets::MasterKey;
use tributary::store::{NewWebhookEndpoint, Store};
use tributary::telemetry::Metrics;

use crate::support::world::World;
use crate::support::{postgres_store, sqlite_store};

/// How the receiver answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// 30% 503, 5% slower than the client's timeout, the rest 200.
    Flaky,
    Always(u16),
}

#[derive(Default)]
struct Seen {
    /// Every request: (webhook-id, answered status).
    hits: Vec<(String, u16)>,
    /// Bodies by id, as delivered with a 2xx.
    delivered: HashMap<String, serde_json::Value>,
    bad_signatures: u64,
}

struct Receiver {
    key: Vec<u8>,
    mode: Mode,
    count: AtomicU64,
    /// Requests answered slower than the client waits (the client gives up and the
    /// server drops the handler).
    slow: AtomicU64,
    seen: Mutex<Seen>,
}

/// Standard Webhooks verification, computed here with the `hmac` crate: the message id
/// when the signature is valid and the timestamp recent.
pub fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let id = headers.get("webhook-id")?.to_str().ok()?;
    let ts = headers.get("webhook-timestamp")?.to_str().ok()?;
    let sig = headers.get("webhook-signature")?.to_str().ok()?;
    let now = chrono::Utc::now().timestamp();
    if (now - ts.parse::<i64>().ok()?).abs() > 300 {
        return None;
    }
    let mut mac = hmac::Hmac::<sha2_11::Sha256>::new_from_slice(key).ok()?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    sig.split(' ').any(|s| s == expected).then(|| id.to_owned())
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let n = r.count.fetch_add(1, Ordering::SeqCst);
    let Some(id) = verify(&r.key, &headers, &body) else {
        r.seen.lock().unwrap().bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    };
    let status = match r.mode {
        Mode::Always(s) => s,
        Mode::Flaky if n % 20 == 7 => {
            // Longer than the client's 1 s timeout: the client gives up first.
            r.slow.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            503
        }
        Mode::Flaky if n % 10 < 3 => 503,
        Mode::Flaky => 200,
    };
    let mut seen = r.seen.lock().unwrap();
    seen.hits.push((id.clone(), status));
    if (200..300).contains(&status) {
        let value: serde_json::Value = serde_json::from_slice(&body).expect("the body is JSON");
        assert!(seen.delivered.insert(id, value).is_none(), "a message was delivered twice");
    }
    StatusCode::from_u16(status).unwrap()
}

/// A receiver on 127.0.0.1:0 and its URL.
async fn receiver(secret: &str, mode: Mode) -> (Arc<Receiver>, String) {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let r = Arc::new(Receiver {
        key,
        mode,
        count: AtomicU64::new(0),
        slow: AtomicU64::new(0),
        seen: Mutex::new(Seen::default()),
    });
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

/// Registers an operator-wide endpoint for every event; returns its id.
async fn endpoint(store: &Store, key: &MasterKey, url: &str, secret: &str) -> String {
    let id = format!("ep_{}", uuid::Uuid::now_v7().simple());
    let sealed = key.seal_webhook_secret(&id, secret.as_bytes());
    store
        .create_webhook_endpoint(&NewWebhookEndpoint {
            id: &id,
            tenant: None,
            url,
            events: &["*".to_owned()],
            secret: &sealed,
        })
        .await
        .unwrap();
    id
}

fn settings(schedule: Vec<u64>, allow_private: bool) -> WebhookSettings {
    WebhookSettings {
        allow_private_targets: allow_private,
        retry_schedule_secs: schedule,
        timeout_secs: 1,
        concurrency: 8,
        lease_secs: 30,
    }
}

/// A delivery worker; its counters also feed the returned metrics.
fn worker(
    store: &Store,
    key: &Arc<MasterKey>,
    settings: WebhookSettings,
    owner: &str,
    cancel: &CancellationToken,
) -> (tokio::task::JoinHandle<()>, Arc<DeliveryCounters>) {
    worker_with(store, key, settings, owner, cancel, Arc::new(Metrics::new()))
}

fn worker_with(
    store: &Store,
    key: &Arc<MasterKey>,
    settings: WebhookSettings,
    owner: &str,
    cancel: &CancellationToken,
    metrics: Arc<Metrics>,
) -> (tokio::task::JoinHandle<()>, Arc<DeliveryCounters>) {
    let counters = Arc::new(DeliveryCounters::exporting(metrics));
    let task = tokio::spawn(run_worker(
        store.clone(),
        key.clone(),
        settings,
        owner.to_owned(),
        Duration::from_millis(20),
        counters.clone(),
        cancel.clone(),
    ));
    (task, counters)
}

/// Waits until `done` holds (at most `secs`).
async fn until(secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_is_delivered_signed_through_failures_with_stable_ids() {
    let (store, _dir) = sqlite_store().await;
    let key = Arc::new(MasterKey::generate());
    let secret = generate_secret();
    let (r, url) = receiver(&secret, Mode::Flaky).await;
    let ep = endpoint(&store, &key, &url, &secret).await;
    const N: usize = 60;
    for i in 0..N {
        let n = store.emit_event(None, "job.stalled", serde_json::json!({"i": i})).await.unwrap();
        assert_eq!(n, 1);
    }
    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let (task, _) = worker_with(&store, &key, settings(vec![0; 20], true), "w1", &cancel, metrics.clone());
    until(60, || r.seen.lock().unwrap().delivered.len() == N).await;
    cancel.cancel();
    task.await.unwrap();

    let seen = std::mem::take(&mut *r.seen.lock().unwrap());
    assert_eq!(seen.bad_signatures, 0);
    let failures = seen.hits.iter().filter(|(_, s)| *s == 503).count() + r.slow.load(Ordering::SeqCst) as usize;
    assert!(failures >= N / 5, "the receiver failed {failures} of {} requests", seen.hits.len());
    // Every failed attempt's id is one that was later delivered: ids are stable.
    for (id, _) in &seen.hits {
        assert!(seen.delivered.contains_key(id), "id {id} was never delivered");
    }
    let mut is: Vec<i64> = seen.delivered.values().map(|v| v["data"]["i"].as_i64().unwrap()).collect();
    is.sort_unstable();
    assert_eq!(is, (0..N as i64).collect::<Vec<_>>());
    for v in seen.delivered.values() {
        assert_eq!(v["type"], "job.stalled");
        assert!(v["timestamp"].is_string());
    }
    // Every attempt is recorded: as many as the receiver saw, plus the timeouts it
    // answered after the client gave up (recorded with no status).
    let log = store.list_webhook_deliveries(&ep, 10_000).await.unwrap();
    let ok = log.iter().filter(|d| d.status == Some(200)).count();
    assert_eq!(ok, N);
    let timeouts = log.iter().filter(|d| d.status.is_none()).count();
    assert!(timeouts >= 1, "no attempt timed out");
    assert_eq!(timeouts as u64, r.slow.load(Ordering::SeqCst));
    assert_eq!(log.len(), seen.hits.len() + timeouts);
    let msgs = store.list_webhook_messages(&ep, 1000).await.unwrap();
    assert!(msgs.iter().all(|m| m.state == "delivered"));
    // The metrics count every attempt by outcome, the latency of each, no disabling.
    let text = metrics.encode();
    let failed = seen.hits.iter().filter(|(_, s)| *s == 503).count();
    for (outcome, n) in
        [("delivered", N), ("failed", failed), ("timeout", timeouts), ("gone", 0), ("refused_target", 0)]
    {
        let series = format!("tributary_webhook_delivery_attempts_total{{outcome=\"{outcome}\"}}");
        assert_eq!(sample(&text, &series), Some(n as f64), "{series} in\n{text}");
    }
    let count = sample(&text, "tributary_webhook_delivery_duration_seconds_count");
    assert_eq!(count, Some(log.len() as f64), "{text}");
    assert_eq!(sample(&text, "tributary_webhook_endpoints_disabled_total"), Some(0.0), "{text}");
}

/// The value of one series (`name{labels}` exactly as exposed); `None` when absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn gone_disables_the_endpoint_after_one_attempt() {
    let (store, _dir) = sqlite_store().await;
    let key = Arc::new(MasterKey::generate());
    let secret = generate_secret();
    let (r, url) = receiver(&secret, Mode::Always(410)).await;
    let ep = endpoint(&store, &key, &url, &secret).await;
    store.emit_event(None, "job.stalled", serde_json::json!({})).await.unwrap();
    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let (task, counters) = worker_with(&store, &key, settings(vec![0; 5], true), "w1", &cancel, metrics.clone());
    until(20, || counters.endpoints_disabled.load(Ordering::SeqCst) == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(r.count.load(Ordering::SeqCst), 1);
    let text = metrics.encode();
    assert_eq!(sample(&text, r#"tributary_webhook_delivery_attempts_total{outcome="gone"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, "tributary_webhook_endpoints_disabled_total"), Some(1.0), "{text}");
    let e = store.get_webhook_endpoint(&ep).await.unwrap().unwrap();
    assert!(!e.enabled);
    assert_eq!(e.disabled_reason.as_deref(), Some("the endpoint answered 410 Gone"));
    let msgs = store.list_webhook_messages(&ep, 10).await.unwrap();
    assert_eq!(msgs[0].state, "failed");
    // Events for a disabled endpoint are not queued; replay enables it again.
    assert_eq!(store.emit_event(None, "job.stalled", serde_json::json!({})).await.unwrap(), 0);
    assert_eq!(store.replay_webhooks(&ep, None).await.unwrap(), 1);
    assert!(store.get_webhook_endpoint(&ep).await.unwrap().unwrap().enabled);
}

#[tokio::test]
async fn an_exhausted_schedule_disables_the_endpoint() {
    let (store, _dir) = sqlite_store().await;
    let key = Arc::new(MasterKey::generate());
    let secret = generate_secret();
    let (r, url) = receiver(&secret, Mode::Always(500)).await;
    let ep = endpoint(&store, &key, &url, &secret).await;
    store.emit_event(None, "job.stalled", serde_json::json!({})).await.unwrap();
    let cancel = CancellationToken::new();
    let (task, counters) = worker(&store, &key, settings(vec![0, 0], true), "w1", &cancel);
    until(20, || counters.endpoints_disabled.load(Ordering::SeqCst) == 1).await;
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(r.count.load(Ordering::SeqCst), 3, "first attempt and two retries");
    let log = store.list_webhook_deliveries(&ep, 10).await.unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|d| d.status == Some(500) && d.message_id == log[0].message_id));
    assert!(!store.get_webhook_endpoint(&ep).await.unwrap().unwrap().enabled);
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let (store, _dir) = sqlite_store().await;
    let key = Arc::new(MasterKey::generate());
    let secret = generate_secret();
    let (r, url) = receiver(&secret, Mode::Always(200)).await;
    // A name, checked when it resolves (at connect time: this machine's own name, which
    // resolves to a local address), and a literal address.
    let port = url.rsplit(':').next().unwrap().trim_end_matches("/hook").to_owned();
    let host = std::fs::read_to_string("/etc/hostname").expect("/etc/hostname").trim().to_owned();
    let by_name = endpoint(&store, &key, &format!("http://{host}:{port}/hook"), &secret).await;
    let literal = endpoint(&store, &key, &url, &secret).await;
    store.emit_event(None, "job.stalled", serde_json::json!({})).await.unwrap();
    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let (task, _) = worker_with(&store, &key, settings(vec![60], false), "w1", &cancel, metrics.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut n = 0;
        for ep in [&by_name, &literal] {
            n += store.list_webhook_deliveries(ep, 10).await.unwrap().len();
        }
        if n == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for both attempts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(r.count.load(Ordering::SeqCst), 0, "the receiver was reached");
    for ep in [&by_name, &literal] {
        let log = store.list_webhook_deliveries(ep, 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].status, None);
        let error = log[0].error.as_deref().unwrap();
        assert!(error.contains("private or local"), "{error}");
    }
    // Both refusals, the literal one and the name refused at connect time, are counted
    // as such, and neither waited for an answer.
    let text = metrics.encode();
    assert_eq!(sample(&text, r#"tributary_webhook_delivery_attempts_total{outcome="refused_target"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"tributary_webhook_delivery_attempts_total{outcome="error"}"#), Some(0.0));
    assert_eq!(sample(&text, "tributary_webhook_delivery_duration_seconds_count"), Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_written_with_the_state_change_they_report() {
    let (store, _dir) = sqlite_store().await;
    let world = World::builder().on(store.clone());
    let tenant = world.create_tenant("acme", "Acme", "preset = \"aptem\"\n").await;
    let key = MasterKey::generate();
    let secret = generate_secret();
    let ep = endpoint(&store, &key, "http://127.0.0.1:9/hook", &secret).await;
    let other = {
        let id = "ep_other".to_owned();
        let sealed = key.seal_webhook_secret(&id, secret.as_bytes());
        let globex = tributary::model::TenantId::parse("globex").unwrap();
        world.create_tenant("globex", "Globex", "preset = \"aptem\"\n").await;
        store
            .create_webhook_endpoint(&NewWebhookEndpoint {
                id: &id,
                tenant: Some(&globex),
                url: "http://127.0.0.1:9/hook",
                events: &["run.failed".to_owned()],
                secret: &sealed,
            })
            .await
            .unwrap();
        id
    };
    let provider = ProviderId::parse("aptem").unwrap();
    store
        .set_connection_status(&tenant, &provider, Owner::Company, ConnectionStatus::NeedsReauth, Some("grant revoked"))
        .await
        .unwrap();
    store.set_connection_status(&tenant, &provider, Owner::Company, ConnectionStatus::Connected, None).await.unwrap();
    let conn = store.get_connection(&tenant, &provider, Owner::Company).await.unwrap().unwrap();
    let job = store.ensure_job(&tenant, conn.id, &StreamName::parse("learners").unwrap(), "@daily").await.unwrap();
    let run = store.start_run(&tenant, job.id, RunTrigger::Manual).await.unwrap();
    let stats = RunStats { inserted: 3, error: Some("boom".into()), ..RunStats::default() };
    store.finish_run(&tenant, run.id, RunOutcome::Failed, &stats).await.unwrap();

    let mut msgs = store.list_webhook_messages(&ep, 10).await.unwrap();
    msgs.reverse();
    let types: Vec<&str> = msgs.iter().map(|m| m.event_type.as_str()).collect();
    assert_eq!(types, ["connection.needs_reauth", "connection.restored", "run.failed"]);
    let reauth: serde_json::Value = serde_json::from_str(&msgs[0].payload).unwrap();
    assert_eq!(
        reauth["data"],
        serde_json::json!({"tenant_id": "acme", "provider": "aptem", "owner": null,
                           "status": "needs_reauth", "reason": "grant revoked"})
    );
    let failed: serde_json::Value = serde_json::from_str(&msgs[2].payload).unwrap();
    assert_eq!(failed["type"], "run.failed");
    assert_eq!(failed["data"]["run_id"], run.id.to_string());
    assert_eq!(failed["data"]["inserted"], 3);
    assert_eq!(failed["data"]["error"], "boom");
    assert_eq!(failed["data"]["outcome"], "failed");
    // Another tenant's endpoint hears nothing of acme.
    assert!(store.list_webhook_messages(&other, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_deliver_each_message_once() {
    let db = postgres_store().await;
    let other = Store::connect(&db.url).await.unwrap();
    let key = Arc::new(MasterKey::generate());
    let secret = generate_secret();
    let (r, url) = receiver(&secret, Mode::Always(200)).await;
    endpoint(&db.store, &key, &url, &secret).await;
    const N: usize = 200;
    for i in 0..N {
        db.store.emit_event(None, "job.stalled", serde_json::json!({"i": i})).await.unwrap();
    }
    let cancel = CancellationToken::new();
    let (a, ca) = worker(&db.store, &key, settings(vec![0; 3], true), "replica-a", &cancel);
    let (b, cb) = worker(&other, &key, settings(vec![0; 3], true), "replica-b", &cancel);
    until(60, || r.seen.lock().unwrap().delivered.len() == N).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    a.await.unwrap();
    b.await.unwrap();
    // The receiver asserts no id is delivered twice; every request was a delivery.
    assert_eq!(r.count.load(Ordering::SeqCst), N as u64);
    let (da, db_) = (ca.delivered.load(Ordering::SeqCst), cb.delivered.load(Ordering::SeqCst));
    assert_eq!(da + db_, N as u64);
    assert!(da > 0 && db_ > 0, "both replicas delivered ({da}, {db_})");
    other.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reports_its_record_changes_per_entity() {
    use tributary_simulator::{Provider, SimConfig, start};
    let sim = start(SimConfig::new(Provider::Aptem, 25)).await.unwrap();
    let (store, _dir) = sqlite_store().await;
    let world = World::builder().on(store.clone());
    let tenant = world
        .create_tenant(
            "acme",
            "Acme",
            &format!("preset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\n", sim.api_base()),
        )
        .await;
    let provider = ProviderId::parse("aptem").unwrap();
    world.credentials(&tenant, &provider, None, &sim.credentials()).await;
    let key = MasterKey::generate();
    let secret = generate_secret();
    let ep = {
        let id = "ep_records".to_owned();
        let sealed = key.seal_webhook_secret(&id, secret.as_bytes());
        store
            .create_webhook_endpoint(&NewWebhookEndpoint {
                id: &id,
                tenant: Some(&tenant),
                url: "https://hooks.example.com/x",
                events: &["records.changed".to_owned()],
                secret: &sealed,
            })
            .await
            .unwrap();
        id
    };
    let run = world
        .syncer()
        .run(&crate::support::world::request(&tenant, &provider, "learners"), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(run.outcome, RunOutcome::Success);
    let msgs = store.list_webhook_messages(&ep, 10).await.unwrap();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let body: serde_json::Value = serde_json::from_str(&msgs[0].payload).unwrap();
    assert_eq!(body["type"], "records.changed");
    let d = &body["data"];
    assert_eq!(d["run_id"], run.id.to_string());
    assert_eq!(d["inserted"], 25);
    assert_eq!(d["updated"], 0);
    assert_eq!(d["deleted"], 0);
    assert_eq!(d["to_seq"].as_i64().unwrap() - d["from_seq"].as_i64().unwrap(), 24);
}

/// Rounds of `RACERS` concurrent changes to `needs_reauth`, then as many back to
/// `connected`: each round is one real transition each way, so exactly one
/// `connection.needs_reauth` and one `connection.restored` per round, however the
/// changes interleave.
async fn racing_status_changes_report_each_transition_once(store: Store) {
    const ROUNDS: usize = 8;
    const RACERS: usize = 6;
    let world = World::builder().on(store.clone());
    let tenant = world.create_tenant("acme", "Acme", "preset = \"aptem\"\n").await;
    let key = MasterKey::generate();
    let ep = endpoint(&store, &key, "https://hooks.example.com/x", &generate_secret()).await;
    let provider = ProviderId::parse("aptem").unwrap();
    for _ in 0..ROUNDS {
        for status in [ConnectionStatus::NeedsReauth, ConnectionStatus::Connected] {
            let start = Arc::new(tokio::sync::Barrier::new(RACERS));
            let mut racers = tokio::task::JoinSet::new();
            for _ in 0..RACERS {
                let (store, tenant, provider, start) = (store.clone(), tenant.clone(), provider.clone(), start.clone());
                racers.spawn(async move {
                    start.wait().await;
                    store.set_connection_status(&tenant, &provider, Owner::Company, status, None).await.unwrap();
                });
            }
            while let Some(done) = racers.join_next().await {
                done.unwrap();
            }
        }
    }
    let msgs = store.list_webhook_messages(&ep, 10_000).await.unwrap();
    let count = |t: &str| msgs.iter().filter(|m| m.event_type == t).count();
    assert_eq!(count("connection.needs_reauth"), ROUNDS, "{msgs:#?}");
    assert_eq!(count("connection.restored"), ROUNDS, "{msgs:#?}");
    assert_eq!(msgs.len(), 2 * ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_status_changes_report_each_transition_once_on_postgres() {
    let db = postgres_store().await;
    racing_status_changes_report_each_transition_once(db.store.clone()).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_status_changes_report_each_transition_once_on_sqlite() {
    let (store, _dir) = sqlite_store().await;
    racing_status_changes_report_each_transition_once(store).await;
}
