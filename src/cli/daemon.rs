//! `run` (the daemon) and `demo` (simulators, demo tenants and the daemon, no credentials).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use super::Global;
use crate::app::{DaemonOptions, Endpoints, socket_path};

/// Arguments of `tributary run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Control socket path (default: settings, else the runtime directory).
    #[arg(long, env = "TRIBUTARY_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Address of /metrics, /healthz and /readyz (default: settings, 127.0.0.1:9187).
    #[arg(long, env = "TRIBUTARY_HTTP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Concurrent runs (default: settings, 8).
    #[arg(long)]
    pub workers: Option<usize>,
}

pub async fn run(g: &Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let url = g.database_url(&catalog);
    let store = g.store(&catalog).await?;
    let key = Arc::new(g.master_key(&catalog, &store).await?);
    let mut settings = catalog.settings.daemon.clone();
    if let Some(w) = args.workers {
        anyhow::ensure!(w > 0, "--workers must be greater than zero");
        settings.workers = w;
    }
    let socket = args.socket.unwrap_or_else(|| socket_path(&settings, &super::state_dir(&url)));
    let http_listen = match args.listen {
        Some(a) => a,
        None => {
            settings.http_listen.parse().with_context(|| format!("daemon.http_listen `{}`", settings.http_listen))?
        }
    };
    let opts = DaemonOptions {
        config_dir: g.config_dir(),
        connectors: g.connectors_dir(),
        store,
        key,
        settings,
        webhooks: catalog.settings.webhooks.clone(),
        socket,
        http_listen,
    };
    crate::app::run(opts, |_: &Endpoints| {}).await?;
    Ok(ExitCode::SUCCESS)
}
