//! OneFile API v2.1: `POST /api/v2.1/Authentication` with `X-CustomerToken`
//! returns a raw session token, sent back as `X-TokenID`. `POST
//! /api/v2.1/User/Search` and `/Organisation/Search` return a bare JSON
//! array, or 204 when the page is empty. Paging (`PageNumber`, `PageSize`
//! ≤ 500), `ModifiedFrom`/`ModifiedTo` and `ModifiedOn` are [ASSUMED].
//! Name and organisation filters in search bodies are accepted and ignored.
//!
//! Learner writes: `POST /api/v2.1/User` creates (Role 1 = learner; other roles are
//! refused, the simulator keeps learners only) and `POST /api/v2.1/User/{id}` updates
//! (POST, not PATCH), both answering 200 with the user [ASSUMED]; `GET
//! /api/v2.1/User/{id}` reads one. Unknown fields are refused (stricter than ASP.NET,
//! which ignores them, so that a mistyped manifest field shows). Errors are ASP.NET's
//! `{"Message", "ModelState"}`, with the problems in `Message` [ASSUMED].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{NaiveDate, TimeDelta};
use serde_json::{Map, Value, json};

use super::auth::TokenCheck;
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, applied, lock, valid_email, write_body};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params, header_str};

const LEARNERS: usize = 0;
const ORGANISATIONS: usize = 1;
const MAX_PAGE: usize = 500;
const LEARNER_ROLE: i64 = 1;
const DENIED: &str = "Authorization has been denied for this request.";

/// The OneFile simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/api/v2.1",
    token_path: Some("/api/v2.1/Authentication"),
    token_paths: &["/api/v2.1/Authentication"],
    streams: &[
        StreamSpec { name: "learners", aliases: &["users", "User"], kind: StreamKind::Primary },
        StreamSpec { name: "organisations", aliases: &["Organisation", "organizations"], kind: StreamKind::Primary },
    ],
    default_ttl: Some(std::time::Duration::from_secs(24 * 3600)),
    rotation: Rotation::Never,
    access_prefix: "",
    refresh_prefix: "session-",
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
        .route("/api/v2.1/Authentication", post(authenticate))
        .route("/api/v2.1/User/Search", post(user_search))
        .route("/api/v2.1/Organisation/Search", post(organisation_search))
        .route("/api/v2.1/User", post(create_user))
        .route("/api/v2.1/User/{id}", get(get_user).post(update_user))
}

fn message(status: StatusCode, text: &str) -> Response {
    util::json(status, &json!({"Message": text}))
}

fn invalid(field: &str, text: &str) -> Response {
    invalid_model(&[(field.to_owned(), text.to_owned())])
}

/// ASP.NET's 400 for a model that failed validation; `Message` also names the problems.
fn invalid_model(problems: &[(String, String)]) -> Response {
    let mut state = Map::new();
    for (field, text) in problems {
        let entry = state.entry(format!("model.{field}")).or_insert_with(|| json!([]));
        if let Value::Array(list) = entry {
            list.push(Value::String(text.clone()));
        }
    }
    let all: Vec<&str> = problems.iter().map(|(_, t)| t.as_str()).collect();
    util::json(
        StatusCode::BAD_REQUEST,
        &json!({"Message": format!("The request is invalid. {}", all.join(" ")), "ModelState": state}),
    )
}

fn throttle(sim: &Sim, _: &str) -> Response {
    let response = message(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded. Try again later.");
    util::with_header(response, "retry-after", &sim.retry_after().to_string())
}

fn unavailable(_: &Sim) -> Response {
    message(StatusCode::SERVICE_UNAVAILABLE, "The service is temporarily unavailable.")
}

fn customer_token(sim: &Sim) -> String {
    sim.static_secret("onefile-customer-token", 32).to_uppercase()
}

fn credentials(sim: &Sim) -> Value {
    json!({"customer_token": customer_token(sim)})
}

async fn authenticate(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let ok = header_str(&headers, "x-customertoken").is_some_and(|t| t == customer_token(&sim));
    if !ok || sim.revoked() {
        return message(StatusCode::UNAUTHORIZED, DENIED);
    }
    let issued = lock(&sim.auth).issue_session(SPEC.access_prefix);
    util::raw(StatusCode::OK, "text/plain; charset=utf-8", issued.access_token.into_bytes())
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let modified = util::iso_ms(m.updated);
    if stream == ORGANISATIONS {
        let name = fake::company(&mut r);
        let name = if m.rev > 0 { format!("{name} (rev {})", m.rev) } else { name };
        return json!({
            "ID": 5_000 + m.index,
            "Name": name,
            "CustomerID": 42,
            "ModifiedOn": modified,
        });
    }
    let first = r.pick(fake::FIRST_NAMES);
    let last = r.pick(fake::LAST_NAMES);
    let start = m.created - TimeDelta::days(r.below(400) as i64);
    let end = start + TimeDelta::days(365 + r.below(400) as i64);
    let orgs = sim.len(ORGANISATIONS);
    let episode = fake::PROGRAMMES[(m.rev as usize + r.below(10) as usize) % fake::PROGRAMMES.len()];
    json!({
        "ID": 100_000 + m.index,
        "FirstName": first,
        "LastName": last,
        "MISID": format!("MIS{:07}", m.index + 1),
        "Email": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), m.index + 1),
        "ULN": r.digits(10),
        "StartOn": util::iso_ms(start),
        "PlannedEndDate": util::iso_ms(end),
        "EpisodeName": episode,
        "OrganisationID": (orgs > 0).then(|| 5_000 + r.below(orgs)),
        "ModifiedOn": modified,
    })
}

