//! Scheduling: claiming due jobs under leases, renewing, completing and releasing those
//! leases, triggers, pauses, the next wake-up time and job counts. SQL shared by both
//! backends; the statements that differ (list parameters, row locks) are generated for
//! each backend by `scheduling_sql!` from one text.
//!
//! A job is *runnable* when it is enabled, neither it nor its connection nor its tenant
//! is paused, and its connection is `connected` or `error`. A runnable job is
//! *claimable* when nobody holds an unexpired lease on it and it is triggered or due
//! (`next_run_at <= now`). Every write a worker makes to its job is fenced on
//! `lease_owner`: expiry alone does not take a lease away, another worker's claim does.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::Store;
use super::error::{StoreError, corrupt, db};
use super::jobs::no_job;
use super::postgres::PgStore;
use super::rows::{convert_all, now};
use super::sqlite::SqliteStore;
use super::statement::Bind;
use super::types::{ClaimRequest, Exclusions, Failures, JobCompletion};
use crate::model::{
    ClaimedJob, JobCounts, JobFilter, JobRow, OwnerColumn, PauseScope, ProviderId, RunTrigger, TenantId, TriggerKind,
    UserId,
};

/// The jobs of the scheduling queries, with their connection (`c`) and tenant (`t`).
macro_rules! job_joins {
    () => {
        " FROM jobs j JOIN connections c ON c.id = j.connection_id \
         JOIN tenants t ON t.id = j.tenant_id "
    };
}

/// Enabled, unpaused at every level, on a connection that may run.
macro_rules! runnable {
    () => {
        "j.enabled AND NOT j.paused AND NOT c.paused AND NOT t.paused \
         AND c.status IN ('connected', 'error')"
    };
}

/// No unexpired lease at time `$now` (a lease without an expiry counts as expired).
macro_rules! lease_free {
    ($now:literal) => {
        concat!("(j.lease_owner IS NULL OR j.lease_expires_at IS NULL OR j.lease_expires_at <= ", $now, ")")
    };
}

/// The runnable jobs (with `c` and `t`), `$and` (if given) of them, of tenants and
/// providers not excluded (the list parameters `$tenants` and `$providers`).
macro_rules! runnable_unexcluded {
    ($not_in:ident, $tenants:literal, $providers:literal $(, $and:expr)?) => {
        concat!(
            job_joins!(),
            "WHERE ",
            runnable!(),
            $(" AND ", $and,)?
            " AND ",
            $not_in!("j.tenant_id", $tenants),
            " AND ",
            $not_in!("j.provider", $providers)
        )
    };
}

/// SQLite: `column` is not in the JSON array bound as `param`.
macro_rules! sqlite_not_in {
    ($column:literal, $param:literal) => {
        concat!($column, " NOT IN (SELECT value FROM json_each(", $param, "))")
    };
}

/// PostgreSQL: `column` is not in the `TEXT[]` bound as `param`.
macro_rules! pg_not_in {
    ($column:literal, $param:literal) => {
        concat!($column, " <> ALL(", $param, ")")
    };
}

/// The claim statement for one kind of candidate (`$branch`, taken in `$order`):
/// `$1` owner, `$2` lease expiry, `$3` now, `$4` limit, `$5` excluded tenants, `$6`
/// excluded providers. `reclaimed_from` reads the old `lease_owner` (every `SET`
/// expression sees the row as it was). `$ids_open … $ids_close` wrap the selected ids:
/// on PostgreSQL an array, so the update finds the rows by primary key (with
/// `id IN (…)` the planner hash-joined a scan of the whole table: 72 ms instead of
/// 23 ms for 1,000 of 150,000 jobs).
macro_rules! claim_sql {
    ($not_in:ident, $lock:literal, $ids_open:literal, $ids_close:literal, $branch:literal, $order:literal) => {
        concat!(
            "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2, claimed_at = $3, \
             updated_at = $3, attempts = attempts + 1, reclaimed_from = lease_owner \
             WHERE id ",
            $ids_open,
            "SELECT j.id",
            runnable_unexcluded!($not_in, "$5", "$6", lease_free!("$3")),
            " AND ",
            $branch,
            " ORDER BY ",
            $order,
            " LIMIT $4",
            $lock,
            $ids_close,
            " RETURNING ",
            job_columns!(),
            ", (SELECT timezone FROM tenants WHERE tenants.id = jobs.tenant_id) AS timezone, \
             (SELECT owner_user FROM connections WHERE connections.id = jobs.connection_id) AS owner_user"
        )
    };
}

