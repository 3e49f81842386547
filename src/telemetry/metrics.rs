//! The metric registry: every metric name and label set in one place, the Prometheus
//! text served on `/metrics`, and the per-request and per-page counters of a run.

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

use crate::model::RunStats;

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

/// Inbound webhooks: `provider` is a manifest with a `[webhooks]` section or `unknown`;
/// `outcome` is one of a fixed set (accepted, duplicate, bad_signature, stale, future,
/// malformed, too_large, rate_limited, unknown, error).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: String,
    pub outcome: String,
}

/// API requests refused: `reason` is `unauthorized` (no, bad, expired or revoked key),
/// `forbidden` (the key's role or tenant does not allow it) or `rate_limited`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiDeniedLabels {
    pub reason: &'static str,
}

/// Write-back attempts: `provider`, `op` (create, update, delete, comment) and `outcome`,
/// one of [`WRITE_OUTCOMES`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub provider: String,
    pub op: String,
    pub outcome: String,
}

/// How a write-back attempt ends: the provider applied it (`succeeded`), it will be
/// tried again (`retry`: rate limits, 5xx, timeouts, credentials), a permanent refusal
/// (`failed`), the provider's object was newer (`conflict`), or the attempt's lease was
/// lost before it was settled (`lost`).
pub const WRITE_OUTCOMES: [&str; 5] = ["succeeded", "retry", "failed", "conflict", "lost"];

/// Outbound webhook attempts: `outcome` is one of [`DELIVERY_OUTCOMES`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub outcome: String,
}

