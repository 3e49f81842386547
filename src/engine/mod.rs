//! The generic, manifest-driven stream reader: builds each request from the stream's
//! templates, walks its pagination, reads incrementally from a cursor, restarts a
//! capped search window, reads child streams once per parent record, and guards
//! against cursors or pages that repeat. It yields one page of raw records at a time
//! with the cursor checkpoint to commit with that page; it never holds a stream.

pub mod cursor;
pub mod template;

mod walk;

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use self::cursor::CursorValue;
use self::template::Vars;
use self::walk::Walk;
use crate::config::{IncrementalSpec, Manifest, StreamSpec};
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
}

/// Where an incremental stream stands: one cursor, or one per parent record.
#[derive(Debug, Clone, PartialEq)]
enum CursorState {
    Single(Option<CursorValue>),
    PerParent(BTreeMap<String, CursorValue>),
}

/// Pages of pages before the guard stops a walk, when the manifest sets no limit.
pub const DEFAULT_MAX_PAGES: u64 = 1_000_000;

/// Reads one stream of one connection.
pub struct StreamReader {
    name: StreamName,
    spec: StreamSpec,
    parent_spec: Option<StreamSpec>,
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
        let incremental = spec.incremental.clone();
        let stored = if full_refresh { None } else { cursor };
        let state = match (&incremental, parent_spec.is_some()) {
            (Some(inc), true) => {
                let map: BTreeMap<String, String> =
                    stored.and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
                CursorState::PerParent(
                    map.into_iter()
                        .filter_map(|(k, v)| Some((k, CursorValue::from_stored(&v, inc.cursor_format)?)))
                        .collect(),
                )
            }
            (Some(inc), false) => {
                CursorState::Single(stored.and_then(|c| CursorValue::from_stored(c, inc.cursor_format)))
            }
            (None, _) => CursorState::Single(None),
        };
        Ok(Self {
            name: stream.clone(),
            spec,
            parent_spec,
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
        })
    }

    /// The stored form of the current cursor state.
    pub fn checkpoint(&self) -> Option<String> {
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
                return Ok(None);
            }
            let Some(walk) = self.walk.as_mut() else {
                continue;
            };
            let result = walk.next(session, &mut vars, &base_url, &self.headers, &self.name).await?;
            let finished = walk.finished();
            // Records of the incremental request come sorted by the cursor when the
            // manifest says so: the cursor may move with every page. A full read's order
            // is not the cursor's, so its cursor is committed only once it is complete
            // (else a failed first run could leave a cursor past records never read).
            let sorted = walk.from_cursor && self.incremental.as_ref().is_some_and(|i| i.sorted);
            let walk_max = walk.max_seen.clone();
            let total = walk.total.filter(|_| self.parent_spec.is_none());
            let parent_key = walk.parent_key.clone();
            if finished {
                self.walk = None;
            }
            let checkpoint = if sorted || finished { self.advance(parent_key, walk_max) } else { None };
            match result {
                Some(records) => {
                    self.pages += 1;
                    return Ok(Some(Page { records, checkpoint, total }));
                }
                // A walk that ends on an empty page still moves the cursor.
                None if checkpoint.is_some() => {
                    return Ok(Some(Page { records: Vec::new(), checkpoint, total }));
                }
                None => {}
            }
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
            let start = match &self.state {
                CursorState::Single(c) => c.clone(),
                CursorState::PerParent(_) => None,
            };
            self.walk = Some(Walk::new(&self.spec, self.incremental.as_ref(), start, None, None));
            return Ok(true);
        };
        if self.parents.is_none() {
            // Read every parent record first (parent streams are small: channels, projects).
            let mut parents = VecDeque::new();
            let mut walk = Walk::new(parent_spec, None, None, None, None);
            while !walk.finished() {
                if let Some(records) = walk.next(session, vars, base_url, &self.headers, &self.name).await? {
                    parents.extend(records);
                }
            }
            self.parents = Some(parents);
        }
        let Some(parent) = self.parents.as_mut().and_then(VecDeque::pop_front) else {
            return Ok(false);
        };
        let key = template::scalar_text(template::lookup_path(&parent, &parent_spec.primary_key)).unwrap_or_default();
        let start = match &self.state {
            CursorState::PerParent(m) => m.get(&key).cloned(),
            CursorState::Single(_) => None,
        };
        self.walk = Some(Walk::new(&self.spec, self.incremental.as_ref(), start, Some(parent), Some(key)));
        Ok(true)
    }
}
