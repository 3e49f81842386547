//! `runs list|show`: the sync log.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use super::output::outln;
use super::{Global, output};
use crate::model::{RunRow, TenantId};

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Recent runs, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One run in full, with its dead letters.
    Show { run_id: String },
}

fn duration(r: &RunRow) -> String {
    r.finished_at.map_or("-".into(), |f| format!("{:.1}s", (f - r.started_at).num_milliseconds() as f64 / 1000.0))
}

pub async fn runs(g: &Global, cmd: RunsCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let store = g.store_existing(&catalog).await?;
    match cmd {
        RunsCmd::List { tenant, limit } => {
            let tenant = tenant.map(|t| TenantId::parse(&t)).transpose()?;
            let rows = store.list_runs(tenant.as_ref(), limit).await?;
            if g.json {
                output::json(&rows)?;
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.tenant_id.to_string(),
                            format!("{}/{}", r.provider, r.stream),
                            r.trigger.as_str().to_owned(),
                            r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                            duration(r),
                            r.outcome.to_string(),
                            r.stats.fetched.to_string(),
                            format!("{}/{}/{}", r.stats.inserted, r.stats.updated, r.stats.unchanged),
                            r.stats.error.as_deref().map(|e| e.chars().take(60).collect()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "RUN",
                        "TENANT",
                        "STREAM",
                        "TRIGGER",
                        "STARTED",
                        "TOOK",
                        "OUTCOME",
                        "FETCHED",
                        "INS/UPD/SAME",
                        "ERROR",
                    ],
                    &table,
                );
            }
        }
        RunsCmd::Show { run_id } => {
            let id = Uuid::parse_str(&run_id).map_err(|_| anyhow::anyhow!("`{run_id}` is not a run id (a UUID)"))?;
            let run = store.get_run(id, None).await?.ok_or_else(|| anyhow::anyhow!("run `{run_id}` not found"))?;
            let dead = store.list_dead_letters(&run.tenant_id, Some(run.id), 50).await?;
            if g.json {
                output::json(&json!({ "run": run, "dead_letters": dead }))?;
            } else {
                let s = &run.stats;
                outln!("run {}", run.id);
                outln!("  tenant          {}", run.tenant_id);
                outln!("  stream          {}/{}", run.provider, run.stream);
                outln!("  trigger         {}", run.trigger.as_str());
                outln!("  started         {}", run.started_at.to_rfc3339());
                outln!("  finished        {}", run.finished_at.map_or("-".into(), |t| t.to_rfc3339()));
                outln!("  took            {}", duration(&run));
                outln!("  outcome         {}", run.outcome);
                outln!("  replica         {}", s.replica.as_deref().unwrap_or("-"));
                if let Some(note) = &s.note {
                    outln!("  note            {note}");
                }
                outln!("  fetched         {}", s.fetched);
                outln!("  inserted        {}", s.inserted);
                outln!("  updated         {}", s.updated);
                outln!("  unchanged       {}", s.unchanged);
                outln!("  filtered        {}", s.filtered);
                outln!("  dead-lettered   {}", s.dead_lettered);
                outln!("  pages           {}", s.pages);
                outln!("  http calls      {}", s.http_calls);
                outln!("  retries         {}", s.retries);
                outln!("  rate-limit waits {} ({} ms)", s.rate_limit_waits, s.rate_limit_wait_ms);
                outln!("  cursor before   {}", run.cursor_before.as_deref().unwrap_or("-"));
                outln!("  cursor after    {}", s.cursor_after.as_deref().unwrap_or("-"));
                if let Some(e) = &s.error {
                    outln!("  error           {e}");
                }
                for d in &dead {
                    outln!("  dead letter {}: {}", d.source_id.as_deref().unwrap_or("?"), d.reason);
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
