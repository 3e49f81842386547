//! Tenant configuration: the declarative tenant file (`config/tenants/*.toml`), and the
//! effective configuration of a tenant — its pinned preset snapshot merged with its
//! overrides — with the origin of every value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Catalog;
use super::diag::{Diagnostics, join};
use super::layer::{ProviderLayer, check_complete, check_names};
use super::roles::parse_roles;
use super::source::{Source, typed, unknown_keys};
use crate::model::{PresetName, ProviderId, RoleName, TenantId};

/// The tenant's time zone when none is given.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// Unknown keys are reported by `unknown_keys` so the rest of the file is still checked.
#[derive(Debug, Clone, Deserialize)]
struct RawTenantFile {
    id: String,
    name: String,
    subdomain: String,
    preset: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    providers: toml::Table,
    #[serde(default)]
    roles: toml::Table,
}

/// A validated tenant file: identity, chosen preset and overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSpec {
    pub id: TenantId,
    pub name: String,
    pub subdomain: String,
    pub preset: PresetName,
    pub timezone: String,
    pub overrides: BTreeMap<ProviderId, ProviderLayer>,
    /// `[roles.<role>] streams = [...]`: the streams each role's user connections may
    /// sync (patterns in canonical text). A role without an entry may sync nothing.
    pub roles: BTreeMap<RoleName, Vec<String>>,
}

/// Checks a subdomain is one DNS label.
pub fn check_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok { Ok(()) } else { Err(format!("`{s}` is not a DNS label (lowercase letters, digits, `-`; at most 63)")) }
}

/// Checks a time zone name against the IANA database.
pub fn check_timezone(tz: &str) -> Result<(), String> {
    tz.parse::<chrono_tz::Tz>()
        .map(|_| ())
        .map_err(|_| format!("unknown time zone `{tz}` (use an IANA name such as `Europe/London`)"))
}

impl TenantSpec {
    /// Parses and validates a tenant file, reporting every problem.
    pub fn parse(source: &Source, catalog: &Catalog, diag: &mut Diagnostics) -> Option<Self> {
        let file = source.name.as_str();
        let before = diag.len();
        let table = source.parse(diag)?;
        let value = toml::Value::Table(table);
        unknown_keys(&value, &["id", "name", "subdomain", "preset", "timezone", "providers", "roles"], diag, file, "");
        let raw: RawTenantFile = typed(value, diag, file, "")?;
        let id = TenantId::parse(&raw.id).map_err(|e| diag.push(file, "id", e.to_string())).ok();
        if raw.name.trim().is_empty() {
            diag.push(file, "name", "must not be empty");
        }
        if let Err(e) = check_subdomain(&raw.subdomain) {
            diag.push(file, "subdomain", e);
        }
        let timezone = raw.timezone.unwrap_or_else(|| DEFAULT_TIMEZONE.to_owned());
        if let Err(e) = check_timezone(&timezone) {
            diag.push(file, "timezone", e);
        }
        let preset = match catalog.presets.get(&raw.preset) {
            Some(p) => Some(p),
            None => {
                diag.push(
                    file,
                    "preset",
                    format!("unknown preset `{}` (known: {})", raw.preset, catalog.presets.names()),
                );
                None
            }
        };
        let mut overrides = BTreeMap::new();
        for (p, value) in raw.providers {
            let path = join("providers", &p);
            let Some(manifest) = catalog.manifests.get(&p) else {
                diag.push(
                    file,
                    &path,
                    format!("no connector manifest for provider `{p}` (known: {})", catalog.manifests.names()),
                );
                continue;
            };
            if let Some(layer) = typed::<ProviderLayer>(value, diag, file, &path) {
                check_names(&layer, manifest, &catalog.entities, diag, file, &path);
                overrides.insert(manifest.name.clone(), layer);
            }
        }
        let roles = parse_roles(raw.roles, &catalog.manifests, diag, file, "");
        let (Some(id), Some(preset)) = (id, preset) else {
            return None;
        };
        let spec = Self {
            id,
            name: raw.name,
            subdomain: raw.subdomain,
            preset: preset.name.clone(),
            timezone,
            overrides,
            roles,
        };
        if diag.len() == before {
            let eff = Effective::compute(catalog, &spec.preset, &preset.revision, &preset.resolved, &spec.overrides);
            eff.check(catalog, &spec.subdomain, diag, file);
        }
        (diag.len() == before).then_some(spec)
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The preset's defaults at the pinned revision.
    Preset { preset: PresetName, revision: String },
    /// The connector manifest's defaults (a provider the tenant added outside its preset).
    Connector { provider: ProviderId },
    /// The tenant's own override.
    Override,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Preset { preset, revision } => write!(f, "preset {preset}@{revision}"),
            Self::Connector { provider } => write!(f, "connector {provider} default"),
            Self::Override => f.write_str("tenant override"),
        }
    }
}

/// One provider's effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveProvider {
    pub provider: ProviderId,
    /// Whether the provider is part of the tenant's preset.
    pub in_preset: bool,
    pub config: ProviderLayer,
    /// key path (relative to the provider) → origin of the value.
    pub origins: BTreeMap<String, Origin>,
}

