//! Jira Cloud REST v3: Basic auth (`email:api_token`) or OAuth bearer tokens
//! from `POST /oauth/token` (JSON body, refresh-token rotation with reuse
//! detection); `GET /rest/api/3/project/search` (offset pages, ≤ 50) and
//! `POST|GET /rest/api/3/search/jql` (`nextPageToken`, `isLast`, no `total`).
//! Issues are a child stream split over the projects.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::auth::{RefreshError, TokenCheck};
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, applied, lock, write_body};
use super::fake::{self, Rng};
use super::filter::Filter;
use super::jql::{self, JqlError};
use super::store::{Meta, Order};
use super::util::{self, Early, Params};

const PROJECTS: usize = 0;
const ISSUES: usize = 1;
const PROJECT_MAX: usize = 50;
const SEARCH_MAX: usize = 100;
const DEFAULT_SEARCH: u64 = 50;
const EMAIL: &str = "sim@example.com";

/// The Jira simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/rest/api/3",
    token_path: Some("/oauth/token"),
    token_paths: &["/oauth/token"],
    streams: &[
        StreamSpec { name: "projects", aliases: &["project"], kind: StreamKind::Parent },
        StreamSpec { name: "issues", aliases: &["issue"], kind: StreamKind::Child },
    ],
    default_ttl: Some(Duration::from_secs(3600)),
    rotation: Rotation::Always,
    access_prefix: "eyJraWQiOiJzaW0i.",
    refresh_prefix: "eyJraWQiOiJyZWZyZXNoIi.",
    resolution_ns: 1_000_000,
    refine: None,
    router,
    throttle,
    unavailable,
    credentials,
    record,
    decorate: None,
};

fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/rest/api/3/project/search", get(projects))
        .route("/rest/api/3/search/jql", get(search_get).post(search_post))
        .route("/rest/api/3/issue", post(create_issue))
        .route("/rest/api/3/issue/{id}", get(get_issue).put(update_issue))
        .route("/rest/api/3/issue/{id}/comment", post(add_comment))
}

fn messages(status: StatusCode, message: &str) -> Response {
    util::json(status, &json!({"errorMessages": [message], "errors": {}}))
}

fn throttle(sim: &Sim, _: &str) -> Response {
    let reset = (Utc::now() + TimeDelta::seconds(sim.retry_after() as i64 + 60)).format("%Y-%m-%dT%H:%MZ").to_string();
    let mut response = messages(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded.");
    util::set_header(&mut response, "retry-after", &sim.retry_after().to_string());
    util::set_header(&mut response, "x-ratelimit-limit", "350");
    util::set_header(&mut response, "x-ratelimit-remaining", "0");
    util::set_header(&mut response, "x-ratelimit-reset", &reset);
    util::set_header(&mut response, "x-ratelimit-nearlimit", "true");
    util::set_header(&mut response, "ratelimit-reason", "jira-burst-based");
    response
}

fn unavailable(_: &Sim) -> Response {
    messages(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
}

fn api_token(sim: &Sim) -> String {
    format!("ATATT3x{}", sim.static_secret("jira-api-token", 40))
}

fn credentials(sim: &Sim) -> Value {
    json!({"email": EMAIL, "api_token": api_token(sim)})
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    util::json(status, &json!({"error": error, "error_description": description}))
}

async fn token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "The request body must be JSON.");
    };
    let field = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or_default();
    if field("grant_type") != "refresh_token" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Unsupported grant type.");
    }
    let (id, secret) = sim.client_pair();
    if field("client_id") != id || field("client_secret") != secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    }
    let result = lock(&sim.auth).refresh(field("refresh_token"), SPEC.refresh_prefix, SPEC.access_prefix);
    match result {
        Ok(issued) => util::json(
            StatusCode::OK,
            &json!({
                "access_token": issued.access_token,
                "expires_in": issued.expires_in,
                "token_type": "Bearer",
                "refresh_token": issued.refresh_token,
                "scope": "read:jira-work read:jira-user offline_access",
            }),
        ),
        Err(RefreshError::Unknown | RefreshError::Reused | RefreshError::Revoked) => {
            oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Unknown or invalid refresh token.")
        }
    }
}

