//! The generic, manifest-driven stream reader: builds each request from the stream's
//! templates, walks its pagination, reads incrementally from a cursor, restarts a
//! capped search window, reads child streams once per parent record, and guards
//! against cursors or pages that repeat. It yields one page of raw records at a time
//! with the cursor checkpoint to commit with that page; it never holds a stream.

pub mod cursor;
pub mod resume;
mod walk;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use self::cursor::CursorValue;
use self::resume::{ParentPoint, PositionUpdate, SavedPosition};
pub use self::walk::Tombstone;
use self::walk::Walk;
use crate::config::RequestSpec;
use crate::config::{Conditional, CursorFormat, IncrementalSpec, Manifest, ResumeMode, StreamSpec};
use crate::http::shape::{Projection, RawBody};
use crate::http::template::{self, Vars};
use crate::http::{HttpError, Session};
use crate::model::StreamName;

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("stream `{stream}`: the API returned the cursor `{cursor}` a second time; stopping instead of looping")]
    StalledCursor { stream: String, cursor: String },
    #[error("stream `{stream}`: page {page} repeats the previous page; stopping instead of looping")]
    RepeatedPage { stream: String, page: u64 },
    #[error("stream `{stream}`: more than {max} pages; stopping (raise `max_pages` if this is expected)")]
    PageLimit { stream: String, max: u64 },
    #[error("stream `{stream}`: {message}")]
    BadResponse { stream: String, message: String },
    #[error(
        "stream `{stream}`: more than {cap} records share the cursor value {cursor}; the search window cannot advance"
    )]
    WindowStuck { stream: String, cap: u64, cursor: String },
    #[error("unknown stream `{0}`")]
    UnknownStream(String),
}

impl From<template::MissingVariable> for EngineError {
    fn from(e: template::MissingVariable) -> Self {
        Self::Http(HttpError::Template(e))
    }
}

/// One page of raw records.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Value>,
    /// The cursor state to commit together with this page, if it moved.
    pub checkpoint: Option<String>,
    /// The number of records the whole read returns, as the API reports it (not for
    /// child streams, whose totals are per parent).
    pub total: Option<u64>,
    /// The resumable position to commit together with this page.
    pub position: PositionUpdate,
    /// The body as the provider sent it: its records whole, where `records` may hold
    /// only the parts the run reads ([`StreamReader::read_only`]).
    pub body: Option<RawBody>,
    /// Items of the page that say their record was deleted (`tombstone`).
    pub tombstones: Vec<Tombstone>,
}

/// Where an incremental stream stands: one cursor, or one per parent record.
#[derive(Debug, Clone, PartialEq)]
enum CursorState {
    Single(Option<CursorValue>),
    PerParent(BTreeMap<String, CursorValue>),
}

impl CursorState {
    /// Whether no cursor is held: a pass from this state reads everything.
    fn is_empty(&self) -> bool {
        match self {
            Self::Single(c) => c.is_none(),
            Self::PerParent(m) => m.is_empty(),
        }
    }

    /// Forgets every cursor (the pass reads in full).
    fn clear(&mut self) {
        match self {
            Self::Single(c) => *c = None,
            Self::PerParent(m) => m.clear(),
        }
    }
}

/// The start of a pass begun now, at the store's precision (microseconds).
fn pass_start() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Pages of pages before the guard stops a walk, when the manifest sets no limit.
pub const DEFAULT_MAX_PAGES: u64 = 1_000_000;

