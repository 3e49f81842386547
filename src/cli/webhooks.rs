//! `webhooks`: outbound event endpoints — register (the signing secret is printed once),
//! list, remove, send a test event, show the delivery log, replay failed messages.

use std::process::ExitCode;

use clap::Subcommand;

use super::output::outln;
use super::{Global, output};
use crate::http::webhooks::{check_url, generate_secret};
use crate::model::TenantId;
use crate::store::NewWebhookEndpoint;

/// The events an endpoint can subscribe to (`*`: all of them).
pub const EVENTS: [&str; 8] = [
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "connection.needs_reauth",
    "connection.restored",
    "job.stalled",
    "records.changed",
    "webhook.test",
];

#[derive(Debug, Subcommand)]
pub enum WebhooksCmd {
    /// Register an endpoint; prints its `whsec_` signing secret once.
    Add {
        /// The tenant whose events it receives.
        #[arg(long, conflicts_with = "operator", required_unless_present = "operator")]
        tenant: Option<String>,
        /// Every tenant's events (operator-wide).
        #[arg(long)]
        operator: bool,
        #[arg(long)]
        url: String,
        /// Comma-separated event types, or `*`.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
    },
    /// The endpoints (of one tenant with --tenant).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove an endpoint with its messages and delivery log.
    Remove { id: String },
    /// Queue a `webhook.test` event for the endpoint.
    Test { id: String },
    /// The endpoint's latest delivery attempts.
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Make the endpoint's failed messages (or one message) due again and enable it.
    Replay {
        id: String,
        #[arg(long)]
        message: Option<String>,
    },
}

pub async fn run(g: &Global, cmd: WebhooksCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let store = g.store(&catalog).await?;
    let result = async {
        match cmd {
            WebhooksCmd::Add { tenant, operator: _, url, events } => {
                let tenant = tenant.as_deref().map(TenantId::parse).transpose()?;
                if let Some(t) = &tenant {
                    anyhow::ensure!(store.get_tenant(t).await?.is_some(), "no tenant `{t}`");
                }
                check_url(&url, catalog.settings.webhooks.allow_private_targets).map_err(anyhow::Error::msg)?;
                let events = check_events(events)?;
                let key = g.master_key(&catalog, &store)?;
                let id = format!("ep_{}", uuid::Uuid::now_v7().simple());
                let secret = generate_secret();
                let sealed = key.seal_webhook_secret(&id, secret.as_bytes());
                let ep = store
                    .create_webhook_endpoint(&NewWebhookEndpoint {
                        id: &id,
                        tenant: tenant.as_ref(),
                        url: &url,
                        events: &events,
                        secret: &sealed,
                    })
                    .await?;
                if g.json {
                    output::json(&serde_json::json!({"endpoint": ep, "secret": secret.as_str()}))?;
                } else {
                    outln!("endpoint {} registered for {}", ep.id, ep.events);
                    outln!("signing secret (shown once): {}", secret.as_str());
                }
                Ok(ExitCode::SUCCESS)
            }
            WebhooksCmd::List { tenant } => {
                let tenant = tenant.as_deref().map(TenantId::parse).transpose()?;
                let eps = store.list_webhook_endpoints(tenant.as_ref()).await?;
                if g.json {
                    output::json(&eps)?;
                } else {
                    let rows: Vec<Vec<String>> = eps
                        .iter()
                        .map(|e| {
                            vec![
                                e.id.clone(),
                                e.tenant_id.clone().unwrap_or_else(|| "(operator)".into()),
                                e.url.clone(),
                                e.events.clone(),
                                if e.enabled {
                                    "enabled".into()
                                } else {
                                    format!("disabled: {}", e.disabled_reason.as_deref().unwrap_or(""))
                                },
                            ]
                        })
                        .collect();
                    output::table(&["ID", "TENANT", "URL", "EVENTS", "STATE"], &rows);
                }
                Ok(ExitCode::SUCCESS)
            }
            WebhooksCmd::Remove { id } => {
                anyhow::ensure!(store.delete_webhook_endpoint(&id).await?, "no webhook endpoint `{id}`");
                outln!("endpoint {id} removed");
                Ok(ExitCode::SUCCESS)
            }
            WebhooksCmd::Test { id } => {
                let n = send_test(&store, &id).await?;
                outln!("test event queued ({n} message)");
                Ok(ExitCode::SUCCESS)
            }
            WebhooksCmd::Deliveries { id, limit } => {
                let ds = store.list_webhook_deliveries(&id, limit).await?;
                if g.json {
                    output::json(&ds)?;
                } else {
                    let rows: Vec<Vec<String>> = ds
                        .iter()
                        .map(|d| {
                            vec![
                                d.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                d.message_id.clone(),
                                d.event_type.clone(),
                                d.attempt.to_string(),
                                d.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                                format!("{} ms", d.latency_ms),
                                d.error.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    output::table(&["AT", "MESSAGE", "EVENT", "ATTEMPT", "STATUS", "LATENCY", "ERROR"], &rows);
                }
                Ok(ExitCode::SUCCESS)
            }
            WebhooksCmd::Replay { id, message } => {
                anyhow::ensure!(store.get_webhook_endpoint(&id).await?.is_some(), "no webhook endpoint `{id}`");
                let n = store.replay_webhooks(&id, message.as_deref()).await?;
                outln!("{n} message(s) queued again; endpoint {id} enabled");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    store.close().await;
    result
}

/// Validates event names (`*` alone or known types).
pub fn check_events(events: Vec<String>) -> anyhow::Result<Vec<String>> {
    let events: Vec<String> = events.into_iter().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
    anyhow::ensure!(!events.is_empty(), "--events names no event");
    for e in &events {
        anyhow::ensure!(
            e == "*" || EVENTS.contains(&e.as_str()),
            "unknown event `{e}` (known: {}, or `*`)",
            EVENTS.join(", ")
        );
    }
    Ok(events)
}

/// Queues a `webhook.test` event for one endpoint (whatever it subscribes to).
pub async fn send_test(store: &crate::store::Store, id: &str) -> anyhow::Result<usize> {
    let ep = store.get_webhook_endpoint(id).await?.ok_or_else(|| anyhow::anyhow!("no webhook endpoint `{id}`"))?;
    let tenant = ep.tenant_id.as_deref().map(TenantId::parse).transpose()?;
    Ok(store.emit_test_event(&ep.id, tenant.as_ref()).await?)
}
