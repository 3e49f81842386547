//! Connector manifests (`connectors/<provider>.toml`): what a provider is, how it
//! authenticates, which streams it serves and its default mappings. Built-in manifests
//! are embedded in the binary; a directory given at run time adds or replaces them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::diag::Diagnostics;
use super::layer::{MappingSpec, ProviderLayer, StreamLayer};
use super::manifest_spec::{
    BodyFormat, IncrementalSpec, Pagination, RateLimitSpec, RequestSpec, ResponseRule, ResumeMode, RetrySpec,
};
use super::source::{Source, toml_files, typed};
use super::webhooks::WebhookSpec;
use super::writes::WriteSpec;
use crate::model::{EntityName, ProviderId, StreamName};

/// The manifests built into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("aptem.toml", include_str!("../../connectors/aptem.toml")),
    ("bud.toml", include_str!("../../connectors/bud.toml")),
    ("onefile.toml", include_str!("../../connectors/onefile.toml")),
    ("hubspot.toml", include_str!("../../connectors/hubspot.toml")),
    ("salesforce.toml", include_str!("../../connectors/salesforce.toml")),
    ("slack.toml", include_str!("../../connectors/slack.toml")),
    ("jira.toml", include_str!("../../connectors/jira.toml")),
    ("google_drive.toml", include_str!("../../connectors/google_drive.toml")),
    ("microsoft.toml", include_str!("../../connectors/microsoft.toml")),
    ("asana.toml", include_str!("../../connectors/asana.toml")),
    ("github.toml", include_str!("../../connectors/github.toml")),
    ("github_app.toml", include_str!("../../connectors/github_app.toml")),
    ("gitlab.toml", include_str!("../../connectors/gitlab.toml")),
    ("gitlab_oauth.toml", include_str!("../../connectors/gitlab_oauth.toml")),
    ("microsoft_delegated.toml", include_str!("../../connectors/microsoft_delegated.toml")),
];

/// What kind of system a provider is (`lms`, `crm`, `work`…): one of the `categories`
/// configuration lists ([`DEFAULT_CATEGORIES`] unless `tributary.toml` says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Category(String);

