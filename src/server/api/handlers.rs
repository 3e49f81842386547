//! The API's handlers: each answers one route, through the daemon's control handler
//! (what the socket does) or from the store with the tenant checked.

use super::*;

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
