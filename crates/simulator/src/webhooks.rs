//! Webhooks the simulators send, signed as the real providers sign them, to a target
//! set at any time on the running simulator ([`SimHandle::set_webhook_target`]).
//!
//! [`SimHandle::change_and_notify`] first changes the record in the simulator's data (so
//! the incremental run the webhook triggers reads the new value), then posts the event:
//!
//! | provider | event | signature |
//! | --- | --- | --- |
//! | hubspot | array of `contact.propertyChange` (`company.`, `deal.`) events | `X-HubSpot-Signature-v3`: base64 HMAC-SHA256(client secret, method + URL + body + ms timestamp) |
//! | slack | Events API `event_callback`, `event.type = message` | `X-Slack-Signature: v0=hex(HMAC(signing secret, "v0:{ts}:{body}"))` |
//! | jira | `jira:issue_updated` with the issue | `X-Hub-Signature: sha256=hex(HMAC(secret, body))` |
//!
//! The signatures are computed here with the `hmac` crate, independently of the
//! verifier in `tributary::http::webhook`: the simulator is the provider.
//!
//! [`SimHandle::set_webhook_target`]: super::SimHandle::set_webhook_target
//! [`SimHandle::change_and_notify`]: super::SimHandle::change_and_notify

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use super::Provider;
use super::core::{Sim, lock};
use super::util;

type HmacSha256 = Hmac<sha2_11::Sha256>;

/// How long one webhook POST may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The HubSpot portal (account) the simulator's events come from.
const PORTAL_ID: u64 = 62_515;
/// The HubSpot app the simulator's subscriptions belong to.
const APP_ID: u64 = 4_242;
/// The Slack app of the simulator's events.
const SLACK_APP: &str = "A0SIMAPP01";
/// The Slack workspace (as in `slack.rs`).
const SLACK_TEAM: &str = "T0SIMTEAM";

/// Where a simulator sends its webhooks: a URL and the secret it signs with. Its
/// `Debug` shows the URL only.
#[derive(Clone)]
pub struct WebhookTarget {
    url: String,
    secret: String,
}

impl WebhookTarget {
    /// Webhooks to `url` (`http://127.0.0.1:9187/webhooks/acme/hubspot`) signed with
    /// `secret` (the value the tenant stores under
    /// [`SimHandle::webhook_secret`](super::SimHandle::webhook_secret)'s field).
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { url: url.into(), secret: secret.into() }
    }

    /// The URL posted to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookTarget").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Why [`SimHandle::change_and_notify`](super::SimHandle::change_and_notify) sent nothing
/// or the target refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The provider sends no webhook for this stream (or none at all).
    #[error(
        "the {0} simulator sends no webhooks for `{1}` (hubspot: contacts, companies, deals; slack: messages; jira: issues)"
    )]
    Unsupported(Provider, String),
    /// No target was set.
    #[error("the {0} simulator has no webhook target (set one first)")]
    NoTarget(Provider),
    /// The target URL is not an http(s) URL.
    #[error("invalid webhook target URL `{0}`")]
    BadUrl(String),
    /// There is no such live record.
    #[error("`{0}` has no live record {1}")]
    NoRecord(String, u64),
    /// The POST failed before an answer came.
    #[error("the webhook POST to {url} failed: {reason}")]
    Send { url: String, reason: String },
    /// The target answered with a status other than 2xx.
    #[error("the webhook target {url} answered {status}")]
    Refused { url: String, status: u16 },
}

/// What a sent webhook said.
#[derive(Debug, Clone)]
pub struct WebhookSent {
    pub provider: Provider,
    /// The stream whose record changed (`contacts`, `messages`, `issues`).
    pub stream: &'static str,
    /// The record's index in the stream.
    pub index: u64,
    /// The provider's id of the changed object: HubSpot's `objectId`, Jira's issue id,
    /// Slack's message `ts` (with [`channel`](Self::channel)).
    pub object_id: String,
    /// Slack: the message's channel id.
    pub channel: Option<String>,
    /// The event type as the provider names it (`contact.propertyChange`, `message`,
    /// `jira:issue_updated`).
    pub event_type: String,
    /// The delivery id (HubSpot's `eventId`s joined with commas, Slack's `event_id`, Jira's
    /// `X-Atlassian-Webhook-Identifier`).
    pub delivery_id: String,
    /// The changed value the event reports (HubSpot's `propertyValue`, the message text,
    /// the issue's status).
    pub value: Value,
    /// The body posted.
    pub body: Value,
    /// When the POST started.
    pub sent_at: DateTime<Utc>,
    /// The target's status (2xx).
    pub status: u16,
}

/// A simulator's webhook state: the target, the HTTP client, the event counter.
pub(crate) struct Notifier {
    target: Mutex<Option<WebhookTarget>>,
    client: reqwest::Client,
    /// Event ids start at the start time in microseconds, so a restarted simulator
    /// does not reuse the ids a receiver remembers.
    next_event: AtomicU64,
}

