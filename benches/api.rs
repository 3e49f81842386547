//! HTTP API throughput at 10,000 tenants: `tributary run` (a child process) over a store
//! of `TENANTS` (default 10,000) Aptem tenants (no credentials, so nothing runs) with
//! `RUNS` (default 5) finished runs each; this process is the load generator (reqwest,
//! `CONCURRENCY` connections, default 4, each sending its next request when the last
//! one is answered, for `SECS` seconds, default 10, per scenario). Scenarios:
//! `GET /api/v1/status` with an operator key, `GET /api/v1/runs?limit=20` with an
//! operator key (the newest runs of every tenant), and `GET /api/v1/runs?limit=20` with
//! a tenant admin key (its own tenant's). Every request authenticates (one key read
//! from the store) and goes through the daemon's control channel. The load generator
//! shares the machine's cores with the daemon.
//!
//! References measured in the same run: `GET /healthz` under the same load (the HTTP
//! stack alone: no key, no control channel), and the control socket's `status` round
//! trip, one request at a time (the control channel without HTTP or a key).
//!
//! `cargo bench --bench api` (SQLite) or `cargo bench --bench api -- postgres://user@host/db`
//! (also PostgreSQL, on a scratch database).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary::server::api::keys;
use tributary::store::{NewApiKey, Store};
use tributary::tenants::Tenants;

use support::Scratch;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tenants = env_or("TENANTS", 10_000);
    let runs = env_or("RUNS", 5);
    let concurrency = env_or("CONCURRENCY", 4);
    let secs = env_or("SECS", 10) as u64;
    println!("machine: {}", support::machine());
    for pg in Scratch::backends() {
        let scratch = Scratch::new(pg.as_deref()).await?;
        let result = measure(&scratch, tenants, runs, concurrency, Duration::from_secs(secs)).await;
        let backend = scratch.backend;
        scratch.drop_database().await?;
        for (scenario, rate, median, p99) in result? {
            println!(
                "{backend}, {tenants} tenants, {} runs: {scenario}: {rate:.0} requests/s \
                 ({concurrency} connections), latency median {:.2} ms, p99 {:.2} ms",
                tenants * runs,
                median * 1e3,
                p99 * 1e3
            );
        }
    }
    Ok(())
}

