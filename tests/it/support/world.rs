//! A world to sync in: a store, a configuration catalog, a master key, and tenants
//! connected to providers (usually the simulators) with sealed credentials, as the
//! command line would set them up. The connector, fault, token, user and intelligence
//! tests sync in it in process; the daemon tests use it to set up many tenants at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tributary::config::{Catalog, ConfigDir, Manifest, TenantSpec};
use tributary::model::{AuditEntry, ConnectionRow, Owner};
use tributary::model::{ProviderId, RunTrigger, StreamName, TenantId, UserId};
use tributary::secrets::{Credentials, MasterKey, Sealed};
use tributary::store::Store;
use tributary::sync::{SyncRequest, Syncer};
use tributary::tenants::{ApplyOutcome, Tenants};

/// A store, the catalog and key every sync in it uses, and a directory for tenant files.
pub struct World {
    pub store: Store,
    pub catalog: Catalog,
    pub key: MasterKey,
    /// Tenant files (and the SQLite database when the world made its own store).
    dir: tempfile::TempDir,
}

/// The options of a [`World`]: by default the repository's `config/` with the built-in
/// manifests stripped of their rate limits (data, not pacing, is under test), no run-time
/// connectors, a new master key and a fresh SQLite store.
pub struct Builder {
    config: PathBuf,
    connectors: Option<PathBuf>,
    rate_limits: bool,
    key: Option<MasterKey>,
}

impl World {
    pub fn builder() -> Builder {
        Builder {
            config: Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
            connectors: None,
            rate_limits: false,
            key: None,
        }
    }

    /// Writes `<id>.toml` (`body` follows the id, name and subdomain lines) and reads it
    /// as `tenant create` and `tenant apply` do.
    pub fn tenant_file(&self, id: &str, name: &str, body: &str) -> TenantSpec {
        let file = self.dir.path().join(format!("{id}.toml"));
        std::fs::write(&file, format!("id = \"{id}\"\nname = \"{name}\"\nsubdomain = \"{id}\"\n{body}")).unwrap();
        self.catalog.tenant_file(&file).unwrap_or_else(|d| panic!("{d}"))
    }

    /// Creates tenant `id` from a tenant file, as `tenant create` does.
    pub async fn create_tenant(&self, id: &str, name: &str, body: &str) -> TenantId {
        let spec = self.tenant_file(id, name, body);
        Tenants::new(&self.catalog, &self.store, "test").create(&spec).await.unwrap();
        spec.id
    }

    /// Creates or updates a tenant from its file, as `tenant apply` does.
    pub async fn apply(&self, spec: &TenantSpec) -> ApplyOutcome {
        Tenants::new(&self.catalog, &self.store, "test").apply(spec).await.unwrap()
    }

    /// Seals `credentials` for the company connection (or `user`'s own) and stores them,
    /// as `credentials set [--user]` does.
    pub async fn credentials(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        user: Option<&UserId>,
        credentials: &Value,
    ) -> ConnectionRow {
        self.credentials_in(&self.store, tenant, provider, user, credentials).await
    }

    /// [`World::credentials`] through another store on the same database (a replica).
    pub async fn credentials_in(
        &self,
        store: &Store,
        tenant: &TenantId,
        provider: &ProviderId,
        user: Option<&UserId>,
        credentials: &Value,
    ) -> ConnectionRow {
        let owner = Owner::of(user);
        let creds = Credentials::from_json(credentials.to_string().as_bytes()).unwrap();
        let sealed = self.key.seal_as(Sealed::Credentials, tenant, provider, owner, &creds.to_json());
        let audit = AuditEntry { subject: Some(provider.to_string()), ..audit("credentials.set", tenant) };
        store.set_credentials(tenant, provider, owner, &sealed, &audit).await.unwrap()
    }

    /// A syncer on this world's store with a short retry backoff.
    pub fn syncer(&self) -> Syncer<'_> {
        self.syncer_in(&self.store)
    }

    /// A syncer on another store on the same database (a replica).
    pub fn syncer_in<'a>(&'a self, store: &'a Store) -> Syncer<'a> {
        let mut syncer = Syncer::new(&self.catalog, store, &self.key).unwrap();
        syncer.retry.base_delay = Duration::from_millis(5);
        syncer
    }
}

impl Builder {
    /// Loads the configuration from `dir` instead of the repository's.
    pub fn config(mut self, dir: PathBuf) -> Self {
        self.config = dir;
        self
    }

    /// Adds run-time connector manifests from `dir`.
    pub fn connectors(mut self, dir: Option<&Path>) -> Self {
        self.connectors = dir.map(Path::to_owned);
        self
    }

    /// Keeps the manifests' rate limits.
    pub fn rate_limits(mut self) -> Self {
        self.rate_limits = true;
        self
    }

    /// Seals credentials with `key` (the one a daemon of the test reads).
    pub fn key(mut self, key: MasterKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The world on `store`.
    pub fn on(self, store: Store) -> World {
        self.build(store, tempfile::tempdir().unwrap())
    }

    /// The world on a fresh SQLite store of its own.
    pub async fn on_sqlite(self) -> World {
        let (store, dir) = super::sqlite_store().await;
        self.build(store, dir)
    }

    fn build(self, store: Store, dir: tempfile::TempDir) -> World {
        let mut catalog =
            Catalog::load(&ConfigDir::Dir(self.config), self.connectors.as_deref()).unwrap_or_else(|d| panic!("{d}"));
        if !self.rate_limits {
            let unlimited: Vec<_> =
                catalog.manifests.iter().map(|m| Manifest { rate_limit: None, ..m.clone() }).collect();
            for m in unlimited {
                catalog.manifests.insert(m);
            }
        }
        World { store, catalog, key: self.key.unwrap_or_else(MasterKey::generate), dir }
    }
}

/// A run of `stream` of the company connection as `tributary sync` asks for it: from the
/// stored cursor, without a lease.
pub fn request(tenant: &TenantId, provider: &ProviderId, stream: &str) -> SyncRequest {
    SyncRequest {
        tenant: tenant.clone(),
        provider: provider.clone(),
        stream: StreamName::parse(stream).unwrap(),
        trigger: RunTrigger::Cli,
        full_refresh: false,
        lease_owner: None,
        cancel: None,
        owner: None,
    }
}

/// An audit entry of `action` by `test` at `tenant`, now.
pub fn audit(action: &str, tenant: &TenantId) -> AuditEntry {
    AuditEntry {
        at: chrono::Utc::now(),
        actor: "test".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: action.into(),
        tenant_id: Some(tenant.clone()),
        subject: None,
        details: Value::Null,
    }
}
