//! No run row stays `running` without a live lease holder: `tributary sync` holds its
//! job's lease like a daemon worker, so a second sync of the job is refused while the
//! first is alive, and the run of a SIGKILLed sync is closed as `abandoned` by the next
//! sync of the job or by a daemon once its lease has expired.

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use tributary::model::{JobRow, RunOutcome, TenantId};
use tributary_simulator::{Faults, Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Fixture, NEVER, eventually};

/// `tributary sync` processes killed in turn.
const KILLED: usize = 3;
const SYNC: [&str; 7] = ["sync", "--tenant", "acme", "--provider", "aptem", "--stream", "learners"];

async fn learners_job(fx: &Fixture) -> JobRow {
    let tenant = TenantId::parse("acme").unwrap();
    fx.store.list_jobs(&tenant).await.unwrap().into_iter().find(|j| j.stream.as_str() == "learners").unwrap()
}

async fn killed_syncs_are_closed_as_abandoned(fx: Fixture) {
    // Slow pages: every sync is still reading when it is killed.
    let faults = Faults::none().delay(Duration::from_millis(500));
    let sim = start(SimConfig::new(Provider::Aptem, 10_000).faults(faults)).await.unwrap();
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let mut killed: Vec<uuid::Uuid> = Vec::new();
    for i in 0..KILLED {
        // The previous sync's lease expires (`lease_secs = 2`) before the next one starts.
        eventually("the killed sync's lease to expire", || async {
            let job = learners_job(&fx).await;
            job.lease_expires_at.is_none_or(|at| at <= Utc::now()).then_some(())
        })
        .await;
        let mut child = fx
            .command(&SYNC)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tributary sync");
        let run = eventually("the sync's run to start", || async {
            let runs = fx.runs("acme").await;
            runs.into_iter().find(|r| r.outcome == RunOutcome::Running && !killed.contains(&r.id))
        })
        .await;
        assert_eq!(run.trigger.as_str(), "cli");
        let holder = learners_job(&fx).await.lease_owner.expect("the sync holds the job's lease");
        assert!(holder.starts_with("sync-"), "{holder}");
        // The sync closed the run its killed predecessor left `running` before it started.
        if let Some(previous) = killed.last() {
            let closed = fx.store.get_run(*previous, None).await.unwrap().unwrap();
            assert_eq!(closed.outcome, RunOutcome::Abandoned, "{closed:?}");
            assert!(closed.finished_at.is_some());
            assert!(closed.stats.error.as_deref().is_some_and(|e| e.contains("abandoned")), "{:?}", closed.stats);
        }
        if i == 0 {
            // A second sync while the first is alive is refused, naming the holder.
            let out = fx.command(&SYNC).stdin(Stdio::null()).output().await.expect("run a second sync");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "a second sync ran: {stderr}");
            assert!(stderr.contains("already running") && stderr.contains(&holder), "{stderr}");
            let running = fx.runs("acme").await.into_iter().filter(|r| r.outcome == RunOutcome::Running).count();
            assert_eq!(running, 1, "the refused sync started no run");
        }
        child.start_kill().expect("SIGKILL the sync");
        let status = child.wait().await.expect("wait for the killed sync");
        assert!(!status.success());
        killed.push(run.id);
    }
    assert_eq!(
        fx.runs("acme").await.iter().filter(|r| r.outcome == RunOutcome::Running).count(),
        1,
        "only the last killed sync's run is still marked running"
    );

    // A daemon closes the last one once its lease has expired (at start, or on a
    // housekeeping tick while it runs).
    let daemon = fx.start("d", 1).await;
    let last = fx.finished_run("acme", killed[KILLED - 1]).await;
    assert_eq!(last.outcome, RunOutcome::Abandoned, "{last:?}");
    let error = last.stats.error.unwrap_or_default();
    assert!(error.contains("stopped renewing") && error.contains("sync-"), "{error}");
    eventually("the daemon to log what it closed", || async {
        let closed = daemon.events("closed runs left `running` by processes whose lease expired");
        closed.first().map(|e| assert_eq!(e["fields"]["runs"], 1))
    })
    .await;
    drop(daemon);

    // Then a sync runs to its end and gives the lease back.
    sim.set_faults(Faults::none());
    fx.ok(&SYNC, "").await;
    let runs = fx.runs("acme").await;
    assert!(runs.iter().all(|r| r.outcome != RunOutcome::Running), "{runs:#?}");
    assert_eq!(runs.iter().filter(|r| r.outcome == RunOutcome::Abandoned).count(), KILLED);
    assert_eq!(runs[0].outcome, RunOutcome::Success, "{:?}", runs[0].stats.error);
    assert_eq!(runs[0].stats.fetched, 10_000);
    let job = learners_job(&fx).await;
    assert_eq!((job.lease_owner, job.lease_expires_at), (None, None), "the sync released its lease");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncs_are_closed_as_abandoned_on_sqlite() {
    killed_syncs_are_closed_as_abandoned(Fixture::sqlite("lease_secs = 2\nheartbeat_secs = 1").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncs_are_closed_as_abandoned_on_postgres() {
    killed_syncs_are_closed_as_abandoned(Fixture::postgres("lease_secs = 2\nheartbeat_secs = 1").await).await;
}
