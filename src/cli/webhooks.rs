//! `webhooks`: outbound event endpoints — register (the signing secret is printed once),
//! list, remove, send a test event, show the delivery log, replay failed messages.
//!
//! `tributary webhooks …` acts on the store as the operator; `tributary ctl webhooks …`
//! sends the same command to a running daemon (where a tenant admin may use it too).
//! Both run [`Endpoints::run`](crate::control::webhooks::Endpoints::run) and print its
//! answer with [`print`].

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::output::outln;
use super::{Global, output};
use crate::control::protocol::{
    Command, Scope, WebhookAdd, WebhookCommand, WebhookDeliveries, WebhookId, WebhookList, WebhookReplay,
};
use crate::control::webhooks::{DEFAULT_DELIVERIES, Endpoints};
use crate::store::{WebhookDelivery, WebhookEndpoint};

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
        #[arg(long, default_value_t = DEFAULT_DELIVERIES)]
        limit: i64,
    },
    /// Make the endpoint's failed messages (or one message) due again and enable it.
    Replay {
        id: String,
        #[arg(long)]
        message: Option<String>,
    },
}

impl WebhooksCmd {
    /// The command as the control protocol carries it.
    pub fn command(self) -> WebhookCommand {
        match self {
            Self::Add { tenant, operator: _, url, events } => WebhookCommand::Add(WebhookAdd { tenant, url, events }),
            Self::List { tenant } => WebhookCommand::List(WebhookList { tenant }),
            Self::Remove { id } => WebhookCommand::Remove(WebhookId { id }),
            Self::Test { id } => WebhookCommand::Test(WebhookId { id }),
            Self::Deliveries { id, limit } => WebhookCommand::Deliveries(WebhookDeliveries { id, limit: Some(limit) }),
            Self::Replay { id, message } => WebhookCommand::Replay(WebhookReplay { id, message }),
        }
    }
}

pub async fn run(g: &Global, cmd: WebhooksCmd) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let store = g.store(&catalog).await?;
    let command = cmd.command();
    let result = async {
        let key = g.master_key(&catalog, &store).await?;
        let endpoints = Endpoints {
            store: &store,
            scope: &Scope::Operator,
            allow_private: catalog.settings.webhooks.allow_private_targets,
        };
        let named = match &command {
            WebhookCommand::Remove(WebhookId { id }) | WebhookCommand::Replay(WebhookReplay { id, .. }) => Some(id),
            WebhookCommand::Test(WebhookId { id }) => Some(id),
            _ => None,
        };
        let owner = match named {
            Some(id) => store.get_webhook_endpoint(id).await.ok().flatten().and_then(|e| e.tenant_id),
            None => None,
        };
        let answer = endpoints.run(&key, &command).await;
        let audited = Command::Webhooks(command.clone());
        let outcome = answer.as_ref().map_err(ToString::to_string);
        super::audit_command(&store, &audited, owner.as_deref(), outcome.as_ref().copied().map_err(String::as_str))
            .await;
        print(g.json, &command, &answer?)?;
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

/// Prints the answer to `command`: as it is with `--json`, else as tables and lines.
pub fn print(json: bool, command: &WebhookCommand, answer: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(answer);
    }
    match command {
        WebhookCommand::Add(_) => {
            let endpoint: WebhookEndpoint = serde_json::from_value(answer["endpoint"].clone())?;
            outln!("endpoint {} registered for {}", endpoint.id, endpoint.events);
            outln!("signing secret (shown once): {}", answer["secret"].as_str().unwrap_or_default());
        }
        WebhookCommand::List(_) => endpoints_table(&serde_json::from_value::<Vec<_>>(answer.clone())?),
        WebhookCommand::Remove(r) => outln!("endpoint {} removed", r.id),
        WebhookCommand::Test(_) => outln!("test event queued ({} message)", answer["queued"]),
        WebhookCommand::Deliveries(_) => deliveries_table(&serde_json::from_value::<Vec<_>>(answer.clone())?),
        WebhookCommand::Replay(r) => {
            outln!("{} message(s) queued again; endpoint {} enabled", answer["requeued"], r.id);
        }
    }
    Ok(())
}

fn endpoints_table(endpoints: &[WebhookEndpoint]) {
    let rows: Vec<Vec<String>> = endpoints
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

fn deliveries_table(deliveries: &[WebhookDelivery]) {
    let rows: Vec<Vec<String>> = deliveries
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
