//! Reload (SIGHUP, `ctl reload`): the configuration is loaded and validated again and
//! the jobs reconciled with it; a bad configuration is rejected and the old one keeps
//! running.

use std::sync::Arc;

use super::{Daemon, FIXED_JITTER, Reconciled, reconcile};
use crate::config::Catalog;
use crate::telemetry::ConfigReload;

impl Daemon {
    /// Loads the configuration again; a bad one is rejected and the old one keeps running.
    pub(super) async fn reload(&mut self) -> Result<Reconciled, String> {
        match Catalog::load(&self.config_dir, self.connectors.as_deref()) {
            Err(d) => {
                let text = d.to_string();
                ConfigReload { ok: false, detail: &text }.emit(&self.metrics);
                self.config_error = Some(text.clone());
                self.remember(None, None, None, format!("configuration rejected: {text}"));
                Err(text)
            }
            Ok(catalog) => {
                // Who may use the control socket follows the new configuration (and the
                // system's users and groups as they are now).
                let access = match self.access_of(&catalog) {
                    Ok(access) => access,
                    Err(text) => {
                        ConfigReload { ok: false, detail: &text }.emit(&self.metrics);
                        self.config_error = Some(text.clone());
                        self.remember(None, None, None, format!("configuration rejected: {text}"));
                        return Err(text);
                    }
                };
                let catalog = Arc::new(catalog);
                let result =
                    reconcile(&catalog, &self.store, self.settings.apply_tenant_files, FIXED_JITTER, &self.metrics)
                        .await;
                match result {
                    Ok(counts) => {
                        *self.shared_catalog.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Arc::clone(&catalog);
                        self.catalog = catalog;
                        self.access = access;
                        self.config_error = None;
                        ConfigReload { ok: true, detail: &counts.jobs.to_string() }.emit(&self.metrics);
                        for e in &counts.errors {
                            self.remember(None, None, None, e.clone());
                        }
                        self.reload_tls();
                        self.wake = true;
                        Ok(counts)
                    }
                    Err(e) => {
                        let text = format!("reconciling jobs failed: {e}");
                        ConfigReload { ok: false, detail: &text }.emit(&self.metrics);
                        self.config_error = Some(text.clone());
                        Err(text)
                    }
                }
            }
        }
    }

    /// The HTTP listener's certificate and key, read again; a pair that does not load
    /// leaves the one in force.
    fn reload_tls(&mut self) {
        let Some(tls) = self.tls.clone() else { return };
        match tls.reload(&self.catalog.settings.server) {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => {
                tracing::warn!("TLS certificate not reloaded (the previous one stays): {e}");
                self.remember(None, None, None, format!("TLS certificate not reloaded: {e}"));
            }
        }
    }
}
