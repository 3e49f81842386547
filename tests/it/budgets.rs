//! Budget shares in the store (PostgreSQL): replicas renewing in turn never hold more
//! than a quota's limit together, settle on the fair division, see an expired share as
//! free, give theirs back on a clean stop, and learn whether another replica held a
//! share within the quota's window. On SQLite a quota is whole.

use std::time::Duration;

use tributary::store::{ShareGrant, ShareRequest, Store};

fn ask(quota: &str, limit: u32, wants: u32) -> ShareRequest {
    ShareRequest { quota: quota.into(), limit, per_secs: 10, wants }
}

async fn renew(store: &Store, replica: &str, lease: Duration, asks: &[ShareRequest]) -> Vec<ShareGrant> {
    let mut seen = None;
    let grants = store
        .renew_budget_shares(replica, lease, asks, true, |g| seen = Some(g.to_vec()))
        .await
        .expect("renew the shares");
    assert_eq!(seen.as_deref(), Some(&grants[..]), "before_commit sees the grants");
    grants
}

async fn held(store: &Store, quota: &str) -> Vec<(String, i64)> {
    let rows = store.list_budget_shares(1_000).await.unwrap();
    rows.into_iter().filter(|r| r.quota == quota).map(|r| (r.replica, r.requests)).collect()
}

#[tokio::test]
async fn replicas_share_a_quota_through_the_store_and_a_dead_ones_share_expires() {
    let pg = crate::support::postgres_store().await;
    let store = &pg.store;
    let lease = Duration::from_secs(30);
    let q = "hubspot/110/acme";
    // a alone: the whole quota. b arrives: nothing until a gives back half.
    assert_eq!(
        renew(store, "a", lease, &[ask(q, 110, 110)]).await[0],
        ShareGrant { requests: 110, holders: 1, others_lately: false }
    );
    assert_eq!(
        renew(store, "b", lease, &[ask(q, 110, 110)]).await[0],
        ShareGrant { requests: 0, holders: 2, others_lately: true }
    );
    assert_eq!(renew(store, "a", lease, &[ask(q, 110, 110)]).await[0].requests, 55);
    assert_eq!(renew(store, "b", lease, &[ask(q, 110, 110)]).await[0].requests, 55);
    assert_eq!(held(store, q).await, [("a".to_owned(), 55), ("b".to_owned(), 55)]);

    // a only needs a little: b takes the rest at its next renewal. Another quota of a's
    // in the same renewal is its alone.
    let grants = renew(store, "a", lease, &[ask(q, 110, 10), ask("slack/50", 50, 50)]).await;
    assert_eq!(grants.iter().map(|g| g.requests).collect::<Vec<_>>(), [10, 50]);
    assert_eq!(renew(store, "b", lease, &[ask(q, 110, 110)]).await[0].requests, 100);

    // a stops using the connection's quota: its row goes with the next renewal.
    renew(store, "a", lease, &[ask("slack/50", 50, 50)]).await;
    assert_eq!(held(store, q).await, [("b".to_owned(), 100)]);

    // c renews with a short lease and dies: once it expires, b grows into its share.
    assert_eq!(renew(store, "c", Duration::from_millis(300), &[ask("slack/50", 50, 50)]).await[0].requests, 0);
    assert_eq!(renew(store, "a", lease, &[ask("slack/50", 50, 50)]).await[0].requests, 25);
    assert_eq!(renew(store, "c", Duration::from_millis(300), &[ask("slack/50", 50, 50)]).await[0].requests, 25);
    assert_eq!(renew(store, "a", lease, &[ask("slack/50", 50, 50)]).await[0].requests, 25, "c holds its half");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        renew(store, "a", lease, &[ask("slack/50", 50, 50)]).await[0],
        ShareGrant { requests: 50, holders: 1, others_lately: true },
        "c's share expired, but within the window"
    );

    // A clean stop gives everything back; the next holder learns that b's requests may
    // still count in the window. A quota nobody held is fresh.
    store.release_budget_shares("b").await.unwrap();
    assert_eq!(held(store, q).await, []);
    let grants = renew(store, "d", lease, &[ask(q, 110, 110), ask("jira/5", 5, 5)]).await;
    assert_eq!(
        grants,
        [
            ShareGrant { requests: 110, holders: 1, others_lately: true },
            ShareGrant { requests: 5, holders: 1, others_lately: false }
        ]
    );
    pg.drop_db().await;
}

#[tokio::test]
async fn a_share_given_back_counts_as_recent_for_one_window_only() {
    let pg = crate::support::postgres_store().await;
    let store = &pg.store;
    let lease = Duration::from_secs(30);
    let short = |q: &str| ShareRequest { quota: q.into(), limit: 10, per_secs: 1, wants: 10 };
    renew(store, "a", lease, &[short("erp/10")]).await;
    // a's next renewal does not name the quota: its share goes back.
    renew(store, "a", lease, &[]).await;
    assert_eq!(held(store, "erp/10").await, []);
    assert!(renew(store, "b", lease, &[short("erp/10")]).await[0].others_lately, "within the window");
    renew(store, "b", lease, &[]).await;
    // One window (1 s) and the second of margin later, nobody's requests can count.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert_eq!(
        renew(store, "c", lease, &[short("erp/10")]).await[0],
        ShareGrant { requests: 10, holders: 1, others_lately: false }
    );
}

#[tokio::test]
async fn on_sqlite_a_quota_is_whole_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    let grants = renew(&store, "a", Duration::from_secs(5), &[ask("hubspot/110", 110, 3)]).await;
    assert_eq!(grants, [ShareGrant { requests: 110, holders: 1, others_lately: false }]);
    assert!(store.list_budget_shares(10).await.unwrap().is_empty());
    store.release_budget_shares("a").await.unwrap();
}
