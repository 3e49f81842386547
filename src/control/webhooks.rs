//! Outbound webhook endpoints as an operator or a tenant admin manages them: register
//! (the signing secret is returned once), list, remove, queue a test event, read the
//! delivery log, replay. `tributary webhooks …` (on the store, as the operator) and the
//! control socket's `webhooks` command (for whoever asks) both run [`Endpoints::run`],
//! so event names, URL checks and scopes are checked here only.
//!
//! A tenant admin sees its own tenant's endpoints only: another tenant's endpoint and an
//! operator-wide one answer exactly like one that does not exist, and it cannot register
//! an operator-wide endpoint or one of another tenant.

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::protocol::{Scope, WebhookAdd, WebhookCommand};
use crate::http::webhooks::{check_url, generate_secret};
use crate::model::TenantId;
use crate::secrets::MasterKey;
use crate::store::{NewWebhookEndpoint, Store, StoreError, WebhookDelivery, WebhookEndpoint};

/// The events an endpoint can subscribe to (`*`: all of them).
pub const EVENTS: [&str; 11] = [
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "connection.needs_reauth",
    "connection.restored",
    "job.stalled",
    "records.changed",
    "write.succeeded",
    "write.failed",
    "write.conflict",
    "webhook.test",
];

/// The most delivery attempts one `deliveries` answer lists.
pub const MAX_DELIVERIES: i64 = 10_000;
/// Attempts `deliveries` lists when not told.
pub const DEFAULT_DELIVERIES: i64 = 50;

/// Why a webhook command was not done.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No such endpoint — or one the asker may not see.
    #[error("no webhook endpoint `{0}`")]
    NotFound(String),
    /// Out of the asker's scope.
    #[error("{0}")]
    Refused(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A registered endpoint and its signing secret (shown this once; never in `Debug`).
pub struct Added {
    pub endpoint: WebhookEndpoint,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for Added {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Added").field("endpoint", &self.endpoint).field("secret", &"<redacted>").finish()
    }
}

/// The endpoints of a store as `scope` may manage them.
pub struct Endpoints<'a> {
    pub store: &'a Store,
    pub scope: &'a Scope,
    /// `[webhooks] allow_private_targets`.
    pub allow_private: bool,
}

