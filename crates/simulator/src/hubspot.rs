//! HubSpot CRM v3: OAuth refresh at `POST /oauth/v1/token` (refresh token
//! not rotated, access tokens live 30 minutes), `GET /crm/v3/objects/{type}`
//! with `limit ≤ 100` and `after` keyset paging, and `POST
//! /crm/v3/objects/{type}/search` with filters, sorts, `limit ≤ 200`, offset
//! `after` and the 10,000-result cap (search lives in `hubspot_search`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::TimeDelta;
use serde_json::{Value, json};

use super::auth::{RefreshError, TokenCheck};
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, applied, lock, valid_email, write_body};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params};

const CONTACTS: usize = 0;
const COMPANIES: usize = 1;
const LIST_MAX: usize = 100;
pub(super) const SEARCH_MAX: usize = 200;
pub(super) const SEARCH_CAP: u64 = 10_000;
pub(super) const DEFAULT_LIMIT: u64 = 10;
const RATE_MAX: u64 = 110;

/// The HubSpot simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/crm/v3",
    token_path: Some("/oauth/v1/token"),
    token_paths: &["/oauth/v1/token", "/oauth/v3/token"],
    streams: &[
        StreamSpec { name: "contacts", aliases: &[], kind: StreamKind::Primary },
        StreamSpec { name: "companies", aliases: &[], kind: StreamKind::Primary },
        StreamSpec { name: "deals", aliases: &[], kind: StreamKind::Primary },
    ],
    default_ttl: Some(Duration::from_secs(1800)),
    rotation: Rotation::Never,
    access_prefix: "CJ",
    refresh_prefix: "na1-",
    resolution_ns: 1_000_000,
    refine: None,
    router,
    throttle,
    unavailable,
    credentials,
    record,
    decorate: Some(decorate),
};

/// Properties returned when none are requested.
const DEFAULTS: [&[&str]; 3] = [
    &["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
    &["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
    &["amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate", "hs_object_id", "pipeline"],
];

fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/oauth/v1/token", post(token))
        .route("/oauth/v3/token", post(token))
        .route("/crm/v3/objects/{object}", get(list).post(create))
        .route("/crm/v3/objects/{object}/search", post(super::hubspot_search::search))
        .route("/crm/v3/objects/{object}/{id}", get(get_one).patch(update))
}

fn correlation() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn error(status: StatusCode, category: &str, message: &str) -> Response {
    util::json(
        status,
        &json!({
            "status": "error",
            "message": message,
            "correlationId": correlation(),
            "category": category,
        }),
    )
}

pub(super) fn validation(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

fn throttle(_: &Sim, _: &str) -> Response {
    util::json(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": correlation(),
            "policyName": "TEN_SECONDLY_ROLLING",
            "groupName": "publicapi:oauth:simulator",
            "requestId": correlation(),
        }),
    )
}

fn unavailable(_: &Sim) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable.")
}

fn decorate(sim: &Sim, path: &str, response: &mut Response) {
    if !path.starts_with("/crm/") || path.ends_with("/search") {
        return;
    }
    let used = sim.window_count(Duration::from_secs(10));
    util::set_header(response, "x-hubspot-ratelimit-max", &RATE_MAX.to_string());
    util::set_header(response, "x-hubspot-ratelimit-remaining", &RATE_MAX.saturating_sub(used).to_string());
    util::set_header(response, "x-hubspot-ratelimit-interval-milliseconds", "10000");
}

fn credentials(sim: &Sim) -> Value {
    sim.oauth_credentials()
}

fn token_error(status: &str, error: &str, message: &str) -> Response {
    util::json(
        StatusCode::BAD_REQUEST,
        &json!({
            "status": status,
            "message": message,
            "correlationId": correlation(),
            "error": error,
            "error_description": message,
        }),
    )
}

