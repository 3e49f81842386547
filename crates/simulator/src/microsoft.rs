//! Microsoft Graph v1.0 (PROVIDERS.md §6): the identity platform's token endpoint
//! `POST /{tenant}/oauth2/v2.0/token` (client credentials with the
//! `https://graph.microsoft.com/.default` scope for the app; refresh tokens, rotated on
//! every use, for delegated access), then:
//!
//! - `GET /v1.0/users` and `/v1.0/groups` (`$select`, `$top` ≤ 999, default 100); teams
//!   are the groups whose `resourceProvisioningOptions` hold `Team`, listed by
//!   `/groups?$filter=resourceProvisioningOptions/Any(x:x eq 'Team')` (the first
//!   `parents` groups are teams);
//! - `GET /v1.0/teams/{id}/channels` (every channel of the team, one page);
//! - `GET /v1.0/teams/{id}/channels/{cid}/messages` (`$top` default 20, at most 50: a
//!   larger one is a 400; no other OData options);
//! - `GET /v1.0/users/{id}/messages` (Outlook, `$top` default 10, at most 1000 [U]);
//! - delta queries `/users/delta`, `/groups/delta`, `…/channels/{cid}/messages/delta`
//!   and `/users/{id}/mailFolders/inbox/messages/delta`: the first round lists every
//!   record, later rounds (from the `@odata.deltaLink` of the last page) the records
//!   changed since, full, and the deleted ones as `{"id", "@removed": {"reason"}}`
//!   (`changed` for directory objects, which are soft-deleted first; `deleted` for
//!   messages). A page has `@odata.nextLink` or, last, `@odata.deltaLink`, never both.
//!   After [`SimHandle::expire_sync_states`](crate::SimHandle::expire_sync_states) a
//!   delta or skip token issued before answers as Graph does for an expired state:
//!   400 `syncStateNotFound` for users and groups, 410 Gone for messages [U].
//!
//! Every collection pages with a full-URL `@odata.nextLink` (`$skiptoken`) until it is
//! absent. Errors are `{"error": {"code", "message", "innerError"}}`; throttling is 429
//! `TooManyRequests` with `Retry-After`; an expired token is 401
//! `InvalidAuthenticationToken` with `WWW-Authenticate: Bearer …`.
//!
//! Simplifications: a changed record comes back whole in a delta round (Graph may send
//! only the changed properties of some resources), and every mail message is in the
//! inbox.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::auth::{RefreshError, TokenCheck};
use super::core::{ProviderSpec, Rotation, Sim, StreamKind, StreamSpec, lock};
use super::fake::{self, Rng};
use super::filter::{Cmp, Filter};
use super::store::{Meta, Order};
use super::util::{self, Early, Params, Ts};

const USERS: usize = 0;
const GROUPS: usize = 1;
const CHANNELS: usize = 2;
const CHANNEL_MESSAGES: usize = 3;
const MAIL: usize = 4;

/// The simulated organisation's directory (Entra ID tenant) id.
pub(crate) const TENANT: &str = "5f1c3a0e-7b2d-4e8f-9a6b-3c2d1e0f4a5b";
const TOKEN_PATH: &str = "/5f1c3a0e-7b2d-4e8f-9a6b-3c2d1e0f4a5b/oauth2/v2.0/token";
/// The scope an app-only token must ask for.
const APP_SCOPE: &str = "https://graph.microsoft.com/.default";
const DOMAIN: &str = "contoso.example";
const TEAM_FILTER: &str = "resourceProvisioningOptions/Any(x:x eq 'Team')";

/// The Microsoft Graph simulator.
pub(crate) static SPEC: ProviderSpec = ProviderSpec {
    api_base: "/v1.0",
    token_path: Some(TOKEN_PATH),
    token_paths: &[TOKEN_PATH],
    streams: &[
        StreamSpec { name: "users", aliases: &[], kind: StreamKind::Primary },
        StreamSpec { name: "groups", aliases: &["teams"], kind: StreamKind::Primary },
        StreamSpec { name: "channels", aliases: &[], kind: StreamKind::Child },
        StreamSpec { name: "channel_messages", aliases: &[], kind: StreamKind::ChildOf("channels") },
        StreamSpec { name: "messages", aliases: &["mail"], kind: StreamKind::ChildOf("users") },
    ],
    // Access tokens live 60–90 minutes; client-credentials answers say 3599 s.
    default_ttl: Some(Duration::from_secs(3599)),
    rotation: Rotation::Always,
    access_prefix: "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.sim",
    refresh_prefix: "0.AXEAsim",
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
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/v1.0/users", get(users))
        .route("/v1.0/users/delta", get(users_delta))
        .route("/v1.0/groups", get(groups))
        .route("/v1.0/groups/delta", get(groups_delta))
        .route("/v1.0/teams/{team}/channels", get(channels))
        .route("/v1.0/teams/{team}/channels/{channel}/messages", get(channel_messages))
        .route("/v1.0/teams/{team}/channels/{channel}/messages/delta", get(channel_messages_delta))
        .route("/v1.0/users/{user}/messages", get(mail))
        .route("/v1.0/users/{user}/mailFolders/{folder}/messages/delta", get(mail_delta))
}

