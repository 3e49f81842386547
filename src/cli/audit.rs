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

/// A command-line change: its audit action, tenant and subject.
pub(super) struct Change {
    action: &'static str,
    tenant: Option<String>,
    subject: Option<String>,
}

/// The change `command` makes, for commands that audit their success in the store's
/// own transaction: what to record when one fails instead.
pub(super) fn change_of(command: &super::Command) -> Option<Change> {
    use super::Command as C;
    use super::api_keys::ApiKeysCmd as K;
    use super::credentials::CredentialsCmd;
    use super::responsibilities::ResponsibilitiesCmd as R;
    use super::tenant::TenantCmd as T;
    use super::users::UsersCmd as U;
    let change = |action, tenant: Option<&String>, subject: Option<String>| {
        Some(Change { action, tenant: tenant.cloned(), subject })
    };
    match command {
        C::Tenant(T::Create { id, .. }) => change("tenant.create", Some(id), None),
        C::Tenant(T::Apply { file }) => change("tenant.apply", None, Some(file.display().to_string())),
        C::Tenant(T::Rebase { id }) => change("tenant.rebase", Some(id), None),
        C::Tenant(T::SetPreset { id, preset }) => change("tenant.set_preset", Some(id), Some(preset.clone())),
        C::Credentials(CredentialsCmd::Set { tenant, provider, .. }) => {
            change("credentials.set", Some(tenant), Some(provider.clone()))
        }
        C::Users(U::Add { id, tenant, .. }) => change("user.add", tenant.as_ref(), Some(id.clone())),
        C::Users(U::SetRole { id, tenant, .. }) => change("membership.set", Some(tenant), Some(id.clone())),
        C::Users(U::Remove { id, tenant }) => change("membership.remove", Some(tenant), Some(id.clone())),
        C::Users(U::Connect { id, tenant, provider, .. }) => {
            change("connection.connect", Some(tenant), Some(format!("{provider}/{id}")))
        }
        C::Responsibilities(R::Assign { tenant, provider, user, .. }) => {
            change("responsibility.assign", Some(tenant), Some(format!("{provider}/{user}")))
        }
        C::Responsibilities(R::Remove { tenant, provider, user }) => {
            change("responsibility.remove", Some(tenant), Some(format!("{provider}/{user}")))
        }
        C::ApiKeys(K::Create { tenant, name, .. }) => change("api_key.create", tenant.as_ref(), name.clone()),
        C::ApiKeys(K::Revoke { name }) => change("api_key.revoke", None, Some(name.clone())),
        C::Keys(super::keys::KeysCmd::Rotate { new_key_file, .. }) => {
            change("keys.rotate", None, Some(new_key_file.display().to_string()))
        }
        _ => None,
    }
}

/// Records a failed change (best effort: without a readable configuration or an
/// existing store there is nowhere to record it, and the error is reported anyway).
pub(super) async fn record_failure(g: &Global, change: Change, error: &anyhow::Error) {
    let Ok(catalog) = g.catalog() else { return };
    let Ok(store) =
        crate::store::Store::connect_existing_with(&g.database_url(&catalog), &super::Global::pg_options(&catalog))
            .await
    else {
        return;
    };
    let entry = AuditEntry {
        scope: Some(super::LOCAL_SCOPE.into()),
        tenant_id: change.tenant.as_deref().and_then(|t| TenantId::parse(t).ok()),
        subject: change.subject,
        outcome: crate::model::AuditOutcome::Error,
        message: Some(format!("{error:#}").chars().take(500).collect()),
        ..AuditEntry::new(super::actor(), change.action)
    };
    if let Err(e) = store.audit(entry).await {
        tracing::warn!("writing the audit entry failed: {e}");
    }
    store.close().await;
}
