//! Telemetry: one Prometheus registry with every metric name in one place, and one
//! struct per notable happening whose `emit` writes the log line and updates the
//! metrics together, so the two cannot drift apart. Labels are bounded: provider and
//! stream (from the catalog), outcome, trigger, result and status class — never tenants.
//!
//! Counters move when things happen: every HTTP request, retry and rate-limit wait as
//! the session sees it ([`HttpMetrics`]), records and pages as each page commits
//! ([`RunTally`]); the store-wide gauges are recomputed from the store ([`gauges`]).
//! `/metrics` serves the Prometheus text format, or OpenMetrics when asked for it.

pub mod gauges;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http::CallObserver;
use crate::http::auth::TokenEvent;
use crate::store::{RunRow, RunStats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub provider: String,
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StartLabels {
    pub provider: String,
    pub stream: String,
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub provider: String,
    pub stream: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    pub provider: String,
    pub stream: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub provider: String,
    /// `2xx` … `5xx`, or `error` when no response arrived.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub provider: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub provider: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    /// `release` or `debug`.
    pub profile: String,
    pub os: String,
    pub arch: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BandLabels {
    pub band: String,
}

/// The quality bands of company integrations: `excellent` (≥ 90), `good` (≥ 75),
/// `fair` (≥ 50), `poor`, and `unknown` before any data-source contribution.
pub const QUALITY_BANDS: [&str; 5] = ["excellent", "good", "fair", "poor", "unknown"];

/// The band of an integration's quality score (0–100).
pub fn quality_band(quality: Option<f64>) -> &'static str {
    match quality {
        Some(q) if q >= 90.0 => "excellent",
        Some(q) if q >= 75.0 => "good",
        Some(q) if q >= 50.0 => "fair",
        Some(_) => "poor",
        None => "unknown",
    }
}

type HistogramFamily = Family<StreamLabels, Histogram, fn() -> Histogram>;
type ClassHistogramFamily = Family<ClassLabels, Histogram, fn() -> Histogram>;
/// A gauge of seconds (fractions kept).
pub type SecondsGauge = Gauge<f64, AtomicU64>;

fn run_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// 5 ms to about 41 s.
fn request_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub runs_started: Family<StartLabels, Counter>,
    pub runs_finished: Family<OutcomeLabels, Counter>,
    pub run_duration: HistogramFamily,
    pub records: Family<RecordLabels, Counter>,
    pub pages: Family<StreamLabels, Counter>,
    pub http_calls: Family<ClassLabels, Counter>,
    pub http_duration: ClassHistogramFamily,
    pub retries: Family<ProviderLabels, Counter>,
    pub rate_limit_waits: Family<ProviderLabels, Counter>,
    pub rate_limit_wait_seconds: Family<ProviderLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Quota keys the rate limiters track (idle ones are evicted).
    pub rate_limit_keys: Gauge,
    pub token_refreshes: Family<ResultLabels, Counter>,
    pub lease_losses: Family<ProviderLabels, Counter>,
    pub jobs: Family<StateLabels, Gauge>,
    pub connections: Family<StatusLabels, Gauge>,
    pub config_reloads: Family<StateLabels, Counter>,
    pub stalled_runs: Family<ProviderLabels, Counter>,
    pub contributions: Family<KindLabels, Counter>,
    pub integrations: Family<BandLabels, Gauge>,
    /// The most recent successful run of each stream, over every tenant (Unix seconds).
    pub last_success: Family<StreamLabels, SecondsGauge>,
    /// How far the furthest-behind tenant's job of each stream is behind.
    pub sync_lag: Family<StreamLabels, SecondsGauge>,
    /// How long the longest-waiting claimable job has been due.
    pub job_lag: SecondsGauge,
    pub build_info: Family<BuildLabels, Gauge>,
    /// Runs this process is running now.
    pub runs_in_progress: Family<ProviderLabels, Gauge>,
    /// The streams that have `last_success` and `sync_lag` series.
    streams_seen: std::sync::Mutex<std::collections::HashSet<StreamLabels>>,
    /// A connection status changed in this process: the store gauges are out of date.
    stale: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tributary");
        let m = Self {
            runs_started: Family::default(),
            runs_finished: Family::default(),
            run_duration: Family::new_with_constructor(run_duration_histogram as fn() -> Histogram),
            records: Family::default(),
            pages: Family::default(),
            http_calls: Family::default(),
            http_duration: Family::new_with_constructor(request_duration_histogram as fn() -> Histogram),
            retries: Family::default(),
            rate_limit_waits: Family::default(),
            rate_limit_wait_seconds: Family::default(),
            rate_limit_keys: Gauge::default(),
            token_refreshes: Family::default(),
            lease_losses: Family::default(),
            jobs: Family::default(),
            connections: Family::default(),
            config_reloads: Family::default(),
            stalled_runs: Family::default(),
            contributions: Family::default(),
            integrations: Family::default(),
            last_success: Family::default(),
            sync_lag: Family::default(),
            job_lag: SecondsGauge::default(),
            build_info: Family::default(),
            runs_in_progress: Family::default(),
            streams_seen: Default::default(),
            stale: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register("runs_started", "Runs started", m.runs_started.clone());
        registry.register("runs_finished", "Runs finished, by outcome", m.runs_finished.clone());
        registry.register("run_duration_seconds", "Run duration", m.run_duration.clone());
        registry.register(
            "records",
            "Records by result (inserted, updated, unchanged, filtered, dead_lettered)",
            m.records.clone(),
        );
        registry.register("pages", "Pages committed (records and position in one transaction)", m.pages.clone());
        registry.register(
            "http_requests",
            "HTTP requests sent to providers, by status class (error = no response)",
            m.http_calls.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from sending a request to the end of its response body, by status class",
            m.http_duration.clone(),
        );
        registry.register("retries", "Requests retried after a transient failure", m.retries.clone());
        registry.register("rate_limit_waits", "Waits for a provider's rate limit", m.rate_limit_waits.clone());
        registry.register(
            "rate_limit_wait_seconds",
            "Time spent waiting for rate limits",
            m.rate_limit_wait_seconds.clone(),
        );
        registry.register(
            "rate_limit_keys",
            "Rate-limit quota keys tracked (connections, shared provider quotas)",
            m.rate_limit_keys.clone(),
        );
        registry.register("token_refreshes", "Access tokens obtained, by result", m.token_refreshes.clone());
        registry.register("lease_losses", "Runs that lost their job lease", m.lease_losses.clone());
        registry.register("jobs", "Jobs by state (total, due, overdue, running, paused)", m.jobs.clone());
        registry.register("connections", "Connections by status", m.connections.clone());
        registry.register("config_reloads", "Configuration reloads, by result", m.config_reloads.clone());
        registry.register(
            "stalled_runs",
            "Runs reported stalled (no progress for the configured time)",
            m.stalled_runs.clone(),
        );
        registry.register("contributions", "Contributions recorded, by kind", m.contributions.clone());
        registry.register(
            "integrations",
            "Company integrations by quality band (excellent, good, fair, poor, unknown)",
            m.integrations.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When a run of the stream last succeeded, for any tenant (Unix time)",
            m.last_success.clone(),
        );
        registry.register(
            "sync_lag_seconds",
            "Time since the stream last succeeded for the tenant furthest behind (since the job's creation if never)",
            m.sync_lag.clone(),
        );
        registry.register(
            "job_lag_seconds",
            "How long the longest-waiting claimable job has been due (0 when none is)",
            m.job_lag.clone(),
        );
        registry.register(
            "runs_in_progress",
            "Runs in progress in this process (the `running` jobs gauge counts every replica's)",
            m.runs_in_progress.clone(),
        );
        registry.register(
            "build_info",
            "The running build: version, profile, os and arch (always 1)",
            m.build_info.clone(),
        );
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                profile: if cfg!(debug_assertions) { "debug" } else { "release" }.to_owned(),
                os: std::env::consts::OS.to_owned(),
                arch: std::env::consts::ARCH.to_owned(),
            })
            .set(1);
        Self { registry, ..m }
    }

    /// Marks the store gauges out of date (a connection's status changed in this
    /// process), so the next housekeeping tick recomputes them.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// Whether the store gauges were marked out of date; clears the mark.
    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::Relaxed)
    }

    /// Sets the integrations-by-band gauges from every integration's quality.
    pub fn set_quality_bands(&self, qualities: &[Option<f64>]) {
        for band in QUALITY_BANDS {
            let n = qualities.iter().filter(|q| quality_band(**q) == band).count();
            self.integrations.get_or_create(&BandLabels { band: band.to_owned() }).set(n as i64);
        }
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        prometheus_text(&self.encode_openmetrics())
    }

    pub fn set_gauge(family: &Family<StateLabels, Gauge>, state: &str, value: i64) {
        family.get_or_create(&StateLabels { state: state.to_owned() }).set(value);
    }
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition: a counter family's
/// `HELP` and `TYPE` lines name it with the `_total` suffix its samples carry, and the
/// OpenMetrics-only `# UNIT` and `# EOF` lines are left out.
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" { format!("{name}_total") } else { name.to_owned() };
            if let Some(text) = help.take() {
                let text = text.split_once(' ').map_or("", |(_, t)| t);
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if !(line.starts_with("# UNIT ") || line == "# EOF") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

/// One run's HTTP traffic counted as it happens: the [`CallObserver`] of its session.
/// The series of each status class are looked up once, on the class's first request.
pub struct HttpMetrics<'a> {
    metrics: &'a Metrics,
    provider: String,
    classes: [OnceLock<(Counter, Histogram)>; 6],
    retries: Counter,
    waits: Counter,
    wait_seconds: Counter<f64, AtomicU64>,
}

