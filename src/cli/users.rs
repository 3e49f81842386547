//! `users add|list|set-role|remove|connect`: people, their memberships of companies
//! (tenants) with a role, and their own connections ("user integrations"), whose jobs
//! sync only the streams their role is granted at that company.

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;
use serde_json::{Value, json};

use super::output::outln;
use super::{Global, actor, output};
use crate::app::{FIXED_JITTER, reconcile_tenant};
use crate::config::{Catalog, RoleGrants};
use crate::model::{
    AuditEntry, ConnectionRow, ProviderId, ReconcileCounts, RoleName, Saved, Schedule, TenantId, UserId, UserRow,
};
use crate::scheduler::{StreamAccess, stream_access};
use crate::store::Store;
use crate::tenants::Tenants;

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// Add a user, or update their name and email; with `--tenant` and `--role`, also
    /// make them a member of that tenant with that role.
    Add {
        /// User id: lowercase letters, digits, `-`, `_` and `.`, starting with a letter.
        id: String,
        /// Display name, e.g. "Bob Jones".
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, requires = "role")]
        tenant: Option<String>,
        /// The user's role at `--tenant` (its `[roles.<role>]` decides what their own
        /// connections may sync there).
        #[arg(long, requires = "tenant")]
        role: Option<String>,
    },
    /// List users and their memberships (of one tenant with `--tenant`).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Make a user a member of a tenant with a role, or change their role there; their
    /// connections' jobs follow the role's grants at once.
    SetRole {
        id: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        role: String,
    },
    /// End a user's membership of a tenant: their connections there are disabled and
    /// their jobs stop (records stay).
    Remove {
        id: String,
        #[arg(long)]
        tenant: String,
    },
    /// Create a user's own connection to a provider at a tenant, with jobs for the
    /// streams their role is granted there; store its credentials with
    /// `tributary credentials set --user`.
    Connect {
        id: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: String,
        /// The connection's own schedule (`15m`, `daily at 02:00`, cron…); default: the
        /// tenant's schedule of each stream.
        #[arg(long)]
        schedule: Option<String>,
    },
}

pub async fn run(g: &Global, cmd: UsersCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let store = match cmd {
        UsersCmd::List { .. } => g.store_existing(&catalog).await?,
        _ => g.store(&catalog).await?,
    };
    let result = match cmd {
        UsersCmd::Add { id, name, email, tenant, role } => {
            add(g, &catalog, &store, &id, &name, email, tenant, role).await
        }
        UsersCmd::List { tenant } => list(g, &store, tenant.as_deref()).await,
        UsersCmd::SetRole { id, tenant, role } => {
            let (user, tenant, role) = (UserId::parse(&id)?, TenantId::parse(&tenant)?, RoleName::parse(&role)?);
            set_role(g, &catalog, &store, &user, &tenant, &role, None).await
        }
        UsersCmd::Remove { id, tenant } => {
            remove(g, &catalog, &store, &UserId::parse(&id)?, &TenantId::parse(&tenant)?).await
        }
        UsersCmd::Connect { id, tenant, provider, schedule } => {
            connect(g, &catalog, &store, &id, &tenant, &provider, schedule.as_deref()).await
        }
    };
    store.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

fn audit(action: &str, tenant: Option<&TenantId>, user: &UserId, details: Value) -> AuditEntry {
    AuditEntry {
        at: Utc::now(),
        actor: actor(),
        scope: Some("local".into()),
        outcome: crate::model::AuditOutcome::Ok,
        message: None,
        action: action.to_owned(),
        tenant_id: tenant.cloned(),
        subject: Some(user.to_string()),
        details,
    }
}

fn saved_word(saved: Saved) -> &'static str {
    match saved {
        Saved::Created => "added",
        Saved::Updated => "updated",
        Saved::Unchanged => "unchanged",
    }
}

fn jobs_line(counts: &ReconcileCounts) -> String {
    format!(
        "jobs: {} created, {} re-enabled, {} disabled, {} rescheduled, {} unchanged",
        counts.created, counts.reenabled, counts.disabled, counts.updated, counts.unchanged
    )
}

