//! The shared HTTP client: `{name}` request templates (`template`), authentication,
//! response classification, parsing only the parts of a body a reader uses (`shape`),
//! retries (backon) and rate limits (`ratelimit`), with every call and wait counted for
//! the run log and reported as it happens to the session's [`CallObserver`] (the
//! metrics).

pub mod auth;
pub mod budgets;
pub mod classify;
pub mod ratelimit;
pub mod shape;
pub mod template;
pub mod webhook;
pub mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
use reqwest::header::HeaderMap;
use serde_json::Value;

use self::auth::{AuthState, CredentialSink};
use self::classify::{Verdict, classify};
pub use self::ratelimit::{Class, QuotaHandle, RateLimiters};
use self::ratelimit::{reset_in, retry_after};
use self::template::{MissingVariable, Vars};
use crate::config::{DEFAULT_MAX_RESPONSE_BYTES, DaemonSettings, Method, ResponseAction, ResponseRule};
use crate::model::ErrorClass;

/// What went wrong talking to a provider.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Template(#[from] MissingVariable),
    #[error("credentials: {0}")]
    Credentials(String),
    /// Obtaining a token failed; `permanent` when the grant itself was refused.
    #[error("{message}")]
    Token { message: String, permanent: bool },
    /// The provider answered with a permanent error.
    #[error("{method} {path} failed with HTTP {status}: {message}")]
    Permanent { method: &'static str, path: String, status: u16, message: String },
    /// The provider kept rejecting the credentials after a fresh token.
    #[error("{path}: the provider rejects the credentials ({message})")]
    AuthRejected { path: String, message: String },
    /// Transient failures did not stop within the retry budget.
    #[error("{path}: gave up after {attempts} attempts: {last}")]
    Exhausted { path: String, attempts: u32, last: String },
    #[error("{0}")]
    Invalid(String),
    /// The response says the stream state sent with the request expired; `body` is the
    /// response's JSON (it may carry a fresh state).
    #[error("{method} {path}: the stream state expired (HTTP {status}: {message})")]
    StateExpired { method: &'static str, path: String, status: u16, message: String, body: Option<Box<Value>> },
    /// A response body was larger than the limit; not retried.
    #[error(
        "{origin}{path}: the response is larger than the limit of {limit} bytes (raise `max_response_bytes` in \
         the manifest or `daemon.max_response_bytes` if this is expected)"
    )]
    TooLarge { origin: String, path: String, limit: u64 },
}

impl HttpError {
    /// The kind of failure, for error reports.
    pub fn class(&self) -> ErrorClass {
        match self {
            _ if self.needs_reauth() => ErrorClass::Auth,
            Self::Template(_) | Self::Invalid(_) | Self::Credentials(_) => ErrorClass::Config,
            Self::TooLarge { .. } => ErrorClass::Data,
            Self::Token { .. } => ErrorClass::Transient,
            Self::Permanent { status: 401 | 403, .. } | Self::AuthRejected { .. } => ErrorClass::Auth,
            Self::Permanent { .. } | Self::StateExpired { .. } => ErrorClass::Client,
            Self::Exhausted { last, .. } if last.starts_with("still rate limited") => ErrorClass::RateLimited,
            Self::Exhausted { .. } => ErrorClass::Transient,
        }
    }

    /// The HTTP status of the failing response, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Permanent { status, .. } | Self::StateExpired { status, .. } => Some(*status),
            Self::Exhausted { last, .. } => {
                let digits = last.strip_prefix("HTTP ")?.get(..3)?;
                digits.parse().ok()
            }
            _ => None,
        }
    }

    /// The request path that failed (no query string, no host).
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Self::Permanent { path, .. }
            | Self::StateExpired { path, .. }
            | Self::AuthRejected { path, .. }
            | Self::Exhausted { path, .. }
            | Self::TooLarge { path, .. } => Some(path.as_str()),
            _ => None,
        }
    }

    /// Whether the connection needs new credentials from an operator.
    pub fn needs_reauth(&self) -> bool {
        matches!(self, Self::AuthRejected { .. } | Self::Token { permanent: true, .. } | Self::Credentials(_))
    }
}

