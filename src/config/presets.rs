//! Presets (`config/presets.toml`): named combinations of providers with platform-wide
//! defaults. A preset's revision is a content hash of its resolved defaults, so any
//! edit that changes what a new tenant would get produces a new revision.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::diag::{Diagnostics, join};
use super::entities::Entities;
use super::layer::{ProviderLayer, check_complete, check_names};
use super::manifest::Manifests;
use super::roles::parse_roles;
use super::source::{Source, take_table, typed, unknown_keys};
use crate::model::{PresetName, ProviderId, RoleName};

/// Unknown keys are reported by `unknown_keys` so the rest of the preset is still checked.
#[derive(Debug, Clone, Deserialize)]
struct RawPreset {
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    recommended: bool,
    providers: Vec<String>,
    #[serde(default)]
    overrides: toml::Table,
    #[serde(default)]
    roles: toml::Table,
}

/// A preset with its resolved per-provider defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preset {
    pub name: PresetName,
    pub title: String,
    pub description: Option<String>,
    pub recommended: bool,
    pub providers: Vec<ProviderId>,
    /// Connector defaults ⊕ platform provider defaults ⊕ this preset's adjustments.
    pub resolved: BTreeMap<ProviderId, ProviderLayer>,
    pub revision: String,
    /// `[presets.<name>.roles.<role>] streams = [...]`: role grants every tenant of the
    /// preset starts with; a tenant's own `[roles.<role>]` replaces the preset's for that
    /// role (`streams = []` takes a grant away).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<RoleName, Vec<String>>,
}

impl Preset {
    /// The preset's role grants with `own` (a tenant's) replacing them role by role.
    pub fn roles_with(&self, own: &BTreeMap<RoleName, Vec<String>>) -> BTreeMap<RoleName, Vec<String>> {
        let mut out = self.roles.clone();
        out.extend(own.iter().map(|(r, s)| (r.clone(), s.clone())));
        out
    }
}

/// Content hash of resolved defaults: `r` + 12 hex digits.
pub fn revision_of(resolved: &BTreeMap<ProviderId, ProviderLayer>) -> String {
    let bytes = serde_json::to_vec(resolved).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    format!("r{}", &hex::encode(digest)[..12])
}

/// All presets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Presets(BTreeMap<PresetName, Preset>);

impl Presets {
    pub fn get(&self, name: &str) -> Option<&Preset> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Preset> {
        self.0.values()
    }

    pub fn names(&self) -> String {
        self.0.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Parses and validates `presets.toml`: `[providers.<p>]` platform defaults and
    /// `[presets.<name>]` with `providers = [...]` and optional `[presets.<name>.overrides.<p>]`.
    pub fn load(source: &Source, manifests: &Manifests, entities: &Entities, diag: &mut Diagnostics) -> Self {
        let file = source.name.as_str();
        let Some(mut root) = source.parse(diag) else {
            return Self::default();
        };
        let providers = take_table(&mut root, "providers", diag, file, "");
        let presets = take_table(&mut root, "presets", diag, file, "");
        for key in root.keys() {
            diag.push(file, key, "unknown key (expected `providers` or `presets`)");
        }

        let mut platform: BTreeMap<String, ProviderLayer> = BTreeMap::new();
        for (name, value) in providers {
            let path = join("providers", &name);
            let Some(manifest) = manifests.get(&name) else {
                diag.push(
                    file,
                    &path,
                    format!("no connector manifest for provider `{name}` (known: {})", manifests.names()),
                );
                continue;
            };
            if let Some(layer) = typed::<ProviderLayer>(value, diag, file, &path) {
                check_names(&layer, manifest, entities, diag, file, &path);
                platform.insert(name, layer);
            }
        }

        let mut out = BTreeMap::new();
        for (name, value) in presets {
            let path = join("presets", &name);
            let id = PresetName::parse(&name).map_err(|e| diag.push(file, &path, e.to_string()));
            let known = ["title", "description", "recommended", "providers", "overrides", "roles"];
            unknown_keys(&value, &known, diag, file, &path);
            let Some(raw) = typed::<RawPreset>(value, diag, file, &path) else {
                continue;
            };
            let Ok(id) = id else { continue };
            let mut members = Vec::new();
            for (i, p) in raw.providers.iter().enumerate() {
                let ppath = format!("{path}.providers[{i}]");
                let Some(manifest) = manifests.get(p) else {
                    diag.push(
                        file,
                        &ppath,
                        format!(
                            "preset names provider `{p}` without a connector manifest (known: {})",
                            manifests.names()
                        ),
                    );
                    continue;
                };
                if members.contains(&manifest.name) {
                    diag.push(file, &ppath, format!("provider `{p}` is listed twice"));
                    continue;
                }
                members.push(manifest.name.clone());
            }
            if raw.providers.is_empty() {
                diag.push(file, &join(&path, "providers"), "a preset needs at least one provider");
            }
            let mut adjustments = BTreeMap::new();
            for (p, value) in raw.overrides {
                let opath = join(&join(&path, "overrides"), &p);
                match members.iter().find(|m| m.as_str() == p) {
                    None => diag.push(file, &opath, format!("provider `{p}` is not in this preset's `providers`")),
                    Some(member) => {
                        if let (Some(layer), Some(manifest)) =
                            (typed::<ProviderLayer>(value, diag, file, &opath), manifests.get(&p))
                        {
                            check_names(&layer, manifest, entities, diag, file, &opath);
                            adjustments.insert(member.clone(), layer);
                        }
                    }
                }
            }
            let mut resolved = BTreeMap::new();
            for member in &members {
                let Some(manifest) = manifests.get(member.as_str()) else {
                    continue;
                };
                let mut layer = manifest.base_layer();
                layer.enabled = Some(true);
                if let Some(p) = platform.get(member.as_str()) {
                    layer.merge(p);
                }
                if let Some(a) = adjustments.get(member) {
                    layer.merge(a);
                }
                check_complete(&layer, manifest, entities, diag, file, &join(&path, member.as_str()));
                resolved.insert(member.clone(), layer);
            }
            let roles = parse_roles(raw.roles, manifests, diag, file, &path);
            for (role, streams) in &roles {
                for (i, text) in streams.iter().enumerate() {
                    let provider = text.split('.').next().unwrap_or_default();
                    if text != "*" && !members.iter().any(|m| m.as_str() == provider) {
                        let at = format!("{}[{i}]", join(&join(&join(&path, "roles"), role.as_str()), "streams"));
                        diag.push(file, &at, format!("provider `{provider}` is not in this preset's `providers`"));
                    }
                }
            }
            let revision = revision_of(&resolved);
            out.insert(
                id.clone(),
                Preset {
                    name: id,
                    title: raw.title,
                    description: raw.description,
                    recommended: raw.recommended,
                    providers: members,
                    resolved,
                    revision,
                    roles,
                },
            );
        }
        if out.is_empty() {
            diag.push(file, "presets", "no presets are declared");
        }
        Self(out)
    }
}
