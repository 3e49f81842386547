//! Write declarations of a connector manifest (`[writes.<entity>]`): per target entity
//! and operation the request that changes the provider's object, where the result's id
//! and version are in the response, how conflicts are detected and how an ambiguous
//! create is looked up. Declarations only: the reverse mapping and the request are
//! built by `mapping::build_request`, and the executor sends them.
//!
//! Templates (`path`, `headers`, strings inside `body` and `lookup`) use placeholders:
//! - `{id}`: the object's external id (not in `create`);
//! - `{fields}`: as a whole string inside `body`, the provider fields the reverse
//!   mapping produced (an object); without a `body` that object is the body;
//! - `{<field>}`: a field of the submitted record (target schema); as a whole string in
//!   a JSON body it keeps its JSON type, inside text it is its string form;
//! - manifest and tenant variables (`{subdomain}`, declared `[variables]`) are left for
//!   the executor, as in read requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diag::join;
use super::manifest_spec::{BodyFormat, Method, check_pointer};

/// A write operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOp {
    Create,
    Update,
    Delete,
    Comment,
}

impl WriteOp {
    pub const ALL: [WriteOp; 4] = [Self::Create, Self::Update, Self::Delete, Self::Comment];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Comment => "comment",
        }
    }

    /// Parses `create`, `update`, `delete` or `comment`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Whether the operation addresses an existing object (its path may use `{id}`).
    pub fn needs_id(self) -> bool {
        self != Self::Create
    }
}

impl std::fmt::Display for WriteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an update detects that the provider's object changed after the writer's base
/// version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictCheck {
    /// The API checks a precondition header (`If-Match` with an ETag, or
    /// `If-Unmodified-Since`, see `conflict_header`) and answers 412 on a mismatch.
    IfMatch,
    /// The executor reads the object first and compares `version_field`.
    Read,
    /// No check: the last writer wins.
    #[default]
    None,
}

/// Write operations for one target entity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<WriteRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<WriteRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<WriteRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<WriteRequest>,
    /// Dotted path of the object's version in the provider record (`updatedAt`,
    /// `LastModifiedDate`, `fields.updated`); what conflicts are compared on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_field: Option<String>,
    /// How an update checks the base version (default `none`).
    #[serde(default)]
    pub conflict: ConflictCheck,
    /// The precondition header for `conflict = "if_match"` (default `If-Match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_header: Option<String>,
    /// How to find an object a create may have made when its answer was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupSpec>,
    /// What the paths are below: `base_url` (default) or `origin`, the scheme, host and
    /// port of the base URL alone (an API whose writes live beside its read feed).
    #[serde(default, skip_serializing_if = "PathRoot::is_default")]
    pub path_root: PathRoot,
}

/// What write paths are below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRoot {
    /// The connection's base URL.
    #[default]
    BaseUrl,
    /// The base URL's scheme, host and port.
    Origin,
}

impl PathRoot {
    fn is_default(&self) -> bool {
        *self == Self::BaseUrl
    }

    /// The URL write paths are appended to, from the rendered base URL.
    pub fn root(self, base_url: &str) -> String {
        match self {
            Self::BaseUrl => base_url.trim_end_matches('/').to_owned(),
            Self::Origin => {
                let after_scheme = base_url.find("://").map_or(0, |i| i + 3);
                match base_url[after_scheme..].find('/') {
                    Some(i) => base_url[..after_scheme + i].to_owned(),
                    None => base_url.trim_end_matches('/').to_owned(),
                }
            }
        }
    }
}

impl WriteSpec {
    /// The request of `op`, when declared.
    pub fn op(&self, op: WriteOp) -> Option<&WriteRequest> {
        match op {
            WriteOp::Create => self.create.as_ref(),
            WriteOp::Update => self.update.as_ref(),
            WriteOp::Delete => self.delete.as_ref(),
            WriteOp::Comment => self.comment.as_ref(),
        }
    }

    /// The declared operations, in order.
    pub fn ops(&self) -> impl Iterator<Item = (WriteOp, &WriteRequest)> {
        WriteOp::ALL.into_iter().filter_map(|op| self.op(op).map(|r| (op, r)))
    }

    /// The precondition header with its default.
    pub fn precondition_header(&self) -> Option<&str> {
        (self.conflict == ConflictCheck::IfMatch).then(|| self.conflict_header.as_deref().unwrap_or("If-Match"))
    }

