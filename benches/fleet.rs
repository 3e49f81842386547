//! The fleet at scale: `TENANTS` (default 10,000) tenants × 5 providers (HubSpot,
//! Salesforce, GitHub, GitLab, Asana) × 3 streams = 150,000 jobs on one PostgreSQL
//! database, run by 1, 2 and 4 replicas (`tributary run` child processes), each phase
//! starting from every job due (a backlog: the fleet is never idle). Run by hand; it takes
//! long and needs a PostgreSQL server:
//!
//! ```sh
//! cargo bench --bench fleet -- postgres://postgres@127.0.0.1:5432/postgres
//! TENANTS=1000 WINDOW_SECS=20 REPLICAS=1,4 cargo bench --bench fleet -- postgres://…
//! PGBOUNCER_POOL=20 cargo bench --bench fleet -- postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! With `PGBOUNCER_POOL` the bench starts a PgBouncer (Debian's `pgbouncer`, transaction
//! mode, that many server connections) in front of the same server: the replicas reach
//! the database through it (`[store] pooler = "pgbouncer"`, their wake-up listener
//! straight to the server through `listen_url`), the bench itself directly.
//!
//! The simulators run in this process, each on a thread of its own, with `LATENCY_MS`
//! (default 20) added to every response. HubSpot's quota is made one app quota
//! (`scope = "provider"`) of `HUBSPOT_LIMIT` (default 40) requests a second: the budget
//! the fleet shares (the replicas lease shares of it through the store). The caps:
//! `workers = 8` per replica, `fleet_workers = 24`,
//! `per_provider = 12`, `per_tenant = 2`; leases of 10 s renewed every 3 s.
//!
//! What it checks and prints, per phase, from the run rows and the simulators' own
//! request logs (not from the daemons' view of themselves):
//! - runs finished per second over `WINDOW_SECS` (default 30) and the daemons'
//!   `tributary_claim_duration_seconds` (mean, and the bucket under which 99 % fall);
//! - no job with two runs at once; the most runs at once fleet-wide, per provider and per
//!   tenant against the caps; HubSpot's most requests in any second against its quota and
//!   the share of it used;
//! - with 4 replicas: manual triggers sent to each replica in turn and the time until a
//!   run of that job starts (any replica); one replica killed with SIGKILL (how long until
//!   its runs are closed and their jobs run again elsewhere, against the lease time) and
//!   one restarted (SIGTERM, start again) while the others run: failed runs counted.

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::json;
use sqlx::postgres::PgPool;
use tokio::process::Child;
use tributary::model::{ProviderId, TenantId};
use tributary::secrets::MasterKey;
use tributary::store::Store;
use tributary::tenants::Tenants;
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle};

use support::Scratch;

const WORKERS: usize = 8;
const FLEET_WORKERS: usize = 24;
const PER_PROVIDER: usize = 12;
const PER_TENANT: usize = 2;
const LEASE_SECS: i64 = 10;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Sims {
    hubspot: SimHandle,
    salesforce: SimHandle,
    github: SimHandle,
    gitlab: SimHandle,
    asana: SimHandle,
}

impl Sims {
    fn start(latency: Duration) -> anyhow::Result<Self> {
        let sim = |p: Provider| {
            let faults = Faults::none().delay(latency);
            support::simulator_thread(SimConfig::new(p, 4).parents(1).faults(faults))
        };
        Ok(Self {
            hubspot: sim(Provider::HubSpot)?,
            salesforce: sim(Provider::Salesforce)?,
            github: sim(Provider::GitHub)?,
            gitlab: sim(Provider::GitLab)?,
            asana: sim(Provider::Asana)?,
        })
    }

