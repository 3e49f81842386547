//! Write-back: the reverse of a mapping (target fields → provider fields) and the
//! request a declared write operation sends.
//!
//! [`ReverseMapping::compile`] resolves every field of the entity with
//! [`reverse_rule`](crate::config::reverse_rule): a plain path reverses to itself, a value
//! map alone by swapping, a rule with transforms only through its explicit `reverse`;
//! the entity's key is never written (it is the external id, in the URL). Configuration
//! loading refuses a written entity whose mapping has a field that cannot be reversed,
//! in every layer, with file and key; a mapping that reaches the store another way (a
//! tenant's overrides set at run time) is refused here, when the write is prepared,
//! with the entity and field — the caller adds the tenant.
//!
//! [`build_request`] turns one submitted record into a [`PreparedRequest`]: method,
//! path with `{id}` and record fields filled in (percent-encoded), body (the reversed
//! fields, under `defaults`, inside the `body` template) and headers. Manifest and
//! tenant variables stay as placeholders for the executor, which also adds auth, the
//! idempotency header and the precondition header. Errors name fields, never values.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::MappingError;
use super::transforms::{Step, Transform};
use super::types::{conform, expected};
use super::value::{Val, View, text, type_name};
use crate::config::SourcePath;
use crate::config::{
    BodyFormat, Entity, MappingSpec, Method, ReverseRule, WriteOp, WriteRequest, WriteSpec, placeholders, reverse_rule,
};
use crate::model::EntityName;

/// How the fields of one entity are written back to one provider.
#[derive(Debug, Clone)]
pub struct ReverseMapping {
    entity: EntityName,
    /// The entity's key field: never in a body.
    key: String,
    fields: Vec<ReverseField>,
    /// Entity fields that are not written (unmapped, constants, `reverse = false`).
    read_only: Vec<String>,
    types: BTreeMap<String, (crate::config::FieldType, bool)>,
}

#[derive(Debug, Clone)]
struct ReverseField {
    name: String,
    to: SourcePath,
    map: BTreeMap<String, Value>,
    steps: Vec<Transform>,
}

/// The provider fields of one record, and the record's fields that were left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Reversed {
    /// An object shaped by the reverse paths (`properties.email` → `{"properties":
    /// {"email": …}}`).
    pub fields: Value,
    /// Fields the record carried that the provider is not written (read-only), sorted.
    pub skipped: Vec<String>,
}

/// Why a write cannot be prepared. Messages name fields and placeholders, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("`{entity}` has no `{op}` write declared")]
    NotDeclared { entity: EntityName, op: WriteOp },
    #[error("a `{op}` needs the object's external id")]
    MissingId { op: WriteOp },
    #[error("the record must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("`{entity}` has no field `{field}`")]
    UnknownField { entity: EntityName, field: String },
    #[error("field `{entity}.{field}` expects {expected}, got {got}")]
    Invalid { entity: EntityName, field: String, expected: &'static str, got: &'static str },
    #[error("reverse transform `{transform}` cannot convert {got} for `{entity}.{field}`")]
    Transform { entity: EntityName, field: String, transform: &'static str, got: &'static str },
    #[error("fields `{first}` and `{second}` of `{entity}` write to overlapping provider paths")]
    PathClash { entity: EntityName, first: String, second: String },
    #[error("placeholder `{{{0}}}` has no value in the record")]
    MissingValue(String),
    #[error("placeholder `{{{0}}}` needs a value with a string form")]
    NotText(String),
}

