//! `audit list`: the audit log — who did what, as which scope, on which tenant, and how
//! it ended (configuration and credential changes, control actions through the socket
//! or the API, denied requests). Read from the store as the operator; a tenant admin
//! reads its own tenant's entries with `tributary ctl --as-tenant T audit`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Global, output};
use crate::control::audit::parse_since;
use crate::model::{AuditEntry, TenantId};
use crate::store::AuditFilter;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Audit entries, newest first.
    List {
        /// One tenant's entries.
        #[arg(long)]
        tenant: Option<String>,
        /// Entries at or after this time (RFC 3339, or a date: its midnight UTC).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

pub async fn run(g: &Global, cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    let AuditCmd::List { tenant, since, limit } = cmd;
    let filter = AuditFilter {
        tenant: tenant.as_deref().map(TenantId::parse).transpose()?,
        since: since.as_deref().map(parse_since).transpose().map_err(anyhow::Error::msg)?,
        limit,
    };
    if limit < 1 {
        anyhow::bail!("--limit must be at least 1, not {limit}");
    }
    let catalog = g.catalog()?;
    let store = g.store_existing(&catalog).await?;
    let rows = store.list_audit_filtered(&filter).await;
    store.close().await;
    print(g.json, &rows?)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints entries: as they are with `--json`, else as a table.
pub fn print(json: bool, rows: &[AuditEntry]) -> anyhow::Result<()> {
    if json {
        return output::json(&rows);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            let outcome = match &e.message {
                Some(m) => format!("{}: {}", e.outcome, m),
                None => e.outcome.to_string(),
            };
            vec![
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                e.actor.clone(),
                e.scope.clone().unwrap_or_else(|| "-".into()),
                e.tenant_id.as_ref().map_or("-".into(), ToString::to_string),
                e.action.clone(),
                e.subject.clone().unwrap_or_else(|| "-".into()),
                outcome,
            ]
        })
        .collect();
    output::table(&["AT", "WHO", "SCOPE", "TENANT", "ACTION", "TARGET", "OUTCOME"], &cells);
    Ok(())
}
