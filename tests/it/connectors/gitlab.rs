//! GitLab with a personal access token (`gitlab`): `X-Next-Page` paging and
//! `updated_after`; through OAuth2 (`gitlab_oauth`, a variant of it) with rotating
//! refresh tokens.

use serde_json::Value;
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

    // Merge requests read incrementally too: each project asked with `updated_after`,
    // the changed and the added one stored.
    modify_until_changed(&sim, "merge_requests", 3, &["updated_at", "closed_at", "merged_at"]);
    let added = sim.add("merge_requests", 1).unwrap().start;
    let from = sim.request_log().len();
    let inc = ok(&h.sync("merge_requests").await).clone();
    assert_eq!((inc.stats.inserted, inc.stats.updated), (1, 1), "{:?}", inc.stats);
    assert!((2..=7).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    let asked: Vec<String> =
        sim.request_log()[from..].iter().filter(|r| r.contains("/merge_requests")).cloned().collect();
    assert!(asked.len() >= 5 && asked.iter().all(|r| r.contains("updated_after=")), "{asked:?}");
    let stored = h.records("merge_request").await;
    assert_eq!(stored.len(), 21);
    for i in [3, added] {
        let expected = sim.expected_record("merge_requests", i).unwrap();
        let row = &stored[&text(&expected["id"])].data;
        assert_eq!((&row["title"], &row["status"]), (&expected["title"], &expected["state"]));
    }
}

/// `gitlab_oauth` is `gitlab` with an OAuth2 `[auth]`: the same streams read with a
/// bearer token renewed at `/oauth/token`, the rotated refresh token kept for the next
/// renewal (the simulator revokes a grant whose spent refresh token comes back).
#[tokio::test]
async fn the_oauth_variant_reads_the_same_streams_with_rotating_refresh_tokens() {
    let sim = start(SimConfig::new(Provider::GitLab, 12).parents(3)).await.unwrap();
    let creds: Value = sim.oauth_credentials().expect("GitLab OAuth credentials");
    let toml = format!(
        "preset = \"aptem\"\n[providers.gitlab_oauth]\nenabled = true\nbase_url = \"{}\"\n\
         variables = {{ auth_url = \"{}\" }}\n",
        sim.api_base(),
        sim.base_url()
    );
    let h = Harness::with_connectors("gitlab_oauth", &toml, &creds, None).await;
    let variant = h.catalog.manifests.get("gitlab_oauth").unwrap();
    let base = h.catalog.manifests.get("gitlab").unwrap();
    assert_eq!(variant.auth.kind, tributary::config::AuthKind::Oauth2RefreshToken);
    assert_eq!(variant.streams, base.streams);
    let token_calls = || sim.requests_for("/oauth/token");

    let projects = ok(&h.sync("projects").await).clone();
    assert_eq!(projects.stats.inserted, 3);
    let issues = ok(&h.sync("issues").await).clone();
    assert_eq!(issues.stats.inserted as u64, sim.record_count("issues"));
    assert_eq!(token_calls(), 1, "one token for both runs");
    let log = sim.request_log();
    assert!(log.iter().any(|r| r.starts_with("GET /api/v4/projects")), "{log:?}");

    // An expired access token: the next run renews it with the rotated refresh token.
    for round in 0..2 {
        sim.expire_access_tokens();
        modify_until_changed(&sim, "issues", round, &["updated_at"]);
        let run = ok(&h.sync("issues").await).clone();
        assert_eq!(run.stats.updated, 1, "round {round}: {:?}", run.stats);
    }
    assert_eq!(token_calls(), 3, "each renewal sent the refresh token the last one returned");
}
