//! Normalized records and the page write: SQL shared by both backends.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use foldhash::fast::RandomState;

use serde_json::Value;
use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::error::{StoreError, db};
use super::jobs::no_job;
use super::postgres::PgStore;
use super::rows::{content_hash_of_text, now};
use super::sqlite::SqliteStore;
use super::types::{PageWrite, PositionWrite, RecordInput};
use crate::model::{
    ChangeKind, ChangeRange, ChangeRow, DeadLetterRow, EntityName, PageOutcome, ProviderId, RecordRow, TenantId,
};

/// Bind parameters per row of the multi-row upsert.
const BINDS_PER_ROW: usize = 9;

/// One record of a page, ready to write: serialized once, and hashed over that text.
pub(super) struct Prepared<'a> {
    pub(super) external_id: &'a str,
    pub(super) json: String,
    pub(super) hash: String,
}

/// Collapses duplicate external ids (the last occurrence wins, at the position of the
/// first), serializes every record once and hashes the text.
pub(super) fn prepare(records: &[RecordInput]) -> Vec<Prepared<'_>> {
    let mut position: HashMap<&str, usize, RandomState> =
        HashMap::with_capacity_and_hasher(records.len(), RandomState::default());
    let mut unique: Vec<&RecordInput> = Vec::with_capacity(records.len());
    for record in records {
        match position.entry(record.external_id.as_str()) {
            Entry::Occupied(slot) => unique[*slot.get()] = record,
            Entry::Vacant(slot) => {
                slot.insert(unique.len());
                unique.push(record);
            }
        }
    }
    unique
        .into_iter()
        .map(|record| {
            // `to_string` of the serializer, not `Display`'s formatter adapter (twice as slow).
            let json = serde_json::to_string(&record.data).unwrap_or_default();
            Prepared { external_id: &record.external_id, hash: content_hash_of_text(&json), json }
        })
        .collect()
}

/// The stored hash and deletion of a page's records that exist, by key.
pub(super) type Stored = HashMap<String, (String, bool), RandomState>;

/// Tells a page's new, changed and unchanged records apart by their stored hashes;
/// returns the counts and the records to write (new and changed, in page order).
pub(super) fn classify<'p, 'a>(records: &'p [Prepared<'a>], existing: &Stored) -> (PageOutcome, Vec<&'p Prepared<'a>>) {
    let mut outcome = PageOutcome::default();
    let mut writes = Vec::with_capacity(records.len());
    for record in records {
        match existing.get(record.external_id) {
            None => outcome.inserted += 1,
            Some((hash, deleted)) if *deleted || *hash != record.hash => outcome.updated += 1,
            Some(_) => {
                outcome.unchanged += 1;
                continue;
            }
        }
        writes.push(record);
    }
    (outcome, writes)
}

/// Rows per statement so `per_row * rows` stays within `max_binds`.
fn rows_per_statement(max_binds: usize, per_row: usize) -> usize {
    (max_binds / per_row).max(1)
}

/// Pushes the multi-row upsert of `$records` (an iterator of `&Prepared`) onto a query
/// builder: new rows inserted, existing ones rewritten (keeping `first_seen`), each found
/// through the primary key.
///
/// Written rows are left without a change sequence (`change_seq` NULL), their kind and
/// run set; `number_changes` numbers them before the transaction commits.
macro_rules! push_upsert {
    ($qb:expr, $store:ty, $tenant:expr, $page:expr, $records:expr, $now:expr) => {{
        $qb.push(
            "INSERT INTO records (tenant_id, entity, provider, external_id, data, content_hash, \
             first_seen, last_synced, change_run, change_seq, change_kind) ",
        );
        let change_run = $page.run.as_ref().map(|r| r.run_id);
        $qb.push_values($records, |mut row, record| {
            row.push_bind($tenant.as_str())
                .push_bind($page.entity.as_str())
                .push_bind($page.provider.as_str())
                .push_bind(record.external_id)
                .push_bind(record.json.as_str())
                .push_unseparated(<$store>::JSON_PARAM)
                .push_bind(record.hash.as_str())
                .push_bind($now)
                .push_bind($now)
                .push_bind(change_run)
                .push_unseparated(", NULL, 'inserted'");
        });
        $qb.push(
            " ON CONFLICT (tenant_id, entity, provider, external_id) DO UPDATE SET \
             data = excluded.data, content_hash = excluded.content_hash, \
             last_synced = excluded.last_synced, deleted_at = NULL, change_seq = NULL, \
             change_kind = 'updated', change_run = excluded.change_run",
        );
    }};
}

