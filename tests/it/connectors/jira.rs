use std::collections::BTreeMap;

use serde_json::{Value, json};
use tributary::model::{ConnectionStatus, Owner, RunOutcome};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};

/// The search page size the manifest asks for (`maxResults = 100`).
const PAGE: u64 = 100;

/// Jira is in no preset: the tenant switches it on next to its LMS.
fn tenant(sim: &SimHandle) -> String {
    format!("preset = \"aptem\"\n[providers.jira]\nenabled = true\nbase_url = \"{}\"\n", sim.base_url())
}

fn assert_issue(row: &Value, expected: &Value) {
    let f = &expected["fields"];
    assert_eq!(row["external_id"], expected["id"]);
    assert_eq!(row["key"], expected["key"]);
    assert_eq!(row["summary"], f["summary"]);
    assert_eq!(row["status"], f["status"]["name"]);
    assert_eq!(row["assignee"], f["assignee"]["displayName"]);
    assert_eq!(row["project_key"], f["project"]["key"]);
    // `2024-06-01T10:00:00.123+0000` → `2024-06-01T10:00:00.123Z`.
    let updated = f["updated"].as_str().unwrap();
    assert_eq!(row["updated_at"], json!(format!("{}Z", &updated[..23])));
}

/// The job cursor of a child stream: one cursor per project id.
fn cursors(run: &tributary::model::RunRow) -> BTreeMap<String, String> {
    serde_json::from_str(run.stats.cursor_after.as_deref().expect("a cursor")).expect("a JSON object of cursors")
}

#[tokio::test]
async fn issues_of_every_project_then_incremental_per_project() {
    let n = 450;
    let sim = start(SimConfig::new(Provider::Jira, n).parents(3)).await.unwrap();
    let h = Harness::new("jira", &tenant(&sim), &sim).await;

    let projects = h.sync("projects").await;
    ok(&projects);
    assert_eq!((projects.stats.inserted, projects.stats.pages), (3, 1));
    let stored = h.records("project").await;
    let mut keys = Vec::new();
    for p in 0..3 {
        let expected = sim.expected_record("projects", p).unwrap();
        let row = &stored[&text(&expected["id"])].data;
        assert_eq!((&row["key"], &row["name"]), (&expected["key"], &expected["name"]));
        keys.push(text(&expected["key"]));
    }

    let run = h.sync("issues").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.updated), (n as i64, n as i64, 0));
    // 150 issues per project: a page of 100 and one of 50 each.
    assert_eq!(run.stats.pages, 6);
    let stored = h.records("issue").await;
    assert_eq!(stored.len() as u64, n);
    for key in &keys {
        let expected = (0..n)
            .filter(|i| sim.expected_record("issues", *i).unwrap()["fields"]["project"]["key"] == json!(key))
            .count();
        let got = stored.values().filter(|r| r.data["project_key"] == json!(key)).count();
        assert_eq!((got, expected), (150, 150), "issues of {key}");
    }
    for i in [0, 1, 99, 100, 149, 150, 300, n - 1] {
        let expected = sim.expected_record("issues", i).unwrap();
        assert_issue(&stored[&text(&expected["id"])].data, &expected);
    }
    let before = cursors(&run);
    let project_ids: Vec<String> = (0..3).map(|p| text(&sim.expected_record("projects", p).unwrap()["id"])).collect();
    assert_eq!(before.keys().cloned().collect::<Vec<_>>(), project_ids);

    // Issues change in the first and last project; one is added (to the first).
    let changed = [3u64, 140, 449];
    for i in changed {
        modify_until_changed(&sim, "issues", i, &["fields.updated"]);
    }
    let added = sim.add("issues", 1).unwrap().start;
    assert_eq!(sim.parent_of("issues", added), Some(0));
    let inc = h.sync("issues").await;
    ok(&inc);
    assert_eq!(inc.cursor_before, run.stats.cursor_after);
    assert_eq!((inc.stats.inserted, inc.stats.updated), (1, 3));
    // The one-minute lookback re-reads at most the boundary issue of each project.
    assert!((4..=7).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    assert_eq!(inc.stats.unchanged, inc.stats.fetched - 4);
    let after = cursors(&inc);
    assert!(after[&project_ids[0]] > before[&project_ids[0]]);
    assert_eq!(after[&project_ids[1]], before[&project_ids[1]], "nothing changed there");
    assert!(after[&project_ids[2]] > before[&project_ids[2]]);
    let stored = h.records("issue").await;
    assert_eq!(stored.len() as u64, n + 1);
    for i in changed.into_iter().chain([added]) {
        let expected = sim.expected_record("issues", i).unwrap();
        assert_issue(&stored[&text(&expected["id"])].data, &expected);
    }
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_page_and_partial_last_page() {
    super::assert_pagination_edges(
        PAGE,
        |n| SimConfig::new(Provider::Jira, n).parents(1),
        tenant,
        "jira",
        "issues",
        "issue",
    )
    .await;
}

#[tokio::test]
async fn many_projects_page_by_offset_and_revoked_credentials_need_reauth() {
    let sim = start(SimConfig::new(Provider::Jira, 60).parents(53)).await.unwrap();
    let h = Harness::new("jira", &tenant(&sim), &sim).await;
    let projects = h.sync("projects").await;
    ok(&projects);
    assert_eq!((projects.stats.inserted, projects.stats.pages), (53, 2));
    let issues = h.sync("issues").await;
    ok(&issues);
    assert_eq!(issues.stats.inserted, 60);
    assert_eq!(cursors(&issues).len(), 53, "one cursor per project");

    sim.revoke();
    let failed = h.sync("issues").await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    assert!(
        failed.stats.error.as_deref().unwrap_or("").contains("Client must be authenticated"),
        "{:?}",
        failed.stats.error
    );
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::NeedsReauth);
}
