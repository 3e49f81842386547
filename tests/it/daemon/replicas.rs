//! The fleet in one view: every daemon sharing a store keeps a row in `replicas`, which
//! `ctl status` shows; a clean stop removes it, a killed daemon's row stays behind.

use std::time::Duration;

use serde_json::Value;
use tributary::control::protocol::Command as Ctl;

use super::{Fixture, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_status_shows_every_replica_of_the_fleet() {
    let fx = Fixture::postgres("").await;
    let a = fx.start("a", 3).await;
    let mut b = fx.start("b", 2).await;
    let owner = |status: &Value| status["daemon"]["owner"].as_str().unwrap().to_owned();
    let (a_status, b_status) = (a.ok(Ctl::Status).await, b.ok(Ctl::Status).await);
    let (a_id, b_id) = (owner(&a_status), owner(&b_status));

    let replicas = eventually("both replicas in a's status", || async {
        let s = a.ok(Ctl::Status).await;
        let list = s["replicas"].as_array().cloned().unwrap_or_default();
        (list.len() == 2).then_some(list)
    })
    .await;
    let row =
        |id: &str| replicas.iter().find(|r| r["id"] == id).cloned().unwrap_or_else(|| panic!("{id} in {replicas:?}"));
    assert_eq!((row(&a_id)["workers"].as_i64(), row(&b_id)["workers"].as_i64()), (Some(3), Some(2)));
    assert_eq!((row(&a_id)["this"].as_bool(), row(&b_id)["this"].as_bool()), (Some(true), Some(false)));
    assert_eq!(row(&b_id)["state"], "running");
    assert_eq!(row(&a_id)["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(row(&a_id)["pid"].as_u64(), Some(u64::from(a.pid())));

    // A clean stop takes b's row away.
    b.signal("TERM").await;
    assert!(b.exit_within(Duration::from_secs(15)).await.success());
    let ids: Vec<String> = fx.store.list_replicas().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, std::slice::from_ref(&a_id));

    // A killed daemon's row stays (its heartbeat stops; status calls it stale after
    // three ticks), and the store knows which daemon it was.
    a.signal("KILL").await;
    let ids: Vec<String> = fx.store.list_replicas().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [a_id]);
    drop((a, b));
    fx.finish().await;
}
