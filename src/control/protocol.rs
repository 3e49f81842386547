//! The control protocol: one JSON object per line each way, versioned.
//!
//! Request: `{"v": 1, "scope": "operator" | {"tenant": "acme"}, "cmd": "trigger", "tenant": "acme", …}`;
//! webhook endpoints: `{"v": 1, "cmd": "webhooks", "action": "add", "tenant": "acme", "url": …, "events": […]}`;
//! write-back: `{"v": 1, "cmd": "writes", "action": "submit", "tenant": "acme", "provider": "hubspot",
//! "entity": "contact", "op": "create", "record": {…}}`.
//! Reply: `{"v": 1, "ok": true, "data": …}` or `{"v": 1, "ok": false, "error": "…"}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// Longest request line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// Who is asking: an operator (everything) or a tenant admin (one tenant's status, jobs,
/// runs, triggers, pause/resume and webhook endpoints; never credentials, mappings or
/// schedules).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", untagged)]
pub enum Scope {
    #[default]
    #[serde(with = "operator")]
    Operator,
    Tenant {
        tenant: String,
    },
}

mod operator {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("operator")
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "operator" { Ok(()) } else { Err(serde::de::Error::custom(format!("unknown scope `{s}`"))) }
    }
}

/// What to act on: a tenant, optionally one provider, optionally one stream or job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// `webhooks` `add`: an endpoint of `tenant`, or operator-wide without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAdd {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub url: String,
    /// Event types, or `*`.
    pub events: Vec<String>,
}

/// `webhooks` `list`: every endpoint in scope, or one tenant's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `webhooks` `remove` and `test`: one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookId {
    pub id: String,
}

/// `webhooks` `deliveries`: an endpoint's latest attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDeliveries {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// `webhooks` `replay`: an endpoint's failed messages, or one of its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookReplay {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What to do with outbound webhook endpoints (`"cmd": "webhooks", "action": …`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WebhookCommand {
    /// Register an endpoint; the reply carries its `whsec_` secret, the only time it is shown.
    Add(WebhookAdd),
    List(WebhookList),
    /// Remove an endpoint with its messages and delivery log.
    Remove(WebhookId),
    /// Queue a `webhook.test` event for the endpoint.
    Test(WebhookId),
    Deliveries(WebhookDeliveries),
    /// Make failed messages (or one message) due again and enable the endpoint.
    Replay(WebhookReplay),
}

impl WebhookCommand {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Add(_) => "webhooks add",
            Self::List(_) => "webhooks list",
            Self::Remove(_) => "webhooks remove",
            Self::Test(_) => "webhooks test",
            Self::Deliveries(_) => "webhooks deliveries",
            Self::Replay(_) => "webhooks replay",
        }
    }
}

/// `writes` `submit`: one write to a provider, the record in the tenant's target schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteSubmit {
    pub tenant: String,
    pub provider: String,
    pub entity: String,
    /// `create`, `update`, `delete` or `comment`.
    pub op: String,
    /// The provider's id of the object (every operation but `create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_version: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// The user whose connection writes (the company's without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A JSON object.
    pub record: Value,
}

/// `writes` `list`: the latest writes in scope, filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// `writes` `show` and `cancel`: one write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteId {
    pub id: String,
}

/// `writes` `retry`: a failed or conflicting write, optionally forced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRetry {
    pub id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// What to do with write-back (`"cmd": "writes", "action": …`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WriteCommand {
    /// Store a write in the outbox; the reply is the write (id and state) at once.
    /// (Boxed: it carries the record, and would make every command as large.)
    Submit(Box<WriteSubmit>),
    List(WriteList),
    /// One write with its attempts.
    Show(WriteId),
    /// Queue a failed or conflicting write again.
    Retry(WriteRetry),
    /// Cancel a pending write.
    Cancel(WriteId),
}

impl WriteCommand {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Submit(_) => "writes submit",
            Self::List(_) => "writes list",
            Self::Show(_) => "writes show",
            Self::Retry(_) => "writes retry",
            Self::Cancel(_) => "writes cancel",
        }
    }
}

