//! Every connector against its simulator: full and incremental syncs, pagination
//! edges, tenant overrides, guards, and a provider added as a manifest file only.

mod aptem;
mod asana;
mod bounds;
mod bud;
mod check;
mod github;
mod gitlab;
mod google_drive;
mod guards;
mod hubspot;
mod jira;
mod microsoft;
mod microsoft_delta;
mod new_provider;
mod onefile;
mod paging;
mod salesforce;
mod slack;
mod state;

use std::path::Path;

use serde_json::Value;
use tributary::model::{EntityName, ProviderId, RecordRow, RunOutcome, RunRow, RunStats, TenantId};
use tributary::sync::{SyncRequest, Syncer};
use tributary_simulator::SimHandle;

use crate::support::world::{World, request};

/// A tenant `acme` connected to one simulator: a [`World`] on a fresh SQLite store.
pub struct Harness {
    pub world: World,
    pub tenant: TenantId,
    pub provider: ProviderId,
}

impl std::ops::Deref for Harness {
    type Target = World;

    fn deref(&self) -> &World {
        &self.world
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl Harness {
    /// `tenant_toml` is the tenant file (without `id`/`name`/`subdomain`); `sim` supplies the credentials.
    pub async fn new(provider: &str, tenant_toml: &str, sim: &SimHandle) -> Self {
        Self::with_connectors(provider, tenant_toml, &sim.credentials(), None).await
    }

    pub async fn with_connectors(
        provider: &str,
        tenant_toml: &str,
        credentials: &Value,
        connectors: Option<&Path>,
    ) -> Self {
        // Connector tests check data, not pacing: the real limits (Slack: 50 a minute) would
        // only slow them down. `faults.rs` tests rate limiting with limits it sets itself.
        let world = World::builder().connectors(connectors).on_sqlite().await;
        let tenant = world.create_tenant("acme", "Acme Training Ltd", tenant_toml).await;
        let provider = ProviderId::parse(provider).unwrap();
        world.credentials(&tenant, &provider, None, credentials).await;
        Self { world, tenant, provider }
    }

    /// Adds another tenant `id` (same store and provider) with its own tenant file and
    /// credentials.
    pub async fn add_tenant(&self, id: &str, tenant_toml: &str, credentials: &Value) -> TenantId {
        let tenant = self.create_tenant(id, id, tenant_toml).await;
        self.credentials(&tenant, &self.provider, None, credentials).await;
        tenant
    }

    /// Runs one sync of `stream` for `tenant` with `syncer`.
    pub async fn sync_using(&self, syncer: &Syncer<'_>, tenant: &TenantId, stream: &str) -> RunRow {
        syncer.run(&request(tenant, &self.provider, stream), &mut |_, _| {}).await.unwrap()
    }

    /// Runs one sync of `stream` and returns the run row.
    pub async fn sync(&self, stream: &str) -> RunRow {
        self.sync_with(stream, false).await
    }

    /// Runs one sync of `stream`, calling `progress` after every stored page.
    pub async fn sync_observed(&self, stream: &str, progress: &mut (dyn FnMut(&RunStats) + Send)) -> RunRow {
        self.run(stream, false, progress).await
    }

    pub async fn sync_with(&self, stream: &str, full_refresh: bool) -> RunRow {
        self.run(stream, full_refresh, &mut |_| {}).await
    }

    async fn run(&self, stream: &str, full_refresh: bool, progress: &mut (dyn FnMut(&RunStats) + Send)) -> RunRow {
        let syncer = self.syncer();
        let req = SyncRequest { full_refresh, ..request(&self.tenant, &self.provider, stream) };
        syncer
            .run(&req, &mut |_, stats| {
                if stats.pages > 0 {
                    progress(stats)
                }
            })
            .await
            .unwrap()
    }

    /// Every stored record of `entity`, keyed by external id.
    pub async fn records(&self, entity: &str) -> std::collections::BTreeMap<String, RecordRow> {
        let entity = EntityName::parse(entity).unwrap();
        let rows = self.store.list_records(&self.tenant, &entity, 1_000_000).await.unwrap();
        rows.into_iter().map(|r| (r.external_id.clone(), r)).collect()
    }
}

/// Asserts a run succeeded, with its error in the message otherwise.
pub fn ok(run: &RunRow) -> &RunRow {
    assert_eq!(run.outcome, RunOutcome::Success, "run failed: {:?}", run.stats.error);
    run
}

/// The text form of a JSON scalar.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Modifies record `i` of `stream` until its content (ignoring `volatile` fields such as
/// timestamps; dotted paths reach into objects) differs from before, as the simulator
/// itself reports it.
pub fn modify_until_changed(sim: &SimHandle, stream: &str, i: u64, volatile: &[&str]) {
    let strip = |mut v: Value| {
        for path in volatile {
            let (parents, key) = path.rsplit_once('.').map_or(("", *path), |(p, k)| (p, k));
            let mut target = Some(&mut v);
            for seg in parents.split('.').filter(|s| !s.is_empty()) {
                target = target.and_then(|t| t.get_mut(seg));
            }
            if let Some(m) = target.and_then(Value::as_object_mut) {
                m.remove(key);
            }
        }
        v
    };
    let before = strip(sim.expected_record(stream, i).unwrap());
    for _ in 0..50 {
        assert!(sim.modify(stream, i));
        if strip(sim.expected_record(stream, i).unwrap()) != before {
            return;
        }
    }
    panic!("record {i} of {stream} never changed content");
}

/// Pagination edges of one stream: an empty stream, exactly one full page, and a partial
/// last page — exact record and page counts each time, against a fresh simulator and
/// tenant per case.
pub async fn assert_pagination_edges(
    page: u64,
    config: impl Fn(u64) -> tributary_simulator::SimConfig,
    tenant: impl Fn(&SimHandle) -> String,
    provider: &str,
    stream: &str,
    entity: &str,
) {
    for (n, pages) in [(0u64, 0i64), (page, 1), (page + 3, 2)] {
        let sim = tributary_simulator::start(config(n)).await.unwrap();
        let h = Harness::new(provider, &tenant(&sim), &sim).await;
        let run = h.sync(stream).await;
        ok(&run);
        assert_eq!(run.stats.fetched, n as i64, "n = {n}");
        assert_eq!(run.stats.pages, pages, "n = {n}");
        assert_eq!(h.records(entity).await.len() as u64, n);
    }
}
