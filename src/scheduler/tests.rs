use std::collections::BTreeMap;

use chrono::{TimeDelta, TimeZone};
use chrono_tz::Europe::London;

use super::*;
use crate::config::{EffectiveProvider, ProviderLayer, StreamLayer};
use crate::model::{ConnectionStatus, ProviderId, RoleName, TenantId, UserId};

fn utc(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
}

#[tokio::test(start_paused = true)]
async fn sleeps_until_the_due_time_capped_at_max_sleep() {
    let start = tokio::time::Instant::now();
    sleep_until(utc(10, 0) + TimeDelta::seconds(42), utc(10, 0)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(42));

    let start = tokio::time::Instant::now();
    sleep_until(utc(12, 0), utc(10, 0)).await;
    assert_eq!(start.elapsed(), MAX_SLEEP);

    let start = tokio::time::Instant::now();
    sleep_until(utc(9, 0), utc(10, 0)).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_scheduler_loop_wakes_at_each_interval_run() {
    // Simulated loop: the wall clock follows tokio's paused clock.
    let origin = tokio::time::Instant::now();
    let epoch = utc(10, 0);
    let clock = || epoch + TimeDelta::from_std(origin.elapsed()).unwrap();
    let schedule = Schedule::parse("15m").unwrap();
    let mut due = next_run_after(&schedule, London, clock(), Jitter::NONE).unwrap();
    let mut woke = Vec::new();
    while woke.len() < 3 {
        if clock() >= due {
            woke.push(clock());
            due = next_run_after(&schedule, London, clock(), Jitter::NONE).unwrap();
        } else {
            sleep_until(due, clock()).await;
        }
    }
    assert_eq!(woke, [utc(10, 15), utc(10, 30), utc(10, 45)]);
}

fn connection(id: i64, provider: &str, owner: &str) -> ConnectionRow {
    ConnectionRow {
        id,
        tenant_id: TenantId::parse("acme").unwrap(),
        provider: ProviderId::parse(provider).unwrap(),
        owner_user: (!owner.is_empty()).then(|| UserId::parse(owner).unwrap()),
        owner_role: None,
        schedule: None,
        status: ConnectionStatus::Connected,
        status_reason: None,
        has_credentials: true,
        credentials_key_id: None,
        credentials_version: 1,
        credentials_updated_at: None,
        paused: false,
        created_at: utc(9, 0),
        updated_at: utc(9, 0),
    }
}

fn stream(enabled: Option<bool>, schedule: Option<&str>) -> StreamLayer {
    StreamLayer { enabled, entity: None, schedule: schedule.map(str::to_owned), ..StreamLayer::default() }
}

fn provider(
    name: &str,
    enabled: Option<bool>,
    schedule: Option<&str>,
    streams: Vec<(&str, StreamLayer)>,
) -> EffectiveProvider {
    EffectiveProvider {
        provider: ProviderId::parse(name).unwrap(),
        in_preset: true,
        config: ProviderLayer {
            enabled,
            schedule: schedule.map(str::to_owned),
            streams: streams.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
            ..ProviderLayer::default()
        },
        origins: BTreeMap::new(),
    }
}

#[test]
fn desired_jobs_follow_enabled_providers_and_streams() {
    let providers = [
        provider(
            "hubspot",
            Some(true),
            Some("daily at 02:00"),
            vec![
                ("contacts", stream(Some(true), None)),
                ("deals", stream(Some(false), None)),
                ("companies", stream(Some(true), Some("15m"))),
                ("notes", stream(None, None)),
            ],
        ),
        provider("aptem", Some(false), Some("hourly"), vec![("learners", stream(Some(true), None))]),
        provider("bud", Some(true), None, vec![("learners", stream(Some(true), None))]),
        provider("jira", Some(true), Some("hourly"), vec![("issues", stream(Some(true), None))]),
    ];
    let effective = Effective { providers: providers.into_iter().map(|p| (p.provider.clone(), p)).collect() };
    // jira has only a user-owned connection: no company job.
    let connections = [
        connection(1, "hubspot", ""),
        connection(2, "aptem", ""),
        connection(3, "bud", ""),
        connection(4, "jira", "alice"),
    ];
    let desired = desired_jobs(&effective, &connections, &RoleGrants::default());
    let got: Vec<(i64, &str, &str)> =
        desired.iter().map(|d| (d.connection_id, d.stream.as_str(), d.schedule.as_str())).collect();
    assert_eq!(got, [(1, "companies", "15m"), (1, "contacts", "daily at 02:00")]);
}

/// A user connection of `owner` with `role` (and its own schedule, if any).
fn user_connection(id: i64, provider: &str, owner: &str, role: Option<&str>, schedule: Option<&str>) -> ConnectionRow {
    ConnectionRow {
        owner_role: role.map(|r| RoleName::parse(r).unwrap()),
        schedule: schedule.map(str::to_owned),
        ..connection(id, provider, owner)
    }
}

#[test]
fn user_connections_get_jobs_for_the_streams_their_role_is_granted() {
    let providers = [
        provider(
            "hubspot",
            Some(true),
            Some("daily at 02:00"),
            vec![
                ("contacts", stream(Some(true), None)),
                ("companies", stream(Some(true), Some("15m"))),
                ("deals", stream(Some(false), None)),
            ],
        ),
        provider("jira", Some(true), Some("hourly"), vec![("issues", stream(Some(true), None))]),
        provider("aptem", Some(false), Some("hourly"), vec![("learners", stream(Some(true), None))]),
    ];
    let effective = Effective { providers: providers.into_iter().map(|p| (p.provider.clone(), p)).collect() };
    let grants = RoleGrants::from_stored(&BTreeMap::from([
        (RoleName::parse("developer").unwrap(), vec!["hubspot.contacts".to_owned(), "jira.*".to_owned()]),
        (RoleName::parse("sales").unwrap(), vec!["hubspot.*".to_owned()]),
        (RoleName::parse("admin").unwrap(), vec!["*".to_owned()]),
    ]));
    let connections = [
        connection(1, "hubspot", ""),
        user_connection(2, "hubspot", "bob", Some("developer"), None),
        user_connection(3, "hubspot", "carol", Some("sales"), Some("30m")),
        user_connection(4, "hubspot", "dave", Some("intern"), None),
        user_connection(5, "hubspot", "erin", None, None),
        user_connection(6, "jira", "bob", Some("developer"), None),
        // A disabled provider runs nothing, whatever the role.
        user_connection(7, "aptem", "frank", Some("admin"), None),
    ];
    let desired = desired_jobs(&effective, &connections, &grants);
    let got: Vec<(i64, &str, &str)> =
        desired.iter().map(|d| (d.connection_id, d.stream.as_str(), d.schedule.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "companies", "15m"),
            (1, "contacts", "daily at 02:00"),
            (2, "contacts", "daily at 02:00"),
            (3, "companies", "30m"),
            (3, "contacts", "30m"),
            (6, "issues", "hourly"),
        ]
    );

    // The explanation is what the jobs came from.
    let hubspot = &effective.providers[&ProviderId::parse("hubspot").unwrap()];
    let denied = |c: &ConnectionRow| -> Vec<(String, Option<Denied>)> {
        stream_access(hubspot, c, &grants).into_iter().map(|a| (a.stream, a.denied)).collect()
    };
    let developer = RoleName::parse("developer").unwrap();
    assert_eq!(
        denied(&connections[1]),
        [("companies".to_owned(), Some(Denied::NotGranted(developer))), ("contacts".to_owned(), None)]
    );
    let intern = RoleName::parse("intern").unwrap();
    assert!(denied(&connections[3]).iter().all(|(_, d)| *d == Some(Denied::NoEntry(intern.clone()))));
    assert!(denied(&connections[4]).iter().all(|(_, d)| *d == Some(Denied::NoRole)));
    assert!(denied(&connections[0]).iter().all(|(_, d)| d.is_none()), "company connections are not subject to roles");
}

