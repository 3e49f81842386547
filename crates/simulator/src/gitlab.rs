//! GitLab REST API v4: a personal access token in `PRIVATE-TOKEN` (or as `Authorization:
//! Bearer`); `GET /api/v4/projects` (`membership`, `order_by`, `sort`, and
//! `updated_after`/`updated_before`, which GitLab accepts only with
//! `order_by=updated_at`), issues and merge requests per project
//! (`/projects/{id}/issues|merge_requests`, the id or the URL-encoded path;
//! `updated_after`, `order_by`, `sort`, `state`). Offset pages: `page` and `per_page`
//! (≤ 100, default 20), with `X-Page`, `X-Per-Page`, `X-Next-Page` (empty on the last
//! page), `X-Prev-Page`, `X-Total`, `X-Total-Pages` and a `Link` header. Every answer
//! carries `RateLimit-Limit/Observed/Remaining/Reset/ResetTime` (a minute's window); the
//! throttle fault is `429` with `Retry-After` and the body `Retry later`.
//! OAuth2: `POST /oauth/token` (form or JSON, `grant_type=refresh_token` with the
//! application's `client_id` and `client_secret`) answers a two-hour access token and a
//! new refresh token (the old one is spent); the access token is accepted as
//! `Authorization: Bearer` beside the personal token.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

use super::auth::{RefreshError, TokenCheck};
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params};

const PROJECTS: usize = 0;
const ISSUES: usize = 1;
const MERGE_REQUESTS: usize = 2;
const MAX_PAGE: u64 = 100;
const DEFAULT_PAGE: u64 = 20;
const MINUTE_LIMIT: u64 = 2_000;
/// The group every simulated project belongs to.
pub(crate) const GROUP: &str = "sim-group";

/// The GitLab simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/api/v4",
    token_path: Some("/oauth/token"),
    token_paths: &["/oauth/token"],
    streams: &[
        StreamSpec { name: "projects", aliases: &[], kind: StreamKind::Parent },
        StreamSpec { name: "issues", aliases: &[], kind: StreamKind::Child },
        StreamSpec { name: "merge_requests", aliases: &["mrs"], kind: StreamKind::Child },
    ],
    default_ttl: Some(Duration::from_secs(7200)),
    rotation: Rotation::Always,
    access_prefix: "gloas-",
    refresh_prefix: "glrt-",
    resolution_ns: 1_000_000,
    refine: None,
    router,
    throttle,
    unavailable,
    credentials,
    record,
    decorate: Some(decorate),
};

fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/oauth/token", post(oauth_token))
        .route("/api/v4/projects", get(projects))
        .route("/api/v4/projects/{id}/issues", get(issues))
        .route("/api/v4/projects/{id}/merge_requests", get(merge_requests))
}

fn message(status: StatusCode, text: &str) -> Response {
    util::json(status, &json!({"message": text}))
}

fn ratelimit_headers(response: &mut Response, observed: u64) {
    let reset = Utc::now() + TimeDelta::seconds(60);
    util::set_header(response, "ratelimit-limit", &MINUTE_LIMIT.to_string());
    util::set_header(response, "ratelimit-observed", &observed.to_string());
    util::set_header(response, "ratelimit-remaining", &MINUTE_LIMIT.saturating_sub(observed).to_string());
    util::set_header(response, "ratelimit-reset", &reset.timestamp().to_string());
    util::set_header(response, "ratelimit-resettime", &reset.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
}

fn throttle(sim: &Sim, _: &str) -> Response {
    let mut r = util::raw(StatusCode::TOO_MANY_REQUESTS, "text/plain", b"Retry later\n".to_vec());
    util::set_header(&mut r, "retry-after", &sim.retry_after().to_string());
    ratelimit_headers(&mut r, MINUTE_LIMIT);
    r
}

fn unavailable(_: &Sim) -> Response {
    message(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable")
}

fn decorate(sim: &Sim, _: &str, response: &mut Response) {
    if response.headers().contains_key("ratelimit-limit") {
        return;
    }
    let observed = sim.window_count(std::time::Duration::from_secs(60));
    ratelimit_headers(response, observed);
}

fn token(sim: &Sim) -> String {
    format!("glpat-{}", sim.static_secret("gitlab-pat", 20))
}

fn credentials(sim: &Sim) -> Value {
    json!({"private_token": token(sim)})
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    util::json(status, &json!({"error": error, "error_description": description}))
}

/// `POST /oauth/token`: a refresh-token grant; the refresh token rotates.
async fn oauth_token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let json = util::header_str(&headers, "content-type").is_some_and(|t| t.starts_with("application/json"));
    let form: std::collections::HashMap<String, String> = if json {
        match serde_json::from_slice::<serde_json::Map<String, Value>>(&body) {
            Ok(map) => map.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_owned()))).collect(),
            Err(_) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "The request body is not JSON."),
        }
    } else {
        let params = Params::parse(&String::from_utf8_lossy(&body));
        ["grant_type", "client_id", "client_secret", "refresh_token"]
            .into_iter()
            .filter_map(|k| Some((k.to_owned(), params.get(k)?.to_owned())))
            .collect()
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "refresh_token" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        );
    }
    let (id, secret) = sim.client_pair();
    if field("client_id") != id || field("client_secret") != secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.",
        );
    }
    let result = super::core::lock(&sim.auth).refresh(field("refresh_token"), SPEC.refresh_prefix, SPEC.access_prefix);
    match result {
        Ok(issued) => util::json(
            StatusCode::OK,
            &json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "refresh_token": issued.refresh_token,
                "scope": "read_api",
                "created_at": Utc::now().timestamp(),
            }),
        ),
        Err(RefreshError::Unknown | RefreshError::Reused | RefreshError::Revoked) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
        ),
    }
}

fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    let presented = util::header_str(headers, "private-token").map(str::to_owned).or_else(|| util::bearer(headers));
    if presented.as_ref().is_some_and(|t| *t == token(sim)) && !sim.revoked() {
        return Ok(());
    }
    if presented.is_some_and(|t| t.starts_with(SPEC.access_prefix) && sim.check_token(&t) == TokenCheck::Valid) {
        return Ok(());
    }
    Err(Box::new(message(StatusCode::UNAUTHORIZED, "401 Unauthorized")))
}

fn project_path(index: u64) -> String {
    format!("project-{:04}", index + 1)
}

fn project_index(sim: &Sim, id: &str) -> Option<u64> {
    let index = match id.parse::<u64>() {
        Ok(n) => n.checked_sub(4_000_000)?,
        Err(_) => {
            let decoded = id.replace("%2F", "/").replace("%2f", "/");
            let path = decoded.strip_prefix(GROUP)?.strip_prefix('/')?;
            path.strip_prefix("project-")?.parse::<u64>().ok()?.checked_sub(1)?
        }
    };
    sim.meta(PROJECTS, index).map(|_| index)
}

fn person(r: &mut Rng) -> Value {
    let first = r.pick(fake::FIRST_NAMES);
    let last = r.pick(fake::LAST_NAMES);
    json!({
        "id": 1_000 + r.below(9_000),
        "username": format!("{}.{}", first.to_lowercase(), last.to_lowercase()),
        "name": format!("{first} {last}"),
        "state": "active",
    })
}

fn state_of(sim: &Sim, stream: usize, m: &Meta) -> &'static str {
    let mut r = Rng::new(sim.config.seed, &format!("gl-state-{stream}"), m.index, m.rev);
    match (stream, r.below(100)) {
        (_, 0..65) => "opened",
        (MERGE_REQUESTS, 65..85) => "merged",
        _ => "closed",
    }
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let web = "https://gitlab.example.com";
    if stream == PROJECTS {
        let path = project_path(m.index);
        let name = format!("{} {}", fake::company(&mut r), r.pick(&["API", "Web", "Infra", "Mobile"]));
        let description = fake::sentence(&mut Rng::new(sim.config.seed, "gl-desc", m.index, m.rev), 6);
        return json!({
            "id": 4_000_000 + m.index,
            "description": description,
            "name": name,
            "name_with_namespace": format!("Sim Group / {name}"),
            "path": path,
            "path_with_namespace": format!("{GROUP}/{path}"),
            "created_at": util::iso_ms(m.created),
            "updated_at": util::iso_ms(m.updated),
            "last_activity_at": util::iso_ms(m.updated),
            "default_branch": "main",
            "visibility": r.pick(&["private", "internal", "public"]),
            "web_url": format!("{web}/{GROUP}/{path}"),
            "archived": false,
        });
    }
    let project = m.partition.unwrap_or(0);
    let full = format!("{GROUP}/{}", project_path(project));
    let iid = m.ordinal + 1;
    let state = state_of(sim, stream, m);
    let mut v = Rng::new(sim.config.seed, "gl-rev", m.index, m.rev);
    let title = fake::sentence(&mut v, 5);
    let assignee = (!v.chance(25)).then(|| person(&mut v));
    let closed_at = (state != "opened").then(|| util::iso_ms(m.updated));
    let (sigil, kind, id) = if stream == ISSUES {
        ("#", "issues", 90_000_000 + m.index)
    } else {
        ("!", "merge_requests", 60_000_000 + m.index)
    };
    let mut out = json!({
        "id": id,
        "iid": iid,
        "project_id": 4_000_000 + project,
        "title": title,
        "state": state,
        "author": person(&mut r),
        "assignee": assignee,
        "assignees": assignee.iter().cloned().collect::<Vec<_>>(),
        "labels": [],
        "created_at": util::iso_ms(m.created),
        "updated_at": util::iso_ms(m.updated),
        "closed_at": closed_at,
        "web_url": format!("{web}/{full}/-/{kind}/{iid}"),
        "references": {"short": format!("{sigil}{iid}"), "relative": format!("{sigil}{iid}"), "full": format!("{full}{sigil}{iid}")},
    });
    if stream == MERGE_REQUESTS {
        out["source_branch"] = json!(format!("feature/{}", fake::base36(m.index, 5)));
        out["target_branch"] = json!("main");
        out["draft"] = json!(state == "opened" && v.chance(15));
        out["merged_at"] = json!((state == "merged").then(|| util::iso_ms(m.updated)));
    }
    out
}