/// Checks Basic or bearer credentials; `Err` is the 401 to send.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    if let Some(token) = util::bearer(headers) {
        return match sim.check_token(&token) {
            TokenCheck::Valid => Ok(()),
            _ => Err(Box::new(util::json(StatusCode::UNAUTHORIZED, &json!({"code": 401, "message": "Unauthorized"})))),
        };
    }
    let ok = util::basic(headers).is_some_and(|(user, pass)| user == EMAIL && pass == api_token(sim));
    if ok && !sim.revoked() {
        return Ok(());
    }
    Err(Box::new(util::with_header(
        messages(StatusCode::UNAUTHORIZED, "Client must be authenticated to access this resource."),
        "www-authenticate",
        "Basic realm=\"protected-area\"",
    )))
}

fn project_key(index: u64) -> String {
    format!("SIM{}", fake::letters(index))
}

fn project_index(sim: &Sim, text: &str) -> Option<u64> {
    let index = match text.parse::<u64>() {
        Ok(id) => id.checked_sub(10_000)?,
        Err(_) => fake::parse_letters(text.to_ascii_uppercase().strip_prefix("SIM")?)?,
    };
    sim.meta(PROJECTS, index).map(|_| index)
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    if stream == PROJECTS {
        let id = (10_000 + m.index).to_string();
        return json!({
            "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
            "self": format!("{}/rest/api/3/project/{id}", sim.base_url),
            "id": id,
            "key": project_key(m.index),
            "name": format!("{} {}", fake::company(&mut r), r.pick(&["Platform", "Support", "Onboarding", "Billing"])),
            "projectTypeKey": "software",
            "simplified": false,
            "style": "classic",
            "isPrivate": false,
            "properties": {},
        });
    }
    let project = m.partition.unwrap_or(0);
    let id = (10_000 + m.index).to_string();
    let mut v = Rng::new(sim.config.seed, "jira-status", m.index, m.rev);
    let assignee = (!r.chance(20)).then(|| {
        let first = r.pick(fake::FIRST_NAMES);
        let last = r.pick(fake::LAST_NAMES);
        json!({
            "accountId": format!("5b10ac8d82e05b22cc7d{:04x}", r.below(0xffff)),
            "displayName": format!("{first} {last}"),
            "emailAddress": format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()),
            "active": true,
        })
    });
    json!({
        "id": id,
        "key": format!("{}-{}", project_key(project), m.ordinal + 1),
        "self": format!("{}/rest/api/3/issue/{id}", sim.base_url),
        "fields": {
            "summary": fake::sentence(&mut r, 5),
            "status": {"name": v.pick(&["To Do", "In Progress", "In Review", "Done"])},
            "assignee": assignee,
            "updated": util::iso_ms_offset(m.updated),
            "created": util::iso_ms_offset(m.created),
            "project": {"id": (10_000 + project).to_string(), "key": project_key(project)},
        },
    })
}

async fn projects(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    let (Ok(start), Ok(max)) = (util::parse_u64(params.get("startAt")), util::parse_u64(params.get("maxResults")))
    else {
        return messages(StatusCode::BAD_REQUEST, "startAt and maxResults must be non-negative integers.");
    };
    let start = start.unwrap_or(0);
    let max = max.unwrap_or(PROJECT_MAX as u64).clamp(1, sim.cap(PROJECT_MAX) as u64);
    let page = sim.select(PROJECTS, &Filter::all(), Order::Index, false, start, max as usize);
    let next = start + page.items.len() as u64;
    let is_last = next >= page.total;
    let mut body = json!({
        "self": format!("{}/rest/api/3/project/search?startAt={start}&maxResults={max}", sim.base_url),
    });
    if !is_last {
        body["nextPage"] = json!(format!("{}/rest/api/3/project/search?startAt={next}&maxResults={max}", sim.base_url));
    }
    body["maxResults"] = json!(max);
    body["startAt"] = json!(start);
    body["total"] = json!(page.total);
    body["isLast"] = json!(is_last);
    body["values"] = Value::Array(sim.records(PROJECTS, &page.items));
    util::json(StatusCode::OK, &body)
}