impl<'a> HttpMetrics<'a> {
    pub fn new(metrics: &'a Metrics, provider: &str) -> Self {
        let labels = ProviderLabels { provider: provider.to_owned() };
        Self {
            metrics,
            provider: provider.to_owned(),
            classes: Default::default(),
            retries: metrics.retries.get_or_create(&labels).clone(),
            waits: metrics.rate_limit_waits.get_or_create(&labels).clone(),
            wait_seconds: metrics.rate_limit_wait_seconds.get_or_create(&labels).clone(),
        }
    }
}

impl CallObserver for HttpMetrics<'_> {
    fn request(&self, class: usize, elapsed: Duration) {
        let Some(slot) = self.classes.get(class) else { return };
        let (count, duration) = slot.get_or_init(|| {
            let class = if class == 0 { "error".to_owned() } else { format!("{class}xx") };
            let labels = ClassLabels { provider: self.provider.clone(), class };
            (
                self.metrics.http_calls.get_or_create(&labels).clone(),
                self.metrics.http_duration.get_or_create(&labels).clone(),
            )
        });
        count.inc();
        duration.observe(elapsed.as_secs_f64());
    }

    fn retry(&self) {
        self.retries.inc();
    }

    fn rate_limit_wait(&self, waited: Duration) {
        self.waits.inc();
        self.wait_seconds.inc_by(waited.as_secs_f64());
    }
}

