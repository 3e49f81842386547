//! Concurrency caps: which tenants and providers have as many runs in flight as they
//! may (`per_tenant`, `per_provider`); the claim leaves their jobs alone.

use std::collections::BTreeMap;

use super::Daemon;
use crate::model::{ProviderId, TenantId};

impl Daemon {
    /// Tenants and providers whose concurrency caps are reached.
    pub(super) fn at_capacity(&self) -> (Vec<TenantId>, Vec<ProviderId>) {
        let mut per_tenant: BTreeMap<&TenantId, usize> = BTreeMap::new();
        let mut per_provider: BTreeMap<&ProviderId, usize> = BTreeMap::new();
        for r in self.running.values() {
            *per_tenant.entry(&r.tenant).or_default() += 1;
            *per_provider.entry(&r.provider).or_default() += 1;
        }
        (
            per_tenant.into_iter().filter(|(_, n)| *n >= self.settings.per_tenant).map(|(t, _)| t.clone()).collect(),
            per_provider
                .into_iter()
                .filter(|(_, n)| *n >= self.settings.per_provider)
                .map(|(p, _)| p.clone())
                .collect(),
        )
    }
}
