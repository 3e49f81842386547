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

/// The API's routes and their OpenAPI document, built together from the handlers.
pub fn routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(tenants))
        .routes(routes!(jobs))
        .routes(routes!(runs))
        .routes(routes!(run))
        .routes(routes!(trigger))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(intelligence))
        .routes(routes!(usage))
        .routes(routes!(audit))
        .routes(routes!(records))
        .routes(routes!(changes))
        .routes(routes!(webhooks_list, webhooks_add))
        .routes(routes!(webhooks_remove))
        .routes(routes!(webhooks_test))
        .routes(routes!(webhooks_deliveries))
        .routes(routes!(webhooks_replay))
        .routes(routes!(writes_list, writes_submit))
        .routes(routes!(writes_show))
        .routes(routes!(writes_retry))
        .routes(routes!(writes_cancel))
        .routes(routes!(openapi));
    let (router, doc) =
        OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(PREFIX, v1.fallback(not_found)).split_for_parts();
    (router, doc)
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

// --- daemon -------------------------------------------------------------------------

/// Jobs and runs: what to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// The tenant (a tenant key: its own, the default).
    tenant: Option<String>,
    provider: Option<String>,
    stream: Option<String>,
    /// How many rows at most.
    limit: Option<i64>,
}

impl ListParams {
    fn target(self, caller: &ApiCaller) -> Target {
        Target {
            tenant: self.tenant.or_else(|| caller.tenant.clone()),
            provider: self.provider,
            stream: self.stream,
            job: None,
            limit: self.limit,
        }
    }
}

/// The daemon: workers, runs in flight, due and overdue jobs, recent errors (a tenant
/// key sees its own tenant's).
#[utoipa::path(get, path = "/status", tag = "daemon",
    responses((status = 200, description = "The daemon's status", body = serde_json::Value)))]
async fn status(State(s): State<ApiState>, Extension(c): Extension<ApiCaller>) -> ApiResult {
    s.ask(&c, Access::Read, Command::Status).await
}

/// Tenants with their preset and connections (operator keys).
#[utoipa::path(get, path = "/tenants", tag = "daemon",
    responses((status = 200, description = "Every tenant", body = serde_json::Value)))]
async fn tenants(State(s): State<ApiState>, Extension(c): Extension<ApiCaller>) -> ApiResult {
    s.ask(&c, Access::Read, Command::Tenants).await
}

/// Jobs, filtered by tenant, provider and stream.
#[utoipa::path(get, path = "/jobs", tag = "daemon", params(ListParams),
    responses((status = 200, description = "Jobs", body = serde_json::Value)))]
async fn jobs(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult {
    let target = query(q)?.target(&c);
    s.ask(&c, Access::Read, Command::Jobs(target)).await
}

/// Recent runs, newest first.
#[utoipa::path(get, path = "/runs", tag = "daemon", params(ListParams),
    responses((status = 200, description = "Runs", body = serde_json::Value)))]
async fn runs(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult {
    let target = query(q)?.target(&c);
    s.ask(&c, Access::Read, Command::Runs(target)).await
}

/// One run with every count, its cursors, error and dead letters.
#[utoipa::path(get, path = "/runs/{id}", tag = "daemon",
    params(("id" = String, Path, description = "The run id (a UUID)")),
    responses((status = 200, description = "`{run, dead_letters}`", body = serde_json::Value),
              (status = 404, description = "No such run in the key's scope")))]
async fn run(State(s): State<ApiState>, Extension(c): Extension<ApiCaller>, Path(id): Path<String>) -> ApiResult {
    let run_id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::bad_request(format!("`{id}` is not a run id")))?;
    let tenant =
        c.tenant.as_deref().map(TenantId::parse).transpose().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let run = s
        .store
        .get_run(run_id, tenant.as_ref())
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("run `{id}` not found")))?;
    let dead = s.store.list_dead_letters(&run.tenant_id, Some(run.id), 50).await?;
    Ok(Json(json!({ "run": run, "dead_letters": dead })))
}

