//! Pipeline throughput against the database ceiling: the HubSpot simulator serving
//! `N` contacts on loopback → sync → mapped (to `employer`) → upserted, and in the same
//! run the references it is judged by:
//!
//! - **simulator ceiling**: the same pages read through the engine (HTTP + JSON parse +
//!   pagination) with nothing mapped or stored;
//! - **database ceiling**: the same mapped rows (mapped, serialized and hashed beforehand)
//!   written by a plain batched `INSERT` (one multi-row statement and one transaction per
//!   page, as the pipeline does), with no HTTP, mapping, serializing, hashing or
//!   existing-hash lookup;
//! - **no-change pass**: a second full-refresh sync where every row is unchanged.
//!
//! Per-stage wall times of the pipeline (fetch = HTTP + parse, map, store) come from
//! [`Syncer::stages`]. Each configuration runs `RUNS` times on a fresh database; medians
//! are printed.
//!
//! The simulator serves from a current-thread runtime on a thread of its own, so it
//! never runs on the measured runtime's workers; the CPU time of that thread and of
//! the whole process during the pipeline are printed (a simulator near 1.0 s of CPU per
//! second of wall time would be the bottleneck).
//!
//! `cargo bench --bench pipeline` (SQLite only) or
//! `cargo bench --bench pipeline -- postgres://user@host/db` (also PostgreSQL: scratch
//! databases `tributary_bench_<uuid>` are created on that server and dropped afterwards).
//! `PIPELINE_N` (default 200000) and `PIPELINE_RUNS` (default 3) override the size;
//! `PIPELINE_RESUME=none` (or `cursor`, `position`) overrides how the contacts stream
//! resumes, to measure what per-page position commits cost.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, QueryBuilder, SqliteConnection};
use tributary::config::{Catalog, ConfigDir, Manifest, ResumeMode};
use tributary::engine::StreamReader;
use tributary::http::auth::AuthState;
use tributary::http::{RetryPolicy, Session};
use tributary::mapping::{CompiledMapping, MapResult};
use tributary::model::{AuditEntry, Owner, ProviderId, RunOutcome, RunTrigger, StreamName, TenantId};
use tributary::secrets::{Credentials, MasterKey};
use tributary::store::Store;
use tributary::sync::{StageSnapshot, SyncRequest, Syncer};
use tributary::tenants::Tenants;
use tributary_simulator::{Provider, SimConfig, SimHandle};

#[path = "support/mod.rs"]
mod support;

const STREAM: &str = "contacts";
const ENTITY: &str = "employer";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("PIPELINE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let runs: usize = std::env::var("PIPELINE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let catalog = catalog()?;
    let sim = support::simulator_thread(SimConfig::new(Provider::HubSpot, n))?;
    println!("machine: {}", support::machine());
    println!("HubSpot simulator: {n} contacts, {runs} runs per backend");
    let pg = std::env::args().skip(1).find(|a| a.starts_with("postgres"));
    let mut backends = vec!["sqlite"];
    if pg.is_some() {
        backends.push("postgres");
    }
    for backend in backends {
        let mut results = Vec::new();
        for run in 0..runs {
            let dir = tempfile::tempdir()?;
            let (url, scratch) = match backend {
                "sqlite" => (format!("sqlite://{}", dir.path().join("bench.db").display()), None),
                _ => {
                    let server = pg.as_deref().unwrap_or_default();
                    let name = format!("tributary_bench_{}", uuid::Uuid::now_v7().simple());
                    let mut admin = PgConnection::connect(server).await?;
                    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
                    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
                    (format!("{base}/{name}"), Some((admin, name)))
                }
            };
            let result = measure(&catalog, &sim, &url, dir.path(), n).await;
            if let Some((mut admin, name)) = scratch {
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await?;
            }
            let m = result?;
            println!("{backend} run {run}: {}", m.line(n));
            results.push(m);
        }
        report(backend, n, &results);
    }
    sim.shutdown();
    Ok(())
}

