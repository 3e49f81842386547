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
