//! Every refusal of an inbound webhook, each on its own daemon: its status and empty
//! body, nothing stored in the inbox nor run, and its count in
//! `tributary_webhooks_received_total`. An unknown tenant, an unknown provider and a
//! connection without the secret are answered exactly as a bad signature is.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tributary_simulator::{Provider, SimConfig, start};

use super::{
    Answer, HUBSPOT_PATH, Setup, contact_change, inbox_len, now_ms, post_hubspot, post_hubspot_from, received, setup,
    setup_with, webhook_runs,
};

/// Nothing was kept, so nothing can run: the inbox is empty and, after longer than the
/// inbox worker's debounce, no run exists.
async fn nothing_kept(s: &Setup) {
    assert_eq!(inbox_len(&s.fx).await, 0, "a refused delivery is not stored");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(s.fx.runs("acme").await.is_empty(), "a refused delivery triggers nothing");
}

/// A delivery signed with the wrong secret: the reference answer of a refusal.
async fn bad_signature(s: &Setup) -> Answer {
    post_hubspot(&s.address, HUBSPOT_PATH, &contact_change(1), "not-the-secret", now_ms()).await
}

async fn finish(s: Setup) {
    drop(s.daemon);
    s.fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused() {
    let s = setup().await;
    let answer = bad_signature(&s).await;
    assert_eq!(answer, Answer { status: 401, content_type: None, body: String::new() });
    // The right secret over other bytes (the body was changed after signing).
    let url = format!("http://{}{HUBSPOT_PATH}", s.address);
    let ts = now_ms().to_string();
    let signed = contact_change(1);
    let sig = super::B64
        .encode(super::mac(s.secret.as_bytes(), &[b"POST", url.as_bytes(), signed.as_bytes(), ts.as_bytes()]));
    let tampered = reqwest::Client::new()
        .post(&url)
        .header("X-HubSpot-Request-Timestamp", ts)
        .header("X-HubSpot-Signature-v3", sig)
        .body(contact_change(2))
        .send()
        .await
        .unwrap();
    assert_eq!(Answer::of(tampered).await, answer, "a changed body");
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "hubspot", "bad_signature").await, 2);
    assert_eq!(received(&s.address, "hubspot", "accepted").await, 0);
    finish(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_timestamp_is_refused() {
    let s = setup().await;
    let answer = post_hubspot(&s.address, HUBSPOT_PATH, &contact_change(1), &s.secret, now_ms() - 6 * 60 * 1000).await;
    assert_eq!(answer, bad_signature(&s).await);
    assert_eq!((answer.status, answer.body.as_str()), (401, ""));
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "hubspot", "stale").await, 1);
    finish(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_timestamp_is_refused() {
    let s = setup().await;
    let answer = post_hubspot(&s.address, HUBSPOT_PATH, &contact_change(1), &s.secret, now_ms() + 6 * 60 * 1000).await;
    assert_eq!(answer, bad_signature(&s).await);
    assert_eq!((answer.status, answer.body.as_str()), (401, ""));
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "hubspot", "future").await, 1);
    finish(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tenant_is_answered_as_a_bad_signature() {
    let s = setup().await;
    let reference = bad_signature(&s).await;
    // No such tenant, no such tenant id, and a path that does not even decode.
    for path in ["/webhooks/nobody/hubspot", "/webhooks/NOT%20A%20TENANT/hubspot", "/webhooks/%FF/hubspot"] {
        let answer = post_hubspot(&s.address, path, &contact_change(1), &s.secret, now_ms()).await;
        assert_eq!(answer, reference, "{path}");
    }
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "hubspot", "unknown").await, 2);
    // A path that does not decode names no provider either.
    assert_eq!(received(&s.address, "unknown", "unknown").await, 1);
    finish(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_provider_is_answered_as_a_bad_signature() {
    let s = setup().await;
    let reference = bad_signature(&s).await;
    // No such manifest, and a manifest without `[webhooks]` the tenant is connected to.
    for path in ["/webhooks/acme/zendesk", "/webhooks/acme/aptem", "/webhooks/acme/%C0%AF"] {
        let answer = post_hubspot(&s.address, path, &contact_change(1), &s.secret, now_ms()).await;
        assert_eq!(answer, reference, "{path}");
    }
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "unknown", "unknown").await, 3, "provider names are not labels");
    finish(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_the_secret_is_answered_as_a_bad_signature() {
    let s = setup().await;
    // Jira connected with its API credentials but no `webhook_secret`.
    let jira = start(SimConfig::new(Provider::Jira, 1)).await.unwrap();
    let tenant = format!(
        "preset = \"aptem\"\n[providers.jira]\nenabled = true\nbase_url = \"{}\"\nschedule = \"{}\"\n",
        jira.base_url(),
        super::NEVER
    );
    s.fx.connect("globex", &tenant, &[("jira", jira.credentials())]).await;
    let reference = bad_signature(&s).await;
    let body = r#"{"webhookEvent":"jira:issue_updated","issue":{"id":"10001","key":"PRJ-1"}}"#;
    // Signed with what would be the API token, the only secret the connection has.
    let token = jira.credentials()["api_token"].as_str().expect("the API token").to_owned();
    let sig = hex::encode(super::mac(token.as_bytes(), &[body.as_bytes()]));
    let r = reqwest::Client::new()
        .post(format!("http://{}/webhooks/globex/jira", s.address))
        .header("X-Hub-Signature", format!("sha256={sig}"))
        .header("X-Atlassian-Webhook-Identifier", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(Answer::of(r).await, reference);
    nothing_kept(&s).await;
    assert!(s.fx.runs("globex").await.is_empty());
    assert_eq!(received(&s.address, "jira", "unknown").await, 1);
    finish(s).await;
}

/// A correctly signed body that is not what the manifest describes: `400`, not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_but_malformed_delivery_is_refused() {
    let s = setup().await;
    for body in ["not json", r#"[]"#, r#"[{"eventId":1,"objectId":101}]"#] {
        let answer = post_hubspot(&s.address, HUBSPOT_PATH, body, &s.secret, now_ms()).await;
        assert_eq!((answer.status, answer.body.as_str()), (400, ""), "{body}");
    }
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "hubspot", "malformed").await, 3);
    finish(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_over_one_mebibyte_is_refused() {
    let s = setup().await;
    let big = format!("[{}]", "0,".repeat(600 * 1024) + "0");
    let answer = post_hubspot(&s.address, HUBSPOT_PATH, &big, &s.secret, now_ms()).await;
    assert_eq!((answer.status, answer.body.as_str()), (413, ""));
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "hubspot", "too_large").await, 1);
    finish(s).await;
}

