//! The daemon as real processes of the built binary: `tributary run` started as a child
//! with its own configuration directory, store, socket and HTTP port, driven through its
//! control socket and signals, against simulators served from this process.
//!
//! Every test runs on a multi-threaded runtime (the simulators answer the children while
//! the test waits) and never blocks it: children are `tokio::process` children, killed
//! when their guard drops.

mod abandoned;
mod access;
mod api;
mod budgets;
mod control;
mod crash;
mod demo;
mod keys;
mod leases;
mod metrics;
mod outage;
mod outbound;
mod pgbouncer;
mod plain_text;
mod reconcile_queue;
mod replicas;
mod signals;
mod sim_webhooks;
mod views;
mod webhooks;
mod write_share;
mod writes;
mod writes_ambiguous;
mod writes_conflict;
mod writes_crash;
mod writes_effects;
mod writes_exec;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tributary::control::client::call;
use tributary::control::protocol::{Command as Ctl, Reply, Request, Scope, Target, VERSION};
use tributary::model::{RunRow, TenantId};
use tributary::store::Store;

use crate::support::PgTestDb;

/// The master key every process of a fixture shares (hex of 32 bytes).
const MASTER_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// A cron schedule that does not come due while a test runs: jobs run when triggered.
pub const NEVER: &str = "0 0 1 1 *";
/// The ceiling of every wait for something the daemon should do soon.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A configuration directory, a store and a master key, shared by the daemons and
/// command-line calls of one test.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The test's own connection to the store, for assertions.
    pub store: Store,
    pg: Option<PgTestDb>,
    /// The connector manifests every process of the fixture loads.
    connectors: PathBuf,
}

impl Fixture {
    /// A fixture on a new SQLite file; `daemon` is the body of `[daemon]` in tributary.toml.
    pub async fn sqlite(daemon: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("tributary.db").display());
        let store = Store::connect(&url).await.expect("open the sqlite store");
        Self::with(dir, url, store, None, daemon)
    }

    /// A fixture on a fresh PostgreSQL database.
    pub async fn postgres(daemon: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pg = crate::support::postgres_store().await;
        let (url, store) = (pg.url.clone(), pg.store.clone());
        Self::with(dir, url, store, Some(pg), daemon)
    }

    fn with(dir: tempfile::TempDir, url: String, store: Store, pg: Option<PgTestDb>, daemon: &str) -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let config = dir.path().join("config");
        std::fs::create_dir_all(config.join("tenants")).expect("create the config directory");
        // The repository's files, without its tenants (acme.toml points at the real Aptem).
        for file in ["entities.toml", "presets.toml"] {
            std::fs::copy(repo.join(file), config.join(file)).expect("copy a config file");
        }
        std::fs::write(config.join("tributary.toml"), format!("[daemon]\n{daemon}\n")).expect("write tributary.toml");
        crate::support::write_private(&dir.path().join("master.key"), MASTER_KEY.as_bytes());
        let connectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
        Self { dir, url, store, pg, connectors }
    }

    /// Copies the repository's connector manifests into the fixture (for a test to
    /// change) and has every process load them from there; returns the copy's path.
    pub fn own_connectors(&mut self) -> PathBuf {
        let copy = self.dir.path().join("connectors");
        std::fs::create_dir_all(&copy).expect("create the connectors directory");
        for entry in std::fs::read_dir(&self.connectors).expect("read the connectors") {
            let path = entry.expect("a connector file").path();
            if path.is_file() {
                std::fs::copy(&path, copy.join(path.file_name().expect("a file name"))).expect("copy a connector");
            }
        }
        self.connectors = copy.clone();
        copy
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Writes `config/tenants/<id>.toml`: `body` follows the id, name and subdomain lines.
    pub fn write_tenant(&self, id: &str, body: &str) -> PathBuf {
        let path = self.config_dir().join("tenants").join(format!("{id}.toml"));
        let text = format!("id = \"{id}\"\nname = \"Tenant {id}\"\nsubdomain = \"{id}\"\n{body}");
        std::fs::write(&path, text).expect("write a tenant file");
        path
    }

    /// The binary with this fixture's configuration, store and key.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("TRIBUTARY_CONFIG", self.config_dir())
            .env("TRIBUTARY_CONNECTORS", &self.connectors)
            .env("TRIBUTARY_DATABASE_URL", &self.url)
            .env("TRIBUTARY_MASTER_KEY_FILE", self.dir.path().join("master.key"))
            .env("TRIBUTARY_LOG", "info")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("TRIBUTARY_SOCKET")
            .env_remove("TRIBUTARY_HTTP_LISTEN")
            .env_remove("TRIBUTARY_LOG_FORMAT")
            .kill_on_drop(true);
        cmd
    }

    /// Runs a command to its end, feeding `stdin`; panics unless it succeeds.
    pub async fn ok(&self, args: &[&str], stdin: &str) -> String {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).await.expect("write stdin");
        drop(input);
        let out = child.wait_with_output().await.expect("wait for the binary");
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Writes the tenant file, applies it and stores each provider's credentials, as an
    /// operator does from the command line.
    pub async fn connect(&self, id: &str, body: &str, credentials: &[(&str, Value)]) {
        let file = self.write_tenant(id, body);
        self.ok(&["tenant", "apply", file.to_str().expect("UTF-8 path")], "").await;
        for (provider, creds) in credentials {
            self.ok(&["credentials", "set", "--tenant", id, "--provider", provider], &creds.to_string()).await;
        }
    }

    /// Starts `tributary run` named `name` (its socket and log file carry the name) and
    /// waits until its control socket answers.
    pub async fn start(&self, name: &str, workers: usize) -> Daemon {
        let socket = self.dir.path().join(format!("{name}.sock"));
        let log = self.dir.path().join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("create the log file");
        let workers = workers.to_string();
        let child = self
            .command(&[
                "--log-format",
                "json",
                "run",
                "--socket",
                socket.to_str().expect("UTF-8 path"),
                "--listen",
                "127.0.0.1:0",
                "--workers",
                &workers,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start tributary run");
        let mut daemon = Daemon { child, socket, log };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("daemon {name} exited during start-up ({status}):\n{}", daemon.log_text());
            }
            if daemon.socket.exists()
                && let Ok(reply) = daemon.try_request(Scope::Operator, Ctl::Status).await
                && reply.ok
            {
                return daemon;
            }
            assert!(Instant::now() < deadline, "daemon {name} did not answer in time:\n{}", daemon.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every run of `tenant` (newest first).
    pub async fn runs(&self, tenant: &str) -> Vec<RunRow> {
        let tenant = TenantId::parse(tenant).expect("tenant id");
        self.store.list_runs(Some(&tenant), 10_000).await.expect("list runs")
    }

    /// Waits for the run `id` to finish; returns its row.
    pub async fn finished_run(&self, tenant: &str, id: uuid::Uuid) -> RunRow {
        eventually("the run to finish", || async {
            self.runs(tenant).await.into_iter().find(|r| r.id == id && r.finished_at.is_some())
        })
        .await
    }

    /// Drops the PostgreSQL database, if any.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some(pg) = self.pg {
            pg.drop_db().await;
        }
    }
}