impl Endpoints<'_> {
    /// Runs `command`; its answer as the control socket replies it (and `--json` prints it).
    pub async fn run(&self, key: &MasterKey, command: &WebhookCommand) -> Result<Value, WebhookError> {
        Ok(match command {
            WebhookCommand::Add(add) => {
                let added = self.add(key, add).await?;
                json!({ "endpoint": added.endpoint, "secret": added.secret.as_str() })
            }
            WebhookCommand::List(list) => json!(self.list(list.tenant.as_deref()).await?),
            WebhookCommand::Remove(r) => {
                self.remove(&r.id).await?;
                json!({ "removed": r.id })
            }
            WebhookCommand::Test(t) => json!({ "endpoint": t.id, "queued": self.test(&t.id).await? }),
            WebhookCommand::Deliveries(d) => json!(self.deliveries(&d.id, d.limit).await?),
            WebhookCommand::Replay(r) => {
                let n = self.replay(&r.id, r.message.as_deref()).await?;
                json!({ "endpoint": r.id, "requeued": n, "enabled": true })
            }
        })
    }

    /// Registers an endpoint with a new secret.
    pub async fn add(&self, key: &MasterKey, add: &WebhookAdd) -> Result<Added, WebhookError> {
        let tenant = match (&add.tenant, self.own()) {
            (None, Some(own)) => {
                return Err(WebhookError::Refused(format!(
                    "a tenant admin of `{own}` cannot register an operator-wide endpoint"
                )));
            }
            (Some(t), Some(own)) if t != own => {
                return Err(WebhookError::Refused(format!("a tenant admin of `{own}` cannot act on tenant `{t}`")));
            }
            (t, _) => t.as_deref().map(parse_tenant).transpose()?,
        };
        if let Some(t) = &tenant
            && self.store.get_tenant(t).await?.is_none()
        {
            return Err(WebhookError::Invalid(format!("no tenant `{t}`")));
        }
        check_url(&add.url, self.allow_private).map_err(WebhookError::Invalid)?;
        let events = check_events(&add.events).map_err(WebhookError::Invalid)?;
        let id = format!("ep_{}", uuid::Uuid::now_v7().simple());
        let secret = generate_secret();
        // Seal with the key of a rotation under way, never with the one it replaces.
        self.store.follow_key_rotation(key).await?;
        let sealed = key.seal_webhook_secret(&id, secret.as_bytes());
        let endpoint = self
            .store
            .create_webhook_endpoint(&NewWebhookEndpoint {
                id: &id,
                tenant: tenant.as_ref(),
                url: &add.url,
                events: &events,
                secret: &sealed,
            })
            .await?;
        tracing::info!(
            endpoint = %endpoint.id,
            tenant = endpoint.tenant_id.as_deref().unwrap_or("(operator)"),
            events = %endpoint.events,
            "webhook endpoint registered"
        );
        Ok(Added { endpoint, secret })
    }

    /// The endpoints in scope (of `tenant` only, when named).
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<WebhookEndpoint>, WebhookError> {
        let tenant = match (tenant, self.own()) {
            (Some(t), Some(own)) if t != own => {
                return Err(WebhookError::Refused(format!("a tenant admin of `{own}` cannot act on tenant `{t}`")));
            }
            (t, own) => t.or(own).map(parse_tenant).transpose()?,
        };
        Ok(self.store.list_webhook_endpoints(tenant.as_ref()).await?)
    }

    /// Removes an endpoint with its messages and delivery log.
    pub async fn remove(&self, id: &str) -> Result<(), WebhookError> {
        let endpoint = self.visible(id).await?;
        if !self.store.delete_webhook_endpoint(&endpoint.id).await? {
            return Err(WebhookError::NotFound(id.to_owned()));
        }
        tracing::info!(endpoint = %endpoint.id, "webhook endpoint removed");
        Ok(())
    }

    /// Queues a `webhook.test` event for the endpoint (whatever it subscribes to).
    pub async fn test(&self, id: &str) -> Result<usize, WebhookError> {
        let endpoint = self.visible(id).await?;
        let tenant = endpoint.tenant_id.as_deref().map(parse_tenant).transpose()?;
        Ok(self.store.emit_test_event(&endpoint.id, tenant.as_ref()).await?)
    }

    /// The endpoint's latest attempts, newest first.
    pub async fn deliveries(&self, id: &str, limit: Option<i64>) -> Result<Vec<WebhookDelivery>, WebhookError> {
        let limit = limit.unwrap_or(DEFAULT_DELIVERIES);
        if !(1..=MAX_DELIVERIES).contains(&limit) {
            return Err(WebhookError::Invalid(format!(
                "the limit must be between 1 and {MAX_DELIVERIES}, not {limit}"
            )));
        }
        let endpoint = self.visible(id).await?;
        Ok(self.store.list_webhook_deliveries(&endpoint.id, limit).await?)
    }

    /// Makes the endpoint's failed messages (or its one `message`) due again and enables
    /// it; how many messages were queued again.
    pub async fn replay(&self, id: &str, message: Option<&str>) -> Result<u64, WebhookError> {
        let endpoint = self.visible(id).await?;
        let n = self.store.replay_webhooks(&endpoint.id, message).await?;
        tracing::info!(endpoint = %endpoint.id, messages = n, "webhook endpoint replayed and enabled");
        Ok(n)
    }

    /// The tenant a tenant admin is confined to; `None` for the operator.
    fn own(&self) -> Option<&str> {
        match self.scope {
            Scope::Operator => None,
            Scope::Tenant { tenant } => Some(tenant),
        }
    }

    /// The endpoint `id`, if it exists and is in scope; otherwise [`WebhookError::NotFound`],
    /// the same for both.
    async fn visible(&self, id: &str) -> Result<WebhookEndpoint, WebhookError> {
        let found = self.store.get_webhook_endpoint(id).await?;
        match (found, self.own()) {
            (Some(e), None) => Ok(e),
            (Some(e), Some(own)) if e.tenant_id.as_deref() == Some(own) => Ok(e),
            _ => Err(WebhookError::NotFound(id.to_owned())),
        }
    }
}

fn parse_tenant(t: &str) -> Result<TenantId, WebhookError> {
    TenantId::parse(t).map_err(|e| WebhookError::Invalid(e.to_string()))
}

/// Validates event names (`*` or known types; blanks ignored); the trimmed list.
pub fn check_events(events: &[String]) -> Result<Vec<String>, String> {
    let events: Vec<String> = events.iter().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
    if events.is_empty() {
        return Err(format!("no event named (known: {}, or `*`)", EVENTS.join(", ")));
    }
    for e in &events {
        if e != "*" && !EVENTS.contains(&e.as_str()) {
            return Err(format!("unknown event `{e}` (known: {}, or `*`)", EVENTS.join(", ")));
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked() {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(check_events(&list(&[" run.failed ", "", "*"])).unwrap(), ["run.failed", "*"]);
        assert!(check_events(&list(&["", " "])).unwrap_err().contains("no event named"));
        assert!(check_events(&list(&["run.exploded"])).unwrap_err().contains("unknown event `run.exploded`"));
    }
}
