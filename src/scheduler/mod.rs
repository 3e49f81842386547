//! The scheduler core: when jobs run (schedules in the tenant's time zone, jitter),
//! what happens after a run (backoff after failures), which jobs should exist
//! (reconciliation input), and how long the scheduler sleeps.
//!
//! Due times live in the store (`jobs.next_run_at`); workers claim due jobs with leases
//! ([`crate::store::Store::claim_due_jobs`]). Nothing here keeps per-job timers: the
//! scheduler sleeps until [`crate::store::Store::next_due_at`] or a trigger.

pub mod backoff;
pub mod full_pass;
pub mod lease;
pub mod schedule;

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

pub use backoff::FailurePolicy;
pub use full_pass::plan_full_pass;
pub use schedule::{Jitter, first_run_at, next_run_after};

use crate::config::{Denied, Effective, EffectiveProvider, RoleGrants};
use crate::model::{ConnectionRow, JobRow, Owner, Schedule, StreamName};
use crate::store::{DesiredJob, Failures, JobCompletion};

/// The longest single sleep of [`sleep_until`]: tokio sleeps on the monotonic clock, so
/// a wall-clock step (suspend, NTP) is noticed at most this late.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Sleeps until the wall-clock time `due` (given the current time `now`), but at most
/// [`MAX_SLEEP`]; returns at once if `due` is not after `now`. The caller loops: looks
/// at the store again, then sleeps again.
pub async fn sleep_until(due: DateTime<Utc>, now: DateTime<Utc>) {
    let wait = (due - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// The jobs a tenant's effective configuration asks for: for each enabled provider,
/// one per enabled stream on its company connection, and one per enabled stream its
/// owner's role is granted ([`RoleGrants`]) on each user connection. A job runs on the
/// user connection's own schedule if it has one, else the stream's, else the
/// provider's. Streams without any schedule or with an invalid name are left out
/// (configuration checks reject both before anything is stored).
pub fn desired_jobs(effective: &Effective, connections: &[ConnectionRow], grants: &RoleGrants) -> Vec<DesiredJob> {
    let mut out = Vec::new();
    for provider in effective.enabled() {
        for connection in connections.iter().filter(|c| c.provider == provider.provider) {
            for access in stream_access(provider, connection, grants) {
                let (None, Some(schedule)) = (access.denied, access.schedule) else {
                    continue;
                };
                let Ok(stream) = StreamName::parse(&access.stream) else {
                    continue;
                };
                out.push(DesiredJob { connection_id: connection.id, stream, schedule });
            }
        }
    }
    out
}

/// One enabled stream of a provider as one connection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAccess {
    pub stream: String,
    /// The schedule its job runs on; `None` if none is configured.
    pub schedule: Option<String>,
    /// Why the connection does not sync it (only user connections are ever denied).
    pub denied: Option<Denied>,
}

/// Every enabled stream of `provider` for `connection` (one of that provider's): the
/// schedule its job would run on and, for a user connection, whether its owner's role
/// is granted the stream. [`desired_jobs`] creates jobs from exactly this, so what
/// `tenant show --explain` prints is what runs.
pub fn stream_access(
    provider: &EffectiveProvider,
    connection: &ConnectionRow,
    grants: &RoleGrants,
) -> Vec<StreamAccess> {
    let config = &provider.config;
    config
        .streams
        .iter()
        .filter(|(_, stream)| stream.enabled == Some(true))
        .map(|(name, stream)| {
            let configured = stream.schedule.as_ref().or(config.schedule.as_ref());
            let (schedule, denied) = match connection.owner() {
                Owner::Company => (configured.cloned(), None),
                Owner::User(_) => (
                    connection.schedule.clone().or_else(|| configured.cloned()),
                    grants.check(connection.owner_role.as_ref(), &provider.provider, name).err(),
                ),
            };
            StreamAccess { stream: name.clone(), schedule, denied }
        })
        .collect()
}

/// The `next_due` function for [`crate::store::Store::reconcile_jobs`]: the first run
/// of each job ([`first_run_at`]) in `tz` from `now`, with the job's jitter (daily and
/// cron offsets capped at `fixed_jitter`). Unparsable schedules get no run time.
pub fn next_due_fn(tz: Tz, now: DateTime<Utc>, fixed_jitter: Duration) -> impl Fn(&str, i64) -> Option<DateTime<Utc>> {
    move |schedule, job_id| {
        let schedule = Schedule::parse(schedule).ok()?;
        first_run_at(&schedule, tz, now, Jitter::for_job(job_id).with_fixed_max(fixed_jitter))
    }
}

/// What a worker writes when its run of `job` ends at `finished_at`, and whether the
/// connection must now be marked `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterRun {
    /// What to pass to [`crate::store::Store::complete_job`].
    pub completion: JobCompletion,
    /// The failure streak reached the policy's `error_after`.
    pub mark_connection_error: bool,
}

/// How soon a job whose run ended `partial` (at its bounds) runs again to continue the pass.
pub const PARTIAL_CONTINUE_AFTER: Duration = Duration::from_secs(5);

/// Plans the job's next run after a run ended `partial`: not a failure (the streak
/// starts over), and due again [`PARTIAL_CONTINUE_AFTER`] later so the pass continues.
pub fn after_partial_run(finished_at: DateTime<Utc>, run_id: Option<Uuid>) -> AfterRun {
    let next = chrono::Duration::from_std(PARTIAL_CONTINUE_AFTER).ok().map(|d| finished_at + d);
    AfterRun {
        completion: JobCompletion { next_run_at: next, failures: Failures::Reset, last_run_id: run_id },
        mark_connection_error: false,
    }
}

/// Plans the job's next run after a run ended: on success the next scheduled time
/// ([`next_run_after`] from `finished_at`), on failure the backoff
/// ([`FailurePolicy::retry_at`]) for the streak including this failure.
pub fn after_run(
    job: &JobRow,
    tz: Tz,
    finished_at: DateTime<Utc>,
    succeeded: bool,
    run_id: Option<Uuid>,
    policy: &FailurePolicy,
    fixed_jitter: Duration,
) -> AfterRun {
    let jitter = Jitter::for_job(job.id).with_fixed_max(fixed_jitter);
    if succeeded {
        let next = Schedule::parse(&job.schedule).ok().and_then(|s| next_run_after(&s, tz, finished_at, jitter));
        return AfterRun {
            completion: JobCompletion { next_run_at: next, failures: Failures::Reset, last_run_id: run_id },
            mark_connection_error: false,
        };
    }
    let streak = u32::try_from(job.consecutive_failures.saturating_add(1)).unwrap_or(u32::MAX);
    AfterRun {
        completion: JobCompletion {
            next_run_at: Some(policy.retry_at(finished_at, streak, jitter)),
            failures: Failures::Increment,
            last_run_id: run_id,
        },
        mark_connection_error: policy.marks_error(streak),
    }
}

#[cfg(test)]
mod tests {
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
    fn user_connection(
        id: i64,
        provider: &str,
        owner: &str,
        role: Option<&str>,
        schedule: Option<&str>,
    ) -> ConnectionRow {
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
        assert!(
            denied(&connections[0]).iter().all(|(_, d)| d.is_none()),
            "company connections are not subject to roles"
        );
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
}
