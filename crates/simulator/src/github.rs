//! GitHub REST API (v3, `2022-11-28`): a personal access token (`Authorization: Bearer
//! ghp_…` or `token ghp_…`) or a GitHub App (an RS256 JWT signed with the app's key,
//! traded at `POST /app/installations/{id}/access_tokens` for an hour-long `ghs_…`
//! installation token); `GET /user/repos` (a plain array, `since`) and `GET
//! /installation/repositories` (`{total_count, repositories}`, no `since`), issues and
//! pull requests per repository (`/repos/{owner}/{repo}/issues|pulls`, `state`, `sort`,
//! `direction`; `since` on issues only). Pages are `per_page` (≤ 100, default 30) and
//! `page`, linked by `Link` headers. Every listing carries an `ETag`; a request whose
//! `If-None-Match` matches gets `304 Not Modified`, which costs no quota. Responses carry
//! `X-RateLimit-Limit/Remaining/Used/Reset/Resource`; the throttle fault answers 403
//! like GitHub's secondary limit (`Retry-After`, "secondary rate limit") and, every other
//! time, like an exhausted primary limit (`X-RateLimit-Remaining: 0`, reset time).
//! [sim] The issues listing holds issues only (GitHub's also lists pull requests, marked
//! by a `pull_request` field); issue and pull request numbers share one sequence per
//! repository as on GitHub (odd issues, even pull requests here).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::appkey::AppKey;
use super::auth::TokenCheck;
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, lock};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params};

const REPOS: usize = 0;
const ISSUES: usize = 1;
const PULLS: usize = 2;
const MAX_PAGE: u64 = 100;
const DEFAULT_PAGE: u64 = 30;
const HOURLY_LIMIT: u64 = 5_000;
/// The owner of every simulated repository.
pub(crate) const OWNER: &str = "sim-org";
/// The simulated app and its one installation.
pub(crate) const APP_ID: &str = "81234";
pub(crate) const INSTALLATION_ID: &str = "4242";
const TOKEN_PATH: &str = "/app/installations/4242/access_tokens";
const DOCS: &str = "https://docs.github.com/rest";

/// The GitHub simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "",
    token_path: Some(TOKEN_PATH),
    token_paths: &[TOKEN_PATH],
    streams: &[
        StreamSpec { name: "repositories", aliases: &["repos"], kind: StreamKind::Parent },
        StreamSpec { name: "issues", aliases: &[], kind: StreamKind::Child },
        StreamSpec { name: "pull_requests", aliases: &["pulls"], kind: StreamKind::Child },
    ],
    default_ttl: Some(Duration::from_secs(3600)),
    rotation: Rotation::Never,
    access_prefix: "ghs_",
    refresh_prefix: "ghr_",
    resolution_ns: 1_000_000_000,
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
        .route("/app/installations/{id}/access_tokens", post(installation_token))
        .route("/user/repos", get(user_repos))
        .route("/installation/repositories", get(installation_repos))
        .route("/repos/{owner}/{repo}/issues", get(issues))
        .route("/repos/{owner}/{repo}/pulls", get(pulls))
}

fn message(status: StatusCode, text: &str) -> Response {
    util::json(status, &json!({"message": text, "documentation_url": DOCS, "status": status.as_u16().to_string()}))
}

fn epoch_in(secs: u64) -> String {
    (Utc::now().timestamp() + i64::try_from(secs).unwrap_or(0)).to_string()
}

fn throttle(sim: &Sim, _: &str) -> Response {
    let wait = sim.retry_after();
    if sim.data_request_count().is_multiple_of(2) {
        let mut r = message(StatusCode::FORBIDDEN, "API rate limit exceeded for installation ID 4242.");
        util::set_header(&mut r, "x-ratelimit-limit", &HOURLY_LIMIT.to_string());
        util::set_header(&mut r, "x-ratelimit-remaining", "0");
        util::set_header(&mut r, "x-ratelimit-used", &HOURLY_LIMIT.to_string());
        util::set_header(&mut r, "x-ratelimit-reset", &epoch_in(wait));
        util::set_header(&mut r, "x-ratelimit-resource", "core");
        return r;
    }
    let r = message(
        StatusCode::FORBIDDEN,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    );
    util::with_header(r, "retry-after", &wait.to_string())
}