/// Retry, wait and timeout bounds.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request for transient failures, the first included.
    pub max_attempts: u32,
    /// Time one request may take over all its attempts and backoff (rate-limit waits
    /// not included).
    pub max_elapsed: Duration,
    /// First backoff delay; doubles per attempt, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Longest single rate-limit wait honoured.
    pub max_rate_limit_wait: Duration,
    /// Rate-limit responses allowed for one request before giving up.
    pub max_rate_limit_waits: u32,
    /// Connect timeout of every request.
    pub connect_timeout: Duration,
    /// Total timeout of one attempt: connect, send and the whole body.
    pub request_timeout: Duration,
    /// Largest response body read (after decompression); a larger one fails the request.
    pub max_response_bytes: u64,
    /// What the requests read, named in errors (e.g. "provider `hubspot` stream `contacts`").
    pub origin: Option<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            max_elapsed: Duration::from_secs(600),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_rate_limit_wait: Duration::from_secs(300),
            max_rate_limit_waits: 50,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            origin: None,
        }
    }
}

impl RetryPolicy {
    /// The policy the daemon settings ask for: their timeouts and body limit, the
    /// default retry bounds.
    pub fn from_settings(daemon: &DaemonSettings) -> Self {
        Self {
            request_timeout: Duration::from_secs(daemon.request_timeout_secs.max(1)),
            connect_timeout: Duration::from_secs(daemon.connect_timeout_secs.max(1)),
            max_response_bytes: daemon.max_response_bytes,
            ..Self::default()
        }
    }

    /// Exponential backoff with jitter, bounded by attempts and by total delay.
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay.max(self.base_delay))
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_total_delay(Some(self.max_elapsed))
    }
}

/// Counters of one run's HTTP traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    pub http_calls: u64,
    pub retries: u64,
    pub rate_limit_waits: u64,
    pub rate_limit_wait_ms: u64,
    /// Bytes of the response bodies read.
    pub bytes_received: u64,
    /// Responses by status class: index 1–5 for 1xx–5xx, 0 for no response (transport error).
    pub by_class: [u64; 6],
    /// Response times of the requests that got a response (headers and body).
    pub latency: Latency,
}

/// A response-time histogram with logarithmic buckets: fixed size (so [`CallStats`] stays
/// `Copy` and a run's memory does not grow with its requests), percentiles within about
/// 12 % (half a bucket) from 0.05 ms to 80 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    buckets: [u32; Latency::BUCKETS],
}

impl Default for Latency {
    fn default() -> Self {
        Self { buckets: [0; Self::BUCKETS] }
    }
}

impl Latency {
    const BUCKETS: usize = 64;
    /// Lower edge of bucket 0, in milliseconds.
    const FLOOR_MS: f64 = 0.05;
    /// Each bucket's upper edge over its lower one.
    const GROWTH: f64 = 1.25;

    pub fn record(&mut self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let index = if ms <= Self::FLOOR_MS { 0.0 } else { (ms / Self::FLOOR_MS).ln() / Self::GROWTH.ln() };
        let index = (index as usize).min(Self::BUCKETS - 1);
        self.buckets[index] = self.buckets[index].saturating_add(1);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|&n| u64::from(n)).sum()
    }

    /// The `q`-quantile (0–1) in milliseconds: the geometric middle of the bucket holding
    /// it; `None` with no samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(Self::FLOOR_MS * Self::GROWTH.powf(i as f64 + 0.5));
            }
        }
        None
    }
}

/// Watches a session's traffic as it happens (the process's metrics), while
/// [`CallStats`] sums it up for the run log.
pub trait CallObserver: Send + Sync {
    /// A request ended: `class` is its status class (1–5), or 0 when no response arrived;
    /// `elapsed` runs from sending it to the end of its body (or to the failure).
    fn request(&self, class: usize, elapsed: Duration);
    /// A failed attempt is about to be retried.
    fn retry(&self);
    /// The session waits `waited` for a rate limit (the provider's or its own quota).
    fn rate_limit_wait(&self, waited: Duration);
}