fn job(consecutive_failures: i64, schedule: &str) -> JobRow {
    JobRow {
        id: 11,
        tenant_id: TenantId::parse("acme").unwrap(),
        connection_id: 1,
        provider: ProviderId::parse("hubspot").unwrap(),
        stream: StreamName::parse("contacts").unwrap(),
        schedule: schedule.into(),
        next_run_at: None,
        cursor: None,
        lease_owner: Some("w1".into()),
        lease_expires_at: None,
        attempts: 1,
        consecutive_failures,
        paused: false,
        enabled: true,
        trigger_requested_at: None,
        trigger_kind: None,
        claimed_at: None,
        reclaimed_from: None,
        last_run_id: None,
        created_at: utc(9, 0),
        updated_at: utc(9, 0),
    }
}

#[test]
fn after_a_success_the_schedule_resumes_and_the_streak_resets() {
    let run = Uuid::now_v7();
    let plan =
        after_run(&job(3, "15m"), London, utc(10, 0), true, Some(run), &FailurePolicy::default(), Duration::ZERO);
    let next = plan.completion.next_run_at.unwrap();
    assert!(next >= utc(10, 15) && next <= utc(10, 15) + TimeDelta::seconds(90));
    assert_eq!(plan.completion.failures, Failures::Reset);
    assert_eq!(plan.completion.last_run_id, Some(run));
    assert!(!plan.mark_connection_error);
}

#[test]
fn after_a_partial_run_the_job_is_due_again_soon_and_the_streak_resets() {
    let run = Uuid::now_v7();
    let plan = after_partial_run(utc(10, 0), Some(run));
    assert_eq!(plan.completion.next_run_at, Some(utc(10, 0) + TimeDelta::seconds(5)));
    assert_eq!(plan.completion.failures, Failures::Reset);
    assert_eq!(plan.completion.last_run_id, Some(run));
    assert!(!plan.mark_connection_error);
}

#[test]
fn after_failures_the_job_backs_off_and_the_fifth_marks_the_connection() {
    let policy = FailurePolicy::default();
    let first = after_run(&job(0, "daily at 02:00"), London, utc(10, 0), false, None, &policy, Duration::ZERO);
    let at = first.completion.next_run_at.unwrap();
    assert!(at >= utc(10, 1) && at <= utc(10, 1) + TimeDelta::seconds(6), "{at}");
    assert_eq!(first.completion.failures, Failures::Increment);
    assert!(!first.mark_connection_error);

    let fifth = after_run(&job(4, "daily at 02:00"), London, utc(10, 0), false, None, &policy, Duration::ZERO);
    let at = fifth.completion.next_run_at.unwrap();
    assert!(at >= utc(10, 16) && at <= utc(10, 16) + TimeDelta::seconds(96), "{at}");
    assert!(fifth.mark_connection_error);
}

#[test]
fn next_due_fn_schedules_new_jobs_with_their_jitter() {
    let f = next_due_fn(London, utc(10, 0), Duration::from_secs(30));
    let at = f("15m", 5).unwrap();
    assert!(at >= utc(10, 0) && at <= utc(10, 0) + TimeDelta::seconds(90));
    assert_eq!(f("15m", 5), Some(at));
    let daily = f("daily at 02:00", 5).unwrap();
    assert!(
        daily >= utc(2, 0) + TimeDelta::days(1) && daily <= utc(2, 0) + TimeDelta::days(1) + TimeDelta::seconds(30)
    );
    assert_eq!(f("not a schedule", 5), None);
}
