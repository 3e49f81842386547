//! What the benchmarks share: scratch stores on SQLite and PostgreSQL, a configuration
//! and connectors directory for a child daemon, the simulator on a runtime of its own,
//! tenants connected to a simulator, process CPU and memory, and medians.
//!
//! Each bench binary includes this file (`#[path = "support/mod.rs"] mod support;`) and
//! uses a part of it.
#![allow(dead_code)]

/// The allocator of the `tributary` binary (`src/main.rs`), so the library runs here as
/// it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tributary::config::{Catalog, ConfigDir};
use tributary::model::{AuditEntry, ProviderId, TenantId};
use tributary::secrets::{Credentials, MasterKey};
use tributary::store::Store;
use tributary::tenants::Tenants;
use tributary_simulator::{SimConfig, SimHandle};

/// The repository (where `config/` and `connectors/` are).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The PostgreSQL server named on the command line (`postgres://…`), if any.
pub fn pg_server() -> Option<String> {
    std::env::args().skip(1).find(|a| a.starts_with("postgres"))
}

/// A store to measure on: a SQLite file in a temporary directory, or a scratch
/// PostgreSQL database dropped by [`Scratch::drop_database`].
pub struct Scratch {
    pub backend: &'static str,
    pub url: String,
    pub dir: tempfile::TempDir,
    admin: Option<(PgConnection, String)>,
}

impl Scratch {
    pub async fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        Ok(Self { backend: "sqlite", url, dir, admin: None })
    }

    /// A fresh database `tributary_bench_<uuid>` on `server`.
    pub async fn postgres(server: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let name = format!("tributary_bench_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(server).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
        let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
        Ok(Self { backend: "postgres", url: format!("{base}/{name}"), dir, admin: Some((admin, name)) })
    }

    /// SQLite, then PostgreSQL when a server is named on the command line.
    pub fn backends() -> Vec<Option<String>> {
        let mut out = vec![None];
        if let Some(pg) = pg_server() {
            out.push(Some(pg));
        }
        out
    }

    pub async fn new(pg: Option<&str>) -> anyhow::Result<Self> {
        match pg {
            None => Self::sqlite().await,
            Some(server) => Self::postgres(server).await,
        }
    }

    pub async fn drop_database(self) -> anyhow::Result<()> {
        if let Some((mut admin, name)) = self.admin {
            sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut admin)
                .await?;
        }
        Ok(())
    }
}

/// Copies the shipped connectors into `dir/connectors`, with the rate limit of
/// `provider` replaced by `rate_limit` (a TOML table body) or removed (`None`).
pub fn connectors_dir(dir: &Path, provider: &str, rate_limit: Option<&str>) -> anyhow::Result<PathBuf> {
    let out = dir.join("connectors");
    std::fs::create_dir_all(&out)?;
    for entry in std::fs::read_dir(repo().join("connectors"))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_owned();
        let mut text = std::fs::read_to_string(&path)?;
        if path.file_stem().is_some_and(|s| s == provider) {
            let mut doc: toml::Table = text.parse()?;
            doc.remove("rate_limit");
            if let Some(limit) = rate_limit {
                doc.insert("rate_limit".into(), toml::Value::Table(limit.parse()?));
            }
            text = toml::to_string(&doc)?;
        }
        std::fs::write(out.join(name), text)?;
    }
    Ok(out)
}

/// A configuration directory in `dir/config`: the shipped presets and entities, no
/// tenant files, and `tributary.toml` with `daemon` as its `[daemon]` table.
pub fn config_dir(dir: &Path, daemon: &str) -> anyhow::Result<PathBuf> {
    let out = dir.join("config");
    std::fs::create_dir_all(&out)?;
    for file in ["presets.toml", "entities.toml"] {
        std::fs::copy(repo().join("config").join(file), out.join(file))?;
    }
    std::fs::write(out.join("tributary.toml"), format!("[daemon]\napply_tenant_files = false\n{daemon}\n"))?;
    Ok(out)
}

/// Loads the catalog from a configuration and a connectors directory.
pub fn catalog(config: &Path, connectors: &Path) -> anyhow::Result<Catalog> {
    Catalog::load(&ConfigDir::Dir(config.to_path_buf()), Some(connectors)).map_err(|d| anyhow::anyhow!("{d}"))
}