impl ReverseMapping {
    /// Compiles the reverse of `fields` (the tenant's effective mapping of `entity`).
    /// Every field that cannot be reversed is reported, at once.
    pub fn compile(entity: &Entity, fields: &BTreeMap<String, MappingSpec>) -> Result<Self, MappingError> {
        let name = &entity.name;
        let mut errors = Vec::new();
        let mut out = Self {
            entity: name.clone(),
            key: entity.key.to_string(),
            fields: Vec::new(),
            read_only: Vec::new(),
            types: entity.fields.iter().map(|f| (f.name.to_string(), (f.kind, f.required))).collect(),
        };
        for def in &entity.fields {
            let field = def.name.to_string();
            if field == out.key {
                continue;
            }
            let irreversible =
                |reason: String| MappingError::InvalidRule { entity: name.clone(), field: field.clone(), reason };
            let rule = match fields.get(&field).map(reverse_rule) {
                None | Some(Ok(ReverseRule::Skip)) => {
                    out.read_only.push(field);
                    continue;
                }
                Some(Err(reason)) => {
                    errors.push(irreversible(format!("cannot be written back: {reason}")));
                    continue;
                }
                Some(Ok(ReverseRule::To { to, transform, map })) => (to, transform, map),
            };
            let (to, transform, map) = rule;
            let to = match SourcePath::compile(&to) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(irreversible(format!("bad reverse path `{to}`: {e}")));
                    continue;
                }
            };
            let mut steps = Vec::new();
            for t in &transform {
                match Step::parse(t) {
                    Some(Step::One(s)) => steps.push(s),
                    _ => errors.push(irreversible(format!("`reverse` cannot use transform `{t}`"))),
                }
            }
            out.fields.push(ReverseField { name: field, to, map, steps });
        }
        for (i, a) in out.fields.iter().enumerate() {
            for b in &out.fields[i + 1..] {
                if overlaps(&a.to, &b.to) {
                    errors.push(MappingError::InvalidRule {
                        entity: name.clone(),
                        field: b.name.clone(),
                        reason: format!(
                            "writes to `{}`, which overlaps `{}` of `{}`",
                            b.to.as_str(),
                            a.to.as_str(),
                            a.name
                        ),
                    });
                }
            }
        }
        match errors.len() {
            0 => Ok(out),
            1 => Err(errors.remove(0)),
            _ => Err(MappingError::Several { entity: name.clone(), errors }),
        }
    }

    /// The entity.
    pub fn entity(&self) -> &EntityName {
        &self.entity
    }

    /// The entity's key field (the external id).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Target field → provider path, for the fields that are written.
    pub fn paths(&self) -> Vec<(&str, &str)> {
        self.fields.iter().map(|f| (f.name.as_str(), f.to.as_str())).collect()
    }

    /// The provider fields for `record` (a partial or whole record of the entity in the
    /// target schema). Fields absent from the record are not written; a null clears.
    pub fn reverse(&self, record: &Value) -> Result<Reversed, WriteError> {
        let Value::Object(map) = record else {
            return Err(WriteError::NotAnObject(type_name(View::of(record))));
        };
        let mut out = Value::Object(Map::new());
        let mut skipped = Vec::new();
        for (name, value) in map {
            if *name == self.key {
                continue;
            }
            let Some(&(kind, required)) = self.types.get(name) else {
                return Err(WriteError::UnknownField { entity: self.entity.clone(), field: name.clone() });
            };
            if (required || !value.is_null()) && conform(kind, value.clone()).is_none() {
                return Err(WriteError::Invalid {
                    entity: self.entity.clone(),
                    field: name.clone(),
                    expected: expected(kind),
                    got: type_name(View::of(value)),
                });
            }
            let Some(field) = self.fields.iter().find(|f| f.name == *name) else {
                skipped.push(name.clone());
                continue;
            };
            let v = field.apply(value).map_err(|(transform, got)| WriteError::Transform {
                entity: self.entity.clone(),
                field: name.clone(),
                transform,
                got,
            })?;
            set_at(&mut out, &field.to, v);
        }
        skipped.sort();
        Ok(Reversed { fields: out, skipped })
    }
}

impl ReverseField {
    fn apply(&self, value: &Value) -> Result<Value, (&'static str, &'static str)> {
        let hit = if self.map.is_empty() { None } else { text(View::of(value)).and_then(|t| self.map.get(&t)) };
        let mut v = Val::Ref(hit.unwrap_or(value));
        for t in &self.steps {
            v = t.apply(v).map_err(|got| (t.name(), got))?;
        }
        Ok(v.into_value())
    }
}