/// Reads one stream of one connection.
pub struct StreamReader {
    name: StreamName,
    spec: StreamSpec,
    parent_spec: Option<StreamSpec>,
    /// The parent stream's own parent, when the parent is a child stream.
    grandparent_spec: Option<StreamSpec>,
    incremental: Option<IncrementalSpec>,
    base_url: String,
    headers: BTreeMap<String, String>,
    vars: BTreeMap<String, String>,
    state: CursorState,
    /// Parent records still to visit (child streams).
    parents: Option<VecDeque<Value>>,
    walk: Option<Walk>,
    started: bool,
    done: bool,
    pub pages: u64,
    mode: ResumeMode,
    ttl_secs: Option<u64>,
    /// The pass under way (a new one, or the one a saved position continues).
    pass: String,
    /// The saved position still to be applied (when the first walk starts).
    resume: Option<SavedPosition>,
    /// Whether the store holds a position of this job (loaded or saved since), which
    /// the end of the pass clears.
    position_live: bool,
    /// What the run row should say about how the pass began (resumed, restarted).
    pub notes: Vec<String>,
    /// The parts of each record the run reads; `None`: records are read whole.
    projection: Option<Arc<Projection>>,
    /// Whether the pass reads the whole stream (no incremental cursor).
    full: bool,
    /// A full pass is due ([`Self::read_in_full`]): a saved position of an incremental
    /// pass is discarded.
    full_requested: bool,
    /// When the pass began (kept in its positions).
    started_at: chrono::DateTime<chrono::Utc>,
    /// Conditional requests: the validators kept per walk (`""` for a stream without a
    /// parent, else the parent record's key).
    conditional: Option<Conditional>,
    validators: BTreeMap<String, String>,
    /// Walks answered `304 Not Modified` in this run.
    pub not_modified: u64,
    /// Records a client-side incremental read dropped (not newer than the cursor).
    pub dropped: u64,
    /// Stored states the API refused as expired in this run (per parent in a child
    /// stream).
    pub states_expired: u64,
}

/// The stored state of a stream with conditional requests: its cursor state and the
/// validators of its walks.
#[derive(serde::Serialize, serde::Deserialize)]
struct ConditionalState {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    validators: BTreeMap<String, String>,
}

impl StreamReader {
    /// A reader of `stream`. `vars` holds the tenant's variables (subdomain, site…);
    /// `cursor` is the stored job cursor (ignored when `full_refresh`).
    pub fn new(
        manifest: &Manifest,
        stream: &StreamName,
        base_url: &str,
        vars: BTreeMap<String, String>,
        cursor: Option<&str>,
        full_refresh: bool,
    ) -> Result<Self, EngineError> {
        let spec = manifest.streams.get(stream).ok_or_else(|| EngineError::UnknownStream(stream.to_string()))?.clone();
        let parent_spec = match &spec.parent {
            Some(p) => Some(manifest.streams.get(p).ok_or_else(|| EngineError::UnknownStream(p.to_string()))?.clone()),
            None => None,
        };
        let grandparent_spec = match parent_spec.as_ref().and_then(|p| p.parent.as_ref()) {
            Some(g) => Some(manifest.streams.get(g).ok_or_else(|| EngineError::UnknownStream(g.to_string()))?.clone()),
            None => None,
        };
        let incremental = spec.incremental.clone();
        let mode = spec.resume_mode();
        let ttl_secs = spec.position_ttl();
        let conditional = spec.conditional;
        let mut stored = if full_refresh { None } else { cursor };
        let mut validators = BTreeMap::new();
        let conditional_state = stored
            .filter(|_| spec.conditional.is_some())
            .and_then(|c| serde_json::from_str::<ConditionalState>(c).ok());
        if let Some(c) = &conditional_state {
            validators.clone_from(&c.validators);
            stored = c.cursor.as_deref();
        }
        // A state from the response is kept as opaque text, like a raw cursor.
        let format = incremental.as_ref().map(|i| i.cursor_format).or(spec.state.as_ref().map(|_| CursorFormat::Raw));
        let state = match (format, parent_spec.is_some()) {
            (Some(format), true) => {
                let map: BTreeMap<String, String> =
                    stored.and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
                CursorState::PerParent(
                    map.into_iter().filter_map(|(k, v)| Some((k, CursorValue::from_stored(&v, format)?))).collect(),
                )
            }
            (Some(format), false) => CursorState::Single(stored.and_then(|c| CursorValue::from_stored(c, format))),
            (None, _) => CursorState::Single(None),
        };
        let full = state.is_empty();
        Ok(Self {
            name: stream.clone(),
            spec,
            parent_spec,
            grandparent_spec,
            incremental,
            base_url: base_url.to_owned(),
            headers: manifest.headers.clone(),
            vars,
            state,
            parents: None,
            walk: None,
            started: false,
            done: false,
            pages: 0,
            mode,
            ttl_secs,
            pass: uuid::Uuid::now_v7().to_string(),
            resume: None,
            position_live: false,
            notes: Vec::new(),
            projection: None,
            full,
            full_requested: false,
            started_at: pass_start(),
            conditional,
            validators,
            not_modified: 0,
            dropped: 0,
            states_expired: 0,
        })
    }

