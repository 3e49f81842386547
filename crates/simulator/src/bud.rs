//! Bud [ASSUMED shape, PROVIDERS.md §10]: OAuth2 client credentials at
//! `POST /connect/token`, then `GET /v1/learners` and `/v1/employers` with
//! `pageNumber`/`pageSize`/`updatedSince`, `{"items","pageNumber","pageSize",
//! "totalCount"}` bodies, RFC 7807 errors and 429 with `Retry-After`.
//! Listings are ordered by id; `statuses` is accepted and ignored.
//!
//! Learner writes [ASSUMED]: `GET /v1/learners/{id}` (the learner as the listing's
//! items show it, with `updatedAt`, what a conflict check reads), `PATCH
//! /v1/learners/{id}` (200 with the learner, `updatedAt` moved on) and `POST|GET
//! /v1/learners/{id}/notes` (201 with the note). Bud creates no learners through the
//! API. Validation errors are RFC 7807 problems whose `detail` names every problem.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{NaiveDate, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::auth::TokenCheck;
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, applied, lock, valid_email, write_body};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params};

const LEARNERS: usize = 0;
const EMPLOYERS: usize = 1;
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: u64 = 50;

/// The Bud simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/v1",
    token_path: Some("/connect/token"),
    token_paths: &["/connect/token"],
    streams: &[
        StreamSpec { name: "learners", aliases: &[], kind: StreamKind::Primary },
        StreamSpec { name: "employers", aliases: &[], kind: StreamKind::Primary },
    ],
    default_ttl: Some(std::time::Duration::from_secs(3600)),
    rotation: Rotation::Never,
    access_prefix: "bud_at_",
    refresh_prefix: "bud_grant_",
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
        .route("/connect/token", post(token))
        .route("/v1/learners", get(learners))
        .route("/v1/employers", get(employers))
        .route("/v1/learners/{id}", get(get_learner).patch(update_learner))
        .route("/v1/learners/{id}/notes", get(learner_notes).post(add_note))
}

fn problem(sim: &Sim, status: StatusCode, title: &str, detail: &str) -> Response {
    let trace = format!("00-{}-01", sim.static_secret(&format!("trace{detail}"), 32));
    util::json(
        status,
        &json!({
            "type": format!("https://tools.ietf.org/html/rfc9110#section-15.{}", if status.is_server_error() { 6 } else { 5 }),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "traceId": trace,
        }),
    )
}

fn throttle(sim: &Sim, _: &str) -> Response {
    let response = problem(
        sim,
        StatusCode::TOO_MANY_REQUESTS,
        "Too Many Requests",
        "Rate limit of 120 requests per minute exceeded.",
    );
    util::with_header(response, "retry-after", &sim.retry_after().to_string())
}

fn unavailable(sim: &Sim) -> Response {
    problem(sim, StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", "The service is temporarily unavailable.")
}

fn client(sim: &Sim) -> (String, String) {
    (format!("bud-sim-{}", sim.static_secret("bud-client-id", 12)), sim.static_secret("bud-client-secret", 40))
}

fn credentials(sim: &Sim) -> Value {
    let (id, secret) = client(sim);
    json!({"client_id": id, "client_secret": secret})
}

fn oauth_error(code: &str, status: StatusCode) -> Response {
    util::json(status, &json!({"error": code}))
}

async fn token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Params::parse(&String::from_utf8_lossy(&body));
    let (id, secret) = match util::basic(&headers) {
        Some(pair) => pair,
        None => (
            form.get("client_id").unwrap_or_default().to_owned(),
            form.get("client_secret").unwrap_or_default().to_owned(),
        ),
    };
    if form.get("grant_type") != Some("client_credentials") {
        return oauth_error("unsupported_grant_type", StatusCode::BAD_REQUEST);
    }
    if (id, secret) != client(&sim) || sim.revoked() {
        return oauth_error("invalid_client", StatusCode::BAD_REQUEST);
    }
    let issued = lock(&sim.auth).issue_session(SPEC.access_prefix);
    util::json(
        StatusCode::OK,
        &json!({
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": "bud.api",
        }),
    )
}

