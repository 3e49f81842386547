//! Faithful fake provider servers for tests, benchmarks and `tributary demo`.
//!
//! Each simulator is a real HTTP server on loopback that speaks one
//! provider's API as `PROVIDERS.md` describes it: the same paths, auth flow,
//! pagination, incremental filters, error bodies and throttle signals.
//! Records are generated lazily from their index (seeded, deterministic), so a
//! stream of a million records costs no memory; only modified, added and
//! deleted records are remembered.
//!
//! | provider | API base | credentials | streams |
//! | --- | --- | --- | --- |
//! | aptem | `/odata/1.0` | `api_token` (header `X-API-Token`) | learners, organizations |
//! | bud | `/v1` (token `/connect/token`) | `client_id`, `client_secret` | learners, employers |
//! | onefile | `/api/v2.1` (session `/Authentication`) | `customer_token` | learners, organisations |
//! | hubspot | `/crm/v3` (token `/oauth/v1/token`) | `client_id`, `client_secret`, `refresh_token` | contacts, companies, deals |
//! | salesforce | `/services/data/v60.0` (token `/services/oauth2/token`) | `client_id`, `client_secret`, `refresh_token` | accounts, contacts, opportunities |
//! | slack | `/api` (token `/api/oauth.v2.access`) | `client_id`, `client_secret`, `refresh_token` | channels, users, messages (per channel) |
//! | jira | `/rest/api/3` (OAuth token `/oauth/token`) | `email`, `api_token` (Basic); OAuth via [`SimHandle::oauth_credentials`] | projects, issues (per project) |
//! | google_drive | `/drive/v3` (token `/token`) | `client_id`, `client_secret`, `refresh_token` | files (and the changes feed over them) |
//! | asana | `/api/1.0` (token `/-/oauth_token`) | `client_id`, `client_secret`, `refresh_token` | projects (of workspace [`ASANA_WORKSPACE_GID`]), tasks (per project); `/events` sync tokens |
//! | microsoft | `/v1.0` (token `/{tenant}/oauth2/v2.0/token`) | `tenant_id`, `client_id`, `client_secret`; delegated via [`SimHandle::oauth_credentials`] | users, groups, channels (per team), channel_messages (per channel), messages (per user) |
//! | github | `` (app token `/app/installations/4242/access_tokens`) | `token`; app via [`SimHandle::app_credentials`] | repositories, issues, pull_requests (per repository) |
//! | gitlab | `/api/v4` | `private_token` (header `PRIVATE-TOKEN`) | projects, issues, merge_requests (per project) |
//!
//! Base records' `updated` times rise with the index over the year that
//! ends an hour before [`SimHandle::anchor`]; [`SimHandle::modify`] and
//! [`SimHandle::add`] stamp "now", so `updated >= anchor` selects exactly the
//! touched records.
//!
//! HubSpot, Slack and Jira also send webhooks, signed as the real providers sign them,
//! to a target set at any time ([`SimHandle::set_webhook_target`]):
//! [`SimHandle::change_and_notify`] changes a record, then posts the event about it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tributary_simulator::{Provider, SimConfig, start};
//! let sim = start(SimConfig::new(Provider::HubSpot, 1_000)).await?;
//! println!("{} {}", sim.api_base(), sim.credentials());
//! sim.modify("contacts", 42);
//! # Ok(()) }
//! ```

mod appkey;
mod aptem;
mod asana;
mod auth;
mod bud;
mod core;
mod fake;
mod filter;
mod github;
mod gitlab;
mod google_drive;
mod hubspot;
mod hubspot_search;
mod jira;
mod jql;
mod microsoft;
mod onefile;
mod salesforce;
mod server;
mod slack;
mod soql;
mod store;
mod util;
mod webhooks;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use self::asana::WORKSPACE_GID as ASANA_WORKSPACE_GID;
use self::core::{ProviderSpec, Sim, StreamKind};
pub use self::webhooks::{WebhookError, WebhookSent, WebhookTarget};

