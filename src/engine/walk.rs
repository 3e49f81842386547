//! One pagination walk: the pages of one request shape (for one parent record, when
//! the stream is a child), with the guards against loops and the search-window cap.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::EngineError;
use super::cursor::CursorValue;
use super::resume::{PagePosition as Position, WalkPoint};
use crate::config::{
    BodyFormat, Conditional, IncrementalSpec, Pagination, ParamIn, RequestSpec, ResponseAction, ResponseRule,
    StateSpec, StateUse, StreamSpec, TombstoneSpec,
};
use crate::http::shape::{BodyShape, Projection, RawBody};
use crate::http::template::{Vars, lookup_path, scalar_text};
use crate::http::{Body, HttpError, Request, Session};
use crate::model::StreamName;

pub(super) struct Walk {
    request: RequestSpec,
    pagination: Pagination,
    incremental: Option<IncrementalSpec>,
    inject: Vec<(String, String)>,
    primary_key: String,
    /// Whether a response may lack the records field.
    records_optional: bool,
    parent: Option<Value>,
    pub parent_key: Option<String>,
    /// The cursor this walk's requests start from.
    start: Option<CursorValue>,
    /// The highest cursor value among the records read so far.
    pub max_seen: Option<CursorValue>,
    pos: Position,
    seen_positions: HashSet<String>,
    last_fingerprint: Option<(String, String, usize)>,
    pages: u64,
    window_records: u64,
    /// Records read by this walk (page-number paging with a total).
    records_read: u64,
    /// The read's total record count, as the last response reported it.
    pub total: Option<u64>,
    /// Whether this walk sends the incremental request (it started from a cursor). Only
    /// that request is sorted by the cursor and subject to `window_cap`; a full read goes
    /// through the stream's own request, in whatever order it has.
    pub from_cursor: bool,
    /// The last page's body as the provider sent it (dead letters keep its records).
    pub body: Option<RawBody>,
    /// Conditional requests: which validator the stream keeps.
    conditional: Option<Conditional>,
    /// The validator sent with the walk's first request.
    validator: Option<String>,
    /// The validator the first response carried (to keep once the walk completes).
    pub new_validator: Option<String>,
    /// The first request was answered `304 Not Modified`.
    pub not_modified: bool,
    /// Records dropped by a client-side incremental read (at or below the cursor).
    pub dropped: u64,
    /// The stream's state section, if it keeps a state from the response.
    state: Option<StateSpec>,
    /// Whether this walk sends a stored state (a pass from a state).
    pub from_state: bool,
    /// The state the last page carried, if any.
    pub found_state: Option<String>,
    /// A state to store when this (full) walk completes: the latest one a page carried,
    /// or the one the init request fetched before the walk began.
    pub pending_state: Option<String>,
    /// Extra response rules (the state's `expired`); set on every request of a stream
    /// that keeps a state.
    rules: Option<Arc<[ResponseRule]>>,
    tombstone: Option<TombstoneSpec>,
    /// The deletions the last page carried.
    pub tombstones: Vec<Tombstone>,
}

/// An item that says its record was deleted.
#[derive(Debug, Clone, PartialEq)]
pub enum Tombstone {
    /// The key, read through the tombstone's `key` pointer.
    Key(String),
    /// The item itself: its key comes through the entity's mapping.
    Item(Value),
}

