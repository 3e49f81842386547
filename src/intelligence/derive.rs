//! Contributions derived from a finished run and its connection's recent runs.
//!
//! Every score is computed from the run log (counts, HTTP figures, outcomes, timings);
//! nothing here stands in for a measurement. Scores are 0–100, confidence 0–1.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::model::{ContributionKind, ErrorClass, RunOutcome, RunRow, RunTrigger};

/// A run is "mostly unchanged" evidence when at least this share of recent successful
/// runs wrote nothing new.
pub const UNCHANGED_SHARE_FOR_SLOWER: f64 = 0.8;
/// Rate-limit waits in at least this share of recent runs suggest spreading schedules.
pub const WAITING_SHARE_FOR_SPREAD: f64 = 0.5;
/// A dead-letter share at or above this points at the mapping.
pub const DEAD_LETTER_SHARE_FOR_MAPPING: f64 = 0.05;
/// Suggestions need at least this many recent runs as evidence.
pub const MIN_RUNS_FOR_SUGGESTIONS: usize = 5;

/// What a run's contributions are derived from.
#[derive(Debug)]
pub struct RunContext<'a> {
    /// The finished run.
    pub run: &'a RunRow,
    /// Recent finished runs of the same connection (every stream), newest first; the run
    /// itself included.
    pub history: &'a [RunRow],
    /// How the connection authenticates (`oauth2_refresh`, `api_key`, …).
    pub auth_method: &'a str,
    /// The run's job schedule, and its typical interval in seconds.
    pub schedule: &'a str,
    pub interval_secs: Option<f64>,
    /// Streams the connection may sync (enabled, and granted to the owner's role).
    pub streams_allowed: &'a [String],
    /// The tenant's time zone (hours of use are local hours).
    pub timezone: Tz,
    /// Dead-letter reasons of this run with their counts, most frequent first.
    pub dead_letter_reasons: &'a [(String, u64)],
}

/// One contribution before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub kind: ContributionKind,
    pub confidence: f64,
    pub quality: f64,
    pub impact: f64,
    pub reliability: f64,
    pub consistency: f64,
    pub data: Value,
    pub data_freshness: DateTime<Utc>,
}

/// The contributions of the kinds in `scope` that the run supports with evidence.
pub fn derive(ctx: &RunContext<'_>, scope: &[ContributionKind]) -> Vec<Derived> {
    let run = ctx.run;
    if run.outcome == RunOutcome::Cancelled || run.outcome == RunOutcome::Running {
        return Vec::new();
    }
    let facts = History::of(ctx);
    let mut out = Vec::new();
    for kind in ContributionKind::ALL {
        if !scope.contains(kind) {
            continue;
        }
        let derived = match kind {
            ContributionKind::DataSource => data_source(ctx, &facts),
            ContributionKind::PerformanceMetrics => performance(ctx, &facts),
            ContributionKind::ErrorReporting => error_report(ctx, &facts),
            ContributionKind::UsagePattern => Some(usage(ctx, &facts)),
            ContributionKind::Configuration => configuration(ctx, &facts),
            ContributionKind::OptimizationSuggestion => suggestions(ctx, &facts),
        };
        out.extend(derived);
    }
    out
}

/// Figures over the connection's recent runs.
struct History {
    runs: usize,
    success_share: f64,
    /// Successful runs, and the share of them that inserted or updated nothing.
    successes: usize,
    unchanged_share: f64,
    /// Share of runs that waited on rate limits.
    waiting_share: f64,
    /// Per-run valid-record shares (runs that read records).
    valid_shares: Vec<f64>,
    /// Records considered (fetched, not filtered) over the history.
    records: i64,
    /// Streams with a successful run, and when each last succeeded.
    synced: BTreeMap<String, DateTime<Utc>>,
    /// Seconds between consecutive run starts.
    gaps: Vec<f64>,
}

