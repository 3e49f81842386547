//! Bounded runs end `partial` and the next continues; an expired position restarts
//! its pass and the run row says so; a response without its records field fails.

use std::time::Duration;

use serde_json::json;
use tributary::model::RunOutcome;
use tributary_simulator::{Faults, Provider, SimConfig, start};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{Backend, Env, Stop, stop};

/// Serves an endless chain of pages: every page has new records and a new cursor.
struct Endless;

impl Respond for Endless {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n: u64 =
            request.url.query_pairs().find(|(k, _)| k == "cursor").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let data: Vec<_> = (n * 10..n * 10 + 10).map(|i| json!({ "id": i, "name": format!("Company {i}") })).collect();
        ResponseTemplate::new(200).set_body_json(json!({ "data": data, "next": (n + 1).to_string() }))
    }
}

fn manifest(name: &str, extra: &str) -> String {
    format!(
        r#"name = "{name}"
title = "Endless"
category = "crm"
base_url = "https://api.endless.example"
default_schedule = "30m"

[auth]
kind = "bearer"
credentials = ["api_token"]
value = "Bearer {{api_token}}"

[streams.companies]
entity = "company"
{extra}
[streams.companies.request]
path = "/companies"
records = "/data"
pagination = {{ kind = "cursor", cursor = "/next", param = "cursor" }}

[mappings.company]
external_id = {{ from = "id", transform = ["string"] }}
name = "name"
"#
    )
}

fn tenant(provider: &str, server: &MockServer, extra: &str) -> String {
    format!("preset = \"aptem\"\n[providers.{provider}]\nenabled = true\nbase_url = \"{}\"\n{extra}", server.uri())
}

