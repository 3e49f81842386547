//! Configuration: target entities, connector manifests, presets, daemon settings and
//! tenant files. Loading is compiled in two phases — serde builds the raw form (unknown
//! keys rejected), then references are checked — and every problem is reported at
//! once with its file and key path. Nothing here panics on any input.

pub mod control;
mod diag;
mod entities;
mod extends;
mod layer;
mod manifest;
mod manifest_check;
mod manifest_spec;
mod paths;
mod presets;
mod roles;
mod server;
mod settings;
mod source;
mod tenant;
mod webhooks;
mod writes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics};
pub use entities::{Entities, Entity, FieldDef, FieldType};
pub use layer::{
    DEFAULT_SWEEP_MAX_SHARE, FilterAction, FilterOp, FilterSpec, MappingRule, MappingSpec, ProviderLayer,
    RateLimitOverride, RetryOverride, ReverseRule, ReverseSpec, ReverseTable, Sources, StreamLayer, TRANSFORMS,
    reverse_rule, sweep_conflict,
};
pub use manifest::{
    AuthKind, AuthSpec, BUILTIN as BUILTIN_MANIFESTS, BUILTIN_VARIABLES, Category, DEFAULT_CATEGORIES,
    DEFAULT_MAX_PAGES_PER_RUN, DEFAULT_MAX_RUN_SECS, DEFAULT_TOKEN_TTL_SECS, JWT_MAX_TTL_SECS, Manifest, Manifests,
    StreamSpec,
};
pub use manifest_spec::{
    BodyFormat, Conditional, CursorFormat, IncrementalSpec, Method, Pagination, ParamIn, QuotaScope, RateLimitSpec,
    RequestSpec, ResponseAction, ResponseRule, ResumeMode, RetrySpec, StateExpiry, StateInit, StateSpec, StateUse,
    StatusMatch, TombstoneSpec,
};
pub(crate) use paths::SourcePath;
pub use presets::{Preset, Presets, revision_of};
pub use roles::{Denied, RoleGrants, StreamPattern};
pub use server::ServerSettings;
pub use settings::{
    DEFAULT_MAX_RESPONSE_BYTES, DaemonSettings, PoolerSetting, RetentionSettings, SecretSettings, Settings,
    StoreSettings, WebhookSettings, WriteSettings,
};
pub use source::Source;
pub use tenant::{
    Change, DEFAULT_TIMEZONE, Effective, EffectiveProvider, Origin, TenantSpec, check_subdomain, check_timezone,
};
pub use webhooks::{WebhookDelete, WebhookScheme, WebhookSpec};
pub use writes::{
    ConflictCheck, LOOKUP_CREATED_MARGIN, LookupEscape, LookupSpec, PathRoot, WriteOp, WriteRequest, WriteSpec,
    placeholders,
};

use crate::model::TenantId;

/// The configuration files built into the binary, used when no config directory exists.
pub const BUILTIN_ENTITIES: &str = include_str!("../../config/entities.toml");
pub const BUILTIN_PRESETS: &str = include_str!("../../config/presets.toml");

/// Where configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigDir {
    /// A directory with `entities.toml`, `presets.toml`, optional `tributary.toml` and
    /// optional `tenants/*.toml`.
    Dir(PathBuf),
    /// The copies built into the binary.
    Builtin,
}

/// Everything configuration says, validated.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub entities: Entities,
    pub manifests: Manifests,
    pub presets: Presets,
    pub settings: Settings,
    /// Tenant files found in `tenants/`, by file.
    pub tenant_files: Vec<(PathBuf, TenantSpec)>,
}

impl Catalog {
    /// Loads and validates everything; on any problem returns all of them.
    pub fn load(dir: &ConfigDir, connectors: Option<&Path>) -> Result<Self, Diagnostics> {
        let mut diag = Diagnostics::default();
        let (entities_src, presets_src, settings_src) = match dir {
            ConfigDir::Builtin => (
                Some(Source::builtin("config/entities.toml", BUILTIN_ENTITIES)),
                Some(Source::builtin("config/presets.toml", BUILTIN_PRESETS)),
                None,
            ),
            ConfigDir::Dir(d) => {
                if !d.is_dir() {
                    diag.push(&d.display().to_string(), "", "config directory not found");
                    return Err(diag);
                }
                let settings = d.join("tributary.toml");
                (
                    Source::read(&d.join("entities.toml"), &mut diag),
                    Source::read(&d.join("presets.toml"), &mut diag),
                    settings.is_file().then(|| Source::read(&settings, &mut diag)).flatten(),
                )
            }
        };
        let entities = entities_src.map(|s| Entities::load(&s, &mut diag)).unwrap_or_default();
        let manifests = Manifests::load(connectors, &mut diag);
        manifests.check(&entities, &mut diag);
        let presets = presets_src.map(|s| Presets::load(&s, &manifests, &entities, &mut diag)).unwrap_or_default();
        let settings = settings_src.map(|s| Settings::load(&s, &mut diag)).unwrap_or_default();
        manifests.check_categories(&settings.categories(), &mut diag);
        let mut catalog = Self { entities, manifests, presets, settings, tenant_files: Vec::new() };
        if let ConfigDir::Dir(d) = dir {
            let tenants = d.join("tenants");
            if tenants.is_dir() {
                catalog.tenant_files = catalog.load_tenant_files(&tenants, &mut diag);
            }
        }
        diag.finish(catalog)
    }

    fn load_tenant_files(&self, dir: &Path, diag: &mut Diagnostics) -> Vec<(PathBuf, TenantSpec)> {
        let mut seen: BTreeMap<TenantId, PathBuf> = BTreeMap::new();
        let mut out = Vec::new();
        for path in source::toml_files(dir, diag) {
            let Some(src) = Source::read(&path, diag) else {
                continue;
            };
            let Some(spec) = TenantSpec::parse(&src, self, diag) else {
                continue;
            };
            if let Some(first) = seen.get(&spec.id) {
                diag.push(&src.name, "id", format!("duplicate tenant id `{}` (also in {})", spec.id, first.display()));
                continue;
            }
            seen.insert(spec.id.clone(), path.clone());
            out.push((path, spec));
        }
        out
    }

    /// Parses one tenant file against this catalog.
    pub fn tenant_file(&self, path: &Path) -> Result<TenantSpec, Diagnostics> {
        let mut diag = Diagnostics::default();
        let spec = Source::read(path, &mut diag).and_then(|src| TenantSpec::parse(&src, self, &mut diag));
        match spec {
            Some(spec) if diag.is_empty() => Ok(spec),
            _ => Err(diag),
        }
    }
}
