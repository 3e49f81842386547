//! Asana API 1.0 (PROVIDERS.md §5): OAuth2 bearer tokens from `POST /-/oauth_token`
//! (form body, 1 h access tokens, refresh tokens not rotated); one workspace
//! ([`WORKSPACE_GID`]) whose projects are listed at `/projects?workspace=` or
//! `/workspaces/{gid}/projects`; tasks per project at `/tasks?project=` or
//! `/projects/{gid}/tasks`, with `modified_since`. Lists page by `limit` (1–100) and an
//! opaque `offset`, answering `{"data": […], "next_page": {offset, path, uri} | null}`;
//! `opt_fields` picks the fields shown (else the compact form: `gid`, `resource_type`,
//! `name`). Errors are `{"errors": [{"message": …}]}`.
//!
//! `GET /events?resource=<project gid>&sync=<token>`: without a token, or with one that
//! is unknown or too old ([`SimHandle::expire_sync_states`](crate::SimHandle::expire_sync_states)),
//! 412 with a fresh `sync` token; with a known one, the task events of the project since
//! it was issued (`added`, `changed`, `deleted`), at most 100 a response with `has_more`,
//! and the next `sync` token.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::auth::{RefreshError, TokenCheck};
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, lock};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params, Ts};

const PROJECTS: usize = 0;
const TASKS: usize = 1;
/// The most a page (or an events response) holds.
const PAGE_MAX: usize = 100;
/// A listing without `limit` is answered whole up to this size, refused above it.
const UNPAGED_MAX: u64 = 1_000;

/// The gid of the simulator's one workspace (the manifest's `workspace` variable).
pub const WORKSPACE_GID: &str = "1200000000000001";
const PROJECT_BASE: u64 = 1_201_000_000_000_000;
const TASK_BASE: u64 = 1_202_000_000_000_000;
const USER_BASE: u64 = 1_203_000_000_000_000;

/// The Asana simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/api/1.0",
    token_path: Some("/-/oauth_token"),
    token_paths: &["/-/oauth_token"],
    streams: &[
        StreamSpec { name: "projects", aliases: &["project"], kind: StreamKind::Parent },
        StreamSpec { name: "tasks", aliases: &["task"], kind: StreamKind::Child },
    ],
    default_ttl: Some(Duration::from_secs(3600)),
    rotation: Rotation::Never,
    access_prefix: "2/1203000000000000/",
    refresh_prefix: "2/1203000000000000:",
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
        .route("/-/oauth_token", post(token))
        .route("/api/1.0/workspaces", get(workspaces))
        .route("/api/1.0/projects", get(projects))
        .route("/api/1.0/workspaces/{gid}/projects", get(workspace_projects))
        .route("/api/1.0/tasks", get(tasks))
        .route("/api/1.0/projects/{gid}/tasks", get(project_tasks))
        .route("/api/1.0/events", get(events))
}

fn errors(status: StatusCode, message: &str) -> Response {
    util::json(status, &json!({"errors": [{"message": message}]}))
}

fn throttle(sim: &Sim, _: &str) -> Response {
    util::with_header(
        errors(
            StatusCode::TOO_MANY_REQUESTS,
            "You've made too many requests and hit a rate limit. Please retry after the given amount of time.",
        ),
        "retry-after",
        &sim.retry_after().to_string(),
    )
}

fn unavailable(_: &Sim) -> Response {
    util::json(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"errors": [{
            "message": "Server Error",
            "phrase": "6 sad squid snuggle softly",
        }]}),
    )
}

fn credentials(sim: &Sim) -> Value {
    sim.oauth_credentials()
}

fn oauth_error(error: &str, description: &str) -> Response {
    util::json(StatusCode::BAD_REQUEST, &json!({"error": error, "error_description": description}))
}

