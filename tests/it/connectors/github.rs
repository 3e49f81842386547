//! GitHub with a personal token (`github`) and as an App installation (`github_app`):
//! `Link` paging, `since`, conditional requests (`304` = no change), client-side
//! incremental for pull requests and the App's JWT → installation token flow.

use std::time::Duration;

use serde_json::Value;
use tributary::model::{ConnectionStatus, Owner, RunOutcome};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};

fn tenant(sim: &SimHandle, provider: &str) -> String {
    format!("preset = \"aptem\"\n[providers.{provider}]\nenabled = true\nbase_url = \"{}\"\n", sim.base_url())
}

fn note(run: &tributary::model::RunRow) -> String {
    run.stats.note.clone().unwrap_or_default()
}

/// The stored key of a GitHub issue or pull request: `owner/repo#number`.
fn key_of(sim: &SimHandle, stream: &str, i: u64, expected: &Value) -> String {
    let repo = sim.parent_of(stream, i).unwrap();
    format!("sim-org/repo-{:04}#{}", repo + 1, expected["number"])
}

#[tokio::test]
async fn issues_sync_fully_then_unchanged_listings_answer_304_and_changes_come_through() {
    let sim = start(SimConfig::new(Provider::GitHub, 30).parents(3).page_size_cap(4)).await.unwrap();
    let h = Harness::new("github", &tenant(&sim, "github"), &sim).await;

    let repos = h.sync("repositories").await;
    ok(&repos);
    assert_eq!(repos.stats.inserted, 3);
    let projects = h.records("project").await;
    for i in 0..3 {
        let expected = sim.expected_record("repositories", i).unwrap();
        let row = &projects[&text(&expected["id"])];
        assert_eq!(row.data["key"], expected["full_name"]);
        assert_eq!(row.data["name"], expected["name"]);
    }

    let full = h.sync("issues").await;
    ok(&full);
    assert_eq!((full.stats.fetched, full.stats.inserted), (30, 30));
    // Three repositories of ten issues, four to a page: three pages each, linked by `Link`.
    assert_eq!(full.stats.pages, 9);
    let stored = h.records("issue").await;
    for i in [0u64, 7, 29] {
        let expected = sim.expected_record("issues", i).unwrap();
        let row = &stored[&text(&expected["id"])].data;
        assert_eq!(row["key"], key_of(&sim, "issues", i, &expected));
        assert_eq!(row["summary"], expected["title"]);
        assert_eq!(row["status"], expected["state"]);
        assert_eq!(row["assignee"], expected["assignee"].get("login").cloned().unwrap_or(Value::Null));
        assert_eq!(row["project_key"], format!("sim-org/repo-{:04}", sim.parent_of("issues", i).unwrap() + 1));
    }
    let state = full.stats.cursor_after.clone().expect("a stored state");
    assert!(state.contains("validators") && state.contains("W/"), "{state}");

    // From the cursor on, `since` lists each repository's latest issue again (its tag is
    // new: the request is another one); then the same listings are not modified.
    let second = h.sync("issues").await;
    ok(&second);
    assert_eq!((second.stats.inserted, second.stats.updated), (0, 0));
    // Timestamps are whole seconds: a repository's latest second may hold two issues.
    assert!(second.stats.fetched >= 3, "fetched {}", second.stats.fetched);
    let before = sim.data_request_count();
    let third = h.sync("issues").await;
    ok(&third);
    // The repositories, then one request per repository.
    assert_eq!((third.stats.fetched, third.stats.http_calls), (0, 4));
    assert_eq!(sim.data_request_count() - before, 4);
    assert!(note(&third).contains("3 listing(s) not modified"), "{:?}", third.stats.note);

    modify_until_changed(&sim, "issues", 7, &["updated_at"]);
    let fourth = h.sync("issues").await;
    ok(&fourth);
    assert_eq!((fourth.stats.inserted, fourth.stats.updated), (0, 1));
    assert!(note(&fourth).contains("2 listing(s) not modified"), "{:?}", fourth.stats.note);
    let expected = sim.expected_record("issues", 7).unwrap();
    assert_eq!(h.records("issue").await[&text(&expected["id"])].data["summary"], expected["title"]);
}

