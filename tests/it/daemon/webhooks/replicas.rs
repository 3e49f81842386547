//! Two daemons on one PostgreSQL database: a webhook accepted by one, which cannot run
//! the job (its only worker is busy), is run by the other, woken by `NOTIFY` rather
//! than by its idle wake-up a minute later.

use std::time::{Duration, Instant};

use tributary::control::protocol::Command as Ctl;
use tributary::store::WAKE_CHANNEL;
use tributary_simulator::{Faults, Provider, SimConfig, start};

use super::{HUBSPOT_PATH, contact_change, http_address, now_ms, post_hubspot, webhook_runs};
use crate::daemon::{Fixture, NEVER, eventually, started_runs, target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_accepted_by_a_busy_replica_is_run_at_once_by_another() {
    let aptem = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    let hubspot = start(SimConfig::new(Provider::HubSpot, 5)).await.unwrap();
    // An Aptem that answers after ten minutes: a run against it keeps its worker busy.
    let slow = Faults::none().delay(Duration::from_secs(600));
    let slow = start(SimConfig::new(Provider::Aptem, 1).faults(slow)).await.unwrap();
    let fx = Fixture::postgres("").await;
    let acme = format!(
        "preset = \"aptem_hubspot\"\n\
         [providers.aptem]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        aptem.api_base(),
        hubspot.base_url()
    );
    let creds = hubspot.credentials();
    let secret = creds["client_secret"].as_str().expect("the simulator's client secret").to_owned();
    fx.connect("acme", &acme, &[("aptem", aptem.credentials()), ("hubspot", creds)]).await;
    let blocker =
        format!("preset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n", slow.api_base());
    fx.connect("blocker", &blocker, &[("aptem", slow.credentials())]).await;

    // `a` has one worker, taken by a run that will not end while the test runs.
    let a = fx.start("a", 1).await;
    let b = fx.start("b", 4).await;
    let reply = a.ok(Ctl::Trigger(target("blocker", Some("aptem"), Some("learners")))).await;
    let blocking = started_runs(&reply);
    assert_eq!(blocking.len(), 1, "`a` runs the blocking job: {reply}");

    // The test listens too: `a` must tell the other replicas.
    let mut listener = sqlx::postgres::PgListener::connect(&fx.url).await.expect("connect a listener");
    listener.listen(WAKE_CHANNEL).await.expect("LISTEN");

    let sent = Instant::now();
    let answer = post_hubspot(&http_address(&a), HUBSPOT_PATH, &contact_change(1), &secret, now_ms()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    tokio::time::timeout(super::super::PATIENCE, listener.recv())
        .await
        .expect("a NOTIFY on the wake channel")
        .expect("a notification");
    let run =
        eventually("the webhook's run to start", || async { webhook_runs(&fx, "acme").await.into_iter().next() }).await;
    let waited = sent.elapsed();
    // Without the wake-up `b` would look at the queue again only after its idle sleep
    // (a minute); `a` cannot run the job at all.
    assert!(waited < Duration::from_secs(15), "the run started {waited:?} after the webhook");
    assert_eq!((run.provider.as_str(), run.stream.as_str()), ("hubspot", "contacts"));
    let run_id = run.id.to_string();
    let started_by = |d: &crate::daemon::Daemon| {
        d.events("run started").iter().any(|e| e["fields"]["run_id"].as_str() == Some(run_id.as_str()))
    };
    eventually("`b` to log the run", || async { started_by(&b).then_some(()) }).await;
    assert!(!started_by(&a), "the busy replica did not run it");
    let blocked = fx.runs("blocker").await;
    assert!(blocked.iter().all(|r| r.finished_at.is_none()), "`a` was busy all along: {blocked:?}");
    drop(listener);
    drop(a);
    drop(b);
    fx.finish().await;
}
