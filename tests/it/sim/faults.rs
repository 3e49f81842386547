//! Fault injection, the same periods for every provider, each with its own
//! throttle signal.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;
use tributary_simulator::{Faults, Provider, SimConfig};

use super::common::Session;
use crate::support::json;

async fn session(provider: Provider, faults: Faults) -> Session {
    Session::start(SimConfig::new(provider, 3).faults(faults)).await
}

/// Sends the probe; `None` when the connection died without a response.
async fn probe(s: &Session) -> Option<(u16, HeaderMap, String)> {
    let response = s.probe().send().await.ok()?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.ok()?;
    Some((status, headers, text))
}

/// Checks the provider's own throttle response.
fn assert_throttled(provider: Provider, status: u16, headers: &HeaderMap, text: &str) {
    // GitLab's throttle answer is plain text.
    let body = if provider == Provider::GitLab { Value::Null } else { json(text) };
    let retry_after = headers.get("retry-after").and_then(|v| v.to_str().ok());
    match provider {
        Provider::Aptem => {
            assert_eq!(status, 400);
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("Try again")));
        }
        Provider::Salesforce => {
            assert_eq!((status, body[0]["errorCode"].as_str()), (403, Some("REQUEST_LIMIT_EXCEEDED")));
            assert_eq!(retry_after, None);
        }
        Provider::HubSpot => {
            assert_eq!(status, 429);
            assert_eq!(
                (body["errorType"].as_str(), body["policyName"].as_str()),
                (Some("RATE_LIMIT"), Some("TEN_SECONDLY_ROLLING"))
            );
            assert_eq!(body["message"], "You have reached your ten_secondly_rolling limit.");
        }
        Provider::Slack => {
            assert_eq!((status, body["ok"].as_bool(), body["error"].as_str()), (429, Some(false), Some("ratelimited")));
            assert_eq!(retry_after, Some("1"));
        }
        Provider::Jira => {
            assert_eq!(status, 429);
            assert_eq!(retry_after, Some("1"));
            for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit-reason"] {
                assert!(headers.get(h).is_some(), "{h}");
            }
        }
        Provider::Bud => {
            assert_eq!((status, body["status"].as_u64()), (429, Some(429)));
            assert_eq!(retry_after, Some("1"));
        }
        Provider::OneFile => {
            assert_eq!(status, 429);
            assert!(body["Message"].is_string());
            assert_eq!(retry_after, Some("1"));
        }
        Provider::GoogleDrive => {
            // 403 or 429 with a usage-limit reason in Google's envelope, no Retry-After.
            assert!(status == 403 || status == 429, "{status}");
            assert_eq!(body["error"]["code"].as_u64(), Some(u64::from(status)));
            let reason = body["error"]["errors"][0]["reason"].as_str();
            assert!(matches!(reason, Some("userRateLimitExceeded" | "rateLimitExceeded")), "{body}");
            assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
            assert_eq!(retry_after, None);
        }
        Provider::Microsoft => {
            assert_eq!((status, body["error"]["code"].as_str()), (429, Some("TooManyRequests")));
            assert_eq!(retry_after, Some("1"));
            assert!(body["error"]["innerError"]["request-id"].is_string());
        }
        Provider::GitHub => {
            // Secondary limits say when to retry; an exhausted primary limit says when it resets.
            assert_eq!(status, 403);
            assert!(body["message"].as_str().is_some_and(|m| m.contains("rate limit")), "{text}");
            let remaining = headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok());
            assert!(retry_after == Some("1") || remaining == Some("0"), "{headers:?}");
        }
        Provider::GitLab => {
            assert_eq!((status, text), (429, "Retry later\n"));
            assert_eq!(retry_after, Some("1"));
            assert!(headers.get("ratelimit-reset").is_some());
        }
        Provider::Asana => {
            assert_eq!(status, 429);
            assert_eq!(retry_after, Some("1"));
            assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("rate limit")), "{body}");
        }
    }
}

#[tokio::test]
async fn throttles_fire_every_kth_data_request_with_the_providers_signal() {
    for provider in Provider::ALL {
        let s = session(provider, Faults::none().rate_limit_every(3)).await;
        for n in 1..=6u64 {
            let (status, headers, text) = probe(&s).await.expect("response");
            if n % 3 == 0 {
                assert_throttled(provider, status, &headers, &text);
            } else {
                assert_eq!(status, 200, "{provider} request {n}: {text}");
            }
        }
        assert_eq!(s.sim.data_request_count(), 6);
    }
}

#[tokio::test]
async fn server_errors_fire_every_mth_request() {
    for provider in Provider::ALL {
        let s = session(provider, Faults::none().server_error_every(2)).await;
        let statuses: Vec<u16> = {
            let mut v = Vec::new();
            for _ in 0..4 {
                v.push(probe(&s).await.expect("response").0);
            }
            v
        };
        assert_eq!(statuses, vec![200, 503, 200, 503], "{provider}");
    }
}

#[tokio::test]
async fn resets_drop_the_connection_without_a_response() {
    for provider in Provider::ALL {
        let s = session(provider, Faults::none().reset_every(2)).await;
        assert!(probe(&s).await.is_some_and(|r| r.0 == 200), "{provider}");
        assert!(probe(&s).await.is_none(), "{provider}: request 2 should be reset");
        assert!(probe(&s).await.is_some_and(|r| r.0 == 200), "{provider}");
        assert!(probe(&s).await.is_none(), "{provider}: request 4 should be reset");
    }
}

#[tokio::test]
async fn truncation_sends_half_a_body_with_status_200() {
    for provider in Provider::ALL {
        let s = session(provider, Faults::none().truncate_every(2)).await;
        let (_, _, whole) = probe(&s).await.expect("response");
        assert!(serde_json::from_str::<Value>(&whole).is_ok(), "{provider}");
        let (status, _, half) = probe(&s).await.expect("response");
        assert_eq!(status, 200, "{provider}");
        assert!(!half.is_empty() && serde_json::from_str::<Value>(&half).is_err(), "{provider}: {half}");
        assert_eq!(half.len(), whole.len() / 2, "{provider}");
    }
}

#[tokio::test]
async fn delays_apply_to_data_requests_and_faults_can_change_at_run_time() {
    let s = session(Provider::HubSpot, Faults::none().delay(Duration::from_millis(80))).await;
    let started = Instant::now();
    assert_eq!(probe(&s).await.expect("response").0, 200);
    assert!(started.elapsed() >= Duration::from_millis(80));
    s.sim.set_faults(Faults::none().rate_limit_every(1).retry_after_secs(7));
    assert_eq!(probe(&s).await.expect("response").0, 429);
    s.sim.set_faults(Faults::none());
    assert_eq!(probe(&s).await.expect("response").0, 200);
    let slack = session(Provider::Slack, Faults::none().rate_limit_every(1).retry_after_secs(7)).await;
    let (_, headers, _) = probe(&slack).await.expect("response");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
}

#[tokio::test]
async fn token_endpoints_are_exempt_from_faults() {
    let every = Faults::none().rate_limit_every(1).server_error_every(1).reset_every(1).truncate_every(1);
    for provider in [
        Provider::Bud,
        Provider::OneFile,
        Provider::HubSpot,
        Provider::Salesforce,
        Provider::Slack,
        Provider::Microsoft,
        Provider::GoogleDrive,
        Provider::Asana,
    ] {
        // Logging in succeeds although every data request is faulted.
        let s = session(provider, every.clone()).await;
        assert!(probe(&s).await.is_none(), "{provider}");
        assert_eq!(s.sim.data_request_count(), 1);
        assert!(s.sim.request_count() >= 2);
    }
}