// ---------------------------------------------------------------------------------------
// Errors

fn inner_error() -> Value {
    let now = Utc::now();
    json!({
        "date": now.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": fake::guid(&mut Rng::new(now.timestamp_micros() as u64, "ms-request", 0, 0)),
        "client-request-id": fake::guid(&mut Rng::new(now.timestamp_micros() as u64, "ms-client-request", 0, 0)),
    })
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    util::json(status, &json!({"error": {"code": code, "message": message, "innerError": inner_error()}}))
}

fn bad_request(code: &str, message: &str) -> Response {
    graph_error(StatusCode::BAD_REQUEST, code, message)
}

fn throttle(sim: &Sim, _: &str) -> Response {
    let response = graph_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests. The application has been throttled; retry after the delay in Retry-After.",
    );
    util::with_header(response, "retry-after", &sim.retry_after().to_string())
}

fn unavailable(sim: &Sim) -> Response {
    let response = graph_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "serviceNotAvailable",
        "The service is temporarily unavailable. Please retry later.",
    );
    util::with_header(response, "retry-after", &sim.retry_after().to_string())
}

fn unauthorized(message: &str) -> Response {
    let response = graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message);
    util::with_header(
        response,
        "www-authenticate",
        "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
         client_id=\"00000003-0000-0000-c000-000000000000\"",
    )
}

/// Checks the bearer token; `Err` is the 401.
fn authorize(sim: &Sim, headers: &HeaderMap) -> Early<()> {
    let Some(token) = util::bearer(headers) else {
        return Err(Box::new(unauthorized("Access token is empty.")));
    };
    match sim.check_token(&token) {
        TokenCheck::Valid => Ok(()),
        TokenCheck::Expired { .. } => Err(Box::new(unauthorized("Access token has expired or is not yet valid."))),
        TokenCheck::Revoked | TokenCheck::Unknown => {
            Err(Box::new(unauthorized("Access token validation failure. Invalid audience.")))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tokens

fn credentials(sim: &Sim) -> Value {
    let (client_id, client_secret) = sim.client_pair();
    json!({"tenant_id": TENANT, "client_id": client_id, "client_secret": client_secret})
}

/// Delegated credentials: the app's pair, the directory and a refresh token (granted with
/// `offline_access`).
pub(crate) fn delegated_credentials(sim: &Sim) -> Value {
    let mut creds = sim.oauth_credentials();
    creds["tenant_id"] = json!(TENANT);
    creds
}

/// An identity platform error (`AADSTS…`), as the token endpoint sends it.
fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let now = Utc::now();
    let trace = fake::guid(&mut Rng::new(now.timestamp_micros() as u64, "aad-trace", u64::from(code), 0));
    util::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Timestamp: {}", now.format("%Y-%m-%d %H:%M:%SZ")),
            "error_codes": [code],
            "timestamp": now.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace,
            "correlation_id": trace,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

async fn token(State(sim): State<Arc<Sim>>, Path(tenant): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if tenant != TENANT {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
        );
    }
    let form = Params::parse(&String::from_utf8_lossy(&body));
    let (id, secret) = match util::basic(&headers) {
        Some(pair) => pair,
        None => (
            form.get("client_id").unwrap_or_default().to_owned(),
            form.get("client_secret").unwrap_or_default().to_owned(),
        ),
    };
    let (client_id, client_secret) = sim.client_pair();
    if id != client_id {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{id}' was not found in the directory '{TENANT}'."),
        );
    }
    if secret != client_secret || sim.revoked() {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, \
             not the client secret ID.",
        );
    }
    let scope = form.get("scope").unwrap_or_default();
    match form.get("grant_type").unwrap_or_default() {
        "client_credentials" => {
            if scope != APP_SCOPE {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    1002012,
                    &format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope \
                         value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                );
            }
            let issued = lock(&sim.auth).issue_session(SPEC.access_prefix);
            util::json(
                StatusCode::OK,
                &json!({
                    "token_type": "Bearer",
                    "expires_in": issued.expires_in,
                    "ext_expires_in": issued.expires_in,
                    "access_token": issued.access_token,
                }),
            )
        }
        "refresh_token" => {
            let refresh = form.get("refresh_token").unwrap_or_default();
            match lock(&sim.auth).refresh(refresh, SPEC.refresh_prefix, SPEC.access_prefix) {
                Ok(issued) => util::json(
                    StatusCode::OK,
                    &json!({
                        "token_type": "Bearer",
                        "scope": if scope.is_empty() { "User.Read.All Group.Read.All ChannelMessage.Read.All Mail.Read" } else { scope },
                        "expires_in": issued.expires_in,
                        "ext_expires_in": issued.expires_in,
                        "access_token": issued.access_token,
                        "refresh_token": issued.refresh_token,
                    }),
                ),
                Err(RefreshError::Unknown) => aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                ),
                Err(RefreshError::Reused | RefreshError::Revoked) => aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new \
                     interactive authorization request for this user and resource.",
                ),
            }
        }
        other => aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Records

