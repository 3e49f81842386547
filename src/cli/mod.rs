//! The `tributary` command line: clap subcommands over the library. Human output by
//! default, `--json` for machines; errors name what and where and exit non-zero.

mod api_keys;
mod audit;
mod catalog;
mod connections;
mod credentials;
mod ctl;
mod daemon;
mod demo;
mod intelligence;
mod keys;
mod output;
mod progress;
mod prune;
mod records;
mod responsibilities;
mod runs;
mod simulate;
mod sync;
mod tenant;
mod usage;
mod users;
mod views;
mod webhooks;
mod writes;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Catalog, ConfigDir, PoolerSetting};
use crate::secrets::MasterKey;
use crate::store::{DEFAULT_MAX_CONNECTIONS, PgOptions, Pooler, Store};

/// tributary — a multi-tenant integration sync daemon.
///
/// Keeps a normalized copy of each tenant's LMS, CRM and work-tool data current.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Configuration directory (entities.toml, presets.toml, tributary.toml, tenants/).
    /// Default: ./config when it exists, else the copies built into the binary.
    #[arg(long, global = true, env = "TRIBUTARY_CONFIG", value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Directory of extra or replacement connector manifests.
    /// Default: ./connectors when it exists.
    #[arg(long, global = true, env = "TRIBUTARY_CONNECTORS", value_name = "DIR")]
    pub connectors: Option<PathBuf>,
    /// Store URL: sqlite://FILE (default sqlite://tributary.db) or postgres://…
    #[arg(long, global = true, env = "TRIBUTARY_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "TRIBUTARY_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate configuration files.
    #[command(subcommand)]
    Config(catalog::ConfigCmd),
    /// List and inspect presets.
    #[command(subcommand)]
    Presets(catalog::PresetsCmd),
    /// List connectors (providers).
    #[command(subcommand)]
    Connectors(catalog::ConnectorsCmd),
    /// Create, apply, inspect and rebase tenants.
    #[command(subcommand)]
    Tenant(tenant::TenantCmd),
    /// Store and list encrypted provider credentials.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCmd),
    /// Users, their roles at tenants, and their own connections.
    #[command(subcommand)]
    Users(users::UsersCmd),
    /// Check a connection: authenticate and read one page per stream, storing nothing.
    #[command(subcommand)]
    Connections(connections::ConnectionsCmd),
    /// Run provider simulators (fake APIs on loopback) in the foreground.
    Simulate(simulate::SimulateArgs),
    /// Sync one provider (or one stream) of a tenant now, in the foreground.
    Sync(sync::SyncArgs),
    /// Start simulators, demo tenants and the daemon: everything working, no credentials.
    Demo(demo::DemoArgs),
    /// Run the daemon: scheduler, workers, control socket, /metrics; until SIGTERM.
    Run(daemon::RunArgs),
    /// Talk to a running daemon (`tributary run`) over its control socket.
    Ctl(ctl::CtlArgs),
    /// The sync log: recent runs and their details.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
    /// Stored records.
    #[command(subcommand)]
    Records(records::RecordsCmd),
    /// Company integration intelligence aggregated from users' contributions.
    #[command(subcommand)]
    Intelligence(intelligence::IntelligenceCmd),
    /// Contributions of users' runs to company integrations; review them.
    #[command(subcommand)]
    Contributions(intelligence::ContributionsCmd),
    /// Who is responsible for each company integration, and what their runs contribute.
    #[command(subcommand)]
    Responsibilities(responsibilities::ResponsibilitiesCmd),
    /// Outbound event webhooks: endpoints, deliveries, replay.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCmd),
    /// Write-back: submit writes to providers, list, show, retry, cancel them.
    #[command(subcommand)]
    Writes(writes::WritesCmd),
    /// Master-key rotation: re-encrypt every sealed value under a new key; what remains
    /// under each key id.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Usage analytics of a tenant: API calls, records, errors, bytes, rate-limit waits
    /// and run time per provider and stream, by day or week.
    Usage(usage::UsageArgs),
    /// Remove the history `[retention]` no longer keeps (the daemon does it daily).
    Prune(prune::PruneArgs),
    /// The typed entity views (`entity_<name>`) consumers read.
    #[command(subcommand)]
    Views(views::ViewsCmd),
    /// The audit log: who changed what, control actions, denied requests.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Keys of the HTTP API (`/api/v1`): create (printed once), list, revoke.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(api_keys::ApiKeysCmd),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.global.log_format;
    init_logging(format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            fatal(format, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // The command runs on a worker thread, beside the I/O it waits on (the HTTP
    // connection tasks), not on this thread: a wake-up from a worker to a task on the
    // thread that blocks on the runtime is a futex round trip, several per page read.
    let done = runtime.block_on(async { tokio::spawn(run(cli)).await });
    match done.unwrap_or_else(|e| Err(anyhow::anyhow!("the command ended abnormally: {e}"))) {
        Ok(code) => code,
        Err(e) => {
            fatal(format, &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Reports the error that ends the process: a log line when logs are JSON (so a log
/// collector reads it like any other), else `error: …` for a person.
fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Json => tracing::error!("{message}"),
        LogFormat::Human => eprintln!("error: {message}"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    // A change that fails is audited too (one that succeeds audits itself).
    let change = audit::change_of(&cli.command);
    let result = dispatch(g, cli.command).await;
    if let (Some(change), Err(e)) = (change, &result) {
        audit::record_failure(g, change, e).await;
    }
    result
}

async fn dispatch(g: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config(cmd) => catalog::config(g, cmd),
        Command::Presets(cmd) => catalog::presets(g, cmd),
        Command::Connectors(cmd) => catalog::connectors(g, cmd),
        Command::Tenant(cmd) => tenant::run(g, cmd).await,
        Command::Credentials(cmd) => credentials::run(g, cmd).await,
        Command::Users(cmd) => users::run(g, cmd).await,
        Command::Connections(cmd) => connections::run(g, cmd).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Sync(args) => sync::run(g, args).await,
        Command::Ctl(args) => ctl::run(g, args).await,
        Command::Run(args) => daemon::run(g, args).await,
        Command::Demo(args) => demo::run(g, args).await,
        Command::Runs(cmd) => runs::runs(g, cmd).await,
        Command::Records(cmd) => records::records(g, cmd).await,
        Command::Intelligence(cmd) => intelligence::show(g, cmd).await,
        Command::Contributions(cmd) => intelligence::contributions(g, cmd).await,
        Command::Responsibilities(cmd) => responsibilities::run(g, cmd).await,
        Command::Webhooks(cmd) => webhooks::run(g, cmd).await,
        Command::Writes(cmd) => writes::run(g, cmd).await,
        Command::Keys(cmd) => keys::run(g, cmd).await,
        Command::Usage(args) => usage::run(g, args).await,
        Command::Prune(args) => prune::run(g, args).await,
        Command::Views(cmd) => views::run(g, cmd).await,
        Command::Audit(cmd) => audit::run(g, cmd).await,
        Command::ApiKeys(cmd) => api_keys::run(g, cmd).await,
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TRIBUTARY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(progress::LogWriter);
    let _ = match format {
        LogFormat::Human => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

impl Global {
    pub fn config_dir(&self) -> ConfigDir {
        match &self.config {
            Some(dir) => ConfigDir::Dir(dir.clone()),
            None if PathBuf::from("config").is_dir() => ConfigDir::Dir(PathBuf::from("config")),
            None => ConfigDir::Builtin,
        }
    }

    pub fn connectors_dir(&self) -> Option<PathBuf> {
        match &self.connectors {
            Some(dir) => Some(dir.clone()),
            None => Some(PathBuf::from("connectors")).filter(|d| d.is_dir()),
        }
    }

    /// Loads and validates configuration; every problem is in the error.
    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        Catalog::load(&self.config_dir(), self.connectors_dir().as_deref()).map_err(|d| anyhow::anyhow!("{d}"))
    }

    pub fn database_url(&self, catalog: &Catalog) -> String {
        self.database_url
            .clone()
            .or_else(|| catalog.settings.store.database_url.clone())
            .unwrap_or_else(|| "sqlite://tributary.db".to_owned())
    }

    /// The PostgreSQL connection settings of `[store]`.
    pub fn pg_options(catalog: &Catalog) -> PgOptions {
        let store = &catalog.settings.store;
        PgOptions {
            pooler: match store.pooler {
                PoolerSetting::None => Pooler::None,
                PoolerSetting::Pgbouncer => Pooler::PgBouncer,
            },
            listen_url: store.listen_url.clone(),
            max_connections: store.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        }
    }

    pub async fn store(&self, catalog: &Catalog) -> anyhow::Result<Store> {
        let url = self.database_url(catalog);
        Store::connect_with(&url, &Self::pg_options(catalog))
            .await
            .with_context(|| format!("cannot open the store at {}", redact_url(&url)))
    }

    /// Opens the store for a command that only reads: a missing SQLite file is an error
    /// naming the URL, never a new empty database.
    pub async fn store_existing(&self, catalog: &Catalog) -> anyhow::Result<Store> {
        let url = self.database_url(catalog);
        Store::connect_existing_with(&url, &Self::pg_options(catalog))
            .await
            .with_context(|| format!("cannot open the store at {}", redact_url(&url)))
    }

    /// Finds the master key and follows the store's key rotation; logs where it came
    /// from. A key is generated beside the database only while the store holds no sealed
    /// value; a store holding sealed values none of which the ring opens is an error
    /// naming the key ids (see `keys.rs`).
    pub async fn master_key(&self, catalog: &Catalog, store: &Store) -> anyhow::Result<MasterKey> {
        keys::master_key(catalog, store).await
    }
}

/// The directory of the state (the SQLite file's, or the working directory).
pub fn state_dir(database_url: &str) -> PathBuf {
    let path = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"));
    match path.map(std::path::Path::new).and_then(std::path::Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The scope recorded in the audit log for commands on the store itself.
pub const LOCAL_SCOPE: &str = "local";

/// Audits a `webhooks` or `writes` command run on the store (changes only, whatever
/// their outcome; `owner`: the tenant of the endpoint it names, looked up before it ran);
/// a failure to write the entry is reported, not fatal.
pub async fn audit_command(
    store: &crate::store::Store,
    command: &crate::control::protocol::Command,
    owner: Option<&str>,
    outcome: Result<&serde_json::Value, &str>,
) {
    use crate::control::audit;
    if !audit::is_change(command) {
        return;
    }
    let outcome = outcome.map_err(|e| (crate::model::AuditOutcome::Error, e));
    let entry = audit::entry(&actor(), Some(LOCAL_SCOPE), command, owner, outcome);
    if let Err(e) = store.audit(entry).await {
        tracing::warn!("writing the audit entry failed: {e}");
    }
}

/// The actor recorded in the audit log for command-line changes.
pub fn actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