    fn each(&self) -> [(&'static str, &SimHandle); 5] {
        [
            ("hubspot", &self.hubspot),
            ("salesforce", &self.salesforce),
            ("github", &self.github),
            ("gitlab", &self.gitlab),
            ("asana", &self.asana),
        ]
    }

    /// A tenant with the five providers on (Aptem, its preset's own, off), three streams
    /// each (Asana's workspaces, projects and tasks; its deletions feed off).
    fn tenant_toml(&self, id: &str) -> String {
        format!(
            "id = \"{id}\"\nname = \"{id}\"\nsubdomain = \"{id}\"\npreset = \"aptem\"\n\
             [providers.aptem]\nenabled = false\n\
             [providers.hubspot]\nenabled = true\nbase_url = \"{}\"\n\
             [providers.salesforce]\nenabled = true\nvariables = {{ login_url = \"{}\" }}\n\
             [providers.github]\nenabled = true\nbase_url = \"{}\"\n\
             [providers.gitlab]\nenabled = true\nbase_url = \"{}\"\n\
             [providers.asana]\nenabled = true\nbase_url = \"{}\"\n\
             variables = {{ auth_url = \"{}\" }}\n\
             [providers.asana.streams.task_deletions]\nenabled = false\n",
            self.hubspot.base_url(),
            self.salesforce.base_url(),
            self.github.base_url(),
            self.gitlab.api_base(),
            self.asana.api_base(),
            self.asana.base_url(),
        )
    }
}

struct Setup {
    dir: PathBuf,
    /// `tributary.toml`'s `[daemon]` keys (and `[store]` behind a pooler), less `replicas`.
    daemon: String,
    config: PathBuf,
    connectors: PathBuf,
    key_file: PathBuf,
    /// What the replicas connect to (the pooler when there is one).
    daemon_url: String,
}

/// One `tributary run`.
struct Replica {
    child: Child,
    socket: PathBuf,
    metrics: String,
    id: String,
}

impl Setup {
    async fn spawn(&self, name: &str) -> anyhow::Result<Replica> {
        let socket = self.dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&socket);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let bin = std::env::var("TRIBUTARY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tributary").into());
        let child = tokio::process::Command::new(bin)
            .args(["run", "--listen", &listen, "--socket"])
            .arg(&socket)
            .env("TRIBUTARY_DATABASE_URL", &self.daemon_url)
            .env("TRIBUTARY_CONFIG", &self.config)
            .env("TRIBUTARY_CONNECTORS", &self.connectors)
            .env("TRIBUTARY_MASTER_KEY_FILE", &self.key_file)
            .env("TRIBUTARY_LOG", "warn")
            .stdout(std::fs::File::create(self.dir.join(format!("{name}.log")))?)
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.err")))?)
            .kill_on_drop(true)
            .spawn()?;
        let started = Instant::now();
        while !socket.exists() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "replica {name} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = support::control(&socket, json!({"v": 1, "cmd": "status"})).await?;
        let id = status["replicas"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["this"] == true))
            .and_then(|r| r["id"].as_str())
            .unwrap_or_default()
            .to_owned();
        Ok(Replica { child, socket, metrics: format!("http://{listen}/metrics"), id })
    }
}

impl Replica {
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // SIGTERM: drain.
            unsafe_kill(pid, 15);
        }
        tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            unsafe_kill(pid, 9);
        }
    }
}