/// A master key, also written to `dir/master-key` (64 hex digits) for a child daemon.
pub fn master_key(dir: &Path) -> anyhow::Result<(MasterKey, PathBuf)> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    let path = dir.join("master-key");
    std::fs::write(&path, hex::encode(bytes))?;
    // tributary refuses a key file other users may read.
    std::fs::set_permissions(&path, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))?;
    Ok((MasterKey::from_bytes(bytes), path))
}

/// Starts `config` on a current-thread runtime on a thread of its own, so the simulator
/// never runs on (or waits for) the measured runtime's workers. It stops with the
/// process or on [`SimHandle::shutdown`].
pub fn simulator_thread(config: SimConfig) -> anyhow::Result<SimHandle> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("simulator".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let handle = tributary_simulator::start(config).await;
            let serving = handle.as_ref().ok().cloned();
            let _ = tx.send(handle);
            // Serve until the process ends (or the handle is shut down).
            std::future::pending::<()>().await;
            drop(serving);
        });
    })?;
    Ok(rx.recv()??)
}

/// HubSpot's rate limit as its manifest ships it: 110 requests per 10 s.
pub const SHIPPED_LIMIT: (u32, u32) = (110, 10);

/// A catalog whose HubSpot manifest has `limit` (requests, seconds; `None`: none,
/// [`SHIPPED_LIMIT`]: the manifest as shipped), a store at `url` and tenant `acme`
/// connected to `sim`: what the rate-limit benches measure against.
pub async fn limited_hubspot(
    dir: &Path,
    url: &str,
    sim: &SimHandle,
    limit: Option<(u32, u32)>,
) -> anyhow::Result<(Catalog, Store, MasterKey)> {
    let connectors = match limit {
        Some(shipped) if shipped == SHIPPED_LIMIT => connectors_dir(dir, "-", None)?,
        Some((n, per)) => connectors_dir(dir, "hubspot", Some(&format!("requests = {n}\nper_secs = {per}\n")))?,
        None => connectors_dir(dir, "hubspot", None)?,
    };
    let config = config_dir(dir, "")?;
    let catalog = catalog(&config, &connectors)?;
    let (key, _) = master_key(dir)?;
    let store = Store::connect(url).await?;
    hubspot_tenant(&catalog, &store, &key, dir, "acme", sim).await?;
    Ok((catalog, store, key))
}

/// Creates tenant `id` on the `aptem_hubspot` preset with HubSpot at `sim`, and stores
/// the simulator's HubSpot credentials for it (its Aptem connection stays without
/// credentials, so its Aptem jobs never run).
pub async fn hubspot_tenant(
    catalog: &Catalog,
    store: &Store,
    key: &MasterKey,
    dir: &Path,
    id: &str,
    sim: &SimHandle,
) -> anyhow::Result<()> {
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
    std::fs::remove_file(&file)?;
    set_credentials(store, key, &TenantId::parse(id)?, &ProviderId::parse("hubspot")?, &sim.credentials()).await
}

/// Seals `credentials` for the tenant's connection to `provider` and stores them, as
/// `tributary credentials set` does.
pub async fn set_credentials(
    store: &Store,
    key: &MasterKey,
    tenant: &TenantId,
    provider: &ProviderId,
    credentials: &serde_json::Value,
) -> anyhow::Result<()> {
    let creds = Credentials::from_json(credentials.to_string().as_bytes())?;
    let audit = AuditEntry {
        at: chrono::Utc::now(),
        actor: "bench".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: "credentials.set".into(),
        tenant_id: Some(tenant.clone()),
        subject: Some(provider.to_string()),
        details: serde_json::Value::Null,
    };
    let sealed = key.seal(tenant, provider, &creds.to_json());
    store.set_credentials(tenant, provider, tributary::model::Owner::Company, &sealed, &audit).await?;
    Ok(())
}

/// `tributary run` as a child process on `url`, with its control socket at
/// `dir/d.sock`; returns once the socket answers.
pub async fn spawn_daemon(
    dir: &Path,
    url: &str,
    config: &Path,
    connectors: &Path,
    key_file: &Path,
) -> anyhow::Result<(tokio::process::Child, PathBuf)> {
    spawn_daemon_on(dir, url, config, connectors, key_file, "127.0.0.1:0").await
}

