//! `tributary prune`: remove the history `[retention]` no longer keeps, by hand.

use std::process::ExitCode;
use std::time::Duration;

use super::{Global, output};
use crate::model::{AuditEntry, AuditOutcome};

/// Remove history `[retention]` in tributary.toml no longer keeps: old runs (never a
/// job's latest), dead letters, delivered webhook messages, superseded contributions,
/// finished writes and (when enabled) records deleted at the provider.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Count what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(g: &Global, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let store = g.store_existing(&catalog).await?;
    let report = store.prune(&catalog.settings.retention, chrono::Utc::now(), args.dry_run, Duration::ZERO).await;
    if !args.dry_run {
        let entry = match &report {
            Ok(report) => AuditEntry {
                scope: Some(super::LOCAL_SCOPE.into()),
                details: serde_json::json!({ "removed": report }),
                ..AuditEntry::new(super::actor(), "prune")
            },
            Err(e) => AuditEntry {
                scope: Some(super::LOCAL_SCOPE.into()),
                outcome: AuditOutcome::Error,
                message: Some(e.to_string()),
                ..AuditEntry::new(super::actor(), "prune")
            },
        };
        if let Err(e) = store.audit(entry).await {
            tracing::warn!("writing the audit entry failed: {e}");
        }
    }
    let report = report?;
    if g.json {
        println!("{}", serde_json::json!({"dry_run": args.dry_run, "removed": report}));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> =
        report.kinds().iter().map(|(kind, n)| vec![(*kind).to_owned(), n.to_string()]).collect();
    output::table(&["KIND", if args.dry_run { "WOULD REMOVE" } else { "REMOVED" }], &rows);
    Ok(ExitCode::SUCCESS)
}