    /// Problems of the declaration as (key path below the entity, message); `known`
    /// says whether a placeholder names a record field or a manifest variable.
    pub fn problems(&self, known: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.ops().next().is_none() {
            out.push((String::new(), "declare at least one of `create`, `update`, `delete`, `comment`".into()));
        }
        for (op, r) in self.ops() {
            r.problems(op, known, op.as_str(), &mut out);
        }
        match (&self.version_field, self.conflict) {
            (None, ConflictCheck::Read | ConflictCheck::IfMatch) => out.push((
                "version_field".into(),
                "a conflict check needs the `version_field` of the provider's record".into(),
            )),
            (Some(v), _) if v.trim().is_empty() => out.push(("version_field".into(), "must not be empty".into())),
            _ => {}
        }
        if self.conflict_header.is_some() && self.conflict != ConflictCheck::IfMatch {
            out.push(("conflict_header".into(), "only used with `conflict = \"if_match\"`".into()));
        }
        if let Some(l) = &self.lookup {
            if self.create.is_none() {
                out.push(("lookup".into(), "a lookup serves ambiguous creates, but no `create` is declared".into()));
            }
            l.problems(known, &mut out);
        }
        out
    }
}

/// One write request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    pub method: Method,
    /// Path below the base URL; a template.
    pub path: String,
    /// JSON body template; absent: the provider fields themselves (none for `delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Constant provider fields under the mapped ones (the mapped value wins), e.g. an
    /// issue type every created issue needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Value>,
    /// How the body is encoded (default JSON; `form` sends the top level as fields).
    #[serde(default)]
    pub format: BodyFormat,
    /// Extra headers; templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Where the object's id is in the response: a JSON pointer (`/id`), or a template
    /// of pointers (`{/channel}:{/ts}`). Absent: the id is the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// JSON pointer of the object's new version in the response (absent: the executor
    /// reads it back when a conflict check needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Header the API deduplicates retries by; the executor sends the write's
    /// idempotency key in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_header: Option<String>,
    /// JSON pointer of a flag that is `false` on an application-level failure sent
    /// with HTTP 200 (Slack's `/ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<String>,
    /// JSON pointer of the provider's error message in a failed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl WriteRequest {
    /// Every template of the request with its key path.
    pub fn templates(&self) -> Vec<(String, &str)> {
        let mut out = vec![("path".to_owned(), self.path.as_str())];
        out.extend(self.headers.iter().map(|(k, v)| (join("headers", k), v.as_str())));
        if let Some(b) = &self.body {
            out.extend(json_strings(b).into_iter().map(|s| ("body".to_owned(), s)));
        }
        out
    }

    fn problems(&self, op: WriteOp, known: &dyn Fn(&str) -> bool, at: &str, out: &mut Vec<(String, String)>) {
        if !self.path.starts_with('/') {
            out.push((join(at, "path"), format!("`{}` must start with `/`", self.path)));
        }
        if op.needs_id() && !placeholders(&self.path).iter().any(|p| p == "id") {
            out.push((join(at, "path"), format!("a `{op}` path needs `{{id}}`")));
        }
        for (key, t) in self.templates() {
            for p in placeholders(t) {
                let fine = match p.as_str() {
                    "id" => op.needs_id(),
                    "fields" => key == "body",
                    other => known(other),
                };
                if !fine {
                    out.push((join(at, &key), format!("unknown placeholder `{{{p}}}` in `{t}`")));
                }
            }
            if let Some(msg) = unclosed(t) {
                out.push((join(at, &key), msg));
            }
        }
        if op == WriteOp::Comment && self.body.is_none() {
            out.push((join(at, "body"), "a `comment` needs a `body` template (e.g. with `{text}`)".into()));
        }
        if self.format == BodyFormat::Form && self.body.as_ref().is_some_and(|b| !b.is_object()) {
            out.push((join(at, "body"), "a form body must be a table".into()));
        }
        if self.defaults.as_ref().is_some_and(|d| !d.is_object()) {
            out.push((join(at, "defaults"), "must be a table".into()));
        }
        if let Some(id) = &self.id
            && let Err(e) = check_id(id)
        {
            out.push((join(at, "id"), e));
        }
        for (key, p) in [("version", &self.version), ("ok", &self.ok), ("error", &self.error)] {
            if let Some(p) = p
                && let Err(e) = check_pointer(p)
            {
                out.push((join(at, key), e));
            }
        }
        if self.idempotency_header.as_deref().is_some_and(|h| h.trim().is_empty()) {
            out.push((join(at, "idempotency_header"), "must not be empty".into()));
        }
    }
}