/// `kill(1)`: the bench has no signal crate of its own.
fn unsafe_kill(pid: u32, signal: i32) {
    let _ = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = support::pg_server().ok_or_else(|| anyhow::anyhow!("name a PostgreSQL server: postgres://…"))?;
    let tenants: usize = env_or("TENANTS", 10_000);
    let window = Duration::from_secs(env_or("WINDOW_SECS", 30));
    let latency = Duration::from_millis(env_or("LATENCY_MS", 20));
    let hubspot_limit: u32 = env_or("HUBSPOT_LIMIT", 40);
    let replicas: Vec<usize> = std::env::var("REPLICAS")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let pool_size: Option<u32> = std::env::var("PGBOUNCER_POOL").ok().and_then(|v| v.parse().ok());
    println!("machine: {}", support::machine());
    println!(
        "{tenants} tenants × 5 providers × 3 streams; latency {latency:?}; HubSpot app quota {hubspot_limit}/s; \
         caps: workers {WORKERS} per replica, fleet {FLEET_WORKERS}, per provider {PER_PROVIDER}, per tenant {PER_TENANT}; \
         store {}",
        pool_size.map_or_else(|| "direct".to_owned(), |n| format!("through PgBouncer (pool {n})"))
    );

    let sims = Sims::start(latency)?;
    let scratch = Scratch::postgres(&server).await?;
    let dir = scratch.dir.path().to_path_buf();
    let connectors = support::connectors_dir(
        &dir,
        "hubspot",
        Some(&format!("requests = {hubspot_limit}\nper_secs = 1\nscope = \"provider\"\n")),
    )?;
    let mut daemon = format!(
        "workers = {WORKERS}\nfleet_workers = {FLEET_WORKERS}\nper_provider = {PER_PROVIDER}\nper_tenant = {PER_TENANT}\n\
         lease_secs = {LEASE_SECS}\nheartbeat_secs = 3\n"
    );
    let bouncer = match pool_size {
        Some(n) => Some(PgBouncer::start(&dir, &server, n)?),
        None => None,
    };
    let daemon_url = match &bouncer {
        Some(b) => {
            let name = scratch.url.rsplit_once('/').map_or("", |(_, n)| n);
            daemon.push_str(&format!("[store]\npooler = \"pgbouncer\"\nlisten_url = \"{}\"\n", scratch.url));
            format!("postgres://postgres@127.0.0.1:{}/{name}", b.port)
        }
        None => scratch.url.clone(),
    };
    let config = support::config_dir(&dir, &daemon)?;
    let catalog = support::catalog(&config, &connectors)?;
    let (key, key_file) = support::master_key(&dir)?;
    let store = Store::connect(&scratch.url).await?;
    let pool = PgPool::connect(&scratch.url).await?;

    let started = Instant::now();
    create_tenants(&catalog, &store, &key, &dir, &sims, tenants).await?;
    let created = started.elapsed();
    let started = Instant::now();
    tributary::app::reconcile(&catalog, &store, false, Duration::from_secs(60), &tributary::telemetry::Metrics::new())
        .await?;
    let (jobs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE enabled").fetch_one(&pool).await?;
    println!("{tenants} tenants created in {created:.1?}, their {jobs} jobs reconciled in {:.1?}", started.elapsed());
    sqlx::query("ANALYZE").execute(&pool).await?;
    let setup = Setup { dir: dir.clone(), daemon, config, connectors, key_file, daemon_url };

    let mut failures = Vec::new();
    for &n in &replicas {
        match phase(&setup, &pool, &sims, n, window, hubspot_limit, n == 4).await {
            Ok(problems) => failures.extend(problems),
            Err(e) => failures.push(format!("{n} replicas: {e:#}")),
        }
    }
    store.close().await;
    pool.close().await;
    drop(bouncer);
    scratch.drop_database().await?;
    if failures.is_empty() {
        println!("every check held");
        Ok(())
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        anyhow::bail!("{} checks failed", failures.len())
    }
}

async fn create_tenants(
    catalog: &tributary::config::Catalog,
    store: &Store,
    key: &MasterKey,
    dir: &Path,
    sims: &Sims,
    n: usize,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            let id = format!("t{i:05}");
            let file = dir.join(format!("{id}.toml"));
            std::fs::write(&file, sims.tenant_toml(&id))?;
            let spec = catalog.tenant_file(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
            std::fs::remove_file(&file)?;
            Tenants::new(catalog, store, "bench").create(&spec).await?;
            let tenant = TenantId::parse(&id)?;
            for (provider, sim) in sims.each() {
                let creds = match provider {
                    "hubspot" | "salesforce" | "asana" => sim.oauth_credentials().unwrap_or_else(|| sim.credentials()),
                    _ => sim.credentials(),
                };
                support::set_credentials(store, key, &tenant, &ProviderId::parse(provider)?, &creds).await?;
            }
            Ok(())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A run as the bench reads it.
#[derive(sqlx::FromRow)]
struct Run {
    tenant_id: String,
    job_id: i64,
    provider: String,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    outcome: String,
    replica: Option<String>,
}

async fn runs_since(pool: &PgPool, since: DateTime<Utc>) -> anyhow::Result<Vec<Run>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, job_id, provider, started_at, finished_at, outcome, replica \
         FROM runs WHERE started_at >= $1",
    )
    .bind(since)
    .fetch_all(pool)
    .await?)
}

/// The most intervals open at once, by `key`.
fn peaks<K: std::hash::Hash + Eq + Clone + Ord>(runs: &[Run], key: impl Fn(&Run) -> K) -> BTreeMap<K, usize> {
    let mut events: HashMap<K, Vec<(DateTime<Utc>, i32)>> = HashMap::new();
    let now = Utc::now();
    for r in runs {
        let e = events.entry(key(r)).or_default();
        e.push((r.started_at, 1));
        e.push((r.finished_at.unwrap_or(now), -1));
    }
    events
        .into_iter()
        .map(|(k, mut e)| {
            // An end before a start at the same instant.
            e.sort();
            let (mut now, mut best) = (0i32, 0i32);
            for (_, d) in e {
                now += d;
                best = best.max(now);
            }
            (k, best as usize)
        })
        .collect()
}

