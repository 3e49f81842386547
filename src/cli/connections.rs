//! `connections test`: check a connection before its first backfill — authenticate and
//! read the first page of each enabled stream, storing nothing.

use std::process::ExitCode;

use clap::Subcommand;

use super::output::outln;
use super::{Global, output};
use crate::config::RoleGrants;
use crate::model::{Owner, ProviderId, StreamName, TenantId, UserId};
use crate::scheduler::stream_access;
use crate::sync::Syncer;
use crate::tenants::Tenants;

#[derive(Debug, Subcommand)]
pub enum ConnectionsCmd {
    /// Authenticate and read the first page of each enabled stream without storing
    /// records, runs or cursors (a token obtained or refreshed is stored, as in a run);
    /// print what a sync would read. Exits non-zero if any stream fails.
    Test {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: String,
        /// Test this user's own connection instead of the company's.
        #[arg(long)]
        user: Option<String>,
        /// One stream only.
        #[arg(long)]
        stream: Option<String>,
    },
}

pub async fn run(g: &Global, cmd: ConnectionsCmd) -> anyhow::Result<ExitCode> {
    let ConnectionsCmd::Test { tenant, provider, user, stream } = cmd;
    let catalog = g.catalog()?;
    let store = g.store_existing(&catalog).await?;
    let result = test(g, &catalog, &store, &tenant, &provider, user.as_deref(), stream.as_deref()).await;
    store.close().await;
    result
}

async fn test(
    g: &Global,
    catalog: &crate::config::Catalog,
    store: &crate::store::Store,
    tenant: &str,
    provider: &str,
    user: Option<&str>,
    stream: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let tenant = TenantId::parse(tenant)?;
    let provider = ProviderId::parse(provider)?;
    let user = user.map(UserId::parse).transpose()?;
    let view = Tenants::new(catalog, store, super::actor()).require(&tenant).await?;
    let effective = view
        .effective
        .providers
        .get(&provider)
        .filter(|p| p.config.is_enabled())
        .ok_or_else(|| anyhow::anyhow!("provider `{provider}` is not enabled for tenant `{tenant}`"))?;
    let mut streams: Vec<StreamName> = match stream {
        Some(s) => vec![StreamName::parse(s)?],
        None => effective.config.enabled_streams().filter_map(|(n, _)| StreamName::parse(n).ok()).collect(),
    };
    if let Some(user) = &user {
        let connection = store.get_connection(&tenant, &provider, Owner::User(user)).await?.ok_or_else(|| {
            anyhow::anyhow!(
                "user `{user}` has no connection to `{provider}` at tenant `{tenant}` (create it with \
                 `tributary users connect {user} --tenant {tenant} --provider {provider}`)"
            )
        })?;
        let access = stream_access(effective, &connection, &RoleGrants::from_stored(&view.roles));
        streams.retain(|n| access.iter().any(|a| a.stream == n.as_str() && a.denied.is_none()));
    }
    if streams.is_empty() {
        anyhow::bail!("no enabled stream of `{provider}` to test at tenant `{tenant}`");
    }
    let key = g.master_key(catalog, store).await?;
    let mut syncer = Syncer::new(catalog, store, &key)?;
    syncer.retry = crate::http::RetryPolicy::from_settings(&catalog.settings.daemon);
    // A check answers quickly: one attempt per request, no long backoff.
    syncer.retry.max_attempts = 2;
    let probes = syncer.probe(&tenant, &provider, user.as_ref(), &streams).await?;
    if g.json {
        output::json(&probes)?;
    } else {
        for p in &probes {
            match &p.error {
                Some(error) => outln!(
                    "{provider}/{}: error ({}): {error}",
                    p.stream,
                    p.error_class.as_deref().unwrap_or("unknown")
                ),
                None => {
                    let total = p.total.map(|t| format!(" of {t}")).unwrap_or_default();
                    let entity = p.entity.as_deref().unwrap_or("-");
                    outln!("{provider}/{}: ok — {} records on the first page{total} → {entity}", p.stream, p.records);
                    if !p.fields.is_empty() {
                        outln!("  fields from the first record: {}", p.fields.join(", "));
                    }
                    if let Some(note) = &p.first_record {
                        outln!("  first record: {note}");
                    }
                }
            }
        }
        outln!("nothing was stored (a token obtained or refreshed is kept, as in a run)");
    }
    let failed = probes.iter().any(|p| p.error.is_some());
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