/// How much older than its write an object found by a lookup may be and still be the
/// write's own (clock differences between tributary and the provider).
pub const LOOKUP_CREATED_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);

/// A request that finds the object an ambiguous create may have made, by a field the
/// record carries (an external-id property, an email…).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// The record field the search is by; a create without it cannot be looked up.
    pub by: String,
    #[serde(default)]
    pub method: Method,
    /// A template over record fields.
    pub path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// JSON body template over record fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// JSON pointer of the found object's id; missing = not found.
    pub id: String,
    /// JSON pointer of its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// JSON pointer of the number of matches; more than one is reported, never guessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    /// JSON pointer of the found object's creation time: an object created well before
    /// the write was submitted (more than [`LOOKUP_CREATED_MARGIN`]) is someone else's,
    /// not one an earlier attempt made, and the create is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// How record values are quoted where they are filled into the lookup's query and
    /// body: `soql` escapes `\` and `'` (Salesforce string literals), so a value cannot
    /// change the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escape: Option<LookupEscape>,
}

/// A quoting of values filled into a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupEscape {
    /// A SOQL string literal: `\` → `\\`, `'` → `\'`.
    Soql,
}

impl LookupEscape {
    pub fn apply(self, value: &str) -> String {
        match self {
            Self::Soql => value.replace('\\', "\\\\").replace('\'', "\\'"),
        }
    }
}

impl LookupSpec {
    /// Every template of the lookup with its key path.
    pub fn templates(&self) -> Vec<(String, &str)> {
        let mut out = vec![("lookup.path".to_owned(), self.path.as_str())];
        out.extend(self.query.iter().map(|(k, v)| (join("lookup.query", k), v.as_str())));
        if let Some(b) = &self.body {
            out.extend(json_strings(b).into_iter().map(|s| ("lookup.body".to_owned(), s)));
        }
        out
    }

    fn problems(&self, known: &dyn Fn(&str) -> bool, out: &mut Vec<(String, String)>) {
        if !known(&self.by) {
            out.push(("lookup.by".into(), format!("`{}` is not a field of the entity", self.by)));
        }
        if !self.path.starts_with('/') {
            out.push(("lookup.path".into(), format!("`{}` must start with `/`", self.path)));
        }
        for (key, t) in self.templates() {
            for p in placeholders(t) {
                if !known(&p) {
                    out.push((key.clone(), format!("unknown placeholder `{{{p}}}` in `{t}`")));
                }
            }
            if let Some(msg) = unclosed(t) {
                out.push((key, msg));
            }
        }
        for (key, p) in [("lookup.id", Some(&self.id)), ("lookup.version", self.version.as_ref())] {
            if let Some(p) = p
                && let Err(e) = check_pointer(p)
            {
                out.push((key.into(), e));
            }
        }
        for (key, p) in [("lookup.total", self.total.as_ref()), ("lookup.created", self.created.as_ref())] {
            if let Some(p) = p
                && let Err(e) = check_pointer(p)
            {
                out.push((key.into(), e));
            }
        }
    }
}

/// An id location: a pointer, or a template whose every placeholder is a pointer.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.starts_with('/') {
        return check_pointer(id);
    }
    let parts = placeholders(id);
    if parts.is_empty() {
        return Err(format!("`{id}` is neither a JSON pointer nor a template of pointers (`{{/a}}:{{/b}}`)"));
    }
    parts.iter().try_for_each(|p| if p.starts_with('/') { Ok(()) } else { Err(format!("`{{{p}}}` is not a pointer")) })
}

/// `{name}` placeholders of a template, in order.
pub fn placeholders(template: &str) -> Vec<String> {
    super::manifest::template_variables(template)
}

fn unclosed(t: &str) -> Option<String> {
    let start = t.rfind('{')?;
    (!t[start..].contains('}')).then(|| format!("unclosed `{{` in template `{t}`"))
}

