//! A provider added by an operator as one manifest file, with no Rust change: it syncs
//! into an existing entity, and `tributary connectors check` reports a broken copy.

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{Harness, ok};

const ACMECRM: &str = r#"# AcmeCRM: companies over REST with a bearer API token, `Link` header paging and
# an `updated_since` filter. Added as a manifest only.
name = "acmecrm"
title = "AcmeCRM"
category = "crm"
description = "Companies from AcmeCRM"
base_url = "https://api.acmecrm.example/v2"
default_schedule = "30m"
headers = { Accept = "application/json" }

[auth]
kind = "bearer"
credentials = ["api_token"]
value = "Bearer {api_token}"

[[responses]]
status = [429]
action = "rate_limited"
message = "/error/message"

[streams.companies]
entity = "company"
description = "Companies, oldest change first"
[streams.companies.request]
path = "/companies"
query = { per_page = "2", sort = "updated_at" }
records = "/data"
pagination = { kind = "link_header" }
[streams.companies.incremental]
cursor_field = "updated_at"
cursor_format = "rfc3339"
sorted = true
request = { query = { updated_since = "{cursor}" } }

[mappings.company]
external_id = { from = "id", transform = ["string"] }
name = "name"
domain = { from = "website", transform = ["trim", "lower"] }
industry = "sector"
"#;

fn company(id: u64, name: &str, updated: &str) -> Value {
    json!({ "id": id, "name": name, "website": format!(" ACME{id}.example "), "sector": "Retail", "updated_at": updated })
}

#[tokio::test]
async fn a_manifest_file_alone_adds_a_provider_that_syncs() {
    let server = MockServer::start().await;
    let auth = || header("authorization", "Bearer acme-secret");
    Mock::given(method("GET"))
        .and(path("/companies"))
        .and(auth())
        .and(query_param("per_page", "2"))
        .and(query_param_is_missing("page"))
        .and(query_param_is_missing("updated_since"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "Link",
                    format!("<{}/companies?per_page=2&sort=updated_at&page=2>; rel=\"next\"", server.uri()).as_str(),
                )
                .set_body_json(json!({ "data": [
                    company(1, "Acme One", "2024-03-01T09:00:00Z"),
                    company(2, "Acme Two", "2024-03-02T09:00:00Z"),
                ] })),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/companies"))
        .and(auth())
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [
            company(3, "Acme Three", "2024-03-03T09:00:00Z"),
        ] })))
        .expect(1)
        .mount(&server)
        .await;
    // The incremental read asks for what changed since the last value seen.
    Mock::given(method("GET"))
        .and(path("/companies"))
        .and(auth())
        .and(query_param("updated_since", "2024-03-03T09:00:00Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [
            company(3, "Acme Three", "2024-03-03T09:00:00Z"),
            company(2, "Acme Two Renamed", "2024-03-04T09:00:00Z"),
            company(4, "Acme Four", "2024-03-05T09:00:00Z"),
        ] })))
        .expect(1)
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acmecrm.toml"), ACMECRM).unwrap();
    let tenant = format!("preset = \"aptem\"\n[providers.acmecrm]\nenabled = true\nbase_url = \"{}\"\n", server.uri());
    let h =
        Harness::with_connectors("acmecrm", &tenant, &json!({ "api_token": "acme-secret" }), Some(dir.path())).await;
    let full = h.sync("companies").await;
    ok(&full);
    assert_eq!((full.stats.fetched, full.stats.inserted, full.stats.pages), (3, 3, 2));
    let stored = h.records("company").await;
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), ["1", "2", "3"]);
    assert_eq!(
        stored["1"].data,
        json!({ "external_id": "1", "name": "Acme One", "domain": "acme1.example", "industry": "Retail" })
    );

    let inc = h.sync("companies").await;
    ok(&inc);
    assert_eq!((inc.stats.fetched, inc.stats.inserted, inc.stats.updated, inc.stats.unchanged), (3, 1, 1, 1));
    let stored = h.records("company").await;
    assert_eq!(stored.len(), 4);
    assert_eq!(stored["2"].data["name"], "Acme Two Renamed");
    assert_eq!(stored["4"].data["domain"], "acme4.example");
    assert_eq!(inc.stats.cursor_after.as_deref(), Some("2024-03-05T09:00:00.000000Z"));
    server.verify().await;
}

#[test]
fn connectors_check_accepts_the_manifest_and_reports_every_error_of_a_broken_copy() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("acmecrm.toml");
    std::fs::write(&good, ACMECRM).unwrap();
    let (success, text) = crate::support::connectors_check(&good);
    assert!(success, "{text}");
    assert!(text.contains("valid manifest for `acmecrm`"), "{text}");

    let broken_dir = tempfile::tempdir().unwrap();
    let broken = broken_dir.path().join("acmecrm.toml");
    let edits = [
        ("value = \"Bearer {api_token}\"", "value = \"Bearer {api_key}\""),
        ("path = \"/companies\"", "path = \"/{workspace}/companies\""),
        ("records = \"/data\"", "records = \"data\""),
        ("entity = \"company\"", "entity = \"organisation\""),
        ("updated_since = \"{cursor}\"", "updated_since = \"{since}\""),
    ];
    let mut text = ACMECRM.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(&broken, text).unwrap();
    let (success, out) = crate::support::connectors_check(&broken);
    assert!(!success, "a broken manifest must fail the check: {out}");
    let expected = [
        ("auth.value", "unknown template variable `{api_key}`"),
        ("streams.companies.request.path", "unknown template variable `{workspace}`"),
        ("streams.companies.request.records", "`data` is not a JSON pointer"),
        ("streams.companies.entity", "unknown entity `organisation`"),
        ("streams.companies.incremental.request", "never uses `{cursor}`"),
        ("streams.companies.incremental.request.query.updated_since", "unknown template variable `{since}`"),
    ];
    for (key, message) in expected {
        assert!(
            out.lines().any(|l| l.contains(&format!(": {key}: ")) && l.contains(message)),
            "no `{key}: …{message}…` in:\n{out}"
        );
    }
    // Each error once, each naming the file: a header line, then exactly these.
    let errors: Vec<&str> = out.lines().filter(|l| l.contains("acmecrm.toml: ")).collect();
    assert_eq!(errors.len(), expected.len(), "{out}");
    assert!(out.starts_with(&format!("{} configuration errors", expected.len())), "{out}");
}
