//! Budget shares in the store (PostgreSQL): replicas renewing in turn never hold more
//! than a quota's limit together, settle on the fair division, see an expired share as
//! free, give theirs back on a clean stop, and learn whether another replica held a
//! share within the quota's window. On SQLite a quota is whole.

use std::time::Duration;

use tributary::store::{SentCounts, ShareGrant, ShareRequest, Store, share_burst};

fn ask(quota: &str, limit: u32, wants: u32) -> ShareRequest {
    ShareRequest { quota: quota.into(), limit, per_secs: 10, wants, sent: SentCounts::default() }
}

/// A grant for a quota nobody sent anything under lately: a new limiter may start with
/// the share's whole burst.
fn granted(requests: u32, holders: u32, others_lately: bool) -> ShareGrant {
    ShareGrant { requests, holders, others_lately, credit: share_burst(requests) }
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
    assert_eq!(renew(store, "a", lease, &[ask(q, 110, 110)]).await[0], granted(110, 1, false));
    assert_eq!(renew(store, "b", lease, &[ask(q, 110, 110)]).await[0], granted(0, 2, true));
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
        granted(50, 1, true),
        "c's share expired, but within the window"
    );

    // A clean stop gives everything back; the next holder learns that b's requests may
    // still count in the window. A quota nobody held is fresh.
    store.release_budget_shares("b").await.unwrap();
    assert_eq!(held(store, q).await, []);
    let grants = renew(store, "d", lease, &[ask(q, 110, 110), ask("jira/5", 5, 5)]).await;
    assert_eq!(grants, [granted(110, 1, true), granted(5, 1, false)]);
    pg.drop_db().await;
}

#[tokio::test]
async fn a_share_given_back_counts_as_recent_for_one_window_only() {
    let pg = crate::support::postgres_store().await;
    let store = &pg.store;
    let lease = Duration::from_secs(30);
    let short =
        |q: &str| ShareRequest { quota: q.into(), limit: 10, per_secs: 1, wants: 10, sent: SentCounts::default() };
    renew(store, "a", lease, &[short("erp/10")]).await;
    // a's next renewal does not name the quota: its share goes back.
    renew(store, "a", lease, &[]).await;
    assert_eq!(held(store, "erp/10").await, []);
    assert!(renew(store, "b", lease, &[short("erp/10")]).await[0].others_lately, "within the window");
    renew(store, "b", lease, &[]).await;
    // One window (1 s) and the second of margin later, nobody's requests can count.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert_eq!(renew(store, "c", lease, &[short("erp/10")]).await[0], granted(10, 1, false));
}

#[tokio::test]
async fn on_sqlite_a_quota_is_whole_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    let grants = renew(&store, "a", Duration::from_secs(5), &[ask("hubspot/110", 110, 3)]).await;
    assert_eq!(grants, [granted(110, 1, false)]);
    assert!(store.list_budget_shares(10).await.unwrap().is_empty());
    store.release_budget_shares("a").await.unwrap();
}

#[tokio::test]
async fn a_new_share_starts_with_what_the_requests_others_reported_leave_of_its_burst() {
    let pg = crate::support::postgres_store().await;
    let store = &pg.store;
    let lease = Duration::from_secs(30);
    let hourly = |q: &str, newest: i64, counts: &[u32]| ShareRequest {
        quota: q.into(),
        limit: 5000,
        per_secs: 3600,
        wants: 5000,
        sent: SentCounts { newest, counts: counts.to_vec() },
    };
    let now = SentCounts::bucket_now(3600);
    // a used a GitHub connection for 12 requests this hour, then gave it back.
    renew(store, "a", lease, &[hourly("github/5000/acme", now, &[12])]).await;
    renew(store, "a", lease, &[]).await;
    // b takes it: a held it within the window, but its 12 requests leave b's whole burst.
    let g = renew(store, "b", lease, &[hourly("github/5000/acme", now, &[])]).await[0];
    assert_eq!(g, ShareGrant { requests: 5000, holders: 1, others_lately: true, credit: 51 });

    // c sent 4,000 in the last two minutes on another connection: its pace would be
    // 60,000 an hour, so d's new limiter starts drained.
    renew(store, "c", lease, &[hourly("github/5000/hooli", now, &[4000])]).await;
    renew(store, "c", lease, &[]).await;
    let g = renew(store, "d", lease, &[hourly("github/5000/hooli", now, &[])]).await[0];
    assert_eq!((g.requests, g.others_lately, g.credit), (5000, true, 0));

    // A short window used at its pace by a live holder leaves nothing either.
    let now1 = SentCounts::bucket_now(1);
    let busy = |replica_sent: &[u32]| ShareRequest {
        quota: "hubspot/40".into(),
        limit: 40,
        per_secs: 1,
        wants: 40,
        sent: SentCounts { newest: now1, counts: replica_sent.to_vec() },
    };
    renew(store, "e", lease, &[busy(&[2, 1, 1, 2, 1, 1, 2])]).await;
    let g = renew(store, "f", lease, &[busy(&[])]).await[0];
    assert_eq!((g.requests, g.others_lately, g.credit), (0, true, 0));
    let g = renew(store, "e", lease, &[busy(&[1, 2, 1, 1, 2, 1, 1])]).await[0];
    assert_eq!(g.requests, 20, "e shrinks to half for f");
    let g = renew(store, "f", lease, &[busy(&[])]).await[0];
    assert_eq!((g.requests, g.credit), (20, 0), "f grows into the half, drained");
    pg.drop_db().await;
}