/// `audit`: the audit log, newest first (a tenant admin: its own tenant's entries only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// RFC 3339, or a date (its midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// `usage`: a tenant's usage (of one provider) by `day` (the default) or `week`, from
/// `since` (a date or an RFC 3339 time) on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Workers, running runs with progress, due/overdue counts, last errors, config state.
    Status,
    /// Tenants with their preset and connections.
    Tenants,
    /// Jobs, filtered by tenant/provider/stream.
    Jobs(Target),
    /// Recent runs, optionally of one tenant.
    Runs(Target),
    /// Make jobs due now (tenant [provider [stream]]); returns the triggered jobs.
    Trigger(Target),
    /// Pause a tenant, a connection (tenant + provider) or a job.
    Pause(Target),
    Resume(Target),
    /// Company integration intelligence of a tenant (optionally one provider).
    Intelligence(Target),
    /// Reload configuration (as SIGHUP).
    Reload,
    /// Stop starting runs, finish in-flight ones at a page boundary, exit.
    Drain,
    /// Outbound webhook endpoints. A tenant admin manages its own tenant's only: the
    /// scope is checked against each endpoint where it is read
    /// ([`webhooks::Endpoints`](super::webhooks::Endpoints)).
    Webhooks(WebhookCommand),
    /// Write-back. A tenant admin submits and manages its own tenant's writes only: the
    /// scope is checked against each write where it is read
    /// ([`writes::Writes`](super::writes::Writes)).
    Writes(WriteCommand),
    /// The audit log. A tenant admin reads its own tenant's entries only.
    Audit(AuditQuery),
    /// Usage analytics of a tenant (a tenant admin reads its own tenant's).
    Usage(UsageQuery),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Tenants => "tenants",
            Self::Jobs(_) => "jobs",
            Self::Runs(_) => "runs",
            Self::Trigger(_) => "trigger",
            Self::Pause(_) => "pause",
            Self::Resume(_) => "resume",
            Self::Intelligence(_) => "intelligence",
            Self::Reload => "reload",
            Self::Drain => "drain",
            Self::Webhooks(w) => w.name(),
            Self::Writes(w) => w.name(),
            Self::Audit(_) => "audit",
            Self::Usage(_) => "usage",
        }
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(default)]
    pub scope: Scope,
    #[serde(flatten)]
    pub command: Command,
    /// Who sent it, set by the front end that received it (never by the client).
    #[serde(skip)]
    pub caller: Caller,
}

/// The identity behind a request, as the front end that received it established it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Caller {
    /// Not established (a request built inside the daemon, or a test).
    #[default]
    Unknown,
    /// A control-socket peer, from the socket's credentials.
    Peer { uid: u32, gid: u32 },
    /// An HTTP API request, by the name of its key.
    ApiKey { name: String },
}

/// One reply line. `Debug` leaves out a `secret` in the data (the answer to
/// `webhooks add`, the one place a signing secret is shown).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.data.as_ref().map(|d| match d {
            Value::Object(map) if map.contains_key("secret") => {
                let mut shown = map.clone();
                shown.insert("secret".into(), Value::String("<redacted>".into()));
                Value::Object(shown)
            }
            other => other.clone(),
        });
        f.debug_struct("Reply")
            .field("v", &self.v)
            .field("ok", &self.ok)
            .field("data", &data)
            .field("error", &self.error)
            .finish()
    }
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Self { v: VERSION, ok: true, data: Some(data), error: None }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self { v: VERSION, ok: false, data: None, error: Some(message.into()) }
    }
}

/// Parses one request line; the error says what is wrong with it.
pub fn parse(line: &str) -> Result<Request, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(fields) = &value else {
        return Err(format!("not a JSON object: the request is {}", kind_of(&value)));
    };
    // `v` and `cmd` are checked by their JSON type first: a number in a string (`"1"`), a
    // float (`1.0`) or a numeric `cmd` is refused, never coerced.
    match fields.get("v") {
        None => return Err("missing protocol version `v`".into()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => return Err(format!("protocol version {v} is not supported (this daemon speaks {VERSION})")),
            None => return Err(format!("`v` must be the whole number {VERSION}, not {n}")),
        },
        Some(other) => return Err(format!("`v` must be the number {VERSION}, not {}", kind_of(other))),
    }
    let cmd = match fields.get("cmd") {
        None => return Err("missing `cmd`".into()),
        Some(Value::String(cmd)) => cmd.clone(),
        Some(other) => return Err(format!("`cmd` must be a command name (a string), not {}", kind_of(other))),
    };
    if let Some(action) = fields.get("action")
        && !action.is_string()
    {
        return Err(format!("`action` must be an action name (a string), not {}", kind_of(action)));
    }
    serde_json::from_value(value).map_err(|e| format!("bad `{cmd}` request: {e}"))
}

