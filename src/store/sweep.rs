//! Mark and sweep: after a complete full pass of a stream that sweeps, the stored records
//! of its entity (for the tenant and provider) that no run listed since the pass began
//! (`seen_at`, set by every page of the stream) become deleted — unless that is more
//! than the stream's guard share of its live records, in which case nothing is.
//! Also each job's full passes: the stream's full schedule as its last run read it
//! (`jobs.full_schedule`) and when the next full pass is due (`jobs.full_pass_at`).

use chrono::{DateTime, Utc};

use super::Store;
use super::error::{StoreError, db};
use super::jobs::no_job;
use super::postgres::PgStore;
use super::rows::{now, stored};
use super::sqlite::SqliteStore;
use crate::model::{EntityName, ProviderId, StreamName, TenantId};

/// One sweep: the records of `entity` from `provider` not seen since `pass_started`.
#[derive(Debug, Clone)]
pub struct SweepRequest<'a> {
    pub tenant: &'a TenantId,
    pub entity: &'a EntityName,
    pub provider: &'a ProviderId,
    /// The job of the stream whose pass completed; with `lease_owner`, the sweep is
    /// fenced on its lease like a page write.
    pub job_id: i64,
    pub lease_owner: Option<&'a str>,
    /// The run that completed the pass (the deleted records' change run).
    pub run_id: Option<uuid::Uuid>,
    /// When the pass began (its first page was read after this).
    pub pass_started: DateTime<Utc>,
    /// The largest share of the live records the sweep may delete (0–1).
    pub max_share: f64,
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepOutcome {
    /// `deleted` records (of `live` before the sweep) became deleted.
    Swept { deleted: u64, live: u64 },
    /// `unseen` of `live` records were not seen: more than the share allows, so none
    /// was deleted.
    Guarded { unseen: u64, live: u64 },
}

/// Whether deleting `unseen` of `live` records stays within `max_share`.
pub fn within_share(unseen: u64, live: u64, max_share: f64) -> bool {
    unseen == 0 || (unseen as f64) <= max_share * live as f64
}

macro_rules! sweep_methods {
    ($store:ty) => {
        impl $store {
            async fn sweep(&self, req: &SweepRequest<'_>) -> Result<SweepOutcome, StoreError> {
                let at = now();
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                // Fenced on the lease, and the job row locked until commit (PostgreSQL).
                let fenced = sqlx::query(
                    "UPDATE jobs SET updated_at = $1 WHERE id = $2 AND tenant_id = $3 \
                     AND ($4 IS NULL OR lease_owner = $4)",
                )
                .bind(at)
                .bind(req.job_id)
                .bind(req.tenant.as_str())
                .bind(req.lease_owner)
                .execute(&mut *tx)
                .await
                .map_err(db("fencing a sweep on its job's lease"))?;
                if fenced.rows_affected() == 0 {
                    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1 AND tenant_id = $2")
                        .bind(req.job_id)
                        .bind(req.tenant.as_str())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("reading a job"))?;
                    return Err(match exists {
                        Some(_) => StoreError::LeaseLost { job_id: req.job_id },
                        None => no_job(req.tenant, req.job_id),
                    });
                }
                let started = stored(req.pass_started);
                let (live, unseen): (i64, i64) = sqlx::query_as(
                    "SELECT count(*), COALESCE(SUM(CASE WHEN seen_at IS NULL OR seen_at < $4 THEN 1 ELSE 0 END), 0) \
                     FROM records WHERE tenant_id = $1 AND entity = $2 AND provider = $3 AND deleted_at IS NULL",
                )
                .bind(req.tenant.as_str())
                .bind(req.entity.as_str())
                .bind(req.provider.as_str())
                .bind(started)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("counting records a full pass did not see"))?;
                let (live, unseen) = (u64::try_from(live).unwrap_or(0), u64::try_from(unseen).unwrap_or(0));
                if !within_share(unseen, live, req.max_share) {
                    return Ok(SweepOutcome::Guarded { unseen, live });
                }
                let deleted = if unseen == 0 {
                    0
                } else {
                    sqlx::query(
                        "UPDATE records SET deleted_at = $5, change_seq = NULL, change_kind = 'deleted', \
                         change_run = $6 WHERE tenant_id = $1 AND entity = $2 AND provider = $3 \
                         AND deleted_at IS NULL AND (seen_at IS NULL OR seen_at < $4)",
                    )
                    .bind(req.tenant.as_str())
                    .bind(req.entity.as_str())
                    .bind(req.provider.as_str())
                    .bind(started)
                    .bind(at)
                    .bind(req.run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("sweeping records a full pass did not see"))?
                    .rows_affected()
                };
                Self::number_changes(&mut tx, req.tenant, deleted).await?;
                tx.commit().await.map_err(db("committing a sweep"))?;
                Ok(SweepOutcome::Swept { deleted, live })
            }
        }
    };
}

sweep_methods!(SqliteStore);
sweep_methods!(PgStore);

impl Store {
    /// Sweeps after a complete full pass ([`SweepRequest`]), in one transaction: the
    /// live records of the entity not seen since the pass began become deleted (each
    /// numbered in the change feed as `deleted`), or, when they are more than
    /// `max_share` of the live records, none is ([`SweepOutcome::Guarded`]).
    /// [`StoreError::LeaseLost`] if the lease is no longer `lease_owner`'s.
    pub async fn sweep(&self, req: &SweepRequest<'_>) -> Result<SweepOutcome, StoreError> {
        on_backend!(self, |s| s.sweep(req).await)
    }

