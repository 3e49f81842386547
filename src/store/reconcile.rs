//! Reconciliation: making a tenant's jobs match its effective configuration. SQL shared
//! by both backends.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::Store;
use super::error::{StoreError, db};
use super::statement::Bind;
use super::types::DesiredJob;
use super::users::no_tenant;
use crate::model::{ConnectionRow, ConnectionStatus, PresetName, ProviderId, ReconcileCounts, RoleName, TenantId};

/// Computes a job's next run time from its schedule expression and id (the id seeds the
/// job's jitter); `None` leaves the job without a scheduled run.
pub type NextDue<'a> = &'a (dyn Fn(&str, i64) -> Option<DateTime<Utc>> + Sync);

/// Tenants whose inputs [`Store::reconcile_inputs`] reads at most at once, and whose
/// jobs [`Store::reconcile_jobs_many`] is meant to write in one transaction.
pub const RECONCILE_BATCH: usize = 1000;

/// Rows per multi-row statement of a reconciliation (well within both backends' bind
/// budgets at 10 parameters a row).
const ROWS_PER_STATEMENT: usize = 1000;

/// A stored job as reconciliation sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredJob {
    pub id: i64,
    pub tenant_id: TenantId,
    pub connection_id: i64,
    pub stream: String,
    pub schedule: String,
    pub enabled: bool,
    pub next_run_at: Option<DateTime<Utc>>,
}

/// A connection as reconciliation sees it: its provider, and whether its jobs may be
/// enabled (not while the connection is `disabled`).
#[derive(Debug, Clone)]
pub struct JobConnection {
    pub provider: String,
    pub enabled: bool,
}

impl From<&ConnectionRow> for JobConnection {
    fn from(c: &ConnectionRow) -> Self {
        Self { provider: c.provider.to_string(), enabled: c.status != ConnectionStatus::Disabled }
    }
}

/// One tenant's configuration as reconciliation reads it (the preset snapshot comes
/// separately, once per distinct (preset, revision)).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReconcileTenant {
    pub id: TenantId,
    pub timezone: String,
    pub preset: PresetName,
    pub preset_revision: String,
}

/// Everything reconciliation needs of a run of tenants (by id), read in a few statements:
/// see [`Store::reconcile_inputs`].
#[derive(Debug, Default)]
pub struct ReconcileInputs {
    /// The tenants, by id.
    pub tenants: Vec<ReconcileTenant>,
    /// Each distinct (preset, revision, snapshot) among them. A (preset, revision) pair
    /// names one snapshot (the revision is its content hash); a pair listed twice is not
    /// to be trusted, and its tenants are to be read one by one.
    pub snapshots: Vec<(PresetName, String, Value)>,
    /// (tenant, provider, layer), by tenant then provider.
    pub overrides: Vec<(TenantId, ProviderId, Value)>,
    /// (tenant, role, stream patterns), by tenant then role.
    pub roles: Vec<(TenantId, RoleName, Vec<String>)>,
    /// The tenants' connections, by tenant, provider, owner.
    pub connections: Vec<ConnectionRow>,
    /// The tenants' jobs, by tenant.
    pub jobs: Vec<StoredJob>,
}

/// One tenant's desired jobs, for [`Store::reconcile_jobs_many`].
pub struct TenantJobs<'a> {
    pub tenant: &'a TenantId,
    pub desired: &'a [DesiredJob],
    pub next_due: NextDue<'a>,
}

/// A job to create.
struct NewJob<'a> {
    tenant: &'a TenantId,
    connection_id: i64,
    provider: &'a str,
    stream: &'a str,
    schedule: &'a str,
    enabled: bool,
}

/// A change to a stored job: `enabled` always; schedule and next run time only when
/// `reschedule` (otherwise the stored ones stay, whatever a worker wrote meanwhile).
struct JobUpdate<'a> {
    id: i64,
    enabled: bool,
    reschedule: bool,
    schedule: &'a str,
    next_run_at: Option<DateTime<Utc>>,
}

