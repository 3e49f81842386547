//! One run end to end: read a page → map it → upsert it and move the cursor in one
//! transaction → next page, with the run row recording counts, HTTP calls, retries,
//! waits, the cursor before and after, and the outcome. Memory is bounded by the page.
//! Also a connection check that reads without storing (`probe`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Catalog, DEFAULT_MAX_PAGES_PER_RUN, DEFAULT_MAX_RUN_SECS, Manifest, RoleGrants};
use crate::engine::{EngineError, StreamReader};
use crate::http::auth::{AuthRegistry, AuthState, DEFAULT_REFRESH_MARGIN};
use crate::http::{CallObserver, RateLimiters, RetryPolicy, Session};
use crate::mapping::CompiledMapping;
use crate::model::{
    ConnectionStatus, EntityName, ErrorClass, JobRow, Owner, ProviderId, RunOutcome, RunRow, RunStats, RunTrigger,
    StreamName, TenantId, UserId,
};
use crate::secrets::MasterKey;
use crate::store::{Store, StoreError};
use crate::telemetry::{HttpMetrics, InProgress, Metrics, NeedsReauth, RunFinished, RunStarted, RunTally};
use crate::tenants::{TenantError, Tenants};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod pipeline;
mod probe;
mod sink;
pub mod writes;

use self::pipeline::{Bounds, PageLoop};
pub use self::probe::StreamProbe;
use self::sink::StoreSink;

/// Why a run could not start (a run that starts and fails is a failed run row instead).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("provider `{provider}` is not enabled for tenant `{tenant}`")]
    ProviderDisabled { tenant: TenantId, provider: ProviderId },
    #[error("stream `{stream}` of `{provider}` is not enabled for tenant `{tenant}` (known streams: {known})")]
    StreamDisabled { tenant: TenantId, provider: ProviderId, stream: StreamName, known: String },
    #[error("no connector manifest for `{0}`")]
    NoManifest(ProviderId),
    #[error("connection {tenant}/{provider} is {status}{hint}")]
    NotConnected { tenant: TenantId, provider: ProviderId, status: ConnectionStatus, hint: &'static str },
    #[error(
        "user `{user}` has no connection to `{provider}` at tenant `{tenant}` \
         (create it with `tributary users connect {user} --tenant {tenant} --provider {provider}`)"
    )]
    NoUserConnection { tenant: TenantId, provider: ProviderId, user: UserId },
    #[error("user `{user}`'s connection to `{provider}` at tenant `{tenant}` may not sync stream `{stream}`: {reason}")]
    NotGranted { tenant: TenantId, provider: ProviderId, stream: StreamName, user: UserId, reason: String },
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub tenant: TenantId,
    pub provider: ProviderId,
    pub stream: StreamName,
    pub trigger: RunTrigger,
    /// Ignore the stored cursor and read everything.
    pub full_refresh: bool,
    /// The worker's lease on the job: every page write is fenced on it.
    pub lease_owner: Option<String>,
    /// Cancelled: stop at the next page boundary (the page, its cursor and the position
    /// after it are committed).
    pub cancel: Option<CancellationToken>,
    /// The user whose own connection runs (its credentials, token and the streams their
    /// role is granted); `None`: the company connection.
    pub owner: Option<UserId>,
}

/// How the note of a run whose sweep the guard held back begins.
pub const SWEEP_HELD_BACK: &str = "sweep held back by its guard";

/// Whether `run` ended `partial` because the guard held its sweep back: its pass is
/// complete, so the job keeps its schedule instead of continuing at once.
pub fn sweep_held_back(run: &RunRow) -> bool {
    run.outcome == RunOutcome::Partial && run.stats.note.as_deref().is_some_and(|n| n.contains(SWEEP_HELD_BACK))
}

/// The name of this process as a replica in run rows when it holds no lease:
/// `hostname-pid`.
pub fn process_replica() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// What one run works with once it has started: the job, its run row and the
/// effective configuration of its provider.
struct RunSetup<'r> {
    req: &'r SyncRequest,
    manifest: &'r Manifest,
    config: &'r crate::config::ProviderLayer,
    entity: &'r str,
    subdomain: &'r str,
    job: &'r JobRow,
    run_id: uuid::Uuid,
    /// The stream's full pass is due (`full_schedule`): the run reads in full.
    full_due: bool,
    /// That full pass sweeps when complete though the stream does not (another stream's
    /// state expired: `state.expired_full_pass`).
    sweep_due: bool,
}

