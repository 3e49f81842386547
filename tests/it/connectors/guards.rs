//! The engine's guards and the HTTP layer's classification, against wiremock: a
//! provider that loops, ignores paging, never ends, fails or throttles.

use std::time::Duration;

use serde_json::{Value, json};
use tributary::model::{Owner, RunOutcome, RunRow};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{Harness, ok};

/// A one-stream provider `guardcrm` whose pagination (and extra top-level settings) a
/// test chooses, written to a temporary connectors directory.
struct Guarded {
    h: Harness,
    _connectors: tempfile::TempDir,
}

async fn harness(server: &MockServer, pagination: &str, extra: &str) -> Guarded {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"name = "guardcrm"
title = "Guard CRM"
category = "crm"
base_url = "https://api.guardcrm.example"
default_schedule = "1h"

[auth]
kind = "bearer"

{extra}

[streams.companies]
entity = "company"
[streams.companies.request]
path = "/companies"
records = "/items"
pagination = {pagination}

[mappings.company]
external_id = {{ from = "id", transform = ["string"] }}
name = "name"
"#
    );
    std::fs::write(dir.path().join("guardcrm.toml"), manifest).unwrap();
    let tenant = format!("preset = \"aptem\"\n[providers.guardcrm]\nenabled = true\nbase_url = \"{}\"\n", server.uri());
    let h = Harness::with_connectors("guardcrm", &tenant, &json!({ "token": "t0k" }), Some(dir.path())).await;
    Guarded { h, _connectors: dir }
}

/// Runs a sync, failing the test instead of hanging if a guard does not stop it.
async fn sync(g: &Guarded) -> RunRow {
    tokio::time::timeout(Duration::from_secs(60), g.h.sync("companies"))
        .await
        .expect("the run must end instead of looping")
}

fn items(ids: &[u64]) -> Value {
    Value::Array(ids.iter().map(|i| json!({ "id": i, "name": format!("Company {i}") })).collect())
}

fn failed_with(run: &RunRow, needle: &str) {
    assert_eq!(run.outcome, RunOutcome::Failed, "{:?}", run.stats);
    let error = run.stats.error.as_deref().unwrap_or("");
    assert!(error.contains(needle), "error {error:?} should contain {needle:?}");
}

const CURSOR: &str = r#"{ kind = "cursor", cursor = "/next", param = "cursor" }"#;
const OFFSET: &str = r#"{ kind = "offset", offset_param = "offset", limit_param = "limit", limit = 2 }"#;

#[tokio::test]
async fn a_cursor_that_repeats_fails_the_run_naming_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "items": items(&[1]), "next": "abc" })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .and(query_param("cursor", "abc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "items": items(&[2]), "next": "abc" })))
        .mount(&server)
        .await;
    let g = harness(&server, CURSOR, "").await;
    let run = sync(&g).await;
    failed_with(&run, "returned the cursor `abc` a second time");
    assert_eq!(run.stats.http_calls, 2);
    assert_eq!(g.h.records("company").await.len(), 1, "the first page was kept");
}

#[tokio::test]
async fn a_page_identical_to_the_previous_one_fails_the_run() {
    let server = MockServer::start().await;
    // The API ignores `offset`: every page is the first one.
    Mock::given(method("GET"))
        .and(path("/companies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "items": items(&[1, 2]) })))
        .mount(&server)
        .await;
    let g = harness(&server, OFFSET, "").await;
    let run = sync(&g).await;
    failed_with(&run, "page 2 repeats the previous page");
    assert_eq!(run.stats.http_calls, 2);
}

/// Serves full pages of two records forever, following `offset`.
struct Endless;

impl Respond for Endless {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let offset: u64 =
            request.url.query_pairs().find(|(k, _)| k == "offset").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        ResponseTemplate::new(200).set_body_json(json!({ "items": items(&[offset + 1, offset + 2]) }))
    }
}

#[tokio::test]
async fn max_pages_stops_a_stream_that_never_ends() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/companies")).respond_with(Endless).mount(&server).await;
    let pagination = r#"{ kind = "offset", offset_param = "offset", limit_param = "limit", limit = 2, max_pages = 3 }"#;
    let g = harness(&server, pagination, "").await;
    let run = sync(&g).await;
    failed_with(&run, "more than 3 pages");
    assert_eq!((run.stats.http_calls, run.stats.fetched), (3, 6));
}

#[tokio::test]
async fn a_permanent_4xx_fails_the_run_with_the_providers_message() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({ "status": "error", "message": "Property 'foo' does not exist" })),
        )
        .mount(&server)
        .await;
    let g = harness(&server, OFFSET, "").await;
    let run = sync(&g).await;
    failed_with(&run, "HTTP 400: Property 'foo' does not exist");
    assert_eq!((run.stats.http_calls, run.stats.retries), (1, 0));
    let conn = g.h.store.get_connection(&g.h.tenant, &g.h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(
        conn.status,
        tributary::model::ConnectionStatus::Connected,
        "a bad request is not a credentials problem"
    );
}

#[tokio::test]
async fn a_503_then_200_succeeds_with_one_retry_counted() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "items": items(&[1]) })))
        .mount(&server)
        .await;
    let g = harness(&server, OFFSET, "").await;
    let run = sync(&g).await;
    ok(&run);
    assert_eq!((run.stats.retries, run.stats.http_calls, run.stats.inserted), (1, 2, 1));
    assert_eq!(run.stats.rate_limit_waits, 0);
}

#[tokio::test]
async fn a_slack_style_ratelimited_200_is_waited_out_and_counted() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Retry-After", "0")
                .set_body_json(json!({ "ok": false, "error": "ratelimited" })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": true, "items": items(&[1, 2]) })))
        .mount(&server)
        .await;
    let rules = r#"[[responses]]
status = [200, 429]
body = { "/ok" = false, "/error" = "ratelimited" }
action = "rate_limited"
message = "/error"
"#;
    let g = harness(&server, CURSOR, rules).await;
    let run = sync(&g).await;
    ok(&run);
    assert_eq!((run.stats.rate_limit_waits, run.stats.retries, run.stats.http_calls), (1, 0, 2));
    assert_eq!(run.stats.inserted, 2);
}