/// What a tenant's jobs need to match its desired jobs.
pub struct JobPlan<'a> {
    /// What applying the plan does (or did).
    pub counts: ReconcileCounts,
    creates: Vec<NewJob<'a>>,
    updates: Vec<JobUpdate<'a>>,
}

impl JobPlan<'_> {
    /// Whether the jobs already match (nothing to write).
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.updates.is_empty()
    }
}

/// Compares a tenant's desired jobs with its stored ones (`existing`, all of the
/// tenant's) and its connections (id → [`JobConnection`]), as
/// [`Store::reconcile_jobs`] documents:
///
/// - a missing job is to be created (its next run time once its id is known);
/// - a job whose schedule changed (or that has no `next_run_at`) gets the new schedule
///   and `next_due`'s time;
/// - a disabled job that is desired again is enabled, keeping its `next_run_at`;
/// - every enabled job not desired is disabled.
///
/// [`StoreError::NotFound`] if a desired job's connection is not the tenant's,
/// [`StoreError::Conflict`] if `desired` names a (connection, stream) twice.
pub fn plan_jobs<'a>(
    tenant: &'a TenantId,
    desired: &'a [DesiredJob],
    connections: &'a HashMap<i64, JobConnection>,
    existing: &[&'a StoredJob],
    next_due: NextDue<'_>,
) -> Result<JobPlan<'a>, StoreError> {
    let mut seen = HashSet::with_capacity(desired.len());
    for d in desired {
        if !seen.insert((d.connection_id, d.stream.as_str())) {
            return Err(StoreError::Conflict {
                what: format!(
                    "job of connection {} and stream `{}` is desired twice at tenant `{tenant}`",
                    d.connection_id, d.stream
                ),
            });
        }
    }
    let by_key: HashMap<(i64, &str), &StoredJob> =
        existing.iter().map(|job| ((job.connection_id, job.stream.as_str()), *job)).collect();
    let mut plan = JobPlan { counts: ReconcileCounts::default(), creates: Vec::new(), updates: Vec::new() };
    for d in desired {
        let Some(connection) = connections.get(&d.connection_id) else {
            return Err(StoreError::NotFound {
                what: format!("no connection {} at tenant `{tenant}`", d.connection_id),
            });
        };
        // A disabled connection keeps its jobs disabled until its provider is enabled
        // again (as in `ensure_job`).
        let enabled = connection.enabled;
        let Some(job) = by_key.get(&(d.connection_id, d.stream.as_str())) else {
            plan.creates.push(NewJob {
                tenant,
                connection_id: d.connection_id,
                provider: &connection.provider,
                stream: d.stream.as_str(),
                schedule: &d.schedule,
                enabled,
            });
            plan.counts.created += 1;
            continue;
        };
        let reschedule = job.schedule != d.schedule || job.next_run_at.is_none();
        if !reschedule && job.enabled == enabled {
            plan.counts.unchanged += 1;
            continue;
        }
        let next_run_at = if reschedule { next_due(&d.schedule, job.id) } else { job.next_run_at };
        plan.updates.push(JobUpdate { id: job.id, enabled, reschedule, schedule: &d.schedule, next_run_at });
        match (job.enabled, enabled) {
            (false, true) => plan.counts.reenabled += 1,
            (true, false) => plan.counts.disabled += 1,
            _ => plan.counts.updated += 1,
        }
    }
    for job in existing.iter().filter(|job| job.enabled) {
        if seen.contains(&(job.connection_id, job.stream.as_str())) {
            continue;
        }
        plan.updates.push(JobUpdate {
            id: job.id,
            enabled: false,
            reschedule: false,
            schedule: "",
            next_run_at: job.next_run_at,
        });
        plan.counts.disabled += 1;
    }
    Ok(plan)
}

impl Store {
    // --- scheduling ----------------------------------------------------------------------

