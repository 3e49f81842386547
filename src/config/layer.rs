//! Configuration layers for one provider: connector defaults, preset defaults and tenant
//! overrides all share this shape. Layers merge key by key; a later layer's value
//! replaces an earlier one at the same key path, and a mapping for a target field
//! replaces that field's mapping as a whole.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::diag::{Diagnostics, join};
use super::entities::Entities;
use super::manifest::Manifest;
use super::manifest_spec::{QuotaScope, RateLimitSpec};
use super::paths::SourcePath;
use crate::model::{FieldName, Schedule};

/// One provider's settings in one layer. Every field is optional: a layer states only
/// what it changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderLayer {
    /// `false` switches the provider off for the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How often the provider's streams run (`15m`, `hourly`, `daily at 02:00`, cron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Replaces the connector's base URL (e.g. a sandbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Values for the base URL's placeholders (`site` for Jira); `subdomain` defaults to
    /// the tenant's subdomain.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub streams: BTreeMap<String, StreamLayer>,
    /// entity → target field → mapping.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mappings: BTreeMap<String, BTreeMap<String, MappingSpec>>,
    /// Constant fields added to every record of the provider (e.g. `lms_provider`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Named record filters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filters: BTreeMap<String, FilterSpec>,
    /// The largest share (0–1) of a stream's stored records one sweep may delete, for
    /// every stream of the provider that sweeps (a stream's own setting wins); by
    /// default [`DEFAULT_SWEEP_MAX_SHARE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_max_share: Option<f64>,
    /// The provider's rate limit for this tenant (plans differ), within the manifest's
    /// `[rate_limit] max_requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitOverride>,
    /// The retry policy for this tenant, within the manifest's `[retry]` bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryOverride>,
}

/// `rate_limit = { requests = N }`: requests per the manifest's `per_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    pub requests: u32,
}

/// `retry = { attempts, max_backoff_secs }`: attempts per request (the first
/// included) and the longest backoff between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_secs: Option<u64>,
}

impl ProviderLayer {
    /// The manifest's rate limit with this layer's override applied (`None`: the
    /// manifest declares none).
    pub fn rate_limit(&self, manifest: &Manifest) -> Option<RateLimitSpec> {
        let mut spec = manifest.rate_limit.clone()?;
        if let Some(over) = self.rate_limit {
            spec.requests = over.requests;
        }
        Some(spec)
    }
}

/// The share of a stream's stored records a sweep may delete when nothing says.
pub const DEFAULT_SWEEP_MAX_SHARE: f64 = 0.2;

/// One stream's settings in one layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamLayer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The target entity the stream's records become.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// A schedule for this stream only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Pages one run reads at most before it ends `partial` (overrides the manifest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages_per_run: Option<u64>,
    /// Seconds one run reads at most before it ends `partial` (overrides the manifest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_secs: Option<u64>,
    /// Mark and sweep: after every complete full pass of the stream, the stored records
    /// of its entity (for this tenant and provider) that the pass did not see become
    /// deleted. The stream must be the only one of the provider feeding that entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<bool>,
    /// The largest share (0–1) of the stored records one sweep may delete; above it
    /// nothing is deleted and the run ends `partial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_max_share: Option<f64>,
    /// When full passes run (a schedule like `schedule`), besides the runs of
    /// `schedule`, which read incrementally where the stream can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_schedule: Option<String>,
}

/// How one target field is filled.
///
/// TOML forms: `field = "source.path"`, `field = false` (not mapped) or a table
/// `field = { from = "a" | ["a", "b"], value = <constant>, transform = ["trim"],
/// default = <value>, map = { A = "x" }, separator = " " }`.
/// Specs are few and compiled once per run, so the variant size difference is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum MappingSpec {
    Path(String),
    Off,
    Rule(MappingRule),
}

/// The table form of a mapping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Sources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transform: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub map: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// How a written value goes back to the provider (see [`reverse_rule`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse: Option<ReverseSpec>,
}

