//! The authenticated JSON API under `/api/v1/`.
//!
//! Every request carries an API key (`Authorization: Bearer trb_…`, see [`keys`]). An
//! operator key may do everything; a tenant key acts on its own tenant only; a `viewer`
//! key only reads. What the control socket does (status, tenants, jobs, runs, trigger,
//! pause/resume, intelligence, webhooks, writes) is sent as the same
//! [`ControlMessage::Request`] the socket sends, with the key's scope and
//! [`Caller::ApiKey`], so the daemon authorizes and handles both front ends in one
//! place. Reads of a run's details, records and the change feed go to the store, the
//! scope checked here.
//!
//! Errors are `{"error": {"code", "message"}}` with a stable code (see [`Code`]). Every
//! refused request is logged (the key's name, never the key) and counted in
//! `tributary_api_requests_denied`; an address that sends too many missing or bad keys
//! is answered 429 with `Retry-After` until its minute ends. The OpenAPI document is
//! generated from the handlers below and served at `/api/v1/openapi.json`.

mod handlers;
pub use handlers::routes;
pub mod keys;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, OriginalUri, Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Catalog;
use crate::control::ControlMessage;
use crate::control::protocol::{
    Caller, Command, Request, Scope, Target, VERSION, WebhookAdd, WebhookCommand, WebhookDeliveries, WebhookId,
    WebhookList, WebhookReplay, WriteCommand, WriteId, WriteList, WriteRetry, WriteSubmit, authorize,
};
use crate::model::{EntityName, TenantId};
use crate::store::{RecordFilter, RecordKey, Store};
use crate::telemetry::{ApiDeniedLabels, Metrics};

/// The API's prefix.
pub const PREFIX: &str = "/api/v1";
/// How long a request waits for the daemon's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// The longest page of records or changes.
const MAX_PAGE: i64 = 1000;

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The daemon's control channel (the one the socket and signals feed).
    pub control: mpsc::Sender<ControlMessage>,
    pub metrics: Arc<Metrics>,
    /// The configuration in force (entities and their fields, for record reads).
    pub catalog: Arc<RwLock<Arc<Catalog>>>,
    pub bad_keys: Arc<BadKeys>,
    /// The largest request body read.
    pub max_body: usize,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// The authenticated key behind a request.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub name: String,
    /// `None`: an operator key.
    pub tenant: Option<String>,
    pub role: Role,
}

impl ApiCaller {
    fn scope(&self) -> Scope {
        match &self.tenant {
            None => Scope::Operator,
            Some(t) => Scope::Tenant { tenant: t.clone() },
        }
    }

    /// A tenant key may name only its own tenant.
    fn own(&self, tenant: &str) -> Result<(), ApiError> {
        match &self.tenant {
            Some(own) if own != tenant => {
                Err(ApiError::forbidden(format!("a key of tenant `{own}` cannot act on tenant `{tenant}`")))
            }
            _ => Ok(()),
        }
    }
}

/// Whether a route changes something (refused to viewer keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Change,
}

/// The stable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthorized,
    Forbidden,
    NotFound,
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::BadRequest => "bad_request",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }

    /// An error the daemon or the store answered, classified by what it says.
    fn from_daemon(message: String) -> Self {
        Self::new(classify(&message), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "code": self.code.as_str(), "message": self.message } }));
        let mut response = (self.code.status(), body).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::from_daemon(e.to_string())
    }
}