/// The providers that have a simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Aptem OData feed (`X-API-Token`).
    Aptem,
    /// Bud REST API (OAuth2 client credentials) — shape assumed.
    Bud,
    /// OneFile API v2.1 (customer token → session token).
    OneFile,
    /// HubSpot CRM v3 (OAuth2 refresh tokens).
    HubSpot,
    /// Salesforce REST/SOQL (OAuth2 refresh tokens).
    Salesforce,
    /// Slack Web API (OAuth2 with token rotation).
    Slack,
    /// Jira Cloud REST v3 (Basic auth or OAuth2 with rotation).
    Jira,
    /// Google Drive v3 (OAuth2 refresh tokens; files and the changes feed).
    GoogleDrive,
    /// Microsoft Graph v1.0 (OAuth2 client credentials, or delegated with rotation).
    Microsoft,
    /// GitHub REST v3 (personal token, or a GitHub App's installation tokens).
    GitHub,
    /// GitLab REST v4 (`PRIVATE-TOKEN`).
    GitLab,
    /// Asana API 1.0 (OAuth2 refresh tokens, not rotated).
    Asana,
}

impl Provider {
    /// Every simulated provider.
    pub const ALL: [Provider; 12] = [
        Provider::Aptem,
        Provider::Bud,
        Provider::OneFile,
        Provider::HubSpot,
        Provider::Salesforce,
        Provider::Slack,
        Provider::Jira,
        Provider::GoogleDrive,
        Provider::Microsoft,
        Provider::GitHub,
        Provider::GitLab,
        Provider::Asana,
    ];

    /// The lowercase id used by manifests and the CLI (`hubspot`).
    pub fn id(self) -> &'static str {
        match self {
            Provider::Aptem => "aptem",
            Provider::Bud => "bud",
            Provider::OneFile => "onefile",
            Provider::HubSpot => "hubspot",
            Provider::Salesforce => "salesforce",
            Provider::Slack => "slack",
            Provider::Jira => "jira",
            Provider::GoogleDrive => "google_drive",
            Provider::Microsoft => "microsoft",
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Asana => "asana",
        }
    }

    fn spec(self) -> &'static ProviderSpec {
        match self {
            Provider::Aptem => &aptem::SPEC,
            Provider::Bud => &bud::SPEC,
            Provider::OneFile => &onefile::SPEC,
            Provider::HubSpot => &hubspot::SPEC,
            Provider::Salesforce => &salesforce::SPEC,
            Provider::Slack => &slack::SPEC,
            Provider::Jira => &jira::SPEC,
            Provider::GoogleDrive => &google_drive::SPEC,
            Provider::Microsoft => &microsoft::SPEC,
            Provider::GitHub => &github::SPEC,
            Provider::GitLab => &gitlab::SPEC,
            Provider::Asana => &asana::SPEC,
        }
    }

    /// The canonical names of the provider's streams.
    pub fn streams(self) -> Vec<&'static str> {
        self.spec().streams.iter().map(|s| s.name).collect()
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The error for an unknown provider name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown simulated provider `{0}` (expected one of aptem, bud, onefile, hubspot, salesforce, slack, jira, microsoft, \
     github, gitlab, google_drive, asana)"
)]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.id().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