/// Jobs with two runs open at once.
fn overlaps(runs: &[Run]) -> usize {
    let mut by_job: HashMap<i64, Vec<&Run>> = HashMap::new();
    for r in runs {
        by_job.entry(r.job_id).or_default().push(r);
    }
    let now = Utc::now();
    let mut n = 0;
    for rs in by_job.values_mut() {
        rs.sort_by_key(|r| r.started_at);
        if rs.windows(2).any(|w| w[1].started_at < w[0].finished_at.unwrap_or(now)) {
            n += 1;
        }
    }
    n
}

/// Mean and 99th-percentile bucket bound of the daemons' claim durations.
async fn claim_latency(metrics: &[String]) -> (f64, f64) {
    let client = reqwest::Client::new();
    let (mut sum, mut count) = (0.0, 0.0);
    let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
    for url in metrics {
        let Ok(text) = client.get(url).send().await.and_then(|r| r.error_for_status()) else { continue };
        let Ok(text) = text.text().await else { continue };
        for line in text.lines() {
            let value = || line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            if line.starts_with("tributary_claim_duration_seconds_sum") {
                sum += value();
            } else if line.starts_with("tributary_claim_duration_seconds_count") {
                count += value();
            } else if let Some(rest) = line.strip_prefix("tributary_claim_duration_seconds_bucket{le=\"") {
                let le = rest.split('"').next().unwrap_or_default().to_owned();
                *buckets.entry(le).or_default() += value();
            }
        }
    }
    let mut bounds: Vec<(f64, f64)> =
        buckets.into_iter().map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), n)).collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p99 = bounds.iter().find(|(_, n)| *n >= 0.99 * count).map_or(f64::NAN, |(le, _)| *le);
    (if count > 0.0 { sum / count } else { f64::NAN }, p99)
}

/// HubSpot's most data requests in any one-second window between `from` and `to`, and
/// the share of its quota used over that time.
fn hubspot_budget(sims: &Sims, from: Instant, to: Instant, limit: u32) -> (usize, f64) {
    let times: Vec<Instant> =
        sims.hubspot.data_request_times().into_iter().filter(|t| *t >= from && *t <= to).collect();
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    let secs = to.duration_since(from).as_secs_f64();
    (most, times.len() as f64 / (f64::from(limit) * secs))
}

async fn phase(
    setup: &Setup,
    pool: &PgPool,
    sims: &Sims,
    n: usize,
    window: Duration,
    hubspot_limit: u32,
    behaviours: bool,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let (keys, store) = setup.daemon.split_once("[store]").map_or((setup.daemon.as_str(), ""), |(k, s)| (k, s));
    let store = if store.is_empty() { String::new() } else { format!("[store]{store}") };
    std::fs::write(
        setup.config.join("tributary.toml"),
        format!("[daemon]\napply_tenant_files = false\n{keys}{store}"),
    )?;
    // Every job due, no lease: a backlog.
    sqlx::query(
        "UPDATE jobs SET next_run_at = now() - interval '1 minute', lease_owner = NULL, lease_expires_at = NULL \
         WHERE enabled",
    )
    .execute(pool)
    .await?;
    let since = Utc::now();
    let starting = Instant::now();
    let mut fleet = Vec::new();
    for i in 0..n {
        fleet.push(setup.spawn(&format!("r{n}-{i}")).await?);
    }
    println!("{n} replicas: ready in {:.1?}", starting.elapsed());
    let t0 = Utc::now();
    let i0 = Instant::now();
    tokio::time::sleep(window).await;
    let t1 = Utc::now();
    let i1 = Instant::now();
    let metrics: Vec<String> = fleet.iter().map(|r| r.metrics.clone()).collect();
    let (claim_mean, claim_p99) = claim_latency(&metrics).await;
    let runs = runs_since(pool, since).await?;
    let done = runs.iter().filter(|r| r.finished_at.is_some_and(|f| f >= t0 && f <= t1)).count();
    let (hub_most, hub_used) = hubspot_budget(sims, i0, i1, hubspot_limit);
    println!(
        "{n} replicas: {done} runs finished in {window:?} ({:.1} runs/s); claim mean {:.2} ms, 99 % under {:.1} ms; \
         HubSpot: at most {hub_most} requests in a second (quota {hubspot_limit}), {:.0} % of it used",
        done as f64 / window.as_secs_f64(),
        claim_mean * 1e3,
        claim_p99 * 1e3,
        hub_used * 100.0
    );
    if hub_most > hubspot_limit as usize {
        problems.push(format!("{n} replicas: HubSpot saw {hub_most} requests in a second (quota {hubspot_limit})"));
    }

    let mut killed = None;
    if behaviours {
        let (found, victim) = behave(setup, pool, &mut fleet).await?;
        problems.extend(found);
        killed = Some(victim);
    }
    for r in fleet {
        r.stop().await?;
    }
    let mut runs = runs_since(pool, since).await?;
    // The killed replica's runs ended when it died, not when another replica closed
    // their rows (after their leases expired): counted open until then, they would
    // overlap the runs that took their places.
    if let Some((victim, dead_at)) = &killed {
        for r in runs.iter_mut().filter(|r| r.replica.as_deref() == Some(victim.as_str())) {
            if r.finished_at.is_none_or(|f| f > *dead_at) {
                r.finished_at = Some((*dead_at).max(r.started_at));
            }
        }
    }
    let per_replica: BTreeMap<String, usize> = runs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.replica.clone().unwrap_or_default()).or_default() += 1;
        m
    });
    let global = peaks(&runs, |_| ()).into_values().max().unwrap_or(0);
    let per_provider = peaks(&runs, |r| r.provider.clone());
    let per_tenant = peaks(&runs, |r| r.tenant_id.clone()).into_values().max().unwrap_or(0);
    let double = overlaps(&runs);
    let failed = runs.iter().filter(|r| r.outcome == "failed").count();
    let outcomes: BTreeMap<&str, usize> = runs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.outcome.as_str()).or_default() += 1;
        m
    });
    println!(
        "{n} replicas: {} runs in all ({outcomes:?}), by replica {:?}; at most {global} at once (fleet cap \
         {FLEET_WORKERS}), per provider {per_provider:?} (cap {PER_PROVIDER}), per tenant {per_tenant} (cap \
         {PER_TENANT}); jobs run twice at once: {double}; failed runs: {failed}",
        runs.len(),
        per_replica.values().collect::<Vec<_>>(),
    );
    if double > 0 {
        problems.push(format!("{n} replicas: {double} jobs ran twice at once"));
    }
    if global > FLEET_WORKERS.min(n * WORKERS) {
        problems.push(format!("{n} replicas: {global} runs at once"));
    }
    if let Some((p, most)) = per_provider.iter().find(|(_, m)| **m > PER_PROVIDER) {
        problems.push(format!("{n} replicas: {most} {p} runs at once"));
    }
    if per_tenant > PER_TENANT {
        problems.push(format!("{n} replicas: {per_tenant} runs of one tenant at once"));
    }
    if failed > 0 {
        problems.push(format!("{n} replicas: {failed} runs failed"));
    }
    Ok(problems)
}

