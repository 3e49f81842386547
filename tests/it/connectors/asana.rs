//! The built-in Asana manifest against an HTTP double of the API (PROVIDERS.md §5): the
//! OAuth2 refresh as a form call at `/-/oauth_token`, projects per workspace and tasks
//! per project paged by `next_page.offset`, `modified_since` on the next run, and a 429
//! with `Retry-After` waited out; then the same manifest against the Asana simulator:
//! full and incremental syncs, paging edges and throttling.

use serde_json::{Value, json};
use tributary_simulator::{ASANA_WORKSPACE_GID, Faults, Provider, SimConfig, SimHandle, start};
use wiremock::matchers::{body_string_contains, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{Harness, modify_until_changed, ok, text};

fn task(gid: &str, name: &str, completed: bool, modified: &str) -> Value {
    json!({ "gid": gid, "name": name, "completed": completed, "assignee": { "gid": "u1", "name": "Ada Lovelace" }, "modified_at": modified })
}

fn api(p: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path(format!("/api/1.0{p}"))).and(header("authorization", "Bearer asana-access-1"))
}

#[tokio::test]
async fn asana_projects_and_tasks_sync_fully_then_incrementally() {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(method("POST"))
        .and(path("/-/oauth_token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=asana-refresh"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "asana-access-1", "token_type": "bearer", "expires_in": 3600,
            "data": { "id": 1, "gid": "u1", "name": "Ada Lovelace" },
        })))
        .expect(1)
        .mount(&server)
        .await;
    // Projects: two pages; the first request is throttled once.
    api("/projects")
        .and(query_param("workspace", "W1"))
        .respond_with(
            ResponseTemplate::new(429).insert_header("Retry-After", "1").set_body_json(
                json!({ "errors": [{ "message": "You've made too many requests and hit a rate limit." }] }),
            ),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    api("/projects")
        .and(query_param("workspace", "W1"))
        .and(query_param("limit", "100"))
        .and(query_param_is_missing("offset"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{ "gid": "P1", "name": "Launch" }],
            "next_page": { "offset": "eyJvIjoxfQ", "path": "/projects?workspace=W1&limit=100&offset=eyJvIjoxfQ", "uri": format!("{uri}/api/1.0/projects?offset=eyJvIjoxfQ") },
        })))
        .mount(&server)
        .await;
    api("/projects")
        .and(query_param("offset", "eyJvIjoxfQ"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{ "gid": "P2", "name": "Hiring" }], "next_page": null,
        })))
        .mount(&server)
        .await;
    // Tasks of P1: two pages; of P2: none.
    api("/tasks")
        .and(query_param("project", "P1"))
        .and(query_param_is_missing("offset"))
        .and(query_param_is_missing("modified_since"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [task("T1", "Draft plan", false, "2026-03-01T10:00:00.000Z")],
            "next_page": { "offset": "b2Zm", "path": "/tasks?offset=b2Zm", "uri": "" },
        })))
        .expect(1)
        .mount(&server)
        .await;
    api("/tasks")
        .and(query_param("project", "P1"))
        .and(query_param("offset", "b2Zm"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [task("T2", "Book venue", true, "2026-03-02T10:00:00.000Z")], "next_page": null,
        })))
        .expect(1)
        .mount(&server)
        .await;
    // An empty project leaves no cursor: both runs read it whole.
    api("/tasks")
        .and(query_param("project", "P2"))
        .and(query_param_is_missing("modified_since"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [], "next_page": null })))
        .expect(2)
        .mount(&server)
        .await;
    // The next run asks what changed since the last value seen (less a second).
    api("/tasks")
        .and(query_param("project", "P1"))
        .and(query_param("modified_since", "2026-03-02T09:59:59.000Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [task("T2", "Book venue", true, "2026-03-02T10:00:00.000Z"), task("T1", "Draft plan v2", false, "2026-03-03T08:00:00.000Z")],
            "next_page": null,
        })))
        .expect(1)
        .mount(&server)
        .await;

    let tenant = format!(
        "preset = \"aptem\"\n[providers.asana]\nenabled = true\nbase_url = \"{uri}/api/1.0\"\n\
         variables = {{ auth_url = \"{uri}\", workspace = \"W1\" }}\n"
    );
    let credentials = json!({ "client_id": "cid", "client_secret": "csecret", "refresh_token": "asana-refresh" });
    let h = Harness::with_connectors("asana", &tenant, &credentials, None).await;

    let projects = ok(&h.sync("projects").await).clone();
    assert_eq!((projects.stats.fetched, projects.stats.inserted, projects.stats.rate_limit_waits), (2, 2, 1));
    let stored = h.records("project").await;
    assert_eq!(stored["P2"].data, json!({ "external_id": "P2", "key": "P2", "name": "Hiring" }));

    let full = ok(&h.sync("tasks").await).clone();
    assert_eq!((full.stats.fetched, full.stats.inserted), (2, 2));
    let tasks = h.records("issue").await;
    assert_eq!(
        tasks["T2"].data,
        json!({
            "external_id": "T2", "key": "T2", "summary": "Book venue", "status": "true",
            "assignee": "Ada Lovelace", "project_key": "P1", "updated_at": "2026-03-02T10:00:00.000Z",
        })
    );

    let inc = ok(&h.sync("tasks").await).clone();
    assert_eq!((inc.stats.fetched, inc.stats.updated, inc.stats.unchanged), (2, 1, 1));
    assert_eq!(h.records("issue").await["T1"].data["summary"], "Draft plan v2");
    server.verify().await;
}

