//! The write executor: one outbox write sent to its provider through the connection's
//! session (the read path's token state and refresh, rate-limit quota, response rules and
//! retries of transient errors), and what the answer means for the write
//! ([`WriteSettle`]); and the daemon's worker that claims due writes under a lease,
//! executes them concurrently (bounded) and settles each.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Syncer;
use super::sink::StoreSink;
use crate::config::{BUILTIN_VARIABLES, Catalog, ConflictCheck, LOOKUP_CREATED_MARGIN, WriteOp};
use crate::http::template::Vars;
use crate::http::{Body, HttpError, RateLimiters, Request, RetryPolicy};
use crate::mapping::{
    CompiledWrite, PreparedRequest, build_request, http_date, is_newer, normalized_version, provider_error, value_at,
    version_target, write_result,
};
use crate::model::{ConnectionStatus, ErrorClass, Owner};
use crate::secrets::MasterKey;
use crate::store::{RecordEffect, Store, WriteRow, WriteSettle};
use crate::telemetry::{HttpMetrics, Metrics, NeedsReauth, WriteLabels};
use crate::tenants::Tenants;

/// A write waits this long before it is tried again when its connection cannot be used
/// (no credentials, needs re-authorization) or the store failed.
const NOT_READY_RETRY: Duration = Duration::from_secs(60);
/// The first wait after transient failures the session's own retries (which honour
/// `Retry-After`) did not overcome; it doubles with every attempt, up to
/// [`MAX_TRANSIENT_RETRY`].
const TRANSIENT_RETRY: Duration = Duration::from_secs(30);
const MAX_TRANSIENT_RETRY: Duration = Duration::from_secs(3600);
/// The first wait after a create or comment failed ambiguously.
const AMBIGUOUS_RETRY: Duration = Duration::from_secs(2);

/// The wait before the next attempt of a write that has had `attempts` attempts.
fn backoff(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.clamp(0, 7)).unwrap_or(7);
    (TRANSIENT_RETRY * 2u32.pow(doublings)).min(MAX_TRANSIENT_RETRY)
}

/// The wait before the next attempt of a create or comment whose answer was lost (it
/// may have been applied): short at first, since the next attempt looks the create up
/// before sending it again, then growing as [`backoff`] does.
fn ambiguous_backoff(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.clamp(0, 11)).unwrap_or(11);
    (AMBIGUOUS_RETRY * 2u32.pow(doublings)).min(backoff(attempts))
}

fn later(after: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(after).unwrap_or_else(|_| chrono::Duration::seconds(60))
}

fn failed(class: ErrorClass, message: impl Into<String>) -> WriteSettle {
    WriteSettle::Failed { status: None, message: message.into(), error_class: class.as_str().to_owned() }
}

fn retry(class: ErrorClass, after: Duration, status: Option<u16>, message: impl Into<String>) -> WriteSettle {
    WriteSettle::Retry { at: later(after), status, message: message.into(), error_class: class.as_str().to_owned() }
}

/// What one attempt of a write came to: how it is settled, and what a success changes
/// in the stored record (read-your-writes).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    pub settle: WriteSettle,
    pub effect: Option<RecordEffect>,
}

impl From<WriteSettle> for WriteOutcome {
    fn from(settle: WriteSettle) -> Self {
        Self { settle, effect: None }
    }
}

/// The request to send, with manifest variables, auth values and the base URL filled.
fn to_request(
    prepared: PreparedRequest,
    vars: &Vars<'_>,
    base: &str,
    extra: Vec<(String, String)>,
) -> Result<Request, WriteSettle> {
    let render = |t: &str| vars.render(t).map_err(|e| failed(ErrorClass::Config, e.to_string()));
    let path = render(&prepared.path)?;
    let mut headers = Vec::new();
    for (k, v) in &prepared.headers {
        headers.push((k.clone(), render(v)?));
    }
    headers.extend(extra);
    let mut query = Vec::new();
    for (k, v) in prepared.query {
        query.push((k, render(&v)?));
    }
    let body = prepared.body.map(|b| match prepared.format {
        crate::config::BodyFormat::Form => Body::Form(form_fields(&b)),
        crate::config::BodyFormat::Json => Body::Json(b),
    });
    Ok(Request {
        method: prepared.method,
        url: format!("{}{path}", base.trim_end_matches('/')),
        query,
        headers,
        body,
        shape: None,
        rules: None,
    })
}

