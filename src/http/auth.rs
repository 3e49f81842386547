//! Provider authentication as the manifest declares it: static keys, Basic, bearer
//! tokens, OAuth2 refresh-token and client-credentials grants, and session-token
//! exchanges.
//!
//! Token-based kinds share one access token per connection: every run (and every
//! replica) first uses the stored, unexpired token and refreshes it only shortly before
//! it expires or when a response says it did. Refreshes are serialised per connection —
//! in the process by an async mutex from the [`AuthRegistry`], across replicas by a
//! refresh lease in the store — and the loser of a race uses the winner's token instead
//! of spending the refresh token again. A rotated refresh token is stored (sealed)
//! together with the new access token, by a compare-and-swap on the credentials
//! version, before that access token is used. A refused grant (`invalid_grant`) is
//! recorded so that nobody spends those credentials again.
//!
//! The store side is the [`CredentialSink`]; without one ([`AuthState::new`]) the
//! credentials and token live in memory for the session only.

mod exchange;
mod memory;
mod oauth;
mod shared;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use self::memory::MemorySink;
pub use self::shared::{AuthRegistry, ConnectionAuth};
use super::HttpError;
use crate::config::{AuthKind, AuthSpec};
use crate::http::template::Vars;
use crate::secrets::Credentials;
use crate::telemetry::TokenEvent;

/// By default a token is refreshed this long before its stated expiry (at most a
/// quarter of its lifetime before, for short-lived tokens).
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A boxed future of a credential store operation.
pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, HttpError>> + Send + 'a>>;

/// Where a connection's credentials and shared token live (the store, sealed).
pub trait CredentialSink: Send + Sync {
    /// The current credentials, their version and the stored token.
    fn load(&self) -> SinkFuture<'_, Stored>;

    /// Takes the connection's refresh lease for `owner` (for `lease`) if nobody else
    /// holds it, and returns the state then; `None` while someone else holds it.
    fn lock<'a>(&'a self, owner: &'a str, lease: Duration) -> SinkFuture<'a, Option<Stored>>;

    /// Stores `token` (obtained with credentials `version`) and `rotated` credentials,
    /// and releases `owner`'s lease, only if the credentials are still at `version` and
    /// `owner` still holds the lease. Returns the new (credentials version, token
    /// serial); `None` if the swap lost and nothing was written.
    fn save<'a>(
        &'a self,
        owner: &'a str,
        version: i64,
        rotated: Option<&'a Credentials>,
        token: &'a Token,
    ) -> SinkFuture<'a, Option<(i64, i64)>>;

    /// Releases `owner`'s lease.
    fn unlock<'a>(&'a self, owner: &'a str) -> SinkFuture<'a, ()>;

    /// The provider refused the grant of credentials `version`: never spend it again
    /// (until new credentials are stored); releases any lease.
    fn refuse<'a>(&'a self, version: i64, reason: &'a str) -> SinkFuture<'a, ()>;

    /// Reports what happened to a token (logs and metrics).
    fn event(&self, _event: &TokenEvent<'_>) {}
}

/// A connection's credentials and stored token, as a [`CredentialSink`] holds them.
#[derive(Clone)]
pub struct Stored {
    pub credentials: Arc<Credentials>,
    pub version: i64,
    /// The stored token, if it was obtained with these credentials.
    pub token: Option<Token>,
    /// The serial of the latest token stored (see [`Token::serial`]).
    pub serial: i64,
    /// The provider refused these credentials' grant.
    pub refused: bool,
}

/// An access token shared by a connection's runs.
#[derive(Clone)]
pub struct Token {
    access: SecretString,
    pub expires_at: Option<DateTime<Utc>>,
    pub obtained_at: DateTime<Utc>,
    /// Variables the token response supplied (Salesforce `instance_url`).
    pub provided: BTreeMap<String, String>,
    /// Which stored token this is: grows with every token stored for the connection.
    pub serial: i64,
    /// The credentials version it was obtained with.
    pub version: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .field("serial", &self.serial)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The sealed form of a token.
#[derive(Serialize, Deserialize)]
struct TokenRecord {
    access_token: String,
    expires_at: Option<DateTime<Utc>>,
    obtained_at: DateTime<Utc>,
    #[serde(default)]
    provided: BTreeMap<String, String>,
}

impl Token {
    pub fn new(access: String, lifetime: Option<Duration>, provided: BTreeMap<String, String>) -> Self {
        let obtained_at = Utc::now();
        let expires_at = lifetime.and_then(|l| chrono::Duration::from_std(l).ok()).map(|l| obtained_at + l);
        Self { access: SecretString::from(access), expires_at, obtained_at, provided, serial: 0, version: 0 }
    }

    /// The JSON to seal; wiped on drop.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let record = TokenRecord {
            access_token: self.access.expose_secret().to_owned(),
            expires_at: self.expires_at,
            obtained_at: self.obtained_at,
            provided: self.provided.clone(),
        };
        Zeroizing::new(serde_json::to_vec(&record).unwrap_or_default())
    }

    /// A token from its unsealed JSON.
    pub fn from_json(bytes: &[u8], serial: i64, version: i64) -> Result<Self, String> {
        let r: TokenRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("the stored token is unreadable: {e}"))?;
        let TokenRecord { access_token, expires_at, obtained_at, provided } = r;
        Ok(Self { access: SecretString::from(access_token), expires_at, obtained_at, provided, serial, version })
    }

    /// Whether the token can still be sent: it does not expire, or does so later than
    /// `margin` from `now` (a quarter of its lifetime at most, for short-lived tokens).
    pub fn usable(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        let Some(at) = self.expires_at else {
            return true;
        };
        let lifetime = (at - self.obtained_at).to_std().unwrap_or_default();
        let margin = chrono::Duration::from_std(margin.min(lifetime / 4)).unwrap_or_default();
        now + margin < at
    }
}