/// A GUID whose last group is the index (so a path's id leads back to its record).
fn indexed_guid(sim: &Sim, label: &str, index: u64) -> String {
    let mut r = Rng::new(sim.config.seed, label, index, 0);
    let a = r.next();
    let b = r.next();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b & 0x3fff),
        index
    )
}

fn parse_indexed_guid(sim: &Sim, label: &str, id: &str) -> Option<u64> {
    let last = id.rsplit('-').next()?;
    let index = u64::from_str_radix(last, 16).ok()?;
    (indexed_guid(sim, label, index) == id.to_ascii_lowercase()).then_some(index)
}

fn user_id(sim: &Sim, index: u64) -> String {
    indexed_guid(sim, "ms-user", index)
}

fn group_id(sim: &Sim, index: u64) -> String {
    indexed_guid(sim, "ms-group", index)
}

/// `19:<32 hex>@thread.tacv2`, the index in the first eight digits.
fn channel_id(sim: &Sim, index: u64) -> String {
    let tail = sim.static_secret(&format!("ms-channel-{index}"), 24);
    format!("19:{index:08x}{tail}@thread.tacv2")
}

fn parse_channel_id(sim: &Sim, id: &str) -> Option<u64> {
    let hex = id.strip_prefix("19:")?.get(..8)?;
    let index = u64::from_str_radix(hex, 16).ok()?;
    (channel_id(sim, index) == id).then_some(index)
}

/// Teams message ids are millisecond numbers.
fn channel_message_id(index: u64) -> String {
    (1_600_000_000_000u64 + index).to_string()
}

fn mail_id(sim: &Sim, index: u64) -> String {
    format!("AAMkAG{}{:010x}AAA=", sim.static_secret(&format!("ms-mail-{index}"), 22), index)
}

fn iso(t: Ts) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn person(sim: &Sim, index: u64) -> (String, String, String) {
    let mut r = Rng::new(sim.config.seed, "ms-person", index, 0);
    let first = r.pick(fake::FIRST_NAMES).to_owned();
    let last = r.pick(fake::LAST_NAMES).to_owned();
    let mail = format!("{}.{}{}@{DOMAIN}", first.to_lowercase(), last.to_lowercase(), index);
    (first, last, mail)
}

const JOBS: &[&str] =
    &["Trainer", "Assessor", "Programme Manager", "Account Manager", "Engineer", "Coordinator", "Analyst"];