/// A JSON value's type and, for scalars, the value itself, for error messages.
fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", Value::String(s.chars().take(40).collect())),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Whether a tenant-admin scope may run `command`, and on which tenant.
pub fn authorize(scope: &Scope, command: &Command) -> Result<(), String> {
    let Scope::Tenant { tenant } = scope else { return Ok(()) };
    let own = |t: &Target| match &t.tenant {
        Some(x) if x == tenant => Ok(()),
        Some(x) => Err(format!("a tenant admin of `{tenant}` cannot act on tenant `{x}`")),
        None => Err(format!("a tenant admin of `{tenant}` must name its tenant")),
    };
    match command {
        Command::Status => Ok(()),
        Command::Runs(t)
        | Command::Jobs(t)
        | Command::Trigger(t)
        | Command::Pause(t)
        | Command::Resume(t)
        | Command::Intelligence(t) => own(t),
        Command::Audit(q) => match &q.tenant {
            Some(x) if x != tenant => Err(format!("a tenant admin of `{tenant}` cannot act on tenant `{x}`")),
            // Confined to its own tenant where the log is read.
            _ => Ok(()),
        },
        Command::Usage(q) if &q.tenant == tenant => Ok(()),
        Command::Usage(q) => Err(format!("a tenant admin of `{tenant}` cannot act on tenant `{}`", q.tenant)),
        // Checked against the endpoints themselves, where they are read.
        Command::Webhooks(_) | Command::Writes(_) => Ok(()),
        other => Err(format!("`{}` needs the operator scope", other.name())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        let r = parse(r#"{"v":1,"cmd":"trigger","tenant":"acme","provider":"aptem"}"#).unwrap();
        assert_eq!(r.scope, Scope::Operator);
        assert_eq!(
            r.command,
            Command::Trigger(Target {
                tenant: Some("acme".into()),
                provider: Some("aptem".into()),
                ..Target::default()
            })
        );
        let r = parse(r#"{"v":1,"scope":{"tenant":"acme"},"cmd":"status"}"#).unwrap();
        assert_eq!(r.scope, Scope::Tenant { tenant: "acme".into() });
        assert!(parse(r#"{"v":1,"scope":"operator","cmd":"reload"}"#).is_ok());
        let r = parse(r#"{"v":1,"cmd":"webhooks","action":"add","tenant":"acme","url":"https://h.example/x","events":["run.failed"]}"#)
            .unwrap();
        assert_eq!(
            r.command,
            Command::Webhooks(WebhookCommand::Add(WebhookAdd {
                tenant: Some("acme".into()),
                url: "https://h.example/x".into(),
                events: vec!["run.failed".into()],
            }))
        );
        let r = parse(r#"{"v":1,"cmd":"webhooks","action":"deliveries","id":"ep_1","limit":5}"#).unwrap();
        assert_eq!(
            r.command,
            Command::Webhooks(WebhookCommand::Deliveries(WebhookDeliveries { id: "ep_1".into(), limit: Some(5) }))
        );
        assert_eq!(serde_json::from_str::<Value>(&serde_json::to_string(&r).unwrap()).unwrap()["action"], "deliveries");
        for (line, needle) in [
            ("not json", "not a JSON object"),
            (r#"{"cmd":"status"}"#, "missing protocol version"),
            (r#"{"v":2,"cmd":"status"}"#, "version 2 is not supported"),
            (r#"{"v":1}"#, "missing `cmd`"),
            (r#"{"v":1,"cmd":"explode"}"#, "unknown variant"),
            (r#"{"v":1,"cmd":"trigger","tenant":"acme","colour":"red"}"#, "unknown field"),
            (r#"{"v":1,"scope":"root","cmd":"status"}"#, "scope"),
            (r#"{"v":1,"cmd":"webhooks","action":"explode"}"#, "unknown variant"),
            (r#"{"v":1,"cmd":"webhooks","action":"remove"}"#, "missing field `id`"),
            (r#"{"v":1,"cmd":"webhooks","action":"test","id":"ep_1","secret":"x"}"#, "unknown field"),
        ] {
            let err = parse(line).unwrap_err();
            assert!(err.contains(needle) || (needle == "scope" && !err.is_empty()), "{line}: {err}");
        }
        let reply = serde_json::to_value(Reply::error("nope")).unwrap();
        assert_eq!(reply, json!({ "v": 1, "ok": false, "error": "nope" }));
        let added = Reply::ok(json!({ "endpoint": { "id": "ep_1" }, "secret": "whsec_c2VjcmV0" }));
        let shown = format!("{added:?}");
        assert!(!shown.contains("whsec_") && shown.contains("ep_1") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn mistyped_versions_and_commands_are_refused_not_coerced() {
        for (line, expected) in [
            (r#"{"v":"1","cmd":"status"}"#, "`v` must be the number 1, not the string \"1\""),
            (r#"{"v":1.0,"cmd":"status"}"#, "`v` must be the whole number 1, not 1.0"),
            (r#"{"v":-1,"cmd":"status"}"#, "`v` must be the whole number 1, not -1"),
            (r#"{"v":true,"cmd":"status"}"#, "`v` must be the number 1, not the boolean true"),
            (r#"{"v":null,"cmd":"status"}"#, "`v` must be the number 1, not null"),
            (r#"{"v":1,"cmd":5}"#, "`cmd` must be a command name (a string), not the number 5"),
            (r#"{"v":1,"cmd":["status"]}"#, "`cmd` must be a command name (a string), not an array"),
            (r#"{"v":1,"cmd":"webhooks","action":1}"#, "`action` must be an action name (a string), not the number 1"),
            (r#"[{"v":1,"cmd":"status"}]"#, "not a JSON object: the request is an array"),
            (r#""status""#, "not a JSON object: the request is the string \"status\""),
        ] {
            assert_eq!(parse(line).unwrap_err(), expected, "{line}");
        }
        // Other fields' types are checked by their command.
        let err = parse(r#"{"v":1,"cmd":"runs","tenant":"acme","limit":"5"}"#).unwrap_err();
        assert!(err.starts_with("bad `runs` request: invalid type: string \"5\", expected i64"), "{err}");
        let r = parse(r#"{"v":1,"cmd":"audit","since":"2026-12-01"}"#).unwrap();
        assert_eq!(r.command.name(), "audit");
    }

    #[test]
    fn tenant_admins_see_only_their_tenant_and_change_nothing() {
        let admin = Scope::Tenant { tenant: "acme".into() };
        let t = |tenant: &str| Target { tenant: Some(tenant.into()), ..Target::default() };
        assert!(authorize(&admin, &Command::Status).is_ok());
        assert!(authorize(&admin, &Command::Trigger(t("acme"))).is_ok());
        assert!(authorize(&admin, &Command::Runs(t("acme"))).is_ok());
        assert!(authorize(&admin, &Command::Trigger(t("globex"))).is_err());
        assert!(authorize(&admin, &Command::Intelligence(t("acme"))).is_ok());
        assert!(authorize(&admin, &Command::Intelligence(t("globex"))).is_err());
        let usage = |tenant: &str| Command::Usage(UsageQuery { tenant: tenant.into(), ..UsageQuery::default() });
        assert!(authorize(&admin, &usage("acme")).is_ok());
        assert!(authorize(&admin, &usage("globex")).unwrap_err().contains("cannot act on tenant `globex`"));
        assert!(authorize(&Scope::Operator, &usage("globex")).is_ok());
        assert!(authorize(&admin, &Command::Runs(Target::default())).is_err());
        // Its own tenant's jobs, paused and resumed; never another's.
        for c in [Command::Pause(t("acme")), Command::Resume(t("acme")), Command::Jobs(t("acme"))] {
            assert!(authorize(&admin, &c).is_ok(), "{c:?}");
        }
        for c in [Command::Pause(t("globex")), Command::Resume(t("globex")), Command::Jobs(t("globex"))] {
            assert!(authorize(&admin, &c).is_err(), "{c:?}");
        }
        for c in [Command::Reload, Command::Drain, Command::Tenants, Command::Jobs(Target::default())] {
            assert!(authorize(&admin, &c).is_err(), "{c:?}");
        }
        assert!(authorize(&Scope::Operator, &Command::Drain).is_ok());
        // The audit log: its own tenant's (confined where it is read), never another's.
        assert!(authorize(&admin, &Command::Audit(AuditQuery::default())).is_ok());
        let globex = AuditQuery { tenant: Some("globex".into()), ..AuditQuery::default() };
        assert!(authorize(&admin, &Command::Audit(globex)).is_err());
        // Webhook endpoints are checked against their tenant where they are read.
        let list = Command::Webhooks(WebhookCommand::List(WebhookList::default()));
        assert!(authorize(&admin, &list).is_ok());
        let writes = Command::Writes(WriteCommand::List(WriteList::default()));
        assert!(authorize(&admin, &writes).is_ok());
    }

    #[test]
    fn write_requests_parse() {
        let r = parse(
            r#"{"v":1,"cmd":"writes","action":"submit","tenant":"acme","provider":"hubspot","entity":"contact","op":"update","id":"101","record":{"email":"a@example.com"}}"#,
        )
        .unwrap();
        let Command::Writes(WriteCommand::Submit(submit)) = &r.command else { panic!("{r:?}") };
        assert_eq!((submit.op.as_str(), submit.id.as_deref(), submit.force), ("update", Some("101"), false));
        assert_eq!(submit.record, json!({"email": "a@example.com"}));
        assert_eq!(r.command.name(), "writes submit");
        let r = parse(r#"{"v":1,"cmd":"writes","action":"retry","id":"wr_1","force":true}"#).unwrap();
        assert_eq!(r.command, Command::Writes(WriteCommand::Retry(WriteRetry { id: "wr_1".into(), force: true })));
        for (line, needle) in [
            (r#"{"v":1,"cmd":"writes","action":"submit","tenant":"acme"}"#, "missing field"),
            (r#"{"v":1,"cmd":"writes","action":"show"}"#, "missing field `id`"),
            (r#"{"v":1,"cmd":"writes","action":"cancel","id":"wr_1","force":true}"#, "unknown field"),
        ] {
            let err = parse(line).unwrap_err();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