/// A tenant's effective configuration: every provider it has a layer for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    pub providers: BTreeMap<ProviderId, EffectiveProvider>,
}

/// One difference between two effective configurations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Effective {
    /// Merges the pinned preset snapshot with the overrides, recording origins.
    pub fn compute(
        catalog: &Catalog,
        preset: &PresetName,
        revision: &str,
        snapshot: &BTreeMap<ProviderId, ProviderLayer>,
        overrides: &BTreeMap<ProviderId, ProviderLayer>,
    ) -> Self {
        let mut providers = BTreeMap::new();
        let names: std::collections::BTreeSet<&ProviderId> = snapshot.keys().chain(overrides.keys()).collect();
        for name in names {
            let (mut config, base_origin, in_preset) = match snapshot.get(name) {
                Some(layer) => {
                    (layer.clone(), Origin::Preset { preset: preset.clone(), revision: revision.to_owned() }, true)
                }
                None => match catalog.manifests.get(name.as_str()) {
                    Some(m) => (m.base_layer(), Origin::Connector { provider: name.clone() }, false),
                    None => (ProviderLayer::default(), Origin::Connector { provider: name.clone() }, false),
                },
            };
            let mut origins: BTreeMap<String, Origin> =
                config.entries().into_iter().map(|(k, _)| (k, base_origin.clone())).collect();
            if let Some(over) = overrides.get(name) {
                config.merge(over);
                for (k, _) in over.entries() {
                    origins.insert(k, Origin::Override);
                }
            }
            providers.insert(name.clone(), EffectiveProvider { provider: name.clone(), in_preset, config, origins });
        }
        Self { providers }
    }

    /// Providers switched on.
    pub fn enabled(&self) -> impl Iterator<Item = &EffectiveProvider> {
        self.providers.values().filter(|p| p.config.is_enabled())
    }

    /// Checks the merged result can run (required mappings, schedule, variables).
    pub fn check(&self, catalog: &Catalog, subdomain: &str, diag: &mut Diagnostics, file: &str) {
        for p in self.enabled() {
            let path = join("providers", p.provider.as_str());
            let Some(manifest) = catalog.manifests.get(p.provider.as_str()) else {
                diag.push(file, &path, format!("no connector manifest for provider `{}`", p.provider));
                continue;
            };
            check_complete(&p.config, manifest, &catalog.entities, diag, file, &path);
            for var in manifest.required_variables() {
                let given = p.config.variables.contains_key(&var) || (var == "subdomain" && !subdomain.is_empty());
                if !given && p.config.base_url.is_none() {
                    diag.push(
                        file,
                        &join(&join(&path, "variables"), &var),
                        format!("`{}` needs a value for `{{{var}}}` in its base URL", p.provider),
                    );
                }
            }
        }
    }

    /// Every leaf as (`providers.<p>.<path>`, value, origin).
    pub fn explain(&self) -> Vec<(String, Value, Origin)> {
        let mut out = Vec::new();
        for p in self.providers.values() {
            for (k, v) in p.config.entries() {
                let origin = p.origins.get(&k).cloned().unwrap_or(Origin::Override);
                out.push((join(&join("providers", p.provider.as_str()), &k), v, origin));
            }
        }
        out
    }

    /// Leaves that matter for a comparison: whether each provider is enabled, and every
    /// setting of the enabled ones (a disabled provider's settings do not run).
    fn effective_leaves(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for p in self.providers.values() {
            let prefix = join("providers", p.provider.as_str());
            out.insert(join(&prefix, "enabled"), Value::Bool(p.config.is_enabled()));
            if p.config.is_enabled() {
                for (k, v) in p.config.entries() {
                    out.insert(join(&prefix, &k), v);
                }
            }
        }
        out
    }

    /// What differs between `self` (before) and `after`, leaf by leaf.
    pub fn diff(&self, after: &Effective) -> Vec<Change> {
        let mut before = self.effective_leaves();
        let mut after = after.effective_leaves();
        // A provider switched on or off is one change, not one per setting.
        let toggled: Vec<String> = before
            .iter()
            .filter(|(k, v)| k.ends_with(".enabled") && k.matches('.').count() == 2 && after.get(*k) != Some(*v))
            .map(|(k, _)| k.trim_end_matches("enabled").to_owned())
            .collect();
        let keep = |k: &String| !toggled.iter().any(|t| k.starts_with(t.as_str()) && k[t.len()..] != *"enabled");
        before.retain(|k, _| keep(k));
        after.retain(|k, _| keep(k));
        let mut out = Vec::new();
        for (k, v) in &before {
            match after.get(k) {
                Some(a) if a == v => {}
                other => out.push(Change { path: k.clone(), before: Some(v.clone()), after: other.cloned() }),
            }
        }
        for (k, v) in &after {
            if !before.contains_key(k) {
                out.push(Change { path: k.clone(), before: None, after: Some(v.clone()) });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}
