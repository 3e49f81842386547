//! Slack Web API: `oauth.v2.access` with refresh-token rotation (a spent
//! refresh token presented again revokes the whole grant), and
//! `conversations.list`, `users.list`, `conversations.history` over GET or
//! POST (query, form or JSON). Errors are HTTP 200 `{"ok":false,…}`;
//! throttling is 429 with `Retry-After`. Messages are a child stream split
//! over the channels, newest first; a modified message is reposted with a
//! new `ts` so `oldest` picks it up.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::auth::TokenCheck;
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, applied, lock, write_body};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params, Ts, header_str};

const CHANNELS: usize = 0;
const USERS: usize = 1;
const MESSAGES: usize = 2;
const LIST_MAX: usize = 1000;
const HISTORY_MAX: usize = 999;
const DEFAULT_LIMIT: u64 = 100;
const TEAM: &str = "T0SIMTEAM";

/// The Slack simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/api",
    token_path: Some("/api/oauth.v2.access"),
    token_paths: &["/api/oauth.v2.access"],
    streams: &[
        StreamSpec { name: "channels", aliases: &["conversations"], kind: StreamKind::Parent },
        StreamSpec { name: "users", aliases: &["members"], kind: StreamKind::Primary },
        StreamSpec { name: "messages", aliases: &["history"], kind: StreamKind::Child },
    ],
    default_ttl: Some(Duration::from_secs(43_200)),
    rotation: Rotation::Always,
    access_prefix: "xoxe.xoxb-1-",
    refresh_prefix: "xoxe-1-",
    resolution_ns: 1_000,
    refine: None,
    router,
    throttle,
    unavailable,
    credentials,
    record,
    decorate: None,
};

fn router() -> Router<Arc<Sim>> {
    Router::new().route("/api/{method}", get(method).post(method))
}

fn fail(error: &str) -> Response {
    util::json(StatusCode::OK, &json!({"ok": false, "error": error}))
}

fn throttle(sim: &Sim, _: &str) -> Response {
    let response = util::json(StatusCode::TOO_MANY_REQUESTS, &json!({"ok": false, "error": "ratelimited"}));
    util::with_header(response, "retry-after", &sim.retry_after().to_string())
}

fn unavailable(_: &Sim) -> Response {
    util::json(StatusCode::SERVICE_UNAVAILABLE, &json!({"ok": false, "error": "service_unavailable"}))
}

fn credentials(sim: &Sim) -> Value {
    sim.oauth_credentials()
}

fn channel_id(index: u64) -> String {
    format!("C{}", fake::base36(index, 8))
}

fn user_id(index: u64) -> String {
    format!("U{}", fake::base36(index, 8))
}

/// `1712345678.000100`.
fn slack_ts(t: Ts) -> String {
    format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros())
}

/// Parses `1712345678.000100` (or a whole number of seconds).
fn parse_slack_ts(s: &str) -> Option<Ts> {
    let (secs, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: u32 = format!("{frac:0<6}").parse().ok()?;
    DateTime::<Utc>::from_timestamp(secs, micros * 1000)
}

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, 0);
    let users = sim.len(USERS);
    let someone = |r: &mut Rng| {
        if users == 0 { "USLACKBOT".to_owned() } else { user_id(r.below(users)) }
    };
    match stream {
        CHANNELS => {
            let name = if m.index == 0 { "general".to_owned() } else { format!("{}-{}", r.pick(fake::WORDS), m.index) };
            let creator = someone(&mut r);
            json!({
                "id": channel_id(m.index),
                "name": name,
                "is_channel": true,
                "is_group": false,
                "is_im": false,
                "is_private": false,
                "created": m.created.timestamp(),
                "is_archived": false,
                "is_general": m.index == 0,
                "name_normalized": name,
                "is_member": true,
                "creator": creator,
                "topic": {"value": fake::sentence(&mut r, 3), "creator": creator, "last_set": m.updated.timestamp()},
                "purpose": {"value": fake::sentence(&mut r, 4), "creator": creator, "last_set": m.created.timestamp()},
                "num_members": 2 + r.below(50),
            })
        }
        USERS => {
            let first = r.pick(fake::FIRST_NAMES);
            let last = r.pick(fake::LAST_NAMES);
            let handle = format!("{}.{}{}", first.to_lowercase(), last.to_lowercase(), m.index);
            json!({
                "id": user_id(m.index),
                "team_id": TEAM,
                "name": handle,
                "deleted": false,
                "real_name": format!("{first} {last}"),
                "tz": "Europe/London",
                "is_admin": m.index == 0,
                "is_bot": false,
                "updated": m.updated.timestamp(),
                "profile": {
                    "real_name": format!("{first} {last}"),
                    "display_name": handle,
                    "email": format!("{handle}@example.com"),
                },
            })
        }
        _ => {
            let mut text = Rng::new(sim.config.seed, "slack-text", m.index, m.rev);
            json!({
                "type": "message",
                "user": someone(&mut r),
                "text": fake::sentence(&mut text, 6),
                "ts": slack_ts(m.updated),
                "team": TEAM,
            })
        }
    }
}