/// The code of an error message the daemon answered with (its replies carry text only).
pub fn classify(message: &str) -> Code {
    let m = message;
    if m.contains("cannot act on tenant")
        || m.contains("needs the operator scope")
        || m.contains("must name its tenant")
        || m.contains("not allowed")
    {
        Code::Forbidden
    } else if m.starts_with("no webhook endpoint `")
        || m.starts_with("no write `")
        || m.starts_with("no tenant `")
        || m.contains("not found")
    {
        Code::NotFound
    } else if m.starts_with("the store is")
        || m.starts_with("store unreachable")
        || m.contains("shutting down")
        || m.contains("did not answer in time")
        || m.starts_with("database error")
    {
        Code::Unavailable
    } else {
        Code::BadRequest
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Missing or bad keys per client address: beyond `limit` in a minute, the address is
/// refused (good key or not) until its minute ends.
pub struct BadKeys {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Addresses tracked before expired entries are dropped.
const TRACKED: usize = 10_000;

impl BadKeys {
    pub fn new(per_minute: u32) -> Self {
        Self { limit: per_minute.max(1), window: Duration::from_secs(60), seen: Mutex::new(HashMap::new()) }
    }

    /// How long `ip` must wait, if it is over its limit.
    fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (start, count) = seen.get(&ip)?;
        let elapsed = start.elapsed();
        (elapsed < self.window && *count >= self.limit).then(|| self.window - elapsed)
    }

    fn failed(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= TRACKED {
            let window = self.window;
            seen.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = seen.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The API mounted on the daemon's listener: authentication, body limit, JSON errors.
pub fn router(state: ApiState) -> Router {
    let (routes, doc) = routes();
    let doc = Arc::new(serde_json::to_value(&doc).unwrap_or_else(|e| json!({ "error": e.to_string() })));
    routes
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(Extension(OpenApiJson(doc)))
        .layer(DefaultBodyLimit::max(state.max_body))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

#[derive(Clone)]
struct OpenApiJson(Arc<Value>);

#[derive(OpenApi)]
#[openapi(
    info(title = "tributary API", description = "The daemon's authenticated HTTP API (see README: HTTP API)."),
    modifiers(&Bearer),
    security(("bearer" = [])),
    tags(
        (name = "daemon", description = "Status, tenants, jobs and runs"),
        (name = "control", description = "Trigger, pause and resume syncs"),
        (name = "data", description = "Records, the change feed, intelligence"),
        (name = "webhooks", description = "Outbound event webhooks"),
        (name = "writes", description = "Write-back to providers"),
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme =
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("trb_…").build());
        openapi.components.get_or_insert_with(Default::default).add_security_scheme("bearer", scheme);
    }
}

/// Checks the key: refused (401) when missing, malformed, unknown, wrong, expired or
/// revoked; an address over its limit of such requests is refused (429) first. The
/// key's row is read on every request, so a revocation applies to the next one.
async fn authenticate(
    State(s): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    mut req: axum::extract::Request,
    next: Next,
) -> Response {
    let path = req.extensions().get::<OriginalUri>().map_or_else(|| req.uri().path(), |u| u.path()).to_owned();
    if path == format!("{PREFIX}/openapi.json") {
        return next.run(req).await;
    }
    // Merged into the listener's router, the API's fallback also answers paths outside
    // it (a webhook path on the main listener): those are simply not found.
    if path != PREFIX && !path.starts_with(&format!("{PREFIX}/")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let ip = client.ip();
    if let Some(wait) = s.bad_keys.blocked(ip) {
        deny(&s.metrics, "rate_limited", &path, client, None, "too many requests with a bad API key");
        let secs = wait.as_secs().max(1);
        return ApiError {
            code: Code::RateLimited,
            message: format!("too many requests with a missing or bad API key from {ip}; retry in {secs} s"),
            retry_after: Some(secs),
        }
        .into_response();
    }
    let caller = match identify(&s.store, req.headers().get(header::AUTHORIZATION)).await {
        Ok(caller) => caller,
        Err(e) => {
            if e.code == Code::Unauthorized {
                s.bad_keys.failed(ip);
                deny(&s.metrics, "unauthorized", &path, client, None, &e.message);
            }
            return e.into_response();
        }
    };
    let name = caller.name.clone();
    req.extensions_mut().insert(caller);
    let response = next.run(req).await;
    if response.status() == StatusCode::FORBIDDEN {
        deny(&s.metrics, "forbidden", &path, client, Some(&name), "the key's scope does not allow it");
    }
    response
}

/// Logs and counts a refused request (the key's name, never the key).
fn deny(metrics: &Metrics, reason: &'static str, path: &str, client: SocketAddr, key: Option<&str>, why: &str) {
    metrics.api_denied.get_or_create(&ApiDeniedLabels { reason }).inc();
    tracing::warn!(reason, path, client = %client.ip(), key = key.unwrap_or("-"), "API request refused: {why}");
}

/// The key behind an `Authorization` header.
async fn identify(store: &Store, header: Option<&HeaderValue>) -> Result<ApiCaller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(Code::Unauthorized, m);
    let header = header.ok_or_else(|| unauthorized("missing `Authorization: Bearer <API key>`"))?;
    let value = header.to_str().map_err(|_| unauthorized("the Authorization header is not text"))?;
    let key = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <API key>`"))?
        .trim();
    let (id, secret) = keys::parse(key).ok_or_else(|| unauthorized("the bearer token is not an API key (trb_…)"))?;
    let row = store.api_key(id).await.map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))?;
    let row =
        row.filter(|row| keys::matches(secret, &row.secret_hash)).ok_or_else(|| unauthorized("unknown API key"))?;
    if row.revoked_at.is_some() {
        return Err(unauthorized(&format!("API key `{}` is revoked", row.name)));
    }
    if row.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(unauthorized(&format!("API key `{}` has expired", row.name)));
    }
    let role = Role::parse(&row.role).ok_or_else(|| ApiError::new(Code::Internal, "a stored key has no known role"))?;
    Ok(ApiCaller { name: row.name, tenant: row.tenant_id, role })
}

/// axum's own refusals (405, 413, …) in the API's JSON error shape.
async fn json_errors(req: axum::extract::Request, next: Next) -> Response {
    let response = next.run(req).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || response.status().is_success() {
        return response;
    }
    let code = match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::NOT_FOUND => Code::NotFound,
        s if s.is_server_error() => Code::Internal,
        _ => Code::BadRequest,
    };
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("refused").to_lowercase(),
        t => t.to_owned(),
    };
    ApiError::new(code, message).into_response()
}

async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(Code::NotFound, format!("no API route {method} {}", uri.path()))
}

impl ApiState {
    /// Sends `command` to the daemon as the caller and answers with its reply.
    async fn ask(&self, caller: &ApiCaller, access: Access, command: Command) -> ApiResult {
        if access == Access::Change && caller.role == Role::Viewer {
            return Err(ApiError::forbidden(format!("`{}`: a viewer key only reads", command.name())));
        }
        let scope = caller.scope();
        authorize(&scope, &command).map_err(ApiError::forbidden)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let request = Request { v: VERSION, scope, command, caller: Caller::ApiKey { name: caller.name.clone() } };
        if self.control.send(ControlMessage::Request(request, reply_tx)).await.is_err() {
            return Err(ApiError::new(Code::Unavailable, "the daemon is shutting down"));
        }
        let reply = match tokio::time::timeout(ANSWER_WITHIN, reply_rx).await {
            Ok(Ok(reply)) => reply,
            _ => return Err(ApiError::new(Code::Unavailable, "the daemon did not answer in time")),
        };
        match (reply.ok, reply.data, reply.error) {
            (true, data, _) => Ok(Json(data.unwrap_or(Value::Null))),
            (false, _, error) => Err(ApiError::from_daemon(error.unwrap_or_else(|| "refused".into()))),
        }
    }
}

/// A query string, its errors as JSON.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|e| ApiError::bad_request(e.body_text()))
}

/// A JSON body; an empty body is `T::default()`.
fn body_or_default<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { body(bytes) }
}

/// A JSON body.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." | "" => ApiError::bad_request(format!("bad JSON body: {}", e.inner())),
            p => ApiError::bad_request(format!("bad JSON body at `{p}`: {}", e.inner())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_errors_get_stable_codes() {
        for (message, code) in [
            ("a tenant admin of `acme` cannot act on tenant `globex`", Code::Forbidden),
            ("`reload` needs the operator scope", Code::Forbidden),
            ("no webhook endpoint `ep_1`", Code::NotFound),
            ("no write `wr_1`", Code::NotFound),
            ("no tenant `nope`", Code::NotFound),
            ("run `x` not found", Code::NotFound),
            ("the store is unreachable since 12:00; try again when it answers", Code::Unavailable),
            ("no enabled, unpaused, connected job matches", Code::BadRequest),
            ("unknown event `x` (known: run.failed, or `*`)", Code::BadRequest),
        ] {
            assert_eq!(classify(message), code, "{message}");
        }
    }

    #[test]
    fn an_address_over_its_bad_key_limit_waits_out_its_minute() {
        let limit = BadKeys::new(3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(limit.blocked(ip).is_none());
            limit.failed(ip);
        }
        let wait = limit.blocked(ip).expect("blocked after 3 bad keys");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50), "{wait:?}");
        assert!(limit.blocked(other).is_none());
    }
}
