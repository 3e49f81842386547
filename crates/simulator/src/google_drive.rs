//! Google Drive v3: OAuth refresh at `POST /token` (the refresh token is not rotated,
//! access tokens live an hour), `GET /drive/v3/files` with `pageSize ≤ 1000`,
//! `pageToken`/`nextPageToken`, a small `q` (`trashed = false`, `modifiedTime > '…'`)
//! and partial responses by `fields`, and the changes feed:
//! `GET /drive/v3/changes/startPageToken`, then `GET /drive/v3/changes?pageToken=…` to
//! `newStartPageToken`, a deleted file reported as `removed: true` without its `file`.
//! The feed is the core's change journal: every add, modify, delete and restore.
//! Errors use Google's envelope `{"error": {code, message, errors: [{domain, reason,
//! message, location?, locationType?}]}}`; throttling is 403 `userRateLimitExceeded`,
//! 403 `rateLimitExceeded` or 429 `rateLimitExceeded`, without `Retry-After`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::auth::{RefreshError, TokenCheck};
use super::core::{ProviderSpec, Rotation, Sim, Since, StreamKind, StreamSpec, lock};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params};

const FILES: usize = 0;
const PAGE_MAX: u64 = 1000;
const DEFAULT_PAGE: u64 = 100;

/// The Google Drive simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/drive/v3",
    token_path: Some("/token"),
    token_paths: &["/token"],
    streams: &[StreamSpec { name: "files", aliases: &["changes"], kind: StreamKind::Primary }],
    default_ttl: Some(Duration::from_secs(3599)),
    rotation: Rotation::Never,
    access_prefix: "ya29.a0",
    refresh_prefix: "1//0g",
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
        .route("/token", post(token))
        .route("/drive/v3/files", get(list_files))
        .route("/drive/v3/changes/startPageToken", get(start_page_token))
        .route("/drive/v3/changes", get(list_changes))
}

/// Google's error envelope.
fn error(status: StatusCode, reason: &str, message: &str, domain: &str, location: Option<(&str, &str)>) -> Response {
    let mut detail = json!({"domain": domain, "reason": reason, "message": message});
    if let Some((kind, at)) = location {
        detail["locationType"] = json!(kind);
        detail["location"] = json!(at);
    }
    util::json(status, &json!({"error": {"errors": [detail], "code": status.as_u16(), "message": message}}))
}

/// A bad query parameter: 400 `invalid` at that parameter.
fn invalid(parameter: &str, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid", message, "global", Some(("parameter", parameter)))
}

/// Throttle responses cycle through Drive's three: 403 `userRateLimitExceeded`, 403
/// `rateLimitExceeded`, 429 `rateLimitExceeded` (by the throttled request's turn).
fn throttle(sim: &Sim, _: &str) -> Response {
    let every = sim.faults().rate_limit_every.unwrap_or(1).max(1);
    match (sim.data_request_count() / every) % 3 {
        1 => error(StatusCode::FORBIDDEN, "userRateLimitExceeded", "User Rate Limit Exceeded", "usageLimits", None),
        2 => error(StatusCode::FORBIDDEN, "rateLimitExceeded", "Rate Limit Exceeded", "usageLimits", None),
        _ => error(StatusCode::TOO_MANY_REQUESTS, "rateLimitExceeded", "Rate Limit Exceeded", "usageLimits", None),
    }
}

fn unavailable(_: &Sim) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "backendError", "Backend Error", "global", None)
}

fn credentials(sim: &Sim) -> Value {
    sim.oauth_credentials()
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    util::json(status, &json!({"error": error, "error_description": description}))
}

async fn token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let form = Params::parse(&String::from_utf8_lossy(&body));
    if form.get("grant_type") != Some("refresh_token") {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type: ");
    }
    let (id, secret) = sim.client_pair();
    if form.get("client_id") != Some(id.as_str()) || form.get("client_secret") != Some(secret.as_str()) {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client", "The OAuth client was not found.");
    }
    let refresh = form.get("refresh_token").unwrap_or_default();
    let result = lock(&sim.auth).refresh(refresh, SPEC.refresh_prefix, SPEC.access_prefix);
    match result {
        Ok(issued) => util::json(
            StatusCode::OK,
            &json!({
                "access_token": issued.access_token,
                "expires_in": issued.expires_in,
                "scope": "https://www.googleapis.com/auth/drive.readonly",
                "token_type": "Bearer",
            }),
        ),
        Err(RefreshError::Unknown | RefreshError::Reused | RefreshError::Revoked) => {
            token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Token has been expired or revoked.")
        }
    }
}

