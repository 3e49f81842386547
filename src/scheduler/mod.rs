//! The scheduler core: when jobs run (schedules in the tenant's time zone, jitter),
//! what happens after a run (backoff after failures), which jobs should exist
//! (reconciliation input), and how long the scheduler sleeps.
//!
//! Due times live in the store (`jobs.next_run_at`); workers claim due jobs with leases
//! ([`crate::store::Store::claim_due_jobs`]). Nothing here keeps per-job timers: the
//! scheduler sleeps until [`crate::store::Store::next_due_at`] or a trigger.

pub mod backoff;
pub mod lease;
pub mod schedule;

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

pub use backoff::FailurePolicy;
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
mod tests;
