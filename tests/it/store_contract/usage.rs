//! Usage analytics: the aggregate runs maintain as they finish, summed by day and week.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use tributary::store::{UsageCounts, UsagePeriod};

use super::*;

fn stats(n: i64, error_class: Option<&str>) -> RunStats {
    RunStats {
        fetched: 10 * n,
        inserted: 3 * n,
        updated: n,
        unchanged: 5,
        dead_lettered: n % 2,
        pages: 2,
        http_calls: 4 + n,
        retries: n / 2,
        rate_limit_waits: n % 3,
        rate_limit_wait_ms: 250 * n,
        bytes_received: 1_000 * n + 17,
        http_errors: i64::from(error_class.is_some()) * 2,
        error_class: error_class.map(Into::into),
        error: error_class.map(|c| format!("{c} failure")),
        ..RunStats::default()
    }
}

/// Sums of `runs` computed here, field by field, from the run rows.
fn sums(runs: &[&tributary::model::RunRow]) -> UsageCounts {
    let mut c = UsageCounts::default();
    for r in runs {
        let s = &r.stats;
        c.runs += 1;
        c.failed_runs += i64::from(matches!(r.outcome, RunOutcome::Failed | RunOutcome::Abandoned));
        c.http_calls += s.http_calls;
        c.http_errors += s.http_errors;
        c.retries += s.retries;
        c.fetched += s.fetched;
        c.written += s.inserted + s.updated;
        c.dead_lettered += s.dead_lettered;
        c.bytes_received += s.bytes_received;
        c.rate_limit_waits += s.rate_limit_waits;
        c.rate_limit_wait_ms += s.rate_limit_wait_ms;
        c.run_ms += (r.finished_at.unwrap() - r.started_at).num_milliseconds();
    }
    c
}

pub(super) async fn usage_equals_the_sums_of_the_finished_runs(store: &Store) {
    create(store, "acme", &["aptem", "hubspot"]).await;
    create(store, "globex", &["aptem"]).await;
    let (acme, globex) = (tenant_id("acme"), tenant_id("globex"));
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let learners = job(store, "acme", "aptem", "learners").await;
    let theirs = job(store, "globex", "aptem", "learners").await;
    let plan: Vec<(&TenantId, i64, RunOutcome, Option<&str>)> = vec![
        (&acme, contacts.id, RunOutcome::Success, None),
        (&acme, contacts.id, RunOutcome::Failed, Some("auth")),
        (&acme, contacts.id, RunOutcome::Failed, Some("transient")),
        (&acme, learners.id, RunOutcome::Success, None),
        (&acme, learners.id, RunOutcome::Partial, None),
        (&acme, learners.id, RunOutcome::Failed, Some("transient")),
        (&globex, theirs.id, RunOutcome::Success, None),
        (&globex, theirs.id, RunOutcome::Failed, Some("auth")),
    ];
    for (i, (tenant, job_id, outcome, class)) in plan.iter().enumerate() {
        let run = store.start_run(tenant, *job_id, RunTrigger::Scheduled).await.unwrap();
        store.finish_run(tenant, run.id, *outcome, &stats(i as i64 + 1, *class)).await.unwrap();
    }
    // A run whose process died: closed as abandoned, it counts too.
    let dead = store.start_run(&acme, learners.id, RunTrigger::Manual).await.unwrap();
    assert_eq!(store.close_abandoned_runs(&acme, learners.id, "abandoned: test").await.unwrap(), 1);
    // A run still running does not count.
    store.start_run(&acme, contacts.id, RunTrigger::Manual).await.unwrap();

    let runs = store.list_runs(Some(&acme), 100).await.unwrap();
    let finished: Vec<_> = runs.iter().filter(|r| r.finished_at.is_some()).collect();
    assert_eq!(finished.len(), 7);
    assert!(finished.iter().any(|r| r.id == dead.id && r.outcome == RunOutcome::Abandoned));
    let report = store.usage(&acme, None, UsagePeriod::Day, None).await.unwrap();
    assert_eq!(report.totals, sums(&finished));
    assert_eq!(report.totals.runs, 7);
    assert_eq!(report.totals.failed_runs, 4);
    let errors: BTreeMap<String, i64> =
        [("abandoned".to_owned(), 1), ("auth".to_owned(), 1), ("transient".to_owned(), 2)].into();
    assert_eq!(report.errors, errors);
    // Per provider stream (all runs finished today, UTC).
    let today = Utc::now().date_naive().format("%Y-%m-%d").to_string();
    assert_eq!(report.lines.len(), 2, "{:?}", report.lines);
    for line in &report.lines {
        assert_eq!(line.period, today);
        let of_stream: Vec<_> = finished
            .iter()
            .copied()
            .filter(|r| r.provider.as_str() == line.provider && r.stream.as_str() == line.stream)
            .collect();
        assert_eq!(line.counts, sums(&of_stream), "{}/{}", line.provider, line.stream);
    }
    // One provider; another tenant's usage is its own.
    let hubspot = store.usage(&acme, Some(&provider("hubspot")), UsagePeriod::Week, None).await.unwrap();
    let of_hubspot: Vec<_> = finished.iter().copied().filter(|r| r.provider.as_str() == "hubspot").collect();
    assert_eq!(hubspot.totals, sums(&of_hubspot));
    assert_eq!(hubspot.lines.len(), 1);
    let theirs_runs = store.list_runs(Some(&globex), 100).await.unwrap();
    let theirs_report = store.usage(&globex, None, UsagePeriod::Day, None).await.unwrap();
    assert_eq!(theirs_report.totals, sums(&theirs_runs.iter().collect::<Vec<_>>()));
    assert_eq!(theirs_report.totals.runs, 2);
    // Nothing from tomorrow on.
    let tomorrow = Utc::now().date_naive() + chrono::Days::new(1);
    let none = store.usage(&acme, None, UsagePeriod::Day, Some(tomorrow)).await.unwrap();
    assert!(none.lines.is_empty() && none.totals == UsageCounts::default());
}