macro_rules! record_methods {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Numbers the tenant's records written in this transaction (those without a
            /// change sequence; `written` of them by the writer's count) with the next
            /// numbers of the tenant's change sequence, in key order. The counter's row
            /// stays locked until commit, so concurrent writers of one tenant take their
            /// numbers one after the other.
            pub(super) async fn number_changes(
                tx: &mut sqlx::Transaction<'static, $db>,
                tenant: &TenantId,
                written: u64,
            ) -> Result<(), StoreError> {
                if written == 0 {
                    return Ok(());
                }
                let written = i64::try_from(written).unwrap_or(i64::MAX);
                let last: i64 = sqlx::query_scalar(
                    "INSERT INTO change_sequences (tenant_id, last_seq) VALUES ($1, $2) ON CONFLICT (tenant_id) \
                     DO UPDATE SET last_seq = change_sequences.last_seq + excluded.last_seq RETURNING last_seq",
                )
                .bind(tenant.as_str())
                .bind(written)
                .fetch_one(&mut **tx)
                .await
                .map_err(db("advancing the tenant's change sequence"))?;
                let numbered = <$store>::number_rows(tx, tenant, last - written).await?;
                // A row a concurrent writer changed between this writer's read and its
                // upsert is written but was not counted: the counter covers it too.
                let numbered = i64::try_from(numbered).unwrap_or(i64::MAX);
                if numbered != written {
                    sqlx::query("UPDATE change_sequences SET last_seq = $2 WHERE tenant_id = $1")
                        .bind(tenant.as_str())
                        .bind(last - written + numbered.max(written))
                        .execute(&mut **tx)
                        .await
                        .map_err(db("advancing the tenant's change sequence"))?;
                }
                Ok(())
            }

            pub(super) async fn write_page(
                &self,
                tenant: &TenantId,
                page: &PageWrite<'_>,
            ) -> Result<PageOutcome, StoreError> {
                self.write_prepared(tenant, page, &prepare(page.records)).await
            }

            /// [`Self::write_page`] with the page's records already prepared (by
            /// [`prepare`] from `page.records`).
            pub(super) async fn write_prepared(
                &self,
                tenant: &TenantId,
                page: &PageWrite<'_>,
                records: &[Prepared<'_>],
            ) -> Result<PageOutcome, StoreError> {
                if let Some(outcome) = self.write_in_one_statement(tenant, page, records).await? {
                    return Ok(outcome);
                }
                self.write_in_transaction(tenant, page, records, false, &[]).await
            }

            /// [`Self::write_prepared`] for a page that also carries deletions (items
            /// that say their record was deleted): their keys mark the stored records
            /// deleted in the page's transaction, after its records are written. Each
            /// deletion counts as `updated`, a key not stored or already deleted as
            /// `unchanged`.
            pub(super) async fn write_with_tombstones(
                &self,
                tenant: &TenantId,
                page: &PageWrite<'_>,
                records: &[Prepared<'_>],
                tombstones: &[&str],
            ) -> Result<PageOutcome, StoreError> {
                self.write_in_transaction(tenant, page, records, false, tombstones).await
            }

            /// A page of a deletion stream: its records' keys mark the stored records
            /// deleted (those not deleted already, each numbered in the change feed as
            /// `deleted`), with the dead letters, cursor, position and run counts of the
            /// page, in one transaction. A deletion counts as `updated` in the run; a key
            /// that is not stored or already deleted as `unchanged`.
            pub(super) async fn write_deletions(
                &self,
                tenant: &TenantId,
                page: &PageWrite<'_>,
                records: &[Prepared<'_>],
            ) -> Result<PageOutcome, StoreError> {
                self.write_in_transaction(tenant, page, records, true, &[]).await
            }

            /// The page write in a transaction of several statements: `records` are
            /// upserted, or, for a deletion page (`deletions`), marked deleted.
            async fn write_in_transaction(
                &self,
                tenant: &TenantId,
                page: &PageWrite<'_>,
                records: &[Prepared<'_>],
                deletions: bool,
                tombstones: &[&str],
            ) -> Result<PageOutcome, StoreError> {
                let now = now();
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                let per_statement = rows_per_statement(Self::MAX_BINDS, BINDS_PER_ROW);

                // The job must be the tenant's; a fenced write must hold its lease. The
                // job's row and the stored hashes come back from one statement. Where the
                // backend allows it, the upsert of the whole page follows in the same
                // batch: it writes only new and changed rows (its `DO UPDATE ... WHERE`),
                // which the hashes read before it tell apart, and the checks below roll
                // it back if they fail.
                let ids: Vec<&str> = records.iter().map(|r| r.external_id).collect();
                let together = Self::READ_AND_UPSERT_TOGETHER
                    && !deletions
                    && !records.is_empty()
                    && records.len() <= per_statement;
                let rows: Vec<(Option<String>, Option<String>, bool)> = if together {
                    let mut qb = QueryBuilder::<$db>::new(
                        "SELECT NULL AS external_id, lease_owner AS content_hash, 0 AS deleted \
                         FROM jobs WHERE id = ",
                    );
                    qb.push_bind(page.job_id).push(" AND tenant_id = ").push_bind(tenant.as_str());
                    qb.push(
                        " UNION ALL SELECT external_id, content_hash, deleted_at IS NOT NULL FROM records \
                         WHERE tenant_id = ",
                    );
                    qb.push_bind(tenant.as_str()).push(" AND entity = ").push_bind(page.entity.as_str());
                    qb.push(" AND provider = ").push_bind(page.provider.as_str());
                    qb.push(" AND external_id IN (SELECT value FROM json_each(")
                        .push_bind(Self::id_list(&ids))
                        .push(")); ");
                    push_upsert!(qb, Self, tenant, page, records.iter(), now);
                    qb.push(
                        " WHERE records.content_hash IS NOT excluded.content_hash OR records.deleted_at IS NOT NULL",
                    );
                    qb.build_query_as()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("reading the page's job and stored record hashes, and writing records"))?
                } else {
                    sqlx::query_as(Self::SELECT_JOB_AND_HASHES)
                        .bind(tenant.as_str())
                        .bind(page.entity.as_str())
                        .bind(page.provider.as_str())
                        .bind(Self::id_list(&ids))
                        .bind(page.job_id)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db("reading the page's job and stored record hashes"))?
                };
                let mut lease: Option<Option<String>> = None;
                let mut existing: Stored = HashMap::with_capacity_and_hasher(rows.len(), RandomState::default());
                for (id, hash, deleted) in rows {
                    match id {
                        None => lease = Some(hash),
                        Some(id) => {
                            existing.insert(id, (hash.unwrap_or_default(), deleted));
                        }
                    }
                }
                let Some(holder) = lease else {
                    return Err(no_job(tenant, page.job_id));
                };
                if let Some(owner) = page.lease_owner {
                    if holder.as_deref() != Some(owner) {
                        return Err(StoreError::LeaseLost { job_id: page.job_id });
                    }
                }

                // New and changed records go through one multi-row upsert: its
                // `DO UPDATE` branch rewrites exactly the changed rows (keeping
                // `first_seen`), each found through the primary key. Unchanged records
                // are not written at all.
                // A deletion page's records are marked deleted below, not upserted.
                let upserted = if deletions { &[][..] } else { records };
                let (mut outcome, writes) = classify(upserted, &existing);
                let mut written = if together { outcome.inserted + outcome.updated } else { 0 };
                if deletions && !ids.is_empty() {
                    written = sqlx::query(Self::MARK_DELETED)
                        .bind(tenant.as_str())
                        .bind(page.entity.as_str())
                        .bind(page.provider.as_str())
                        .bind(Self::id_list(&ids))
                        .bind(now)
                        .bind(page.run.as_ref().map(|r| r.run_id))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("marking records deleted"))?
                        .rows_affected();
                    outcome.updated = written;
                    outcome.unchanged = records.len() as u64 - written.min(records.len() as u64);
                }
                for chunk in writes.chunks(per_statement).filter(|_| !together) {
                    let mut qb = QueryBuilder::<$db>::new("");
                    push_upsert!(qb, Self, tenant, page, chunk.iter().copied(), now);
                    // Kept prepared: a full page always has the same text.
                    written += qb.build().execute(&mut *tx).await.map_err(db("writing records"))?.rows_affected();
                }
                if !tombstones.is_empty() {
                    let gone = sqlx::query(Self::MARK_DELETED)
                        .bind(tenant.as_str())
                        .bind(page.entity.as_str())
                        .bind(page.provider.as_str())
                        .bind(Self::id_list(tombstones))
                        .bind(now)
                        .bind(page.run.as_ref().map(|r| r.run_id))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("marking records deleted"))?
                        .rows_affected();
                    written += gone;
                    outcome.updated += gone;
                    outcome.unchanged += (tombstones.len() as u64).saturating_sub(gone);
                }
                // A sweeping stream's page marks every record it lists seen, the
                // unchanged ones too (the sweep deletes those a full pass did not see).
                if page.mark_seen && !deletions && !ids.is_empty() {
                    sqlx::query(Self::MARK_SEEN)
                        .bind(tenant.as_str())
                        .bind(page.entity.as_str())
                        .bind(page.provider.as_str())
                        .bind(Self::id_list(&ids))
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("marking records seen"))?;
                }
                Self::number_changes(&mut tx, tenant, written).await?;

                for chunk in page.dead_letters.chunks(500) {
                    let mut qb = QueryBuilder::<$db>::new(
                        "INSERT INTO dead_letters (tenant_id, run_id, provider, stream, entity, \
                         source_id, reason, record, created_at) ",
                    );
                    qb.push_values(chunk, |mut row, d| {
                        row.push_bind(tenant.as_str())
                            .push_bind(d.run_id)
                            .push_bind(page.provider.as_str())
                            .push_bind(d.stream.as_str())
                            .push_bind(page.entity.as_str())
                            .push_bind(d.source_id.as_deref())
                            .push_bind(d.reason.as_str())
                            .push_bind(Json(&d.record))
                            .push_bind(now);
                    });
                    qb.build().persistent(false).execute(&mut *tx).await.map_err(db("writing dead letters"))?;
                }

                // The cursor and the resumable position move with the page, fenced on
                // the lease like the records.
                let position = match page.position {
                    PositionWrite::Keep => None,
                    PositionWrite::Save(p) => Some(Some(p)),
                    PositionWrite::Clear => Some(None),
                };
                if page.cursor.is_some() || position.is_some() {
                    let mut qb = QueryBuilder::<$db>::new("UPDATE jobs SET updated_at = ");
                    qb.push_bind(now);
                    if let Some(cursor) = page.cursor {
                        qb.push(", cursor = ").push_bind(cursor);
                    }
                    if let Some(position) = position {
                        qb.push(", position = ").push_bind(position);
                    }
                    qb.push(" WHERE id = ").push_bind(page.job_id);
                    qb.push(" AND tenant_id = ").push_bind(tenant.as_str());
                    if let Some(owner) = page.lease_owner {
                        qb.push(" AND lease_owner = ").push_bind(owner);
                    }
                    let done = qb
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(db("moving the job cursor and resumable position"))?;
                    if done.rows_affected() == 0 {
                        // Dropping `tx` rolls the records back with the cursor.
                        return Err(StoreError::LeaseLost { job_id: page.job_id });
                    }
                }
                // The run's row counts what this page stored, so a run that dies later
                // still says what it wrote.
                if let Some(run) = &page.run {
                    sqlx::query(
                        "UPDATE runs SET fetched = fetched + $1, inserted = inserted + $2, \
                         updated = updated + $3, unchanged = unchanged + $4, filtered = filtered + $5, \
                         dead_lettered = dead_lettered + $6, pages = $7, http_calls = $8, retries = $9, \
                         rate_limit_waits = $10, rate_limit_wait_ms = $11, \
                         cursor_after = COALESCE($12, cursor_after) \
                         WHERE id = $13 AND tenant_id = $14 AND outcome = 'running'",
                    )
                    .bind(run.fetched)
                    .bind(outcome.inserted as i64)
                    .bind(outcome.updated as i64)
                    .bind(outcome.unchanged as i64)
                    .bind(run.filtered)
                    .bind(run.dead_lettered)
                    .bind(run.pages)
                    .bind(run.http_calls)
                    .bind(run.retries)
                    .bind(run.rate_limit_waits)
                    .bind(run.rate_limit_wait_ms)
                    .bind(page.cursor)
                    .bind(run.run_id)
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db("counting a page in its run"))?;
                }
                tx.commit().await.map_err(db("committing a page"))?;
                Ok(outcome)
            }

            pub(super) async fn mark_deleted(
                &self,
                tenant: &TenantId,
                entity: &EntityName,
                provider: &ProviderId,
                ids: &[&str],
                run: Option<uuid::Uuid>,
            ) -> Result<u64, StoreError> {
                if ids.is_empty() {
                    return Ok(0);
                }
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                let deleted = sqlx::query(Self::MARK_DELETED)
                    .bind(tenant.as_str())
                    .bind(entity.as_str())
                    .bind(provider.as_str())
                    .bind(Self::id_list(ids))
                    .bind(now())
                    .bind(run)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("marking records deleted"))?
                    .rows_affected();
                Self::number_changes(&mut tx, tenant, deleted).await?;
                tx.commit().await.map_err(db("committing deleted records"))?;
                Ok(deleted)
            }

            pub(super) async fn list_changes(
                &self,
                tenant: &TenantId,
                entity: Option<&EntityName>,
                since_seq: i64,
                limit: i64,
            ) -> Result<Vec<ChangeRow>, StoreError> {
                type Raw = (
                    i64,
                    EntityName,
                    ProviderId,
                    String,
                    ChangeKind,
                    Option<uuid::Uuid>,
                    chrono::DateTime<chrono::Utc>,
                    Option<chrono::DateTime<chrono::Utc>>,
                );
                let rows: Vec<Raw> = sqlx::query_as(
                    "SELECT change_seq, entity, provider, external_id, change_kind, change_run, last_synced, \
                     deleted_at FROM records WHERE tenant_id = $1 AND change_seq > $2 \
                     AND ($3 IS NULL OR entity = $3) ORDER BY change_seq LIMIT $4",
                )
                .bind(tenant.as_str())
                .bind(since_seq)
                .bind(entity.map(|e| e.as_str()))
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing changes"))?;
                Ok(rows
                    .into_iter()
                    .map(|(seq, entity, provider, external_id, kind, run_id, last_synced, deleted_at)| ChangeRow {
                        seq,
                        entity,
                        provider,
                        external_id,
                        changed_at: match (kind, deleted_at) {
                            (ChangeKind::Deleted, Some(at)) => at,
                            _ => last_synced,
                        },
                        kind,
                        run_id,
                    })
                    .collect())
            }

            pub(super) async fn change_range(
                &self,
                tenant: &TenantId,
                run_id: uuid::Uuid,
                entity: &EntityName,
            ) -> Result<Option<ChangeRange>, StoreError> {
                let (from, to, inserted, updated, deleted): (Option<i64>, Option<i64>, i64, i64, i64) = sqlx::query_as(
                    "SELECT min(change_seq), max(change_seq), \
                         COALESCE(sum(CASE WHEN change_kind = 'inserted' THEN 1 ELSE 0 END), 0), \
                         COALESCE(sum(CASE WHEN change_kind = 'updated' THEN 1 ELSE 0 END), 0), \
                         COALESCE(sum(CASE WHEN change_kind = 'deleted' THEN 1 ELSE 0 END), 0) \
                         FROM records WHERE change_run = $1 AND entity = $2 AND tenant_id = $3 \
                         AND change_seq IS NOT NULL",
                )
                .bind(run_id)
                .bind(entity.as_str())
                .bind(tenant.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(db("reading a run's change range"))?;
                let n = |v: i64| u64::try_from(v).unwrap_or(0);
                Ok(from.zip(to).map(|(from_seq, to_seq)| ChangeRange {
                    from_seq,
                    to_seq,
                    inserted: n(inserted),
                    updated: n(updated),
                    deleted: n(deleted),
                }))
            }

            pub(super) async fn list_records(
                &self,
                tenant: &TenantId,
                entity: &EntityName,
                limit: i64,
            ) -> Result<Vec<RecordRow>, StoreError> {
                let rows: Vec<RecordRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    record_columns!(),
                    " FROM records WHERE tenant_id = $1 AND entity = $2 \
                     ORDER BY provider, external_id LIMIT $3"
                ))
                .bind(tenant.as_str())
                .bind(entity.as_str())
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing records"))?;
                Ok(rows)
            }

            pub(super) async fn get_record(
                &self,
                tenant: &TenantId,
                entity: &EntityName,
                provider: &ProviderId,
                external_id: &str,
            ) -> Result<Option<RecordRow>, StoreError> {
                let row: Option<RecordRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    record_columns!(),
                    " FROM records WHERE tenant_id = $1 AND entity = $2 AND provider = $3 \
                     AND external_id = $4"
                ))
                .bind(tenant.as_str())
                .bind(entity.as_str())
                .bind(provider.as_str())
                .bind(external_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a record"))?;
                Ok(row)
            }

            pub(super) async fn list_dead_letters(
                &self,
                tenant: &TenantId,
                run_id: Option<uuid::Uuid>,
                limit: i64,
            ) -> Result<Vec<DeadLetterRow>, StoreError> {
                type Raw = (
                    i64,
                    Option<uuid::Uuid>,
                    String,
                    String,
                    String,
                    Option<String>,
                    String,
                    Json<Value>,
                    chrono::DateTime<chrono::Utc>,
                );
                let rows: Vec<Raw> = sqlx::query_as(
                    "SELECT id, run_id, provider, stream, entity, source_id, reason, record, created_at \
                     FROM dead_letters WHERE tenant_id = $1 AND ($2 IS NULL OR run_id = $2) \
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(tenant.as_str())
                .bind(run_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing dead letters"))?;
                rows.into_iter()
                    .map(|(id, run_id, provider, stream, entity, source_id, reason, record, created_at)| {
                        let corrupt = |what: &str| StoreError::Corrupt { what: format!("dead letter {id}: {what}") };
                        Ok(DeadLetterRow {
                            id,
                            run_id,
                            provider: ProviderId::parse(&provider).map_err(|e| corrupt(&e.to_string()))?,
                            stream,
                            entity: EntityName::parse(&entity).map_err(|e| corrupt(&e.to_string()))?,
                            source_id,
                            reason,
                            record: record.0,
                            created_at,
                        })
                    })
                    .collect()
            }

            pub(super) async fn count_records(
                &self,
                tenant: &TenantId,
                entity: Option<&EntityName>,
            ) -> Result<i64, StoreError> {
                let query = match entity {
                    Some(entity) => {
                        sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE tenant_id = $1 AND entity = $2")
                            .bind(tenant.as_str())
                            .bind(entity.as_str())
                    }
                    None => {
                        sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE tenant_id = $1").bind(tenant.as_str())
                    }
                };
                query.fetch_one(&self.pool).await.map_err(db("counting records"))
            }
        }
    };
}

