//! A PgBouncer in transaction mode in front of the PostgreSQL test server, started by a
//! test on a free port of 127.0.0.1 (its `pgbouncer.ini` and user list in a temporary
//! directory; trust authentication), killed when dropped.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use tokio::process::{Child, Command};

use super::DEFAULT_POSTGRES;

/// A running `pgbouncer`.
pub struct PgBouncer {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode with `pool_size` server connections per
    /// database and user (and never more to one database), in front of the server named
    /// by `TRIBUTARY_TEST_POSTGRES`. Panics if `pgbouncer` is not installed.
    pub async fn start(pool_size: u32) -> Self {
        let server_url = std::env::var("TRIBUTARY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        let server = PgConnectOptions::from_str(&server_url).expect("a postgres:// test server URL");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let log = dir.path().join("pgbouncer.log");
        let users = dir.path().join("userlist.txt");
        std::fs::write(&users, format!("\"{}\" \"\"\n", server.get_username())).expect("write the user list");
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={host} port={server_port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
                 max_db_connections = {pool_size}\nmax_client_conn = 500\n{statements}",
                host = server.get_host(),
                // Later versions can track named statements; the store must not need it.
                statements = if tracks_statements() { "max_prepared_statements = 0\n" } else { "" },
                server_port = server.get_port(),
                users = users.display(),
            ),
        )
        .expect("write pgbouncer.ini");
        let mut cmd = Command::new(binary());
        // PgBouncer refuses to run as root: as root (CI), it runs as `nobody`, which must
        // be able to read its files.
        if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) == 0 {
            for (path, mode) in [(dir.path(), 0o755), (ini.as_path(), 0o644), (users.as_path(), 0o644)] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            }
            cmd.args(["-u", "nobody"]);
        }
        let stderr = std::fs::File::create(&log).expect("create the pgbouncer log");
        let child = cmd
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start pgbouncer");
        let mut bouncer = Self { child, port, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited at start-up ({status}):\n{}", bouncer.log_text());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return bouncer;
            }
            assert!(Instant::now() < deadline, "pgbouncer did not listen in time:\n{}", bouncer.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A URL of database `name` through this PgBouncer.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// What PgBouncer logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `pgbouncer` on the `PATH`, else Debian's `/usr/sbin/pgbouncer`.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("pgbouncer"))
        .find(|p| p.is_file());
    let binary = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"));
    assert!(
        Path::new(&binary).is_file(),
        "pgbouncer is not installed (`apt-get install pgbouncer`; .ci/run installs it)"
    );
    binary
}

/// Whether this PgBouncer has `max_prepared_statements` (1.21 and later).
fn tracks_statements() -> bool {
    let out = std::process::Command::new(binary()).arg("--version").output().expect("run pgbouncer --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 21)
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}