impl History {
    fn of(ctx: &RunContext<'_>) -> Self {
        let h = ctx.history;
        let runs = h.len().max(1);
        let ok: Vec<&RunRow> = h.iter().filter(|r| r.outcome == RunOutcome::Success).collect();
        let unchanged = ok.iter().filter(|r| r.stats.inserted + r.stats.updated == 0).count();
        let mut synced = BTreeMap::new();
        for r in &ok {
            let at = r.finished_at.unwrap_or(r.started_at);
            let e = synced.entry(r.stream.to_string()).or_insert(at);
            *e = (*e).max(at);
        }
        let mut starts: Vec<DateTime<Utc>> = h.iter().map(|r| r.started_at).collect();
        starts.sort();
        Self {
            runs: h.len(),
            success_share: ok.len() as f64 / runs as f64,
            successes: ok.len(),
            unchanged_share: if ok.is_empty() { 0.0 } else { unchanged as f64 / ok.len() as f64 },
            waiting_share: h.iter().filter(|r| r.stats.rate_limit_waits > 0).count() as f64 / runs as f64,
            valid_shares: h.iter().filter_map(valid_share).collect(),
            records: h.iter().map(|r| (r.stats.fetched - r.stats.filtered).max(0)).sum(),
            synced,
            gaps: starts.windows(2).map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1000.0).collect(),
        }
    }

    fn reliability(&self) -> f64 {
        round2(100.0 * self.success_share)
    }
}

/// Share of a run's considered records (fetched, not filtered) that mapped with every
/// required field present and valid; `None` when it read none.
fn valid_share(r: &RunRow) -> Option<f64> {
    let considered = r.stats.fetched - r.stats.filtered;
    (considered > 0).then(|| (considered - r.stats.dead_lettered).max(0) as f64 / considered as f64)
}

/// 100 × (1 − coefficient of variation), clamped; 100 with fewer than two values.
fn steadiness(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 100.0;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    if mean.abs() < f64::EPSILON {
        return 100.0;
    }
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    round2((100.0 * (1.0 - sd / mean.abs())).clamp(0.0, 100.0))
}

/// `n / (n + k)`: confidence that grows with the evidence.
fn evidence(n: f64, k: f64) -> f64 {
    round2(if n <= 0.0 { 0.0 } else { n / (n + k) })
}

fn finished(run: &RunRow) -> DateTime<Utc> {
    run.finished_at.unwrap_or(run.started_at)
}

fn data_source(ctx: &RunContext<'_>, h: &History) -> Option<Derived> {
    let run = ctx.run;
    if run.outcome != RunOutcome::Success {
        return None;
    }
    let allowed: BTreeSet<&str> = ctx.streams_allowed.iter().map(String::as_str).collect();
    let synced: Vec<&str> = h.synced.keys().map(String::as_str).filter(|s| allowed.contains(s)).collect();
    let coverage = if allowed.is_empty() { 0.0 } else { synced.len() as f64 / allowed.len() as f64 };
    let now = finished(run);
    // Staleness of the least recently synced allowed stream (never synced: unknown).
    let oldest = allowed.iter().map(|s| h.synced.get(*s).copied()).collect::<Option<Vec<_>>>();
    let freshness_hours =
        oldest.and_then(|t| t.into_iter().min()).map(|t| round2((now - t).num_seconds().max(0) as f64 / 3600.0));
    let considered = (run.stats.fetched - run.stats.filtered).max(0);
    let valid = valid_share(run);
    // A run that read nothing says nothing new about quality: use the recent runs'.
    let quality_share = valid.or_else(|| {
        (!h.valid_shares.is_empty()).then(|| h.valid_shares.iter().sum::<f64>() / h.valid_shares.len() as f64)
    });
    let quality = round2(100.0 * quality_share.unwrap_or(1.0));
    let dead_share = if considered > 0 { run.stats.dead_lettered as f64 / considered as f64 } else { 0.0 };
    Some(Derived {
        kind: ContributionKind::DataSource,
        confidence: evidence(h.records as f64, 50.0),
        quality,
        impact: round2(100.0 * coverage),
        reliability: h.reliability(),
        consistency: steadiness(&h.valid_shares),
        data: json!({
            "connection_method": ctx.auth_method,
            "last_sync": now,
            "freshness_hours": freshness_hours,
            "streams_synced": synced,
            "streams_allowed": ctx.streams_allowed,
            "coverage": round2(coverage),
            "records": considered,
            "valid_share": valid.map(round4),
            "dead_letter_share": round4(dead_share),
        }),
        data_freshness: now,
    })
}

