//! `credentials set|show`. Secrets are read from stdin only and never printed.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;
use clap::Subcommand;
use serde_json::json;
use zeroize::Zeroizing;

use super::output::outln;
use super::{Global, actor, output};
use crate::model::{AuditEntry, Owner, ProviderId, TenantId, UserId};
use crate::secrets::{Credentials, Sealed};

#[derive(Debug, Subcommand)]
pub enum CredentialsCmd {
    /// Store a provider's credentials for a tenant: a JSON object read from stdin
    /// (e.g. `{"api_token": "…"}`), encrypted with the master key.
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: String,
        /// The credentials of this user's own connection (see `tributary users connect`)
        /// instead of the company's.
        #[arg(long)]
        user: Option<String>,
    },
    /// List which credentials exist and when they changed — never their values.
    Show {
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub async fn run(g: &Global, cmd: CredentialsCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let store = match cmd {
        CredentialsCmd::Show { .. } => g.store_existing(&catalog).await?,
        CredentialsCmd::Set { .. } => g.store(&catalog).await?,
    };
    let result = match cmd {
        CredentialsCmd::Set { tenant, provider, user } => {
            let tenant = TenantId::parse(&tenant)?;
            let provider = ProviderId::parse(&provider)?;
            let user = user.as_deref().map(UserId::parse).transpose()?;
            let owner = Owner::of(user.as_ref());
            let manifest = catalog.manifests.get(provider.as_str()).ok_or_else(|| {
                anyhow::anyhow!("unknown provider `{provider}` (known: {})", catalog.manifests.names())
            })?;
            if store.get_tenant(&tenant).await?.is_none() {
                anyhow::bail!("tenant `{tenant}` not found");
            }
            if let Some(user) = &user
                && store.get_connection(&tenant, &provider, owner).await?.is_none()
            {
                anyhow::bail!(
                    "user `{user}` has no connection to `{provider}` at tenant `{tenant}` (create it with \
                     `tributary users connect {user} --tenant {tenant} --provider {provider}`)"
                );
            }
            let mut input = Zeroizing::new(Vec::new());
            // Read one byte past the limit, not the whole input: an endless or huge stdin
            // is refused without being held in memory.
            let limit = crate::secrets::MAX_CREDENTIALS_BYTES;
            std::io::stdin()
                .take(limit as u64 + 1)
                .read_to_end(&mut input)
                .context("cannot read credentials from stdin")?;
            if input.len() > limit {
                anyhow::bail!(
                    "credentials on stdin are larger than the limit of {limit} bytes (64 KiB); expected a JSON \
                     object of credential fields"
                );
            }
            let creds = Credentials::from_json(&input).context("credentials on stdin")?;
            let required = manifest.auth.required_credentials();
            let missing = creds.missing(&required);
            if !missing.is_empty() {
                anyhow::bail!(
                    "credentials for `{provider}` ({} auth) are missing: {} (expected fields: {})",
                    manifest.auth.kind.as_str(),
                    missing.join(", "),
                    required.join(", ")
                );
            }
            let key = g.master_key(&catalog, &store).await?;
            let sealed = key.seal_as(Sealed::Credentials, &tenant, &provider, owner, &creds.to_json());
            let fields: Vec<&str> = creds.names().collect();
            let audit = AuditEntry {
                at: Utc::now(),
                actor: actor(),
                scope: Some("local".into()),
                outcome: crate::model::AuditOutcome::Ok,
                message: None,
                action: "credentials.set".into(),
                tenant_id: Some(tenant.clone()),
                subject: Some(provider.to_string()),
                details: json!({ "fields": fields, "key_id": key.id(), "user": user }),
            };
            let conn = store.set_credentials(&tenant, &provider, owner, &sealed, &audit).await?;
            // A connection that had no credentials has its jobs from now on.
            let jobs = crate::app::reconcile_tenant(&catalog, &store, &tenant, crate::app::FIXED_JITTER).await?;
            if g.json {
                output::json(
                    &json!({ "tenant": tenant, "provider": provider, "user": user, "version": conn.credentials_version, "status": conn.status, "fields": fields, "jobs": jobs }),
                )?;
            } else {
                let of = user.as_ref().map(|u| format!(" of user {u}")).unwrap_or_default();
                outln!(
                    "stored credentials for {tenant}/{provider}{of} (fields: {}; version {}; connection {})",
                    fields.join(", "),
                    conn.credentials_version,
                    conn.status
                );
            }
            Ok(())
        }
        CredentialsCmd::Show { tenant } => {
            let tenants = match tenant {
                Some(t) => vec![TenantId::parse(&t)?],
                None => store.list_tenants().await?.into_iter().map(|t| t.id).collect(),
            };
            let mut rows = Vec::new();
            for t in &tenants {
                for c in store.list_connections(t).await? {
                    rows.push(c);
                }
            }
            if g.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|c| json!({ "tenant": c.tenant_id, "provider": c.provider, "user": c.owner_user, "status": c.status, "has_credentials": c.has_credentials, "key_id": c.credentials_key_id, "version": c.credentials_version, "updated_at": c.credentials_updated_at }))
                    .collect();
                output::json(&list)?;
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|c| {
                        vec![
                            c.tenant_id.to_string(),
                            c.provider.to_string(),
                            c.owner_user.as_ref().map_or("(company)".into(), ToString::to_string),
                            c.status.to_string(),
                            if c.has_credentials { "stored".into() } else { "none".into() },
                            c.credentials_version.to_string(),
                            c.credentials_updated_at.map_or("-".into(), |t| t.to_rfc3339()),
                        ]
                    })
                    .collect();
                output::table(&["TENANT", "PROVIDER", "OWNER", "STATUS", "CREDENTIALS", "VERSION", "CHANGED"], &table);
            }
            Ok(())
        }
    };
    store.close().await;
    result.map(|()| ExitCode::SUCCESS)
}
