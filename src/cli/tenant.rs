//! `tenant create|apply|list|show|rebase|set-preset`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::output::outln;
use super::users::{access_json, owner_label, print_access};
use super::{Global, actor, output};
use crate::app::{FIXED_JITTER, reconcile_tenant};
use crate::config::{Change, DEFAULT_TIMEZONE, RoleGrants, TenantSpec, check_subdomain, check_timezone};
use crate::model::{PresetName, TenantId};
use crate::scheduler::stream_access;
use crate::tenants::{ApplyOutcome, Rebased, Tenants};

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant with a preset; it pins the preset's current revision.
    Create {
        /// Tenant id: lowercase letters, digits and `-`.
        #[arg(long)]
        id: String,
        /// Display name, e.g. "Acme Training Ltd".
        #[arg(long)]
        name: String,
        /// The tenant's subdomain at its providers (e.g. acme for acme.aptem.co.uk).
        #[arg(long)]
        subdomain: String,
        /// One of `tributary presets list`.
        #[arg(long)]
        preset: String,
        /// IANA time zone its schedules run in.
        #[arg(long, default_value = DEFAULT_TIMEZONE)]
        timezone: String,
    },
    /// Create or update a tenant from a file (declarative, idempotent), then make its
    /// jobs match (providers, streams, schedules, role grants).
    Apply { file: PathBuf },
    /// List tenants.
    List,
    /// Show a tenant's effective configuration, roles and user connections.
    Show {
        id: String,
        /// Mark where every value comes from (preset revision or tenant override), and
        /// say which streams each user connection syncs and why not the others.
        #[arg(long)]
        explain: bool,
    },
    /// Adopt the preset's current revision and print what changed.
    Rebase { id: String },
    /// Switch a tenant to another preset; dropped providers' connections are disabled, records stay.
    SetPreset { id: String, preset: String },
}

pub async fn run(g: &Global, cmd: TenantCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let store = match cmd {
        // Only creating commands may create the store.
        TenantCmd::Create { .. } | TenantCmd::Apply { .. } => g.store(&catalog).await?,
        _ => g.store_existing(&catalog).await?,
    };
    let tenants = Tenants::new(&catalog, &store, actor());
    let result = match cmd {
        TenantCmd::Create { id, name, subdomain, preset, timezone } => {
            let id = TenantId::parse(&id)?;
            check_subdomain(&subdomain).map_err(anyhow::Error::msg)?;
            check_timezone(&timezone).map_err(anyhow::Error::msg)?;
            let preset = PresetName::parse(&preset)?;
            let spec = TenantSpec {
                id: id.clone(),
                name,
                subdomain,
                preset: preset.clone(),
                timezone,
                overrides: BTreeMap::new(),
                roles: BTreeMap::new(),
            };
            let revision = tenants.create(&spec).await?;
            let jobs = reconcile_tenant(&catalog, &store, &id, FIXED_JITTER).await?;
            if g.json {
                output::json(&json!({ "created": id, "preset": preset, "revision": revision, "jobs": jobs }))?;
            } else {
                outln!("created tenant {id} on preset {preset} at revision {revision}");
                print_jobs(&jobs);
            }
            Ok(())
        }
        TenantCmd::Apply { file } => {
            let spec = catalog.tenant_file(&file).map_err(|d| anyhow::anyhow!("{d}"))?;
            let outcome = tenants.apply(&spec).await?;
            let jobs = reconcile_tenant(&catalog, &store, &spec.id, FIXED_JITTER).await?;
            if g.json {
                output::json(&json!({ "tenant": spec.id, "outcome": outcome, "jobs": jobs }))?;
            } else {
                match outcome {
                    ApplyOutcome::Created { revision } => {
                        outln!("created tenant {} on preset {} at revision {revision}", spec.id, spec.preset)
                    }
                    ApplyOutcome::Unchanged => outln!("tenant {} is unchanged", spec.id),
                    ApplyOutcome::Updated { changes } => {
                        outln!("updated tenant {}:", spec.id);
                        print_changes(&changes);
                    }
                }
                print_jobs(&jobs);
            }
            Ok(())
        }
        TenantCmd::List => {
            let rows = store.list_tenants().await?;
            if g.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|t| json!({ "id": t.id, "name": t.name, "subdomain": t.subdomain, "timezone": t.timezone, "preset": t.preset, "preset_revision": t.preset_revision, "created_at": t.created_at }))
                    .collect();
                output::json(&list)?;
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|t| {
                        let current = catalog.presets.get(t.preset.as_str()).map(|p| p.revision.as_str());
                        let rev = match current {
                            Some(c) if c != t.preset_revision => {
                                format!("{} (current {c})", t.preset_revision)
                            }
                            _ => t.preset_revision.clone(),
                        };
                        vec![t.id.to_string(), t.name.clone(), t.preset.to_string(), rev, t.timezone.clone()]
                    })
                    .collect();
                output::table(&["TENANT", "NAME", "PRESET", "REVISION", "TIMEZONE"], &table);
            }
            Ok(())
        }
        TenantCmd::Show { id, explain } => show(g, &tenants, &store, &TenantId::parse(&id)?, explain).await,
        TenantCmd::Rebase { id } => {
            let tenant = TenantId::parse(&id)?;
            let r = tenants.rebase(&tenant).await?;
            let jobs = reconcile_tenant(&catalog, &store, &tenant, FIXED_JITTER).await?;
            print_rebased(g, &id, &r, &jobs)
        }
        TenantCmd::SetPreset { id, preset } => {
            let tenant = TenantId::parse(&id)?;
            let r = tenants.set_preset(&tenant, &preset).await?;
            let jobs = reconcile_tenant(&catalog, &store, &tenant, FIXED_JITTER).await?;
            print_rebased(g, &id, &r, &jobs)
        }
    };
    store.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The jobs' changes after a command, when there were any.
