//! Standard RFC 6749 grants (refresh token, client credentials) through the `oauth2`
//! crate, on the project's reqwest 0.13 client (`oauth2` is built without its own
//! reqwest 0.12 client; [`OAuthHttp`] adapts).
//!
//! A manifest's token call is standard when it is a form-encoded OAuth2 grant whose
//! response has the standard field names: `token_body` is not `json`, and it sets no
//! `token_headers`, `token_path`, `expires_in_path` or `refresh_token_path`. Extra
//! response fields a manifest `provides` (Salesforce `instance_url`) are read from the
//! crate's extra-fields map; `token_params` are sent as extra parameters.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AccessToken, AsyncHttpClient, AuthType, Client, ClientId, ClientSecret, EndpointNotSet, EndpointSet,
    HttpClientError, HttpRequest, HttpResponse, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::exchange::{Fresh, credential, provided, refusal};
use crate::config::{AuthKind, AuthSpec, BodyFormat};
use crate::http::HttpError;
use crate::http::template::Vars;
use crate::secrets::Credentials;

/// A token response, read leniently: `token_type` may be missing (it is assumed to be
/// `Bearer`; the manifest says how the token is sent) and `expires_in` may be a numeric
/// string. Every other field is kept for `provides`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Response {
    access_token: AccessToken,
    #[serde(default = "bearer")]
    token_type: BasicTokenType,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

impl TokenResponse for Response {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

/// A client with only its token endpoint set.
type TokenClient = Client<
    BasicErrorResponse,
    Response,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Whether the manifest's token call is a standard form-encoded OAuth2 grant.
pub(super) fn is_standard(spec: &AuthSpec) -> bool {
    matches!(spec.kind, AuthKind::Oauth2RefreshToken | AuthKind::Oauth2ClientCredentials)
        && spec.token_body != Some(BodyFormat::Json)
        && spec.token_headers.is_empty()
        && spec.token_path.is_none()
        && spec.expires_in_path.is_none()
        && spec.refresh_token_path.is_none()
}

/// `oauth2`'s HTTP client on reqwest 0.13 (the token client follows no redirects). It
/// keeps the last response's status and body: the crate's errors do not carry the
/// status, which tells a refused grant from an unavailable endpoint.
struct OAuthHttp<'a> {
    client: &'a reqwest::Client,
    last: Mutex<Option<(u16, Vec<u8>)>>,
}

impl<'c> AsyncHttpClient<'c> for OAuthHttp<'_> {
    type Error = HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request: reqwest::Request = request.try_into().map_err(Box::new)?;
            let response = self.client.execute(request).await.map_err(Box::new)?;
            let status = response.status();
            let mut builder = http::Response::builder().status(status).version(response.version());
            if let Some(headers) = builder.headers_mut() {
                headers.extend(response.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let body = response.bytes().await.map_err(Box::new)?.to_vec();
            if let Ok(mut last) = self.last.lock() {
                *last = Some((status.as_u16(), body.clone()));
            }
            builder.body(body).map_err(HttpClientError::Http)
        })
    }
}

/// Runs the grant the manifest declares.
pub(super) async fn exchange(
    spec: &AuthSpec,
    client: &reqwest::Client,
    vars: &Vars<'_>,
    credentials: &Credentials,
) -> Result<Fresh, HttpError> {
    let url = vars.render(spec.token_url.as_deref().unwrap_or_default())?;
    let token_url = TokenUrl::new(url)
        .map_err(|e| HttpError::Token { message: format!("the token URL is not a URL: {e}"), permanent: false })?;
    let oauth: TokenClient = Client::new(ClientId::new(credential(credentials, "client_id")?))
        .set_client_secret(ClientSecret::new(credential(credentials, "client_secret")?))
        // Most providers (HubSpot, Salesforce, Slack) take the client in the body.
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(token_url);
    let mut extra = Vec::with_capacity(spec.token_params.len());
    for (k, v) in &spec.token_params {
        extra.push((k.clone(), vars.render(v)?));
    }
    let http = OAuthHttp { client, last: Mutex::new(None) };
    let result = if spec.kind == AuthKind::Oauth2RefreshToken {
        let refresh = RefreshToken::new(credential(credentials, "refresh_token")?);
        let request =
            extra.into_iter().fold(oauth.exchange_refresh_token(&refresh), |r, (k, v)| r.add_extra_param(k, v));
        request.request_async(&http).await
    } else {
        let request = extra.into_iter().fold(oauth.exchange_client_credentials(), |r, (k, v)| r.add_extra_param(k, v));
        request.request_async(&http).await
    };
    let last = http.last.lock().ok().and_then(|mut l| l.take());
    match result {
        Ok(response) => {
            let extra = serde_json::to_value(&response.extra).ok();
            Ok(Fresh {
                access: response.access_token().secret().clone(),
                lifetime: response.expires_in().or(spec.token_ttl_secs.map(Duration::from_secs)),
                refresh_token: response.refresh_token().map(|r| r.secret().clone()),
                provided: provided(spec, extra.as_ref())?,
            })
        }
        Err(RequestTokenError::Request(e)) => {
            let detail = match e {
                HttpClientError::Reqwest(e) => crate::http::describe_transport(*e),
                other => other.to_string(),
            };
            Err(HttpError::Token { message: format!("token request failed: {detail}"), permanent: false })
        }
        // An error response, or a body that is not a token response (Slack refuses
        // with HTTP 200 and `{"ok": false, "error": …}`).
        Err(e) => match last {
            Some((status, body)) if !(200..300).contains(&status) || looks_like_error(&body) => {
                Err(refusal(status, &body))
            }
            _ => Err(HttpError::Token { message: format!("the token response is not usable: {e}"), permanent: false }),
        },
    }
}

/// Whether a 2xx body carries an OAuth or Slack error instead of a token.
fn looks_like_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|j| j.get("error").is_some() || j.get("ok") == Some(&Value::Bool(false)))
}