    /// Reads only `projection`'s parts of each record (and the primary key and cursor
    /// the reader itself needs) instead of every record whole: the rest of each record
    /// is scanned but never built. Parent records of a child stream are read whole.
    pub fn read_only(&mut self, mut projection: Projection) {
        // Tombstones and wrapped records are read from the whole item.
        if self.spec.tombstone.is_some() || self.spec.state.as_ref().is_some_and(|s| s.record.is_some()) {
            return;
        }
        projection.keep_path(&self.spec.primary_key);
        if let Some(inc) = &self.incremental {
            projection.keep_path(&inc.cursor_field);
        }
        self.projection = Some(Arc::new(projection));
    }

    /// Reads the whole stream, ignoring the stored cursor (a full pass is due): unlike
    /// `full_refresh`, a saved position of a full pass under way is continued; one of an
    /// incremental pass is discarded ([`Self::resume_from`]). Call before `resume_from`.
    pub fn read_in_full(&mut self) {
        self.state.clear();
        self.full = true;
        self.full_requested = true;
    }

    /// When the pass began, if it reads the whole stream (it began without a cursor, or
    /// continues a saved position of such a pass): `None` for an incremental pass.
    pub fn full_pass_started(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.full.then_some(self.started_at)
    }

    /// Continues the pass a stored position (`stored`, the job's) belongs to, unless
    /// `full_refresh`, the stream does not resume by position, or the position expired
    /// (`now` is the time to judge that by); each case leaves a note. Any stored position
    /// is replaced by this run's or cleared when the pass completes.
    pub fn resume_from(&mut self, stored: Option<&str>, full_refresh: bool, now: chrono::DateTime<chrono::Utc>) {
        let Some(text) = stored else { return };
        self.position_live = true;
        if full_refresh {
            self.notes.push("--full-refresh: the saved position of the previous pass was discarded".into());
            return;
        }
        if self.mode != ResumeMode::Position {
            return;
        }
        let Some(saved) = SavedPosition::parse(text) else {
            self.notes.push("the saved position could not be read; the pass restarted from the beginning".into());
            return;
        };
        let at = saved.saved_at.format("%Y-%m-%dT%H:%M:%SZ");
        if saved.expired(self.ttl_secs, now) {
            self.notes.push(format!(
                "the saved position of pass {} (saved {at}) expired after position_ttl_secs = {}; the pass \
                 restarted from the beginning",
                saved.pass,
                self.ttl_secs.unwrap_or_default()
            ));
            return;
        }
        let mut place = saved.walk.as_ref().map(|w| w.next.describe()).unwrap_or_else(|| "the next parent".into());
        if let Some(p) = &saved.parent {
            place = format!("{place} of parent {}", p.key);
        }
        if self.full_requested && !saved.full {
            self.notes.push(format!(
                "a full pass is due: the saved position of incremental pass {} (saved {at}) was discarded",
                saved.pass
            ));
            return;
        }
        self.notes.push(format!("resumed pass {} at {place} (saved {at})", saved.pass));
        self.pass = saved.pass.clone();
        // A full pass goes on reading in full, and keeps the time it began (a position
        // that does not say when its pass began cannot vouch for a sweep).
        match (saved.full, saved.started_at) {
            (true, Some(started)) => {
                self.state.clear();
                self.full = true;
                self.started_at = started;
            }
            (true, None) => {
                self.state.clear();
                self.full = false;
            }
            (false, started) => {
                self.full = false;
                self.started_at = started.unwrap_or(self.started_at);
            }
        }
        self.resume = Some(saved);
    }