/// Inserts a usage day behind the store's back (days in the past cannot be made by
/// finishing runs now).
async fn raw_day(url: &str, day: &'static str) -> () {
    let sql: &'static str = Box::leak(
        format!(
            "INSERT INTO usage_daily (tenant_id, provider, stream, day, error_class, runs, http_calls, bytes_received) \
             VALUES ('acme', 'hubspot', 'contacts', '{day}', '', 1, 10, 100)"
        )
        .into_boxed_str(),
    );
    crate::support::exec_raw(url, sql).await;
}

pub(super) async fn weeks_run_monday_to_sunday_and_since_counts_from_its_day(store: &Store, url: &str) {
    create(store, "acme", &["hubspot"]).await;
    // Sat 28 Nov, Sun 29 Nov | Mon 30 Nov, Sun 6 Dec | Mon 7 Dec (2026).
    for day in ["2026-11-28", "2026-11-29", "2026-11-30", "2026-12-06", "2026-12-07"] {
        raw_day(url, day).await;
    }
    let acme = tenant_id("acme");
    let weeks = store.usage(&acme, None, UsagePeriod::Week, None).await.unwrap();
    let got: Vec<(&str, i64, i64)> =
        weeks.lines.iter().map(|l| (l.period.as_str(), l.counts.runs, l.counts.http_calls)).collect();
    assert_eq!(got, vec![("2026-11-23", 2, 20), ("2026-11-30", 2, 20), ("2026-12-07", 1, 10)]);
    let days = store.usage(&acme, None, UsagePeriod::Day, None).await.unwrap();
    assert_eq!(days.lines.len(), 5);
    assert_eq!(days.totals.bytes_received, 500);
    // --since a Sunday: that day on; the week it falls in holds only the days since.
    let since = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    let from_sunday = store.usage(&acme, None, UsagePeriod::Week, Some(since)).await.unwrap();
    let got: Vec<(&str, i64)> = from_sunday.lines.iter().map(|l| (l.period.as_str(), l.counts.runs)).collect();
    assert_eq!(got, vec![("2026-11-23", 1), ("2026-11-30", 2), ("2026-12-07", 1)]);
    assert_eq!(from_sunday.since.as_deref(), Some("2026-11-29"));
    assert_eq!(UsagePeriod::Week.start(NaiveDate::from_ymd_opt(2026, 12, 7).unwrap()).to_string(), "2026-12-07");
    assert_eq!(UsagePeriod::Week.start(NaiveDate::from_ymd_opt(2026, 12, 6).unwrap()).to_string(), "2026-11-30");
}
