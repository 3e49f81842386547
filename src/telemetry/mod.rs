//! Telemetry: one Prometheus registry with every metric name in one place, and one
//! struct per notable happening whose `emit` writes the log line and updates the
//! metrics together, so the two cannot drift apart. Labels are bounded: provider and
//! stream (from the catalog), outcome, trigger, result and status class — never tenants.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http::auth::TokenEvent;
use crate::store::RunRow;

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

fn run_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub runs_started: Family<StartLabels, Counter>,
    pub runs_finished: Family<OutcomeLabels, Counter>,
    pub run_duration: HistogramFamily,
    pub records: Family<RecordLabels, Counter>,
    pub http_calls: Family<ClassLabels, Counter>,
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
            http_calls: Family::default(),
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
        registry.register(
            "http_requests",
            "HTTP requests sent to providers, by status class (error = no response)",
            m.http_calls.clone(),
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
        Self { registry, ..m }
    }

    /// Sets the integrations-by-band gauges from every integration's quality.
    pub fn set_quality_bands(&self, qualities: &[Option<f64>]) {
        for band in QUALITY_BANDS {
            let n = qualities.iter().filter(|q| quality_band(**q) == band).count();
            self.integrations.get_or_create(&BandLabels { band: band.to_owned() }).set(n as i64);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn set_gauge(family: &Family<StateLabels, Gauge>, state: &str, value: i64) {
        family.get_or_create(&StateLabels { state: state.to_owned() }).set(value);
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

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

/// A run ended (any outcome).
pub struct RunFinished<'a> {
    pub run: &'a RunRow,
    /// The run's HTTP traffic (responses by status class).
    pub http: &'a crate::http::CallStats,
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
        for (result, n) in [
            ("inserted", s.inserted),
            ("updated", s.updated),
            ("unchanged", s.unchanged),
            ("filtered", s.filtered),
            ("dead_lettered", s.dead_lettered),
        ] {
            if n > 0 {
                m.records
                    .get_or_create(&RecordLabels { provider: p.clone(), stream: st.clone(), result: result.into() })
                    .inc_by(n as u64);
            }
        }
        let pl = ProviderLabels { provider: p.clone() };
        for (i, n) in self.http.by_class.iter().enumerate() {
            if *n > 0 {
                let class = if i == 0 { "error".to_owned() } else { format!("{i}xx") };
                m.http_calls.get_or_create(&ClassLabels { provider: p.clone(), class }).inc_by(*n);
            }
        }
        m.retries.get_or_create(&pl).inc_by(s.retries.max(0) as u64);
        m.rate_limit_waits.get_or_create(&pl).inc_by(s.rate_limit_waits.max(0) as u64);
        m.rate_limit_wait_seconds.get_or_create(&pl).inc_by(s.rate_limit_wait_ms.max(0) as f64 / 1000.0);
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
    pub fn emit(&self, _m: &Metrics) {
        tracing::warn!(
            tenant = self.tenant,
            provider = self.provider,
            reason = self.reason,
            "connection needs new credentials; its jobs stop until `credentials set`"
        );
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
    fn run_finished_counts_http_by_status_class_and_records_by_result() {
        use crate::model::{ProviderId, RunOutcome, RunTrigger, StreamName, TenantId};
        let m = Metrics::new();
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
            stats: crate::store::RunStats { inserted: 7, http_calls: 5, ..Default::default() },
        };
        let http = crate::http::CallStats { http_calls: 5, by_class: [1, 0, 3, 0, 1, 0], ..Default::default() };
        RunFinished { run: &run, http: &http }.emit(&m);
        let text = m.encode();
        for line in [
            "tributary_http_requests_total{provider=\"hubspot\",class=\"2xx\"} 3",
            "tributary_http_requests_total{provider=\"hubspot\",class=\"4xx\"} 1",
            "tributary_http_requests_total{provider=\"hubspot\",class=\"error\"} 1",
            "tributary_records_total{provider=\"hubspot\",stream=\"contacts\",result=\"inserted\"} 7",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("acme"), "tenant ids must not be labels");
    }
}
