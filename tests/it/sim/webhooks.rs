//! Simulator webhooks at the wire: what each provider's event looks like and how it is
//! signed (checked here with an HMAC of the test's own), and the errors of
//! `change_and_notify`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use tributary_simulator::{Provider, SimConfig, WebhookError, WebhookTarget, start};

/// One request the receiver got.
#[derive(Clone)]
struct Got {
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    status: StatusCode,
}

async fn receive(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.lock().unwrap().push(Got { uri: uri.to_string(), headers, body });
    r.status
}

/// A receiver on loopback answering `status`; its address and what it got.
async fn receiver(status: StatusCode) -> (SocketAddr, Arc<Mutex<Vec<Got>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let app =
        axum::Router::new().fallback(axum::routing::post(receive)).with_state(Receiver { got: got.clone(), status });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

fn mac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2_11::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> &'h str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("header {name} in {h:?}"))
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn each_provider_changes_the_record_then_sends_its_signed_event() {
    let (addr, got) = receiver(StatusCode::OK).await;
    for (provider, stream, index) in
        [(Provider::HubSpot, "contacts", 3u64), (Provider::Slack, "messages", 4), (Provider::Jira, "issues", 5)]
    {
        let sim = start(SimConfig::new(provider, 20)).await.unwrap();
        let (field, secret) = sim.webhook_secret().expect("a webhook secret");
        assert_eq!(sim.credentials_with_webhook_secret()[field], secret.as_str());
        let url = format!("http://{addr}/webhooks/acme/{provider}");
        sim.set_webhook_target(Some(WebhookTarget::new(&url, &secret)));
        assert!(!format!("{:?}", sim.webhook_target()).contains(&secret), "no secret in Debug");
        let before = sim.updated_at(stream, index).unwrap();
        let sent = sim.change_and_notify(stream, index).await.expect("sent");
        assert!(sim.updated_at(stream, index).unwrap() > before, "{provider}: the record changed");
        assert_eq!(sent.status, 200);
        let req = got.lock().unwrap().pop().expect("the receiver got the webhook");
        assert_eq!(req.uri, format!("/webhooks/acme/{provider}"));
        let body: Value = serde_json::from_slice(&req.body).expect("a JSON body");
        assert_eq!(body, sent.body, "{provider}: the body reported is the body sent");
        let expected = sim.expected_record(stream, index).unwrap();
        match provider {
            Provider::HubSpot => {
                let ts = header(&req.headers, "X-HubSpot-Request-Timestamp");
                assert!((ts.parse::<i64>().unwrap() / 1000 - now_s()).abs() < 60, "milliseconds: {ts}");
                let want = B64.encode(mac(&secret, &[b"POST", url.as_bytes(), &req.body, ts.as_bytes()]));
                assert_eq!(header(&req.headers, "X-HubSpot-Signature-v3"), want);
                let events = body.as_array().expect("an array of events");
                assert_eq!(events.len(), 2);
                for e in events {
                    assert_eq!(e["subscriptionType"], "contact.propertyChange");
                    assert_eq!(e["objectId"].to_string(), expected["id"].as_str().unwrap());
                    let property = e["propertyName"].as_str().unwrap();
                    assert_eq!(e["propertyValue"], expected["properties"][property], "{property} is the new value");
                    for key in ["eventId", "subscriptionId", "portalId", "occurredAt"] {
                        assert!(e[key].is_u64(), "{key} in {e}");
                    }
                }
                assert_ne!(events[0]["eventId"], events[1]["eventId"]);
            }
            Provider::Slack => {
                let ts = header(&req.headers, "X-Slack-Request-Timestamp");
                assert!((ts.parse::<i64>().unwrap() - now_s()).abs() < 60, "seconds: {ts}");
                let want = format!("v0={}", hex::encode(mac(&secret, &[b"v0:", ts.as_bytes(), b":", &req.body])));
                assert_eq!(header(&req.headers, "X-Slack-Signature"), want);
                assert_eq!(body["type"], "event_callback");
                assert!(body["event_id"].as_str().is_some_and(|id| id.starts_with("Ev")));
                assert_eq!(body["event"]["type"], "message");
                assert_eq!(body["event"]["ts"], expected["ts"]);
                assert_eq!(body["event"]["text"], expected["text"]);
                let channel = sim.expected_record("channels", sim.parent_of(stream, index).unwrap()).unwrap();
                assert_eq!(body["event"]["channel"], channel["id"]);
            }
            _ => {
                let want = format!("sha256={}", hex::encode(mac(&secret, &[&req.body])));
                assert_eq!(header(&req.headers, "X-Hub-Signature"), want);
                assert_eq!(header(&req.headers, "X-Atlassian-Webhook-Identifier"), sent.delivery_id);
                assert_eq!(body["webhookEvent"], "jira:issue_updated");
                assert!(body["timestamp"].is_i64());
                assert_eq!(body["issue"], expected);
            }
        }
    }
}

#[tokio::test]
async fn change_and_notify_says_what_went_wrong() {
    let sim = start(SimConfig::new(Provider::Slack, 10)).await.unwrap();
    let before = sim.updated_at("messages", 1).unwrap();
    assert_eq!(sim.change_and_notify("messages", 1).await.unwrap_err(), WebhookError::NoTarget(Provider::Slack));
    assert_eq!(sim.updated_at("messages", 1), Some(before), "nothing changes without a target");
    let (addr, got) = receiver(StatusCode::UNAUTHORIZED).await;
    let url = format!("http://{addr}/webhooks/acme/slack");
    sim.set_webhook_target(Some(WebhookTarget::new(&url, "wrong")));
    assert!(matches!(
        sim.change_and_notify("channels", 0).await,
        Err(WebhookError::Unsupported(Provider::Slack, s)) if s == "channels"
    ));
    assert_eq!(sim.change_and_notify("messages", 99).await.unwrap_err(), WebhookError::NoRecord("messages".into(), 99));
    assert_eq!(sim.change_and_notify("messages", 1).await.unwrap_err(), WebhookError::Refused { url, status: 401 });
    assert!(sim.updated_at("messages", 1).unwrap() > before, "a refused webhook's change stays");
    assert_eq!(got.lock().unwrap().len(), 1);
    sim.set_webhook_target(Some(WebhookTarget::new("ftp://x/y", "s")));
    assert!(matches!(sim.change_and_notify("messages", 2).await, Err(WebhookError::BadUrl(_))));
    sim.set_webhook_target(None);
    assert!(sim.webhook_target().is_none());

    let aptem = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    assert!(aptem.webhook_secret().is_none() && aptem.webhook_stream().is_none());
    aptem.set_webhook_target(Some(WebhookTarget::new("http://127.0.0.1:9/", "s")));
    assert!(matches!(aptem.change_and_notify("learners", 0).await, Err(WebhookError::Unsupported(Provider::Aptem, _))));
}