/// Pull requests have no `since`: the whole listing is read and what is not newer than
/// the cursor is dropped before mapping, so the run reports only the real changes.
#[tokio::test]
async fn pull_requests_are_incremental_on_the_client_side() {
    let n = 24;
    let sim = start(SimConfig::new(Provider::GitHub, n).parents(3).page_size_cap(4)).await.unwrap();
    let h = Harness::new("github", &tenant(&sim, "github"), &sim).await;
    let full = h.sync("pull_requests").await;
    ok(&full);
    assert_eq!((full.stats.fetched, full.stats.inserted), (n as i64, n as i64));
    let stored = h.records("merge_request").await;
    for i in [1u64, 13] {
        let expected = sim.expected_record("pull_requests", i).unwrap();
        let row = &stored[&text(&expected["id"])].data;
        assert_eq!(row["key"], key_of(&sim, "pull_requests", i, &expected));
        assert_eq!(row["author"], expected["user"]["login"]);
        assert_eq!(row["source_branch"], expected["head"]["ref"]);
        assert_eq!(row["target_branch"], "main");
    }

    let other = (0..n).find(|i| sim.parent_of("pull_requests", *i) != sim.parent_of("pull_requests", 5)).unwrap();
    let changed = [5u64, other];
    for i in changed {
        modify_until_changed(&sim, "pull_requests", i, &["updated_at", "closed_at", "merged_at"]);
    }
    let repos: std::collections::BTreeSet<u64> =
        changed.iter().map(|i| sim.parent_of("pull_requests", *i).unwrap()).collect();
    assert_eq!(repos.len(), 2, "the two changes are in two repositories");
    let listed = (0..n).filter(|i| repos.contains(&sim.parent_of("pull_requests", *i).unwrap())).count() as i64;

    let inc = h.sync("pull_requests").await;
    ok(&inc);
    assert_eq!((inc.stats.fetched, inc.stats.inserted, inc.stats.updated), (2, 0, 2));
    let note = note(&inc);
    assert!(note.contains(&format!("client-side incremental: {} record(s)", listed - 2)), "{note}");
    assert!(note.contains("1 listing(s) not modified"), "{note}");
    assert!(inc.stats.cursor_after > full.stats.cursor_after);
}

/// The App: the JWT signed with the app's key (checked by the simulator with the public
/// key) buys an installation token, which every run and stream then shares; an expired
/// one is renewed, and so is one about to expire, before a request is sent with it.
#[tokio::test]
async fn app_installation_tokens_are_obtained_shared_and_renewed() {
    let sim = start(SimConfig::new(Provider::GitHub, 12).parents(3)).await.unwrap();
    let creds = sim.app_credentials().unwrap();
    let h = Harness::with_connectors("github_app", &tenant(&sim, "github_app"), &creds, None).await;
    let tokens = || sim.requests_for("/app/installations/4242/access_tokens");

    let repos = h.sync("repositories").await;
    ok(&repos);
    assert_eq!(repos.stats.inserted, 3);
    assert_eq!(tokens(), 1);
    ok(&h.sync("issues").await);
    assert_eq!(tokens(), 1, "the installation token is reused by the next run");

    sim.expire_access_tokens();
    let after = h.sync("pull_requests").await;
    ok(&after);
    assert_eq!(after.stats.inserted, 12);
    assert_eq!(tokens(), 2, "a rejected token is renewed once");

    // Client-side incremental: the repositories listing has no `since`.
    // (Only its description changed, which is not mapped: stored unchanged.)
    assert!(sim.modify("repositories", 1));
    let inc = h.sync("repositories").await;
    ok(&inc);
    assert_eq!((inc.stats.fetched, inc.stats.unchanged), (1, 1));
    assert!(note(&inc).contains("client-side incremental: 2 record(s)"), "{:?}", inc.stats.note);
}

#[tokio::test]
async fn an_installation_token_about_to_expire_is_renewed_before_it_is_sent() {
    let sim =
        start(SimConfig::new(Provider::GitHub, 3).parents(2).access_token_ttl(Duration::from_secs(2))).await.unwrap();
    let creds = sim.app_credentials().unwrap();
    let h = Harness::with_connectors("github_app", &tenant(&sim, "github_app"), &creds, None).await;
    ok(&h.sync("repositories").await);
    assert_eq!(sim.requests_for("/app/installations/4242/access_tokens"), 1);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let run = h.sync("repositories").await;
    ok(&run);
    assert_eq!(sim.requests_for("/app/installations/4242/access_tokens"), 2);
    assert_eq!(run.stats.http_calls, 1, "renewed from its `expires_at`, not after a 401");
}

