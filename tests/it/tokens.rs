//! Token lifecycles against the simulators: short-lived tokens with rotating refresh
//! tokens during long syncs, refresh races between runs of one process and between
//! two stores on one PostgreSQL database (replicas), revocation mid-sync, stored tokens
//! reused by the next run, and new credentials after `needs_reauth`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tributary::http::auth::AuthRegistry;
use tributary::model::{
    ConnectionRow, ConnectionStatus, EntityName, Owner, ProviderId, RunOutcome, RunRow, RunStats, SealedBlob, TenantId,
};
use tributary::store::{Store, TokenWrite};
use tributary::sync::Syncer;
use tributary::telemetry::{Metrics, ResultLabels};
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};

use crate::support::world::{World, request};

/// A tenant `acme` connected to one simulator, in a [`World`] that keeps the manifests'
/// rate limits. The methods take the store to act through: a test may have two on one
/// database (replicas).
struct Fixture {
    world: World,
    tenant: TenantId,
    provider: ProviderId,
}

impl Fixture {
    /// Creates the tenant (`tenant_toml` without id, name and subdomain) in `store` and
    /// stores `credentials`.
    async fn new(store: &Store, provider: &str, tenant_toml: &str, credentials: &Value) -> Self {
        let world = World::builder().rate_limits().on(store.clone());
        let tenant = world.create_tenant("acme", "Acme", tenant_toml).await;
        let f = Self { world, tenant, provider: ProviderId::parse(provider).unwrap() };
        f.set_credentials(store, credentials).await;
        f
    }

    /// What `tributary credentials set` does.
    async fn set_credentials(&self, store: &Store, credentials: &Value) -> ConnectionRow {
        self.world.credentials_in(store, &self.tenant, &self.provider, None, credentials).await
    }

    fn syncer<'a>(&'a self, store: &'a Store, registry: &AuthRegistry, metrics: &Arc<Metrics>) -> Syncer<'a> {
        let mut syncer = self.world.syncer_in(store);
        syncer.auth = registry.clone();
        syncer.metrics = metrics.clone();
        syncer
    }

    async fn run(&self, syncer: &Syncer<'_>, stream: &str, progress: &mut (dyn FnMut(&RunStats) + Send)) -> RunRow {
        syncer
            .run(&request(&self.tenant, &self.provider, stream), &mut |_, stats| {
                if stats.pages > 0 {
                    progress(stats)
                }
            })
            .await
            .unwrap()
    }

    async fn connection(&self, store: &Store) -> ConnectionRow {
        store.get_connection(&self.tenant, &self.provider, Owner::Company).await.unwrap().unwrap()
    }

    async fn count(&self, store: &Store, entity: &str) -> i64 {
        store.count_records(&self.tenant, Some(&EntityName::parse(entity).unwrap())).await.unwrap()
    }

    /// The refresh token stored now.
    async fn stored_refresh_token(&self, store: &Store) -> String {
        let (sealed, _) = store.get_credentials(&self.tenant, &self.provider, Owner::Company).await.unwrap().unwrap();
        let plain: Value =
            serde_json::from_slice(&self.world.key.open(&self.tenant, &self.provider, &sealed).unwrap()).unwrap();
        plain["refresh_token"].as_str().unwrap().to_owned()
    }
}

fn slack(sim: &SimHandle) -> String {
    format!("preset = \"aptem\"\n[providers.slack]\nenabled = true\nbase_url = \"{}\"\n", sim.api_base())
}

/// A Slack tenant whose calls go through `proxy` (see [`slow_token_proxy`]).
fn slack_via(proxy: &str) -> String {
    format!("preset = \"aptem\"\n[providers.slack]\nenabled = true\nbase_url = \"{proxy}/api\"\n")
}