/// How an outbound webhook attempt ends: a 2xx (`delivered`), another status
/// (`failed`), 410 Gone (`gone`), no answer within the timeout (`timeout`), a target
/// refused as private or local (`refused_target`), or no answer for another reason
/// (`error`: connection refused, TLS, an unreadable secret).
pub const DELIVERY_OUTCOMES: [&str; 6] = ["delivered", "failed", "gone", "timeout", "refused_target", "error"];

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
pub struct ReasonLabels {
    pub reason: String,
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
    /// Control requests refused before they ran, by reason.
    pub control_denied: Family<ReasonLabels, Counter>,
    pub stalled_runs: Family<ProviderLabels, Counter>,
    pub webhooks_received: Family<WebhookLabels, Counter>,
    /// Outbound webhook attempts by outcome.
    pub webhook_attempts: Family<DeliveryLabels, Counter>,
    /// Outbound webhook attempts that reached the network: time to the answer (or timeout).
    pub webhook_delivery_duration: Histogram,
    /// Webhook endpoints this process disabled (410 Gone, or the retry schedule spent).
    pub webhook_endpoints_disabled: Counter,
    /// Write-back attempts by provider, operation and outcome.
    pub write_attempts: Family<WriteLabels, Counter>,
    /// Write-back attempts: time from the claim to the settled answer (lookups, version
    /// reads and rate-limit waits included).
    pub write_duration: Histogram,
    /// Outbox messages waiting for delivery (read from the store; every replica's).
    pub webhook_outbox_pending: Gauge,
    pub contributions: Family<KindLabels, Counter>,
    pub integrations: Family<BandLabels, Gauge>,
    /// The most recent successful run of each stream, over every tenant (Unix seconds).
    pub last_success: Family<StreamLabels, SecondsGauge>,
    /// How far the furthest-behind tenant's job of each stream is behind.
    pub sync_lag: Family<StreamLabels, SecondsGauge>,
    /// How long the longest-waiting claimable job has been due.
    pub job_lag: SecondsGauge,
    /// Claims of due jobs: one claim transaction each (the fleet's leases counted, jobs
    /// taken), whether it took any.
    pub claim_duration: Histogram,
    pub build_info: Family<BuildLabels, Gauge>,
    /// Runs this process is running now.
    pub runs_in_progress: Family<ProviderLabels, Gauge>,
    /// `/api/v1` requests refused, by reason.
    pub api_denied: Family<ApiDeniedLabels, Counter>,
    /// Sweeps after complete full passes, by outcome (`swept`, `guarded`).
    pub sweeps: Family<OutcomeLabels, Counter>,
    /// Records sweeps marked deleted.
    pub swept_records: Family<StreamLabels, Counter>,
    /// The streams that have `last_success` and `sync_lag` series.
    pub(super) streams_seen: std::sync::Mutex<std::collections::HashSet<StreamLabels>>,
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
            control_denied: Family::default(),
            stalled_runs: Family::default(),
            webhooks_received: Family::default(),
            webhook_attempts: Family::default(),
            webhook_delivery_duration: request_duration_histogram(),
            webhook_endpoints_disabled: Counter::default(),
            write_attempts: Family::default(),
            write_duration: request_duration_histogram(),
            webhook_outbox_pending: Gauge::default(),
            contributions: Family::default(),
            integrations: Family::default(),
            last_success: Family::default(),
            sync_lag: Family::default(),
            job_lag: SecondsGauge::default(),
            claim_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            build_info: Family::default(),
            runs_in_progress: Family::default(),
            api_denied: Family::default(),
            sweeps: Family::default(),
            swept_records: Family::default(),
            streams_seen: Default::default(),
            stale: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register("runs_started", "Runs started", m.runs_started.clone());
        registry.register(
            "api_requests_denied",
            "HTTP API requests refused, by reason (unauthorized, forbidden, rate_limited)",
            m.api_denied.clone(),
        );
        registry.register("runs_finished", "Runs finished, by outcome", m.runs_finished.clone());
        registry.register("run_duration_seconds", "Run duration", m.run_duration.clone());
        registry.register(
            "records",
            "Records by result (inserted, updated, unchanged, filtered, dead_lettered)",
            m.records.clone(),
        );
        registry.register(
            "sweeps",
            "Sweeps after complete full passes, by outcome (swept; guarded: more unseen records than the stream's \
             sweep_max_share, nothing deleted)",
            m.sweeps.clone(),
        );
        registry.register(
            "swept_records",
            "Records marked deleted by sweeps (not seen in a complete full pass)",
            m.swept_records.clone(),
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
            "control_denied",
            "Control requests refused before they ran (unknown peer, wider scope than allowed, out of scope), by reason",
            m.control_denied.clone(),
        );
        registry.register(
            "stalled_runs",
            "Runs reported stalled (no progress for the configured time)",
            m.stalled_runs.clone(),
        );
        registry.register(
            "webhooks_received",
            "Inbound webhooks, by provider and outcome",
            m.webhooks_received.clone(),
        );
        registry.register(
            "webhook_delivery_attempts",
            "Outbound webhook delivery attempts, by outcome",
            m.webhook_attempts.clone(),
        );
        registry.register(
            "webhook_delivery_duration_seconds",
            "Outbound webhook attempts: time from sending to the answer or the timeout",
            m.webhook_delivery_duration.clone(),
        );
        registry.register(
            "webhook_endpoints_disabled",
            "Webhook endpoints disabled (410 Gone or the retry schedule spent)",
            m.webhook_endpoints_disabled.clone(),
        );
        registry.register(
            "write_attempts",
            "Write-back attempts, by provider, operation and outcome",
            m.write_attempts.clone(),
        );
        registry.register(
            "claim_duration_seconds",
            "Claims of due jobs: one claim transaction each, whether it took any",
            m.claim_duration.clone(),
        );
        registry.register(
            "write_duration_seconds",
            "Write-back attempts: time from the claim to the settled answer",
            m.write_duration.clone(),
        );
        registry.register(
            "webhook_outbox_pending",
            "Outbound webhook messages waiting for delivery, in the store",
            m.webhook_outbox_pending.clone(),
        );
        for outcome in DELIVERY_OUTCOMES {
            let _ = m.webhook_attempts.get_or_create(&DeliveryLabels { outcome: outcome.to_owned() });
        }
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
pub(super) fn prometheus_text(openmetrics: &str) -> String {
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

/// One run's HTTP traffic counted as it happens (the sync makes it its session's
/// call observer).
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

impl HttpMetrics<'_> {
    /// A request ended: `class` is its status class (1–5), or 0 when no response arrived.
    pub fn request(&self, class: usize, elapsed: Duration) {
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

    /// A failed attempt is about to be retried.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// A wait of `waited` for a rate limit.
    pub fn rate_limit_wait(&self, waited: Duration) {
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

pub(super) fn stream(provider: &str, stream: &str) -> StreamLabels {
    StreamLabels { provider: provider.to_owned(), stream: stream.to_owned() }
}
