//! Salesforce REST: OAuth refresh at `POST /services/oauth2/token` (no
//! `expires_in`; rotation only when configured), SOQL at `GET
//! /services/data/vXX.X/query?q=…` paged through `nextRecordsUrl` until
//! `done`, batch size from `Sforce-Query-Options`, `Sforce-Limit-Info` on
//! every response, errors as JSON arrays, throttling as 403
//! `REQUEST_LIMIT_EXCEEDED`. sObject rows: `POST …/sobjects/{Object}` (201
//! `{id, success, errors}`), `GET …/sobjects/{Object}/{Id}` (the record with every
//! field, `?fields=` to choose), `PATCH …/sobjects/{Object}/{Id}` (204; 412 when an
//! `If-Unmodified-Since` HTTP-date is older than the record's last modification).
//! `GET …/queryAll?q=…` also returns deleted rows (`IsDeleted = true`, as they were
//! when deleted; live rows first, then deleted ones in index order), paged like
//! `query`; `query` never returns them.

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

use super::auth::TokenCheck;
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, applied, lock, write_body};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::soql::{self, ObjectDef, Soql, SoqlError};
use super::store::{Meta, Order, Page};
use super::util::{self, Early, Params, header_str};

const ACCOUNTS: usize = 0;
const DEFAULT_BATCH: usize = 2000;
const MIN_BATCH: usize = 200;
const DAILY_LIMIT: u64 = 100_000;

/// The Salesforce simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/services/data/v60.0",
    token_path: Some("/services/oauth2/token"),
    token_paths: &["/services/oauth2/token"],
    streams: &[
        StreamSpec { name: "accounts", aliases: &["Account"], kind: StreamKind::Primary },
        StreamSpec { name: "contacts", aliases: &["Contact"], kind: StreamKind::Primary },
        StreamSpec { name: "opportunities", aliases: &["Opportunity"], kind: StreamKind::Primary },
    ],
    default_ttl: Some(Duration::from_secs(2 * 3600)),
    rotation: Rotation::Optional,
    access_prefix: "00DSIM000000001!AQ",
    refresh_prefix: "5Aep861SIM",
    resolution_ns: 1_000_000,
    refine: None,
    router,
    throttle,
    unavailable,
    credentials,
    record,
    decorate: Some(decorate),
};

/// The objects, in stream order.
const OBJECTS: &[ObjectDef] = &[
    ObjectDef {
        name: "Account",
        fields: &[
            "Id",
            "IsDeleted",
            "Name",
            "Website",
            "Industry",
            "OwnerId",
            "CreatedDate",
            "SystemModstamp",
            "LastModifiedDate",
        ],
        times: &["CreatedDate", "SystemModstamp", "LastModifiedDate"],
    },
    ObjectDef {
        name: "Contact",
        fields: &["Id", "IsDeleted", "FirstName", "LastName", "Email", "AccountId", "CreatedDate", "SystemModstamp"],
        times: &["CreatedDate", "SystemModstamp"],
    },
    ObjectDef {
        name: "Opportunity",
        fields: &[
            "Id",
            "IsDeleted",
            "Name",
            "Amount",
            "StageName",
            "CloseDate",
            "AccountId",
            "CreatedDate",
            "SystemModstamp",
        ],
        times: &["CreatedDate", "SystemModstamp"],
    },
];

/// Key prefixes of the objects' ids.
const KEY_PREFIXES: [&str; 3] = ["001", "003", "006"];

fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/data/{version}/query", get(query))
        .route("/services/data/{version}/query/{locator}", get(more))
        .route("/services/data/{version}/queryAll", get(query_all))
        .route("/services/data/{version}/queryAll/{locator}", get(more))
        .route("/services/data/{version}/sobjects/{object}", post(create))
        .route("/services/data/{version}/sobjects/{object}/{id}", get(get_one).patch(update))
}

fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    util::json(status, &json!([{"message": message, "errorCode": code}]))
}

