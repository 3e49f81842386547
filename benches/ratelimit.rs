//! Rate-limit accuracy: one sync (`Syncer::run`, HubSpot `contacts`, 100 records per
//! page) against the HubSpot simulator (on a thread of its own) with the manifest's
//! rate limit set to `R` requests per `W` seconds and enough records for about
//! `RATE_SECS` (default 60) seconds at that rate. The simulator stamps every data
//! request as it arrives; from those stamps: the mean rate over the sync, the most
//! requests in any 1 s window and in any `W` s window (sliding, starting at each
//! request), against the configured limit.
//!
//! Limits measured: 10 per 1 s, and HubSpot's own 110 per 10 s (whose bucket starts full,
//! so its first second may burst). Reference measured in the same run: the same sync
//! with no limit (its request rate is what the limiter holds back).
//!
//! Two replicas (PostgreSQL only): two processes' worth of limiters, stores and budget
//! renewals (`RateLimiters::leased`, `http::budgets::run`) in one process, each syncing
//! one HubSpot stream of the same connection (`contacts` on one, `companies` on the
//! other) so both draw on one quota through their leased shares. Records per stream are
//! half the single-sync figure (about `RATE_SECS` in all). The same figures, from the
//! simulator's stamps of both streams' requests: the most requests in any window and
//! the share of the limit used from the first request to the last.
//!
//! `cargo bench --bench ratelimit` (SQLite) or
//! `cargo bench --bench ratelimit -- postgres://user@host/db` (also PostgreSQL, and the
//! two-replica cases); `RATE_CASES=fleet` runs only the two-replica cases.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tributary::http::RateLimiters;
use tributary::store::Store;

use tributary::model::{ProviderId, RunOutcome, RunTrigger, StreamName, TenantId};
use tributary_simulator::{Provider, SimConfig, SimHandle};

use tributary::sync::{SyncRequest, Syncer};

use support::Scratch;

/// (requests, per_secs); `None`: no limit. 110 per 10 s is the shipped HubSpot table
/// (with its remaining-requests header), used as it is.
const LIMITS: [Option<(u32, u32)>; 3] = [None, Some((10, 1)), Some(support::SHIPPED_LIMIT)];
/// Records of the unlimited reference sync.
const REFERENCE_RECORDS: u64 = 20_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("RATE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    println!("machine: {}", support::machine());
    let fleet_only = std::env::var("RATE_CASES").is_ok_and(|v| v == "fleet");
    for pg in Scratch::backends() {
        if let Some(pg) = pg.as_deref() {
            for (n, per) in [(10, 1), support::SHIPPED_LIMIT] {
                let records = 100 * secs * u64::from(n) / u64::from(per) / 2;
                let sim = support::simulator_thread(SimConfig::new(Provider::HubSpot, records))?;
                let scratch = Scratch::new(Some(pg)).await?;
                let result = measure_fleet(&scratch, &sim, (n, per), records).await;
                scratch.drop_database().await?;
                sim.shutdown();
                let (elapsed, times) = result?;
                report("PostgreSQL, 2 replicas", Some((n, per)), elapsed, &times);
            }
        }
        if fleet_only {
            continue;
        }
        for limit in LIMITS {
            let records = match limit {
                None => REFERENCE_RECORDS,
                Some((n, per)) => 100 * secs * u64::from(n) / u64::from(per),
            };
            let sim = support::simulator_thread(SimConfig::new(Provider::HubSpot, records))?;
            let scratch = Scratch::new(pg.as_deref()).await?;
            let result = measure(&scratch, &sim, limit, records).await;
            let backend = scratch.backend;
            scratch.drop_database().await?;
            sim.shutdown();
            let (elapsed, times) = result?;
            report(backend, limit, elapsed, &times);
        }
    }
    Ok(())
}

fn report(backend: &str, limit: Option<(u32, u32)>, elapsed: Duration, times: &[Instant]) {
    let span = times.last().zip(times.first()).map_or(0.0, |(l, f)| (*l - *f).as_secs_f64());
    let mean = (times.len().saturating_sub(1)) as f64 / span;
    let window_max = |w: Duration| {
        let mut best = 0;
        let mut j = 0;
        for i in 0..times.len() {
            while j < times.len() && times[j] < times[i] + w {
                j += 1;
            }
            best = best.max(j - i);
        }
        best
    };
    match limit {
        None => println!(
            "{backend}: no limit (reference): {} requests in {span:.1} s: mean {mean:.1} req/s, \
             max {} in any 1 s (sync {elapsed:.1?})",
            times.len(),
            window_max(Duration::from_secs(1)),
        ),
        Some((n, per)) => {
            let rate = f64::from(n) / f64::from(per);
            println!(
                "{backend}: limit {n} per {per} s ({rate:.1} req/s): {} requests in {span:.1} s: mean {mean:.2} req/s \
                 ({:.3} of the limit), max {} in any 1 s, max {} in any {per} s (limit {n}) (sync {elapsed:.1?})",
                times.len(),
                mean / rate,
                window_max(Duration::from_secs(1)),
                window_max(Duration::from_secs(u64::from(per))),
            );
        }
    }
}