/// `POST /-/oauth_token` (form): the access token and the user it acts for; the refresh
/// token is not rotated (none in the answer).
async fn token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let form = Params::parse(&String::from_utf8_lossy(&body));
    if form.get("grant_type") != Some("refresh_token") {
        return oauth_error("unsupported_grant_type", "The grant type is not supported here.");
    }
    let (id, secret) = sim.client_pair();
    if form.get("client_id") != Some(id.as_str()) || form.get("client_secret") != Some(secret.as_str()) {
        return util::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client", "error_description": "The client is not authorized."}),
        );
    }
    let result =
        lock(&sim.auth).refresh(form.get("refresh_token").unwrap_or_default(), SPEC.refresh_prefix, SPEC.access_prefix);
    match result {
        Ok(issued) => util::json(
            StatusCode::OK,
            &json!({
                "access_token": issued.access_token,
                "token_type": "bearer",
                "expires_in": issued.expires_in,
                "data": {"id": USER_BASE, "gid": USER_BASE.to_string(), "name": "Sim User", "email": "sim@example.com"},
            }),
        ),
        Err(RefreshError::Unknown | RefreshError::Reused | RefreshError::Revoked) => {
            oauth_error("invalid_grant", "The refresh token is invalid or has been revoked.")
        }
    }
}

/// Checks the bearer token; `Err` is the 401 to send.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    match util::bearer(headers).map(|t| sim.check_token(&t)) {
        Some(TokenCheck::Valid) => Ok(()),
        _ => Err(Box::new(errors(StatusCode::UNAUTHORIZED, "Not Authorized"))),
    }
}

fn project_gid(index: u64) -> String {
    (PROJECT_BASE + index).to_string()
}

fn task_gid(index: u64) -> String {
    (TASK_BASE + index).to_string()
}

/// The live project a gid names.
fn project_index(sim: &Sim, gid: &str) -> Option<u64> {
    let index = gid.parse::<u64>().ok()?.checked_sub(PROJECT_BASE)?;
    sim.meta(PROJECTS, index).map(|_| index)
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let workspace = json!({"gid": WORKSPACE_GID, "resource_type": "workspace", "name": "Sim Workspace"});
    if stream == PROJECTS {
        let name = format!("{} {}", fake::company(&mut r), r.pick(&["Launch", "Hiring", "Roadmap", "Onboarding"]));
        return json!({
            "gid": project_gid(m.index),
            "resource_type": "project",
            "name": name,
            "archived": false,
            "created_at": util::iso_ms(m.created),
            "modified_at": util::iso_ms(m.updated),
            "workspace": workspace,
        });
    }
    let project = m.partition.unwrap_or(0);
    // What a revision changes: completion and the assignee.
    let mut v = Rng::new(sim.config.seed, "asana-task", m.index, m.rev);
    let completed = v.chance(30);
    let assignee = (!v.chance(20)).then(|| {
        let first = v.pick(fake::FIRST_NAMES);
        let last = v.pick(fake::LAST_NAMES);
        json!({"gid": (USER_BASE + 1 + v.below(500)).to_string(), "resource_type": "user", "name": format!("{first} {last}")})
    });
    json!({
        "gid": task_gid(m.index),
        "resource_type": "task",
        "resource_subtype": "default_task",
        "name": fake::sentence(&mut r, 4),
        "notes": fake::sentence(&mut r, 9),
        "completed": completed,
        "completed_at": if completed { Value::String(util::iso_ms(m.updated)) } else { Value::Null },
        "assignee": assignee,
        "created_at": util::iso_ms(m.created),
        "modified_at": util::iso_ms(m.updated),
        "projects": [{"gid": project_gid(project), "resource_type": "project"}],
        "workspace": workspace,
    })
}

/// The fields `opt_fields` asks for (dotted paths), `gid` always; without it the
/// compact form.
fn shape(record: Value, opt_fields: Option<&str>) -> Value {
    let Some(fields) = opt_fields.filter(|f| !f.trim().is_empty()) else {
        let mut out = Map::new();
        for k in ["gid", "resource_type", "name", "resource_subtype"] {
            if let Some(v) = record.get(k) {
                out.insert(k.to_owned(), v.clone());
            }
        }
        return Value::Object(out);
    };
    let mut out = json!({"gid": record["gid"]});
    for path in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        pick(&record, &mut out, path);
    }
    out
}

