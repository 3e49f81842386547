//! The idle daemon with many jobs: tenants on the `aptem_hubspot` preset are created in
//! a fresh SQLite store (no credentials, so nothing is claimable), their jobs are
//! reconciled from the configuration (timed), then `tributary run` (a child process)
//! starts on the store. After it has been up `SETTLE` seconds, the CPU time it uses over
//! `WINDOW` seconds is read from `/proc/<pid>/stat`, with its RSS (`VmRSS`, `VmHWM`).
//! Then the same again with every connection `connected` and every job due tomorrow
//! (runnable, nothing due). The reference measured in the same run: the time of one
//! `job_counts` full scan.
//!
//! The preset gives every tenant 4 jobs: `cargo bench --bench idle` runs 3,750 and 37,500
//! tenants (15,000 and 150,000 jobs); `cargo bench --bench idle -- 3750` picks sizes.
//! A PostgreSQL server URL among the arguments (`cargo bench --bench idle -- 37500
//! postgres://postgres@127.0.0.1:5432/test`) measures a scratch database there too.
//! `IDLE_WINDOW` (default 30) sets the window; `TRIBUTARY_BIN` runs another build of the
//! daemon (e.g. an older commit's) instead of this one's.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, SqliteConnection};

use tributary::app::reconcile;
use tributary::config::{Catalog, ConfigDir, TenantSpec};
use tributary::model::{PresetName, TenantId};
use tributary::store::Store;
use tributary::telemetry::Metrics;
use tributary::tenants::Tenants;

use support::Scratch;

const SETTLE: u64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![3_750, 37_500] } else { sizes };
    let window: u64 = std::env::var("IDLE_WINDOW").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = Catalog::load(&ConfigDir::Dir(repo.join("config")), None).map_err(|d| anyhow::anyhow!("{d}"))?;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    for (pg, tenants) in Scratch::backends().into_iter().flat_map(|pg| sizes.iter().map(move |n| (pg.clone(), *n))) {
        let scratch = Scratch::new(pg.as_deref()).await?;
        let (dir, url) = (&scratch.dir, scratch.url.clone());
        let backend = scratch.backend;
        let store = Store::connect(&url).await?;
        let started = Instant::now();
        let t = Tenants::new(&catalog, &store, "bench");
        for i in 0..tenants {
            let id = TenantId::parse(&format!("t{i:06}"))?;
            let spec = TenantSpec {
                id: id.clone(),
                name: format!("Tenant {i}"),
                subdomain: id.to_string(),
                preset: PresetName::parse("aptem_hubspot")?,
                timezone: "Europe/London".into(),
                overrides: Default::default(),
                roles: Default::default(),
            };
            t.create(&spec).await?;
        }
        let created = started.elapsed();
        let started = Instant::now();
        let rec = reconcile(&catalog, &store, false, Duration::from_secs(60), &Metrics::new()).await?;
        let reconciled = started.elapsed();
        let now = chrono::Utc::now();
        let started = Instant::now();
        let counts = store.job_counts(now, Duration::from_secs(300)).await?;
        let scan = started.elapsed();
        store.close().await;
        println!(
            "{backend}: {tenants} tenants created in {created:.1?}; reconciled {} jobs in {reconciled:.1?}; \
             job_counts {scan:.1?} ({} due)",
            rec.jobs.created, counts.due
        );

        let socket = dir.path().join("d.sock");
        // First as created (no credentials: no job can run), then with every connection
        // `connected` and every job due tomorrow (runnable, nothing due).
        for phase in ["no credentials", "connected, due tomorrow"] {
            if phase != "no credentials" {
                let tomorrow = chrono::Utc::now() + chrono::TimeDelta::days(1);
                let connected = "UPDATE connections SET status = 'connected'";
                let due = "UPDATE jobs SET next_run_at = $1";
                if pg.is_some() {
                    let mut conn = PgConnection::connect(&url).await?;
                    sqlx::query(connected).execute(&mut conn).await?;
                    sqlx::query(due).bind(tomorrow).execute(&mut conn).await?;
                    conn.close().await?;
                } else {
                    let mut conn = SqliteConnection::connect(&url).await?;
                    sqlx::query(connected).execute(&mut conn).await?;
                    sqlx::query(due).bind(tomorrow).execute(&mut conn).await?;
                    conn.close().await?;
                }
            }
            let _ = std::fs::remove_file(&socket);
            let bin = std::env::var("TRIBUTARY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tributary").into());
            let mut child = tokio::process::Command::new(bin)
                .args(["run", "--listen", "127.0.0.1:0", "--socket"])
                .arg(&socket)
                .env("TRIBUTARY_DATABASE_URL", &url)
                .env("TRIBUTARY_CONFIG", repo.join("config"))
                .env("TRIBUTARY_LOG", "warn")
                .kill_on_drop(true)
                .spawn()?;
            let pid = child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
            let started = Instant::now();
            while !socket.exists() {
                anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the daemon did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let ready = started.elapsed();
            let (_, startup_hwm) = rss_kb(pid)?;
            tokio::time::sleep(Duration::from_secs(SETTLE)).await;
            let before = cpu_ticks(pid)?;
            let wall = Instant::now();
            tokio::time::sleep(Duration::from_secs(window)).await;
            let used = (cpu_ticks(pid)? - before) as f64 / ticks_per_sec;
            let wall = wall.elapsed().as_secs_f64();
            let (rss, hwm) = rss_kb(pid)?;
            println!(
                "{backend}: {tenants} tenants ({phase}): daemon ready in {ready:.1?} (peak RSS then {:.1} MiB); idle over {wall:.0} s: \
                 {used:.2} s CPU ({:.2}% of one core); RSS {:.1} MiB (peak {:.1} MiB) | reference: job_counts {scan:.1?}",
                startup_hwm as f64 / 1024.0,
                100.0 * used / wall,
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0,
            );
            child.kill().await?;
            child.wait().await?;
        }
        scratch.drop_database().await?;
    }
    Ok(())
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// `VmRSS` and `VmHWM` of `pid`, in kB.
fn rss_kb(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}