/// The statements that differ between the backends, written once.
macro_rules! scheduling_sql {
    ($store:ty, $not_in:ident, $lock:literal, $ids_open:literal, $ids_close:literal) => {
        impl $store {
            /// Claims triggered jobs, oldest trigger first.
            const CLAIM_TRIGGERED: &'static str = claim_sql!(
                $not_in,
                $lock,
                $ids_open,
                $ids_close,
                "j.trigger_requested_at IS NOT NULL",
                "j.trigger_requested_at, j.id"
            );

            /// Claims due jobs without a trigger, earliest first (index `jobs_claim_due`).
            const CLAIM_DUE: &'static str = claim_sql!(
                $not_in,
                $lock,
                $ids_open,
                $ids_close,
                "j.trigger_requested_at IS NULL AND j.next_run_at <= $3",
                "j.next_run_at, j.id"
            );

            /// The earliest of: now if a claimable job is triggered; the earliest
            /// `next_run_at` of unleased runnable jobs; for leased ones, when the lease
            /// expires (or their next run, if later). `$1` now, `$2`/`$3` exclusions.
            /// Each part reads one index in order and stops at its first row (the
            /// `ORDER BY` of the first keeps SQLite on `jobs_claim_triggered` once
            /// `ANALYZE` statistics exist; without it, it scanned every connection's jobs).
            const NEXT_DUE: &'static str = concat!(
                "SELECT MIN(w) FROM (SELECT (SELECT $1",
                runnable_unexcluded!($not_in, "$2", "$3", lease_free!("$1")),
                " AND j.trigger_requested_at IS NOT NULL \
                 ORDER BY j.trigger_requested_at, j.id LIMIT 1) AS w \
                 UNION ALL SELECT (SELECT j.next_run_at",
                runnable_unexcluded!($not_in, "$2", "$3", lease_free!("$1")),
                " AND j.trigger_requested_at IS NULL AND j.next_run_at IS NOT NULL \
                 ORDER BY j.next_run_at, j.id LIMIT 1) \
                 UNION ALL SELECT (SELECT MIN(CASE WHEN j.trigger_requested_at IS NULL \
                 AND j.next_run_at > j.lease_expires_at THEN j.next_run_at \
                 ELSE j.lease_expires_at END)",
                runnable_unexcluded!($not_in, "$2", "$3"),
                " AND j.lease_owner IS NOT NULL AND j.lease_expires_at > $1 \
                 AND (j.trigger_requested_at IS NOT NULL OR j.next_run_at IS NOT NULL))) \
                 AS candidates"
            );
        }
    };
}

scheduling_sql!(SqliteStore, sqlite_not_in, "", "IN (", ")");
scheduling_sql!(PgStore, pg_not_in, " FOR UPDATE OF j SKIP LOCKED", "= ANY(ARRAY(", "))");

impl SqliteStore {
    /// Claims are serialized by `BEGIN IMMEDIATE` already.
    const CLAIM_LOCK: Option<&'static str> = None;
    /// One daemon: no other replica holds a share of a quota.
    const SHARES_ELSEWHERE: Option<&'static str> = None;
}

impl PgStore {
    /// Serializes capped claims across replicas until the claim commits (key: "trib" + 1).
    const CLAIM_LOCK: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(1953653346, 1)");
    /// The quota keys of which another replica (not `$1`) holds a share now.
    const SHARES_ELSEWHERE: Option<&'static str> =
        Some("SELECT DISTINCT quota FROM budget_shares WHERE replica <> $1 AND expires_at > now() AND requests > 0");
}

/// The tenant of a connection's quota key (`provider/requests/tenant`); `None` for a
/// provider-wide key (`provider/requests`).
fn quota_tenant(quota: &str) -> Option<&str> {
    quota.splitn(3, '/').nth(2).filter(|t| !t.is_empty())
}

/// A claimed row: the job plus its tenant's time zone and its connection's owner.
#[derive(sqlx::FromRow)]
struct RawClaim {
    #[sqlx(flatten)]
    job: JobRow,
    timezone: String,
    #[sqlx(try_from = "OwnerColumn")]
    owner_user: Option<UserId>,
}