#[allow(clippy::too_many_arguments)]
async fn add(
    g: &Global,
    catalog: &Catalog,
    store: &Store,
    id: &str,
    name: &str,
    email: Option<String>,
    tenant: Option<String>,
    role: Option<String>,
) -> anyhow::Result<()> {
    let user = UserId::parse(id)?;
    if name.trim().is_empty() {
        anyhow::bail!("--name must not be empty");
    }
    if let Some(e) = &email
        && (e.split_once('@').is_none_or(|(local, domain)| local.is_empty() || domain.is_empty())
            || e.chars().any(char::is_whitespace))
    {
        anyhow::bail!("--email `{e}` is not an email address");
    }
    // Check the membership's arguments before writing anything.
    let membership = match (tenant, role) {
        (Some(t), Some(r)) => Some((TenantId::parse(&t)?, RoleName::parse(&r)?)),
        _ => None,
    };
    let details = json!({ "name": name, "email": email });
    let (row, saved) = store.add_user(&user, name, email.as_deref(), &audit("user.add", None, &user, details)).await?;
    if !g.json {
        outln!("user {user} {}", saved_word(saved));
    }
    match membership {
        Some((tenant, role)) => set_role(g, catalog, store, &user, &tenant, &role, Some((&row, saved))).await,
        None if g.json => output::json(&json!({ "user": row, "saved": saved })),
        None => Ok(()),
    }
}

async fn list(g: &Global, store: &Store, tenant: Option<&str>) -> anyhow::Result<()> {
    let tenant = tenant.map(TenantId::parse).transpose()?;
    if let Some(t) = &tenant
        && store.get_tenant(t).await?.is_none()
    {
        anyhow::bail!("tenant `{t}` not found");
    }
    let users = store.list_users(tenant.as_ref()).await?;
    if g.json {
        return output::json(&users);
    }
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let memberships: Vec<String> =
                u.memberships.iter().map(|m| format!("{}:{}", m.tenant_id, m.role)).collect();
            vec![
                u.id.to_string(),
                u.name.clone(),
                u.email.clone().unwrap_or_else(|| "-".into()),
                if memberships.is_empty() { "-".into() } else { memberships.join(", ") },
            ]
        })
        .collect();
    output::table(&["USER", "NAME", "EMAIL", "MEMBER OF (TENANT:ROLE)"], &rows);
    Ok(())
}

/// Sets the role, reconciles the tenant's jobs and reports (with the user just added,
/// when called from `users add`).
async fn set_role(
    g: &Global,
    catalog: &Catalog,
    store: &Store,
    user: &UserId,
    tenant: &TenantId,
    role: &RoleName,
    added: Option<(&UserRow, Saved)>,
) -> anyhow::Result<()> {
    let before = store.memberships_of(user).await?.into_iter().find(|m| m.tenant_id == *tenant).map(|m| m.role);
    let details = json!({ "role": role, "previous_role": before });
    let (membership, saved) =
        store.set_membership(tenant, user, role, &audit("membership.set", Some(tenant), user, details)).await?;
    let jobs = reconcile_tenant(catalog, store, tenant, FIXED_JITTER).await?;
    let granted = store.role_grants(tenant).await?.contains_key(role);
    if g.json {
        let mut out = json!({ "membership": membership, "saved": saved, "jobs": jobs, "role_has_grants": granted });
        if let Some((row, user_saved)) = added {
            out["user"] = json!(row);
            out["user_saved"] = json!(user_saved);
        }
        return output::json(&out);
    }
    match (saved, before) {
        (Saved::Created, _) => outln!("{user} is now a member of {tenant} as {role}"),
        (Saved::Updated, Some(before)) => outln!("{user}'s role at {tenant}: {before} → {role}"),
        _ => outln!("{user} is already a member of {tenant} as {role}"),
    }
    if !granted {
        outln!(
            "note: role `{role}` has no `[roles.{role}]` entry at {tenant}: its users' own connections sync nothing \
             there (deny by default)"
        );
    }
    outln!("{}", jobs_line(&jobs));
    Ok(())
}

