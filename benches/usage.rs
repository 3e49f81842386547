//! Usage analytics at 10,000 tenants × 1 year of daily aggregates (3,650,000 rows of
//! `usage_daily`, one provider stream per tenant, every tenth day with a failed run's
//! error class as well): `Store::usage` of one tenant — by day and by week over the
//! year, the last 30 days, one provider — median of 50 tenants picked across the
//! table; and the cost the aggregate adds to finishing a run (`finish_run`, median of
//! 200, against the same table).
//!
//! `cargo bench --bench usage` (SQLite only) or
//! `cargo bench --bench usage -- postgres://user@host/db` (also PostgreSQL: a scratch
//! database `tributary_bench_<uuid>` is created on that server and dropped afterwards).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::json;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tributary::model::{
    AuditEntry, Owner, PresetName, ProviderId, RunOutcome, RunStats, RunTrigger, StreamName, TenantId,
};
use tributary::store::{Store, TenantState, UsagePeriod};

use support::Scratch;

const TENANTS: i64 = 10_000;
const DAYS: i64 = 365;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("machine: {}", support::machine());
    for pg in Scratch::backends() {
        let scratch = Scratch::new(pg.as_deref()).await?;
        let result = run_backend(&scratch).await;
        scratch.drop_database().await?;
        result?;
    }
    Ok(())
}

async fn run_backend(scratch: &Scratch) -> anyhow::Result<()> {
    let store = Store::connect(&scratch.url).await?;
    let started = Instant::now();
    let rows = seed(&scratch.url).await?;
    println!("{}: {rows} usage rows seeded in {:.1?}", scratch.backend, started.elapsed());
    let last = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default();
    let hubspot = ProviderId::parse("hubspot")?;
    let cases: [(&str, UsagePeriod, Option<NaiveDate>, Option<&ProviderId>); 4] = [
        ("year by day", UsagePeriod::Day, None, None),
        ("year by week", UsagePeriod::Week, None, None),
        ("last 30 days", UsagePeriod::Day, Some(last - chrono::Days::new(29)), None),
        ("year, one provider", UsagePeriod::Week, None, Some(&hubspot)),
    ];
    for (name, by, since, provider) in cases {
        let mut timings = Vec::new();
        let mut lines = 0;
        for i in 0..50 {
            let tenant = TenantId::parse(&format!("t{}", (i * 197) % TENANTS))?;
            let started = Instant::now();
            let report = store.usage(&tenant, provider, by, since).await?;
            timings.push(started.elapsed());
            lines = report.lines.len();
            anyhow::ensure!(report.totals.runs > 0, "no usage for {tenant}");
        }
        println!("{}: usage {name}: {} lines, median {:.2?}", scratch.backend, lines, median(&mut timings));
    }
    finish_cost(scratch.backend, &store).await?;
    store.close().await;
    Ok(())
}

/// Median of `finish_run` over 200 runs of one tenant's job (the aggregate row of the
/// day is updated each time).
async fn finish_cost(backend: &str, store: &Store) -> anyhow::Result<()> {
    let tenant = TenantId::parse("bench")?;
    let hubspot = ProviderId::parse("hubspot")?;
    let state = TenantState {
        id: tenant.clone(),
        name: "bench".into(),
        subdomain: "bench".into(),
        timezone: "UTC".into(),
        preset: PresetName::parse("aptem_hubspot")?,
        preset_revision: "r1".into(),
        preset_snapshot: json!({}),
        overrides: vec![],
        enabled_providers: vec![hubspot.clone()],
    };
    let audit = AuditEntry { tenant_id: Some(tenant.clone()), ..AuditEntry::new("bench", "tenant.create") };
    store.create_tenant(&state, &audit).await?;
    let conn = store
        .get_connection(&tenant, &hubspot, Owner::Company)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no connection"))?;
    let job = store.ensure_job(&tenant, conn.id, &StreamName::parse("contacts")?, "1h").await?;
    let stats = RunStats { fetched: 100, inserted: 10, http_calls: 2, bytes_received: 50_000, ..RunStats::default() };
    let mut timings = Vec::new();
    for _ in 0..200 {
        let run = store.start_run(&tenant, job.id, RunTrigger::Scheduled).await?;
        let started = Instant::now();
        store.finish_run(&tenant, run.id, RunOutcome::Success, &stats).await?;
        timings.push(started.elapsed());
    }
    println!("{backend}: finish_run with its usage row: median {:.2?}", median(&mut timings));
    Ok(())
}

fn median(timings: &mut [Duration]) -> Duration {
    timings.sort();
    timings[timings.len() / 2]
}

/// 10,000 tenants × 365 days of one stream, and an error-class row every tenth day.
async fn seed(url: &str) -> anyhow::Result<i64> {
    let columns = "tenant_id, provider, stream, day, error_class, runs, failed_runs, http_calls, \
                   http_errors, retries, fetched, written, dead_lettered, bytes_received, \
                   rate_limit_waits, rate_limit_wait_ms, run_ms";
    if url.starts_with("sqlite") {
        let mut conn = SqliteConnection::connect(url).await?;
        for (class, every) in [("''", 1), ("'transient'", 10)] {
            let sql = format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {total}) \
                 INSERT INTO usage_daily ({columns}) \
                 SELECT 't' || (i / {DAYS}), 'hubspot', 'contacts', date('2026-12-31', '-' || (i % {DAYS}) || ' days'), \
                 {class}, 24, {failed}, 480, 3, 2, 24000, 1200, 1, 9600000, 4, 12000, 360000 FROM n \
                 WHERE i % {every} = 0",
                total = TENANTS * DAYS,
                failed = i64::from(every != 1),
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
        }
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM usage_daily").fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(rows)
    } else {
        let mut conn = PgConnection::connect(url).await?;
        for (class, every) in [("''", 1), ("'transient'", 10)] {
            let sql = format!(
                "INSERT INTO usage_daily ({columns}) \
                 SELECT 't' || (i / {DAYS}), 'hubspot', 'contacts', \
                 to_char(DATE '2026-12-31' - (i % {DAYS})::int, 'YYYY-MM-DD'), \
                 {class}, 24, {failed}, 480, 3, 2, 24000, 1200, 1, 9600000, 4, 12000, 360000 \
                 FROM generate_series(0, {total} - 1) AS n(i) WHERE i % {every} = 0",
                total = TENANTS * DAYS,
                failed = i64::from(every != 1),
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
        }
        // As autovacuum leaves it.
        sqlx::query("VACUUM ANALYZE usage_daily").execute(&mut conn).await?;
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM usage_daily").fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(rows)
    }
}