async fn token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let form = Params::parse(&String::from_utf8_lossy(&body));
    if form.get("grant_type") != Some("refresh_token") {
        return token_error("BAD_GRANT_TYPE", "unsupported_grant_type", "grant_type must be refresh_token");
    }
    let (id, secret) = sim.client_pair();
    if form.get("client_id") != Some(id.as_str()) {
        return token_error("BAD_CLIENT_ID", "invalid_client", "missing or unknown client id");
    }
    if form.get("client_secret") != Some(secret.as_str()) {
        return token_error("BAD_CLIENT_SECRET", "invalid_client", "missing or invalid client secret");
    }
    let refresh = form.get("refresh_token").unwrap_or_default();
    let result = lock(&sim.auth).refresh(refresh, SPEC.refresh_prefix, SPEC.access_prefix);
    match result {
        Ok(issued) => util::json(
            StatusCode::OK,
            &json!({
                "token_type": "bearer",
                "refresh_token": refresh,
                "access_token": issued.access_token,
                "expires_in": issued.expires_in,
            }),
        ),
        Err(RefreshError::Unknown | RefreshError::Reused | RefreshError::Revoked) => {
            token_error("BAD_REFRESH_TOKEN", "invalid_grant", "missing or unknown refresh token")
        }
    }
}

/// Checks the bearer token; `Err` is the 401 to send.
pub(super) fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    let check = util::bearer(headers).map_or(TokenCheck::Unknown, |t| sim.check_token(&t));
    let response = match check {
        TokenCheck::Valid => return Ok(()),
        TokenCheck::Expired { ago_secs, at } => util::json(
            StatusCode::UNAUTHORIZED,
            &json!({
                "status": "error",
                "message": format!("The OAuth token used to make this call expired {ago_secs} second(s) ago."),
                "correlationId": correlation(),
                "category": "EXPIRED_AUTHENTICATION",
                "context": {"expire time": [at.to_rfc2822()]},
            }),
        ),
        TokenCheck::Revoked | TokenCheck::Unknown => error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        ),
    };
    Err(Box::new(response))
}

pub(super) fn object_stream(sim: &Sim, object: &str) -> Early<usize> {
    sim.stream_index(object).ok_or_else(|| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object}"),
        ))
    })
}

/// A record's fields: id, creation and modification times, and its properties in order
/// (every HubSpot property is text).
struct Fields {
    id: String,
    created: String,
    updated: String,
    properties: Vec<(&'static str, String)>,
}

fn fields(sim: &Sim, stream: usize, m: &Meta) -> Fields {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let id = (m.index + 1).to_string();
    let created = util::iso_ms(m.created);
    let updated = util::iso_ms(m.updated);
    let properties = match stream {
        CONTACTS => {
            let first = r.pick(fake::FIRST_NAMES);
            let last = r.pick(fake::LAST_NAMES);
            let mut v = Rng::new(sim.config.seed, "hubspot-phone", m.index, m.rev);
            vec![
                ("firstname", first.to_owned()),
                ("lastname", last.to_owned()),
                ("email", format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), m.index + 1)),
                ("company", fake::company(&mut r)),
                ("phone", format!("+44 7{}", v.digits(9))),
                // Reassigned by a modification (what the contact webhook reports).
                ("account_manager", {
                    let mut o = Rng::new(sim.config.seed, "hubspot-owner", m.index, m.rev);
                    format!("{} {}", o.pick(fake::FIRST_NAMES), o.pick(fake::LAST_NAMES))
                }),
                ("hs_object_id", id.clone()),
                ("lastmodifieddate", updated.clone()),
                ("createdate", created.clone()),
            ]
        }
        COMPANIES => {
            let name = fake::company(&mut r);
            let domain = format!("{}{}.example.com", fake::domain_label(&name), m.index + 1);
            vec![
                ("name", name),
                ("domain", domain),
                ("industry", r.pick(fake::INDUSTRIES).to_owned()),
                ("hs_object_id", id.clone()),
                ("hs_lastmodifieddate", updated.clone()),
                ("createdate", created.clone()),
            ]
        }
        _ => {
            let mut v = Rng::new(sim.config.seed, "hubspot-stage", m.index, m.rev);
            let close = m.created + TimeDelta::days(30 + r.below(180) as i64);
            vec![
                ("dealname", format!("{} — {}", fake::company(&mut r), fake::sentence(&mut r, 2))),
                ("amount", format!("{}.{:02}", 500 + r.below(100_000), r.below(100))),
                (
                    "dealstage",
                    v.pick(&[
                        "appointmentscheduled",
                        "qualifiedtobuy",
                        "presentationscheduled",
                        "decisionmakerboughtin",
                        "contractsent",
                        "closedwon",
                        "closedlost",
                    ])
                    .to_owned(),
                ),
                ("closedate", util::iso_ms(close)),
                ("pipeline", "default".to_owned()),
                ("hs_object_id", id.clone()),
                ("hs_lastmodifieddate", updated.clone()),
                ("createdate", created.clone()),
            ]
        }
    };
    Fields { id, created, updated, properties }
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let Fields { id, created, updated, properties } = fields(sim, stream, m);
    let properties: serde_json::Map<String, Value> =
        properties.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
    json!({
        "id": id,
        "properties": properties,
        "createdAt": created,
        "updatedAt": updated,
        "archived": false,
    })
}