/// The parts of a search request.
struct SearchRequest {
    jql: String,
    token: Option<String>,
    max: Option<u64>,
    fields: Option<Vec<String>>,
}

async fn search_get(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    let Ok(max) = util::parse_u64(params.get("maxResults")) else {
        return messages(StatusCode::BAD_REQUEST, "maxResults must be a non-negative integer.");
    };
    let fields: Vec<String> = params
        .all("fields")
        .iter()
        .flat_map(|f| f.split(','))
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let req = SearchRequest {
        jql: params.get("jql").unwrap_or_default().to_owned(),
        token: params.get("nextPageToken").map(str::to_owned),
        max,
        fields: (!fields.is_empty()).then_some(fields),
    };
    search(&sim, req)
}

async fn search_post(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return messages(StatusCode::BAD_REQUEST, "The request body is not valid JSON.");
    };
    let max = match body.get("maxResults") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => {
                return messages(StatusCode::BAD_REQUEST, "maxResults must be a non-negative integer.");
            }
        },
    };
    let fields = match body.get("fields") {
        Some(Value::Array(a)) => Some(a.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect()),
        Some(Value::String(s)) => Some(s.split(',').map(|f| f.trim().to_owned()).collect()),
        _ => None,
    };
    let req = SearchRequest {
        jql: body.get("jql").and_then(Value::as_str).unwrap_or_default().to_owned(),
        token: body.get("nextPageToken").and_then(Value::as_str).map(str::to_owned),
        max,
        fields,
    };
    search(&sim, req)
}

fn search(sim: &Sim, req: SearchRequest) -> Response {
    let parsed = match jql::parse(&req.jql) {
        Ok(q) => q,
        Err(JqlError::Unbounded) => {
            return messages(
                StatusCode::BAD_REQUEST,
                "Unbounded JQL queries are not allowed here. Please add a search restriction to your query.",
            );
        }
        Err(JqlError::Invalid(message)) => return messages(StatusCode::BAD_REQUEST, &message),
    };
    let mut filter = Filter::all();
    if let Some(project) = &parsed.project {
        match project_index(sim, project) {
            Some(p) => filter.partition = Some(p),
            None => {
                return messages(
                    StatusCode::BAD_REQUEST,
                    &format!("The value '{project}' does not exist for the field 'project'."),
                );
            }
        }
    }
    for (cmp, t) in &parsed.updated {
        filter.updated(*cmp, *t);
    }
    let scope = util::fingerprint(&req.jql);
    let start = match req.token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => {
            let offset = util::verify_cursor(sim.cursor_key(), token)
                .filter(|p| util::payload_field(p, "s") == Some(scope.as_str()))
                .and_then(|p| util::payload_field(&p, "o").and_then(|o| o.parse::<u64>().ok()));
            match offset {
                Some(o) => o,
                None => {
                    return messages(StatusCode::BAD_REQUEST, "The provided next page token is invalid or expired.");
                }
            }
        }
    };
    let max = req.max.unwrap_or(DEFAULT_SEARCH).clamp(1, sim.cap(SEARCH_MAX) as u64);
    let order = if parsed.by_updated { Order::Updated } else { Order::Index };
    let page = sim.select(ISSUES, &filter, order, parsed.desc, start, max as usize);
    let next = start + page.items.len() as u64;
    let issues: Vec<Value> =
        sim.records(ISSUES, &page.items).into_iter().map(|issue| shape(issue, req.fields.as_deref())).collect();
    let is_last = next >= page.total;
    let mut body = json!({"issues": issues});
    if !is_last {
        body["nextPageToken"] = json!(util::sign_cursor(sim.cursor_key(), &format!("s={scope};o={next}")));
    }
    body["isLast"] = json!(is_last);
    util::json(StatusCode::OK, &body)
}