async fn user_search(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    search(&sim, LEARNERS, &headers, &body)
}

async fn organisation_search(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    search(&sim, ORGANISATIONS, &headers, &body)
}

/// Reads a search or write body, JSON or form-encoded, into a JSON object.
fn body_object(headers: &HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    let form = header_str(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        let params = Params::parse(&String::from_utf8_lossy(body));
        return Some(params.pairs().map(|(k, v)| (k.to_owned(), Value::from(v))).collect());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Map::new());
    }
    match serde_json::from_slice(body).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A number that may arrive as JSON number or string.
fn int_field(map: &Map<String, Value>, key: &str) -> Result<Option<i64>, ()> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

/// Checks the `X-TokenID` session (reads and writes alike); `Err` is the 401.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    let token = header_str(headers, "x-tokenid").unwrap_or_default();
    if sim.check_token(token) == TokenCheck::Valid {
        Ok(())
    } else {
        Err(Box::new(message(StatusCode::UNAUTHORIZED, DENIED)))
    }
}

fn search(sim: &Sim, stream: usize, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Err(response) = authorize(sim, headers) {
        return *response;
    }
    let Some(map) = body_object(headers, body) else {
        return message(StatusCode::BAD_REQUEST, "The request is invalid.");
    };
    if stream == LEARNERS {
        match int_field(&map, "Role") {
            Ok(Some(LEARNER_ROLE)) => {}
            Ok(Some(_)) => return util::empty(StatusCode::NO_CONTENT),
            Ok(None) => return invalid("Role", "The Role field is required."),
            Err(()) => return invalid("Role", "The value is not valid for Role."),
        }
    }
    let cap = sim.cap(MAX_PAGE);
    let page_number = match int_field(&map, "PageNumber") {
        Ok(None) => 1,
        Ok(Some(n)) if n >= 1 => n as u64,
        _ => return invalid("PageNumber", "PageNumber must be 1 or greater."),
    };
    let page_size = match int_field(&map, "PageSize") {
        Ok(None) => cap,
        Ok(Some(n)) if n >= 1 && n as usize <= cap => n as usize,
        _ => {
            return invalid("PageSize", &format!("PageSize must be between 1 and {cap}."));
        }
    };
    let mut filter = Filter::all();
    for (key, cmp) in [("ModifiedFrom", Cmp::Ge), ("ModifiedTo", Cmp::Lt)] {
        match map.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => match util::parse_ts(s) {
                Some(t) => filter.updated(cmp, t),
                None => return invalid(key, &format!("The value '{s}' is not valid for {key}.")),
            },
            Some(_) => return invalid(key, &format!("The value is not valid for {key}.")),
        }
    }
    let offset = (page_number - 1).saturating_mul(page_size as u64);
    let page = sim.select(stream, &filter, Order::Index, false, offset, page_size);
    if page.items.is_empty() {
        return util::empty(StatusCode::NO_CONTENT);
    }
    util::json(StatusCode::OK, &Value::Array(sim.records(stream, &page.items)))
}

/// Learner fields a write may set (`Role` is checked apart); `ID` and `ModifiedOn` are
/// OneFile's own.
const WRITABLE: &[&str] = &[
    "FirstName",
    "LastName",
    "Email",
    "MISID",
    "ULN",
    "StartOn",
    "PlannedEndDate",
    "EpisodeName",
    "OrganisationID",
    "DefaultAssessorID",
    "Username",
    "DOB",
    "NINO",
    "Telephone",
    "MobileNumber",
];
/// Role codes OneFile knows (1 learner, 4 trainee assessor, 5 assessor, 10 IQA, 40
/// employer, 45 observer).
const ROLES: &[i64] = &[1, 4, 5, 10, 40, 45];