/// Faults injected into data endpoints (never token endpoints). Periods
/// count data requests globally per simulator, from 1: with
/// `rate_limit_every: Some(3)`, requests 3, 6, 9… are throttled. When two
/// periods pick the same request, reset wins, then throttle, then 503, then
/// truncation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    /// Answer every K-th request with the provider's throttle response.
    pub rate_limit_every: Option<u64>,
    /// Answer every M-th request with the provider's 503.
    pub server_error_every: Option<u64>,
    /// Drop the connection of every R-th request without a response.
    pub reset_every: Option<u64>,
    /// Send only the first half of every T-th response body (status kept).
    pub truncate_every: Option<u64>,
    /// Wait this long before answering each data request (or every D-th, below).
    pub delay: Option<Duration>,
    /// Apply `delay` only to every D-th data request (`None`: to every one).
    pub delay_every: Option<u64>,
    /// The `Retry-After` value (seconds) for providers that send one.
    pub retry_after_secs: u64,
    /// Serve every N-th record (by position) without the field at this dotted path
    /// (`properties.email`): bad source data, for data-quality tests.
    pub blank_field: Option<(String, u64)>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rate_limit_every: None,
            server_error_every: None,
            reset_every: None,
            truncate_every: None,
            delay: None,
            delay_every: None,
            retry_after_secs: 1,
            blank_field: None,
        }
    }
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Serve every `every`-th record without the field at `path` (dotted).
    pub fn blank_field(mut self, path: &str, every: u64) -> Self {
        self.blank_field = Some((path.to_owned(), every.max(1)));
        self
    }

    /// Throttle every `k`-th data request.
    pub fn rate_limit_every(mut self, k: u64) -> Self {
        self.rate_limit_every = Some(k);
        self
    }

    /// Answer 503 to every `m`-th data request.
    pub fn server_error_every(mut self, m: u64) -> Self {
        self.server_error_every = Some(m);
        self
    }

    /// Drop the connection of every `r`-th data request.
    pub fn reset_every(mut self, r: u64) -> Self {
        self.reset_every = Some(r);
        self
    }

    /// Truncate the body of every `t`-th data response.
    pub fn truncate_every(mut self, t: u64) -> Self {
        self.truncate_every = Some(t);
        self
    }

    /// Delay every data request.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Delay only every `d`-th data request by `delay` (a slow response now and then).
    pub fn delay_every(mut self, d: u64, delay: Duration) -> Self {
        self.delay = Some(delay);
        self.delay_every = Some(d);
        self
    }

    /// Set the `Retry-After` seconds.
    pub fn retry_after_secs(mut self, secs: u64) -> Self {
        self.retry_after_secs = secs;
        self
    }
}

/// What happens to the answer of a write the simulator applied: the client cannot tell
/// whether it was applied (an ambiguous failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmbiguousWrite {
    /// Never answer (the client times out).
    Hang,
    /// Drop the connection without an answer.
    Drop,
}

/// One write request a simulator received, as sent (credential headers left out).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteReceived {
    /// `POST`, `PATCH`, `PUT`.
    pub method: String,
    /// The request path (no query).
    pub path: String,
    /// Lowercase header names.
    pub headers: BTreeMap<String, String>,
    /// The parsed body (`null` when empty or not JSON; a form body as an object).
    pub body: Value,
}

/// How to run one simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The provider to simulate.
    pub provider: Provider,
    /// Records per stream (child streams: in total, over all parents).
    pub records: u64,
    /// Seed of the generated contents.
    pub seed: u64,
    /// Faults from the start.
    pub faults: Faults,
    /// Access-token lifetime; `None` uses the provider's real one.
    pub access_token_ttl: Option<Duration>,
    /// Largest page the server returns; `None` uses the provider's limits.
    pub page_size_cap: Option<usize>,
    /// Parents of child streams: Slack channels, Jira projects.
    pub parents: u64,
    /// Per-stream record counts overriding `records`.
    pub stream_records: BTreeMap<String, u64>,
    /// Rotate refresh tokens where the provider makes it optional
    /// (Salesforce); Slack and Jira always rotate, HubSpot never does.
    pub rotate_refresh_tokens: bool,
    /// Base records end an hour before this instant (default: start time).
    pub anchor: Option<DateTime<Utc>>,
}

