//! Reading records for consumers (`records list`, `records export`): one tenant's records
//! of one entity, filtered (synced since, deleted or not), in a stable order (provider,
//! then external id) and paged by key: a page starts after the last key of the one
//! before, so every page is an index range scan of the primary key, however deep.
//!
//! The SQL is shared by both backends; the optional conditions are left out of the
//! statement rather than disabled by a parameter (`$n IS NULL OR …`), so PostgreSQL's
//! generic plans keep the key range as an index condition.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::QueryBuilder;

use super::Store;
use super::error::{StoreError, db};
use crate::model::{EntityName, RecordRow, TenantId};

/// Records read per statement by [`Store::for_each_record`]: each batch is streamed from
/// the database row by row, and no statement (nor its snapshot) lasts the whole export.
const BATCH: i64 = 10_000;

/// Which of a tenant's records of one entity a read returns.
#[derive(Debug, Clone)]
pub struct RecordFilter {
    pub tenant: TenantId,
    pub entity: EntityName,
    /// Only records synced (stored or changed: `last_synced`) at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only records after this key in the order (provider, external id): the next page.
    pub after: Option<RecordKey>,
    /// Records deleted at the provider too (left out by default).
    pub include_deleted: bool,
}

/// Where a record stands in the order of a read: its provider, then its external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    pub provider: String,
    pub external_id: String,
}

impl RecordKey {
    /// The key of `record`.
    pub fn of(record: &RecordRow) -> Self {
        Self { provider: record.provider.to_string(), external_id: record.external_id.clone() }
    }

    /// The key as an opaque cursor: URL-safe base64 of the JSON array
    /// `[provider, external_id]`.
    pub fn to_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::json!([self.provider, self.external_id]).to_string())
    }

    /// The key a cursor of [`Self::to_cursor`] holds; `None` for anything else.
    pub fn from_cursor(cursor: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
        let (provider, external_id): (String, String) = serde_json::from_slice(&bytes).ok()?;
        Some(Self { provider, external_id })
    }
}

/// Pushes `FROM records WHERE …` for `filter` onto `qb`, starting after `after` (which
/// overrides `filter.after`, for the batches of an export).
fn push_filter<DB>(qb: &mut QueryBuilder<DB>, filter: &RecordFilter, after: Option<&RecordKey>)
where
    DB: sqlx::Database,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> DateTime<Utc>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    qb.push(" FROM records WHERE tenant_id = ").push_bind(filter.tenant.as_str());
    qb.push(" AND entity = ").push_bind(filter.entity.as_str());
    if let Some(since) = filter.since {
        qb.push(" AND last_synced >= ").push_bind(since);
    }
    if !filter.include_deleted {
        qb.push(" AND deleted_at IS NULL");
    }
    if let Some(key) = after {
        // A row value comparison: both backends seek the primary key
        // (tenant_id, entity, provider, external_id) to the key and scan on from there.
        qb.push(" AND (provider, external_id) > (").push_bind(key.provider.as_str());
        qb.push(", ").push_bind(key.external_id.as_str()).push(")");
    }
}

/// The statement of one page: matching records after `after`, in order, up to `limit`.
fn page_query<DB>(filter: &RecordFilter, after: Option<&RecordKey>, limit: i64) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    DB::Arguments: Default,
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> DateTime<Utc>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new(concat!("SELECT ", record_columns!()));
    push_filter(&mut qb, filter, after);
    qb.push(" ORDER BY provider, external_id LIMIT ").push_bind(limit.max(0));
    qb
}

impl Store {
    /// Up to `limit` of the records `filter` selects, by provider then external id. The
    /// next page: the same filter with `after` the key of the last record returned.
    pub async fn read_records(&self, filter: &RecordFilter, limit: i64) -> Result<Vec<RecordRow>, StoreError> {
        on_backend!(self, |s| {
            page_query(filter, filter.after.as_ref(), limit)
                .build_query_as()
                .fetch_all(&s.pool)
                .await
                .map_err(db("reading records"))
        })
    }

    /// How many records `filter` selects, on every page together (its `after` is not
    /// counted out).
    pub async fn count_selected_records(&self, filter: &RecordFilter) -> Result<i64, StoreError> {
        on_backend!(self, |s| {
            let mut qb = QueryBuilder::new("SELECT COUNT(*)");
            push_filter(&mut qb, filter, None);
            qb.build_query_scalar().fetch_one(&s.pool).await.map_err(db("counting records"))
        })
    }