impl TryFrom<RawClaim> for ClaimedJob {
    type Error = StoreError;

    fn try_from(raw: RawClaim) -> Result<Self, StoreError> {
        let job = raw.job;
        let timezone: Tz = raw.timezone.parse().map_err(|_| {
            corrupt(format_args!(
                "tenants: time zone `{}` of tenant `{}` is not an IANA zone",
                raw.timezone, job.tenant_id
            ))
        })?;
        Ok(Self {
            trigger: job.trigger_kind.map_or(RunTrigger::Scheduled, RunTrigger::from),
            reclaimed: job.reclaimed_from.is_some(),
            owner: raw.owner_user,
            timezone,
            job,
        })
    }
}

/// Triggered jobs first (oldest trigger first), then by due time.
fn claim_order(job: &ClaimedJob) -> (bool, Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64) {
    let j = &job.job;
    (j.trigger_requested_at.is_none(), j.trigger_requested_at, j.next_run_at, j.id)
}

/// Concurrency caps a claim keeps across every process sharing the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetCaps {
    /// Unexpired leases one tenant's jobs may hold at once.
    pub per_tenant: usize,
    /// Unexpired leases one provider's jobs may hold at once.
    pub per_provider: usize,
    /// Unexpired leases every job together may hold at once (the fleet's runs).
    pub global: usize,
}

impl FleetCaps {
    /// No caps: the claim takes whatever is due, up to its limit.
    pub const NONE: FleetCaps = FleetCaps { per_tenant: usize::MAX, per_provider: usize::MAX, global: usize::MAX };
}

/// The ids of `tenants` / `providers` as list parameters.
fn exclusion_ids<'a>(exclude: &Exclusions<'a>) -> (Vec<&'a str>, Vec<&'a str>) {
    (exclude.tenants.iter().map(TenantId::as_str).collect(), exclude.providers.iter().map(ProviderId::as_str).collect())
}

impl Store {
    /// Leases up to `req.limit` claimable jobs to `req.owner` until `req.lease_until`, in
    /// one transaction: triggered jobs first (oldest trigger first), then due jobs
    /// (earliest `next_run_at` first), skipping `req.exclude`. A job is claimable when it
    /// is enabled, not paused (nor its connection or tenant), its connection is
    /// `connected` or `error`, nobody holds an unexpired lease on it (an expired lease
    /// is taken over: [`ClaimedJob::reclaimed`]), and it is triggered or due at
    /// `req.now`. Each claim increments `attempts` and sets `claimed_at = req.now`.
    ///
    /// Concurrent claimers (threads, processes, replicas on one PostgreSQL) never get
    /// the same job: SQLite claims inside `BEGIN IMMEDIATE`, PostgreSQL with
    /// `FOR UPDATE SKIP LOCKED`. A batch may hold several jobs of one tenant or
    /// provider; a caller enforcing per-tenant caps releases the surplus with
    /// [`Store::release_lease`].
    pub async fn claim_due_jobs(&self, req: &ClaimRequest<'_>) -> Result<Vec<ClaimedJob>, StoreError> {
        self.claim_due_jobs_capped(req, FleetCaps::NONE).await
    }