    /// The pass this reader reads.
    pub fn pass(&self) -> &str {
        &self.pass
    }

    fn restart_pass(&mut self, why: String) {
        self.notes.push(format!("{why}; the pass restarted from the beginning"));
        self.pass = uuid::Uuid::now_v7().to_string();
        self.started_at = pass_start();
    }

    /// The position update to commit with the page just read: the position after it
    /// while the pass goes on, a clear once it is complete.
    fn position_after(&mut self, walk: Option<&Walk>, parent_key: Option<String>, stream_done: bool) -> PositionUpdate {
        if stream_done {
            if self.position_live {
                self.position_live = false;
                return PositionUpdate::Clear;
            }
            return PositionUpdate::Keep;
        }
        if self.mode != ResumeMode::Position {
            return PositionUpdate::Keep;
        }
        let saved = SavedPosition {
            pass: self.pass.clone(),
            saved_at: chrono::Utc::now(),
            walk: walk.map(Walk::point),
            parent: parent_key.map(|key| ParentPoint { key, done: walk.is_none() }),
            full: self.full,
            started_at: Some(self.started_at),
        };
        match serde_json::to_string(&saved) {
            Ok(text) => {
                self.position_live = true;
                PositionUpdate::Save(text)
            }
            Err(_) => PositionUpdate::Keep,
        }
    }

    /// The stored form of the current cursor state (with the validators, for a stream
    /// with conditional requests).
    pub fn checkpoint(&self) -> Option<String> {
        let cursor = self.cursor_checkpoint();
        if self.conditional.is_none() || self.validators.is_empty() {
            return cursor;
        }
        serde_json::to_string(&ConditionalState { cursor, validators: self.validators.clone() }).ok()
    }

    fn cursor_checkpoint(&self) -> Option<String> {
        match &self.state {
            CursorState::Single(c) => c.as_ref().map(CursorValue::stored),
            CursorState::PerParent(m) if m.is_empty() => None,
            CursorState::PerParent(m) => {
                let map: BTreeMap<&String, String> = m.iter().map(|(k, v)| (k, v.stored())).collect();
                serde_json::to_string(&map).ok()
            }
        }
    }