/// One connection's authentication during a run.
pub struct AuthState {
    spec: AuthSpec,
    conn: Arc<ConnectionAuth>,
    /// The credentials and token when there is no store ([`AuthState::new`]).
    memory: Option<MemorySink>,
    credentials: Option<Arc<Credentials>>,
    token: Option<Token>,
    /// The serial of a token a response rejected: not to be used again.
    rejected: Option<i64>,
    /// Refresh this long before expiry (see [`Token::usable`]).
    pub margin: Duration,
    /// Variables the token response supplied (`instance_url`).
    pub provided: BTreeMap<String, String>,
    /// Tokens this run obtained from the provider itself.
    pub refreshes: u64,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState")
            .field("kind", &self.spec.kind)
            .field("credentials", &self.credentials)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl AuthState {
    /// Authentication with `credentials` held in memory (no store, nothing shared).
    pub fn new(spec: AuthSpec, credentials: Credentials) -> Self {
        let mut state = Self::shared(spec, Arc::new(ConnectionAuth::default()));
        state.memory = Some(MemorySink::new(credentials));
        state
    }

    /// Authentication through the connection's shared state (from an
    /// [`AuthRegistry`]); credentials and tokens come from the sink given to
    /// [`AuthState::ensure`].
    pub fn shared(spec: AuthSpec, conn: Arc<ConnectionAuth>) -> Self {
        Self {
            spec,
            conn,
            memory: None,
            credentials: None,
            token: None,
            rejected: None,
            margin: DEFAULT_REFRESH_MARGIN,
            provided: BTreeMap::new(),
            refreshes: 0,
        }
    }

    /// Credentials (and the access token) as template variables.
    fn credential_vars<'a>(&self, base: &Vars<'a>) -> Vars<'a> {
        let mut vars = base.clone();
        if let Some(credentials) = &self.credentials {
            for name in credentials.names() {
                if let Some(v) = credentials.get(name) {
                    vars.set(name, v.expose_secret());
                }
            }
        }
        if let Some(t) = &self.token {
            vars.set("access_token", t.access.expose_secret());
        }
        vars
    }

    /// Whether a new token can be obtained (token-based kinds).
    pub fn can_refresh(&self) -> bool {
        self.spec.needs_token()
    }

    /// A response said the token is no longer valid: the next [`AuthState::ensure`]
    /// gets another (a newer stored one, or a refresh).
    pub fn invalidate(&mut self) {
        if let Some(t) = self.token.take() {
            self.rejected = Some(t.serial);
        }
    }

    /// Makes sure a request can be authenticated: loads the credentials, and for
    /// token-based kinds a usable token (the connection's shared one, or a new one).
    pub async fn ensure(
        &mut self,
        client: &reqwest::Client,
        base: &Vars<'_>,
        sink: Option<&dyn CredentialSink>,
    ) -> Result<(), HttpError> {
        let sink: &dyn CredentialSink = match (&self.memory, sink) {
            (Some(memory), _) => memory,
            (None, Some(sink)) => sink,
            (None, None) => return Err(HttpError::Credentials("no credential store is configured".into())),
        };
        if !self.spec.needs_token() {
            if self.credentials.is_none() {
                self.credentials = Some(sink.load().await?.credentials);
            }
            return Ok(());
        }
        if let Some(t) = &self.token {
            if let Some(message) = self.conn.refused(t.version) {
                self.token = None;
                return Err(HttpError::Token { message, permanent: true });
            }
            if t.usable(Utc::now(), self.margin) {
                return Ok(());
            }
        }
        let got = self.conn.obtain(&self.spec, client, base, sink, self.rejected, self.margin).await?;
        self.refreshes += u64::from(got.refreshed);
        self.provided = got.token.provided.clone();
        self.credentials = Some(got.credentials);
        self.token = Some(got.token);
        self.rejected = None;
        Ok(())
    }

    /// Adds the credential to a request.
    pub fn apply(&self, mut req: RequestBuilder, base: &Vars<'_>) -> Result<RequestBuilder, HttpError> {
        let vars = self.credential_vars(base);
        if self.spec.kind == AuthKind::Basic {
            let user = vars.render(self.spec.username.as_deref().unwrap_or("{username}"))?;
            let pass = vars.render(self.spec.password.as_deref().unwrap_or("{password}"))?;
            return Ok(req.basic_auth(user, Some(pass)));
        }
        let default_value = match self.spec.kind {
            AuthKind::ApiKey => "{api_key}",
            AuthKind::Bearer => "Bearer {token}",
            AuthKind::SessionToken => "{access_token}",
            _ => "Bearer {access_token}",
        };
        let value = vars.render(self.spec.value.as_deref().unwrap_or(default_value))?;
        if let Some(param) = &self.spec.query {
            req = req.query(&[(param.as_str(), value.as_str())]);
        } else {
            let header = self.spec.header.as_deref().unwrap_or("Authorization");
            let mut hv = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                HttpError::Credentials("a credential contains characters not allowed in a header".into())
            })?;
            hv.set_sensitive(true);
            req = req.header(header, hv);
        }
        Ok(req)
    }

    /// The credentials loaded so far (none before the first [`AuthState::ensure`]).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_deref()
    }

    /// The token in use, if any.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }
}

#[cfg(test)]
mod tests;
