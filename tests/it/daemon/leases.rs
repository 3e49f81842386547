//! Leases keep each job to one run at a time: between two daemons on one PostgreSQL
//! database, within one daemon whose own lease lapsed, and when a daemon dies (the other
//! reclaims its leases).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tributary::control::protocol::Command as Ctl;
use tributary::model::{EntityName, RunOutcome, RunRow, TenantId};
use tributary::secrets::MasterKey;
use tributary_simulator::{Faults, Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Fixture, NEVER, eventually, eventually_within, started_runs, target};
use crate::support::world::World;

/// Creates every tenant file's tenant and stores `credentials` for its Aptem connection,
/// through the library (a few hundred command-line round trips would dominate the test).
async fn create_tenants(fx: &Fixture, credentials: &Value) {
    let connectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
    let world = World::builder()
        .config(fx.config_dir())
        .connectors(Some(&connectors))
        .rate_limits()
        .key(MasterKey::read(&fx.dir.path().join("master.key")).unwrap())
        .on(fx.store.clone());
    let provider = tributary::model::ProviderId::parse("aptem").unwrap();
    for (_, spec) in &world.catalog.tenant_files {
        world.apply(spec).await;
        world.credentials(&spec.id, &provider, None, credentials).await;
    }
}

/// The run ids a daemon's log says it started.
fn started_by(daemon: &super::Daemon) -> BTreeSet<String> {
    daemon.events("run started").iter().filter_map(|e| e["fields"]["run_id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_database_never_run_one_job_twice_at_once() {
    const TENANTS: usize = 100; // × two Aptem streams = 200 jobs
    let faults = Faults::none().delay(Duration::from_millis(20));
    let sim = start(SimConfig::new(Provider::Aptem, 5).faults(faults)).await.unwrap();
    let fx = Fixture::postgres("per_provider = 64").await;
    for i in 0..TENANTS {
        fx.write_tenant(&format!("t{i:03}"), &aptem_tenant(&sim, "1m"));
    }
    create_tenants(&fx, &sim.credentials()).await;
    let a = fx.start("a", 8).await;
    let b = fx.start("b", 8).await;
    let jobs = a.ok(Ctl::Jobs(tributary::control::protocol::Target { limit: Some(1_000), ..Default::default() })).await;
    let jobs: BTreeSet<i64> = jobs.as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(jobs.len(), 2 * TENANTS);

    // Every job now, asked of both daemons (the second trigger makes some jobs run twice).
    a.signal("USR1").await;
    b.signal("USR1").await;
    // 200 runs on sixteen workers: seconds on a quiet machine, more while the whole suite
    // shares two cores with it.
    eventually_within(Duration::from_secs(120), "every job to have run", || async {
        let runs = fx.store.list_runs(None, 100_000).await.unwrap();
        let done: BTreeSet<i64> = runs.iter().filter(|r| r.finished_at.is_some()).map(|r| r.job_id).collect();
        (done == jobs).then_some(())
    })
    .await;

    // Stop both (drain) so that every run row is final before it is read.
    a.signal("TERM").await;
    b.signal("TERM").await;
    let (mut a, mut b) = (a, b);
    assert!(a.exit_within(Duration::from_secs(15)).await.success());
    assert!(b.exit_within(Duration::from_secs(15)).await.success());
    let runs = fx.store.list_runs(None, 100_000).await.unwrap();
    assert!(runs.len() >= jobs.len());
    let mut by_job: BTreeMap<i64, Vec<&RunRow>> = BTreeMap::new();
    for r in &runs {
        by_job.entry(r.job_id).or_default().push(r);
    }
    for (job, mut runs) in by_job {
        runs.sort_by_key(|r| r.started_at);
        for pair in runs.windows(2) {
            let finished = pair[0].finished_at.expect("a finished run");
            assert!(finished <= pair[1].started_at, "job {job}: runs {} and {} overlap", pair[0].id, pair[1].id);
        }
        for r in &runs {
            assert!(matches!(r.outcome, RunOutcome::Success | RunOutcome::Cancelled), "{:?}", r.stats.error);
        }
    }
    // Both daemons took part, and every run is one daemon's.
    let (by_a, by_b) = (started_by(&a), started_by(&b));
    assert!(!by_a.is_empty() && !by_b.is_empty(), "a ran {}, b ran {}", by_a.len(), by_b.len());
    assert!(by_a.is_disjoint(&by_b));
    let all: BTreeSet<String> = runs.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(by_a.union(&by_b).cloned().collect::<BTreeSet<_>>(), all);
    // Every request the simulator served belongs to exactly one run.
    let calls: i64 = runs.iter().map(|r| r.stats.http_calls).sum();
    assert_eq!(sim.data_request_count(), calls as u64);
    drop((a, b));
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_lease_is_reclaimed_and_the_job_completes_under_the_survivor() {
    // Five pages, each answered after a pause: the run outlasts the steps before the kill.
    const RECORDS: u64 = 5_000;
    let faults = Faults::none().delay(Duration::from_millis(700));
    let sim = start(SimConfig::new(Provider::Aptem, RECORDS).faults(faults)).await.unwrap();
    let fx = Fixture::postgres("lease_secs = 2\nheartbeat_secs = 1").await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let mut a = fx.start("a", 4).await;
    let owner_a = a.ok(Ctl::Status).await["daemon"]["owner"].as_str().unwrap().to_owned();
    let killed = started_runs(&a.ok(Ctl::Trigger(target("acme", Some("aptem"), Some("learners")))).await)[0];
    let b = fx.start("b", 4).await;
    let tenant = TenantId::parse("acme").unwrap();
    let job = fx.store.list_jobs(&tenant).await.unwrap().into_iter().find(|j| j.stream.as_str() == "learners").unwrap();
    assert_eq!(job.lease_owner.as_deref(), Some(owner_a.as_str()), "a holds the lease");

    a.signal("KILL").await;
    let status = a.exit_within(Duration::from_secs(5)).await;
    assert!(!status.success());

    let resumed = eventually("the job to complete under the survivor", || async {
        fx.runs("acme").await.into_iter().find(|r| r.id != killed && r.finished_at.is_some())
    })
    .await;
    assert_eq!(resumed.outcome, RunOutcome::Success, "{:?}", resumed.stats.error);
    assert_eq!(resumed.job_id, job.id);
    assert!(started_by(&b).contains(&resumed.id.to_string()));
    let reclaimed = b.events("reclaimed a job whose lease expired");
    assert!(reclaimed.iter().any(|e| e["fields"]["job_id"] == job.id), "{}", b.log_text());
    let entity = EntityName::parse("learner").unwrap();
    assert_eq!(fx.store.count_records(&tenant, Some(&entity)).await.unwrap() as u64, RECORDS);
    // The dead daemon's run is closed, not left running for ever.
    let orphan = fx.finished_run("acme", killed).await;
    assert_eq!(orphan.outcome, RunOutcome::Abandoned);
    assert!(orphan.stats.error.as_deref().unwrap_or("").contains(&owner_a), "{:?}", orphan.stats.error);
    let job = fx.store.get_job(&tenant, job.id).await.unwrap().unwrap();
    assert_eq!((job.lease_owner, job.reclaimed_from), (None, None));
    // The killed daemon left its socket file behind; a new daemon takes the path over.
    assert!(a.socket.exists());
    drop(a);
    let again = fx.start("a", 1).await;
    assert_eq!(again.ok(Ctl::Status).await["daemon"]["state"], "running");
    drop((again, b));
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_whose_own_lease_lapsed_mid_run_does_not_start_the_job_again() {
    let faults = Faults::none().delay(Duration::from_millis(400));
    let sim = start(SimConfig::new(Provider::Aptem, 4_000).faults(faults)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let daemon = fx.start("d", 4).await;
    let learners = target("acme", Some("aptem"), Some("learners"));
    let first = started_runs(&daemon.ok(Ctl::Trigger(learners.clone())).await)[0];

    // The heartbeat comes late (a stalled store, a paused machine): the lease lapses while
    // the run goes on. A trigger then wakes the dispatcher, which can claim the job again.
    crate::support::exec_raw(
        &fx.url,
        "UPDATE jobs SET lease_expires_at = '2000-01-01 00:00:00+00:00' WHERE lease_owner IS NOT NULL",
    )
    .await;
    let reply = daemon.ok(Ctl::Trigger(learners)).await;
    assert_eq!(started_runs(&reply), vec![first], "the run in flight, and no second one: {reply}");

    let run = fx.finished_run("acme", first).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    assert_eq!(run.stats.fetched, 4_000);
    let finished = run.finished_at.unwrap();
    for other in fx.runs("acme").await.iter().filter(|r| r.id != first) {
        assert!(other.started_at >= finished, "run {} overlaps the first one", other.id);
    }
    drop(daemon);
    fx.finish().await;
}
