//! Jobs, runs and the audit log: SQL shared by both backends.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::error::{StoreError, db};
use super::rows::{now, stored};
use super::statement::Bind;
use super::{Conn, Store};
use crate::model::{AuditEntry, JobRow, RunOutcome, RunRow, RunStats, RunTrigger, StreamName, TenantId};

/// The error for a job that does not exist at the tenant.
pub(super) fn no_job(tenant: &TenantId, job_id: i64) -> StoreError {
    StoreError::NotFound { what: format!("no job {job_id} at tenant `{tenant}`") }
}

/// The error for a run that does not exist (at the tenant).
fn no_run(tenant: &TenantId, run_id: Uuid) -> StoreError {
    StoreError::NotFound { what: format!("no run {run_id} at tenant `{tenant}`") }
}

impl Store {
    // --- runs ----------------------------------------------------------------------------

    /// Starts a run of the tenant's job: a new UUID v7 id, outcome `running`, the job's
    /// current cursor as `cursor_before`; the job's `last_run_id` points at it.
    ///
    /// [`StoreError::NotFound`] if the job is not the tenant's.
    pub async fn start_run(&self, tenant: &TenantId, job_id: i64, trigger: RunTrigger) -> Result<RunRow, StoreError> {
        self.start_run_of(tenant, job_id, trigger, None).await
    }

    /// [`Self::start_run`] naming the replica (process) that runs it.
    pub async fn start_run_by(
        &self,
        tenant: &TenantId,
        job_id: i64,
        trigger: RunTrigger,
        replica: &str,
    ) -> Result<RunRow, StoreError> {
        self.start_run_of(tenant, job_id, trigger, Some(replica)).await
    }

