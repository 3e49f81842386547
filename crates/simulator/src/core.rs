//! The generic simulator core: the shared state behind one fake server and
//! the description each provider module hands to it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::auth::{Auth, TokenCheck};
use super::filter::Filter;
use super::store::{Meta, Order, Page, Refine, StreamData};
use super::util::{self, Ts};
use super::{AmbiguousWrite, Faults, Provider, SimConfig, WriteReceived};

/// Whether a provider rotates refresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// Never (HubSpot).
    Never,
    /// Only when the app enables it (Salesforce); off unless configured.
    Optional,
    /// Always (Slack with token rotation, Jira).
    Always,
}

/// How a stream's size is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// `records` records.
    Primary,
    /// `parents` records (Slack channels, Jira projects).
    Parent,
    /// `records` records split over the parents (messages, issues).
    Child,
    /// `records` records split over the records of the named stream (Graph channel
    /// messages over channels, mail over users).
    ChildOf(&'static str),
}

/// One stream a provider serves.
#[derive(Debug)]
pub(crate) struct StreamSpec {
    /// Canonical lowercase name (`contacts`, `learners`…).
    pub name: &'static str,
    /// Other accepted names (the API's own spelling).
    pub aliases: &'static [&'static str],
    /// How big it is.
    pub kind: StreamKind,
}

/// Everything the core needs to know about one provider.
pub(crate) struct ProviderSpec {
    /// Path prefix a connector appends resource paths to.
    pub api_base: &'static str,
    /// The token endpoint's path, if the provider has one.
    pub token_path: Option<&'static str>,
    /// Paths exempt from faults (token and session endpoints).
    pub token_paths: &'static [&'static str],
    /// The streams, in a fixed order.
    pub streams: &'static [StreamSpec],
    /// The provider's real access-token lifetime.
    pub default_ttl: Option<Duration>,
    /// Refresh-token rotation.
    pub rotation: Rotation,
    /// Prefix of issued access tokens.
    pub access_prefix: &'static str,
    /// Prefix of issued refresh tokens.
    pub refresh_prefix: &'static str,
    /// Resolution of the timestamps the API shows, in nanoseconds.
    pub resolution_ns: i64,
    /// Per-record adjustment of base timestamps.
    pub refine: Option<Refine>,
    /// The provider's routes.
    pub router: fn() -> Router<Arc<Sim>>,
    /// The provider's throttle response to a request for a path (an API may throttle
    /// its parts differently: Aptem's OData feed and its REST API).
    pub throttle: fn(&Sim, &str) -> Response,
    /// The provider's 503 response.
    pub unavailable: fn(&Sim) -> Response,
    /// What a tenant stores to connect.
    pub credentials: fn(&Sim) -> Value,
    /// The full record for a stream index, as the API shows it.
    pub record: fn(&Sim, usize, &Meta) -> Value,
    /// Adds headers to every response (given the request path).
    pub decorate: Option<fn(&Sim, &str, &mut Response)>,
}

/// Locks a mutex, ignoring poisoning (state stays usable after a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Server-side cursors (Salesforce query locators): a bounded FIFO map.
#[derive(Debug, Default)]
struct Registry {
    next: u64,
    map: HashMap<String, String>,
    order: VecDeque<String>,
}

const REGISTRY_CAP: usize = 4096;

/// Distinct request paths counted individually.
const PATHS_CAP: usize = 4096;

/// Arrival times of data requests kept.
const TIMES_CAP: usize = 10_000;

/// Data requests kept in the request log (path and query), most recent last.
const LOG_CAP: usize = 10_000;

