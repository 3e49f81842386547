//! The built-in Asana manifest against the Asana simulator (PROVIDERS.md §5): the OAuth2
//! refresh as a form call at `/-/oauth_token`, the workspaces listed, projects per
//! workspace and tasks per project paged by `next_page.offset`, `modified_since` (the last value seen less a
//! second) on the next run, an empty project read whole each time, and 429s with
//! `Retry-After` waited out.

use serde_json::{Value, json};
use tributary_simulator::{ASANA_WORKSPACE_GID, Faults, Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};

/// Asana is in no preset: the tenant switches it on. It names no workspace: the
/// workspaces come from `/workspaces`.
fn tenant(sim: &SimHandle) -> String {
    format!(
        "preset = \"aptem\"\n[providers.asana]\nenabled = true\nbase_url = \"{}\"\n\
         variables = {{ auth_url = \"{}\" }}\n",
        sim.api_base(),
        sim.base_url()
    )
}

#[tokio::test]
async fn asana_simulator_workspaces_are_listed_and_the_projects_of_each_read() {
    let sim = start(SimConfig::new(Provider::Asana, 10).parents(3)).await.unwrap();
    let h = Harness::new("asana", &tenant(&sim), &sim).await;

    let full = ok(&h.sync("workspaces").await).clone();
    assert_eq!((full.stats.fetched, full.stats.inserted, full.stats.pages), (1, 1, 1), "{:?}", full.stats);
    let stored = h.records("workspace").await;
    assert_eq!(stored.keys().collect::<Vec<_>>(), [ASANA_WORKSPACE_GID]);
    assert_eq!(stored[ASANA_WORKSPACE_GID].data["name"], json!("Sim Workspace"));
    // The listing has no `modified_since`: the next run reads it whole and stores nothing new.
    let again = ok(&h.sync("workspaces").await).clone();
    assert_eq!((again.stats.fetched, again.stats.inserted, again.stats.unchanged), (1, 0, 1), "{:?}", again.stats);

    // Projects are asked for per listed workspace, with no variable set by the tenant.
    let from = sim.request_log().len();
    let projects = ok(&h.sync("projects").await).clone();
    assert_eq!(projects.stats.inserted, 3);
    let asked: Vec<String> = sim.request_log()[from..]
        .iter()
        .filter(|r| r.starts_with("GET /api/1.0/workspaces") || r.starts_with("GET /api/1.0/projects"))
        .cloned()
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].starts_with("GET /api/1.0/workspaces?limit=100"), "{asked:?}");
    assert!(asked[1].contains(&format!("workspace={ASANA_WORKSPACE_GID}")), "{asked:?}");

    // A tenant file that still names a workspace is refused, naming the variable.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.toml");
    let body = tenant(&sim).replace(" }\n", ", workspace = \"1200000000000001\" }\n");
    std::fs::write(&file, format!("id = \"old\"\nname = \"Old\"\nsubdomain = \"old\"\n{body}")).unwrap();
    let err = h.catalog.tenant_file(&file).expect_err("`workspace` is no variable of `asana` any more").to_string();
    assert!(err.contains("providers.asana.variables.workspace: unknown variable for `asana`"), "{err}");
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
    let seen: Vec<Option<chrono::DateTime<chrono::Utc>>> = (0..n).map(|i| sim.updated_at("tasks", i)).collect();
    let full_seen = |_: &SimHandle, i: u64| seen[i as usize];
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
    // Each asks for what changed since its project's last `modified_at` seen, less a second.
    for p in 0..3u64 {
        let last =
            (0..n).filter(|i| sim.parent_of("tasks", *i) == Some(p)).filter_map(|i| full_seen(&sim, i)).max().unwrap();
        let since = (last - chrono::TimeDelta::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let project = text(&sim.expected_record("projects", p).unwrap()["gid"]);
        let wanted = format!("modified_since={}", since.replace(':', "%3A"));
        assert!(
            requests.iter().any(|r| r.contains(&format!("project={project}")) && r.contains(&wanted)),
            "{wanted} for {project}: {requests:?}"
        );
    }
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

#[tokio::test]
async fn asana_simulator_empty_project_leaves_no_cursor_and_is_read_whole_again() {
    // Two tasks over three projects: one has none.
    let sim = start(SimConfig::new(Provider::Asana, 2).parents(3)).await.unwrap();
    let h = Harness::new("asana", &tenant(&sim), &sim).await;
    let empty = (0..3u64).find(|p| (0..2).all(|i| sim.parent_of("tasks", i) != Some(*p))).expect("an empty project");
    let empty = text(&sim.expected_record("projects", empty).unwrap()["gid"]);
    for _ in 0..2 {
        let run = ok(&h.sync("tasks").await).clone();
        assert_eq!(run.stats.inserted + run.stats.unchanged, 2);
    }
    let asks: Vec<String> = sim.request_log().into_iter().filter(|r| r.contains(&format!("project={empty}"))).collect();
    assert_eq!(asks.len(), 2, "{asks:?}");
    assert!(asks.iter().all(|r| !r.contains("modified_since")), "{asks:?}");
}

#[tokio::test]
async fn asana_simulator_deleted_tasks_come_from_each_projects_events_feed() {
    let n = 40;
    let sim = start(SimConfig::new(Provider::Asana, n).parents(2)).await.unwrap();
    let h = Harness::new("asana", &tenant(&sim), &sim).await;
    ok(&h.sync("tasks").await);
    assert_eq!(h.records("issue").await.len() as u64, n);
    let events = |from: usize| -> Vec<String> {
        sim.request_log()[from..].iter().filter(|r| r.starts_with("GET /api/1.0/events?")).cloned().collect()
    };

    // The first run only takes each project's first token: a request without one is
    // answered 412 with a fresh one, and nothing else is asked.
    let from = sim.request_log().len();
    let first = ok(&h.sync("task_deletions").await).clone();
    assert_eq!((first.stats.fetched, first.stats.updated), (0, 0));
    let asked = events(from);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|r| !r.contains("sync=")), "{asked:?}");
    let tokens: serde_json::Map<String, Value> =
        serde_json::from_str(first.stats.cursor_after.as_deref().expect("a token per project")).unwrap();
    assert_eq!(tokens.len(), 2, "{tokens:?}");

    // A deleted task is marked deleted; a changed one is an event too, but only a stub:
    // this stream leaves it to `tasks`.
    let (gone, changed) = (5u64, 6u64);
    let changed_before =
        h.records("issue").await[&text(&sim.expected_record("tasks", changed).unwrap()["gid"])].clone();
    modify_until_changed(&sim, "tasks", changed, &["modified_at", "completed_at"]);
    let gone_gid = text(&sim.expected_record("tasks", gone).unwrap()["gid"]);
    assert!(sim.delete("tasks", gone));
    let from = sim.request_log().len();
    let second = ok(&h.sync("task_deletions").await).clone();
    assert_eq!((second.stats.fetched, second.stats.updated, second.stats.inserted), (1, 1, 0), "{:?}", second.stats);
    let asked = events(from);
    assert_eq!(asked.len(), 2, "one request per project, each with its token: {asked:?}");
    assert!(asked.iter().all(|r| r.contains("sync=")), "{asked:?}");
    let stored = h.records("issue").await;
    assert!(stored[&gone_gid].deleted_at.is_some(), "the deleted task is marked deleted");
    assert_eq!(stored.values().filter(|r| r.deleted_at.is_some()).count(), 1);
    let changed_after = &stored[&text(&sim.expected_record("tasks", changed).unwrap()["gid"])];
    assert_eq!(changed_after.data, changed_before.data, "an event stub never overwrites the stored task");

    // Nothing happened since: the feed reports nothing.
    let quiet = ok(&h.sync("task_deletions").await).clone();
    assert_eq!((quiet.stats.fetched, quiet.stats.updated), (0, 0));

    // Expired tokens: each project's 412 carries a fresh one, which is kept (no init
    // request), the run says so, and a deletion after it is seen by the next run.
    sim.expire_sync_states();
    let from = sim.request_log().len();
    let expired = ok(&h.sync("task_deletions").await).clone();
    let note = expired.stats.note.clone().unwrap_or_default();
    assert!(note.contains("expired (HTTP 412") && note.contains("the feed starts again"), "{note}");
    let asked = events(from);
    assert_eq!(asked.len(), 2, "{asked:?}");
    let later = 30u64;
    let later_gid = text(&sim.expected_record("tasks", later).unwrap()["gid"]);
    assert!(sim.delete("tasks", later));
    let after = ok(&h.sync("task_deletions").await).clone();
    assert_eq!((after.stats.fetched, after.stats.updated), (1, 1), "{:?}", after.stats);
    assert!(h.records("issue").await[&later_gid].deleted_at.is_some());
}