fn record(sim: &Sim, stream: usize, m: &Meta) -> Value {
    let mut r = Rng::new(sim.config.seed, SPEC.streams[stream].name, m.index, m.rev);
    match stream {
        USERS => {
            let (first, last, mail) = person(sim, m.index);
            // A modified user shows it in its display name (what a directory edit changes).
            let display = if m.rev > 0 { format!("{first} {last} ({})", m.rev) } else { format!("{first} {last}") };
            json!({
                "id": user_id(sim, m.index),
                "businessPhones": [format!("+44 20 7946 {}", r.digits(4))],
                "displayName": display,
                "givenName": first,
                "jobTitle": r.pick(JOBS),
                "mail": mail,
                "mobilePhone": null,
                "officeLocation": r.pick(fake::DIVISIONS),
                "preferredLanguage": "en-GB",
                "surname": last,
                "userPrincipalName": mail,
            })
        }
        GROUPS => {
            let team = m.index < sim.config.parents;
            let name = format!("{} {}", r.pick(fake::COMPANY_WORDS), m.index);
            let nick = fake::domain_label(&name);
            json!({
                "id": group_id(sim, m.index),
                "createdDateTime": util::iso_trimmed(m.created),
                "description": fake::sentence(&mut r, 5),
                "displayName": name,
                "groupTypes": ["Unified"],
                "mail": format!("{nick}@{DOMAIN}"),
                "mailEnabled": true,
                "mailNickname": nick,
                "renewedDateTime": util::iso_trimmed(m.updated),
                "resourceProvisioningOptions": if team { json!(["Team"]) } else { json!([]) },
                "securityEnabled": false,
                "visibility": if r.chance(30) { "Public" } else { "Private" },
            })
        }
        CHANNELS => {
            let team = m.partition.unwrap_or_default();
            let name =
                if m.ordinal == 0 { "General".to_owned() } else { format!("{} {}", r.pick(fake::WORDS), m.index) };
            let id = channel_id(sim, m.index);
            json!({
                "id": id,
                "createdDateTime": util::iso_trimmed(m.created),
                "displayName": name,
                "description": fake::sentence(&mut r, 4),
                "isFavoriteByDefault": null,
                "email": "",
                "tenantId": TENANT,
                "webUrl": format!("https://teams.microsoft.com/l/channel/{id}/General?groupId={}&tenantId={TENANT}", group_id(sim, team)),
                "membershipType": if m.ordinal == 0 || !r.chance(20) { "standard" } else { "private" },
            })
        }
        CHANNEL_MESSAGES => {
            let channel = m.partition.unwrap_or_default();
            let team = sim.meta(CHANNELS, channel).and_then(|c| c.partition).unwrap_or_default();
            let users = sim.len(USERS).max(1);
            let author = r.below(users);
            let (first, last, _) = person(sim, author);
            let id = channel_message_id(m.index);
            let edited = m.rev > 0;
            json!({
                "id": id,
                "replyToId": null,
                "etag": m.updated.timestamp_millis().to_string(),
                "messageType": "message",
                "createdDateTime": iso(m.created),
                "lastModifiedDateTime": iso(m.updated),
                "lastEditedDateTime": if edited { json!(iso(m.updated)) } else { Value::Null },
                "deletedDateTime": null,
                "subject": null,
                "summary": null,
                "chatId": null,
                "importance": "normal",
                "locale": "en-us",
                "webUrl": format!("https://teams.microsoft.com/l/message/{}/{id}", channel_id(sim, channel)),
                "policyViolation": null,
                "eventDetail": null,
                "from": {
                    "application": null,
                    "device": null,
                    "user": {
                        "@odata.type": "#microsoft.graph.teamworkUserIdentity",
                        "id": user_id(sim, author),
                        "displayName": format!("{first} {last}"),
                        "userIdentityType": "aadUser",
                        "tenantId": TENANT,
                    },
                },
                "body": {"contentType": "html", "content": format!("<p>{}</p>", fake::sentence(&mut r, 7))},
                "channelIdentity": {"teamId": group_id(sim, team), "channelId": channel_id(sim, channel)},
                "attachments": [],
                "mentions": [],
                "reactions": [],
            })
        }
        _ => {
            let owner = m.partition.unwrap_or_default();
            let (_, _, owner_mail) = person(sim, owner);
            let (owner_first, owner_last, _) = person(sim, owner);
            let users = sim.len(USERS).max(1);
            let sender = Rng::new(sim.config.seed, "ms-mail-sender", m.index, 0).below(users);
            let (first, last, mail) = person(sim, sender);
            let mut text = Rng::new(sim.config.seed, "ms-mail-text", m.index, 0);
            let subject = fake::sentence(&mut text, 4);
            let body = fake::sentence(&mut text, 12);
            json!({
                "@odata.etag": format!("W/\"{}\"", sim.static_secret(&format!("ms-mail-etag-{}-{}", m.index, m.rev), 24)),
                "id": mail_id(sim, m.index),
                "createdDateTime": iso_seconds(m.created),
                "lastModifiedDateTime": iso_seconds(m.updated),
                "changeKey": sim.static_secret(&format!("ms-mail-ck-{}-{}", m.index, m.rev), 24),
                "categories": [],
                "receivedDateTime": iso_seconds(m.created),
                "sentDateTime": iso_seconds(m.created - TimeDelta::seconds(2)),
                "hasAttachments": false,
                "internetMessageId": format!("<{}@{DOMAIN}>", sim.static_secret(&format!("ms-mail-imid-{}", m.index), 16)),
                "subject": subject,
                "bodyPreview": body,
                "importance": "normal",
                "parentFolderId": inbox_id(sim, owner),
                "conversationId": format!("AAQkAG{}", sim.static_secret(&format!("ms-conv-{}", m.index), 20)),
                "isDeliveryReceiptRequested": false,
                "isReadReceiptRequested": false,
                // Each modification flips the read flag (what a mailbox change most often is).
                "isRead": Rng::new(sim.config.seed, "ms-mail-read", m.index, 0).chance(60) != (m.rev % 2 == 1),
                "isDraft": false,
                "webLink": format!("https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem", mail_id(sim, m.index)),
                "inferenceClassification": "focused",
                "body": {"contentType": "text", "content": body},
                "sender": {"emailAddress": {"name": format!("{first} {last}"), "address": mail}},
                "from": {"emailAddress": {"name": format!("{first} {last}"), "address": mail}},
                "toRecipients": [{"emailAddress": {"name": format!("{owner_first} {owner_last}"), "address": owner_mail}}],
                "ccRecipients": [],
                "bccRecipients": [],
                "replyTo": [],
                "flag": {"flagStatus": "notFlagged"},
            })
        }
    }
}