impl SimConfig {
    /// `records` records per stream, seed 1, three parents, no faults.
    pub fn new(provider: Provider, records: u64) -> Self {
        Self {
            provider,
            records,
            seed: 1,
            faults: Faults::default(),
            access_token_ttl: None,
            page_size_cap: None,
            parents: 3,
            stream_records: BTreeMap::new(),
            rotate_refresh_tokens: false,
            anchor: None,
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the initial faults.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Sets the access-token lifetime.
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = Some(ttl);
        self
    }

    /// Caps every page at `n` records.
    pub fn page_size_cap(mut self, n: usize) -> Self {
        self.page_size_cap = Some(n);
        self
    }

    /// Sets the number of channels or projects.
    pub fn parents(mut self, n: u64) -> Self {
        self.parents = n;
        self
    }

    /// Gives one stream its own record count.
    pub fn stream_records(mut self, stream: &str, n: u64) -> Self {
        self.stream_records.insert(stream.to_ascii_lowercase(), n);
        self
    }

    /// Turns optional refresh-token rotation on or off.
    pub fn rotate_refresh_tokens(mut self, rotate: bool) -> Self {
        self.rotate_refresh_tokens = rotate;
        self
    }

    /// Fixes the anchor instant, making timestamps reproducible.
    pub fn anchor(mut self, anchor: DateTime<Utc>) -> Self {
        self.anchor = Some(anchor);
        self
    }

    fn count_for(&self, stream: &str) -> u64 {
        self.stream_records.get(stream).copied().unwrap_or(self.records)
    }
}

struct HandleInner {
    sim: Arc<Sim>,
    notifier: webhooks::Notifier,
    cancel: CancellationToken,
    addr: SocketAddr,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A running simulator. Clones share it; it stops when the last clone drops
/// or on [`SimHandle::shutdown`].
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<HandleInner>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("provider", &self.inner.sim.provider)
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

/// Starts a simulator on `127.0.0.1` with a free port.
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
    start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a simulator on `addr`.
pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(addr).await?;
    let local = server::display_addr(listener.local_addr()?);
    let sim = Arc::new(Sim::new(config, format!("http://{local}")));
    let cancel = CancellationToken::new();
    server::spawn(sim.clone(), listener, cancel.clone());
    let notifier = webhooks::Notifier::new();
    Ok(SimHandle { inner: Arc::new(HandleInner { sim, notifier, cancel, addr: local }) })
}

impl SimHandle {
    fn sim(&self) -> &Sim {
        &self.inner.sim
    }

    /// The instant base records end an hour before (the start time unless
    /// configured); every modification is stamped later than this.
    pub fn anchor(&self) -> DateTime<Utc> {
        self.sim().anchor
    }

    /// The provider served.
    pub fn provider(&self) -> Provider {
        self.sim().provider
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.sim().base_url.clone()
    }

    /// The base a connector appends resource paths to (`…/odata/1.0`,
    /// `…/api/v2.1`, `…/v1`, `…/crm/v3`, `…/services/data/v60.0`, `…/api`,
    /// `…/rest/api/3`).
    pub fn api_base(&self) -> String {
        format!("{}{}", self.sim().base_url, self.sim().spec.api_base)
    }

    /// The token (or session) endpoint, if the provider has one.
    pub fn token_url(&self) -> Option<String> {
        self.sim().spec.token_path.map(|p| format!("{}{}", self.sim().base_url, p))
    }

    /// What a tenant stores to connect (keys depend on the auth kind).
    pub fn credentials(&self) -> Value {
        (self.sim().spec.credentials)(self.sim())
    }

    /// OAuth `{client_id, client_secret, refresh_token}` for providers that
    /// support OAuth (for Jira, whose [`credentials`](Self::credentials) are
    /// Basic ones); `None` for the others.
    pub fn oauth_credentials(&self) -> Option<Value> {
        match self.provider() {
            Provider::HubSpot
            | Provider::Salesforce
            | Provider::Slack
            | Provider::Jira
            | Provider::GoogleDrive
            | Provider::Asana
            | Provider::GitLab => Some(self.sim().oauth_credentials()),
            Provider::Microsoft => Some(microsoft::delegated_credentials(self.sim())),
            _ => None,
        }
    }

    /// GitHub App credentials (`app_id`, `installation_id`, `private_key` — a PEM key
    /// made when first asked for, whose public half the simulator checks JWTs with);
    /// `None` for other providers.
    pub fn app_credentials(&self) -> Option<Value> {
        match self.provider() {
            Provider::GitHub => github::app_credentials(self.sim()),
            _ => None,
        }
    }