/// The `reverse` of a mapping rule: `false` (the field is never written), `true` (the
/// value is written as it is to the single `from` path) or a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReverseSpec {
    Flag(bool),
    Table(ReverseTable),
}

/// `reverse = { to = "path", transform = ["upper"], map = { "x" = "X" } }`: the value is
/// looked up in `map` (a hit replaces it), transformed, and written at `to` (default:
/// the single `from` path).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transform: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub map: BTreeMap<String, Value>,
}

/// How one target field is written back, resolved from its mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum ReverseRule {
    /// Not written: unmapped, a constant, or `reverse = false`.
    Skip,
    /// Written at the provider path `to`, after the value `map` and the `transform`s.
    To { to: String, transform: Vec<String>, map: BTreeMap<String, Value> },
}

/// The reverse of one field's mapping. A plain path reverses to itself; a value map
/// alone reverses by swapping keys and values (when no two keys give the same value);
/// an unmapped field or a constant is not written. Transforms, several sources or a
/// non-invertible map need an explicit `reverse`, else the error says why.
pub fn reverse_rule(spec: &MappingSpec) -> Result<ReverseRule, String> {
    let rule = reverse_rule_unchecked(spec)?;
    if let ReverseRule::To { to, .. } = &rule
        && SourcePath::compile(to).is_ok_and(|p| p.is_query())
    {
        return Err(format!(
            "`{to}` is a JSONPath query: it selects a value but cannot be written to; declare \
             `reverse = {{ to = \"path\" }}` with a plain path, or `reverse = false` (never write the field)"
        ));
    }
    Ok(rule)
}

fn reverse_rule_unchecked(spec: &MappingSpec) -> Result<ReverseRule, String> {
    let rule = match spec {
        MappingSpec::Off => return Ok(ReverseRule::Skip),
        MappingSpec::Path(p) => return Ok(ReverseRule::To { to: p.clone(), transform: vec![], map: BTreeMap::new() }),
        MappingSpec::Rule(r) => r,
    };
    let single = match rule.from.as_ref().map(Sources::paths) {
        Some(paths) if paths.len() == 1 => Some(paths[0].to_owned()),
        _ => None,
    };
    let how = "declare `reverse = true` (write the value as it is), `reverse = { to, transform, map }`, \
               or `reverse = false` (never write the field)";
    match &rule.reverse {
        Some(ReverseSpec::Flag(false)) => Ok(ReverseRule::Skip),
        Some(ReverseSpec::Flag(true)) => match single {
            Some(to) => Ok(ReverseRule::To { to, transform: vec![], map: BTreeMap::new() }),
            None => Err("`reverse = true` needs a single `from` path; give `reverse = { to = \"path\" }`".into()),
        },
        Some(ReverseSpec::Table(t)) => {
            let Some(to) = t.to.clone().or(single) else {
                return Err("the mapping has no single `from` path, so `reverse` needs `to`".into());
            };
            if to.trim().is_empty() {
                return Err("`reverse.to` is an empty path".into());
            }
            for name in &t.transform {
                if !TRANSFORMS.contains(&name.as_str()) || matches!(name.as_str(), "concat" | "coalesce") {
                    return Err(format!("`reverse` cannot use transform `{name}`"));
                }
            }
            Ok(ReverseRule::To { to, transform: t.transform.clone(), map: t.map.clone() })
        }
        None if rule.from.is_none() => Ok(ReverseRule::Skip),
        None => {
            let Some(to) = single else {
                return Err(format!("a value merged from several sources cannot be split back; {how}"));
            };
            if let Some(t) = rule.transform.first() {
                return Err(format!("transform `{t}` cannot be undone; {how}"));
            }
            Ok(ReverseRule::To { to, transform: vec![], map: swap_map(&rule.map).map_err(|e| format!("{e}; {how}"))? })
        }
    }
}

