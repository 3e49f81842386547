//! Two daemons and the command line on one PostgreSQL database through PgBouncer in
//! transaction mode (`[store] pooler = "pgbouncer"`, the wake-up listener on
//! `listen_url`, straight to the server): tenants and credentials applied, every job
//! synced with the claims and leases split between the daemons, a trigger one daemon
//! cannot take run by the other at once; no statement errors in any log, and no more
//! server connections than PgBouncer's pool and the two listeners.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use tributary::control::protocol::Command as Ctl;
use tributary::model::RunOutcome;
use tributary_simulator::{Faults, Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Daemon, Fixture, NEVER, eventually, started_runs, target};
use crate::support::pgbouncer::PgBouncer;

/// PgBouncer's server connections for the test database.
const POOL: i64 = 3;
/// Tenants connected from the command line (× two Aptem streams).
const TENANTS: usize = 6;

/// The run ids a daemon's log says it started.
fn started_by(daemon: &Daemon) -> BTreeSet<String> {
    daemon.events("run started").iter().filter_map(|e| e["fields"]["run_id"].as_str().map(str::to_owned)).collect()
}

/// The log's warnings and errors.
fn complaints(daemon: &Daemon) -> Vec<Value> {
    let text = daemon.log_text();
    assert!(!text.contains("prepared statement"), "{text}");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["level"] == "WARN" || e["level"] == "ERROR")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_behind_pgbouncer_split_the_jobs_and_hear_each_others_triggers() {
    let sim = start(SimConfig::new(Provider::Aptem, 30).faults(Faults::none().delay(Duration::from_millis(50))))
        .await
        .unwrap();
    // An Aptem that answers after ten minutes: a run against it keeps its worker busy.
    let slow =
        start(SimConfig::new(Provider::Aptem, 1).faults(Faults::none().delay(Duration::from_secs(600)))).await.unwrap();
    let bouncer = PgBouncer::start(POOL as u32).await;
    let mut fx = Fixture::postgres("").await;
    let direct = fx.url.clone();
    let name = direct.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    std::fs::write(
        fx.config_dir().join("tributary.toml"),
        format!("[store]\npooler = \"pgbouncer\"\nlisten_url = \"{direct}\"\nmax_connections = 4\n"),
    )
    .unwrap();
    // The command line, the daemons and the test's own reads all go through PgBouncer.
    fx.url = bouncer.url(&name);
    fx.store.close().await;
    let pooled = tributary::store::PgOptions {
        pooler: tributary::store::Pooler::PgBouncer,
        listen_url: None,
        max_connections: 2,
    };
    fx.store = tributary::store::Store::connect_with(&fx.url, &pooled).await.expect("open the store through pgbouncer");

    for i in 0..TENANTS {
        fx.connect(&format!("t{i}"), &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    }
    fx.connect("blocker", &aptem_tenant(&slow, NEVER), &[("aptem", slow.credentials())]).await;
    let a = fx.start("a", 1).await;
    let b = fx.start("b", 1).await;

    // Every job of the tenants, triggered once, half of them at each daemon (each has
    // one worker: the rest wait for whichever claims them first).
    let mut jobs = BTreeSet::new();
    for i in 0..TENANTS {
        let daemon = if i % 2 == 0 { &a } else { &b };
        let reply = daemon.ok(Ctl::Trigger(target(&format!("t{i}"), Some("aptem"), None))).await;
        jobs.extend(reply["triggered"].as_array().unwrap().iter().map(|j| j["job_id"].as_i64().unwrap()));
    }
    assert_eq!(jobs.len(), 2 * TENANTS);
    let mut admin = sqlx::PgConnection::connect(&direct).await.unwrap();
    let mut most = 0;
    let deadline = std::time::Instant::now() + super::PATIENCE;
    let runs = loop {
        most = most.max(backends(&mut admin).await);
        let runs = fx.store.list_runs(None, 10_000).await.unwrap();
        if runs.len() == jobs.len() && runs.iter().all(|r| r.finished_at.is_some()) {
            break runs;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for every job to run: {runs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // One run per job, each successful.
    let ran: BTreeSet<i64> = runs.iter().map(|r| r.job_id).collect();
    assert_eq!(ran, jobs);
    for r in &runs {
        assert_eq!(r.outcome, RunOutcome::Success, "{:?}", r.stats.error);
    }
    let learner = tributary::model::EntityName::parse("learner").unwrap();
    for i in 0..TENANTS {
        let tenant = tributary::model::TenantId::parse(&format!("t{i}")).unwrap();
        assert_eq!(fx.store.count_records(&tenant, Some(&learner)).await.unwrap(), 30, "t{i}'s learners");
    }
    let (by_a, by_b) = (started_by(&a), started_by(&b));
    assert!(!by_a.is_empty() && !by_b.is_empty(), "a ran {}, b ran {}", by_a.len(), by_b.len());
    assert!(by_a.is_disjoint(&by_b));

    // One daemon's only worker is taken by a run that does not end while the test runs;
    // a trigger it cannot take is run by the other, woken through PostgreSQL's NOTIFY
    // (without it, the other would look again only after its idle minute).
    let reply = a.ok(Ctl::Trigger(target("blocker", Some("aptem"), Some("learners")))).await;
    let (busy, other) = if started_runs(&reply).is_empty() { (&b, &a) } else { (&a, &b) };
    eventually("the blocking run to start", || async {
        (!started_by(busy).is_disjoint(&blocking(&fx).await)).then_some(())
    })
    .await;
    let before: BTreeSet<uuid::Uuid> = fx.runs("t0").await.into_iter().map(|r| r.id).collect();
    let reply = busy.ok(Ctl::Trigger(target("t0", Some("aptem"), Some("learners")))).await;
    assert!(started_runs(&reply).is_empty(), "the busy daemon has no worker for it: {reply}");
    let deadline = std::time::Instant::now() + super::PATIENCE;
    let run = loop {
        let runs = fx.runs("t0").await;
        if let Some(run) = runs.iter().find(|r| !before.contains(&r.id) && r.finished_at.is_some()) {
            break run.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other daemon did not run it: {runs:?}\n--- busy:\n{}\n--- other:\n{}",
            busy.log_text(),
            other.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    assert!(started_by(other).contains(&run.id.to_string()), "{}", other.log_text());
    most = most.max(backends(&mut admin).await);
    // PgBouncer's pool, one listener per daemon, and this count's own connection.
    assert!(most <= POOL + 2 + 1, "{most} connections to the database");
    for daemon in [&a, &b] {
        assert_eq!(daemon.events("store open, migrations applied")[0]["fields"]["pooler"], "pgbouncer");
        assert_eq!(complaints(daemon), Vec::<Value>::new(), "{}", daemon.log_text());
    }
    let log = bouncer.log_text();
    assert!(!log.contains("prepared statement") && !log.contains("ERROR"), "{log}");
    drop((a, b));
    admin.close().await.unwrap();
    fx.finish().await;
}

/// The ids of the blocker tenant's runs.
async fn blocking(fx: &Fixture) -> BTreeSet<String> {
    fx.runs("blocker").await.into_iter().map(|r| r.id.to_string()).collect()
}

/// The connections to the database `admin` is connected to (its own included).
async fn backends(admin: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        .fetch_one(admin)
        .await
        .unwrap()
}