/// One run's measurements.
#[derive(Debug, Clone, Copy)]
struct Measured {
    sim: Duration,
    pipeline: Duration,
    stages: StageSnapshot,
    no_change: Duration,
    no_change_stages: StageSnapshot,
    ceiling: Duration,
    /// CPU seconds of the simulator's thread and of the whole process during the pipeline.
    sim_cpu: f64,
    process_cpu: f64,
}

impl Measured {
    fn line(&self, n: u64) -> String {
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        format!(
            "simulator {:.0}/s, pipeline {:.0}/s ({:.1?}: fetch {:.1?}, map {:.1?}, store {:.1?}), \
             no-change {:.0}/s ({:.1?}: fetch {:.1?}, map {:.1?}, store {:.1?}), ceiling {:.0}/s; \
             pipeline/ceiling {:.2}; CPU during the pipeline: simulator thread {:.2} s/s, process {:.2} s/s",
            rate(self.sim),
            rate(self.pipeline),
            self.pipeline,
            self.stages.fetch,
            self.stages.map,
            self.stages.store,
            rate(self.no_change),
            self.no_change,
            self.no_change_stages.fetch,
            self.no_change_stages.map,
            self.no_change_stages.store,
            rate(self.ceiling),
            self.ceiling.as_secs_f64() / self.pipeline.as_secs_f64(),
            self.sim_cpu / self.pipeline.as_secs_f64(),
            self.process_cpu / self.pipeline.as_secs_f64(),
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(backend: &str, n: u64, results: &[Measured]) {
    let rate = |f: fn(&Measured) -> Duration| median(results.iter().map(|m| n as f64 / f(m).as_secs_f64()).collect());
    let ratio = |f: fn(&Measured) -> f64| median(results.iter().map(f).collect());
    let secs = |f: fn(&Measured) -> Duration| median(results.iter().map(|m| f(m).as_secs_f64()).collect());
    println!(
        "{backend} median of {}: simulator {:.0} rec/s | pipeline {:.0} rec/s (fetch {:.2} s, map {:.2} s, store {:.2} s) | \
         no-change pass {:.0} rec/s (store {:.2} s) | db ceiling {:.0} rec/s | pipeline/ceiling {:.2} | \
         pipeline/simulator {:.2} | no-change/ceiling {:.2} | CPU during the pipeline (s per s): simulator thread \
         {:.2}, process {:.2}",
        results.len(),
        rate(|m| m.sim),
        rate(|m| m.pipeline),
        secs(|m| m.stages.fetch),
        secs(|m| m.stages.map),
        secs(|m| m.stages.store),
        rate(|m| m.no_change),
        secs(|m| m.no_change_stages.store),
        rate(|m| m.ceiling),
        ratio(|m| m.ceiling.as_secs_f64() / m.pipeline.as_secs_f64()),
        ratio(|m| m.sim.as_secs_f64() / m.pipeline.as_secs_f64()),
        ratio(|m| m.ceiling.as_secs_f64() / m.no_change.as_secs_f64()),
        ratio(|m| m.sim_cpu / m.pipeline.as_secs_f64()),
        ratio(|m| m.process_cpu / m.pipeline.as_secs_f64()),
    );
}

/// The shipped catalog without rate limits (this measures throughput, not pacing).
fn catalog() -> anyhow::Result<Catalog> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut catalog = Catalog::load(&ConfigDir::Dir(repo.join("config")), None).map_err(|d| anyhow::anyhow!("{d}"))?;
    let resume: Option<ResumeMode> = match std::env::var("PIPELINE_RESUME").ok().as_deref() {
        None => None,
        Some("none") => Some(ResumeMode::None),
        Some("cursor") => Some(ResumeMode::Cursor),
        Some("position") => Some(ResumeMode::Position),
        Some(other) => anyhow::bail!("PIPELINE_RESUME: `{other}` is not none, cursor or position"),
    };
    let unlimited: Vec<_> = catalog
        .manifests
        .iter()
        .map(|m| {
            let mut m = Manifest { rate_limit: None, ..m.clone() };
            for spec in m.streams.values_mut() {
                spec.resume = resume.or(spec.resume);
            }
            m
        })
        .collect();
    for m in unlimited {
        catalog.manifests.insert(m);
    }
    Ok(catalog)
}

async fn create_tenant(catalog: &Catalog, store: &Store, dir: &Path, id: &str, sim: &SimHandle) -> anyhow::Result<()> {
    let file = dir.join(format!("{id}.toml"));
    std::fs::write(
        &file,
        format!(
            "id = \"{id}\"\nname = \"{id}\"\nsubdomain = \"{id}\"\npreset = \"aptem_hubspot\"\n\
             [providers.hubspot]\nbase_url = \"{}\"\n",
            sim.base_url()
        ),
    )?;
    let spec = catalog.tenant_file(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
    Tenants::new(catalog, store, "bench").create(&spec).await?;
    Ok(())
}

async fn measure(catalog: &Catalog, sim: &SimHandle, url: &str, dir: &Path, n: u64) -> anyhow::Result<Measured> {
    let store = Store::connect(url).await?;
    let key = MasterKey::generate();
    let tenant = TenantId::parse("acme")?;
    let provider = ProviderId::parse("hubspot")?;
    create_tenant(catalog, &store, dir, "acme", sim).await?;
    create_tenant(catalog, &store, dir, "ceiling", sim).await?;
    let creds = Credentials::from_json(sim.credentials().to_string().as_bytes())?;
    let audit = AuditEntry {
        at: chrono::Utc::now(),
        actor: "bench".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: "credentials.set".into(),
        tenant_id: Some(tenant.clone()),
        subject: Some(provider.to_string()),
        details: Value::Null,
    };
    let sealed = key.seal(&tenant, &provider, &creds.to_json());
    store.set_credentials(&tenant, &provider, Owner::Company, &sealed, &audit).await?;
    let manifest = catalog.manifests.get("hubspot").ok_or_else(|| anyhow::anyhow!("no hubspot manifest"))?;

    // Simulator ceiling: every page through the engine, nothing else.
    let started = Instant::now();
    let pages = read_pages(manifest, sim, &creds).await?;
    let sim_time = started.elapsed();
    anyhow::ensure!(pages.iter().map(Vec::len).sum::<usize>() as u64 == n, "the simulator served a short stream");

    // The pipeline, then the same again with nothing changed.
    let syncer = Syncer::new(catalog, &store, &key)?;
    let run = |full_refresh| SyncRequest {
        tenant: tenant.clone(),
        provider: provider.clone(),
        stream: StreamName::parse(STREAM).unwrap(),
        trigger: RunTrigger::Cli,
        full_refresh,
        lease_owner: None,
        cancel: None,
        owner: None,
    };
    let (threads, process_cpu) = (support::thread_cpu(), support::cpu_secs(std::process::id())?);
    let started = Instant::now();
    let row = syncer.run(&run(false), &mut |_, _| {}).await?;
    let pipeline = started.elapsed();
    let after = support::thread_cpu();
    println!(
        "  CPU during the pipeline by thread (s per s): {}",
        support::thread_cpu_share(&threads, &after, pipeline)
    );
    let sim_cpu = after.get("simulator").copied().unwrap_or(0.0) - threads.get("simulator").copied().unwrap_or(0.0);
    let process_cpu = support::cpu_secs(std::process::id())? - process_cpu;
    let stages = syncer.stages.snapshot();
    anyhow::ensure!(row.outcome == RunOutcome::Success, "pipeline run failed: {:?}", row.stats.error);
    anyhow::ensure!(row.stats.inserted as u64 == n, "inserted {} of {n}", row.stats.inserted);

    let started = Instant::now();
    let row = syncer.run(&run(true), &mut |_, _| {}).await?;
    let no_change = started.elapsed();
    let after = syncer.stages.snapshot();
    anyhow::ensure!(row.outcome == RunOutcome::Success, "no-change run failed: {:?}", row.stats.error);
    anyhow::ensure!(row.stats.unchanged as u64 == n, "unchanged {} of {n}", row.stats.unchanged);
    let no_change_stages = StageSnapshot {
        fetch: after.fetch - stages.fetch,
        map: after.map - stages.map,
        store: after.store - stages.store,
    };

    // Database ceiling: the same mapped rows, mapped and hashed before the clock starts.
    let entity = catalog.entities.get(ENTITY).ok_or_else(|| anyhow::anyhow!("no entity {ENTITY}"))?;
    let tenants = Tenants::new(catalog, &store, "bench");
    let view = tenants.require(&tenant).await?;
    let layer = &view.effective.providers[&provider].config;
    let empty = BTreeMap::new();
    let mapping =
        CompiledMapping::compile(entity, layer.mappings.get(ENTITY).unwrap_or(&empty), &layer.filters, &layer.tags)?;
    let mapped: Vec<Vec<(String, String, String)>> = pages
        .iter()
        .map(|page| {
            page.iter()
                .filter_map(|raw| match mapping.apply(raw) {
                    MapResult::Mapped(m) => {
                        let json = m.data.to_string();
                        let hash = hex::encode(&Sha256::digest(json.as_bytes())[..16]);
                        Some((m.external_id, json, hash))
                    }
                    _ => None,
                })
                .collect()
        })
        .collect();
    drop(pages);
    store.close().await;
    let ceiling = plain_insert(url, &mapped).await?;
    Ok(Measured { sim: sim_time, pipeline, stages, no_change, no_change_stages, ceiling, sim_cpu, process_cpu })
}

/// Every page of the stream, read through the engine with static credentials.
async fn read_pages(manifest: &Manifest, sim: &SimHandle, creds: &Credentials) -> anyhow::Result<Vec<Vec<Value>>> {
    let retry = RetryPolicy::default();
    let (client, token_client) = tributary::http::client(&retry)?;
    let mut session = Session {
        client,
        token_client,
        auth: AuthState::new(manifest.auth.clone(), creds.clone()),
        rules: manifest.responses.clone(),
        retry,
        stats: Default::default(),
        sink: None,
        quota: None,
        observer: None,
    };
    let mut vars = manifest.variables.clone();
    vars.insert("subdomain".into(), "acme".into());
    let stream = StreamName::parse(STREAM)?;
    let mut reader = StreamReader::new(manifest, &stream, &sim.base_url(), vars, None, true)?;
    let mut pages = Vec::new();
    while let Some(page) = reader.next_page(&mut session).await? {
        pages.push(page.records);
    }
    Ok(pages)
}

/// Inserts `pages` (external id, JSON text, hash) for tenant `ceiling`, one multi-row
/// statement and one transaction per page, on a plain connection; returns the elapsed
/// time. The JSON is serialized before the clock starts; the statement stays prepared
/// (as the store's does).
async fn plain_insert(url: &str, pages: &[Vec<(String, String, String)>]) -> anyhow::Result<Duration> {
    let now = chrono::Utc::now();
    macro_rules! insert_all {
        ($conn:expr, $db:ty, $json:literal) => {{
            let started = Instant::now();
            for page in pages {
                let mut tx = $conn.begin().await?;
                let mut qb = QueryBuilder::<$db>::new(
                    "INSERT INTO records (tenant_id, entity, provider, external_id, data, content_hash, \
                     first_seen, last_synced) ",
                );
                qb.push_values(page, |mut row, (id, data, hash)| {
                    row.push_bind("ceiling")
                        .push_bind(ENTITY)
                        .push_bind("hubspot")
                        .push_bind(id.as_str())
                        .push_bind(data.as_str())
                        .push_unseparated($json)
                        .push_bind(hash.as_str())
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.build().execute(&mut *tx).await?;
                tx.commit().await?;
            }
            started.elapsed()
        }};
    }
    if url.starts_with("sqlite") {
        let mut conn = SqliteConnection::connect(url).await?;
        // As the store's own connections are configured.
        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut conn).await?;
        Ok(insert_all!(conn, sqlx::Sqlite, ""))
    } else {
        let mut conn = PgConnection::connect(url).await?;
        Ok(insert_all!(conn, sqlx::Postgres, "::jsonb"))
    }
}
