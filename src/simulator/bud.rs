//! Bud [ASSUMED shape, PROVIDERS.md §10]: OAuth2 client credentials at
//! `POST /connect/token`, then `GET /v1/learners` and `/v1/employers` with
//! `pageNumber`/`pageSize`/`updatedSince`, `{"items","pageNumber","pageSize",
//! "totalCount"}` bodies, RFC 7807 errors and 429 with `Retry-After`.
//! Listings are ordered by id; `statuses` is accepted and ignored.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::TimeDelta;
use serde_json::{Value, json};

use super::auth::TokenCheck;
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, lock};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Params};

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

fn throttle(sim: &Sim) -> Response {
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

fn list(sim: &Sim, stream: usize, headers: &HeaderMap, raw: Option<&str>) -> Response {
    let Some(token) = util::bearer(headers) else {
        return unauthorized(None);
    };
    match sim.check_token(&token) {
        TokenCheck::Valid => {}
        TokenCheck::Expired { .. } => return unauthorized(Some("The access token expired")),
        TokenCheck::Revoked | TokenCheck::Unknown => {
            return unauthorized(Some("The access token is invalid"));
        }
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