/// An HTTP proxy in front of `sim` that holds every token call for `delay`: runs that
/// need a new token at about the same time then always overlap, so they race for the
/// refresh (the simulator's own delay fault spares token endpoints).
async fn slow_token_proxy(sim: &SimHandle, delay: Duration) -> String {
    use axum::body::{Body, to_bytes};
    use axum::extract::Request;
    use axum::response::Response;

    let target = sim.base_url();
    let token_path = sim.token_url().unwrap().strip_prefix(&target).unwrap().to_owned();
    let client = reqwest::Client::new();
    let forward = move |req: Request| {
        let (client, target, token_path) = (client.clone(), target.clone(), token_path.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap();
            if parts.uri.path() == token_path {
                tokio::time::sleep(delay).await;
            }
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut headers = parts.headers;
            headers.remove(http::header::HOST);
            let upstream =
                client.request(parts.method, format!("{target}{path}")).headers(headers).body(body).send().await;
            let Ok(upstream) = upstream else {
                return Response::builder().status(502).body(Body::empty()).unwrap();
            };
            let mut response = Response::builder().status(upstream.status());
            for (k, v) in upstream.headers() {
                response = response.header(k, v);
            }
            response.body(Body::from(upstream.bytes().await.unwrap_or_default())).unwrap()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(forward)).await });
    format!("http://{addr}")
}

/// Requests the simulator's token endpoint served.
fn token_calls(sim: &SimHandle) -> u64 {
    let url = sim.token_url().unwrap();
    sim.requests_for(url.strip_prefix(&sim.base_url()).unwrap())
}

fn refreshes(metrics: &Metrics, provider: &str, result: &str) -> u64 {
    metrics.token_refreshes.get_or_create(&ResultLabels { provider: provider.into(), result: result.into() }).get()
}

fn ok(run: &RunRow) {
    assert_eq!(run.outcome, RunOutcome::Success, "run failed: {:?}", run.stats.error);
}

/// A short-lived-token Slack workspace: `n` messages and users, small pages, slow
/// responses, access tokens living 2 s, refresh tokens rotating on every use.
async fn short_lived_slack(n: u64, delay_ms: u64) -> SimHandle {
    let config = SimConfig::new(Provider::Slack, n)
        .parents(3)
        .page_size_cap(20)
        .access_token_ttl(Duration::from_secs(2))
        .faults(Faults::none().delay(Duration::from_millis(delay_ms)));
    start(config).await.unwrap()
}

#[tokio::test]
async fn tokens_expiring_every_two_seconds_with_rotation_during_a_long_sync() {
    let n = 500;
    let sim = short_lived_slack(n, 200).await;
    let (store, _db) = crate::support::sqlite_store().await;
    let f = Fixture::new(&store, "slack", &slack(&sim), &sim.credentials()).await;
    let metrics = Arc::new(Metrics::new());
    let syncer = f.syncer(&store, &AuthRegistry::new(), &metrics);
    // Once, mid-run, every token dies early: the next request is refused as expired,
    // and the run refreshes and retries it.
    let expired_early = AtomicU64::new(0);
    let started = std::time::Instant::now();
    let run = f
        .run(&syncer, "messages", &mut |stats| {
            if stats.pages == 8 && expired_early.fetch_add(1, Ordering::SeqCst) == 0 {
                sim.expire_access_tokens();
            }
        })
        .await;
    ok(&run);
    let elapsed = started.elapsed();
    assert!(elapsed > Duration::from_secs(4), "the sync spans several token lifetimes ({elapsed:?})");
    assert_eq!((run.stats.fetched, run.stats.inserted), (n as i64, n as i64));
    assert_eq!(f.count(&store, "message").await, n as i64);
    let calls = token_calls(&sim);
    assert!(calls >= 4, "a token lives 2 s: {calls} token calls in {elapsed:?}");
    // Every token call's result was stored (no refresh token spent and lost), none refused.
    assert_eq!(refreshes(&metrics, "slack", "ok"), calls);
    assert_eq!(refreshes(&metrics, "slack", "refused"), 0);
    assert_eq!(f.connection(&store).await.status, ConnectionStatus::Connected);
    // What is stored is the grant's current refresh token.
    assert_eq!(f.stored_refresh_token(&store).await, sim.credentials()["refresh_token"].as_str().unwrap());
}

/// Two runs of one connection on two streams at once, each with its own syncer.
async fn race(a: (&Fixture, &Syncer<'_>), b: (&Fixture, &Syncer<'_>)) -> (RunRow, RunRow) {
    let (mut pa, mut pb) = (|_: &RunStats| {}, |_: &RunStats| {});
    tokio::join!(a.0.run(a.1, "messages", &mut pa), b.0.run(b.1, "users", &mut pb))
}