impl Notifier {
    pub(crate) fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        let start = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(1);
        Self { target: Mutex::new(None), client, next_event: AtomicU64::new(start) }
    }

    pub(crate) fn set_target(&self, target: Option<WebhookTarget>) {
        *lock(&self.target) = target;
    }

    pub(crate) fn target(&self) -> Option<WebhookTarget> {
        lock(&self.target).clone()
    }

    fn next_id(&self) -> u64 {
        self.next_event.fetch_add(1, Ordering::Relaxed)
    }
}

/// The credential field tributary reads the provider's webhook secret from, and the
/// simulator's value for it; `None` for providers without simulated webhooks.
pub(crate) fn secret(sim: &Sim) -> Option<(&'static str, String)> {
    match sim.provider {
        Provider::HubSpot => Some(("client_secret", sim.client_pair().1)),
        Provider::Slack => Some(("signing_secret", sim.static_secret("slack-signing-secret", 32))),
        Provider::Jira => Some(("webhook_secret", sim.static_secret("jira-webhook-secret", 40))),
        _ => None,
    }
}

/// The streams whose changes the provider announces.
fn supported(provider: Provider, stream: &str) -> Option<&'static str> {
    let streams: &[&'static str] = match provider {
        Provider::HubSpot => &["contacts", "companies", "deals"],
        Provider::Slack => &["messages"],
        Provider::Jira => &["issues"],
        _ => &[],
    };
    streams.iter().copied().find(|s| s.eq_ignore_ascii_case(stream.trim()))
}

/// A request ready to post: body, headers, and what it says.
struct Outgoing {
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    sent: WebhookSent,
}

/// Changes record `index` of `stream`, then posts the provider's signed event about it.
pub(crate) async fn change_and_notify(
    sim: &Sim,
    notifier: &Notifier,
    stream: &str,
    index: u64,
) -> Result<WebhookSent, WebhookError> {
    let provider = sim.provider;
    let stream = supported(provider, stream).ok_or_else(|| WebhookError::Unsupported(provider, stream.to_owned()))?;
    let target = notifier.target().ok_or(WebhookError::NoTarget(provider))?;
    let url = reqwest::Url::parse(&target.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| WebhookError::BadUrl(target.url.clone()))?;
    let s = sim.stream_index(stream).ok_or_else(|| WebhookError::Unsupported(provider, stream.to_owned()))?;
    let changed = sim.mutate(s, |d| d.modify(index, Utc::now())).unwrap_or(false);
    let record =
        changed.then(|| sim.record(s, index)).flatten().ok_or(WebhookError::NoRecord(stream.to_owned(), index))?;
    let now = Utc::now();
    let out = match provider {
        Provider::HubSpot => hubspot(notifier, stream, index, &record, url.as_str(), &target.secret, now),
        Provider::Slack => slack(sim, notifier, index, &record, &target.secret, now),
        _ => jira(notifier, index, &record, &target.secret, now),
    };
    post(notifier, url, out).await
}

async fn post(notifier: &Notifier, url: reqwest::Url, out: Outgoing) -> Result<WebhookSent, WebhookError> {
    let shown = url.to_string();
    let mut request = notifier.client.post(url).header("content-type", "application/json").body(out.body);
    for (name, value) in &out.headers {
        request = request.header(*name, value);
    }
    let response =
        request.send().await.map_err(|e| WebhookError::Send { url: shown.clone(), reason: reason(e.without_url()) })?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        return Err(WebhookError::Refused { url: shown, status });
    }
    Ok(WebhookSent { status, ..out.sent })
}