fn guid(sim: &Sim, label: &str, index: u64) -> String {
    fake::guid(&mut Rng::new(sim.config.seed, label, index, 0))
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let updated = util::iso_ms(m.updated);
    if stream == EMPLOYERS {
        let name = fake::company(&mut r);
        let name = if m.rev > 0 { format!("{name} (rev {})", m.rev) } else { name };
        return json!({"id": guid(sim, "bud-employer", m.index), "name": name, "updatedAt": updated});
    }
    let first = r.pick(fake::FIRST_NAMES);
    let last = r.pick(fake::LAST_NAMES);
    let start = m.created - TimeDelta::days(r.below(400) as i64);
    let end = start + TimeDelta::days(365 + r.below(400) as i64);
    let status = 1 + Rng::new(sim.config.seed, "bud-status", m.index, m.rev).below(4);
    let employers = sim.len(EMPLOYERS);
    let employer = (employers > 0).then(|| guid(sim, "bud-employer", r.below(employers)));
    json!({
        "id": guid(sim, "bud-learner", m.index),
        "fullName": format!("{first} {last}"),
        "email": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), m.index + 1),
        "programmeName": r.pick(fake::PROGRAMMES),
        "programmeType": r.pick(&["Apprenticeship Standard", "Functional Skills", "Bootcamp"]),
        "apprenticeId": 100_000 + m.index,
        "trainerName": format!("{} {}", r.pick(fake::FIRST_NAMES), r.pick(fake::LAST_NAMES)),
        "startDate": util::date(start),
        "expectedEndDate": util::date(end),
        "learnerReferenceNumber": r.digits(10),
        "location": r.pick(fake::DIVISIONS),
        "status": status,
        "active": status == 1,
        "employerId": employer,
        "updatedAt": updated,
    })
}

async fn learners(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    list(&sim, LEARNERS, &headers, raw.as_deref())
}

async fn employers(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    list(&sim, EMPLOYERS, &headers, raw.as_deref())
}

fn unauthorized(description: Option<&str>) -> Response {
    let challenge = match description {
        Some(d) => format!("Bearer error=\"invalid_token\", error_description=\"{d}\""),
        None => "Bearer".to_owned(),
    };
    util::with_header(oauth_error("invalid_token", StatusCode::UNAUTHORIZED), "www-authenticate", &challenge)
}

/// Checks the bearer token (reads and writes alike); `Err` is the 401.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    let Some(token) = util::bearer(headers) else {
        return Err(Box::new(unauthorized(None)));
    };
    match sim.check_token(&token) {
        TokenCheck::Valid => Ok(()),
        TokenCheck::Expired { .. } => Err(Box::new(unauthorized(Some("The access token expired")))),
        TokenCheck::Revoked | TokenCheck::Unknown => Err(Box::new(unauthorized(Some("The access token is invalid")))),
    }
}

fn list(sim: &Sim, stream: usize, headers: &HeaderMap, raw: Option<&str>) -> Response {
    if let Err(response) = authorize(sim, headers) {
        return *response;
    }
    let params = Params::from_query(raw);
    let invalid = |field: &str, msg: &str| {
        problem(sim, StatusCode::BAD_REQUEST, "One or more validation errors occurred.", &format!("{field}: {msg}"))
    };
    let page_number = match util::parse_u64(params.get("pageNumber")) {
        Ok(n) if n != Some(0) => n.unwrap_or(1),
        _ => return invalid("pageNumber", "must be an integer of at least 1"),
    };
    let page_size = match util::parse_u64(params.get("pageSize")) {
        Ok(n) if n != Some(0) => n.unwrap_or(DEFAULT_PAGE),
        _ => return invalid("pageSize", "must be an integer of at least 1"),
    };
    let page_size = page_size.min(sim.cap(MAX_PAGE) as u64);
    let mut filter = Filter::all();
    if let Some(since) = params.get("updatedSince") {
        // An unescaped `+` offset arrives as a space.
        match util::parse_ts(&since.replace(' ', "+")) {
            Some(t) => filter.updated(Cmp::Ge, t),
            None => return invalid("updatedSince", "must be an ISO 8601 date-time"),
        }
    }
    let offset = (page_number - 1).saturating_mul(page_size);
    let page = sim.select(stream, &filter, Order::Index, false, offset, page_size as usize);
    util::json(
        StatusCode::OK,
        &json!({
            "items": sim.records(stream, &page.items),
            "pageNumber": page_number,
            "pageSize": page_size,
            "totalCount": page.total,
        }),
    )
}

/// Learner fields a write may set; `id`, `apprenticeId`, `active` (follows `status`) and
/// `updatedAt` are Bud's own.
const WRITABLE: &[&str] = &[
    "fullName",
    "email",
    "programmeName",
    "programmeType",
    "trainerName",
    "startDate",
    "expectedEndDate",
    "learnerReferenceNumber",
    "location",
    "status",
    "employerId",
];
/// The longest note text.
const NOTE_MAX: usize = 4000;

fn validation_problem(sim: &Sim, problems: &[String]) -> Response {
    problem(sim, StatusCode::BAD_REQUEST, "One or more validation errors occurred.", &problems.join(" "))
}

fn learner_not_found(sim: &Sim, id: &str) -> Response {
    problem(sim, StatusCode::NOT_FOUND, "Not Found", &format!("Learner '{id}' was not found."))
}