    /// Makes the tenant's jobs match `desired` (one per enabled connection × stream), in
    /// one transaction:
    ///
    /// - a missing job is created with `next_run_at = next_due(schedule, job id)`;
    /// - a job whose schedule changed (or that has no `next_run_at`) gets the new
    ///   schedule and `next_due`'s time;
    /// - a disabled job that is desired again is enabled, keeping its `next_run_at`
    ///   (if that is past, it runs soon, catching up);
    /// - every enabled job of the tenant not in `desired` is disabled.
    ///
    /// Cursors, pauses, leases and failure counts are never touched. Jobs stay disabled
    /// while their connection is `disabled` (as in [`Store::ensure_job`]). A job running
    /// during a schedule change completes with the next run time its worker computed
    /// from the old schedule; the new one applies from then on.
    ///
    /// [`StoreError::NotFound`] if the tenant or a connection is not the tenant's,
    /// [`StoreError::Conflict`] if `desired` names a (connection, stream) twice.
    pub async fn reconcile_jobs(
        &self,
        tenant: &TenantId,
        desired: &[DesiredJob],
        next_due: NextDue<'_>,
    ) -> Result<ReconcileCounts, StoreError> {
        let mut results = self.reconcile_jobs_many(&[TenantJobs { tenant, desired, next_due }]).await?;
        results.pop().unwrap_or_else(|| Err(no_tenant(tenant)))
    }

    /// [`Store::reconcile_jobs`] for several tenants in one transaction (their rows
    /// locked, in id order): the result of each, in order. A tenant that fails (missing,
    /// a connection not its own, a job desired twice) writes nothing; the others are
    /// written. The jobs created and changed go in multi-row statements.
    pub async fn reconcile_jobs_many(
        &self,
        tenants: &[TenantJobs<'_>],
    ) -> Result<Vec<Result<ReconcileCounts, StoreError>>, StoreError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self, |s| s.reconcile_many(tenants).await)
    }

    /// The inputs of reconciliation for up to `limit` tenants with ids after `after`
    /// (from the first without), in six reads outside any transaction. Writes decide
    /// nothing from these: [`Store::reconcile_jobs_many`] reads connections and jobs
    /// again under the tenants' locks.
    pub async fn reconcile_inputs(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<ReconcileInputs, StoreError> {
        on_backend!(self, |s| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let tenants: Vec<ReconcileTenant> =
                match after {
                    Some(after) => sqlx::query_as(
                        "SELECT id, timezone, preset, preset_revision FROM tenants WHERE id > $1 ORDER BY id LIMIT $2",
                    )
                    .bind_all((after.as_str(), limit))
                    .fetch_all(&s.pool)
                    .await,
                    None => {
                        sqlx::query_as("SELECT id, timezone, preset, preset_revision FROM tenants ORDER BY id LIMIT $1")
                            .bind(limit)
                            .fetch_all(&s.pool)
                            .await
                    }
                }
                .map_err(db("listing tenants to reconcile"))?;
            let (Some(first), Some(last)) = (tenants.first(), tenants.last()) else {
                return Ok(ReconcileInputs::default());
            };
            let range = (first.id.as_str(), last.id.as_str());
            let snapshots: Vec<(PresetName, String, Json<Value>)> = sqlx::query_as(
                "SELECT DISTINCT preset, preset_revision, preset_snapshot FROM tenants WHERE id BETWEEN $1 AND $2",
            )
            .bind_all(range)
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading preset snapshots"))?;
            let overrides: Vec<(TenantId, ProviderId, Json<Value>)> = sqlx::query_as(
                "SELECT tenant_id, provider, layer FROM overrides WHERE tenant_id BETWEEN $1 AND $2 \
                 ORDER BY tenant_id, provider",
            )
            .bind_all(range)
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading overrides"))?;
            let roles: Vec<(TenantId, RoleName, Json<Vec<String>>)> = sqlx::query_as(
                "SELECT tenant_id, role, streams FROM role_grants WHERE tenant_id BETWEEN $1 AND $2 \
                 ORDER BY tenant_id, role",
            )
            .bind_all(range)
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading role grants"))?;
            let connections: Vec<ConnectionRow> = sqlx::query_as(concat!(
                "SELECT ",
                connection_columns!(),
                " FROM connections WHERE tenant_id BETWEEN $1 AND $2 ORDER BY tenant_id, provider, owner_user, id"
            ))
            .bind_all(range)
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing connections"))?;
            let jobs: Vec<StoredJob> = sqlx::query_as(
                "SELECT id, tenant_id, connection_id, stream, schedule, enabled, next_run_at \
                 FROM jobs WHERE tenant_id BETWEEN $1 AND $2 ORDER BY tenant_id, id",
            )
            .bind_all(range)
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading jobs"))?;
            Ok(ReconcileInputs {
                tenants,
                snapshots: snapshots.into_iter().map(|(p, r, s)| (p, r, s.0)).collect(),
                overrides: overrides.into_iter().map(|(t, p, l)| (t, p, l.0)).collect(),
                roles: roles.into_iter().map(|(t, r, s)| (t, r, s.0)).collect(),
                connections,
                jobs,
            })
        })
    }
}