impl Walk {
    /// A walk of `spec`: incremental (with its request) when `start` is set.
    pub fn new(
        spec: &StreamSpec,
        incremental: Option<&IncrementalSpec>,
        start: Option<CursorValue>,
        parent: Option<Value>,
        parent_key: Option<String>,
    ) -> Self {
        let from_cursor = incremental.is_some() && start.is_some();
        let from_state = spec.state.is_some() && start.is_some();
        let request = match (incremental, &spec.state, &start) {
            (Some(inc), _, Some(_)) => spec.request.overlay(&inc.request),
            (None, Some(st), Some(_)) => spec.request.overlay(&st.request),
            _ => spec.request.clone(),
        };
        let pos = match (&spec.state, &start) {
            (Some(st), Some(s)) if st.use_as == StateUse::Url => Position::Url(s.stored()),
            // A full pass of a feed of changes only takes its first state (`init`).
            (Some(st), None) if st.init_only => Position::Done,
            _ => Position::Start,
        };
        let rules =
            spec.state.as_ref().map(|st| -> Arc<[ResponseRule]> { st.expired.iter().map(|x| x.rule()).collect() });
        let pagination = request.pagination.clone().unwrap_or(Pagination::None);
        Self {
            request,
            pagination,
            incremental: incremental.cloned(),
            inject: spec.inject.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            primary_key: spec.primary_key.clone(),
            records_optional: spec.records_optional,
            parent,
            parent_key,
            start,
            max_seen: None,
            pos,
            seen_positions: HashSet::new(),
            last_fingerprint: None,
            pages: 0,
            window_records: 0,
            records_read: 0,
            total: None,
            from_cursor,
            body: None,
            state: spec.state.clone(),
            from_state,
            found_state: None,
            pending_state: None,
            rules,
            tombstone: spec.tombstone.clone(),
            tombstones: Vec::new(),
            conditional: spec.conditional,
            validator: None,
            new_validator: None,
            not_modified: false,
            dropped: 0,
        }
    }

    /// Sends `validator` (kept from an earlier pass) with the walk's first request.
    pub fn with_validator(mut self, validator: Option<String>) -> Self {
        self.validator = validator.filter(|_| self.conditional.is_some());
        self
    }

    /// A walk of `spec` continuing from a saved `point`; `None` when the point does not
    /// fit the stream's pagination (the manifest changed since it was saved).
    pub fn resume(
        spec: &StreamSpec,
        incremental: Option<&IncrementalSpec>,
        point: &WalkPoint,
        parent: Option<Value>,
        parent_key: Option<String>,
    ) -> Option<Self> {
        let format = incremental
            .map(|i| i.cursor_format)
            .or_else(|| spec.state.as_ref().map(|_| crate::config::CursorFormat::Raw));
        let from = |s: &Option<String>| match (s, format) {
            (Some(s), Some(f)) => CursorValue::from_stored(s, f),
            _ => None,
        };
        let start = from(&point.started_from);
        if point.started_from.is_some() && start.is_none() {
            return None;
        }
        let mut walk = Self::new(spec, incremental, start, parent, parent_key);
        let fits = matches!(
            (&walk.pagination, &point.next),
            (_, Position::Start | Position::Done)
                | (Pagination::Cursor { .. }, Position::Cursor(_) | Position::Offset(_))
                | (Pagination::NextHeader { .. }, Position::Cursor(_))
                | (Pagination::NextUrl { .. } | Pagination::LinkHeader { .. }, Position::Url(_))
                | (Pagination::Offset { .. } | Pagination::Odata { .. }, Position::Offset(_))
                | (Pagination::PageNumber { .. }, Position::Page(_))
        );
        if !fits {
            return None;
        }
        walk.pos = point.next.clone();
        walk.max_seen = from(&point.high_water);
        walk.pages = point.pages;
        walk.records_read = point.records;
        walk.window_records = point.window_records;
        walk.pending_state.clone_from(&point.pending_state);
        Some(walk)
    }

    /// Where this walk stands, to continue it later.
    pub fn point(&self) -> WalkPoint {
        WalkPoint {
            next: self.pos.clone(),
            started_from: self.start.as_ref().map(CursorValue::stored),
            high_water: self.max_seen.as_ref().map(CursorValue::stored),
            pages: self.pages,
            records: self.records_read,
            window_records: self.window_records,
            pending_state: self.pending_state.clone(),
        }
    }

    /// The parent record this walk reads for (child streams).
    pub fn parent_record(&self) -> Option<Value> {
        self.parent.clone()
    }

    pub fn finished(&self) -> bool {
        self.pos == Position::Done
    }

