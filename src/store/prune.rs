//! Retention: pruning history the `[retention]` settings no longer keep — finished runs
//! (never a job's latest ones, never a running one), dead letters, delivered and failed
//! outbound webhook messages (their delivery attempts go with them), superseded
//! contributions, finished writes (with their attempts) and, when enabled, records
//! deleted at the provider. Live records, jobs (their cursors and positions), pending
//! work and anything younger than its cut-off are never touched.
//!
//! Rows go in batches of `batch`, one short transaction each, so a pass never holds the
//! store (SQLite's single writer) for long; `pause` between batches lets syncs through.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::error::{StoreError, db};
use super::postgres::PgStore;
use super::rows::stored;
use super::sqlite::SqliteStore;
use crate::config::RetentionSettings;

/// What a pruning pass removed (or, dry, would remove), per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub runs: u64,
    pub dead_letters: u64,
    pub webhook_messages: u64,
    pub contributions: u64,
    pub writes: u64,
    pub deleted_records: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.runs + self.dead_letters + self.webhook_messages + self.contributions + self.writes + self.deleted_records
    }

    /// `(kind, rows)` in a fixed order.
    pub fn kinds(&self) -> [(&'static str, u64); 6] {
        [
            ("runs", self.runs),
            ("dead_letters", self.dead_letters),
            ("webhook_messages", self.webhook_messages),
            ("contributions", self.contributions),
            ("writes", self.writes),
            ("deleted_records", self.deleted_records),
        ]
    }
}

/// One kind of history: the statements that count and remove its prunable rows (`$1`
/// the cut-off; runs also `$2`, the runs kept per job; the removal `$3`, the batch).
struct Kind {
    count: &'static str,
    delete: &'static str,
}

/// The statements of a kind: rows of `$table` (as `t`) matching `$prunable`, named by
/// `$key`.
macro_rules! kind {
    ($table:literal, $key:literal, $prunable:literal) => {
        Kind {
            count: concat!("SELECT count(*) FROM ", $table, " t WHERE ", $prunable, " AND $2 = $2"),
            delete: concat!(
                "DELETE FROM ",
                $table,
                " WHERE ",
                $key,
                " IN (SELECT t.",
                $key,
                " FROM ",
                $table,
                " t WHERE ",
                $prunable,
                " AND $2 = $2 LIMIT $3)"
            ),
        }
    };
}

/// Every kind, in the order of [`PruneReport::kinds`]; `$row` names a record row.
macro_rules! prune_kinds {
    ($row:literal) => {
        [
            // Finished runs started before the cut-off with at least `runs_keep` newer runs
            // of their job (the order of `runs list`: started, then id).
            kind!(
                "runs",
                "id",
                "t.outcome <> 'running' AND t.started_at < $1 AND (SELECT count(*) FROM runs n \
                 WHERE n.job_id = t.job_id AND (n.started_at > t.started_at \
                 OR (n.started_at = t.started_at AND n.id > t.id))) >= $2"
            ),
            kind!("dead_letters", "id", "t.created_at < $1"),
            kind!("webhook_outbox", "id", "t.state IN ('delivered', 'failed') AND t.created_at < $1"),
            kind!("contributions", "id", "t.superseded_by IS NOT NULL AND t.created_at < $1"),
            kind!("writes", "id", "t.state IN ('succeeded', 'failed', 'conflict', 'cancelled') AND t.finished_at < $1"),
            kind!("records", $row, "t.deleted_at IS NOT NULL AND t.deleted_at < $1"),
        ]
    };
}

impl SqliteStore {
    const PRUNE_KINDS: [Kind; 6] = prune_kinds!("rowid");
}

impl PgStore {
    const PRUNE_KINDS: [Kind; 6] = prune_kinds!("ctid");
}

macro_rules! prune_methods {
    ($store:ty) => {
        impl $store {
            /// Removes (or counts, `dry`) the prunable rows of kind `i` older than `cutoff`.
            async fn prune_kind(
                &self,
                i: usize,
                cutoff: DateTime<Utc>,
                keep: i64,
                batch: i64,
                dry: bool,
                pause: Duration,
            ) -> Result<u64, StoreError> {
                let k = &Self::PRUNE_KINDS[i];
                if dry {
                    let n: i64 = sqlx::query_scalar(k.count)
                        .bind(stored(cutoff))
                        .bind(keep)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db("counting prunable rows"))?;
                    return Ok(u64::try_from(n).unwrap_or(0));
                }
                let mut removed = 0;
                loop {
                    let n = sqlx::query(k.delete)
                        .bind(stored(cutoff))
                        .bind(keep)
                        .bind(batch)
                        .execute(&self.pool)
                        .await
                        .map_err(db("pruning history"))?
                        .rows_affected();
                    removed += n;
                    if n < u64::try_from(batch).unwrap_or(0) {
                        return Ok(removed);
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    };
}

prune_methods!(SqliteStore);
prune_methods!(PgStore);

impl Store {
    /// Prunes what `policy` no longer keeps, as of `now`; `dry` counts instead. Kinds
    /// with 0 days are kept forever.
    pub async fn prune(
        &self,
        policy: &RetentionSettings,
        now: DateTime<Utc>,
        dry: bool,
        pause: Duration,
    ) -> Result<PruneReport, StoreError> {
        let days = [
            policy.runs_days,
            policy.dead_letters_days,
            policy.webhook_messages_days,
            policy.contributions_days,
            policy.writes_days,
            policy.deleted_records_days,
        ];
        let keep = i64::from(policy.runs_keep.max(1));
        let batch = i64::from(policy.batch.max(1));
        let mut counts = [0u64; 6];
        for (i, d) in days.into_iter().enumerate() {
            if d == 0 {
                continue;
            }
            let cutoff = now - chrono::Duration::days(i64::from(d));
            counts[i] = on_backend!(self, |s| s.prune_kind(i, cutoff, keep, batch, dry, pause).await)?;
        }
        let [runs, dead_letters, webhook_messages, contributions, writes, deleted_records] = counts;
        Ok(PruneReport { runs, dead_letters, webhook_messages, contributions, writes, deleted_records })
    }
}
