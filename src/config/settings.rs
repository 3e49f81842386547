//! Daemon settings (`config/tributary.toml`). Command-line flags and environment
//! variables override what the file says.

use serde::{Deserialize, Serialize};

use super::diag::Diagnostics;
use super::source::{Source, typed};

/// The default limit of one provider response body: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// `tributary.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub secrets: SecretSettings,
    #[serde(default)]
    pub daemon: DaemonSettings,
    #[serde(default)]
    pub webhooks: WebhookSettings,
    #[serde(default)]
    pub writes: WriteSettings,
    #[serde(default)]
    pub retention: RetentionSettings,
    /// `[control]`: who may use the control socket, and as what.
    #[serde(default)]
    pub control: super::control::ControlSettings,
    #[serde(default)]
    pub server: super::server::ServerSettings,
    /// What a connector manifest's `category` may be; default `lms`, `crm`, `work`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

impl Settings {
    /// The provider categories manifests may use.
    pub fn categories(&self) -> Vec<String> {
        match &self.categories {
            Some(list) => list.clone(),
            None => super::manifest::DEFAULT_CATEGORIES.iter().map(|c| (*c).to_owned()).collect(),
        }
    }
}

/// `[retention]`: how long history is kept. A number of days of 0 keeps that kind forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Finished runs older than this are pruned…
    pub runs_days: u32,
    /// …except each job's latest `runs_keep` runs (at least its latest one).
    pub runs_keep: u32,
    /// Dead letters (records a mapping refused).
    pub dead_letters_days: u32,
    /// Delivered and failed outbound webhook messages, with their delivery attempts.
    pub webhook_messages_days: u32,
    /// Contributions superseded by a newer one.
    pub contributions_days: u32,
    /// Finished writes (succeeded, failed, conflict, cancelled), with their attempts; a
    /// pruned write's idempotency key can be used again.
    pub writes_days: u32,
    /// Records deleted at the provider (soft-deleted) are purged after this; 0 (the
    /// default) keeps them.
    pub deleted_records_days: u32,
    /// Rows removed per transaction, so pruning never holds the store for long.
    pub batch: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            runs_days: 90,
            runs_keep: 20,
            dead_letters_days: 30,
            webhook_messages_days: 30,
            contributions_days: 180,
            writes_days: 90,
            deleted_records_days: 0,
            batch: 1000,
        }
    }
}

/// `[writes]`: the write-back executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteSettings {
    /// Writes in flight at once per daemon.
    pub concurrency: usize,
    /// How long a claimed write stays leased to its worker; a write whose daemon died is
    /// claimed again after this.
    pub lease_secs: u64,
    /// The share of a connection's rate-limit budget kept for writes while reads and
    /// writes both wait on it (0 to 0.9): a read backfill cannot starve them. Uncontended,
    /// either may use the whole budget.
    pub rate_share: f64,
}

impl Default for WriteSettings {
    fn default() -> Self {
        Self { concurrency: 8, lease_secs: 300, rate_share: 0.25 }
    }
}

/// `[webhooks]`: outbound event deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Deliver to private, loopback and link-local addresses too (tests, demos, trusted
    /// networks). Off: such targets are refused at connect time.
    pub allow_private_targets: bool,
    /// Delays between attempts: the first attempt is immediate, then one retry after each
    /// delay; when they are spent the message fails and its endpoint is disabled.
    pub retry_schedule_secs: Vec<u64>,
    /// Total timeout of one attempt.
    pub timeout_secs: u64,
    /// Concurrent deliveries per daemon.
    pub concurrency: usize,
    /// How long a claimed message stays leased to its worker.
    pub lease_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            retry_schedule_secs: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000],
            timeout_secs: 15,
            concurrency: 16,
            lease_secs: 60,
        }
    }
}

