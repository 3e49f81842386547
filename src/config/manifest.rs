//! Connector manifests (`connectors/<provider>.toml`): what a provider is, how it
//! authenticates, which streams it serves and its default mappings. Built-in manifests
//! are embedded in the binary; a directory given at run time adds or replaces them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::diag::{Diagnostics, join};
use super::layer::{MappingSpec, ProviderLayer, StreamLayer};
use super::source::{Source, toml_files, typed};
use crate::model::{EntityName, ProviderId, StreamName};

/// The manifests built into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("aptem.toml", include_str!("../../connectors/aptem.toml")),
    ("bud.toml", include_str!("../../connectors/bud.toml")),
    (
        "onefile.toml",
        include_str!("../../connectors/onefile.toml"),
    ),
    (
        "hubspot.toml",
        include_str!("../../connectors/hubspot.toml"),
    ),
    (
        "salesforce.toml",
        include_str!("../../connectors/salesforce.toml"),
    ),
    ("slack.toml", include_str!("../../connectors/slack.toml")),
    ("jira.toml", include_str!("../../connectors/jira.toml")),
];

/// What kind of system a provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Lms,
    Crm,
    Work,
}

/// How a provider authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// OAuth2 refresh-token grant.
    Oauth2RefreshToken,
    /// OAuth2 client-credentials grant.
    Oauth2ClientCredentials,
    /// A static key in a header or query parameter.
    ApiKey,
    /// HTTP Basic.
    Basic,
    /// A static bearer token.
    Bearer,
    /// A key exchanged for a session token (e.g. OneFile).
    SessionToken,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oauth2RefreshToken => "oauth2_refresh_token",
            Self::Oauth2ClientCredentials => "oauth2_client_credentials",
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
            Self::Bearer => "bearer",
            Self::SessionToken => "session_token",
        }
    }

    /// Credential fields an operator must supply when the manifest names none.
    pub fn default_credentials(self) -> &'static [&'static str] {
        match self {
            Self::Oauth2RefreshToken => &["client_id", "client_secret", "refresh_token"],
            Self::Oauth2ClientCredentials => &["client_id", "client_secret"],
            Self::ApiKey | Self::SessionToken => &["api_key"],
            Self::Basic => &["username", "password"],
            Self::Bearer => &["token"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    pub kind: AuthKind,
    /// Names of the credential fields this provider needs (JSON keys of `credentials set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<String>>,
    /// Base-URL variables the token response supplies (Salesforce `instance_url`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provides: Vec<String>,
}

impl AuthSpec {
    pub fn required_credentials(&self) -> Vec<String> {
        match &self.credentials {
            Some(c) => c.clone(),
            None => self
                .kind
                .default_credentials()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// One stream a provider serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// The target entity its records become unless a preset or tenant says otherwise.
    pub entity: EntityName,
    /// Whether the stream is synced when nothing says otherwise.
    #[serde(default = "yes")]
    pub enabled_by_default: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: ProviderId,
    title: String,
    category: Category,
    #[serde(default)]
    description: Option<String>,
    base_url: String,
    auth: AuthSpec,
    #[serde(default)]
    default_schedule: Option<String>,
    streams: BTreeMap<StreamName, StreamSpec>,
    #[serde(default)]
    mappings: BTreeMap<String, BTreeMap<String, MappingSpec>>,
}

/// A validated connector manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub name: ProviderId,
    pub title: String,
    pub category: Category,
    pub description: Option<String>,
    pub base_url: String,
    pub auth: AuthSpec,
    pub default_schedule: Option<String>,
    pub streams: BTreeMap<StreamName, StreamSpec>,
    pub mappings: BTreeMap<String, BTreeMap<String, MappingSpec>>,
    /// Where it was loaded from.
    pub source: String,
}

impl Manifest {
    /// Parses one manifest; problems are reported against `source.name`.
    pub fn parse(source: &Source, diag: &mut Diagnostics) -> Option<Self> {
        let file = source.name.as_str();
        let table = source.parse(diag)?;
        let raw: RawManifest = typed(toml::Value::Table(table), diag, file, "")?;
        if raw.streams.is_empty() {
            diag.push(file, "streams", "a connector needs at least one stream");
        }
        for var in template_variables(&raw.base_url) {
            if var.is_empty() {
                diag.push(file, "base_url", "empty `{}` placeholder");
            }
        }
        if let Some(creds) = &raw.auth.credentials
            && creds.is_empty()
        {
            diag.push(
                file,
                "auth.credentials",
                "list at least one credential field",
            );
        }
        Some(Self {
            name: raw.name,
            title: raw.title,
            category: raw.category,
            description: raw.description,
            base_url: raw.base_url,
            auth: raw.auth,
            default_schedule: raw.default_schedule,
            streams: raw.streams,
            mappings: raw.mappings,
            source: source.name.clone(),
        })
    }

    /// The variables its base URL needs (`{subdomain}` → `subdomain`).
    pub fn variables(&self) -> Vec<String> {
        template_variables(&self.base_url)
    }

    /// The base-URL variables a tenant must supply (those the token response does not).
    pub fn tenant_variables(&self) -> Vec<String> {
        self.variables()
            .into_iter()
            .filter(|v| !self.auth.provides.contains(v))
            .collect()
    }

    /// The manifest's own defaults as the bottom configuration layer.
    pub fn base_layer(&self) -> ProviderLayer {
        ProviderLayer {
            schedule: self.default_schedule.clone(),
            streams: self
                .streams
                .iter()
                .map(|(name, s)| {
                    let layer = StreamLayer {
                        enabled: Some(s.enabled_by_default),
                        entity: Some(s.entity.to_string()),
                        schedule: None,
                    };
                    (name.to_string(), layer)
                })
                .collect(),
            mappings: self.mappings.clone(),
            ..ProviderLayer::default()
        }
    }
}

/// `{name}` placeholders of a template, in order.
pub fn template_variables(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    out
}

/// The provider catalog: built-in manifests plus those of a run-time directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Manifests(BTreeMap<ProviderId, Manifest>);

impl Manifests {
    /// Loads the built-in manifests, then every `*.toml` of `dir` (adding or replacing).
    pub fn load(dir: Option<&Path>, diag: &mut Diagnostics) -> Self {
        let mut out = Self::default();
        for (name, text) in BUILTIN {
            out.add(&Source::builtin(&format!("connectors/{name}"), text), diag);
        }
        if let Some(dir) = dir {
            for path in toml_files(dir, diag) {
                if let Some(source) = Source::read(&path, diag) {
                    out.add(&source, diag);
                }
            }
        }
        out
    }

    fn add(&mut self, source: &Source, diag: &mut Diagnostics) {
        if let Some(m) = Manifest::parse(source, diag) {
            let stem = Path::new(&source.name)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            if stem != m.name.as_str() {
                diag.push(
                    &source.name,
                    "name",
                    format!("`{}` does not match the file name `{stem}.toml`", m.name),
                );
            }
            self.0.insert(m.name.clone(), m);
        }
    }

    pub fn get(&self, name: &str) -> Option<&Manifest> {
        self.0.get(name)
    }

    /// Adds or replaces one manifest.
    pub fn insert(&mut self, manifest: Manifest) {
        self.0.insert(manifest.name.clone(), manifest);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Manifest> {
        self.0.values()
    }

    pub fn names(&self) -> String {
        self.0
            .keys()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks the manifests' entity references and default mappings against `entities`.
    pub fn check(&self, entities: &super::entities::Entities, diag: &mut Diagnostics) {
        for m in self.0.values() {
            for (stream, spec) in &m.streams {
                if entities.get(spec.entity.as_str()).is_none() {
                    let path = join(&join("streams", stream.as_str()), "entity");
                    diag.push(
                        &m.source,
                        &path,
                        format!(
                            "unknown entity `{}` (known: {})",
                            spec.entity,
                            entities.names()
                        ),
                    );
                }
            }
            let layer = m.base_layer();
            super::layer::check_names(&layer, m, entities, diag, &m.source, "");
        }
    }
}
