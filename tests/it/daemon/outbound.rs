//! Outbound webhooks of a running daemon: a receiver that holds requests open while the
//! daemon is killed with SIGKILL mid-delivery; the restarted daemon delivers every
//! message, signed, under the same `webhook-id`. The receiver here serves the control
//! and metrics tests too.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde_json::Value;
use tokio::sync::watch;
use tributary::control::protocol::Command as Ctl;
use tributary::model::RunOutcome;
use tributary_simulator::{Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Fixture, NEVER, eventually, started_runs, target};
use crate::support::json;

/// `[webhooks]` for tests: local receivers allowed, many retries at once, a dead daemon's
/// messages taken again after 2 s (an attempt gives up after 1 s, within its lease: a
/// held request is attempted again, with the same id, while the daemon lives).
pub const WEBHOOKS: &str = "[webhooks]\nallow_private_targets = true\nretry_schedule_secs = [0, 0, 0, 0, 0, 0, 0, 0, \
                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\n\
                            timeout_secs = 1\nlease_secs = 2\n";

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Hold every request open until the mode changes (then answer 503).
    Hold,
    /// Answer 503 to a message's first request, 200 to later ones.
    FailFirst,
    Status(u16),
}

#[derive(Default, Debug)]
pub struct Seen {
    /// Every request with a valid signature: (webhook-id, status answered; 0 while held).
    pub hits: Vec<(String, u16)>,
    /// Bodies answered with a 2xx, by webhook-id, and how many times.
    pub delivered: HashMap<String, (Value, usize)>,
    pub bad_signatures: usize,
}

/// An HTTP receiver that verifies Standard Webhooks signatures with the secret it is given.
pub struct Receiver {
    pub url: String,
    key: OnceLock<Vec<u8>>,
    mode: watch::Sender<Mode>,
    pub seen: Mutex<Seen>,
}