/// A running `tributary run`; killed when dropped.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the daemon is running")
    }

    pub async fn try_request(&self, scope: Scope, command: Ctl) -> Result<Reply, String> {
        call(&self.socket, &Request { v: VERSION, scope, command, caller: Default::default() }).await
    }

    /// Sends a request as `scope`; panics if the socket does not answer.
    pub async fn request(&self, scope: Scope, command: Ctl) -> Reply {
        self.try_request(scope, command).await.unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()))
    }

    /// Sends an operator request and returns its data; panics on an error reply.
    pub async fn ok(&self, command: Ctl) -> Value {
        let name = command.name();
        let reply = self.request(Scope::Operator, command).await;
        assert!(reply.ok, "`{name}` failed: {:?}", reply.error);
        reply.data.unwrap_or(Value::Null)
    }

    /// Sends a signal (`HUP`, `TERM`, `KILL`, `USR1`) to the daemon.
    pub async fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args(["-s", signal, &self.pid().to_string()]).status().await.expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the daemon"),
            Err(_) => panic!("the daemon did not exit within {within:?}:\n{}", self.log_text()),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's JSON events whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["fields"]["message"] == message)
            .collect()
    }
}

/// A target naming a tenant, optionally a provider and a stream.
pub fn target(tenant: &str, provider: Option<&str>, stream: Option<&str>) -> Target {
    Target {
        tenant: Some(tenant.into()),
        provider: provider.map(Into::into),
        stream: stream.map(Into::into),
        ..Target::default()
    }
}

/// Polls `check` every 50 ms until it returns something, at most [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually`] with its own patience, for waits whose work grows with a loaded
/// machine (hundreds of runs on two daemons).
pub async fn eventually_within<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The run ids of a `trigger` reply that started.
pub fn started_runs(reply: &Value) -> Vec<uuid::Uuid> {
    reply["triggered"]
        .as_array()
        .expect("a trigger reply lists what it triggered")
        .iter()
        .filter_map(|t| t["run_id"].as_str())
        .map(|id| id.parse().expect("a run id"))
        .collect()
}