/// A SIGKILL and a rolling restart with the fleet busy, then triggers through each replica
/// of the idle fleet.
/// A replica killed with SIGKILL: its id and when it was dead.
type Killed = (String, DateTime<Utc>);

async fn behave(setup: &Setup, pool: &PgPool, fleet: &mut Vec<Replica>) -> anyhow::Result<(Vec<String>, Killed)> {
    let mut problems = Vec::new();
    // SIGKILL one replica with runs in flight.
    let victim = fleet.remove(1);
    let mut victim = victim;
    let killed_at = Utc::now();
    victim.kill();
    let _ = victim.child.wait().await;
    let dead_at = Utc::now();
    let held: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM jobs WHERE lease_owner = $1").bind(&victim.id).fetch_all(pool).await?;
    let waited = Instant::now();
    let reclaimed = loop {
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM runs WHERE replica = $1 AND outcome = 'running'")
            .bind(&victim.id)
            .fetch_one(pool)
            .await?;
        let (still,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE lease_owner = $1").bind(&victim.id).fetch_one(pool).await?;
        if left == 0 && still == 0 {
            break Some(waited.elapsed());
        }
        if waited.elapsed() > Duration::from_secs(120) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    match reclaimed {
        Some(after) => {
            println!(
                "4 replicas: SIGKILL of a replica holding {} leases: its runs closed and leases free {:.1} s later \
                 (lease {LEASE_SECS} s)",
                held.len(),
                after.as_secs_f64()
            );
            if after > Duration::from_secs(LEASE_SECS as u64 + 10) {
                problems.push(format!("the killed replica's leases took {after:?}"));
            }
        }
        None => problems.push("the killed replica's runs were never closed".into()),
    }
    let abandoned: Vec<(String,)> =
        sqlx::query_as("SELECT outcome FROM runs WHERE replica = $1 AND finished_at >= $2 AND outcome <> 'success'")
            .bind(&victim.id)
            .bind(killed_at)
            .fetch_all(pool)
            .await?;
    println!("4 replicas: the killed replica's open runs were closed as {abandoned:?}");

    // A rolling restart of another replica: SIGTERM (drain), start again.
    let restarted = fleet.remove(1);
    let restart_at = Utc::now();
    restarted.stop().await?;
    fleet.push(setup.spawn("r4-restarted").await?);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (failed,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM runs WHERE started_at >= $1 AND outcome = 'failed'")
        .bind(restart_at)
        .fetch_one(pool)
        .await?;
    println!("4 replicas: rolling restart of one replica: {failed} failed runs since");
    if failed > 0 {
        problems.push(format!("{failed} runs failed across the rolling restart"));
    }

    // The backlog put off (what runs, ends): triggers then meet an idle fleet, whose
    // replicas sleep until told — the wake-up is what is measured, not a wait for a
    // free worker or a cap.
    sqlx::query("UPDATE jobs SET next_run_at = now() + interval '1 day' WHERE enabled AND lease_owner IS NULL")
        .execute(pool)
        .await?;
    let quiet = Instant::now();
    loop {
        let (running,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM runs WHERE outcome = 'running'").fetch_one(pool).await?;
        if running == 0 || quiet.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Triggers: a job of a different tenant each time, sent to replica k % n.
    let mut waits = Vec::new();
    let (jobs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE enabled").fetch_one(pool).await?;
    for k in 0..20usize {
        let (job, tenant, provider, stream): (i64, String, String, String) = sqlx::query_as(
            "SELECT id, tenant_id, provider, stream FROM jobs WHERE enabled AND lease_owner IS NULL \
             ORDER BY id OFFSET $1 LIMIT 1",
        )
        .bind((k as i64 * 7_919) % (jobs / 2).max(1))
        .fetch_one(pool)
        .await?;
        let replica = &fleet[k % fleet.len()];
        let sent = Utc::now();
        support::control(
            &replica.socket,
            json!({"v": 1, "cmd": "trigger", "tenant": tenant, "provider": provider, "stream": stream}),
        )
        .await?;
        let waited = Instant::now();
        let started = loop {
            let first: Option<(DateTime<Utc>,)> = sqlx::query_as(
                "SELECT started_at FROM runs WHERE job_id = $1 AND \"trigger\" = 'manual' AND started_at >= $2 \
                 ORDER BY started_at LIMIT 1",
            )
            .bind(job)
            .bind(sent)
            .fetch_optional(pool)
            .await?;
            if let Some((at,)) = first {
                break Some(at);
            }
            if waited.elapsed() > Duration::from_secs(30) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        match started {
            Some(at) => waits.push((at - sent).to_std().unwrap_or_default().as_secs_f64()),
            None => problems.push(format!("the trigger of job {job} through replica {k} never ran")),
        }
    }
    waits.sort_by(f64::total_cmp);
    println!(
        "4 replicas: {} triggers, each through the next replica: run started after median {:.0} ms, max {:.0} ms",
        waits.len(),
        support::median(&waits) * 1e3,
        waits.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    if waits.iter().any(|w| *w > 1.0) {
        problems.push(format!("a trigger waited {:.2} s", waits.last().copied().unwrap_or_default()));
    }

    Ok((problems, (victim.id.clone(), dead_at)))
}

/// A PgBouncer in transaction mode on a free port, in front of `server`; killed on drop.
struct PgBouncer {
    child: std::process::Child,
    port: u16,
}

impl PgBouncer {
    fn start(dir: &Path, server: &str, pool: u32) -> anyhow::Result<Self> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let options: sqlx::postgres::PgConnectOptions = server.parse()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let home = dir.join("pgbouncer");
        std::fs::create_dir_all(&home)?;
        let users = home.join("userlist.txt");
        std::fs::write(&users, format!("\"{}\" \"\"\n", options.get_username()))?;
        let ini = home.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={} port={}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = {pool}\nmax_db_connections = {pool}\nmax_client_conn = 1000\n",
                options.get_host(),
                options.get_port(),
                users.display()
            ),
        )?;
        let bin = if Path::new("/usr/sbin/pgbouncer").is_file() { "/usr/sbin/pgbouncer" } else { "pgbouncer" };
        let mut cmd = std::process::Command::new(bin);
        // PgBouncer refuses to run as root.
        if std::fs::metadata("/proc/self")?.uid() == 0 {
            for path in [dir, home.as_path()] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            }
            for path in [&ini, &users] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
            }
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd.arg(&ini).stderr(std::fs::File::create(home.join("pgbouncer.log"))?).spawn()?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "pgbouncer did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, port })
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
