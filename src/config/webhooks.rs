//! A manifest's `[webhooks]` section: how a provider signs the webhooks it sends to
//! `POST /webhooks/{tenant}/{provider}`, where a delivery's event type, delivery id and
//! timestamp are, and which streams an event type triggers.
//!
//! A location is `header:<Name>` (a request header) or an RFC 6901 JSON pointer into
//! one event (`/subscriptionType`); a body that is a JSON array is a batch of events
//! (HubSpot), each read with the same pointers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::model::{EntityName, StreamName};

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
    /// Events that report a record deleted (`[[webhooks.deletes]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletes: Vec<WebhookDelete>,
}

/// `[[webhooks.deletes]]`: an event that reports a record deleted at the provider. An
/// event of type `event` whose body has every `when` pointer equal to its value marks
/// the record of `entity` whose key is `key` deleted (soft: `deleted_at` and a
/// `deleted` change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDelete {
    /// The event type it applies to.
    pub event: String,
    /// JSON pointer into the event → the string it must equal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub when: BTreeMap<String, String>,
    /// The entity of the deleted record.
    pub entity: EntityName,
    /// The record's key: text with `{/json/pointer}` placeholders read from the event,
    /// as the stream's mapping forms its `external_id` (e.g. `{/event/channel}:{/event/ts}`).
    pub key: String,
}

/// One piece of a key template.
enum Piece<'a> {
    Text(&'a str),
    Pointer(&'a str),
}

/// Splits a key template into text and `{/pointer}` placeholders.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("`{template}` has a `}}` that closes nothing"));
        }
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("`{template}` has a `{{` that is not closed"))?;
        let pointer = &after[..close];
        if !pointer.starts_with('/') || pointer.contains('{') {
            return Err(format!("`{{{pointer}}}` in `{template}` is not a JSON pointer starting with `/`"));
        }
        out.push(Piece::Pointer(pointer));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    if !out.iter().any(|p| matches!(p, Piece::Pointer(_))) {
        return Err(format!("`{template}` reads nothing from the event: use `{{/json/pointer}}` placeholders"));
    }
    Ok(out)
}

/// The text at `pointer` in `event`: a string as is, a number or boolean as written;
/// `None` when missing, null, empty or an array/object.
fn text_at<'a>(event: &'a Value, pointer: &str) -> Option<std::borrow::Cow<'a, str>> {
    match event.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.as_str().into()),
        v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string().into()),
        _ => None,
    }
}

impl WebhookDelete {
    /// Whether `event` (of type `event_type`) reports a deletion.
    pub fn matches(&self, event_type: &str, event: &Value) -> bool {
        self.event == event_type && self.when.iter().all(|(p, want)| text_at(event, p).is_some_and(|t| t == *want))
    }

    /// The key of the deleted record in `event`; `None` when a placeholder's pointer is
    /// missing (or not a string, number or boolean) or the template is malformed.
    pub fn key_of(&self, event: &Value) -> Option<String> {
        let mut key = String::new();
        for piece in pieces(&self.key).ok()? {
            match piece {
                Piece::Text(t) => key.push_str(t),
                Piece::Pointer(p) => key.push_str(&text_at(event, p)?),
            }
        }
        Some(key)
    }

    fn problems(&self, at: &str, has_entity: &dyn Fn(&EntityName) -> bool, out: &mut Vec<(String, String)>) {
        if self.event.is_empty() {
            out.push((format!("{at}.event"), "name the event type it applies to".into()));
        }
        for pointer in self.when.keys() {
            if !pointer.starts_with('/') {
                out.push((format!("{at}.when"), format!("`{pointer}` is not a JSON pointer starting with `/`")));
            }
        }
        if !has_entity(&self.entity) {
            out.push((format!("{at}.entity"), format!("no stream of this manifest has entity `{}`", self.entity)));
        }
        if let Err(msg) = pieces(&self.key) {
            out.push((format!("{at}.key"), msg));
        }
    }
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

    /// The records `body` (a delivery whose event types are `event_types`, one a line)
    /// reports deleted: (entity, key), in order, without repeats. A body that is a JSON
    /// array is a batch of events; an event type read from a header applies to each.
    pub fn deletions(&self, event_types: &str, body: &[u8]) -> Vec<(EntityName, String)> {
        let mut out: Vec<(EntityName, String)> = Vec::new();
        if self.deletes.is_empty() {
            return out;
        }
        let Ok(value) = serde_json::from_slice::<Value>(body) else { return out };
        let events: Vec<&Value> = match &value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for event in events {
            let event_type = if self.event_type.starts_with('/') {
                text_at(event, &self.event_type).map(std::borrow::Cow::into_owned)
            } else {
                event_types.lines().next().map(str::to_owned)
            };
            let Some(event_type) = event_type else { continue };
            for d in self.deletes.iter().filter(|d| d.matches(&event_type, event)) {
                if let Some(key) = d.key_of(event) {
                    let found = (d.entity.clone(), key);
                    if !out.contains(&found) {
                        out.push(found);
                    }
                }
            }
        }
        out
    }