/// Checks the bearer token; `Err` is Drive's 401 `authError`.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    let check = util::bearer(headers).map_or(TokenCheck::Unknown, |t| sim.check_token(&t));
    if check == TokenCheck::Valid {
        return Ok(());
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "authError",
        "Invalid Credentials",
        "global",
        Some(("header", "Authorization")),
    );
    util::set_header(&mut response, "www-authenticate", "Bearer realm=\"https://accounts.google.com/\"");
    Err(Box::new(response))
}

/// The file id of record `index`.
fn file_id(index: u64) -> String {
    format!("1Drv{}", fake::base36(index, 10))
}

const MIME_TYPES: &[(&str, &str)] = &[
    ("application/vnd.google-apps.document", ""),
    ("application/vnd.google-apps.spreadsheet", ""),
    ("application/pdf", ".pdf"),
    ("image/png", ".png"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
];

/// A person: display name and address.
fn person(r: &mut Rng) -> (String, String) {
    let first = r.pick(fake::FIRST_NAMES);
    let last = r.pick(fake::LAST_NAMES);
    (format!("{first} {last}"), format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()))
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    // What a modification changes: the name's first word, who else has access, the
    // last modifying user.
    let mut v = Rng::new(sim.config.seed, "drive-revision", m.index, m.rev);
    let id = file_id(m.index);
    let (mime, ext) = MIME_TYPES[r.below(MIME_TYPES.len() as u64) as usize];
    let name = format!("{} {} {}{ext}", v.pick(fake::WORDS), r.pick(fake::WORDS), m.index + 1);
    let (owner_name, owner_email) = person(&mut r);
    // The owner is one of one to three permissions, at a varying position.
    let others = v.below(3) as usize;
    let owner_at = v.below(others as u64 + 1) as usize;
    let mut permissions = Vec::with_capacity(others + 1);
    for i in 0..=others {
        let (role, display, email) = if i == owner_at {
            ("owner", owner_name.clone(), owner_email.clone())
        } else {
            let (n, e) = person(&mut v);
            (v.pick(&["writer", "commenter", "reader"]), n, e)
        };
        permissions.push(json!({
            "kind": "drive#permission",
            "id": format!("{:017}", fake::mix(m.index.wrapping_mul(8) + i as u64) % 100_000_000_000_000_000),
            "type": "user",
            "role": role,
            "emailAddress": email,
            "displayName": display,
        }));
    }
    let (modifier_name, modifier_email) = person(&mut v);
    let mut file = json!({
        "kind": "drive#file",
        "id": id,
        "name": name,
        "mimeType": mime,
        "parents": [format!("0AFolder{}", fake::base36(m.index % 7, 4))],
        "createdTime": util::iso_ms(m.created),
        "modifiedTime": util::iso_ms(m.updated),
        "version": (u64::from(m.rev) + 1).to_string(),
        "trashed": false,
        "owners": [{"kind": "drive#user", "displayName": owner_name, "emailAddress": owner_email, "me": false}],
        "lastModifyingUser": {"kind": "drive#user", "displayName": modifier_name, "emailAddress": modifier_email},
        "permissions": permissions,
        "properties": {
            "department": r.pick(fake::DIVISIONS),
            "project_code": format!("P-{}", r.digits(4)),
        },
        "webViewLink": format!("https://docs.google.com/file/d/{}/view", file_id(m.index)),
    });
    if !mime.starts_with("application/vnd.google-apps.") {
        file["size"] = json!((1024 + r.below(5_000_000)).to_string());
    }
    file
}

/// A `fields` selection: key → what of its value (`None`: all of it).
#[derive(Debug, Clone, Default, PartialEq)]
struct Selection(BTreeMap<String, Option<Selection>>);

impl Selection {
    /// Parses `nextPageToken,files(id,name,owners/emailAddress)`; `Err` names the problem.
    fn parse(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        let sel = Self::list(&chars, &mut at)?;
        if at != chars.len() {
            return Err(format!("unexpected `{}`", chars[at]));
        }
        Ok(sel)
    }