fn performance(ctx: &RunContext<'_>, h: &History) -> Option<Derived> {
    let run = ctx.run;
    let s = &run.stats;
    if s.http_calls == 0 {
        return None;
    }
    let duration_ms = (finished(run) - run.started_at).num_milliseconds().max(1) as f64;
    let error_rate = s.retries as f64 / s.http_calls as f64;
    let waiting = (s.rate_limit_wait_ms as f64 / duration_ms).min(1.0);
    let p50s: Vec<f64> = ctx.history.iter().filter_map(|r| r.stats.http_p50_ms).collect();
    Some(Derived {
        kind: ContributionKind::PerformanceMetrics,
        confidence: evidence(s.http_calls as f64, 10.0),
        quality: round2(100.0 * (1.0 - error_rate.min(1.0))),
        impact: round2(100.0 * (waiting + error_rate).min(1.0)),
        reliability: h.reliability(),
        consistency: steadiness(&p50s),
        data: json!({
            "response_ms": { "p50": s.http_p50_ms.map(round2), "p95": s.http_p95_ms.map(round2), "p99": s.http_p99_ms.map(round2) },
            "http_calls": s.http_calls,
            "retries": s.retries,
            "error_rate": round4(error_rate),
            "throughput_rps": round2(s.fetched as f64 * 1000.0 / duration_ms),
            "duration_ms": duration_ms,
            "rate_limit_waits": s.rate_limit_waits,
            "rate_limit_wait_ms": s.rate_limit_wait_ms,
            "stream": run.stream,
        }),
        data_freshness: finished(run),
    })
}

/// How bad an error class is, and its score (0–100).
pub fn severity(class: ErrorClass) -> (&'static str, f64) {
    match class {
        ErrorClass::Auth => ("critical", 100.0),
        ErrorClass::Client | ErrorClass::Config => ("high", 75.0),
        ErrorClass::Transient | ErrorClass::Data | ErrorClass::Store => ("medium", 50.0),
        ErrorClass::RateLimited | ErrorClass::Cancelled => ("low", 25.0),
    }
}

fn error_report(ctx: &RunContext<'_>, h: &History) -> Option<Derived> {
    let run = ctx.run;
    let s = &run.stats;
    let failed = run.outcome == RunOutcome::Failed;
    if !failed && s.retries == 0 {
        return None;
    }
    let class = if failed {
        s.error_class.as_deref().and_then(ErrorClass::parse).unwrap_or(ErrorClass::Transient)
    } else if s.rate_limit_waits > 0 && s.retries == 0 {
        ErrorClass::RateLimited
    } else {
        ErrorClass::Transient
    };
    // Retried requests that recovered are worth a low-severity report only.
    let (severity, score) = if failed { severity(class) } else { severity(ErrorClass::RateLimited) };
    let same_class = ctx
        .history
        .iter()
        .filter(|r| r.outcome == RunOutcome::Failed && r.stats.error_class.as_deref() == Some(class.as_str()))
        .count();
    let failures = ctx.history.iter().filter(|r| r.outcome == RunOutcome::Failed).count().max(1);
    let message = match (&s.error, failed) {
        (Some(e), true) => e.clone(),
        _ => format!("{} request(s) retried; the run succeeded", s.retries),
    };
    Some(Derived {
        kind: ContributionKind::ErrorReporting,
        confidence: if failed { 1.0 } else { evidence(s.retries as f64, 3.0) },
        quality: round2(100.0 - score),
        impact: score,
        reliability: h.reliability(),
        // Recurring errors of one class are a consistent picture.
        consistency: if failed { round2(100.0 * same_class as f64 / failures as f64) } else { 100.0 },
        data: json!({
            "message": message,
            "count": s.retries + i64::from(failed),
            "severity": severity,
            "class": class,
            "status": s.error_status,
            "endpoint": s.error_endpoint,
            "stream": run.stream,
            "failed_runs_recent": ctx.history.iter().filter(|r| r.outcome == RunOutcome::Failed).count(),
        }),
        data_freshness: finished(run),
    })
}