    /// Problems with the section, as (key path under `webhooks`, message).
    /// `has_entity`: whether a stream of the manifest has the entity.
    pub fn problems(
        &self,
        has_stream: &dyn Fn(&StreamName) -> bool,
        has_entity: &dyn Fn(&EntityName) -> bool,
    ) -> Vec<(String, String)> {
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
        for (i, d) in self.deletes.iter().enumerate() {
            d.problems(&format!("webhooks.deletes[{i}]"), has_entity, &mut out);
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
        let keys: Vec<String> = spec.problems(&has, &|_| true).into_iter().map(|(k, _)| k).collect();
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

    fn slack_delete() -> WebhookDelete {
        toml::from_str(
            "event = \"message\"\nwhen = { \"/event/subtype\" = \"message_deleted\" }\nentity = \"message\"\n\
             key = \"{/event/channel}:{/event/deleted_ts}\"\n",
        )
        .unwrap()
    }

    #[test]
    fn a_delete_matches_its_event_type_and_condition_and_forms_its_key() {
        let d = slack_delete();
        let deleted = serde_json::json!({"event": {"type": "message", "subtype": "message_deleted",
            "channel": "C024BE91L", "deleted_ts": "1358878749.000002", "ts": "1358878755.000001"}});
        assert!(d.matches("message", &deleted));
        assert_eq!(d.key_of(&deleted).as_deref(), Some("C024BE91L:1358878749.000002"));
        assert!(!d.matches("reaction_added", &deleted), "another event type");
        let edited = serde_json::json!({"event": {"type": "message", "subtype": "message_changed", "channel": "C1"}});
        assert!(!d.matches("message", &edited), "another subtype");
        let plain = serde_json::json!({"event": {"type": "message", "channel": "C1", "ts": "1.2"}});
        assert!(!d.matches("message", &plain), "no subtype at all");
        let missing = serde_json::json!({"event": {"subtype": "message_deleted", "channel": "C1"}});
        assert_eq!(d.key_of(&missing), None, "a key with a missing part is no key");
        let numbers: WebhookDelete =
            toml::from_str("event = \"deleted\"\nentity = \"contact\"\nkey = \"c-{/objectId}\"\n").unwrap();
        assert!(numbers.matches("deleted", &serde_json::json!({"objectId": 101})), "no condition: any such event");
        assert_eq!(numbers.key_of(&serde_json::json!({"objectId": 101})).as_deref(), Some("c-101"));
        assert_eq!(numbers.key_of(&serde_json::json!({"objectId": {"a": 1}})), None);
    }

    #[test]
    fn deletions_read_each_event_of_a_delivery() {
        let mut spec: WebhookSpec =
            toml::from_str("scheme = \"slack_v0\"\nevent_type = \"/event/type\"\n[events]\nmessage = [\"messages\"]\n")
                .unwrap();
        let body = br#"{"event":{"type":"message","subtype":"message_deleted","channel":"C1","deleted_ts":"5.6"}}"#;
        assert!(spec.deletions("message", body).is_empty(), "nothing declared, nothing deleted");
        spec.deletes.push(slack_delete());
        let message = EntityName::parse("message").unwrap();
        assert_eq!(spec.deletions("message", body), [(message.clone(), "C1:5.6".to_owned())]);
        assert!(spec.deletions("message", b"not json").is_empty());
        let changed = br#"{"event":{"type":"message","subtype":"message_changed","channel":"C1","deleted_ts":"5.6"}}"#;
        assert!(spec.deletions("message", changed).is_empty());
        // A batch (an array of events), with a repeat; the type read from a header applies to each.
        let mut batch = spec.clone();
        batch.event_type = "header:X-Event".into();
        batch.deletes[0].when.clear();
        let events = br#"[{"event":{"channel":"C1","deleted_ts":"1"}},{"event":{"channel":"C2","deleted_ts":"2"}},
            {"event":{"channel":"C1","deleted_ts":"1"}},{"event":{"channel":"C3"}}]"#;
        let keys: Vec<String> = batch.deletions("message", events).into_iter().map(|(_, k)| k).collect();
        assert_eq!(keys, ["C1:1", "C2:2"]);
        assert!(batch.deletions("other", events).is_empty());
    }

    #[test]
    fn a_bad_delete_is_reported_with_its_manifest_and_key() {
        let slack = include_str!("../../connectors/slack.toml");
        let mut diag = crate::config::Diagnostics::default();
        let m = crate::config::Manifest::parse(&crate::config::Source::builtin("slack.toml", slack), &mut diag);
        assert!(diag.is_empty(), "{diag}");
        assert_eq!(m.unwrap().webhooks.unwrap().deletes, [slack_delete()], "slack.toml declares the deletion");
        let bad = format!(
            "{slack}\n[[webhooks.deletes]]\nevent = \"\"\nwhen = {{ \"event/subtype\" = \"x\" }}\nentity = \"ticket\"\n\
             key = \"{{event/channel}}:{{/event/ts\"\n\
             [[webhooks.deletes]]\nevent = \"message\"\nentity = \"message\"\nkey = \"fixed\"\n"
        );
        let mut diag = crate::config::Diagnostics::default();
        crate::config::Manifest::parse(&crate::config::Source::builtin("slack.toml", &bad), &mut diag);
        let found: Vec<String> = diag.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "<built-in>/slack.toml: webhooks.deletes[1].event: name the event type it applies to",
                "<built-in>/slack.toml: webhooks.deletes[1].when: `event/subtype` is not a JSON pointer starting with `/`",
                "<built-in>/slack.toml: webhooks.deletes[1].entity: no stream of this manifest has entity `ticket`",
                "<built-in>/slack.toml: webhooks.deletes[1].key: `{event/channel}` in `{event/channel}:{/event/ts` is not a JSON pointer starting with `/`",
                "<built-in>/slack.toml: webhooks.deletes[2].key: `fixed` reads nothing from the event: use `{/json/pointer}` placeholders",
            ]
        );
    }
}
