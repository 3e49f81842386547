//! Inbound webhooks on a running daemon: a signed HubSpot delivery is stored and
//! triggers an incremental run of the stream its event maps to; refused deliveries all
//! get the same answer; a replay is accepted once; a burst becomes one run per job.
//!
//! Requests are signed here with `hmac_sha256`, whose output the unit tests pin to
//! RFC 4231's vectors (and the verifier to Slack's and Standard Webhooks' published
//! examples).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tributary::http::webhook::hmac_sha256;
use tributary::model::{RunOutcome, RunTrigger};
use tributary::simulator::{Provider, SimConfig, SimHandle, start};

use super::{Daemon, Fixture, NEVER, eventually};

struct Setup {
    fx: Fixture,
    daemon: Daemon,
    address: String,
    secret: String,
    _aptem: SimHandle,
    _hubspot: SimHandle,
}

async fn setup() -> Setup {
    let aptem = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    let hubspot = start(SimConfig::new(Provider::HubSpot, 5)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n\
         [providers.aptem]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        aptem.api_base(),
        hubspot.base_url()
    );
    let creds = hubspot.credentials();
    let secret = creds["client_secret"].as_str().expect("the simulator's client secret").to_owned();
    fx.connect("acme", &tenant, &[("aptem", aptem.credentials()), ("hubspot", creds)]).await;
    let daemon = fx.start("d", 4).await;
    let address = http_address(&daemon);
    Setup { fx, daemon, address, secret, _aptem: aptem, _hubspot: hubspot }
}

fn http_address(daemon: &Daemon) -> String {
    let started = daemon
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with("HTTP server listening")))
        .unwrap_or_else(|| panic!("the daemon logged no HTTP address:\n{}", daemon.log_text()));
    started["fields"]["address"].as_str().expect("the address field").to_owned()
}

fn contact_change(event_id: u64) -> String {
    format!(
        r#"[{{"eventId":{event_id},"subscriptionId":1,"portalId":62515,"occurredAt":1700000000000,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":101,"propertyName":"email","propertyValue":"a@b.example","changeSource":"CRM"}}]"#
    )
}