    /// Starts an independent OAuth grant (another installation) and returns
    /// its credentials, so several tenants can share one simulator without
    /// spending each other's rotating refresh tokens.
    pub fn new_grant(&self) -> Option<Value> {
        let mut creds = self.oauth_credentials()?;
        let token = core::lock(&self.sim().auth).new_grant(self.sim().spec.refresh_prefix);
        creds["refresh_token"] = Value::String(token);
        Some(creds)
    }

    /// Every request served (token endpoints included).
    pub fn request_count(&self) -> u64 {
        self.sim().request_count()
    }

    /// Data requests served (the ones faults count).
    pub fn data_request_count(&self) -> u64 {
        self.sim().data_request_count()
    }

    /// When the most recent data requests arrived (up to the last 10,000), oldest
    /// first: a server-side view of the client's request rate.
    pub fn data_request_times(&self) -> Vec<std::time::Instant> {
        self.sim().data_request_times()
    }

    /// The most recent data requests (up to the last 10,000) as `METHOD /path?query`,
    /// oldest first: which pages a client asked for.
    pub fn request_log(&self) -> Vec<String> {
        self.sim().request_log()
    }

    /// Requests whose path starts with `path_prefix`.
    pub fn requests_for(&self, path_prefix: &str) -> u64 {
        self.sim().requests_for(path_prefix)
    }

    /// The canonical names of the streams served.
    pub fn streams(&self) -> Vec<&'static str> {
        self.provider().streams()
    }

    /// How many live records `stream` has now (0 for an unknown stream).
    pub fn record_count(&self, stream: &str) -> u64 {
        self.sim().stream_index(stream).map_or(0, |s| self.sim().live(s))
    }

    /// Bumps record `index` of `stream` to a new revision updated now;
    /// `false` if there is no such live record.
    pub fn modify(&self, stream: &str, index: u64) -> bool {
        let sim = self.sim();
        sim.stream_index(stream).is_some_and(|s| sim.mutate_noted(s, index, |d| d.modify(index, Utc::now())))
    }

    /// Appends `n` records created now; returns their indices (`None` for
    /// an unknown stream). Children are dealt round-robin over the parents.
    pub fn add(&self, stream: &str, n: u64) -> Option<Range<u64>> {
        let sim = self.sim();
        let s = sim.stream_index(stream)?;
        let added = sim.mutate(s, |d| d.add(n, Utc::now()))?;
        for i in added.clone() {
            sim.journal_change(s, i);
        }
        Some(added)
    }

    /// Deletes record `index`; `false` if there is no such live record.
    pub fn delete(&self, stream: &str, index: u64) -> bool {
        let sim = self.sim();
        sim.stream_index(stream).is_some_and(|s| sim.mutate_noted(s, index, |d| d.delete(index)))
    }

    /// Brings deleted record `index` back, modified now; `false` if it is not deleted
    /// (or the provider's listings cannot show it: only HubSpot's `archived=true` lists
    /// deleted records).
    pub fn restore(&self, stream: &str, index: u64) -> bool {
        let sim = self.sim();
        sim.stream_index(stream).is_some_and(|s| sim.mutate_noted(s, index, |d| d.restore(index, Utc::now())))
    }

    /// The record exactly as the API returns it with every field requested
    /// (`None` if deleted or out of range).
    pub fn expected_record(&self, stream: &str, index: u64) -> Option<Value> {
        let sim = self.sim();
        sim.record(sim.stream_index(stream)?, index)
    }

    /// The record's last-modified time (the incremental cursor field).
    pub fn updated_at(&self, stream: &str, index: u64) -> Option<DateTime<Utc>> {
        let sim = self.sim();
        sim.meta(sim.stream_index(stream)?, index).map(|m| m.updated)
    }

    /// The parent index (channel, project) of record `index` of a child
    /// stream; `None` for other streams or a record that does not exist.
    pub fn parent_of(&self, stream: &str, index: u64) -> Option<u64> {
        let sim = self.sim();
        sim.meta(sim.stream_index(stream)?, index)?.partition
    }

