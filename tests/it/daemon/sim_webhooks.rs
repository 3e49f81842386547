//! The simulators as webhook senders against a running daemon: for HubSpot, Slack and
//! Jira, a synced stream's record changes in the simulator, the simulator sends the
//! provider's signed webhook, the daemon accepts it, an incremental run triggered by the
//! webhook finishes, and the store holds the changed value.
//!
//! The simulators sign with their own HMAC; the daemon verifies with its own: the two
//! agree only if both follow the provider's scheme.

use serde_json::Value;
use tributary::control::protocol::Command as Ctl;
use tributary::model::{EntityName, RecordRow, RunOutcome, RunRow, RunTrigger, TenantId};
use tributary_simulator::{Provider, SimConfig, SimHandle, WebhookSent, WebhookTarget, start};

use super::{Daemon, Fixture, NEVER, eventually, started_runs, target};

struct Setup {
    fx: Fixture,
    daemon: Daemon,
    address: String,
    sim: SimHandle,
    _aptem: SimHandle,
}

/// The daemon's HTTP address (it was started on port 0).
fn http_address(daemon: &Daemon) -> String {
    let started = daemon
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with("HTTP server listening")))
        .unwrap_or_else(|| panic!("the daemon logged no HTTP address:\n{}", daemon.log_text()));
    started["fields"]["address"].as_str().expect("the address field").to_owned()
}

