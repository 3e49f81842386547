//! Interrupted runs resume where they stopped, for every pagination kind: `tributary
//! sync` (a real process) is stopped by SIGTERM, SIGINT or SIGKILL once its run row
//! counts a few committed pages, then run again; the provider's request log shows the
//! second run did not ask for the first run's pages again (one page of overlap: the
//! page in flight when the signal landed), and exactly the provider's records are
//! stored. Pages are slowed so the signal lands mid-run.

mod bounds;
mod kinds;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tributary::model::{RunRow, TenantId};
use tributary::store::Store;

use crate::support::{PgTestDb, postgres_store, sqlite_store, sqlite_url};

/// How the first run is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Term,
    Int,
    Kill,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Int => "INT",
            Self::Kill => "KILL",
        }
    }
}

/// Which store the binary and the test share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A working directory, a store and the binary run against them.
pub struct Env {
    pub store: Store,
    pub tenant: TenantId,
    pub db_url: String,
    dir: tempfile::TempDir,
    _sqlite_dir: Option<tempfile::TempDir>,
    pg: Option<PgTestDb>,
}

const PATIENCE: Duration = Duration::from_secs(60);

impl Env {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("connectors")).unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        match backend {
            Backend::Sqlite => {
                let (store, sqlite_dir) = sqlite_store().await;
                let db_url = sqlite_url(&store);
                Self { store, tenant, db_url, dir, _sqlite_dir: Some(sqlite_dir), pg: None }
            }
            Backend::Postgres => {
                let pg = postgres_store().await;
                Self { store: pg.store.clone(), tenant, db_url: pg.url.clone(), dir, _sqlite_dir: None, pg: Some(pg) }
            }
        }
    }

    /// The working directory of the commands.
    pub fn db_dir(&self) -> &Path {
        self.dir.path()
    }

    fn connectors(&self) -> PathBuf {
        self.dir.path().join("connectors")
    }

    /// Installs the built-in manifest of `provider`, without its rate limit (the tests
    /// check positions, not pacing) and changed by `tweak`, as a run-time manifest.
    pub fn manifest(&self, provider: &str, tweak: impl FnOnce(&mut toml::Table)) {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(repo.join("connectors").join(format!("{provider}.toml"))).unwrap();
        let mut table: toml::Table = text.parse().unwrap();
        table.remove("rate_limit");
        tweak(&mut table);
        self.manifest_text(provider, &toml::to_string(&table).unwrap());
    }

    /// Installs a run-time manifest.
    pub fn manifest_text(&self, provider: &str, text: &str) {
        std::fs::write(self.connectors().join(format!("{provider}.toml")), text).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("TRIBUTARY_CONFIG", repo.join("config"))
            .env("TRIBUTARY_DATABASE_URL", &self.db_url)
            .env("TRIBUTARY_CONNECTORS", self.connectors())
            .env_remove("TRIBUTARY_MASTER_KEY_FILE")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs a command to its end, feeding `stdin`.
    pub async fn run(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use tokio::io::AsyncWriteExt;
        let mut child = self.cmd(args).spawn().expect("start the binary");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        tokio::time::timeout(PATIENCE, child.wait_with_output()).await.expect("the command ends").unwrap()
    }

    pub async fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin).await;
        assert!(
            out.status.success(),
            "{args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates tenant `acme` from `toml` (without id, name and subdomain) and stores
    /// `credentials` for `provider`.
    pub async fn tenant(&self, toml: &str, provider: &str, credentials: &serde_json::Value) {
        let file = self.dir.path().join("acme.toml");
        std::fs::write(&file, format!("id = \"acme\"\nname = \"Acme\"\nsubdomain = \"acme\"\n{toml}")).unwrap();
        self.ok(&["tenant", "apply", file.to_str().unwrap()], "").await;
        self.ok(&["credentials", "set", "--tenant", "acme", "--provider", provider], &credentials.to_string()).await;
    }

    /// Starts `tributary sync` of one stream.
    pub fn start_sync(&self, provider: &str, stream: &str, extra: &[&str]) -> Child {
        let mut args = vec!["sync", "--tenant", "acme", "--provider", provider, "--stream", stream];
        args.extend_from_slice(extra);
        self.cmd(&args).spawn().expect("start tributary sync")
    }

    /// The newest run of the tenant.
    pub async fn last_run(&self) -> Option<RunRow> {
        self.store.list_runs(Some(&self.tenant), 1).await.unwrap().into_iter().next()
    }

    /// Waits for the newest run to have committed at least `pages` pages.
    pub async fn run_with_pages(&self, pages: i64) -> RunRow {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(run) = self.last_run().await.filter(|r| r.stats.pages >= pages) {
                return run;
            }
            assert!(Instant::now() < deadline, "timed out waiting for a run with {pages} committed pages");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn records(&self) -> i64 {
        self.store.count_records(&self.tenant, None).await.unwrap()
    }

    pub async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop_db().await;
        }
    }
}

/// Sends `stop` to `child` and waits for it to exit; checks the exit it calls for and
/// returns its standard output and error.
pub async fn stop(child: Child, stop: Stop) -> String {
    let pid = child.id().expect("the sync is running").to_string();
    let status = Command::new("kill").args(["-s", stop.name(), &pid]).status().await.expect("run kill");
    assert!(status.success(), "kill -s {} failed", stop.name());
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output()).await.expect("the sync exits").unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match stop {
        Stop::Term => assert_eq!(out.status.code(), Some(143), "SIGTERM exits 143:\n{text}"),
        Stop::Int => assert_eq!(out.status.code(), Some(130), "SIGINT exits 130:\n{text}"),
        Stop::Kill => {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(9), "{text}");
        }
    }
    text
}