#[tokio::test]
async fn two_replicas_on_one_postgres_race_for_the_refresh_without_spending_it_twice() {
    let n = 300;
    let sim = short_lived_slack(n, 150).await;
    let proxy = slow_token_proxy(&sim, Duration::from_millis(300)).await;
    let db = crate::support::postgres_store().await;
    let replica = Store::connect(&db.url).await.unwrap();
    assert_ne!(db.store.instance_id(), replica.instance_id());
    let f = Fixture::new(&db.store, "slack", &slack_via(&proxy), &sim.credentials()).await;
    // One master key, two daemons: each with its own store pool, registry and metrics.
    let (m1, m2) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
    let s1 = f.syncer(&db.store, &AuthRegistry::new(), &m1);
    let s2 = f.syncer(&replica, &AuthRegistry::new(), &m2);
    let (messages, users) = race((&f, &s1), (&f, &s2)).await;
    ok(&messages);
    ok(&users);
    assert_eq!(messages.stats.fetched, n as i64);
    assert_eq!(users.stats.fetched, n as i64);
    assert_eq!(f.count(&db.store, "message").await, n as i64);
    assert_eq!(f.count(&replica, "user").await, n as i64);
    let calls = token_calls(&sim);
    assert!(calls >= 2, "tokens expired during the runs ({calls} token calls)");
    // Each refresh token was spent once, by one replica, and its successor stored.
    let ok_total = refreshes(&m1, "slack", "ok") + refreshes(&m2, "slack", "ok");
    assert_eq!(ok_total, calls, "every token call was made under the lease and stored");
    let shared = refreshes(&m1, "slack", "shared") + refreshes(&m2, "slack", "shared");
    assert!(shared >= 1, "a replica waited for the other's refresh and used its token");
    assert_eq!(refreshes(&m1, "slack", "refused") + refreshes(&m2, "slack", "refused"), 0);
    assert_eq!(f.connection(&replica).await.status, ConnectionStatus::Connected);
    // The grant is alive: the stored refresh token is its current one and still works.
    assert_eq!(f.stored_refresh_token(&replica).await, sim.credentials()["refresh_token"].as_str().unwrap());
    sim.expire_access_tokens();
    ok(&f.run(&s2, "channels", &mut |_| {}).await);
    replica.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn runs_of_one_process_share_the_token_and_its_refresh() {
    let n = 300;
    let sim = short_lived_slack(n, 150).await;
    let proxy = slow_token_proxy(&sim, Duration::from_millis(300)).await;
    let (store, _db) = crate::support::sqlite_store().await;
    let f = Fixture::new(&store, "slack", &slack_via(&proxy), &sim.credentials()).await;
    let registry = AuthRegistry::new();
    let metrics = Arc::new(Metrics::new());
    let (s1, s2) = (f.syncer(&store, &registry, &metrics), f.syncer(&store, &registry, &metrics));
    let shared_entries = AtomicU64::new(0);
    let mut observe = |_: &RunStats| {
        shared_entries.fetch_max(registry.len() as u64, Ordering::SeqCst);
    };
    let mut nothing = |_: &RunStats| {};
    let (messages, users) = tokio::join!(f.run(&s1, "messages", &mut observe), f.run(&s2, "users", &mut nothing));
    ok(&messages);
    ok(&users);
    assert_eq!((messages.stats.fetched, users.stats.fetched), (n as i64, n as i64));
    assert_eq!((f.count(&store, "message").await, f.count(&store, "user").await), (n as i64, n as i64));
    assert_eq!(shared_entries.load(Ordering::SeqCst), 1, "both runs used one connection entry");
    assert!(registry.is_empty(), "the entry goes when its runs end");
    let calls = token_calls(&sim);
    assert!(calls >= 2, "tokens expired during the runs ({calls} token calls)");
    assert_eq!(refreshes(&metrics, "slack", "ok"), calls);
    assert_eq!(refreshes(&metrics, "slack", "refused"), 0);
    // The run that waited did so on the connection's mutex and found the new token in
    // memory, never polling the store's refresh lease.
    assert_eq!(refreshes(&metrics, "slack", "shared"), 0);
    assert_eq!(f.stored_refresh_token(&store).await, sim.credentials()["refresh_token"].as_str().unwrap());
}

#[tokio::test]
async fn revocation_mid_sync_needs_reauth_and_stops_every_request_with_that_credential() {
    let n = 200;
    let sim = start(SimConfig::new(Provider::Slack, n).parents(2).page_size_cap(20)).await.unwrap();
    let (store, _db) = crate::support::sqlite_store().await;
    let f = Fixture::new(&store, "slack", &slack(&sim), &sim.credentials()).await;
    let metrics = Arc::new(Metrics::new());
    let syncer = f.syncer(&store, &AuthRegistry::new(), &metrics);
    let at_revocation = AtomicU64::new(0);
    let run = f
        .run(&syncer, "messages", &mut |stats| {
            if stats.pages == 3 && at_revocation.load(Ordering::SeqCst) == 0 {
                sim.revoke();
                at_revocation.store(sim.data_request_count(), Ordering::SeqCst);
            }
        })
        .await;
    let at = at_revocation.load(Ordering::SeqCst);
    assert!(at > 0, "revoked mid-sync");
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.stats.error.clone().unwrap_or_default();
    assert!(error.contains("invalid_grant") && error.contains("credentials set"), "{error}");
    // The fourth and fifth pages were read ahead (while the third and fourth were
    // written) before the revocation.
    assert_eq!(run.stats.fetched, 100, "five pages were stored before");
    // One data request found the token revoked; the refresh was refused; nothing more.
    assert_eq!(sim.data_request_count(), at + 1);
    assert_eq!(token_calls(&sim), 2, "the first token, then the refused refresh");
    assert_eq!(refreshes(&metrics, "slack", "refused"), 1);
    let conn = f.connection(&store).await;
    assert_eq!(conn.status, ConnectionStatus::NeedsReauth);
    assert!(conn.status_reason.as_deref().unwrap_or("").contains("invalid_grant"), "{:?}", conn.status_reason);

    // Another run (a replica, a manual `sync`) does not spend the refused grant again.
    let again = f.run(&f.syncer(&store, &AuthRegistry::new(), &metrics), "users", &mut |_| {}).await;
    assert_eq!(again.outcome, RunOutcome::Failed);
    assert!(again.stats.error.as_deref().unwrap_or("").contains("credentials set"), "{:?}", again.stats.error);
    assert_eq!((sim.data_request_count(), token_calls(&sim)), (at + 1, 2), "no request at all");
}

#[tokio::test]
async fn a_stored_token_is_reused_by_the_next_run_with_what_it_provided() {
    // Salesforce: the token response supplies `instance_url`, every call's base.
    let sim = start(SimConfig::new(Provider::Salesforce, 30)).await.unwrap();
    let (store, _db) = crate::support::sqlite_store().await;
    let tenant = format!(
        "preset = \"bud_salesforce\"\n[providers.salesforce]\nvariables = {{ login_url = \"{}\" }}\n",
        sim.base_url()
    );
    let f = Fixture::new(&store, "salesforce", &tenant, &sim.oauth_credentials().unwrap()).await;
    let metrics = Arc::new(Metrics::new());
    ok(&f.run(&f.syncer(&store, &AuthRegistry::new(), &metrics), "accounts", &mut |_| {}).await);
    assert_eq!(token_calls(&sim), 1);
    // A new syncer with a new registry (another process): the token comes from the store.
    let run = f.run(&f.syncer(&store, &AuthRegistry::new(), &metrics), "contacts", &mut |_| {}).await;
    ok(&run);
    assert_eq!(run.stats.fetched, 30);
    assert_eq!(token_calls(&sim), 1, "the stored token (and instance_url) was used");
    assert_eq!(refreshes(&metrics, "salesforce", "ok"), 1);
    // The token is sealed at rest.
    let (blob, _) = store.get_credentials(&f.tenant, &f.provider, Owner::Company).await.unwrap().unwrap();
    assert!(!blob.bytes.is_empty());
    // Once it expires, the next run refreshes once.
    sim.expire_access_tokens();
    ok(&f.run(&f.syncer(&store, &AuthRegistry::new(), &metrics), "accounts", &mut |_| {}).await);
    assert_eq!(token_calls(&sim), 2);
}

#[tokio::test]
async fn new_credentials_after_a_refused_grant_bring_the_connection_back() {
    let sim = start(SimConfig::new(Provider::Slack, 40)).await.unwrap();
    let (store, _db) = crate::support::sqlite_store().await;
    let creds = sim.credentials();
    let f = Fixture::new(&store, "slack", &slack(&sim), &creds).await;
    // Someone else spends the stored refresh token: presenting it again is reuse, and the
    // provider revokes the whole grant.
    let spent = reqwest::Client::new()
        .post(sim.token_url().unwrap())
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", creds["client_id"].as_str().unwrap()),
            ("client_secret", creds["client_secret"].as_str().unwrap()),
            ("refresh_token", creds["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert!(spent.status().is_success());
    let metrics = Arc::new(Metrics::new());
    let syncer = f.syncer(&store, &AuthRegistry::new(), &metrics);
    let failed = f.run(&syncer, "users", &mut |_| {}).await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    assert_eq!(f.connection(&store).await.status, ConnectionStatus::NeedsReauth);
    assert_eq!(refreshes(&metrics, "slack", "refused"), 1);

    // `credentials set` with a new grant: connected again, and the next run succeeds.
    let conn = f.set_credentials(&store, &sim.new_grant().unwrap()).await;
    assert_eq!(conn.status, ConnectionStatus::Connected);
    let run = f.run(&syncer, "users", &mut |_| {}).await;
    ok(&run);
    assert_eq!(f.count(&store, "user").await, 40);
    assert_eq!(f.connection(&store).await.status, ConnectionStatus::Connected);
}

#[tokio::test]
async fn client_credentials_and_session_tokens_renew_the_same_way() {
    // Bud: client-credentials tokens living 2 s, renewed before they expire.
    let sim = start(
        SimConfig::new(Provider::Bud, 3_000)
            .access_token_ttl(Duration::from_secs(2))
            .faults(Faults::none().delay(Duration::from_millis(600))),
    )
    .await
    .unwrap();
    let (store, _db) = crate::support::sqlite_store().await;
    let tenant = format!(
        "preset = \"bud\"\n[providers.bud]\nbase_url = \"{base}\"\nvariables = {{ auth_url = \"{base}\" }}\n",
        base = sim.base_url()
    );
    let f = Fixture::new(&store, "bud", &tenant, &sim.credentials()).await;
    let metrics = Arc::new(Metrics::new());
    let run = f.run(&f.syncer(&store, &AuthRegistry::new(), &metrics), "learners", &mut |_| {}).await;
    ok(&run);
    assert_eq!(run.stats.fetched, 3_000);
    assert!(token_calls(&sim) >= 2, "{} token calls", token_calls(&sim));
    assert_eq!(refreshes(&metrics, "bud", "ok"), token_calls(&sim));

    // OneFile: session tokens with no stated lifetime, dying after 1 s; every 401 is
    // answered by one new session and a retry.
    let sim = start(
        SimConfig::new(Provider::OneFile, 2_500)
            .access_token_ttl(Duration::from_secs(1))
            .faults(Faults::none().delay(Duration::from_millis(400))),
    )
    .await
    .unwrap();
    let (store, _db) = crate::support::sqlite_store().await;
    let tenant = format!("preset = \"onefile\"\n[providers.onefile]\nbase_url = \"{}\"\n", sim.api_base());
    let f = Fixture::new(&store, "onefile", &tenant, &sim.credentials()).await;
    let metrics = Arc::new(Metrics::new());
    let run = f.run(&f.syncer(&store, &AuthRegistry::new(), &metrics), "learners", &mut |_| {}).await;
    ok(&run);
    assert_eq!(run.stats.fetched, 2_500);
    assert!(token_calls(&sim) >= 2, "{} session calls", token_calls(&sim));
    assert_eq!(refreshes(&metrics, "onefile", "ok"), token_calls(&sim));
}

/// The store's half of the protocol, on both backends: one lease holder at a time, a
/// write fenced on the lease and the credentials version, expired leases taken over,
/// refused grants remembered until new credentials.
async fn refresh_lease_and_compare_and_swap(a: &Store, url: &str) {
    let other = Store::connect(url).await.unwrap();
    let b = &other;
    let sim = start(SimConfig::new(Provider::Slack, 1)).await.unwrap();
    let f = Fixture::new(a, "slack", &slack(&sim), &sim.credentials()).await;
    let (t, p) = (&f.tenant, &f.provider);
    let soon = Utc::now() + chrono::Duration::seconds(45);
    let first = a.lock_refresh(t, p, Owner::Company, "a", soon).await.unwrap().expect("a free lease");
    let v = first.credentials_version;
    assert_eq!((first.auth_state.as_ref(), first.auth_state_serial, first.refused), (None, 0, false));
    assert!(b.lock_refresh(t, p, Owner::Company, "b", soon).await.unwrap().is_none(), "held by a");
    let token = SealedBlob { key_id: f.world.key.id(), bytes: vec![1, 2, 3] };
    let rotated = SealedBlob { key_id: f.world.key.id(), bytes: vec![4, 5, 6] };
    let write = |owner, expected_version, credentials| TokenWrite {
        lock_owner: owner,
        expected_version,
        credentials,
        auth_state: &token,
        expires_at: Some(soon),
    };
    assert_eq!(b.save_token(t, p, Owner::Company, &write("b", v, None), None).await.unwrap(), None, "b holds no lease");
    assert_eq!(
        a.save_token(t, p, Owner::Company, &write("a", v, Some(&rotated)), None).await.unwrap(),
        Some((v + 1, 1))
    );
    let row = b.get_auth(t, p, Owner::Company).await.unwrap().unwrap();
    assert_eq!((row.credentials_version, row.auth_state_serial), (v + 1, 1));
    assert_eq!(row.credentials.map(|c| c.bytes), Some(vec![4, 5, 6]));
    assert_eq!(row.auth_state.map(|s| s.bytes), Some(vec![1, 2, 3]));
    assert_eq!(row.refresh_lock_owner, None, "the write released the lease");
    // A writer that read an older version loses the swap.
    assert!(b.lock_refresh(t, p, Owner::Company, "b", soon).await.unwrap().is_some());
    assert_eq!(b.save_token(t, p, Owner::Company, &write("b", v, None), None).await.unwrap(), None);
    // A lease that expired is taken over; its old holder's write is then refused.
    assert!(
        b.lock_refresh(t, p, Owner::Company, "b", Utc::now() - chrono::Duration::seconds(1)).await.unwrap().is_some()
    );
    assert!(a.lock_refresh(t, p, Owner::Company, "a", soon).await.unwrap().is_some());
    assert_eq!(b.save_token(t, p, Owner::Company, &write("b", v + 1, None), None).await.unwrap(), None);
    assert_eq!(a.save_token(t, p, Owner::Company, &write("a", v + 1, None), None).await.unwrap(), Some((v + 1, 2)));
    assert!(!a.unlock_refresh(t, p, Owner::Company, "a").await.unwrap(), "already released");
    // A refused grant: needs_reauth, the token forgotten, until new credentials.
    assert!(!a.refuse_credentials(t, p, Owner::Company, v, "stale").await.unwrap(), "an older version is not refused");
    assert!(a.refuse_credentials(t, p, Owner::Company, v + 1, "invalid_grant").await.unwrap());
    let row = b.get_auth(t, p, Owner::Company).await.unwrap().unwrap();
    assert!(row.refused);
    assert_eq!((row.status, row.auth_state), (ConnectionStatus::NeedsReauth, None));
    let conn = f.set_credentials(b, &sim.credentials()).await;
    assert_eq!(conn.status, ConnectionStatus::Connected);
    let row = a.get_auth(t, p, Owner::Company).await.unwrap().unwrap();
    assert!(!row.refused);
    assert_eq!(row.credentials_version, v + 2);
    other.close().await;
}

crate::support::contract::contract! {
    store: [],
    url: [refresh_lease_and_compare_and_swap],
}
