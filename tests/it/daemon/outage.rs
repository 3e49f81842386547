//! A database outage under a running daemon: a scratch PostgreSQL cluster (started by the
//! test from the installed server binaries, on a free port in a temporary directory) is
//! stopped and started again. `/readyz` and `ctl status` answer at once with the cause,
//! the log says it once, the run in flight fails cleanly, and the daemon recovers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tributary::control::protocol::Command as Ctl;
use tributary::model::{RunOutcome, TenantId};
use tributary::store::Store;
use tributary_simulator::{Faults, Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Fixture, NEVER, eventually, target};

/// A PostgreSQL cluster of the test's own, in a temporary directory; stopped when dropped.
struct ScratchPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Root may not run the server: the commands then run as the `postgres` user.
    as_postgres: bool,
}

impl ScratchPg {
    async fn start() -> Self {
        let bin = server_binaries();
        let dir = tempfile::tempdir().expect("temporary directory");
        let uid = Command::new("id").arg("-u").output().await.expect("run id -u");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let status = Command::new("chown").args(["postgres:", &path(dir.path())]).status().await.expect("chown");
            assert!(status.success(), "chown of the scratch cluster's directory to `postgres` failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Self { dir, bin, port, as_postgres };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]).await;
        pg.start_again().await;
        pg
    }

    fn data(&self) -> String {
        path(&self.dir.path().join("data"))
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let exe = path(&self.bin.join(program));
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--", &exe]);
            cmd
        } else {
            Command::new(exe)
        };
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    async fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().await.unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            path(self.dir.path())
        );
        let log = path(&self.dir.path().join("server.log"));
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &options, "-w", "-t", "60", "start"]).await;
    }

    async fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]).await;
    }
}