/// A request before authentication.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
    /// Where the records are in the response and which of their parts the reader
    /// uses; `None` parses the whole body.
    pub shape: Option<std::sync::Arc<shape::BodyShape>>,
    /// Rules checked before the session's (a stream's own `state.expired`); set (if
    /// empty) on the requests of a stream that keeps a state: only those may answer
    /// `state_expired`, elsewhere it fails as `fail` does.
    pub rules: Option<std::sync::Arc<[ResponseRule]>>,
}

#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
}

/// A classified successful response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// The parsed body (its records projected as the request's shape says); `None` for
    /// an empty response.
    pub json: Option<Value>,
    /// The body as the provider sent it.
    pub body: Vec<u8>,
    pub action: ResponseAction,
}

/// Builds the reqwest clients: data calls follow no redirects to other hosts, token
/// calls follow none at all. Both connect within `policy.connect_timeout`; data calls
/// also get `policy.request_timeout` per attempt (set again on each request).
pub fn client(policy: &RetryPolicy) -> Result<(reqwest::Client, reqwest::Client), reqwest::Error> {
    let data = reqwest::Client::builder()
        .connect_timeout(policy.connect_timeout)
        .timeout(policy.request_timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let token = reqwest::Client::builder()
        .connect_timeout(policy.connect_timeout)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok((data, token))
}

/// One connection's HTTP session for a run.
pub struct Session<'s> {
    pub client: reqwest::Client,
    pub token_client: reqwest::Client,
    pub auth: AuthState,
    pub rules: Vec<ResponseRule>,
    pub retry: RetryPolicy,
    pub stats: CallStats,
    pub sink: Option<&'s dyn CredentialSink>,
    /// The quota every request waits on (`None`: the manifest declares no limit).
    pub quota: Option<QuotaHandle>,
    /// Sees every request, retry and rate-limit wait when it happens.
    pub observer: Option<&'s dyn CallObserver>,
}

/// Why one attempt did not produce a response.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt (5xx, timeout, reset, truncated body).
    Transient { message: String, retry_after: Option<Duration> },
    /// Final.
    Fatal(HttpError),
}

impl Failure {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// What one `send` remembers across its attempts.
struct SendState {
    /// A token was already refreshed for this request.
    refreshed: bool,
    /// Rate-limit responses so far.
    throttled: u32,
    /// Delays for rate-limit responses that name no wait.
    throttle_backoff: ExponentialBackoff,
}

/// Where a foreground caller watches rate-limit waits live (the `sync` progress bar):
/// set it for the run's task with `RATE_LIMIT_WATCH.scope(watch, run)`; without it,
/// sessions report nothing.
#[derive(Debug, Default)]
pub struct WaitWatch {
    /// Since when the current request waits, and until when if the provider said.
    waiting: std::sync::Mutex<Option<(Instant, Option<Instant>)>>,
}

impl WaitWatch {
    /// The wait under way: since when, and until when if known.
    pub fn current(&self) -> Option<(Instant, Option<Instant>)> {
        *self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(value: Option<(Instant, Option<Instant>)>) {
        let _ = RATE_LIMIT_WATCH.try_with(|w| {
            *w.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = value;
        });
    }
}

tokio::task_local! {
    /// The [`WaitWatch`] of the task's run, if a caller watches.
    pub static RATE_LIMIT_WATCH: std::sync::Arc<WaitWatch>;
}

/// Limiter waits shorter than this are pacing noise, not rate-limit waits.
const COUNTED_WAIT: Duration = Duration::from_millis(5);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Session<'_> {
    /// Marks the session's requests as writes: on a quota that reads wait on too, they
    /// get at least the write share of the grants ([`RateLimiters::with_write_share`]).
    pub fn for_writes(&mut self) {
        self.quota = self.quota.take().map(QuotaHandle::for_writes);
    }