/// [`Store::reconcile_jobs_many`] on each backend.
macro_rules! reconcile_methods {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn reconcile_many(
                &self,
                tenants: &[TenantJobs<'_>],
            ) -> Result<Vec<Result<ReconcileCounts, StoreError>>, StoreError> {
                let (mut tx, now) = self.begin_write().await?;
                let mut ids: Vec<&str> = tenants.iter().map(|t| t.tenant.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                // Serializes reconciliations (and tenant saves) of these tenants.
                let locked: HashSet<String> = sqlx::query_scalar::<_, String>(Self::LOCK_TENANTS)
                    .bind(Self::id_list(&ids))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("locking tenants"))?
                    .into_iter()
                    .collect();
                let rows: Vec<(i64, String, String, String)> = sqlx::query_as(Self::CONNECTIONS_OF_TENANTS)
                    .bind(Self::id_list(&ids))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("reading connections"))?;
                let mut connections: HashMap<&str, HashMap<i64, JobConnection>> = HashMap::new();
                for (id, tenant, provider, status) in &rows {
                    connections
                        .entry(tenant.as_str())
                        .or_default()
                        .insert(*id, JobConnection { provider: provider.clone(), enabled: status != "disabled" });
                }
                let existing: Vec<StoredJob> = sqlx::query_as(Self::JOBS_OF_TENANTS)
                    .bind(Self::id_list(&ids))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("reading jobs"))?;
                let mut jobs: HashMap<&str, Vec<&StoredJob>> = HashMap::new();
                for job in &existing {
                    jobs.entry(job.tenant_id.as_str()).or_default().push(job);
                }
                let none = HashMap::new();
                let mut results = Vec::with_capacity(tenants.len());
                let mut plans = Vec::with_capacity(tenants.len());
                for (i, t) in tenants.iter().enumerate() {
                    if !locked.contains(t.tenant.as_str()) {
                        results.push(Err(no_tenant(t.tenant)));
                        continue;
                    }
                    let conns = connections.get(t.tenant.as_str()).unwrap_or(&none);
                    let stored = jobs.get(t.tenant.as_str()).map(Vec::as_slice).unwrap_or_default();
                    match plan_jobs(t.tenant, t.desired, conns, stored, t.next_due) {
                        Ok(plan) => {
                            results.push(Ok(plan.counts));
                            plans.push((i, plan));
                        }
                        Err(e) => results.push(Err(e)),
                    }
                }

                // New jobs, with ids taken first: the jitter of their first run time is
                // seeded by the id, so each row is written once, complete.
                let creates: Vec<(usize, &NewJob<'_>)> =
                    plans.iter().flat_map(|(i, p)| p.creates.iter().map(move |c| (*i, c))).collect();
                let ids: Vec<i64> = if creates.is_empty() {
                    Vec::new()
                } else {
                    sqlx::query_scalar(Self::ALLOCATE_JOB_IDS)
                        .bind(i64::try_from(creates.len()).unwrap_or(i64::MAX))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("allocating job ids"))?
                };
                if ids.len() != creates.len() {
                    return Err(StoreError::Conflict {
                        what: format!("{} job ids allocated for {} new jobs", ids.len(), creates.len()),
                    });
                }
                let rows: Vec<(i64, &NewJob<'_>, Option<DateTime<Utc>>)> = creates
                    .iter()
                    .zip(&ids)
                    .map(|((i, job), id)| (*id, *job, (tenants[*i].next_due)(job.schedule, *id)))
                    .collect();
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO jobs (id, tenant_id, connection_id, provider, stream, schedule, enabled, \
                         next_run_at, created_at, updated_at) ",
                    );
                    qb.push_values(chunk, |mut row, (id, job, next_run_at)| {
                        row.push_bind(*id)
                            .push_bind(job.tenant.as_str())
                            .push_bind(job.connection_id)
                            .push_bind(job.provider)
                            .push_bind(job.stream)
                            .push_bind(job.schedule)
                            .push_bind(job.enabled)
                            .push_bind(*next_run_at)
                            .push_bind(now)
                            .push_bind(now);
                    });
                    // A job another writer created meanwhile (a `sync` on its own, which
                    // does not lock the tenant) is left as that writer made it.
                    qb.push(" ON CONFLICT (connection_id, stream) DO NOTHING");
                    qb.build().persistent(false).execute(&mut *tx).await.map_err(db("creating jobs"))?;
                }
                let updates: Vec<&JobUpdate<'_>> = plans.iter().flat_map(|(_, p)| p.updates.iter()).collect();
                for chunk in updates.chunks(ROWS_PER_STATEMENT) {
                    let mut qb =
                        QueryBuilder::<$db>::new("WITH v (id, enabled, reschedule, schedule, next_run_at) AS (");
                    qb.push_values(chunk, |mut row, u| {
                        row.push_bind(u.id)
                            .push_bind(u.enabled)
                            .push_bind(u.reschedule)
                            .push_bind(u.schedule)
                            .push_bind(u.next_run_at);
                    });
                    qb.push(
                        ") UPDATE jobs SET enabled = v.enabled, \
                         schedule = CASE WHEN v.reschedule THEN v.schedule ELSE jobs.schedule END, \
                         next_run_at = CASE WHEN v.reschedule THEN v.next_run_at ELSE jobs.next_run_at END, \
                         updated_at = ",
                    );
                    qb.push_bind(now).push(" FROM v WHERE jobs.id = v.id");
                    qb.build().persistent(false).execute(&mut *tx).await.map_err(db("updating jobs"))?;
                }
                tx.commit().await.map_err(db("committing a reconciliation"))?;
                Ok(results)
            }
        }
    };
}

