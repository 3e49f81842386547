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
mod jwt;
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
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::exchange::refusal;
    use super::*;
    use crate::config::AuthSpec;

    fn spec(toml_text: &str) -> AuthSpec {
        toml::from_str(toml_text).unwrap()
    }

    fn credentials(json: serde_json::Value) -> Credentials {
        Credentials::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn short_lived_tokens_refresh_a_quarter_of_their_life_early_long_lived_ones_a_margin_early() {
        let margin = DEFAULT_REFRESH_MARGIN;
        let t = Token::new("a".into(), Some(Duration::from_secs(2)), BTreeMap::new());
        let at = |ms: i64| t.obtained_at + chrono::Duration::milliseconds(ms);
        assert!(t.usable(at(1_400), margin));
        assert!(!t.usable(at(1_600), margin), "within the last quarter of a 2 s life");
        let t = Token::new("a".into(), Some(Duration::from_secs(3_600)), BTreeMap::new());
        let at = |s: i64| t.obtained_at + chrono::Duration::seconds(s);
        assert!(t.usable(at(3_530), margin));
        assert!(!t.usable(at(3_545), margin), "within the last minute");
        let forever = Token::new("a".into(), None, BTreeMap::new());
        assert!(forever.usable(forever.obtained_at + chrono::Duration::days(365), margin));
    }

    #[test]
    fn tokens_round_trip_through_their_sealed_form_without_showing_in_debug() {
        let provided = BTreeMap::from([("instance_url".to_owned(), "https://x.my.salesforce.com".to_owned())]);
        let t = Token::new("s3cret-token".into(), Some(Duration::from_secs(60)), provided.clone());
        let back = Token::from_json(&t.to_json(), 7, 3).unwrap();
        assert_eq!((back.serial, back.version, &back.provided, back.expires_at), (7, 3, &provided, t.expires_at));
        assert_eq!(back.access.expose_secret(), "s3cret-token");
        assert!(!format!("{back:?}").contains("s3cret"));
        assert!(Token::from_json(b"{}", 1, 1).is_err());
    }

    #[test]
    fn refusals_are_permanent_unless_the_endpoint_is_only_unavailable() {
        let permanent = |e: HttpError| matches!(e, HttpError::Token { permanent: true, .. });
        let grant = br#"{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}"#;
        let e = refusal(400, grant);
        assert!(e.to_string().contains("invalid_grant (Unknown or invalid refresh token.)"), "{e}");
        assert!(permanent(e));
        assert!(permanent(refusal(403, grant)), "Jira answers reuse with 403");
        assert!(permanent(refusal(200, br#"{"ok":false,"error":"invalid_grant"}"#)), "Slack refuses in a 200");
        assert!(!permanent(refusal(200, br#"{"ok":false,"error":"ratelimited"}"#)));
        assert!(!permanent(refusal(400, br#"{"error":"temporarily_unavailable"}"#)));
        assert!(!permanent(refusal(503, b"")));
        assert!(!permanent(refusal(429, grant)));
        assert!(!permanent(refusal(404, b"not here")));
        assert!(refusal(401, br#"{"Message":"Authorization has been denied"}"#).to_string().contains("denied"));
    }

    #[test]
    fn standard_form_grants_use_oauth2_and_the_others_the_manifest_exchange() {
        let standard = [
            "kind = \"oauth2_refresh_token\"\ntoken_url = \"{base_url}/oauth.v2.access\"",
            "kind = \"oauth2_refresh_token\"\ntoken_url = \"{login_url}/t\"\nprovides = [\"instance_url\"]",
            "kind = \"oauth2_client_credentials\"\ntoken_url = \"{auth_url}/t\"\ntoken_params = { scope = \"bud.api\" }",
        ];
        for s in standard {
            assert!(oauth::is_standard(&spec(s)), "{s}");
        }
        let custom = [
            "kind = \"oauth2_refresh_token\"\ntoken_url = \"https://auth/t\"\ntoken_body = \"json\"",
            "kind = \"oauth2_refresh_token\"\ntoken_url = \"https://auth/t\"\ntoken_path = \"/data/token\"",
            "kind = \"session_token\"\ntoken_url = \"{base_url}/Authentication\"\ntoken_path = \"\"",
            "kind = \"api_key\"",
        ];
        for s in custom {
            assert!(!oauth::is_standard(&spec(s)), "{s}");
        }
    }

    /// Without a store the session keeps credentials and token in memory: one token call,
    /// the rotated refresh token used for the next one, a refusal remembered.
    #[tokio::test]
    async fn in_memory_sessions_store_rotated_refresh_tokens_and_remember_refusals() {
        let server = MockServer::start().await;
        let token = |access: &str, refresh: &str| {
            ResponseTemplate::new(200).set_body_json(
                json!({ "access_token": access, "refresh_token": refresh, "expires_in": 3600, "token_type": "bearer" }),
            )
        };
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains("refresh_token=rt1"))
            .respond_with(token("at1", "rt2"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains("refresh_token=rt2"))
            .respond_with(token("at2", "rt3"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains("refresh_token=rt3"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid_grant" })))
            .expect(1)
            .mount(&server)
            .await;
        let spec = spec(&format!("kind = \"oauth2_refresh_token\"\ntoken_url = \"{}/token\"", server.uri()));
        let mut auth =
            AuthState::new(spec, credentials(json!({"client_id": "c", "client_secret": "s", "refresh_token": "rt1"})));
        let (client, _) = crate::http::client(&crate::http::RetryPolicy::default()).unwrap();
        let vars = Vars::default();
        auth.ensure(&client, &vars, None).await.unwrap();
        auth.ensure(&client, &vars, None).await.unwrap();
        assert_eq!(auth.refreshes, 1, "the token is kept");
        let value = |auth: &AuthState| {
            let req = auth.apply(client.get("http://localhost/x"), &vars).unwrap().build().unwrap();
            req.headers()["authorization"].to_str().unwrap().to_owned()
        };
        assert_eq!(value(&auth), "Bearer at1");
        auth.invalidate();
        auth.ensure(&client, &vars, None).await.unwrap();
        assert_eq!(value(&auth), "Bearer at2");
        assert_eq!(auth.credentials().and_then(|c| c.get("refresh_token")).map(|s| s.expose_secret()), Some("rt3"));
        auth.invalidate();
        let refused = auth.ensure(&client, &vars, None).await.unwrap_err();
        assert!(refused.needs_reauth() && refused.to_string().contains("invalid_grant"), "{refused}");
        auth.invalidate();
        let again = auth.ensure(&client, &vars, None).await.unwrap_err();
        assert!(again.needs_reauth(), "{again}");
        server.verify().await;
    }
}