/// Counts a run's records (by result) and pages as its pages commit: each call adds
/// what the run's statistics gained since the previous one, so the counters follow
/// the run page by page and end equal to its run row, counted once.
pub struct RunTally<'a> {
    metrics: &'a Metrics,
    provider: String,
    stream: String,
    /// Inserted, updated, unchanged, filtered, dead-lettered, pages: counted so far.
    counted: [i64; 6],
}

impl<'a> RunTally<'a> {
    const RESULTS: [&'static str; 5] = ["inserted", "updated", "unchanged", "filtered", "dead_lettered"];

    pub fn new(metrics: &'a Metrics, provider: &str, stream: &str) -> Self {
        Self { metrics, provider: provider.to_owned(), stream: stream.to_owned(), counted: [0; 6] }
    }

    /// Counts what `stats` (the run's totals so far) holds beyond what was counted.
    pub fn advance(&mut self, stats: &RunStats) {
        let now = [stats.inserted, stats.updated, stats.unchanged, stats.filtered, stats.dead_lettered, stats.pages];
        for (i, (seen, total)) in self.counted.iter_mut().zip(now).enumerate() {
            let Ok(added) = u64::try_from(total - *seen) else { continue };
            if added == 0 {
                continue;
            }
            *seen = total;
            match Self::RESULTS.get(i) {
                Some(result) => self.metrics.records.get_or_create(&RecordLabels {
                    provider: self.provider.clone(),
                    stream: self.stream.clone(),
                    result: (*result).to_owned(),
                }),
                None => self.metrics.pages.get_or_create(&stream(&self.provider, &self.stream)),
            }
            .inc_by(added);
        }
    }
}

fn stream(provider: &str, stream: &str) -> StreamLabels {
    StreamLabels { provider: provider.to_owned(), stream: stream.to_owned() }
}

/// A run's contribution to a company integration was recorded.
pub struct ContributionRecorded<'a> {
    pub tenant: &'a str,
    pub provider: &'a str,
    pub user: &'a str,
    pub kind: &'a str,
    pub id: i64,
    pub confidence: f64,
    /// The integration's quality after the contribution was folded in.
    pub quality: Option<f64>,
}