/// A value map with keys and values swapped; two keys giving one value cannot be swapped.
fn swap_map(map: &BTreeMap<String, Value>) -> Result<BTreeMap<String, Value>, String> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (from, to) in map {
        let text = match to {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => to.to_string(),
            _ => return Err(format!("the value map gives `{from}` a value without a string form")),
        };
        if let Some(Value::String(other)) = out.get(&text) {
            return Err(format!("the value map is not one-to-one (`{other}` and `{from}` both give `{text}`)"));
        }
        out.insert(text, Value::String(from.clone()));
    }
    Ok(out)
}

/// One source path or several (for `concat` and `coalesce`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sources {
    One(String),
    Many(Vec<String>),
}

impl Sources {
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Self::One(p) => vec![p.as_str()],
            Self::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

/// Value transforms a mapping may name, applied in order.
pub const TRANSFORMS: &[&str] = &[
    "trim",
    "lower",
    "upper",
    "string",
    "int",
    "number",
    "bool",
    "date",
    "datetime",
    "null_if_empty",
    "split_name_first",
    "split_name_last",
    "concat",
    "coalesce",
];

impl MappingSpec {
    /// Source paths the mapping reads.
    pub fn sources(&self) -> Vec<&str> {
        match self {
            Self::Path(p) => vec![p.as_str()],
            Self::Off => vec![],
            Self::Rule(r) => r.from.as_ref().map(Sources::paths).unwrap_or_default(),
        }
    }

    /// A short human form: `learner_id`, `trim(name)`, `"const"`, `(unmapped)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Path(p) => p.clone(),
            Self::Off => "(unmapped)".into(),
            Self::Rule(r) => {
                let mut s = match (&r.from, &r.value) {
                    (Some(from), _) => from.paths().join(" + "),
                    (None, Some(v)) => v.to_string(),
                    (None, None) => String::new(),
                };
                for t in &r.transform {
                    s = format!("{t}({s})");
                }
                if !r.map.is_empty() {
                    s = format!("map({s})");
                }
                if let Some(d) = &r.default {
                    s = format!("{s} default {d}");
                }
                s
            }
        }
    }
}