    fn build(
        &self,
        vars: &Vars<'_>,
        base_url: &str,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> Result<Request, EngineError> {
        let mut query: Vec<(String, String)> = Vec::new();
        let mut body = match &self.request.body {
            Some(b) => Some(vars.render_json(b)?),
            None => None,
        };
        let url = if let Position::Url(next) = &self.pos {
            next.clone()
        } else {
            let path = vars.render(self.request.path.as_deref().unwrap_or(""))?;
            let url = if path.starts_with("http://") || path.starts_with("https://") {
                path
            } else {
                format!("{base_url}{path}")
            };
            // Parameters for one page position only: left out of the others.
            let first = self.pos == Position::Start;
            let skipped = if first { &self.request.later_pages_only } else { &self.request.first_page_only };
            for (k, v) in &self.request.query {
                if !skipped.contains(k) {
                    query.push((k.clone(), vars.render(v)?));
                }
            }
            if let Some(Value::Object(map)) = body.as_mut() {
                map.retain(|k, _| !skipped.contains(k));
            }
            let mut set = |location: ParamIn, name: &str, value: Value| match location {
                ParamIn::Query => {
                    let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                    query.retain(|(k, _)| k != name);
                    query.push((name.to_owned(), text));
                }
                ParamIn::Body => {
                    if let Some(Value::Object(map)) = body.as_mut() {
                        map.insert(name.to_owned(), value);
                    }
                }
            };
            match (&self.pagination, &self.pos) {
                (Pagination::Cursor { param, location, .. }, Position::Cursor(c)) => {
                    set(*location, param, Value::String(c.clone()))
                }
                // A numeric next offset from the response goes back as a number.
                (Pagination::Cursor { param, location, .. }, Position::Offset(o)) => {
                    set(*location, param, Value::from(*o))
                }
                (Pagination::NextHeader { param, .. }, Position::Cursor(c)) => {
                    set(ParamIn::Query, param, Value::String(c.clone()))
                }
                (Pagination::Offset { offset_param, limit_param, limit, location, .. }, pos) => {
                    let offset = if let Position::Offset(o) = pos { *o } else { 0 };
                    set(*location, limit_param, Value::from(*limit));
                    set(*location, offset_param, Value::from(offset));
                }
                (Pagination::Odata { limit, .. }, pos) => {
                    let offset = if let Position::Offset(o) = pos { *o } else { 0 };
                    set(ParamIn::Query, "$top", Value::from(*limit));
                    set(ParamIn::Query, "$skip", Value::from(offset));
                }
                (Pagination::PageNumber { page_param, size_param, size, start, location, .. }, pos) => {
                    let page = if let Position::Page(p) = pos { *p } else { *start };
                    set(*location, size_param, Value::from(*size));
                    set(*location, page_param, Value::from(page));
                }
                _ => {}
            }
            url
        };
        let mut hdrs = Vec::new();
        for (k, v) in headers.iter().chain(self.request.headers.iter()) {
            hdrs.push((k.clone(), vars.render(v)?));
        }
        if let (Some(kind), Some(validator), Position::Start) = (self.conditional, &self.validator, &self.pos) {
            hdrs.push((kind.request_header().to_owned(), validator.clone()));
        }
        let body = body.map(|b| match self.request.body_format.unwrap_or(BodyFormat::Json) {
            BodyFormat::Json => Body::Json(b),
            BodyFormat::Form => Body::Form(match b {
                Value::Object(m) => {
                    m.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
                }
                _ => Vec::new(),
            }),
        });
        Ok(Request {
            method: self.request.method.unwrap_or_default(),
            url,
            query,
            headers: hdrs,
            body,
            shape: None,
            rules: self.rules.clone(),
        })
    }

    /// Fetches the next page; `Ok(None)` when the walk ended without records.
    pub async fn next(
        &mut self,
        session: &mut Session<'_>,
        vars: &mut Vars<'static>,
        base_url: &str,
        headers: &std::collections::BTreeMap<String, String>,
        stream: &StreamName,
        projection: Option<&Arc<Projection>>,
    ) -> Result<Option<Vec<Value>>, EngineError> {
        if self.finished() {
            return Ok(None);
        }
        let stream_name = stream.to_string();
        let max = self.pagination.max_pages().unwrap_or(super::DEFAULT_MAX_PAGES);
        if self.pages >= max {
            return Err(EngineError::PageLimit { stream: stream_name, max });
        }
        if let (Some(inc), Some(start)) = (&self.incremental, &self.start) {
            let format = inc.param_format.unwrap_or(inc.cursor_format);
            vars.set("cursor", start.minus_secs(inc.lookback_secs).render(format));
        }
        if let (true, Some(st), Some(start)) = (self.from_state, &self.state, &self.start)
            && st.use_as == StateUse::Param
        {
            vars.set("state", start.stored());
        }
        // A stored state URL is sent with the connection's credentials: only to the
        // connection's own host.
        if let (true, 0, Position::Url(u)) = (self.from_state, self.pages, &self.pos) {
            resolve_next(base_url, u, &stream_name)?;
        }
        let parent = self.parent.clone();
        let parent_vars = Vars { values: vars.values.clone(), parent: parent.as_ref() };
        let mut request = self.build(&parent_vars, base_url, headers)?;
        let records_at = self.request.records.as_deref().unwrap_or_default();
        request.shape = projection.map(|p| Arc::new(BodyShape::new(records_at, p.clone())));
        let first = self.pos == Position::Start;
        let mut response = session.send(&request, &parent_vars).await?;
        self.pages += 1;
        if let (Some(kind), true) = (self.conditional, first) {
            if response.status == 304 {
                // Nothing changed since the validator was issued: no records, and the
                // validator stays.
                self.not_modified = true;
                self.pos = Position::Done;
                return Ok(None);
            }
            self.new_validator = response
                .headers
                .get(kind.response_header())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .filter(|v| !v.is_empty());
        }
        if let Some(st) = &self.state {
            self.found_state = response
                .json
                .as_ref()
                .and_then(|j| j.pointer(&st.from))
                .and_then(|v| scalar_text(Some(v)))
                .filter(|s| !s.is_empty());
        }
        let total_ptr = match (&self.request.total, &self.pagination) {
            (Some(p), _) => Some(p),
            (None, Pagination::Offset { total, .. } | Pagination::PageNumber { total, .. }) => total.as_ref(),
            _ => None,
        };
        if let Some(t) = total_ptr.and_then(|p| response.json.as_ref()?.pointer(p)).and_then(Value::as_u64) {
            self.total = Some(t);
        }
        let records_ptr = self.request.records.clone().unwrap_or_default();
        let records_ptr = records_ptr.as_str();
        // The records are moved out of the parsed body (not cloned) once the body has
        // served pagination.
        // A successful response without the records field (or without a body) is not an
        // empty page unless the manifest says the API omits the field.
        let missing = |what: &str| EngineError::BadResponse {
            stream: stream_name.clone(),
            message: format!(
                "{what} (records expected at `{records_ptr}`); if the API omits them on empty pages, set \
                 `records_optional = true` on the stream"
            ),
        };
        let items = match (&response.json, response.action) {
            (_, ResponseAction::Empty) => None,
            (None, _) if self.records_optional => None,
            (None, _) => return Err(missing("the response has no JSON body")),
            (Some(json), _) => match json.pointer(records_ptr) {
                None | Some(Value::Null) if self.records_optional => None,
                None => return Err(missing("the response has no records field")),
                Some(Value::Null) => return Err(missing("the records field is null")),
                Some(Value::Array(items)) => Some(items),
                Some(other) => {
                    return Err(EngineError::BadResponse {
                        stream: stream_name,
                        message: format!("records at `{records_ptr}` are not an array but {}", type_name(other)),
                    });
                }
            },
        };
        let n = items.map_or(0, Vec::len);
        // Guard: a page identical to the previous one means the API ignores our paging.
        if let Some(items) = items.filter(|i| !i.is_empty()) {
            // Items without the key (changes that wrap their record) are told apart whole.
            let key = |r: &Value| scalar_text(lookup_path(r, &self.primary_key)).unwrap_or_else(|| r.to_string());
            let fp = (key(&items[0]), key(&items[items.len() - 1]), items.len());
            if self.last_fingerprint.as_ref() == Some(&fp) {
                return Err(EngineError::RepeatedPage { stream: stream_name, page: self.pages });
            }
            self.last_fingerprint = Some(fp);
        }
        self.advance(&response, &request.url, n, &stream_name)?;
        let mut records = if n == 0 {
            Vec::new()
        } else {
            match response.json.as_mut().and_then(|j| j.pointer_mut(records_ptr)).map(Value::take) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        };
        let mut dropped_here = 0;
        if let Some(inc) = &self.incremental {
            for r in &records {
                if let Some(c) =
                    lookup_path(r, &inc.cursor_field).and_then(|v| CursorValue::from_record(v, inc.cursor_format))
                    && self.max_seen.as_ref().is_none_or(|m| c > *m)
                {
                    self.max_seen = Some(c);
                }
            }
            if self.from_cursor {
                self.restart_window_if_capped(inc.window_cap, records.len() as u64, &stream_name)?;
            }
        }
        // No server-side filter: what is not newer than the cursor is not a change.
        if let (Some(inc), Some(start)) = (self.incremental.as_ref().filter(|i| i.client_side), &self.start) {
            let before = records.len();
            records.retain(|r| {
                lookup_path(r, &inc.cursor_field)
                    .and_then(|v| CursorValue::from_record(v, inc.cursor_format))
                    .is_none_or(|c| c > *start)
            });
            dropped_here = before - records.len();
            self.dropped += dropped_here as u64;
        }
        // Dead letters find their bytes by position in the body: only while none was dropped.
        self.body = (dropped_here == 0).then(|| RawBody::new(std::mem::take(&mut response.body), records_ptr));
        if self.tombstone.is_some() || (self.from_state && self.state.as_ref().is_some_and(|s| s.record.is_some())) {
            records = self.split_items(records, &stream_name)?;
        }
        if !self.inject.is_empty() {
            // A deletion item's key comes through the mapping too, which may read what
            // the parent injects (Graph channel messages are keyed `channel:id`).
            let deleted = self.tombstones.iter_mut().filter_map(|t| match t {
                Tombstone::Item(item) => Some(item),
                Tombstone::Key(_) => None,
            });
            for r in records.iter_mut().chain(deleted) {
                if let Value::Object(map) = r {
                    for (k, t) in &self.inject {
                        map.insert(k.clone(), Value::String(parent_vars.render(t)?));
                    }
                }
            }
        }
        Ok(if records.is_empty() { None } else { Some(records) })
    }

    /// Takes the tombstones out of a page's items and, in a pass from a state whose items
    /// wrap the record (`state.record`), unwraps the others. The body no longer lines up
    /// with the records then: dead letters keep the item as read.
    fn split_items(&mut self, items: Vec<Value>, stream: &str) -> Result<Vec<Value>, EngineError> {
        self.body = None;
        let unwrap = self.state.as_ref().and_then(|s| s.record.clone()).filter(|_| self.from_state);
        let mut records = Vec::with_capacity(items.len());
        for mut item in items {
            if let Some(t) = &self.tombstone
                && t.matches(&item)
            {
                let gone = match &t.key {
                    Some(p) => match item.pointer(p).and_then(|v| scalar_text(Some(v))).filter(|k| !k.is_empty()) {
                        Some(key) => Tombstone::Key(key),
                        None => {
                            return Err(EngineError::BadResponse {
                                stream: stream.to_owned(),
                                message: format!("a deletion item has no key at `{p}` (tombstone.key)"),
                            });
                        }
                    },
                    // The mapping reads the record the item wraps, where it wraps one.
                    None => match unwrap.as_deref().and_then(|p| item.pointer_mut(p)) {
                        Some(record @ Value::Object(_)) => Tombstone::Item(record.take()),
                        _ => Tombstone::Item(item),
                    },
                };
                self.tombstones.push(gone);
                continue;
            }
            if self.tombstone.as_ref().is_some_and(|t| t.only) {
                continue;
            }
            match &unwrap {
                None => records.push(item),
                Some(p) => match item.pointer_mut(p).map(Value::take) {
                    Some(record @ Value::Object(_)) => records.push(record),
                    // An item about something else than a record (a Drive change of a
                    // shared drive) is not one of the stream's records.
                    _ => tracing::debug!(stream, pointer = %p, "an item without a record skipped"),
                },
            }
        }
        Ok(records)
    }

    /// Requests this walk's first page once and returns the value at `pointer` in the
    /// response, or in an error response that means the state expired (Asana answers
    /// a request without a sync token with 412 and a fresh one).
    pub async fn fetch_value(
        &mut self,
        session: &mut Session<'_>,
        vars: &Vars<'static>,
        base_url: &str,
        headers: &std::collections::BTreeMap<String, String>,
        pointer: &str,
        stream: &StreamName,
    ) -> Result<String, EngineError> {
        let parent = self.parent.clone();
        let parent_vars = Vars { values: vars.values.clone(), parent: parent.as_ref() };
        let mut request = self.build(&parent_vars, base_url, headers)?;
        request.rules = Some(request.rules.unwrap_or_else(|| Arc::from(Vec::new())));
        let json = match session.send(&request, &parent_vars).await {
            Ok(r) => r.json,
            Err(HttpError::StateExpired { body, .. }) => body.map(|b| *b),
            Err(e) => return Err(e.into()),
        };
        json.as_ref()
            .and_then(|j| j.pointer(pointer))
            .and_then(|v| scalar_text(Some(v)))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| EngineError::BadResponse {
                stream: stream.to_string(),
                message: format!(
                    "the state request `{}` answered without a state at `{pointer}` (state.init)",
                    crate::http::display_path(&request.url)
                ),
            })
    }