fn usage(ctx: &RunContext<'_>, h: &History) -> Derived {
    let run = ctx.run;
    let mut hours = [0u32; 24];
    let mut triggers: BTreeMap<&'static str, usize> = BTreeMap::new();
    for r in ctx.history {
        hours[r.started_at.with_timezone(&ctx.timezone).hour() as usize] += 1;
        *triggers.entry(r.trigger.as_str()).or_default() += 1;
    }
    let runs = ctx.history.len().max(1) as f64;
    let share = |t: RunTrigger| round4(*triggers.get(t.as_str()).unwrap_or(&0) as f64 / runs);
    let manual = share(RunTrigger::Manual) + share(RunTrigger::Cli);
    let streams: BTreeSet<&str> = ctx.history.iter().map(|r| r.stream.as_str()).collect();
    let span_days =
        match (ctx.history.iter().map(|r| r.started_at).min(), ctx.history.iter().map(|r| r.started_at).max()) {
            (Some(a), Some(b)) if b > a => (b - a).num_seconds() as f64 / 86_400.0,
            _ => 0.0,
        };
    let per_day = if span_days > 0.0 { (h.runs.saturating_sub(1)) as f64 / span_days } else { 0.0 };
    let busiest: Vec<usize> = {
        let top = hours.iter().copied().max().unwrap_or(0);
        (0..24).filter(|&i| top > 0 && hours[i] == top).collect()
    };
    Derived {
        kind: ContributionKind::UsagePattern,
        confidence: evidence(h.runs as f64, 5.0),
        // Share of successful runs that found changes: how much the usage is worth.
        quality: round2(100.0 * (1.0 - h.unchanged_share)),
        impact: round2((100.0 * per_day / 24.0).min(100.0)),
        reliability: h.reliability(),
        consistency: steadiness(&h.gaps),
        data: json!({
            "trigger": run.trigger,
            "hour": run.started_at.with_timezone(&ctx.timezone).hour(),
            "hours": hours,
            "busiest_hours": busiest,
            "manual_share": round4(manual),
            "scheduled_share": share(RunTrigger::Scheduled),
            "webhook_share": share(RunTrigger::Webhook),
            "streams_used": streams,
            "schedule": ctx.schedule,
            "interval_secs": ctx.interval_secs,
            "runs_per_day": round2(per_day),
            "changed_share": (h.successes > 0).then(|| round4(1.0 - h.unchanged_share)),
            "runs": h.runs,
        }),
        data_freshness: finished(run),
    }
}

fn configuration(ctx: &RunContext<'_>, h: &History) -> Option<Derived> {
    let run = ctx.run;
    if run.outcome != RunOutcome::Success {
        return None;
    }
    let allowed = ctx.streams_allowed.len().max(1) as f64;
    let synced = h.synced.keys().filter(|s| ctx.streams_allowed.contains(s)).count() as f64;
    Some(Derived {
        kind: ContributionKind::Configuration,
        // Read from the effective configuration itself, not estimated.
        confidence: 1.0,
        quality: round2(100.0 * synced / allowed),
        impact: round2(100.0 * synced / allowed),
        reliability: h.reliability(),
        consistency: steadiness(&h.gaps),
        data: json!({
            "schedule": ctx.schedule,
            "interval_secs": ctx.interval_secs,
            "streams": ctx.streams_allowed,
            "connection_method": ctx.auth_method,
            "changed_share": (h.successes > 0).then(|| round4(1.0 - h.unchanged_share)),
        }),
        data_freshness: finished(run),
    })
}