impl Serialize for MappingSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Path(p) => s.serialize_str(p),
            Self::Off => s.serialize_bool(false),
            Self::Rule(r) => r.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for MappingSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MappingSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a source path, `false`, or a table with `from`/`value`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MappingSpec, E> {
                Ok(MappingSpec::Path(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<MappingSpec, E> {
                if v {
                    Err(E::custom("`true` is not a mapping; use a source path or `false`"))
                } else {
                    Ok(MappingSpec::Off)
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MappingSpec, A::Error> {
                MappingRule::deserialize(de::value::MapAccessDeserializer::new(map)).map(MappingSpec::Rule)
            }
        }
        d.deserialize_any(V)
    }
}

/// A record filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// The entity whose records the filter applies to.
    pub entity: String,
    /// A source path of the provider's record …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// … or a mapped target field of `entity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub op: FilterOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// `include` keeps only matching records, `exclude` drops them.
    pub action: FilterAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Ne,
    In,
    NotIn,
    Exists,
    Missing,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterAction {
    Include,
    Exclude,
}

impl ProviderLayer {
    /// Applies `over` on top of `self`, key by key.
    pub fn merge(&mut self, over: &ProviderLayer) {
        replace(&mut self.enabled, &over.enabled);
        replace(&mut self.schedule, &over.schedule);
        replace(&mut self.base_url, &over.base_url);
        self.variables.extend(over.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (name, s) in &over.streams {
            let mine = self.streams.entry(name.clone()).or_default();
            replace(&mut mine.enabled, &s.enabled);
            replace(&mut mine.entity, &s.entity);
            replace(&mut mine.schedule, &s.schedule);
            replace(&mut mine.max_pages_per_run, &s.max_pages_per_run);
            replace(&mut mine.max_run_secs, &s.max_run_secs);
            replace(&mut mine.sweep, &s.sweep);
            replace(&mut mine.sweep_max_share, &s.sweep_max_share);
            replace(&mut mine.full_schedule, &s.full_schedule);
        }
        for (entity, fields) in &over.mappings {
            let mine = self.mappings.entry(entity.clone()).or_default();
            mine.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        self.tags.extend(over.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.filters.extend(over.filters.iter().map(|(k, v)| (k.clone(), v.clone())));
        replace(&mut self.sweep_max_share, &over.sweep_max_share);
        replace(&mut self.rate_limit, &over.rate_limit);
        if let Some(r) = &over.retry {
            let mine = self.retry.get_or_insert_with(RetryOverride::default);
            replace(&mut mine.attempts, &r.attempts);
            replace(&mut mine.max_backoff_secs, &r.max_backoff_secs);
        }
    }

    /// Every leaf as (dotted key path, value), in a stable order. Leaves are the units
    /// that merge replaces: scalars, one stream setting, one field mapping, one filter.
    pub fn entries(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if let Some(v) = &self.enabled {
            out.push(("enabled".into(), json(v)));
        }
        if let Some(v) = &self.schedule {
            out.push(("schedule".into(), json(v)));
        }
        if let Some(v) = &self.base_url {
            out.push(("base_url".into(), json(v)));
        }
        for (k, v) in &self.variables {
            out.push((join("variables", k), json(v)));
        }
        for (name, s) in &self.streams {
            let p = join("streams", name);
            if let Some(v) = &s.enabled {
                out.push((join(&p, "enabled"), json(v)));
            }
            if let Some(v) = &s.entity {
                out.push((join(&p, "entity"), json(v)));
            }
            if let Some(v) = &s.schedule {
                out.push((join(&p, "schedule"), json(v)));
            }
            if let Some(v) = &s.sweep {
                out.push((join(&p, "sweep"), json(v)));
            }
            if let Some(v) = &s.sweep_max_share {
                out.push((join(&p, "sweep_max_share"), json(v)));
            }
            if let Some(v) = &s.full_schedule {
                out.push((join(&p, "full_schedule"), json(v)));
            }
        }
        for (entity, fields) in &self.mappings {
            for (field, spec) in fields {
                out.push((join(&join("mappings", entity), field), json(spec)));
            }
        }
        for (k, v) in &self.tags {
            out.push((join("tags", k), json(v)));
        }
        for (k, v) in &self.filters {
            out.push((join("filters", k), json(v)));
        }
        if let Some(v) = &self.sweep_max_share {
            out.push(("sweep_max_share".into(), json(v)));
        }
        if let Some(v) = &self.rate_limit {
            out.push(("rate_limit.requests".into(), json(&v.requests)));
        }
        if let Some(r) = &self.retry {
            if let Some(v) = &r.attempts {
                out.push(("retry.attempts".into(), json(v)));
            }
            if let Some(v) = &r.max_backoff_secs {
                out.push(("retry.max_backoff_secs".into(), json(v)));
            }
        }
        out
    }

    /// Whether the provider is switched on (it must be switched on by some layer).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(false)
    }

    /// Streams that are switched on, with their target entity.
    pub fn enabled_streams(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.streams.iter().filter(|(_, s)| s.enabled.unwrap_or(false)).map(|(n, s)| (n.as_str(), s.entity.as_deref()))
    }
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn replace<T: Clone>(mine: &mut Option<T>, over: &Option<T>) {
    if let Some(v) = over {
        *mine = Some(v.clone());
    }
}

/// Checks every name and value one layer states: streams, entities, fields, schedules,
/// transforms, filters, variables. `path` is where the layer sits in `file`.
pub fn check_names(
    layer: &ProviderLayer,
    manifest: &Manifest,
    entities: &Entities,
    diag: &mut Diagnostics,
    file: &str,
    path: &str,
) {
    let mut err = |key: &str, msg: String| diag.push(file, &join(path, key), msg);
    if let Some(s) = &layer.schedule
        && let Err(e) = Schedule::parse_checked(s)
    {
        err("schedule", e.to_string());
    }
    if let Some(url) = &layer.base_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        err("base_url", format!("`{url}` is not an http(s) URL"));
    }
    let known_vars = manifest.tenant_variables();
    for (k, v) in &layer.variables {
        if !known_vars.iter().any(|x| x == k) {
            let known = if known_vars.is_empty() { "none".to_owned() } else { known_vars.join(", ") };
            err(
                &join("variables", k),
                format!("unknown variable for `{}` (its base URL uses: {known})", manifest.name),
            );
        } else if v.trim().is_empty() {
            err(&join("variables", k), "must not be empty".into());
        }
    }
    for (name, s) in &layer.streams {
        let p = join("streams", name);
        if manifest.streams.keys().all(|k| k.as_str() != name) {
            let known = manifest.streams.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
            err(&p, format!("unknown stream of `{}` (known: {known})", manifest.name));
        }
        if let Some(e) = &s.entity
            && entities.get(e).is_none()
        {
            err(&join(&p, "entity"), format!("unknown entity `{e}` (known: {})", entities.names()));
        }
        if let Some(sched) = &s.schedule
            && let Err(e) = Schedule::parse_checked(sched)
        {
            err(&join(&p, "schedule"), e.to_string());
        }
        if let Some(sched) = &s.full_schedule
            && let Err(e) = Schedule::parse_checked(sched)
        {
            err(&join(&p, "full_schedule"), e.to_string());
        }
        if let Some(share) = s.sweep_max_share
            && let Err(msg) = check_share(share)
        {
            err(&join(&p, "sweep_max_share"), msg);
        }
        if s.sweep == Some(true)
            && let Some(spec) = manifest.streams.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
            && spec.deletions
        {
            err(
                &join(&p, "sweep"),
                format!("`{name}` is a deletion stream: it lists deleted records, it cannot sweep"),
            );
        }
    }
    if let Some(share) = layer.sweep_max_share
        && let Err(msg) = check_share(share)
    {
        err("sweep_max_share", msg);
    }
    check_overrides(layer, manifest, &mut err);
    for (entity, fields) in &layer.mappings {
        let p = join("mappings", entity);
        let Some(def) = entities.get(entity) else {
            err(&p, format!("unknown entity `{entity}` (known: {})", entities.names()));
            continue;
        };
        for (field, spec) in fields {
            let fp = join(&p, field);
            if def.field(field).is_none() {
                let known = def.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
                err(&fp, format!("unknown field of `{entity}` (known: {known})"));
            }
            if let Err(msg) = check_mapping(spec) {
                err(&fp, msg);
            }
            // A field of a written entity must reverse (its key goes in the URL instead).
            if manifest.writes.contains_key(entity.as_str())
                && def.key.as_str() != field
                && let Err(msg) = reverse_rule(spec)
            {
                err(
                    &fp,
                    format!("`{}` writes `{entity}`, but this field cannot be written back: {msg}", manifest.name),
                );
            }
        }
    }
    for key in layer.tags.keys() {
        if let Err(e) = FieldName::parse(key) {
            err(&join("tags", key), e.to_string());
        }
    }
    for (name, f) in &layer.filters {
        let p = join("filters", name);
        let Some(def) = entities.get(&f.entity) else {
            err(&join(&p, "entity"), format!("unknown entity `{}` (known: {})", f.entity, entities.names()));
            continue;
        };
        match (&f.source, &f.field) {
            (Some(_), Some(_)) | (None, None) => {
                err(&p, "give exactly one of `source` (a source path) or `field` (a target field)".into())
            }
            (None, Some(field)) if def.field(field).is_none() => {
                err(&join(&p, "field"), format!("unknown field of `{}`", f.entity));
            }
            (Some(src), None) if src.trim().is_empty() => err(&join(&p, "source"), "empty source path".into()),
            (Some(src), None) if let Err(msg) = check_path(src) => err(&join(&p, "source"), msg),
            _ => {}
        }
        match (f.op, &f.value) {
            (FilterOp::Exists | FilterOp::Missing, Some(_)) => {
                err(&join(&p, "value"), "`exists`/`missing` take no value".into())
            }
            (FilterOp::Exists | FilterOp::Missing, None) => {}
            (FilterOp::In | FilterOp::NotIn, Some(Value::Array(_))) => {}
            (FilterOp::In | FilterOp::NotIn, _) => err(&join(&p, "value"), "`in`/`not_in` need an array value".into()),
            (_, None) => err(&join(&p, "value"), "this operator needs a `value`".into()),
            _ => {}
        }
    }
}

/// Another enabled stream of the provider that feeds `entity` besides `stream`, if any.
/// Streams that store no records of their own do not count: deletion streams, and those
/// whose items are only tombstones (`tombstone.only`, Asana's events).
pub fn sweep_conflict(layer: &ProviderLayer, manifest: &Manifest, stream: &str, entity: &str) -> Option<String> {
    let stores_none = |name: &str| {
        manifest
            .streams
            .iter()
            .any(|(k, s)| k.as_str() == name && (s.deletions || s.tombstone.as_ref().is_some_and(|t| t.only)))
    };
    layer
        .enabled_streams()
        .filter(|(name, e)| *name != stream && *e == Some(entity))
        .find(|(name, _)| !stores_none(name))
        .map(|(name, _)| name.to_owned())
}

/// Rate-limit and retry overrides within the manifest's bounds.
fn check_overrides(layer: &ProviderLayer, manifest: &Manifest, err: &mut impl FnMut(&str, String)) {
    let name = &manifest.name;
    if let Some(over) = layer.rate_limit {
        match &manifest.rate_limit {
            None => err("rate_limit", format!("`{name}` declares no rate limit to override")),
            Some(spec) if spec.scope == QuotaScope::Provider => err(
                "rate_limit",
                format!(
                    "`{name}`'s rate limit is one quota shared by every tenant (scope = \"provider\"); it cannot be \
                     overridden"
                ),
            ),
            Some(spec) => {
                let max = spec.max_requests.unwrap_or(spec.requests);
                if over.requests == 0 || over.requests > max {
                    err(
                        "rate_limit.requests",
                        format!(
                            "{} is outside 1–{max} requests per {} s (`{name}`'s `[rate_limit] max_requests`)",
                            over.requests, spec.per_secs
                        ),
                    );
                }
            }
        }
    }
    let Some(over) = layer.retry else { return };
    let bounds = manifest.retry.clone().unwrap_or_default();
    let mut bounded = |key: &str, value: Option<u64>, max: Option<u64>, bound: &str| {
        let Some(value) = value else { return };
        match max {
            None => err(
                &join("retry", key),
                format!("`{name}` sets no bound for it (`[retry] {bound}` in the manifest); it cannot be overridden"),
            ),
            Some(max) if value == 0 || value > max => {
                err(&join("retry", key), format!("{value} is outside 1–{max} (`{name}`'s `[retry] {bound}`)"))
            }
            Some(_) => {}
        }
    };
    bounded("attempts", over.attempts.map(u64::from), bounds.max_attempts.map(u64::from), "max_attempts");
    bounded("max_backoff_secs", over.max_backoff_secs, bounds.max_backoff_secs, "max_backoff_secs");
}

/// A share of a stream's records: more than 0, at most 1.
fn check_share(share: f64) -> Result<(), String> {
    if share.is_finite() && share > 0.0 && share <= 1.0 {
        Ok(())
    } else {
        Err(format!("`{share}` is not a share: give a number above 0 and at most 1 (0.2 is 20 %)"))
    }
}

/// Compiles a source path as a run would: a path the language cannot evaluate is
/// refused here, with the reason, instead of mapping to null at run time.
fn check_path(p: &str) -> Result<(), String> {
    SourcePath::compile(p).map(drop).map_err(|e| format!("bad source path `{p}`: {e}"))
}

fn check_mapping(spec: &MappingSpec) -> Result<(), String> {
    match spec {
        MappingSpec::Off => Ok(()),
        MappingSpec::Path(p) if p.trim().is_empty() => Err("empty source path".into()),
        MappingSpec::Path(p) => check_path(p),
        MappingSpec::Rule(r) => {
            if r.from.is_none() && r.value.is_none() && r.default.is_none() {
                return Err("a mapping table needs `from`, `value` or `default`".into());
            }
            if r.from.is_some() && r.value.is_some() {
                return Err("give either `from` or `value`, not both".into());
            }
            if let Some(from) = &r.from
                && (from.paths().is_empty() || from.paths().iter().any(|p| p.trim().is_empty()))
            {
                return Err("empty source path in `from`".into());
            }
            for p in r.from.as_ref().map(Sources::paths).unwrap_or_default() {
                check_path(p)?;
            }
            if let Some(ReverseSpec::Table(t)) = &r.reverse
                && let Some(to) = t.to.as_deref().filter(|t| !t.trim().is_empty())
            {
                check_path(to).map_err(|e| format!("`reverse.to`: {e}"))?;
            }
            for t in &r.transform {
                if !TRANSFORMS.contains(&t.as_str()) {
                    return Err(format!("unknown transform `{t}` (known: {})", TRANSFORMS.join(", ")));
                }
            }
            Ok(())
        }
    }
}

/// Checks that an effective (fully merged) layer can run: a schedule, at least one
/// stream, and every required field of every enabled stream's entity mapped.
pub fn check_complete(
    layer: &ProviderLayer,
    manifest: &Manifest,
    entities: &Entities,
    diag: &mut Diagnostics,
    file: &str,
    path: &str,
) {
    if !layer.is_enabled() {
        return;
    }
    if layer.schedule.is_none() {
        diag.push(
            file,
            &join(path, "schedule"),
            format!("`{}` has no schedule (set one in the preset or the tenant)", manifest.name),
        );
    }
    let mut any = false;
    for (stream, entity) in layer.enabled_streams() {
        any = true;
        // A deletion stream deletes records of an entity another stream reads.
        if manifest.streams.iter().any(|(k, s)| k.as_str() == stream && s.deletions)
            && let Some(e) = entity
            && !manifest.streams.iter().any(|(k, s)| {
                !s.deletions && layer.streams.get(k.as_str()).and_then(|l| l.entity.as_deref()) == Some(e)
            })
        {
            diag.push(
                file,
                &join(&join(&join(path, "streams"), stream), "entity"),
                format!("deletion stream `{stream}` deletes `{e}`, which no other stream of `{}` reads", manifest.name),
            );
        }
        // A sweep deletes the entity's records the stream did not see: another stream
        // feeding the same entity would have its records swept.
        if layer.streams.get(stream).and_then(|l| l.sweep) == Some(true)
            && let Some(e) = entity
            && let Some(other) = sweep_conflict(layer, manifest, stream, e)
        {
            diag.push(
                file,
                &join(&join(&join(path, "streams"), stream), "sweep"),
                format!(
                    "stream `{stream}` sweeps `{e}`, which stream `{other}` of `{}` also feeds: records carry no \
                     stream, so only the one stream feeding an entity may sweep it",
                    manifest.name
                ),
            );
        }
        let Some(entity) = entity.and_then(|e| entities.get(e)) else {
            continue;
        };
        let mapped = layer.mappings.get(entity.name.as_str());
        for field in entity.required_fields() {
            let ok = mapped.and_then(|m| m.get(field.name.as_str())).is_some_and(|s| *s != MappingSpec::Off);
            if !ok {
                diag.push(
                    file,
                    &join(&join(path, "mappings"), entity.name.as_str()),
                    format!(
                        "required field `{}.{}` is not mapped (stream `{stream}` of `{}` produces `{}`)",
                        entity.name, field.name, manifest.name, entity.name
                    ),
                );
            }
        }
    }
    if !any {
        diag.push(file, &join(path, "streams"), format!("`{}` is enabled but none of its streams is", manifest.name));
    }
    for (name, v) in &layer.variables {
        if v.trim().is_empty() {
            diag.push(file, &join(&join(path, "variables"), name), "must not be empty");
        }
    }
}
