//! Aptem's OData feed: `GET /odata/1.0/{Learners|Organizations}` with an
//! `X-API-Token` header, `$top`/`$skip`/`$filter`/`$orderby`/`$select`, and
//! `{"value":[…]}` bodies. Throttling is a 400 whose message says "Try
//! again". Learner fields are [ASSUMED] (snake_case, per the product spec).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use chrono::TimeDelta;
use serde_json::{Map, Value, json};

use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec};
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

fn router() -> Router<Arc<Sim>> {
    Router::new().route("/odata/1.0/{collection}", get(collection))
}

fn error(status: StatusCode, message: &str) -> Response {
    util::json(status, &json!({"error": {"code": "", "message": message}}))
}

fn throttle(_: &Sim) -> Response {
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
    let token_ok = header_str(&headers, "x-api-token").is_some_and(|t| t == api_token(&sim));
    if !token_ok || sim.revoked() {
        return error(
            StatusCode::UNAUTHORIZED,
            "Authorization has been denied for this request. The API token is missing, invalid or revoked.",
        );
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