/// `[daemon]`: the long-running service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Concurrent runs in this process (the global cap).
    pub workers: usize,
    /// Concurrent runs per tenant.
    pub per_tenant: usize,
    /// Concurrent runs per provider.
    pub per_provider: usize,
    /// Concurrent runs across every daemon sharing the store (PostgreSQL replicas);
    /// default: each daemon's `workers` is the only global cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_workers: Option<usize>,
    /// How long a claimed job's lease lasts without a heartbeat.
    pub lease_secs: u64,
    /// How often a running job renews its lease.
    pub heartbeat_secs: u64,
    /// How long a drain (SIGTERM) waits for in-flight runs before exiting anyway.
    pub drain_deadline_secs: u64,
    /// A run without progress for this long is reported stalled.
    pub stall_secs: u64,
    /// First retry delay after a failed run; doubles per consecutive failure.
    pub failure_base_secs: u64,
    /// Longest retry delay.
    pub failure_max_secs: u64,
    /// Consecutive failed runs after which the connection is marked `error`.
    pub error_after: u32,
    /// Control socket path (default: the runtime directory).
    pub control_socket: Option<std::path::PathBuf>,
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub http_listen: String,
    /// Apply `config/tenants/*.toml` on start and reload.
    pub apply_tenant_files: bool,
    /// Total timeout of one HTTP attempt to a provider (connect, send, whole body).
    pub request_timeout_secs: u64,
    /// Connect timeout of HTTP requests to providers.
    pub connect_timeout_secs: u64,
    /// Largest provider response body read (a manifest's `max_response_bytes` overrides it).
    pub max_response_bytes: u64,
    /// A separate address for `POST /webhooks/…` (it faces the providers, `/metrics`
    /// should not); default: served on `http_listen`.
    pub webhook_listen: Option<String>,
    /// Inbound webhook requests a second accepted from one source address.
    pub webhook_rate_per_source: u32,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            workers: 8,
            per_tenant: 2,
            per_provider: 4,
            fleet_workers: None,
            lease_secs: 60,
            heartbeat_secs: 15,
            drain_deadline_secs: 30,
            stall_secs: 300,
            failure_base_secs: 60,
            failure_max_secs: 3600,
            error_after: 5,
            control_socket: None,
            http_listen: "127.0.0.1:9187".into(),
            apply_tenant_files: true,
            request_timeout_secs: 120,
            connect_timeout_secs: 10,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            webhook_listen: None,
            webhook_rate_per_source: 100,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://tributary.db` (default) or `postgres://…`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// What `database_url` points at on PostgreSQL: `"none"` (default; PostgreSQL itself,
    /// or a pooler in session mode) or `"pgbouncer"` (a pooler in transaction mode).
    #[serde(default, skip_serializing_if = "PoolerSetting::is_none")]
    pub pooler: PoolerSetting,
    /// A `postgres://` URL straight to the server, for the listener that hears other
    /// replicas' wake-ups (`LISTEN` needs a session of its own). Behind
    /// `pooler = "pgbouncer"` without it, wake-ups fall back to the daemon's timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_url: Option<String>,
    /// The most connections one process opens to `database_url` (PostgreSQL; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

/// `[store] pooler`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolerSetting {
    #[default]
    None,
    /// PgBouncer (or another pooler) in transaction mode.
    Pgbouncer,
}

impl PoolerSetting {
    fn is_none(&self) -> bool {
        *self == PoolerSetting::None
    }
}