/// Two replicas, each its own store pool, leased limiters and renewal, syncing one
/// stream each of `acme`'s HubSpot connection at once: the wall time of both and the
/// simulator's data request stamps.
async fn measure_fleet(
    scratch: &Scratch,
    sim: &SimHandle,
    limit: (u32, u32),
    records: u64,
) -> anyhow::Result<(Duration, Vec<Instant>)> {
    let (catalog, first, key) = support::limited_hubspot(scratch.dir.path(), &scratch.url, sim, Some(limit)).await?;
    let stop = CancellationToken::new();
    let stores = [first.clone(), Store::connect(&scratch.url).await?];
    let mut syncers = Vec::new();
    let mut renewals = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let limits = Arc::new(RateLimiters::leased());
        let replica = format!("bench-{i}");
        renewals.push(tokio::spawn(tributary::http::budgets::run(
            store.clone(),
            limits.clone(),
            replica,
            stop.clone(),
        )));
        syncers.push(Syncer::new(&catalog, store, &key)?.with_limits(limits));
    }
    let before = sim.data_request_count();
    let started = Instant::now();
    let (first_run, second_run) =
        tokio::join!(sync_stream(&syncers[0], "contacts", records), sync_stream(&syncers[1], "companies", records));
    let elapsed = started.elapsed();
    stop.cancel();
    for renewal in renewals {
        let _ = renewal.await;
    }
    drop(syncers);
    for store in stores {
        store.close().await;
    }
    first_run?;
    second_run?;
    let served = (sim.data_request_count() - before) as usize;
    let times = sim.data_request_times();
    anyhow::ensure!(served <= times.len(), "the simulator kept {} of {served} request times", times.len());
    Ok((elapsed, times[times.len() - served..].to_vec()))
}

/// One full sync of `acme`'s HubSpot `stream`, which must read `records`.
async fn sync_stream(syncer: &Syncer<'_>, stream: &str, records: u64) -> anyhow::Result<()> {
    let request = SyncRequest {
        tenant: TenantId::parse("acme")?,
        provider: ProviderId::parse("hubspot")?,
        stream: StreamName::parse(stream)?,
        trigger: RunTrigger::Cli,
        full_refresh: true,
        lease_owner: None,
        cancel: None,
        owner: None,
    };
    let row = syncer.run(&request, &mut |_, _| {}).await?;
    anyhow::ensure!(row.outcome == RunOutcome::Success, "{stream}: sync failed: {:?}", row.stats.error);
    anyhow::ensure!(row.stats.fetched as u64 == records, "{stream}: fetched {} of {records}", row.stats.fetched);
    Ok(())
}

/// The sync's wall time and the simulator's data request stamps.
async fn measure(
    scratch: &Scratch,
    sim: &SimHandle,
    limit: Option<(u32, u32)>,
    records: u64,
) -> anyhow::Result<(Duration, Vec<Instant>)> {
    let (catalog, store, key) = support::limited_hubspot(scratch.dir.path(), &scratch.url, sim, limit).await?;
    let syncer = Syncer::new(&catalog, &store, &key)?;
    let request = SyncRequest {
        tenant: TenantId::parse("acme")?,
        provider: ProviderId::parse("hubspot")?,
        stream: StreamName::parse("contacts")?,
        trigger: RunTrigger::Cli,
        full_refresh: true,
        lease_owner: None,
        cancel: None,
        owner: None,
    };
    let before = sim.data_request_count();
    let started = Instant::now();
    let row = syncer.run(&request, &mut |_, _| {}).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(row.outcome == RunOutcome::Success, "sync failed: {:?}", row.stats.error);
    anyhow::ensure!(row.stats.fetched as u64 == records, "fetched {} of {records}", row.stats.fetched);
    let served = (sim.data_request_count() - before) as usize;
    let times = sim.data_request_times();
    anyhow::ensure!(served <= times.len(), "the simulator kept {} of {served} request times", times.len());
    store.close().await;
    Ok((elapsed, times[times.len() - served..].to_vec()))
}
