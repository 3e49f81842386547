//! `config check`, `presets …`, `connectors …`.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::output::outln;
use super::{Global, output};
use crate::config::{Diagnostics, Manifest, Source};

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate every configuration file and connector manifest; exits non-zero on any error.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum PresetsCmd {
    /// List presets with their providers and current revision.
    List,
    /// Show a preset's resolved defaults per provider.
    Show { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ConnectorsCmd {
    /// List connectors: name, category, auth kind, streams.
    List,
    /// Validate one manifest file and report every error with its key path.
    Check { file: std::path::PathBuf },
}

pub fn config(g: &Global, cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    let ConfigCmd::Check = cmd;
    match crate::config::Catalog::load(&g.config_dir(), g.connectors_dir().as_deref()) {
        Ok(c) => {
            if g.json {
                output::json(&json!({
                    "ok": true,
                    "entities": c.entities.iter().count(),
                    "connectors": c.manifests.iter().count(),
                    "presets": c.presets.iter().count(),
                    "tenant_files": c.tenant_files.len(),
                }))?;
            } else {
                outln!(
                    "configuration is valid: {} entities, {} connectors, {} presets, {} tenant files",
                    c.entities.iter().count(),
                    c.manifests.iter().count(),
                    c.presets.iter().count(),
                    c.tenant_files.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => report(g, &d),
    }
}

fn report(g: &Global, d: &Diagnostics) -> anyhow::Result<ExitCode> {
    if g.json {
        output::json(&json!({ "ok": false, "errors": d }))?;
    } else {
        eprint!("{d}");
    }
    Ok(ExitCode::FAILURE)
}

pub fn presets(g: &Global, cmd: PresetsCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    match cmd {
        PresetsCmd::List => {
            if g.json {
                let list: Vec<_> = catalog.presets.iter().collect();
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = catalog
                    .presets
                    .iter()
                    .map(|p| {
                        let title = if p.recommended { format!("{} (recommended)", p.title) } else { p.title.clone() };
                        let providers = p.providers.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ");
                        vec![p.name.to_string(), title, providers, p.revision.clone()]
                    })
                    .collect();
                output::table(&["PRESET", "TITLE", "PROVIDERS", "REVISION"], &rows);
            }
        }
        PresetsCmd::Show { name } => {
            let preset = catalog
                .presets
                .get(&name)
                .ok_or_else(|| anyhow::anyhow!("unknown preset `{name}` (known: {})", catalog.presets.names()))?;
            if g.json {
                output::json(preset)?;
            } else {
                outln!("preset {} — {} (revision {})", preset.name, preset.title, preset.revision);
                if let Some(d) = &preset.description {
                    outln!("{d}");
                }
                for (provider, layer) in &preset.resolved {
                    outln!("\n[{provider}]");
                    for (path, value) in layer.entries() {
                        outln!("  {path} = {}", output::compact(&value));
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn connectors(g: &Global, cmd: ConnectorsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConnectorsCmd::List => {
            let catalog = g.catalog()?;
            if g.json {
                let list: Vec<_> = catalog.manifests.iter().collect();
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = catalog
                    .manifests
                    .iter()
                    .map(|m| {
                        vec![
                            m.name.to_string(),
                            m.title.clone(),
                            output::compact(&json!(m.category)),
                            output::compact(&json!(m.auth.kind)),
                            m.streams.keys().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                            m.source.clone(),
                        ]
                    })
                    .collect();
                output::table(&["PROVIDER", "TITLE", "CATEGORY", "AUTH", "STREAMS", "SOURCE"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorsCmd::Check { file } => {
            let mut diag = Diagnostics::default();
            let manifest = Source::read(&file, &mut diag).and_then(|s| Manifest::parse(&s, &mut diag));
            if let Some(m) = &manifest {
                // Entity references are checked against the configured entities.
                if let Ok(catalog) = g.catalog() {
                    let mut one = crate::config::Manifests::default();
                    one.insert(m.clone());
                    one.check(&catalog.entities, &mut diag);
                    one.check_categories(&catalog.settings.categories(), &mut diag);
                }
            }
            if !diag.is_empty() {
                return report(g, &diag);
            }
            if g.json {
                output::json(&json!({ "ok": true, "provider": manifest.map(|m| m.name) }))?;
            } else if let Some(m) = manifest {
                outln!("{}: valid manifest for `{}` ({} streams)", file.display(), m.name, m.streams.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
