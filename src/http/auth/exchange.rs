//! Obtaining a token from the provider. Standard RFC 6749 form-encoded grants go
//! through the `oauth2` crate ([`super::oauth`]); the rest (Jira's JSON body, OneFile's
//! raw session token, custom response paths or headers) through the manifest-driven
//! exchange here. Both classify a refusal the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;

use super::oauth;
use crate::config::{AuthKind, AuthSpec, BodyFormat};
use crate::http::HttpError;
use crate::http::template::Vars;
use crate::secrets::Credentials;

/// What a token call returned.
pub(super) struct Fresh {
    pub access: String,
    pub lifetime: Option<Duration>,
    /// A refresh token in the response (the same one unless the provider rotates).
    pub refresh_token: Option<String>,
    pub provided: BTreeMap<String, String>,
}

/// A `jwt_exchange` JWT's lifetime unless the manifest says otherwise: nine minutes, under
/// GitHub's ten-minute limit with room for clock drift.
const DEFAULT_JWT_TTL_SECS: u64 = 540;

/// OAuth error codes that mean "try again later", not "this grant is dead".
const TRANSIENT_CODES: [&str; 4] = ["temporarily_unavailable", "server_error", "ratelimited", "slow_down"];

/// Exchanges `credentials` for a token as the manifest says.
pub(super) async fn exchange(
    spec: &AuthSpec,
    client: &reqwest::Client,
    base: &Vars<'_>,
    credentials: &Credentials,
) -> Result<Fresh, HttpError> {
    let mut vars = base.clone();
    for name in credentials.names() {
        if let Some(v) = credentials.get(name) {
            vars.set(name, v.expose_secret());
        }
    }
    if oauth::is_standard(spec) {
        oauth::exchange(spec, client, &vars, credentials).await
    } else {
        generic(spec, client, &vars, credentials).await
    }
}

/// The value of credential `name`.
pub(super) fn credential(credentials: &Credentials, name: &str) -> Result<String, HttpError> {
    credentials
        .get(name)
        .map(|s| s.expose_secret().to_owned())
        .ok_or_else(|| HttpError::Credentials(format!("the `{name}` credential is missing")))
}

/// A token endpoint's non-success answer: permanent (the grant or client is refused:
/// the connection needs new credentials) unless the status or error code says the
/// endpoint is only unavailable for now.
pub(super) fn refusal(status: u16, body: &[u8]) -> HttpError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str);
    let code = field("error");
    let reason = match (code, field("error_description")) {
        (Some(code), Some(description)) if !description.is_empty() => format!("{code} ({description})"),
        (Some(code), _) => code.to_owned(),
        (None, _) => {
            field("Message").or_else(|| field("message")).map_or_else(|| format!("HTTP {status}"), str::to_owned)
        }
    };
    let slack_refusal = json.as_ref().and_then(|j| j.get("ok")) == Some(&Value::Bool(false));
    let transient = status == 429 || status >= 500 || code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
    let permanent = !transient && (matches!(status, 400 | 401 | 403) || slack_refusal);
    HttpError::Token { message: format!("the token endpoint refused: {reason}"), permanent }
}

/// Reads the `provides` variables from a token response.
pub(super) fn provided(spec: &AuthSpec, json: Option<&Value>) -> Result<BTreeMap<String, String>, HttpError> {
    let mut out = BTreeMap::new();
    for name in &spec.provides {
        let value = json.and_then(|j| j.get(name)).and_then(Value::as_str).ok_or_else(|| HttpError::Token {
            message: format!("the token response has no `{name}`"),
            permanent: false,
        })?;
        out.insert(name.clone(), value.trim_end_matches('/').to_owned());
    }
    Ok(out)
}