fn suggestions(ctx: &RunContext<'_>, h: &History) -> Option<Derived> {
    let mut list = Vec::new();
    let mut strength: f64 = 0.0;
    if h.runs >= MIN_RUNS_FOR_SUGGESTIONS
        && h.successes >= MIN_RUNS_FOR_SUGGESTIONS
        && h.unchanged_share >= UNCHANGED_SHARE_FOR_SLOWER
        && let Some(interval) = ctx.interval_secs
    {
        let slower = slower_schedule(interval);
        list.push(json!({
            "code": "slower_schedule",
            "suggestion": format!(
                "{:.0}% of the last {} successful runs on `{}` changed nothing: schedule `{}` instead",
                h.unchanged_share * 100.0, h.successes, ctx.schedule, slower
            ),
            "evidence": { "unchanged_share": round4(h.unchanged_share), "runs": h.successes, "schedule": ctx.schedule },
            "suggested_schedule": slower,
        }));
        strength = strength.max(h.unchanged_share);
    }
    if h.runs >= MIN_RUNS_FOR_SUGGESTIONS && h.waiting_share >= WAITING_SHARE_FOR_SPREAD {
        let waited: i64 = ctx.history.iter().map(|r| r.stats.rate_limit_wait_ms).sum();
        list.push(json!({
            "code": "spread_schedules",
            "suggestion": format!(
                "{:.0}% of the last {} runs waited on rate limits ({} ms in all): spread this connection's \
                 schedules or lower its frequency",
                h.waiting_share * 100.0, h.runs, waited
            ),
            "evidence": { "waiting_share": round4(h.waiting_share), "runs": h.runs, "wait_ms": waited },
        }));
        strength = strength.max(h.waiting_share);
    }
    let considered = (ctx.run.stats.fetched - ctx.run.stats.filtered).max(0);
    let dead_share = if considered > 0 { ctx.run.stats.dead_lettered as f64 / considered as f64 } else { 0.0 };
    if dead_share >= DEAD_LETTER_SHARE_FOR_MAPPING
        && let Some((reason, count)) = ctx.dead_letter_reasons.first()
    {
        let field = field_in(reason);
        list.push(json!({
            "code": "fix_mapping",
            "suggestion": match &field {
                Some(f) => format!(
                    "{:.1}% of `{}` records were dead-lettered, most for field `{f}` ({reason}): fix its mapping \
                     or the source data",
                    dead_share * 100.0, ctx.run.stream
                ),
                None => format!("{:.1}% of `{}` records were dead-lettered: {reason}", dead_share * 100.0, ctx.run.stream),
            },
            "evidence": { "dead_letter_share": round4(dead_share), "records": considered, "reason": reason, "count": count },
            "field": field,
        }));
        strength = strength.max((dead_share * 10.0).min(1.0));
    }
    if list.is_empty() {
        return None;
    }
    Some(Derived {
        kind: ContributionKind::OptimizationSuggestion,
        confidence: evidence(h.runs as f64, 5.0),
        quality: round2(100.0 * strength),
        impact: round2(100.0 * strength),
        reliability: h.reliability(),
        consistency: steadiness(&h.gaps),
        data: json!({ "suggestions": list }),
        data_freshness: finished(ctx.run),
    })
}

/// The field a dead-letter reason names: the first `backticked` word.
fn field_in(reason: &str) -> Option<String> {
    let start = reason.find('`')? + 1;
    let len = reason[start..].find('`')?;
    Some(reason[start..start + len].to_owned())
}