    /// [`Store::claim_due_jobs`] within concurrency caps that hold for every process
    /// sharing the store: a job of a tenant (provider) that already has `caps.per_tenant`
    /// (`caps.per_provider`) unexpired leases — any holder's — is not claimed, nor more
    /// than that within the batch. Claims are serialized (SQLite `BEGIN IMMEDIATE`,
    /// PostgreSQL a transaction-level advisory lock), so two replicas claiming at once
    /// cannot both take the last place; the counts come from the `jobs_leased` index.
    pub async fn claim_due_jobs_capped(
        &self,
        req: &ClaimRequest<'_>,
        caps: FleetCaps,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        on_backend!(self, |s: B| {
            let mut tx = s.pool.begin_with(B::BEGIN_WRITE).await.map_err(db("starting a claim transaction"))?;
            let mut raws: Vec<RawClaim> = Vec::new();
            if caps == FleetCaps::NONE {
                let (tenants, providers) = exclusion_ids(&req.exclude);
                for sql in [B::CLAIM_TRIGGERED, B::CLAIM_DUE] {
                    let room = i64::from(req.limit) - raws.len() as i64;
                    if room <= 0 {
                        break;
                    }
                    let batch: Vec<RawClaim> = sqlx::query_as(sql)
                        .bind_all((
                            req.owner,
                            req.lease_until,
                            req.now,
                            room,
                            B::id_list(&tenants),
                            B::id_list(&providers),
                        ))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("claiming due jobs"))?;
                    raws.extend(batch);
                }
            } else {
                if let Some(lock) = B::CLAIM_LOCK {
                    sqlx::query(lock).execute(&mut *tx).await.map_err(db("serializing claims"))?;
                }
                let held: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT tenant_id, provider, COUNT(*) FROM jobs \
                     WHERE lease_owner IS NOT NULL AND lease_expires_at > $1 GROUP BY tenant_id, provider",
                )
                .bind(req.now)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("counting held leases"))?;
                // A tenant one of whose connections' rate-limit shares another replica
                // holds (it ran there within the last seconds) stays with that replica:
                // claimed here, its requests would wait for the holder to give up part of
                // the share. Not a triggered job: the replica asked takes it at once (a
                // trigger is picked up within a second wherever it is sent), and its
                // requests wait for the share instead.
                let shares_elsewhere: Vec<String> = match B::SHARES_ELSEWHERE {
                    Some(sql) => sqlx::query_scalar(sql)
                        .bind(req.owner)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("reading the budget shares of other replicas"))?,
                    None => Vec::new(),
                };
                let held_elsewhere: Vec<&str> = shares_elsewhere.iter().filter_map(|q| quota_tenant(q)).collect();
                let mut per_tenant: HashMap<String, usize> = HashMap::new();
                let mut per_provider: HashMap<String, usize> = HashMap::new();
                let mut total = 0usize;
                for (tenant, provider, n) in held {
                    let n = usize::try_from(n).unwrap_or(0);
                    total += n;
                    *per_tenant.entry(tenant).or_default() += n;
                    *per_provider.entry(provider).or_default() += n;
                }
                // One job per statement, the caps' exclusions recomputed after each.
                'claim: while raws.len() < req.limit as usize && total + raws.len() < caps.global {
                    let (mut tenants, mut providers) = exclusion_ids(&req.exclude);
                    tenants.extend(per_tenant.iter().filter(|(_, n)| **n >= caps.per_tenant).map(|(t, _)| t.as_str()));
                    providers
                        .extend(per_provider.iter().filter(|(_, n)| **n >= caps.per_provider).map(|(p, _)| p.as_str()));
                    let triggered_ids = B::id_list(&tenants);
                    tenants.extend(held_elsewhere.iter().copied());
                    let due_ids = B::id_list(&tenants);
                    let provider_ids = B::id_list(&providers);
                    for (sql, tenant_ids) in [(B::CLAIM_TRIGGERED, triggered_ids), (B::CLAIM_DUE, due_ids)] {
                        let one: Option<RawClaim> = sqlx::query_as(sql)
                            .bind_all((req.owner, req.lease_until, req.now, 1_i64, tenant_ids, provider_ids.clone()))
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db("claiming due jobs"))?;
                        if let Some(raw) = one {
                            *per_tenant.entry(raw.job.tenant_id.as_str().to_owned()).or_default() += 1;
                            *per_provider.entry(raw.job.provider.as_str().to_owned()).or_default() += 1;
                            raws.push(raw);
                            continue 'claim;
                        }
                    }
                    break;
                }
            }
            // A row that does not convert rolls the whole claim back.
            let mut claimed: Vec<ClaimedJob> = convert_all(raws)?;
            tx.commit().await.map_err(db("committing a claim"))?;
            claimed.sort_by_key(claim_order);
            Ok(claimed)
        })
    }

    /// Extends the lease `owner` holds on the tenant's job to `until` (the heartbeat).
    /// An expired lease that nobody took over can still be renewed.
    ///
    /// [`StoreError::LeaseLost`] if `owner` no longer holds it, `NotFound` if the job is
    /// not the tenant's.
    pub async fn renew_lease(
        &self,
        tenant: &TenantId,
        job_id: i64,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            let done = sqlx::query(
                "UPDATE jobs SET lease_expires_at = $1 \
                 WHERE id = $2 AND tenant_id = $3 AND lease_owner = $4",
            )
            .bind_all((until, job_id, tenant.as_str(), owner))
            .execute(&s.pool)
            .await
            .map_err(db("renewing a lease"))?;
            if done.rows_affected() == 0 {
                return Err(self.lease_lost(tenant, job_id).await);
            }
            Ok(())
        })
    }

    /// Takes the lease on one job for a run outside the scheduler (`tributary sync`),
    /// whether or not it is due: `owner` holds it until `lease_until` (renew it with
    /// [`Store::renew_lease`], give it back with [`Store::release_lease`]). An expired
    /// lease is taken over (`reclaimed_from` names its holder), and so is a live lease
    /// held by `dead_holder` (a holder the caller knows has died).
    ///
    /// [`StoreError::LeaseHeld`] if another owner's lease is live, `NotFound` if the job is
    /// not the tenant's.
    pub async fn claim_job(
        &self,
        tenant: &TenantId,
        job_id: i64,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        dead_holder: Option<&str>,
    ) -> Result<JobRow, StoreError> {
        on_backend!(self, |s| {
            let row: Option<JobRow> = sqlx::query_as(concat!(
                "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2, claimed_at = $3, \
                 updated_at = $3, attempts = attempts + 1, reclaimed_from = lease_owner \
                 WHERE id = $4 AND tenant_id = $5 AND \
                 (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= $3 \
                  OR lease_owner = $6) RETURNING ",
                job_columns!()
            ))
            .bind_all((owner, lease_until, now, job_id, tenant.as_str(), dead_holder))
            .fetch_optional(&s.pool)
            .await
            .map_err(db("claiming a job"))?;
            if let Some(row) = row {
                return Ok(row);
            }
            match self.get_job(tenant, job_id).await? {
                None => Err(no_job(tenant, job_id)),
                Some(job) => Err(StoreError::LeaseHeld {
                    job_id,
                    owner: job.lease_owner.unwrap_or_default(),
                    until: job.lease_expires_at.unwrap_or(now),
                }),
            }
        })
    }

    /// Ends `owner`'s run of the tenant's job: writes `next_run_at`, the failure streak
    /// and the last run, clears the lease and resets `attempts`. The trigger the run
    /// served is cleared; one requested after the claim stays pending, so the job runs
    /// again. Returns the job as written.
    ///
    /// Fenced: [`StoreError::LeaseLost`] (and nothing written) if `owner` no longer
    /// holds the lease, `NotFound` if the job is not the tenant's.
    pub async fn complete_job(
        &self,
        tenant: &TenantId,
        job_id: i64,
        owner: &str,
        completion: &JobCompletion,
    ) -> Result<JobRow, StoreError> {
        on_backend!(self, |s| {
            // A trigger that arrived after the claim survives, so the job runs again. A
            // full pass planned before the next run (and not yet due) comes first.
            let row: Option<JobRow> = sqlx::query_as(concat!(
                "UPDATE jobs SET next_run_at = CASE WHEN full_pass_at > $4 \
                 AND ($1 IS NULL OR full_pass_at < $1) THEN full_pass_at ELSE $1 END, \
                 consecutive_failures = CASE WHEN $2 THEN consecutive_failures + 1 ELSE 0 END, \
                 last_run_id = COALESCE($3, last_run_id), \
                 trigger_kind = CASE WHEN trigger_requested_at > claimed_at \
                 THEN trigger_kind ELSE NULL END, \
                 trigger_requested_at = CASE WHEN trigger_requested_at > claimed_at \
                 THEN trigger_requested_at ELSE NULL END, \
                 lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL, \
                 reclaimed_from = NULL, attempts = 0, updated_at = $4 \
                 WHERE id = $5 AND tenant_id = $6 AND lease_owner = $7 RETURNING ",
                job_columns!()
            ))
            .bind_all((
                completion.next_run_at,
                completion.failures == Failures::Increment,
                completion.last_run_id,
                now(),
                job_id,
                tenant.as_str(),
                owner,
            ))
            .fetch_optional(&s.pool)
            .await
            .map_err(db("completing a job"))?;
            match row {
                Some(row) => Ok(row),
                None => Err(self.lease_lost(tenant, job_id).await),
            }
        })
    }

    /// Gives up `owner`'s lease on the tenant's job without finishing it (drain, or a
    /// claim beyond a concurrency cap): `next_run_at` and any trigger stay, so the job
    /// is claimable again at once; the claim's `attempts` increment is undone. `false`
    /// if `owner` did not hold the lease.
    pub async fn release_lease(&self, tenant: &TenantId, job_id: i64, owner: &str) -> Result<bool, StoreError> {
        on_backend!(self, |s| {
            let done = sqlx::query(
                "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL, \
                 reclaimed_from = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
                 updated_at = $1 WHERE id = $2 AND tenant_id = $3 AND lease_owner = $4",
            )
            .bind_all((now(), job_id, tenant.as_str(), owner))
            .execute(&s.pool)
            .await
            .map_err(db("releasing a lease"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Releases every lease `owner` holds (shutdown), like [`Store::release_lease`].
    /// Returns how many.
    pub async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        on_backend!(self, |s| {
            let done = sqlx::query(
                "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL, \
                 reclaimed_from = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
                 updated_at = $1 WHERE lease_owner = $2",
            )
            .bind_all((now(), owner))
            .execute(&s.pool)
            .await
            .map_err(db("releasing a worker's leases"))?;
            Ok(done.rows_affected())
        })
    }

    /// When the scheduler should look again: `now` if a claimable job is triggered or
    /// due; otherwise the earliest `next_run_at` of runnable unleased jobs, or the
    /// earliest expiry of a lease on a runnable job (after which it may be reclaimed);
    /// `None` if nothing is scheduled. Paused, disabled and unconnected jobs and
    /// `exclude` are left out. Never earlier than `now`. Reads a few index entries, not
    /// every job.
    pub async fn next_due_at(
        &self,
        now: DateTime<Utc>,
        exclude: &Exclusions<'_>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        on_backend!(self, |s: B| {
            let (tenants, providers) = exclusion_ids(exclude);
            let earliest: Option<DateTime<Utc>> = sqlx::query_scalar(B::NEXT_DUE)
                .bind_all((now, B::id_list(&tenants), B::id_list(&providers)))
                .fetch_one(&s.pool)
                .await
                .map_err(db("finding the next due job"))?;
            Ok(earliest.map(|at| at.max(now)))
        })
    }

    /// Requests a `kind` run at `now` of every runnable job (enabled, not paused, its
    /// connection `connected` or `error`) that `filter` matches, and returns them. Such
    /// jobs are claimed ahead of due ones. A job already triggered keeps its earlier
    /// request; a running job whose trigger its run is serving gets a new one (it runs
    /// again after this run).
    pub async fn trigger_jobs(
        &self,
        filter: &JobFilter,
        kind: TriggerKind,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobRow>, StoreError> {
        on_backend!(self, |s| {
            // A pending trigger keeps its (earlier) time, unless the running claim has
            // already consumed it: then this one is recorded to run again.
            let mut jobs: Vec<JobRow> = sqlx::query_as(concat!(
                "UPDATE jobs SET \
                 trigger_kind = CASE WHEN trigger_requested_at IS NULL \
                 OR trigger_requested_at <= claimed_at THEN $1 ELSE trigger_kind END, \
                 trigger_requested_at = CASE WHEN trigger_requested_at IS NULL \
                 OR trigger_requested_at <= claimed_at THEN $2 ELSE trigger_requested_at END, \
                 updated_at = $2 WHERE id IN (SELECT j.id",
                job_joins!(),
                "WHERE ",
                runnable!(),
                " AND ($3 IS NULL OR j.tenant_id = $3) AND ($4 IS NULL OR j.provider = $4) \
                 AND ($5 IS NULL OR j.stream = $5)) RETURNING ",
                job_columns!()
            ))
            .bind_all((
                kind.as_str(),
                now,
                filter.tenant.as_ref().map(TenantId::as_str),
                filter.provider.as_ref().map(ProviderId::as_str),
                filter.stream.as_ref().map(|s| s.as_str()),
            ))
            .fetch_all(&s.pool)
            .await
            .map_err(db("triggering jobs"))?;
            jobs.sort_by(|a, b| {
                (&a.tenant_id, &a.provider, &a.stream, a.id).cmp(&(&b.tenant_id, &b.provider, &b.stream, b.id))
            });
            Ok(jobs)
        })
    }

    /// Pauses or resumes a tenant, a connection (all the tenant's connections to the
    /// provider) or one job. Paused jobs are not claimed; running ones finish.
    ///
    /// [`StoreError::NotFound`] if the target does not exist.
    pub async fn set_paused(&self, scope: &PauseScope, paused: bool) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            let now = now();
            let (query, missing) = match scope {
                PauseScope::Tenant(tenant) => (
                    sqlx::query("UPDATE tenants SET paused = $1, updated_at = $2 WHERE id = $3")
                        .bind_all((paused, now))
                        .bind(tenant.as_str()),
                    format!("tenant `{tenant}` does not exist"),
                ),
                PauseScope::Connection(tenant, provider) => (
                    sqlx::query(
                        "UPDATE connections SET paused = $1, updated_at = $2 \
                         WHERE tenant_id = $3 AND provider = $4",
                    )
                    .bind_all((paused, now, tenant.as_str()))
                    .bind(provider.as_str()),
                    format!("no connection for provider `{provider}` at tenant `{tenant}`"),
                ),
                PauseScope::Job(tenant, job_id) => (
                    sqlx::query("UPDATE jobs SET paused = $1, updated_at = $2 WHERE id = $3 AND tenant_id = $4")
                        .bind_all((paused, now, *job_id))
                        .bind(tenant.as_str()),
                    format!("no job {job_id} at tenant `{tenant}`"),
                ),
            };
            let done = query.execute(&s.pool).await.map_err(db(if paused { "pausing" } else { "resuming" }))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound { what: missing });
            }
            Ok(())
        })
    }

    /// Job totals at `now`; `overdue` counts claimable jobs due (or triggered) more than
    /// `overdue_grace` before `now`.
    pub async fn job_counts(&self, now: DateTime<Utc>, overdue_grace: Duration) -> Result<JobCounts, StoreError> {
        on_backend!(self, |s| {
            let overdue_before = now - TimeDelta::from_std(overdue_grace).unwrap_or(TimeDelta::MAX);
            let (total, enabled, paused, blocked, due, overdue, running): (i64, i64, i64, i64, i64, i64, i64) =
                sqlx::query_as(concat!(
                    "SELECT COUNT(*), \
                     COALESCE(SUM(CASE WHEN j.enabled THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN j.enabled AND (j.paused OR c.paused OR t.paused) \
                     THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN j.enabled AND NOT (j.paused OR c.paused OR t.paused) \
                     AND c.status NOT IN ('connected', 'error') THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN ",
                    runnable!(),
                    " AND ",
                    lease_free!("$1"),
                    " AND (j.trigger_requested_at IS NOT NULL OR j.next_run_at <= $1) \
                     THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN ",
                    runnable!(),
                    " AND ",
                    lease_free!("$1"),
                    " AND (j.trigger_requested_at <= $2 OR j.next_run_at <= $2) \
                     THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN j.lease_owner IS NOT NULL AND j.lease_expires_at > $1 \
                     THEN 1 ELSE 0 END), 0)",
                    job_joins!()
                ))
                .bind_all((now, overdue_before))
                .fetch_one(&s.pool)
                .await
                .map_err(db("counting jobs"))?;
            Ok(JobCounts { total, enabled, paused, blocked, due, overdue, running })
        })
    }

    /// Up to `limit` jobs that `filter` matches, by tenant, provider and stream.
    pub async fn list_jobs_filtered(&self, filter: &JobFilter, limit: i64) -> Result<Vec<JobRow>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<JobRow> = sqlx::query_as(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR provider = $2) \
                 AND ($3 IS NULL OR stream = $3) ORDER BY tenant_id, provider, stream, id LIMIT $4"
            ))
            .bind_all((
                filter.tenant.as_ref().map(TenantId::as_str),
                filter.provider.as_ref().map(ProviderId::as_str),
                filter.stream.as_ref().map(|s| s.as_str()),
                limit.max(0),
            ))
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing jobs"))?;
            Ok(rows)
        })
    }

    /// [`StoreError::LeaseLost`] if the tenant's job exists, else `NotFound`.
    async fn lease_lost(&self, tenant: &TenantId, job_id: i64) -> StoreError {
        match self.get_job(tenant, job_id).await {
            Ok(Some(_)) => StoreError::LeaseLost { job_id },
            Ok(None) => no_job(tenant, job_id),
            Err(err) => err,
        }
    }
}