/// Asana is in no preset: the tenant switches it on and names its workspace.
fn tenant(sim: &SimHandle) -> String {
    format!(
        "preset = \"aptem\"\n[providers.asana]\nenabled = true\nbase_url = \"{}\"\n\
         variables = {{ auth_url = \"{}\", workspace = \"{ASANA_WORKSPACE_GID}\" }}\n",
        sim.api_base(),
        sim.base_url()
    )
}

/// A stored task against the record the simulator serves.
fn assert_task(row: &Value, expected: &Value) {
    assert_eq!(row["external_id"], expected["gid"]);
    assert_eq!(row["key"], expected["gid"]);
    assert_eq!(row["summary"], expected["name"]);
    assert_eq!(row["status"], json!(expected["completed"].to_string()));
    assert_eq!(row["assignee"], expected["assignee"].get("name").cloned().unwrap_or(Value::Null));
    assert_eq!(row["project_key"], expected["projects"][0]["gid"]);
    assert_eq!(row["updated_at"], expected["modified_at"]);
}

#[tokio::test]
async fn asana_simulator_full_sync_then_incremental_after_modify_and_add() {
    let n = 450;
    let sim = start(SimConfig::new(Provider::Asana, n).parents(3)).await.unwrap();
    let h = Harness::new("asana", &tenant(&sim), &sim).await;

    let projects = ok(&h.sync("projects").await).clone();
    assert_eq!((projects.stats.inserted, projects.stats.pages), (3, 1));
    let stored = h.records("project").await;
    for p in 0..3 {
        let expected = sim.expected_record("projects", p).unwrap();
        let row = &stored[&text(&expected["gid"])].data;
        assert_eq!((&row["key"], &row["name"]), (&expected["gid"], &expected["name"]));
    }
    assert_eq!(sim.requests_for("/-/oauth_token"), 1, "one form refresh");

    let full = ok(&h.sync("tasks").await).clone();
    assert_eq!((full.stats.fetched, full.stats.inserted), (n as i64, n as i64));
    // 150 tasks a project: a page of 100 and one of 50 each.
    assert_eq!(full.stats.pages, 6);
    let stored = h.records("issue").await;
    assert_eq!(stored.len() as u64, n);
    for i in [0, 1, 99, 100, 149, 150, 300, n - 1] {
        let expected = sim.expected_record("tasks", i).unwrap();
        assert_task(&stored[&text(&expected["gid"])].data, &expected);
    }

    let changed = [3u64, 140, 200];
    for i in changed {
        modify_until_changed(&sim, "tasks", i, &["modified_at", "completed_at"]);
    }
    let added = sim.add("tasks", 1).unwrap().start;
    let log_from = sim.request_log().len();
    let inc = ok(&h.sync("tasks").await).clone();
    assert_eq!((inc.stats.inserted, inc.stats.updated), (1, 3));
    // The one-second lookback re-reads at most the boundary task of each project.
    assert!((4..=7).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    assert_eq!(inc.stats.unchanged, inc.stats.fetched - 4);
    // The projects are listed again, then each project's tasks asked for once.
    let requests: Vec<String> =
        sim.request_log()[log_from..].iter().filter(|r| r.starts_with("GET /api/1.0/tasks?")).cloned().collect();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests.iter().all(|r| r.contains("modified_since=")), "{requests:?}");
    let stored = h.records("issue").await;
    assert_eq!(stored.len() as u64, n + 1);
    for i in changed.into_iter().chain([added]) {
        let expected = sim.expected_record("tasks", i).unwrap();
        assert_task(&stored[&text(&expected["gid"])].data, &expected);
    }
}

#[tokio::test]
async fn asana_simulator_pagination_edges() {
    super::assert_pagination_edges(
        100,
        |n| SimConfig::new(Provider::Asana, n).parents(1),
        tenant,
        "asana",
        "tasks",
        "issue",
    )
    .await;
}

#[tokio::test]
async fn asana_simulator_throttling_is_waited_out_as_retry_after_says() {
    let n = 320;
    let faults = Faults::none().rate_limit_every(3).retry_after_secs(1);
    let sim = start(SimConfig::new(Provider::Asana, n).parents(2).page_size_cap(40).faults(faults)).await.unwrap();
    let h = Harness::new("asana", &tenant(&sim), &sim).await;
    let run = ok(&h.sync("tasks").await).clone();
    assert_eq!((run.stats.fetched, run.stats.inserted), (n as i64, n as i64));
    assert_eq!(h.records("issue").await.len() as u64, n);
    // Every third data request was a 429: each one waited out, none a failure.
    let requests = sim.data_request_count() as i64;
    assert_eq!(run.stats.rate_limit_waits, requests / 3, "{:?}", run.stats);
    assert_eq!(run.stats.retries, 0);
    assert!(run.stats.rate_limit_wait_ms >= 1_000 * run.stats.rate_limit_waits, "{:?}", run.stats);
}