/// Writes a JSON string.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes a record as [`shape`] of [`record`] serializes, without building its `Value`
/// (the listing's hot path; not used while the `blank_field` fault is set).
fn render(sim: &Sim, stream: usize, m: &Meta, requested: &[String], out: &mut Vec<u8>) {
    let Fields { id, created, updated, properties } = fields(sim, stream, m);
    out.extend_from_slice(b"{\"id\":");
    push_str(out, &id);
    out.extend_from_slice(b",\"properties\":{");
    let mut first = true;
    for (k, v) in &properties {
        if !(DEFAULTS[stream].contains(k) || requested.iter().any(|r| r == k)) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_str(out, k);
        out.push(b':');
        push_str(out, v);
    }
    out.extend_from_slice(b"},\"createdAt\":");
    push_str(out, &created);
    out.extend_from_slice(b",\"updatedAt\":");
    push_str(out, &updated);
    out.extend_from_slice(b",\"archived\":false}");
}

/// Keeps the requested properties plus the defaults.
pub(super) fn shape(stream: usize, mut record: Value, requested: &[String]) -> Value {
    if let Some(Value::Object(props)) = record.get_mut("properties") {
        props.retain(|k, _| DEFAULTS[stream].contains(&k.as_str()) || requested.iter().any(|r| r == k));
    }
    record
}

/// `properties=a,b` and/or `properties=a&properties=b`.
fn requested_properties(params: &Params) -> Vec<String> {
    params
        .all("properties")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

async fn list(
    State(sim): State<Arc<Sim>>,
    Path(object): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let stream = match object_stream(&sim, &object) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let params = Params::from_query(raw.as_deref());
    let limit = match util::parse_u64(params.get("limit")) {
        Ok(l) => l.unwrap_or(DEFAULT_LIMIT).clamp(1, sim.cap(LIST_MAX) as u64) as usize,
        Err(()) => return validation("Invalid input: limit must be an integer"),
    };
    let mut filter = Filter::all();
    match params.get("after") {
        None | Some("") => {}
        Some(after) => match after.parse::<u64>() {
            Ok(id) => filter.id(Cmp::Ge, id),
            Err(_) => return validation(&format!("Invalid after value: {after}")),
        },
    }
    if params.get("archived") == Some("true") {
        return archived(&sim, stream, &object, limit, &params);
    }
    let page = sim.select(stream, &filter, Order::Index, false, 0, limit + 1);
    let requested = requested_properties(&params);
    let shown = &page.items[..page.items.len().min(limit)];
    let paging = page.items.get(limit).map(|next| {
        let after = (next + 1).to_string();
        let mut link = format!("{}/crm/v3/objects/{object}?limit={limit}&after={after}", sim.base_url);
        if !requested.is_empty() {
            link.push_str(&format!("&properties={}", requested.join(",")));
        }
        json!({"next": {"after": after, "link": link}})
    });
    if sim.blanks_fields() || sim.has_writes(stream) {
        let results: Vec<Value> =
            sim.records(stream, shown).into_iter().map(|r| shape(stream, r, &requested)).collect();
        let mut body = json!({"results": results});
        if let Some(paging) = paging {
            body["paging"] = paging;
        }
        return util::json(StatusCode::OK, &body);
    }
    // The same bytes as the `Value` above would serialize to, written directly.
    let mut body = Vec::with_capacity(64 + shown.len() * 512);
    body.extend_from_slice(b"{\"results\":[");
    for (i, meta) in sim.metas(stream, shown).iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        render(&sim, stream, meta, &requested, &mut body);
    }
    body.push(b']');
    if let Some(paging) = paging {
        body.extend_from_slice(b",\"paging\":");
        let _ = serde_json::to_writer(&mut body, &paging);
    }
    body.push(b'}');
    util::raw(StatusCode::OK, "application/json;charset=utf-8", body)
}