/// Runs syncs for one catalog, store and master key.
pub struct Syncer<'a> {
    pub catalog: &'a Catalog,
    pub store: &'a Store,
    pub key: &'a MasterKey,
    pub retry: RetryPolicy,
    pub metrics: Arc<Metrics>,
    /// Per-connection token state shared with the process's other runs (by default the
    /// process-wide registry, so concurrent runs of one connection share one token and
    /// one refresh).
    pub auth: AuthRegistry,
    /// Tokens are refreshed this long before they expire (at most a quarter of their
    /// lifetime before).
    pub token_margin: Duration,
    /// The process's rate limiters: share one (`Arc`) between every syncer of a process
    /// so all runs draw from the same quotas.
    pub limits: Arc<RateLimiters>,
    /// Time this syncer's runs spent in each stage, summed over its runs.
    pub stages: Arc<StageTimes>,
    /// Clients built for `retry.connect_timeout` (the value they were built with).
    clients: (reqwest::Client, reqwest::Client, std::time::Duration),
}

/// Wall time spent in each stage of the page loop, summed over runs: reading a page
/// (HTTP, rate-limit waits, JSON parse, pagination), mapping it, and writing it.
#[derive(Debug, Default)]
pub struct StageTimes {
    fetch_ns: AtomicU64,
    map_ns: AtomicU64,
    store_ns: AtomicU64,
}

/// A reading of [`StageTimes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageSnapshot {
    pub fetch: Duration,
    pub map: Duration,
    pub store: Duration,
}

impl StageTimes {
    pub fn snapshot(&self) -> StageSnapshot {
        let read = |c: &AtomicU64| Duration::from_nanos(c.load(Ordering::Relaxed));
        StageSnapshot { fetch: read(&self.fetch_ns), map: read(&self.map_ns), store: read(&self.store_ns) }
    }

    fn add(counter: &AtomicU64, since: Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(ns, Ordering::Relaxed);
    }
}

impl<'a> Syncer<'a> {
    pub fn new(catalog: &'a Catalog, store: &'a Store, key: &'a MasterKey) -> Result<Self, SyncError> {
        let retry = RetryPolicy::default();
        let (data, token) = crate::http::client(&retry).map_err(|e| SyncError::Client(e.to_string()))?;
        let clients = (data, token, retry.connect_timeout);
        Ok(Self {
            catalog,
            store,
            key,
            retry,
            metrics: Arc::new(Metrics::new()),
            auth: AuthRegistry::global(),
            token_margin: DEFAULT_REFRESH_MARGIN,
            limits: Arc::new(RateLimiters::default()),
            stages: Arc::default(),
            clients,
        })
    }

    /// A syncer that sends through `clients` (data and token clients built by
    /// [`crate::http::client`] for `retry`), so a long-lived caller reuses their
    /// connections instead of building clients (and TLS sessions) per use.
    pub fn with_clients(
        catalog: &'a Catalog,
        store: &'a Store,
        key: &'a MasterKey,
        retry: RetryPolicy,
        clients: (reqwest::Client, reqwest::Client),
    ) -> Self {
        let connect_timeout = retry.connect_timeout;
        Self {
            catalog,
            store,
            key,
            retry,
            metrics: Arc::new(Metrics::new()),
            auth: AuthRegistry::global(),
            token_margin: DEFAULT_REFRESH_MARGIN,
            limits: Arc::new(RateLimiters::default()),
            stages: Arc::default(),
            clients: (clients.0, clients.1, connect_timeout),
        }
    }

    /// Draws from `limits` (the process-wide registry) instead of a private one.
    pub fn with_limits(mut self, limits: Arc<RateLimiters>) -> Self {
        self.limits = limits;
        self
    }

