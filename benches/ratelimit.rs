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
//! `cargo bench --bench ratelimit` (SQLite) or
//! `cargo bench --bench ratelimit -- postgres://user@host/db` (also PostgreSQL).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

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
    for pg in Scratch::backends() {
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
