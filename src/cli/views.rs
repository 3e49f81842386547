//! `views refresh`: makes the typed entity views (`entity_<name>`) follow
//! `entities.toml` now, as the daemon does when it starts and reloads.

use std::process::ExitCode;

use clap::Subcommand;

use super::output::outln;
use super::{Global, output};

#[derive(Debug, Subcommand)]
pub enum ViewsCmd {
    /// Create, replace and drop the entity views to match entities.toml.
    Refresh,
}

pub async fn run(g: &Global, cmd: ViewsCmd) -> anyhow::Result<ExitCode> {
    let ViewsCmd::Refresh = cmd;
    let catalog = g.catalog()?;
    let store = g.store(&catalog).await?;
    let result = store.refresh_views(&catalog.entities).await;
    store.close().await;
    let done = result?;
    if g.json {
        output::json(&done)?;
    } else {
        for (label, names) in [("created", &done.created), ("replaced", &done.replaced), ("dropped", &done.dropped)] {
            if !names.is_empty() {
                outln!("{label}: {}", names.join(", "));
            }
        }
        outln!("unchanged: {}", done.unchanged);
        for problem in &done.problems {
            eprintln!("error: {problem}");
        }
    }
    Ok(if done.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