/// Tenant `acme` with `provider` next to Aptem (nothing scheduled), its credentials
/// holding the simulator's webhook secret; a daemon; the simulator's webhook target set
/// to the daemon; then a first (full) run of `stream`, so the webhook's run is incremental.
async fn setup(provider: Provider, stream: &str) -> Setup {
    let aptem = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    let sim = start(SimConfig::new(provider, 40).parents(2)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let provider_part = match provider {
        Provider::HubSpot => format!(
            "[providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n\
             [providers.hubspot.mappings.employer]\naccount_manager = \"properties.account_manager\"\n",
            sim.base_url()
        ),
        Provider::Slack => {
            format!("[providers.slack]\nenabled = true\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n", sim.api_base())
        }
        _ => format!("[providers.jira]\nenabled = true\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n", sim.base_url()),
    };
    let preset = if provider == Provider::HubSpot { "aptem_hubspot" } else { "aptem" };
    let tenant = format!(
        "preset = \"{preset}\"\n[providers.aptem]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n{provider_part}",
        aptem.api_base()
    );
    let creds = sim.credentials_with_webhook_secret();
    let (field, secret) = sim.webhook_secret().expect("the simulator sends webhooks");
    assert_eq!(creds[field], secret.as_str(), "the credentials carry the webhook secret");
    fx.connect("acme", &tenant, &[("aptem", aptem.credentials()), (provider.id(), creds)]).await;
    let daemon = fx.start("d", 2).await;
    let address = http_address(&daemon);
    let url = format!("http://{address}/webhooks/acme/{provider}");
    sim.set_webhook_target(Some(WebhookTarget::new(url, secret)));

    let reply = daemon.ok(Ctl::Trigger(target("acme", Some(provider.id()), None))).await;
    for id in started_runs(&reply) {
        let run = fx.finished_run("acme", id).await;
        assert_eq!(run.outcome, RunOutcome::Success, "{}: {:?}", run.stream, run.stats.error);
    }
    assert!(fx.runs("acme").await.iter().any(|r| r.stream.as_str() == stream), "the first run synced {stream}");
    Setup { fx, daemon, address, sim, _aptem: aptem }
}

/// Sends the webhook for record `index` of `stream`; waits for the run it triggers.
async fn notify_and_wait(s: &Setup, stream: &str, index: u64) -> (WebhookSent, RunRow) {
    let sent = s.sim.change_and_notify(stream, index).await.expect("the daemon accepts the webhook");
    assert_eq!(sent.status, 200);
    let run = eventually("the webhook's run to finish", || async {
        s.fx.runs("acme").await.into_iter().find(|r| r.trigger == RunTrigger::Webhook && r.finished_at.is_some())
    })
    .await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    assert_eq!((run.provider.as_str(), run.stream.as_str()), (s.sim.provider().id(), stream));
    assert!(run.cursor_before.is_some(), "the webhook's run is incremental");
    let metrics = reqwest::get(format!("http://{}/metrics", s.address)).await.unwrap().text().await.unwrap();
    let accepted =
        format!("tributary_webhooks_received_total{{provider=\"{}\",outcome=\"accepted\"}} 1", s.sim.provider().id());
    assert!(metrics.contains(&accepted), "{accepted} in\n{metrics}");
    (sent, run)
}

async fn record(fx: &Fixture, entity: &str, provider: Provider, external_id: &str) -> Option<RecordRow> {
    let tenant = TenantId::parse("acme").unwrap();
    let entity = EntityName::parse(entity).unwrap();
    let provider = tributary::model::ProviderId::parse(provider.id()).unwrap();
    fx.store.get_record(&tenant, &entity, &provider, external_id).await.expect("read a record")
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_contact_change_arrives_by_webhook_and_is_synced() {
    let s = setup(Provider::HubSpot, "contacts").await;
    let i = 7;
    let id = text(&s.sim.expected_record("contacts", i).unwrap()["id"]);
    let before = record(&s.fx, "employer", Provider::HubSpot, &id).await.expect("the contact was synced");
    let (sent, run) = notify_and_wait(&s, "contacts", i).await;
    assert_eq!(sent.event_type, "contact.propertyChange");
    assert_eq!(sent.object_id, id);
    assert_eq!(sent.body[0]["propertyName"], "account_manager");
    let expected = s.sim.expected_record("contacts", i).unwrap();
    assert_eq!(sent.value, expected["properties"]["account_manager"], "the event reports the new value");
    assert_ne!(before.data["account_manager"], sent.value, "the contact was reassigned");
    let after = record(&s.fx, "employer", Provider::HubSpot, &id).await.unwrap();
    assert_eq!(after.data["account_manager"], sent.value, "the store holds the new value");
    assert!(run.stats.updated >= 1, "{:?}", run.stats);
    drop(s.daemon);
    s.fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_message_arrives_by_webhook_and_is_synced() {
    let s = setup(Provider::Slack, "messages").await;
    let (sent, run) = notify_and_wait(&s, "messages", 5).await;
    assert_eq!(sent.event_type, "message");
    assert_eq!(sent.body["type"], "event_callback");
    assert_eq!(sent.body["event"]["type"], "message");
    let channel = sent.channel.clone().expect("a message's channel");
    let expected = s.sim.expected_record("messages", 5).unwrap();
    assert_eq!(sent.object_id, text(&expected["ts"]));
    // The reposted message has a new `ts`, so it is a new record `channel:ts`.
    let stored = record(&s.fx, "message", Provider::Slack, &format!("{channel}:{}", sent.object_id))
        .await
        .expect("the webhook's message is stored");
    assert_eq!(stored.data["text"], expected["text"]);
    assert_eq!(stored.data["text"], sent.value);
    assert!(run.stats.inserted >= 1, "{:?}", run.stats);
    drop(s.daemon);
    s.fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jira_issue_update_arrives_by_webhook_and_is_synced() {
    let s = setup(Provider::Jira, "issues").await;
    let i = 3;
    let id = text(&s.sim.expected_record("issues", i).unwrap()["id"]);
    let before = record(&s.fx, "issue", Provider::Jira, &id).await.expect("the issue was synced");
    let (sent, run) = notify_and_wait(&s, "issues", i).await;
    assert_eq!(sent.event_type, "jira:issue_updated");
    assert_eq!(sent.body["webhookEvent"], "jira:issue_updated");
    assert_eq!(sent.object_id, id);
    let expected = s.sim.expected_record("issues", i).unwrap();
    assert_eq!(sent.body["issue"]["fields"]["updated"], expected["fields"]["updated"]);
    let after = record(&s.fx, "issue", Provider::Jira, &id).await.unwrap();
    assert_ne!(after.data["updated_at"], before.data["updated_at"], "the store holds the new revision");
    assert_eq!(after.data["status"], expected["fields"]["status"]["name"]);
    assert_eq!(after.data["summary"], expected["fields"]["summary"]);
    assert!(run.stats.updated >= 1, "{:?}", run.stats);
    drop(s.daemon);
    s.fx.finish().await;
}