impl Syncer<'_> {
    /// Sends `write` to its provider and says how the attempt ended: 2xx (and no
    /// `ok: false`) succeeded with the provider's id and version, and the stored record's
    /// change; a validation error (400/404/409/422 and other permanent 4xx) failed with
    /// the provider's message; a 412, or a provider version newer than the base version
    /// (`conflict = "read"`), is a conflict; rate limits, 5xx and timeouts the session did
    /// not overcome are retried later. A create claimed before is first looked up (the
    /// manifest's `lookup`): found, it succeeds without being sent again. A write that
    /// cannot be prepared (provider not enabled, operation not declared, a record the
    /// mapping cannot reverse) fails without a request.
    pub async fn execute_write(&self, write: &WriteRow) -> WriteOutcome {
        match self.try_write(write).await {
            Ok(outcome) => outcome,
            Err(settle) => settle.into(),
        }
    }

    async fn try_write(&self, w: &WriteRow) -> Result<WriteOutcome, WriteSettle> {
        let tenants = Tenants::new(self.catalog, self.store, "writes");
        let view = tenants.require(&w.tenant_id).await.map_err(|e| failed(ErrorClass::Config, e.to_string()))?;
        let provider =
            view.effective.providers.get(&w.provider).filter(|p| p.config.is_enabled()).ok_or_else(|| {
                failed(
                    ErrorClass::Config,
                    format!("provider `{}` is not enabled for tenant `{}`", w.provider, w.tenant_id),
                )
            })?;
        let config = &provider.config;
        let manifest = self
            .catalog
            .manifests
            .get(w.provider.as_str())
            .ok_or_else(|| failed(ErrorClass::Config, format!("no connector manifest for `{}`", w.provider)))?;
        let entity = w.entity.as_str();
        let spec = manifest.writes.get(entity).ok_or_else(|| {
            failed(ErrorClass::Config, format!("`{}` declares no writes for entity `{entity}`", w.provider))
        })?;
        let req = spec.op(w.op).ok_or_else(|| {
            failed(
                ErrorClass::Config,
                format!("`{}` declares no `{}` for entity `{entity}`", w.provider, w.op.as_str()),
            )
        })?;
        let def = self
            .catalog
            .entities
            .get(entity)
            .ok_or_else(|| failed(ErrorClass::Config, format!("unknown entity `{entity}`")))?;
        let empty = BTreeMap::new();
        let fields = config.mappings.get(entity).unwrap_or(&empty);
        let mut variables: Vec<String> = manifest.tenant_variables();
        variables.extend(manifest.variables.keys().cloned());
        variables.extend(manifest.auth.provides.iter().cloned());
        variables.extend(BUILTIN_VARIABLES.iter().map(|v| (*v).to_owned()));
        let compiled = CompiledWrite::compile(def, fields, spec, variables)
            .map_err(|e| failed(ErrorClass::Config, e.to_string()))?;
        let payload = w.payload_json();
        let prepared = build_request(&compiled, w.op, &payload, w.external_id.as_deref())
            .map_err(|e| failed(ErrorClass::Data, e.to_string()))?;

        let owner = Owner::of(w.owner_user.as_ref());
        let connection = self
            .store
            .get_connection(&w.tenant_id, &w.provider, owner)
            .await
            .map_err(|e| retry(ErrorClass::Store, NOT_READY_RETRY, None, e.to_string()))?
            .ok_or_else(|| {
                failed(ErrorClass::Config, format!("no connection {}/{} ({})", w.tenant_id, w.provider, owner.as_str()))
            })?;
        if matches!(
            connection.status,
            ConnectionStatus::Disabled | ConnectionStatus::Pending | ConnectionStatus::NeedsReauth
        ) || !connection.has_credentials
        {
            let message = format!(
                "connection {}/{} is {}; the write waits for credentials (`tributary credentials set`)",
                w.tenant_id, w.provider, connection.status
            );
            return Err(retry(ErrorClass::Auth, NOT_READY_RETRY, None, message));
        }

        let mut vars: BTreeMap<String, String> = manifest.variables.clone();
        vars.insert("subdomain".into(), view.tenant.subdomain.clone());
        vars.extend(config.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        let base_url = config.base_url.clone().unwrap_or_else(|| manifest.base_url.clone());
        let sink = StoreSink {
            store: self.store,
            key: self.key,
            tenant: &w.tenant_id,
            provider: &w.provider,
            owner,
            metrics: &self.metrics,
        };
        let observer = HttpMetrics::new(&self.metrics, w.provider.as_str());
        let origin = format!("provider `{}` write `{}`", w.provider, w.id);
        let mut session = self
            .session(origin, manifest, config, &sink, &observer)
            .map_err(|e| retry(ErrorClass::Config, NOT_READY_RETRY, None, e.message))?;
        session.for_writes();

        // Authenticate first: the base URL may need what the token response provides.
        let with = |session: &crate::http::Session<'_>| {
            let mut v = Vars::default();
            for (k, val) in vars.iter().chain(session.auth.provided.iter()) {
                v.set(k, val.clone());
            }
            v
        };
        let mut pre = with(&session);
        if let Ok(base) = pre.render(&base_url) {
            pre.set("base_url", base);
        }
        if let Err(e) = session.auth.ensure(&session.token_client, &pre, session.sink).await {
            return Err(self.http_failure(&e, w).await);
        }
        let mut vars = with(&session);
        let base = vars.render(&base_url).map_err(|e| failed(ErrorClass::Config, e.to_string()))?;
        vars.set("base_url", base.clone());
        let base = spec.path_root.root(&base);

        // A create claimed before may have reached the provider: look for it first.
        if w.op == WriteOp::Create
            && (w.claims > 1 || w.attempts > 0)
            && let Some(lookup) = &spec.lookup
            && let Some(request) =
                compiled.lookup_request(&payload).map_err(|e| failed(ErrorClass::Data, e.to_string()))?
        {
            let request = to_request(request, &vars, &base, Vec::new())?;
            let response = match session.send(&request, &vars).await {
                Ok(r) => r,
                Err(e) => return Err(self.http_failure(&e, w).await),
            };
            let json = response.json.unwrap_or(Value::Null);
            let total = lookup.total.as_deref().and_then(|p| json.pointer(p)).and_then(Value::as_u64);
            if let Some(n) = total.filter(|n| *n > 1) {
                return Ok(WriteSettle::Failed {
                    status: Some(response.status),
                    message: format!(
                        "the create may have been applied, and {n} objects match its `{}`: not guessed; \
                         check the provider and cancel or retry",
                        lookup.by
                    ),
                    error_class: ErrorClass::Data.as_str().to_owned(),
                }
                .into());
            }
            let created = lookup.created.as_deref().and_then(|p| json.pointer(p)).and_then(crate::mapping::text_of);
            let margin = chrono::Duration::from_std(LOOKUP_CREATED_MARGIN).unwrap_or_default();
            let someone_elses = created
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(&normalized_version(&c)).ok())
                .is_some_and(|c| c < w.created_at - margin);
            if someone_elses {
                tracing::info!(write = %w.id, "the object found by its `{}` predates the write: sending the create", lookup.by);
            } else if let Some(id) = json.pointer(&lookup.id).and_then(crate::mapping::text_of) {
                let version = lookup.version.as_deref().and_then(|p| json.pointer(p)).and_then(crate::mapping::text_of);
                tracing::info!(write = %w.id, "an earlier attempt of the create was applied: found by its `{}`", lookup.by);
                let effect = record_effect(
                    w,
                    &compiled,
                    def,
                    spec,
                    fields,
                    &payload,
                    &prepared.skipped,
                    &id,
                    version.as_deref(),
                );
                return Ok(WriteOutcome {
                    settle: WriteSettle::Succeeded {
                        status: Some(response.status),
                        result_id: id,
                        result_version: version,
                    },
                    effect,
                });
            }
        }

        // Conflicts: compare the provider's version with the base version first.
        let mut precondition = Vec::new();
        if w.op == WriteOp::Update
            && !w.force
            && let (Some(base_version), Some(id)) = (w.base_version.as_deref(), w.external_id.as_deref())
        {
            match spec.conflict {
                ConflictCheck::Read => {
                    if let Some(current) =
                        self.current_version(&compiled, spec, &payload, id, &mut session, &vars, &base, w).await?
                        && is_newer(&current, base_version)
                    {
                        return Ok(conflict(None, current, w).into());
                    }
                }
                ConflictCheck::IfMatch => {
                    if let Some(header) = spec.precondition_header() {
                        let value = if header.eq_ignore_ascii_case("If-Unmodified-Since") {
                            http_date(base_version).unwrap_or_else(|| base_version.to_owned())
                        } else {
                            base_version.to_owned()
                        };
                        precondition.push((header.to_owned(), value));
                    }
                }
                ConflictCheck::None => {}
            }
        }

        if let (Some(name), Some(key)) = (&req.idempotency_header, &w.idempotency_key) {
            precondition.push((name.clone(), key.clone()));
        }
        let skipped = prepared.skipped.clone();
        let request = to_request(prepared, &vars, &base, precondition)?;
        // A create or comment is not sent twice within an attempt: a timeout, reset or
        // 5xx may come after the provider applied it. The attempt ends; the next looks the
        // create up first.
        let once = matches!(w.op, WriteOp::Create | WriteOp::Comment);
        if once {
            session.retry.max_attempts = 1;
        }
        let response = match session.send(&request, &vars).await {
            Ok(r) => r,
            Err(e) if once && e.class() == ErrorClass::Transient => {
                return Err(retry(ErrorClass::Transient, ambiguous_backoff(w.attempts), e.status(), e.to_string()));
            }
            Err(HttpError::Permanent { status: 412, .. }) if w.op == WriteOp::Update => {
                // The provider refused the precondition: show its version where it can be read.
                let id = w.external_id.as_deref().unwrap_or_default();
                let current = self
                    .current_version(&compiled, spec, &payload, id, &mut session, &vars, &base, w)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "(newer: the provider refused the precondition)".into());
                return Ok(conflict(Some(412), current, w).into());
            }
            Err(e) => return Err(self.http_failure(&e, w).await),
        };
        let json = response.json.unwrap_or(Value::Null);
        if let Some(message) = provider_error(req, &json).filter(|_| req.ok.is_some()) {
            return Ok(WriteSettle::Failed {
                status: Some(response.status),
                message,
                error_class: ErrorClass::Client.as_str().to_owned(),
            }
            .into());
        }
        let result = write_result(req, &json);
        let result_id = result.id.or_else(|| w.external_id.clone()).unwrap_or_default();
        if result_id.is_empty() && w.op == WriteOp::Create {
            return Ok(WriteSettle::Failed {
                status: Some(response.status),
                message: "the provider accepted the create but its answer names no id where the manifest says".into(),
                error_class: ErrorClass::Data.as_str().to_owned(),
            }
            .into());
        }
        let effect =
            record_effect(w, &compiled, def, spec, fields, &payload, &skipped, &result_id, result.version.as_deref());
        Ok(WriteOutcome {
            settle: WriteSettle::Succeeded { status: Some(response.status), result_id, result_version: result.version },
            effect,
        })
    }

    /// The provider's current version of the object (a read of it); `None` when no
    /// version can be read.
    #[allow(clippy::too_many_arguments)]
    async fn current_version(
        &self,
        compiled: &CompiledWrite,
        spec: &crate::config::WriteSpec,
        payload: &Value,
        id: &str,
        session: &mut crate::http::Session<'_>,
        vars: &Vars<'_>,
        base: &str,
        w: &WriteRow,
    ) -> Result<Option<String>, WriteSettle> {
        let (Some(read), Some(field)) = (
            compiled.read_request(payload, id).map_err(|e| failed(ErrorClass::Data, e.to_string()))?,
            spec.version_field.as_deref(),
        ) else {
            return Ok(None);
        };
        let request = to_request(read, vars, base, Vec::new())?;
        match session.send(&request, vars).await {
            Ok(r) => Ok(r.json.as_ref().and_then(|j| value_at(j, field))),
            Err(e) => Err(self.http_failure(&e, w).await),
        }
    }

    /// How a failed request settles the write; a refused credential also marks the
    /// connection `needs_reauth`, as a run does.
    async fn http_failure(&self, e: &HttpError, w: &WriteRow) -> WriteSettle {
        if e.needs_reauth() {
            let owner = Owner::of(w.owner_user.as_ref());
            let reason = e.to_string();
            match self
                .store
                .set_connection_status(&w.tenant_id, &w.provider, owner, ConnectionStatus::NeedsReauth, Some(&reason))
                .await
            {
                Ok(_) => NeedsReauth { tenant: w.tenant_id.as_str(), provider: w.provider.as_str(), reason: &reason }
                    .emit(&self.metrics),
                Err(err) => tracing::warn!(write = %w.id, "marking the connection needs_reauth failed: {err}"),
            }
        }
        http_settle(e, w.attempts)
    }
}