/// The state of one running simulator.
pub(crate) struct Sim {
    /// Which provider this is.
    pub provider: Provider,
    /// The provider's description.
    pub spec: &'static ProviderSpec,
    /// The configuration it was started with.
    pub config: SimConfig,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Base records end an hour before this instant.
    pub anchor: Ts,
    streams: Mutex<Vec<StreamData>>,
    /// Token state.
    pub auth: Mutex<Auth>,
    cursor_key: Vec<u8>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    data_requests: AtomicU64,
    data_request_times: Mutex<VecDeque<Instant>>,
    request_log: Mutex<VecDeque<String>>,
    paths: Mutex<HashMap<String, u64>>,
    registry: Mutex<Registry>,
    window: Mutex<(Option<Instant>, u64)>,
    /// Provider fields written to records, merged over the generated ones.
    patches: Mutex<HashMap<(usize, u64), Value>>,
    /// Every write received, in order.
    writes: Mutex<Vec<WriteReceived>>,
    /// What happens to the answer of an applied write.
    write_fault: Mutex<Option<AmbiguousWrite>>,
    /// Notes written to records (Aptem, Bud), per (stream, index), oldest first.
    notes: Mutex<HashMap<(usize, u64), Vec<Value>>>,
    /// Notes written so far (their ids count from 1).
    note_count: AtomicU64,
    /// Server-side sync states (Graph delta tokens) carry the generation they were
    /// issued in; one from an older generation has expired.
    sync_generation: AtomicU64,
    /// Data requests that cost the client no quota (GitHub's `304 Not Modified`).
    free_requests: AtomicU64,
    /// The app's signing key pair (GitHub Apps), made on first use.
    pub(crate) app_key: std::sync::OnceLock<super::appkey::AppKey>,
}

/// Marks a response whose write was applied (the gate may then withhold it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteApplied;

impl Sim {
    /// Builds the state for `config` served at `base_url`.
    pub(crate) fn new(config: SimConfig, base_url: String) -> Self {
        let spec = config.provider.spec();
        let anchor = config.anchor.unwrap_or_else(|| util::truncate(Utc::now(), 1_000_000));
        let parents = config.parents;
        let streams = spec
            .streams
            .iter()
            .map(|s| {
                let (count, partitions) = match s.kind {
                    StreamKind::Parent => (parents, 0),
                    StreamKind::Primary => (config.count_for(s.name), 0),
                    StreamKind::Child => (config.count_for(s.name), parents),
                    StreamKind::ChildOf(of) => {
                        let over = spec.streams.iter().find(|p| p.name == of).map_or(0, |p| match p.kind {
                            StreamKind::Parent => parents,
                            _ => config.count_for(p.name),
                        });
                        (config.count_for(s.name), over)
                    }
                };
                StreamData::new(config.seed, s.name, count, partitions, anchor, spec.resolution_ns, spec.refine)
            })
            .collect();
        let ttl = config.access_token_ttl.or(spec.default_ttl);
        let rotate = match spec.rotation {
            Rotation::Never => false,
            Rotation::Always => true,
            Rotation::Optional => config.rotate_refresh_tokens,
        };
        let auth = Auth::new(config.seed, ttl, rotate);
        let cursor_key = auth.secret().to_vec();
        Self {
            provider: config.provider,
            spec,
            faults: Mutex::new(config.faults.clone()),
            config,
            base_url,
            anchor,
            streams: Mutex::new(streams),
            auth: Mutex::new(auth),
            cursor_key,
            requests: AtomicU64::new(0),
            data_requests: AtomicU64::new(0),
            data_request_times: Mutex::new(VecDeque::new()),
            request_log: Mutex::new(VecDeque::new()),
            paths: Mutex::new(HashMap::new()),
            registry: Mutex::new(Registry::default()),
            window: Mutex::new((None, 0)),
            patches: Mutex::new(HashMap::new()),
            writes: Mutex::new(Vec::new()),
            write_fault: Mutex::new(None),
            notes: Mutex::new(HashMap::new()),
            note_count: AtomicU64::new(0),
            sync_generation: AtomicU64::new(0),
            free_requests: AtomicU64::new(0),
            app_key: std::sync::OnceLock::new(),
        }
    }

    /// The generation of server-side sync states issued now.
    pub(crate) fn sync_generation(&self) -> u64 {
        self.sync_generation.load(Ordering::Relaxed)
    }

