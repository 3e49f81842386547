//! Provider authentication as the manifest declares it: static keys, Basic, bearer
//! tokens, OAuth2 refresh-token and client-credentials grants, and session-token
//! exchanges. Tokens are obtained when first needed and again when they expire or a
//! response says they did. A rotated refresh token is handed to the credential sink
//! (which stores it, encrypted) before the new access token is used.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::HttpError;
use crate::config::{AuthKind, AuthSpec, BodyFormat};
use crate::engine::template::Vars;
use crate::secrets::Credentials;

/// Stores credentials that changed during a run (a rotated refresh token).
pub trait CredentialSink: Send + Sync {
    fn rotated<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Refresh this long before the stated expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

struct Token {
    access: SecretString,
    expires_at: Option<Instant>,
}

/// One connection's authentication state during a run.
pub struct AuthState {
    spec: AuthSpec,
    credentials: Credentials,
    token: Option<Token>,
    /// Variables the token response supplied (`instance_url`).
    pub provided: BTreeMap<String, String>,
    /// Tokens obtained so far.
    pub refreshes: u64,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState")
            .field("kind", &self.spec.kind)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl AuthState {
    pub fn new(spec: AuthSpec, credentials: Credentials) -> Self {
        Self { spec, credentials, token: None, provided: BTreeMap::new(), refreshes: 0 }
    }

    /// Credentials as template variables (auth templates only).
    fn credential_vars<'a>(&self, base: &Vars<'a>) -> Vars<'a> {
        let mut vars = base.clone();
        for name in self.credentials.names() {
            if let Some(v) = self.credentials.get(name) {
                vars.set(name, v.expose_secret());
            }
        }
        if let Some(t) = &self.token {
            vars.set("access_token", t.access.expose_secret());
        }
        vars
    }

    fn fresh(&self) -> bool {
        self.token.as_ref().is_some_and(|t| t.expires_at.is_none_or(|at| Instant::now() + EXPIRY_MARGIN < at))
    }

    /// Whether a new token can be obtained (token-based kinds).
    pub fn can_refresh(&self) -> bool {
        self.spec.needs_token()
    }

    /// Forgets the access token (a response said it expired).
    pub fn invalidate(&mut self) {
        self.token = None;
    }

    /// Obtains a token when the kind needs one and none is fresh.
    pub async fn ensure(
        &mut self,
        client: &reqwest::Client,
        base: &Vars<'_>,
        sink: Option<&dyn CredentialSink>,
    ) -> Result<(), HttpError> {
        if !self.spec.needs_token() || self.fresh() {
            return Ok(());
        }
        let vars = self.credential_vars(base);
        let url = vars.render(self.spec.token_url.as_deref().unwrap_or_default())?;
        let mut params: Vec<(String, String)> = Vec::new();
        let cred = |name: &str| -> Result<String, HttpError> {
            self.credentials
                .get(name)
                .map(|s| s.expose_secret().to_owned())
                .ok_or_else(|| HttpError::Credentials(format!("the `{name}` credential is missing")))
        };
        match self.spec.kind {
            AuthKind::Oauth2RefreshToken => {
                params.push(("grant_type".into(), "refresh_token".into()));
                params.push(("client_id".into(), cred("client_id")?));
                params.push(("client_secret".into(), cred("client_secret")?));
                params.push(("refresh_token".into(), cred("refresh_token")?));
            }
            AuthKind::Oauth2ClientCredentials => {
                params.push(("grant_type".into(), "client_credentials".into()));
                params.push(("client_id".into(), cred("client_id")?));
                params.push(("client_secret".into(), cred("client_secret")?));
            }
            _ => {}
        }
        for (k, v) in &self.spec.token_params {
            params.push((k.clone(), vars.render(v)?));
        }
        let mut req = client.post(&url);
        for (k, v) in &self.spec.token_headers {
            req = req.header(k, vars.render(v)?);
        }
        if self.spec.kind != AuthKind::SessionToken || !params.is_empty() {
            req = match self.spec.token_body.unwrap_or(BodyFormat::Form) {
                BodyFormat::Form => req.form(&params),
                BodyFormat::Json => req.json(&params.iter().cloned().collect::<BTreeMap<_, _>>()),
            };
        }
        let resp = req.send().await.map_err(|e| HttpError::Token {
            message: format!("token request failed: {}", e.without_url()),
            permanent: false,
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| HttpError::Token {
            message: format!("token response unreadable: {}", e.without_url()),
            permanent: false,
        })?;
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !(200..300).contains(&status) {
            let reason = json
                .as_ref()
                .and_then(|j| j.get("error").or_else(|| j.get("Message")).or_else(|| j.get("message")))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}"));
            let permanent = matches!(status, 400 | 401 | 403);
            return Err(HttpError::Token { message: format!("the token endpoint refused: {reason}"), permanent });
        }
        if let Some(Value::Bool(false)) = json.as_ref().and_then(|j| j.get("ok")) {
            let reason = json.as_ref().and_then(|j| j.get("error")).and_then(Value::as_str).unwrap_or("unknown error");
            return Err(HttpError::Token { message: format!("the token endpoint refused: {reason}"), permanent: true });
        }
        let token_path = self.spec.token_path.as_deref().unwrap_or("/access_token");
        let access = if token_path.is_empty() {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            match &json {
                Some(Value::String(s)) => s.clone(),
                _ => text,
            }
        } else {
            json.as_ref().and_then(|j| j.pointer(token_path)).and_then(Value::as_str).map(str::to_owned).ok_or_else(
                || HttpError::Token { message: format!("the token response has no `{token_path}`"), permanent: false },
            )?
        };
        if access.is_empty() {
            return Err(HttpError::Token { message: "the token response is empty".into(), permanent: false });
        }
        let ttl = self
            .spec
            .expires_in_path
            .as_deref()
            .or(Some("/expires_in"))
            .and_then(|p| json.as_ref()?.pointer(p)?.as_u64())
            .or(self.spec.token_ttl_secs);
        for name in &self.spec.provides {
            if let Some(v) = json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str) {
                self.provided.insert(name.clone(), v.trim_end_matches('/').to_owned());
            } else {
                return Err(HttpError::Token {
                    message: format!("the token response has no `{name}`"),
                    permanent: false,
                });
            }
        }
        // A rotated refresh token is stored before the new access token is used.
        if self.spec.kind == AuthKind::Oauth2RefreshToken {
            let path = self.spec.refresh_token_path.as_deref().unwrap_or("/refresh_token");
            let rotated = json.as_ref().and_then(|j| j.pointer(path)).and_then(Value::as_str);
            let current = self.credentials.get("refresh_token").map(|s| s.expose_secret().to_owned());
            if let Some(new) = rotated.filter(|n| !n.is_empty() && Some(*n) != current.as_deref()) {
                self.credentials.set("refresh_token", new);
                if let Some(sink) = sink {
                    sink.rotated(&self.credentials).await.map_err(|e| HttpError::Token {
                        message: format!("cannot store the rotated refresh token: {e}"),
                        permanent: false,
                    })?;
                }
            }
        }
        self.token = Some(Token {
            access: SecretString::from(access),
            expires_at: ttl.map(|s| Instant::now() + Duration::from_secs(s)),
        });
        self.refreshes += 1;
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

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}