#[tokio::test]
async fn a_jwt_signed_with_another_key_is_refused_and_the_connection_needs_reauth() {
    let sim = start(SimConfig::new(Provider::GitHub, 3)).await.unwrap();
    let other = start(SimConfig::new(Provider::GitHub, 1)).await.unwrap();
    let mut creds = sim.app_credentials().unwrap();
    creds["private_key"] = other.app_credentials().unwrap()["private_key"].clone();
    let h = Harness::with_connectors("github_app", &tenant(&sim, "github_app"), &creds, None).await;
    let run = h.sync("repositories").await;
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.stats.error.clone().unwrap_or_default();
    assert!(error.contains("A JSON web token could not be decoded"), "{error}");
    assert!(!error.contains("PRIVATE KEY"), "{error}");
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::NeedsReauth);
    assert_eq!(sim.data_request_count(), 0);
}

/// The new language — `conditional`, `client_side`, `next_header`, `jwt_exchange` — from
/// manifest files an operator drops in (copies of the built-in ones under other names),
/// not compiled in.
#[tokio::test]
async fn the_new_manifest_keys_work_from_a_manifest_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
    for (from, to) in [("github", "forge"), ("github_app", "forge_app"), ("gitlab", "lab")] {
        let text = std::fs::read_to_string(repo.join(format!("{from}.toml"))).unwrap();
        let text = text.replacen(&format!("name = \"{from}\""), &format!("name = \"{to}\""), 1);
        std::fs::write(dir.path().join(format!("{to}.toml")), text).unwrap();
    }
    let hub = start(SimConfig::new(Provider::GitHub, 9).parents(3)).await.unwrap();
    let forge = Harness::with_connectors("forge", &tenant(&hub, "forge"), &hub.credentials(), Some(dir.path())).await;
    ok(&forge.sync("pull_requests").await);
    let again = forge.sync("pull_requests").await;
    ok(&again);
    assert_eq!(again.stats.fetched, 0);
    assert!(note(&again).contains("3 listing(s) not modified"), "{:?}", again.stats.note);

    let app = Harness::with_connectors(
        "forge_app",
        &tenant(&hub, "forge_app"),
        &hub.app_credentials().unwrap(),
        Some(dir.path()),
    )
    .await;
    assert!(hub.modify("repositories", 0));
    ok(&app.sync("repositories").await);
    let inc = app.sync("repositories").await;
    ok(&inc);
    assert_eq!(inc.stats.fetched, 0);
    assert!(note(&inc).contains("client-side incremental: 3 record(s)"), "{:?}", inc.stats.note);
    assert_eq!(hub.requests_for("/app/installations/4242/access_tokens"), 1);

    let gl = start(SimConfig::new(Provider::GitLab, 4).parents(5).page_size_cap(2)).await.unwrap();
    let tenant = format!("preset = \"aptem\"\n[providers.lab]\nenabled = true\nbase_url = \"{}\"\n", gl.api_base());
    let lab = Harness::with_connectors("lab", &tenant, &gl.credentials(), Some(dir.path())).await;
    let projects = lab.sync("projects").await;
    ok(&projects);
    assert_eq!((projects.stats.inserted, projects.stats.pages), (5, 3));
}

#[test]
fn connectors_check_names_bad_jwt_and_next_header_settings() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
    let dir = tempfile::tempdir().unwrap();
    let app = std::fs::read_to_string(repo.join("github_app.toml")).unwrap().replacen(
        "jwt_issuer = \"{app_id}\"",
        "jwt_issuer = \"{app_id}\"\njwt_ttl_secs = 900\njwt_key = \"pem\"",
        1,
    );
    std::fs::write(dir.path().join("github_app.toml"), &app).unwrap();
    let (success, out) = crate::support::connectors_check(&dir.path().join("github_app.toml"));
    assert!(!success, "{out}");
    assert!(out.contains("auth.jwt_ttl_secs: must be between 1 and 600 seconds"), "{out}");
    assert!(out.contains("auth.jwt_key: `pem` is not one of the credentials"), "{out}");

    let lab = std::fs::read_to_string(repo.join("gitlab.toml"))
        .unwrap()
        .replacen("header = \"X-Next-Page\"", "header = \"X Next Page\"", 1)
        .replacen("value = \"{private_token}\"", "value = \"{private_token}\"\njwt_ttl_secs = 60", 1);
    std::fs::write(dir.path().join("gitlab.toml"), &lab).unwrap();
    let (success, out) = crate::support::connectors_check(&dir.path().join("gitlab.toml"));
    assert!(!success, "{out}");
    assert!(
        out.contains("streams.projects.request.pagination.header: `X Next Page` is not an HTTP header name"),
        "{out}"
    );
    assert!(out.contains("auth.jwt_ttl_secs: only `jwt_exchange` auth signs a JWT"), "{out}");
    assert!(out.starts_with("2 configuration errors"), "{out}");
}