    fn advance(
        &mut self,
        response: &crate::http::Response,
        request_url: &str,
        n: usize,
        stream: &str,
    ) -> Result<(), EngineError> {
        let json = response.json.as_ref();
        let flag =
            |p: &Option<String>| p.as_deref().and_then(|p| json?.pointer(p)).and_then(Value::as_bool).unwrap_or(false);
        let total = |p: &Option<String>| p.as_deref().and_then(|p| json?.pointer(p)).and_then(Value::as_u64);
        // A `has_more`-style flag that is false ends the walk (absent: no say).
        let no_more = |p: &Option<String>| {
            p.as_deref().and_then(|p| json?.pointer(p)).and_then(Value::as_bool).is_some_and(|more| !more)
        };
        let n = n as u64;
        let next = if n == 0 || response.action == ResponseAction::Empty {
            Position::Done
        } else {
            match &self.pagination {
                Pagination::None => Position::Done,
                Pagination::Cursor { cursor, is_last, has_more, .. } => {
                    let raw = json.and_then(|j| j.pointer(cursor));
                    let next = raw.and_then(|v| scalar_text(Some(v))).filter(|c| !c.is_empty());
                    match (next, raw.and_then(Value::as_u64)) {
                        _ if flag(is_last) || no_more(has_more) => Position::Done,
                        (Some(_), Some(offset)) => Position::Offset(offset),
                        (Some(c), None) => Position::Cursor(c),
                        (None, _) => Position::Done,
                    }
                }
                Pagination::NextUrl { next, done, has_more, .. } => {
                    let url = json.and_then(|j| j.pointer(next)).and_then(Value::as_str).filter(|u| !u.is_empty());
                    match url {
                        Some(u) if !flag(done) && !no_more(has_more) => {
                            Position::Url(resolve_next(request_url, u, stream)?)
                        }
                        _ => Position::Done,
                    }
                }
                Pagination::LinkHeader { .. } => match next_link(&response.headers) {
                    Some(u) => Position::Url(resolve_next(request_url, &u, stream)?),
                    None => Position::Done,
                },
                Pagination::NextHeader { header, .. } => {
                    match response.headers.get(header.as_str()).and_then(|v| v.to_str().ok()).map(str::trim) {
                        Some(next) if !next.is_empty() => Position::Cursor(next.to_owned()),
                        _ => Position::Done,
                    }
                }
                Pagination::Offset { limit, total: t, is_last, has_more, .. } => {
                    let offset = if let Position::Offset(o) = self.pos { o } else { 0 } + n;
                    let over = total(t).is_some_and(|t| offset >= t);
                    let short = t.is_none() && is_last.is_none() && has_more.is_none() && n < *limit;
                    if over || short || flag(is_last) || no_more(has_more) {
                        Position::Done
                    } else {
                        Position::Offset(offset)
                    }
                }
                Pagination::Odata { limit, .. } => {
                    let offset = if let Position::Offset(o) = self.pos { o } else { 0 } + n;
                    if n < *limit { Position::Done } else { Position::Offset(offset) }
                }
                Pagination::PageNumber { size, start, total: t, has_more, .. } => {
                    let page = if let Position::Page(p) = self.pos { p } else { *start };
                    self.records_read += n;
                    // With a total, a server that caps the page size below ours still has
                    // more pages; without one, a short page is the last.
                    let done = match (total(t), has_more) {
                        _ if no_more(has_more) => true,
                        (Some(t), _) => self.records_read >= t,
                        (None, Some(_)) => false,
                        (None, None) => n < *size,
                    };
                    if done { Position::Done } else { Position::Page(page + 1) }
                }
            }
        };
        // Guard: a cursor or next URL seen before means the API is looping.
        if let Position::Cursor(c) | Position::Url(c) = &next
            && !self.seen_positions.insert(c.clone())
        {
            return Err(EngineError::StalledCursor { stream: stream.to_owned(), cursor: crate::http::display_path(c) });
        }
        if let (Pagination::Cursor { .. }, Position::Offset(o)) = (&self.pagination, &next)
            && !self.seen_positions.insert(format!("#{o}"))
        {
            return Err(EngineError::StalledCursor { stream: stream.to_owned(), cursor: o.to_string() });
        }
        self.pos = next;
        Ok(())
    }

