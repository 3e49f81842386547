//! The request side of the manifest language: how a stream is fetched, paged, read
//! incrementally and how responses are classified. Everything a provider needs is
//! said here as data; the engine (`crate::engine`) interprets it generically.
//!
//! Templates: strings in `path`, `query`, `headers`, `body` and auth settings may
//! hold `{name}` placeholders: `{base_url}`, `{subdomain}`, the tenant's variables,
//! credential fields (auth settings only), `{access_token}`, `{cursor}` (the
//! incremental position, formatted by `param_format`) and `{parent.<path>}` (a field
//! of the parent record, for child streams). Pointers are RFC 6901 JSON pointers
//! (`/paging/next/after`); `""` is the whole body.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// HTTP method of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    #[default]
    Json,
    Form,
}

/// One request shape. In an `incremental` section every field that is set replaces
/// the stream's; `query` and `headers` merge key by key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Path appended to the base URL (or an absolute URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body whose string values are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_format: Option<BodyFormat>,
    /// Pointer to the record array in the response (`/results`); `""` = the body itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Pointer to the number of records the whole read will return, when the API says
    /// (Salesforce `/totalSize`, HubSpot search `/total`, OData `/@odata.count`): shown
    /// as progress. Default: the pagination's `total`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    /// Names of `query` parameters (or top-level `body` fields) sent only with the first
    /// request of a walk (a start time the API refuses alongside a page cursor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_page_only: Vec<String>,
    /// Names of `query` parameters (or top-level `body` fields) sent only with the
    /// requests after the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later_pages_only: Vec<String>,
}