    /// Hands every record `filter` selects (from its `after` on) to `each`, in order,
    /// one at a time; stops at the first error `each` returns. Records are read in
    /// batches of [`BATCH`] by key, each streamed from the database, so memory stays
    /// flat however many there are. Returns how many records `each` took.
    ///
    /// Each batch is its own statement: a record changed during a long export is read
    /// as it is when its batch is read.
    pub async fn for_each_record<E: From<StoreError>>(
        &self,
        filter: &RecordFilter,
        each: impl FnMut(RecordRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        self.for_each_record_in_batches(filter, BATCH, each).await
    }

    /// [`Self::for_each_record`] in batches of `batch` records.
    async fn for_each_record_in_batches<E: From<StoreError>>(
        &self,
        filter: &RecordFilter,
        batch: i64,
        mut each: impl FnMut(RecordRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut after = filter.after.clone();
        let mut total = 0u64;
        loop {
            let mut read = 0i64;
            let mut last = None;
            on_backend!(self, |s| {
                let mut qb = page_query(filter, after.as_ref(), batch);
                let mut rows = qb.build_query_as::<RecordRow>().fetch(&s.pool);
                while let Some(row) = rows.try_next().await.map_err(db("reading records"))? {
                    read += 1;
                    if read == batch {
                        last = Some(RecordKey::of(&row));
                    }
                    each(row)?;
                    total += 1;
                }
            });
            match last {
                Some(key) if read == batch => after = Some(key),
                _ => return Ok(total),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{AuditEntry, Owner, PresetName, ProviderId, StreamName};
    use crate::store::{PageWrite, PositionWrite, RecordInput, TenantState};

    /// A store with `ids` stored as learners of tenant `acme` from `aptem`.
    async fn store_with(ids: &[&str]) -> Store {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        let aptem = ProviderId::parse("aptem").unwrap();
        let state = TenantState {
            id: tenant.clone(),
            name: "Acme".into(),
            subdomain: "acme".into(),
            timezone: "UTC".into(),
            preset: PresetName::parse("aptem").unwrap(),
            preset_revision: "r1".into(),
            preset_snapshot: json!({}),
            overrides: vec![],
            enabled_providers: vec![aptem.clone()],
        };
        let audit = AuditEntry {
            at: Utc::now(),
            actor: "test".into(),
            scope: None,
            outcome: crate::model::AuditOutcome::Ok,
            message: None,
            action: "tenant.create".into(),
            tenant_id: Some(tenant.clone()),
            subject: None,
            details: json!({}),
        };
        store.create_tenant(&state, &audit).await.unwrap();
        let connection = store.get_connection(&tenant, &aptem, Owner::Company).await.unwrap().unwrap();
        let job =
            store.ensure_job(&tenant, connection.id, &StreamName::parse("learners").unwrap(), "1h").await.unwrap();
        let records: Vec<RecordInput> = ids
            .iter()
            .map(|id| RecordInput { external_id: (*id).into(), data: json!({ "external_id": id }) })
            .collect();
        let entity = EntityName::parse("learner").unwrap();
        let page = PageWrite {
            entity: &entity,
            provider: &aptem,
            records: &records,
            job_id: job.id,
            cursor: None,
            lease_owner: None,
            dead_letters: &[],
            position: PositionWrite::Keep,
            run: None,
            mark_seen: false,
        };
        store.write_page(&tenant, &page).await.unwrap();
        store
    }

    fn filter() -> RecordFilter {
        RecordFilter {
            tenant: TenantId::parse("acme").unwrap(),
            entity: EntityName::parse("learner").unwrap(),
            since: None,
            after: None,
            include_deleted: false,
        }
    }

    #[tokio::test]
    async fn batches_visit_every_record_once_in_order() {
        let store = store_with(&["e", "a", "d", "b", "c", "f", "g"]).await;
        let deleted = ["c"];
        let (tenant, entity, aptem) = (filter().tenant, filter().entity, ProviderId::parse("aptem").unwrap());
        store.mark_deleted(&tenant, &entity, &aptem, &deleted, None).await.unwrap();
        for batch in [1, 2, 3, 6, 7, 100] {
            let mut seen = Vec::new();
            let n = store
                .for_each_record_in_batches(&filter(), batch, |r| -> Result<(), StoreError> {
                    seen.push(r.external_id);
                    Ok(())
                })
                .await
                .unwrap();
            assert_eq!(seen, ["a", "b", "d", "e", "f", "g"], "batches of {batch}");
            assert_eq!(n, 6);
            // From a key on, the rest.
            let from_d = RecordFilter {
                after: Some(RecordKey { provider: "aptem".into(), external_id: "d".into() }),
                ..filter()
            };
            let mut rest = Vec::new();
            store
                .for_each_record_in_batches(&from_d, batch, |r| -> Result<(), StoreError> {
                    rest.push(r.external_id);
                    Ok(())
                })
                .await
                .unwrap();
            assert_eq!(rest, ["e", "f", "g"], "batches of {batch}");
        }
        // An error from the consumer stops the read.
        let mut taken = 0;
        let stopped = store
            .for_each_record_in_batches(&filter(), 2, |_| {
                taken += 1;
                if taken == 3 { Err(StoreError::Invalid { what: "enough".into() }) } else { Ok(()) }
            })
            .await;
        assert!(matches!(stopped, Err(StoreError::Invalid { .. })));
        assert_eq!(taken, 3);
        store.close().await;
    }

    #[test]
    fn cursors_round_trip_and_reject_anything_else() {
        let key = RecordKey { provider: "hubspot".into(), external_id: "a,b \"c\" é/+=".into() };
        let cursor = key.to_cursor();
        assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{cursor}");
        assert_eq!(RecordKey::from_cursor(&cursor), Some(key));
        assert_eq!(RecordKey::from_cursor("not a cursor"), None);
        assert_eq!(RecordKey::from_cursor(&URL_SAFE_NO_PAD.encode("[1, 2]")), None);
        assert_eq!(RecordKey::from_cursor(""), None);
    }
}
