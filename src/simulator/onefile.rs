//! OneFile API v2.1: `POST /api/v2.1/Authentication` with `X-CustomerToken`
//! returns a raw session token, sent back as `X-TokenID`. `POST
//! /api/v2.1/User/Search` and `/Organisation/Search` return a bare JSON
//! array, or 204 when the page is empty. Paging (`PageNumber`, `PageSize`
//! ≤ 500), `ModifiedFrom`/`ModifiedTo` and `ModifiedOn` are [ASSUMED].
//! Name and organisation filters in search bodies are accepted and ignored.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use chrono::TimeDelta;
use serde_json::{Map, Value, json};

use super::auth::TokenCheck;
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, lock};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Params, header_str};

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
}

fn message(status: StatusCode, text: &str) -> Response {
    util::json(status, &json!({"Message": text}))
}

fn invalid(field: &str, text: &str) -> Response {
    util::json(
        StatusCode::BAD_REQUEST,
        &json!({"Message": "The request is invalid.", "ModelState": {format!("model.{field}"): [text]}}),
    )
}

fn throttle(sim: &Sim) -> Response {
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

/// Reads a search body, JSON or form-encoded, into a JSON object.
fn body_object(headers: &HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    let form = header_str(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        let params = Params::parse(&String::from_utf8_lossy(body));
        let keys = ["Role", "PageNumber", "PageSize", "ModifiedFrom", "ModifiedTo"];
        return Some(keys.iter().filter_map(|k| params.get(k).map(|v| ((*k).to_owned(), Value::from(v)))).collect());
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

fn search(sim: &Sim, stream: usize, headers: &HeaderMap, body: &[u8]) -> Response {
    let token = header_str(headers, "x-tokenid").unwrap_or_default();
    if sim.check_token(token) != TokenCheck::Valid {
        return message(StatusCode::UNAUTHORIZED, DENIED);
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
