//! Trigger latency: `tributary run` (a child process) with one tenant connected to the
//! HubSpot simulator (on a thread of its own in this process); a control-socket
//! `trigger` of the tenant's `contacts` stream, timed from just before the request is
//! written to the socket until the simulator receives the run's first data request
//! (the simulator stamps every data request as it arrives). Each run (one page) is
//! waited for before the next trigger. `TRIGGERS` (default 200) triggers per backend;
//! median, p90, p99 and max.
//!
//! Reference measured in the same run: the round trip of a control `status` request
//! (the socket and the main loop, no store write, no run).
//!
//! `cargo bench --bench trigger` (SQLite) or
//! `cargo bench --bench trigger -- postgres://user@host/db` (also PostgreSQL, on a
//! scratch database).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use tributary::model::{RunOutcome, TenantId};
use tributary::store::Store;
use tributary_simulator::{Provider, SimConfig};

use support::Scratch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let triggers: usize = std::env::var("TRIGGERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    println!("machine: {}", support::machine());
    let sim = support::simulator_thread(SimConfig::new(Provider::HubSpot, 50))?;
    for pg in Scratch::backends() {
        let scratch = Scratch::new(pg.as_deref()).await?;
        let result = measure(&scratch, &sim, triggers).await;
        let backend = scratch.backend;
        scratch.drop_database().await?;
        let (latency, status) = result?;
        let ms = |v: &[f64], q: f64| support::quantile(v, q) * 1e3;
        println!(
            "{backend}: trigger → first request over {} triggers: median {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, \
             max {:.1} ms | reference: control `status` round trip median {:.2} ms, p99 {:.2} ms",
            latency.len(),
            ms(&latency, 0.5),
            ms(&latency, 0.9),
            ms(&latency, 0.99),
            ms(&latency, 1.0),
            ms(&status, 0.5),
            ms(&status, 0.99),
        );
    }
    sim.shutdown();
    Ok(())
}

/// Trigger latencies and `status` round trips, in seconds.
async fn measure(
    scratch: &Scratch,
    sim: &tributary_simulator::SimHandle,
    triggers: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let dir = scratch.dir.path();
    let connectors = support::connectors_dir(dir, "hubspot", None)?;
    let config = support::config_dir(dir, "")?;
    let catalog = support::catalog(&config, &connectors)?;
    let (key, key_file) = support::master_key(dir)?;
    let store = Store::connect(&scratch.url).await?;
    support::hubspot_tenant(&catalog, &store, &key, dir, "acme", sim).await?;
    let (mut child, socket) = support::spawn_daemon(dir, &scratch.url, &config, &connectors, &key_file).await?;
    let tenant = TenantId::parse("acme")?;
    let before = store.list_runs(Some(&tenant), 1_000).await?.len();

    let mut status = Vec::new();
    let mut latency = Vec::new();
    for i in 0..triggers + 5 {
        let started = Instant::now();
        support::control(&socket, json!({"v": 1, "cmd": "status"})).await?;
        status.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        let reply = support::control(
            &socket,
            json!({"v": 1, "cmd": "trigger", "tenant": "acme", "provider": "hubspot", "stream": "contacts"}),
        )
        .await?;
        let first = loop {
            if let Some(t) = sim.data_request_times().into_iter().rev().take_while(|t| *t >= started).last() {
                break t;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "no request within 30 s: {reply}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        // Wait for the run to end (the daemon has handled its completion when it no
        // longer lists it as running) before the next trigger.
        loop {
            let status = support::control(&socket, json!({"v": 1, "cmd": "status"})).await?;
            if status["daemon"]["busy"] == 0 {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the run did not finish within 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The first few warm the daemon's connections and the access token.
        if i >= 5 {
            latency.push((first - started).as_secs_f64());
        }
    }
    child.kill().await?;
    let runs = store.list_runs(Some(&tenant), 10_000).await?;
    let failed = runs.iter().filter(|r| r.outcome != RunOutcome::Success).count();
    anyhow::ensure!(
        runs.len() - before >= triggers + 5,
        "only {} runs for {} triggers",
        runs.len() - before,
        triggers + 5
    );
    anyhow::ensure!(
        failed == 0,
        "{failed} runs did not succeed: {:?}",
        runs.iter().find_map(|r| r.stats.error.clone())
    );
    store.close().await;
    Ok((latency, status))
}
