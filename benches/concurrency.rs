//! Concurrency: `TENANTS` (default 500) small tenants, each connected to the HubSpot
//! simulator (100 contacts: one page, on a thread of its own in this process), all of
//! their `contacts` jobs triggered at once before `tributary run` (a child process,
//! `workers = 32`, per-provider cap lifted so the global cap is the one that binds)
//! starts. From the run rows: total time (first run started → last run finished),
//! runs per second, and the most runs in flight at any moment (≤ 32).
//!
//! Reference measured in the same run: the same batch with `workers = 1` (one run at a
//! time), so the speed-up of 32 workers is its total over theirs; and the median
//! duration of one run (from its run row, which leaves out the claim, the tenant's
//! configuration and the completion around it). The daemon's CPU time over the batch
//! (from its start, so its start-up reconciliation is included) shows how much of the
//! 2 cores it used.
//!
//! `cargo bench --bench concurrency` (SQLite) or
//! `cargo bench --bench concurrency -- postgres://user@host/db` (also PostgreSQL).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tributary::model::{JobFilter, ProviderId, RunOutcome, RunRow, StreamName, TriggerKind};
use tributary::store::Store;
use tributary_simulator::{Provider, SimConfig, SimHandle};

use support::Scratch;

const WORKERS: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tenants: usize = std::env::var("TENANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    println!("machine: {}", support::machine());
    let sim = support::simulator_thread(SimConfig::new(Provider::HubSpot, 100))?;
    for pg in Scratch::backends() {
        let mut totals = Vec::new();
        for workers in [WORKERS, 1] {
            let scratch = Scratch::new(pg.as_deref()).await?;
            let result = measure(&scratch, &sim, tenants, workers).await;
            let backend = scratch.backend;
            scratch.drop_database().await?;
            let (runs, cpu) = result?;
            let first = runs.iter().map(|r| r.started_at).min().unwrap_or_default();
            let last = runs.iter().filter_map(|r| r.finished_at).max().unwrap_or_default();
            let total = (last - first).to_std().unwrap_or_default().as_secs_f64();
            let durations: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.finished_at.map(|f| (f - r.started_at).to_std().unwrap_or_default().as_secs_f64()))
                .collect();
            totals.push(total);
            println!(
                "{backend}: {} runs, workers {workers}: total {total:.2} s, {:.1} runs/s, at most {} in flight; \
                 one run median {:.0} ms (p90 {:.0} ms); daemon CPU {cpu:.1} s ({:.2} cores over the batch)",
                runs.len(),
                runs.len() as f64 / total,
                peak(&runs),
                support::median(&durations) * 1e3,
                support::quantile(&durations, 0.9) * 1e3,
                cpu / total,
            );
        }
        println!(
            "{}: speed-up of {WORKERS} workers over 1 (reference, same run): {:.2}",
            if pg.is_some() { "postgres" } else { "sqlite" },
            totals[1] / totals[0]
        );
    }
    sim.shutdown();
    Ok(())
}

/// The most runs between their start and end at any moment.
fn peak(runs: &[RunRow]) -> usize {
    let mut events: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for r in runs {
        events.push((r.started_at, 1));
        events.push((r.finished_at.unwrap_or(r.started_at), -1));
    }
    // An end before a start at the same instant.
    events.sort();
    let (mut now, mut best) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        best = best.max(now);
    }
    best as usize
}

/// The finished `contacts` runs, and the daemon's CPU seconds until the last one.
async fn measure(
    scratch: &Scratch,
    sim: &SimHandle,
    tenants: usize,
    workers: usize,
) -> anyhow::Result<(Vec<RunRow>, f64)> {
    let dir = scratch.dir.path();
    let connectors = support::connectors_dir(dir, "hubspot", None)?;
    let config = support::config_dir(dir, &format!("workers = {workers}\nper_provider = 1000\nper_tenant = 2"))?;
    let catalog = support::catalog(&config, &connectors)?;
    let (key, key_file) = support::master_key(dir)?;
    let store = Store::connect(&scratch.url).await?;
    let started = Instant::now();
    for i in 0..tenants {
        support::hubspot_tenant(&catalog, &store, &key, dir, &format!("t{i:04}"), sim).await?;
    }
    tributary::app::reconcile(&catalog, &store, false, Duration::from_secs(60), &tributary::telemetry::Metrics::new())
        .await?;
    let filter = JobFilter {
        tenant: None,
        provider: Some(ProviderId::parse("hubspot")?),
        stream: Some(StreamName::parse("contacts")?),
    };
    let triggered = store.trigger_jobs(&filter, TriggerKind::Manual, Utc::now()).await?;
    anyhow::ensure!(triggered.len() == tenants, "triggered {} jobs", triggered.len());
    println!("{}: {tenants} tenants created and triggered in {:.1?}", scratch.backend, started.elapsed());

    let (mut child, _socket) = support::spawn_daemon(dir, &scratch.url, &config, &connectors, &key_file).await?;
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let started = Instant::now();
    let mut cpu = 0.0;
    let runs = loop {
        let runs: Vec<RunRow> = store
            .list_runs(None, 10 * tenants as i64)
            .await?
            .into_iter()
            .filter(|r| r.stream.as_str() == "contacts" && r.outcome != RunOutcome::Running)
            .collect();
        if runs.len() >= tenants {
            break runs;
        }
        cpu = support::cpu_secs(pid)?;
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "{} of {tenants} runs after 600 s", runs.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().await?;
    store.close().await;
    let failed: Vec<_> = runs.iter().filter(|r| r.outcome != RunOutcome::Success).collect();
    anyhow::ensure!(failed.is_empty(), "{} runs failed: {:?}", failed.len(), failed[0].stats.error);
    Ok((runs, cpu))
}