/// Whether one path is the other or lies inside it.
fn overlaps(a: &SourcePath, b: &SourcePath) -> bool {
    a.segments().zip(b.segments()).all(|(x, y)| x == y)
}

/// Writes `v` at `path` into `out`, making the objects on the way. Paths were checked not
/// to overlap, so nothing on the way is a value already.
fn set_at(out: &mut Value, path: &SourcePath, v: Value) {
    let segments: Vec<&str> = path.segments().collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut cur = out;
    for seg in parents {
        let Value::Object(map) = cur else { return };
        cur = map.entry((*seg).to_owned()).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = cur {
        map.insert((*last).to_owned(), v);
    }
}

/// A write request ready for the executor.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRequest {
    pub method: Method,
    /// Below the base URL; manifest and tenant variables still as placeholders.
    pub path: String,
    /// Query parameters (lookups).
    pub query: BTreeMap<String, String>,
    pub body: Option<Value>,
    pub format: BodyFormat,
    pub headers: BTreeMap<String, String>,
    /// Fields of the record that are not written (read-only in the provider).
    pub skipped: Vec<String>,
}

/// A write declaration with the reverse of the tenant's mapping, ready to prepare
/// requests.
#[derive(Debug, Clone)]
pub struct CompiledWrite {
    spec: WriteSpec,
    reverse: ReverseMapping,
    /// Placeholders left for the executor (manifest and tenant variables).
    variables: Vec<String>,
}

impl CompiledWrite {
    /// Compiles `spec` with the reverse of `fields`; `variables` are the placeholders
    /// the executor fills (the manifest's tenant variables and built-ins).
    pub fn compile(
        entity: &Entity,
        fields: &BTreeMap<String, MappingSpec>,
        spec: &WriteSpec,
        variables: Vec<String>,
    ) -> Result<Self, MappingError> {
        Ok(Self { spec: spec.clone(), reverse: ReverseMapping::compile(entity, fields)?, variables })
    }

    pub fn spec(&self) -> &WriteSpec {
        &self.spec
    }

    pub fn reverse(&self) -> &ReverseMapping {
        &self.reverse
    }

    /// The request that looks up the object an ambiguous create may have made; `None`
    /// when no lookup is declared or the record lacks the field it is by.
    pub fn lookup_request(&self, record: &Value) -> Result<Option<PreparedRequest>, WriteError> {
        let Some(l) = &self.spec.lookup else { return Ok(None) };
        if record.get(&l.by).is_none_or(Value::is_null) {
            return Ok(None);
        }
        let fill = Filler { record, id: None, fields: None, variables: &self.variables, escape: l.escape };
        let query = l.query.iter().map(|(k, v)| Ok((k.clone(), fill.text(v, false)?))).collect::<Result<_, _>>()?;
        Ok(Some(PreparedRequest {
            method: l.method,
            path: fill.text(&l.path, true)?,
            query,
            body: l.body.as_ref().map(|b| fill.json(b)).transpose()?,
            format: BodyFormat::Json,
            headers: BTreeMap::new(),
            skipped: Vec::new(),
        }))
    }
}

impl CompiledWrite {
    /// The request that reads the object's current version before an update
    /// (`conflict = "read"`): a `GET` of the update's path. `None` when no update is
    /// declared.
    pub fn read_request(&self, record: &Value, external_id: &str) -> Result<Option<PreparedRequest>, WriteError> {
        let Some(update) = &self.spec.update else { return Ok(None) };
        let fill = Filler { record, id: Some(external_id), fields: None, variables: &self.variables, escape: None };
        Ok(Some(PreparedRequest {
            method: Method::Get,
            path: fill.text(&update.path, true)?,
            query: BTreeMap::new(),
            body: None,
            format: BodyFormat::Json,
            headers: BTreeMap::new(),
            skipped: Vec::new(),
        }))
    }
}

