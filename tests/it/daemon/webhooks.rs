//! Inbound webhooks on a running daemon: a signed HubSpot delivery is stored and
//! triggers an incremental run of the stream its event maps to; a replay is accepted
//! once; a burst becomes one run per job. The other schemes, the refusals, the rate
//! limit, the listener of its own and the wake-up of other replicas are in the
//! submodules.
//!
//! Requests are signed here with the `hmac` crate, independently of the daemon's own
//! HMAC (which the unit tests pin to RFC 4231's vectors, and the verifier to Slack's
//! and Standard Webhooks' published examples).

mod deletes;
mod listener;
mod refusals;
mod replicas;
mod schemes;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use tributary::model::{RunOutcome, RunRow, RunTrigger};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Daemon, Fixture, NEVER, PATIENCE, eventually};

/// HMAC-SHA256 of the concatenated `parts`, by the `hmac` crate.
pub(super) fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2_11::Sha256>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// What the daemon answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl Answer {
    pub(super) async fn of(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let content_type =
            r.headers().get("content-type").map(|v| v.to_str().expect("an ASCII content type").to_owned());
        Self { status, content_type, body: r.text().await.expect("the answer's body") }
    }
}

struct Setup {
    fx: Fixture,
    daemon: Daemon,
    address: String,
    secret: String,
    _aptem: SimHandle,
    _hubspot: SimHandle,
}

/// Tenant `acme` (Aptem and HubSpot, neither scheduled) and a daemon; `daemon` is the
/// body of `[daemon]`.
async fn setup_with(daemon: &str) -> Setup {
    let aptem = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    let hubspot = start(SimConfig::new(Provider::HubSpot, 5)).await.unwrap();
    let fx = Fixture::sqlite(daemon).await;
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

async fn setup() -> Setup {
    setup_with("").await
}

/// The address a daemon logged for the listener whose start message begins with `message`.
fn logged_address(daemon: &Daemon, message: &str) -> String {
    let started = daemon
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with(message)))
        .unwrap_or_else(|| panic!("the daemon logged no `{message}` address:\n{}", daemon.log_text()));
    started["fields"]["address"].as_str().expect("the address field").to_owned()
}

fn http_address(daemon: &Daemon) -> String {
    logged_address(daemon, "HTTP server listening")
}

