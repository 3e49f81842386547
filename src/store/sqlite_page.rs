//! SQLite's page write: few statements, each row written once.
//!
//! The connection runs on a thread of its own, so every statement is a round trip
//! between threads. A page without dead letters goes through four: `BEGIN IMMEDIATE`;
//! one read of the job's lease, the tenant's change sequence and the stored hashes of
//! the page's records; one batch that upserts the new and changed records — numbered in
//! the change feed as they are written, in page order — and advances the sequence,
//! moves the cursor and position and counts the page in its run; `COMMIT`.
//! `BEGIN IMMEDIATE` holds the database's write lock from the start, so what the read
//! sees is what the batch writes over: no other writer can change a hash, the lease or
//! the sequence in between.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use sqlx::QueryBuilder;

use super::error::{StoreError, db};
use super::jobs::no_job;
use super::records::{Prepared, Stored, classify};
use super::rows::now;
use super::sqlite::SqliteStore;
use super::types::{PageWrite, PositionWrite};
use crate::model::{PageOutcome, TenantId};

/// The page's job (kind 0: its lease owner; no such row when the tenant has no such
/// job), the tenant's change sequence (kind 1, when it has one) and the stored hash and
/// deletion of each of the page's records that exists (kind 2).
const READ_PAGE_STATE: &str = "SELECT 0, NULL, lease_owner, 0 FROM jobs WHERE id = $5 AND tenant_id = $1 \
     UNION ALL SELECT 1, NULL, CAST(last_seq AS TEXT), 0 FROM change_sequences WHERE tenant_id = $1 \
     UNION ALL SELECT 2, external_id, content_hash, deleted_at IS NOT NULL FROM records \
     WHERE tenant_id = $1 AND entity = $2 AND provider = $3 \
     AND external_id IN (SELECT value FROM json_each($4))";

/// Rows per upsert statement: a full page of the usual sizes is one statement, whose
/// text (and so its prepared statement) is the same for every full page.
const ROWS_PER_UPSERT: usize = 500;

