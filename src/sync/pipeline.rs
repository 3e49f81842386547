//! The page pipeline of one run: read a page → map it → write it (records, dead
//! letters, cursor, resumable position and the run's counters in one transaction),
//! while the next page is read. It stops at a page boundary when the run is cancelled
//! or reaches its bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{RunFailure, StageTimes, SyncRequest, copy_http};
use crate::engine::resume::PositionUpdate;
use crate::engine::{StreamReader, Tombstone};
use crate::http::shape::{Projection, RawBody};
use crate::http::template::{lookup_path, scalar_text};
use crate::http::{CallStats, Session};
use crate::mapping::{CompiledMapping, MapResult};
use crate::model::{EntityName, PageOutcome, ProviderId, RunStats, TenantId};
use crate::store::{DeadLetterInput, PageWrite, PositionWrite, RecordInput, RunProgress, Store};

/// The parts of each record `mapping` reads: its sources and source filters.
pub(super) fn projection(mapping: &CompiledMapping) -> Projection {
    let mut projection = Projection::default();
    for path in mapping.source_paths() {
        projection.keep(path);
    }
    projection
}

/// How much one run may read before it ends `partial` (the next run continues).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    pub max_pages: u64,
    pub max_duration: Duration,
}

impl Bounds {
    fn reached(&self, pages: u64, since: Instant) -> bool {
        pages >= self.max_pages || since.elapsed() >= self.max_duration
    }
}

/// What every page of one run shares.
pub(super) struct PageLoop<'r> {
    pub store: &'r Store,
    pub stages: &'r Arc<StageTimes>,
    pub req: &'r SyncRequest,
    pub run_id: uuid::Uuid,
    pub job_id: i64,
    pub mapping: &'r CompiledMapping,
    pub entity: &'r EntityName,
    /// Where the provider's record id is (dead letters name it).
    pub primary_key: &'r str,
    pub bounds: Bounds,
    /// The stream lists deleted records: their keys mark the stored ones deleted.
    pub deletions: bool,
    /// The stream sweeps: every page marks its records seen.
    pub mark_seen: bool,
}

