//! Daemon settings (`config/tributary.toml`). Command-line flags and environment
//! variables override what the file says.

use serde::{Deserialize, Serialize};

use super::diag::Diagnostics;
use super::source::{Source, typed};

/// `tributary.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub secrets: SecretSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://tributary.db` (default) or `postgres://…`.
    #[serde(default)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    /// A file holding the 32-byte master key (raw or 64 hex digits).
    #[serde(default)]
    pub master_key_file: Option<std::path::PathBuf>,
}

impl Settings {
    pub fn load(source: &Source, diag: &mut Diagnostics) -> Self {
        let Some(table) = source.parse(diag) else {
            return Self::default();
        };
        typed(toml::Value::Table(table), diag, &source.name, "").unwrap_or_default()
    }
}