impl ContributionRecorded<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::info!(
            tenant = self.tenant,
            provider = self.provider,
            user = self.user,
            kind = self.kind,
            contribution = self.id,
            confidence = self.confidence,
            integration_quality = self.quality,
            "contribution recorded"
        );
        m.contributions
            .get_or_create(&KindLabels { provider: self.provider.to_owned(), kind: self.kind.to_owned() })
            .inc();
    }
}

/// Counts a run in `tributary_runs_in_progress` for as long as it is held, however the
/// run ends (its future may be dropped).
pub struct InProgress(Gauge);

impl InProgress {
    pub fn new(m: &Metrics, provider: &str) -> Self {
        let gauge = m.runs_in_progress.get_or_create(&ProviderLabels { provider: provider.to_owned() }).clone();
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A run began.
pub struct RunStarted<'a> {
    pub run: &'a RunRow,
}

impl RunStarted<'_> {
    pub fn emit(&self, m: &Metrics) {
        let r = self.run;
        tracing::info!(tenant = %r.tenant_id, provider = %r.provider, stream = %r.stream, run_id = %r.id, trigger = r.trigger.as_str(), cursor = r.cursor_before.as_deref(), "run started");
        m.runs_started
            .get_or_create(&StartLabels {
                provider: r.provider.to_string(),
                stream: r.stream.to_string(),
                trigger: r.trigger.as_str().into(),
            })
            .inc();
    }
}

/// A run ended (any outcome). Its records, pages and HTTP traffic were counted as they
/// happened ([`RunTally`], [`HttpMetrics`]); this counts the run and its duration.
pub struct RunFinished<'a> {
    pub run: &'a RunRow,
}

impl RunFinished<'_> {
    pub fn emit(&self, m: &Metrics) {
        let r = self.run;
        let s = &r.stats;
        let secs = r.finished_at.map_or(0.0, |f| (f - r.started_at).num_milliseconds() as f64 / 1000.0);
        if r.outcome == crate::model::RunOutcome::Success {
            tracing::info!(
                tenant = %r.tenant_id, provider = %r.provider, stream = %r.stream, run_id = %r.id,
                outcome = r.outcome.as_str(), fetched = s.fetched, inserted = s.inserted, updated = s.updated,
                unchanged = s.unchanged, filtered = s.filtered, dead_lettered = s.dead_lettered, pages = s.pages,
                http_calls = s.http_calls, retries = s.retries, rate_limit_waits = s.rate_limit_waits, seconds = secs,
                "run finished"
            );
        } else {
            tracing::warn!(
                tenant = %r.tenant_id, provider = %r.provider, stream = %r.stream, run_id = %r.id,
                outcome = r.outcome.as_str(), fetched = s.fetched, pages = s.pages, seconds = secs,
                error = s.error.as_deref().unwrap_or(""),
                "run finished"
            );
        }
        let p = r.provider.to_string();
        let st = r.stream.to_string();
        m.runs_finished
            .get_or_create(&OutcomeLabels {
                provider: p.clone(),
                stream: st.clone(),
                outcome: r.outcome.as_str().into(),
            })
            .inc();
        m.run_duration.get_or_create(&stream(&p, &st)).observe(secs);
    }
}

/// Something happened to a connection's access token.
pub struct TokenRefresh<'a> {
    pub tenant: &'a str,
    pub provider: &'a str,
    pub event: &'a TokenEvent<'a>,
}