    fn list(chars: &[char], at: &mut usize) -> Result<Self, String> {
        let mut out = Self::default();
        loop {
            let mut path = Vec::new();
            loop {
                let start = *at;
                while *at < chars.len() && (chars[*at].is_ascii_alphanumeric() || matches!(chars[*at], '_' | '*')) {
                    *at += 1;
                }
                if start == *at {
                    return Err("empty field name".into());
                }
                path.push(chars[start..*at].iter().collect::<String>());
                if chars.get(*at) == Some(&'/') {
                    *at += 1;
                } else {
                    break;
                }
            }
            let mut sub = None;
            if chars.get(*at) == Some(&'(') {
                *at += 1;
                sub = Some(Self::list(chars, at)?);
                if chars.get(*at) != Some(&')') {
                    return Err("unclosed `(`".into());
                }
                *at += 1;
            }
            // `a/b(c)` is `a(b(c))`.
            let mut inner = sub;
            while path.len() > 1 {
                let last = path.pop().unwrap_or_default();
                inner = Some(Self(BTreeMap::from([(last, inner)])));
            }
            out.add(path.pop().unwrap_or_default(), inner);
            match chars.get(*at) {
                Some(',') => *at += 1,
                _ => return Ok(out),
            }
        }
    }

    fn add(&mut self, key: String, sub: Option<Selection>) {
        match (self.0.get_mut(&key), sub) {
            (Some(Some(mine)), Some(sub)) => {
                for (k, v) in sub.0 {
                    mine.add(k, v);
                }
            }
            (Some(slot), None) => *slot = None,
            (Some(None), Some(_)) => {}
            (None, sub) => {
                self.0.insert(key, sub);
            }
        }
    }