/// The target field a mapping fills from the provider field `version_field` (a plain
/// path or a rule with that one source): where the stored record keeps the version
/// tributary last synced.
pub fn version_target<'a>(fields: &'a BTreeMap<String, MappingSpec>, version_field: &str) -> Option<&'a str> {
    fields.iter().find_map(|(name, spec)| {
        let from = match spec {
            MappingSpec::Path(p) => p.as_str(),
            MappingSpec::Rule(r) => match r.from.as_ref().map(crate::config::Sources::paths).as_deref() {
                Some([one]) => one,
                _ => return None,
            },
            MappingSpec::Off => return None,
        };
        (from == version_field).then_some(name.as_str())
    })
}

/// A JSON value as text (strings as they are, numbers and booleans printed); `None`
/// for null, arrays and objects.
pub fn text_of(v: &Value) -> Option<String> {
    text(View::of(v))
}

/// The value at a dotted path of a provider record (`fields.updated`), as text.
pub fn value_at(record: &Value, dotted: &str) -> Option<String> {
    let mut at = record;
    for part in dotted.split('.') {
        at = at.get(part)?;
    }
    text(View::of(at))
}

/// A version as stored in the target schema: a date-time normalized as the `datetime`
/// transform does (so the provider's and the stored forms compare), else as it is.
pub fn normalized_version(version: &str) -> String {
    super::dates::to_datetime(View::of(&Value::from(version))).unwrap_or_else(|| version.to_owned())
}

/// Whether the provider's `current` version is newer than `base`: later date-times,
/// larger numbers, and otherwise any difference.
pub fn is_newer(current: &str, base: &str) -> bool {
    let (c, b) = (normalized_version(current), normalized_version(base));
    if super::dates::is_rfc3339(&c) && super::dates::is_rfc3339(&b) {
        return c > b;
    }
    match (current.trim().parse::<f64>(), base.trim().parse::<f64>()) {
        (Ok(c), Ok(b)) => c > b,
        _ => current != base,
    }
}

