//! The PostgreSQL store behind PgBouncer in transaction mode (`[store] pooler =
//! "pgbouncer"`): why the driver's defaults fail there, and that the store's pooler mode
//! migrates and serves many callers at once without a statement error, on no more
//! server connections than PgBouncer's pool.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tributary::model::AuditEntry;
use tributary::store::{PgOptions, Pooler, Store};

use crate::support::pgbouncer::PgBouncer;
use crate::support::{drop_empty_database, empty_postgres_database};

/// The store's settings behind PgBouncer: four connections per process.
fn behind_pgbouncer() -> PgOptions {
    PgOptions { pooler: Pooler::PgBouncer, listen_url: None, max_connections: 4 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drivers_defaults_fail_through_pgbouncer_in_transaction_mode() {
    let bouncer = PgBouncer::start(1).await;
    let url = bouncer.url("test");
    // The driver's startup parameters include `extra_float_digits`, which PgBouncer
    // refuses unless told to ignore it.
    let refused = PgConnection::connect(&url).await.expect_err("PgBouncer refuses extra_float_digits");
    assert!(refused.to_string().contains("extra_float_digits"), "{refused}");

    // Two clients, one server connection: the first client's cached statement
    // `sqlx_s_1` stays on the server connection, where the second client then prepares
    // its own `sqlx_s_1`.
    let options = PgConnectOptions::from_str(&url).unwrap().extra_float_digits(None);
    let mut one = PgConnection::connect_with(&options).await.expect("connect through pgbouncer");
    let mut two = PgConnection::connect_with(&options).await.expect("connect through pgbouncer");
    let n: i32 = sqlx::query_scalar("SELECT $1::int4").bind(1).fetch_one(&mut one).await.expect("a first statement");
    assert_eq!(n, 1);
    let err = sqlx::query_scalar::<_, i32>("SELECT $1::int4").bind(2).fetch_one(&mut two).await.unwrap_err();
    assert!(err.to_string().contains("prepared statement \"sqlx_s_1\" already exists"), "{err}");
    let _ = one.close().await;
    let _ = two.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_migrates_and_serves_concurrent_callers_through_pgbouncer() {
    const POOL: i64 = 2;
    const TASKS: usize = 8;
    const ROUNDS: usize = 25;
    let bouncer = PgBouncer::start(POOL as u32).await;
    let (name, server_url) = empty_postgres_database().await;
    let url = bouncer.url(&name);

    // Two processes' stores open the new database at once: one migrates it, the other
    // waits for the migrations' lock and finds them applied.
    let options = behind_pgbouncer();
    let (a, b) = tokio::join!(Store::connect_with(&url, &options), Store::connect_with(&url, &options));
    let (a, b) = (a.expect("open the store through pgbouncer"), b.expect("open it from a second process"));

    // Eight callers at once over eight client connections and two server connections:
    // writes, reads of several statements on one connection, reads of one statement.
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            for round in 0..ROUNDS {
                let entry =
                    AuditEntry { subject: Some(format!("{task}/{round}")), ..AuditEntry::new("test", "pgbouncer") };
                store.record_audit(&entry).await?;
                let user = tributary::model::UserId::parse("nobody").expect("a user id");
                assert!(store.get_user(&user).await?.is_none());
                store.list_audit(None, 5).await?;
                store.list_tenants().await?;
            }
            Ok::<_, tributary::store::StoreError>(())
        });
    }
    // Meanwhile PostgreSQL sees no more connections to the database than the pool.
    let mut admin = PgConnection::connect(&server_url).await.expect("reach the PostgreSQL test server");
    let mut most = 0;
    while !tasks.is_empty() {
        let backends: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        most = most.max(backends);
        if let Some(done) = tasks.try_join_next() {
            done.expect("a task").expect("store calls through pgbouncer");
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert!((1..=POOL).contains(&most), "{most} server connections for a pool of {POOL}");
    let audit = a.list_audit(None, 1_000).await.expect("read the audit log");
    assert_eq!(audit.len(), TASKS * ROUNDS, "every write committed");
    let log = bouncer.log_text();
    assert!(!log.contains("prepared statement"), "{log}");
    a.close().await;
    b.close().await;
    admin.close().await.unwrap();
    drop_empty_database(&name, &server_url).await;
}
