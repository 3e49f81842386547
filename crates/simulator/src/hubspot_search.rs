//! HubSpot CRM search: `POST /crm/v3/objects/{type}/search` with one filter
//! group over `hs_lastmodifieddate` / `lastmodifieddate` / `hs_object_id`
//! (EQ, GT, GTE, LT, LTE, BETWEEN), and `EQ` on any other property (a scan of
//! the stream, case-insensitive as HubSpot compares emails: what a write's
//! lookup by email or domain needs), sorts on those properties, `limit ≤ 200`,
//! an offset `after`, and the 10,000-result cap: an `after` of 10,000 or
//! more is a 400 `VALIDATION_ERROR`. Other filters or sorts get a 400 that
//! names the simulator's limit.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::core::Sim;
use super::filter::{Cmp, Filter};
use super::hubspot::{DEFAULT_LIMIT, SEARCH_CAP, SEARCH_MAX, authorize, object_stream, shape, validation};
use super::store::{Order, Page};
use super::util;

/// Which property a search filter or sort refers to.
enum Prop {
    Modified,
    Id,
}

fn prop(name: &str) -> Option<Prop> {
    match name {
        "hs_lastmodifieddate" | "lastmodifieddate" => Some(Prop::Modified),
        "hs_object_id" => Some(Prop::Id),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Applies one filter; an `EQ` on another property comes back as (name, value) for the
/// scan.
fn apply_filter(filter: &mut Filter, f: &Value) -> Result<Option<(String, String)>, String> {
    let name = f.get("propertyName").and_then(Value::as_str).unwrap_or_default();
    let op = f.get("operator").and_then(Value::as_str).unwrap_or_default();
    if prop(name).is_none() && op == "EQ" && !name.is_empty() {
        let value = text(f.get("value")).ok_or_else(|| format!("Missing value for filter on '{name}'"))?;
        return Ok(Some((name.to_owned(), value)));
    }
    let Some(p) = prop(name) else {
        return Err(format!(
            "The simulator can only filter on hs_lastmodifieddate, lastmodifieddate and hs_object_id, not '{name}'"
        ));
    };
    let bounds: Vec<(Cmp, Option<String>)> = if op == "BETWEEN" {
        vec![(Cmp::Ge, text(f.get("value"))), (Cmp::Le, text(f.get("highValue")))]
    } else {
        match Cmp::parse(op).filter(|_| op.chars().all(|c| c.is_ascii_uppercase())) {
            Some(cmp) => vec![(cmp, text(f.get("value")))],
            None => return Err(format!("Unsupported operator '{op}' for property '{name}'")),
        }
    };
    for (cmp, value) in bounds {
        let value = value.ok_or_else(|| format!("Missing value for filter on '{name}'"))?;
        match p {
            Prop::Modified => match util::parse_ts(&value) {
                Some(t) => filter.updated(cmp, t),
                None => return Err(format!("{value} is not a valid timestamp for '{name}'")),
            },
            Prop::Id => match value.parse::<u64>() {
                Ok(id) => filter.id(cmp, id),
                Err(_) => return Err(format!("{value} is not a valid number for '{name}'")),
            },
        }
    }
    Ok(None)
}

/// Whether a record's property equals `value` (case-insensitively).
fn property_is(record: &Value, name: &str, value: &str) -> bool {
    record
        .get("properties")
        .and_then(|p| p.get(name))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case(value))
}

fn parse_sort(sort: &Value) -> Result<(Order, bool), String> {
    let (name, desc) = match sort {
        Value::String(s) => match s.strip_prefix('-') {
            Some(n) => (n.to_owned(), true),
            None => (s.clone(), false),
        },
        Value::Object(o) => (
            o.get("propertyName").and_then(Value::as_str).unwrap_or_default().to_owned(),
            o.get("direction").and_then(Value::as_str) == Some("DESCENDING"),
        ),
        _ => return Err("Invalid sort".to_owned()),
    };
    match prop(&name) {
        Some(Prop::Modified) => Ok((Order::Updated, desc)),
        Some(Prop::Id) => Ok((Order::Index, desc)),
        None => Err(format!(
            "The simulator can only sort by hs_lastmodifieddate, lastmodifieddate and hs_object_id, not '{name}'"
        )),
    }
}

pub(super) async fn search(
    State(sim): State<Arc<Sim>>,
    Path(object): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let stream = match object_stream(&sim, &object) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return validation("Invalid input JSON on line 1: expected an object");
    };
    let mut filter = Filter::all();
    let mut equals: Vec<(String, String)> = Vec::new();
    let groups = req.get("filterGroups").and_then(Value::as_array).cloned().unwrap_or_default();
    if groups.len() > 1 {
        return validation("The simulator supports at most one filterGroup");
    }
    for group in &groups {
        let filters = group.get("filters").and_then(Value::as_array).cloned().unwrap_or_default();
        for f in &filters {
            match apply_filter(&mut filter, f) {
                Ok(Some(eq)) => equals.push(eq),
                Ok(None) => {}
                Err(message) => return validation(&message),
            }
        }
    }
    let (order, desc) = match req.get("sorts").and_then(Value::as_array).and_then(|s| s.first()) {
        None => (Order::Index, false),
        Some(sort) => match parse_sort(sort) {
            Ok(o) => o,
            Err(message) => return validation(&message),
        },
    };
    let limit = match req.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => match text(Some(v)).and_then(|s| s.parse::<u64>().ok()) {
            Some(l) => l,
            None => return validation("limit must be a number"),
        },
    }
    .clamp(1, sim.cap(SEARCH_MAX) as u64);
    let after = match text(req.get("after")) {
        None => 0,
        Some(a) if a.is_empty() => 0,
        Some(a) => match a.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return validation(&format!("Invalid after value: {a}")),
        },
    };
    if after >= SEARCH_CAP {
        return validation("There was a problem with the request.");
    }
    let requested: Vec<String> = req
        .get("properties")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let page = if equals.is_empty() {
        sim.select(stream, &filter, order, desc, after, limit as usize)
    } else {
        let all = sim.select(stream, &filter, order, desc, 0, sim.len(stream) as usize);
        let matching: Vec<u64> = all
            .items
            .into_iter()
            .filter(|i| sim.record(stream, *i).is_some_and(|r| equals.iter().all(|(n, v)| property_is(&r, n, v))))
            .collect();
        let total = matching.len() as u64;
        let items = matching.into_iter().skip(after as usize).take(limit as usize).collect();
        Page { items, total }
    };
    let served = after + page.items.len() as u64;
    let results: Vec<Value> =
        sim.records(stream, &page.items).into_iter().map(|r| shape(stream, r, &requested)).collect();
    let mut body = json!({"total": page.total, "results": results});
    if served < page.total {
        body["paging"] = json!({"next": {"after": served.to_string()}});
    }
    util::json(StatusCode::OK, &body)
}