    /// Whether `stream` is a child stream (messages per channel, issues per
    /// project).
    pub fn is_child_stream(&self, stream: &str) -> bool {
        let sim = self.sim();
        sim.stream_index(stream)
            .and_then(|s| sim.spec.streams.get(s))
            .is_some_and(|s| matches!(s.kind, StreamKind::Child | StreamKind::ChildOf(_)))
    }

    /// Every write request that reached the API (create, update, comment, post), in
    /// order, applied or refused (a request the fault injection throttled never does).
    pub fn writes_received(&self) -> Vec<WriteReceived> {
        self.sim().writes_received()
    }

    /// From now on, applies each write but withholds its answer as `fault` says
    /// (`None`: answer normally again).
    pub fn set_write_fault(&self, fault: Option<AmbiguousWrite>) {
        self.sim().set_write_fault(fault);
    }

    /// Replaces the faults (counters keep running).
    pub fn set_faults(&self, faults: Faults) {
        self.sim().set_faults(faults);
    }

    /// Invalidates every token, key and grant: data calls get the provider's
    /// auth error and refreshes get `invalid_grant`.
    pub fn revoke(&self) {
        core::lock(&self.sim().auth).revoke_all();
    }

    /// Expires every server-side sync state issued so far (Graph delta links): using one
    /// gets the provider's "start over" answer.
    pub fn expire_sync_states(&self) {
        self.sim().expire_sync_states();
    }

    /// Makes every access or session token issued so far expired.
    pub fn expire_access_tokens(&self) {
        core::lock(&self.sim().auth).expire_all();
    }

    /// The credential field tributary reads this provider's webhook secret from
    /// (HubSpot `client_secret`, Slack `signing_secret`, Jira `webhook_secret`) and the
    /// simulator's value for it; `None` for providers whose simulator sends no webhooks.
    /// HubSpot's is the app's client secret, already in [`credentials`](Self::credentials).
    pub fn webhook_secret(&self) -> Option<(&'static str, String)> {
        webhooks::secret(self.sim())
    }

    /// [`credentials`](Self::credentials) with the webhook secret added under its field
    /// (unchanged for providers without webhooks).
    pub fn credentials_with_webhook_secret(&self) -> Value {
        let mut creds = self.credentials();
        if let (Some((field, secret)), Value::Object(map)) = (self.webhook_secret(), &mut creds) {
            map.insert(field.to_owned(), Value::String(secret));
        }
        creds
    }

    /// Sets (or with `None` clears) where webhooks go; may change at any time.
    pub fn set_webhook_target(&self, target: Option<WebhookTarget>) {
        self.inner.notifier.set_target(target);
    }

    /// The current webhook target.
    pub fn webhook_target(&self) -> Option<WebhookTarget> {
        self.inner.notifier.target()
    }

    /// Changes record `index` of `stream` (a new revision updated now, as
    /// [`modify`](Self::modify)), then posts the provider's signed webhook about it to the
    /// target: HubSpot `{contact,company,deal}.propertyChange`, Slack `message`, Jira
    /// `jira:issue_updated`. An error if the provider announces no changes of `stream`,
    /// no target is set (nothing is changed then), the record does not exist, or the
    /// target does not answer 2xx (the change stays).
    pub async fn change_and_notify(&self, stream: &str, index: u64) -> Result<WebhookSent, WebhookError> {
        webhooks::change_and_notify(self.sim(), &self.inner.notifier, stream, index).await
    }

    /// The stream [`change_and_notify`](Self::change_and_notify) changes by default:
    /// HubSpot `contacts`, Slack `messages`, Jira `issues`; `None` for the others.
    pub fn webhook_stream(&self) -> Option<&'static str> {
        match self.provider() {
            Provider::HubSpot => Some("contacts"),
            Provider::Slack => Some("messages"),
            Provider::Jira => Some("issues"),
            _ => None,
        }
    }

    /// The change feed's current position (Google Drive's `startPageToken`): changes
    /// made from now on are listed from it.
    pub fn change_token(&self) -> String {
        self.sim().journal_head().to_string()
    }

    /// Forgets every change made so far, as a provider that keeps changes for a while
    /// does: change-feed positions issued before now are refused from now on.
    pub fn expire_change_tokens(&self) {
        self.sim().expire_journal();
    }

    /// Stops the server (also happens when the last handle drops).
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }
}