impl SqliteStore {
    /// Writes a page without dead letters (see the module); `None` for a page with dead
    /// letters, which goes through the general transaction.
    pub(super) async fn write_in_one_statement(
        &self,
        tenant: &TenantId,
        page: &PageWrite<'_>,
        records: &[Prepared<'_>],
    ) -> Result<Option<PageOutcome>, StoreError> {
        if !page.dead_letters.is_empty() {
            return Ok(None);
        }
        let now = now();
        // sqlx's text form of a `DateTime<Utc>` on SQLite, made once for the page's rows.
        let now_text = now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
        let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
        let ids: Vec<&str> = records.iter().map(|r| r.external_id).collect();
        let rows: Vec<(i64, Option<String>, Option<String>, bool)> = sqlx::query_as(READ_PAGE_STATE)
            .bind(tenant.as_str())
            .bind(page.entity.as_str())
            .bind(page.provider.as_str())
            .bind(Self::id_list(&ids))
            .bind(page.job_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading the page's job, change sequence and stored record hashes"))?;
        let mut lease: Option<Option<String>> = None;
        let mut last_seq = 0_i64;
        let mut existing: Stored = HashMap::with_capacity_and_hasher(rows.len(), RandomState::default());
        for (kind, id, text, deleted) in rows {
            match (kind, id) {
                (0, _) => lease = Some(text),
                (1, _) => last_seq = text.and_then(|t| t.parse().ok()).unwrap_or(0),
                (_, Some(id)) => {
                    existing.insert(id, (text.unwrap_or_default(), deleted));
                }
                _ => {}
            }
        }
        let Some(holder) = lease else {
            return Err(no_job(tenant, page.job_id));
        };
        if let Some(owner) = page.lease_owner
            && holder.as_deref() != Some(owner)
        {
            return Err(StoreError::LeaseLost { job_id: page.job_id });
        }

        // New and changed records, in page order; unchanged ones are not written.
        let (outcome, writes) = classify(records, &existing);

        let position = match page.position {
            PositionWrite::Keep => None,
            PositionWrite::Save(p) => Some(Some(p)),
            PositionWrite::Clear => Some(None),
        };
        let change_run = page.run.as_ref().map(|r| r.run_id);
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new("");
        let mut seq = last_seq;
        let chunks = writes.chunks(ROWS_PER_UPSERT).count();
        for (n, chunk) in writes.chunks(ROWS_PER_UPSERT).enumerate() {
            qb.push(
                "INSERT INTO records (tenant_id, entity, provider, external_id, data, content_hash, \
                 first_seen, last_synced, change_run, change_seq, change_kind) ",
            );
            qb.push_values(chunk, |mut row, record| {
                seq += 1;
                row.push_bind(tenant.as_str())
                    .push_bind(page.entity.as_str())
                    .push_bind(page.provider.as_str())
                    .push_bind(record.external_id)
                    .push_bind(record.json.as_str())
                    .push_bind(record.hash.as_str())
                    .push_bind(now_text.as_str())
                    .push_bind(now_text.as_str())
                    .push_bind(change_run)
                    .push_bind(seq)
                    .push_unseparated(", 'inserted'");
            });
            qb.push(
                " ON CONFLICT (tenant_id, entity, provider, external_id) DO UPDATE SET \
                 data = excluded.data, content_hash = excluded.content_hash, \
                 last_synced = excluded.last_synced, deleted_at = NULL, change_seq = excluded.change_seq, \
                 change_kind = 'updated', change_run = excluded.change_run",
            );
            if n + 1 < chunks {
                qb.push("; ");
            }
        }
        let mut statements = usize::from(!writes.is_empty());
        let mut next = |qb: &mut QueryBuilder<sqlx::Sqlite>| {
            if statements > 0 {
                qb.push("; ");
            }
            statements += 1;
        };
        if !writes.is_empty() {
            next(&mut qb);
            qb.push("INSERT INTO change_sequences (tenant_id, last_seq) VALUES (")
                .push_bind(tenant.as_str())
                .push(", ")
                .push_bind(seq)
                .push(") ON CONFLICT (tenant_id) DO UPDATE SET last_seq = excluded.last_seq");
        }
        // A sweeping stream's page marks every record it lists seen, the unchanged ones
        // too (the sweep deletes those a full pass did not see).
        if page.mark_seen && !ids.is_empty() {
            next(&mut qb);
            qb.push("UPDATE records SET seen_at = ").push_bind(now);
            qb.push(" WHERE tenant_id = ").push_bind(tenant.as_str());
            qb.push(" AND entity = ").push_bind(page.entity.as_str());
            qb.push(" AND provider = ").push_bind(page.provider.as_str());
            qb.push(" AND external_id IN (SELECT value FROM json_each(").push_bind(Self::id_list(&ids)).push("))");
        }
        // The cursor and the resumable position move with the page; the lease was
        // checked above under the write lock.
        if page.cursor.is_some() || position.is_some() {
            next(&mut qb);
            qb.push("UPDATE jobs SET updated_at = ").push_bind(now);
            if let Some(cursor) = page.cursor {
                qb.push(", cursor = ").push_bind(cursor);
            }
            if let Some(position) = position {
                qb.push(", position = ").push_bind(position);
            }
            qb.push(" WHERE id = ").push_bind(page.job_id);
            qb.push(" AND tenant_id = ").push_bind(tenant.as_str());
        }
        // The run's row counts what this page stored, so a run that dies later still
        // says what it wrote.
        if let Some(run) = &page.run {
            next(&mut qb);
            qb.push("UPDATE runs SET fetched = fetched + ").push_bind(run.fetched);
            qb.push(", inserted = inserted + ").push_bind(outcome.inserted as i64);
            qb.push(", updated = updated + ").push_bind(outcome.updated as i64);
            qb.push(", unchanged = unchanged + ").push_bind(outcome.unchanged as i64);
            qb.push(", filtered = filtered + ").push_bind(run.filtered);
            qb.push(", dead_lettered = dead_lettered + ").push_bind(run.dead_lettered);
            qb.push(", pages = ").push_bind(run.pages);
            qb.push(", http_calls = ").push_bind(run.http_calls);
            qb.push(", retries = ").push_bind(run.retries);
            qb.push(", rate_limit_waits = ").push_bind(run.rate_limit_waits);
            qb.push(", rate_limit_wait_ms = ").push_bind(run.rate_limit_wait_ms);
            qb.push(", cursor_after = COALESCE(").push_bind(page.cursor).push(", cursor_after)");
            qb.push(" WHERE id = ").push_bind(run.run_id);
            qb.push(" AND tenant_id = ").push_bind(tenant.as_str());
            qb.push(" AND outcome = 'running'");
        }
        if statements > 0 {
            qb.build().execute(&mut *tx).await.map_err(db("writing records, cursor, position and run counts"))?;
        }
        tx.commit().await.map_err(db("committing a page"))?;
        Ok(Some(outcome))
    }
}