    /// Expires every server-side sync state issued so far.
    pub(crate) fn expire_sync_states(&self) {
        self.sync_generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The latest change stamp of a stream (see [`StreamData::watermark`]).
    pub(crate) fn watermark(&self, stream: usize) -> Option<Ts> {
        lock(&self.streams).get(stream).map(StreamData::watermark)
    }

    /// The records of a stream deleted after `after` (of parent `partition`, if given).
    pub(crate) fn deleted_after(&self, stream: usize, after: Ts, partition: Option<u64>) -> Vec<u64> {
        lock(&self.streams).get(stream).map(|s| s.deleted_after(after, partition)).unwrap_or_default()
    }

    /// The stream's position in the spec, by name or alias (any case).
    pub(crate) fn stream_index(&self, name: &str) -> Option<usize> {
        self.spec
            .streams
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(name) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
    }

    /// One page of a listing.
    pub(crate) fn select(
        &self,
        stream: usize,
        filter: &Filter,
        order: Order,
        desc: bool,
        offset: u64,
        limit: usize,
    ) -> Page {
        lock(&self.streams).get(stream).map(|s| s.select(filter, order, desc, offset, limit)).unwrap_or_default()
    }

    /// The metadata of a live record.
    pub(crate) fn meta(&self, stream: usize, index: u64) -> Option<Meta> {
        lock(&self.streams).get(stream).and_then(|s| s.meta(index))
    }

    /// The size of a stream's index space (deleted records included).
    pub(crate) fn len(&self, stream: usize) -> u64 {
        lock(&self.streams).get(stream).map_or(0, StreamData::len)
    }

    /// How many live records a stream has.
    pub(crate) fn live(&self, stream: usize) -> u64 {
        lock(&self.streams).get(stream).map_or(0, StreamData::live)
    }

    /// The full records at `indices` (missing ones skipped).
    pub(crate) fn records(&self, stream: usize, indices: &[u64]) -> Vec<Value> {
        self.metas(stream, indices).iter().map(|m| self.build(stream, m)).collect()
    }

    /// The metadata of the live records at `indices` (missing ones skipped).
    pub(crate) fn metas(&self, stream: usize, indices: &[u64]) -> Vec<Meta> {
        let streams = lock(&self.streams);
        let Some(s) = streams.get(stream) else {
            return Vec::new();
        };
        indices.iter().filter_map(|i| s.meta(*i)).collect()
    }

    /// Up to `limit` deleted records of a stream from index `from` on, in index order.
    pub(crate) fn deleted(&self, stream: usize, from: u64, limit: usize) -> Vec<Meta> {
        lock(&self.streams).get(stream).map(|s| s.deleted(from, limit)).unwrap_or_default()
    }

    /// Whether the `blank_field` fault is set.
    pub(crate) fn blanks_fields(&self) -> bool {
        lock(&self.faults).blank_field.is_some()
    }

    /// Generates a record, with written fields and the `blank_field` fault applied.
    fn build(&self, stream: usize, meta: &Meta) -> Value {
        let mut record = (self.spec.record)(self, stream, meta);
        if let Some(patch) = lock(&self.patches).get(&(stream, meta.index)) {
            merge(&mut record, patch);
        }
        if let Some((path, every)) = &lock(&self.faults).blank_field
            && meta.index.is_multiple_of(*every)
        {
            let mut parts: Vec<&str> = path.split('.').collect();
            let last = parts.pop().unwrap_or_default();
            let parent = parts.iter().try_fold(&mut record, |v, k| v.get_mut(*k));
            if let Some(Value::Object(map)) = parent {
                map.remove(last);
            }
        }
        record
    }

    /// The full record at `index`.
    pub(crate) fn record(&self, stream: usize, index: u64) -> Option<Value> {
        let meta = self.meta(stream, index)?;
        Some(self.build(stream, &meta))
    }

    /// Applies a mutation to one stream.
    pub(crate) fn mutate<R>(&self, stream: usize, f: impl FnOnce(&mut StreamData) -> R) -> Option<R> {
        lock(&self.streams).get_mut(stream).map(f)
    }

    /// Applies a write: `index: None` creates a record, otherwise bumps the live record
    /// `index` to a new revision updated now; `fields` (provider fields, shaped as the
    /// record) are merged over what the record shows. Returns the record's index, or
    /// `None` when there is no such live record.
    pub(crate) fn apply_write(&self, stream: usize, index: Option<u64>, fields: &Value) -> Option<u64> {
        self.apply_write_to(stream, index, None, fields)
    }

    /// [`apply_write`](Self::apply_write) that creates a child record under `parent`.
    pub(crate) fn apply_write_to(
        &self,
        stream: usize,
        index: Option<u64>,
        parent: Option<u64>,
        fields: &Value,
    ) -> Option<u64> {
        let now = Utc::now();
        let index = match (index, parent) {
            (None, Some(p)) => self.mutate(stream, |d| d.add_to(p, now))?,
            (None, None) => self.mutate(stream, |d| d.add(1, now).start)?,
            (Some(i), _) => self.mutate(stream, |d| d.modify(i, now)).filter(|ok| *ok).map(|_| i)?,
        };
        let mut patches = lock(&self.patches);
        merge(patches.entry((stream, index)).or_insert_with(|| json!({})), fields);
        Some(index)
    }

    /// The live records of `stream` whose written fields satisfy `pred` (records only
    /// generated are not searched).
    pub(crate) fn written_where(&self, stream: usize, pred: impl Fn(&Value) -> bool) -> Vec<u64> {
        let found: Vec<u64> =
            lock(&self.patches).iter().filter(|((s, _), p)| *s == stream && pred(p)).map(|((_, i), _)| *i).collect();
        let mut live: Vec<u64> = found.into_iter().filter(|i| self.meta(stream, *i).is_some()).collect();
        live.sort_unstable();
        live
    }

    /// Adds a note to the live record `index`: `note(id)` builds it from the note's id
    /// (unique in this simulator, from 1). The record itself is unchanged (its version
    /// stays). `None` when there is no such live record.
    pub(crate) fn add_note(&self, stream: usize, index: u64, note: impl FnOnce(u64) -> Value) -> Option<Value> {
        self.meta(stream, index)?;
        let note = note(self.note_count.fetch_add(1, Ordering::Relaxed) + 1);
        lock(&self.notes).entry((stream, index)).or_default().push(note.clone());
        Some(note)
    }

    /// The notes of record `index`, oldest first.
    pub(crate) fn notes(&self, stream: usize, index: u64) -> Vec<Value> {
        lock(&self.notes).get(&(stream, index)).cloned().unwrap_or_default()
    }

    /// Whether any record of `stream` carries written fields.
    pub(crate) fn has_writes(&self, stream: usize) -> bool {
        lock(&self.patches).keys().any(|(s, _)| *s == stream)
    }

    /// Records one write request as received (before it is validated).
    pub(crate) fn record_write(&self, method: &str, path: &str, headers: &axum::http::HeaderMap, body: Value) {
        // Credentials are not kept; everything else the client sent is.
        let headers = headers
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "authorization" | "x-api-token" | "x-tokenid"))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        lock(&self.writes).push(WriteReceived { method: method.to_owned(), path: path.to_owned(), headers, body });
    }

    /// Every write received so far.
    pub(crate) fn writes_received(&self) -> Vec<WriteReceived> {
        lock(&self.writes).clone()
    }

    /// The fault applied to the answers of applied writes.
    pub(crate) fn write_fault(&self) -> Option<AmbiguousWrite> {
        *lock(&self.write_fault)
    }

    /// Sets (or clears) the fault applied to the answers of applied writes.
    pub(crate) fn set_write_fault(&self, fault: Option<AmbiguousWrite>) {
        *lock(&self.write_fault) = fault;
    }

    /// The page size to use: the configured cap or the provider's maximum.
    pub(crate) fn cap(&self, provider_max: usize) -> usize {
        self.config.page_size_cap.unwrap_or(provider_max).max(1)
    }

    /// The key signing this simulator's cursors.
    pub(crate) fn cursor_key(&self) -> &[u8] {
        &self.cursor_key
    }

    /// A stable secret for a label.
    pub(crate) fn static_secret(&self, label: &str, len: usize) -> String {
        lock(&self.auth).static_secret(label, len)
    }

    /// Whether `revoke()` was called.
    pub(crate) fn revoked(&self) -> bool {
        lock(&self.auth).is_revoked()
    }

    /// Checks an access token.
    pub(crate) fn check_token(&self, token: &str) -> TokenCheck {
        lock(&self.auth).check(token)
    }

    /// The standard OAuth client id and secret of this simulator.
    pub(crate) fn client_pair(&self) -> (String, String) {
        let auth = lock(&self.auth);
        (auth.static_secret("client-id", 24), auth.static_secret("client-secret", 40))
    }

    /// `{client_id, client_secret, refresh_token}` for the first grant.
    pub(crate) fn oauth_credentials(&self) -> Value {
        let (client_id, client_secret) = self.client_pair();
        let refresh_token = lock(&self.auth).initial_refresh(self.spec.refresh_prefix);
        json!({
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        })
    }

    /// The current fault settings.
    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// Replaces the fault settings.
    pub(crate) fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// `Retry-After` seconds for throttle responses.
    pub(crate) fn retry_after(&self) -> u64 {
        lock(&self.faults).retry_after_secs
    }

    /// Counts one request for `path`. Once many distinct paths were seen
    /// (Salesforce locator URLs are unique), new ones are counted under
    /// their parent path so the map stays bounded.
    pub(crate) fn count_request(&self, path: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut paths = lock(&self.paths);
        let key = if paths.len() >= PATHS_CAP && !paths.contains_key(path) {
            path.rsplit_once('/').map_or(path, |(parent, _)| parent)
        } else {
            path
        };
        *paths.entry(key.to_owned()).or_insert(0) += 1;
    }

    /// Counts one data request and returns its 1-based number.
    pub(crate) fn count_data_request(&self) -> u64 {
        let mut times = lock(&self.data_request_times);
        if times.len() >= TIMES_CAP {
            times.pop_front();
        }
        times.push_back(Instant::now());
        self.data_requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Logs one data request's method, path and query (the last [`LOG_CAP`] are kept).
    pub(crate) fn log_request(&self, entry: String) {
        let mut log = lock(&self.request_log);
        if log.len() >= LOG_CAP {
            log.pop_front();
        }
        log.push_back(entry);
    }

    /// The most recent data requests, oldest first.
    pub(crate) fn request_log(&self) -> Vec<String> {
        lock(&self.request_log).iter().cloned().collect()
    }

    /// Arrival times of the most recent data requests, oldest first.
    pub(crate) fn data_request_times(&self) -> Vec<Instant> {
        lock(&self.data_request_times).iter().copied().collect()
    }

    /// Marks the current data request as costing no quota.
    pub(crate) fn count_free_request(&self) {
        self.free_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Data requests served that cost quota.
    pub(crate) fn billed_requests(&self) -> u64 {
        self.data_request_count().saturating_sub(self.free_requests.load(Ordering::Relaxed))
    }

    /// Every request served so far.
    pub(crate) fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Data (non-token) requests served so far.
    pub(crate) fn data_request_count(&self) -> u64 {
        self.data_requests.load(Ordering::Relaxed)
    }

    /// Requests whose path starts with `prefix`.
    pub(crate) fn requests_for(&self, prefix: &str) -> u64 {
        lock(&self.paths).iter().filter(|(p, _)| p.starts_with(prefix)).map(|(_, n)| *n).sum()
    }

    /// Counts a request in a fixed window of `interval` and returns how many
    /// the current window has seen (for rate-limit headers).
    pub(crate) fn window_count(&self, interval: Duration) -> u64 {
        let mut w = lock(&self.window);
        let now = Instant::now();
        match w.0 {
            Some(start) if now.duration_since(start) < interval => w.1 += 1,
            _ => *w = (Some(now), 1),
        }
        w.1
    }

    /// Stores a server-side cursor payload; returns its id.
    pub(crate) fn register(&self, payload: String) -> String {
        let mut reg = lock(&self.registry);
        reg.next += 1;
        let id = format!("{:012}", reg.next);
        reg.map.insert(id.clone(), payload);
        reg.order.push_back(id.clone());
        while reg.order.len() > REGISTRY_CAP {
            if let Some(old) = reg.order.pop_front() {
                reg.map.remove(&old);
            }
        }
        id
    }

    /// The payload of a server-side cursor.
    pub(crate) fn lookup(&self, id: &str) -> Option<String> {
        lock(&self.registry).map.get(id).cloned()
    }
}

/// Merges `over` into `base`: objects key by key, anything else replaced.
pub(crate) fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Whether `s` looks like an email address as the providers check it: one `@`, a local
/// part, a dotted domain, no spaces.
pub(crate) fn valid_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s.contains(' ')
    })
}

/// Marks `response` as the answer of an applied write.
pub(crate) fn applied(mut response: Response) -> Response {
    response.extensions_mut().insert(WriteApplied);
    response
}

/// A write's body: JSON, or a form as an object of strings; `null` when empty or neither.
pub(crate) fn write_body(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let form = super::util::Params::parse(&text);
        let map: serde_json::Map<String, Value> =
            form.pairs().map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))).collect();
        if map.is_empty() { Value::Null } else { Value::Object(map) }
    })
}