/// POSTs `body` to `/webhooks/{tenant}/{provider}`, HubSpot v3-signed with `secret` at
/// `ts_ms`; the status and body.
async fn post_hubspot(address: &str, path: &str, body: &str, secret: &str, ts_ms: i64) -> (u16, String) {
    let url = format!("http://{address}{path}");
    let ts = ts_ms.to_string();
    let sig = B64.encode(hmac_sha256(secret.as_bytes(), &[b"POST", url.as_bytes(), body.as_bytes(), ts.as_bytes()]));
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("X-HubSpot-Request-Timestamp", ts)
        .header("X-HubSpot-Signature-v3", sig)
        .body(body.to_owned())
        .send()
        .await
        .expect("POST the webhook");
    (r.status().as_u16(), r.text().await.expect("the answer"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn metrics(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics")).await.unwrap().text().await.unwrap()
}

async fn webhook_runs(fx: &Fixture) -> Vec<tributary::model::RunRow> {
    fx.runs("acme").await.into_iter().filter(|r| r.trigger == RunTrigger::Webhook).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_hubspot_webhook_is_stored_and_triggers_a_run_of_its_stream() {
    let s = setup().await;
    assert!(s.fx.runs("acme").await.is_empty(), "nothing is due before the webhook");
    let sent = std::time::Instant::now();
    let (status, _) = post_hubspot(&s.address, "/webhooks/acme/hubspot", &contact_change(1), &s.secret, now_ms()).await;
    assert_eq!(status, 200);
    let run = eventually("a run triggered by the webhook", || async {
        webhook_runs(&s.fx).await.into_iter().find(|r| r.finished_at.is_some())
    })
    .await;
    assert!(sent.elapsed() < Duration::from_secs(10), "the run followed within {:?}", sent.elapsed());
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    assert_eq!((run.provider.as_str(), run.stream.as_str()), ("hubspot", "contacts"));
    assert_eq!(webhook_runs(&s.fx).await.len(), 1, "only the mapped stream ran");
    let text = metrics(&s.address).await;
    assert!(text.contains(r#"tributary_webhooks_received_total{provider="hubspot",outcome="accepted"} 1"#), "{text}");
    drop(s.daemon);
    s.fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_webhooks_get_the_same_answer_and_trigger_nothing() {
    let s = setup().await;
    let body = contact_change(7);
    let a = &s.address;
    let cases = [
        ("bad signature", "/webhooks/acme/hubspot", "not-the-secret", now_ms()),
        ("stale timestamp", "/webhooks/acme/hubspot", s.secret.as_str(), now_ms() - 6 * 60 * 1000),
        ("future timestamp", "/webhooks/acme/hubspot", s.secret.as_str(), now_ms() + 6 * 60 * 1000),
        ("unknown tenant", "/webhooks/nobody/hubspot", s.secret.as_str(), now_ms()),
        ("unknown provider", "/webhooks/acme/zendesk", s.secret.as_str(), now_ms()),
        ("provider without its secret", "/webhooks/acme/aptem", s.secret.as_str(), now_ms()),
    ];
    for (what, path, secret, ts) in cases {
        assert_eq!(post_hubspot(a, path, &body, secret, ts).await, (401, String::new()), "{what}");
    }
    // A body over 1 MiB is refused before it is read in full.
    let big = format!("[{}]", "0,".repeat(600 * 1024) + "0");
    let (status, _) = post_hubspot(a, "/webhooks/acme/hubspot", &big, &s.secret, now_ms()).await;
    assert_eq!(status, 413, "oversized body");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.fx.runs("acme").await.is_empty(), "a refused webhook triggers nothing");
    let text = metrics(a).await;
    for line in [
        r#"tributary_webhooks_received_total{provider="hubspot",outcome="bad_signature"} 1"#,
        r#"tributary_webhooks_received_total{provider="hubspot",outcome="stale"} 1"#,
        r#"tributary_webhooks_received_total{provider="hubspot",outcome="future"} 1"#,
        r#"tributary_webhooks_received_total{provider="hubspot",outcome="unknown"} 1"#,
        r#"tributary_webhooks_received_total{provider="unknown",outcome="unknown"} 2"#,
        r#"tributary_webhooks_received_total{provider="hubspot",outcome="too_large"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    drop(s.daemon);
    s.fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_is_accepted_once() {
    let s = setup().await;
    let body = contact_change(42);
    let ts = now_ms();
    assert_eq!(post_hubspot(&s.address, "/webhooks/acme/hubspot", &body, &s.secret, ts).await.0, 200);
    assert_eq!(post_hubspot(&s.address, "/webhooks/acme/hubspot", &body, &s.secret, ts).await.0, 200);
    let text = metrics(&s.address).await;
    assert!(text.contains(r#"tributary_webhooks_received_total{provider="hubspot",outcome="accepted"} 1"#), "{text}");
    assert!(text.contains(r#"tributary_webhooks_received_total{provider="hubspot",outcome="duplicate"} 1"#), "{text}");
    drop(s.daemon);
    s.fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_twenty_events_runs_each_job_once() {
    let s = setup().await;
    for i in 0..20u64 {
        let body = contact_change(1000 + i);
        assert_eq!(post_hubspot(&s.address, "/webhooks/acme/hubspot", &body, &s.secret, now_ms()).await.0, 200);
    }
    eventually("the burst's run to finish", || async {
        webhook_runs(&s.fx).await.into_iter().find(|r| r.finished_at.is_some())
    })
    .await;
    // Longer than the debounce and a run: a second run would have started.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = webhook_runs(&s.fx).await;
    assert_eq!(runs.len(), 1, "one run for the burst: {runs:?}");
    assert_eq!(runs[0].stream.as_str(), "contacts");
    drop(s.daemon);
    s.fx.finish().await;
}
