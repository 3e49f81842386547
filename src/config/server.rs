//! `[server]`: the daemon's HTTP listener — TLS, and the limits of the `/api/v1` API.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::diag::Diagnostics;

/// `[server]` in `tributary.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// A PEM certificate chain: with `tls_key`, the listener (`daemon.http_listen`)
    /// serves HTTPS itself; both files are read again on SIGHUP. Relative paths are
    /// relative to the daemon's working directory.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Requests with a missing or bad API key accepted from one client address per
    /// minute; beyond it the address is answered 429 until the minute ends.
    pub api_bad_keys_per_minute: u32,
    /// Largest request body the API reads.
    pub api_max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self { tls_cert: None, tls_key: None, api_bad_keys_per_minute: 20, api_max_body_bytes: 1024 * 1024 }
    }
}

impl ServerSettings {
    pub(super) fn check(&self, file: &str, diag: &mut Diagnostics) {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => diag.push(file, "server.tls_key", "is needed with server.tls_cert"),
            (None, Some(_)) => diag.push(file, "server.tls_cert", "is needed with server.tls_key"),
            _ => {}
        }
        if self.api_bad_keys_per_minute == 0 {
            diag.push(file, "server.api_bad_keys_per_minute", "must be at least 1");
        }
        if self.api_max_body_bytes == 0 {
            diag.push(file, "server.api_max_body_bytes", "must be at least 1");
        }
    }
}
