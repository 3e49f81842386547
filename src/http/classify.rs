//! Response classification: the manifest's rules first, then HTTP defaults.

use serde_json::Value;

use crate::config::{ResponseAction, ResponseRule};

/// The meaning of one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub action: ResponseAction,
    /// The provider's error message, when it gave one.
    pub message: Option<String>,
}

/// Pointers where providers put error messages, tried in order when a rule names none.
const MESSAGE_POINTERS: &[&str] = &[
    "/message",
    "/error/message",
    "/error_description",
    "/errorMessages/0",
    "/0/message",
    "/errors/0/message",
    "/detail",
    "/title",
    "/Message",
    "/error",
];

/// Classifies a response. `json` is the parsed body when it parsed.
pub fn classify(rules: &[ResponseRule], status: u16, body: &[u8], json: Option<&Value>) -> Verdict {
    for rule in rules {
        if matches(rule, status, body, json) {
            let message = rule
                .message
                .as_deref()
                .and_then(|p| json.and_then(|j| text_at(j, p)))
                .or_else(|| default_message(json, body));
            return Verdict { action: rule.action, message };
        }
    }
    let action = match status {
        // 304 answers only a conditional request (one the manifest sent a validator with).
        204 | 304 => ResponseAction::Empty,
        200..=299 => ResponseAction::Success,
        401 => ResponseAction::AuthExpired,
        429 => ResponseAction::RateLimited,
        408 | 425 | 500..=599 => ResponseAction::Retry,
        _ => ResponseAction::Fail,
    };
    let message = (action != ResponseAction::Success).then(|| default_message(json, body)).flatten();
    Verdict { action, message }
}

pub(super) fn matches(rule: &ResponseRule, status: u16, body: &[u8], json: Option<&Value>) -> bool {
    if !rule.status.is_empty() && !rule.status.iter().any(|s| s.matches(status)) {
        return false;
    }
    if let Some(text) = &rule.body_contains {
        let hay = String::from_utf8_lossy(body);
        if !hay.contains(text.as_str()) {
            return false;
        }
    }
    rule.body.iter().all(|(pointer, expected)| {
        let Some(actual) = json.and_then(|j| j.pointer(pointer)) else {
            return false;
        };
        match expected {
            Value::Array(any) => any.iter().any(|e| e == actual),
            e => e == actual,
        }
    })
}

fn text_at(json: &Value, pointer: &str) -> Option<String> {
    match json.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Null | Value::String(_) | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

fn default_message(json: Option<&Value>, body: &[u8]) -> Option<String> {
    if let Some(j) = json {
        return MESSAGE_POINTERS.iter().find_map(|p| text_at(j, p)).or_else(|| field_errors(j));
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(200).collect())
}

/// Errors keyed by field (Jira's `{"errorMessages": [], "errors": {"summary": "…"}}`),
/// as `field: message` pairs, at most five.
fn field_errors(json: &Value) -> Option<String> {
    let Value::Object(errors) = json.get("errors")? else { return None };
    let pairs: Vec<String> =
        errors.iter().filter_map(|(field, v)| v.as_str().map(|m| format!("{field}: {m}"))).take(5).collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn field_errors_are_named_by_field() {
        let jira = json!({"errorMessages": [], "errors": {"summary": "You must specify a summary of the issue."}});
        assert_eq!(
            super::default_message(Some(&jira), b"").as_deref(),
            Some("summary: You must specify a summary of the issue.")
        );
        let first = json!({"errorMessages": ["Issue does not exist"], "errors": {}});
        assert_eq!(super::default_message(Some(&first), b"").as_deref(), Some("Issue does not exist"));
        assert_eq!(super::default_message(Some(&json!({"errors": {}})), b""), None);
    }

    use super::*;
    use crate::config::StatusMatch;

    fn rule(status: &[u16], body: Value, action: ResponseAction, message: Option<&str>) -> ResponseRule {
        ResponseRule {
            status: status.iter().map(|s| StatusMatch::Code(*s)).collect(),
            body: serde_json::from_value(body).unwrap(),
            body_contains: None,
            action,
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn slack_style_200_errors_are_classified_by_their_error_field() {
        let rules = vec![
            rule(
                &[200, 429],
                json!({ "/ok": false, "/error": ["ratelimited"] }),
                ResponseAction::RateLimited,
                Some("/error"),
            ),
            rule(
                &[200],
                json!({ "/ok": false, "/error": ["token_expired", "invalid_auth"] }),
                ResponseAction::AuthExpired,
                Some("/error"),
            ),
            rule(&[200], json!({ "/ok": false }), ResponseAction::Fail, Some("/error")),
        ];
        let c = |status, body: Value| classify(&rules, status, body.to_string().as_bytes(), Some(&body));
        assert_eq!(c(200, json!({ "ok": true })).action, ResponseAction::Success);
        assert_eq!(c(429, json!({ "ok": false, "error": "ratelimited" })).action, ResponseAction::RateLimited);
        let expired = c(200, json!({ "ok": false, "error": "token_expired" }));
        assert_eq!(expired, Verdict { action: ResponseAction::AuthExpired, message: Some("token_expired".into()) });
        let other = c(200, json!({ "ok": false, "error": "channel_not_found" }));
        assert_eq!(other, Verdict { action: ResponseAction::Fail, message: Some("channel_not_found".into()) });
    }

    #[test]
    fn defaults_and_salesforce_403() {
        let rules =
            vec![rule(&[403], json!({ "/0/errorCode": "REQUEST_LIMIT_EXCEEDED" }), ResponseAction::RateLimited, None)];
        let body = json!([{ "message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED" }]);
        assert_eq!(classify(&rules, 403, b"", Some(&body)).action, ResponseAction::RateLimited);
        let other = json!([{ "message": "no access", "errorCode": "INSUFFICIENT_ACCESS" }]);
        assert_eq!(
            classify(&rules, 403, b"", Some(&other)),
            Verdict { action: ResponseAction::Fail, message: Some("no access".into()) }
        );
        assert_eq!(classify(&[], 204, b"", None).action, ResponseAction::Empty);
        assert_eq!(classify(&[], 304, b"", None).action, ResponseAction::Empty);
        assert_eq!(
            classify(&[], 503, b"busy", None),
            Verdict { action: ResponseAction::Retry, message: Some("busy".into()) }
        );
        assert_eq!(classify(&[], 401, b"", None).action, ResponseAction::AuthExpired);
        assert_eq!(classify(&[], 404, b"", None).action, ResponseAction::Fail);
        let mut contains = rule(&[400], json!({}), ResponseAction::Retry, None);
        contains.body_contains = Some("Try again".into());
        assert_eq!(
            classify(&[contains], 400, b"{\"error\":{\"message\":\"Try again later\"}}", None).action,
            ResponseAction::Retry
        );
    }
}