    /// Runs one job; `progress` sees the counters after every page. A run that fails
    /// after it started is returned as a run row with outcome `failed`.
    pub async fn run(
        &self,
        req: &SyncRequest,
        progress: &mut (dyn FnMut(uuid::Uuid, &RunStats) + Send),
    ) -> Result<RunRow, SyncError> {
        let tenants = Tenants::new(self.catalog, self.store, "sync");
        let view = tenants.require(&req.tenant).await?;
        let provider =
            view.effective.providers.get(&req.provider).filter(|p| p.config.is_enabled()).ok_or_else(|| {
                SyncError::ProviderDisabled { tenant: req.tenant.clone(), provider: req.provider.clone() }
            })?;
        let manifest = self
            .catalog
            .manifests
            .get(req.provider.as_str())
            .ok_or_else(|| SyncError::NoManifest(req.provider.clone()))?;
        let config = &provider.config;
        let entity = config
            .streams
            .get(req.stream.as_str())
            .filter(|s| s.enabled.unwrap_or(false))
            .and_then(|s| s.entity.clone())
            .ok_or_else(|| SyncError::StreamDisabled {
                tenant: req.tenant.clone(),
                provider: req.provider.clone(),
                stream: req.stream.clone(),
                known: config.enabled_streams().map(|(n, _)| n).collect::<Vec<_>>().join(", "),
            })?;
        let owner = Owner::of(req.owner.as_ref());
        let connection =
            self.store.get_connection(&req.tenant, &req.provider, owner).await?.ok_or_else(|| match &req.owner {
                None => SyncError::ProviderDisabled { tenant: req.tenant.clone(), provider: req.provider.clone() },
                Some(user) => SyncError::NoUserConnection {
                    tenant: req.tenant.clone(),
                    provider: req.provider.clone(),
                    user: user.clone(),
                },
            })?;
        // A user connection syncs only the streams its owner's role is granted there.
        if let Some(user) = &req.owner {
            RoleGrants::from_stored(&view.roles)
                .check(connection.owner_role.as_ref(), &req.provider, req.stream.as_str())
                .map_err(|denied| SyncError::NotGranted {
                    tenant: req.tenant.clone(),
                    provider: req.provider.clone(),
                    stream: req.stream.clone(),
                    user: user.clone(),
                    reason: denied.describe(&req.tenant),
                })?;
        }
        if matches!(connection.status, ConnectionStatus::Disabled | ConnectionStatus::Pending)
            || !connection.has_credentials
        {
            return Err(SyncError::NotConnected {
                tenant: req.tenant.clone(),
                provider: req.provider.clone(),
                status: connection.status,
                hint: "; store credentials with `tributary credentials set`",
            });
        }
        let schedule = connection
            .schedule
            .clone()
            .or_else(|| config.streams.get(req.stream.as_str()).and_then(|s| s.schedule.clone()))
            .or_else(|| config.schedule.clone())
            .unwrap_or_default();
        let job = self.store.ensure_job(&req.tenant, connection.id, &req.stream, &schedule).await?;
        // A full pass is due when the scheduler's plan says so (`full_schedule`).
        let full_schedule = config.streams.get(req.stream.as_str()).and_then(|s| s.full_schedule.as_deref());
        let (planned, sweeps) = self.store.note_full_schedule(&req.tenant, job.id, full_schedule).await?;
        let full_due = planned.is_some_and(|at| at <= chrono::Utc::now());
        // Another stream's expired state asked for this full pass to sweep.
        let sweep_due = full_due && sweeps;
        let replica = req.lease_owner.clone().unwrap_or_else(process_replica);
        let run = self.store.start_run_by(&req.tenant, job.id, req.trigger, &replica).await?;
        let span = tracing::info_span!("run", tenant = %req.tenant, provider = %req.provider, stream = %req.stream, run_id = %run.id);
        RunStarted { run: &run }.emit(&self.metrics);
        let _in_progress = InProgress::new(&self.metrics, req.provider.as_str());
        progress(run.id, &RunStats::default());

        let mut stats = RunStats { cursor_after: job.cursor.clone(), ..RunStats::default() };
        // Records and pages are counted in the metrics as each page commits.
        let mut tally = RunTally::new(&self.metrics, req.provider.as_str(), req.stream.as_str());
        let mut counted = |id: uuid::Uuid, s: &RunStats| {
            tally.advance(s);
            progress(id, s);
        };
        let setup = RunSetup {
            req,
            manifest,
            config,
            entity: &entity,
            subdomain: &view.tenant.subdomain,
            job: &job,
            run_id: run.id,
            full_due,
            sweep_due,
        };
        let result = self.read_all(&setup, &mut stats, &mut counted).instrument(span.clone()).await;
        tally.advance(&stats);
        // A complete full pass that was due is done: the scheduler plans the next one.
        let full_done = matches!(&result, Ok(true)) || matches!(&result, Err(e) if e.pass_complete);
        if full_due && full_done {
            self.store.set_full_pass_at(&req.tenant, job.id, None).await?;
        }
        let (outcome, error) = match result {
            Ok(_) => (RunOutcome::Success, None),
            Err(e) if e.cancelled => (RunOutcome::Cancelled, Some(e)),
            Err(e) if e.partial => (RunOutcome::Partial, Some(e)),
            Err(e) => (RunOutcome::Failed, Some(e)),
        };
        if let Some(e) = error.as_ref().filter(|e| e.partial) {
            // Not an error: the run did what it may, and says so.
            stats.note = Some(match stats.note.take() {
                Some(note) => format!("{note}; {}", e.message),
                None => e.message.clone(),
            });
        } else if let Some(e) = &error {
            stats.error = Some(e.message.clone());
            stats.error_class = Some(e.class.as_str().to_owned());
            stats.error_status = e.status.map(i64::from);
            stats.error_endpoint = e.endpoint.clone();
            if e.needs_reauth {
                self.store
                    .set_connection_status(
                        &req.tenant,
                        &req.provider,
                        owner,
                        ConnectionStatus::NeedsReauth,
                        Some(&e.message),
                    )
                    .await?;
                span.in_scope(|| {
                    NeedsReauth { tenant: req.tenant.as_str(), provider: req.provider.as_str(), reason: &e.message }
                        .emit(&self.metrics)
                });
            }
        }
        let row = self.store.finish_run(&req.tenant, run.id, outcome, &stats).await?;
        RunFinished { run: &row }.emit(&self.metrics);
        Ok(row)
    }