// --- control ------------------------------------------------------------------------

/// What to trigger: every job of the tenant, one provider's, or one stream's.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    provider: Option<String>,
    stream: Option<String>,
}

/// What to pause or resume: the tenant, one connection (provider) or one job.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    provider: Option<String>,
    job: Option<i64>,
}

/// Makes the tenant's jobs due now; answers with the runs that started.
#[utoipa::path(post, path = "/tenants/{tenant}/trigger", tag = "control",
    params(("tenant" = String, Path)), request_body(content = Option<TriggerBody>),
    responses((status = 200, description = "`{triggered: [...]}`", body = serde_json::Value)))]
async fn trigger(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(tenant): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: TriggerBody = body_or_default(&bytes)?;
    let target = Target { tenant: Some(tenant), provider: b.provider, stream: b.stream, ..Target::default() };
    s.ask(&c, Access::Change, Command::Trigger(target)).await
}

fn pause_target(tenant: String, bytes: &Bytes) -> Result<Target, ApiError> {
    let b: PauseBody = body_or_default(bytes)?;
    Ok(Target { tenant: Some(tenant), provider: b.provider, job: b.job, ..Target::default() })
}

/// Pauses the tenant, one of its connections or one job.
#[utoipa::path(post, path = "/tenants/{tenant}/pause", tag = "control",
    params(("tenant" = String, Path)), request_body(content = Option<PauseBody>),
    responses((status = 200, description = "`{paused: ...}`", body = serde_json::Value)))]
async fn pause(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(tenant): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let target = pause_target(tenant, &bytes)?;
    s.ask(&c, Access::Change, Command::Pause(target)).await
}

/// Resumes what `pause` paused.
#[utoipa::path(post, path = "/tenants/{tenant}/resume", tag = "control",
    params(("tenant" = String, Path)), request_body(content = Option<PauseBody>),
    responses((status = 200, description = "`{resumed: ...}`", body = serde_json::Value)))]
async fn resume(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(tenant): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let target = pause_target(tenant, &bytes)?;
    s.ask(&c, Access::Change, Command::Resume(target)).await
}

// --- data ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ProviderParam {
    provider: Option<String>,
}

/// The tenant's company integration intelligence.
#[utoipa::path(get, path = "/tenants/{tenant}/intelligence", tag = "data",
    params(("tenant" = String, Path), ProviderParam),
    responses((status = 200, description = "One entry per integration", body = serde_json::Value)))]
async fn intelligence(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(tenant): Path<String>,
    q: Result<Query<ProviderParam>, QueryRejection>,
) -> ApiResult {
    let p = query(q)?;
    let target = Target { tenant: Some(tenant), provider: p.provider, ..Target::default() };
    s.ask(&c, Access::Read, Command::Intelligence(target)).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsageParams {
    /// One provider only.
    provider: Option<String>,
    /// `day` (the default) or `week` (ISO weeks, Monday first), in UTC.
    by: Option<String>,
    /// From this time on (RFC 3339, or a date: midnight UTC).
    since: Option<String>,
}

/// The tenant's usage per provider and stream, by day or week (API calls, records
/// fetched and written, errors by class, bytes, rate-limit waits, run time).
#[utoipa::path(get, path = "/tenants/{tenant}/usage", tag = "data",
    params(("tenant" = String, Path), UsageParams),
    responses((status = 200, description = "Periods with their figures per provider and stream", body = serde_json::Value)))]
async fn usage(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(tenant): Path<String>,
    q: Result<Query<UsageParams>, QueryRejection>,
) -> ApiResult {
    let p = query(q)?;
    let q = crate::control::protocol::UsageQuery { tenant, provider: p.provider, by: p.by, since: p.since };
    s.ask(&c, Access::Read, Command::Usage(q)).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// One tenant's entries (a tenant's key reads its own tenant's only).
    tenant: Option<String>,
    /// From this time on (RFC 3339, or a date: midnight UTC).
    since: Option<String>,
    /// At most this many, newest first (default 100).
    limit: Option<i64>,
}