/// Every string inside a JSON value (templates live in strings only).
fn json_strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(json_strings).collect(),
        Value::Object(m) => m.values().flat_map(json_strings).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_below_the_base_url_or_its_origin() {
        use super::PathRoot;
        let base = "https://acme.aptem.co.uk/odata/1.0/";
        assert_eq!(PathRoot::BaseUrl.root(base), "https://acme.aptem.co.uk/odata/1.0");
        assert_eq!(PathRoot::Origin.root(base), "https://acme.aptem.co.uk");
        assert_eq!(PathRoot::Origin.root("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(PathRoot::Origin.root("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080");
    }

    #[test]
    fn soql_values_cannot_leave_their_literal() {
        let e = super::LookupEscape::Soql;
        assert_eq!(e.apply("o'brien@example.com"), r"o\'brien@example.com");
        assert_eq!(e.apply(r"a\' OR Name != '"), r"a\\\' OR Name != \'");
        assert_eq!(e.apply("plain"), "plain");
    }

    use serde_json::json;

    use super::*;

    fn spec(text: &str) -> WriteSpec {
        toml::from_str(text).unwrap()
    }

    fn known(name: &str) -> bool {
        ["email", "name", "text", "subdomain"].contains(&name)
    }

    #[test]
    fn a_full_declaration_has_no_problems() {
        let s = spec(
            r#"
            version_field = "updatedAt"
            conflict = "read"
            create = { method = "POST", path = "/objects", body = { properties = "{fields}" }, id = "/id", version = "/updatedAt" }
            update = { method = "PATCH", path = "/objects/{id}", body = { properties = "{fields}" }, idempotency_header = "Idempotency-Key" }
            comment = { method = "POST", path = "/objects/{id}/notes", body = { note = "{text}" } }
            lookup = { by = "email", method = "POST", path = "/objects/search", body = { q = "{email}" }, id = "/results/0/id", total = "/total" }
            "#,
        );
        assert_eq!(spec_problems(&s), Vec::<(String, String)>::new());
        assert_eq!(s.ops().map(|(op, _)| op).collect::<Vec<_>>(), [WriteOp::Create, WriteOp::Update, WriteOp::Comment]);
        assert_eq!(s.precondition_header(), None);
        assert_eq!(s.create.unwrap().body, Some(json!({"properties": "{fields}"})));
    }

    fn spec_problems(s: &WriteSpec) -> Vec<(String, String)> {
        s.problems(&known)
    }

    #[test]
    fn problems_name_their_key() {
        let s = spec(
            r#"
            conflict = "if_match"
            create = { method = "POST", path = "/objects/{id}", id = "results" }
            update = { method = "PATCH", path = "objects/{nope}" }
            comment = { method = "POST", path = "/objects/{id}/notes" }
            lookup = { by = "phone", path = "/search?q={email", id = "/id" }
            "#,
        );
        let keys: Vec<String> = spec_problems(&s).into_iter().map(|(k, _)| k).collect();
        for expected in
            ["create.path", "create.id", "update.path", "comment.body", "version_field", "lookup.by", "lookup.path"]
        {
            assert!(keys.iter().any(|k| k == expected), "{expected} in {keys:?}");
        }
        let messages: Vec<String> = spec_problems(&s).into_iter().map(|(_, m)| m).collect();
        assert!(messages.iter().any(|m| m.contains("`{nope}`")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("needs `{id}`")), "{messages:?}");
    }

    #[test]
    fn an_empty_declaration_and_stray_settings_are_refused() {
        let s = spec(r#"conflict_header = "If-Unmodified-Since""#);
        let keys: Vec<String> = spec_problems(&s).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["", "conflict_header"]);
        assert!(toml::from_str::<WriteSpec>(r#"upsert = { method = "PUT", path = "/x" }"#).is_err());
        assert!(toml::from_str::<WriteSpec>(r#"conflict = "etag""#).is_err());
    }

    #[test]
    fn precondition_header_defaults_to_if_match() {
        let mut s = spec(
            r#"version_field = "v"
            conflict = "if_match"
            update = { method = "PATCH", path = "/o/{id}" }"#,
        );
        assert_eq!(s.precondition_header(), Some("If-Match"));
        s.conflict_header = Some("If-Unmodified-Since".into());
        assert_eq!(s.precondition_header(), Some("If-Unmodified-Since"));
        assert!(spec_problems(&s).is_empty());
    }

    #[test]
    fn ops_parse_and_print() {
        for op in WriteOp::ALL {
            assert_eq!(WriteOp::parse(op.as_str()), Some(op));
        }
        assert_eq!(WriteOp::parse("upsert"), None);
    }
}