impl Category {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The provider categories when `tributary.toml` lists none.
pub const DEFAULT_CATEGORIES: &[&str] = &["lms", "crm", "work"];

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
    /// An app's RS256 JWT (signed with its private key) exchanged for an installation
    /// token (GitHub Apps).
    JwtExchange,
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
            Self::JwtExchange => "jwt_exchange",
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
            Self::JwtExchange => &["app_id", "installation_id", "private_key"],
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
    /// Token endpoint (OAuth2 kinds) or session endpoint (`session_token`); a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// How the token request body is encoded (OAuth2: form, Jira: json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_body: Option<BodyFormat>,
    /// Extra token request parameters (e.g. `scope`); templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_params: BTreeMap<String, String>,
    /// Headers of the token request (OneFile: `X-CustomerToken`); templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_headers: BTreeMap<String, String>,
    /// Pointer to the token in the token response; `""` = the raw body (OneFile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_path: Option<String>,
    /// Pointer to the lifetime in seconds in the token response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_path: Option<String>,
    /// Pointer to the token's expiry time (RFC 3339) in the token response (GitHub
    /// `/expires_at`; the default for `jwt_exchange`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_path: Option<String>,
    /// `jwt_exchange`: the JWT's issuer, a template (default `{app_id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    /// `jwt_exchange`: the credential holding the PEM private key (default `private_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_key: Option<String>,
    /// `jwt_exchange`: the JWT's lifetime in seconds (default 540, at most 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_ttl_secs: Option<u64>,
    /// Lifetime to assume when the response states none (Salesforce, OneFile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ttl_secs: Option<u64>,
    /// Pointer to a rotated refresh token in the token response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_path: Option<String>,
    /// Header that carries the credential on every request (default `Authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Query parameter that carries it instead of a header (API keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The header or parameter value; a template (default `Bearer {access_token}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Basic auth user and password; templates over credential fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The longest lifetime a `jwt_exchange` JWT may ask for (GitHub: ten minutes).
pub const JWT_MAX_TTL_SECS: u64 = 600;

impl AuthSpec {
    pub fn required_credentials(&self) -> Vec<String> {
        match &self.credentials {
            Some(c) => c.clone(),
            None => self.kind.default_credentials().iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Whether the kind exchanges credentials for a token first.
    pub fn needs_token(&self) -> bool {
        matches!(
            self.kind,
            AuthKind::Oauth2RefreshToken
                | AuthKind::Oauth2ClientCredentials
                | AuthKind::SessionToken
                | AuthKind::JwtExchange
        )
    }

    pub(super) fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = Vec::new();
        for (key, v) in [
            ("token_url", &self.token_url),
            ("value", &self.value),
            ("username", &self.username),
            ("password", &self.password),
            ("jwt_issuer", &self.jwt_issuer),
        ] {
            if let Some(v) = v {
                out.push((key, v.as_str()));
            }
        }
        out.extend(self.token_params.values().map(|v| ("token_params", v.as_str())));
        out.extend(self.token_headers.values().map(|v| ("token_headers", v.as_str())));
        out
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
    /// Dotted path of the record's id in the provider's record (default `id`).
    #[serde(default = "default_pk")]
    pub primary_key: String,
    /// For a child stream: the stream whose every record it is read for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<StreamName>,
    /// Fields added to each record, e.g. `channel_id = "{parent.id}"`; templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inject: BTreeMap<String, String>,
    /// The full read.
    #[serde(default)]
    pub request: RequestSpec,
    /// How to read only what changed since the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalSpec>,
    /// Conditional requests (`etag` or `last_modified`): the first request of each
    /// walk (per parent record for a child stream) sends the validator of the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditional: Option<super::manifest_spec::Conditional>,
    /// How an interrupted pass continues (`position`, `cursor` or `none`); by default
    /// `position` for a stream that pages or is a child, `none` for a single request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeMode>,
    /// How long a saved position stays usable, in seconds (an API's page tokens expire:
    /// Salesforce `nextRecordsUrl` after about 15 minutes). An older position restarts
    /// the pass. By default a day for API-issued tokens (cursor, next URL, `Link`) and
    /// unlimited for offsets and page numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_ttl_secs: Option<u64>,
    /// Pages one run reads at most before it ends `partial` (the next run continues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages_per_run: Option<u64>,
    /// Seconds one run reads at most before it ends `partial` (the next run continues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_secs: Option<u64>,
    /// Whether a successful response may lack the records field (an API that omits it
    /// on empty pages); otherwise such a response fails the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub records_optional: bool,
    /// Whether the stream lists records the provider deleted (HubSpot `archived=true`)
    /// instead of records to store: each record's key, through the entity's mapping,
    /// marks the stored record of the same entity deleted. Another stream of the
    /// provider must read that entity normally.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletions: bool,
    /// State taken from the response (delta link, sync token) instead of `incremental`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<super::manifest_spec::StateSpec>,
    /// Items that say their record was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstone: Option<super::manifest_spec::TombstoneSpec>,
}

/// Pages one run of a stream reads at most when neither manifest nor tenant says.
pub const DEFAULT_MAX_PAGES_PER_RUN: u64 = 20_000;

/// Seconds one run of a stream reads at most when neither manifest nor tenant says.
pub const DEFAULT_MAX_RUN_SECS: u64 = 6 * 3600;

/// How long a saved position of API-issued page tokens stays usable by default.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 24 * 3600;

impl StreamSpec {
    /// The pagination of the stream's full read.
    pub fn pagination(&self) -> &Pagination {
        self.request.pagination.as_ref().unwrap_or(&Pagination::None)
    }

    /// How an interrupted pass continues, with the default applied.
    pub fn resume_mode(&self) -> ResumeMode {
        self.resume.unwrap_or(if self.parent.is_some() || *self.pagination() != Pagination::None {
            ResumeMode::Position
        } else {
            ResumeMode::None
        })
    }

    /// How long a saved position stays usable, with the default applied (`None`: no limit).
    pub fn position_ttl(&self) -> Option<u64> {
        self.position_ttl_secs.or_else(|| self.pagination().issues_tokens().then_some(DEFAULT_TOKEN_TTL_SECS))
    }
}

fn yes() -> bool {
    true
}

fn default_pk() -> String {
    "id".into()
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
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    auth: AuthSpec,
    #[serde(default)]
    rate_limit: Option<RateLimitSpec>,
    #[serde(default)]
    retry: Option<RetrySpec>,
    #[serde(default)]
    responses: Vec<ResponseRule>,
    #[serde(default)]
    default_schedule: Option<String>,
    streams: BTreeMap<StreamName, StreamSpec>,
    #[serde(default)]
    mappings: BTreeMap<String, BTreeMap<String, MappingSpec>>,
    #[serde(default)]
    writes: BTreeMap<String, WriteSpec>,
    #[serde(default)]
    max_response_bytes: Option<u64>,
    #[serde(default)]
    webhooks: Option<WebhookSpec>,
}

/// A validated connector manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub name: ProviderId,
    pub title: String,
    pub category: Category,
    pub description: Option<String>,
    pub base_url: String,
    /// Default values of template variables (a tenant may override them).
    pub variables: BTreeMap<String, String>,
    /// Headers sent with every request; templates.
    pub headers: BTreeMap<String, String>,
    pub auth: AuthSpec,
    pub rate_limit: Option<RateLimitSpec>,
    /// Bounds of the retry-policy overrides presets and tenants may set.
    pub retry: Option<RetrySpec>,
    /// Response classification rules, tried in order before the defaults.
    pub responses: Vec<ResponseRule>,
    pub default_schedule: Option<String>,
    pub streams: BTreeMap<StreamName, StreamSpec>,
    pub mappings: BTreeMap<String, BTreeMap<String, MappingSpec>>,
    /// Write operations per entity (declared; executed by write support).
    pub writes: BTreeMap<String, WriteSpec>,
    /// Largest response body read from this provider (default: the daemon's
    /// `max_response_bytes`, 64 MiB).
    pub max_response_bytes: Option<u64>,
    /// How the provider signs the webhooks it sends, and what they trigger.
    pub webhooks: Option<WebhookSpec>,
    /// Where it was loaded from.
    pub source: String,
}

/// Template variables every request may use without declaring them.
pub const BUILTIN_VARIABLES: &[&str] = &["base_url", "subdomain", "access_token", "cursor", "state"];

impl Manifest {
    /// Parses one manifest; every problem is reported against `source.name` with its key path.
    /// A variant (`extends`) is laid over its base from the file's directory or the
    /// built-ins.
    pub fn parse(source: &Source, diag: &mut Diagnostics) -> Option<Self> {
        let dir = Path::new(&source.name).parent().filter(|_| !source.name.starts_with("<built-in>"));
        Self::parse_with(source, &|name| super::extends::base_table(name, dir), diag)
    }

