//! A manifest's `[webhooks]` section: how a provider signs the webhooks it sends to
//! `POST /webhooks/{tenant}/{provider}`, where a delivery's event type, delivery id and
//! timestamp are, and which streams an event type triggers.
//!
//! A location is `header:<Name>` (a request header) or an RFC 6901 JSON pointer into
//! one event (`/subscriptionType`); a body that is a JSON array is a batch of events
//! (HubSpot), each read with the same pointers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::StreamName;

/// How deliveries are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookScheme {
    /// HubSpot v3: `X-HubSpot-Signature-v3` = base64 HMAC-SHA256 of method + URI + body +
    /// timestamp (`X-HubSpot-Request-Timestamp`, ms), keyed by the app's client secret.
    HubspotV3,
    /// Slack: `X-Slack-Signature` = `v0=` hex HMAC-SHA256 of `v0:{ts}:{body}`
    /// (`X-Slack-Request-Timestamp`, s), keyed by the signing secret.
    SlackV0,
    /// Jira Cloud admin webhooks with a secret: `X-Hub-Signature: sha256=<hex>` of the body.
    Jira,
    /// Hex (or `prefix` + hex) HMAC-SHA256 of the body in a configurable header.
    HmacSha256,
    /// Standard Webhooks: `webhook-signature: v1,<base64>` over `{id}.{ts}.{body}`.
    StandardWebhooks,
}

impl WebhookScheme {
    /// Every scheme, in declaration order.
    pub const ALL: [Self; 5] = [Self::HubspotV3, Self::SlackV0, Self::Jira, Self::HmacSha256, Self::StandardWebhooks];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HubspotV3 => "hubspot_v3",
            Self::SlackV0 => "slack_v0",
            Self::Jira => "jira",
            Self::HmacSha256 => "hmac_sha256",
            Self::StandardWebhooks => "standard_webhooks",
        }
    }

    /// The credential field that holds the signing secret by default.
    pub fn default_secret_field(self) -> &'static str {
        match self {
            Self::HubspotV3 => "client_secret",
            Self::SlackV0 => "signing_secret",
            _ => "webhook_secret",
        }
    }

    /// Whether the scheme signs a timestamp (checked against the window).
    pub fn has_timestamp(self) -> bool {
        matches!(self, Self::HubspotV3 | Self::SlackV0 | Self::StandardWebhooks)
    }
}

/// The `[webhooks]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub scheme: WebhookScheme,
    /// The credential field holding the secret (default: the scheme's,
    /// see [`WebhookScheme::default_secret_field`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `hmac_sha256`: the header holding the signature (default `X-Signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<String>,
    /// `hmac_sha256`: text before the hex digest (e.g. `sha256=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_prefix: Option<String>,
    /// `hmac_sha256`: a header with the delivery time in seconds, checked against the
    /// window (it is not part of the signed bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
    /// Where an event's type is (`header:…` or a pointer into the event).
    pub event_type: String,
    /// Where the delivery id is, remembered to refuse replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// How far a signed timestamp may be from now, in seconds (default 300).
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// Event type → streams it triggers; `"*"` matches any type not listed.
    pub events: BTreeMap<String, Vec<StreamName>>,
}

fn default_window() -> u64 {
    300
}

impl WebhookSpec {
    /// The credential field holding the signing secret.
    pub fn secret_field(&self) -> &str {
        self.secret.as_deref().unwrap_or(self.scheme.default_secret_field())
    }

    /// The streams an event of type `event_type` triggers.
    pub fn streams_for(&self, event_type: &str) -> &[StreamName] {
        self.events.get(event_type).or_else(|| self.events.get("*")).map_or(&[], Vec::as_slice)
    }

    /// Problems with the section, as (key path under `webhooks`, message).
    pub fn problems(&self, has_stream: &dyn Fn(&StreamName) -> bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut location = |key: &str, value: &str| {
            if !(value.is_empty()
                || value.starts_with('/')
                || value.strip_prefix("header:").is_some_and(|h| !h.is_empty()))
            {
                out.push((
                    format!("webhooks.{key}"),
                    format!("`{value}` is neither `header:<Name>` nor a JSON pointer starting with `/`"),
                ));
            }
        };
        location("event_type", &self.event_type);
        if let Some(d) = &self.delivery_id {
            location("delivery_id", d);
        }
        if self.window_secs == 0 || self.window_secs > 86_400 {
            out.push(("webhooks.window_secs".into(), "must be between 1 and 86400".into()));
        }
        let hmac_only = [
            ("signature_header", self.signature_header.is_some()),
            ("signature_prefix", self.signature_prefix.is_some()),
            ("timestamp_header", self.timestamp_header.is_some()),
        ];
        if self.scheme != WebhookScheme::HmacSha256 {
            for (key, set) in hmac_only {
                if set {
                    out.push((format!("webhooks.{key}"), format!("only the `hmac_sha256` scheme takes `{key}`")));
                }
            }
        }
        if self.events.is_empty() {
            out.push(("webhooks.events".into(), "map at least one event type to the streams it triggers".into()));
        }
        for (event, streams) in &self.events {
            for s in streams {
                if !has_stream(s) {
                    out.push((format!("webhooks.events.{event}"), format!("unknown stream `{s}`")));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_keys() {
        let spec: WebhookSpec = toml::from_str(
            "scheme = \"jira\"\nevent_type = \"webhookEvent\"\ndelivery_id = \"header:\"\nwindow_secs = 0\n\
             signature_header = \"X-Sig\"\n[events]\n\"jira:issue_updated\" = [\"issues\", \"tickets\"]\n",
        )
        .unwrap();
        let has = |s: &StreamName| s.as_str() == "issues";
        let keys: Vec<String> = spec.problems(&has).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "webhooks.event_type",
                "webhooks.delivery_id",
                "webhooks.window_secs",
                "webhooks.signature_header",
                "webhooks.events.jira:issue_updated",
            ]
        );
        assert_eq!(spec.secret_field(), "webhook_secret");
        assert_eq!(spec.streams_for("jira:issue_updated").len(), 2);
        assert!(spec.streams_for("other").is_empty());
        assert!(toml::from_str::<WebhookSpec>("scheme = \"md5\"\nevent_type = \"/t\"\n[events]\n").is_err());
    }
}
