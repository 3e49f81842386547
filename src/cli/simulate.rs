//! `simulate`: run provider simulators in the foreground for people and benchmarks.

use std::process::ExitCode;

use std::time::Duration;

use tributary_simulator::{Faults, Provider, ServeWebhooks, SimConfig, serve};

/// Arguments of `tributary simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Providers to simulate (repeat or comma-separate); every provider when omitted.
    #[arg(long = "provider", value_delimiter = ',')]
    pub providers: Vec<String>,
    /// Records per stream.
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// First port (the next providers take the following ones); random when omitted.
    #[arg(long)]
    pub port: Option<u16>,
    /// Seed of the generated records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Answer every K-th data request with the provider's throttle response.
    #[arg(long, value_name = "K")]
    pub rate_limit_every: Option<u64>,
    /// Answer every M-th data request with a 503.
    #[arg(long, value_name = "M")]
    pub server_error_every: Option<u64>,
    /// Send signed webhooks (HubSpot, Slack, Jira) to this URL; `{provider}` is replaced
    /// by the provider's id (`http://127.0.0.1:9187/webhooks/acme/{provider}`).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Seconds between webhooks (each changes a record first).
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_every: u64,
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let providers: Vec<Provider> = if args.providers.is_empty() {
        Provider::ALL.to_vec()
    } else {
        args.providers
            .iter()
            .map(|p| p.parse::<Provider>().map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<Result<_, _>>()?
    };
    let mut faults = Faults::none();
    if let Some(k) = args.rate_limit_every {
        faults = faults.rate_limit_every(k);
    }
    if let Some(m) = args.server_error_every {
        faults = faults.server_error_every(m);
    }
    let configs =
        providers.into_iter().map(|p| SimConfig::new(p, args.records).seed(args.seed).faults(faults.clone())).collect();
    let webhooks = args.webhook_url.map(|url| ServeWebhooks { url, every: Duration::from_secs(args.webhook_every) });
    serve(configs, args.port, webhooks).await?;
    Ok(ExitCode::SUCCESS)
}
