//! GitLab with a personal access token: `X-Next-Page` paging and `updated_after`.

use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};

fn tenant(sim: &SimHandle) -> String {
    format!("preset = \"aptem\"\n[providers.gitlab]\nenabled = true\nbase_url = \"{}\"\n", sim.api_base())
}

#[tokio::test]
async fn projects_issues_and_merge_requests_page_by_x_next_page_then_read_incrementally() {
    let sim = start(SimConfig::new(Provider::GitLab, 20).parents(5).page_size_cap(2)).await.unwrap();
    let h = Harness::new("gitlab", &tenant(&sim), &sim).await;
    let projects = h.sync("projects").await;
    ok(&projects);
    assert_eq!((projects.stats.inserted, projects.stats.pages), (5, 3));
    let stored = h.records("project").await;
    for i in 0..5 {
        let expected = sim.expected_record("projects", i).unwrap();
        assert_eq!(stored[&text(&expected["id"])].data["key"], expected["path_with_namespace"]);
    }

    let issues = h.sync("issues").await;
    ok(&issues);
    assert_eq!((issues.stats.fetched, issues.stats.inserted), (20, 20));
    // Four issues per project, two to a page.
    assert_eq!(issues.stats.pages, 10);
    let stored = h.records("issue").await;
    for i in [0u64, 11, 19] {
        let expected = sim.expected_record("issues", i).unwrap();
        let row = &stored[&text(&expected["id"])].data;
        assert_eq!(row["key"], expected["references"]["full"]);
        assert_eq!(row["summary"], expected["title"]);
        assert_eq!(row["status"], expected["state"]);
        assert_eq!(row["project_key"], text(&expected["project_id"]));
    }

    modify_until_changed(&sim, "issues", 11, &["updated_at", "closed_at"]);
    let added = sim.add("issues", 1).unwrap().start;
    let inc = h.sync("issues").await;
    ok(&inc);
    assert_eq!((inc.stats.inserted, inc.stats.updated), (1, 1));
    // `updated_after` includes its boundary: each project's latest issue comes back unchanged.
    assert!((2..=7).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    let stored = h.records("issue").await;
    for i in [11, added] {
        let expected = sim.expected_record("issues", i).unwrap();
        assert_eq!(stored[&text(&expected["id"])].data["summary"], expected["title"]);
    }

    let mrs = h.sync("merge_requests").await;
    ok(&mrs);
    assert_eq!(mrs.stats.inserted, 20);
    let expected = sim.expected_record("merge_requests", 3).unwrap();
    let row = &h.records("merge_request").await[&text(&expected["id"])].data;
    assert_eq!(row["key"], expected["references"]["full"]);
    assert_eq!(row["source_branch"], expected["source_branch"]);
    assert_eq!(row["status"], expected["state"]);
}