impl PageLoop<'_> {
    /// Reads, maps and writes every page of `reader`. Pages are pipelined: while pages
    /// are written (one after another, in order), the next one is read (both wait mostly
    /// on I/O: the provider and the database). A failed write discards the pages after
    /// it; cancellation stops the read ahead at once.
    pub async fn run(
        &self,
        reader: &mut StreamReader,
        session: &mut Session<'_>,
        stats: &mut RunStats,
        progress: &mut (dyn FnMut(uuid::Uuid, &RunStats) + Send),
    ) -> Result<(), RunFailure> {
        let req = self.req;
        let cancelled = || async {
            match &req.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let mut consumed = 0u64;
        let mut at_boundary = false;
        let run_started = Instant::now();
        let before = self.stages.snapshot();
        let result: Result<(), RunFailure> = async {
            let started = Instant::now();
            let mut next = reader.next_page(session).await.map_err(RunFailure::from);
            StageTimes::add(&self.stages.fetch_ns, started);
            // The page whose write is under way, and the signal its write sends when it
            // ends (committed or not), which the next page's write waits for.
            let mut in_flight: Option<InFlight> = None;
            let mut after: Option<oneshot::Receiver<bool>> = None;
            loop {
                let page = match next {
                    Ok(Some(page)) => page,
                    end => {
                        // The last page (or the one before a failed read) is still being
                        // written: it counts before the run ends either way.
                        if let Some(last) = in_flight.take() {
                            let (done, outcome) = last.finish().await;
                            if let Err(e) = settle(stats, &mut consumed, &done, outcome) {
                                at_boundary = true;
                                return Err(e);
                            }
                            progress(self.run_id, stats);
                        }
                        end?;
                        break;
                    }
                };
                if let Some(total) = page.total {
                    stats.total = i64::try_from(total).ok();
                }
                let calls_so_far = session.stats;
                let (owned, done) = self.map_page(page, reader.pages, calls_so_far);
                let pass_complete = owned.position == PositionUpdate::Clear;
                // The write is a task of its own, so another worker thread can drive it
                // (and serialize the page) while this task reads and parses the next
                // pages. Writes stay in page order: each waits for the previous page's
                // write to end and is skipped if that one did not commit. If the run is
                // dropped meanwhile, each write still commits or rolls back as a whole
                // (records, cursor, position and counts together, fenced on the lease).
                let (signal, ended) = oneshot::channel();
                let task = tokio::spawn(write_page(
                    self.store.clone(),
                    req.tenant.clone(),
                    owned,
                    self.stages.clone(),
                    after.replace(ended),
                    signal,
                ));
                // A run that reached its bounds reads no further: the position committed
                // with this page is where the next run continues.
                let bounded = !pass_complete && self.bounds.reached(reader.pages, run_started);
                // While this page's write waits for the previous page's, the next page
                // is read: the reads never wait for a write to start, only to end.
                let previous = in_flight.replace(InFlight { task, done });
                let write = async {
                    match previous {
                        Some(p) => Some(p.finish().await),
                        None => None,
                    }
                };
                let read_ahead = async {
                    if bounded {
                        return None;
                    }
                    let started = Instant::now();
                    let page = tokio::select! {
                        page = reader.next_page(session) => Some(page.map_err(RunFailure::from)),
                        () = cancelled() => None,
                    };
                    StageTimes::add(&self.stages.fetch_ns, started);
                    page
                };
                let (written, read) = tokio::join!(write, read_ahead);
                if let Some((done, outcome)) = written {
                    if let Err(e) = settle(stats, &mut consumed, &done, outcome) {
                        // This page's write sees that the previous one failed and skips.
                        if let Some(skipped) = in_flight.take() {
                            let _ = skipped.finish().await;
                        }
                        at_boundary = true;
                        return Err(e);
                    }
                    progress(self.run_id, stats);
                }
                let cancel = req.cancel.as_ref().is_some_and(CancellationToken::is_cancelled);
                if cancel || bounded {
                    // The page being written commits (or not) before the run stops.
                    if let Some(last) = in_flight.take() {
                        let (done, outcome) = last.finish().await;
                        let settled = settle(stats, &mut consumed, &done, outcome);
                        at_boundary = true;
                        settled?;
                        progress(self.run_id, stats);
                    }
                    at_boundary = true;
                    return Err(if cancel { RunFailure::cancelled() } else { RunFailure::partial(&self.bounds) });
                }
                // `None` only when cancelled or bounded, which returned above.
                next = read.unwrap_or(Ok(None));
            }
            Ok(())
        }
        .await;
        // A run stopped by a failed write, cancellation or its bounds counts the pages
        // it processed, not the pages read ahead.
        stats.pages = if at_boundary { consumed } else { reader.pages } as i64;
        // Where the run's time went (the stages overlap: reads go on while pages are
        // written), for whoever tunes a connector or the store.
        let after = self.stages.snapshot();
        tracing::debug!(
            wall_ms = run_started.elapsed().as_millis() as u64,
            read_ms = after.fetch.saturating_sub(before.fetch).as_millis() as u64,
            map_ms = after.map.saturating_sub(before.map).as_millis() as u64,
            store_ms = after.store.saturating_sub(before.store).as_millis() as u64,
            "page stages"
        );
        copy_http(stats, &session.stats);
        result
    }

    /// Maps a page's records; returns the page to write and what it adds to the run.
    fn map_page(&self, page: crate::engine::Page, pages: u64, calls: CallStats) -> (OwnedPage, PageDone) {
        let started = Instant::now();
        let mut records = Vec::with_capacity(page.records.len());
        let mut dead = Vec::new();
        let mut filtered = 0usize;
        // The records as the provider sent them, read from the body only when one of
        // them is dead-lettered (the mapped ones may hold only the parts mapping reads).
        let mut sent: Option<Option<Vec<&RawValue>>> = None;
        for (i, raw) in page.records.iter().enumerate() {
            match self.mapping.apply(raw) {
                // A deletion needs only the key.
                MapResult::Mapped(m) if self.deletions => {
                    records.push(RecordInput { external_id: m.external_id, data: serde_json::Value::Null })
                }
                MapResult::Mapped(m) => records.push(RecordInput { external_id: m.external_id, data: m.data }),
                MapResult::Filtered { .. } => filtered += 1,
                MapResult::DeadLetter { reason } => {
                    let sent = sent.get_or_insert_with(|| page.body.as_ref().and_then(RawBody::records));
                    let record = match sent.as_ref().and_then(|r| r.get(i)) {
                        Some(r) => (*r).to_owned(),
                        None => serde_json::value::to_raw_value(raw).unwrap_or_else(|_| RawValue::NULL.to_owned()),
                    };
                    dead.push(DeadLetterInput {
                        run_id: Some(self.run_id),
                        stream: self.req.stream.to_string(),
                        source_id: scalar_text(lookup_path(raw, self.primary_key)),
                        reason,
                        record,
                    });
                }
            }
        }
        // Items that say their record was deleted: the key is the item's (a declared
        // pointer) or comes through the mapping, as a deletion stream's does.
        let mut tombstones = Vec::with_capacity(page.tombstones.len());
        for gone in &page.tombstones {
            match gone {
                Tombstone::Key(key) => tombstones.push(key.clone()),
                Tombstone::Item(item) => match self.mapping.key_of(item) {
                    Ok(key) => tombstones.push(key),
                    Err(reason) => dead.push(DeadLetterInput {
                        run_id: Some(self.run_id),
                        stream: self.req.stream.to_string(),
                        source_id: scalar_text(lookup_path(item, self.primary_key)),
                        reason: format!("deletion item: {reason}"),
                        record: serde_json::value::to_raw_value(item).unwrap_or_else(|_| RawValue::NULL.to_owned()),
                    }),
                },
            }
        }
        StageTimes::add(&self.stages.map_ns, started);
        let done = PageDone {
            fetched: page.records.len() + page.tombstones.len(),
            filtered,
            dead_lettered: dead.len(),
            checkpoint: page.checkpoint.clone(),
            pages,
            calls,
        };
        let run = RunProgress {
            run_id: self.run_id,
            fetched: done.fetched as i64,
            filtered: filtered as i64,
            dead_lettered: done.dead_lettered as i64,
            pages: pages as i64,
            http_calls: calls.http_calls as i64,
            retries: calls.retries as i64,
            rate_limit_waits: calls.rate_limit_waits as i64,
            rate_limit_wait_ms: calls.rate_limit_wait_ms as i64,
        };
        let owned = OwnedPage {
            entity: self.entity.clone(),
            provider: self.req.provider.clone(),
            records,
            job_id: self.job_id,
            cursor: page.checkpoint,
            position: page.position,
            run,
            lease_owner: self.req.lease_owner.clone(),
            dead_letters: dead,
            deletions: self.deletions,
            mark_seen: self.mark_seen,
            tombstones,
        };
        (owned, done)
    }
}