/// Query, form and JSON parameters of a request, in that order.
fn params(headers: &HeaderMap, raw: Option<&str>, body: &[u8]) -> Params {
    let mut params = Params::from_query(raw);
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                params.push(&k, v);
            }
        }
    } else if !body.is_empty() {
        for (k, v) in Params::parse(&String::from_utf8_lossy(body)).pairs() {
            params.push(k, v.to_owned());
        }
    }
    params
}

async fn method(
    State(sim): State<Arc<Sim>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let params = params(&headers, raw.as_deref(), &body);
    if method == "oauth.v2.access" {
        return oauth(&sim, &headers, &params);
    }
    if method == "chat.postMessage" {
        sim.record_write("POST", "/api/chat.postMessage", &headers, write_body(&body));
    }
    let token = util::bearer(&headers).or_else(|| params.get("token").map(str::to_owned));
    let Some(token) = token else {
        return fail("not_authed");
    };
    match sim.check_token(&token) {
        TokenCheck::Valid => {}
        TokenCheck::Expired { .. } => return fail("token_expired"),
        TokenCheck::Revoked => return fail("token_revoked"),
        TokenCheck::Unknown => return fail("invalid_auth"),
    }
    match method.as_str() {
        "conversations.list" => list(&sim, CHANNELS, "channels", &params),
        "users.list" => list(&sim, USERS, "members", &params),
        "conversations.history" => history(&sim, &params),
        "chat.postMessage" => post_message(&sim, &params),
        _ => util::json(StatusCode::NOT_FOUND, &json!({"ok": false, "error": "unknown_method"})),
    }
}

fn oauth(sim: &Sim, headers: &HeaderMap, params: &Params) -> Response {
    let (id, secret) = match util::basic(headers) {
        Some(pair) => pair,
        None => (
            params.get("client_id").unwrap_or_default().to_owned(),
            params.get("client_secret").unwrap_or_default().to_owned(),
        ),
    };
    let (client_id, client_secret) = sim.client_pair();
    if id != client_id {
        return fail("invalid_client_id");
    }
    if secret != client_secret {
        return fail("bad_client_secret");
    }
    if params.get("grant_type") != Some("refresh_token") {
        return fail(if params.get("code").is_some() { "invalid_code" } else { "invalid_grant_type" });
    }
    let refresh = params.get("refresh_token").unwrap_or_default();
    let issued = lock(&sim.auth).refresh(refresh, SPEC.refresh_prefix, SPEC.access_prefix);
    let Ok(issued) = issued else {
        return fail("invalid_grant");
    };
    util::json(
        StatusCode::OK,
        &json!({
            "ok": true,
            "app_id": "A0SIMAPP",
            "authed_user": {"id": user_id(0)},
            "scope": "channels:history,channels:read,users:read,users:read.email",
            "token_type": "bot",
            "access_token": issued.access_token,
            "bot_user_id": "U0SIMBOT",
            "refresh_token": issued.refresh_token,
            "expires_in": issued.expires_in,
            "team": {"id": TEAM, "name": "Simulated Workspace"},
            "enterprise": null,
            "is_enterprise_install": false,
        }),
    )
}

/// Reads `limit`; `Err` is the Slack error to send.
fn limit(params: &Params, max: usize) -> Early<usize> {
    match util::parse_u64(params.get("limit")) {
        Ok(None | Some(0)) => Ok(DEFAULT_LIMIT.min(max as u64) as usize),
        Ok(Some(l)) => Ok(l.min(max as u64) as usize),
        Err(()) => Err(Box::new(fail("invalid_limit"))),
    }
}

/// Decodes `cursor` for a listing with fingerprint `scope`; `Err` is
/// `invalid_cursor`.
fn offset(sim: &Sim, params: &Params, scope: &str) -> Early<u64> {
    let Some(cursor) = params.get("cursor").filter(|c| !c.is_empty()) else {
        return Ok(0);
    };
    util::verify_cursor(sim.cursor_key(), cursor)
        .filter(|p| util::payload_field(p, "s") == Some(scope))
        .and_then(|p| util::payload_field(&p, "o").and_then(|o| o.parse().ok()))
        .ok_or_else(|| Box::new(fail("invalid_cursor")))
}

fn next_cursor(sim: &Sim, scope: &str, offset: u64, total: u64) -> String {
    if offset >= total { String::new() } else { util::sign_cursor(sim.cursor_key(), &format!("s={scope};o={offset}")) }
}

