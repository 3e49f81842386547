//! `intelligence show` (company integration intelligence) and `contributions
//! list|approve|reject`.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::output::outln;
use super::{Global, output};
use crate::intelligence::{self, report};
use crate::model::{ContributionKind, ContributionStatus, ProviderId, TenantId, UserId};
use crate::store::ContributionFilter;

#[derive(Debug, Subcommand)]
pub enum IntelligenceCmd {
    /// A tenant's company integrations: quality, reliability, contributors, correlations,
    /// synergies, conflicts, error patterns and optimization insights.
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: Option<String>,
        /// Rebuild each integration from all its current contributions first.
        #[arg(long)]
        recompute: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContributionsCmd {
    /// Contributions, newest first.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        user: Option<String>,
        /// data_source, usage_pattern, performance_metrics, error_reporting,
        /// optimization_suggestion or configuration.
        #[arg(long)]
        kind: Option<String>,
        /// active, approved, rejected or superseded.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Approve an active contribution (as a user responsible for the integration as
    /// owner or reviewer).
    Approve {
        id: i64,
        #[arg(long)]
        tenant: String,
        /// The reviewing user.
        #[arg(long)]
        by: String,
    },
    /// Reject an active contribution: it stops counting towards the intelligence.
    Reject {
        id: i64,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        by: String,
    },
}

fn word<T>(
    value: Option<String>,
    what: &str,
    parse: fn(&str) -> Option<T>,
    words: fn() -> String,
) -> anyhow::Result<Option<T>> {
    value
        .map(|v| parse(&v).ok_or_else(|| anyhow::anyhow!("unknown {what} `{v}` (expected one of: {})", words())))
        .transpose()
}

pub async fn show(g: &Global, cmd: IntelligenceCmd) -> anyhow::Result<ExitCode> {
    let IntelligenceCmd::Show { tenant, provider, recompute } = cmd;
    let catalog = g.catalog()?;
    let store = g.store_existing(&catalog).await?;
    let tenant = TenantId::parse(&tenant)?;
    let provider = provider.map(|p| ProviderId::parse(&p)).transpose()?;
    if store.get_tenant(&tenant).await?.is_none() {
        anyhow::bail!("tenant `{tenant}` not found");
    }
    let rows = intelligence::integrations(&store, &tenant, provider.as_ref(), recompute).await?;
    if g.json {
        let docs: Vec<Value> = rows.iter().map(intelligence::Integration::to_json).collect();
        output::json(&docs)?;
    } else if rows.is_empty() {
        let scope = provider.map(|p| format!(" on {p}")).unwrap_or_default();
        outln!("no contributions yet at {tenant}{scope}");
    } else {
        for i in &rows {
            outln!("{}", report::to_text(&i.row, &i.state, &i.pairs));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn contributions(g: &Global, cmd: ContributionsCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    // Every contributions command works on a tenant's existing contributions.
    let store = g.store_existing(&catalog).await?;
    match cmd {
        ContributionsCmd::List { tenant, provider, user, kind, status, limit } => {
            let tenant = TenantId::parse(&tenant)?;
            let filter = ContributionFilter {
                provider: provider.map(|p| ProviderId::parse(&p)).transpose()?,
                user: user.map(|u| UserId::parse(&u)).transpose()?,
                kind: word(kind, "contribution kind", ContributionKind::parse, ContributionKind::words)?,
                status: word(status, "contribution status", ContributionStatus::parse, ContributionStatus::words)?,
                limit,
            };
            let rows = store.contributions(&tenant, &filter).await?;
            if g.json {
                output::json(&rows)?;
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.to_string(),
                            c.provider.to_string(),
                            c.user.to_string(),
                            c.kind.to_string(),
                            c.status.to_string(),
                            format!("{:.2}", c.confidence),
                            format!("{:.0}/{:.0}/{:.0}/{:.0}", c.quality, c.impact, c.reliability, c.consistency),
                            c.data_freshness.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "PROVIDER", "USER", "KIND", "STATUS", "CONF", "Q/I/R/C", "OBSERVED"], &table);
            }
        }
        ContributionsCmd::Approve { id, tenant, by } => review(g, &store, id, &tenant, &by, true).await?,
        ContributionsCmd::Reject { id, tenant, by } => review(g, &store, id, &tenant, &by, false).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn review(
    g: &Global,
    store: &crate::store::Store,
    id: i64,
    tenant: &str,
    by: &str,
    approve: bool,
) -> anyhow::Result<()> {
    let tenant = TenantId::parse(tenant)?;
    let reviewer = UserId::parse(by)?;
    let (row, state) = intelligence::review(store, &tenant, id, approve, &reviewer).await?;
    if g.json {
        output::json(&serde_json::json!({ "contribution": row, "intelligence_version": state.version }))?;
    } else {
        outln!(
            "contribution {id} ({} by {}) {}; {}/{} intelligence is at version {}",
            row.kind,
            row.user,
            row.status,
            row.tenant,
            row.provider,
            state.version
        );
    }
    Ok(())
}