async fn requests(server: &MockServer) -> Vec<String> {
    server.received_requests().await.unwrap_or_default().iter().map(|r| r.url.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_page_chain_ends_partial_at_its_bound_and_the_next_run_continues() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/companies")).respond_with(Endless).mount(&server).await;
    let env = Env::new(Backend::Postgres).await;
    // The manifest's bound is overridden by the tenant's.
    env.manifest_text("endless", &manifest("endless", "max_pages_per_run = 1000"));
    let layer = "[providers.endless.streams.companies]\nmax_pages_per_run = 4\n";
    env.tenant(&tenant("endless", &server, layer), "endless", &json!({ "api_token": "t" })).await;
    let sync = ["sync", "--tenant", "acme", "--provider", "endless", "--stream", "companies"];

    let out = env.ok(&sync, "").await;
    assert!(out.contains("endless/companies: partial"), "{out}");
    let first = env.last_run().await.unwrap();
    assert_eq!((first.outcome, first.stats.pages, first.stats.fetched), (RunOutcome::Partial, 4, 40));
    assert!(first.stats.note.as_deref().unwrap().contains("max_pages_per_run"), "{:?}", first.stats.note);
    assert_eq!(first.stats.error, None);
    assert_eq!(requests(&server).await.len(), 4, "no page is read past the bound");

    // The next run continues the pass from the fifth page.
    let out = env.ok(&sync, "").await;
    assert!(out.contains("endless/companies: partial"), "{out}");
    let log = requests(&server).await;
    assert_eq!(log.len(), 8);
    assert!(log[4].ends_with("cursor=4"), "{log:#?}");
    assert_eq!(env.records().await, 80);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_position_restarts_the_pass_and_the_run_row_says_so() {
    let config =
        SimConfig::new(Provider::Aptem, 100).page_size_cap(10).faults(Faults::none().delay(Duration::from_millis(150)));
    let sim = start(config).await.unwrap();
    let env = Env::new(Backend::Sqlite).await;
    env.manifest("aptem", |m| {
        let learners = &mut m["streams"]["learners"];
        learners["request"]["pagination"]["limit"] = toml::Value::Integer(10);
        learners.as_table_mut().unwrap().insert("position_ttl_secs".into(), toml::Value::Integer(600));
    });
    let tenant = format!("preset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\n", sim.api_base());
    env.tenant(&tenant, "aptem", &sim.credentials()).await;
    let child = env.start_sync("aptem", "learners", &[]);
    env.run_with_pages(3).await;
    stop(child, Stop::Term).await;
    let first_request = sim.request_log().into_iter().find(|r| r.contains("/Learners")).unwrap();
    let before = sim.request_log().len();

    // The position was saved an hour ago: older than its ten minutes.
    let job = env.store.list_jobs(&env.tenant).await.unwrap().into_iter().find(|j| j.stream.as_str() == "learners");
    let job = job.unwrap();
    let mut position: serde_json::Value =
        serde_json::from_str(&env.store.job_position(&env.tenant, job.id).await.unwrap().unwrap()).unwrap();
    let old = chrono::Utc::now() - chrono::Duration::hours(1);
    position["saved_at"] = json!(old.to_rfc3339());
    let sql = format!("UPDATE jobs SET position = '{}' WHERE id = {}", position, job.id);
    crate::support::exec_raw(&env.db_url, Box::leak(sql.into_boxed_str())).await;

    sim.set_faults(Faults::none());
    let out = env.ok(&["sync", "--tenant", "acme", "--provider", "aptem", "--stream", "learners"], "").await;
    let run = env.last_run().await.unwrap();
    assert_eq!(run.outcome, RunOutcome::Success);
    let note = run.stats.note.unwrap_or_default();
    assert!(note.contains("expired") && note.contains("restarted"), "{note}");
    assert!(out.contains("expired"), "{out}");
    assert_eq!(sim.request_log()[before..].iter().find(|r| r.contains("/Learners")), Some(&first_request));
    assert_eq!(env.records().await, 100);
    assert_eq!(env.store.job_position(&env.tenant, job.id).await.unwrap(), None, "the completed pass clears it");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_without_its_records_field_fails_unless_the_manifest_allows_it() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/companies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "total": 0 })))
        .mount(&server)
        .await;
    let env = Env::new(Backend::Sqlite).await;
    env.manifest_text("strict", &manifest("strict", ""));
    env.manifest_text("lenient", &manifest("lenient", "records_optional = true"));
    let both = format!(
        "{}[providers.lenient]\nenabled = true\nbase_url = \"{}\"\n",
        tenant("strict", &server, ""),
        server.uri()
    );
    env.tenant(&both, "strict", &json!({ "api_token": "t" })).await;
    env.ok(&["credentials", "set", "--tenant", "acme", "--provider", "lenient"], r#"{"api_token":"t"}"#).await;

    let out = env.run(&["sync", "--tenant", "acme", "--provider", "strict", "--stream", "companies"], "").await;
    assert!(!out.status.success());
    let run = env.last_run().await.unwrap();
    assert_eq!(run.outcome, RunOutcome::Failed);
    assert_eq!(run.stats.error_class.as_deref(), Some("data"));
    let error = run.stats.error.unwrap();
    assert!(
        error.contains("`companies`") && error.contains("`/data`") && error.contains("records_optional"),
        "{error}"
    );

    let out = env.ok(&["sync", "--tenant", "acme", "--provider", "lenient", "--stream", "companies"], "").await;
    assert!(out.contains("lenient/companies: success"), "{out}");
    env.finish().await;
}

#[tokio::test]
async fn connectors_check_rejects_bad_resume_and_bound_keys_naming_file_and_key() {
    let env = Env::new(Backend::Sqlite).await;
    let bad =
        manifest("badkeys", "resume = \"cursor\"\nposition_ttl_secs = 0\nmax_pages_per_run = 0\nmax_run_secs = 0");
    let file = env.db_dir().join("badkeys.toml");
    std::fs::write(&file, bad).unwrap();
    let out = env.run(&["connectors", "check", file.to_str().unwrap()], "").await;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    for key in [
        "streams.companies.resume",
        "streams.companies.position_ttl_secs",
        "streams.companies.max_pages_per_run",
        "streams.companies.max_run_secs",
    ] {
        assert!(text.contains(&format!("badkeys.toml: {key}")), "{key} in:\n{text}");
    }
    let unknown = env.db_dir().join("unknown.toml");
    std::fs::write(&unknown, manifest("unknown", "resume = \"sometimes\"")).unwrap();
    let out = env.run(&["connectors", "check", unknown.to_str().unwrap()], "").await;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && text.contains("unknown.toml") && text.contains("sometimes"), "{text}");
    env.finish().await;
}