fn list(sim: &Sim, stream: usize, key: &str, params: &Params) -> Response {
    let limit = match limit(params, sim.cap(LIST_MAX)) {
        Ok(l) => l,
        Err(response) => return *response,
    };
    let scope = SPEC.streams[stream].name;
    let start = match offset(sim, params, scope) {
        Ok(o) => o,
        Err(response) => return *response,
    };
    let page = sim.select(stream, &Filter::all(), Order::Index, false, start, limit);
    let next = start + page.items.len() as u64;
    let mut body = json!({"ok": true});
    body[key] = Value::Array(sim.records(stream, &page.items));
    if stream == USERS {
        body["cache_ts"] = json!(Utc::now().timestamp());
    }
    body["response_metadata"] = json!({"next_cursor": next_cursor(sim, scope, next, page.total)});
    util::json(StatusCode::OK, &body)
}

fn history(sim: &Sim, params: &Params) -> Response {
    let channel = params.get("channel").unwrap_or_default();
    let index = channel
        .strip_prefix('C')
        .filter(|rest| rest.len() == 8)
        .and_then(fake::parse_base36)
        .filter(|i| sim.meta(CHANNELS, *i).is_some());
    let Some(channel_index) = index else {
        return fail("channel_not_found");
    };
    let limit = match limit(params, sim.cap(HISTORY_MAX)) {
        Ok(l) => l,
        Err(response) => return *response,
    };
    let inclusive = matches!(params.get("inclusive"), Some("true" | "1"));
    let mut filter = Filter::all();
    filter.partition = Some(channel_index);
    for (key, strict, loose) in [("oldest", Cmp::Gt, Cmp::Ge), ("latest", Cmp::Lt, Cmp::Le)] {
        match params.get(key).filter(|v| !v.is_empty()) {
            None => {}
            Some(v) => match parse_slack_ts(v) {
                Some(t) => filter.updated(if inclusive { loose } else { strict }, t),
                None if key == "oldest" => return fail("invalid_ts_oldest"),
                None => return fail("invalid_ts_latest"),
            },
        }
    }
    let scope = util::fingerprint(&format!(
        "{channel}|{}|{}|{inclusive}",
        params.get("oldest").unwrap_or_default(),
        params.get("latest").unwrap_or_default()
    ));
    let start = match offset(sim, params, &scope) {
        Ok(o) => o,
        Err(response) => return *response,
    };
    let page = sim.select(MESSAGES, &filter, Order::Updated, true, start, limit);
    let next = start + page.items.len() as u64;
    util::json(
        StatusCode::OK,
        &json!({
            "ok": true,
            "messages": sim.records(MESSAGES, &page.items),
            "has_more": next < page.total,
            "pin_count": 0,
            "channel_actions_ts": null,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": next_cursor(sim, &scope, next, page.total)},
        }),
    )
}

/// `chat.postMessage`: `{ok, channel, ts, message}`; the message then shows in
/// `conversations.history` of its channel.
fn post_message(sim: &Sim, params: &Params) -> Response {
    let channel = params.get("channel").unwrap_or_default();
    let index = channel
        .strip_prefix('C')
        .filter(|rest| rest.len() == 8)
        .and_then(fake::parse_base36)
        .filter(|i| sim.meta(CHANNELS, *i).is_some());
    let Some(channel_index) = index else {
        return fail("channel_not_found");
    };
    let text = params.get("text").unwrap_or_default();
    if text.trim().is_empty() && params.get("blocks").is_none() {
        return fail("no_text");
    }
    if text.chars().count() > 40_000 {
        return fail("msg_too_long");
    }
    let mut patch = json!({"text": text, "user": BOT_USER});
    if let Some(thread) = params.get("thread_ts") {
        patch["thread_ts"] = json!(thread);
    }
    let Some(index) = sim.apply_write_to(MESSAGES, None, Some(channel_index), &patch) else {
        return fail("internal_error");
    };
    match sim.record(MESSAGES, index) {
        Some(message) => applied(util::json(
            StatusCode::OK,
            &json!({"ok": true, "channel": channel, "ts": message["ts"], "message": message}),
        )),
        None => fail("internal_error"),
    }
}

/// The bot user messages are posted as.
const BOT_USER: &str = "USIMBOT01";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_timestamps_round_trip() {
        let t = parse_slack_ts("1712345678.000100");
        assert_eq!(t.map(slack_ts).as_deref(), Some("1712345678.000100"));
        assert_eq!(parse_slack_ts("1712345678").map(slack_ts).as_deref(), Some("1712345678.000000"));
        assert_eq!(parse_slack_ts("17x"), None);
        assert_eq!(parse_slack_ts("1.1234567"), None);
    }
}
