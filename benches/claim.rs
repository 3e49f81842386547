//! Claiming from a large job table: 1,500 tenants × 100 jobs = 150,000 jobs, of which
//! `DUE` are due; measures claiming batches of 1,000, `next_due_at` and `job_counts`.
//!
//! `cargo bench --bench claim` (SQLite only) or
//! `cargo bench --bench claim -- postgres://user@host/db` (also PostgreSQL: a scratch
//! database `tributary_bench_<uuid>` is created on that server and dropped afterwards).

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tributary::model::{ConnectionStatus, PresetName, ProviderId, TenantId};
use tributary::store::{AuditEntry, ClaimRequest, Exclusions, Owner, Store, TenantState};

const TENANTS: usize = 1_500;
const JOBS_PER_TENANT: i64 = 100;
const BATCH: u32 = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for due in [5_000, 150_000] {
        let path = dir.path().join(format!("bench-{due}.db"));
        let url = format!("sqlite://{}", path.display());
        run("sqlite", &url, due).await?;
    }
    if let Some(server) = std::env::args().skip(1).find(|a| a.starts_with("postgres")) {
        for due in [5_000, 150_000] {
            let name = format!("tributary_bench_{}", uuid::Uuid::now_v7().simple());
            let mut admin = PgConnection::connect(&server).await?;
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
            let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
            let result = run("postgres", &format!("{base}/{name}"), due).await;
            sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut admin)
                .await?;
            result?;
        }
    }
    Ok(())
}

/// Seeds the store at `url` and prints the measurements.
async fn run(backend: &str, url: &str, due: i64) -> anyhow::Result<()> {
    let store = Store::connect(url).await?;
    let now = Utc::now();
    let started = Instant::now();
    seed(&store, url, now, due).await?;
    println!("{backend}: {} jobs ({due} due) seeded in {:.1?}", TENANTS as i64 * JOBS_PER_TENANT, started.elapsed());

    let mut timings = Vec::new();
    for round in 0..5 {
        let owner = format!("bench-{round}");
        let started = Instant::now();
        let claimed = store
            .claim_due_jobs(&ClaimRequest {
                owner: &owner,
                now,
                lease_until: now + TimeDelta::minutes(10),
                limit: BATCH,
                exclude: Exclusions::default(),
            })
            .await?;
        timings.push(started.elapsed());
        anyhow::ensure!(claimed.len() == BATCH as usize, "claimed {}", claimed.len());
    }
    println!("{backend}: claim {BATCH}: {}", show(&timings));

    let mut timings = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        store.next_due_at(now, &Exclusions::default()).await?;
        timings.push(started.elapsed());
    }
    println!("{backend}: next_due_at: {}", show(&timings));
    let started = Instant::now();
    let counts = store.job_counts(now, Duration::from_secs(300)).await?;
    println!("{backend}: job_counts {:.1?}: {counts:?}", started.elapsed());
    store.close().await;
    Ok(())
}

fn show(timings: &[Duration]) -> String {
    let mut sorted = timings.to_vec();
    sorted.sort();
    format!(
        "median {:.2?}, min {:.2?}, max {:.2?} over {} runs",
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    )
}

/// Tenants and connections through the store; the jobs in one statement, due times
/// spread over the next day except for `due` of them, spread over the past hour.
async fn seed(store: &Store, url: &str, now: DateTime<Utc>, due: i64) -> anyhow::Result<()> {
    for t in 0..TENANTS {
        let id = TenantId::parse(&format!("t{t:05}"))?;
        let hubspot = ProviderId::parse("hubspot")?;
        let state = TenantState {
            id: id.clone(),
            name: format!("Tenant {t}"),
            subdomain: id.to_string(),
            timezone: "Europe/London".into(),
            preset: PresetName::parse("aptem_hubspot")?,
            preset_revision: "r1".into(),
            preset_snapshot: json!({}),
            overrides: vec![],
            enabled_providers: vec![hubspot.clone()],
        };
        let audit = AuditEntry {
            at: now,
            actor: "bench".into(),
            action: "tenant.create".into(),
            tenant_id: Some(id.clone()),
            subject: None,
            details: json!({}),
        };
        store.create_tenant(&state, &audit).await?;
        store.set_connection_status(&id, &hubspot, Owner::Company, ConnectionStatus::Connected, None).await?;
    }
    let total = TENANTS as i64 * JOBS_PER_TENANT;
    // Job n belongs to connection n / JOBS_PER_TENANT + 1; due jobs are spread evenly.
    let every = (total / due).max(1);
    if url.starts_with("sqlite") {
        let mut conn = SqliteConnection::connect(url).await?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
             INSERT INTO jobs (tenant_id, connection_id, provider, stream, schedule, next_run_at, \
             created_at, updated_at) \
             SELECT c.tenant_id, c.id, 'hubspot', 's' || (n.i % $2), '1h', \
             strftime('%Y-%m-%dT%H:%M:%f+00:00', $3, CASE WHEN n.i % $4 = 0 \
             THEN '-' || (n.i % 3600) || ' seconds' ELSE '+' || (n.i % 86400) || ' seconds' END), $3, $3 \
             FROM n JOIN connections c ON c.id = n.i / $2 + 1",
        )
        .bind(total)
        .bind(JOBS_PER_TENANT)
        .bind(now)
        .bind(every)
        .execute(&mut conn)
        .await?;
        conn.close().await?;
    } else {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query(
            "INSERT INTO jobs (tenant_id, connection_id, provider, stream, schedule, next_run_at, \
             created_at, updated_at) \
             SELECT c.tenant_id, c.id, 'hubspot', 's' || (n.i % $2), '1h', \
             CASE WHEN n.i % $4 = 0 THEN $3 - (n.i % 3600) * interval '1 second' \
             ELSE $3 + (n.i % 86400) * interval '1 second' END, $3, $3 \
             FROM generate_series(0, $1 - 1) AS n(i) JOIN connections c ON c.id = n.i / $2 + 1",
        )
        .bind(total)
        .bind(JOBS_PER_TENANT)
        .bind(now)
        .bind(every)
        .execute(&mut conn)
        .await?;
        sqlx::query("ANALYZE").execute(&mut conn).await?;
        conn.close().await?;
    }
    Ok(())
}
