//! The fleet in one view: one row per daemon sharing the store (`replicas`), kept by its
//! own heartbeat. SQL shared by both backends.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::error::{StoreError, db};
use super::rows::stored;
use super::statement::Bind;

/// One daemon as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReplicaRow {
    /// The daemon's lease owner id (`host-pid-xxxxxx`): run rows name it as `replica`.
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub workers: i64,
    /// Runs in flight at its last heartbeat.
    pub busy: i64,
    /// `running` or `draining`.
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

impl Store {
    /// Writes `replica`'s row (start-up and every heartbeat), and removes the rows of
    /// replicas whose heartbeat stopped more than `forget_after` before it.
    pub async fn heartbeat_replica(
        &self,
        replica: &ReplicaRow,
        forget_after: chrono::Duration,
    ) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            sqlx::query(
                "INSERT INTO replicas (id, host, pid, version, workers, busy, state, started_at, heartbeat_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET \
                 version = excluded.version, workers = excluded.workers, busy = excluded.busy, \
                 state = excluded.state, heartbeat_at = excluded.heartbeat_at",
            )
            .bind_all((
                replica.id.as_str(),
                replica.host.as_str(),
                replica.pid,
                replica.version.as_str(),
                replica.workers,
                replica.busy,
                replica.state.as_str(),
                stored(replica.started_at),
                stored(replica.heartbeat_at),
            ))
            .execute(&s.pool)
            .await
            .map_err(db("writing the replica's heartbeat"))?;
            sqlx::query("DELETE FROM replicas WHERE heartbeat_at < $1")
                .bind(stored(replica.heartbeat_at - forget_after))
                .execute(&s.pool)
                .await
                .map_err(db("forgetting dead replicas"))?;
            Ok(())
        })
    }

    /// Every replica, the most recently started first.
    pub async fn list_replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        on_backend!(self, |s| {
            sqlx::query_as(
                "SELECT id, host, pid, version, workers, busy, state, started_at, heartbeat_at FROM replicas \
                 ORDER BY started_at DESC, id",
            )
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing replicas"))
        })
    }

    /// Removes a replica's row (a clean stop).
    pub async fn remove_replica(&self, id: &str) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            sqlx::query("DELETE FROM replicas WHERE id = $1")
                .bind(id)
                .execute(&s.pool)
                .await
                .map_err(db("removing the replica's row"))?;
            Ok(())
        })
    }
}
