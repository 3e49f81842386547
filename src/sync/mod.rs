//! One run end to end: read a page → map it → upsert it and move the cursor in one
//! transaction → next page, with the run row recording counts, HTTP calls, retries,
//! waits, the cursor before and after, and the outcome. Memory is bounded by the page.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Catalog, Manifest, RoleGrants};
use crate::engine::template::{lookup_path, scalar_text};
use crate::engine::{EngineError, StreamReader};
use crate::http::auth::{AuthRegistry, AuthState, DEFAULT_REFRESH_MARGIN};
use crate::http::{RateLimiters, RetryPolicy, Session};
use crate::mapping::{CompiledMapping, MapResult};
use crate::model::{
    ConnectionStatus, EntityName, ErrorClass, ProviderId, RunOutcome, RunTrigger, StreamName, TenantId, UserId,
};
use crate::secrets::MasterKey;
use crate::store::{DeadLetterInput, Owner, PageOutcome, PageWrite, RecordInput, RunRow, RunStats, Store, StoreError};
use crate::telemetry::{HttpMetrics, InProgress, Metrics, NeedsReauth, RunFinished, RunStarted, RunTally};
use crate::tenants::{TenantError, Tenants};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod probe;
mod sink;

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
    /// Cancelled: stop at the next page boundary (the page's cursor is committed).
    pub cancel: Option<CancellationToken>,
    /// The user whose own connection runs (its credentials, token and the streams their
    /// role is granted); `None`: the company connection.
    pub owner: Option<UserId>,
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
        let run = self.store.start_run(&req.tenant, job.id, req.trigger).await?;
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
        let result = self
            .read_all(req, manifest, config, &entity, &view.tenant.subdomain, &job, run.id, &mut stats, &mut counted)
            .instrument(span.clone())
            .await;
        tally.advance(&stats);
        let (outcome, error) = match result {
            Ok(()) => (RunOutcome::Success, None),
            Err(e) if e.cancelled => (RunOutcome::Cancelled, Some(e)),
            Err(e) => (RunOutcome::Failed, Some(e)),
        };
        if let Some(e) = &error {
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

    #[allow(clippy::too_many_arguments)]
    async fn read_all(
        &self,
        req: &SyncRequest,
        manifest: &Manifest,
        config: &crate::config::ProviderLayer,
        entity: &str,
        subdomain: &str,
        job: &crate::store::JobRow,
        run_id: uuid::Uuid,
        stats: &mut RunStats,
        progress: &mut (dyn FnMut(uuid::Uuid, &RunStats) + Send),
    ) -> Result<(), RunFailure> {
        let entity_def =
            self.catalog.entities.get(entity).ok_or_else(|| RunFailure::plain(format!("unknown entity `{entity}`")))?;
        let empty = BTreeMap::new();
        let fields = config.mappings.get(entity).unwrap_or(&empty);
        let mapping = CompiledMapping::compile(entity_def, fields, &config.filters, &config.tags)
            .map_err(|e| RunFailure::plain(e.to_string()))?;
        let entity_name = EntityName::parse(entity).map_err(|e| RunFailure::plain(e.to_string()))?;

        let mut vars: BTreeMap<String, String> = manifest.variables.clone();
        vars.insert("subdomain".into(), subdomain.to_owned());
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
        // One token per connection: a user's never serves the company's, nor another's.
        let conn = self.auth.connection(&format!(
            "{}/{}/{}/{}",
            self.store.instance_id(),
            req.tenant,
            req.provider,
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
        let observer = HttpMetrics::new(&self.metrics, req.provider.as_str());
        let mut session = Session {
            client,
            token_client,
            auth,
            rules: manifest.responses.clone(),
            retry: self.retry.clone(),
            stats: Default::default(),
            sink: Some(&sink),
            quota: self.limits.quota(req.provider.as_str(), req.tenant.as_str(), manifest.rate_limit.as_ref()),
            observer: Some(&observer),
        };
        session.retry.max_response_bytes = manifest.max_response_bytes.unwrap_or(self.retry.max_response_bytes);
        session.retry.origin = Some(format!("provider `{}` stream `{}`", req.provider, req.stream));
        let mut reader =
            StreamReader::new(manifest, &req.stream, &base_url, vars, job.cursor.as_deref(), req.full_refresh)
                .map_err(|e| RunFailure::plain(e.to_string()))?;
        let spec = &manifest.streams[&req.stream];
        // Pages are pipelined: while pages are written (one after another, in order), the
        // next one is read (both wait mostly on I/O: the provider and the database). A
        // failed write discards the pages after it; cancellation stops the read ahead at
        // once.
        let cancelled = || async {
            match &req.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let mut consumed = 0u64;
        let mut at_boundary = false;
        let result: Result<(), RunFailure> = async {
            let started = Instant::now();
            let mut next = reader.next_page(&mut session).await.map_err(RunFailure::from);
            StageTimes::add(&self.stages.fetch_ns, started);
            // The page whose write is under way, and the signal its write sends when it
            // ends (committed or not), which the next page's write waits for.
            let mut in_flight: Option<InFlight> = None;
            let mut after: Option<oneshot::Receiver<bool>> = None;
            loop {
                let page = match next {
                    Ok(Some(page)) => page,
                    end => {
                        // The last page (or the one before a failed read) is still being
                        // written: it counts before the run ends either way.
                        if let Some(last) = in_flight.take() {
                            let (done, outcome) = last.finish().await;
                            if let Err(e) = settle(stats, &mut consumed, &done, outcome) {
                                at_boundary = true;
                                return Err(e);
                            }
                            progress(run_id, stats);
                        }
                        end?;
                        break;
                    }
                };
                if let Some(total) = page.total {
                    stats.total = i64::try_from(total).ok();
                }
                let calls_so_far = session.stats;
                let started = Instant::now();
                let mut records = Vec::with_capacity(page.records.len());
                let mut dead = Vec::new();
                for raw in &page.records {
                    match mapping.apply(raw) {
                        MapResult::Mapped(m) => records.push(RecordInput { external_id: m.external_id, data: m.data }),
                        MapResult::Filtered { .. } => stats.filtered += 1,
                        MapResult::DeadLetter { reason } => dead.push(DeadLetterInput {
                            run_id: Some(run_id),
                            stream: req.stream.to_string(),
                            source_id: scalar_text(lookup_path(raw, &spec.primary_key)),
                            reason,
                            record: raw.clone(),
                        }),
                    }
                }
                StageTimes::add(&self.stages.map_ns, started);
                let done = PageDone {
                    fetched: page.records.len(),
                    dead_lettered: dead.len(),
                    checkpoint: page.checkpoint.clone(),
                    pages: reader.pages,
                    calls: calls_so_far,
                };
                // The write is a task of its own, so another worker thread can drive it
                // (and serialize the page) while this task reads and parses the next
                // pages. Writes stay in page order: each waits for the previous page's
                // write to end and is skipped if that one did not commit. If the run is
                // dropped meanwhile, each write still commits or rolls back as a whole
                // (records and cursor together, fenced on the lease).
                let owned = OwnedPage {
                    entity: entity_name.clone(),
                    provider: req.provider.clone(),
                    records,
                    job_id: job.id,
                    cursor: page.checkpoint,
                    lease_owner: req.lease_owner.clone(),
                    dead_letters: dead,
                };
                let (signal, ended) = oneshot::channel();
                let task = tokio::spawn(write_page(
                    self.store.clone(),
                    req.tenant.clone(),
                    owned,
                    self.stages.clone(),
                    after.replace(ended),
                    signal,
                ));
                // While this page's write waits for the previous page's, the next page
                // is read: the reads never wait for a write to start, only to end.
                let previous = in_flight.replace(InFlight { task, done });
                let write = async {
                    match previous {
                        Some(p) => Some(p.finish().await),
                        None => None,
                    }
                };
                let read_ahead = async {
                    let started = Instant::now();
                    let page = tokio::select! {
                        page = reader.next_page(&mut session) => Some(page.map_err(RunFailure::from)),
                        () = cancelled() => None,
                    };
                    StageTimes::add(&self.stages.fetch_ns, started);
                    page
                };
                let (written, read) = tokio::join!(write, read_ahead);
                if let Some((done, outcome)) = written {
                    if let Err(e) = settle(stats, &mut consumed, &done, outcome) {
                        // This page's write sees that the previous one failed and skips.
                        if let Some(skipped) = in_flight.take() {
                            let _ = skipped.finish().await;
                        }
                        at_boundary = true;
                        return Err(e);
                    }
                    progress(run_id, stats);
                }
                if req.cancel.as_ref().is_some_and(CancellationToken::is_cancelled) {
                    // The page being written commits (or not) before the run stops.
                    if let Some(last) = in_flight.take() {
                        let (done, outcome) = last.finish().await;
                        let settled = settle(stats, &mut consumed, &done, outcome);
                        at_boundary = true;
                        settled?;
                        progress(run_id, stats);
                    }
                    at_boundary = true;
                    return Err(RunFailure::cancelled());
                }
                // `None` only when cancelled, which returned above.
                next = read.unwrap_or(Ok(None));
            }
            Ok(())
        }
        .await;
        // A run stopped by a failed write or cancellation counts the pages it processed,
        // not the pages read ahead.
        stats.pages = if at_boundary { consumed } else { reader.pages } as i64;
        copy_http(stats, &session.stats);
        result
    }
}

/// What a page brings to the run's statistics once its write has ended.
struct PageDone {
    fetched: usize,
    dead_lettered: usize,
    checkpoint: Option<String>,
    /// Pages read up to and including this one.
    pages: u64,
    /// The HTTP statistics when this page had been read.
    calls: crate::http::CallStats,
}

/// A page whose write task is under way.
struct InFlight {
    task: tokio::task::JoinHandle<Result<Option<PageOutcome>, RunFailure>>,
    done: PageDone,
}

impl InFlight {
    /// Waits for the write to end.
    async fn finish(self) -> (PageDone, Result<Option<PageOutcome>, RunFailure>) {
        let outcome =
            self.task.await.unwrap_or_else(|e| Err(RunFailure::plain(format!("the page write ended abnormally: {e}"))));
        (self.done, outcome)
    }
}

/// Adds a written page to the run's statistics (`Ok(None)`: the write was skipped,
/// nothing to add); a failed write is the run's failure.
fn settle(
    stats: &mut RunStats,
    consumed: &mut u64,
    done: &PageDone,
    outcome: Result<Option<PageOutcome>, RunFailure>,
) -> Result<(), RunFailure> {
    let outcome = match outcome {
        Ok(Some(outcome)) => outcome,
        Ok(None) => return Ok(()),
        Err(e) => {
            // The page whose write failed counts as processed.
            *consumed = done.pages;
            return Err(e);
        }
    };
    *consumed = done.pages;
    stats.fetched += done.fetched as i64;
    stats.inserted += outcome.inserted as i64;
    stats.updated += outcome.updated as i64;
    stats.unchanged += outcome.unchanged as i64;
    stats.dead_lettered += done.dead_lettered as i64;
    stats.pages = done.pages as i64;
    if let Some(c) = &done.checkpoint {
        stats.cursor_after = Some(c.clone());
    }
    copy_http(stats, &done.calls);
    Ok(())
}

/// A page to write, owned by the task that writes it.
struct OwnedPage {
    entity: EntityName,
    provider: ProviderId,
    records: Vec<RecordInput>,
    job_id: i64,
    cursor: Option<String>,
    lease_owner: Option<String>,
    dead_letters: Vec<DeadLetterInput>,
}

/// Writes one page (records, dead letters and cursor in one transaction) once the
/// previous page's write (`after`) has committed; `Ok(None)` if it did not, and nothing
/// is written. Sends on `ended` whether this page committed.
async fn write_page(
    store: Store,
    tenant: TenantId,
    page: OwnedPage,
    stages: Arc<StageTimes>,
    after: Option<oneshot::Receiver<bool>>,
    ended: oneshot::Sender<bool>,
) -> Result<Option<PageOutcome>, RunFailure> {
    let started = Instant::now();
    let write = PageWrite {
        entity: &page.entity,
        provider: &page.provider,
        records: &page.records,
        job_id: page.job_id,
        cursor: page.cursor.as_deref(),
        lease_owner: page.lease_owner.as_deref(),
        dead_letters: &page.dead_letters,
    };
    // The page is serialized and hashed while the previous page's write is under way;
    // the time spent waiting for it is not this page's store time.
    let waited = AtomicU64::new(0);
    let ready = async {
        let Some(previous) = after else { return true };
        let since = Instant::now();
        let committed = previous.await.unwrap_or(false);
        StageTimes::add(&waited, since);
        committed
    };
    let outcome = store.write_page_when(&tenant, &write, ready).await.map_err(RunFailure::from_store);
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    stages.store_ns.fetch_add(ns.saturating_sub(waited.load(Ordering::Relaxed)), Ordering::Relaxed);
    let _ = ended.send(matches!(outcome, Ok(Some(_))));
    outcome
}

fn copy_http(stats: &mut RunStats, calls: &crate::http::CallStats) {
    stats.http_calls = calls.http_calls as i64;
    stats.retries = calls.retries as i64;
    stats.rate_limit_waits = calls.rate_limit_waits as i64;
    stats.rate_limit_wait_ms = calls.rate_limit_wait_ms as i64;
    stats.http_p50_ms = calls.latency.quantile_ms(0.50);
    stats.http_p95_ms = calls.latency.quantile_ms(0.95);
    stats.http_p99_ms = calls.latency.quantile_ms(0.99);
}

/// Why a run failed, and what that means for the connection and the job.
#[derive(Debug)]
struct RunFailure {
    message: String,
    needs_reauth: bool,
    cancelled: bool,
    class: ErrorClass,
    status: Option<u16>,
    endpoint: Option<String>,
}

impl RunFailure {
    fn new(class: ErrorClass, message: String) -> Self {
        Self { message, needs_reauth: false, cancelled: false, class, status: None, endpoint: None }
    }

    fn plain(message: String) -> Self {
        Self::new(ErrorClass::Config, message)
    }

    fn cancelled() -> Self {
        let message = "cancelled at a page boundary (the daemon is draining); the last page's cursor is committed";
        Self { cancelled: true, ..Self::new(ErrorClass::Cancelled, message.into()) }
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