    /// Reads the stream page by page through the pipeline, continuing the pass a saved
    /// position belongs to; `Ok(true)` when the pass that ended was a full one. After a
    /// complete full pass of a stream that sweeps, sweeps.
    async fn read_all(
        &self,
        setup: &RunSetup<'_>,
        stats: &mut RunStats,
        progress: &mut (dyn FnMut(uuid::Uuid, &RunStats) + Send),
    ) -> Result<bool, RunFailure> {
        let RunSetup { req, manifest, config, entity, job, .. } = *setup;
        let entity_def =
            self.catalog.entities.get(entity).ok_or_else(|| RunFailure::plain(format!("unknown entity `{entity}`")))?;
        let empty = BTreeMap::new();
        let fields = config.mappings.get(entity).unwrap_or(&empty);
        let mapping = CompiledMapping::compile(entity_def, fields, &config.filters, &config.tags)
            .map_err(|e| RunFailure::plain(e.to_string()))?;
        let entity_name = EntityName::parse(entity).map_err(|e| RunFailure::plain(e.to_string()))?;

        let mut vars: BTreeMap<String, String> = manifest.variables.clone();
        vars.insert("subdomain".into(), setup.subdomain.to_owned());
        vars.extend(config.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        let base_url = config.base_url.clone().unwrap_or_else(|| manifest.base_url.clone());
        // Credentials and tokens are read from the store when a request needs them.
        let sink = StoreSink {
            store: self.store,
            key: self.key,
            tenant: &req.tenant,
            provider: &req.provider,
            owner: Owner::of(req.owner.as_ref()),
            metrics: &self.metrics,
        };
        let observer = HttpMetrics::new(&self.metrics, req.provider.as_str());
        let origin = format!("provider `{}` stream `{}`", req.provider, req.stream);
        let mut session = self.session(origin, manifest, config, &sink, &observer)?;
        let mut reader =
            StreamReader::new(manifest, &req.stream, &base_url, vars, job.cursor.as_deref(), req.full_refresh)
                .map_err(|e| RunFailure::plain(e.to_string()))?;
        let position = self.store.job_position(&req.tenant, job.id).await.map_err(RunFailure::from_store)?;
        // Only what the mapping reads of each record is built (besides the key and cursor).
        reader.read_only(pipeline::projection(&mapping));
        if setup.full_due && !req.full_refresh {
            reader.read_in_full();
        }
        reader.resume_from(position.as_deref(), req.full_refresh, chrono::Utc::now());
        if !reader.notes.is_empty() {
            let note = reader.notes.join("; ");
            tracing::info!(pass = reader.pass(), "{note}");
            self.store.set_run_note(&req.tenant, setup.run_id, &note).await.map_err(RunFailure::from_store)?;
        }
        let spec = &manifest.streams[&req.stream];
        let layer = config.streams.get(req.stream.as_str());
        let sweeps = (layer.and_then(|l| l.sweep) == Some(true) || setup.sweep_due) && !spec.deletions;
        let bounds = Bounds {
            max_pages: layer
                .and_then(|l| l.max_pages_per_run)
                .or(spec.max_pages_per_run)
                .unwrap_or(DEFAULT_MAX_PAGES_PER_RUN)
                .max(1),
            max_duration: Duration::from_secs(
                layer.and_then(|l| l.max_run_secs).or(spec.max_run_secs).unwrap_or(DEFAULT_MAX_RUN_SECS).max(1),
            ),
        };
        let pages = PageLoop {
            store: self.store,
            stages: &self.stages,
            req,
            run_id: setup.run_id,
            job_id: job.id,
            mapping: &mapping,
            entity: &entity_name,
            primary_key: &spec.primary_key,
            bounds,
            deletions: spec.deletions,
            mark_seen: sweeps,
        };
        let result = pages.run(&mut reader, &mut session, stats, progress).await;
        if !reader.notes.is_empty() {
            stats.note = Some(reader.notes.join("; "));
        }
        if reader.states_expired > 0 {
            self.request_full_passes(setup, spec, stats).await?;
        }
        result?;
        let Some(started) = reader.full_pass_started() else {
            return Ok(false);
        };
        if sweeps {
            let share = layer
                .and_then(|l| l.sweep_max_share)
                .or(config.sweep_max_share)
                .unwrap_or(crate::config::DEFAULT_SWEEP_MAX_SHARE);
            self.sweep(setup, &entity_name, started, share, stats).await?;
        }
        Ok(true)
    }

    /// A stored state of the stream expired: the streams its `state.expired_full_pass`
    /// names (those enabled for the tenant) get a full pass that sweeps, due now, so what
    /// the stream missed while its state was expired — deletions above all — is found.
    /// The run's note names them.
    async fn request_full_passes(
        &self,
        setup: &RunSetup<'_>,
        spec: &crate::config::StreamSpec,
        stats: &mut RunStats,
    ) -> Result<(), RunFailure> {
        let RunSetup { req, config, job, .. } = *setup;
        let Some(state) = &spec.state else { return Ok(()) };
        let mut planned = Vec::new();
        for name in &state.expired_full_pass {
            if !config.streams.get(name.as_str()).is_some_and(|s| s.enabled.unwrap_or(false)) {
                continue;
            }
            let stream = StreamName::parse(name).map_err(|e| RunFailure::plain(e.to_string()))?;
            if self
                .store
                .request_full_pass(&req.tenant, job.connection_id, &stream)
                .await
                .map_err(RunFailure::from_store)?
            {
                planned.push(format!("`{name}`"));
            }
        }
        if !planned.is_empty() {
            let text = format!("a full pass that sweeps is due for {}", planned.join(", "));
            tracing::info!(stream = %req.stream, "{text}");
            stats.note = Some(match stats.note.take() {
                Some(n) => format!("{n}; {text}"),
                None => text,
            });
        }
        Ok(())
    }

    /// Sweeps after the complete full pass that began at `started`; the run's note says
    /// what it did. Held back by the guard, the run ends `partial` (the pass complete).
    async fn sweep(
        &self,
        setup: &RunSetup<'_>,
        entity: &EntityName,
        started: chrono::DateTime<chrono::Utc>,
        max_share: f64,
        stats: &mut RunStats,
    ) -> Result<(), RunFailure> {
        let RunSetup { req, config, job, .. } = *setup;
        let dead_lettered = stats.dead_lettered;
        let mut note = |text: String| {
            stats.note = Some(match stats.note.take() {
                Some(n) => format!("{n}; {text}"),
                None => text,
            });
        };
        // Records carry no stream: another stream feeding the entity would be swept too
        // (configuration checks refuse it; this holds if one slipped through).
        if let Some(other) = crate::config::sweep_conflict(config, setup.manifest, req.stream.as_str(), setup.entity) {
            note(format!(
                "not swept: stream `{other}` also feeds `{}`, and only the one stream feeding an entity may sweep it",
                setup.entity
            ));
            return Ok(());
        }
        // A record that could not be mapped was listed but not stored as seen: rather
        // than delete it, this pass does not sweep.
        if dead_lettered > 0 {
            note(format!(
                "not swept: {dead_lettered} records of this run could not be mapped (see `runs show`); the pass \
                 cannot vouch for what it did not store"
            ));
            return Ok(());
        }
        let sweep = crate::store::SweepRequest {
            tenant: &req.tenant,
            entity,
            provider: &req.provider,
            job_id: job.id,
            lease_owner: req.lease_owner.as_deref(),
            run_id: Some(setup.run_id),
            pass_started: started,
            max_share,
        };
        let outcome = self.store.sweep(&sweep).await.map_err(RunFailure::from_store)?;
        let (unseen, live, guarded) = match outcome {
            crate::store::SweepOutcome::Swept { deleted, live } => (deleted, live, false),
            crate::store::SweepOutcome::Guarded { unseen, live } => (unseen, live, true),
        };
        crate::telemetry::SweepFinished {
            tenant: req.tenant.as_str(),
            provider: req.provider.as_str(),
            stream: req.stream.as_str(),
            entity: entity.as_str(),
            run_id: setup.run_id,
            live,
            unseen,
            guarded,
            max_share,
        }
        .emit(&self.metrics);
        if guarded {
            return Err(RunFailure::held_back(unseen, live, max_share));
        }
        note(format!("swept {unseen} of {live} records not seen in the full pass"));
        Ok(())
    }

    /// The HTTP session of one run (or write): the connection's token state, its
    /// rate-limit quota and the manifest's response rules, with the tenant's rate-limit
    /// and retry overrides (`config`); `origin` names it in errors. The sink says whose
    /// connection it is.
    fn session<'s>(
        &self,
        origin: String,
        manifest: &Manifest,
        config: &crate::config::ProviderLayer,
        sink: &'s StoreSink<'s>,
        observer: &'s HttpMetrics,
    ) -> Result<Session<'s>, RunFailure> {
        let (tenant, provider) = (sink.tenant, sink.provider);
        // One token per connection: a user's never serves the company's, nor another's.
        let conn = self.auth.connection(&format!(
            "{}/{}/{}/{}",
            self.store.instance_id(),
            tenant,
            provider,
            sink.owner.as_str()
        ));
        let mut auth = AuthState::shared(manifest.auth.clone(), conn);
        auth.margin = self.token_margin;
        // The connect timeout is a client setting: build clients if it was changed.
        let (client, token_client) = if self.retry.connect_timeout == self.clients.2 {
            (self.clients.0.clone(), self.clients.1.clone())
        } else {
            crate::http::client(&self.retry).map_err(|e| RunFailure::plain(format!("HTTP client: {e}")))?
        };
        let mut session = Session {
            client,
            token_client,
            auth,
            rules: manifest.responses.clone(),
            retry: self.retry.clone(),
            stats: Default::default(),
            sink: Some(sink),
            quota: self.limits.quota(provider.as_str(), tenant.as_str(), config.rate_limit(manifest).as_ref()),
            observer: Some(observer),
        };
        // A preset's or tenant's retry policy (checked against the manifest's bounds at load).
        if let Some(r) = &config.retry {
            if let Some(attempts) = r.attempts {
                session.retry.max_attempts = attempts;
            }
            if let Some(secs) = r.max_backoff_secs {
                session.retry.max_delay = Duration::from_secs(secs);
            }
        }
        session.retry.max_response_bytes = manifest.max_response_bytes.unwrap_or(self.retry.max_response_bytes);
        session.retry.origin = Some(origin);
        Ok(session)
    }
}