/// `archived=true`: the deleted records, as they were when deleted, with
/// `archived: true` and `archivedAt`, paged by `after` like the live listing.
fn archived(sim: &Sim, stream: usize, object: &str, limit: usize, params: &Params) -> Response {
    let from = match params.get("after") {
        None | Some("") => 0,
        Some(after) => match after.parse::<u64>() {
            Ok(id) => id.saturating_sub(1),
            Err(_) => return validation(&format!("Invalid after value: {after}")),
        },
    };
    let metas = sim.deleted(stream, from, limit + 1);
    let requested = requested_properties(params);
    let results: Vec<Value> = metas
        .iter()
        .take(limit)
        .map(|m| {
            let mut r = shape(stream, record(sim, stream, m), &requested);
            r["archived"] = Value::Bool(true);
            r["archivedAt"] = r["updatedAt"].clone();
            r
        })
        .collect();
    let mut body = json!({"results": results});
    if let Some(next) = metas.get(limit) {
        let after = (next.index + 1).to_string();
        let link = format!("{}/crm/v3/objects/{object}?limit={limit}&archived=true&after={after}", sim.base_url);
        body["paging"] = json!({"next": {"after": after, "link": link}});
    }
    util::json(StatusCode::OK, &body)
}

async fn get_one(
    State(sim): State<Arc<Sim>>,
    Path((object, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let stream = match object_stream(&sim, &object) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let found = id.parse::<u64>().ok().and_then(|id| id.checked_sub(1)).and_then(|index| sim.record(stream, index));
    match found {
        Some(record) => {
            let requested = requested_properties(&Params::from_query(raw.as_deref()));
            util::json(StatusCode::OK, &shape(stream, record, &requested))
        }
        None => not_found(&id),
    }
}

/// Properties a write may set, per stream (the rest are HubSpot's own, read-only).
const WRITABLE: [&[&str]; 3] = [
    &["firstname", "lastname", "email", "company", "phone", "account_manager"],
    &["name", "domain", "industry"],
    &["dealname", "amount", "dealstage", "closedate", "pipeline"],
];

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        &format!("Object not found.  objectId are usually numeric. Object: {id}"),
    )
}

/// The `properties` of a create or update body, as HubSpot stores them (text), or the
/// 400 HubSpot answers.
fn written_properties(stream: usize, body: &Value) -> Early<serde_json::Map<String, Value>> {
    let invalid = |message: String, errors: Vec<Value>| -> Box<Response> {
        let mut body = json!({
            "status": "error",
            "message": message,
            "correlationId": correlation(),
            "category": "VALIDATION_ERROR",
        });
        if !errors.is_empty() {
            body["errors"] = Value::Array(errors);
        }
        Box::new(util::json(StatusCode::BAD_REQUEST, &body))
    };
    let Some(Value::Object(props)) = body.get("properties") else {
        return Err(invalid("Invalid input JSON on line 1: `properties` is required".into(), vec![]));
    };
    let mut out = serde_json::Map::new();
    let mut errors = Vec::new();
    for (name, value) in props {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => {
                errors.push(json!({"isValid": false, "message": format!("{name} must be a scalar"), "error": "INVALID_VALUE", "name": name}));
                continue;
            }
        };
        if !WRITABLE[stream].contains(&name.as_str()) {
            errors.push(json!({"isValid": false, "message": format!("Property \"{name}\" does not exist"), "error": "PROPERTY_DOESNT_EXIST", "name": name}));
        } else if name == "email" && !text.is_empty() && !valid_email(&text) {
            errors.push(json!({"isValid": false, "message": format!("Email address {text} is invalid"), "error": "INVALID_EMAIL", "name": name}));
        } else {
            out.insert(name.clone(), Value::String(text));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(invalid(format!("Property values were not valid: {}", Value::Array(errors.clone())), errors))
    }
}

