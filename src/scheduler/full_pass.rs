//! Full passes on their own schedule: a stream's `full_schedule` (besides its
//! `schedule`) makes a full pass due at its times. Runs record the schedule on their job
//! and mark a due pass done when it completes; after each run the scheduler plans the
//! next one where none is planned, and `complete_job` makes the job due by then.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::schedule::{Jitter, first_run_at};
use crate::model::{Schedule, TenantId};
use crate::store::{Store, StoreError};

/// Plans the job's next full pass when its stream has a full schedule and none is
/// planned (the first, or the one after a completed pass): the schedule's first time
/// after `now` in `tz`, with the job's jitter (daily and cron offsets capped at
/// `fixed_jitter`). Returns the planned time.
pub async fn plan_full_pass(
    store: &Store,
    tenant: &TenantId,
    job_id: i64,
    tz: Tz,
    now: DateTime<Utc>,
    fixed_jitter: Duration,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let (schedule, planned) = store.full_pass_plan(tenant, job_id).await?;
    if planned.is_some() {
        return Ok(planned);
    }
    let Some(schedule) = schedule.and_then(|s| Schedule::parse(&s).ok()) else {
        return Ok(None);
    };
    let at = first_run_at(&schedule, tz, now, Jitter::for_job(job_id).with_fixed_max(fixed_jitter));
    store.set_full_pass_at(tenant, job_id, at).await?;
    Ok(at)
}