/// Outlook shows whole seconds.
fn iso_seconds(t: Ts) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn inbox_id(sim: &Sim, owner: u64) -> String {
    format!("AAMkAGInbox{}", sim.static_secret(&format!("ms-inbox-{owner}"), 16))
}

/// The id a tombstone names.
fn id_of(sim: &Sim, stream: usize, index: u64) -> String {
    match stream {
        USERS => user_id(sim, index),
        GROUPS => group_id(sim, index),
        CHANNELS => channel_id(sim, index),
        CHANNEL_MESSAGES => channel_message_id(index),
        _ => mail_id(sim, index),
    }
}

// ---------------------------------------------------------------------------------------
// Listings

/// The state a `$skiptoken` or `$deltatoken` carries, signed so only this simulator
/// issues it. `k`: `l` listing page, `i` first delta round page, `c` later delta round
/// page, `d` delta link.
#[derive(Debug, Clone, Default)]
struct State0 {
    kind: String,
    /// Fingerprint of the path it belongs to.
    path: String,
    offset: u64,
    top: usize,
    select: String,
    filter: String,
    /// Changes after this stamp (delta rounds), in nanoseconds.
    after: i64,
    /// Where the next round starts (the deltaLink's `after`).
    next: i64,
    generation: u64,
}

impl State0 {
    fn encode(&self, sim: &Sim) -> String {
        util::sign_cursor(
            sim.cursor_key(),
            &format!(
                "k={};p={};o={};t={};sel={};f={};a={};n={};g={}",
                self.kind,
                self.path,
                self.offset,
                self.top,
                self.select,
                self.filter,
                self.after,
                self.next,
                self.generation
            ),
        )
    }

    fn decode(sim: &Sim, token: &str) -> Option<Self> {
        let p = util::verify_cursor(sim.cursor_key(), token)?;
        let f = |k: &str| util::payload_field(&p, k).map(str::to_owned);
        Some(Self {
            kind: f("k")?,
            path: f("p")?,
            offset: f("o")?.parse().ok()?,
            top: f("t")?.parse().ok()?,
            select: f("sel")?,
            filter: f("f")?,
            after: f("a")?.parse().ok()?,
            next: f("n")?.parse().ok()?,
            generation: f("g")?.parse().ok()?,
        })
    }
}

fn nanos(t: Ts) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn from_nanos(n: i64) -> Ts {
    DateTime::<Utc>::from_timestamp_nanos(n)
}

/// Keeps only the `$select`ed properties (and `id`, always returned).
fn project(mut record: Value, select: &str) -> Value {
    if select.is_empty() {
        return record;
    }
    let keep: Vec<&str> = select.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if let Value::Object(map) = &mut record {
        let kept: Map<String, Value> =
            std::mem::take(map).into_iter().filter(|(k, _)| k == "id" || keep.contains(&k.as_str())).collect();
        *map = kept;
    }
    record
}

/// What a listing endpoint allows.
struct Listing {
    stream: usize,
    /// The URL path (for links and the token's fingerprint).
    path: String,
    partition: Option<u64>,
    default_top: usize,
    max_top: usize,
    /// The 400 message for a `$top` over the maximum.
    top_error: fn(usize) -> String,
    /// Whether `$select` is accepted (channel messages take only `$top`).
    select: bool,
    /// Whether this is a directory resource (users, groups): their expired delta
    /// states answer 400, messages' 410.
    directory: bool,
}

fn directory_top_error(max: usize) -> String {
    format!("Invalid page size specified: '{max}'. Must be between 1 and 999 inclusive.")
}

fn messages_top_error(_: usize) -> String {
    "Limit of '50' for Top Query".to_owned()
}

fn mail_top_error(_: usize) -> String {
    "The value of $top must be between 1 and 1000.".to_owned()
}

fn expired(sim: &Sim, l: &Listing) -> Response {
    let _ = sim;
    if l.directory {
        bad_request(
            "syncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        )
    } else {
        graph_error(
            StatusCode::GONE,
            "syncStateNotFound",
            "The sync state is not found or has expired. Restart the synchronization without a state token.",
        )
    }
}

fn link(sim: &Sim, l: &Listing, param: &str, state: &State0) -> String {
    format!("{}{}?{param}={}", sim.base_url, l.path, state.encode(sim))
}

fn odata_context(sim: &Sim, l: &Listing) -> String {
    let what = match l.stream {
        USERS => "users",
        GROUPS => "groups",
        CHANNELS => "teams('…')/channels",
        CHANNEL_MESSAGES => "teams('…')/channels('…')/messages",
        _ => "users('…')/messages",
    };
    format!("{}/v1.0/$metadata#{what}", sim.base_url)
}

/// Reads `$top`; `Err` is the 400.
fn top(params: &Params, sim: &Sim, l: &Listing) -> Early<usize> {
    match params.get("$top") {
        None => Ok(l.default_top.min(sim.cap(l.max_top))),
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if n > l.max_top => Err(Box::new(bad_request("BadRequest", &(l.top_error)(n)))),
            Ok(n) if n >= 1 => Ok(n.min(sim.cap(l.max_top))),
            _ => Err(Box::new(bad_request("BadRequest", &format!("Invalid value '{raw}' for $top.")))),
        },
    }
}