fn unavailable(_: &Sim) -> Response {
    message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
}

/// The rate-limit headers on every data response (a throttle response keeps its own).
fn decorate(sim: &Sim, path: &str, response: &mut Response) {
    if path == TOKEN_PATH || response.headers().contains_key("x-ratelimit-remaining") {
        return;
    }
    let used = sim.billed_requests() % HOURLY_LIMIT;
    util::set_header(response, "x-ratelimit-limit", &HOURLY_LIMIT.to_string());
    util::set_header(response, "x-ratelimit-remaining", &(HOURLY_LIMIT - used).to_string());
    util::set_header(response, "x-ratelimit-used", &used.to_string());
    util::set_header(response, "x-ratelimit-reset", &epoch_in(3_600));
    util::set_header(response, "x-ratelimit-resource", "core");
}

/// The personal access token.
fn pat(sim: &Sim) -> String {
    format!("ghp_{}", sim.static_secret("github-pat", 36))
}

fn credentials(sim: &Sim) -> Value {
    json!({"token": pat(sim)})
}

/// The app's key pair, made on first use.
fn app_key(sim: &Sim) -> Option<&AppKey> {
    if let Some(k) = sim.app_key.get() {
        return Some(k);
    }
    let key = AppKey::generate()?;
    Some(sim.app_key.get_or_init(|| key))
}

/// What a GitHub App installation stores to connect: the app id, the installation id
/// and the app's private key (PEM).
pub(crate) fn app_credentials(sim: &Sim) -> Option<Value> {
    let key = app_key(sim)?;
    Some(json!({"app_id": APP_ID, "installation_id": INSTALLATION_ID, "private_key": key.private_pem}))
}

/// The token of `Authorization: Bearer …` or `token …`.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = util::header_str(headers, "authorization")?;
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")).then(|| token.trim().to_owned())
}

/// Who is calling.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    User,
    Installation,
}

fn bad_credentials() -> Response {
    message(StatusCode::UNAUTHORIZED, "Bad credentials")
}

fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<Caller> {
    let Some(token) = presented(headers) else {
        return Err(Box::new(message(StatusCode::UNAUTHORIZED, "Requires authentication")));
    };
    if sim.revoked() {
        return Err(Box::new(bad_credentials()));
    }
    if token == pat(sim) {
        return Ok(Caller::User);
    }
    match sim.check_token(&token) {
        TokenCheck::Valid => Ok(Caller::Installation),
        _ => Err(Box::new(bad_credentials())),
    }
}

/// `POST /app/installations/{id}/access_tokens` with the app's JWT: `201 {token,
/// expires_at, permissions, repository_selection}`.
async fn installation_token(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some(jwt) = presented(&headers) else {
        return message(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded");
    };
    let Some(key) = app_key(&sim) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "The app has no key");
    };
    let claims = match key.verify(&jwt) {
        Ok(c) => c,
        Err(why) => return message(StatusCode::UNAUTHORIZED, why),
    };
    let now = Utc::now().timestamp();
    let num = |k: &str| claims.get(k).and_then(Value::as_i64);
    let issuer = claims.get("iss").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    let (Some(iat), Some(exp)) = (num("iat"), num("exp")) else {
        return message(StatusCode::UNAUTHORIZED, "'Issued at' and 'Expiration time' claims are required");
    };
    if exp <= now || exp - iat > 660 || exp > now + 600 {
        return message(
            StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the \
             assertion expires",
        );
    }
    if iat > now + 60 {
        return message(
            StatusCode::UNAUTHORIZED,
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        );
    }
    if issuer.as_deref() != Some(APP_ID) || sim.revoked() {
        return message(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded");
    }
    if id != INSTALLATION_ID {
        return message(StatusCode::NOT_FOUND, "Not Found");
    }
    let issued = lock(&sim.auth).issue_session(SPEC.access_prefix);
    let expires_at = Utc::now() + TimeDelta::seconds(i64::try_from(issued.expires_in.unwrap_or(3_600)).unwrap_or(0));
    util::json(
        StatusCode::CREATED,
        &json!({
            "token": issued.access_token,
            "expires_at": expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "permissions": {"issues": "read", "pull_requests": "read", "metadata": "read"},
            "repository_selection": "all",
        }),
    )
}