    /// Sends a request: waits for the quota, authenticates, classifies; retries what
    /// is transient with backoff (backon), waits out rate limits (not counted as
    /// attempts), refreshes an expired token once, and fails at once on a permanent error.
    pub async fn send(&mut self, request: &Request, vars: &Vars<'_>) -> Result<Response, HttpError> {
        let path = display_path(&request.url);
        let policy = self.retry.clone();
        let started = Instant::now();
        let waited_before = self.stats.rate_limit_wait_ms;
        let throttle_backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(policy.base_delay)
            .with_max_delay(policy.max_delay.max(policy.base_delay))
            .without_max_times()
            .build();
        let state = SendState { refreshed: false, throttled: 0, throttle_backoff };
        let observer = self.observer;
        let cell = tokio::sync::Mutex::new((&mut *self, state));
        let retries = AtomicU64::new(0);
        let result = (|| async {
            let mut guard = cell.lock().await;
            let (session, state) = &mut *guard;
            session.attempt(request, vars, &path, state).await
        })
        .retry(policy.backoff())
        .when(Failure::is_transient)
        .adjust(|failure, next| {
            // Rate-limit waits do not use up the time budget.
            let waited = cell.try_lock().map_or(0, |g| g.0.stats.rate_limit_wait_ms - waited_before);
            let elapsed = started.elapsed().saturating_sub(Duration::from_millis(waited));
            let next = match failure {
                Failure::Transient { retry_after: Some(after), .. } => {
                    next.map(|_| (*after).min(policy.max_rate_limit_wait))
                }
                // The jitter adds up to the delay again: `max_delay` (a tenant's
                // `max_backoff_secs`) bounds what is waited, jitter included.
                _ => next.map(|d| d.min(policy.max_delay.max(policy.base_delay))),
            };
            next.filter(|d| elapsed + *d <= policy.max_elapsed)
        })
        .notify(|failure, wait| {
            retries.fetch_add(1, Ordering::Relaxed);
            if let Some(o) = observer {
                o.retry();
            }
            if let Failure::Transient { message, .. } = failure {
                tracing::debug!(path = %path, wait_ms = millis(wait), "retrying: {message}");
            }
        })
        .await;
        let retries = retries.into_inner();
        self.stats.retries += retries;
        result.map_err(|failure| match failure {
            Failure::Fatal(e) => e,
            Failure::Transient { message, .. } => {
                HttpError::Exhausted { path, attempts: u32::try_from(retries + 1).unwrap_or(u32::MAX), last: message }
            }
        })
    }

    /// Waits for the quota; a wait longer than pacing noise counts as a rate-limit wait.
    async fn wait_for_quota(&mut self) {
        let Some(quota) = &self.quota else { return };
        WaitWatch::set(Some((Instant::now(), None)));
        let waited = quota.acquire().await;
        WaitWatch::set(None);
        if waited >= COUNTED_WAIT {
            self.stats.rate_limit_waits += 1;
            self.stats.rate_limit_wait_ms += millis(waited);
            if let Some(o) = self.observer {
                o.rate_limit_wait(waited);
            }
        }
    }

