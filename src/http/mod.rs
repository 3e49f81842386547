//! The shared HTTP client: authentication, response classification, retries and
//! rate-limit waits, with every call counted for the run log.

pub mod auth;
pub mod classify;

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use self::auth::{AuthState, CredentialSink};
use self::classify::{Verdict, classify};
use crate::config::{Method, ResponseAction, ResponseRule};
use crate::engine::template::{MissingVariable, Vars};

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
}

impl HttpError {
    /// Whether the connection needs new credentials from an operator.
    pub fn needs_reauth(&self) -> bool {
        matches!(self, Self::AuthRejected { .. } | Self::Token { permanent: true, .. } | Self::Credentials(_))
    }
}

/// Retry and wait bounds.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Longest single rate-limit wait honoured.
    pub max_rate_limit_wait: Duration,
    /// Rate-limit waits allowed for one request before giving up.
    pub max_rate_limit_waits: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_rate_limit_wait: Duration::from_secs(300),
            max_rate_limit_waits: 50,
        }
    }
}

/// Counters of one run's HTTP traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    pub http_calls: u64,
    pub retries: u64,
    pub rate_limit_waits: u64,
    pub rate_limit_wait_ms: u64,
}

/// A request before authentication.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
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
    /// The parsed body; `None` for an empty response.
    pub json: Option<Value>,
    pub action: ResponseAction,
}

/// Builds the reqwest clients: data calls follow no redirects to other hosts, token
/// calls follow none at all.
pub fn client() -> Result<(reqwest::Client, reqwest::Client), reqwest::Error> {
    let data = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let token = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
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
}

impl Session<'_> {
    /// Sends a request: authenticates, classifies, retries what is transient, waits
    /// out rate limits, refreshes an expired token once.
    pub async fn send(&mut self, request: &Request, vars: &Vars<'_>) -> Result<Response, HttpError> {
        let path = display_path(&request.url);
        let mut attempts = 0u32;
        let mut waits = 0u32;
        let mut refreshed = false;
        loop {
            self.auth.ensure(&self.token_client, vars, self.sink).await?;
            let mut req = self.client.request(
                reqwest::Method::from_bytes(request.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET),
                &request.url,
            );
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
            req = self.auth.apply(req, vars)?;
            self.stats.http_calls += 1;
            let outcome = match req.send().await {
                Err(e) => Err(format!("request failed: {}", e.without_url())),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Err(e) => Err(format!("reading the response failed: {}", e.without_url())),
                        Ok(bytes) => Ok((status, headers, bytes)),
                    }
                }
            };
            let (status, headers, bytes) = match outcome {
                Ok(x) => x,
                Err(last) => {
                    attempts += 1;
                    self.backoff(attempts, &path, last).await?;
                    continue;
                }
            };
            let json: Option<Value> = if bytes.is_empty() { None } else { serde_json::from_slice(&bytes).ok() };
            let Verdict { action, message } = classify(&self.rules, status, &bytes, json.as_ref());
            let message = message.unwrap_or_else(|| format!("HTTP {status}"));
            match action {
                ResponseAction::Success if json.is_none() && !bytes.is_empty() => {
                    attempts += 1;
                    self.backoff(attempts, &path, format!("HTTP {status} with a truncated or invalid JSON body"))
                        .await?;
                }
                ResponseAction::Success | ResponseAction::Empty => {
                    let action = if json.is_none() { ResponseAction::Empty } else { action };
                    return Ok(Response { status, headers, json, action });
                }
                ResponseAction::Retry => {
                    attempts += 1;
                    self.backoff(attempts, &path, format!("HTTP {status}: {message}")).await?;
                }
                ResponseAction::RateLimited => {
                    waits += 1;
                    if waits > self.retry.max_rate_limit_waits {
                        return Err(HttpError::Exhausted {
                            path,
                            attempts: waits,
                            last: format!("still rate limited: {message}"),
                        });
                    }
                    let wait = rate_limit_wait(&headers)
                        .unwrap_or_else(|| self.delay(waits))
                        .min(self.retry.max_rate_limit_wait);
                    self.stats.rate_limit_waits += 1;
                    self.stats.rate_limit_wait_ms += u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                    tracing::debug!(path = %path, wait_ms = wait.as_millis() as u64, "rate limited: {message}");
                    tokio::time::sleep(wait).await;
                }
                ResponseAction::AuthExpired => {
                    if refreshed || !self.auth.can_refresh() {
                        return Err(HttpError::AuthRejected { path, message });
                    }
                    refreshed = true;
                    self.auth.invalidate();
                }
                ResponseAction::Fail => {
                    return Err(HttpError::Permanent { method: request.method.as_str(), path, status, message });
                }
            }
        }
    }

    fn delay(&self, attempt: u32) -> Duration {
        let exp = self.retry.base_delay.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.retry.max_delay);
        // Jitter: up to a quarter of the delay, from the clock's sub-second noise.
        let noise = u64::from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()),
        );
        let quarter = u64::try_from(capped.as_millis() / 4).unwrap_or(0).max(1);
        capped + Duration::from_millis(noise % quarter)
    }

    async fn backoff(&mut self, attempts: u32, path: &str, last: String) -> Result<(), HttpError> {
        if attempts >= self.retry.max_attempts {
            return Err(HttpError::Exhausted { path: path.to_owned(), attempts, last });
        }
        self.stats.retries += 1;
        let wait = self.delay(attempts);
        tracing::debug!(path, attempt = attempts, wait_ms = wait.as_millis() as u64, "retrying: {last}");
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// `Retry-After` seconds (or an HTTP date), else a reset header in seconds.
fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(v) = text("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return Some(Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)));
        }
        if let Ok(at) = chrono::DateTime::parse_from_rfc2822(v) {
            let secs = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds().max(0);
            return Some(Duration::from_millis(u64::try_from(secs).unwrap_or(0)));
        }
    }
    None
}

/// The URL without its query (queries may carry keys).
pub fn display_path(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}