    /// Parses one manifest, taking the base a variant `extends` from `lookup`.
    fn parse_with(
        source: &Source,
        lookup: &dyn Fn(&str) -> Option<toml::Table>,
        diag: &mut Diagnostics,
    ) -> Option<Self> {
        let file = source.name.as_str();
        let table = super::extends::resolve(source, source.parse(diag)?, lookup, diag)?;
        let raw: RawManifest = typed(toml::Value::Table(table), diag, file, "")?;
        let m = Self {
            name: raw.name,
            title: raw.title,
            category: raw.category,
            description: raw.description,
            base_url: raw.base_url,
            variables: raw.variables,
            headers: raw.headers,
            auth: raw.auth,
            rate_limit: raw.rate_limit,
            retry: raw.retry,
            responses: raw.responses,
            default_schedule: raw.default_schedule,
            streams: raw.streams,
            mappings: raw.mappings,
            writes: raw.writes,
            max_response_bytes: raw.max_response_bytes,
            webhooks: raw.webhooks,
            source: source.name.clone(),
        };
        m.check_shape(diag);
        Some(m)
    }

    /// Variables a tenant must or may supply: placeholders of the base URL and declared
    /// `[variables]`, except built-ins, credentials and what the token response provides.
    pub fn tenant_variables(&self) -> Vec<String> {
        let credentials = self.auth.required_credentials();
        let mut out: Vec<String> = Vec::new();
        let candidates = template_variables(&self.base_url).into_iter().chain(self.variables.keys().cloned());
        for v in candidates {
            let skip = BUILTIN_VARIABLES.contains(&v.as_str())
                || self.auth.provides.contains(&v)
                || credentials.contains(&v)
                || out.contains(&v);
            if !skip {
                out.push(v);
            }
        }
        out
    }

    /// Tenant variables without a default: the tenant must give them.
    pub fn required_variables(&self) -> Vec<String> {
        self.tenant_variables().into_iter().filter(|v| !self.variables.contains_key(v)).collect()
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
                        max_pages_per_run: s.max_pages_per_run,
                        max_run_secs: s.max_run_secs,
                        ..StreamLayer::default()
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
        let lookup = |name: &str| super::extends::base_table(name, dir);
        for (name, text) in BUILTIN {
            out.add(&Source::builtin(&format!("connectors/{name}"), text), &lookup, diag);
        }
        if let Some(dir) = dir {
            for path in toml_files(dir, diag) {
                if let Some(source) = Source::read(&path, diag) {
                    out.add(&source, &lookup, diag);
                }
            }
        }
        out
    }

    fn add(&mut self, source: &Source, lookup: &dyn Fn(&str) -> Option<toml::Table>, diag: &mut Diagnostics) {
        if let Some(m) = Manifest::parse_with(source, lookup, diag) {
            let stem = Path::new(&source.name).file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if stem != m.name.as_str() {
                diag.push(&source.name, "name", format!("`{}` does not match the file name `{stem}.toml`", m.name));
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
        self.0.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Checks each manifest's `category` against the configured `categories`.
    pub fn check_categories(&self, categories: &[String], diag: &mut Diagnostics) {
        for m in self.0.values() {
            if !categories.iter().any(|c| c == m.category.as_str()) {
                diag.push(
                    &m.source,
                    "category",
                    format!(
                        "unknown category `{}` (known: {}; `categories` in tributary.toml lists them)",
                        m.category.as_str(),
                        categories.join(", ")
                    ),
                );
            }
        }
    }

    /// Checks the manifests' entity references and default mappings against `entities`.
    pub fn check(&self, entities: &super::entities::Entities, diag: &mut Diagnostics) {
        for m in self.0.values() {
            // The base layer carries every stream's entity: `check_names` reports an
            // unknown one at `streams.<name>.entity`, once.
            let layer = m.base_layer();
            super::layer::check_names(&layer, m, entities, diag, &m.source, "");
            m.check_writes(entities, diag);
        }
    }
}
