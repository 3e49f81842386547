//! The cost of a full deletion pass (mark and sweep) at N records: a fresh store is
//! filled with N `deal` records of one tenant (pages of 5,000, as a sync writes them,
//! marked seen), then a second full pass re-reads them: every record unchanged, 1 % of
//! them gone from the listing. Timed apart, per store:
//! - `plain`: that pass without marking (what a full refresh of a stream that does not
//!   sweep costs: hashes compared, nothing written);
//! - `mark`: the same pass marking every listed record seen (`sweep = true`);
//! - `sweep`: the sweep after it (count, guard, mark the 1 % deleted, number them in
//!   the change feed).
//!
//! Also the process's peak RSS (`VmHWM`).
//!
//! `cargo bench --bench sweep` (SQLite; `SWEEP_N`, default 1000000, sets N) or
//! `cargo bench --bench sweep -- postgres://postgres@127.0.0.1:5432/test` (also
//! PostgreSQL: a scratch database there, dropped afterwards).

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use tributary::model::{EntityName, ProviderId, TenantId};
use tributary::store::{PageWrite, PositionWrite, RecordInput, Store, SweepOutcome, SweepRequest};

use support::Scratch;

const PAGE: u64 = 5_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("SWEEP_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    println!("machine: {}", support::machine());
    for pg in Scratch::backends() {
        let scratch = Scratch::new(pg.as_deref()).await?;
        let store = Store::connect(&scratch.url).await?;
        let (tenant, job) = support::hubspot_deals_job(&store, "bench").await?;
        let started = Instant::now();
        pass(&store, &tenant, job, n, |_| true, true).await?;
        println!("{}: stored {n} deals in {:.1} s", scratch.backend, started.elapsed().as_secs_f64());

        // 1 % of the records are gone from the listing.
        let listed = |i: u64| !i.is_multiple_of(100);
        let started = Instant::now();
        pass(&store, &tenant, job, n, listed, false).await?;
        let plain = started.elapsed().as_secs_f64();
        let pass_started = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        let started = Instant::now();
        pass(&store, &tenant, job, n, listed, true).await?;
        let mark = started.elapsed().as_secs_f64();
        let entity = EntityName::parse("deal")?;
        let hubspot = ProviderId::parse("hubspot")?;
        let started = Instant::now();
        let outcome = store
            .sweep(&SweepRequest {
                tenant: &tenant,
                entity: &entity,
                provider: &hubspot,
                job_id: job,
                lease_owner: None,
                run_id: None,
                pass_started,
                max_share: 0.2,
            })
            .await?;
        let sweep = started.elapsed().as_secs_f64();
        let expected = n.div_ceil(100);
        anyhow::ensure!(outcome == SweepOutcome::Swept { deleted: expected, live: n }, "unexpected sweep: {outcome:?}");
        let (_, peak_kb) = support::rss_kb(std::process::id())?;
        println!(
            "{} {n}: full pass without marking {plain:.1} s, with marking {mark:.1} s (+{:.1} s), sweep of {expected} \
             {sweep:.2} s; deletion pass {:.1} s in all; peak RSS {:.1} MiB",
            scratch.backend,
            mark - plain,
            mark + sweep,
            peak_kb as f64 / 1024.0
        );
        store.close().await;
        scratch.drop_database().await?;
    }
    Ok(())
}

/// One full pass over records `0..count` the listing has (`listed`), in pages of
/// [`PAGE`], marking them seen when `mark`.
async fn pass(
    store: &Store,
    tenant: &TenantId,
    job: i64,
    count: u64,
    listed: impl Fn(u64) -> bool,
    mark: bool,
) -> anyhow::Result<()> {
    let entity = EntityName::parse("deal")?;
    let hubspot = ProviderId::parse("hubspot")?;
    for start in (0..count).step_by(PAGE as usize) {
        let records: Vec<RecordInput> = (start..(start + PAGE).min(count))
            .filter(|i| listed(*i))
            .map(|i| (i, ["appointment", "qualified", "closed won"][(i % 3) as usize]))
            .map(|(i, stage)| RecordInput {
                external_id: format!("{i:09}"),
                data: json!({
                    "external_id": format!("{i:09}"),
                    "name": format!("Deal {i}"),
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
            job_id: job,
            cursor: None,
            lease_owner: None,
            dead_letters: &[],
            position: PositionWrite::Keep,
            run: None,
            mark_seen: mark,
        };
        store.write_page(tenant, &page).await?;
    }
    Ok(())
}