#[tokio::test]
async fn asana_simulator_events_over_one_response_follow_has_more() {
    let n = 300;
    let sim = start(SimConfig::new(Provider::Asana, n).parents(1)).await.unwrap();
    let h = Harness::new("asana", &tenant(&sim), &sim).await;
    ok(&h.sync("tasks").await);
    ok(&h.sync("task_deletions").await);
    // 150 deletions in one project: two responses of the feed (100 and 50).
    for i in 0..150 {
        assert!(sim.delete("tasks", i * 2));
    }
    let from = sim.request_log().len();
    let run = ok(&h.sync("task_deletions").await).clone();
    assert_eq!((run.stats.fetched, run.stats.updated), (150, 150), "{:?}", run.stats);
    let asked: Vec<String> =
        sim.request_log()[from..].iter().filter(|r| r.starts_with("GET /api/1.0/events?")).cloned().collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    let stored = h.records("issue").await;
    assert_eq!(stored.values().filter(|r| r.deleted_at.is_some()).count(), 150);
}

/// Asana's answer to an expired sync token says to fetch the full dataset: the fresh
/// token is kept, and `tasks` (named by `state.expired_full_pass`) gets a full pass that
/// sweeps, due at once, so tasks deleted while the token was expired — which the feed
/// never reports — end up deleted.
#[tokio::test]
async fn asana_simulator_an_expired_events_token_makes_tasks_read_in_full_and_sweep() {
    let n = 40;
    let sim = start(SimConfig::new(Provider::Asana, n).parents(2)).await.unwrap();
    let h = Harness::new("asana", &tenant(&sim), &sim).await;
    let task_requests = |from: usize| -> Vec<String> {
        sim.request_log()[from..].iter().filter(|r| r.starts_with("GET /api/1.0/tasks?")).cloned().collect()
    };
    ok(&h.sync("tasks").await);
    ok(&h.sync("task_deletions").await);
    // No sweep is configured: an ordinary tasks run is incremental.
    let from = sim.request_log().len();
    let quiet = ok(&h.sync("tasks").await).clone();
    assert!(task_requests(from).iter().all(|r| r.contains("modified_since=")), "{:?}", task_requests(from));
    assert_eq!(quiet.stats.note, None);

    // The tokens expire; two tasks are deleted before the feed is asked again.
    sim.expire_sync_states();
    let gone: Vec<String> =
        [4u64, 17].iter().map(|i| text(&sim.expected_record("tasks", *i).unwrap()["gid"])).collect();
    assert!(sim.delete("tasks", 4) && sim.delete("tasks", 17));
    let expired = ok(&h.sync("task_deletions").await).clone();
    // The fresh token carries nothing of the gap.
    assert_eq!((expired.stats.fetched, expired.stats.updated), (0, 0), "{:?}", expired.stats);
    let note = expired.stats.note.clone().unwrap_or_default();
    assert!(note.contains("expired (HTTP 412"), "{note}");
    assert!(note.contains("a full pass that sweeps is due for `tasks`"), "{note}");
    assert!(h.records("issue").await.values().all(|r| r.deleted_at.is_none()));
    // The daemon would run it now: the job is due.
    let jobs = h.store.list_jobs(&h.tenant).await.unwrap();
    let tasks_job = jobs.iter().find(|j| j.stream.as_str() == "tasks").unwrap();
    assert!(tasks_job.next_run_at.is_some_and(|at| at <= chrono::Utc::now()), "{tasks_job:?}");

    // The tasks run reads in full (no `modified_since`) and sweeps what it did not list.
    let from = sim.request_log().len();
    let full = ok(&h.sync("tasks").await).clone();
    let asked = task_requests(from);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|r| !r.contains("modified_since")), "{asked:?}");
    assert_eq!(full.stats.fetched, n as i64 - 2);
    let note = full.stats.note.clone().unwrap_or_default();
    assert!(note.contains(&format!("swept 2 of {n} records not seen in the full pass")), "{note}");
    let stored = h.records("issue").await;
    let deleted: Vec<&String> = stored.values().filter(|r| r.deleted_at.is_some()).map(|r| &r.external_id).collect();
    let mut expected: Vec<&String> = gone.iter().collect();
    expected.sort();
    assert_eq!(deleted, expected);
    let issue = tributary::model::EntityName::parse("issue").unwrap();
    let changes = h.store.list_changes(&h.tenant, Some(&issue), 0, 1_000).await.unwrap();
    for gid in &gone {
        let change = changes.iter().find(|c| &c.external_id == gid).unwrap();
        assert_eq!((change.kind, change.run_id), (tributary::model::ChangeKind::Deleted, Some(full.id)));
    }

    // That pass is done: the next run is incremental again and sweeps nothing.
    let from = sim.request_log().len();
    let after = ok(&h.sync("tasks").await).clone();
    assert!(task_requests(from).iter().all(|r| r.contains("modified_since=")), "{:?}", task_requests(from));
    assert!(!after.stats.note.unwrap_or_default().contains("swept"));
}