impl TokenRefresh<'_> {
    /// Logs the event and counts it in `tributary_token_refreshes_total{result}`:
    /// `ok` (a token obtained from the provider), `shared` (another runner's refresh
    /// used instead of refreshing again), `refused` (the grant is dead: needs reauth),
    /// `error` (failed for now).
    pub fn emit(&self, m: &Metrics) {
        let (tenant, provider) = (self.tenant, self.provider);
        let result = match self.event {
            TokenEvent::Obtained { rotated } => {
                tracing::info!(tenant, provider, rotated, "access token obtained");
                "ok"
            }
            TokenEvent::Shared => {
                tracing::debug!(tenant, provider, "another runner refreshed the token; using theirs");
                "shared"
            }
            TokenEvent::Refused { reason } => {
                tracing::warn!(
                    tenant,
                    provider,
                    reason,
                    "the provider refused the connection's grant; it needs new credentials"
                );
                "refused"
            }
            TokenEvent::Failed { reason } => {
                tracing::warn!(tenant, provider, reason, "obtaining an access token failed");
                "error"
            }
        };
        m.token_refreshes.get_or_create(&ResultLabels { provider: provider.to_owned(), result: result.into() }).inc();
    }
}

/// A run lost its job lease (another worker may own the job now).
pub struct LeaseLost<'a> {
    pub tenant: &'a str,
    pub provider: &'a str,
    pub stream: &'a str,
    pub job_id: i64,
}

impl LeaseLost<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::warn!(
            tenant = self.tenant,
            provider = self.provider,
            stream = self.stream,
            job_id = self.job_id,
            "lease lost; the run stops without writing"
        );
        m.lease_losses.get_or_create(&ProviderLabels { provider: self.provider.to_owned() }).inc();
    }
}

/// A run made no progress for the configured time.
pub struct RunStalled<'a> {
    pub tenant: &'a str,
    pub provider: &'a str,
    pub stream: &'a str,
    pub run_id: &'a str,
    pub idle_secs: u64,
}

impl RunStalled<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::warn!(
            tenant = self.tenant,
            provider = self.provider,
            stream = self.stream,
            run_id = self.run_id,
            idle_secs = self.idle_secs,
            "run stalled: no progress"
        );
        m.stalled_runs.get_or_create(&ProviderLabels { provider: self.provider.to_owned() }).inc();
    }
}

/// A configuration reload was applied or rejected.
pub struct ConfigReload<'a> {
    pub ok: bool,
    pub detail: &'a str,
}

impl ConfigReload<'_> {
    pub fn emit(&self, m: &Metrics) {
        if self.ok {
            tracing::info!(detail = self.detail, "configuration reloaded");
        } else {
            tracing::error!(error = self.detail, "configuration rejected; the previous configuration keeps running");
        }
        m.config_reloads.get_or_create(&StateLabels { state: if self.ok { "ok" } else { "rejected" }.into() }).inc();
    }
}

/// A connection needs new credentials (a refused grant, rejected or missing
/// credentials). A refused grant is counted by [`TokenRefresh`].
pub struct NeedsReauth<'a> {
    pub tenant: &'a str,
    pub provider: &'a str,
    pub reason: &'a str,
}