impl RequestSpec {
    /// `self` with every field `over` sets replaced.
    pub fn overlay(&self, over: &RequestSpec) -> RequestSpec {
        let mut out = self.clone();
        if over.method.is_some() {
            out.method = over.method;
        }
        if over.path.is_some() {
            out.path.clone_from(&over.path);
        }
        // A request to another path is another request: its query and headers replace.
        if over.path.is_some() {
            out.query.clone_from(&over.query);
            out.headers.clone_from(&over.headers);
        } else {
            out.query.extend(over.query.iter().map(|(k, v)| (k.clone(), v.clone())));
            out.headers.extend(over.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if over.body.is_some() {
            out.body.clone_from(&over.body);
        }
        if over.body_format.is_some() {
            out.body_format = over.body_format;
        }
        if over.records.is_some() {
            out.records.clone_from(&over.records);
        }
        if over.pagination.is_some() {
            out.pagination.clone_from(&over.pagination);
        }
        if over.total.is_some() {
            out.total.clone_from(&over.total);
        }
        if !over.first_page_only.is_empty() {
            out.first_page_only.clone_from(&over.first_page_only);
        }
        if !over.later_pages_only.is_empty() {
            out.later_pages_only.clone_from(&over.later_pages_only);
        }
        out
    }
}

/// Where a paging parameter goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamIn {
    #[default]
    Query,
    Body,
}

/// How a stream pages. Every kind stops on an empty page; guards stop a cursor or a
/// page that repeats, and `max_pages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request, no paging.
    None,
    /// A cursor in the body sent back as a parameter (HubSpot `paging.next.after`,
    /// Slack `response_metadata.next_cursor`, Jira `nextPageToken`); `token` is a synonym.
    #[serde(alias = "token")]
    Cursor {
        /// Pointer to the next cursor; absent, null or `""` ends the stream.
        cursor: String,
        /// Parameter (query) or body field that carries it.
        param: String,
        #[serde(default, rename = "in")]
        location: ParamIn,
        /// Pointer to a boolean that is true on the last page (Jira `isLast`).
        #[serde(default)]
        is_last: Option<String>,
        /// Pointer to a boolean that is false on the last page (`has_more`).
        #[serde(default)]
        has_more: Option<String>,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// A URL of the next page in the body (Salesforce `nextRecordsUrl`, Graph `@odata.nextLink`).
    NextUrl {
        next: String,
        /// Pointer to a boolean that is true when done (Salesforce `done`).
        #[serde(default)]
        done: Option<String>,
        /// Pointer to a boolean that is false on the last page (`has_more`).
        #[serde(default)]
        has_more: Option<String>,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// RFC 5988 `Link: <…>; rel="next"`.
    LinkHeader {
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// The next page's number or token in a response header (GitLab `X-Next-Page`),
    /// sent back as a query parameter; an absent or empty header ends the stream.
    NextHeader {
        /// The response header (`X-Next-Page`).
        header: String,
        /// The query parameter that carries it (`page`).
        param: String,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// Offset and limit (Jira `startAt`/`maxResults`); `odata` is `$skip`/`$top`.
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u64,
        #[serde(default, rename = "in")]
        location: ParamIn,
        /// Pointer to the total count, when the API gives one.
        #[serde(default)]
        total: Option<String>,
        #[serde(default)]
        is_last: Option<String>,
        /// Pointer to a boolean that is false on the last page (`has_more`).
        #[serde(default)]
        has_more: Option<String>,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// OData `$top`/`$skip`.
    Odata {
        limit: u64,
        #[serde(default)]
        max_pages: Option<u64>,
    },
    /// Page numbers (Bud `pageNumber`, OneFile `PageNumber`).
    PageNumber {
        page_param: String,
        size_param: String,
        size: u64,
        #[serde(default = "one")]
        start: u64,
        #[serde(default, rename = "in")]
        location: ParamIn,
        #[serde(default)]
        total: Option<String>,
        /// Pointer to a boolean that is false on the last page (`has_more`).
        #[serde(default)]
        has_more: Option<String>,
        #[serde(default)]
        max_pages: Option<u64>,
    },
}

fn one() -> u64 {
    1
}

impl Pagination {
    /// Whether positions of this kind are opaque tokens issued by the API (which may
    /// expire), rather than numbers the client computes.
    pub fn issues_tokens(&self) -> bool {
        matches!(self, Self::Cursor { .. } | Self::NextUrl { .. } | Self::LinkHeader { .. })
    }

    pub fn max_pages(&self) -> Option<u64> {
        match self {
            Self::None => Some(1),
            Self::Cursor { max_pages, .. }
            | Self::NextUrl { max_pages, .. }
            | Self::LinkHeader { max_pages }
            | Self::NextHeader { max_pages, .. }
            | Self::Offset { max_pages, .. }
            | Self::Odata { max_pages, .. }
            | Self::PageNumber { max_pages, .. } => *max_pages,
        }
    }
}

/// How an interrupted pass of a stream continues on the next run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeMode {
    /// Every page saves where the pass continues (page token, next URL, offset, page
    /// number, the parent being read, the high-water mark so far); the next run goes on
    /// from there.
    Position,
    /// Only the incremental cursor is kept (it moves with every page of a sorted
    /// incremental read); an interrupted full read starts over.
    Cursor,
    /// Nothing is kept: an interrupted pass starts over.
    None,
}

impl ResumeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Position => "position",
            Self::Cursor => "cursor",
            Self::None => "none",
        }
    }
}

/// How cursor values are read from records and written into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorFormat {
    /// RFC 3339 / ISO 8601 with any precision, rendered `2024-06-01T10:00:00Z`.
    Rfc3339,
    /// RFC 3339 with milliseconds, `2024-06-01T10:00:00.123Z`.
    Rfc3339Ms,
    /// RFC 3339 with microseconds, `2024-06-01T10:00:00.123456Z` (OData feeds keep 7 digits).
    Rfc3339Us,
    /// Milliseconds since the epoch (HubSpot search).
    EpochMs,
    /// Seconds since the epoch.
    EpochS,
    /// Slack `ts`: seconds with six decimals.
    SlackTs,
    /// Jira JQL: `yyyy-MM-dd HH:mm` (minute precision).
    JqlMinute,
    /// `YYYY-MM-DD`.
    Date,
    /// Opaque text, compared as text.
    Raw,
}