    /// One attempt: as many rate-limit waits and one token refresh as needed, until a
    /// response that is a success or a failure.
    async fn attempt(
        &mut self,
        request: &Request,
        vars: &Vars<'_>,
        path: &str,
        state: &mut SendState,
    ) -> Result<Response, Failure> {
        let transient = |message: String| Failure::Transient { message, retry_after: None };
        loop {
            // Quota first, then the token: a token checked before a long quota wait could
            // expire while the request waits.
            self.wait_for_quota().await;
            self.auth.ensure(&self.token_client, vars, self.sink).await.map_err(Failure::Fatal)?;
            let mut req = self
                .client
                .request(
                    reqwest::Method::from_bytes(request.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET),
                    &request.url,
                )
                .timeout(self.retry.request_timeout);
            if !request.query.is_empty() {
                req = req.query(&request.query);
            }
            for (k, v) in &request.headers {
                req = req.header(k, v);
            }
            req = match &request.body {
                Some(Body::Json(v)) => req.json(v),
                Some(Body::Form(f)) => req.form(f),
                None => req,
            };
            req = self.auth.apply(req, vars).map_err(Failure::Fatal)?;
            self.stats.http_calls += 1;
            let sent = Instant::now();
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.stats.by_class[0] += 1;
                    if let Some(o) = self.observer {
                        o.request(0, sent.elapsed());
                    }
                    return Err(transient(format!("request failed: {}", describe_transport(e))));
                }
            };
            let status = resp.status().as_u16();
            let class = usize::from(status / 100).clamp(1, 5);
            self.stats.by_class[class] += 1;
            let headers = resp.headers().clone();
            let bytes = self.read_body(resp, path).await;
            if let Some(o) = self.observer {
                o.request(class, sent.elapsed());
            }
            let bytes = bytes?;
            self.stats.bytes_received += bytes.len() as u64;
            self.stats.latency.record(sent.elapsed());
            let json: Option<Value> =
                if bytes.is_empty() { None } else { shape::parse_body(&bytes, request.shape.as_deref()).ok() };
            let Verdict { action, message } = match request.rules.as_deref() {
                Some(first) if first.iter().any(|r| classify::matches(r, status, &bytes, json.as_ref())) => {
                    classify(first, status, &bytes, json.as_ref())
                }
                _ => classify(&self.rules, status, &bytes, json.as_ref()),
            };
            let message = message.unwrap_or_else(|| format!("HTTP {status}"));
            if action != ResponseAction::RateLimited
                && let Some(quota) = &self.quota
                && let Some(pause) = quota.observe(&headers, self.retry.max_rate_limit_wait)
            {
                tracing::debug!(path, pause_ms = millis(pause), "the provider reports its budget nearly spent");
            }
            match action {
                ResponseAction::Success if json.is_none() && !bytes.is_empty() => {
                    return Err(transient(format!("HTTP {status} with a truncated or invalid JSON body")));
                }
                ResponseAction::Success | ResponseAction::Empty => {
                    let action = if json.is_none() { ResponseAction::Empty } else { action };
                    return Ok(Response { status, headers, json, body: bytes, action });
                }
                ResponseAction::Retry => {
                    let retry_after = retry_after(&headers, self.retry_after_header());
                    return Err(Failure::Transient { message: format!("HTTP {status}: {message}"), retry_after });
                }
                ResponseAction::RateLimited => {
                    state.throttled += 1;
                    if state.throttled > self.retry.max_rate_limit_waits {
                        return Err(Failure::Fatal(HttpError::Exhausted {
                            path: path.to_owned(),
                            attempts: state.throttled,
                            last: format!("still rate limited: {message}"),
                        }));
                    }
                    let wait = self
                        .throttle_wait(&headers)
                        .or_else(|| state.throttle_backoff.next())
                        .unwrap_or(self.retry.max_delay)
                        .min(self.retry.max_rate_limit_wait);
                    self.stats.rate_limit_waits += 1;
                    self.stats.rate_limit_wait_ms += millis(wait);
                    if let Some(o) = self.observer {
                        o.rate_limit_wait(wait);
                    }
                    tracing::debug!(path, wait_ms = millis(wait), "rate limited: {message}");
                    let until = Instant::now() + wait;
                    if let Some(quota) = &self.quota {
                        // Every request on this quota waits, not only this one.
                        quota.hold_until(until);
                    }
                    WaitWatch::set(Some((Instant::now(), Some(until))));
                    tokio::time::sleep_until(until.into()).await;
                    WaitWatch::set(None);
                }
                ResponseAction::AuthExpired => {
                    if state.refreshed || !self.auth.can_refresh() {
                        return Err(Failure::Fatal(HttpError::AuthRejected { path: path.to_owned(), message }));
                    }
                    state.refreshed = true;
                    self.auth.invalidate();
                }
                // Only a request that carries a stream state can have sent an expired one.
                ResponseAction::StateExpired if request.rules.is_some() => {
                    return Err(Failure::Fatal(HttpError::StateExpired {
                        method: request.method.as_str(),
                        path: path.to_owned(),
                        status,
                        message,
                        body: json.map(Box::new),
                    }));
                }
                ResponseAction::Fail | ResponseAction::StateExpired => {
                    return Err(Failure::Fatal(HttpError::Permanent {
                        method: request.method.as_str(),
                        path: path.to_owned(),
                        status,
                        message,
                    }));
                }
            }
        }
    }

    /// Reads a response body chunk by chunk, failing (not retried) as soon as it grows
    /// past `max_response_bytes`, so an oversized page never sits in memory whole.
    async fn read_body(&self, mut resp: reqwest::Response, path: &str) -> Result<Vec<u8>, Failure> {
        let limit = self.retry.max_response_bytes;
        let too_large = || {
            let origin = self.retry.origin.as_ref().map(|o| format!("{o}: ")).unwrap_or_default();
            Failure::Fatal(HttpError::TooLarge { origin, path: path.to_owned(), limit })
        };
        let declared = resp.content_length();
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let capacity = declared.unwrap_or(0).min(limit).min(8 * 1024 * 1024);
        let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        loop {
            let chunk = resp.chunk().await.map_err(|e| Failure::Transient {
                message: format!("reading the response failed: {}", describe_transport(e)),
                retry_after: None,
            })?;
            let Some(chunk) = chunk else { break };
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn retry_after_header(&self) -> &str {
        self.quota.as_ref().map_or("retry-after", |q| q.spec().retry_after_header.as_str())
    }

    /// What a throttle response asks for: `Retry-After`, else the manifest's reset header.
    fn throttle_wait(&self, headers: &HeaderMap) -> Option<Duration> {
        retry_after(headers, self.retry_after_header()).or_else(|| {
            let reset = self.quota.as_ref()?.spec().reset_header.as_deref()?;
            reset_in(headers, reset)
        })
    }
}

/// A transport error with its underlying causes (connection refused, DNS failure, TLS
/// certificate problems, timeouts) instead of only "error sending request"; the URL,
/// which may carry keys in its query, is left out.
pub fn describe_transport(e: reqwest::Error) -> String {
    use std::error::Error as _;
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = plain_certificate_error(cause.to_string());
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// rustls names certificate problems by their Rust names
/// (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`): say them in words.
fn plain_certificate_error(text: String) -> String {
    let Some(why) = text.strip_prefix("invalid peer certificate: ") else {
        return text;
    };
    let plain = [
        ("CaUsedAsEndEntity", "a CA certificate is used as the server's own (end-entity) certificate"),
        ("UnknownIssuer", "unknown issuer (not signed by a trusted certificate authority)"),
        ("NotValidForName", "not valid for this host name"),
        ("NotValidYet", "not valid yet"),
        ("Expired", "expired"),
        ("Revoked", "revoked"),
        ("BadSignature", "bad signature"),
    ]
    .into_iter()
    .find(|(name, _)| why.contains(name))
    .map_or(why, |(_, words)| words);
    format!("invalid peer certificate: {plain}")
}

/// The URL without its query (queries may carry keys).
pub fn display_path(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_fall_within_half_a_bucket() {
        let mut latency = Latency::default();
        assert_eq!(latency.quantile_ms(0.5), None);
        // 1..=100 ms, one sample each: the median is 50 ms, p99 is 99 ms.
        for ms in 1..=100u64 {
            latency.record(Duration::from_millis(ms));
        }
        assert_eq!(latency.count(), 100);
        let within = |got: f64, want: f64| (got / want - 1.0).abs() <= 0.13;
        let p50 = latency.quantile_ms(0.5).unwrap();
        let p99 = latency.quantile_ms(0.99).unwrap();
        assert!(within(p50, 50.0), "p50 {p50}");
        assert!(within(p99, 99.0), "p99 {p99}");
        // Out-of-range samples land in the edge buckets instead of panicking.
        latency.record(Duration::ZERO);
        latency.record(Duration::from_secs(3600));
        assert_eq!(latency.count(), 102);
    }
}
