//! What the audit log says about a control command: its action name, tenant, subject
//! and non-secret details, for the daemon (every front end's requests) and for the
//! `webhooks` and `writes` commands run on the store directly. Changes are audited
//! whatever their outcome; reads only when they are denied.
//!
//! Never secret values: a webhook's signing secret, a write's record and an endpoint
//! URL's query and credentials stay out.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use super::protocol::{Command, Scope, WebhookCommand, WriteCommand};
use crate::model::{AuditEntry, AuditOutcome, TenantId};

/// Whether `command` changes something (and is audited whatever its outcome).
pub fn is_change(command: &Command) -> bool {
    match command {
        Command::Trigger(_) | Command::Pause(_) | Command::Resume(_) | Command::Reload | Command::Drain => true,
        Command::Webhooks(w) => matches!(
            w,
            WebhookCommand::Add(_) | WebhookCommand::Remove(_) | WebhookCommand::Test(_) | WebhookCommand::Replay(_)
        ),
        Command::Writes(w) => matches!(w, WriteCommand::Submit(_) | WriteCommand::Retry(_) | WriteCommand::Cancel(_)),
        Command::Status
        | Command::Tenants
        | Command::Jobs(_)
        | Command::Runs(_)
        | Command::Intelligence(_)
        | Command::Audit(_)
        | Command::Usage(_) => false,
    }
}

/// The action name: `webhooks.add`, `writes.cancel`, or `control.<cmd>` for the rest.
pub fn action(command: &Command) -> String {
    match command {
        Command::Webhooks(_) | Command::Writes(_) => command.name().replace(' ', "."),
        other => format!("control.{}", other.name()),
    }
}

/// The entry for `command` by `actor` as `scope` (`None`: no scope was established;
/// `local`: a command on the store itself), ending with `outcome` (`Ok(answer)`, or the
/// outcome and its message). `owner`: the tenant of the object the command names, where
/// it was looked up (a webhook endpoint's).
pub fn entry(
    actor: &str,
    scope: Option<&str>,
    command: &Command,
    owner: Option<&str>,
    outcome: Result<&Value, (AuditOutcome, &str)>,
) -> AuditEntry {
    let answer = outcome.as_ref().ok().copied();
    let (subject, details, named) = describe(command, answer);
    // A tenant admin's entries are its tenant's (also what it was denied elsewhere: the
    // other tenant's log never shows it).
    let tenant = match scope.and_then(|s| s.strip_prefix("tenant:")) {
        Some(own) => Some(own.to_owned()),
        None => named.or(owner.map(str::to_owned)),
    };
    let (outcome, message) = match outcome {
        Ok(_) => (AuditOutcome::Ok, None),
        Err((outcome, message)) => (outcome, Some(message.chars().take(500).collect())),
    };
    AuditEntry {
        at: Utc::now(),
        actor: actor.to_owned(),
        scope: scope.map(str::to_owned),
        action: action(command),
        tenant_id: tenant.and_then(|t| TenantId::parse(&t).ok()),
        subject,
        outcome,
        message,
        details,
    }
}

/// A scope as the audit log writes it: `operator` or `tenant:acme`.
pub fn scope_label(scope: &Scope) -> String {
    match scope {
        Scope::Operator => "operator".into(),
        Scope::Tenant { tenant } => format!("tenant:{tenant}"),
    }
}

/// `(subject, details, tenant named by the command or its answer)`.
fn describe(command: &Command, answer: Option<&Value>) -> (Option<String>, Value, Option<String>) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match command {
        Command::Trigger(t)
        | Command::Pause(t)
        | Command::Resume(t)
        | Command::Jobs(t)
        | Command::Runs(t)
        | Command::Intelligence(t) => {
            let mut parts: Vec<String> = [&t.provider, &t.stream].into_iter().flatten().cloned().collect();
            if let Some(job) = t.job {
                parts.push(format!("job {job}"));
            }
            let details = match answer.and_then(|a| a.get("triggered")).and_then(Value::as_array) {
                Some(jobs) => json!({ "jobs": jobs.len() }),
                None => json!({}),
            };
            ((!parts.is_empty()).then(|| parts.join("/")), details, t.tenant.clone())
        }
        Command::Audit(q) => (None, json!({}), q.tenant.clone()),
        Command::Usage(q) => (None, json!({}), Some(q.tenant.clone())),
        Command::Status | Command::Tenants | Command::Reload | Command::Drain => (None, json!({}), None),
        Command::Webhooks(w) => match w {
            WebhookCommand::Add(add) => {
                let endpoint = answer.and_then(|a| a.get("endpoint"));
                let details = json!({ "url": url_without_secrets(&add.url), "events": add.events });
                let tenant = add.tenant.clone().or_else(|| text(endpoint.and_then(|e| e.get("tenant_id"))));
                (text(endpoint.and_then(|e| e.get("id"))), details, tenant)
            }
            WebhookCommand::List(l) => (None, json!({}), l.tenant.clone()),
            WebhookCommand::Remove(r) | WebhookCommand::Test(r) => (Some(r.id.clone()), json!({}), None),
            WebhookCommand::Deliveries(d) => (Some(d.id.clone()), json!({}), None),
            WebhookCommand::Replay(r) => {
                let requeued = answer.and_then(|a| a.get("requeued")).cloned();
                (Some(r.id.clone()), json!({ "message": r.message, "requeued": requeued }), None)
            }
        },
        Command::Writes(w) => match w {
            WriteCommand::Submit(s) => {
                let write = answer.and_then(|a| a.get("write"));
                let details = json!({
                    "provider": s.provider, "entity": s.entity, "op": s.op, "id": s.id, "force": s.force,
                    "owner": s.owner, "created": answer.and_then(|a| a.get("created")),
                });
                (text(write.and_then(|w| w.get("id"))), details, Some(s.tenant.clone()))
            }
            WriteCommand::List(l) => (None, json!({}), l.tenant.clone()),
            WriteCommand::Show(s) | WriteCommand::Cancel(s) => {
                (Some(s.id.clone()), json!({}), text(answer.and_then(|a| a.get("tenant_id"))))
            }
            WriteCommand::Retry(r) => {
                (Some(r.id.clone()), json!({ "force": r.force }), text(answer.and_then(|a| a.get("tenant_id"))))
            }
        },
    }
}

