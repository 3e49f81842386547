//! Signals to a running daemon: SIGHUP reloads (or keeps the old configuration), SIGTERM
//! drains at a page boundary.

use std::time::{Duration, Instant};

use tributary::control::protocol::Command as Ctl;
use tributary::model::{EntityName, JobRow, RunOutcome, TenantId};
use tributary_simulator::{Faults, Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Fixture, NEVER, eventually, started_runs, target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_configuration_keeps_the_old_one_running() {
    let sim = start(SimConfig::new(Provider::Aptem, 50)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let good = aptem_tenant(&sim, NEVER);
    fx.connect("acme", &good, &[("aptem", sim.credentials())]).await;
    let daemon = fx.start("d", 4).await;
    assert_eq!(daemon.ok(Ctl::Status).await["config"]["state"], "ok");

    // The tenant file now points nowhere and has a schedule that does not parse.
    fx.write_tenant(
        "acme",
        "preset = \"aptem\"\n[providers.aptem]\nbase_url = \"http://127.0.0.1:9/odata/1.0\"\nschedule = \"often\"\n",
    );
    daemon.signal("HUP").await;
    let config = eventually("the reload to be rejected", || async {
        let config = daemon.ok(Ctl::Status).await["config"].clone();
        (config["state"] != "ok").then_some(config)
    })
    .await;
    assert!(config["state"].as_str().unwrap().contains("previous configuration keeps running"), "{config}");
    let error = config["error"].as_str().unwrap();
    assert!(error.contains("acme.toml") && error.contains("often"), "status says why: {error}");

    // Jobs still run, on the old configuration (the old base URL).
    let runs = started_runs(&daemon.ok(Ctl::Trigger(target("acme", Some("aptem"), Some("learners")))).await);
    let run = fx.finished_run("acme", runs[0]).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    assert_eq!(run.stats.fetched, 50);

    // Fixed, with a new schedule: the next SIGHUP takes it, and the job follows.
    fx.write_tenant("acme", &aptem_tenant(&sim, "every 30 minutes"));
    daemon.signal("HUP").await;
    eventually("the reload to be accepted", || async {
        (daemon.ok(Ctl::Status).await["config"]["state"] == "ok").then_some(())
    })
    .await;
    let jobs = daemon.ok(Ctl::Jobs(target("acme", Some("aptem"), None))).await;
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["schedule"] == "every 30 minutes"), "{jobs:?}");
    drop(daemon);
    fx.finish().await;
}

