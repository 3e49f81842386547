//! Rate-limit budgets shared by two daemons on one PostgreSQL database: HubSpot's quota
//! made one app quota (`scope = "provider"`, 20 requests per 2 s) read by two tenants'
//! backfills on both daemons at once. The simulator (the judge) never sees more than the
//! limit in any window, both daemons hold a share and together they use most of the
//! limit; when one is killed, the other's share grows to the whole quota once the dead
//! one's lease expires.

use std::time::{Duration, Instant};

use serde_json::Value;
use tributary::control::protocol::Command as Ctl;
use tributary_simulator::{Provider, SimConfig, start};

use super::{Fixture, NEVER, eventually, target};
use crate::support::busiest;

/// Records per stream: 150 pages each, more than the test reads.
const RECORDS: u64 = 15_000;
const LIMIT: usize = 20;
const WINDOW: Duration = Duration::from_secs(2);
/// The quota's key across the fleet: provider and limit.
const QUOTA: &str = "hubspot/20";

fn in_window(times: &[Instant], from: Instant, w: Duration) -> usize {
    times.iter().filter(|t| **t >= from && **t < from + w).count()
}

/// `replica`'s shares as `status` lists them: (quota, requests).
fn shares_of(status: &Value, replica: &str) -> Vec<(String, i64)> {
    let replicas = status["replicas"].as_array().cloned().unwrap_or_default();
    let Some(row) = replicas.iter().find(|r| r["id"] == replica) else { return Vec::new() };
    row["budgets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|b| (b["quota"].as_str().unwrap_or_default().to_owned(), b["requests"].as_i64().unwrap_or(-1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_a_provider_quota_and_a_killed_ones_share_returns() {
    let sim = start(SimConfig::new(Provider::HubSpot, RECORDS)).await.unwrap();
    let mut fx = Fixture::postgres("per_tenant = 2\nper_provider = 4").await;
    let connectors = fx.own_connectors();
    let manifest = std::fs::read_to_string(connectors.join("hubspot.toml")).unwrap();
    let shipped = "[rate_limit]\nrequests = 110\nper_secs = 10\n";
    assert!(manifest.contains(shipped), "the shipped HubSpot limit");
    let shared = manifest.replace(shipped, "[rate_limit]\nrequests = 20\nper_secs = 2\nscope = \"provider\"\n");
    std::fs::write(connectors.join("hubspot.toml"), shared).unwrap();
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        sim.base_url()
    );
    for t in ["t1", "t2"] {
        fx.connect(t, &tenant, &[("hubspot", sim.credentials())]).await;
    }
    // Two runs each: both daemons read at once (four streams of two tenants).
    let a = fx.start("a", 2).await;
    let b = fx.start("b", 2).await;
    let owner = |status: &Value| status["daemon"]["owner"].as_str().unwrap().to_owned();
    let (a_id, b_id) = (owner(&a.ok(Ctl::Status).await), owner(&b.ok(Ctl::Status).await));
    for t in ["t1", "t2"] {
        a.ok(Ctl::Trigger(target(t, Some("hubspot"), None))).await;
    }
    eventually("both daemons to run two streams", || async {
        let busy = |s: Value| s["daemon"]["busy"].as_u64().unwrap_or(0);
        (busy(a.ok(Ctl::Status).await) == 2 && busy(b.ok(Ctl::Status).await) == 2).then_some(())
    })
    .await;

    // Both hold a share of the one quota, together no more than the limit.
    let status = eventually("both daemons to hold a share", || async {
        let status = a.ok(Ctl::Status).await;
        let (sa, sb) = (shares_of(&status, &a_id), shares_of(&status, &b_id));
        let held = |s: &[(String, i64)]| s.iter().any(|(q, n)| q == QUOTA && *n > 0);
        (held(&sa) && held(&sb)).then_some(status)
    })
    .await;
    let total: i64 = [&a_id, &b_id].iter().flat_map(|r| shares_of(&status, r)).map(|s| s.1).sum();
    assert!(total <= LIMIT as i64, "shares {total} > {LIMIT}: {status}");

    // Both read for a while; then a is killed mid-read.
    let both_from = Instant::now();
    tokio::time::sleep(WINDOW * 3).await;
    let both_used = in_window(&sim.data_request_times(), both_from + WINDOW, WINDOW);
    a.signal("KILL").await;
    let killed = Instant::now();

    // Once a's rows expire (5 s), b grows into its share within a renewal or two.
    let later = killed + tributary::http::budgets::LEASE + WINDOW;
    tokio::time::sleep_until((later + WINDOW * 2).into()).await;
    let status = b.ok(Ctl::Status).await;
    assert_eq!(shares_of(&status, &a_id), [], "a's share expired: {status}");
    assert_eq!(shares_of(&status, &b_id), [(QUOTA.to_owned(), LIMIT as i64)], "b holds the whole quota: {status}");
    assert_eq!(b.ok(Ctl::Status).await["daemon"]["busy"], 2, "b still reads: {}", b.log_text());

    let times = sim.data_request_times();
    let alone_used = in_window(&times, later, WINDOW);
    let most = busiest(&times, WINDOW);
    assert!(most <= LIMIT, "{most} requests in one {WINDOW:?} window (limit {LIMIT})");
    // Both together use most of the limit; b alone, far more than half of it: its
    // share grew to the whole quota.
    assert!(both_used >= LIMIT * 3 / 4, "two daemons used {both_used} of {LIMIT}");
    assert!(alone_used >= LIMIT * 3 / 4, "b alone used {alone_used} of {LIMIT}");
    drop((a, b));
    fx.finish().await;
}