/// The error with its causes (`error sending request: … Connection refused`).
fn reason(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn hmac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// HubSpot: a batch of `{object}.propertyChange` events, one per property the change
/// touched, signed v3 over `POST` + the URL + the body + the millisecond timestamp.
fn hubspot(
    notifier: &Notifier,
    stream: &'static str,
    index: u64,
    record: &Value,
    url: &str,
    secret: &str,
    now: DateTime<Utc>,
) -> Outgoing {
    let (object, subscription, properties): (&str, u64, &[&str]) = match stream {
        "contacts" => ("contact", 1, &["account_manager", "phone"]),
        "companies" => ("company", 2, &["hs_lastmodifieddate"]),
        _ => ("deal", 3, &["dealstage"]),
    };
    let object_id: u64 = text(&record["id"]).parse().unwrap_or(index + 1);
    let occurred = now.timestamp_millis();
    let event_type = format!("{object}.propertyChange");
    let events: Vec<Value> = properties
        .iter()
        .map(|p| {
            json!({
                "eventId": notifier.next_id(),
                "subscriptionId": 100 + subscription,
                "portalId": PORTAL_ID,
                "appId": APP_ID,
                "occurredAt": occurred,
                "subscriptionType": event_type,
                "attemptNumber": 0,
                "objectId": object_id,
                "propertyName": p,
                "propertyValue": record["properties"][*p],
                "changeSource": "CRM_UI",
            })
        })
        .collect();
    let delivery_id = events.iter().map(|e| e["eventId"].to_string()).collect::<Vec<_>>().join(",");
    let value = events[0]["propertyValue"].clone();
    let body_value = Value::Array(events);
    let body = to_vec(&body_value);
    let ts = occurred.to_string();
    let signature = util::base64_encode(&hmac(secret, &[b"POST", url.as_bytes(), &body, ts.as_bytes()]));
    Outgoing {
        body,
        headers: vec![("X-HubSpot-Signature-v3", signature), ("X-HubSpot-Request-Timestamp", ts)],
        sent: WebhookSent {
            provider: Provider::HubSpot,
            stream,
            index,
            object_id: object_id.to_string(),
            channel: None,
            event_type,
            delivery_id,
            value,
            body: body_value,
            sent_at: now,
            status: 0,
        },
    }
}

/// Slack: an Events API `event_callback` carrying the (re)posted message, signed v0 over
/// `v0:{seconds}:{body}`.
fn slack(sim: &Sim, notifier: &Notifier, index: u64, message: &Value, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let channel = sim
        .meta(sim.stream_index("messages").unwrap_or(2), index)
        .and_then(|m| m.partition)
        .and_then(|p| sim.record(sim.stream_index("channels").unwrap_or(0), p))
        .map(|c| text(&c["id"]))
        .unwrap_or_default();
    let ts = text(&message["ts"]);
    let n = notifier.next_id();
    let event_id = format!("Ev{}", n);
    let body_value = json!({
        "token": "sim-verification-token",
        "team_id": SLACK_TEAM,
        "api_app_id": SLACK_APP,
        "event": {
            "type": "message",
            "channel": channel,
            "user": message["user"],
            "text": message["text"],
            "ts": ts,
            "event_ts": ts,
            "channel_type": "channel",
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": now.timestamp(),
        "authorizations": [{"team_id": SLACK_TEAM, "user_id": "U0SIMBOT", "is_bot": true}],
    });
    let body = to_vec(&body_value);
    let seconds = now.timestamp().to_string();
    let signature = hex::encode(hmac(secret, &[b"v0:", seconds.as_bytes(), b":", &body]));
    Outgoing {
        body,
        headers: vec![("X-Slack-Signature", format!("v0={signature}")), ("X-Slack-Request-Timestamp", seconds)],
        sent: WebhookSent {
            provider: Provider::Slack,
            stream: "messages",
            index,
            object_id: ts,
            channel: Some(channel),
            event_type: "message".into(),
            delivery_id: event_id,
            value: message["text"].clone(),
            body: body_value,
            sent_at: now,
            status: 0,
        },
    }
}

/// Jira: an admin webhook's `jira:issue_updated` with the issue, signed with
/// `X-Hub-Signature: sha256=…` over the body.
fn jira(notifier: &Notifier, index: u64, issue: &Value, secret: &str, now: DateTime<Utc>) -> Outgoing {
    let id = notifier.next_id().to_string();
    let status = issue["fields"]["status"]["name"].clone();
    let body_value = json!({
        "timestamp": now.timestamp_millis(),
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10ac8d82e05b22cc7d0000", "displayName": "Simulated User", "active": true},
        "issue": issue,
        "changelog": {
            "id": id,
            "items": [{"field": "status", "fieldtype": "jira", "toString": status}],
        },
    });
    let body = to_vec(&body_value);
    let signature = hex::encode(hmac(secret, &[&body]));
    Outgoing {
        body,
        headers: vec![
            ("X-Hub-Signature", format!("sha256={signature}")),
            ("X-Atlassian-Webhook-Identifier", id.clone()),
        ],
        sent: WebhookSent {
            provider: Provider::Jira,
            stream: "issues",
            index,
            object_id: text(&issue["id"]),
            channel: None,
            event_type: "jira:issue_updated".into(),
            delivery_id: id,
            value: status,
            body: body_value,
            sent_at: now,
            status: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2, through the same helper the events are signed with.
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac("Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_announced_streams_are_supported() {
        assert_eq!(supported(Provider::HubSpot, "Contacts"), Some("contacts"));
        assert_eq!(supported(Provider::Slack, "messages"), Some("messages"));
        assert_eq!(supported(Provider::Slack, "channels"), None);
        assert_eq!(supported(Provider::Jira, "issues"), Some("issues"));
        assert_eq!(supported(Provider::Aptem, "learners"), None);
    }

    #[test]
    fn a_target_debugs_without_its_secret() {
        let t = WebhookTarget::new("http://127.0.0.1:1/webhooks/acme/slack", "very-secret");
        let shown = format!("{t:?}");
        assert!(shown.contains("/webhooks/acme/slack") && !shown.contains("very-secret"), "{shown}");
    }
}
