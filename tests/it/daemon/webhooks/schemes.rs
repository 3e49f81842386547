//! The signature schemes besides HubSpot's, through the daemon: Slack (its
//! `url_verification` challenge and a message event), Jira (`X-Hub-Signature`), and the
//! generic `standard_webhooks` and `hmac_sha256` schemes declared by a run-time manifest
//! (the built-in Jira manifest with another `[webhooks]` section). Every request is
//! signed here with the `hmac` crate.

use std::path::PathBuf;

use serde_json::{Value, json};
use tributary::model::RunOutcome;
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use base64::Engine;

use super::{
    Answer, B64, Daemon, Fixture, NEVER, finished_webhook_run, http_address, inbox_len, mac, received,
    start_with_connectors, webhook_runs,
};

/// Tenant `acme` with one provider switched on next to its (unconnected) LMS, and a
/// daemon.
struct Connected {
    fx: Fixture,
    daemon: Daemon,
    address: String,
    _sim: SimHandle,
}

/// `provider` (manifest `name`) connected with the simulator's credentials plus `extra`.
async fn connected(provider: Provider, name: &str, extra: &[(&str, &str)]) -> Connected {
    let sim = start(SimConfig::new(provider, 3)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let base = if provider == Provider::Slack { sim.api_base() } else { sim.base_url() };
    let tenant = format!(
        "preset = \"aptem\"\n[providers.{name}]\nenabled = true\nbase_url = \"{base}\"\nschedule = \"{NEVER}\"\n"
    );
    let mut creds = sim.credentials();
    for (k, v) in extra {
        creds[*k] = json!(v);
    }
    fx.connect("acme", &tenant, &[(name, creds)]).await;
    let daemon = fx.start("d", 4).await;
    let address = http_address(&daemon);
    Connected { fx, daemon, address, _sim: sim }
}

impl Connected {
    async fn post(&self, provider: &str, headers: &[(&str, String)], body: &str) -> Answer {
        let mut r = reqwest::Client::new().post(format!("http://{}/webhooks/acme/{provider}", self.address));
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        Answer::of(r.body(body.to_owned()).send().await.expect("POST the webhook")).await
    }

    /// The one finished webhook-triggered run: its stream.
    async fn triggered_stream(&self) -> String {
        let run = finished_webhook_run(&self.fx, "acme").await;
        assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
        let runs = webhook_runs(&self.fx, "acme").await;
        assert_eq!(runs.len(), 1, "only the mapped stream ran: {runs:?}");
        run.stream.as_str().to_owned()
    }

    async fn finish(self) {
        drop(self.daemon);
        self.fx.finish().await;
    }
}

pub(super) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(super) const SLACK_SECRET: &str = "slack-signing-secret";

/// Slack's headers for `body` at `ts` (seconds).
pub(super) fn slack_headers(secret: &str, ts: i64, body: &str) -> Vec<(&'static str, String)> {
    let sig = hex::encode(mac(secret.as_bytes(), &[b"v0:", ts.to_string().as_bytes(), b":", body.as_bytes()]));
    vec![
        ("content-type", "application/json".into()),
        ("X-Slack-Request-Timestamp", ts.to_string()),
        ("X-Slack-Signature", format!("v0={sig}")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_url_verification_is_answered_with_its_challenge() {
    let c = connected(Provider::Slack, "slack", &[("signing_secret", SLACK_SECRET)]).await;
    let body = json!({
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    })
    .to_string();
    let answer = c.post("slack", &slack_headers(SLACK_SECRET, now_secs(), &body), &body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
    // Unsigned (or wrongly signed), the challenge is not answered.
    let answer = c.post("slack", &slack_headers("another-secret", now_secs(), &body), &body).await;
    assert_eq!((answer.status, answer.body.as_str()), (401, ""));
    assert_eq!(inbox_len(&c.fx).await, 0, "a challenge is not a delivery");
    assert_eq!(received(&c.address, "slack", "challenge").await, 1);
    assert_eq!(received(&c.address, "slack", "bad_signature").await, 1);
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_slack_message_event_triggers_the_messages_stream() {
    let c = connected(Provider::Slack, "slack", &[("signing_secret", SLACK_SECRET)]).await;
    let body = json!({
        "token": "XXYYZZ",
        "team_id": "T123ABC456",
        "api_app_id": "A123ABC456",
        "event": {
            "type": "message",
            "channel": "C123ABC456",
            "user": "U123ABC456",
            "text": "Hello world",
            "ts": "1355517523.000005",
            "event_ts": "1355517523.000005",
            "channel_type": "channel",
        },
        "type": "event_callback",
        "event_id": "Ev123ABC456",
        "event_time": 1_355_517_523,
    })
    .to_string();
    let answer = c.post("slack", &slack_headers(SLACK_SECRET, now_secs(), &body), &body).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(c.triggered_stream().await, "messages");
    // Slack retries with the same event id: not stored again.
    let answer = c.post("slack", &slack_headers(SLACK_SECRET, now_secs(), &body), &body).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(inbox_len(&c.fx).await, 1);
    assert_eq!(received(&c.address, "slack", "accepted").await, 1);
    assert_eq!(received(&c.address, "slack", "duplicate").await, 1);
    c.finish().await;
}

fn jira_issue_updated() -> String {
    json!({
        "timestamp": 1_700_000_000_000_i64,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10a2844c20165700ede21g"},
        "issue": {"id": "10001", "key": "PRJ-1", "fields": {"summary": "Renamed"}},
        "changelog": {"id": "10100", "items": [{"field": "summary"}]},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_jira_issue_update_triggers_the_issues_stream() {
    let secret = "jira-webhook-secret";
    let c = connected(Provider::Jira, "jira", &[("webhook_secret", secret)]).await;
    let body = jira_issue_updated();
    let sig = hex::encode(mac(secret.as_bytes(), &[body.as_bytes()]));
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("X-Hub-Signature", format!("sha256={sig}")),
        ("X-Atlassian-Webhook-Identifier", "7c1f3b3e-0001".to_owned()),
    ];
    let bad = vec![
        ("X-Hub-Signature", format!("sha256={}", hex::encode(mac(b"other", &[body.as_bytes()])))),
        ("X-Atlassian-Webhook-Identifier", "7c1f3b3e-0002".to_owned()),
    ];
    assert_eq!(c.post("jira", &bad, &body).await.status, 401);
    let answer = c.post("jira", &headers, &body).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(c.triggered_stream().await, "issues");
    assert_eq!(received(&c.address, "jira", "accepted").await, 1);
    assert_eq!(received(&c.address, "jira", "bad_signature").await, 1);
    c.finish().await;
}

/// A connectors directory holding the built-in Jira manifest with `webhooks` instead of
/// its own `[webhooks]` section.
fn jira_manifest_with(fx: &Fixture, webhooks: Value) -> PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("connectors/jira.toml")).expect("the built-in Jira manifest");
    let mut manifest: toml::Table = text.parse().expect("a TOML manifest");
    let webhooks: toml::Value = serde_json::from_value(webhooks).expect("a TOML table");
    manifest.insert("webhooks".into(), webhooks);
    let dir = fx.dir.path().join("connectors");
    std::fs::create_dir_all(&dir).expect("create the connectors directory");
    std::fs::write(dir.join("jira.toml"), toml::to_string(&manifest).expect("TOML")).expect("write the manifest");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_webhooks_delivery_declared_by_a_manifest_triggers_its_stream() {
    let key = b"a 32-byte key for the test only!";
    let secret = format!("whsec_{}", B64.encode(key));
    let webhooks = json!({
        "scheme": "standard_webhooks",
        "event_type": "/webhookEvent",
        "delivery_id": "header:webhook-id",
        "events": {"jira:issue_updated": ["issues"]},
    });
    let c = connected_with_manifest(&secret, webhooks).await;
    let body = jira_issue_updated();
    let sign = |key: &[u8], id: &str, ts: i64| {
        let sig = B64.encode(mac(key, &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body.as_bytes()]));
        vec![
            ("content-type", "application/json".to_owned()),
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", ts.to_string()),
            // During a rotation the sender signs with both keys: any match will do.
            ("webhook-signature", format!("v1,{} v1,{sig}", B64.encode([0u8; 32]))),
        ]
    };
    assert_eq!(c.post("jira", &sign(b"not the key", "msg_0", now_secs()), &body).await.status, 401);
    assert_eq!(c.post("jira", &sign(key, "msg_1", now_secs() - 301), &body).await.status, 401);
    let answer = c.post("jira", &sign(key, "msg_2", now_secs()), &body).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(c.triggered_stream().await, "issues");
    // The same webhook-id again (a retry, re-signed): accepted once.
    assert_eq!(c.post("jira", &sign(key, "msg_2", now_secs()), &body).await.status, 200);
    assert_eq!(inbox_len(&c.fx).await, 1);
    for (outcome, n) in [("bad_signature", 1), ("stale", 1), ("accepted", 1), ("duplicate", 1)] {
        assert_eq!(received(&c.address, "jira", outcome).await, n, "{outcome}");
    }
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_hmac_delivery_declared_by_a_manifest_triggers_its_stream() {
    let secret = "generic-hmac-secret";
    let webhooks = json!({
        "scheme": "hmac_sha256",
        "signature_header": "X-Acme-Signature",
        "signature_prefix": "sha256=",
        "timestamp_header": "X-Acme-Timestamp",
        "event_type": "header:X-Acme-Event",
        "delivery_id": "/delivery",
        "events": {"issue.changed": ["issues"]},
    });
    let c = connected_with_manifest(secret, webhooks).await;
    let body = json!({"delivery": "d-1", "issue": {"id": "10001"}}).to_string();
    let headers = |key: &[u8], ts: i64| {
        vec![
            ("X-Acme-Signature", format!("sha256={}", hex::encode(mac(key, &[body.as_bytes()])))),
            ("X-Acme-Timestamp", ts.to_string()),
            ("X-Acme-Event", "issue.changed".to_owned()),
        ]
    };
    assert_eq!(c.post("jira", &headers(b"other", now_secs()), &body).await.status, 401);
    assert_eq!(c.post("jira", &headers(secret.as_bytes(), now_secs() + 330), &body).await.status, 401);
    let answer = c.post("jira", &headers(secret.as_bytes(), now_secs()), &body).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert_eq!(c.triggered_stream().await, "issues");
    for (outcome, n) in [("bad_signature", 1), ("future", 1), ("accepted", 1)] {
        assert_eq!(received(&c.address, "jira", outcome).await, n, "{outcome}");
    }
    c.finish().await;
}

/// Jira connected with `webhook_secret = secret`, and a daemon whose Jira manifest's
/// `[webhooks]` is `webhooks`.
async fn connected_with_manifest(secret: &str, webhooks: Value) -> Connected {
    let sim = start(SimConfig::new(Provider::Jira, 3)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let tenant = format!(
        "preset = \"aptem\"\n[providers.jira]\nenabled = true\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        sim.base_url()
    );
    let mut creds = sim.credentials();
    creds["webhook_secret"] = json!(secret);
    fx.connect("acme", &tenant, &[("jira", creds)]).await;
    let dir = jira_manifest_with(&fx, webhooks);
    let daemon = start_with_connectors(&fx, "d", &dir).await;
    let address = http_address(&daemon);
    Connected { fx, daemon, address, _sim: sim }
}
