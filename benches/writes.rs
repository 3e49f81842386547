//! Write-back throughput: N HubSpot contact creates submitted to the store, then sent by
//! the write worker (`WriteWorker`, as the daemon runs it: concurrency 8, one process's
//! rate limiters) to the HubSpot simulator (on a thread of its own) until all have
//! succeeded.
//!
//! Against a rate limit, the limit is the yardstick and the simulator the judge: it stamps
//! every data request as it arrives; from those stamps the mean rate (requests after the
//! first over the time from the first to the last) against the limit, and the most
//! requests in any 1 s and in any window of the limit's length (sliding, starting at
//! each request), which must never exceed the limit. N is sized for about `WRITES_SECS`
//! (default 60) seconds at the limit.
//!
//! Limits measured: the simulator's own (HubSpot's 110 per 10 s, the shipped manifest
//! with its remaining-requests header, used as it is) and 100 per 10 s (no header, the
//! limiter alone). Reference in the same run: `RAW_WRITES` (default 3,000) creates with
//! no limit (what the worker, the store and the simulator allow).
//!
//! `cargo bench --bench writes` (SQLite) or
//! `cargo bench --bench writes -- postgres://user@host/db` (also PostgreSQL).

#[path = "support/mod.rs"]
mod support;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tributary::config::WriteOp;
use tributary::http::{RateLimiters, RetryPolicy};
use tributary::model::{EntityName, Owner, ProviderId, TenantId};
use tributary::store::{NewWrite, WriteFilter, WriteState};
use tributary::sync::writes::WriteWorker;
use tributary::telemetry::Metrics;
use tributary_simulator::{Provider, SimConfig, SimHandle};

use support::Scratch;

/// (requests, per_secs); `None`: no limit. 110 per 10 s is the shipped HubSpot table.
const LIMITS: [Option<(u32, u32)>; 3] = [None, Some(support::SHIPPED_LIMIT), Some((100, 10))];
/// The worker's writes in flight (`[writes] concurrency`, default).
const CONCURRENCY: usize = 8;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs = env_or("WRITES_SECS", 60);
    let raw = env_or("RAW_WRITES", 3_000);
    println!("machine: {}", support::machine());
    for pg in Scratch::backends() {
        for limit in LIMITS {
            let writes = match limit {
                None => raw,
                Some((n, per)) => secs * u64::from(n) / u64::from(per),
            };
            let sim = support::simulator_thread(SimConfig::new(Provider::HubSpot, 10))?;
            let scratch = Scratch::new(pg.as_deref()).await?;
            let result = measure(&scratch, &sim, limit, writes).await;
            let backend = scratch.backend;
            scratch.drop_database().await?;
            sim.shutdown();
            let (elapsed, times) = result?;
            report(backend, limit, elapsed, &times);
        }
    }
    Ok(())
}

/// The most stamps in any window `[t, t + w)`.
fn window_max(times: &[Instant], w: Duration) -> usize {
    let mut best = 0;
    let mut j = 0;
    for i in 0..times.len() {
        while j < times.len() && times[j] < times[i] + w {
            j += 1;
        }
        best = best.max(j - i);
    }
    best
}

fn report(backend: &str, limit: Option<(u32, u32)>, elapsed: Duration, times: &[Instant]) {
    let span = times.last().zip(times.first()).map_or(0.0, |(l, f)| (*l - *f).as_secs_f64());
    let mean = (times.len().saturating_sub(1)) as f64 / span;
    match limit {
        None => println!(
            "{backend}: no limit (reference), concurrency {CONCURRENCY}: {} writes in {span:.2} s: \
             mean {mean:.0} writes/s, max {} in any 1 s (all settled in {elapsed:.2?})",
            times.len(),
            window_max(times, Duration::from_secs(1)),
        ),
        Some((n, per)) => {
            let rate = f64::from(n) / f64::from(per);
            let most = window_max(times, Duration::from_secs(u64::from(per)));
            println!(
                "{backend}: limit {n} per {per} s ({rate:.1} req/s): {} writes in {span:.1} s: mean {mean:.3} writes/s \
                 ({:.3} of the limit), max {} in any 1 s, max {most} in any {per} s (limit {n}{}) \
                 (all settled in {elapsed:.1?})",
                times.len(),
                mean / rate,
                window_max(times, Duration::from_secs(1)),
                if most > n as usize { ", EXCEEDED" } else { "" },
            );
        }
    }
}

/// The time until every write succeeded, and the simulator's data request stamps.
async fn measure(
    scratch: &Scratch,
    sim: &SimHandle,
    limit: Option<(u32, u32)>,
    writes: u64,
) -> anyhow::Result<(Duration, Vec<Instant>)> {
    let (catalog, store, key) = support::limited_hubspot(scratch.dir.path(), &scratch.url, sim, limit).await?;

    let (tenant, provider, entity) =
        (TenantId::parse("acme")?, ProviderId::parse("hubspot")?, EntityName::parse("contact")?);
    for i in 0..writes {
        let payload = serde_json::json!({ "email": format!("writer{i}@acme.example.com") });
        let new = NewWrite {
            tenant: &tenant,
            provider: &provider,
            owner: Owner::Company,
            entity: &entity,
            op: WriteOp::Create,
            external_id: None,
            idempotency_key: None,
            base_version: None,
            force: false,
            payload: &payload,
        };
        store.submit_write(&new).await?;
    }

    let before = sim.data_request_count();
    let worker = Arc::new(WriteWorker {
        catalog: Arc::new(RwLock::new(Arc::new(catalog))),
        store: store.clone(),
        key: Arc::new(key),
        metrics: Arc::new(Metrics::new()),
        limits: Arc::new(RateLimiters::new()),
        retry: RetryPolicy::default(),
        owner: "bench".into(),
        concurrency: CONCURRENCY,
        lease: Duration::from_secs(300),
        idle_poll: Duration::from_millis(20),
    });
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let settled = |state| {
        let store = store.clone();
        async move {
            let filter =
                WriteFilter { tenant: None, state: Some(state), provider: None, limit: i64::try_from(writes)? + 1 };
            anyhow::Ok(store.list_writes(&filter).await?.len() as u64)
        }
    };
    loop {
        if settled(WriteState::Succeeded).await? == writes {
            break;
        }
        for state in [WriteState::Failed, WriteState::Conflict] {
            anyhow::ensure!(settled(state).await? == 0, "a write ended {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    running.await?;
    let served = (sim.data_request_count() - before) as usize;
    anyhow::ensure!(served as u64 == writes, "{served} requests for {writes} writes");
    let times = sim.data_request_times();
    anyhow::ensure!(served <= times.len(), "the simulator kept {} of {served} request times", times.len());
    store.close().await;
    Ok((elapsed, times[times.len() - served..].to_vec()))
}
