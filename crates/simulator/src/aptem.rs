//! Aptem's OData feed: `GET /odata/1.0/{Learners|Organizations}` with an
//! `X-API-Token` header, `$top`/`$skip`/`$filter`/`$orderby`/`$select`, and
//! `{"value":[…]}` bodies. Throttling is a 400 whose message says "Try
//! again". Learner fields are [ASSUMED] (snake_case, per the product spec).
//!
//! Beside the feed, the REST API's learner writes [ASSUMED, PROVIDERS.md §8]: `POST
//! /api/v1/learners` (201 `{id}`), `PATCH /api/v1/learners/{id}` (204), `GET
//! /api/v1/learners/{id}` (the learner as the feed shows it), `POST|GET
//! /api/v1/learners/{id}/notes`; the same `X-API-Token`, errors
//! `{"error":{"code","message"}}`, throttling as 429 with `Retry-After`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{NaiveDate, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, applied, valid_email, write_body};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params, Ts, header_str};

const LEARNERS: usize = 0;
const ORGANIZATIONS: usize = 1;
/// `$top` allowed by default (OData `MaxTop`).
const MAX_TOP: usize = 1000;

/// The Aptem simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/odata/1.0",
    token_path: None,
    token_paths: &[],
    streams: &[
        StreamSpec { name: "learners", aliases: &["Learners"], kind: StreamKind::Primary },
        StreamSpec { name: "organizations", aliases: &["Organizations"], kind: StreamKind::Primary },
    ],
    default_ttl: None,
    rotation: Rotation::Never,
    access_prefix: "",
    refresh_prefix: "",
    resolution_ns: 100,
    refine: Some(refine),
    router,
    throttle,
    unavailable,
    credentials,
    record,
    decorate: None,
};

/// Varies the precision of base timestamps like the real feed: seven
/// fractional digits, milliseconds, or hundredths.
fn refine(index: u64, t: Ts) -> Ts {
    match index % 3 {
        0 => {
            let ticks = 1 + Rng::new(0, "aptem-ticks", index, 0).below(9_998) as i64;
            t + TimeDelta::nanoseconds(ticks * 100)
        }
        1 => t,
        _ => util::truncate(t, 10_000_000),
    }
}

/// Where the REST API lives (the feed is under `SPEC.api_base`).
const REST: &str = "/api/v1";

fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/odata/1.0/{collection}", get(collection))
        .route("/api/v1/learners", post(create_learner))
        .route("/api/v1/learners/{id}", get(get_learner).patch(update_learner))
        .route("/api/v1/learners/{id}/notes", get(learner_notes).post(add_note))
}

fn error(status: StatusCode, message: &str) -> Response {
    coded(status, "", message)
}

/// The error body with a code (the REST API names one; the feed leaves it empty).
fn coded(status: StatusCode, code: &str, message: &str) -> Response {
    util::json(status, &json!({"error": {"code": code, "message": message}}))
}

/// The feed throttles with a 400 saying "Try again"; the REST API with a 429.
fn throttle(sim: &Sim, path: &str) -> Response {
    if path.starts_with(REST) {
        let response = coded(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Rate limit exceeded. Try again later.");
        return util::with_header(response, "retry-after", &sim.retry_after().to_string());
    }
    error(StatusCode::BAD_REQUEST, "Too many requests. Try again later.")
}

fn unavailable(_: &Sim) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "The service is temporarily unavailable. Try again later.")
}

fn credentials(sim: &Sim) -> Value {
    json!({"api_token": api_token(sim)})
}

fn api_token(sim: &Sim) -> String {
    sim.static_secret("aptem-api-token", 40)
}

fn learner_id(index: u64) -> String {
    format!("L{:06}", index + 1)
}

/// The index of a live learner by its id (`L000042`).
fn learner_index(sim: &Sim, id: &str) -> Option<u64> {
    let index = id.strip_prefix('L')?.parse::<u64>().ok()?.checked_sub(1)?;
    sim.meta(LEARNERS, index).map(|_| index)
}