/// What a page brings to the run's statistics once its write has ended.
struct PageDone {
    fetched: usize,
    filtered: usize,
    dead_lettered: usize,
    checkpoint: Option<String>,
    /// Pages read up to and including this one.
    pages: u64,
    /// The HTTP statistics when this page had been read.
    calls: CallStats,
}

/// A page whose write task is under way.
struct InFlight {
    task: tokio::task::JoinHandle<Result<Option<PageOutcome>, RunFailure>>,
    done: PageDone,
}

impl InFlight {
    /// Waits for the write to end.
    async fn finish(self) -> (PageDone, Result<Option<PageOutcome>, RunFailure>) {
        let outcome =
            self.task.await.unwrap_or_else(|e| Err(RunFailure::plain(format!("the page write ended abnormally: {e}"))));
        (self.done, outcome)
    }
}

/// Adds a written page to the run's statistics (`Ok(None)`: the write was skipped,
/// nothing to add); a failed write is the run's failure.
fn settle(
    stats: &mut RunStats,
    consumed: &mut u64,
    done: &PageDone,
    outcome: Result<Option<PageOutcome>, RunFailure>,
) -> Result<(), RunFailure> {
    let outcome = match outcome {
        Ok(Some(outcome)) => outcome,
        Ok(None) => return Ok(()),
        Err(e) => {
            // The page whose write failed counts as processed.
            *consumed = done.pages;
            return Err(e);
        }
    };
    *consumed = done.pages;
    stats.fetched += done.fetched as i64;
    stats.inserted += outcome.inserted as i64;
    stats.updated += outcome.updated as i64;
    stats.unchanged += outcome.unchanged as i64;
    stats.filtered += done.filtered as i64;
    stats.dead_lettered += done.dead_lettered as i64;
    stats.pages = done.pages as i64;
    if let Some(c) = &done.checkpoint {
        stats.cursor_after = Some(c.clone());
    }
    copy_http(stats, &done.calls);
    Ok(())
}