/// Webhooks standalone simulators send ([`serve`]): every `every`, the next simulator
/// that has webhooks (HubSpot, Slack, Jira) changes a record and posts its event to `url`
/// with `{provider}` replaced by its id, signed with its own secret (printed at start).
#[derive(Debug, Clone)]
pub struct ServeWebhooks {
    /// `http://127.0.0.1:9187/webhooks/acme/{provider}`.
    pub url: String,
    pub every: Duration,
}

/// Runs one simulator per config until Ctrl-C, printing each base URL, API
/// base and credentials. With `port`, the simulators listen on `port`,
/// `port + 1`, … in order; otherwise on free ports. With `webhooks`, the
/// simulators that have webhooks send them (see [`ServeWebhooks`]).
pub async fn serve(configs: Vec<SimConfig>, port: Option<u16>, webhooks: Option<ServeWebhooks>) -> std::io::Result<()> {
    let mut handles = Vec::with_capacity(configs.len());
    for (i, config) in configs.into_iter().enumerate() {
        let p = match port {
            Some(p) => u16::try_from(usize::from(p) + i)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "port out of range"))?,
            None => 0,
        };
        let records = config.records;
        let handle = start_on(config, SocketAddr::from(([127, 0, 0, 1], p))).await?;
        println!(
            "{provider}: {base} (api {api}, {records} records per stream)",
            provider = handle.provider(),
            base = handle.base_url(),
            api = handle.api_base(),
        );
        if let Some(token_url) = handle.token_url() {
            println!("  token url:   {token_url}");
        }
        println!("  credentials: {}", handle.credentials());
        if let Some(oauth) = handle.oauth_credentials().filter(|_| handle.provider() == Provider::Jira) {
            println!("  oauth:       {oauth}");
        }
        if let Some(app) = handle.app_credentials() {
            // A key made for this run only, as GitHub hands an app its private key.
            println!("  app:         {app}");
        }
        if let (Some(w), Some((field, secret))) = (&webhooks, handle.webhook_secret()) {
            let url = w.url.replace("{provider}", handle.provider().id());
            println!("  webhooks:    {url} (signed with the credential `{field}` = {secret})");
            handle.set_webhook_target(Some(WebhookTarget::new(url, secret)));
        }
        handles.push(handle);
    }
    let senders: Vec<SimHandle> = handles.iter().filter(|h| h.webhook_target().is_some()).cloned().collect();
    let every = webhooks.map(|w| w.every);
    let sending = tokio::spawn(async move {
        if let Some(every) = every
            && !senders.is_empty()
        {
            send_webhooks(senders, every).await;
        }
    });
    println!("simulators running; press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    sending.abort();
    for handle in &handles {
        handle.shutdown();
    }
    Ok(())
}

/// Every `every`, the next of `sims` changes a record of its webhook stream and posts
/// the event; one line per webhook.
async fn send_webhooks(sims: Vec<SimHandle>, every: Duration) {
    let mut index = 0u64;
    for turn in 0usize.. {
        tokio::time::sleep(every).await;
        let sim = &sims[turn % sims.len()];
        let Some(stream) = sim.webhook_stream() else {
            continue;
        };
        index = (index * 7919 + 13) % sim.record_count(stream).max(1);
        match sim.change_and_notify(stream, index).await {
            Ok(sent) => println!(
                "{}: {} {} {} (delivery {}) → {}",
                sent.provider, sent.event_type, sent.stream, sent.object_id, sent.delivery_id, sent.status
            ),
            Err(e) => eprintln!("{}: {e}", sim.provider()),
        }
    }
}