fn print_jobs(jobs: &crate::model::ReconcileCounts) {
    if jobs.created + jobs.reenabled + jobs.disabled + jobs.updated > 0 {
        outln!(
            "jobs: {} created, {} re-enabled, {} disabled, {} rescheduled",
            jobs.created,
            jobs.reenabled,
            jobs.disabled,
            jobs.updated
        );
    }
}

async fn show(
    g: &Global,
    tenants: &Tenants<'_>,
    store: &crate::store::Store,
    id: &TenantId,
    explain: bool,
) -> anyhow::Result<()> {
    let view = tenants.require(id).await?;
    let connections = store.list_connections(id).await?;
    let members = store.memberships(id).await?;
    let grants = RoleGrants::from_stored(&view.roles);
    let t = &view.tenant;
    if g.json {
        let mut providers = serde_json::Map::new();
        for p in view.effective.providers.values() {
            let conn = connections.iter().find(|c| c.provider == p.provider && c.owner_user.is_none());
            let mut entry = json!({
                "enabled": p.config.is_enabled(),
                "in_preset": p.in_preset,
                "connection": conn.map(|c| json!({ "status": c.status, "has_credentials": c.has_credentials })),
                "config": p.config,
            });
            if explain {
                entry["origins"] = json!(p.origins);
            }
            providers.insert(p.provider.to_string(), entry);
        }
        let user_connections: Vec<_> = connections
            .iter()
            .filter(|c| c.owner_user.is_some())
            .map(|c| {
                let streams: Vec<_> = view
                    .effective
                    .providers
                    .get(&c.provider)
                    .filter(|p| p.config.is_enabled())
                    .map(|p| stream_access(p, c, &grants).iter().map(|a| access_json(a, id)).collect())
                    .unwrap_or_default();
                json!({
                    "user": c.owner_user, "role": c.owner_role, "provider": c.provider, "status": c.status,
                    "status_reason": c.status_reason, "has_credentials": c.has_credentials, "schedule": c.schedule,
                    "streams": streams,
                })
            })
            .collect();
        return output::json(&json!({
            "id": t.id, "name": t.name, "subdomain": t.subdomain, "timezone": t.timezone,
            "preset": t.preset, "preset_revision": t.preset_revision, "current_revision": view.current_revision,
            "providers": providers, "roles": view.roles, "members": members, "user_connections": user_connections,
        }));
    }
    outln!("tenant {} — {}", t.id, t.name);
    outln!("  subdomain  {}", t.subdomain);
    outln!("  timezone   {}", t.timezone);
    let rev = match &view.current_revision {
        Some(c) if *c != t.preset_revision => {
            format!("{} (preset now at {c}; `tributary tenant rebase {}` adopts it)", t.preset_revision, t.id)
        }
        Some(_) => format!("{} (current)", t.preset_revision),
        None => format!("{} (preset no longer exists)", t.preset_revision),
    };
    outln!("  preset     {} @ {rev}", t.preset);
    for p in view.effective.providers.values() {
        let conn = connections.iter().find(|c| c.provider == p.provider && c.owner_user.is_none());
        let state = if p.config.is_enabled() { "enabled" } else { "disabled" };
        let conn = conn.map_or("no connection".to_owned(), |c| {
            format!("connection {}{}", c.status, if c.has_credentials { "" } else { ", no credentials" })
        });
        let origin = match (p.in_preset, p.config.is_enabled()) {
            (true, _) => "",
            (false, true) => ", added by the tenant outside its preset",
            (false, false) => ", not in the preset (tenant overrides kept)",
        };
        outln!("\n[{}] {state}{origin}; {conn}", p.provider);
        let entries = p.config.entries();
        let width = entries.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (path, value) in entries {
            let value = if path.starts_with("mappings.") {
                serde_json::from_value::<crate::config::MappingSpec>(value.clone())
                    .map_or_else(|_| output::compact(&value), |m| m.describe())
            } else {
                output::compact(&value)
            };
            if explain {
                let origin = p.origins.get(&path).map_or("tenant override".into(), |o| o.to_string());
                outln!("  {path:<width$}  {value}  [{origin}]");
            } else {
                outln!("  {path:<width$}  {value}");
            }
        }
    }
    print_roles(&view.roles, &members);
    print_user_connections(&view, &connections, &grants, explain);
    Ok(())
}