async fn remove(g: &Global, catalog: &Catalog, store: &Store, user: &UserId, tenant: &TenantId) -> anyhow::Result<()> {
    let disabled =
        store.remove_membership(tenant, user, &audit("membership.remove", Some(tenant), user, json!({}))).await?;
    let jobs = reconcile_tenant(catalog, store, tenant, FIXED_JITTER).await?;
    if g.json {
        return output::json(
            &json!({ "tenant": tenant, "user": user, "connections_disabled": disabled, "jobs": jobs }),
        );
    }
    outln!("{user} is no longer a member of {tenant}; {disabled} of their connections there disabled (records stay)");
    outln!("{}", jobs_line(&jobs));
    Ok(())
}

async fn connect(
    g: &Global,
    catalog: &Catalog,
    store: &Store,
    id: &str,
    tenant: &str,
    provider: &str,
    schedule: Option<&str>,
) -> anyhow::Result<()> {
    let user = UserId::parse(id)?;
    let tenant = TenantId::parse(tenant)?;
    let provider = ProviderId::parse(provider)?;
    if catalog.manifests.get(provider.as_str()).is_none() {
        anyhow::bail!("unknown provider `{provider}` (known: {})", catalog.manifests.names());
    }
    if let Some(s) = schedule {
        Schedule::parse_checked(s).map_err(|e| anyhow::anyhow!("--schedule: {e}"))?;
    }
    let view = Tenants::new(catalog, store, actor()).require(&tenant).await?;
    let Some(effective) = view.effective.providers.get(&provider).filter(|p| p.config.is_enabled()) else {
        anyhow::bail!("provider `{provider}` is not enabled for tenant `{tenant}`");
    };
    let details = json!({ "provider": provider, "schedule": schedule });
    let (connection, saved) = store
        .connect_user(&tenant, &provider, &user, schedule, &audit("connection.connect", Some(&tenant), &user, details))
        .await?;
    let jobs = reconcile_tenant(catalog, store, &tenant, FIXED_JITTER).await?;
    let access = stream_access(effective, &connection, &RoleGrants::from_stored(&view.roles));
    if g.json {
        let streams: Vec<Value> = access.iter().map(|a| access_json(a, &tenant)).collect();
        return output::json(&json!({ "connection": connection, "saved": saved, "streams": streams, "jobs": jobs }));
    }
    outln!(
        "{user}'s connection to {provider} at {tenant}: {} ({}, role {})",
        saved_word(saved).replace("added", "created"),
        connection.status,
        connection.owner_role.as_ref().map_or("none".into(), ToString::to_string)
    );
    print_access(&access, &tenant, "  ");
    outln!("{}", jobs_line(&jobs));
    if !connection.has_credentials {
        outln!(
            "next: store its credentials with `tributary credentials set --tenant {tenant} --provider {provider} \
             --user {user}` (JSON on stdin)"
        );
    }
    Ok(())
}

/// One stream of a user connection as JSON: its schedule, or why it is not synced.
pub(super) fn access_json(a: &StreamAccess, tenant: &TenantId) -> Value {
    json!({
        "stream": a.stream,
        "synced": a.denied.is_none(),
        "schedule": a.schedule,
        "reason": a.denied.as_ref().map(|d| d.describe(tenant)),
    })
}

/// Lines listing what a user connection syncs and, for every other enabled stream, why
/// not.
pub(super) fn print_access(access: &[StreamAccess], tenant: &TenantId, indent: &str) {
    for a in access {
        match &a.denied {
            None => outln!("{indent}syncs {} ({})", a.stream, a.schedule.as_deref().unwrap_or("no schedule")),
            Some(denied) => outln!("{indent}not {}: {}", a.stream, denied.describe(tenant)),
        }
    }
    if access.is_empty() {
        outln!("{indent}(the provider has no enabled streams)");
    }
}

/// The connection's owner as shown in tables.
pub(super) fn owner_label(c: &ConnectionRow) -> String {
    match (&c.owner_user, &c.owner_role) {
        (None, _) => "company".into(),
        (Some(u), Some(r)) => format!("user {u} ({r})"),
        (Some(u), None) => format!("user {u} (no role)"),
    }
}
