//! `responsibilities assign|list|remove`: who is responsible for each company
//! integration (tenant + provider), and what the runs of their connections contribute.

use std::process::ExitCode;

use clap::{ArgAction, Subcommand};

use super::output::outln;
use super::{Global, actor, output};
use crate::config::Catalog;
use crate::model::{ContributionKind, ProviderId, Responsibility, ResponsibilityRow, TenantId, UserId};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ResponsibilitiesCmd {
    /// Make a member of a tenant responsible for one of its integrations (replacing any
    /// responsibility the user had there).
    Assign {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        user: String,
        /// owner, admin, user, viewer, contributor, reviewer or maintainer.
        #[arg(long = "as", value_name = "RESPONSIBILITY")]
        responsibility: String,
        /// Contribution kinds, comma-separated (data_source, usage_pattern,
        /// performance_metrics, error_reporting, optimization_suggestion, configuration);
        /// an empty value contributes nothing. Default: the responsibility's.
        #[arg(long, value_name = "KINDS")]
        scope: Option<String>,
        /// Whether runs contribute without being asked. Default: the responsibility's
        /// (true except for viewer and reviewer).
        #[arg(long, value_name = "true|false", action = ArgAction::Set)]
        auto_contribute: Option<bool>,
    },
    /// A tenant's responsibilities, by provider then user.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: Option<String>,
    },
    /// Take a user's responsibility for an integration away (earlier contributions stay).
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        user: String,
    },
}

/// The responsibility named `word`.
fn parse_responsibility(word: &str) -> anyhow::Result<Responsibility> {
    Responsibility::parse(word).ok_or_else(|| {
        anyhow::anyhow!("unknown responsibility `{word}` in --as (expected one of: {})", Responsibility::words())
    })
}

/// The contribution kinds of a comma-separated `--scope` (empty: none).
fn parse_scope(list: &str) -> anyhow::Result<Vec<ContributionKind>> {
    list.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            ContributionKind::parse(w).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown contribution kind `{w}` in --scope (expected one of: {})",
                    ContributionKind::words()
                )
            })
        })
        .collect()
}

/// A provider the catalog knows.
fn known_provider(catalog: &Catalog, provider: &str) -> anyhow::Result<ProviderId> {
    let provider = ProviderId::parse(provider)?;
    if catalog.manifests.get(provider.as_str()).is_none() {
        anyhow::bail!("unknown provider `{provider}` (known: {})", catalog.manifests.names());
    }
    Ok(provider)
}

/// An existing tenant.
async fn existing_tenant(store: &Store, tenant: &str) -> anyhow::Result<TenantId> {
    let tenant = TenantId::parse(tenant)?;
    if store.get_tenant(&tenant).await?.is_none() {
        anyhow::bail!("tenant `{tenant}` not found");
    }
    Ok(tenant)
}

/// `data_source, usage_pattern` (or `nothing`), marked when it is the default.
fn scope_text(row: &ResponsibilityRow) -> String {
    let kinds = if row.scope.is_empty() {
        "nothing".to_owned()
    } else {
        row.scope.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    };
    if row.explicit_scope { kinds } else { format!("{kinds} (default)") }
}

pub async fn run(g: &Global, cmd: ResponsibilitiesCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    match cmd {
        ResponsibilitiesCmd::Assign { tenant, provider, user, responsibility, scope, auto_contribute } => {
            let responsibility = parse_responsibility(&responsibility)?;
            let scope = scope.as_deref().map(parse_scope).transpose()?;
            let provider = known_provider(&catalog, &provider)?;
            let user = UserId::parse(&user)?;
            let store = g.store(&catalog).await?;
            let tenant = existing_tenant(&store, &tenant).await?;
            let row = store
                .assign_responsibility(
                    &tenant,
                    &provider,
                    &user,
                    responsibility,
                    auto_contribute,
                    scope.as_deref(),
                    &actor(),
                )
                .await?;
            if g.json {
                output::json(&row)?;
            } else {
                let auto =
                    if row.auto_contribute { "after every run" } else { "only when asked (auto-contribute off)" };
                outln!("{user} is {responsibility} of {tenant}/{provider}; contributes {} {auto}", scope_text(&row));
            }
            store.close().await;
        }
        ResponsibilitiesCmd::List { tenant, provider } => {
            let provider = provider.map(|p| known_provider(&catalog, &p)).transpose()?;
            let store = g.store_existing(&catalog).await?;
            let tenant = existing_tenant(&store, &tenant).await?;
            let rows = store.responsibilities(&tenant, provider.as_ref()).await?;
            if g.json {
                output::json(&rows)?;
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.provider.to_string(),
                            r.user.to_string(),
                            r.responsibility.to_string(),
                            if r.auto_contribute { "yes" } else { "no" }.to_owned(),
                            scope_text(r),
                            r.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ]
                    })
                    .collect();
                output::table(&["PROVIDER", "USER", "RESPONSIBILITY", "AUTO", "SCOPE", "UPDATED"], &table);
            }
            store.close().await;
        }
        ResponsibilitiesCmd::Remove { tenant, provider, user } => {
            let provider = known_provider(&catalog, &provider)?;
            let user = UserId::parse(&user)?;
            let store = g.store(&catalog).await?;
            let tenant = existing_tenant(&store, &tenant).await?;
            let removed = store.remove_responsibility(&tenant, &provider, &user, &actor()).await?;
            store.close().await;
            if !removed {
                anyhow::bail!("user `{user}` has no responsibility for {tenant}/{provider}");
            }
            if g.json {
                output::json(
                    &serde_json::json!({ "tenant": tenant, "provider": provider, "user": user, "removed": true }),
                )?;
            } else {
                outln!("removed the responsibility of {user} for {tenant}/{provider}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_words_are_named_with_the_accepted_ones() {
        let err = parse_responsibility("boss").unwrap_err().to_string();
        assert!(err.contains("`boss`"), "{err}");
        assert!(err.contains("owner, admin, user, viewer, contributor, reviewer, maintainer"), "{err}");
        let err = parse_scope("data_source, gossip").unwrap_err().to_string();
        assert!(err.contains("`gossip` in --scope"), "{err}");
        assert!(err.contains(&ContributionKind::words()), "{err}");
        assert_eq!(
            parse_scope(" usage_pattern,error_reporting ").unwrap(),
            vec![ContributionKind::UsagePattern, ContributionKind::ErrorReporting]
        );
        assert!(parse_scope("").unwrap().is_empty());
    }
}