impl Drop for ScratchPg {
    fn drop(&mut self) {
        let exe = path(&self.bin.join("pg_ctl"));
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let mut cmd = if self.as_postgres {
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", "postgres", "--", &exe]);
            cmd
        } else {
            std::process::Command::new(&exe)
        };
        let _ = cmd.args(args).current_dir(self.dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

/// The newest installed PostgreSQL server's binaries (`TRIBUTARY_TEST_PG_BIN` overrides).
fn server_binaries() -> PathBuf {
    if let Ok(dir) = std::env::var("TRIBUTARY_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (install the server, \
         or set TRIBUTARY_TEST_PG_BIN to the directory holding initdb and pg_ctl)",
    )
}

/// `GET /readyz`: status and body; panics unless it answers within 3 s (it used to take
/// 10 s while the database was down).
async fn readyz(address: &str) -> (u16, String) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let response = client.get(format!("http://{address}/readyz")).send().await.expect("/readyz answers within 3 s");
    (response.status().as_u16(), response.text().await.expect("a body"))
}

/// Waits for the run to finish; panics with the daemon's log if it does not.
async fn finished_or_log(fx: &Fixture, daemon: &super::Daemon, run: uuid::Uuid) -> tributary::model::RunRow {
    for _ in 0..400 {
        if let Some(row) = fx.runs("acme").await.into_iter().find(|r| r.id == run && r.finished_at.is_some()) {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run} did not finish:\n{}", daemon.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_reported_at_once_with_its_cause_and_the_daemon_recovers() {
    let pg = ScratchPg::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::connect(&pg.url()).await.expect("connect to the scratch cluster");
    let fx = Fixture::with(dir, pg.url(), store, None, "lease_secs = 2\nheartbeat_secs = 1");
    // Slow pages: the run is in flight when the database stops.
    const RECORDS: u64 = 20_000;
    let sim = start(SimConfig::new(Provider::Aptem, RECORDS).faults(Faults::none().delay(Duration::from_millis(300))))
        .await
        .unwrap();
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let daemon = fx.start("d", 2).await;
    let listening = daemon.events("HTTP server listening (/metrics, /healthz, /readyz, /api/v1)");
    let address = listening[0]["fields"]["address"].as_str().expect("the HTTP address").to_owned();
    assert_eq!(readyz(&address).await, (200, "ready\n".to_owned()));
    let learners = target("acme", Some("aptem"), Some("learners"));
    daemon.ok(Ctl::Trigger(learners.clone())).await;
    let run = eventually("the run to start", || async {
        fx.runs("acme").await.into_iter().find(|r| r.outcome == RunOutcome::Running).map(|r| r.id)
    })
    .await;

    pg.stop().await;
    // `/readyz` says so at once, with the cause.
    let body = eventually("/readyz to report the outage", || async {
        let (status, body) = readyz(&address).await;
        (status == 503 && body.contains("unreachable since")).then_some(body)
    })
    .await;
    assert!(body.to_lowercase().contains("connection refused"), "{body}");
    // `ctl status` answers from the daemon's memory.
    let socket = path(&daemon.socket);
    let status = fx.ok(&["ctl", "--socket", &socket, "status"], "").await;
    let line = status.lines().find(|l| l.starts_with("store: ")).unwrap_or_else(|| panic!("no store line: {status}"));
    assert!(line.starts_with("store: unreachable since ") && line.contains(", cause "), "{line}");
    assert!(line.to_lowercase().contains("connection refused"), "{line}");
    // Other requests are refused at once, naming the outage.
    let reply = daemon.request(tributary::control::protocol::Scope::Operator, Ctl::Tenants).await;
    assert!(reply.error.as_deref().is_some_and(|e| e.contains("unreachable since")), "{reply:?}");
    // Probes go on every second; the log names the cause once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = daemon.events("store unreachable");
    assert_eq!(down.len(), 1, "one line per change of state:\n{}", daemon.log_text());
    let cause = down[0]["fields"]["cause"].as_str().unwrap_or_default().to_lowercase();
    assert!(cause.contains("connection refused"), "{cause}");

    pg.start_again().await;
    eventually("/readyz to recover", || async { (readyz(&address).await.0 == 200).then_some(()) }).await;
    assert_eq!(daemon.events("store reachable again").len(), 1, "{}", daemon.log_text());
    assert_eq!(daemon.events("store unreachable").len(), 1);
    // The run in flight ended cleanly, its row closed: failed with the store's error when
    // a page write met the outage; or, when it was waiting instead — on its rate-limit
    // share, which lapses while the store is unreachable, or on a connection (the pool
    // waits 10 s for one) — it went on once the store was back and read everything.
    let ended = finished_or_log(&fx, &daemon, run).await;
    match ended.outcome {
        RunOutcome::Failed => {
            assert!(ended.stats.error.as_deref().is_some_and(|e| e.contains("database error")), "{:?}", ended.stats)
        }
        RunOutcome::Success => assert_eq!(ended.stats.fetched as u64, RECORDS, "{ended:?}"),
        other => panic!("the run in flight ended {other:?}: {ended:?}"),
    }
    // Jobs run again: a triggered run succeeds and stores everything.
    sim.set_faults(Faults::none());
    daemon.ok(Ctl::Trigger(learners)).await;
    let mut succeeded = false;
    for _ in 0..400 {
        let runs = fx.runs("acme").await;
        if runs.iter().any(|r| r.id != run && r.outcome == RunOutcome::Success) {
            succeeded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(succeeded, "no run succeeded after the outage:\n{}", daemon.log_text());
    let runs = fx.runs("acme").await;
    assert!(runs.iter().all(|r| r.outcome != RunOutcome::Running), "{runs:#?}");
    let stored = fx.store.count_records(&TenantId::parse("acme").unwrap(), None).await.unwrap();
    assert_eq!(stored as u64, RECORDS);
    let status = daemon.ok(Ctl::Status).await;
    assert_eq!(status["store"], "reachable");
    drop(daemon);
    fx.store.close().await;
    drop(pg);
}