/// The audit log, newest first: who changed what, control actions, refused requests.
#[utoipa::path(get, path = "/audit", tag = "daemon",
    params(AuditParams),
    responses((status = 200, description = "Audit entries, newest first", body = serde_json::Value)))]
async fn audit(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult {
    let p = query(q)?;
    let q = crate::control::protocol::AuditQuery { tenant: p.tenant, since: p.since, limit: p.limit };
    s.ask(&c, Access::Read, Command::Audit(q)).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RecordParams {
    /// Only records synced at or after this time (RFC 3339, or a date: midnight UTC).
    since: Option<String>,
    /// The next page: the `next_after` of the previous one.
    after: Option<String>,
    /// Records deleted at the provider too.
    #[serde(default)]
    include_deleted: bool,
    /// Only these fields (comma-separated), in this order.
    fields: Option<String>,
    /// Page size (1–1000, default 100).
    limit: Option<i64>,
}

/// Stored records of one entity, by provider then external id, a page at a time.
#[utoipa::path(get, path = "/tenants/{tenant}/records/{entity}", tag = "data",
    params(("tenant" = String, Path), ("entity" = String, Path), RecordParams),
    responses((status = 200, description = "`{total, records, next_after}`", body = serde_json::Value)))]
async fn records(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path((tenant, entity)): Path<(String, String)>,
    q: Result<Query<RecordParams>, QueryRejection>,
) -> ApiResult {
    let p = query(q)?;
    c.own(&tenant)?;
    let limit = page_limit(p.limit)?;
    let fields: Vec<String> =
        p.fields.iter().flat_map(|f| f.split(',')).map(str::trim).filter(|f| !f.is_empty()).map(String::from).collect();
    {
        let catalog = s.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let def = catalog.entities.get(&entity).ok_or_else(|| {
            ApiError::new(Code::NotFound, format!("unknown entity `{entity}` (known: {})", catalog.entities.names()))
        })?;
        if let Some(bad) = fields.iter().find(|f| def.field(f).is_none()) {
            return Err(ApiError::bad_request(format!("unknown field `{bad}` of entity `{entity}`")));
        }
    }
    let filter = RecordFilter {
        tenant: existing_tenant(&s.store, &tenant).await?,
        entity: EntityName::parse(&entity).map_err(|e| ApiError::bad_request(e.to_string()))?,
        since: p.since.as_deref().map(parse_since).transpose()?,
        after: p
            .after
            .as_deref()
            .map(|a| {
                RecordKey::from_cursor(a).ok_or_else(|| ApiError::bad_request(format!("`after={a}` is not a cursor")))
            })
            .transpose()?,
        include_deleted: p.include_deleted,
    };
    let mut rows = s.store.read_records(&filter, limit.saturating_add(1)).await?;
    let total = s.store.count_selected_records(&filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = rows.last().filter(|_| more).map(|r| RecordKey::of(r).to_cursor());
    if !fields.is_empty() {
        for row in &mut rows {
            row.data = Value::Object(
                fields.iter().map(|f| (f.clone(), row.data.get(f).cloned().unwrap_or(Value::Null))).collect(),
            );
        }
    }
    Ok(Json(json!({ "total": total, "records": rows, "next_after": next })))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ChangeParams {
    /// Changes of this entity only.
    entity: Option<String>,
    /// Changes after this sequence number (default 0: from the start).
    since: Option<i64>,
    /// Page size (1–1000, default 100).
    limit: Option<i64>,
}

/// The tenant's change feed: records inserted, updated or deleted after a sequence number.
#[utoipa::path(get, path = "/tenants/{tenant}/changes", tag = "data",
    params(("tenant" = String, Path), ChangeParams),
    responses((status = 200, description = "`{changes, next_since}`", body = serde_json::Value)))]