record_methods!(SqliteStore, sqlx::Sqlite);
record_methods!(PgStore, sqlx::Postgres);

impl SqliteStore {
    /// Numbers the rows a page wrote (those without a change sequence) after `base`, in
    /// key order, through their `rowid`s; returns how many.
    async fn number_rows(
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        tenant: &TenantId,
        base: i64,
    ) -> Result<u64, StoreError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            // Without `INDEXED BY`, the planner reads every record of the tenant through the
            // primary key to save the sort of the page's few rows.
            "SELECT rowid FROM records INDEXED BY records_changes WHERE tenant_id = $1 AND change_seq IS NULL \
             ORDER BY entity, provider, external_id",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(db("reading changed records"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        // The row ids in key order as one JSON array: the n-th gets `base + n + 1`.
        let ids = serde_json::to_string(&rows).unwrap_or_default();
        let done = sqlx::query(
            "UPDATE records SET change_seq = $2 + r.key + 1 FROM json_each($1) AS r WHERE records.rowid = r.value",
        )
        .bind(ids)
        .bind(base)
        .execute(&mut **tx)
        .await
        .map_err(db("numbering changed records"))?;
        Ok(done.rows_affected())
    }
}

/// A page without dead letters as one PostgreSQL statement (its own transaction): one
/// round trip instead of begin, job and hashes, upsert, cursor and position, run
/// counts and commit. Its parts:
/// - `job` locks the page's job row (no row: the tenant has no such job), `fenced` is
///   that row when the lease is the writer's (or the write is not fenced); nothing is
///   written without it;
/// - `existing` reads the stored hashes before the upsert (every part of a statement
///   sees the same snapshot), so `counted` tells new, changed and unchanged apart; one
///   index lookup per record (a lateral join: with `= ANY($4)` the generic plan of the
///   prepared statement filters every record of the entity instead);
/// - `written` are the new and changed records; `seq` advances the tenant's change
///   sequence by their number (its row locked until commit: concurrent writers of one
///   tenant take their numbers one after the other), and only when fenced;
/// - `upsert` writes them, numbered in page order with the numbers `seq` took (a
///   changed record moves to the end of the feed); `moved` moves the cursor and the
///   position; `counted_run` adds the page to its run's row.
const PAGE_STATEMENT: &str = "WITH job AS (SELECT lease_owner FROM jobs WHERE id = $7 AND tenant_id = $1 FOR UPDATE), \
     fenced AS (SELECT 1 FROM job WHERE $8::text IS NULL OR lease_owner = $8), \
     incoming AS (SELECT * FROM unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY \
         AS i(external_id, data, content_hash, ord)), \
     existing AS (SELECT r.* FROM incoming i CROSS JOIN LATERAL (SELECT external_id, content_hash, \
         deleted_at IS NOT NULL AS deleted FROM records WHERE tenant_id = $1 AND entity = $2 AND provider = $3 \
         AND external_id = i.external_id LIMIT 1) r), \
     counted AS (SELECT \
         count(*) FILTER (WHERE e.external_id IS NULL) AS inserted, \
         count(*) FILTER (WHERE e.external_id IS NOT NULL \
             AND (e.deleted OR e.content_hash IS DISTINCT FROM i.content_hash)) AS updated, \
         count(*) FILTER (WHERE e.external_id IS NOT NULL AND NOT e.deleted \
             AND e.content_hash IS NOT DISTINCT FROM i.content_hash) AS unchanged \
         FROM incoming i LEFT JOIN existing e USING (external_id)), \
     written AS (SELECT i.* FROM incoming i LEFT JOIN existing e USING (external_id) \
         WHERE e.external_id IS NULL OR e.deleted OR e.content_hash IS DISTINCT FROM i.content_hash), \
     seq AS (INSERT INTO change_sequences (tenant_id, last_seq) SELECT $1, count(*) FROM written \
         HAVING count(*) > 0 AND EXISTS (SELECT 1 FROM fenced) \
         ON CONFLICT (tenant_id) DO UPDATE SET last_seq = change_sequences.last_seq + excluded.last_seq \
         RETURNING last_seq - (SELECT count(*) FROM written) AS base), \
     upsert AS (INSERT INTO records (tenant_id, entity, provider, external_id, data, content_hash, first_seen, \
         last_synced, change_seq, change_kind, change_run) SELECT $1, $2, $3, w.external_id, w.data::jsonb, \
         w.content_hash, $9, $9, s.base + row_number() OVER (ORDER BY w.ord), 'inserted', $13 \
         FROM written w CROSS JOIN seq s \
         ON CONFLICT (tenant_id, entity, provider, external_id) DO UPDATE SET data = excluded.data, \
         content_hash = excluded.content_hash, last_synced = excluded.last_synced, deleted_at = NULL, \
         change_seq = excluded.change_seq, change_kind = 'updated', change_run = excluded.change_run \
         WHERE records.content_hash IS DISTINCT FROM excluded.content_hash OR records.deleted_at IS NOT NULL), \
     moved AS (UPDATE jobs SET updated_at = $9, cursor = COALESCE($10, cursor), \
         position = CASE WHEN $11 THEN $12 ELSE position END \
         WHERE id = $7 AND tenant_id = $1 AND ($10::text IS NOT NULL OR $11) AND EXISTS (SELECT 1 FROM fenced)), \
     counted_run AS (UPDATE runs SET fetched = runs.fetched + $14, inserted = runs.inserted + c.inserted, \
         updated = runs.updated + c.updated, unchanged = runs.unchanged + c.unchanged, \
         filtered = runs.filtered + $15, dead_lettered = runs.dead_lettered + $16, pages = $17, http_calls = $18, \
         retries = $19, rate_limit_waits = $20, rate_limit_wait_ms = $21, \
         cursor_after = COALESCE($10, runs.cursor_after) FROM counted c \
         WHERE runs.id = $13 AND runs.tenant_id = $1 AND runs.outcome = 'running' AND EXISTS (SELECT 1 FROM fenced)) \
     SELECT (SELECT count(*) FROM job) AS jobs, (SELECT lease_owner FROM job) AS holder, \
         c.inserted, c.updated, c.unchanged FROM counted c";

impl PgStore {
    /// Numbers the rows a page wrote (those without a change sequence) after `base`, in
    /// key order, in one statement; returns how many.
    async fn number_rows(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        tenant: &TenantId,
        base: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE records SET change_seq = $2 + n.rn FROM (SELECT ctid AS rid, \
             row_number() OVER (ORDER BY entity, provider, external_id) AS rn FROM records \
             WHERE tenant_id = $1 AND change_seq IS NULL) AS n WHERE records.ctid = n.rid",
        )
        .bind(tenant.as_str())
        .bind(base)
        .execute(&mut **tx)
        .await
        .map_err(db("numbering changed records"))?;
        Ok(done.rows_affected())
    }