impl StoreSettings {
    fn check(&self, file: &str, diag: &mut Diagnostics) {
        let postgres = |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
        if self.max_connections == Some(0) {
            diag.push(file, "store.max_connections", "must be at least 1");
        }
        if let Some(url) = &self.listen_url
            && !postgres(url)
        {
            diag.push(file, "store.listen_url", "must be a `postgres://` URL (straight to the server, not the pooler)");
        }
        if let Some(url) = &self.database_url
            && !postgres(url)
        {
            for (key, set) in [
                ("store.pooler", !self.pooler.is_none()),
                ("store.listen_url", self.listen_url.is_some()),
                ("store.max_connections", self.max_connections.is_some()),
            ] {
                if set {
                    diag.push(
                        file,
                        key,
                        "applies to a PostgreSQL store only (store.database_url is not `postgres://…`)",
                    );
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    /// A file holding the 32-byte master key (raw or 64 hex digits).
    #[serde(default)]
    pub master_key_file: Option<std::path::PathBuf>,
}

impl Settings {
    pub fn load(source: &Source, diag: &mut Diagnostics) -> Self {
        let Some(mut table) = source.parse(diag) else {
            return Self::default();
        };
        if let Some(toml::Value::Table(daemon)) = table.get_mut("daemon")
            && daemon.remove("replicas").is_some()
        {
            diag.push(
                &source.name,
                "daemon.replicas",
                "was removed: replicas on one PostgreSQL database now share every rate limit through the \
                 store (budget shares that follow each replica's use), so no static split is configured; \
                 delete this key",
            );
        }
        let settings: Self = typed(toml::Value::Table(table), diag, &source.name, "").unwrap_or_default();
        settings.store.check(&source.name, diag);
        settings.daemon.check(&source.name, diag);
        settings.webhooks.check(&source.name, diag);
        settings.writes.check(&source.name, diag);
        settings.control.check(&source.name, diag);
        settings.server.check(&source.name, diag);
        if settings.retention.batch == 0 {
            diag.push(&source.name, "retention.batch", "must be at least 1");
        }
        if let Some(list) = &settings.categories {
            if list.is_empty() {
                diag.push(&source.name, "categories", "list at least one category");
            }
            for (i, c) in list.iter().enumerate() {
                let name = c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if c.is_empty() || !name {
                    diag.push(
                        &source.name,
                        &format!("categories[{i}]"),
                        format!("`{c}` is not a category name (lowercase letters, digits and `_`)"),
                    );
                } else if list[..i].contains(c) {
                    diag.push(&source.name, &format!("categories[{i}]"), format!("`{c}` is listed twice"));
                }
            }
        }
        settings
    }
}

impl WebhookSettings {
    /// Values with which no delivery could ever succeed.
    fn check(&self, file: &str, diag: &mut Diagnostics) {
        for (key, value) in [
            ("timeout_secs", usize::try_from(self.timeout_secs).unwrap_or(usize::MAX)),
            ("concurrency", self.concurrency),
            ("lease_secs", usize::try_from(self.lease_secs).unwrap_or(usize::MAX)),
        ] {
            if value == 0 {
                diag.push(file, &format!("webhooks.{key}"), "must be at least 1");
            }
        }
        if self.lease_secs > 0 && self.timeout_secs >= self.lease_secs {
            diag.push(
                file,
                "webhooks.timeout_secs",
                format!(
                    "must be less than webhooks.lease_secs ({}): a slow attempt would outlive its lease and be sent twice at once",
                    self.lease_secs
                ),
            );
        }
    }
}

impl WriteSettings {
    fn check(&self, file: &str, diag: &mut Diagnostics) {
        if self.concurrency == 0 {
            diag.push(file, "writes.concurrency", "must be at least 1");
        }
        if self.lease_secs == 0 {
            diag.push(file, "writes.lease_secs", "must be at least 1");
        }
        if !(0.0..=0.9).contains(&self.rate_share) {
            diag.push(file, "writes.rate_share", format!("must be between 0 and 0.9, not {}", self.rate_share));
        }
    }
}

impl DaemonSettings {
    /// Values that would stop the daemon working as configured: no capacity at all, or
    /// leases that lapse between two heartbeats of a run that is alive.
    fn check(&self, file: &str, diag: &mut Diagnostics) {
        for (key, value) in [
            ("workers", self.workers),
            ("per_tenant", self.per_tenant),
            ("per_provider", self.per_provider),
            ("fleet_workers", self.fleet_workers.unwrap_or(1)),
            ("lease_secs", usize::try_from(self.lease_secs).unwrap_or(usize::MAX)),
            ("heartbeat_secs", usize::try_from(self.heartbeat_secs).unwrap_or(usize::MAX)),
            ("max_response_bytes", usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX)),
            ("webhook_rate_per_source", usize::try_from(self.webhook_rate_per_source).unwrap_or(usize::MAX)),
        ] {
            if value == 0 {
                diag.push(file, &format!("daemon.{key}"), "must be at least 1");
            }
        }
        if let Err(e) = self.http_listen.parse::<std::net::SocketAddr>() {
            diag.push(
                file,
                "daemon.http_listen",
                format!("`{}` is not an address and port such as `127.0.0.1:9187` ({e})", self.http_listen),
            );
        }
        if let Some(listen) = &self.webhook_listen
            && let Err(e) = listen.parse::<std::net::SocketAddr>()
        {
            diag.push(
                file,
                "daemon.webhook_listen",
                format!("`{listen}` is not an address and port such as `0.0.0.0:9188` ({e})"),
            );
        }
        if self.heartbeat_secs > 0 && self.heartbeat_secs >= self.lease_secs {
            diag.push(
                file,
                "daemon.heartbeat_secs",
                format!(
                    "must be less than daemon.lease_secs ({}): a running job's lease would lapse between heartbeats",
                    self.lease_secs
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, String> {
        let mut diag = Diagnostics::default();
        let settings = Settings::load(&Source::builtin("tributary.toml", text), &mut diag);
        if diag.is_empty() { Ok(settings) } else { Err(diag.to_string()) }
    }

    #[test]
    fn leases_outlive_heartbeats_and_capacities_are_positive() {
        assert_eq!(load("[daemon]\nlease_secs = 2\nheartbeat_secs = 1\n").unwrap().daemon.lease_secs, 2);
        let err = load("[daemon]\nlease_secs = 10\nheartbeat_secs = 10\nworkers = 0\n").unwrap_err();
        assert!(err.contains("daemon.heartbeat_secs") && err.contains("lease_secs (10)"), "{err}");
        assert!(err.contains("daemon.workers: must be at least 1"), "{err}");
        let err = load("[daemon]\nlease_secs = 0\n").unwrap_err();
        assert!(err.contains("daemon.lease_secs: must be at least 1"), "{err}");
    }

    #[test]
    fn webhook_settings_that_cannot_work_are_refused() {
        assert!(load("[daemon]\nwebhook_listen = \"0.0.0.0:9188\"\nwebhook_rate_per_source = 5\n").is_ok());
        let err = load("[daemon]\nwebhook_listen = \"0.0.0.0\"\nwebhook_rate_per_source = 0\n").unwrap_err();
        assert!(err.contains("daemon.webhook_listen: `0.0.0.0` is not an address"), "{err}");
        assert!(err.contains("daemon.webhook_rate_per_source: must be at least 1"), "{err}");
        let err = load("[webhooks]\nconcurrency = 0\ntimeout_secs = 60\nlease_secs = 60\n").unwrap_err();
        assert!(err.contains("webhooks.concurrency: must be at least 1"), "{err}");
        assert!(err.contains("webhooks.timeout_secs: must be less than webhooks.lease_secs (60)"), "{err}");
    }

    #[test]
    fn write_and_retention_settings_that_cannot_work_are_refused() {
        let ok = load(
            "[writes]
concurrency = 2
rate_share = 0.5
[retention]
runs_days = 0
",
        )
        .unwrap();
        assert_eq!((ok.writes.concurrency, ok.writes.lease_secs, ok.retention.runs_days), (2, 300, 0));
        let err = load(
            "[writes]
concurrency = 0
lease_secs = 0
rate_share = 1.5
[retention]
batch = 0
",
        )
        .unwrap_err();
        assert!(err.contains("writes.concurrency: must be at least 1"), "{err}");
        assert!(err.contains("writes.lease_secs: must be at least 1"), "{err}");
        assert!(err.contains("writes.rate_share: must be between 0 and 0.9, not 1.5"), "{err}");
        assert!(err.contains("retention.batch: must be at least 1"), "{err}");
        let err = load(
            "[retention]
runs_dayz = 3
",
        )
        .unwrap_err();
        assert!(err.contains("runs_dayz"), "{err}");
    }

    #[test]
    fn store_settings_for_a_pooler_are_checked() {
        let ok = load(
            "[store]\ndatabase_url = \"postgres://t@pgbouncer:6432/t\"\npooler = \"pgbouncer\"\n\
             listen_url = \"postgres://t@db:5432/t\"\nmax_connections = 4\n",
        )
        .unwrap();
        assert_eq!((ok.store.pooler, ok.store.max_connections), (PoolerSetting::Pgbouncer, Some(4)));
        assert_eq!(load("").unwrap().store.pooler, PoolerSetting::None);
        let err = load("[store]\npooler = \"pgpool\"\n").unwrap_err();
        assert!(err.contains("pooler") && err.contains("pgpool"), "{err}");
        let err = load("[store]\nmax_connections = 0\nlisten_url = \"db:5432\"\n").unwrap_err();
        assert!(err.contains("store.max_connections: must be at least 1"), "{err}");
        assert!(err.contains("store.listen_url: must be a `postgres://` URL"), "{err}");
        let err = load("[store]\ndatabase_url = \"sqlite://t.db\"\npooler = \"pgbouncer\"\n").unwrap_err();
        assert!(err.contains("store.pooler: applies to a PostgreSQL store only"), "{err}");
    }

    #[test]
    fn the_http_listen_address_must_parse() {
        assert!(load("[daemon]\nhttp_listen = \"0.0.0.0:9187\"\n").is_ok());
        assert!(load("[daemon]\nhttp_listen = \"[::1]:9187\"\n").is_ok());
        for bad in ["localhost", "127.0.0.1", "127.0.0.1:99999", ":9187"] {
            let err = load(&format!("[daemon]\nhttp_listen = \"{bad}\"\n")).unwrap_err();
            assert!(err.contains("tributary.toml: daemon.http_listen: `"), "{bad}: {err}");
        }
    }
}