async fn changes(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(tenant): Path<String>,
    q: Result<Query<ChangeParams>, QueryRejection>,
) -> ApiResult {
    let p = query(q)?;
    c.own(&tenant)?;
    let limit = page_limit(p.limit)?;
    let since = p.since.unwrap_or(0);
    let entity =
        p.entity.as_deref().map(EntityName::parse).transpose().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tenant = existing_tenant(&s.store, &tenant).await?;
    let rows = s.store.list_changes(&tenant, entity.as_ref(), since, limit).await?;
    let next = rows.last().map_or(since, |r| r.seq);
    Ok(Json(json!({ "changes": rows, "next_since": next })))
}

fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(100) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(ApiError::bad_request(format!("`limit` must be between 1 and {MAX_PAGE}, not {n}"))),
    }
}

async fn existing_tenant(store: &Store, tenant: &str) -> Result<TenantId, ApiError> {
    let id = TenantId::parse(tenant).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match store.get_tenant(&id).await? {
        Some(_) => Ok(id),
        None => Err(ApiError::new(Code::NotFound, format!("no tenant `{tenant}`"))),
    }
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`since={text}` is neither an RFC 3339 time (2026-12-01T08:00:00Z) nor a date (2026-12-01)"
            ))
        })
}

// --- webhooks -----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TenantParam {
    tenant: Option<String>,
}

/// A new endpoint: `tenant` (a tenant key: its own, the default; an operator key: omit
/// for every tenant's events), `url`, `events` (names or `*`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookAddBody {
    tenant: Option<String>,
    url: String,
    events: Vec<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// One message id; without it every failed message of the endpoint.
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LimitParam {
    limit: Option<i64>,
}

/// Webhook endpoints in the key's scope.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(TenantParam),
    responses((status = 200, description = "Endpoints (never their secrets)", body = serde_json::Value)))]
async fn webhooks_list(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    q: Result<Query<TenantParam>, QueryRejection>,
) -> ApiResult {
    let tenant = query(q)?.tenant.or_else(|| c.tenant.clone());
    s.ask(&c, Access::Read, Command::Webhooks(WebhookCommand::List(WebhookList { tenant }))).await
}

/// Registers an endpoint; the answer carries its signing secret, the only time it is shown.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = WebhookAddBody,
    responses((status = 200, description = "`{endpoint, secret}`", body = serde_json::Value)))]
async fn webhooks_add(State(s): State<ApiState>, Extension(c): Extension<ApiCaller>, bytes: Bytes) -> ApiResult {
    let b: WebhookAddBody = body(&bytes)?;
    let add = WebhookAdd { tenant: b.tenant.or_else(|| c.tenant.clone()), url: b.url, events: b.events };
    s.ask(&c, Access::Change, Command::Webhooks(WebhookCommand::Add(add))).await
}

/// Removes an endpoint with its messages and delivery log.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, description = "Removed", body = serde_json::Value)))]
async fn webhooks_remove(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(id): Path<String>,
) -> ApiResult {
    s.ask(&c, Access::Change, Command::Webhooks(WebhookCommand::Remove(WebhookId { id }))).await
}

/// Queues a `webhook.test` event for the endpoint.
#[utoipa::path(post, path = "/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, description = "Queued", body = serde_json::Value)))]
async fn webhooks_test(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(id): Path<String>,
) -> ApiResult {
    s.ask(&c, Access::Change, Command::Webhooks(WebhookCommand::Test(WebhookId { id }))).await
}

/// The endpoint's latest delivery attempts.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), LimitParam),
    responses((status = 200, description = "Attempts, newest first", body = serde_json::Value)))]
async fn webhooks_deliveries(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(id): Path<String>,
    q: Result<Query<LimitParam>, QueryRejection>,
) -> ApiResult {
    let limit = query(q)?.limit;
    s.ask(&c, Access::Read, Command::Webhooks(WebhookCommand::Deliveries(WebhookDeliveries { id, limit }))).await
}