/// The OData options a listing does not support.
fn unsupported(params: &Params, l: &Listing, allowed: &[&str]) -> Early<()> {
    for (k, _) in params.pairs() {
        if k.starts_with('$') && !allowed.contains(&k) {
            let message = if l.stream == CHANNEL_MESSAGES {
                format!("Query option '{k}' is not supported for this request; only $top is.")
            } else {
                format!("Query option '{k}' is not supported.")
            };
            return Err(Box::new(bad_request("Request_UnsupportedQuery", &message)));
        }
    }
    Ok(())
}

/// A plain collection: `$top`, `$select` (where allowed), `$filter` (groups: teams
/// only), `$skiptoken` from a nextLink.
fn list(sim: &Sim, l: &Listing, headers: &HeaderMap, raw: Option<&str>) -> Response {
    if let Err(response) = authorize(sim, headers) {
        return *response;
    }
    let params = Params::from_query(raw);
    let fp = util::fingerprint(&l.path);
    let state = match params.get("$skiptoken") {
        Some(token) => match State0::decode(sim, token).filter(|s| s.kind == "l" && s.path == fp) {
            Some(s) => s,
            None => return bad_request("BadRequest", "The $skiptoken is invalid or does not belong to this request."),
        },
        None => {
            let allowed: &[&str] = match (l.select, l.stream) {
                (_, GROUPS) => &["$top", "$select", "$filter"],
                (true, _) => &["$top", "$select"],
                (false, _) => &["$top"],
            };
            if let Err(response) = unsupported(&params, l, allowed) {
                return *response;
            }
            let top = match top(&params, sim, l) {
                Ok(t) => t,
                Err(response) => return *response,
            };
            let filter = params.get("$filter").unwrap_or_default();
            let filter = if filter.is_empty() {
                String::new()
            } else if filter.replace(' ', "").eq_ignore_ascii_case(&TEAM_FILTER.replace(' ', "")) {
                "team".to_owned()
            } else {
                return bad_request(
                    "Request_UnsupportedQuery",
                    &format!("Unsupported or invalid query filter clause specified: '{filter}'."),
                );
            };
            State0 {
                kind: "l".into(),
                path: fp,
                top,
                select: params.get("$select").unwrap_or_default().to_owned(),
                filter,
                generation: sim.sync_generation(),
                ..State0::default()
            }
        }
    };
    let mut filter = Filter::all();
    filter.partition = l.partition;
    if state.filter == "team" {
        filter.index(Cmp::Lt, sim.config.parents);
    }
    let page = sim.select(l.stream, &filter, Order::Index, false, state.offset, state.top);
    let next = state.offset + page.items.len() as u64;
    let value: Vec<Value> = sim.records(l.stream, &page.items).into_iter().map(|r| project(r, &state.select)).collect();
    let mut body = json!({"@odata.context": odata_context(sim, l), "value": value});
    if next < page.total {
        body["@odata.nextLink"] = json!(link(sim, l, "$skiptoken", &State0 { offset: next, ..state }));
    }
    util::json(StatusCode::OK, &body)
}

/// `Prefer: odata.maxpagesize=N`.
fn max_page_size(headers: &HeaderMap) -> Option<usize> {
    let prefer = util::header_str(headers, "prefer")?;
    prefer.split(',').find_map(|p| p.trim().strip_prefix("odata.maxpagesize=")?.trim().parse().ok())
}