fn throttle(_: &Sim, _: &str) -> Response {
    errors(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
}

fn unavailable(_: &Sim) -> Response {
    errors(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVER_UNAVAILABLE",
        "Server temporarily unavailable, please try again later.",
    )
}

fn decorate(sim: &Sim, _: &str, response: &mut Response) {
    let usage = format!("api-usage={}/{DAILY_LIMIT}", sim.data_request_count());
    util::set_header(response, "sforce-limit-info", &usage);
}

fn credentials(sim: &Sim) -> Value {
    sim.oauth_credentials()
}

/// An 18-character id: key prefix, `Sim`, base-36 index, 3-char checksum.
fn sf_id(sim: &Sim, stream: usize, index: u64) -> String {
    let mut r = Rng::new(sim.config.seed, "sf-id-suffix", index, stream as u32);
    let suffix: String = (0..3).map(|_| char::from(b'A' + r.below(26) as u8)).collect();
    format!("{}Sim{}{suffix}", KEY_PREFIXES[stream], fake::base36(index, 9))
}

/// The index behind one of our ids (15 or 18 characters).
fn parse_id(stream: usize, id: &str) -> Option<u64> {
    let rest = id.strip_prefix(KEY_PREFIXES[stream])?.strip_prefix("Sim")?;
    fake::parse_base36(rest.get(..9)?)
}

fn oauth_error(error: &str, description: &str) -> Response {
    util::json(StatusCode::BAD_REQUEST, &json!({"error": error, "error_description": description}))
}

async fn token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let form = Params::parse(&String::from_utf8_lossy(&body));
    if form.get("grant_type") != Some("refresh_token") {
        return oauth_error("unsupported_grant_type", "grant type not supported");
    }
    let (id, secret) = sim.client_pair();
    if form.get("client_id") != Some(id.as_str()) {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    if form.get("client_secret").is_some_and(|s| s != secret) {
        return oauth_error("invalid_client", "invalid client credentials");
    }
    let refresh = form.get("refresh_token").unwrap_or_default();
    let issued = lock(&sim.auth).refresh(refresh, SPEC.refresh_prefix, SPEC.access_prefix);
    let Ok(issued) = issued else {
        return oauth_error("invalid_grant", "expired access/refresh token");
    };
    let issued_at = Utc::now().timestamp_millis().to_string();
    let signature =
        util::base64_encode(&util::digest(&[sim.cursor_key(), issued.access_token.as_bytes(), issued_at.as_bytes()]));
    let mut body = json!({
        "access_token": issued.access_token,
        "signature": signature,
        "scope": "refresh_token api",
        "instance_url": sim.base_url,
        "id": format!("{}/id/00DSIM000000001AAA/005Sim000000001AAA", sim.base_url),
        "token_type": "Bearer",
        "issued_at": issued_at,
    });
    if let Some(rotated) = issued.refresh_token {
        body["refresh_token"] = Value::String(rotated);
    }
    util::json(StatusCode::OK, &body)
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let def = &OBJECTS[stream];
    let id = sf_id(sim, stream, m.index);
    let stamp = util::iso_ms_offset(m.updated);
    let accounts = sim.len(ACCOUNTS);
    let account = (accounts > 0).then(|| sf_id(sim, ACCOUNTS, r.below(accounts)));
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({"type": def.name, "url": format!("{}/sobjects/{}/{id}", SPEC.api_base, def.name)}),
    );
    out.insert("Id".into(), Value::String(id));
    match stream {
        ACCOUNTS => {
            let name = fake::company(&mut r);
            out.insert("Website".into(), json!(format!("https://www.{}.example.com", fake::domain_label(&name))));
            out.insert("Name".into(), json!(name));
            out.insert(
                "Industry".into(),
                json!(r.pick(&["Technology", "Healthcare", "Finance", "Retail", "Education", "Manufacturing"])),
            );
            out.insert("OwnerId".into(), json!(format!("005Sim{}AAA", fake::base36(r.below(20), 9))));
            out.insert("LastModifiedDate".into(), json!(stamp));
        }
        1 => {
            let first = r.pick(fake::FIRST_NAMES);
            let last = r.pick(fake::LAST_NAMES);
            out.insert("FirstName".into(), json!(first));
            out.insert("LastName".into(), json!(last));
            out.insert(
                "Email".into(),
                json!(format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), m.index + 1)),
            );
            out.insert("AccountId".into(), json!(account));
        }
        _ => {
            let mut v = Rng::new(sim.config.seed, "sf-stage", m.index, m.rev);
            out.insert("Name".into(), json!(format!("{} {}", fake::company(&mut r), fake::sentence(&mut r, 1))));
            out.insert("Amount".into(), json!(500.0 + r.below(1_000_000) as f64 / 4.0));
            out.insert(
                "StageName".into(),
                json!(v.pick(&[
                    "Prospecting",
                    "Qualification",
                    "Needs Analysis",
                    "Proposal/Price Quote",
                    "Negotiation/Review",
                    "Closed Won",
                    "Closed Lost"
                ])),
            );
            out.insert("CloseDate".into(), json!(util::date(m.created + TimeDelta::days(30 + r.below(180) as i64))));
            out.insert("AccountId".into(), json!(account));
        }
    }
    out.insert("CreatedDate".into(), json!(util::iso_ms_offset(m.created)));
    out.insert("SystemModstamp".into(), json!(stamp));
    // Canonical field order.
    let mut ordered = Map::new();
    if let Some(a) = out.remove("attributes") {
        ordered.insert("attributes".into(), a);
    }
    for f in def.fields {
        if let Some(v) = out.remove(*f) {
            ordered.insert((*f).to_owned(), v);
        }
    }
    Value::Object(ordered)
}