/// Incremental reading of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalSpec {
    /// Dotted path or pointer of the cursor value in each record.
    pub cursor_field: String,
    /// How record values are parsed and compared.
    pub cursor_format: CursorFormat,
    /// How `{cursor}` is rendered into the request (default: `cursor_format`).
    #[serde(default)]
    pub param_format: Option<CursorFormat>,
    /// Seconds subtracted from the cursor when requesting (late writes, minute precision).
    #[serde(default)]
    pub lookback_secs: u64,
    /// The incremental request's records come sorted ascending by the cursor, so the
    /// cursor may be committed with every page; otherwise it is committed only after the
    /// last page. A full read (no cursor yet) always commits at its end.
    #[serde(default)]
    pub sorted: bool,
    /// The incremental request returns at most this many results per query (HubSpot
    /// search: 10,000); the engine restarts it from the last cursor value before
    /// reaching the cap. The full read is not capped.
    #[serde(default)]
    pub window_cap: Option<u64>,
    /// The API has no "changed since" filter: every pass reads the whole listing, and
    /// records whose cursor is at or below the stored one are dropped before mapping
    /// (counted in the run's note), so the run reports only real changes.
    #[serde(default)]
    pub client_side: bool,
    /// The request when a cursor exists (fields set here replace the stream's).
    #[serde(default)]
    pub request: RequestSpec,
}

/// Conditional requests: the validator a response carried is kept in the stream's state
/// and sent with the next pass's first request; `304 Not Modified` means nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conditional {
    /// `ETag` → `If-None-Match`.
    Etag,
    /// `Last-Modified` → `If-Modified-Since`.
    LastModified,
}

impl Conditional {
    /// The response header that carries the validator.
    pub fn response_header(self) -> &'static str {
        match self {
            Self::Etag => "etag",
            Self::LastModified => "last-modified",
        }
    }

    /// The request header that sends it back.
    pub fn request_header(self) -> &'static str {
        match self {
            Self::Etag => "If-None-Match",
            Self::LastModified => "If-Modified-Since",
        }
    }
}

/// What a response means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseAction {
    Success,
    /// No records, end of stream (OneFile 204).
    Empty,
    /// Transient: retry with backoff.
    Retry,
    /// Throttled: wait (`Retry-After` or the rate-limit reset) and retry.
    RateLimited,
    /// The access token expired: refresh, then retry once.
    AuthExpired,
    /// Permanent: the run fails with the provider's message.
    Fail,
    /// The stream state sent with the request expired (Graph delta 410, Asana sync
    /// 412): the state is discarded and the stream read in full. A stream without a
    /// `state` section fails as with `fail`.
    StateExpired,
}

/// A status code or class (`"5xx"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl StatusMatch {
    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Code(c) => c == status,
            Self::Class(c) => status / 100 == c,
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Code(u16),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Code(c) if (100..600).contains(&c) => Ok(Self::Code(c)),
            Raw::Code(c) => Err(serde::de::Error::custom(format!("`{c}` is not an HTTP status"))),
            Raw::Text(t) => match t.as_bytes() {
                [d @ b'1'..=b'5', b'x', b'x'] => Ok(Self::Class(u16::from(d - b'0'))),
                _ => Err(serde::de::Error::custom(format!("`{t}` is not a status class like \"5xx\""))),
            },
        }
    }
}

/// One classification rule: when the status and body match, the response means `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRule {
    /// Statuses or classes this rule applies to (empty: any).
    #[serde(default)]
    pub status: Vec<StatusMatch>,
    /// Pointer (or JSONPath query, `$…`: any node it selects) → value the body must
    /// hold; an array value means any of them.
    #[serde(default)]
    pub body: BTreeMap<String, Value>,
    /// The raw body must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    pub action: ResponseAction,
    /// Pointer to the provider's error message.
    #[serde(default)]
    pub message: Option<String>,
}