    /// Restarts a capped search from the highest cursor seen before paging past the cap.
    fn restart_window_if_capped(&mut self, cap: Option<u64>, n: u64, stream: &str) -> Result<(), EngineError> {
        let Some(cap) = cap else { return Ok(()) };
        self.window_records += n;
        if self.finished() || self.window_records + n <= cap {
            return Ok(());
        }
        let Some(next_start) = self.max_seen.clone() else {
            return Ok(());
        };
        if self.start.as_ref() == Some(&next_start) {
            return Err(EngineError::WindowStuck { stream: stream.to_owned(), cap, cursor: next_start.stored() });
        }
        tracing::debug!(stream, records = self.window_records, from = %next_start.stored(), "search window cap reached; restarting from the last cursor value");
        self.start = Some(next_start);
        self.pos = Position::Start;
        self.seen_positions.clear();
        self.last_fingerprint = None;
        self.window_records = 0;
        self.records_read = 0;
        Ok(())
    }
}

/// Resolves a next-page reference (`nextRecordsUrl`, a `Link` target) against the URL of
/// the request that returned it: absolute URLs stay, `/path` takes that request's origin,
/// other references resolve as RFC 3986 says. `None` when it cannot be a URL.
fn resolve(request_url: &str, next: &str) -> Option<String> {
    if next.starts_with("http://") || next.starts_with("https://") {
        return Some(next.to_owned());
    }
    let base = reqwest::Url::parse(request_url).ok()?;
    base.join(next).ok().map(String::from)
}

