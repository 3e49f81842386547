//! Runs of user connections against the HubSpot simulator, on SQLite and PostgreSQL:
//! only the streams the owner's role is granted at that company, with the owner's own
//! credentials and token, and jobs that follow role changes at the next reconcile.

use std::time::Duration;

use serde_json::{Value, json};
use tributary::app::reconcile;
use tributary::config::TenantSpec;
use tributary::model::{
    ConnectionRow, ConnectionStatus, EntityName, Owner, ProviderId, RoleName, RunOutcome, RunRow, TenantId, UserId,
};
use tributary::store::Store;
use tributary::sync::{SyncError, SyncRequest};
use tributary::telemetry::Metrics;
use tributary::tenants::{ApplyOutcome, Tenants};
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};

use crate::support::exec_raw;
use crate::support::world::{audit, request};

/// Contacts (and companies) the simulator serves.
const N: u64 = 120;

/// Tenants on `aptem_hubspot` with HubSpot at a simulator serving [`N`] contacts, in a
/// [`support::world::World`](crate::support::world::World) on the test's store.
pub(crate) struct World {
    pub(crate) base: crate::support::world::World,
    pub(crate) url: String,
    pub(crate) sim: SimHandle,
}

impl std::ops::Deref for World {
    type Target = crate::support::world::World;

    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

pub(crate) fn tid(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

pub(crate) fn uid(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub(crate) fn hubspot() -> ProviderId {
    ProviderId::parse("hubspot").unwrap()
}

impl World {
    pub(crate) async fn new(store: Store, url: String) -> Self {
        let sim = start(SimConfig::new(Provider::HubSpot, N)).await.unwrap();
        Self { base: crate::support::world::World::builder().on(store), url, sim }
    }

    /// A tenant file on `aptem_hubspot` with HubSpot at the simulator; `roles` is its
    /// `[roles]` part.
    pub(crate) fn spec(&self, id: &str, roles: &str) -> TenantSpec {
        let body =
            format!("preset = \"aptem_hubspot\"\n[providers.hubspot]\nbase_url = \"{}\"\n{roles}", self.sim.base_url());
        self.tenant_file(id, id, &body)
    }

    /// Applies [`World::spec`].
    pub(crate) async fn apply(&self, id: &str, roles: &str) {
        self.base.apply(&self.spec(id, roles)).await;
    }

    pub(crate) async fn member(&self, tenant: &str, user: &str, role: &str) {
        let role = RoleName::parse(role).unwrap();
        self.store
            .set_membership(&tid(tenant), &uid(user), &role, &audit("membership.set", &tid(tenant)))
            .await
            .unwrap();
    }

    pub(crate) async fn connect(&self, tenant: &str, user: &str) -> ConnectionRow {
        self.connect_on(tenant, user, None).await
    }

    /// A user connection with its own schedule.
    pub(crate) async fn connect_on(&self, tenant: &str, user: &str, schedule: Option<&str>) -> ConnectionRow {
        let t = tid(tenant);
        self.store.connect_user(&t, &hubspot(), &uid(user), schedule, &audit("connect", &t)).await.unwrap().0
    }

    /// What `tributary credentials set [--user]` does.
    pub(crate) async fn credentials(&self, tenant: &str, user: Option<&str>, credentials: &Value) {
        let user = user.map(uid);
        self.base.credentials(&tid(tenant), &hubspot(), user.as_ref(), credentials).await;
    }

    pub(crate) async fn sync(&self, tenant: &str, user: Option<&str>, stream: &str) -> Result<RunRow, SyncError> {
        self.run(tenant, user, stream, false).await
    }

    /// A run that reads everything again (not from the cursor).
    pub(crate) async fn sync_full(&self, tenant: &str, user: Option<&str>, stream: &str) -> Result<RunRow, SyncError> {
        self.run(tenant, user, stream, true).await
    }

    pub(crate) async fn run(
        &self,
        tenant: &str,
        user: Option<&str>,
        stream: &str,
        full: bool,
    ) -> Result<RunRow, SyncError> {
        let syncer = self.syncer();
        let req = SyncRequest { full_refresh: full, owner: user.map(uid), ..request(&tid(tenant), &hubspot(), stream) };
        syncer.run(&req, &mut |_, _| {}).await
    }

    pub(crate) async fn reconcile(&self) {
        let done =
            reconcile(&self.catalog, &self.store, false, Duration::from_secs(60), &Metrics::new()).await.unwrap();
        assert!(done.errors.is_empty(), "{:?}", done.errors);
    }

    pub(crate) async fn connection(&self, tenant: &str, user: Option<&str>) -> ConnectionRow {
        let user = user.map(uid);
        self.store.get_connection(&tid(tenant), &hubspot(), Owner::of(user.as_ref())).await.unwrap().unwrap()
    }

    /// The jobs of `user`'s (or the company's) HubSpot connection: (stream, enabled).
    pub(crate) async fn jobs(&self, tenant: &str, user: Option<&str>) -> Vec<(String, bool)> {
        let connection = self.connection(tenant, user).await.id;
        let jobs = self.store.list_jobs(&tid(tenant)).await.unwrap();
        jobs.into_iter().filter(|j| j.connection_id == connection).map(|j| (j.stream.to_string(), j.enabled)).collect()
    }

    pub(crate) async fn employers(&self, tenant: &str) -> i64 {
        let employer = EntityName::parse("employer").unwrap();
        self.store.count_records(&tid(tenant), Some(&employer)).await.unwrap()
    }
}

pub(crate) fn ok(run: &RunRow) {
    assert_eq!(run.outcome, RunOutcome::Success, "run failed: {:?}", run.stats.error);
}

fn jobs(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(s, e)| ((*s).to_owned(), *e)).collect()
}

async fn user_connections_sync_only_what_their_role_is_granted(store: &Store, url: &str) {
    let w = World::new(store.clone(), url.to_owned()).await;
    w.apply("acme", "[roles.developer]\nstreams = [\"hubspot.contacts\"]\n[roles.sales]\nstreams = [\"hubspot.*\"]\n")
        .await;
    w.apply("globex", "[roles.sales]\nstreams = [\"hubspot.*\"]\n").await;
    w.store.add_user(&uid("bob"), "Bob", None, &audit("user.add", &tid("acme"))).await.unwrap();
    // One user, two companies, a different role at each.
    w.member("acme", "bob", "developer").await;
    w.member("globex", "bob", "sales").await;
    w.connect("acme", "bob").await;
    w.connect("globex", "bob").await;
    w.credentials("acme", Some("bob"), &w.sim.new_grant().unwrap()).await;
    w.credentials("globex", Some("bob"), &w.sim.new_grant().unwrap()).await;

    // At acme Bob, a developer, syncs contacts with his own credentials …
    let run = w.sync("acme", Some("bob"), "contacts").await.unwrap();
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted), (N as i64, N as i64));
    assert_eq!(w.employers("acme").await, N as i64, "a user connection feeds its company's records");
    // … and is refused companies, with the reason.
    let err = w.sync("acme", Some("bob"), "companies").await.unwrap_err();
    assert!(matches!(err, SyncError::NotGranted { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "user `bob`'s connection to `hubspot` at tenant `acme` may not sync stream `companies`: \
         not granted to role `developer` at acme"
    );
    // At globex, in sales, he syncs companies too.
    ok(&w.sync("globex", Some("bob"), "companies").await.unwrap());
    assert_eq!(w.employers("globex").await, 0, "nothing crossed from acme");
    let err = w.sync("acme", Some("carol"), "contacts").await.unwrap_err();
    assert!(err.to_string().contains("user `carol` has no connection to `hubspot` at tenant `acme`"), "{err}");

    // The company connection has no credentials: Bob's do not serve it, though his token
    // is cached in this process.
    let err = w.sync("acme", None, "contacts").await.unwrap_err();
    assert!(matches!(err, SyncError::NotConnected { status: ConnectionStatus::Pending, .. }), "{err:?}");
    // Company credentials the provider refuses, while Bob's run is under way in the same
    // process: the company's run fails and needs re-authorisation, on its connection
    // only (Bob's token in the process is not the company's); Bob's run goes on.
    let mut refused = w.sim.new_grant().unwrap();
    refused["refresh_token"] = json!("not-a-grant");
    w.credentials("acme", None, &refused).await;
    w.sim.set_faults(Faults::none().delay(Duration::from_millis(100)));
    let token_calls = w.sim.requests_for("/oauth/v1/token");
    let (bobs, company) = tokio::join!(w.sync_full("acme", Some("bob"), "contacts"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.sync("acme", None, "contacts").await
    });
    w.sim.set_faults(Faults::none());
    let (bobs, company) = (bobs.unwrap(), company.unwrap());
    ok(&bobs);
    assert_eq!(bobs.stats.fetched, N as i64);
    assert_eq!(company.outcome, RunOutcome::Failed);
    assert!(company.stats.error.as_deref().unwrap_or_default().contains("invalid_grant"), "{:?}", company.stats.error);
    assert_eq!(w.connection("acme", None).await.status, ConnectionStatus::NeedsReauth);
    assert_eq!(w.connection("acme", Some("bob")).await.status, ConnectionStatus::Connected);
    assert_eq!(
        w.sim.requests_for("/oauth/v1/token"),
        token_calls + 1,
        "one refused refresh; Bob's stored token served him"
    );

    // Bob's sealed credentials moved onto the company row do not open there.
    exec_raw(
        &w.url,
        "UPDATE connections SET \
         credentials = (SELECT b.credentials FROM connections b WHERE b.tenant_id = 'acme' \
           AND b.provider = 'hubspot' AND b.owner_user = 'bob'), \
         credentials_version = credentials_version + 1, status = 'connected', status_reason = NULL \
         WHERE tenant_id = 'acme' AND provider = 'hubspot' AND owner_user = ''",
    )
    .await;
    let run = w.sync("acme", None, "contacts").await.unwrap();
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.stats.error.unwrap_or_default();
    assert!(error.contains("cannot be decrypted"), "{error}");

    // The daemon's reconcile: jobs for the granted streams only, per company.
    w.reconcile().await;
    assert_eq!(w.jobs("acme", Some("bob")).await, jobs(&[("contacts", true)]));
    assert_eq!(w.jobs("globex", Some("bob")).await, jobs(&[("companies", true), ("contacts", true)]));
    assert_eq!(w.jobs("acme", None).await, jobs(&[("companies", true), ("contacts", true)]));

    // A role change is followed at the next reconcile: more streams …
    w.member("acme", "bob", "sales").await;
    w.reconcile().await;
    assert_eq!(w.jobs("acme", Some("bob")).await, jobs(&[("companies", true), ("contacts", true)]));
    ok(&w.sync("acme", Some("bob"), "companies").await.unwrap());
    // … or none, for a role without an entry (deny by default).
    w.member("acme", "bob", "intern").await;
    w.reconcile().await;
    assert_eq!(w.jobs("acme", Some("bob")).await, jobs(&[("companies", false), ("contacts", false)]));
    let err = w.sync("acme", Some("bob"), "contacts").await.unwrap_err();
    assert!(err.to_string().contains("granted nothing (deny by default)"), "{err}");
    // Leaving globex stops Bob's jobs there; his records stay.
    let globex_records = w.employers("globex").await;
    w.store.remove_membership(&tid("globex"), &uid("bob"), &audit("membership.remove", &tid("globex"))).await.unwrap();
    w.reconcile().await;
    assert_eq!(w.jobs("globex", Some("bob")).await, jobs(&[("companies", false), ("contacts", false)]));
    assert_eq!(w.connection("globex", Some("bob")).await.status, ConnectionStatus::Disabled);
    let err = w.sync("globex", Some("bob"), "companies").await.unwrap_err();
    assert!(err.to_string().contains("the owner has no role at globex (not a member)"), "{err}");
    assert_eq!(w.employers("globex").await, globex_records);
    // The company connections' jobs never changed.
    assert_eq!(w.jobs("acme", None).await, jobs(&[("companies", true), ("contacts", true)]));
    w.store.close().await;
}

crate::support::contract::contract! {
    store: [],
    url: [user_connections_sync_only_what_their_role_is_granted],
}

#[tokio::test]
async fn tenant_apply_stores_role_grants_reports_their_changes_and_jobs_follow() {
    let (store, _dir) = crate::support::sqlite_store().await;
    let url = crate::support::sqlite_url(&store);
    let w = World::new(store, url).await;
    let developer_contacts = "[roles.developer]\nstreams = [\"hubspot.contacts\"]\n";
    w.apply("acme", developer_contacts).await;
    w.store.add_user(&uid("bob"), "Bob", None, &audit("user.add", &tid("acme"))).await.unwrap();
    w.member("acme", "bob", "developer").await;
    w.connect("acme", "bob").await;
    let acme = tid("acme");
    let reconcile_acme = || async {
        tributary::app::reconcile_tenant(&w.catalog, &w.store, &acme, Duration::from_secs(60)).await.unwrap()
    };
    reconcile_acme().await;
    assert_eq!(w.jobs("acme", Some("bob")).await, jobs(&[("contacts", true)]));

    let tenants = Tenants::new(&w.catalog, &w.store, "test");
    let spec = |roles: &str| w.spec("acme", roles);
    assert_eq!(tenants.apply(&spec(developer_contacts)).await.unwrap(), ApplyOutcome::Unchanged);
    // Widening the role is a change of the tenant, and its jobs follow.
    let outcome = tenants.apply(&spec("[roles.developer]\nstreams = [\"hubspot.*\"]\n")).await.unwrap();
    let ApplyOutcome::Updated { changes } = outcome else { panic!("{outcome:?}") };
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].path, "roles.developer.streams");
    assert_eq!(
        (changes[0].before.clone(), changes[0].after.clone()),
        (Some(json!(["hubspot.contacts"])), Some(json!(["hubspot.*"])))
    );
    assert_eq!(w.store.role_grants(&acme).await.unwrap()[&RoleName::parse("developer").unwrap()], ["hubspot.*"]);
    let counts = reconcile_acme().await;
    assert_eq!(counts.created, 1);
    assert_eq!(w.jobs("acme", Some("bob")).await, jobs(&[("companies", true), ("contacts", true)]));
    // A file without roles grants nothing any more: Bob's jobs stop, the company's stay.
    tenants.apply(&spec("")).await.unwrap();
    assert!(w.store.role_grants(&acme).await.unwrap().is_empty());
    reconcile_acme().await;
    assert_eq!(w.jobs("acme", Some("bob")).await, jobs(&[("companies", false), ("contacts", false)]));
    assert_eq!(w.jobs("acme", None).await, jobs(&[("companies", true), ("contacts", true)]));
    let actions: Vec<String> =
        w.store.list_audit(Some(&acme), 100).await.unwrap().into_iter().map(|a| a.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "roles.set").count(), 3, "{actions:?}");
    w.store.close().await;
}