/// Checks the session; `Err` is the 401 to send.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    let check = util::bearer(headers).map_or(TokenCheck::Unknown, |t| sim.check_token(&t));
    if check == TokenCheck::Valid {
        Ok(())
    } else {
        Err(Box::new(errors(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid")))
    }
}

fn soql_error(e: SoqlError) -> Response {
    match e {
        SoqlError::Malformed(m) => errors(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", &m),
        SoqlError::InvalidField(m) => errors(StatusCode::BAD_REQUEST, "INVALID_FIELD", &m),
        SoqlError::InvalidType(m) => errors(StatusCode::BAD_REQUEST, "INVALID_TYPE", &m),
    }
}

/// The batch size asked for in `Sforce-Query-Options`, clamped.
fn batch_size(sim: &Sim, headers: &HeaderMap) -> usize {
    let asked = header_str(headers, "sforce-query-options")
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.trim().strip_prefix("batchSize="))
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(DEFAULT_BATCH)
        .clamp(MIN_BATCH, DEFAULT_BATCH);
    asked.min(sim.cap(DEFAULT_BATCH))
}

async fn query(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    start_query(&sim, &version, &headers, raw.as_deref(), false)
}

/// `queryAll`: `query` with the deleted rows too.
async fn query_all(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    start_query(&sim, &version, &headers, raw.as_deref(), true)
}

/// The first page of a query (`all`: of `queryAll`, deleted rows included).
fn start_query(sim: &Sim, version: &str, headers: &HeaderMap, raw: Option<&str>, all: bool) -> Response {
    if let Err(response) = authorize(sim, headers) {
        return *response;
    }
    let params = Params::from_query(raw);
    let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return errors(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", "A query string has to be specified");
    };
    let parsed = match soql::parse(q, OBJECTS) {
        Ok(p) => p,
        Err(e) => return soql_error(e),
    };
    let batch = batch_size(sim, headers);
    // The locator remembers whether deleted rows belong to the query.
    let locator = sim.register(format!("{batch}{}\n{q}", if all { "a" } else { "" }));
    respond(sim, version, &parsed, &format!("01gSIM{locator}"), 0, batch, all)
}

async fn more(
    State(sim): State<Arc<Sim>>,
    Path((version, locator)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let invalid = || errors(StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR", "invalid query locator");
    let Some((id, offset)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let (Some(key), Ok(offset)) = (id.strip_prefix("01gSIM"), offset.parse::<u64>()) else {
        return invalid();
    };
    let Some(payload) = sim.lookup(key) else {
        return invalid();
    };
    let Some((batch, q)) = payload.split_once('\n') else {
        return invalid();
    };
    let (batch, all) = match batch.strip_suffix('a') {
        Some(b) => (b, true),
        None => (batch, false),
    };
    let (Ok(batch), Ok(parsed)) = (batch.parse::<usize>(), soql::parse(q, OBJECTS)) else {
        return invalid();
    };
    respond(&sim, &version, &parsed, id, offset, batch, all)
}

/// One page of a query's rows from `offset`: the live rows the query selects, then
/// (`all`, `queryAll`) the deleted ones, unless `IsDeleted` says otherwise.
fn respond(sim: &Sim, version: &str, q: &Soql, locator: &str, offset: u64, batch: usize, all: bool) -> Response {
    let Some(stream) = OBJECTS.iter().position(|o| o.name == q.object) else {
        return errors(StatusCode::BAD_REQUEST, "INVALID_TYPE", "sObject type is not supported.");
    };
    let mut filter = Filter::all();
    for (cmp, t) in &q.time {
        filter.updated(*cmp, *t);
    }
    for (cmp, id) in &q.ids {
        match parse_id(stream, id) {
            Some(index) => filter.index(*cmp, index),
            // An id of another shape: equality matches nothing, ranges
            // compare as text against our ids, which all share a prefix.
            None if *cmp == Cmp::Eq => filter.index(Cmp::Lt, 0),
            None => {
                let ours = sf_id(sim, stream, 0);
                let below = id.as_str() < ours.as_str();
                if below != matches!(cmp, Cmp::Gt | Cmp::Ge) {
                    filter.index(Cmp::Lt, 0);
                }
            }
        }
    }
    let order = if q.by_time { Order::Updated } else { Order::Index };
    let select = |offset: u64, limit: usize| -> Page {
        if q.equals.is_empty() {
            return sim.select(stream, &filter, order, q.desc, offset, limit);
        }
        // Text conditions: a scan of the records the other conditions select.
        let all = sim.select(stream, &filter, order, q.desc, 0, sim.len(stream) as usize);
        let matching: Vec<u64> = all
            .items
            .into_iter()
            .filter(|i| sim.record(stream, *i).is_some_and(|r| q.equals.iter().all(|(f, v)| text_is(&r, f, v))))
            .collect();
        let total = matching.len() as u64;
        Page { items: matching.into_iter().skip(offset as usize).take(limit).collect(), total }
    };
    // Live rows unless only deleted ones are asked for; deleted rows only for queryAll.
    let live = q.deleted != Some(true);
    let gone = if all && q.deleted != Some(false) { deleted_rows(sim, stream, q, &filter) } else { Vec::new() };
    let live_total = if live { select(0, 0).total } else { 0 };
    let rows = live_total + gone.len() as u64;
    let total = q.limit.map_or(rows, |l| l.min(rows));
    let take = (total.saturating_sub(offset)).min(batch as u64) as usize;
    let mut records: Vec<Value> = Vec::with_capacity(take);
    if offset < live_total {
        let page = select(offset, take.min((live_total - offset) as usize));
        records.extend(sim.records(stream, &page.items).into_iter().map(|r| select_fields(r, &q.fields)));
    }
    let skip = offset.saturating_sub(live_total) as usize;
    for meta in gone.iter().skip(skip).take(take - records.len()) {
        let mut r = record(sim, stream, meta);
        r["IsDeleted"] = Value::Bool(true);
        records.push(select_fields(r, &q.fields));
    }
    let next = offset + records.len() as u64;
    let done = next >= total || records.is_empty();
    let mut body = json!({"totalSize": total, "done": done});
    if !done {
        body["nextRecordsUrl"] = json!(format!("/services/data/{version}/query/{locator}-{next}"));
    }
    body["records"] = Value::Array(records);
    util::json(StatusCode::OK, &body)
}

/// The deleted rows of `stream` the query's time and id conditions select (text
/// conditions are not applied to them), as they were when deleted, in the query's order.
fn deleted_rows(sim: &Sim, stream: usize, q: &Soql, filter: &Filter) -> Vec<Meta> {
    let mut rows: Vec<Meta> =
        sim.deleted(stream, 0, usize::MAX).into_iter().filter(|m| filter.matches_meta(m)).collect();
    if q.by_time {
        rows.sort_by_key(|m| (m.updated, m.index));
    }
    if q.desc {
        rows.reverse();
    }
    rows
}

/// Whether a record's field is the text `value`, compared as Salesforce compares text
/// (case-insensitively); numbers compare by their text.
fn text_is(record: &Value, field: &str, value: &str) -> bool {
    match record.get(field) {
        Some(Value::String(s)) => s.eq_ignore_ascii_case(value),
        Some(Value::Number(n)) => n.to_string() == value,
        _ => false,
    }
}

fn select_fields(record: Value, fields: &[&str]) -> Value {
    let Value::Object(mut map) = record else {
        return record;
    };
    let mut out = Map::new();
    if let Some(a) = map.remove("attributes") {
        out.insert("attributes".into(), a);
    }
    for f in fields {
        if let Some(v) = map.get(*f) {
            out.insert((*f).to_owned(), v.clone());
        } else if *f == "IsDeleted" {
            // Records carry it only once deleted ([`respond`] sets it).
            out.insert("IsDeleted".to_owned(), Value::Bool(false));
        }
    }
    Value::Object(out)
}

/// The stream of an sObject name, or Salesforce's 404.
fn sobject(object: &str) -> Early<usize> {
    OBJECTS
        .iter()
        .position(|d| d.name.eq_ignore_ascii_case(object))
        .ok_or_else(|| Box::new(errors(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist")))
}

/// The writable fields of a create or update body, or Salesforce's 400.
fn written_fields(stream: usize, body: &Value) -> Early<Map<String, Value>> {
    let Value::Object(map) = body else {
        return Err(Box::new(errors(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "The request body must be a JSON object",
        )));
    };
    let def = &OBJECTS[stream];
    let mut out = Map::new();
    for (name, value) in map {
        let known = def.fields.iter().find(|f| f.eq_ignore_ascii_case(name));
        let Some(field) =
            known.filter(|f| !matches!(**f, "Id" | "CreatedDate" | "SystemModstamp" | "LastModifiedDate"))
        else {
            let body = json!([{
                "message": format!("No such column '{name}' on sobject of type {}", def.name),
                "errorCode": "INVALID_FIELD",
                "fields": [name],
            }]);
            return Err(Box::new(util::json(StatusCode::BAD_REQUEST, &body)));
        };
        if *field == "Email" && value.as_str().is_some_and(|e| !e.contains('@')) {
            let body = json!([{"message": format!("Email: invalid email address: {}", value.as_str().unwrap_or_default()), "errorCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email"]}]);
            return Err(Box::new(util::json(StatusCode::BAD_REQUEST, &body)));
        }
        out.insert((*field).to_owned(), value.clone());
    }
    Ok(out)
}

/// `POST …/sobjects/{Object}`: 201 `{"id","success":true,"errors":[]}`.
async fn create(
    State(sim): State<Arc<Sim>>,
    Path((version, object)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = write_body(&body);
    sim.record_write("POST", &format!("/services/data/{version}/sobjects/{object}"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let written = sobject(&object).and_then(|stream| Ok((stream, written_fields(stream, &body)?)));
    let (stream, fields) = match written {
        Ok(w) => w,
        Err(response) => return *response,
    };
    if stream == ACCOUNTS && !fields.contains_key("Name") {
        let body = json!([{"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Name"]}]);
        return util::json(StatusCode::BAD_REQUEST, &body);
    }
    match sim.apply_write(stream, None, &Value::Object(fields)) {
        Some(index) => applied(util::json(
            StatusCode::CREATED,
            &json!({"id": sf_id(&sim, stream, index), "success": true, "errors": []}),
        )),
        None => unavailable(&sim),
    }
}

/// `PATCH …/sobjects/{Object}/{Id}`: 204; 412 when `If-Unmodified-Since` is older than
/// the record's last modification.
async fn update(
    State(sim): State<Arc<Sim>>,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = write_body(&body);
    sim.record_write("PATCH", &format!("/services/data/{version}/sobjects/{object}/{id}"), &headers, body.clone());
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let written = sobject(&object).and_then(|stream| Ok((stream, written_fields(stream, &body)?)));
    let (stream, fields) = match written {
        Ok(w) => w,
        Err(response) => return *response,
    };
    let not_found =
        || errors(StatusCode::NOT_FOUND, "NOT_FOUND", "Provided external ID field does not exist or is not accessible");
    let Some(meta) = parse_id(stream, &id).and_then(|i| sim.meta(stream, i)) else {
        return not_found();
    };
    if let Some(since) = header_str(&headers, "if-unmodified-since") {
        // An HTTP-date (`Tue, 10 Aug 2015 00:00:00 GMT`), compared with the record's
        // last modification at the header's one-second resolution; anything else is a
        // 400, as Salesforce answers an invalid precondition on a PATCH.
        match http_date(since) {
            Some(t) if util::truncate(meta.updated, 1_000_000_000) > t => {
                return errors(
                    StatusCode::PRECONDITION_FAILED,
                    "PRECONDITION_FAILED",
                    "The requested resource was modified since the If-Unmodified-Since time",
                );
            }
            Some(_) => {}
            None => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    "INVALID_HEADER_TYPE",
                    "If-Unmodified-Since is not a valid date (EEE, dd MMM yyyy HH:mm:ss z)",
                );
            }
        }
    }
    match sim.apply_write(stream, Some(meta.index), &Value::Object(fields)) {
        Some(_) => applied(util::empty(StatusCode::NO_CONTENT)),
        None => not_found(),
    }
}

/// An HTTP-date as Salesforce reads conditional headers (`EEE, dd MMM yyyy HH:mm:ss z`:
/// RFC 1123 with a zone name or offset); ISO 8601 is not one.
fn http_date(text: &str) -> Option<chrono::DateTime<Utc>> {
    let t = chrono::DateTime::parse_from_rfc2822(text.trim()).ok()?;
    Some(t.with_timezone(&Utc))
}

/// `GET …/sobjects/{Object}/{Id}[?fields=a,b]`: the record with `attributes` and every
/// field (or the ones asked for), as the query's rows show them.
async fn get_one(
    State(sim): State<Arc<Sim>>,
    Path((_version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let stream = match sobject(&object) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let Some(record) = parse_id(stream, &id).and_then(|i| sim.record(stream, i)) else {
        return errors(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist");
    };
    let params = Params::from_query(raw.as_deref());
    let Some(asked) = params.get("fields").filter(|f| !f.trim().is_empty()) else {
        return util::json(StatusCode::OK, &record);
    };
    let def = &OBJECTS[stream];
    let mut fields = Vec::new();
    for name in asked.split(',').map(str::trim) {
        match def.fields.iter().find(|f| f.eq_ignore_ascii_case(name)) {
            Some(f) => fields.push(*f),
            None => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    &format!("No such column '{name}' on entity '{}'.", def.name),
                );
            }
        }
    }
    util::json(StatusCode::OK, &select_fields(record, &fields))
}
