//! A connection check: authenticate and read the first page of each stream without
//! storing anything — no records, runs, jobs or cursors (a token obtained or refreshed
//! on the way is stored, as in any run, since the provider may rotate the refresh token).

use std::collections::BTreeMap;

use serde::Serialize;

use super::sink::StoreSink;
use super::{SyncError, Syncer};
use crate::engine::{EngineError, StreamReader};
use crate::http::Session;
use crate::http::auth::AuthState;
use crate::mapping::{CompiledMapping, MapResult};
use crate::model::{Owner, ProviderId, StreamName, TenantId, UserId};
use crate::tenants::Tenants;

/// What reading one stream's first page showed.
#[derive(Debug, Clone, Serialize)]
pub struct StreamProbe {
    pub stream: StreamName,
    /// The target entity a sync would write.
    pub entity: Option<String>,
    /// Records on the first page.
    pub records: usize,
    /// The stream's size as the API reports it, when it does.
    pub total: Option<u64>,
    /// Target fields the first record maps to a value.
    pub fields: Vec<String>,
    /// Why the first record would not be stored (filtered or dead-lettered), if so.
    pub first_record: Option<String>,
    pub http_calls: u64,
    /// Why reading failed; `None` when it worked.
    pub error: Option<String>,
    /// The kind of failure (`auth`, `client`, `transient`, `data`…).
    pub error_class: Option<String>,
}

impl Syncer<'_> {
    /// Authenticates `owner`'s connection (the company's with `None`) to `provider` at
    /// `tenant` and reads the first page of each of `streams`, storing nothing but a
    /// token obtained or refreshed on the way.
    pub async fn probe(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Option<&UserId>,
        streams: &[StreamName],
    ) -> Result<Vec<StreamProbe>, SyncError> {
        let view = Tenants::new(self.catalog, self.store, "probe").require(tenant).await?;
        let effective = view
            .effective
            .providers
            .get(provider)
            .filter(|p| p.config.is_enabled())
            .ok_or_else(|| SyncError::ProviderDisabled { tenant: tenant.clone(), provider: provider.clone() })?;
        let manifest =
            self.catalog.manifests.get(provider.as_str()).ok_or_else(|| SyncError::NoManifest(provider.clone()))?;
        let config = &effective.config;
        let connection =
            self.store.get_connection(tenant, provider, Owner::of(owner)).await?.ok_or_else(|| match owner {
                None => SyncError::ProviderDisabled { tenant: tenant.clone(), provider: provider.clone() },
                Some(user) => SyncError::NoUserConnection {
                    tenant: tenant.clone(),
                    provider: provider.clone(),
                    user: user.clone(),
                },
            })?;
        if !connection.has_credentials {
            return Err(SyncError::NotConnected {
                tenant: tenant.clone(),
                provider: provider.clone(),
                status: connection.status,
                hint: "; store credentials with `tributary credentials set`",
            });
        }
        let sink = StoreSink {
            store: self.store,
            key: self.key,
            tenant,
            provider,
            owner: Owner::of(owner),
            metrics: &self.metrics,
        };
        let conn = self.auth.connection(&format!(
            "{}/{}/{}/{}",
            self.store.instance_id(),
            tenant,
            provider,
            sink.owner.as_str()
        ));
        let mut vars: BTreeMap<String, String> = manifest.variables.clone();
        vars.insert("subdomain".into(), view.tenant.subdomain.clone());
        vars.extend(config.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        let base_url = config.base_url.clone().unwrap_or_else(|| manifest.base_url.clone());
        let mut out = Vec::with_capacity(streams.len());
        for stream in streams {
            let entity = config.streams.get(stream.as_str()).and_then(|s| s.entity.clone());
            let mut probe = StreamProbe {
                stream: stream.clone(),
                entity: entity.clone(),
                records: 0,
                total: None,
                fields: Vec::new(),
                first_record: None,
                http_calls: 0,
                error: None,
                error_class: None,
            };
            let mut auth = AuthState::shared(manifest.auth.clone(), conn.clone());
            auth.margin = self.token_margin;
            let mut session = Session {
                client: self.clients.0.clone(),
                token_client: self.clients.1.clone(),
                auth,
                rules: manifest.responses.clone(),
                retry: self.retry.clone(),
                stats: Default::default(),
                sink: Some(&sink),
                quota: self.limits.quota(provider.as_str(), tenant.as_str(), manifest.rate_limit.as_ref()),
                observer: None,
            };
            session.retry.max_response_bytes = manifest.max_response_bytes.unwrap_or(self.retry.max_response_bytes);
            session.retry.origin = Some(format!("provider `{provider}` stream `{stream}`"));
            let read = async {
                let mut reader = StreamReader::new(manifest, stream, &base_url, vars.clone(), None, true)?;
                reader.next_page(&mut session).await
            };
            match read.await {
                Ok(page) => {
                    probe.total = page.as_ref().and_then(|p| p.total);
                    let page = page.map(|p| p.records).unwrap_or_default();
                    probe.records = page.len();
                    if let (Some(first), Some(entity)) = (page.first(), &entity) {
                        self.describe_first(&mut probe, first, entity, config);
                    }
                }
                Err(e) => {
                    let class = match &e {
                        EngineError::Http(h) => h.class(),
                        EngineError::UnknownStream(_) => crate::model::ErrorClass::Config,
                        _ => crate::model::ErrorClass::Data,
                    };
                    probe.error = Some(e.to_string());
                    probe.error_class = Some(class.as_str().to_owned());
                }
            }
            probe.http_calls = session.stats.http_calls;
            out.push(probe);
        }
        Ok(out)
    }

    /// Maps the first record as a sync would and notes which fields get a value.
    fn describe_first(
        &self,
        probe: &mut StreamProbe,
        first: &serde_json::Value,
        entity: &str,
        config: &crate::config::ProviderLayer,
    ) {
        let Some(def) = self.catalog.entities.get(entity) else {
            probe.first_record = Some(format!("unknown entity `{entity}`"));
            return;
        };
        let empty = BTreeMap::new();
        let fields = config.mappings.get(entity).unwrap_or(&empty);
        let mapping = match CompiledMapping::compile(def, fields, &config.filters, &config.tags) {
            Ok(m) => m,
            Err(e) => {
                probe.first_record = Some(e.to_string());
                return;
            }
        };
        match mapping.apply(first) {
            MapResult::Mapped(m) => {
                if let serde_json::Value::Object(map) = &m.data {
                    probe.fields = map.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.clone()).collect();
                }
            }
            MapResult::Filtered { filter } => probe.first_record = Some(format!("dropped by filter `{filter}`")),
            MapResult::DeadLetter { reason } => probe.first_record = Some(format!("would be dead-lettered: {reason}")),
        }
    }
}