async fn measure(
    scratch: &Scratch,
    tenants: usize,
    runs: usize,
    concurrency: usize,
    window: Duration,
) -> anyhow::Result<Vec<(&'static str, f64, f64, f64)>> {
    let dir = scratch.dir.path();
    let connectors = support::connectors_dir(dir, "-", None)?;
    let config = support::config_dir(dir, "")?;
    let catalog = support::catalog(&config, &connectors)?;
    let (_, key_file) = support::master_key(dir)?;
    let store = Store::connect(&scratch.url).await?;
    let started = Instant::now();
    let file = dir.join("tenant.toml");
    for t in 0..tenants {
        let id = format!("t{t:05}");
        std::fs::write(&file, format!("id = \"{id}\"\nname = \"{id}\"\nsubdomain = \"{id}\"\npreset = \"aptem\"\n"))?;
        let spec = catalog.tenant_file(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
        Tenants::new(&catalog, &store, "bench").create(&spec).await?;
        tributary::app::reconcile_tenant(&catalog, &store, &spec.id, tributary::app::FIXED_JITTER).await?;
    }
    seed_runs(&scratch.url, runs).await?;
    let seeded = store.list_runs(None, 1_000_000).await?.len();
    anyhow::ensure!(seeded == tenants * runs, "{seeded} runs seeded, not {}", tenants * runs);
    eprintln!("seeded {tenants} tenants and their runs in {:.1?}", started.elapsed());
    let operator = api_key(&store, None, "bench-operator").await?;
    let tenant = api_key(&store, Some("t00042"), "bench-tenant").await?;
    store.close().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let (mut child, socket) =
        support::spawn_daemon_on(dir, &scratch.url, &config, &connectors, &key_file, &listen).await?;
    let base = format!("http://{listen}/api/v1");
    let client = reqwest::Client::new();
    // Ready when an authenticated request is answered.
    let ready = Instant::now();
    loop {
        let answer = client.get(format!("{base}/status")).bearer_auth(&operator).send().await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(600), "the API did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs_of_tenant = client.get(format!("{base}/runs?limit=20")).bearer_auth(&tenant).send().await?;
    let listed: serde_json::Value = runs_of_tenant.json().await?;
    anyhow::ensure!(listed.as_array().is_some_and(|a| a.len() == runs.min(20)), "a tenant's runs: {listed}");

    let mut out = Vec::new();
    let mut socket_status = Vec::new();
    for _ in 0..200 {
        let sent = Instant::now();
        support::control(&socket, serde_json::json!({"v": 1, "cmd": "status"})).await?;
        socket_status.push(sent.elapsed().as_secs_f64());
    }
    out.push((
        "reference: control socket `status`, one at a time",
        1.0 / support::median(&socket_status),
        support::median(&socket_status),
        support::quantile(&socket_status, 0.99),
    ));
    let health = format!("http://{listen}/healthz");
    let (rate, latencies) = load(&client, &health, "", concurrency, window).await?;
    out.push((
        "reference: GET /healthz",
        rate,
        support::quantile(&latencies, 0.5),
        support::quantile(&latencies, 0.99),
    ));
    for (scenario, path, key) in [
        ("GET /api/v1/status (operator)", "/status", &operator),
        ("GET /api/v1/runs?limit=20 (operator, every tenant)", "/runs?limit=20", &operator),
        ("GET /api/v1/runs?limit=20 (tenant admin)", "/runs?limit=20", &tenant),
    ] {
        let (rate, latencies) = load(&client, &format!("{base}{path}"), key, concurrency, window).await?;
        out.push((scenario, rate, support::quantile(&latencies, 0.5), support::quantile(&latencies, 0.99)));
    }
    child.kill().await?;
    Ok(out)
}

/// `concurrency` loops sending GET `url` for `window`; requests/s and every latency (s).
async fn load(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    concurrency: usize,
    window: Duration,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let url: Arc<str> = url.into();
    let key: Arc<str> = key.into();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < window {
                let sent = Instant::now();
                let response = client.get(&*url).bearer_auth(&*key).send().await?;
                anyhow::ensure!(response.status().is_success(), "{url}: {}", response.status());
                response.bytes().await?;
                latencies.push(sent.elapsed().as_secs_f64());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all.len() as f64 / started.elapsed().as_secs_f64(), all))
}

async fn api_key(store: &Store, tenant: Option<&str>, name: &str) -> anyhow::Result<String> {
    let new = keys::generate();
    let tenant = tenant.map(tributary::model::TenantId::parse).transpose()?;
    store
        .create_api_key(&NewApiKey {
            id: &new.id,
            name,
            tenant: tenant.as_ref(),
            role: "admin",
            secret_hash: &new.digest,
            expires_at: None,
        })
        .await?;
    Ok(new.key.to_string())
}

/// `per_tenant` finished runs of each tenant's first job, an hour apart.
async fn seed_runs(url: &str, per_tenant: usize) -> anyhow::Result<()> {
    use sqlx::Connection;
    let n = i64::try_from(per_tenant)?;
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
             INSERT INTO runs (id, tenant_id, job_id, provider, stream, \"trigger\", started_at, finished_at, \
             outcome, fetched, inserted, pages, http_calls) \
             SELECT randomblob(16), j.tenant_id, j.id, j.provider, j.stream, 'scheduled', \
             strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-' || (n.i * 3600 + j.id % 3600) || ' seconds'), \
             strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-' || (n.i * 3600 + j.id % 3600 - 30) || ' seconds'), \
             'success', 100, 10, 1, 1 \
             FROM jobs j CROSS JOIN n WHERE j.id IN (SELECT MIN(id) FROM jobs GROUP BY tenant_id)",
        )
        .bind(n)
        .execute(&mut conn)
        .await?;
        conn.close().await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(
            "INSERT INTO runs (id, tenant_id, job_id, provider, stream, \"trigger\", started_at, finished_at, \
             outcome, fetched, inserted, pages, http_calls) \
             SELECT gen_random_uuid(), j.tenant_id, j.id, j.provider, j.stream, 'scheduled', \
             now() - (n.i * 3600 + j.id % 3600) * interval '1 second', \
             now() - (n.i * 3600 + j.id % 3600 - 30) * interval '1 second', 'success', 100, 10, 1, 1 \
             FROM jobs j CROSS JOIN generate_series(0, $1 - 1) AS n(i) \
             WHERE j.id IN (SELECT MIN(id) FROM jobs GROUP BY tenant_id)",
        )
        .bind(n)
        .execute(&mut conn)
        .await?;
        sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
        conn.close().await?;
    }
    Ok(())
}