/// Makes the endpoint's failed messages (or one message) due again.
#[utoipa::path(post, path = "/webhooks/{id}/replay", tag = "webhooks",
    params(("id" = String, Path)), request_body(content = Option<ReplayBody>),
    responses((status = 200, description = "How many messages are due again", body = serde_json::Value)))]
async fn webhooks_replay(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: ReplayBody = body_or_default(&bytes)?;
    s.ask(&c, Access::Change, Command::Webhooks(WebhookCommand::Replay(WebhookReplay { id, message: b.message }))).await
}

// --- writes -------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WriteParams {
    tenant: Option<String>,
    /// pending, running, succeeded, failed, conflict, cancelled.
    state: Option<String>,
    provider: Option<String>,
    limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    /// Retry a conflicting write without the version check.
    #[serde(default)]
    force: bool,
}

/// The latest writes in the key's scope.
#[utoipa::path(get, path = "/writes", tag = "writes", params(WriteParams),
    responses((status = 200, description = "Writes, newest first", body = serde_json::Value)))]
async fn writes_list(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    q: Result<Query<WriteParams>, QueryRejection>,
) -> ApiResult {
    let p = query(q)?;
    let list = WriteList {
        tenant: p.tenant.or_else(|| c.tenant.clone()),
        state: p.state,
        provider: p.provider,
        limit: p.limit,
    };
    s.ask(&c, Access::Read, Command::Writes(WriteCommand::List(list))).await
}

/// Stores a write in the outbox: `{tenant, provider, entity, op, id?, idempotency_key?,
/// base_version?, force?, owner?, record}` (as `tributary writes submit`).
#[utoipa::path(post, path = "/writes", tag = "writes", request_body = serde_json::Value,
    responses((status = 200, description = "The write, with its id and state", body = serde_json::Value)))]
async fn writes_submit(State(s): State<ApiState>, Extension(c): Extension<ApiCaller>, bytes: Bytes) -> ApiResult {
    let submit: WriteSubmit = body(&bytes)?;
    s.ask(&c, Access::Change, Command::Writes(WriteCommand::Submit(Box::new(submit)))).await
}

/// One write with its attempts.
#[utoipa::path(get, path = "/writes/{id}", tag = "writes", params(("id" = String, Path)),
    responses((status = 200, description = "The write and its attempts", body = serde_json::Value)))]
async fn writes_show(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(id): Path<String>,
) -> ApiResult {
    s.ask(&c, Access::Read, Command::Writes(WriteCommand::Show(WriteId { id }))).await
}

/// Queues a failed or conflicting write again.
#[utoipa::path(post, path = "/writes/{id}/retry", tag = "writes",
    params(("id" = String, Path)), request_body(content = Option<RetryBody>),
    responses((status = 200, description = "The write", body = serde_json::Value)))]
async fn writes_retry(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: RetryBody = body_or_default(&bytes)?;
    s.ask(&c, Access::Change, Command::Writes(WriteCommand::Retry(WriteRetry { id, force: b.force }))).await
}

/// Cancels a pending write.
#[utoipa::path(post, path = "/writes/{id}/cancel", tag = "writes", params(("id" = String, Path)),
    responses((status = 200, description = "The write", body = serde_json::Value)))]
async fn writes_cancel(
    State(s): State<ApiState>,
    Extension(c): Extension<ApiCaller>,
    Path(id): Path<String>,
) -> ApiResult {
    s.ask(&c, Access::Change, Command::Writes(WriteCommand::Cancel(WriteId { id }))).await
}

/// This document (no key needed).
#[utoipa::path(get, path = "/openapi.json", tag = "daemon", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = serde_json::Value)))]
async fn openapi(Extension(doc): Extension<OpenApiJson>) -> Json<Value> {
    Json((*doc.0).clone())
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