    /// When the job's next full pass is due; `None` when none is planned.
    pub async fn full_pass_at(&self, tenant: &TenantId, job_id: i64) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.full_pass_plan(tenant, job_id).await?.1)
    }

    /// The job's full schedule (as its last run read it) and its next full pass.
    pub async fn full_pass_plan(
        &self,
        tenant: &TenantId,
        job_id: i64,
    ) -> Result<(Option<String>, Option<DateTime<Utc>>), StoreError> {
        let (schedule, at, _) = self.full_pass_row(tenant, job_id).await?;
        Ok((schedule, at))
    }

    /// The job's full schedule, next full pass, and whether that pass sweeps because
    /// [`Store::request_full_pass`] asked.
    async fn full_pass_row(
        &self,
        tenant: &TenantId,
        job_id: i64,
    ) -> Result<(Option<String>, Option<DateTime<Utc>>, bool), StoreError> {
        on_backend!(self, |s| {
            let row: Option<(Option<String>, Option<DateTime<Utc>>, bool)> = sqlx::query_as(
                "SELECT full_schedule, full_pass_at, full_pass_sweeps FROM jobs WHERE id = $1 AND tenant_id = $2",
            )
            .bind(job_id)
            .bind(tenant.as_str())
            .fetch_optional(&s.pool)
            .await
            .map_err(db("reading a job's full passes"))?;
            row.ok_or_else(|| no_job(tenant, job_id))
        })
    }

    /// Records the stream's full schedule as a run reads it (`None`: none) and returns
    /// the job's next full pass, and whether it sweeps because
    /// [`Store::request_full_pass`] asked. A schedule that changed (or went) forgets the
    /// planned pass, for the scheduler to plan again.
    pub async fn note_full_schedule(
        &self,
        tenant: &TenantId,
        job_id: i64,
        schedule: Option<&str>,
    ) -> Result<(Option<DateTime<Utc>>, bool), StoreError> {
        let (stored, at, sweeps) = self.full_pass_row(tenant, job_id).await?;
        if stored.as_deref() == schedule {
            return Ok((at, sweeps));
        }
        on_backend!(self, |s| {
            sqlx::query("UPDATE jobs SET full_schedule = $1, full_pass_at = NULL WHERE id = $2 AND tenant_id = $3")
                .bind(schedule)
                .bind(job_id)
                .bind(tenant.as_str())
                .execute(&s.pool)
                .await
                .map_err(db("recording a job's full schedule"))?;
        });
        Ok((None, false))
    }

    /// Plans the job's next full pass at `at` (`None`: none, or the due one is done, which
    /// also ends a sweep [`Store::request_full_pass`] asked for). A job whose next run is
    /// later than `at` runs at `at` when its current run completes (`complete_job`).
    pub async fn set_full_pass_at(
        &self,
        tenant: &TenantId,
        job_id: i64,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            let done = sqlx::query(
                "UPDATE jobs SET full_pass_at = $1, \
                 full_pass_sweeps = CASE WHEN $1 IS NULL THEN false ELSE full_pass_sweeps END \
                 WHERE id = $2 AND tenant_id = $3",
            )
            .bind(at.map(stored))
            .bind(job_id)
            .bind(tenant.as_str())
            .execute(&s.pool)
            .await
            .map_err(db("planning a job's next full pass"))?;
            if done.rows_affected() == 0 {
                return Err(no_job(tenant, job_id));
            }
            Ok(())
        })
    }
}

impl Store {
    /// Makes a full pass that sweeps due now for the job of `stream` on the connection
    /// (`state.expired_full_pass`: another stream's state expired, and what it missed is
    /// found only by listing in full): its `full_pass_at` becomes now unless earlier, its
    /// next run no later than now, and the pass sweeps when complete even if the stream
    /// does not. `false` when the connection has no job of `stream` yet (its first run
    /// reads in full anyway).
    pub async fn request_full_pass(
        &self,
        tenant: &TenantId,
        connection_id: i64,
        stream: &StreamName,
    ) -> Result<bool, StoreError> {
        let at = now();
        on_backend!(self, |s| {
            let done = sqlx::query(
                "UPDATE jobs SET \
                 full_pass_at = CASE WHEN full_pass_at IS NOT NULL AND full_pass_at < $1 \
                 THEN full_pass_at ELSE $1 END, \
                 full_pass_sweeps = true, \
                 next_run_at = CASE WHEN next_run_at IS NULL OR next_run_at > $1 THEN $1 \
                 ELSE next_run_at END, \
                 updated_at = $1 \
                 WHERE tenant_id = $2 AND connection_id = $3 AND stream = $4",
            )
            .bind(at)
            .bind(tenant.as_str())
            .bind(connection_id)
            .bind(stream.as_str())
            .execute(&s.pool)
            .await
            .map_err(db("planning a full pass that sweeps"))?;
            Ok(done.rows_affected() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::within_share;

    #[test]
    fn the_guard_allows_up_to_the_share() {
        assert!(within_share(0, 0, 0.2));
        assert!(within_share(0, 10, 0.2));
        assert!(within_share(2, 10, 0.2));
        assert!(!within_share(3, 10, 0.2));
        // An empty listing: every record unseen.
        assert!(!within_share(1000, 1000, 0.2));
        assert!(within_share(1000, 1000, 1.0));
    }
}