/// `since`: an RFC 3339 time, or a date meaning its midnight in UTC.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("since `{text}` is neither an RFC 3339 time (2026-12-01T08:00:00Z) nor a date (2026-12-01)")
        })
}

/// `url` without its query, fragment and user information (where tokens may hide).
fn url_without_secrets(url: &str) -> String {
    let cut = url.find(['?', '#']).map_or(url, |i| &url[..i]);
    match cut.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            if path.is_empty() { format!("{scheme}://{host}") } else { format!("{scheme}://{host}/{path}") }
        }
        None => cut.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{Target, WebhookAdd, WebhookId, WriteId};

    #[test]
    fn entries_name_the_action_tenant_and_subject_never_secrets() {
        let trigger = Command::Trigger(Target {
            tenant: Some("acme".into()),
            provider: Some("hubspot".into()),
            ..Target::default()
        });
        let e = entry("peer:0(root)", Some("operator"), &trigger, None, Ok(&json!({ "triggered": [{}, {}] })));
        assert_eq!(
            (e.action.as_str(), e.tenant_id.as_ref().map(TenantId::as_str), e.subject.as_deref()),
            ("control.trigger", Some("acme"), Some("hubspot"))
        );
        assert_eq!((e.outcome, e.message, e.details), (AuditOutcome::Ok, None, json!({ "jobs": 2 })));

        // A tenant admin's denied request is its own tenant's entry.
        let e = entry(
            "peer:1001(alice)",
            Some("tenant:acme"),
            &Command::Trigger(Target { tenant: Some("globex".into()), ..Target::default() }),
            None,
            Err((AuditOutcome::Denied, "no")),
        );
        assert_eq!(
            (e.tenant_id.unwrap().as_str(), e.outcome, e.message.as_deref()),
            ("acme", AuditOutcome::Denied, Some("no"))
        );

        let add = Command::Webhooks(WebhookCommand::Add(WebhookAdd {
            tenant: Some("acme".into()),
            url: "https://user:pw@hooks.example/in/x?token=s3cret#frag".into(),
            events: vec!["*".into()],
        }));
        let answer = json!({ "endpoint": { "id": "ep_1", "tenant_id": "acme" }, "secret": "whsec_abc" });
        let e = entry("cli:ops", Some("local"), &add, None, Ok(&answer));
        let shown = serde_json::to_string(&e).unwrap();
        assert!(!shown.contains("whsec_") && !shown.contains("s3cret") && !shown.contains("pw@"), "{shown}");
        assert_eq!(e.details["url"], "https://hooks.example/in/x");
        assert_eq!((e.action.as_str(), e.subject.as_deref()), ("webhooks.add", Some("ep_1")));

        let remove = Command::Webhooks(WebhookCommand::Remove(WebhookId { id: "ep_1".into() }));
        let e = entry("peer:0", Some("operator"), &remove, Some("acme"), Ok(&json!({})));
        assert_eq!(e.tenant_id.unwrap().as_str(), "acme");
        assert!(is_change(&remove) && !is_change(&Command::Status));
        let cancel = Command::Writes(WriteCommand::Cancel(WriteId { id: "wr_1".into() }));
        let e = entry("peer:0", Some("operator"), &cancel, None, Err((AuditOutcome::Error, "no write `wr_1`")));
        assert_eq!((e.action.as_str(), e.outcome, e.tenant_id), ("writes.cancel", AuditOutcome::Error, None));
        assert_eq!(url_without_secrets("http://127.0.0.1:9/x"), "http://127.0.0.1:9/x");
    }
}