/// Copies dotted `path` of `from` into `to`; a nested object keeps its `gid`.
fn pick(from: &Value, to: &mut Value, path: &str) {
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    let Some(value) = from.get(head) else {
        return;
    };
    let Some(target) = to.as_object_mut() else {
        return;
    };
    match (rest, value) {
        (None, _) | (Some(_), Value::Null) => {
            target.insert(head.to_owned(), value.clone());
        }
        (Some(rest), Value::Array(items)) => {
            let existing = target
                .entry(head.to_owned())
                .or_insert_with(|| json!(items.iter().map(|i| json!({"gid": i["gid"]})).collect::<Vec<_>>()));
            if let Value::Array(slots) = existing {
                for (slot, item) in slots.iter_mut().zip(items) {
                    pick(item, slot, rest);
                }
            }
        }
        (Some(rest), Value::Object(_)) => {
            let slot = target.entry(head.to_owned()).or_insert_with(|| json!({"gid": value["gid"]}));
            pick(value, slot, rest);
        }
        (Some(_), _) => {
            target.insert(head.to_owned(), value.clone());
        }
    }
}

/// One listing: which records, and the path (below `/api/1.0`) its pages link to.
struct Listing {
    stream: usize,
    filter: Filter,
    /// The request path below the API base, without `limit` and `offset`.
    path: String,
}

/// Answers one page of a listing.
fn list(sim: &Sim, l: Listing, params: &Params) -> Response {
    let Ok(limit) = util::parse_u64(params.get("limit")) else {
        return errors(StatusCode::BAD_REQUEST, "limit: Must be an integer between 1 and 100.");
    };
    let opt_fields = params.get("opt_fields");
    let scope = util::fingerprint(&l.path);
    let Some(limit) = limit else {
        // No `limit`: no paging; too big a result is refused.
        let page = sim.select(l.stream, &l.filter, Order::Index, false, 0, UNPAGED_MAX as usize + 1);
        if page.total > UNPAGED_MAX {
            return errors(
                StatusCode::BAD_REQUEST,
                "The result is too large. You should use pagination (may require specifying a workspace)!",
            );
        }
        let data: Vec<Value> = sim.records(l.stream, &page.items).into_iter().map(|r| shape(r, opt_fields)).collect();
        return util::json(StatusCode::OK, &json!({"data": data}));
    };
    if !(1..=PAGE_MAX as u64).contains(&limit) {
        return errors(StatusCode::BAD_REQUEST, "limit: Must be an integer between 1 and 100.");
    }
    let start = match params.get("offset") {
        None => 0,
        Some(token) => {
            let offset = util::verify_cursor(sim.cursor_key(), token)
                .filter(|p| util::payload_field(p, "s") == Some(scope.as_str()))
                .and_then(|p| util::payload_field(&p, "o").and_then(|o| o.parse::<u64>().ok()));
            match offset {
                Some(o) => o,
                None => return errors(StatusCode::BAD_REQUEST, "offset: Your pagination token is invalid."),
            }
        }
    };
    let size = (limit as usize).min(sim.cap(PAGE_MAX));
    let page = sim.select(l.stream, &l.filter, Order::Index, false, start, size);
    let next = start + page.items.len() as u64;
    let data: Vec<Value> = sim.records(l.stream, &page.items).into_iter().map(|r| shape(r, opt_fields)).collect();
    let next_page = if next < page.total {
        let offset = util::sign_cursor(sim.cursor_key(), &format!("s={scope};o={next}"));
        let sep = if l.path.contains('?') { '&' } else { '?' };
        let path = format!("{}{sep}limit={limit}&offset={offset}", l.path);
        json!({"offset": offset, "path": path, "uri": format!("{}{}{path}", sim.base_url, SPEC.api_base)})
    } else {
        Value::Null
    };
    util::json(StatusCode::OK, &json!({"data": data, "next_page": next_page}))
}

/// The path a listing's pages link to: `path` with the request's own parameters but
/// `limit` and `offset`.
fn link_path(path: &str, params: &Params) -> String {
    let kept: Vec<String> = params
        .pairs()
        .filter(|(k, _)| *k != "limit" && *k != "offset")
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
}