/// Only ids unless fields are asked for; `*all`/`*navigable` give every field.
fn shape(issue: Value, fields: Option<&[String]>) -> Value {
    let Some(fields) = fields else {
        return json!({"id": issue.get("id").cloned().unwrap_or(Value::Null)});
    };
    if fields.iter().any(|f| f == "*all" || f == "*navigable") {
        return issue;
    }
    let mut out = issue;
    if let Some(Value::Object(map)) = out.get_mut("fields") {
        let kept: Map<String, Value> =
            std::mem::take(map).into_iter().filter(|(k, _)| fields.iter().any(|f| f == k)).collect();
        *map = kept;
    }
    out
}

/// Jira's 400: `{"errorMessages": [], "errors": {field: message}}`.
fn field_errors(errors: Vec<(&str, String)>) -> Response {
    let map: Map<String, Value> = errors.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
    util::json(StatusCode::BAD_REQUEST, &json!({"errorMessages": [], "errors": map}))
}

/// The project a create names, by key or id.
fn project_ref(fields: &Map<String, Value>) -> Option<&Value> {
    fields.get("project").and_then(|p| p.get("key").or_else(|| p.get("id")))
}

/// The index of an issue given by id (`10042`) or key (`SIMA-3`).
fn issue_index(sim: &Sim, id: &str) -> Option<u64> {
    if let Ok(n) = id.parse::<u64>() {
        return n.checked_sub(10_000).filter(|i| sim.meta(ISSUES, *i).is_some());
    }
    let (project, number) = id.rsplit_once('-')?;
    let project = project_index(sim, project)?;
    let ordinal = number.parse::<u64>().ok()?.checked_sub(1)?;
    let mut filter = Filter::all();
    filter.partition = Some(project);
    let page = sim.select(ISSUES, &filter, Order::Index, false, ordinal, 1);
    page.items.first().copied().filter(|i| sim.meta(ISSUES, *i).is_some_and(|m| m.ordinal == ordinal))
}

fn issue_not_found() -> Response {
    messages(StatusCode::NOT_FOUND, "Issue does not exist or you do not have permission to see it.")
}

/// The `fields` of an issue write, checked: what may be set, or the 400.
fn written_issue_fields(body: &Value, creating: bool) -> Early<Map<String, Value>> {
    let Some(Value::Object(fields)) = body.get("fields") else {
        return Err(Box::new(messages(StatusCode::BAD_REQUEST, "Field 'fields' is required.")));
    };
    let mut errors = Vec::new();
    for (name, value) in fields {
        match name.as_str() {
            "summary" if !value.is_string() => errors.push(("summary", "Operation value must be a string".to_owned())),
            "summary" if value.as_str().is_some_and(|s| s.chars().count() > 255) => {
                errors.push(("summary", "Summary must be less than 255 characters.".to_owned()))
            }
            "summary" | "project" | "issuetype" | "description" | "labels" => {}
            _ => errors.push((
                name.as_str(),
                format!("Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."),
            )),
        }
    }
    if creating {
        if fields.get("summary").and_then(Value::as_str).is_none_or(str::is_empty) {
            errors.push(("summary", "You must specify a summary of the issue.".to_owned()));
        }
        if fields.get("issuetype").is_none() {
            errors.push(("issuetype", "Specify an issue type".to_owned()));
        }
        if project_ref(fields).is_none() {
            errors.push(("project", "Specify a valid project ID or key".to_owned()));
        }
    } else if fields.contains_key("project") {
        errors.push(("project", "Field 'project' cannot be set. Move the issue instead.".to_owned()));
    }
    if errors.is_empty() { Ok(fields.clone()) } else { Err(Box::new(field_errors(errors))) }
}

