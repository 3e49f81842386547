//! One struct per notable happening whose `emit` writes the log line and updates the
//! metrics together, so the two cannot drift apart.

use prometheus_client::metrics::gauge::Gauge;

use super::metrics::*;
use crate::model::RunRow;

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

/// What happened to a connection's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent<'a> {
    /// A new token was obtained from the provider (and stored).
    Obtained { rotated: bool },
    /// Another runner refreshed while this one waited; its token is used.
    Shared,
    /// The provider refused the grant; the connection needs new credentials.
    Refused { reason: &'a str },
    /// Obtaining a token failed for now (network, server error, store).
    Failed { reason: &'a str },
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

/// A control request was refused before it ran: an unknown peer, a scope wider than the
/// peer's, or a command outside the caller's scope.
pub struct ControlDenied<'a> {
    /// e.g. `peer:1001(alice)`.
    pub actor: &'a str,
    pub command: &'a str,
    /// `unknown_peer`, `unknown_caller`, `wider_scope` or `scope`.
    pub reason: &'a str,
    pub message: &'a str,
}

impl ControlDenied<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::warn!(
            actor = self.actor,
            command = self.command,
            reason = self.reason,
            error = self.message,
            "control request denied"
        );
        m.control_denied.get_or_create(&ReasonLabels { reason: self.reason.to_owned() }).inc();
    }
}

/// A sweep after a complete full pass: records not seen became deleted, or the guard
/// held them back (more than the stream's share; nothing deleted, the run ends
/// `partial`).
pub struct SweepFinished<'a> {
    pub tenant: &'a str,
    pub provider: &'a str,
    pub stream: &'a str,
    pub entity: &'a str,
    pub run_id: uuid::Uuid,
    /// Live records before the sweep.
    pub live: u64,
    /// Records deleted (swept) or that would have been (guarded).
    pub unseen: u64,
    pub guarded: bool,
    pub max_share: f64,
}

impl SweepFinished<'_> {
    pub fn emit(&self, m: &Metrics) {
        let outcome = if self.guarded { "guarded" } else { "swept" };
        if self.guarded {
            tracing::warn!(
                tenant = self.tenant, provider = self.provider, stream = self.stream, entity = self.entity,
                run_id = %self.run_id, live = self.live, unseen = self.unseen, max_share = self.max_share,
                "sweep held back by its guard: more records unseen than the stream's share; nothing deleted"
            );
        } else {
            tracing::info!(
                tenant = self.tenant, provider = self.provider, stream = self.stream, entity = self.entity,
                run_id = %self.run_id, live = self.live, deleted = self.unseen,
                "swept records not seen in a complete full pass"
            );
        }
        m.sweeps
            .get_or_create(&OutcomeLabels {
                provider: self.provider.to_owned(),
                stream: self.stream.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if !self.guarded {
            m.swept_records
                .get_or_create(&StreamLabels { provider: self.provider.to_owned(), stream: self.stream.to_owned() })
                .inc_by(self.unseen);
        }
    }
}
