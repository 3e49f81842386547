//! `records export` of N records: a fresh store is filled with N `deal` records of one
//! tenant (through `Store::write_page`, pages of 5,000, timed apart), then the built
//! binary exports them (a child process, stdout to a file in the scratch directory) as
//! CSV and as JSON lines. Printed per format: wall time, records per second, the file's
//! size and the child's peak RSS (`VmHWM`, polled from `/proc/<pid>/status` every 10 ms
//! until it exits), and the same for 1/10 of the records, so flat memory shows as a
//! ratio near 1.
//!
//! `cargo bench --bench export` (SQLite; `EXPORT_N`, default 1000000, sets N) or
//! `cargo bench --bench export -- postgres://postgres@127.0.0.1:5432/test` (also
//! PostgreSQL: a scratch database there, dropped afterwards). `TRIBUTARY_BIN` runs
//! another build of the binary.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tributary::model::{EntityName, ProviderId};
use tributary::store::{PageWrite, PositionWrite, RecordInput, Store};

use support::Scratch;

const PAGE: u64 = 5_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("EXPORT_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    println!("machine: {}", support::machine());
    for pg in Scratch::backends() {
        let scratch = Scratch::new(pg.as_deref()).await?;
        let store = Store::connect(&scratch.url).await?;
        // The small tenant first: its export is the reference for memory.
        let small = n / 10;
        for (tenant, count) in [("small", small), ("bench", n)] {
            let started = Instant::now();
            seed(&store, tenant, count).await?;
            println!(
                "{}: stored {count} deals of `{tenant}` in {:.1} s",
                scratch.backend,
                started.elapsed().as_secs_f64()
            );
        }
        store.close().await;
        for format in ["csv", "jsonl"] {
            let mut peaks = Vec::new();
            for (tenant, count) in [("small", small), ("bench", n)] {
                let (wall, bytes, peak_kb) = export(&scratch.url, scratch.dir.path(), tenant, format)?;
                println!(
                    "{} {format} {count}: {:.2} s, {:.0} rec/s, {:.1} MiB written, peak RSS {:.1} MiB",
                    scratch.backend,
                    wall.as_secs_f64(),
                    count as f64 / wall.as_secs_f64(),
                    bytes as f64 / 1_048_576.0,
                    peak_kb as f64 / 1024.0
                );
                peaks.push(peak_kb as f64);
            }
            println!("{} {format}: peak RSS at N / at N/10 = {:.2}", scratch.backend, peaks[1] / peaks[0]);
        }
        scratch.drop_database().await?;
    }
    Ok(())
}

/// Tenant `id` with `count` deals from HubSpot, written as a sync writes them.
async fn seed(store: &Store, id: &str, count: u64) -> anyhow::Result<()> {
    let (tenant, job_id) = support::hubspot_deals_job(store, id).await?;
    let hubspot = ProviderId::parse("hubspot")?;
    let entity = EntityName::parse("deal")?;
    for start in (0..count).step_by(PAGE as usize) {
        let records: Vec<RecordInput> = (start..(start + PAGE).min(count))
            .map(|i| (i, ["appointment", "qualified", "closed won"][(i % 3) as usize]))
            .map(|(i, stage)| RecordInput {
                external_id: format!("{i:09}"),
                data: json!({
                    "external_id": format!("{i:09}"),
                    "name": format!("Deal {i}, \"renewal\""),
                    "amount": (i % 100_000) as f64 / 4.0,
                    "stage": stage,
                    "close_date": format!("2026-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
                    "company_id": format!("c{}", i % 5_000),
                    "updated_at": "2026-11-30T12:00:00Z",
                }),
            })
            .collect();
        let page = PageWrite {
            entity: &entity,
            provider: &hubspot,
            records: &records,
            job_id,
            cursor: None,
            lease_owner: None,
            dead_letters: &[],
            position: PositionWrite::Keep,
            run: None,
            mark_seen: false,
        };
        store.write_page(&tenant, &page).await?;
    }
    Ok(())
}

/// Runs `records export` of the tenant's deals into a file; its wall time, the file's
/// size and the child's peak RSS in kB.
fn export(url: &str, dir: &Path, tenant: &str, format: &str) -> anyhow::Result<(Duration, u64, u64)> {
    let bin = std::env::var("TRIBUTARY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tributary").into());
    let path = dir.join(format!("{tenant}.{format}"));
    let file = std::fs::File::create(&path)?;
    let started = Instant::now();
    let mut child = std::process::Command::new(bin)
        .args(["records", "export", "--tenant", tenant, "--entity", "deal", "--format", format])
        .env("TRIBUTARY_DATABASE_URL", url)
        .env("TRIBUTARY_CONFIG", support::repo().join("config"))
        .env("TRIBUTARY_LOG", "warn")
        .stdout(file)
        .spawn()?;
    let mut peak = 0;
    let status = loop {
        if let Ok((_, hwm)) = support::rss_kb(child.id()) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let wall = started.elapsed();
    anyhow::ensure!(status.success(), "the export failed: {status}");
    Ok((wall, std::fs::metadata(&path)?.len(), peak))
}