/// The provider's rate limit, as it documents it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub requests: u32,
    pub per_secs: u32,
    /// `connection` (default) or `provider` (one quota shared by every tenant).
    #[serde(default)]
    pub scope: QuotaScope,
    #[serde(default)]
    pub remaining_header: Option<String>,
    #[serde(default)]
    pub reset_header: Option<String>,
    #[serde(default = "retry_after")]
    pub retry_after_header: String,
    /// The highest `requests` a preset or tenant may set (`[providers.<p>] rate_limit =
    /// { requests = N }`, for plans with a larger quota); default `requests`: an
    /// override may only lower the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
}

/// `[retry]`: the bounds within which a preset or tenant may change the retry policy
/// (`[providers.<p>] retry = { attempts, max_backoff_secs }`); without a bound, that
/// part cannot be overridden.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// The most attempts per request an override may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The longest backoff between attempts (seconds) an override may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_secs: Option<u64>,
}

fn retry_after() -> String {
    "Retry-After".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaScope {
    #[default]
    Connection,
    Provider,
}

/// Checks a key of a rule's `body`: a JSON pointer, or a JSONPath query (`$…`, any
/// node it selects may hold the value: `$.error.errors[*].reason`).
pub fn check_body_key(p: &str) -> Result<(), String> {
    if p.starts_with('$') {
        serde_json_path::JsonPath::parse(p).map(drop).map_err(|e| format!("`{p}` is not a JSONPath query: {e}"))
    } else {
        check_pointer(p)
    }
}

/// Checks a JSON pointer's syntax.
pub fn check_pointer(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(format!("`{p}` is not a JSON pointer (start with `/`, or `\"\"` for the whole body)"))
    }
}

/// A stream state taken from the response (`[streams.<s>.state]`): a delta link, sync
/// token, start page token or export cursor that the API hands out, instead of a
/// high-water mark read from record fields. It is stored with the page it came on (in
/// the page's transaction) and the next run's pass starts from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Pointer to the state in a response body (`/@odata.deltaLink`, `/sync`); pages
    /// without it leave the state as it is.
    pub from: String,
    /// How a pass from a state sends it: `url` requests it as the next URL (a delta
    /// link), `param` renders it as `{state}` in the state request's query, headers or body.
    #[serde(rename = "use")]
    pub use_as: StateUse,
    /// The request of a pass from a state (fields set here replace the stream's, as in
    /// `incremental.request`); with `use = "param"` it must use `{state}`.
    #[serde(default)]
    pub request: RequestSpec,
    /// Pointer inside each item of a pass from a state to the record itself (a Drive
    /// change's `/file`, an Asana event's `/resource`); default: the item is the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// A request made before a full pass when the API hands out the first state on its
    /// own (Drive `GET /changes/startPageToken`): taken before the pass so nothing that
    /// changes during it is missed, and stored when the pass completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<StateInit>,
    /// Responses that mean the state expired, besides `[[responses]]` rules with
    /// `action = "state_expired"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<StateExpiry>,
    /// A full pass reads nothing: it only takes the first state from `init`. For a feed
    /// of changes (Asana's events) whose records another stream lists in full.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init_only: bool,
    /// Streams of the manifest whose next run is a full pass that sweeps when this
    /// stream's state expires: a feed of changes that lost its state missed what happened
    /// in the gap (Asana's events: "fetch the full dataset … now"), and only listing the
    /// records in full, then sweeping the stored ones no longer listed, finds the
    /// deletions among it. Each must read the same entity normally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired_full_pass: Vec<String>,
}

/// How a state is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateUse {
    Url,
    Param,
}

