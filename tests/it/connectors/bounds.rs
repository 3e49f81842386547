//! Bounded inputs: a provider response larger than the limit fails the run (class
//! `data`, not retried) naming provider, stream and limit, whether the server declares
//! its length or streams the body in chunks; transport failures name their cause.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tributary::model::{RunOutcome, RunRow};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::Harness;

/// A one-stream provider `boundcrm` at `base_url`, with extra top-level manifest settings.
struct Bounded {
    h: Harness,
    _connectors: tempfile::TempDir,
}

async fn harness(base_url: &str, extra: &str) -> Bounded {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"name = "boundcrm"
title = "Bound CRM"
category = "crm"
base_url = "https://api.boundcrm.example"
default_schedule = "1h"
{extra}

[auth]
kind = "bearer"

[streams.companies]
entity = "company"
[streams.companies.request]
path = "/companies"
records = "/items"

[mappings.company]
external_id = {{ from = "id", transform = ["string"] }}
name = "name"
"#
    );
    std::fs::write(dir.path().join("boundcrm.toml"), manifest).unwrap();
    let tenant = format!("preset = \"aptem\"\n[providers.boundcrm]\nenabled = true\nbase_url = \"{base_url}\"\n");
    let h = Harness::with_connectors("boundcrm", &tenant, &json!({ "token": "t0k" }), Some(dir.path())).await;
    Bounded { h, _connectors: dir }
}

async fn sync(b: &Bounded) -> RunRow {
    let mut syncer = b.h.syncer();
    syncer.retry.max_attempts = 2;
    syncer.retry.connect_timeout = Duration::from_secs(2);
    syncer.retry.request_timeout = Duration::from_secs(2);
    tokio::time::timeout(Duration::from_secs(60), b.h.sync_using(&syncer, &b.h.tenant, "companies"))
        .await
        .expect("the run must end")
}

/// A page of `n` companies with long names: about 100 bytes per record.
fn page(n: u64) -> Value {
    let items: Vec<Value> =
        (1..=n).map(|i| json!({ "id": i, "name": format!("Company {i} {}", "x".repeat(80)) })).collect();
    json!({ "items": items })
}

fn too_large(run: &RunRow, limit: u64) {
    assert_eq!(run.outcome, RunOutcome::Failed, "{:?}", run.stats);
    let error = run.stats.error.as_deref().unwrap_or("");
    for needle in ["provider `boundcrm` stream `companies`", &format!("limit of {limit} bytes"), "max_response_bytes"] {
        assert!(error.contains(needle), "error {error:?} should contain {needle:?}");
    }
    assert_eq!(run.stats.error_class.as_deref(), Some("data"));
    assert_eq!((run.stats.http_calls, run.stats.retries), (1, 0), "an oversized response is not retried");
    assert_eq!(run.stats.fetched, 0);
}

#[tokio::test]
async fn a_response_over_the_manifest_limit_fails_the_run_naming_the_limit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(100)))
        .mount(&server)
        .await;
    let b = harness(&server.uri(), "max_response_bytes = 2000").await;
    too_large(&sync(&b).await, 2000);

    // The same page within the limit is read.
    let b = harness(&server.uri(), "max_response_bytes = 1000000").await;
    let run = sync(&b).await;
    assert_eq!((run.outcome, run.stats.fetched), (RunOutcome::Success, 100), "{:?}", run.stats);
}

#[tokio::test]
async fn a_chunked_response_without_a_length_is_cut_off_at_the_daemon_limit() {
    // A server that streams an endless JSON array in chunks, with no Content-Length.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
                if socket.write_all(chunk("{\"items\":[").as_bytes()).await.is_err() {
                    return;
                }
                let record = format!("{{\"id\":1,\"name\":\"{}\"}},", "y".repeat(1000));
                // Up to 50 MB: far more than the limit; the client stops reading long before.
                for _ in 0..50_000 {
                    if socket.write_all(chunk(&record).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let b = harness(&format!("http://{addr}"), "").await;
    let mut syncer = b.h.syncer();
    syncer.retry.max_response_bytes = 64 * 1024;
    let run = tokio::time::timeout(Duration::from_secs(60), b.h.sync_using(&syncer, &b.h.tenant, "companies"))
        .await
        .expect("the run must end");
    too_large(&run, 64 * 1024);
    server.abort();
}

#[tokio::test]
async fn a_refused_connection_is_named_in_the_run_row() {
    // A port that was free a moment ago: nothing listens there now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let b = harness(&format!("http://127.0.0.1:{port}"), "").await;
    let run = sync(&b).await;
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.stats.error.as_deref().unwrap_or("");
    assert!(error.to_lowercase().contains("connection refused"), "error {error:?} should name the refused connection");
}

#[tokio::test]
async fn a_timeout_is_named_in_the_run_row() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(1)).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let b = harness(&server.uri(), "").await;
    let run = sync(&b).await;
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.stats.error.as_deref().unwrap_or("");
    assert!(error.contains("timed out"), "error {error:?} should name the timeout");
}

#[tokio::test]
async fn an_untrusted_tls_certificate_is_named_in_the_run_row() {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures");
    let certs = CertificateDer::pem_file_iter(fixtures.join("self-signed.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixtures.join("self-signed.key")).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            // The client refuses the certificate: the handshake fails on its side.
            let _ = acceptor.accept(socket).await;
        }
    });
    let b = harness(&format!("https://localhost:{port}"), "").await;
    let run = sync(&b).await;
    server.abort();
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.stats.error.as_deref().unwrap_or("");
    assert!(
        error.contains("invalid peer certificate: a CA certificate is used as the server's own"),
        "error {error:?} should name the certificate problem in words"
    );
    assert!(!error.contains("Other("), "{error}");
}
