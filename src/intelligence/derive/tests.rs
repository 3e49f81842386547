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