fn ts(t: util::Ts) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn repo_name(index: u64) -> String {
    format!("repo-{:04}", index + 1)
}

fn repo_index(sim: &Sim, owner: &str, repo: &str) -> Option<u64> {
    if owner != OWNER {
        return None;
    }
    let n: u64 = repo.strip_prefix("repo-")?.parse().ok()?;
    let index = n.checked_sub(1)?;
    sim.meta(REPOS, index).map(|_| index)
}

fn login(r: &mut Rng) -> String {
    format!("{}-{}", r.pick(fake::FIRST_NAMES).to_lowercase(), r.pick(fake::LAST_NAMES).to_lowercase())
}

/// Whether a record is closed in its current revision.
fn closed(sim: &Sim, stream: usize, m: &Meta) -> bool {
    Rng::new(sim.config.seed, &format!("gh-state-{stream}"), m.index, m.rev).chance(35)
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let base = &sim.base_url;
    if stream == REPOS {
        let name = repo_name(m.index);
        let full = format!("{OWNER}/{name}");
        let private = r.chance(30);
        let description = fake::sentence(&mut Rng::new(sim.config.seed, "gh-desc", m.index, m.rev), 6);
        return json!({
            "id": 100_000 + m.index,
            "node_id": format!("R_kgDO{}", fake::base36(m.index, 6)),
            "name": name,
            "full_name": full,
            "private": private,
            "owner": {"login": OWNER, "id": 9_000, "type": "Organization"},
            "html_url": format!("https://github.com/{full}"),
            "description": description,
            "fork": false,
            "url": format!("{base}/repos/{full}"),
            "created_at": ts(m.created),
            "updated_at": ts(m.updated),
            "pushed_at": ts(m.updated),
            "language": r.pick(&["Rust", "Go", "TypeScript", "Python"]),
            "default_branch": "main",
            "visibility": if private { "private" } else { "public" },
            "archived": false,
            "open_issues_count": r.below(40),
        });
    }
    let repo = m.partition.unwrap_or(0);
    let full = format!("{OWNER}/{}", repo_name(repo));
    let number = if stream == ISSUES { 2 * m.ordinal + 1 } else { 2 * m.ordinal + 2 };
    let is_closed = closed(sim, stream, m);
    let mut v = Rng::new(sim.config.seed, "gh-rev", m.index, m.rev);
    let title = fake::sentence(&mut v, 5);
    let assignee = (!v.chance(25)).then(|| json!({"login": login(&mut v), "type": "User"}));
    let user = json!({"login": login(&mut r), "type": "User"});
    let closed_at = is_closed.then(|| ts(m.updated));
    if stream == ISSUES {
        return json!({
            "id": 500_000_000 + m.index,
            "node_id": format!("I_kwDO{}", fake::base36(m.index, 8)),
            "number": number,
            "title": title,
            "state": if is_closed { "closed" } else { "open" },
            "user": user,
            "assignee": assignee,
            "labels": [],
            "comments": v.below(12),
            "created_at": ts(m.created),
            "updated_at": ts(m.updated),
            "closed_at": closed_at,
            "url": format!("{base}/repos/{full}/issues/{number}"),
            "repository_url": format!("{base}/repos/{full}"),
            "html_url": format!("https://github.com/{full}/issues/{number}"),
        });
    }
    let merged = is_closed && v.chance(70);
    json!({
        "id": 700_000_000 + m.index,
        "node_id": format!("PR_kwDO{}", fake::base36(m.index, 8)),
        "number": number,
        "title": title,
        "state": if is_closed { "closed" } else { "open" },
        "draft": !is_closed && v.chance(15),
        "user": user,
        "assignee": assignee,
        "head": {"ref": format!("feature/{}", fake::base36(m.index, 5)), "sha": util::fingerprint(&format!("{}-{}", m.index, m.rev))},
        "base": {"ref": "main"},
        "created_at": ts(m.created),
        "updated_at": ts(m.updated),
        "closed_at": closed_at,
        "merged_at": merged.then(|| ts(m.updated)),
        "url": format!("{base}/repos/{full}/pulls/{number}"),
        "html_url": format!("https://github.com/{full}/pull/{number}"),
    })
}

