//! The test kit every integration test shares: a fresh database for every test (here),
//! the backend-parametrised `contract!` tests ([`contract`]), the built binary as an
//! operator runs it ([`cli::Env`]), a tenant connected to a simulator ([`world::World`])
//! and [`json`].

pub mod cli;
pub mod contract;
pub mod pgbouncer;
pub mod world;

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tributary::store::Store;
use uuid::Uuid;

/// The PostgreSQL server used when `TRIBUTARY_TEST_POSTGRES` is unset.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A store on a new SQLite file in a temporary directory (deleted with the directory).
pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("tributary.db").display());
    let store = Store::connect(&url).await.expect("open the sqlite store");
    (store, dir)
}

/// A URL that opens the same SQLite file as `store`.
pub fn sqlite_url(store: &Store) -> String {
    let path = store.sqlite_path().expect("a sqlite store has a file");
    format!("sqlite://{}", path.display())
}

/// A store on a fresh PostgreSQL database; call [`PgTestDb::drop_db`] at the end. If a
/// test panics first, dropping the guard still drops the database (from a helper thread).
pub struct PgTestDb {
    pub store: Store,
    /// URL of the fresh database.
    pub url: String,
    server_url: String,
    /// The database still to drop.
    name: Option<String>,
}

/// Creates a database `tributary_t_<uuid>` on the server named by
/// `TRIBUTARY_TEST_POSTGRES` (default [`DEFAULT_POSTGRES`]) and connects a store to it.
/// Panics if the server is unreachable: these tests never skip.
pub async fn postgres_store() -> PgTestDb {
    let server_url = std::env::var("TRIBUTARY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let name = format!("tributary_t_{}", Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&server_url).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach the PostgreSQL test server (set TRIBUTARY_TEST_POSTGRES, \
             default {DEFAULT_POSTGRES}): {e}"
        )
    });
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.expect("close the admin connection");
    let url = with_database(&server_url, &name);
    let store = Store::connect(&url).await.expect("open the postgres store");
    PgTestDb { store, url, server_url, name: Some(name) }
}

/// A new empty database on the PostgreSQL test server (not migrated): its name, and the
/// server's URL. Drop it with [`drop_empty_database`].
pub async fn empty_postgres_database() -> (String, String) {
    let server_url = std::env::var("TRIBUTARY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    let name = format!("tributary_t_{}", Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&server_url).await.expect("reach the PostgreSQL test server");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.expect("close the admin connection");
    (name, server_url)
}

/// Drops a database made by [`empty_postgres_database`].
pub async fn drop_empty_database(name: &str, server_url: &str) {
    drop_database(server_url, name).await;
}

impl PgTestDb {
    /// Closes the store and drops its database.
    pub async fn drop_db(mut self) {
        self.store.close().await;
        if let Some(name) = self.name.take() {
            drop_database(&self.server_url, &name).await;
        }
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else {
            return;
        };
        // Only reached when a test panicked before `drop_db`; this runtime may be gone.
        let server_url = self.server_url.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("build a cleanup runtime");
            runtime.block_on(drop_database(&server_url, &name));
        });
        if cleanup.join().is_err() {
            eprintln!("could not drop a test database after a failed test");
        }
    }
}

/// `DROP DATABASE name WITH (FORCE)` on the server at `server_url`.
async fn drop_database(server_url: &str, name: &str) {
    // `WITH (FORCE)` waits five seconds for the backends it terminates; a loaded machine
    // (or a just-killed daemon's sessions) can take longer, and while parallel tests hold
    // many sessions the server may refuse a new one: both are retried for a minute.
    let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    let mut last = String::new();
    for attempt in 1..=30 {
        let outcome = match PgConnection::connect(server_url).await {
            Ok(mut admin) => {
                let dropped = sqlx::query(AssertSqlSafe(statement.clone())).execute(&mut admin).await;
                let _ = admin.close().await;
                dropped.map(|_| ()).map_err(|e| format!("drop: {e}"))
            }
            Err(e) => Err(format!("connect: {e}")),
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                eprintln!("dropping test database {name} (attempt {attempt}): {e}");
                last = e;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
    panic!("drop the test database {name}: {last}");
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, params) = match url.split_once('?') {
        Some((base, params)) => (base, format!("?{params}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = base.split_once("://").expect("a postgres:// url");
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    format!("{scheme}://{authority}/{name}{params}")
}

/// Runs one statement on the database at `url` behind the store's back (to set up
/// states the store API does not offer, such as a held lease or a corrupt row).
pub async fn exec_raw(url: &str, sql: &'static str) {
    if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url).await.expect("open sqlite");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        conn.close().await.expect("close sqlite");
    } else {
        let mut conn = PgConnection::connect(url).await.expect("connect postgres");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        conn.close().await.expect("close postgres");
    }
}

/// Writes a file only its owner may read and write (mode 0600): a master key file, which
/// tributary refuses when other users may read it.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).expect("write a private file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("make a file private");
}

/// `text` parsed as JSON; panics with the text when it is not JSON.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The most instants in any half-open window `[t, t + w)` (in any order).
pub fn busiest(times: &[Instant], w: Duration) -> usize {
    let mut times = times.to_vec();
    times.sort();
    let mut j = 0;
    (0..times.len())
        .map(|i| {
            while j < times.len() && times[j] < times[i] + w {
                j += 1;
            }
            j - i
        })
        .max()
        .unwrap_or(0)
}

/// `tributary connectors check FILE` with the built binary and the repository's
/// configuration: whether it succeeded, and what it printed (both streams).
pub fn connectors_check(file: &std::path::Path) -> (bool, String) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["connectors", "check"])
        .arg(file)
        .env("TRIBUTARY_CONFIG", repo.join("config"))
        .env_remove("TRIBUTARY_CONNECTORS")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