/// The tenant's role grants, and the roles of its members that have none.
fn print_roles(roles: &BTreeMap<crate::model::RoleName, Vec<String>>, members: &[crate::model::MembershipRow]) {
    outln!("\n[roles] streams each role's own user connections may sync (deny by default)");
    let width = roles.keys().map(|r| r.as_str().len()).max().unwrap_or(0);
    for (role, streams) in roles {
        let who: Vec<&str> = members.iter().filter(|m| m.role == *role).map(|m| m.user_id.as_str()).collect();
        let who = if who.is_empty() { String::new() } else { format!("  (members: {})", who.join(", ")) };
        let streams = if streams.is_empty() { "(nothing)".to_owned() } else { streams.join(", ") };
        outln!("  {:<width$}  {streams}{who}", role.as_str());
    }
    let mut ungranted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in members.iter().filter(|m| !roles.contains_key(&m.role)) {
        ungranted.entry(m.role.as_str()).or_default().push(m.user_id.as_str());
    }
    for (role, who) in &ungranted {
        outln!("  {role}: no `[roles.{role}]` entry, granted nothing (members: {})", who.join(", "));
    }
    if roles.is_empty() && ungranted.is_empty() {
        outln!("  (none)");
    }
}

/// Each user connection: owner, role and status; with `explain`, what it syncs and why
/// not the other enabled streams.
fn print_user_connections(
    view: &crate::tenants::TenantView,
    connections: &[crate::model::ConnectionRow],
    grants: &RoleGrants,
    explain: bool,
) {
    let users: Vec<_> = connections.iter().filter(|c| c.owner_user.is_some()).collect();
    if users.is_empty() {
        return;
    }
    outln!("\n[user connections]");
    for c in users {
        let reason = c.status_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
        let schedule = c.schedule.as_ref().map(|s| format!("; own schedule {s}")).unwrap_or_default();
        outln!("  {} → {}: {}{reason}{schedule}", owner_label(c), c.provider, c.status);
        let Some(p) = view.effective.providers.get(&c.provider).filter(|p| p.config.is_enabled()) else {
            if explain {
                outln!("    syncs nothing: provider `{}` is not enabled for {}", c.provider, view.tenant.id);
            }
            continue;
        };
        let access = stream_access(p, c, grants);
        if explain {
            print_access(&access, &view.tenant.id, "    ");
        } else {
            let synced: Vec<&str> = access.iter().filter(|a| a.denied.is_none()).map(|a| a.stream.as_str()).collect();
            outln!("    syncs: {}", if synced.is_empty() { "nothing".to_owned() } else { synced.join(", ") });
        }
    }
}

fn print_changes(changes: &[Change]) {
    if changes.is_empty() {
        outln!("  (no effective changes)");
    }
    for c in changes {
        let show = |v: &Option<serde_json::Value>| v.as_ref().map_or("(unset)".into(), output::compact);
        outln!("  {}: {} → {}", c.path, show(&c.before), show(&c.after));
    }
}

fn print_rebased(g: &Global, id: &str, r: &Rebased, jobs: &crate::model::ReconcileCounts) -> anyhow::Result<()> {
    if g.json {
        return output::json(&json!({ "tenant": id, "result": r, "jobs": jobs }));
    }
    if r.from_preset == r.to_preset {
        outln!("tenant {id}: preset {} {} → {}", r.to_preset, r.from_revision, r.to_revision);
    } else {
        outln!("tenant {id}: preset {}@{} → {}@{}", r.from_preset, r.from_revision, r.to_preset, r.to_revision);
    }
    for p in &r.disabled {
        outln!("  connection {p} disabled (its records stay)");
    }
    for p in &r.enabled {
        outln!("  connection {p} enabled");
    }
    print_changes(&r.changes);
    print_jobs(jobs);
    Ok(())
}
