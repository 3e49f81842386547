//! `[[webhooks.deletes]]` through the daemon: Slack's signed `message_deleted` callback
//! marks the stored message deleted (soft: `deleted_at` and a `deleted` change), as the
//! built-in slack.toml declares; a `message_changed` callback deletes nothing. On both
//! stores.

use serde_json::json;
use tributary::model::{ChangeKind, EntityName, ProviderId, RecordRow, RunOutcome, TenantId};
use tributary_simulator::{Provider, SimConfig, start};

use super::super::eventually;
use super::schemes::{SLACK_SECRET, now_secs, slack_headers};
use super::{Answer, Fixture, NEVER, http_address, webhook_runs};

fn message_event(event_id: &str, subtype: &str, channel: &str, deleted_ts: &str) -> String {
    json!({
        "token": "XXYYZZ",
        "team_id": "T123ABC456",
        "api_app_id": "A123ABC456",
        "event": {
            "type": "message",
            "subtype": subtype,
            "hidden": true,
            "channel": channel,
            "ts": "1900000000.000001",
            "deleted_ts": deleted_ts,
            "event_ts": "1900000000.000001",
            "channel_type": "channel",
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_900_000_000,
    })
    .to_string()
}

async fn messages(fx: &Fixture) -> Vec<RecordRow> {
    let (acme, message) = (TenantId::parse("acme").unwrap(), EntityName::parse("message").unwrap());
    fx.store.list_records(&acme, &message, 10_000).await.expect("list the messages")
}

/// The finished webhook-triggered runs of tenant `acme` once there are `n`.
async fn finished_runs(fx: &Fixture, n: usize) {
    eventually("the triggered runs to finish", || async {
        let runs = webhook_runs(fx, "acme").await;
        let done = runs.iter().filter(|r| r.finished_at.is_some()).count() >= n;
        done.then(|| assert!(runs.iter().all(|r| r.outcome == RunOutcome::Success), "{runs:?}"))
    })
    .await;
}

async fn a_slack_message_deleted_callback_soft_deletes_the_stored_message(fx: Fixture) {
    let sim = start(SimConfig::new(Provider::Slack, 3)).await.unwrap();
    let tenant = format!(
        "preset = \"aptem\"\n[providers.slack]\nenabled = true\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        sim.api_base()
    );
    let mut creds = sim.credentials();
    creds["signing_secret"] = json!(SLACK_SECRET);
    fx.connect("acme", &tenant, &[("slack", creds)]).await;
    let daemon = fx.start("d", 4).await;
    let address = http_address(&daemon);
    let post = |body: String| {
        let address = address.clone();
        async move {
            let mut r = reqwest::Client::new().post(format!("http://{address}/webhooks/acme/slack"));
            for (k, v) in slack_headers(SLACK_SECRET, now_secs(), &body) {
                r = r.header(k, v);
            }
            Answer::of(r.body(body).send().await.expect("POST the webhook")).await
        }
    };

    // A message event: the messages stream runs and stores the channels' messages.
    let first = json!({"type": "event_callback", "event_id": "Ev1",
        "event": {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1.1"}});
    assert_eq!(post(first.to_string()).await.status, 200);
    finished_runs(&fx, 1).await;
    let stored = messages(&fx).await;
    assert!(stored.len() >= 2, "the run stored messages: {stored:?}");
    assert!(stored.iter().all(|r| r.deleted_at.is_none()));
    let (target, other) = (&stored[0], &stored[1]);
    let (channel, ts) = target.external_id.split_once(':').expect("a message keyed `channel:ts`");
    assert_eq!(target.data["channel_id"], json!(channel), "{:?}", target.data);

    // An edit of the same message (another subtype) deletes nothing.
    assert_eq!(post(message_event("Ev2", "message_changed", channel, ts)).await.status, 200);
    finished_runs(&fx, 2).await;
    assert!(messages(&fx).await.iter().all(|r| r.deleted_at.is_none()), "message_changed deleted a record");

    // Its deletion: that record alone becomes deleted, with a `deleted` change.
    assert_eq!(post(message_event("Ev3", "message_deleted", channel, ts)).await.status, 200);
    finished_runs(&fx, 3).await;
    let after = messages(&fx).await;
    let deleted: Vec<&str> = after.iter().filter(|r| r.deleted_at.is_some()).map(|r| r.external_id.as_str()).collect();
    assert_eq!(deleted, [target.external_id.as_str()], "only the reported message is deleted");
    assert!(after.iter().any(|r| r.external_id == other.external_id && r.deleted_at.is_none()));
    let (acme, message) = (TenantId::parse("acme").unwrap(), EntityName::parse("message").unwrap());
    let feed = fx.store.list_changes(&acme, Some(&message), 0, 10_000).await.unwrap();
    let kinds: Vec<ChangeKind> = feed.iter().filter(|c| c.external_id == target.external_id).map(|c| c.kind).collect();
    assert_eq!(kinds, [ChangeKind::Deleted], "the change feed's entry for the message: {feed:?}");
    assert_eq!(feed.iter().filter(|c| c.kind == ChangeKind::Deleted).count(), 1);
    let slack = ProviderId::parse("slack").unwrap();
    let row = fx.store.get_record(&acme, &message, &slack, &target.external_id).await.unwrap().unwrap();
    assert!(row.deleted_at.is_some(), "still deleted after the run the callback also triggered");
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_message_deleted_callback_soft_deletes_the_stored_message_sqlite() {
    a_slack_message_deleted_callback_soft_deletes_the_stored_message(Fixture::sqlite("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_message_deleted_callback_soft_deletes_the_stored_message_postgres() {
    a_slack_message_deleted_callback_soft_deletes_the_stored_message(Fixture::postgres("").await).await;
}