/// A conflict with the write's base version and the provider's `current` one.
fn conflict(status: Option<u16>, current: String, w: &WriteRow) -> WriteSettle {
    WriteSettle::Conflict { status, provider_version: current, base_version: w.base_version.clone() }
}

/// What a succeeded write changes in the stored record: a create or update lays the
/// written fields (those the provider was sent), the key and the new version over it; a
/// delete marks it deleted; a comment changes nothing.
#[allow(clippy::too_many_arguments)]
fn record_effect(
    w: &WriteRow,
    compiled: &CompiledWrite,
    def: &crate::config::Entity,
    spec: &crate::config::WriteSpec,
    fields: &BTreeMap<String, crate::config::MappingSpec>,
    payload: &Value,
    skipped: &[String],
    id: &str,
    version: Option<&str>,
) -> Option<RecordEffect> {
    let entity = w.entity.clone();
    match w.op {
        WriteOp::Comment => None,
        WriteOp::Delete => Some(RecordEffect::Delete { entity, external_id: id.to_owned() }),
        WriteOp::Create | WriteOp::Update => {
            let mut out = serde_json::Map::new();
            if let Value::Object(record) = payload {
                for (k, v) in record {
                    if !skipped.contains(k) && def.field(k).is_some() {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            out.insert(compiled.reverse().key().to_owned(), Value::from(id));
            if let (Some(version), Some(target)) =
                (version, spec.version_field.as_deref().and_then(|f| version_target(fields, f)))
            {
                let datetime = def.field(target).is_some_and(|f| f.kind == crate::config::FieldType::Datetime);
                let v = if datetime { normalized_version(version) } else { version.to_owned() };
                out.insert(target.to_owned(), Value::from(v));
            }
            Some(RecordEffect::Upsert { entity, external_id: id.to_owned(), fields: Value::Object(out) })
        }
    }
}

/// The top level of a body as form fields (strings as they are, other values as JSON).
fn form_fields(body: &Value) -> Vec<(String, String)> {
    let Value::Object(map) = body else { return Vec::new() };
    map.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
}

/// What a failed send means for the write: a 412 is a conflict, other permanent
/// answers fail it with the provider's message, rejected credentials and transient
/// failures (rate limits, 5xx, timeouts) the session gave up on are retried later,
/// after a wait that grows with the write's `attempts` so far.
fn http_settle(e: &HttpError, attempts: i64) -> WriteSettle {
    let class = e.class();
    match e {
        HttpError::Permanent { status: 412, message, .. } => {
            WriteSettle::Conflict { status: Some(412), provider_version: message.clone(), base_version: None }
        }
        HttpError::Permanent { status, message, .. } if *status != 401 && *status != 403 => WriteSettle::Failed {
            status: Some(*status),
            message: message.clone(),
            error_class: class.as_str().to_owned(),
        },
        HttpError::Template(_) | HttpError::Invalid(_) | HttpError::TooLarge { .. } => {
            WriteSettle::Failed { status: e.status(), message: e.to_string(), error_class: class.as_str().to_owned() }
        }
        _ => retry(class, backoff(attempts), e.status(), e.to_string()),
    }
}

/// What the write worker needs, owned.
pub struct WriteWorker {
    /// The daemon's current catalog (replaced on reload).
    pub catalog: Arc<RwLock<Arc<Catalog>>>,
    pub store: Store,
    pub key: Arc<MasterKey>,
    pub metrics: Arc<Metrics>,
    /// The process's rate limiters: writes draw from the same quotas as reads.
    pub limits: Arc<RateLimiters>,
    pub retry: RetryPolicy,
    /// The lease owner (the daemon's instance id).
    pub owner: String,
    /// At most this many writes in flight.
    pub concurrency: usize,
    /// How long a claim holds a write.
    pub lease: Duration,
    /// The wait between claims when nothing was due.
    pub idle_poll: Duration,
}

impl WriteWorker {
    /// Claims due writes and executes them until `shutdown`; a write in flight when it
    /// fires is abandoned and claimed again when its lease expires.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // One pair of HTTP clients for every write: connections to a provider are reused.
        let clients = match crate::http::client(&self.retry) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("building the write worker's HTTP clients failed (each write builds its own): {e}");
                None
            }
        };
        loop {
            let claimed = tokio::select! {
                () = shutdown.cancelled() => return,
                claimed = self.claim_and_execute(clients.as_ref()) => claimed,
            };
            let wait = match claimed {
                Ok(0) => self.idle_poll,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!("claiming writes failed (will retry): {e}");
                    self.idle_poll.max(Duration::from_secs(1))
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round: claims up to `concurrency` due writes, executes them concurrently and
    /// settles each; the number claimed.
    async fn claim_and_execute(
        self: &Arc<Self>,
        clients: Option<&(reqwest::Client, reqwest::Client)>,
    ) -> Result<usize, String> {
        let until =
            Utc::now() + chrono::Duration::from_std(self.lease).unwrap_or_else(|_| chrono::Duration::minutes(5));
        let limit = i64::try_from(self.concurrency.max(1)).unwrap_or(1);
        let writes = self.store.claim_writes(&self.owner, until, limit).await.map_err(|e| e.to_string())?;
        if writes.is_empty() {
            return Ok(0);
        }
        let catalog = self.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let count = writes.len();
        let mut tasks = tokio::task::JoinSet::new();
        for write in writes {
            let (worker, catalog, clients) = (Arc::clone(self), Arc::clone(&catalog), clients.cloned());
            tasks.spawn(async move { worker.execute_and_settle(&catalog, &write, clients).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::warn!("a write task ended abnormally (its lease will expire): {e}");
            }
        }
        Ok(count)
    }

    /// Executes one claimed write through the connection's session and settles it.
    async fn execute_and_settle(
        &self,
        catalog: &Catalog,
        w: &WriteRow,
        clients: Option<(reqwest::Client, reqwest::Client)>,
    ) {
        let started = Instant::now();
        let syncer = match clients {
            Some(c) => Ok(Syncer::with_clients(catalog, &self.store, &self.key, self.retry.clone(), c)),
            None => Syncer::new(catalog, &self.store, &self.key),
        };
        let outcome = match syncer {
            Ok(syncer) => {
                let mut syncer = syncer.with_limits(self.limits.clone());
                syncer.metrics = self.metrics.clone();
                syncer.retry = self.retry.clone();
                syncer.execute_write(w).await
            }
            Err(e) => retry(ErrorClass::Config, NOT_READY_RETRY, None, e.to_string()).into(),
        };
        let latency = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let settled =
            self.store.settle_write_with(&w.id, &self.owner, latency, &outcome.settle, outcome.effect.as_ref()).await;
        let outcome_label = match (&settled, &outcome.settle) {
            (Ok(Some(_)), WriteSettle::Succeeded { .. }) => "succeeded",
            (Ok(Some(_)), WriteSettle::Retry { .. }) => "retry",
            (Ok(Some(_)), WriteSettle::Failed { .. }) => "failed",
            (Ok(Some(_)), WriteSettle::Conflict { .. }) => "conflict",
            (Ok(None) | Err(_), _) => "lost",
        };
        self.metrics
            .write_attempts
            .get_or_create(&WriteLabels {
                provider: w.provider.to_string(),
                op: w.op.as_str().to_owned(),
                outcome: outcome_label.to_owned(),
            })
            .inc();
        self.metrics.write_duration.observe(started.elapsed().as_secs_f64());
        match settled {
            Ok(Some(row)) => match row.error.as_deref() {
                Some(error) => tracing::info!(
                    write = %w.id, tenant = %w.tenant_id, provider = %w.provider, op = %w.op,
                    state = %row.state, attempts = row.attempts, error = %error, "write attempted"
                ),
                None => tracing::info!(
                    write = %w.id, tenant = %w.tenant_id, provider = %w.provider, op = %w.op,
                    state = %row.state, attempts = row.attempts, "write attempted"
                ),
            },
            Ok(None) => tracing::warn!(write = %w.id, "the write's lease was lost before it was settled"),
            Err(e) => tracing::warn!(write = %w.id, "settling the write failed (its lease will expire): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permanent(status: u16, message: &str) -> HttpError {
        HttpError::Permanent { method: "POST", path: "/x".into(), status, message: message.into() }
    }

    #[test]
    fn validation_errors_fail_with_the_providers_message() {
        for status in [400, 404, 409, 422] {
            match http_settle(&permanent(status, "Email address a@b is invalid"), 0) {
                WriteSettle::Failed { status: got, message, error_class } => {
                    assert_eq!(
                        (got, message.as_str(), error_class.as_str()),
                        (Some(status), "Email address a@b is invalid", "client")
                    );
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_412_is_a_conflict_and_auth_and_transient_failures_are_retried() {
        assert!(matches!(http_settle(&permanent(412, "changed"), 0), WriteSettle::Conflict { status: Some(412), .. }));
        for e in [
            permanent(401, "expired"),
            permanent(403, "forbidden"),
            HttpError::Exhausted { path: "/x".into(), attempts: 5, last: "HTTP 503: down".into() },
            HttpError::Exhausted { path: "/x".into(), attempts: 51, last: "still rate limited: slow down".into() },
        ] {
            let text = e.to_string();
            match http_settle(&e, 0) {
                WriteSettle::Retry { at, message, .. } => {
                    assert_eq!(message, text);
                    assert!(at > Utc::now(), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let status =
            http_settle(&HttpError::Exhausted { path: "/x".into(), attempts: 5, last: "HTTP 503: down".into() }, 0);
        assert!(
            matches!(status, WriteSettle::Retry { status: Some(503), ref error_class, .. } if error_class == "transient")
        );
    }

    #[test]
    fn the_wait_doubles_per_attempt_up_to_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(30));
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(240));
        assert_eq!(backoff(50), Duration::from_secs(3600));
        assert_eq!(backoff(-1), Duration::from_secs(30));
        assert_eq!(ambiguous_backoff(0), Duration::from_secs(2));
        assert_eq!(ambiguous_backoff(2), Duration::from_secs(8));
        assert_eq!(ambiguous_backoff(6), Duration::from_secs(128));
        assert_eq!(ambiguous_backoff(9), Duration::from_secs(1024));
        assert_eq!(ambiguous_backoff(30), Duration::from_secs(3600));
        assert_eq!(ambiguous_backoff(10), Duration::from_secs(2048));
    }
}