const WIDGETS: &str = r#"# Widgets: one unpaged listing, validated by `Last-Modified`. Added as a manifest only.
name = "widgets"
title = "Widgets"
category = "work"
description = "Widgets"
base_url = "https://widgets.example"
default_schedule = "1h"

[auth]
kind = "bearer"
credentials = ["token"]

[streams.widgets]
entity = "project"
conditional = "last_modified"
[streams.widgets.request]
path = "/widgets"
records = "/items"

[mappings.project]
external_id = { from = "id", transform = ["string"] }
key = "key"
name = "name"
"#;

/// `conditional = "last_modified"`: the `Last-Modified` of the last listing goes back as
/// `If-Modified-Since`, and a `304` stores nothing and fails nothing — nor does it count
/// as a full pass that listed no records: the stream sweeps, and nothing is swept.
#[tokio::test]
async fn last_modified_is_sent_back_as_if_modified_since() {
    use wiremock::matchers::{header_exists, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let stamp = "Wed, 21 Oct 2015 07:28:00 GMT";
    Mock::given(method("GET"))
        .and(path("/widgets"))
        // (wiremock's `header` matcher would split the date at its comma)
        .and(header_exists("if-modified-since"))
        .respond_with(ResponseTemplate::new(304).insert_header("Last-Modified", stamp))
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/widgets"))
        .respond_with(ResponseTemplate::new(200).insert_header("Last-Modified", stamp).set_body_json(
            serde_json::json!({ "items": [
                { "id": 1, "key": "W-1", "name": "Sprocket" },
                { "id": 2, "key": "W-2", "name": "Flange" },
            ] }),
        ))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("widgets.toml"), WIDGETS).unwrap();
    let tenant = format!(
        "preset = \"aptem\"\n[providers.widgets]\nenabled = true\nbase_url = \"{}\"\n\
         streams = {{ widgets = {{ enabled = true, sweep = true }} }}\n",
        server.uri()
    );
    let h = Harness::with_connectors("widgets", &tenant, &serde_json::json!({ "token": "w-secret" }), Some(dir.path()))
        .await;
    let first = h.sync("widgets").await;
    ok(&first);
    assert_eq!(first.stats.inserted, 2);
    assert!(first.stats.cursor_after.as_deref().is_some_and(|c| c.contains(stamp)), "{:?}", first.stats.cursor_after);
    let second = h.sync("widgets").await;
    ok(&second);
    assert_eq!((second.stats.fetched, second.stats.inserted), (0, 0));
    assert!(note(&second).contains("1 listing(s) not modified"), "{:?}", second.stats.note);
    assert!(!note(&second).contains("swept") && !note(&second).contains("sweep held back"), "{}", note(&second));
    let stored = h.records("project").await;
    assert_eq!(stored.len(), 2);
    assert!(stored.values().all(|r| r.deleted_at.is_none()), "a 304 pass swept");
    server.verify().await;
    let sent: Vec<Option<String>> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers.get("if-modified-since").and_then(|v| v.to_str().ok()).map(str::to_owned))
        .collect();
    assert_eq!(sent, [None, Some(stamp.to_owned())]);
}

/// With the manifest's own limits: a secondary limit (403 + `Retry-After`) and an
/// exhausted primary one (403, `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset`) are
/// waits, never failures or retries.
#[tokio::test]
async fn secondary_and_primary_limits_are_waits() {
    let faults = tributary_simulator::Faults::none().rate_limit_every(3).retry_after_secs(1);
    let sim = start(SimConfig::new(Provider::GitHub, 9).parents(9).page_size_cap(2).faults(faults)).await.unwrap();
    let h = Harness::new("github", &tenant(&sim, "github"), &sim).await;
    let run = h.sync("repositories").await;
    ok(&run);
    // Five pages; requests 3 (secondary limit) and 6 (primary limit) were throttled.
    assert_eq!((run.stats.inserted, run.stats.pages), (9, 5));
    assert_eq!((run.stats.rate_limit_waits, run.stats.retries), (2, 0));
    assert_eq!(sim.data_request_count(), 7);
}