/// Checks the `X-API-Token` header (feed and REST API alike); `Err` is the 401.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    let token_ok = header_str(headers, "x-api-token").is_some_and(|t| t == api_token(sim));
    if token_ok && !sim.revoked() {
        return Ok(());
    }
    Err(Box::new(error(
        StatusCode::UNAUTHORIZED,
        "Authorization has been denied for this request. The API token is missing, invalid or revoked.",
    )))
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let updated = util::iso_trimmed(m.updated);
    if stream == ORGANIZATIONS {
        let name = fake::company(&mut r);
        let name = if m.rev > 0 { format!("{name} (rev {})", m.rev) } else { name };
        return json!({"id": m.index + 1, "name": name, "UpdatedDate": updated});
    }
    let first = r.pick(fake::FIRST_NAMES);
    let last = r.pick(fake::LAST_NAMES);
    let start = m.created - TimeDelta::days(r.below(400) as i64);
    let planned_end = start + TimeDelta::days(365 + r.below(400) as i64);
    let status_roll = Rng::new(sim.config.seed, "aptem-status", m.index, m.rev).below(100);
    let status = match status_roll {
        0..=69 => "Active",
        70..=84 => "Completed",
        85..=94 => "Withdrawn",
        _ => "BreakInLearning",
    };
    let completion = (status == "Completed").then(|| util::date(planned_end));
    let orgs = sim.len(ORGANIZATIONS);
    let employer = (orgs > 0).then(|| r.below(orgs) + 1);
    json!({
        "learner_id": learner_id(m.index),
        "first_name": first,
        "last_name": last,
        "email": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), m.index + 1),
        "uln": r.digits(10),
        "programme_name": r.pick(fake::PROGRAMMES),
        "start_date": util::date(start),
        "planned_end_date": util::date(planned_end),
        "completion_date": completion,
        "status": status,
        "employer_id": employer,
        "custom_field_123": r.pick(fake::DIVISIONS),
        "UpdatedDate": updated,
    })
}

/// What the query options asked for.
struct Query {
    filter: Filter,
    order: Order,
    desc: bool,
    skip: u64,
    top: Option<usize>,
    select: Option<Vec<String>>,
}

fn parse_query(stream: usize, params: &Params) -> Early<Query> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, &m));
    let top = util::parse_u64(params.get("$top"))
        .map_err(|_| bad("Invalid value for $top: expected a non-negative integer.".into()))?;
    let skip = util::parse_u64(params.get("$skip"))
        .map_err(|_| bad("Invalid value for $skip: expected a non-negative integer.".into()))?
        .unwrap_or(0);
    let key = if stream == LEARNERS { "learner_id" } else { "id" };
    let mut filter = Filter::all();
    if let Some(expr) = params.get("$filter") {
        for clause in split_and(expr) {
            parse_clause(clause, key, &mut filter).ok_or_else(|| {
                bad(format!("The query specified in the URI is not valid. Could not parse $filter '{clause}'."))
            })?;
        }
    }
    let (order, desc) = match params.get("$orderby").map(str::trim) {
        None | Some("") => (Order::Index, false),
        Some(spec) => {
            let mut words = spec.split_whitespace();
            let field = words.next().unwrap_or_default();
            let desc = match words.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("asc") => false,
                Some(w) if w.eq_ignore_ascii_case("desc") => true,
                Some(_) => return Err(bad(format!("Invalid $orderby '{spec}'."))),
            };
            if field == "UpdatedDate" {
                (Order::Updated, desc)
            } else if field == key {
                (Order::Index, desc)
            } else {
                return Err(bad(format!(
                    "The query specified in the URI is not valid. Could not find a property named '{field}'."
                )));
            }
        }
    };
    let select = params
        .get("$select")
        .map(|s| s.split(',').map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect::<Vec<_>>());
    Ok(Query { filter, order, desc, skip, top: top.map(|t| usize::try_from(t).unwrap_or(usize::MAX)), select })
}

/// Splits `a and b and c` on the word `and` (case-insensitive).
fn split_and(expr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let lower = expr.to_ascii_lowercase();
    let mut start = 0;
    let mut search = 0;
    while let Some(pos) = lower[search..].find(" and ") {
        let at = search + pos;
        out.push(expr[start..at].trim());
        start = at + 5;
        search = start;
    }
    out.push(expr[start..].trim());
    out
}