/// A version date-time as an HTTP-date (`If-Unmodified-Since`), `None` when it is not a
/// date-time.
pub fn http_date(version: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(&normalized_version(version)).ok()?;
    Some(t.with_timezone(&chrono::Utc).format("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

/// Prepares the request of `op` for `record` (in the tenant's target schema; for a
/// `comment`, an object such as `{"text": …}`). `external_id` addresses the object of
/// every operation but `create`.
pub fn build_request(
    write: &CompiledWrite,
    op: WriteOp,
    record: &Value,
    external_id: Option<&str>,
) -> Result<PreparedRequest, WriteError> {
    let entity = write.reverse.entity();
    let req: &WriteRequest = write.spec.op(op).ok_or_else(|| WriteError::NotDeclared { entity: entity.clone(), op })?;
    if op.needs_id() && external_id.is_none() {
        return Err(WriteError::MissingId { op });
    }
    if !record.is_object() {
        return Err(WriteError::NotAnObject(type_name(View::of(record))));
    }
    let reversed = match op {
        WriteOp::Create | WriteOp::Update => Some(write.reverse.reverse(record)?),
        WriteOp::Delete | WriteOp::Comment => None,
    };
    let fields = reversed.as_ref().map(|r| with_defaults(req.defaults.as_ref(), &r.fields));
    let fill = Filler {
        escape: None,
        record,
        id: external_id.filter(|_| op.needs_id()),
        fields: fields.as_ref(),
        variables: &write.variables,
    };
    let body = match (&req.body, &fields) {
        (Some(template), _) => Some(fill.json(template)?),
        (None, Some(f)) => Some(f.clone()),
        (None, None) => None,
    };
    let headers = req.headers.iter().map(|(k, v)| Ok((k.clone(), fill.text(v, false)?))).collect::<Result<_, _>>()?;
    Ok(PreparedRequest {
        method: req.method,
        path: fill.text(&req.path, true)?,
        query: BTreeMap::new(),
        body,
        format: req.format,
        headers,
        skipped: reversed.map(|r| r.skipped).unwrap_or_default(),
    })
}

/// `defaults` with the mapped fields laid over them (the mapped value wins).
fn with_defaults(defaults: Option<&Value>, fields: &Value) -> Value {
    let Some(d) = defaults else { return fields.clone() };
    let mut out = d.clone();
    merge(&mut out, fields);
    out
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Fills templates from the record.
struct Filler<'a> {
    /// Quoting of record values filled into text (lookups).
    escape: Option<crate::config::LookupEscape>,
    record: &'a Value,
    id: Option<&'a str>,
    fields: Option<&'a Value>,
    variables: &'a [String],
}

impl Filler<'_> {
    /// The JSON value of a whole-string placeholder, or `None` when it stays (a variable).
    fn value(&self, name: &str) -> Result<Option<Value>, WriteError> {
        match name {
            "id" if self.id.is_some() => Ok(self.id.map(Value::from)),
            "fields" if self.fields.is_some() => Ok(self.fields.cloned()),
            _ => match self.record.get(name) {
                Some(v) if !v.is_null() => Ok(Some(v.clone())),
                _ if self.variables.iter().any(|v| v == name) => Ok(None),
                _ => Err(WriteError::MissingValue(name.to_owned())),
            },
        }
    }

    /// A string template; `in_path` percent-encodes what is filled in.
    fn text(&self, template: &str, in_path: bool) -> Result<String, WriteError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else { break };
            let name = &rest[start + 1..start + len];
            out.push_str(&rest[..start]);
            match self.value(name)? {
                None => out.push_str(&rest[start..=start + len]),
                Some(v) => {
                    let t = text(View::of(&v)).ok_or_else(|| WriteError::NotText(name.to_owned()))?;
                    let t = match self.escape {
                        Some(e) if name != "id" => e.apply(&t),
                        _ => t,
                    };
                    out.push_str(&if in_path { encode_segment(&t) } else { t });
                }
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A JSON template: a string that is one placeholder becomes its value (keeping its
    /// JSON type); other strings are filled as text.
    fn json(&self, template: &Value) -> Result<Value, WriteError> {
        Ok(match template {
            Value::String(s) => {
                let names = placeholders(s);
                match names.as_slice() {
                    [one] if *s == format!("{{{one}}}") => match self.value(one)? {
                        Some(v) => v,
                        None => template.clone(),
                    },
                    _ => Value::String(self.text(s, false)?),
                }
            }
            Value::Array(items) => Value::Array(items.iter().map(|i| self.json(i)).collect::<Result<_, _>>()?),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| Ok((k.clone(), self.json(v)?))).collect::<Result<_, _>>()?)
            }
            other => other.clone(),
        })
    }
}

/// Percent-encodes everything but unreserved characters, so a value stays one segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a successful write answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteResult {
    /// The object's id (`None` when the response does not carry it where declared).
    pub id: Option<String>,
    /// The object's new version, when the response carries it.
    pub version: Option<String>,
}

/// Reads the id and version out of a response body as `req` declares them.
pub fn write_result(req: &WriteRequest, response: &Value) -> WriteResult {
    let at = |p: &str| response.pointer(p).and_then(|v| text(View::of(v)));
    let id = req.id.as_deref().and_then(|id| {
        if id.is_empty() || id.starts_with('/') {
            return at(id);
        }
        let mut out = id.to_owned();
        for p in placeholders(id) {
            out = out.replace(&format!("{{{p}}}"), &at(&p)?);
        }
        Some(out)
    });
    WriteResult { id, version: req.version.as_deref().and_then(at) }
}

/// The provider's refusal inside a response that is not an HTTP error (`ok: false`),
/// or its error message in one that is: `None` when the body does not say.
pub fn provider_error(req: &WriteRequest, response: &Value) -> Option<String> {
    let message = || req.error.as_deref().and_then(|p| response.pointer(p)).and_then(|v| text(View::of(v)));
    match req.ok.as_deref().and_then(|p| response.pointer(p)) {
        Some(Value::Bool(false)) => Some(message().unwrap_or_else(|| "the provider answered `ok: false`".into())),
        Some(_) => None,
        None => message(),
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