/// A delta query. Without a token: the first round, every live record; with a
/// `$deltatoken`: the records changed and deleted since it was issued; `$skiptoken`
/// continues either.
fn delta(sim: &Sim, l: &Listing, headers: &HeaderMap, raw: Option<&str>) -> Response {
    if let Err(response) = authorize(sim, headers) {
        return *response;
    }
    let params = Params::from_query(raw);
    let fp = util::fingerprint(&l.path);
    let token = params.get("$skiptoken").or_else(|| params.get("$deltatoken"));
    let state = match token {
        Some(token) => {
            let Some(state) = State0::decode(sim, token).filter(|s| s.path == fp && s.kind != "l") else {
                return bad_request("BadRequest", "The delta or skip token is invalid for this request.");
            };
            if state.generation != sim.sync_generation() {
                return expired(sim, l);
            }
            match state.kind.as_str() {
                // A delta link starts a new round of changes.
                "d" => State0 {
                    kind: "c".into(),
                    offset: 0,
                    next: nanos(sim.watermark(l.stream).unwrap_or(sim.anchor)),
                    ..state
                },
                _ => state,
            }
        }
        None => {
            let allowed: &[&str] = if l.select { &["$select", "$top"] } else { &["$top"] };
            if let Err(response) = unsupported(&params, l, allowed) {
                return *response;
            }
            let top = match top(&params, sim, l) {
                Ok(t) => t,
                Err(response) => return *response,
            };
            let top = max_page_size(headers).map_or(top, |n| n.clamp(1, l.max_top).min(sim.cap(l.max_top)));
            State0 {
                kind: "i".into(),
                path: fp,
                top,
                select: params.get("$select").unwrap_or_default().to_owned(),
                next: nanos(sim.watermark(l.stream).unwrap_or(sim.anchor)),
                generation: sim.sync_generation(),
                ..State0::default()
            }
        }
    };
    let (value, more) = if state.kind == "i" {
        let mut filter = Filter::all();
        filter.partition = l.partition;
        let page = sim.select(l.stream, &filter, Order::Index, false, state.offset, state.top);
        let records = sim.records(l.stream, &page.items);
        let more = state.offset + (page.items.len() as u64) < page.total;
        (records.into_iter().map(|r| project(r, &state.select)).collect::<Vec<_>>(), more)
    } else {
        changes(sim, l, &state)
    };
    let served = value.len() as u64;
    let mut body = json!({"@odata.context": odata_context(sim, l), "value": value});
    if more {
        let next = State0 { offset: state.offset + served, ..state };
        body["@odata.nextLink"] = json!(link(sim, l, "$skiptoken", &next));
    } else {
        let link_state = State0 { kind: "d".into(), offset: 0, after: state.next, ..state };
        body["@odata.deltaLink"] = json!(link(sim, l, "$deltatoken", &link_state));
    }
    util::json(StatusCode::OK, &body)
}

/// One page of a round of changes: the records changed after `state.after`, then the
/// ones deleted since, as tombstones. `true` when more follow.
fn changes(sim: &Sim, l: &Listing, state: &State0) -> (Vec<Value>, bool) {
    let after = from_nanos(state.after);
    let mut filter = Filter::all();
    filter.partition = l.partition;
    filter.updated(Cmp::Gt, after);
    let page = sim.select(l.stream, &filter, Order::Updated, false, state.offset, state.top);
    let mut value: Vec<Value> =
        sim.records(l.stream, &page.items).into_iter().map(|r| project(r, &state.select)).collect();
    let removed = sim.deleted_after(l.stream, after, l.partition);
    let total = page.total + removed.len() as u64;
    let reason = if l.directory { "changed" } else { "deleted" };
    let from = state.offset.saturating_sub(page.total) as usize;
    let room = state.top.saturating_sub(value.len());
    for index in removed.iter().skip(from).take(room) {
        let mut tombstone = json!({"id": id_of(sim, l.stream, *index), "@removed": {"reason": reason}});
        if l.stream == MAIL || l.stream == CHANNEL_MESSAGES {
            tombstone["@odata.type"] =
                json!(if l.stream == MAIL { "#microsoft.graph.message" } else { "#microsoft.graph.chatMessage" });
        }
        value.push(tombstone);
    }
    let more = state.offset + (value.len() as u64) < total;
    (value, more)
}

fn users_listing(delta: bool) -> Listing {
    Listing {
        stream: USERS,
        path: if delta { "/v1.0/users/delta" } else { "/v1.0/users" }.to_owned(),
        partition: None,
        default_top: 100,
        max_top: 999,
        top_error: directory_top_error,
        select: true,
        directory: true,
    }
}

fn groups_listing(delta: bool) -> Listing {
    Listing {
        stream: GROUPS,
        path: if delta { "/v1.0/groups/delta" } else { "/v1.0/groups" }.to_owned(),
        ..users_listing(delta)
    }
}

async fn users(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    list(&sim, &users_listing(false), &headers, raw.as_deref())
}

async fn users_delta(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    delta(&sim, &users_listing(true), &headers, raw.as_deref())
}

async fn groups(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    list(&sim, &groups_listing(false), &headers, raw.as_deref())
}

async fn groups_delta(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    delta(&sim, &groups_listing(true), &headers, raw.as_deref())
}

fn not_found(what: &str, id: &str) -> Response {
    graph_error(StatusCode::NOT_FOUND, "NotFound", &format!("{what} '{id}' was not found."))
}

/// The live team (a group provisioned as a team) of a path.
fn team_of(sim: &Sim, id: &str) -> Early<u64> {
    parse_indexed_guid(sim, "ms-group", id)
        .filter(|i| *i < sim.config.parents && sim.meta(GROUPS, *i).is_some())
        .ok_or_else(|| Box::new(not_found("Team", id)))
}

