//! The store-wide figures behind the process's gauges: connections by status, each
//! stream's freshness over every tenant, and the wait of the longest-waiting claimable
//! job. SQL shared by both backends; a few aggregate queries, cheap enough for a
//! housekeeping tick.

use chrono::{DateTime, Utc};

use super::Store;
use super::error::{StoreError, db};
use crate::model::{GaugeFigures, StreamFreshness};

impl Store {
    /// Connections by status, each stream's freshness and the longest-waiting claimable
    /// job, over every tenant, at `now`.
    pub async fn gauge_figures(&self, now: DateTime<Utc>) -> Result<GaugeFigures, StoreError> {
        on_backend!(self, |s| {
            let connections: Vec<(String, i64)> =
                sqlx::query_as("SELECT status, COUNT(*) FROM connections GROUP BY status ORDER BY status")
                    .fetch_all(&s.pool)
                    .await
                    .map_err(db("counting connections by status"))?;
            let streams: Vec<StreamFreshness> = sqlx::query_as(
                "SELECT provider, stream, MAX(last_success) AS last_success, \
                 MIN(COALESCE(last_success, created_at)) AS oldest FROM \
                 (SELECT j.provider, j.stream, j.created_at, \
                  (SELECT MAX(r.finished_at) FROM runs r WHERE r.job_id = j.id AND r.outcome = 'success') \
                  AS last_success \
                  FROM jobs j JOIN connections c ON c.id = j.connection_id \
                  JOIN tenants t ON t.id = j.tenant_id \
                  WHERE j.enabled AND NOT j.paused AND NOT c.paused AND NOT t.paused) AS s \
                 GROUP BY provider, stream ORDER BY provider, stream",
            )
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading each stream's last success"))?;
            let oldest_due: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT MIN(COALESCE(j.trigger_requested_at, j.next_run_at)) \
                 FROM jobs j JOIN connections c ON c.id = j.connection_id \
                 JOIN tenants t ON t.id = j.tenant_id \
                 WHERE j.enabled AND NOT j.paused AND NOT c.paused AND NOT t.paused \
                 AND c.status IN ('connected', 'error') \
                 AND (j.lease_owner IS NULL OR j.lease_expires_at IS NULL OR j.lease_expires_at <= $1) \
                 AND (j.trigger_requested_at IS NOT NULL OR j.next_run_at <= $1)",
            )
            .bind(now)
            .fetch_one(&s.pool)
            .await
            .map_err(db("reading the longest-waiting due job"))?;
            Ok(GaugeFigures { connections, streams, oldest_due })
        })
    }
}
