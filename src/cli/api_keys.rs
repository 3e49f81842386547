//! `tributary api-keys create|list|revoke`: keys of the HTTP API (`/api/v1`). A key is
//! printed once, when it is created; the store keeps only a digest of it.

use std::process::ExitCode;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::Subcommand;
use serde_json::json;

use super::output::outln;
use super::{Global, output};
use crate::model::{AuditEntry, TenantId};
use crate::server::api::keys;
use crate::store::NewApiKey;

#[derive(Debug, Subcommand)]
pub enum ApiKeysCmd {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// A key for everything (every tenant, every action).
        #[arg(long, conflicts_with = "tenant", required_unless_present = "tenant")]
        operator: bool,
        /// A key for one tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// `admin` (reads, triggers, pauses, manages the tenant's webhooks and writes) or
        /// `viewer` (reads only).
        #[arg(long, default_value = "admin", value_parser = ["admin", "viewer"])]
        role: String,
        /// When the key stops working: a span from now (`90d`, `12h`, `2w`) or a date
        /// (`2027-03-01`) or an RFC 3339 time. Default: never.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        /// A name for the key (in logs and audit; default: derived from the scope).
        #[arg(long)]
        name: Option<String>,
    },
    /// Every key: name, scope, role, created, expires, revoked (never the key).
    List,
    /// Revoke a key (by name or id): the next request with it is refused.
    Revoke { name: String },
}

pub async fn run(g: &Global, cmd: ApiKeysCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    match cmd {
        ApiKeysCmd::Create { operator: _, tenant, role, expires, name } => {
            let expires_at = expires.as_deref().map(|e| parse_expiry(e, Utc::now())).transpose()?;
            let tenant = tenant.as_deref().map(TenantId::parse).transpose()?;
            let new = keys::generate();
            let name = match name {
                Some(n) if n.trim().is_empty() => anyhow::bail!("--name must not be empty"),
                Some(n) => n,
                None => match &tenant {
                    Some(t) => format!("{t}-{role}-{}", new.id),
                    None => format!("operator-{role}-{}", new.id),
                },
            };
            let store = g.store(&catalog).await?;
            let row = store
                .create_api_key(&NewApiKey {
                    id: &new.id,
                    name: &name,
                    tenant: tenant.as_ref(),
                    role: &role,
                    secret_hash: &new.digest,
                    expires_at,
                })
                .await;
            if row.is_ok() {
                let entry = AuditEntry {
                    scope: Some(super::LOCAL_SCOPE.into()),
                    tenant_id: tenant.clone(),
                    subject: Some(name.clone()),
                    details: json!({ "id": new.id, "role": role, "expires_at": expires_at }),
                    ..AuditEntry::new(super::actor(), "api_key.create")
                };
                if let Err(e) = store.audit(entry).await {
                    tracing::warn!("writing the audit entry failed: {e}");
                }
            }
            store.close().await;
            let row = row?;
            if g.json {
                output::json(&json!({ "key": new.key.as_str(), "api_key": row }))?;
            } else {
                outln!("{}", new.key.as_str());
                eprintln!(
                    "API key `{}` ({}, {}{}) created. It is shown this once: store it now.",
                    row.name,
                    row.tenant_id.as_deref().map_or("operator".to_owned(), |t| format!("tenant {t}")),
                    row.role,
                    row.expires_at.map_or(String::new(), |at| format!(", expires {}", at.to_rfc3339()))
                );
            }
        }
        ApiKeysCmd::List => {
            let store = g.store_existing(&catalog).await?;
            let rows = store.api_keys().await;
            store.close().await;
            let rows = rows?;
            if g.json {
                output::json(&rows)?;
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|k| {
                        vec![
                            k.name.clone(),
                            k.id.clone(),
                            k.tenant_id.clone().map_or("operator".into(), |t| format!("tenant:{t}")),
                            k.role.clone(),
                            k.created_at.format("%Y-%m-%d %H:%M").to_string(),
                            k.expires_at.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                            k.revoked_at.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "ID", "SCOPE", "ROLE", "CREATED", "EXPIRES", "REVOKED"], &table);
            }
        }
        ApiKeysCmd::Revoke { name } => {
            let store = g.store_existing(&catalog).await?;
            let row = store.revoke_api_key(&name).await;
            if let Ok(Some(revoked)) = &row {
                let entry = AuditEntry {
                    scope: Some(super::LOCAL_SCOPE.into()),
                    tenant_id: revoked.tenant_id.as_deref().and_then(|t| TenantId::parse(t).ok()),
                    subject: Some(revoked.name.clone()),
                    details: json!({ "id": revoked.id }),
                    ..AuditEntry::new(super::actor(), "api_key.revoke")
                };
                if let Err(e) = store.audit(entry).await {
                    tracing::warn!("writing the audit entry failed: {e}");
                }
            }
            store.close().await;
            let row = row?.ok_or_else(|| anyhow::anyhow!("no API key named `{name}`"))?;
            if g.json {
                output::json(&row)?;
            } else {
                outln!("API key `{}` revoked", row.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--expires`: `<n>h`, `<n>d`, `<n>w` from `now`, a date (its midnight UTC) or an RFC 3339 time.
pub fn parse_expiry(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let bad =
        || anyhow::anyhow!("`--expires {text}` is not a span (90d, 12h, 2w), a date (2027-03-01) or an RFC 3339 time");
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let n: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        if n <= 0 {
            return Err(bad());
        }
        let span = match unit {
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        return now.checked_add_signed(span).ok_or_else(bad);
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?;
    Ok(day.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_spans_dates_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z").unwrap().with_timezone(&Utc);
        let at = |s: &str| parse_expiry(s, now).unwrap().to_rfc3339();
        assert_eq!(at("90d"), "2027-03-07T12:00:00+00:00");
        assert_eq!(at("12h"), "2026-12-08T00:00:00+00:00");
        assert_eq!(at("2w"), "2026-12-21T12:00:00+00:00");
        assert_eq!(at("2027-03-01"), "2027-03-01T00:00:00+00:00");
        assert_eq!(at("2027-03-01T08:00:00Z"), "2027-03-01T08:00:00+00:00");
        for bad in ["", "d", "0d", "-5d", "5y", "soon", "2027-13-01"] {
            let e = parse_expiry(bad, now).unwrap_err().to_string();
            assert!(e.contains("--expires"), "{bad}: {e}");
        }
    }
}