/// `POST /crm/v3/objects/{type}`: 201 with the new object.
async fn create(State(sim): State<Arc<Sim>>, Path(object): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let body = write_body(&body);
    sim.record_write("POST", &format!("/crm/v3/objects/{object}"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let written = object_stream(&sim, &object).and_then(|stream| Ok((stream, written_properties(stream, &body)?)));
    let (stream, props) = match written {
        Ok(w) => w,
        Err(response) => return *response,
    };
    // A contact's email is unique: HubSpot answers 409 naming the existing one (what a
    // blindly repeated create runs into). Only written contacts are searched.
    if let Some(email) = props.get("email").and_then(Value::as_str).filter(|e| stream == CONTACTS && !e.is_empty()) {
        let same = |p: &Value| {
            p.pointer("/properties/email").and_then(Value::as_str).is_some_and(|e| e.eq_ignore_ascii_case(email))
        };
        if let Some(existing) = sim.written_where(stream, same).first() {
            return error(
                StatusCode::CONFLICT,
                "CONFLICT",
                &format!("Contact already exists. Existing ID: {}", existing + 1),
            );
        }
    }
    let Some(index) = sim.apply_write(stream, None, &json!({"properties": props})) else {
        return unavailable(&sim);
    };
    match sim.record(stream, index) {
        Some(record) => applied(util::json(StatusCode::CREATED, &record)),
        None => unavailable(&sim),
    }
}

/// `PATCH /crm/v3/objects/{type}/{id}`: 200 with the object, its `updatedAt` moved on.
async fn update(
    State(sim): State<Arc<Sim>>,
    Path((object, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = write_body(&body);
    sim.record_write("PATCH", &format!("/crm/v3/objects/{object}/{id}"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let written = object_stream(&sim, &object).and_then(|stream| Ok((stream, written_properties(stream, &body)?)));
    let (stream, props) = match written {
        Ok(w) => w,
        Err(response) => return *response,
    };
    let index = id.parse::<u64>().ok().and_then(|id| id.checked_sub(1));
    let Some(index) = index.and_then(|i| sim.apply_write(stream, Some(i), &json!({"properties": props}))) else {
        return not_found(&id);
    };
    match sim.record(stream, index) {
        Some(record) => applied(util::json(StatusCode::OK, &record)),
        None => not_found(&id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_record_is_its_shaped_value_serialized() {
        let sim = Sim::new(super::super::SimConfig::new(super::super::Provider::HubSpot, 3), "http://x".into());
        for stream in [CONTACTS, COMPANIES, 2] {
            for requested in [vec![], vec!["phone".to_owned(), "industry".to_owned(), "pipeline".to_owned()]] {
                for index in 0..3 {
                    let meta = sim.meta(stream, index).unwrap();
                    let mut out = Vec::new();
                    render(&sim, stream, &meta, &requested, &mut out);
                    let value = shape(stream, record(&sim, stream, &meta), &requested);
                    assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
                }
            }
        }
    }

    #[test]
    fn shape_keeps_defaults_and_requested_only() {
        let record = json!({"id": "1", "properties": {"email": "a", "phone": "1", "company": "c"}});
        let shaped = shape(CONTACTS, record, &["phone".to_owned()]);
        assert_eq!(shaped["properties"], json!({"email": "a", "phone": "1"}));
    }
}