impl Receiver {
    pub async fn start(mode: Mode) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("its address"));
        let r = Arc::new(Self {
            url,
            key: OnceLock::new(),
            mode: watch::Sender::new(mode),
            seen: Mutex::new(Seen::default()),
        });
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    /// The endpoint's `whsec_` secret, as registering it returned it.
    pub fn set_secret(&self, secret: &str) {
        let b64 = secret.strip_prefix("whsec_").unwrap_or_else(|| panic!("not a whsec_ secret: {secret}"));
        let key = base64::engine::general_purpose::STANDARD.decode(b64).expect("a base64 secret");
        self.key.set(key).expect("the secret is set once");
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The ids of the requests received so far.
    pub fn ids(&self) -> Vec<String> {
        self.seen.lock().unwrap().hits.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The ids answered with a 2xx.
    pub fn delivered(&self) -> HashSet<String> {
        self.seen.lock().unwrap().delivered.keys().cloned().collect()
    }
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let key = r.key.get().cloned().unwrap_or_default();
    let Some(id) = crate::webhooks::verify(&key, &headers, &body) else {
        r.seen.lock().unwrap().bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    };
    let mode = *r.mode.borrow();
    let status = match mode {
        Mode::Hold => {
            r.seen.lock().unwrap().hits.push((id, 0));
            let mut changes = r.mode.subscribe();
            let _ = changes.wait_for(|m| *m != Mode::Hold).await;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        Mode::FailFirst if !r.seen.lock().unwrap().hits.iter().any(|(seen, _)| *seen == id) => 503,
        Mode::FailFirst => 200,
        Mode::Status(s) => s,
    };
    let mut seen = r.seen.lock().unwrap();
    seen.hits.push((id.clone(), status));
    if (200..300).contains(&status) {
        let value: Value = serde_json::from_slice(&body).expect("the body is JSON");
        seen.delivered.entry(id).or_insert((value, 0)).1 += 1;
    }
    StatusCode::from_u16(status).expect("a status")
}

/// The `[daemon]` and `[webhooks]` settings of the SIGKILL tests: a dead daemon's job and
/// message leases expire within two seconds.
fn crash_settings() -> String {
    format!("lease_secs = 2\nheartbeat_secs = 1\n{WEBHOOKS}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_nothing_and_every_attempt_keeps_its_webhook_id_on_sqlite() {
    sigkill_mid_delivery_loses_nothing_and_every_attempt_keeps_its_webhook_id(Fixture::sqlite(&crash_settings()).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_nothing_and_every_attempt_keeps_its_webhook_id_on_postgres() {
    sigkill_mid_delivery_loses_nothing_and_every_attempt_keeps_its_webhook_id(
        Fixture::postgres(&crash_settings()).await,
    )
    .await;
}

/// Three test events held open by the receiver when the daemon is killed, a run's event
/// still in the outbox; a new daemon delivers all four.
async fn sigkill_mid_delivery_loses_nothing_and_every_attempt_keeps_its_webhook_id(fx: Fixture) {
    let sim = start(SimConfig::new(Provider::Aptem, 20)).await.unwrap();
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let receiver = Receiver::start(Mode::Hold).await;
    // Registered from the command line, on the store; three test events queued before
    // the daemon starts.
    let added = json(
        &fx.ok(
            &[
                "--json",
                "webhooks",
                "add",
                "--tenant",
                "acme",
                "--url",
                &receiver.url,
                "--events",
                "run.succeeded,webhook.test",
            ],
            "",
        )
        .await,
    );
    receiver.set_secret(added["secret"].as_str().expect("the secret"));
    let ep = added["endpoint"]["id"].as_str().expect("the endpoint id").to_owned();
    for _ in 0..3 {
        fx.ok(&["webhooks", "test", &ep], "").await;
    }
    let mut daemon = fx.start("d1", 2).await;
    // A run's end writes its `run.succeeded` with it; the receiver holds it too, or it
    // waits in the outbox.
    let run = started_runs(&daemon.ok(Ctl::Trigger(target("acme", Some("aptem"), Some("learners")))).await)[0];
    assert_eq!(fx.finished_run("acme", run).await.outcome, RunOutcome::Success);
    let held = eventually("the three test events to be in flight", || async {
        let ids = receiver.ids();
        (ids.len() >= 3).then_some(ids)
    })
    .await;

    daemon.signal("KILL").await;
    assert!(!daemon.exit_within(Duration::from_secs(5)).await.success());
    drop(daemon);
    let messages = fx.store.list_webhook_messages(&ep, 100).await.unwrap();
    assert_eq!(messages.len(), 4, "three tests and the run's event: {messages:#?}");
    assert!(messages.iter().all(|m| m.state == "pending"), "nothing was delivered yet: {messages:#?}");
    let ids: HashSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    assert!(held.iter().all(|id| ids.contains(id)), "the held requests carried the messages' ids");

    // The receiver answers now; a new daemon takes the dead one's messages once their
    // lease expires.
    receiver.set_mode(Mode::Status(200));
    let daemon = fx.start("d2", 2).await;
    eventually("every message to be delivered", || async {
        let stored = fx.store.list_webhook_messages(&ep, 100).await.unwrap();
        (receiver.delivered() == ids && stored.iter().all(|m| m.state == "delivered")).then_some(())
    })
    .await;
    let seen = std::mem::take(&mut *receiver.seen.lock().unwrap());
    assert_eq!(seen.bad_signatures, 0, "every request was signed with the endpoint's secret");
    // At least once: the ids held when the daemon died came again and were delivered.
    for id in &held {
        assert!(seen.hits.iter().filter(|(seen, _)| seen == id).count() >= 2, "{id} was attempted again");
        assert!(seen.delivered.contains_key(id), "{id} was delivered");
    }
    let mut types: Vec<&str> = seen.delivered.values().map(|(v, _)| v["type"].as_str().unwrap()).collect();
    types.sort_unstable();
    assert_eq!(types, ["run.succeeded", "webhook.test", "webhook.test", "webhook.test"]);
    let succeeded = seen.delivered.values().find(|(v, _)| v["type"] == "run.succeeded").unwrap();
    assert_eq!(succeeded.0["data"]["run_id"], run.to_string());
    drop(daemon);
    fx.finish().await;
}
