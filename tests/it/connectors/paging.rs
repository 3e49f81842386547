//! Paging rules, written as a manifest file only: parameters sent only with the first
//! request or only with the later ones, a `has_more` flag that is false on the last page,
//! and a numeric next offset taken from the response and sent back as a number.

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{Harness, ok};

const PAGECRM: &str = r#"# PageCRM: companies two ways of paging.
name = "pagecrm"
title = "PageCRM"
category = "crm"
description = "Companies from PageCRM"
base_url = "https://api.pagecrm.example"
default_schedule = "30m"

[auth]
kind = "bearer"
credentials = ["api_token"]
value = "Bearer {api_token}"

# A start time the API refuses alongside a cursor; a flag that only later pages take;
# `has_more: false` on the last page (which still names a cursor).
[streams.companies]
entity = "company"
[streams.companies.request]
path = "/companies"
query = { start_time = "2024-01-01T00:00:00Z", continuation = "true", limit = "2" }
first_page_only = ["start_time"]
later_pages_only = ["continuation"]
records = "/data"
pagination = { kind = "cursor", cursor = "/next_cursor", param = "cursor", has_more = "/has_more" }

# A search whose response gives the next offset as a number, sent back in the body.
[streams.search]
entity = "company"
enabled_by_default = false
[streams.search.request]
method = "POST"
path = "/search"
body = { query = "*", limit = 2 }
records = "/results"
pagination = { kind = "cursor", cursor = "/next_offset", param = "offset", in = "body" }

# Offsets and page numbers that run until `more` is false (full pages each time).
[streams.offsets]
entity = "company"
enabled_by_default = false
[streams.offsets.request]
path = "/offsets"
records = "/items"
pagination = { kind = "offset", offset_param = "skip", limit_param = "take", limit = 2, has_more = "/more" }

[streams.pages]
entity = "company"
enabled_by_default = false
[streams.pages.request]
path = "/pages"
records = "/items"
pagination = { kind = "page_number", page_param = "page", size_param = "size", size = 2, has_more = "/more" }

[mappings.company]
external_id = { from = "id", transform = ["string"] }
name = "name"
"#;

fn company(id: u64) -> Value {
    json!({ "id": id, "name": format!("Company {id}") })
}

async fn harness(server: &MockServer, streams: &str) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pagecrm.toml"), PAGECRM).unwrap();
    let tenant =
        format!("preset = \"aptem\"\n[providers.pagecrm]\nenabled = true\nbase_url = \"{}\"\n{streams}", server.uri());
    let h =
        Harness::with_connectors("pagecrm", &tenant, &json!({ "api_token": "page-secret" }), Some(dir.path())).await;
    (h, dir)
}

#[tokio::test]
async fn first_and_later_page_parameters_and_a_false_has_more_ends_the_walk() {
    let server = MockServer::start().await;
    let get =
        |p: &str| Mock::given(method("GET")).and(path(p.to_owned())).and(header("authorization", "Bearer page-secret"));
    get("/companies")
        .and(query_param("start_time", "2024-01-01T00:00:00Z"))
        .and(query_param_is_missing("continuation"))
        .and(query_param_is_missing("cursor"))
        .and(query_param("limit", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [company(1), company(2)], "next_cursor": "c2", "has_more": true,
        })))
        .expect(1)
        .mount(&server)
        .await;
    get("/companies")
        .and(query_param_is_missing("start_time"))
        .and(query_param("continuation", "true"))
        .and(query_param("cursor", "c2"))
        .and(query_param("limit", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [company(3)], "next_cursor": "c3", "has_more": false,
        })))
        .expect(1)
        .mount(&server)
        .await;
    // Never asked for: the walk ends on `has_more: false` although a cursor is named.
    get("/companies")
        .and(query_param("cursor", "c3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [company(9)] })))
        .expect(0)
        .mount(&server)
        .await;

    let (h, _dir) = harness(&server, "").await;
    let run = ok(&h.sync("companies").await).clone();
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.pages), (3, 3, 2));
    assert_eq!(h.records("company").await.keys().cloned().collect::<Vec<_>>(), ["1", "2", "3"]);
    server.verify().await;
}

#[tokio::test]
async fn a_numeric_next_offset_from_the_response_goes_back_as_a_number() {
    let server = MockServer::start().await;
    let post = || Mock::given(method("POST")).and(path("/search")).and(header("authorization", "Bearer page-secret"));
    post()
        .and(body_json(json!({ "query": "*", "limit": 2 })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "results": [company(1), company(2)], "next_offset": 2 })),
        )
        .expect(1)
        .mount(&server)
        .await;
    post()
        .and(body_json(json!({ "query": "*", "limit": 2, "offset": 2 })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "results": [company(3)], "next_offset": null })))
        .expect(1)
        .mount(&server)
        .await;

    let (h, _dir) = harness(&server, "streams = { search = { enabled = true } }\n").await;
    let run = ok(&h.sync("search").await).clone();
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.pages), (3, 3, 2));
    server.verify().await;
}

#[tokio::test]
async fn offset_and_page_number_paging_stop_when_has_more_is_false() {
    let server = MockServer::start().await;
    let get = |p: &str| Mock::given(method("GET")).and(path(p.to_owned()));
    let page = |ids: [u64; 2], more: bool| {
        ResponseTemplate::new(200).set_body_json(json!({ "items": [company(ids[0]), company(ids[1])], "more": more }))
    };
    // Full pages throughout: only the flag says where the listing ends.
    for (param, first, second) in [("skip", "0", "2"), ("page", "1", "2")] {
        let p = if param == "skip" { "/offsets" } else { "/pages" };
        get(p).and(query_param(param, first)).respond_with(page([1, 2], true)).expect(1).mount(&server).await;
        get(p).and(query_param(param, second)).respond_with(page([3, 4], false)).expect(1).mount(&server).await;
    }
    let (h, _dir) = harness(&server, "streams = { offsets = { enabled = true }, pages = { enabled = true } }\n").await;
    for stream in ["offsets", "pages"] {
        let run = ok(&h.sync(stream).await).clone();
        assert_eq!((run.stats.fetched, run.stats.pages), (4, 2), "{stream}");
    }
    assert_eq!(h.records("company").await.len(), 4);
    server.verify().await;
}

#[test]
fn connectors_check_reports_page_only_parameters_the_request_lacks() {
    let text = PAGECRM
        .replacen("first_page_only = [\"start_time\"]", "first_page_only = [\"since\", \"continuation\"]", 1)
        .replacen("has_more = \"/has_more\"", "has_more = \"has_more\"", 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pagecrm.toml");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["connectors", "check"])
        .arg(&file)
        .env("TRIBUTARY_CONFIG", std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
        .env_remove("TRIBUTARY_CONNECTORS")
        .output()
        .unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let expected = [
        ("streams.companies.request.first_page_only", "`since` is not a query parameter or body field"),
        ("streams.companies.request.later_pages_only", "`continuation` is also in `first_page_only`"),
        ("streams.companies.request.pagination.has_more", "`has_more` is not a JSON pointer"),
    ];
    for (key, message) in expected {
        assert!(
            out.lines().any(|l| l.contains(&format!(": {key}: ")) && l.contains(message)),
            "no `{key}: …{message}…` in:\n{out}"
        );
    }
    assert_eq!(out.lines().filter(|l| l.contains("pagecrm.toml: ")).count(), expected.len(), "{out}");
}