/// A chunked body (no `Content-Length`) is read up to the limit, then refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_one_mebibyte_is_refused() {
    let s = setup().await;
    let head = format!(
        "POST {HUBSPOT_PATH} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nX-HubSpot-Request-Timestamp: {}\r\nX-HubSpot-Signature-v3: AAAA\r\n\r\n",
        s.address,
        now_ms()
    );
    // 17 chunks of 64 KiB: one past the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    let request = [head, chunk.repeat(17), "0\r\n\r\n".to_owned()].concat().into_bytes();
    let answer = raw_exchange(&s.address, request).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-length: 0\r\n"), "an empty body: {answer}");
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "hubspot", "too_large").await, 1);
    finish(s).await;
}

/// Sends `request` on a new connection and reads the answer until the server closes it
/// (or resets it: what arrived before is kept).
async fn raw_exchange(address: &str, request: Vec<u8>) -> String {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // The server may stop reading (and close) before every byte is written.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(super::PATIENCE, read.read(&mut buf)).await
        && n > 0
    {
        answer.extend_from_slice(&buf[..n]);
    }
    drop(writer.await);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A body that does not arrive is not waited for: `408` once the body timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_is_refused() {
    let s = setup().await;
    let body = contact_change(1);
    let head = format!(
        "POST {HUBSPOT_PATH} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.address,
        body.len()
    );
    // The headers and half the body; the connection stays open.
    let request = [head.as_bytes(), &body.as_bytes()[..body.len() / 2]].concat();
    let answer = raw_exchange(&s.address, request).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-length: 0\r\n"), "an empty body: {answer}");
    nothing_kept(&s).await;
    assert_eq!(received(&s.address, "hubspot", "timeout").await, 1);
    finish(s).await;
}

/// Over `webhook_rate_per_source` requests a second from one address get `429` and are
/// not stored; another address has its own allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_per_source_rate_is_refused_and_other_sources_are_not() {
    let s = setup_with("webhook_rate_per_source = 2").await;
    let client = reqwest::Client::new();
    let (mut accepted, mut limited) = (0i64, 0u64);
    for i in 0..20u64 {
        let answer =
            post_hubspot_from(&client, &s.address, HUBSPOT_PATH, &contact_change(i), &s.secret, now_ms()).await;
        match answer.status {
            200 => accepted += 1,
            429 => {
                assert_eq!(answer.body, "", "a refusal says nothing");
                limited += 1;
            }
            other => panic!("unexpected {other}: {answer:?}"),
        }
    }
    assert!(limited > 0, "20 requests at once are over 2 a second");
    assert!(accepted >= 2, "the burst allowance is accepted");
    assert_eq!(inbox_len(&s.fx).await, accepted, "only the accepted deliveries are stored");
    assert_eq!(received(&s.address, "hubspot", "rate_limited").await, limited);
    assert_eq!(received(&s.address, "hubspot", "accepted").await, u64::try_from(accepted).unwrap());

    // 127.0.0.2 is loopback too on Linux: another source, with its own allowance.
    let other = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).build().unwrap();
    let answer = post_hubspot_from(&other, &s.address, HUBSPOT_PATH, &contact_change(100), &s.secret, now_ms()).await;
    assert_eq!(answer.status, 200, "another source is not limited: {answer:?}");
    assert_eq!(inbox_len(&s.fx).await, accepted + 1);
    let runs = webhook_runs(&s.fx, "acme").await;
    assert!(runs.iter().all(|r| r.stream.as_str() == "contacts"), "{runs:?}");
    finish(s).await;
}