/// A page to write, owned by the task that writes it.
struct OwnedPage {
    entity: EntityName,
    provider: ProviderId,
    records: Vec<RecordInput>,
    job_id: i64,
    cursor: Option<String>,
    position: PositionUpdate,
    run: RunProgress,
    lease_owner: Option<String>,
    dead_letters: Vec<DeadLetterInput>,
    /// The records' keys mark stored records deleted.
    deletions: bool,
    /// The page's records are marked seen (a stream that sweeps).
    mark_seen: bool,
    /// Keys of records the page says were deleted.
    tombstones: Vec<String>,
}

/// Writes one page (records, or the deletions of a deletion stream, dead letters,
/// cursor, position and run counters in one transaction) once the previous page's write
/// (`after`) has committed; `Ok(None)` if it did not, and nothing is written. Sends on
/// `ended` whether this page committed.
async fn write_page(
    store: Store,
    tenant: TenantId,
    page: OwnedPage,
    stages: Arc<StageTimes>,
    after: Option<oneshot::Receiver<bool>>,
    ended: oneshot::Sender<bool>,
) -> Result<Option<PageOutcome>, RunFailure> {
    let started = Instant::now();
    let write = PageWrite {
        entity: &page.entity,
        provider: &page.provider,
        records: &page.records,
        job_id: page.job_id,
        cursor: page.cursor.as_deref(),
        lease_owner: page.lease_owner.as_deref(),
        dead_letters: &page.dead_letters,
        position: match &page.position {
            PositionUpdate::Keep => PositionWrite::Keep,
            PositionUpdate::Save(p) => PositionWrite::Save(p),
            PositionUpdate::Clear => PositionWrite::Clear,
        },
        run: Some(page.run),
        mark_seen: page.mark_seen,
    };
    // The page is serialized and hashed while the previous page's write is under way;
    // the time spent waiting for it is not this page's store time.
    let waited = AtomicU64::new(0);
    let ready = async {
        let Some(previous) = after else { return true };
        let since = Instant::now();
        let committed = previous.await.unwrap_or(false);
        StageTimes::add(&waited, since);
        committed
    };
    let outcome = if page.deletions {
        store.write_deletions_when(&tenant, &write, ready).await
    } else if !page.tombstones.is_empty() {
        store.write_page_with_tombstones_when(&tenant, &write, &page.tombstones, ready).await
    } else {
        store.write_page_when(&tenant, &write, ready).await
    };
    let outcome = outcome.map_err(RunFailure::from_store);
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    stages.store_ns.fetch_add(ns.saturating_sub(waited.load(Ordering::Relaxed)), Ordering::Relaxed);
    let _ = ended.send(matches!(outcome, Ok(Some(_))));
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::config::{BUILTIN_ENTITIES, Diagnostics, Entities, Manifests, Source};
    use crate::http::shape::{BodyShape, parse_body};

    /// Every mapping of every built-in connector manifest, compiled as a run does.
    fn shipped() -> &'static [CompiledMapping] {
        static SHIPPED: std::sync::OnceLock<Vec<CompiledMapping>> = std::sync::OnceLock::new();
        SHIPPED.get_or_init(load_shipped)
    }

    fn load_shipped() -> Vec<CompiledMapping> {
        let mut diag = Diagnostics::default();
        let entities = Entities::load(&Source::builtin("config/entities.toml", BUILTIN_ENTITIES), &mut diag);
        let manifests = Manifests::load(None, &mut diag);
        assert!(diag.is_empty(), "{diag:?}");
        let mut out = Vec::new();
        for m in manifests.iter() {
            for (entity, fields) in &m.mappings {
                let def = entities.get(entity).unwrap_or_else(|| panic!("{}: no entity `{entity}`", m.name));
                let compiled = CompiledMapping::compile(def, fields, &Default::default(), &Default::default());
                out.push(compiled.unwrap_or_else(|e| panic!("{}: {e}", m.name)));
            }
        }
        assert!(out.len() >= 10, "only {} shipped mappings", out.len());
        out
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e9..1e9f64).prop_map(Value::from),
            "[ -~]{0,12}".prop_map(Value::from),
            Just(json!("2024-03-01T10:52:52.688Z")),
            Just(json!("2024-03-01")),
            Just(json!([{"id": 1, "name": "a b"}, "x"])),
            Just(json!({"id": "7", "value": "v", "name": "n"})),
        ]
    }

    /// Sets `value` at `path` in `record`, making objects (or arrays, for numeric steps)
    /// on the way; what is already there may be replaced.
    fn set(record: &mut Value, path: &[&str], value: Value) {
        let Some((first, rest)) = path.split_first() else {
            *record = value;
            return;
        };
        let slot = match (first.parse::<usize>(), &mut *record) {
            (Ok(i), Value::Array(a)) => {
                a.resize(a.len().max(i + 1), json!("pad"));
                &mut a[i]
            }
            (Ok(i), other) if !other.is_object() => {
                *other = Value::Array(vec![json!("pad"); i + 1]);
                &mut other[i]
            }
            (_, other) => {
                if !other.is_object() {
                    *other = json!({});
                }
                other.as_object_mut().unwrap().entry(first.to_string()).or_insert(Value::Null)
            }
        };
        set(slot, rest, value);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// For every shipped mapping, a record read through the run's projection maps
        /// to exactly what the record read whole maps to (fields, key, dead letters,
        /// filters), whatever the record holds at and beside the mapped paths.
        #[test]
        fn projected_records_map_as_whole_ones(
            values in prop::collection::vec(leaf(), 64),
            noise in prop::collection::btree_map("[a-z]{1,6}", leaf(), 0..6),
            drop in prop::collection::vec(any::<bool>(), 64),
        ) {
            for mapping in shipped() {
                let paths = mapping.source_paths();
                let mut record = Value::Object(noise.clone().into_iter().collect());
                for (i, path) in paths.iter().enumerate() {
                    if !drop[i % drop.len()] {
                        set(&mut record, path, values[i % values.len()].clone());
                    }
                }
                let body = json!({"next": "t", "records": [record.clone(), noise.clone()]});
                let shape = BodyShape::new("/records", Arc::new(projection(mapping)));
                let parsed = parse_body(body.to_string().as_bytes(), Some(&shape)).unwrap();
                let whole = [record, Value::Object(noise.clone().into_iter().collect())];
                for (i, w) in whole.iter().enumerate() {
                    prop_assert_eq!(mapping.apply(&parsed["records"][i]), mapping.apply(w), "{}", mapping.entity());
                }
            }
        }
    }
}