    fn vars_for(&self, session: &Session<'_>) -> Vars<'static> {
        let mut vars = Vars::default();
        for (k, v) in self.vars.iter().chain(session.auth.provided.iter()) {
            vars.set(k, v.clone());
        }
        vars
    }

    /// The next page, or `None` at the end of the stream.
    pub async fn next_page(&mut self, session: &mut Session<'_>) -> Result<Option<Page>, EngineError> {
        loop {
            if self.done {
                return Ok(None);
            }
            // Authenticate first: the base URL may need what the token response provides.
            let mut vars = self.vars_for(session);
            // Token URLs may use `{base_url}` when it does not itself need the token.
            if let Ok(base) = vars.render(&self.base_url) {
                vars.set("base_url", base);
            }
            session.auth.ensure(&session.token_client, &vars, session.sink).await?;
            let vars = self.vars_for(session);
            let base_url = vars.render(&self.base_url)?;
            let mut vars = vars.with("base_url", base_url.clone());

            if self.walk.is_none() && !self.start_next_walk(session, &mut vars, &base_url).await? {
                self.done = true;
                self.summarize();
                // A position left from before (or of a pass that ended on an empty walk)
                // is cleared with a last, empty page.
                if self.position_live {
                    self.position_live = false;
                    return Ok(Some(Page {
                        records: Vec::new(),
                        checkpoint: None,
                        position: PositionUpdate::Clear,
                        total: None,
                        body: None,
                        tombstones: Vec::new(),
                    }));
                }
                return Ok(None);
            }
            let Some(walk) = self.walk.as_mut() else {
                continue;
            };
            let result = match walk
                .next(session, &mut vars, &base_url, &self.headers, &self.name, self.projection.as_ref())
                .await
            {
                Err(EngineError::Http(HttpError::StateExpired { status, message, body, .. })) if walk.from_state => {
                    let parent = walk.parent_key.clone();
                    let record = walk.parent_record();
                    let fresh =
                        self.spec.state.as_ref().and_then(|st| {
                            body.as_ref()?.pointer(&st.from).and_then(|v| template::scalar_text(Some(v)))
                        });
                    self.walk = None;
                    self.state_expired(status, &message, parent.as_deref());
                    // The stream (or this parent) is read again in full; a fresh state
                    // the error carried is stored when that read completes.
                    let mut full =
                        Box::pin(self.fresh_walk(session, &vars, &base_url, record, parent, fresh.is_none())).await?;
                    if fresh.is_some() {
                        full.pending_state = fresh;
                    }
                    self.walk = Some(full);
                    continue;
                }
                other => other?,
            };
            let body = walk.body.take();
            let tombstones = std::mem::take(&mut walk.tombstones);
            let finished = walk.finished();
            // A state a page carries moves with that page in a pass from a state (it
            // covers what was read up to there); a full pass stores its latest (or the
            // one fetched before it began) only once complete.
            let mut new_state = None;
            if let Some(found) = walk.found_state.take() {
                if walk.from_state { new_state = Some(found) } else { walk.pending_state = Some(found) }
            }
            if finished && new_state.is_none() {
                new_state = walk.pending_state.take();
            }
            // Records of the incremental request come sorted by the cursor when the
            // manifest says so: the cursor may move with every page. A full read's order
            // is not the cursor's, so its cursor is committed only once it is complete
            // (else a failed first run could leave a cursor past records never read);
            // until then the position carries the walk's high-water mark.
            let sorted = walk.from_cursor && self.incremental.as_ref().is_some_and(|i| i.sorted);
            let walk_max = walk.max_seen.clone();
            self.dropped += std::mem::take(&mut walk.dropped);
            let validator = if finished { walk.new_validator.take() } else { None };
            if finished && walk.not_modified {
                self.not_modified += 1;
                // A pass that skipped unchanged listings did not list every record: it
                // is no complete full pass (and so never sweeps).
                self.full = false;
            }
            let total = walk.total.filter(|_| self.parent_spec.is_none());
            let parent_key = walk.parent_key.clone();
            if finished {
                self.walk = None;
            }
            let stream_done = finished && self.parents.as_ref().is_none_or(VecDeque::is_empty);
            let checkpoint = match new_state {
                Some(state) => self.set_state(parent_key.clone(), state),
                None if sorted || finished => {
                    let validated = self.keep_validator(parent_key.as_deref(), validator);
                    self.advance(parent_key.clone(), walk_max)
                        .or_else(|| validated.then(|| self.checkpoint()).flatten())
                }
                None => None,
            };
            let walk = self.walk.take();
            let position = self.position_after(walk.as_ref(), parent_key, stream_done);
            self.walk = walk;
            match result {
                Some(records) => {
                    self.pages += 1;
                    return Ok(Some(Page { records, checkpoint, position, total, body, tombstones }));
                }
                // A walk that ends on an empty page still moves the cursor and position;
                // a page of deletions only is a page.
                None if checkpoint.is_some() || position != PositionUpdate::Keep || !tombstones.is_empty() => {
                    if !tombstones.is_empty() {
                        self.pages += 1;
                    }
                    return Ok(Some(Page { records: Vec::new(), checkpoint, position, total, body: None, tombstones }));
                }
                None => {}
            }
        }
    }

    /// Replaces the state (of `parent_key`'s walk in a child stream) with one from the
    /// response; returns the new checkpoint.
    fn set_state(&mut self, parent_key: Option<String>, state: String) -> Option<String> {
        let value = CursorValue::Text(state);
        match (&mut self.state, parent_key) {
            (CursorState::Single(cur), _) => *cur = Some(value),
            (CursorState::PerParent(map), Some(key)) => {
                map.insert(key, value);
            }
            (CursorState::PerParent(_), None) => return None,
        }
        self.checkpoint()
    }

    /// The stored state was refused as expired: it is forgotten and the stream (or this
    /// parent's part of it) read in full, which the run row's note says.
    fn state_expired(&mut self, status: u16, message: &str, parent_key: Option<&str>) {
        let whose = parent_key.map(|k| format!(" of parent {k}")).unwrap_or_default();
        let then = if self.spec.state.as_ref().is_some_and(|s| s.init_only) {
            "the feed starts again from a fresh state"
        } else {
            "read in full"
        };
        let why = format!("the stored state{whose} expired (HTTP {status}: {message}); {then}");
        tracing::info!(stream = %self.name, "{why}");
        self.notes.push(why);
        self.states_expired += 1;
        match (&mut self.state, parent_key) {
            (CursorState::Single(cur), _) => {
                *cur = None;
                self.full = true;
                self.pass = uuid::Uuid::now_v7().to_string();
                self.started_at = pass_start();
            }
            (CursorState::PerParent(map), Some(key)) => {
                map.remove(key);
            }
            (CursorState::PerParent(_), None) => {}
        }
    }

    /// A walk of the whole stream (or of `parent`'s part), with the first state the
    /// manifest's `state.init` request hands out when `init` and one is declared.
    async fn fresh_walk(
        &self,
        session: &mut Session<'_>,
        vars: &Vars<'static>,
        base_url: &str,
        parent: Option<Value>,
        parent_key: Option<String>,
        init: bool,
    ) -> Result<Walk, EngineError> {
        let mut walk = Walk::new(&self.spec, self.incremental.as_ref(), None, parent.clone(), parent_key.clone());
        if let (true, Some(st)) = (init, &self.spec.state)
            && let Some(init) = &st.init
        {
            let mut init_spec = self.spec.clone();
            init_spec.request = RequestSpec { pagination: None, ..init.request.clone() };
            init_spec.tombstone = None;
            if let Some(st) = init_spec.state.as_mut() {
                st.init_only = false;
            }
            let mut fetch = Walk::new(&init_spec, None, None, parent, parent_key);
            let pointer = init.from.as_deref().unwrap_or(&st.from);
            walk.pending_state =
                Some(Box::pin(fetch.fetch_value(session, vars, base_url, &self.headers, pointer, &self.name)).await?);
        }
        Ok(walk)
    }

    /// Keeps the validator a completed walk's first response carried; whether it changed.
    fn keep_validator(&mut self, parent_key: Option<&str>, validator: Option<String>) -> bool {
        let Some(v) = validator else { return false };
        let key = parent_key.unwrap_or_default();
        if self.validators.get(key) == Some(&v) {
            return false;
        }
        self.validators.insert(key.to_owned(), v);
        true
    }

    /// Notes what conditional requests and a client-side incremental read saved.
    fn summarize(&mut self) {
        if self.not_modified > 0 {
            let n = self.not_modified;
            tracing::info!(stream = %self.name, walks = n, "not modified since the last pass (304)");
            self.notes.push(format!("{n} listing(s) not modified since the last pass (304)"));
        }
        if self.dropped > 0 {
            let n = self.dropped;
            tracing::info!(stream = %self.name, records = n, "client-side incremental: records not newer than the cursor dropped");
            self.notes.push(format!("client-side incremental: {n} record(s) not newer than the cursor dropped"));
        }
    }

    /// Moves the cursor state to include `seen`; returns the new checkpoint when it moved.
    fn advance(&mut self, parent_key: Option<String>, seen: Option<CursorValue>) -> Option<String> {
        let seen = seen?;
        let moved = match (&mut self.state, parent_key) {
            (CursorState::Single(cur), _) => {
                if cur.as_ref().is_none_or(|c| seen > *c) {
                    *cur = Some(seen);
                    true
                } else {
                    false
                }
            }
            (CursorState::PerParent(map), Some(key)) => {
                if map.get(&key).is_none_or(|c| seen > *c) {
                    map.insert(key, seen);
                    true
                } else {
                    false
                }
            }
            (CursorState::PerParent(_), None) => false,
        };
        if moved { self.checkpoint() } else { None }
    }

    /// Every record of `spec` (under `parent`, for a child stream), read in full.
    async fn read_all(
        &self,
        spec: &StreamSpec,
        parent: Option<Value>,
        session: &mut Session<'_>,
        vars: &mut Vars<'static>,
        base_url: &str,
    ) -> Result<Vec<Value>, EngineError> {
        let mut out = Vec::new();
        let mut walk = Walk::new(spec, None, None, parent, None);
        while !walk.finished() {
            if let Some(records) = walk.next(session, vars, base_url, &self.headers, &self.name, None).await? {
                out.extend(records);
            }
        }
        Ok(out)
    }

    /// Starts the walk for the stream, or for the next parent record. `false` when none is left.
    async fn start_next_walk(
        &mut self,
        session: &mut Session<'_>,
        vars: &mut Vars<'static>,
        base_url: &str,
    ) -> Result<bool, EngineError> {
        let Some(parent_spec) = &self.parent_spec else {
            if self.started {
                return Ok(false);
            }
            self.started = true;
            if let Some(point) = self.resume.take().and_then(|p| p.walk) {
                match Walk::resume(&self.spec, self.incremental.as_ref(), &point, None, None) {
                    Some(walk) => {
                        self.walk = Some(walk);
                        return Ok(true);
                    }
                    None => self.restart_pass("the saved position does not fit the stream's pagination".into()),
                }
            }
            let start = match &self.state {
                CursorState::Single(c) => c.clone(),
                CursorState::PerParent(_) => None,
            };
            let validator = self.validators.get("").cloned();
            let walk = match start {
                None => Box::pin(self.fresh_walk(session, vars, base_url, None, None, true)).await?,
                start => Walk::new(&self.spec, self.incremental.as_ref(), start, None, None),
            };
            self.walk = Some(walk.with_validator(validator));
            return Ok(true);
        };
        let parent_spec = parent_spec.clone();
        if self.parents.is_none() {
            // Read every parent record first (parent streams are small: channels, projects);
            // a parent that is itself a child is read under each of its own parents.
            let grandparents = match &self.grandparent_spec {
                Some(g) => self.read_all(g, None, session, vars, base_url).await?.into_iter().map(Some).collect(),
                None => vec![None],
            };
            let mut parents = VecDeque::new();
            for grandparent in grandparents {
                parents.extend(self.read_all(&parent_spec, grandparent, session, vars, base_url).await?);
            }
            self.parents = Some(parents);
        }
        let key_of = |parent: &Value| {
            template::scalar_text(template::lookup_path(parent, &parent_spec.primary_key)).unwrap_or_default()
        };
        // A saved position skips the parents already read and continues the walk of
        // the one it was in.
        let mut resumed_walk = None;
        if let Some(saved) = self.resume.take()
            && let Some(point) = saved.parent
        {
            let parents = self.parents.get_or_insert_with(VecDeque::new);
            match parents.iter().position(|p| key_of(p) == point.key) {
                Some(i) => {
                    parents.drain(..if point.done { i + 1 } else { i });
                    resumed_walk = saved.walk.filter(|_| !point.done);
                }
                None => self.restart_pass(format!("the saved position's parent `{}` is no longer listed", point.key)),
            }
        }
        let Some(parent) = self.parents.as_mut().and_then(VecDeque::pop_front) else {
            return Ok(false);
        };
        let key = key_of(&parent);
        if let Some(point) = resumed_walk {
            match Walk::resume(&self.spec, self.incremental.as_ref(), &point, Some(parent.clone()), Some(key.clone())) {
                Some(walk) => {
                    self.walk = Some(walk);
                    return Ok(true);
                }
                None => self.restart_pass("the saved position does not fit the stream's pagination".into()),
            }
        }
        let start = match &self.state {
            CursorState::PerParent(m) => m.get(&key).cloned(),
            CursorState::Single(_) => None,
        };
        let validator = self.validators.get(&key).cloned();
        let walk = match start {
            None => Box::pin(self.fresh_walk(session, vars, base_url, Some(parent), Some(key), true)).await?,
            start => Walk::new(&self.spec, self.incremental.as_ref(), start, Some(parent), Some(key)),
        };
        self.walk = Some(walk.with_validator(validator));
        Ok(true)
    }
}