/// The request that fetches a first state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateInit {
    /// The request (its own path; the stream's query and headers are not inherited).
    pub request: RequestSpec,
    /// Pointer to the state in its response (default: the state's `from`). Read from an
    /// error response too when that response means the state expired (Asana answers a
    /// request without a sync token with 412 and a fresh token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Responses that mean the stream state expired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateExpiry {
    #[serde(default)]
    pub status: Vec<StatusMatch>,
    /// Pointer → value the body must hold; an array value means any of them.
    #[serde(default)]
    pub body: BTreeMap<String, Value>,
}

impl StateExpiry {
    /// As a response rule.
    pub fn rule(&self) -> ResponseRule {
        ResponseRule {
            status: self.status.clone(),
            body: self.body.clone(),
            body_contains: None,
            action: ResponseAction::StateExpired,
            message: None,
        }
    }
}

/// An item of a stream that says the record was deleted (Graph delta `@removed`, Drive
/// change `removed: true`, Asana event `action: "deleted"`): the stored record is
/// marked deleted, as a deletion stream's records are, in the page's transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TombstoneSpec {
    /// Pointer to the field that marks a deletion.
    pub when: String,
    /// The value(s) it must hold (an array: any of them); absent: any value but `null`
    /// and `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// Pointer to the deleted record's key in the item (Drive `/fileId`); default: the
    /// key through the entity's mapping, as for deletion streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Items that are not deletions are skipped rather than stored (an events feed whose
    /// other items are stubs of records another stream reads whole).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only: bool,
}

impl TombstoneSpec {
    /// Whether `item` says its record was deleted.
    pub fn matches(&self, item: &Value) -> bool {
        let Some(v) = item.pointer(&self.when) else { return false };
        match &self.equals {
            None => !matches!(v, Value::Null | Value::Bool(false)),
            Some(Value::Array(any)) => any.iter().any(|e| e == v),
            Some(e) => e == v,
        }
    }
}

#[cfg(test)]
mod state_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tombstones_match_on_presence_a_value_or_any_of_several() {
        let present = TombstoneSpec { when: "/@removed".into(), equals: None, key: None, only: false };
        assert!(present.matches(&json!({ "id": "1", "@removed": { "reason": "deleted" } })));
        assert!(!present.matches(&json!({ "id": "1" })));
        assert!(!present.matches(&json!({ "id": "1", "@removed": null })));
        assert!(!present.matches(&json!({ "id": "1", "@removed": false })));
        let equals = TombstoneSpec { when: "/action".into(), equals: Some(json!("deleted")), key: None, only: false };
        assert!(equals.matches(&json!({ "action": "deleted" })));
        assert!(!equals.matches(&json!({ "action": "changed" })));
        let any = TombstoneSpec {
            when: "/action".into(),
            equals: Some(json!(["deleted", "removed"])),
            key: None,
            only: false,
        };
        assert!(any.matches(&json!({ "action": "removed" })));
        assert!(!any.matches(&json!({ "action": "added" })));
    }

    #[test]
    fn a_state_section_parses_and_its_expiry_is_a_rule() {
        let spec: StateSpec = toml::from_str(
            r#"
            from = "/sync"
            use = "param"
            request = { query = { sync = "{state}" } }
            init = { request = { path = "/events" } }
            expired = { status = [412], body = { "/errors/0/code" = "expired" } }
            "#,
        )
        .unwrap();
        assert_eq!(spec.use_as, StateUse::Param);
        let rule = spec.expired.as_ref().unwrap().rule();
        assert_eq!(rule.action, ResponseAction::StateExpired);
        assert_eq!(rule.status, [StatusMatch::Code(412)]);
        assert!(toml::from_str::<StateSpec>("from = \"/sync\"\nuse = \"header\"").is_err());
        assert!(toml::from_str::<StateSpec>("from = \"/sync\"\nuse = \"url\"\nfrom_header = \"x\"").is_err());
    }
}
