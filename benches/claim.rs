//! Claiming from a growing job table: 1,500 tenants with 10 and with 100 jobs each
//! (15,000 and 150,000 jobs). "5,000 due": the due times of 5,000 jobs are spread over
//! the past hour, the rest over the next day; "all due": a backlog after an outage.
//! Measures five claims of 1,000 jobs each (median; the leases are released after each,
//! as a daemon holds only as many as it has workers), `next_due_at` (20 calls) and one
//! `job_counts` — the full scan behind the job gauges, which grows with the table and is
//! the reference the flat claim is read against.
//!
//! `cargo bench --bench claim` (SQLite only) or
//! `cargo bench --bench claim -- postgres://user@host/db` (also PostgreSQL: a scratch
//! database `tributary_bench_<uuid>` is created on that server and dropped afterwards).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tributary::model::{AuditEntry, ConnectionStatus, Owner, PresetName, ProviderId, TenantId};
use tributary::store::{ClaimRequest, Exclusions, Store, TenantState};

use support::Scratch;

const TENANTS: usize = 1_500;
const BATCH: u32 = 1_000;

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
    seed_tenants(&store).await?;
    println!("{}: {TENANTS} tenants seeded in {:.1?}", scratch.backend, started.elapsed());
    for per_tenant in [10, 100] {
        let total = TENANTS as i64 * per_tenant;
        for due in [5_000, total] {
            run(scratch.backend, &store, &scratch.url, per_tenant, due).await?;
        }
    }
    store.close().await;
    Ok(())
}

/// Seeds `per_tenant` jobs per tenant, `due` of them due, and prints the measurements.
async fn run(backend: &str, store: &Store, url: &str, per_tenant: i64, due: i64) -> anyhow::Result<()> {
    let total = TENANTS as i64 * per_tenant;
    let now = Utc::now();
    let started = Instant::now();
    seed_jobs(url, now, per_tenant, due).await?;
    let seeded = started.elapsed();

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
        // Give the leases back: a daemon holds as many as it has workers, not thousands
        // (each claim then takes the same earliest 1,000 again).
        store.release_all(&owner).await?;
    }
    let claim = show(&timings);

    let mut timings = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        store.next_due_at(now, &Exclusions::default()).await?;
        timings.push(started.elapsed());
    }
    let next = show(&timings);
    let started = Instant::now();
    let counts = store.job_counts(now, Duration::from_secs(300)).await?;
    let scan = started.elapsed();
    anyhow::ensure!(counts.total == total, "{} jobs counted", counts.total);
    println!(
        "{backend}: {total} jobs, {due} due (seeded in {seeded:.1?}): claim {BATCH}: {claim} | next_due_at: {next} \
         | reference: job_counts (full scan) {scan:.2?}"
    );
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

/// Tenants, each with a connected HubSpot connection, through the store.
async fn seed_tenants(store: &Store) -> anyhow::Result<()> {
    let now = Utc::now();
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
            scope: None,
            outcome: tributary::model::AuditOutcome::Ok,
            message: None,
            action: "tenant.create".into(),
            tenant_id: Some(id.clone()),
            subject: None,
            details: json!({}),
        };
        store.create_tenant(&state, &audit).await?;
        store.set_connection_status(&id, &hubspot, Owner::Company, ConnectionStatus::Connected, None).await?;
    }
    Ok(())
}

/// Replaces every job by `per_tenant` jobs per connection in one statement, with due
/// times spread over the next day except for `due` of them, spread over the past hour
/// (at least a second ago: SQLite's `%f` rounds to the millisecond).
async fn seed_jobs(url: &str, now: DateTime<Utc>, per_tenant: i64, due: i64) -> anyhow::Result<()> {
    let total = TENANTS as i64 * per_tenant;
    // Job n belongs to connection n / per_tenant + 1; due jobs are spread evenly.
    let every = (total / due).max(1);
    if url.starts_with("sqlite") {
        let mut conn = SqliteConnection::connect(url).await?;
        sqlx::query("DELETE FROM jobs").execute(&mut conn).await?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
             INSERT INTO jobs (tenant_id, connection_id, provider, stream, schedule, next_run_at, \
             created_at, updated_at) \
             SELECT c.tenant_id, c.id, 'hubspot', 's' || (n.i % $2), '1h', \
             strftime('%Y-%m-%dT%H:%M:%f+00:00', $3, CASE WHEN n.i % $4 = 0 \
             THEN '-' || (1 + n.i % 3600) || ' seconds' ELSE '+' || (1 + n.i % 86400) || ' seconds' END), $3, $3 \
             FROM n JOIN connections c ON c.id = n.i / $2 + 1",
        )
        .bind(total)
        .bind(per_tenant)
        .bind(now)
        .bind(every)
        .execute(&mut conn)
        .await?;
        // No `ANALYZE`: the store never runs it, so a daemon's SQLite file has no
        // statistics.
        conn.close().await?;
    } else {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query("DELETE FROM jobs").execute(&mut conn).await?;
        sqlx::query(
            "INSERT INTO jobs (tenant_id, connection_id, provider, stream, schedule, next_run_at, \
             created_at, updated_at) \
             SELECT c.tenant_id, c.id, 'hubspot', 's' || (n.i % $2), '1h', \
             CASE WHEN n.i % $4 = 0 THEN $3 - (1 + n.i % 3600) * interval '1 second' \
             ELSE $3 + (1 + n.i % 86400) * interval '1 second' END, $3, $3 \
             FROM generate_series(0, $1 - 1) AS n(i) JOIN connections c ON c.id = n.i / $2 + 1",
        )
        .bind(total)
        .bind(per_tenant)
        .bind(now)
        .bind(every)
        .execute(&mut conn)
        .await?;
        // As autovacuum leaves it: every table analyzed.
        sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
        conn.close().await?;
    }
    Ok(())
}