fn copy_http(stats: &mut RunStats, calls: &crate::http::CallStats) {
    stats.http_calls = calls.http_calls as i64;
    stats.retries = calls.retries as i64;
    stats.rate_limit_waits = calls.rate_limit_waits as i64;
    stats.rate_limit_wait_ms = calls.rate_limit_wait_ms as i64;
    stats.bytes_received = calls.bytes_received as i64;
    // No response (a transport error), 4xx and 5xx.
    stats.http_errors = (calls.by_class[0] + calls.by_class[4] + calls.by_class[5]) as i64;
    stats.http_p50_ms = calls.latency.quantile_ms(0.50);
    stats.http_p95_ms = calls.latency.quantile_ms(0.95);
    stats.http_p99_ms = calls.latency.quantile_ms(0.99);
}

/// The process's metrics watch a run's HTTP calls as its session makes them.
impl CallObserver for HttpMetrics<'_> {
    fn request(&self, class: usize, elapsed: Duration) {
        HttpMetrics::request(self, class, elapsed);
    }

    fn retry(&self) {
        HttpMetrics::retry(self);
    }

    fn rate_limit_wait(&self, waited: Duration) {
        HttpMetrics::rate_limit_wait(self, waited);
    }
}

/// Why a run failed, and what that means for the connection and the job.
#[derive(Debug)]
struct RunFailure {
    message: String,
    needs_reauth: bool,
    cancelled: bool,
    /// The run reached its bounds; its position is committed and the next run continues.
    partial: bool,
    /// The pass is complete nonetheless (a sweep the guard held back).
    pass_complete: bool,
    class: ErrorClass,
    status: Option<u16>,
    endpoint: Option<String>,
}