    /// Writes a page without dead letters with [`PAGE_STATEMENT`]; `None` for a page
    /// with dead letters (rare) or of a sweeping stream (`mark_seen`: one more statement
    /// marks its records seen), which goes through the transaction of `write_prepared`.
    async fn write_in_one_statement(
        &self,
        tenant: &TenantId,
        page: &PageWrite<'_>,
        records: &[Prepared<'_>],
    ) -> Result<Option<PageOutcome>, StoreError> {
        if !page.dead_letters.is_empty() || page.mark_seen {
            return Ok(None);
        }
        let ids: Vec<&str> = records.iter().map(|r| r.external_id).collect();
        let data: Vec<&str> = records.iter().map(|r| r.json.as_str()).collect();
        let hashes: Vec<&str> = records.iter().map(|r| r.hash.as_str()).collect();
        let (save_position, position) = match page.position {
            PositionWrite::Keep => (false, None),
            PositionWrite::Save(p) => (true, Some(p)),
            PositionWrite::Clear => (true, None),
        };
        let run = page.run.as_ref();
        let count = |f: fn(&super::types::RunProgress) -> i64| run.map_or(0, f);
        let (jobs, holder, inserted, updated, unchanged): (i64, Option<String>, i64, i64, i64) =
            sqlx::query_as(PAGE_STATEMENT)
                .bind(tenant.as_str())
                .bind(page.entity.as_str())
                .bind(page.provider.as_str())
                .bind(&ids)
                .bind(&data)
                .bind(&hashes)
                .bind(page.job_id)
                .bind(page.lease_owner)
                .bind(now())
                .bind(page.cursor)
                .bind(save_position)
                .bind(position)
                .bind(run.map(|r| r.run_id))
                .bind(count(|r| r.fetched))
                .bind(count(|r| r.filtered))
                .bind(count(|r| r.dead_lettered))
                .bind(count(|r| r.pages))
                .bind(count(|r| r.http_calls))
                .bind(count(|r| r.retries))
                .bind(count(|r| r.rate_limit_waits))
                .bind(count(|r| r.rate_limit_wait_ms))
                .fetch_one(&self.pool)
                .await
                .map_err(db("writing a page (records, cursor, position and run counts)"))?;
        if jobs == 0 {
            return Err(no_job(tenant, page.job_id));
        }
        if let Some(owner) = page.lease_owner
            && holder.as_deref() != Some(owner)
        {
            return Err(StoreError::LeaseLost { job_id: page.job_id });
        }
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Some(PageOutcome { inserted: n(inserted), updated: n(updated), unchanged: n(unchanged) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_collapse_to_the_last_occurrence() {
        let rec = |id: &str, v: i64| RecordInput { external_id: id.into(), data: serde_json::json!({ "v": v }) };
        let page = [rec("a", 1), rec("b", 2), rec("a", 3)];
        let prepared = prepare(&page);
        let got: Vec<_> = prepared.iter().map(|p| (p.external_id, p.json.as_str())).collect();
        assert_eq!(got, vec![("a", r#"{"v":3}"#), ("b", r#"{"v":2}"#)]);
        assert_eq!(prepared[0].hash, super::super::rows::content_hash(&serde_json::json!({"v": 3})));
    }

    #[test]
    fn statements_stay_within_the_bind_limit() {
        for max in [SqliteStore::MAX_BINDS, PgStore::MAX_BINDS, 999] {
            let rows = rows_per_statement(max, BINDS_PER_ROW);
            assert!(rows * BINDS_PER_ROW <= max);
            assert!((rows + 1) * BINDS_PER_ROW > max);
        }
        // 5,000 records never fit one statement.
        assert!(5_000 > rows_per_statement(SqliteStore::MAX_BINDS, BINDS_PER_ROW));
    }
}