fn user_not_found(id: &str) -> Response {
    message(StatusCode::NOT_FOUND, &format!("No user found with ID {id}."))
}

/// The index of a live learner by its `ID`.
fn user_index(sim: &Sim, id: &str) -> Option<u64> {
    let index = id.trim().parse::<u64>().ok()?.checked_sub(100_000)?;
    sim.meta(LEARNERS, index).map(|_| index)
}

/// One written field as the reads show it, or why it is refused.
fn written_value(name: &str, value: &Value) -> Result<Value, String> {
    if matches!(name, "FirstName" | "LastName") && value.as_str().is_none_or(|s| s.trim().is_empty()) {
        return Err(format!("The {name} field is required."));
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    if matches!(name, "OrganisationID" | "DefaultAssessorID") {
        // A number, also when sent as text (the reads show a number).
        return value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Value::from)
            .ok_or_else(|| format!("The value '{value}' is not valid for {name}."));
    }
    let text = value.as_str().ok_or_else(|| format!("The value '{value}' is not valid for {name}."))?;
    if matches!(name, "StartOn" | "PlannedEndDate" | "DOB") {
        // A date or a date-time; the reads show UTC date-times.
        let at = util::parse_ts(text).or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
        });
        return at
            .map(|t| Value::String(util::iso_ms(t)))
            .ok_or_else(|| format!("The value '{text}' is not valid for {name}."));
    }
    if name == "Email" && !valid_email(text) {
        return Err(format!("The Email field is not a valid e-mail address: '{text}'."));
    }
    Ok(Value::String(text.to_owned()))
}

/// The fields of a user create or update as the reads will show them, or the 400
/// naming every problem.
fn written_fields(headers: &HeaderMap, body: &[u8], creating: bool) -> Early<Map<String, Value>> {
    let Some(map) = body_object(headers, body) else {
        return Err(Box::new(message(StatusCode::BAD_REQUEST, "The request is invalid.")));
    };
    let mut out = Map::new();
    let mut problems: Vec<(String, String)> = Vec::new();
    for (name, value) in &map {
        if name == "Role" {
            match int_field(&map, "Role") {
                Ok(Some(LEARNER_ROLE)) => {}
                Ok(Some(r)) if ROLES.contains(&r) => {
                    problems.push(("Role".into(), format!("The simulator keeps learners only (Role 1), not Role {r}.")))
                }
                _ => problems.push(("Role".into(), "The value is not valid for Role.".into())),
            }
        } else if !WRITABLE.contains(&name.as_str()) {
            problems.push((name.clone(), format!("The field {name} is not a writable user field.")));
        } else {
            match written_value(name, value) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(p) => problems.push((name.clone(), p)),
            }
        }
    }
    if creating {
        for required in ["FirstName", "LastName", "Role"] {
            if !map.contains_key(required) {
                problems.push((required.into(), format!("The {required} field is required.")));
            }
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(Box::new(invalid_model(&problems))) }
}

/// `POST /api/v2.1/User`: 200 with the new user and its `ID`.
async fn create_user(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    sim.record_write("POST", "/api/v2.1/User", &headers, write_body(&body));
    let fields = match authorize(&sim, &headers).and_then(|()| written_fields(&headers, &body, true)) {
        Ok(f) => f,
        Err(response) => return *response,
    };
    match sim.apply_write(LEARNERS, None, &Value::Object(fields)).and_then(|i| sim.record(LEARNERS, i)) {
        Some(user) => applied(util::json(StatusCode::OK, &user)),
        None => unavailable(&sim),
    }
}

/// `POST /api/v2.1/User/{id}`: 200 with the user, its `ModifiedOn` moved on.
async fn update_user(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    sim.record_write("POST", &format!("/api/v2.1/User/{id}"), &headers, write_body(&body));
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let Some(index) = user_index(&sim, &id) else {
        return user_not_found(&id);
    };
    let fields = match written_fields(&headers, &body, false) {
        Ok(f) => f,
        Err(response) => return *response,
    };
    match sim.apply_write(LEARNERS, Some(index), &Value::Object(fields)).and_then(|i| sim.record(LEARNERS, i)) {
        Some(user) => applied(util::json(StatusCode::OK, &user)),
        None => user_not_found(&id),
    }
}

/// `GET /api/v2.1/User/{id}`: the learner as the search shows it.
async fn get_user(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match user_index(&sim, &id).and_then(|i| sim.record(LEARNERS, i)) {
        Some(user) => util::json(StatusCode::OK, &user),
        None => user_not_found(&id),
    }
}
