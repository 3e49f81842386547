//! `/metrics` of a running daemon: counters move page by page while a run runs (and a
//! killed daemon's scrape counted its run up to the kill), connection gauges follow a
//! status change without a reload, outbound webhook deliveries are counted by outcome,
//! and the exposition passes `promtool check metrics`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tributary::control::protocol::{Command as Ctl, WebhookAdd, WebhookCommand, WebhookId};
use tributary::model::{EntityName, RunOutcome, TenantId};
use tributary_simulator::{Faults, Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::outbound::{Mode, Receiver, WEBHOOKS};
use super::{Daemon, Fixture, NEVER, eventually, started_runs, target};

/// The address the daemon's HTTP server bound (it was started on port 0).
fn http_address(daemon: &Daemon) -> String {
    let started = daemon
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with("HTTP server listening")))
        .unwrap_or_else(|| panic!("the daemon logged no HTTP address:\n{}", daemon.log_text()));
    started["fields"]["address"].as_str().expect("the address field").to_owned()
}

async fn scrape(address: &str) -> String {
    let response = reqwest::get(format!("http://{address}/metrics")).await.expect("scrape /metrics");
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.expect("the exposition")
}

/// The value of one series (`name{labels}` exactly as exposed); `None` when absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Pipes the exposition to `promtool check metrics` and fails on any finding.
async fn promtool_check(text: &str) {
    let child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!(
            "cannot run `promtool` ({e}): install it (Debian: `apt-get install --no-install-recommends prometheus`; \
             .ci/run does) to check the /metrics exposition"
        )
    });
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin.write_all(text.as_bytes()).await.expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().await.expect("wait for promtool");
    let findings = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics ({}) found:\n{findings}\nin:\n{text}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_page_by_page_and_a_killed_daemon_counted_its_run_up_to_the_kill() {
    // Pages of 200 that each take 150 ms to arrive: the run lasts several seconds.
    let faults = Faults::none().delay(Duration::from_millis(150));
    let hubspot = start(SimConfig::new(Provider::HubSpot, 6_000).faults(faults)).await.unwrap();
    let aptem = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n\
         [providers.aptem]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        aptem.api_base(),
        hubspot.base_url()
    );
    fx.connect("acme", &tenant, &[("aptem", aptem.credentials()), ("hubspot", hubspot.credentials())]).await;
    let mut daemon = fx.start("d", 2).await;
    let address = http_address(&daemon);
    let run = started_runs(&daemon.ok(Ctl::Trigger(target("acme", Some("hubspot"), Some("contacts")))).await)[0];

    let pages = "tributary_pages_total{provider=\"hubspot\",stream=\"contacts\"}";
    let inserted = "tributary_records_total{provider=\"hubspot\",stream=\"contacts\",result=\"inserted\"}";
    let requests = "tributary_http_requests_total{provider=\"hubspot\",class=\"2xx\"}";
    let during = eventually("the counters to move during the run", || async {
        let text = scrape(&address).await;
        (sample(&text, pages).unwrap_or(0.0) >= 2.0).then_some(text)
    })
    .await;
    // The run was still going when those counters were scraped.
    let row = fx.runs("acme").await.into_iter().find(|r| r.id == run).expect("the run's row");
    assert!(row.finished_at.is_none(), "the run ended before the scrape; make its pages slower");
    assert!(sample(&during, inserted).unwrap_or(0.0) >= 200.0, "{during}");
    assert!(sample(&during, requests).unwrap_or(0.0) >= 2.0, "{during}");
    let count = "tributary_http_request_duration_seconds_count{provider=\"hubspot\",class=\"2xx\"}";
    assert!(sample(&during, count).unwrap_or(0.0) >= 2.0, "{during}");
    assert_eq!(sample(&during, "tributary_runs_in_progress{provider=\"hubspot\"}"), Some(1.0), "{during}");

    // The scrape just before a SIGKILL holds what the run had committed by then.
    let before_kill = scrape(&address).await;
    daemon.signal("KILL").await;
    assert!(!daemon.exit_within(Duration::from_secs(10)).await.success());
    let counted = sample(&before_kill, inserted).expect("inserted records were counted");
    let stored = fx
        .store
        .count_records(&TenantId::parse("acme").unwrap(), Some(&EntityName::parse("employer").unwrap()))
        .await
        .unwrap() as f64;
    assert!(counted >= sample(&during, inserted).unwrap(), "counters only grow");
    assert!(stored >= counted && stored < 6_000.0, "stored {stored}, counted {counted} before the kill");
    drop(daemon);
    fx.finish().await;
}

