//! The scheduler core: when jobs run (schedules in the tenant's time zone, jitter),
//! what happens after a run (backoff after failures), which jobs should exist
//! (reconciliation input), and how long the scheduler sleeps.
//!
//! Due times live in the store (`jobs.next_run_at`); workers claim due jobs with leases
//! ([`crate::store::Store::claim_due_jobs`]). Nothing here keeps per-job timers: the
//! scheduler sleeps until [`crate::store::Store::next_due_at`] or a trigger.

pub mod backoff;
pub mod schedule;

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

pub use backoff::FailurePolicy;
pub use schedule::{Jitter, first_run_at, next_run_after};

use crate::config::Effective;
use crate::model::{Schedule, StreamName};
use crate::store::{ConnectionRow, DesiredJob, Failures, JobCompletion, JobRow};

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

/// The jobs a tenant's effective configuration asks for: one per enabled stream of each
/// enabled provider that has a company connection, with the stream's schedule or else
/// the provider's. Streams without any schedule or with an invalid name are left out
/// (configuration checks reject both before anything is stored).
pub fn desired_jobs(effective: &Effective, connections: &[ConnectionRow]) -> Vec<DesiredJob> {
    let mut out = Vec::new();
    for provider in effective.enabled() {
        let Some(connection) = connections.iter().find(|c| c.provider == provider.provider && c.owner_user.is_empty())
        else {
            continue;
        };
        for (name, stream) in &provider.config.streams {
            if stream.enabled != Some(true) {
                continue;
            }
            let Some(schedule) = stream.schedule.as_ref().or(provider.config.schedule.as_ref()) else {
                continue;
            };
            let Ok(stream_name) = StreamName::parse(name) else {
                continue;
            };
            out.push(DesiredJob { connection_id: connection.id, stream: stream_name, schedule: schedule.clone() });
        }
    }
    out
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