async fn learners_job(fx: &Fixture) -> JobRow {
    let tenant = TenantId::parse("acme").unwrap();
    let jobs = fx.store.list_jobs(&tenant).await.unwrap();
    jobs.into_iter().find(|j| j.stream.as_str() == "learners").expect("the learners job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_sync_stops_at_a_page_with_its_cursor_and_a_restart_resumes_from_it() {
    const ADDED: u64 = 4_000;
    const DEADLINE: Duration = Duration::from_secs(8);
    // One record first: the first run reads everything and sets the cursor. Records added
    // later are read incrementally, sorted by the cursor, which moves with every page.
    let sim = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    let fx = Fixture::sqlite(&format!("drain_deadline_secs = {}", DEADLINE.as_secs())).await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let mut daemon = fx.start("first", 4).await;
    let learners = Some("learners");
    let first = started_runs(&daemon.ok(Ctl::Trigger(target("acme", Some("aptem"), learners))).await);
    assert_eq!(fx.finished_run("acme", first[0]).await.outcome, RunOutcome::Success);
    let start_cursor = learners_job(&fx).await.cursor.expect("the first run commits a cursor");

    sim.add("learners", ADDED);
    // Pages of 1,000 records, each answered after a pause: a run of several seconds.
    sim.set_faults(Faults::none().delay(Duration::from_millis(600)));
    let long = started_runs(&daemon.ok(Ctl::Trigger(target("acme", Some("aptem"), learners))).await)[0];
    eventually("a page of the long run to be committed", || async {
        (learners_job(&fx).await.cursor.as_deref() != Some(start_cursor.as_str())).then_some(())
    })
    .await;

    let asked = Instant::now();
    daemon.signal("TERM").await;
    let status = daemon.exit_within(DEADLINE + Duration::from_secs(3)).await;
    assert!(status.success(), "{status}:\n{}", daemon.log_text());
    assert!(asked.elapsed() < DEADLINE, "a page boundary comes long before the deadline");
    let cancelled = fx.finished_run("acme", long).await;
    assert_eq!(cancelled.outcome, RunOutcome::Cancelled, "{:?}", cancelled.stats.error);
    assert!(cancelled.stats.fetched > 0 && (cancelled.stats.fetched as u64) < ADDED, "{:?}", cancelled.stats);
    let job = learners_job(&fx).await;
    let committed = job.cursor.clone().expect("a committed cursor");
    assert_eq!(cancelled.stats.cursor_after.as_deref(), Some(committed.as_str()));
    assert_ne!(committed, start_cursor);
    assert_eq!(job.lease_owner, None, "the drain released the lease");
    assert!(daemon.events("drained: no runs in flight").len() == 1, "{}", daemon.log_text());
    drop(daemon);

    // The job was triggered and did not finish: the next daemon resumes it on its own.
    let _daemon = fx.start("second", 4).await;
    let resumed = eventually("the resumed run to finish", || async {
        fx.runs("acme").await.into_iter().find(|r| r.started_at > cancelled.started_at && r.finished_at.is_some())
    })
    .await;
    assert_eq!(resumed.outcome, RunOutcome::Success, "{:?}", resumed.stats.error);
    assert_eq!(resumed.cursor_before.as_deref(), Some(committed.as_str()), "resumed from the committed cursor");
    assert!((resumed.stats.fetched as u64) < ADDED + 1, "not from the start: {:?}", resumed.stats);
    assert!((cancelled.stats.fetched + resumed.stats.fetched) as u64 > ADDED, "together they read everything");
    let tenant = TenantId::parse("acme").unwrap();
    let entity = EntityName::parse("learner").unwrap();
    assert_eq!(fx.store.count_records(&tenant, Some(&entity)).await.unwrap() as u64, ADDED + 1);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_at_its_deadline_and_a_second_sigterm_ends_it_at_once() {
    const DEADLINE: Duration = Duration::from_secs(3);
    // A page that never arrives: the run cannot reach a page boundary.
    let faults = Faults::none().delay(Duration::from_secs(120));
    let sim = start(SimConfig::new(Provider::Aptem, 10).faults(faults)).await.unwrap();
    let fx = Fixture::sqlite(&format!("drain_deadline_secs = {}", DEADLINE.as_secs())).await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let learners = target("acme", Some("aptem"), Some("learners"));

    let mut daemon = fx.start("first", 4).await;
    let stuck = started_runs(&daemon.ok(Ctl::Trigger(learners.clone())).await)[0];
    let asked = Instant::now();
    daemon.signal("TERM").await;
    assert!(daemon.exit_within(DEADLINE + Duration::from_secs(2)).await.success());
    assert!(asked.elapsed() >= DEADLINE - Duration::from_millis(500), "the drain waited for the run");
    // The run is closed as cancelled, not left running; the lease is released.
    let run = fx.finished_run("acme", stuck).await;
    assert_eq!(run.outcome, RunOutcome::Cancelled);
    assert!(run.stats.error.as_deref().unwrap_or("").contains("deadline"), "{:?}", run.stats.error);
    assert_eq!(learners_job(&fx).await.lease_owner, None);
    let logged = daemon.events("run finished");
    assert!(logged.iter().any(|e| e["fields"]["run_id"] == stuck.to_string() && e["fields"]["outcome"] == "cancelled"));
    drop(daemon);

    // A second SIGTERM during the drain exits at once.
    let mut daemon = fx.start("second", 4).await;
    let stuck = eventually("the pending trigger to start a run", || async {
        let status = daemon.ok(Ctl::Status).await;
        status["running"][0]["run_id"].as_str().map(|id| id.parse::<uuid::Uuid>().unwrap())
    })
    .await;
    daemon.signal("TERM").await;
    eventually("the drain to start", || async {
        (daemon.ok(Ctl::Status).await["daemon"]["state"] == "draining").then_some(())
    })
    .await;
    let asked = Instant::now();
    daemon.signal("TERM").await;
    assert!(daemon.exit_within(DEADLINE).await.success());
    assert!(asked.elapsed() < DEADLINE, "the second signal did not wait for the deadline");
    assert_eq!(fx.finished_run("acme", stuck).await.outcome, RunOutcome::Cancelled);
    assert_eq!(learners_job(&fx).await.lease_owner, None);
    fx.finish().await;
}