/// A connection whose credentials the provider revoked shows as `needs_reauth` without a
/// reload; the stream's last success and lag, the job lag and the build are exposed; the
/// whole exposition passes `promtool check metrics`.
async fn a_revoked_connection_shows_as_needs_reauth_and_promtool_finds_nothing(fx: Fixture) {
    let sim = start(SimConfig::new(Provider::Aptem, 50)).await.unwrap();
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let daemon = fx.start("d", 2).await;
    let address = http_address(&daemon);
    let learners = target("acme", Some("aptem"), Some("learners"));
    let ok = started_runs(&daemon.ok(Ctl::Trigger(learners.clone())).await)[0];
    assert_eq!(fx.finished_run("acme", ok).await.outcome, RunOutcome::Success);

    let needs_reauth = "tributary_connections{status=\"needs_reauth\"}";
    let connected = "tributary_connections{status=\"connected\"}";
    let last_success = "tributary_last_success_timestamp_seconds{provider=\"aptem\",stream=\"learners\"}";
    // Set at start-up; the store gauges are refreshed at a pace that follows their cost.
    let text = scrape(&address).await;
    assert_eq!(sample(&text, connected), Some(1.0), "{text}");
    assert_eq!(sample(&text, needs_reauth), Some(0.0), "{text}");

    sim.revoke();
    let failed = started_runs(&daemon.ok(Ctl::Trigger(learners)).await)[0];
    assert_eq!(fx.finished_run("acme", failed).await.outcome, RunOutcome::Failed);
    let text = eventually("the connection gauge to show needs_reauth", || async {
        let text = scrape(&address).await;
        (sample(&text, needs_reauth) == Some(1.0)).then_some(text)
    })
    .await;
    assert_eq!(sample(&text, connected), Some(0.0), "{text}");
    // The same refresh read the stream's last success (the first run) from the store.
    let ok_run = fx.runs("acme").await.into_iter().find(|r| r.id == ok).expect("the first run");
    let at = ok_run.finished_at.expect("finished").timestamp_millis() as f64 / 1000.0;
    assert_eq!(sample(&text, last_success), Some(at), "{text}");
    assert!(sample(&text, "tributary_http_requests_total{provider=\"aptem\",class=\"4xx\"}").is_some(), "{text}");
    assert!(sample(&text, "tributary_sync_lag_seconds{provider=\"aptem\",stream=\"learners\"}").is_some(), "{text}");
    assert!(sample(&text, "tributary_job_lag_seconds").is_some(), "{text}");
    // The daemon claimed (the first run): its claims are timed.
    assert!(sample(&text, "tributary_claim_duration_seconds_count").is_some_and(|n| n >= 1.0), "{text}");
    assert!(text.contains("tributary_build_info{version=\""), "{text}");
    assert!(!text.contains("acme"), "tenant ids are never labels:\n{text}");
    promtool_check(&text).await;
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_connection_shows_as_needs_reauth_and_promtool_finds_nothing_on_sqlite() {
    a_revoked_connection_shows_as_needs_reauth_and_promtool_finds_nothing(Fixture::sqlite("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_connection_shows_as_needs_reauth_and_promtool_finds_nothing_on_postgres() {
    a_revoked_connection_shows_as_needs_reauth_and_promtool_finds_nothing(Fixture::postgres("").await).await;
}

/// Registers an operator-wide endpoint for every event at `receiver` through the socket,
/// hands the receiver its secret, and queues `tests` test events; the endpoint's id.
async fn endpoint_with_tests(daemon: &Daemon, receiver: &Receiver, tests: usize) -> String {
    let add = WebhookAdd { tenant: None, url: receiver.url.clone(), events: vec!["*".into()] };
    let added = daemon.ok(Ctl::Webhooks(WebhookCommand::Add(add))).await;
    receiver.set_secret(added["secret"].as_str().expect("the secret"));
    let id = added["endpoint"]["id"].as_str().expect("the id").to_owned();
    for _ in 0..tests {
        daemon.ok(Ctl::Webhooks(WebhookCommand::Test(WebhookId { id: id.clone() }))).await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_are_counted_by_outcome_and_promtool_finds_nothing() {
    let fx = Fixture::sqlite(WEBHOOKS).await;
    let daemon = fx.start("d", 1).await;
    let address = http_address(&daemon);
    // One endpoint fails each message once, then takes it; another is gone.
    let flaky = Receiver::start(Mode::FailFirst).await;
    let gone = Receiver::start(Mode::Status(410)).await;
    let flaky_id = endpoint_with_tests(&daemon, &flaky, 3).await;
    let gone_id = endpoint_with_tests(&daemon, &gone, 1).await;

    eventually("every test event to be delivered, and the gone endpoint disabled", || async {
        let flaky_done =
            fx.store.list_webhook_messages(&flaky_id, 10).await.unwrap().iter().all(|m| m.state == "delivered");
        let gone_done = !fx.store.get_webhook_endpoint(&gone_id).await.unwrap().unwrap().enabled;
        (flaky.delivered().len() == 3 && flaky_done && gone_done).then_some(())
    })
    .await;
    // The pending gauge is read from the store every few seconds: it comes down to 0.
    let pending = "tributary_webhook_outbox_pending";
    let text = eventually("the pending gauge to read 0", || async {
        let text = scrape(&address).await;
        (sample(&text, pending) == Some(0.0)).then_some(text)
    })
    .await;
    let attempts =
        |outcome: &str| sample(&text, &format!("tributary_webhook_delivery_attempts_total{{outcome=\"{outcome}\"}}"));
    assert_eq!(attempts("delivered"), Some(3.0), "{text}");
    assert_eq!(attempts("failed"), Some(3.0), "{text}");
    assert_eq!(attempts("gone"), Some(1.0), "{text}");
    for outcome in ["timeout", "refused_target", "error"] {
        assert_eq!(attempts(outcome), Some(0.0), "{outcome}: {text}");
    }
    assert_eq!(sample(&text, "tributary_webhook_endpoints_disabled_total"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "tributary_webhook_delivery_duration_seconds_count"), Some(7.0), "{text}");
    assert!(sample(&text, "tributary_webhook_delivery_duration_seconds_sum").is_some_and(|s| s > 0.0), "{text}");
    promtool_check(&text).await;
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_attempts_are_counted_by_outcome_and_promtool_finds_nothing() {
    let hubspot = start(SimConfig::new(Provider::HubSpot, 2)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        hubspot.base_url()
    );
    fx.connect("acme", &tenant, &[("hubspot", hubspot.credentials())]).await;
    let daemon = fx.start("d", 1).await;
    let address = http_address(&daemon);
    let submit =
        ["writes", "submit", "--tenant", "acme", "--provider", "hubspot", "--entity", "contact", "--op", "create"];
    fx.ok(&submit, r#"{"email": "ada@acme.example.com"}"#).await;
    // HubSpot refuses an address without a dot in its domain.
    fx.ok(&submit, r#"{"email": "ada@nodot"}"#).await;
    let series = |outcome: &str| {
        format!("tributary_write_attempts_total{{provider=\"hubspot\",op=\"create\",outcome=\"{outcome}\"}}")
    };
    let text = eventually("both writes to be counted", || async {
        let text = scrape(&address).await;
        (sample(&text, &series("succeeded")) == Some(1.0) && sample(&text, &series("failed")) == Some(1.0))
            .then_some(text)
    })
    .await;
    assert_eq!(sample(&text, "tributary_write_duration_seconds_count"), Some(2.0), "{text}");
    assert_eq!(sample(&text, &series("retry")), None, "{text}");
    promtool_check(&text).await;
    drop(daemon);
    fx.finish().await;
}