fn parse_clause(clause: &str, key: &str, filter: &mut Filter) -> Option<()> {
    let clause = clause.trim().trim_start_matches('(').trim_end_matches(')');
    let mut parts = clause.splitn(3, ' ');
    let field = parts.next()?;
    let cmp = Cmp::parse(parts.next()?)?;
    // An unescaped `+` in a query string arrives as a space.
    let literal = parts.next()?.trim().replace(' ', "+");
    let literal = literal.as_str();
    if field == "UpdatedDate" {
        let lit = literal
            .strip_prefix("datetime'")
            .or_else(|| literal.strip_prefix("datetimeoffset'"))
            .unwrap_or(literal)
            .trim_matches('\'');
        filter.updated(cmp, util::parse_ts(lit)?);
    } else if field == key {
        let lit = literal.trim_matches('\'');
        let number = if key == "learner_id" { lit.strip_prefix('L')? } else { lit };
        let id: u64 = number.parse().ok()?;
        filter.id(cmp, id);
    } else {
        return None;
    }
    Some(())
}

async fn collection(
    State(sim): State<Arc<Sim>>,
    Path(collection): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(stream) =
        sim.stream_index(&collection).filter(|_| collection == "Learners" || collection == "Organizations")
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!(
                "No HTTP resource was found that matches the request URI '{}/odata/1.0/{collection}'.",
                sim.base_url
            ),
        );
    };
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    let query = match parse_query(stream, &params) {
        Ok(q) => q,
        Err(response) => return *response,
    };
    let cap = sim.cap(MAX_TOP);
    if let Some(top) = query.top.filter(|t| *t > cap) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "The query specified in the URI is not valid. The limit of '{cap}' for Top query has been exceeded. The value from the incoming request is '{top}'."
            ),
        );
    }
    let take = query.top.unwrap_or(cap);
    let page = sim.select(stream, &query.filter, query.order, query.desc, query.skip, take);
    let mut rows = sim.records(stream, &page.items);
    if let Some(fields) = &query.select {
        let known = sim.record(stream, 0).or_else(|| rows.first().cloned());
        if let Some(Value::Object(sample)) = known
            && let Some(missing) = fields.iter().find(|f| !sample.contains_key(f.as_str()))
        {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("The query specified in the URI is not valid. Could not find a property named '{missing}'."),
            );
        }
        rows = rows.into_iter().map(|row| project(row, fields)).collect();
    }
    let mut body = json!({
        "@odata.context": format!("{}/odata/1.0/$metadata#{collection}", sim.base_url),
        "value": rows,
    });
    let served = query.skip + page.items.len() as u64;
    if query.top.is_none() && served < page.total {
        let mut next = format!("{}/odata/1.0/{collection}?$skip={served}", sim.base_url);
        for key in ["$filter", "$orderby", "$select"] {
            if let Some(v) = params.get(key) {
                next.push_str(&format!("&{key}={}", encode(v)));
            }
        }
        body["@odata.nextLink"] = Value::String(next);
    }
    util::json(StatusCode::OK, &body)
}