/// `GET /workspaces`: the one workspace.
async fn workspaces(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    util::json(
        StatusCode::OK,
        &json!({"data": [{"gid": WORKSPACE_GID, "resource_type": "workspace", "name": "Sim Workspace"}], "next_page": null}),
    )
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn project_listing(workspace: Option<&str>, path: String) -> Early<Listing> {
    match workspace {
        None => Err(Box::new(errors(StatusCode::BAD_REQUEST, "workspace: Missing input"))),
        Some(WORKSPACE_GID) => Ok(Listing { stream: PROJECTS, filter: Filter::all(), path }),
        Some(other) => Err(Box::new(errors(StatusCode::NOT_FOUND, &format!("workspace: Unknown object: {other}")))),
    }
}

/// `GET /projects?workspace=`.
async fn projects(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    match project_listing(params.get("workspace"), link_path("/projects", &params)) {
        Ok(l) => list(&sim, l, &params),
        Err(response) => *response,
    }
}

/// `GET /workspaces/{gid}/projects`.
async fn workspace_projects(
    State(sim): State<Arc<Sim>>,
    Path(gid): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    match project_listing(Some(&gid), link_path(&format!("/workspaces/{gid}/projects"), &params)) {
        Ok(l) => list(&sim, l, &params),
        Err(response) => *response,
    }
}

fn task_listing(sim: &Sim, project: &str, params: &Params, path: String) -> Early<Listing> {
    let Some(p) = project_index(sim, project) else {
        return Err(Box::new(errors(StatusCode::NOT_FOUND, &format!("project: Unknown object: {project}"))));
    };
    let mut filter = Filter::all();
    filter.partition = Some(p);
    if let Some(raw) = params.get("modified_since") {
        let Some(t) = util::parse_ts(raw) else {
            return Err(Box::new(errors(
                StatusCode::BAD_REQUEST,
                &format!("modified_since: Not a valid date-time: {raw}"),
            )));
        };
        // [ASSUMED] inclusive: a task modified at exactly that instant is listed.
        filter.updated(Cmp::Ge, t);
    }
    Ok(Listing { stream: TASKS, filter, path })
}

/// `GET /tasks?project=`.
async fn tasks(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    let Some(project) = params.get("project") else {
        return errors(
            StatusCode::BAD_REQUEST,
            "Must specify exactly one of project, tag, section, user task list, or assignee + workspace",
        );
    };
    match task_listing(&sim, project, &params, link_path("/tasks", &params)) {
        Ok(l) => list(&sim, l, &params),
        Err(response) => *response,
    }
}

/// `GET /projects/{gid}/tasks`.
async fn project_tasks(
    State(sim): State<Arc<Sim>>,
    Path(gid): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    match task_listing(&sim, &gid, &params, link_path(&format!("/projects/{gid}/tasks"), &params)) {
        Ok(l) => list(&sim, l, &params),
        Err(response) => *response,
    }
}

/// A sync token's contents: the project, the changes after `after` (up to `upto` once
/// a round started, `offset` of them served) and the generation it was issued in.
struct SyncState {
    project: u64,
    after: i64,
    upto: i64,
    offset: u64,
    generation: u64,
}

impl SyncState {
    fn encode(&self, sim: &Sim) -> String {
        let payload =
            format!("p={};a={};u={};o={};g={}", self.project, self.after, self.upto, self.offset, self.generation);
        util::sign_cursor(sim.cursor_key(), &payload)
    }

    fn decode(sim: &Sim, token: &str) -> Option<Self> {
        let p = util::verify_cursor(sim.cursor_key(), token)?;
        let num = |k: &str| util::payload_field(&p, k).and_then(|v| v.parse::<i64>().ok());
        Some(Self {
            project: u64::try_from(num("p")?).ok()?,
            after: num("a")?,
            upto: num("u")?,
            offset: u64::try_from(num("o")?).ok()?,
            generation: u64::try_from(num("g")?).ok()?,
        })
    }

    /// A token for the changes from now on.
    fn fresh(sim: &Sim, project: u64) -> Self {
        let now = sim.watermark(TASKS).unwrap_or(sim.anchor);
        Self { project, after: nanos(now), upto: 0, offset: 0, generation: sim.sync_generation() }
    }
}

fn nanos(t: Ts) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn from_nanos(n: i64) -> Ts {
    DateTime::<Utc>::from_timestamp_nanos(n)
}

/// The 412 of a missing, unknown or expired sync token, with a fresh one.
fn sync_invalid(sim: &Sim, project: u64) -> Response {
    util::json(
        StatusCode::PRECONDITION_FAILED,
        &json!({
            "errors": [{"message": "Sync token invalid or too old. If you are attempting to keep resources in sync, you must fetch the full dataset for this query now and use the new sync token for the next sync."}],
            "sync": SyncState::fresh(sim, project).encode(sim),
        }),
    )
}

/// `GET /events?resource=<project gid>&sync=<token>`.
async fn events(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    let Some(resource) = params.get("resource") else {
        return errors(StatusCode::BAD_REQUEST, "resource: Missing input");
    };
    let Some(project) = project_index(&sim, resource) else {
        return errors(StatusCode::NOT_FOUND, &format!("resource: Unknown object: {resource}"));
    };
    let state = params.get("sync").and_then(|t| SyncState::decode(&sim, t)).filter(|s| s.project == project);
    let Some(mut state) = state.filter(|s| s.generation == sim.sync_generation()) else {
        return sync_invalid(&sim, project);
    };
    if state.upto == 0 {
        // A new round: the changes up to now.
        state.upto = nanos(sim.watermark(TASKS).unwrap_or(sim.anchor));
    }
    let (after, upto) = (from_nanos(state.after), from_nanos(state.upto));
    let mut filter = Filter::all();
    filter.partition = Some(project);
    filter.updated(Cmp::Gt, after);
    filter.updated(Cmp::Le, upto);
    let changed = sim.select(TASKS, &filter, Order::Updated, false, state.offset, PAGE_MAX);
    let later: HashSet<u64> = sim.deleted_after(TASKS, upto, Some(project)).into_iter().collect();
    let removed: Vec<u64> =
        sim.deleted_after(TASKS, after, Some(project)).into_iter().filter(|i| !later.contains(i)).collect();
    let parent = json!({"gid": project_gid(project), "resource_type": "project"});
    let mut data: Vec<Value> = sim
        .metas(TASKS, &changed.items)
        .into_iter()
        .map(|m| {
            let added = m.created > after;
            json!({
                "action": if added { "added" } else { "changed" },
                "resource": {"gid": task_gid(m.index), "resource_type": "task", "resource_subtype": "default_task"},
                "parent": if added { parent.clone() } else { Value::Null },
                "created_at": util::iso_ms(m.updated),
                // [ASSUMED] the simulator does not know which field changed.
                "change": if added { Value::Null } else { json!({"field": "modified_at", "action": "changed"}) },
                "user": {"gid": USER_BASE.to_string(), "resource_type": "user"},
                "type": "task",
            })
        })
        .collect();
    let from = state.offset.saturating_sub(changed.total) as usize;
    let room = PAGE_MAX.saturating_sub(data.len());
    for index in removed.iter().skip(from).take(room) {
        data.push(json!({
            "action": "deleted",
            "resource": {"gid": task_gid(*index), "resource_type": "task", "resource_subtype": "default_task"},
            "parent": Value::Null,
            "created_at": util::iso_ms(upto),
            "change": Value::Null,
            "user": {"gid": USER_BASE.to_string(), "resource_type": "user"},
            "type": "task",
        }));
    }
    let served = data.len() as u64;
    let total = changed.total + removed.len() as u64;
    let has_more = state.offset + served < total;
    let next = if has_more {
        SyncState { offset: state.offset + served, ..state }
    } else {
        SyncState { after: state.upto, upto: 0, offset: 0, ..state }
    };
    util::json(StatusCode::OK, &json!({"data": data, "sync": next.encode(&sim), "has_more": has_more}))
}