/// [`Store::finish_reconciles`] on each backend.
macro_rules! finish_methods {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn finish_many(&self, queued: &[QueuedReconcile]) -> Result<u64, StoreError> {
                let mut removed = 0;
                for chunk in queued.chunks(ROWS_PER_STATEMENT) {
                    let mut qb =
                        QueryBuilder::<$db>::new("DELETE FROM reconcile_queue WHERE (tenant_id, generation) IN (");
                    qb.push_values(chunk, |mut row, q| {
                        row.push_bind(q.tenant_id.as_str()).push_bind(q.generation);
                    });
                    qb.push(")");
                    removed += qb
                        .build()
                        .persistent(false)
                        .execute(&self.pool)
                        .await
                        .map_err(db("finishing reconciliations"))?
                        .rows_affected();
                }
                Ok(removed)
            }
        }
    };
}

finish_methods!(super::SqliteStore, sqlx::Sqlite);
finish_methods!(super::PgStore, sqlx::Postgres);

reconcile_methods!(super::SqliteStore, sqlx::Sqlite);
reconcile_methods!(super::PgStore, sqlx::Postgres);

/// A tenant waiting for its jobs to follow a change (`reconcile_queue`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueuedReconcile {
    pub tenant_id: TenantId,
    /// Grows with every queueing: [`Store::finish_reconcile`] removes the row only at
    /// the generation that was reconciled.
    pub generation: i64,
    /// The change that queued it last (`tenant.apply`, `credentials.set`, …).
    pub reason: String,
    pub queued_at: DateTime<Utc>,
}