/// As [`spawn_daemon`], its HTTP server on `listen`.
pub async fn spawn_daemon_on(
    dir: &Path,
    url: &str,
    config: &Path,
    connectors: &Path,
    key_file: &Path,
    listen: &str,
) -> anyhow::Result<(tokio::process::Child, PathBuf)> {
    let socket = dir.join("d.sock");
    let bin = std::env::var("TRIBUTARY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tributary").into());
    let child = tokio::process::Command::new(bin)
        .args(["run", "--listen", listen, "--socket"])
        .arg(&socket)
        .env("TRIBUTARY_DATABASE_URL", url)
        .env("TRIBUTARY_CONFIG", config)
        .env("TRIBUTARY_CONNECTORS", connectors)
        .env("TRIBUTARY_MASTER_KEY_FILE", key_file)
        .env("TRIBUTARY_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let started = std::time::Instant::now();
    while !socket.exists() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the daemon did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((child, socket))
}

/// Sends one control request (`{"v": 1, "cmd": …}` plus `fields`) and returns its data.
pub async fn control(socket: &Path, request: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let request = serde_json::from_value(request)?;
    let reply = tributary::control::client::call(socket, &request).await.map_err(|e| anyhow::anyhow!(e))?;
    anyhow::ensure!(reply.ok, "control request refused: {}", reply.error.unwrap_or_default());
    Ok(reply.data.unwrap_or_default())
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0) // USER_HZ on Linux
}

/// `VmRSS` and `VmHWM` of `pid`, in kB.
pub fn rss_kb(pid: u32) -> anyhow::Result<(u64, u64)> {
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

/// The value at quantile `q` (0.5: median) of `v`, nearest rank.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// The machine, for the figures' context.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu}), Linux {}", kernel.trim())
}

/// CPU seconds used so far by this process's threads, summed by thread name (the
/// main thread carries the program's name).
pub fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(comm.trim().to_owned()).or_default() += (ticks(11) + ticks(12)) as f64 / 100.0;
    }
    out
}

/// CPU seconds used so far by this process's threads named `name` (e.g. `simulator`).
pub fn thread_cpu_secs(name: &str) -> f64 {
    thread_cpu().get(name).copied().unwrap_or(0.0)
}

/// What each thread name used between two readings of [`thread_cpu`], per second of
/// `wall`, as `name 0.42, …` (threads that used less than 1% left out).
pub fn thread_cpu_share(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    wall: Duration,
) -> String {
    let mut parts = Vec::new();
    for (name, a) in after {
        let used = (a - before.get(name).copied().unwrap_or(0.0)) / wall.as_secs_f64();
        if used >= 0.01 {
            parts.push(format!("{name} {used:.2}"));
        }
    }
    parts.join(", ")
}

/// Tenant `id` on the `aptem_hubspot` preset with its HubSpot connection and `deals` job,
/// made straight in the store (no configuration files); returns the tenant and the job id.
pub async fn hubspot_deals_job(store: &Store, id: &str) -> anyhow::Result<(TenantId, i64)> {
    use tributary::model::{Owner, PresetName, StreamName};
    use tributary::store::TenantState;
    let tenant = TenantId::parse(id)?;
    let hubspot = ProviderId::parse("hubspot")?;
    let state = TenantState {
        id: tenant.clone(),
        name: id.into(),
        subdomain: id.into(),
        timezone: "Europe/London".into(),
        preset: PresetName::parse("aptem_hubspot")?,
        preset_revision: "bench".into(),
        preset_snapshot: serde_json::json!({}),
        overrides: vec![],
        enabled_providers: vec![hubspot.clone()],
    };
    let audit = AuditEntry { tenant_id: Some(tenant.clone()), ..AuditEntry::new("bench", "tenant.create") };
    store.create_tenant(&state, &audit).await?;
    let connection = store
        .get_connection(&tenant, &hubspot, Owner::Company)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no connection"))?;
    let job = store.ensure_job(&tenant, connection.id, &StreamName::parse("deals")?, "15m").await?;
    Ok((tenant, job.id))
}
