//! `usage`: a tenant's usage analytics, from the aggregate runs maintain as they finish.

use std::process::ExitCode;

use clap::ValueEnum;

use super::Global;
use super::output;
use crate::model::{ProviderId, TenantId};
use crate::store::{UsageCounts, UsagePeriod, parse_usage_since};

/// Arguments of `tributary usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    #[arg(long)]
    pub tenant: String,
    /// Only this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Sum by UTC day, or by ISO week (Monday to Sunday, named by its Monday).
    #[arg(long, value_enum, default_value_t = By::Day)]
    pub by: By,
    /// From this date (2026-12-01) or this RFC 3339 time's UTC day on.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    Day,
    Week,
}

pub async fn run(g: &Global, args: UsageArgs) -> anyhow::Result<ExitCode> {
    let tenant = TenantId::parse(&args.tenant)?;
    let provider = args.provider.as_deref().map(ProviderId::parse).transpose()?;
    let since = args.since.as_deref().map(parse_usage_since).transpose().map_err(anyhow::Error::msg)?;
    let by = match args.by {
        By::Day => UsagePeriod::Day,
        By::Week => UsagePeriod::Week,
    };
    let catalog = g.catalog()?;
    let store = g.store_existing(&catalog).await?;
    if store.get_tenant(&tenant).await?.is_none() {
        store.close().await;
        anyhow::bail!("tenant `{tenant}` not found");
    }
    let report = store.usage(&tenant, provider.as_ref(), by, since).await;
    store.close().await;
    let report = report?;
    if g.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let errors = |e: &std::collections::BTreeMap<String, i64>| {
        e.iter().map(|(class, n)| format!("{class}:{n}")).collect::<Vec<_>>().join(" ")
    };
    let mut rows: Vec<Vec<String>> = report
        .lines
        .iter()
        .map(|l| {
            let mut row = vec![l.period.clone(), l.provider.clone(), l.stream.clone()];
            row.extend(cells(&l.counts));
            row.push(errors(&l.errors));
            row
        })
        .collect();
    if !rows.is_empty() {
        let mut total = vec!["total".to_owned(), String::new(), String::new()];
        total.extend(cells(&report.totals));
        total.push(errors(&report.errors));
        rows.push(total);
    }
    let period = if by == UsagePeriod::Week { "WEEK OF" } else { "DAY" };
    output::table(
        &[
            period,
            "PROVIDER",
            "STREAM",
            "RUNS",
            "FAILED",
            "API CALLS",
            "HTTP ERRORS",
            "RETRIES",
            "FETCHED",
            "WRITTEN",
            "DEAD",
            "BYTES",
            "RL WAITS",
            "RL WAIT",
            "RUN TIME",
            "ERRORS",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn cells(c: &UsageCounts) -> Vec<String> {
    vec![
        c.runs.to_string(),
        c.failed_runs.to_string(),
        c.http_calls.to_string(),
        c.http_errors.to_string(),
        c.retries.to_string(),
        c.fetched.to_string(),
        c.written.to_string(),
        c.dead_lettered.to_string(),
        c.bytes_received.to_string(),
        c.rate_limit_waits.to_string(),
        format!("{:.1}s", c.rate_limit_wait_ms as f64 / 1000.0),
        format!("{:.1}s", c.run_ms as f64 / 1000.0),
    ]
}
