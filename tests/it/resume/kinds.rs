//! One interrupted and resumed run per pagination kind. The signals rotate over the
//! kinds (each signal for at least two), and so do the backends.

use std::time::Duration;

use serde_json::json;
use tributary::model::RunOutcome;
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{Backend, Env, Stop, stop};

/// Records each page carries.
const PAGE: usize = 20;
/// Pages committed before the signal.
const BEFORE: i64 = 3;
/// How long each page takes to answer during the first run.
const SLOW: Duration = Duration::from_millis(150);

/// What one case reads.
struct Case<'a> {
    provider: &'a str,
    stream: &'a str,
    tenant: String,
    credentials: serde_json::Value,
    /// Requests of the stream's pages (not its parents' or tokens') contain this.
    page_path: &'a str,
    /// Records the provider serves.
    total: i64,
    stop: Stop,
}

/// A simulator serving `records` records in pages of [`PAGE`], each answered [`SLOW`]ly.
async fn slow_sim(provider: Provider, records: u64, parents: u64) -> SimHandle {
    let config =
        SimConfig::new(provider, records).page_size_cap(PAGE).parents(parents).faults(Faults::none().delay(SLOW));
    start(config).await.unwrap()
}

/// Runs the case: the first sync is stopped after [`BEFORE`] committed pages, the
/// second completes it. `log` reads the provider's request log; `fast` takes the delay
/// away before the second run.
async fn interrupt_and_resume(env: &Env, case: Case<'_>, log: impl AsyncFn() -> Vec<String>, fast: impl FnOnce()) {
    env.tenant(&case.tenant, case.provider, &case.credentials).await;
    let child = env.start_sync(case.provider, case.stream, &[]);
    let first = env.run_with_pages(BEFORE).await;
    let output = stop(child, case.stop).await;
    let first = env.store.get_run(first.id, Some(&env.tenant)).await.unwrap().unwrap();
    let stored = env.records().await;
    assert!(stored > 0 && stored < case.total, "the first run was interrupted mid-way: {stored} of {}", case.total);
    // The run row counts what its pages stored, even when the process was killed.
    assert_eq!(first.stats.inserted, stored, "{first:?}");
    assert!(first.stats.fetched >= stored && first.stats.pages >= BEFORE, "{first:?}");
    assert_eq!(first.stats.replica.as_deref().map(|r| r.is_empty()), Some(false));
    match case.stop {
        Stop::Kill => assert_eq!(first.outcome, RunOutcome::Running),
        Stop::Term | Stop::Int => {
            assert_eq!(first.outcome, RunOutcome::Cancelled, "{output}");
            assert!(output.contains(&format!("{}/{}: cancelled", case.provider, case.stream)), "{output}");
        }
    }
    let pages = |all: Vec<String>| -> Vec<String> { all.into_iter().filter(|r| r.contains(case.page_path)).collect() };
    let before = pages(log().await);
    fast();

    let out = env.ok(&["sync", "--tenant", "acme", "--provider", case.provider, "--stream", case.stream], "").await;
    assert!(out.contains(&format!("{}/{}: success", case.provider, case.stream)), "{out}");
    let all = pages(log().await);
    let after = &all[before.len()..];
    let again: Vec<&String> = after.iter().filter(|r| before.contains(r)).collect();
    assert!(again.len() <= 1, "the second run asked again for {again:?}\nfirst run: {before:#?}\nsecond: {after:#?}");
    assert!(!after.contains(&before[0]), "the second run started over: {after:#?}");
    assert_eq!(env.records().await, case.total);
    let second = env.last_run().await.unwrap();
    assert_eq!(second.outcome, RunOutcome::Success);
    assert!(second.stats.note.as_deref().is_some_and(|n| n.starts_with("resumed pass")), "{:?}", second.stats.note);
    assert!(out.contains("note: resumed pass"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odata_skip_resumes_after_sigterm() {
    let sim = slow_sim(Provider::Aptem, 200, 3).await;
    let env = Env::new(Backend::Sqlite).await;
    env.manifest("aptem", |m| {
        m["streams"]["learners"]["request"]["pagination"]["limit"] = toml::Value::Integer(PAGE as i64);
    });
    let case = Case {
        provider: "aptem",
        stream: "learners",
        tenant: format!("preset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\n", sim.api_base()),
        credentials: sim.credentials(),
        page_path: "Learners",
        total: 200,
        stop: Stop::Term,
    };
    interrupt_and_resume(&env, case, async || sim.request_log(), || sim.set_faults(Faults::none())).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_numbers_resume_after_sigint() {
    let sim = slow_sim(Provider::Bud, 200, 3).await;
    let env = Env::new(Backend::Postgres).await;
    env.manifest("bud", |_| {});
    let case = Case {
        provider: "bud",
        stream: "learners",
        tenant: format!(
            "preset = \"bud\"\n[providers.bud]\nbase_url = \"{base}\"\nvariables = {{ auth_url = \"{base}\" }}\n",
            base = sim.base_url()
        ),
        credentials: sim.credentials(),
        page_path: "/learners",
        total: 200,
        stop: Stop::Int,
    };
    interrupt_and_resume(&env, case, async || sim.request_log(), || sim.set_faults(Faults::none())).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_tokens_resume_after_sigkill() {
    let sim = slow_sim(Provider::HubSpot, 200, 3).await;
    let env = Env::new(Backend::Sqlite).await;
    env.manifest("hubspot", |_| {});
    let case = Case {
        provider: "hubspot",
        stream: "contacts",
        tenant: format!("preset = \"aptem_hubspot\"\n[providers.hubspot]\nbase_url = \"{}\"\n", sim.base_url()),
        credentials: sim.credentials(),
        page_path: "/objects/contacts",
        total: 200,
        stop: Stop::Kill,
    };
    interrupt_and_resume(&env, case, async || sim.request_log(), || sim.set_faults(Faults::none())).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_urls_resume_after_sigterm() {
    let sim = slow_sim(Provider::Salesforce, 200, 3).await;
    let env = Env::new(Backend::Postgres).await;
    env.manifest("salesforce", |_| {});
    let case = Case {
        provider: "salesforce",
        stream: "accounts",
        tenant: format!(
            "preset = \"bud_salesforce\"\n[providers.salesforce]\nvariables = {{ login_url = \"{}\" }}\n",
            sim.base_url()
        ),
        credentials: sim.credentials(),
        page_path: "/query",
        total: 200,
        stop: Stop::Term,
    };
    interrupt_and_resume(&env, case, async || sim.request_log(), || sim.set_faults(Faults::none())).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_resume_after_sigint() {
    let sim = slow_sim(Provider::Jira, 10, 200).await;
    let env = Env::new(Backend::Sqlite).await;
    env.manifest("jira", |_| {});
    let case = Case {
        provider: "jira",
        stream: "projects",
        tenant: format!("preset = \"aptem\"\n[providers.jira]\nenabled = true\nbase_url = \"{}\"\n", sim.base_url()),
        credentials: sim.credentials(),
        page_path: "/project/search",
        total: 200,
        stop: Stop::Int,
    };
    interrupt_and_resume(&env, case, async || sim.request_log(), || sim.set_faults(Faults::none())).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_stream_resumes_inside_its_parent_after_sigkill() {
    // Three channels of 60 messages: three pages each; the signal lands in the second.
    let sim = slow_sim(Provider::Slack, 180, 3).await;
    let env = Env::new(Backend::Postgres).await;
    env.manifest("slack", |_| {});
    let case = Case {
        provider: "slack",
        stream: "messages",
        tenant: format!("preset = \"aptem\"\n[providers.slack]\nenabled = true\nbase_url = \"{}\"\n", sim.api_base()),
        credentials: sim.credentials(),
        page_path: "/conversations.history",
        total: sim.record_count("messages") as i64,
        stop: Stop::Kill,
    };
    interrupt_and_resume(&env, case, async || sim.request_log(), || sim.set_faults(Faults::none())).await;
    env.finish().await;
}

/// Serves `total` records in pages of [`PAGE`] with `Link: <…?page=N>; rel="next"`.
struct LinkPages {
    total: usize,
    base: String,
}

impl Respond for LinkPages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let page: usize =
            request.url.query_pairs().find(|(k, _)| k == "page").and_then(|(_, v)| v.parse().ok()).unwrap_or(1);
        let from = (page - 1) * PAGE;
        let to = (from + PAGE).min(self.total);
        let data: Vec<_> = (from..to)
            .map(|i| json!({ "id": i, "name": format!("Company {i}"), "updated_at": "2024-03-01T09:00:00Z" }))
            .collect();
        let mut response = ResponseTemplate::new(200).set_body_json(json!({ "data": data })).set_delay(SLOW);
        if to < self.total {
            let next = format!("<{}/companies?page={}>; rel=\"next\"", self.base, page + 1);
            response = response.insert_header("Link", next.as_str());
        }
        response
    }
}

const LINKED: &str = r#"name = "linked"
title = "Linked"
category = "crm"
base_url = "https://api.linked.example"
default_schedule = "30m"

[auth]
kind = "bearer"
credentials = ["api_token"]
value = "Bearer {api_token}"

[streams.companies]
entity = "company"
[streams.companies.request]
path = "/companies"
records = "/data"
pagination = { kind = "link_header" }

[mappings.company]
external_id = { from = "id", transform = ["string"] }
name = "name"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_headers_resume_after_sigkill() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/companies"))
        .respond_with(LinkPages { total: 200, base: server.uri() })
        .mount(&server)
        .await;
    let env = Env::new(Backend::Sqlite).await;
    env.manifest_text("linked", LINKED);
    let case = Case {
        provider: "linked",
        stream: "companies",
        tenant: format!("preset = \"aptem\"\n[providers.linked]\nenabled = true\nbase_url = \"{}\"\n", server.uri()),
        credentials: json!({ "api_token": "secret" }),
        page_path: "/companies",
        total: 200,
        stop: Stop::Kill,
    };
    let log = async || {
        let requests = server.received_requests().await.unwrap_or_default();
        requests.iter().map(|r| format!("{} {}", r.method, r.url)).collect()
    };
    interrupt_and_resume(&env, case, log, || {}).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_signal_no_further_stream_starts() {
    let sim = slow_sim(Provider::Aptem, 100, 3).await;
    let env = Env::new(Backend::Sqlite).await;
    env.manifest("aptem", |m| {
        m["streams"]["learners"]["request"]["pagination"]["limit"] = toml::Value::Integer(PAGE as i64);
    });
    let tenant = format!("preset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\n", sim.api_base());
    env.tenant(&tenant, "aptem", &sim.credentials()).await;
    // Every enabled stream: learners first, then organizations.
    let child = env.cmd(&["sync", "--tenant", "acme", "--provider", "aptem"]).spawn().unwrap();
    env.run_with_pages(2).await;
    let output = stop(child, Stop::Int).await;
    assert!(output.contains("aptem/learners: cancelled"), "{output}");
    assert!(!output.contains("aptem/organizations"), "{output}");
    let runs = env.store.list_runs(Some(&env.tenant), 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(!sim.request_log().iter().any(|r| r.contains("/Organizations")));
    env.finish().await;
}