    /// [`Self::start_run`] by `replica`, if named.
    async fn start_run_of(
        &self,
        tenant: &TenantId,
        job_id: i64,
        trigger: RunTrigger,
        replica: Option<&str>,
    ) -> Result<RunRow, StoreError> {
        on_backend!(self, |s| {
            let run_id = Uuid::now_v7();
            let (mut tx, now) = s.begin_write().await?;
            let row: Option<RunRow> = sqlx::query_as(concat!(
                "INSERT INTO runs (id, tenant_id, job_id, provider, stream, \"trigger\", \
                 started_at, outcome, cursor_before, replica) \
                 SELECT $1, tenant_id, id, provider, stream, $2, $3, 'running', cursor, $6 \
                 FROM jobs WHERE id = $4 AND tenant_id = $5 RETURNING ",
                run_columns!()
            ))
            .bind_all((run_id, trigger.as_str(), now, job_id, tenant.as_str(), replica))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("inserting a run"))?;
            let Some(row) = row else {
                return Err(no_job(tenant, job_id));
            };
            sqlx::query(
                "UPDATE jobs SET last_run_id = $1, updated_at = $2 \
                 WHERE id = $3 AND tenant_id = $4",
            )
            .bind_all((run_id, now, job_id, tenant.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(db("linking a job to its run"))?;
            tx.commit().await.map_err(db("committing a new run"))?;
            Ok(row)
        })
    }

    // --- jobs ----------------------------------------------------------------------------

    /// The job of (`connection_id`, `stream`): created if missing, otherwise its schedule
    /// is updated. It is enabled unless the connection is `disabled`; pause, cursor and
    /// lease are kept.
    ///
    /// [`StoreError::NotFound`] if the connection is not the tenant's.
    pub async fn ensure_job(
        &self,
        tenant: &TenantId,
        connection_id: i64,
        stream: &StreamName,
        schedule: &str,
    ) -> Result<JobRow, StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            let connection: Option<(String, String)> =
                sqlx::query_as("SELECT provider, status FROM connections WHERE id = $1 AND tenant_id = $2")
                    .bind_all((connection_id, tenant.as_str()))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("reading a connection"))?;
            let Some((provider, status)) = connection else {
                return Err(StoreError::NotFound {
                    what: format!("no connection {connection_id} at tenant `{tenant}`"),
                });
            };
            // A disabled connection keeps its jobs disabled until its provider is
            // enabled again.
            let enabled = status != "disabled";
            let row: JobRow = sqlx::query_as(concat!(
                "INSERT INTO jobs (tenant_id, connection_id, provider, stream, schedule, \
                 enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                 ON CONFLICT (connection_id, stream) DO UPDATE SET \
                 schedule = excluded.schedule, enabled = excluded.enabled, \
                 updated_at = excluded.updated_at RETURNING ",
                job_columns!()
            ))
            .bind_all((tenant.as_str(), connection_id, &provider, stream.as_str(), schedule, enabled, now))
            .fetch_one(&mut *tx)
            .await
            .map_err(db("writing a job"))?;
            tx.commit().await.map_err(db("committing a job"))?;
            Ok(row)
        })
    }

    /// The tenant's job `job_id`.
    pub async fn get_job(&self, tenant: &TenantId, job_id: i64) -> Result<Option<JobRow>, StoreError> {
        on_backend!(self, |s| {
            let row: Option<JobRow> =
                sqlx::query_as(concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1 AND tenant_id = $2"))
                    .bind_all((job_id, tenant.as_str()))
                    .fetch_optional(&s.pool)
                    .await
                    .map_err(db("reading a job"))?;
            Ok(row)
        })
    }

    /// The tenant's jobs, by provider then stream.
    pub async fn list_jobs(&self, tenant: &TenantId) -> Result<Vec<JobRow>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<JobRow> = sqlx::query_as(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE tenant_id = $1 ORDER BY provider, stream, id"
            ))
            .bind(tenant.as_str())
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing jobs"))?;
            Ok(rows)
        })
    }

    /// Sets the note of the tenant's run (how it began: a resumed pass, an expired
    /// position).
    pub async fn set_run_note(&self, tenant: &TenantId, run_id: Uuid, note: &str) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            sqlx::query("UPDATE runs SET note = $1 WHERE id = $2 AND tenant_id = $3")
                .bind_all((note, run_id, tenant.as_str()))
                .execute(&s.pool)
                .await
                .map_err(db("writing a run's note"))?;
            Ok(())
        })
    }

    /// The job's resumable position (JSON, as the last page write saved it), if a pass
    /// is under way. [`StoreError::NotFound`] if the job is not the tenant's.
    pub async fn job_position(&self, tenant: &TenantId, job_id: i64) -> Result<Option<String>, StoreError> {
        on_backend!(self, |s| {
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT position FROM jobs WHERE id = $1 AND tenant_id = $2")
                    .bind_all((job_id, tenant.as_str()))
                    .fetch_optional(&s.pool)
                    .await
                    .map_err(db("reading a job's resumable position"))?;
            match row {
                Some((position,)) => Ok(position),
                None => Err(no_job(tenant, job_id)),
            }
        })
    }

    /// Finishes the tenant's running run with `outcome` and `stats`.
    ///
    /// [`StoreError::NotFound`] if the run is not the tenant's, [`StoreError::Conflict`]
    /// if it already finished.
    pub async fn finish_run(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        outcome: RunOutcome,
        stats: &RunStats,
    ) -> Result<RunRow, StoreError> {
        on_backend!(self, |s: B| {
            // The run's end and the events that report it commit together.
            let (mut tx, _) = s.begin_write().await?;
            let row: Option<RunRow> = sqlx::query_as(concat!(
                "UPDATE runs SET finished_at = $1, outcome = $2, cursor_after = $3, \
                 fetched = $4, inserted = $5, updated = $6, unchanged = $7, filtered = $8, \
                 dead_lettered = $9, pages = $10, http_calls = $11, retries = $12, \
                 rate_limit_waits = $13, rate_limit_wait_ms = $14, error = $15, http_p50_ms = $16, \
                 http_p95_ms = $17, http_p99_ms = $18, error_class = $19, error_status = $20, \
                 error_endpoint = $21, note = COALESCE($24, note), bytes_received = $25, \
                 http_errors = $26 \
                 WHERE id = $22 AND tenant_id = $23 AND outcome = 'running' RETURNING ",
                run_columns!()
            ))
            .bind(now())
            .bind(outcome.as_str())
            .bind(stats.cursor_after.as_deref())
            .bind(stats.fetched)
            .bind(stats.inserted)
            .bind(stats.updated)
            .bind(stats.unchanged)
            .bind(stats.filtered)
            .bind(stats.dead_lettered)
            .bind(stats.pages)
            .bind(stats.http_calls)
            .bind(stats.retries)
            .bind(stats.rate_limit_waits)
            .bind(stats.rate_limit_wait_ms)
            .bind(stats.error.as_deref())
            .bind(stats.http_p50_ms)
            .bind(stats.http_p95_ms)
            .bind(stats.http_p99_ms)
            .bind(stats.error_class.as_deref())
            .bind(stats.error_status)
            .bind(stats.error_endpoint.as_deref())
            .bind(run_id)
            .bind(tenant.as_str())
            .bind(stats.note.as_deref())
            .bind(stats.bytes_received)
            .bind(stats.http_errors)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("finishing a run"))?;
            if let Some(row) = row {
                super::usage::add_usage(&mut *tx, &row).await?;
                if let Some((event, data)) = super::webhooks::run_event(&row) {
                    B::enqueue_event(&mut tx, Some(tenant), event, data).await?;
                }
                B::enqueue_records_changed(&mut tx, &row).await?;
                tx.commit().await.map_err(db("committing a finished run"))?;
                return Ok(row);
            }
            drop(tx);
            match self.get_run(run_id, Some(tenant)).await? {
                None => Err(no_run(tenant, run_id)),
                Some(run) => {
                    Err(StoreError::Conflict { what: format!("run {run_id} already finished as `{}`", run.outcome) })
                }
            }
        })
    }

    /// Closes the job's runs still marked `running` as `abandoned` with `error`, their
    /// `cursor_after` the job's committed cursor: runs of a process (daemon worker or
    /// `tributary sync`) that died holding the job's lease. Call it only while holding the
    /// job's lease, before starting a run; returns how many runs were closed.
    pub async fn close_abandoned_runs(&self, tenant: &TenantId, job_id: i64, error: &str) -> Result<u64, StoreError> {
        on_backend!(self, |s| {
            // The closed runs count in the usage aggregate in the same transaction.
            let (mut tx, _) = s.begin_write().await?;
            let closed: Vec<RunRow> = sqlx::query_as(concat!(
                "UPDATE runs SET finished_at = $1, outcome = 'abandoned', error = $2, \
                 cursor_after = (SELECT cursor FROM jobs WHERE jobs.id = runs.job_id) \
                 WHERE job_id = $3 AND tenant_id = $4 AND outcome = 'running' RETURNING ",
                run_columns!()
            ))
            .bind_all((now(), error, job_id, tenant.as_str()))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("closing abandoned runs"))?;
            for row in &closed {
                super::usage::add_usage(&mut *tx, row).await?;
            }
            tx.commit().await.map_err(db("committing closed runs"))?;
            Ok(closed.len() as u64)
        })
    }

    /// Closes as `abandoned` every run still marked `running` whose job has no live lease
    /// holder: no lease at all, or another owner's lease that expired at or before
    /// `expired_before`. Runs under `seen_by`'s own leases are left to `seen_by`, which
    /// knows whether they are alive. Returns how many runs were closed.
    pub async fn close_expired_runs(&self, expired_before: DateTime<Utc>, seen_by: &str) -> Result<u64, StoreError> {
        on_backend!(self, |s| {
            // Index `runs_running`; one job lookup by primary key per running run.
            let (mut tx, _) = s.begin_write().await?;
            let closed: Vec<RunRow> = sqlx::query_as(concat!(
                "UPDATE runs SET finished_at = $1, outcome = 'abandoned', \
                 error = 'abandoned: ' || COALESCE((SELECT 'its lease holder `' || j.lease_owner || \
                 '` stopped renewing the job''s lease' FROM jobs j WHERE j.id = runs.job_id \
                 AND j.lease_owner IS NOT NULL), 'no process held the job''s lease') || \
                 '; closed by `' || $3 || '`', \
                 cursor_after = (SELECT cursor FROM jobs WHERE jobs.id = runs.job_id) \
                 WHERE outcome = 'running' AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = runs.job_id \
                 AND (j.lease_owner IS NULL OR (j.lease_owner <> $3 AND \
                 (j.lease_expires_at IS NULL OR j.lease_expires_at <= $2)))) RETURNING ",
                run_columns!()
            ))
            .bind_all((now(), expired_before, seen_by))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("closing runs whose lease expired"))?;
            for row in &closed {
                super::usage::add_usage(&mut *tx, row).await?;
            }
            tx.commit().await.map_err(db("committing closed runs"))?;
            Ok(closed.len() as u64)
        })
    }

    /// A run: any tenant's with `None` (operator scope), only that tenant's with `Some`.
    pub async fn get_run(&self, run_id: Uuid, tenant: Option<&TenantId>) -> Result<Option<RunRow>, StoreError> {
        on_backend!(self, |s| {
            let query = match tenant {
                Some(tenant) => {
                    sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1 AND tenant_id = $2"))
                        .bind_all((run_id, tenant.as_str()))
                }
                None => sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1")).bind(run_id),
            };
            let row: Option<RunRow> = query.fetch_optional(&s.pool).await.map_err(db("reading a run"))?;
            Ok(row)
        })
    }

    /// Answers when the store can run a statement (readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            sqlx::query("SELECT 1").execute(&s.pool).await.map(|_| ()).map_err(db("checking the store"))
        })
    }

    /// Up to `limit` finished runs of one connection's jobs, newest first.
    pub async fn connection_runs(
        &self,
        tenant: &TenantId,
        connection_id: i64,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<RunRow> = sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE tenant_id = $1 AND outcome <> 'running' AND job_id IN \
                 (SELECT id FROM jobs WHERE connection_id = $2 AND tenant_id = $1) \
                 ORDER BY started_at DESC, id DESC LIMIT $3"
            ))
            .bind_all((tenant.as_str(), connection_id, limit.max(0)))
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing a connection's runs"))?;
            Ok(rows)
        })
    }

    /// Up to `limit` runs, newest first: every tenant's with `None`, one tenant's with
    /// `Some`.
    pub async fn list_runs(&self, tenant: Option<&TenantId>, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        on_backend!(self, |s| {
            let query = match tenant {
                Some(tenant) => sqlx::query_as(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM runs WHERE tenant_id = $1 \
                     ORDER BY started_at DESC, id DESC LIMIT $2"
                ))
                .bind(tenant.as_str()),
                None => sqlx::query_as(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM runs ORDER BY started_at DESC, id DESC LIMIT $1"
                )),
            };
            let rows: Vec<RunRow> = query.bind(limit.max(0)).fetch_all(&s.pool).await.map_err(db("listing runs"))?;
            Ok(rows)
        })
    }

    // --- audit ---------------------------------------------------------------------------

    /// Appends an entry to the audit log.
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            let (mut tx, _) = s.begin_write().await?;
            insert_audit(&mut *tx, entry).await?;
            tx.commit().await.map_err(db("committing an audit entry"))
        })
    }

    /// Up to `limit` audit entries, newest first: all with `None`, one tenant's with
    /// `Some`.
    pub async fn list_audit(&self, tenant: Option<&TenantId>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        on_backend!(self, |s| {
            let query = match tenant {
                Some(tenant) => sqlx::query_as(concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_log WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT $2"
                ))
                .bind(tenant.as_str()),
                None => sqlx::query_as(concat!(
                    "SELECT ",
                    audit_columns!(),
                    " FROM audit_log ORDER BY at DESC, id DESC LIMIT $1"
                )),
            };
            let rows: Vec<AuditEntry> =
                query.bind(limit.max(0)).fetch_all(&s.pool).await.map_err(db("listing audit entries"))?;
            Ok(rows)
        })
    }
}

/// Appends `entry` to the audit log inside the caller's transaction.
pub(super) async fn insert_audit(conn: impl Into<Conn<'_>>, entry: &AuditEntry) -> Result<(), StoreError> {
    on_connection!(conn, |conn| {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, tenant_id, subject, details, scope, outcome, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind_all((
            stored(entry.at),
            &entry.actor,
            &entry.action,
            entry.tenant_id.as_ref().map(TenantId::as_str),
            entry.subject.as_deref(),
            Json(&entry.details),
            entry.scope.as_deref(),
            entry.outcome.as_str(),
            entry.message.as_deref(),
        ))
        .execute(&mut *conn)
        .await
        .map_err(db("writing an audit entry"))?;
        Ok(())
    })
}