/// A listing request's paging and order.
struct Listing {
    page: u64,
    per_page: u64,
    order: Order,
    desc: bool,
}

fn validation(text: &str) -> Response {
    message(StatusCode::UNPROCESSABLE_ENTITY, text)
}

fn listing(sim: &Sim, params: &Params, default_desc: impl Fn(&str) -> bool) -> Early<Listing> {
    let page = match util::parse_u64(params.get("page")) {
        Ok(p) => p.unwrap_or(1).max(1),
        Err(()) => return Err(Box::new(validation("page must be a positive integer"))),
    };
    let per_page = match util::parse_u64(params.get("per_page")) {
        Ok(p) => p.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE).min(sim.cap(MAX_PAGE as usize) as u64),
        Err(()) => return Err(Box::new(validation("per_page must be a positive integer"))),
    };
    let sort = params.get("sort").unwrap_or("created");
    let order = match sort {
        "created" | "full_name" => Order::Index,
        "updated" | "pushed" => Order::Updated,
        other => return Err(Box::new(validation(&format!("sort: '{other}' is not a supported value")))),
    };
    let desc = match params.get("direction") {
        None => default_desc(sort),
        Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(Box::new(validation(&format!("direction: '{other}' is not asc or desc")))),
    };
    Ok(Listing { page, per_page, order, desc })
}

fn since(params: &Params, filter: &mut Filter) -> Early<()> {
    if let Some(s) = params.get("since") {
        match util::parse_ts(&s.replace(' ', "+")) {
            // [ASSUMED] GitHub's `since` includes the boundary second.
            Some(t) => filter.updated(Cmp::Ge, t),
            None => return Err(Box::new(validation(&format!("since: '{s}' is not an ISO 8601 timestamp")))),
        }
    }
    Ok(())
}

/// One page of `stream` under `filter` (only records in `state` unless `all`), its
/// `Link` header and `ETag`; `304` when `If-None-Match` names the page's tag.
#[allow(clippy::too_many_arguments)]
fn page(
    sim: &Sim,
    headers: &HeaderMap,
    path: &str,
    params: &Params,
    stream: usize,
    filter: &Filter,
    state: Option<&str>,
    l: &Listing,
    wrap: impl Fn(Vec<Value>, u64) -> Value,
) -> Response {
    let offset = (l.page - 1).saturating_mul(l.per_page);
    let (items, total) = match state {
        None | Some("all") => {
            let p = sim.select(stream, filter, l.order, l.desc, offset, l.per_page as usize);
            (p.items, p.total)
        }
        Some(s @ ("open" | "closed")) => {
            let everything = sim.select(stream, filter, l.order, l.desc, 0, sim.len(stream) as usize);
            let metas = sim.metas(stream, &everything.items);
            let wanted: Vec<u64> =
                metas.iter().filter(|m| closed(sim, stream, m) == (s == "closed")).map(|m| m.index).collect();
            let total = wanted.len() as u64;
            (wanted.into_iter().skip(offset as usize).take(l.per_page as usize).collect(), total)
        }
        Some(other) => return validation(&format!("state: '{other}' is not open, closed or all")),
    };
    let body = wrap(sim.records(stream, &items), total);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let etag = format!("W/\"{}\"", hex::encode(&Sha256::digest(&bytes)[..16]));
    let matches = util::header_str(headers, "if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        // Not modified: no body, and no quota spent.
        sim.count_free_request();
        let mut r = util::empty(StatusCode::NOT_MODIFIED);
        util::set_header(&mut r, "etag", &etag);
        return r;
    }
    let mut response = util::raw(StatusCode::OK, "application/json; charset=utf-8", bytes);
    util::set_header(&mut response, "etag", &etag);
    let last = total.div_ceil(l.per_page).max(1);
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
    if l.page < last {
        links.push(link(l.page + 1, "next"));
        links.push(link(last, "last"));
    }
    if l.page > 1 {
        links.push(link(l.page - 1, "prev"));
        links.push(link(1, "first"));
    }
    if !links.is_empty() {
        util::set_header(&mut response, "link", &links.join(", "));
    }
    response
}