/// `Link: <url>; rel="next"`.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    for value in headers.get_all("link") {
        let text = value.to_str().ok()?;
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let url = pieces.next()?.trim().trim_start_matches('<').trim_end_matches('>');
            if pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            }) {
                return Some(url.to_owned());
            }
        }
    }
    None
}

/// Resolves a next-page reference and refuses one on another origin: the request would
/// carry the connection's credentials to a host the tenant never configured.
fn resolve_next(request_url: &str, next: &str, stream: &str) -> Result<String, EngineError> {
    let bad = |why: &str| EngineError::BadResponse {
        stream: stream.to_owned(),
        message: format!(
            "the next-page reference `{}` {why} `{}`",
            crate::http::display_path(next),
            crate::http::display_path(request_url)
        ),
    };
    let url = resolve(request_url, next).ok_or_else(|| bad("does not resolve against"))?;
    if !same_origin(request_url, &url) {
        return Err(bad("points to another host than"));
    }
    Ok(url)
}

fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_references_resolve_against_the_request_url() {
        let req = "http://127.0.0.1:9/services/data/v60.0/query";
        assert_eq!(
            resolve(req, "/services/data/v60.0/query/01g-2000").as_deref(),
            Some("http://127.0.0.1:9/services/data/v60.0/query/01g-2000")
        );
        assert_eq!(resolve(req, "https://other.example/x?page=2").as_deref(), Some("https://other.example/x?page=2"));
        assert_eq!(resolve("http://h/api/v1/items", "items?page=2").as_deref(), Some("http://h/api/v1/items?page=2"));
        assert_eq!(resolve("not a url", "/x"), None);
    }

    #[test]
    fn next_pages_on_another_host_are_refused() {
        let req = "http://127.0.0.1:9/api/items";
        assert!(resolve_next(req, "http://127.0.0.1:9/api/items?page=2", "s").is_ok());
        let err = resolve_next(req, "https://evil.example/steal", "s").unwrap_err();
        assert!(err.to_string().contains("another host"), "{err}");
        assert!(resolve_next(req, "http://127.0.0.1:10/api/items", "s").is_err());
    }
}
