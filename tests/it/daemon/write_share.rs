//! Writes' share of a connection's rate-limit budget in a running daemon: a backfill of
//! two HubSpot streams at once keeps the connection's quota (110 requests per 10 s)
//! busy while writes are submitted; the writes take at least `[writes] rate_share` of
//! the requests while both wait, all complete before the backfill does, and the
//! simulator never sees more than the limit in any 10 s.

use std::time::Duration;

use serde_json::json;
use tributary::control::protocol::{Command as Ctl, WriteCommand, WriteSubmit};
use tributary::store::WriteState;
use tributary_simulator::{Provider, SimConfig, start};

use super::{Fixture, NEVER, eventually, started_runs, target};
use crate::support::busiest;

/// Records per HubSpot stream: 60 pages of 100 each (the preset reads contacts and companies).
const RECORDS: u64 = 6_000;
const WRITES: usize = 30;
/// HubSpot's shipped limit.
const LIMIT: usize = 110;
const WINDOW: Duration = Duration::from_secs(10);

fn create(i: usize) -> Ctl {
    Ctl::Writes(WriteCommand::Submit(Box::new(WriteSubmit {
        tenant: "acme".into(),
        provider: "hubspot".into(),
        entity: "contact".into(),
        op: "create".into(),
        id: None,
        idempotency_key: None,
        base_version: None,
        force: false,
        owner: None,
        record: json!({ "email": format!("writer{i}@acme.example.com") }),
    })))
}

async fn writes_get_their_share_during_a_backfill(fx: Fixture) {
    let sim = start(SimConfig::new(Provider::HubSpot, RECORDS)).await.unwrap();
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        sim.base_url()
    );
    fx.connect("acme", &tenant, &[("hubspot", sim.credentials())]).await;
    let daemon = fx.start("d", 4).await;

    // The backfill: contacts and companies read at once, each page as soon as the
    // quota allows.
    let runs = started_runs(&daemon.ok(Ctl::Trigger(target("acme", Some("hubspot"), None))).await);
    assert_eq!(runs.len(), 2, "one run per stream");
    eventually("the backfill to use the quota", || async { (sim.data_request_count() >= 20).then_some(()) }).await;

    let mut ids = Vec::new();
    for i in 0..WRITES {
        let write = daemon.ok(create(i)).await;
        ids.push(write["write"]["id"].as_str().expect("the write's id").to_owned());
    }
    for id in &ids {
        let done = eventually("the write to settle", || async {
            let detail = fx.store.get_write(id).await.unwrap().expect("the write is stored");
            detail.write.state.is_final().then_some(detail)
        })
        .await;
        assert_eq!(done.write.state, WriteState::Succeeded, "{done:?}");
    }
    let unfinished = fx.runs("acme").await.iter().filter(|r| r.finished_at.is_none()).count();
    assert_eq!(unfinished, 2, "every write completed while the backfill was still reading");

    // As the simulator saw it: from the first write to the last, writes had about their
    // share (0.75 here, less the moments between two writes when none waits); one write
    // in flight at a time against two readers would get about a third by numbers alone.
    let log = sim.request_log();
    let is_write = |entry: &String| entry == "POST /crm/v3/objects/contacts";
    let first = log.iter().position(is_write).expect("the writes reached the simulator");
    let last = log.iter().rposition(is_write).expect("the writes reached the simulator");
    let during = &log[first..=last];
    let writes = during.iter().filter(|e| is_write(e)).count();
    assert_eq!(writes, WRITES, "{during:?}");
    let share = writes as f64 / during.len() as f64;
    assert!(share >= 0.6, "writes got {writes} of {} requests: {during:?}", during.len());
    assert!(during.iter().any(|e| e.starts_with("GET /crm/v3/objects/")), "reads went on meanwhile");
    eventually("a read after the last write", || async {
        sim.request_log()
            .iter()
            .rev()
            .take_while(|e| !is_write(e))
            .any(|e| e.starts_with("GET /crm/v3/objects/"))
            .then_some(())
    })
    .await;

    let times = sim.data_request_times();
    assert_eq!(times.len() as u64, sim.data_request_count());
    let most = busiest(&times, WINDOW);
    assert!(most <= LIMIT, "{most} requests in one 10 s window");
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_get_their_share_of_the_budget_during_a_backfill() {
    let fx = Fixture::sqlite("per_tenant = 3\nper_provider = 4\n[writes]\nconcurrency = 1\nrate_share = 0.75").await;
    writes_get_their_share_during_a_backfill(fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_get_their_share_of_the_budget_during_a_backfill_on_postgres() {
    let fx = Fixture::postgres("per_tenant = 3\nper_provider = 4\n[writes]\nconcurrency = 1\nrate_share = 0.75").await;
    writes_get_their_share_during_a_backfill(fx).await;
}