async fn user_repos(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    match authorize(&sim, &headers) {
        Ok(Caller::User) => {}
        Ok(Caller::Installation) => return message(StatusCode::FORBIDDEN, "Resource not accessible by integration"),
        Err(r) => return *r,
    }
    let params = Params::from_query(raw.as_deref());
    let l = match listing(&sim, &params, |sort| sort != "full_name") {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let mut filter = Filter::all();
    if let Err(r) = since(&params, &mut filter) {
        return *r;
    }
    let l = Listing { order: if params.get("sort").is_none() { Order::Index } else { l.order }, ..l };
    page(&sim, &headers, "/user/repos", &params, REPOS, &filter, None, &l, |records, _| Value::Array(records))
}

async fn installation_repos(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    match authorize(&sim, &headers) {
        Ok(Caller::Installation) => {}
        Ok(Caller::User) => {
            return message(
                StatusCode::FORBIDDEN,
                "You must authenticate with an installation access token in order to list repositories for an \
                 installation.",
            );
        }
        Err(r) => return *r,
    }
    let params = Params::from_query(raw.as_deref());
    // No `sort`, `direction` or `since` here: the installation's repositories by id.
    let l = match listing(&sim, &params, |_| false) {
        Ok(l) => Listing { order: Order::Index, desc: false, ..l },
        Err(r) => return *r,
    };
    page(
        &sim,
        &headers,
        "/installation/repositories",
        &params,
        REPOS,
        &Filter::all(),
        None,
        &l,
        |records, total| json!({"total_count": total, "repository_selection": "all", "repositories": records}),
    )
}

fn child(
    sim: &Sim,
    stream: usize,
    headers: &HeaderMap,
    owner: &str,
    repo: &str,
    raw: Option<&str>,
    kind: &str,
) -> Response {
    if let Err(r) = authorize(sim, headers) {
        return *r;
    }
    let Some(index) = repo_index(sim, owner, repo) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let params = Params::from_query(raw);
    // Issues: newest created first by default; pull requests: `desc` for `created`,
    // `asc` for any other sort.
    let l = match listing(sim, &params, |sort| stream == ISSUES || sort == "created") {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let mut filter = Filter::all();
    filter.partition = Some(index);
    if stream == ISSUES
        && let Err(r) = since(&params, &mut filter)
    {
        return *r;
    }
    let state = Some(params.get("state").unwrap_or("open"));
    let path = format!("/repos/{owner}/{repo}/{kind}");
    page(sim, headers, &path, &params, stream, &filter, state, &l, |records, _| Value::Array(records))
}

async fn issues(
    State(sim): State<Arc<Sim>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    child(&sim, ISSUES, &headers, &owner, &repo, raw.as_deref(), "issues")
}

async fn pulls(
    State(sim): State<Arc<Sim>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    child(&sim, PULLS, &headers, &owner, &repo, raw.as_deref(), "pulls")
}