impl NeedsReauth<'_> {
    /// Logs it and marks the connection gauges out of date.
    pub fn emit(&self, m: &Metrics) {
        tracing::warn!(
            tenant = self.tenant,
            provider = self.provider,
            reason = self.reason,
            "connection needs new credentials; its jobs stop until `credentials set`"
        );
        m.mark_stale();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_bounded_labels() {
        let m = Metrics::new();
        Metrics::set_gauge(&m.jobs, "due", 3);
        m.lease_losses.get_or_create(&ProviderLabels { provider: "hubspot".into() }).inc();
        m.run_duration.get_or_create(&stream("aptem", "learners")).observe(1.5);
        let text = m.encode();
        assert!(text.contains("tributary_jobs{state=\"due\"} 3"), "{text}");
        assert!(text.contains("tributary_lease_losses_total{provider=\"hubspot\"} 1"), "{text}");
        assert!(text.contains("# TYPE tributary_run_duration_seconds histogram"), "{text}");
        assert!(
            text.contains("tributary_run_duration_seconds_count{provider=\"aptem\",stream=\"learners\"} 1"),
            "{text}"
        );
        assert!(!text.contains("tenant"), "{text}");
    }

    #[test]
    fn requests_and_pages_count_as_they_happen_and_the_run_end_adds_nothing() {
        use crate::model::{ProviderId, RunOutcome, RunTrigger, StreamName, TenantId};
        let m = Metrics::new();
        let http = HttpMetrics::new(&m, "hubspot");
        for class in [2, 2, 2, 4, 0] {
            http.request(class, Duration::from_millis(30));
        }
        http.retry();
        http.rate_limit_wait(Duration::from_millis(1500));
        let running = InProgress::new(&m, "hubspot");
        assert!(m.encode().contains("tributary_runs_in_progress{provider=\"hubspot\"} 1\n"));
        drop(running);
        assert!(m.encode().contains("tributary_runs_in_progress{provider=\"hubspot\"} 0\n"));
        let mut tally = RunTally::new(&m, "hubspot", "contacts");
        let mut stats = RunStats { inserted: 4, filtered: 1, pages: 1, ..Default::default() };
        tally.advance(&stats);
        stats.inserted = 7;
        stats.pages = 2;
        tally.advance(&stats);
        tally.advance(&stats);
        let text = m.encode();
        for line in [
            "tributary_http_requests_total{provider=\"hubspot\",class=\"2xx\"} 3",
            "tributary_http_requests_total{provider=\"hubspot\",class=\"4xx\"} 1",
            "tributary_http_requests_total{provider=\"hubspot\",class=\"error\"} 1",
            "tributary_http_request_duration_seconds_count{provider=\"hubspot\",class=\"2xx\"} 3",
            "tributary_retries_total{provider=\"hubspot\"} 1",
            "tributary_rate_limit_waits_total{provider=\"hubspot\"} 1",
            "tributary_rate_limit_wait_seconds_total{provider=\"hubspot\"} 1.5",
            "tributary_records_total{provider=\"hubspot\",stream=\"contacts\",result=\"inserted\"} 7",
            "tributary_records_total{provider=\"hubspot\",stream=\"contacts\",result=\"filtered\"} 1",
            "tributary_pages_total{provider=\"hubspot\",stream=\"contacts\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // The run's end counts the run, not its records or requests again.
        let now = chrono::Utc::now();
        let run = RunRow {
            id: uuid::Uuid::now_v7(),
            tenant_id: TenantId::parse("acme").unwrap(),
            job_id: 1,
            provider: ProviderId::parse("hubspot").unwrap(),
            stream: StreamName::parse("contacts").unwrap(),
            trigger: RunTrigger::Scheduled,
            started_at: now,
            finished_at: Some(now),
            outcome: RunOutcome::Success,
            cursor_before: None,
            stats: RunStats { http_calls: 5, ..stats },
        };
        RunFinished { run: &run }.emit(&m);
        let after = m.encode();
        assert!(
            after.contains("tributary_records_total{provider=\"hubspot\",stream=\"contacts\",result=\"inserted\"} 7")
        );
        assert!(after.contains("tributary_http_requests_total{provider=\"hubspot\",class=\"2xx\"} 3"));
        assert!(
            after.contains(
                "tributary_runs_finished_total{provider=\"hubspot\",stream=\"contacts\",outcome=\"success\"} 1"
            )
        );
        assert!(!after.contains("acme"), "tenant ids must not be labels");
    }

    #[test]
    fn the_prometheus_text_names_counter_families_with_their_suffix() {
        let m = Metrics::new();
        m.lease_losses.get_or_create(&ProviderLabels { provider: "hubspot".into() }).inc();
        let open = m.encode_openmetrics();
        assert!(open.contains("# TYPE tributary_lease_losses counter") && open.ends_with("# EOF\n"), "{open}");
        let text = m.encode();
        assert!(text.contains("# HELP tributary_lease_losses_total Runs that lost their job lease.\n"), "{text}");
        assert!(text.contains("# TYPE tributary_lease_losses_total counter\n"), "{text}");
        assert!(text.contains("# TYPE tributary_build_info gauge\n"), "{text}");
        assert!(text.contains("tributary_build_info{version=\""), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        // Every family has its help.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps, "{text}");
    }
}
