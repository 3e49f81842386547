//! A change whose command did not reconcile (it died after its transaction) still
//! reaches the jobs: the running daemon takes the reconciliation queue on its tick.

use tributary::config::{Catalog, ConfigDir};
use tributary::model::TenantId;
use tributary::tenants::Tenants;

use super::{Fixture, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_daemon_reconciles_a_change_nobody_reconciled() {
    the_daemon_reconciles_a_queued_change(Fixture::sqlite("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_daemon_reconciles_a_change_nobody_reconciled() {
    the_daemon_reconciles_a_queued_change(Fixture::postgres("").await).await;
}

async fn the_daemon_reconciles_a_queued_change(fx: Fixture) {
    let daemon = fx.start("d", 1).await;
    let catalog = Catalog::load(&ConfigDir::Dir(fx.config_dir()), None).unwrap_or_else(|d| panic!("{d}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("late.toml");
    std::fs::write(&file, "id = \"late\"\nname = \"Late\"\nsubdomain = \"late\"\npreset = \"bud\"\n").unwrap();
    let spec = catalog.tenant_file(&file).unwrap_or_else(|d| panic!("{d}"));
    // The library call a command makes, without the command's own reconcile after it.
    Tenants::new(&catalog, &fx.store, "test").create(&spec).await.unwrap();
    let late = TenantId::parse("late").unwrap();
    if fx.pg.is_none() {
        // On PostgreSQL the queue's NOTIFY may wake the daemon before this looks.
        assert!(fx.store.list_jobs(&late).await.unwrap().is_empty(), "no jobs before anyone reconciles");
    }

    let streams = eventually("the daemon to make the queued tenant's jobs", || async {
        let jobs = fx.store.list_jobs(&late).await.unwrap();
        let mut streams: Vec<String> = jobs.iter().map(|j| format!("{}.{}", j.provider, j.stream)).collect();
        streams.sort();
        (!streams.is_empty()).then_some(streams)
    })
    .await;
    assert_eq!(streams, ["bud.employers", "bud.learners"]);
    eventually("the queue to be empty", || async {
        fx.store.queued_reconciles(10).await.unwrap().is_empty().then_some(())
    })
    .await;
    // The daemon logs the change after taking it off the queue.
    eventually("the daemon to log the queued change", || async {
        daemon.log_text().contains("jobs follow a queued change").then_some(())
    })
    .await;
    drop(daemon);
    fx.finish().await;
}