/// `POST /rest/api/3/issue`: 201 `{id, key, self}`.
async fn create_issue(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = write_body(&body);
    sim.record_write("POST", "/rest/api/3/issue", &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let fields = match written_issue_fields(&body, true) {
        Ok(f) => f,
        Err(response) => return *response,
    };
    let project = project_ref(&fields).and_then(Value::as_str);
    let Some(project) = project.and_then(|p| project_index(&sim, p)) else {
        return field_errors(vec![("project", "Specify a valid project ID or key".to_owned())]);
    };
    let mut patch = Map::new();
    patch.insert("summary".into(), fields.get("summary").cloned().unwrap_or(Value::Null));
    let Some(index) = sim.apply_write_to(ISSUES, None, Some(project), &json!({"fields": patch})) else {
        return unavailable(&sim);
    };
    match sim.record(ISSUES, index) {
        Some(issue) => applied(util::json(
            StatusCode::CREATED,
            &json!({"id": issue["id"], "key": issue["key"], "self": issue["self"]}),
        )),
        None => unavailable(&sim),
    }
}

/// `GET /rest/api/3/issue/{idOrKey}`.
async fn get_issue(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match issue_index(&sim, &id).and_then(|i| sim.record(ISSUES, i)) {
        Some(issue) => util::json(StatusCode::OK, &issue),
        None => issue_not_found(),
    }
}

/// `PUT /rest/api/3/issue/{idOrKey}`: 204, `fields.updated` moved on.
async fn update_issue(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = write_body(&body);
    sim.record_write("PUT", &format!("/rest/api/3/issue/{id}"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let Some(index) = issue_index(&sim, &id) else {
        return issue_not_found();
    };
    let fields = match written_issue_fields(&body, false) {
        Ok(f) => f,
        Err(response) => return *response,
    };
    let patch: Map<String, Value> = fields.into_iter().filter(|(k, _)| k == "summary").collect();
    match sim.apply_write(ISSUES, Some(index), &json!({"fields": patch})) {
        Some(_) => applied(util::empty(StatusCode::NO_CONTENT)),
        None => issue_not_found(),
    }
}

/// `POST /rest/api/3/issue/{idOrKey}/comment` with an ADF `body`: 201 with the comment.
async fn add_comment(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let body = write_body(&body);
    sim.record_write("POST", &format!("/rest/api/3/issue/{id}/comment"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let Some(index) = issue_index(&sim, &id) else {
        return issue_not_found();
    };
    let adf = body.get("body").filter(|b| b.get("type").and_then(Value::as_str) == Some("doc"));
    let Some(adf) = adf else {
        return field_errors(vec![("comment", "Comment body can not be empty!".to_owned())]);
    };
    let comment_id = (10_000 + sim.writes_received().len()).to_string();
    let now = util::iso_ms_offset(Utc::now());
    let comment = json!({
        "self": format!("{}/rest/api/3/issue/{}/comment/{comment_id}", sim.base_url, 10_000 + index),
        "id": comment_id,
        "body": adf,
        "created": now,
        "updated": now,
    });
    // The issue shows the comment (and a new `updated`), as Jira does.
    let mut comments = sim.record(ISSUES, index).and_then(|i| i.pointer("/fields/comment/comments").cloned());
    let list = match comments.as_mut() {
        Some(Value::Array(list)) => {
            list.push(comment.clone());
            list.clone()
        }
        _ => vec![comment.clone()],
    };
    match sim.apply_write(ISSUES, Some(index), &json!({"fields": {"comment": {"comments": list, "total": list.len()}}}))
    {
        Some(_) => applied(util::json(StatusCode::CREATED, &comment)),
        None => issue_not_found(),
    }
}