fn bad_request(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, &format!("400 Bad request - {text}"))
}

/// One page of `stream` under `filter` (only records in `state` unless `all`), with
/// GitLab's paging headers.
fn page(sim: &Sim, path: &str, params: &Params, stream: usize, mut filter: Filter, state: &str) -> Response {
    let page = match util::parse_u64(params.get("page")) {
        Ok(p) => p.unwrap_or(1).max(1),
        Err(()) => return bad_request("page is invalid"),
    };
    let per_page = match util::parse_u64(params.get("per_page")) {
        Ok(p) => p.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE).min(sim.cap(MAX_PAGE as usize) as u64),
        Err(()) => return bad_request("per_page is invalid"),
    };
    let order_by = params.get("order_by").unwrap_or("created_at");
    let order = match order_by {
        "id" | "created_at" | "name" | "path" => Order::Index,
        "updated_at" | "last_activity_at" => Order::Updated,
        other => return bad_request(&format!("order_by does not have a valid value ({other})")),
    };
    let desc = match params.get("sort") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return bad_request("sort does not have a valid value"),
    };
    for (name, cmp) in [("updated_after", Cmp::Ge), ("updated_before", Cmp::Le)] {
        if let Some(t) = params.get(name) {
            if stream == PROJECTS && order_by != "updated_at" {
                return bad_request(&format!("{name} requires order_by=updated_at"));
            }
            match util::parse_ts(&t.replace(' ', "+")) {
                // [ASSUMED] "updated on or after": the boundary is included.
                Some(t) => filter.updated(cmp, t),
                None => return bad_request(&format!("{name} is invalid")),
            }
        }
    }
    let offset = (page - 1).saturating_mul(per_page);
    let (items, total) = if state == "all" {
        let p = sim.select(stream, &filter, order, desc, offset, per_page as usize);
        (p.items, p.total)
    } else {
        let everything = sim.select(stream, &filter, order, desc, 0, sim.len(stream) as usize);
        let wanted: Vec<u64> = sim
            .metas(stream, &everything.items)
            .iter()
            .filter(|m| state_of(sim, stream, m) == state)
            .map(|m| m.index)
            .collect();
        let total = wanted.len() as u64;
        (wanted.into_iter().skip(offset as usize).take(per_page as usize).collect(), total)
    };
    let mut response = util::json(StatusCode::OK, &Value::Array(sim.records(stream, &items)));
    let pages = total.div_ceil(per_page).max(1);
    let next = if page < pages { (page + 1).to_string() } else { String::new() };
    let prev = if page > 1 { (page - 1).to_string() } else { String::new() };
    util::set_header(&mut response, "x-page", &page.to_string());
    util::set_header(&mut response, "x-per-page", &per_page.to_string());
    util::set_header(&mut response, "x-next-page", &next);
    util::set_header(&mut response, "x-prev-page", &prev);
    util::set_header(&mut response, "x-total", &total.to_string());
    util::set_header(&mut response, "x-total-pages", &pages.to_string());
    let link = |n: u64, rel: &str| {
        let mut q = Params::default();
        for (k, v) in params.pairs().filter(|(k, _)| *k != "page") {
            q.push(k, v.to_owned());
        }
        q.push("page", n.to_string());
        let query: Vec<String> = q.pairs().map(|(k, v)| format!("{k}={}", util::encode(v))).collect();
        format!("<{}{path}?{}>; rel=\"{rel}\"", sim.base_url, query.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < pages {
        links.push(link(page + 1, "next"));
    }
    links.push(link(1, "first"));
    links.push(link(pages, "last"));
    util::set_header(&mut response, "link", &links.join(", "));
    response
}

async fn projects(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(r) = authorize(&sim, &headers) {
        return *r;
    }
    let params = Params::from_query(raw.as_deref());
    page(&sim, "/api/v4/projects", &params, PROJECTS, Filter::all(), "all")
}

fn child(sim: &Sim, stream: usize, headers: &HeaderMap, id: &str, raw: Option<&str>, kind: &str) -> Response {
    if let Err(r) = authorize(sim, headers) {
        return *r;
    }
    let Some(index) = project_index(sim, id) else {
        return message(StatusCode::NOT_FOUND, "404 Project Not Found");
    };
    let params = Params::from_query(raw);
    let state = match params.get("state").unwrap_or("all") {
        "opened" | "open" => "opened",
        s @ ("closed" | "all") => s,
        "merged" if stream == MERGE_REQUESTS => "merged",
        _ => return bad_request("state does not have a valid value"),
    };
    let mut filter = Filter::all();
    filter.partition = Some(index);
    page(sim, &format!("/api/v4/projects/{id}/{kind}"), &params, stream, filter, state)
}

async fn issues(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    child(&sim, ISSUES, &headers, &id, raw.as_deref(), "issues")
}

async fn merge_requests(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    child(&sim, MERGE_REQUESTS, &headers, &id, raw.as_deref(), "merge_requests")
}