/// The index of a live learner by its id (a GUID).
fn learner_index(sim: &Sim, id: &str) -> Option<u64> {
    // Generated ids are GUIDs derived from the index: search the index space for it.
    let wanted = id.to_ascii_lowercase();
    (0..sim.len(LEARNERS)).find(|i| guid(sim, "bud-learner", *i) == wanted).filter(|i| sim.meta(LEARNERS, *i).is_some())
}

/// One written field's value as the reads show it, or why it is refused.
fn written_value(name: &str, value: &Value) -> Result<Value, String> {
    if name == "status" {
        // 1–4, also when sent as text (the reads show a number).
        return value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|n| (1..=4).contains(n))
            .map(Value::from)
            .ok_or_else(|| format!("status: '{value}' is not a valid status (1–4)."));
    }
    if value.is_null() {
        return if name == "fullName" { Err("fullName: must not be empty.".into()) } else { Ok(Value::Null) };
    }
    let text = value.as_str().ok_or_else(|| format!("{name}: must be a string."))?;
    let problem = match name {
        "fullName" if text.trim().is_empty() => Some("fullName: must not be empty.".to_owned()),
        "email" if !valid_email(text) => Some(format!("email: '{text}' is not a valid email address.")),
        "startDate" | "expectedEndDate" if NaiveDate::parse_from_str(text, "%Y-%m-%d").is_err() => {
            Some(format!("{name}: '{text}' is not a valid date (yyyy-MM-dd)."))
        }
        _ => None,
    };
    match problem {
        Some(p) => Err(p),
        None => Ok(Value::String(text.to_owned())),
    }
}

/// The fields of a learner update as the reads will show them (`active` follows
/// `status`), or the 400 naming every problem.
fn written_fields(sim: &Sim, body: &Value) -> Early<Map<String, Value>> {
    let Value::Object(map) = body else {
        return Err(Box::new(validation_problem(sim, &["The request body must be a JSON object.".to_owned()])));
    };
    let mut out = Map::new();
    let mut problems = Vec::new();
    for (name, value) in map {
        if !WRITABLE.contains(&name.as_str()) {
            problems.push(format!("{name}: is not a writable learner field."));
            continue;
        }
        match written_value(name, value) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(p) => problems.push(p),
        }
    }
    if let Some(status) = out.get("status").and_then(Value::as_u64) {
        out.insert("active".into(), Value::Bool(status == 1));
    }
    if problems.is_empty() { Ok(out) } else { Err(Box::new(validation_problem(sim, &problems))) }
}

/// `GET /v1/learners/{id}`: the learner as the listing's items show it.
async fn get_learner(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match learner_index(&sim, &id).and_then(|i| sim.record(LEARNERS, i)) {
        Some(learner) => util::json(StatusCode::OK, &learner),
        None => learner_not_found(&sim, &id),
    }
}

/// `PATCH /v1/learners/{id}`: 200 with the learner, its `updatedAt` moved on.
async fn update_learner(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = write_body(&body);
    sim.record_write("PATCH", &format!("/v1/learners/{id}"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let Some(index) = learner_index(&sim, &id) else {
        return learner_not_found(&sim, &id);
    };
    let fields = match written_fields(&sim, &body) {
        Ok(f) => f,
        Err(response) => return *response,
    };
    match sim.apply_write(LEARNERS, Some(index), &Value::Object(fields)).and_then(|i| sim.record(LEARNERS, i)) {
        Some(learner) => applied(util::json(StatusCode::OK, &learner)),
        None => learner_not_found(&sim, &id),
    }
}

/// `POST /v1/learners/{id}/notes` with `{"text"}`: 201 with the note.
async fn add_note(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let body = write_body(&body);
    sim.record_write("POST", &format!("/v1/learners/{id}/notes"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let Some(index) = learner_index(&sim, &id) else {
        return learner_not_found(&sim, &id);
    };
    let text = match body.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()) {
        Some(t) if t.chars().count() <= NOTE_MAX => t.to_owned(),
        Some(_) => return validation_problem(&sim, &[format!("text: must be at most {NOTE_MAX} characters.")]),
        None => return validation_problem(&sim, &["text: is required.".to_owned()]),
    };
    let learner = guid(&sim, "bud-learner", index);
    let note = |n: u64| {
        let id = fake::guid(&mut Rng::new(sim.config.seed, "bud-note", n, 0));
        json!({"id": id, "learnerId": learner, "text": text, "createdAt": util::iso_ms(Utc::now())})
    };
    match sim.add_note(LEARNERS, index, note) {
        Some(note) => applied(util::json(StatusCode::CREATED, &note)),
        None => learner_not_found(&sim, &id),
    }
}

/// `GET /v1/learners/{id}/notes`: `{"items": […]}`, oldest first.
async fn learner_notes(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match learner_index(&sim, &id) {
        Some(index) => util::json(StatusCode::OK, &json!({"items": sim.notes(LEARNERS, index)})),
        None => learner_not_found(&sim, &id),
    }
}