impl RunFailure {
    fn new(class: ErrorClass, message: String) -> Self {
        Self {
            message,
            needs_reauth: false,
            cancelled: false,
            partial: false,
            pass_complete: false,
            class,
            status: None,
            endpoint: None,
        }
    }

    fn plain(message: String) -> Self {
        Self::new(ErrorClass::Config, message)
    }

    fn cancelled() -> Self {
        let message = "cancelled at a page boundary; the last page and the position after it are committed, and \
                       the next run continues from there";
        Self { cancelled: true, ..Self::new(ErrorClass::Cancelled, message.into()) }
    }

    fn partial(bounds: &Bounds) -> Self {
        let message = format!(
            "stopped at the run's bounds ({} pages or {} s: `max_pages_per_run`, `max_run_secs`); the position is \
             committed and the next run continues the pass",
            bounds.max_pages,
            bounds.max_duration.as_secs()
        );
        Self { partial: true, ..Self::new(ErrorClass::Cancelled, message) }
    }

    /// The sweep after a complete full pass would delete `unseen` of `live` records,
    /// more than `max_share`: nothing was deleted.
    fn held_back(unseen: u64, live: u64, max_share: f64) -> Self {
        let message = format!(
            "{SWEEP_HELD_BACK}: {unseen} of {live} stored records were not seen in the complete full pass, more than \
             sweep_max_share = {max_share} allows; nothing was deleted (if the records are really gone, raise \
             sweep_max_share for one pass)"
        );
        Self { partial: true, pass_complete: true, ..Self::new(ErrorClass::Data, message) }
    }

    fn from_store(e: StoreError) -> Self {
        Self::new(ErrorClass::Store, e.to_string())
    }
}

impl From<EngineError> for RunFailure {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::Http(h) => Self {
                needs_reauth: h.needs_reauth(),
                status: h.status(),
                endpoint: h.endpoint().map(str::to_owned),
                ..Self::new(h.class(), e.to_string())
            },
            EngineError::UnknownStream(_) => Self::new(ErrorClass::Config, e.to_string()),
            _ => Self::new(ErrorClass::Data, e.to_string()),
        }
    }
}