/// The live channel of a path, in its team.
fn channel_of(sim: &Sim, team: u64, id: &str) -> Early<u64> {
    parse_channel_id(sim, id)
        .filter(|c| sim.meta(CHANNELS, *c).is_some_and(|m| m.partition == Some(team)))
        .ok_or_else(|| Box::new(not_found("Channel", id)))
}

async fn channels(
    State(sim): State<Arc<Sim>>,
    Path(team): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    let team_index = match team_of(&sim, &team) {
        Ok(t) => t,
        Err(response) => return *response,
    };
    let listing = Listing {
        stream: CHANNELS,
        path: format!("/v1.0/teams/{team}/channels"),
        partition: Some(team_index),
        // Every channel of the team in one page: the API does not page channels.
        default_top: usize::MAX,
        max_top: usize::MAX,
        top_error: directory_top_error,
        select: true,
        directory: false,
    };
    let params = Params::from_query(raw.as_deref());
    if let Err(response) = unsupported(&params, &listing, &["$select", "$filter"]) {
        return *response;
    }
    let mut filter = Filter::all();
    filter.partition = Some(team_index);
    let page = sim.select(CHANNELS, &filter, Order::Index, false, 0, usize::MAX);
    let select = params.get("$select").unwrap_or_default();
    let value: Vec<Value> = sim.records(CHANNELS, &page.items).into_iter().map(|r| project(r, select)).collect();
    util::json(
        StatusCode::OK,
        &json!({"@odata.context": odata_context(&sim, &listing), "@odata.count": value.len(), "value": value}),
    )
}

fn channel_messages_listing(sim: &Sim, team: &str, channel: &str, delta: bool) -> Early<Listing> {
    let team_index = team_of(sim, team)?;
    let channel_index = channel_of(sim, team_index, channel)?;
    let suffix = if delta { "/delta" } else { "" };
    Ok(Listing {
        stream: CHANNEL_MESSAGES,
        path: format!("/v1.0/teams/{team}/channels/{channel}/messages{suffix}"),
        partition: Some(channel_index),
        default_top: 20,
        max_top: 50,
        top_error: messages_top_error,
        select: false,
        directory: false,
    })
}

async fn channel_messages(
    State(sim): State<Arc<Sim>>,
    Path((team, channel)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match channel_messages_listing(&sim, &team, &channel, false) {
        Ok(l) => list(&sim, &l, &headers, raw.as_deref()),
        Err(response) => *response,
    }
}

async fn channel_messages_delta(
    State(sim): State<Arc<Sim>>,
    Path((team, channel)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match channel_messages_listing(&sim, &team, &channel, true) {
        Ok(l) => delta(&sim, &l, &headers, raw.as_deref()),
        Err(response) => *response,
    }
}

fn mail_listing(sim: &Sim, user: &str, path: String) -> Early<Listing> {
    let owner = parse_indexed_guid(sim, "ms-user", user)
        .filter(|i| sim.meta(USERS, *i).is_some())
        .ok_or_else(|| Box::new(not_found("User", user)))?;
    Ok(Listing {
        stream: MAIL,
        path,
        partition: Some(owner),
        default_top: 10,
        max_top: 1000,
        top_error: mail_top_error,
        select: true,
        directory: false,
    })
}

async fn mail(
    State(sim): State<Arc<Sim>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    match mail_listing(&sim, &user, format!("/v1.0/users/{user}/messages")) {
        Ok(l) => list(&sim, &l, &headers, raw.as_deref()),
        Err(response) => *response,
    }
}

async fn mail_delta(
    State(sim): State<Arc<Sim>>,
    Path((user, folder)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = authorize(&sim, &headers) {
        return *response;
    }
    if !folder.eq_ignore_ascii_case("inbox") {
        return not_found("Folder", &folder);
    }
    match mail_listing(&sim, &user, format!("/v1.0/users/{user}/mailFolders/{folder}/messages/delta")) {
        Ok(l) => delta(&sim, &l, &headers, raw.as_deref()),
        Err(response) => *response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    #[test]
    fn ids_lead_back_to_their_records() {
        let sim = Sim::new(SimConfig::new(crate::Provider::Microsoft, 10), "http://127.0.0.1:1".into());
        for i in [0, 7, 4095] {
            assert_eq!(parse_indexed_guid(&sim, "ms-user", &user_id(&sim, i)), Some(i));
            assert_eq!(parse_channel_id(&sim, &channel_id(&sim, i)), Some(i));
        }
        assert_eq!(parse_indexed_guid(&sim, "ms-group", &user_id(&sim, 3)), None);
        assert_eq!(parse_channel_id(&sim, "19:00000001deadbeef@thread.tacv2"), None);
    }

    #[test]
    fn select_keeps_the_id() {
        let r = json!({"id": "x", "displayName": "A", "mail": "a@b"});
        assert_eq!(project(r.clone(), "displayName"), json!({"id": "x", "displayName": "A"}));
        assert_eq!(project(r.clone(), ""), r);
    }
}