fn project(row: Value, fields: &[String]) -> Value {
    match row {
        Value::Object(map) => Value::Object(
            map.into_iter().filter(|(k, _)| fields.iter().any(|f| f == k)).collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Learner fields a write may set (besides `custom_field_*`); `learner_id` and
/// `UpdatedDate` are Aptem's own.
const WRITABLE: &[&str] = &[
    "first_name",
    "last_name",
    "email",
    "uln",
    "programme_name",
    "start_date",
    "planned_end_date",
    "completion_date",
    "status",
    "employer_id",
];
const STATUSES: &[&str] = &["Active", "Completed", "Withdrawn", "BreakInLearning"];
/// The longest note text.
const NOTE_MAX: usize = 4000;

fn validation(message: &str) -> Response {
    coded(StatusCode::BAD_REQUEST, "ValidationFailed", message)
}

fn learner_not_found(id: &str) -> Response {
    coded(StatusCode::NOT_FOUND, "NotFound", &format!("Learner '{id}' was not found."))
}

/// One written field's value as the feed shows it, or why it is refused.
fn written_value(name: &str, value: &Value) -> Result<Value, String> {
    if matches!(name, "first_name" | "last_name") && value.as_str().is_none_or(|s| s.trim().is_empty()) {
        return Err(format!("'{name}' is required and must not be empty."));
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    if name == "employer_id" {
        // A number, also when sent as text (the feed shows a number).
        return value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|n| *n > 0)
            .map(Value::from)
            .ok_or_else(|| "'employer_id' must be a positive integer.".into());
    }
    let text = value.as_str().ok_or_else(|| format!("'{name}' must be a string."))?;
    let problem = match name {
        "email" if !valid_email(text) => Some(format!("'{text}' is not a valid email address.")),
        "uln" if !(text.len() == 10 && text.bytes().all(|b| b.is_ascii_digit())) => {
            Some("'uln' must be 10 digits.".to_owned())
        }
        "start_date" | "planned_end_date" | "completion_date"
            if NaiveDate::parse_from_str(text, "%Y-%m-%d").is_err() =>
        {
            Some(format!("'{name}' must be a date (yyyy-MM-dd), not '{text}'."))
        }
        "status" if !STATUSES.contains(&text) => {
            Some(format!("'status' must be one of {}, not '{text}'.", STATUSES.join(", ")))
        }
        _ => None,
    };
    match problem {
        Some(p) => Err(p),
        None => Ok(Value::String(text.to_owned())),
    }
}

/// The fields of a learner create or update, as the feed will show them, or the 400
/// naming every problem.
fn written_fields(body: &Value, creating: bool) -> Early<Map<String, Value>> {
    let Value::Object(map) = body else {
        return Err(Box::new(validation("The request body must be a JSON object.")));
    };
    let mut out = Map::new();
    let mut problems = Vec::new();
    for (name, value) in map {
        if !(WRITABLE.contains(&name.as_str()) || name.starts_with("custom_field_")) {
            problems.push(format!("'{name}' is not a writable learner field."));
            continue;
        }
        match written_value(name, value) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if creating {
        for required in ["first_name", "last_name"] {
            if !map.contains_key(required) {
                problems.push(format!("'{required}' is required and must not be empty."));
            }
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(Box::new(validation(&problems.join(" ")))) }
}

/// `POST /api/v1/learners`: 201 `{id}`.
async fn create_learner(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = write_body(&body);
    sim.record_write("POST", "/api/v1/learners", &headers, body.clone());
    let fields = match authorize(&sim, &headers).and_then(|()| written_fields(&body, true)) {
        Ok(f) => f,
        Err(response) => return *response,
    };
    match sim.apply_write(LEARNERS, None, &Value::Object(fields)) {
        Some(index) => {
            let id = learner_id(index);
            let location = format!("{}{REST}/learners/{id}", sim.base_url);
            applied(util::with_header(util::json(StatusCode::CREATED, &json!({"id": id})), "location", &location))
        }
        None => unavailable(&sim),
    }
}

/// `PATCH /api/v1/learners/{id}`: 204; the feed shows the change with a new `UpdatedDate`.
async fn update_learner(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = write_body(&body);
    sim.record_write("PATCH", &format!("/api/v1/learners/{id}"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let Some(index) = learner_index(&sim, &id) else {
        return learner_not_found(&id);
    };
    let fields = match written_fields(&body, false) {
        Ok(f) => f,
        Err(response) => return *response,
    };
    match sim.apply_write(LEARNERS, Some(index), &Value::Object(fields)) {
        Some(_) => applied(util::empty(StatusCode::NO_CONTENT)),
        None => learner_not_found(&id),
    }
}

/// `GET /api/v1/learners/{id}`: the learner as the feed's items show it.
async fn get_learner(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match learner_index(&sim, &id).and_then(|i| sim.record(LEARNERS, i)) {
        Some(learner) => util::json(StatusCode::OK, &learner),
        None => learner_not_found(&id),
    }
}

/// `POST /api/v1/learners/{id}/notes` with `{"text"}`: 201 with the note.
async fn add_note(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let body = write_body(&body);
    sim.record_write("POST", &format!("/api/v1/learners/{id}/notes"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let Some(index) = learner_index(&sim, &id) else {
        return learner_not_found(&id);
    };
    let text = match body.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()) {
        Some(t) if t.chars().count() <= NOTE_MAX => t.to_owned(),
        Some(_) => return validation(&format!("'text' must be at most {NOTE_MAX} characters.")),
        None => return validation("'text' is required and must not be empty."),
    };
    let learner = learner_id(index);
    let note =
        |n: u64| json!({"id": n, "learner_id": learner, "text": text, "created_date": util::iso_trimmed(Utc::now())});
    match sim.add_note(LEARNERS, index, note) {
        Some(note) => applied(util::json(StatusCode::CREATED, &note)),
        None => learner_not_found(&id),
    }
}

/// `GET /api/v1/learners/{id}/notes`: `{"items": […]}`, oldest first.
async fn learner_notes(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match learner_index(&sim, &id) {
        Some(index) => util::json(StatusCode::OK, &json!({"items": sim.notes(LEARNERS, index)})),
        None => learner_not_found(&id),
    }
}