/// A schedule about four times slower than `interval` seconds, in the schedule language.
pub fn slower_schedule(interval: f64) -> String {
    let target = interval * 4.0;
    if target >= 86_400.0 {
        "daily".to_owned()
    } else if target >= 3600.0 {
        let hours = (target / 3600.0).round().max(1.0) as u64;
        if hours == 1 { "every hour".to_owned() } else { format!("every {hours} hours") }
    } else {
        let minutes = (target / 60.0).round().max(1.0) as u64;
        format!("every {minutes} minutes")
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::{ProviderId, RunStats, StreamName, TenantId};

    fn run(minute: i64, outcome: RunOutcome, stats: RunStats) -> RunRow {
        let started = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute);
        RunRow {
            id: uuid::Uuid::now_v7(),
            tenant_id: TenantId::parse("acme").unwrap(),
            job_id: 1,
            provider: ProviderId::parse("hubspot").unwrap(),
            stream: StreamName::parse("contacts").unwrap(),
            trigger: RunTrigger::Scheduled,
            started_at: started,
            finished_at: Some(started + chrono::Duration::seconds(2)),
            outcome,
            cursor_before: None,
            stats,
        }
    }

    fn fetched(n: i64, dead: i64, inserted: i64) -> RunStats {
        RunStats {
            fetched: n,
            inserted,
            unchanged: n - dead - inserted,
            dead_lettered: dead,
            http_calls: 4,
            http_p50_ms: Some(12.0),
            http_p95_ms: Some(30.0),
            http_p99_ms: Some(31.0),
            ..RunStats::default()
        }
    }

    fn ctx<'a>(history: &'a [RunRow], allowed: &'a [String], reasons: &'a [(String, u64)]) -> RunContext<'a> {
        RunContext {
            run: &history[0],
            history,
            auth_method: "oauth2_refresh",
            schedule: "every 15 minutes",
            interval_secs: Some(900.0),
            streams_allowed: allowed,
            timezone: chrono_tz::Europe::London,
            dead_letter_reasons: reasons,
        }
    }

    fn kinds(d: &[Derived]) -> Vec<ContributionKind> {
        d.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn quality_is_the_share_of_records_with_valid_required_fields() {
        let allowed = vec!["contacts".to_owned(), "companies".to_owned()];
        let clean = [run(0, RunOutcome::Success, fetched(200, 0, 200))];
        let dirty = [run(0, RunOutcome::Success, fetched(200, 50, 150))];
        let q = |h: &[RunRow]| {
            let d = derive(&ctx(h, &allowed, &[]), &[ContributionKind::DataSource]);
            assert_eq!(kinds(&d), vec![ContributionKind::DataSource]);
            d[0].clone()
        };
        let (clean, dirty) = (q(&clean), q(&dirty));
        assert_eq!(clean.quality, 100.0);
        assert_eq!(dirty.quality, 75.0);
        assert_eq!(dirty.data["dead_letter_share"], 0.25);
        // One of two allowed streams synced.
        assert_eq!(clean.impact, 50.0);
        assert_eq!(clean.data["coverage"], 0.5);
        assert_eq!(clean.data["connection_method"], "oauth2_refresh");
        // 200 records of evidence: 200 / 250.
        assert_eq!(clean.confidence, 0.8);
    }

    #[test]
    fn error_severity_follows_the_error_class() {
        let allowed = vec!["contacts".to_owned()];
        let severity_of = |class: ErrorClass, status: Option<i64>| {
            let stats = RunStats {
                http_calls: 1,
                error: Some("boom".into()),
                error_class: Some(class.as_str().into()),
                error_status: status,
                error_endpoint: Some("/crm/v3/objects/contacts".into()),
                ..RunStats::default()
            };
            let h = [run(0, RunOutcome::Failed, stats)];
            let d = derive(&ctx(&h, &allowed, &[]), &[ContributionKind::ErrorReporting]);
            assert_eq!(kinds(&d), vec![ContributionKind::ErrorReporting]);
            assert_eq!(d[0].data["endpoint"], "/crm/v3/objects/contacts");
            assert_eq!(d[0].data["class"], class.as_str());
            (d[0].data["severity"].as_str().unwrap().to_owned(), d[0].impact)
        };
        assert_eq!(severity_of(ErrorClass::Auth, Some(401)), ("critical".to_owned(), 100.0));
        assert_eq!(severity_of(ErrorClass::Client, Some(400)), ("high".to_owned(), 75.0));
        assert_eq!(severity_of(ErrorClass::Transient, Some(503)), ("medium".to_owned(), 50.0));
        assert_eq!(severity_of(ErrorClass::RateLimited, Some(429)), ("low".to_owned(), 25.0));
    }

    #[test]
    fn a_successful_run_with_retries_reports_a_low_severity_error() {
        let allowed = vec!["contacts".to_owned()];
        let h = [run(0, RunOutcome::Success, RunStats { retries: 3, http_calls: 9, ..fetched(10, 0, 10) })];
        let d = derive(&ctx(&h, &allowed, &[]), &[ContributionKind::ErrorReporting]);
        assert_eq!(d[0].data["severity"], "low");
        assert_eq!(d[0].data["count"], 3);
        // 3 retries of evidence: 3 / 6.
        assert_eq!(d[0].confidence, 0.5);
        // No retries, no failure: nothing to report.
        let h = [run(0, RunOutcome::Success, fetched(10, 0, 10))];
        assert!(derive(&ctx(&h, &allowed, &[]), &[ContributionKind::ErrorReporting]).is_empty());
    }

    #[test]
    fn scope_decides_the_kinds_and_cancelled_runs_contribute_nothing() {
        let allowed = vec!["contacts".to_owned()];
        let h = [run(0, RunOutcome::Success, fetched(10, 0, 10))];
        let user_scope = crate::model::Responsibility::User.default_scope();
        assert_eq!(kinds(&derive(&ctx(&h, &allowed, &[]), user_scope)), vec![ContributionKind::UsagePattern]);
        let owner = derive(&ctx(&h, &allowed, &[]), ContributionKind::ALL);
        assert_eq!(
            kinds(&owner),
            vec![
                ContributionKind::DataSource,
                ContributionKind::UsagePattern,
                ContributionKind::PerformanceMetrics,
                ContributionKind::Configuration
            ]
        );
        let perf = owner.iter().find(|d| d.kind == ContributionKind::PerformanceMetrics).unwrap();
        assert_eq!(perf.data["response_ms"]["p50"], 12.0);
        assert_eq!(perf.data["throughput_rps"], 5.0, "10 records in 2 s");
        let cancelled = [run(0, RunOutcome::Cancelled, fetched(10, 0, 10))];
        assert!(derive(&ctx(&cancelled, &allowed, &[]), ContributionKind::ALL).is_empty());
    }

    #[test]
    fn usage_reports_local_hours_and_trigger_shares() {
        let allowed = vec!["contacts".to_owned()];
        let mut h: Vec<RunRow> = (0..4).rev().map(|i| run(i * 60, RunOutcome::Success, fetched(5, 0, 0))).collect();
        h[0].trigger = RunTrigger::Manual;
        let d = derive(&ctx(&h, &allowed, &[]), &[ContributionKind::UsagePattern]);
        let data = &d[0].data;
        // 09:00 UTC is 09:00 in London in November; the newest run started at 12:00.
        assert_eq!(data["hour"], 12);
        assert_eq!(data["hours"][9], 1);
        assert_eq!(data["manual_share"], 0.25);
        assert_eq!(data["scheduled_share"], 0.75);
        assert_eq!(data["changed_share"], 0.0);
        assert_eq!(data["interval_secs"], 900.0);
        // Runs an hour apart, evenly: perfectly steady.
        assert_eq!(d[0].consistency, 100.0);
    }

    #[test]
    fn suggestions_come_from_evidence() {
        let allowed = vec!["contacts".to_owned()];
        // Six successful runs that changed nothing: a slower schedule is suggested.
        let quiet: Vec<RunRow> = (0..6).rev().map(|i| run(i * 15, RunOutcome::Success, fetched(5, 0, 0))).collect();
        let d = derive(&ctx(&quiet, &allowed, &[]), &[ContributionKind::OptimizationSuggestion]);
        assert_eq!(d[0].data["suggestions"][0]["code"], "slower_schedule");
        assert_eq!(d[0].data["suggestions"][0]["suggested_schedule"], "every hour");
        // Two of the six finding changes (67 % unchanged, under 80 %): nothing suggested.
        let mut busy = quiet.clone();
        busy[0].stats = fetched(5, 0, 5);
        busy[1].stats = fetched(5, 0, 5);
        assert!(derive(&ctx(&busy, &allowed, &[]), &[ContributionKind::OptimizationSuggestion]).is_empty());
        // A mapping that dead-letters a tenth of the records: the field is named.
        let dirty = [run(0, RunOutcome::Success, fetched(100, 10, 90))];
        let reasons = [("required field `email` is missing (source `properties.email`)".to_owned(), 10)];
        let d = derive(&ctx(&dirty, &allowed, &reasons), &[ContributionKind::OptimizationSuggestion]);
        assert_eq!(d[0].data["suggestions"][0]["code"], "fix_mapping");
        assert_eq!(d[0].data["suggestions"][0]["field"], "email");
    }

    #[test]
    fn slower_schedules_read_as_schedules() {
        for (interval, want) in
            [(900.0, "every hour"), (60.0, "every 4 minutes"), (3600.0, "every 4 hours"), (43_200.0, "daily")]
        {
            let s = slower_schedule(interval);
            assert_eq!(s, want);
            assert!(crate::model::Schedule::parse(&s).is_ok(), "{s}");
        }
    }
}