/// Starts `tributary run` like [`Fixture::start`], but with the manifests of
/// `connectors` (run-time manifests beside the built-in ones).
async fn start_with_connectors(fx: &Fixture, name: &str, connectors: &Path) -> Daemon {
    let socket = fx.dir.path().join(format!("{name}.sock"));
    let log = fx.dir.path().join(format!("{name}.log"));
    let stderr = std::fs::File::create(&log).expect("create the log file");
    let socket_arg = socket.to_str().expect("UTF-8 path").to_owned();
    let child = fx
        .command(&["--log-format", "json", "run", "--socket", &socket_arg, "--listen", "127.0.0.1:0"])
        .env("TRIBUTARY_CONNECTORS", connectors)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start tributary run");
    let mut daemon = Daemon { child, socket, log };
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("daemon {name} exited during start-up ({status}):\n{}", daemon.log_text());
        }
        if daemon.socket.exists()
            && let Ok(reply) =
                daemon.try_request(tributary::control::protocol::Scope::Operator, super::Ctl::Status).await
            && reply.ok
        {
            return daemon;
        }
        assert!(Instant::now() < deadline, "daemon {name} did not answer in time:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tenant `acme`'s HubSpot webhook path.
const HUBSPOT_PATH: &str = "/webhooks/acme/hubspot";

fn contact_change(event_id: u64) -> String {
    format!(
        r#"[{{"eventId":{event_id},"subscriptionId":1,"portalId":62515,"occurredAt":1700000000000,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":101,"propertyName":"email","propertyValue":"a@b.example","changeSource":"CRM"}}]"#
    )
}

/// A HubSpot v3-signed POST of `body` to `http://{address}{path}`, signed with `secret`
/// at `ts_ms`, sent by `client`.
async fn post_hubspot_from(
    client: &reqwest::Client,
    address: &str,
    path: &str,
    body: &str,
    secret: &str,
    ts_ms: i64,
) -> Answer {
    let url = format!("http://{address}{path}");
    let ts = ts_ms.to_string();
    let sig = B64.encode(mac(secret.as_bytes(), &[b"POST", url.as_bytes(), body.as_bytes(), ts.as_bytes()]));
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .header("X-HubSpot-Request-Timestamp", ts)
        .header("X-HubSpot-Signature-v3", sig)
        .body(body.to_owned())
        .send()
        .await
        .expect("POST the webhook");
    Answer::of(r).await
}

/// [`post_hubspot_from`] with a new client.
async fn post_hubspot(address: &str, path: &str, body: &str, secret: &str, ts_ms: i64) -> Answer {
    post_hubspot_from(&reqwest::Client::new(), address, path, body, secret, ts_ms).await
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn metrics(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics")).await.unwrap().text().await.unwrap()
}

/// The count of `tributary_webhooks_received_total{provider,outcome}` (0 when absent).
async fn received(address: &str, provider: &str, outcome: &str) -> u64 {
    let text = metrics(address).await;
    let series = format!(r#"tributary_webhooks_received_total{{provider="{provider}",outcome="{outcome}"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().unwrap_or_else(|_| panic!("a count in `{n}`")))
}

async fn webhook_runs(fx: &Fixture, tenant: &str) -> Vec<RunRow> {
    fx.runs(tenant).await.into_iter().filter(|r| r.trigger == RunTrigger::Webhook).collect()
}

/// Waits for the first finished run of `tenant` a webhook triggered.
async fn finished_webhook_run(fx: &Fixture, tenant: &str) -> RunRow {
    eventually("a run triggered by the webhook", || async {
        webhook_runs(fx, tenant).await.into_iter().find(|r| r.finished_at.is_some())
    })
    .await
}

async fn inbox_len(fx: &Fixture) -> i64 {
    fx.store.webhook_inbox_len().await.expect("count the inbox")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_hubspot_webhook_is_stored_and_triggers_a_run_of_its_stream() {
    let s = setup().await;
    assert!(s.fx.runs("acme").await.is_empty(), "nothing is due before the webhook");
    let sent = Instant::now();
    let answer = post_hubspot(&s.address, HUBSPOT_PATH, &contact_change(1), &s.secret, now_ms()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(inbox_len(&s.fx).await, 1, "the delivery is stored before it is answered");
    let run = finished_webhook_run(&s.fx, "acme").await;
    assert!(sent.elapsed() < Duration::from_secs(10), "the run followed within {:?}", sent.elapsed());
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    assert_eq!((run.provider.as_str(), run.stream.as_str()), ("hubspot", "contacts"));
    assert_eq!(webhook_runs(&s.fx, "acme").await.len(), 1, "only the mapped stream ran");
    assert_eq!(received(&s.address, "hubspot", "accepted").await, 1);
    drop(s.daemon);
    s.fx.finish().await;
}

/// HubSpot signs the URL it calls with some escapes decoded (`%40` → `@`, `%2C` → `,`):
/// a registered URL with such a query verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_webhook_to_a_url_with_escapes_verifies_as_hubspot_signs_it() {
    let s = setup().await;
    let sent = format!("http://{}{HUBSPOT_PATH}?owner=ops%40acme.example&tags=a%2Cb&note=x%20y", s.address);
    let signed = format!("http://{}{HUBSPOT_PATH}?owner=ops@acme.example&tags=a,b&note=x%20y", s.address);
    let body = contact_change(5);
    let post = |url: &str| {
        let ts = now_ms().to_string();
        let sig = B64.encode(mac(s.secret.as_bytes(), &[b"POST", url.as_bytes(), body.as_bytes(), ts.as_bytes()]));
        reqwest::Client::new()
            .post(&sent)
            .header("X-HubSpot-Request-Timestamp", ts)
            .header("X-HubSpot-Signature-v3", sig)
            .body(body.clone())
            .send()
    };
    assert_eq!(post(&sent).await.unwrap().status().as_u16(), 401, "the escapes as sent are not what HubSpot signs");
    assert_eq!(post(&signed).await.unwrap().status().as_u16(), 200);
    let run = finished_webhook_run(&s.fx, "acme").await;
    assert_eq!(run.stream.as_str(), "contacts");
    drop(s.daemon);
    s.fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_is_accepted_once() {
    let s = setup().await;
    let body = contact_change(42);
    let ts = now_ms();
    let first = post_hubspot(&s.address, HUBSPOT_PATH, &body, &s.secret, ts).await;
    assert_eq!((first.status, first.body.as_str()), (200, ""));
    // The same event id, even re-signed later (HubSpot's retries keep the id), is a replay.
    for ts in [ts, ts + 1_000] {
        let again = post_hubspot(&s.address, HUBSPOT_PATH, &body, &s.secret, ts).await;
        assert_eq!(again, first, "a replay gets the answer of the first delivery");
    }
    assert_eq!(inbox_len(&s.fx).await, 1, "the replays are not stored");
    assert_eq!(received(&s.address, "hubspot", "accepted").await, 1);
    assert_eq!(received(&s.address, "hubspot", "duplicate").await, 2);
    finished_webhook_run(&s.fx, "acme").await;
    // Longer than the debounce and a run: a run for a replay would have started.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(webhook_runs(&s.fx, "acme").await.len(), 1, "one delivery, one run");
    drop(s.daemon);
    s.fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_twenty_events_runs_each_job_once() {
    let s = setup().await;
    for i in 0..20u64 {
        let body = contact_change(1000 + i);
        assert_eq!(post_hubspot(&s.address, HUBSPOT_PATH, &body, &s.secret, now_ms()).await.status, 200);
    }
    finished_webhook_run(&s.fx, "acme").await;
    // Longer than the debounce and a run: a second run would have started.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = webhook_runs(&s.fx, "acme").await;
    assert_eq!(runs.len(), 1, "one run for the burst: {runs:?}");
    assert_eq!(runs[0].stream.as_str(), "contacts");
    assert_eq!(inbox_len(&s.fx).await, 20, "every delivery is kept");
    drop(s.daemon);
    s.fx.finish().await;
}

/// A `contact.deletion` webhook triggers the deletion stream where the tenant enabled it
/// (HubSpot's `contacts_archived`, which marks the listed contacts deleted), besides the
/// contacts stream; a tenant without it gets the contacts run alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_webhook_triggers_the_enabled_deletion_stream() {
    let aptem = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    let hubspot = start(SimConfig::new(Provider::HubSpot, 5)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let creds = hubspot.credentials();
    let secret = creds["client_secret"].as_str().unwrap().to_owned();
    let tenant = |archived: &str| {
        format!(
            "preset = \"aptem_hubspot\"\n\
             [providers.aptem]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n\
             [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n{archived}",
            aptem.api_base(),
            hubspot.base_url()
        )
    };
    let enabled = "[providers.hubspot.streams]\ncontacts_archived = { enabled = true, entity = \"employer\" }\n";
    fx.connect("acme", &tenant(enabled), &[("aptem", aptem.credentials()), ("hubspot", creds.clone())]).await;
    let daemon = fx.start("d", 4).await;
    let address = http_address(&daemon);
    let deletion = contact_change(7).replace("contact.propertyChange", "contact.deletion");
    let answer = post_hubspot(&address, HUBSPOT_PATH, &deletion, &secret, now_ms()).await;
    assert_eq!(answer.status, 200);
    let streams = eventually("both triggered runs to finish", || async {
        let runs = webhook_runs(&fx, "acme").await;
        let mut done: Vec<String> =
            runs.iter().filter(|r| r.finished_at.is_some()).map(|r| r.stream.as_str().to_owned()).collect();
        done.sort();
        (done.len() >= 2).then_some(done)
    })
    .await;
    assert_eq!(streams, ["contacts", "contacts_archived"]);
    drop(daemon);
    fx.finish().await;
}
