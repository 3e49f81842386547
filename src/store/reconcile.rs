//! Reconciliation: making a tenant's jobs match its effective configuration. SQL shared
//! by both backends.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::Store;
use super::error::{StoreError, db};
use super::statement::Bind;
use super::types::DesiredJob;
use super::users::lock_tenant;
use crate::model::{ReconcileCounts, TenantId};

/// Computes a job's next run time from its schedule expression and id (the id seeds the
/// job's jitter); `None` leaves the job without a scheduled run.
pub type NextDue<'a> = &'a (dyn Fn(&str, i64) -> Option<DateTime<Utc>> + Sync);

/// A stored job as reconciliation sees it.
#[derive(sqlx::FromRow)]
struct ExistingJob {
    id: i64,
    connection_id: i64,
    stream: String,
    schedule: String,
    enabled: bool,
    next_run_at: Option<DateTime<Utc>>,
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
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            // Serializes reconciliations (and tenant saves) of this tenant.
            lock_tenant(&mut *tx, tenant).await?;
            let connections: HashMap<i64, (String, String)> = sqlx::query_as::<_, (i64, String, String)>(
                "SELECT id, provider, status FROM connections WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading connections"))?
            .into_iter()
            .map(|(id, provider, status)| (id, (provider, status)))
            .collect();
            let existing: Vec<ExistingJob> = sqlx::query_as(
                "SELECT id, connection_id, stream, schedule, enabled, next_run_at \
                 FROM jobs WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading jobs"))?;
            let by_key: HashMap<(i64, &str), &ExistingJob> =
                existing.iter().map(|job| ((job.connection_id, job.stream.as_str()), job)).collect();

            let mut counts = ReconcileCounts::default();
            for d in desired {
                let Some((provider, status)) = connections.get(&d.connection_id) else {
                    return Err(StoreError::NotFound {
                        what: format!("no connection {} at tenant `{tenant}`", d.connection_id),
                    });
                };
                // A disabled connection keeps its jobs disabled until its provider is
                // enabled again (as in `ensure_job`).
                let enabled = status != "disabled";
                let Some(job) = by_key.get(&(d.connection_id, d.stream.as_str())) else {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO jobs (tenant_id, connection_id, provider, stream, schedule, \
                         enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                         RETURNING id",
                    )
                    .bind_all((
                        tenant.as_str(),
                        d.connection_id,
                        provider,
                        d.stream.as_str(),
                        &d.schedule,
                        enabled,
                        now,
                    ))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("creating a job"))?;
                    sqlx::query("UPDATE jobs SET next_run_at = $1 WHERE id = $2")
                        .bind_all((next_due(&d.schedule, id), id))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("scheduling a new job"))?;
                    counts.created += 1;
                    continue;
                };
                let reschedule = job.schedule != d.schedule || job.next_run_at.is_none();
                if !reschedule && job.enabled == enabled {
                    counts.unchanged += 1;
                    continue;
                }
                let next_run_at = if reschedule { next_due(&d.schedule, job.id) } else { job.next_run_at };
                sqlx::query(
                    "UPDATE jobs SET schedule = $1, enabled = $2, next_run_at = $3, updated_at = $4 \
                     WHERE id = $5 AND tenant_id = $6",
                )
                .bind_all((&d.schedule, enabled, next_run_at, now, job.id, tenant.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(db("updating a job"))?;
                match (job.enabled, enabled) {
                    (false, true) => counts.reenabled += 1,
                    (true, false) => counts.disabled += 1,
                    _ => counts.updated += 1,
                }
            }

            for job in existing.iter().filter(|job| job.enabled) {
                if seen.contains(&(job.connection_id, job.stream.as_str())) {
                    continue;
                }
                sqlx::query("UPDATE jobs SET enabled = FALSE, updated_at = $1 WHERE id = $2")
                    .bind_all((now, job.id))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("disabling a job"))?;
                counts.disabled += 1;
            }
            tx.commit().await.map_err(db("committing a reconciliation"))?;
            Ok(counts)
        })
    }
}

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