    fn apply(&self, value: &Value) -> Value {
        match value {
            Value::Array(items) => Value::Array(items.iter().map(|v| self.apply(v)).collect()),
            Value::Object(map) => {
                if self.0.contains_key("*") {
                    return value.clone();
                }
                let mut out = Map::new();
                for (k, sub) in &self.0 {
                    if let Some(v) = map.get(k) {
                        out.insert(k.clone(), sub.as_ref().map_or_else(|| v.clone(), |s| s.apply(v)));
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

/// The `fields` parameter, or `default` without one; `Err` is Drive's 400.
fn selection(params: &Params, default: &str) -> Early<Selection> {
    let text = params.get("fields").unwrap_or(default);
    Selection::parse(text).map_err(|why| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalidParameter",
            &format!("Invalid field selection {text}: {why}"),
            "global",
            Some(("parameter", "fields")),
        ))
    })
}

fn page_size(params: &Params) -> Early<usize> {
    let bad = |raw: &str| {
        Box::new(invalid(
            "pageSize",
            &format!("Invalid value '{raw}'. Values must be within the range: [1, {PAGE_MAX}]"),
        ))
    };
    let raw = params.get("pageSize");
    match util::parse_u64(raw) {
        Ok(None) => Ok(DEFAULT_PAGE as usize),
        Ok(Some(n)) if (1..=PAGE_MAX).contains(&n) => Ok(n as usize),
        _ => Err(bad(raw.unwrap_or_default())),
    }
}

/// The files a `q` selects: `trashed = false` and `modifiedTime >`/`>=` a quoted
/// RFC 3339 time, joined by `and` (the rest of Drive's query language is refused).
fn query_filter(q: &str) -> Result<Filter, String> {
    let mut filter = Filter::all();
    for term in q.split(" and ").map(str::trim).filter(|t| !t.is_empty()) {
        let compact: String = term.split_whitespace().collect::<Vec<_>>().join(" ");
        if compact == "trashed = false" || compact == "trashed=false" {
            continue;
        }
        let Some(rest) = compact.strip_prefix("modifiedTime") else {
            return Err(format!("unsupported query term `{term}`"));
        };
        let rest = rest.trim_start();
        let (cmp, value) = if let Some(v) = rest.strip_prefix(">=") {
            (Cmp::Ge, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (Cmp::Gt, v)
        } else {
            return Err(format!("unsupported comparison in `{term}`"));
        };
        let value = value.trim();
        let Some(text) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
            return Err(format!("the time in `{term}` must be quoted"));
        };
        let t = util::parse_ts(text).ok_or_else(|| format!("`{text}` is not an RFC 3339 time"))?;
        filter.updated(cmp, t);
    }
    Ok(filter)
}

/// `GET /drive/v3/files`: files in id order (or by `modifiedTime` when asked), paged by
/// an opaque `pageToken` bound to the query.
async fn list_files(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    let size = match page_size(&params) {
        Ok(n) => n,
        Err(response) => return *response,
    };
    let fields = match selection(&params, "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)") {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let q = params.get("q").unwrap_or_default();
    let filter = match query_filter(q) {
        Ok(f) => f,
        Err(why) => return invalid("q", &format!("Invalid Value: {why}")),
    };
    let order = match params.get("orderBy").unwrap_or_default() {
        "" => Order::Index,
        "modifiedTime" => Order::Updated,
        _ => return invalid("orderBy", "Invalid Value"),
    };
    let bound = util::fingerprint(&format!("{q}|{order:?}"));
    let offset = match params.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => {
            let payload = util::verify_cursor(sim.cursor_key(), token);
            let offset = payload
                .as_deref()
                .filter(|p| util::payload_field(p, "q") == Some(bound.as_str()))
                .and_then(|p| util::payload_field(p, "o"))
                .and_then(|o| o.parse::<u64>().ok());
            match offset {
                Some(o) => o,
                None => return invalid("pageToken", "Invalid Value"),
            }
        }
    };
    let size = size.min(sim.cap(PAGE_MAX as usize));
    let page = sim.select(FILES, &filter, order, false, offset, size + 1);
    let shown = &page.items[..page.items.len().min(size)];
    let mut body = json!({
        "kind": "drive#fileList",
        "incompleteSearch": false,
        "files": sim.records(FILES, shown),
    });
    if page.items.len() > size {
        let payload = format!("o={};q={bound}", offset + size as u64);
        body["nextPageToken"] = json!(util::sign_cursor(sim.cursor_key(), &payload));
    }
    util::json(StatusCode::OK, &fields.apply(&body))
}

/// `GET /drive/v3/changes/startPageToken`: where the changes from now on begin.
async fn start_page_token(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    util::json(
        StatusCode::OK,
        &json!({"kind": "drive#startPageToken", "startPageToken": sim.journal_head().to_string()}),
    )
}

/// `GET /drive/v3/changes?pageToken=N`: the changes from token N on, each with the
/// file as it is now (or `removed: true` when it is gone); `nextPageToken` while more
/// follow, then `newStartPageToken` for the next poll.
async fn list_changes(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let params = Params::from_query(raw.as_deref());
    let size = match page_size(&params) {
        Ok(n) => n.min(sim.cap(PAGE_MAX as usize)),
        Err(response) => return *response,
    };
    let fields = match selection(
        &params,
        "kind,nextPageToken,newStartPageToken,changes(kind,changeType,time,removed,fileId,file(kind,id,name,mimeType))",
    ) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let include_removed = params.get("includeRemoved") != Some("false");
    let Some(token) = params.get("pageToken").filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "required",
            "Required parameter: pageToken",
            "global",
            Some(("parameter", "pageToken")),
        );
    };
    let Ok(from) = token.parse::<u64>() else {
        return invalid("pageToken", "Invalid Value");
    };
    let (changes, next) = match sim.journal_since(from, size) {
        Since::Changes(changes, next) => (changes, next),
        // [ASSUMED] Drive documents no distinct answer for an expired token.
        Since::Expired | Since::Unknown => return invalid("pageToken", "Invalid Value"),
    };
    let mut out = Vec::with_capacity(changes.len());
    for c in &changes {
        let base = json!({
            "kind": "drive#change",
            "changeType": "file",
            "time": util::iso_ms(c.at),
            "fileId": file_id(c.index),
        });
        let mut change = base;
        match sim.record(c.stream, c.index) {
            Some(file) => {
                change["removed"] = json!(false);
                change["file"] = file;
            }
            None if include_removed => change["removed"] = json!(true),
            None => continue,
        }
        out.push(change);
    }
    let mut body = json!({"kind": "drive#changeList", "changes": out});
    if next < sim.journal_head() {
        body["nextPageToken"] = json!(next.to_string());
    } else {
        body["newStartPageToken"] = json!(next.to_string());
    }
    util::json(StatusCode::OK, &fields.apply(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selections_keep_what_they_name() {
        let body = json!({
            "kind": "drive#fileList",
            "nextPageToken": "t",
            "files": [{"id": "1", "name": "a", "owners": [{"emailAddress": "x@y", "me": false}], "size": "9"}],
        });
        let sel = Selection::parse("nextPageToken,files(id,owners/emailAddress)").unwrap();
        assert_eq!(
            sel.apply(&body),
            json!({"nextPageToken": "t", "files": [{"id": "1", "owners": [{"emailAddress": "x@y"}]}]})
        );
        assert_eq!(Selection::parse("*").unwrap().apply(&body), body);
        assert_eq!(Selection::parse("files(*)").unwrap().apply(&body), json!({"files": body["files"]}));
        for bad in ["", "files(", "a,,b", "files(id))"] {
            assert!(Selection::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_accept_trashed_and_modified_time_only() {
        assert!(query_filter("").is_ok());
        assert!(query_filter("trashed = false and modifiedTime > '2024-06-01T00:00:00Z'").is_ok());
        assert!(query_filter("modifiedTime >= '2024-06-01T00:00:00.000Z'").is_ok());
        assert!(query_filter("name contains 'x'").is_err());
        assert!(query_filter("modifiedTime > 2024-06-01").is_err());
    }
}