/// The manifest-driven exchange: parameters, headers, body format and response paths
/// as declared.
async fn generic(
    spec: &AuthSpec,
    client: &reqwest::Client,
    vars: &Vars<'_>,
    credentials: &Credentials,
) -> Result<Fresh, HttpError> {
    let url = vars.render(spec.token_url.as_deref().unwrap_or_default())?;
    let mut params: Vec<(String, String)> = Vec::new();
    let cred = |name: &str| credential(credentials, name);
    match spec.kind {
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
    let jwt = if spec.kind == AuthKind::JwtExchange {
        let issuer = vars.render(spec.jwt_issuer.as_deref().unwrap_or("{app_id}"))?;
        let key = cred(spec.jwt_key.as_deref().unwrap_or("private_key"))?;
        let ttl = spec.jwt_ttl_secs.unwrap_or(DEFAULT_JWT_TTL_SECS);
        Some(super::jwt::sign(&key, &issuer, chrono::Utc::now().timestamp(), ttl)?)
    } else {
        None
    };
    for (k, v) in &spec.token_params {
        params.push((k.clone(), vars.render(v)?));
    }
    let mut req = client.post(&url);
    for (k, v) in &spec.token_headers {
        req = req.header(k, vars.render(v)?);
    }
    if let Some(jwt) = &jwt {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", jwt.as_str()))
            .map_err(|_| HttpError::Credentials("the signed JWT is not a valid header value".into()))?;
        value.set_sensitive(true);
        req = req.header(reqwest::header::AUTHORIZATION, value);
    }
    let bodiless = matches!(spec.kind, AuthKind::SessionToken | AuthKind::JwtExchange);
    if !bodiless || !params.is_empty() {
        req = match spec.token_body.unwrap_or(BodyFormat::Form) {
            BodyFormat::Form => req.form(&params),
            BodyFormat::Json => req.json(&params.iter().cloned().collect::<BTreeMap<_, _>>()),
        };
    }
    let resp = req.send().await.map_err(|e| HttpError::Token {
        message: format!("token request failed: {}", crate::http::describe_transport(e)),
        permanent: false,
    })?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| HttpError::Token {
        message: format!("token response unreadable: {}", crate::http::describe_transport(e)),
        permanent: false,
    })?;
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    if !(200..300).contains(&status) || json.as_ref().and_then(|j| j.get("ok")) == Some(&Value::Bool(false)) {
        return Err(refusal(status, &bytes));
    }
    let default_path = if spec.kind == AuthKind::JwtExchange { "/token" } else { "/access_token" };
    let token_path = spec.token_path.as_deref().unwrap_or(default_path);
    let access = if token_path.is_empty() {
        match &json {
            Some(Value::String(s)) => s.clone(),
            _ => String::from_utf8_lossy(&bytes).trim().to_owned(),
        }
    } else {
        json.as_ref().and_then(|j| j.pointer(token_path)).and_then(Value::as_str).map(str::to_owned).ok_or_else(
            || HttpError::Token { message: format!("the token response has no `{token_path}`"), permanent: false },
        )?
    };
    if access.is_empty() {
        return Err(HttpError::Token { message: "the token response is empty".into(), permanent: false });
    }
    let expires_at_path =
        spec.expires_at_path.as_deref().or((spec.kind == AuthKind::JwtExchange).then_some("/expires_at"));
    let until_expiry = expires_at_path
        .and_then(|p| json.as_ref()?.pointer(p)?.as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|at| (at.timestamp() - chrono::Utc::now().timestamp()).max(0).cast_unsigned());
    let ttl = until_expiry
        .or_else(|| {
            spec.expires_in_path.as_deref().or(Some("/expires_in")).and_then(|p| json.as_ref()?.pointer(p)?.as_u64())
        })
        .or(spec.token_ttl_secs);
    let refresh_token = (spec.kind == AuthKind::Oauth2RefreshToken)
        .then(|| {
            let path = spec.refresh_token_path.as_deref().unwrap_or("/refresh_token");
            json.as_ref().and_then(|j| j.pointer(path)).and_then(Value::as_str).map(str::to_owned)
        })
        .flatten();
    Ok(Fresh {
        access,
        lifetime: ttl.map(Duration::from_secs),
        refresh_token,
        provided: provided(spec, json.as_ref())?,
    })
}