/// Queues `tenant` for reconciliation on `conn` (inside the transaction of the change).
/// On PostgreSQL the same transaction notifies every replica
/// ([`RECONCILE_PAYLOAD`] on the wake channel, delivered when it commits).
pub(super) async fn queue_reconcile(
    conn: impl Into<super::Conn<'_>>,
    tenant: &TenantId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let conn: super::Conn<'_> = conn.into();
    if let super::Conn::Postgres(pg) = conn {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind_all((super::inbox::WAKE_CHANNEL, RECONCILE_PAYLOAD))
            .execute(&mut *pg)
            .await
            .map_err(db("notifying other replicas"))?;
        return queue_row(super::Conn::Postgres(pg), tenant, reason, now).await;
    }
    queue_row(conn, tenant, reason, now).await
}

/// The payload of the wake notification that says "take the reconciliation queue".
pub const RECONCILE_PAYLOAD: &str = "reconcile";

async fn queue_row(
    conn: super::Conn<'_>,
    tenant: &TenantId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    on_connection!(conn, |conn| {
        sqlx::query(
            "INSERT INTO reconcile_queue (tenant_id, generation, reason, queued_at) VALUES ($1, 1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET generation = reconcile_queue.generation + 1, \
             reason = excluded.reason, queued_at = excluded.queued_at",
        )
        .bind_all((tenant.as_str(), reason, super::rows::stored(now)))
        .execute(conn)
        .await
        .map_err(db("queueing a reconciliation"))?;
        Ok(())
    })
}

impl Store {
    /// Up to `limit` tenants waiting for reconciliation, oldest first.
    pub async fn queued_reconciles(&self, limit: i64) -> Result<Vec<QueuedReconcile>, StoreError> {
        on_backend!(self, |s| {
            sqlx::query_as(
                "SELECT tenant_id, generation, reason, queued_at FROM reconcile_queue \
                 ORDER BY queued_at, tenant_id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading the reconciliation queue"))
        })
    }

    /// `tenant`'s entry in the reconciliation queue, if it has one.
    pub async fn queued_reconcile(&self, tenant: &TenantId) -> Result<Option<QueuedReconcile>, StoreError> {
        on_backend!(self, |s| {
            sqlx::query_as("SELECT tenant_id, generation, reason, queued_at FROM reconcile_queue WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&s.pool)
                .await
                .map_err(db("reading the reconciliation queue"))
        })
    }

    /// Queues `tenant` for reconciliation outside any other change (a tenant whose
    /// reconciliation failed is queued again by its caller).
    pub async fn queue_reconcile(&self, tenant: &TenantId, reason: &str) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            queue_reconcile(&mut *tx, tenant, reason, now).await?;
            tx.commit().await.map_err(db("queueing a reconciliation"))
        })
    }

    /// [`Store::finish_reconcile`] for many entries, in multi-row statements (one commit
    /// per thousand, not one per tenant); how many were removed.
    pub async fn finish_reconciles(&self, queued: &[QueuedReconcile]) -> Result<u64, StoreError> {
        on_backend!(self, |s| s.finish_many(queued).await)
    }

    /// Removes `queued` from the queue unless it was queued again since it was read;
    /// `true` if it was removed.
    pub async fn finish_reconcile(&self, queued: &QueuedReconcile) -> Result<bool, StoreError> {
        on_backend!(self, |s| {
            let done = sqlx::query("DELETE FROM reconcile_queue WHERE tenant_id = $1 AND generation = $2")
                .bind_all((queued.tenant_id.as_str(), queued.generation))
                .execute(&s.pool)
                .await
                .map_err(db("finishing a reconciliation"))?;
            Ok(done.rows_affected() == 1)
        })
    }
}
