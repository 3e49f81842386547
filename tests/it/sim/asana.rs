//! Asana API 1.0.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tributary_simulator::{ASANA_WORKSPACE_GID, Provider, SimConfig};

use super::common::{Session, boot, client, read, refresh};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::Asana, n)
}

async fn get(s: &Session, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    read(s.get(path).query(query).send().await.expect("send")).await
}

fn gid(sim: &tributary_simulator::SimHandle, stream: &str, i: u64) -> String {
    sim.expected_record(stream, i).expect("record")["gid"].as_str().expect("gid").to_owned()
}

/// Follows `next_page.offset` from `path` with `query`; the pages' `data`, and their sizes.
async fn walk(s: &Session, path: &str, query: &[(&str, &str)]) -> (Vec<Value>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut offset: Option<String> = None;
    loop {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        if let Some(o) = &offset {
            q.push(("offset", o));
        }
        let (status, page) = get(s, path, &q).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().cloned().expect("data");
        sizes.push(data.len());
        rows.extend(data);
        match &page["next_page"] {
            Value::Null => return (rows, sizes),
            next => {
                let o = next["offset"].as_str().expect("offset").to_owned();
                let p = next["path"].as_str().expect("path");
                assert!(p.starts_with(path) && p.ends_with(&format!("offset={o}")), "{next}");
                assert_eq!(next["uri"], json!(format!("{}{p}", s.sim.api_base())));
                offset = Some(o);
            }
        }
    }
}

#[tokio::test]
async fn form_refresh_without_rotation_and_401_for_bad_tokens() {
    let sim = boot(config(2)).await;
    let c = client();
    let creds = sim.credentials();
    let rt = creds["refresh_token"].as_str().expect("refresh token").to_owned();
    for _ in 0..2 {
        // Not rotated: the same refresh token works again.
        let (status, body) = refresh(&sim, &c, &creds, &rt).await;
        assert_eq!(
            (status, body["expires_in"].as_u64(), body["token_type"].as_str()),
            (200, Some(3600), Some("bearer"))
        );
        assert!(body.get("refresh_token").is_none(), "{body}");
        assert!(body["data"]["gid"].is_string());
    }
    let (status, body) = refresh(&sim, &c, &creds, "2/nope").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    let url = format!("{}/workspaces", sim.api_base());
    for request in [c.get(&url), c.get(&url).bearer_auth("nope")] {
        let (status, body) = read(request.send().await.expect("send")).await;
        assert_eq!((status, body), (401, json!({"errors": [{"message": "Not Authorized"}]})));
    }
    let s = Session::start(config(2)).await;
    let (status, body) = get(&s, "/workspaces", &[]).await;
    assert_eq!((status, &body["data"][0]["gid"]), (200, &json!(ASANA_WORKSPACE_GID)));
}

#[tokio::test]
async fn projects_of_the_workspace_by_either_path_and_refusals() {
    let s = Session::start(config(1).parents(7)).await;
    let expected: Vec<String> = (0..7).map(|i| gid(&s.sim, "projects", i)).collect();
    let q = [("workspace", ASANA_WORKSPACE_GID), ("limit", "3"), ("opt_fields", "name,archived")];
    let (rows, sizes) = walk(&s, "/projects", &q).await;
    assert_eq!(sizes, vec![3, 3, 1]);
    let got: Vec<&str> = rows.iter().map(|r| r["gid"].as_str().unwrap_or_default()).collect();
    assert_eq!(got, expected);
    let first = s.sim.expected_record("projects", 0).unwrap();
    assert_eq!(rows[0], json!({"gid": first["gid"], "name": first["name"], "archived": false}));

    let (rows, _) = walk(&s, &format!("/workspaces/{ASANA_WORKSPACE_GID}/projects"), &[("limit", "100")]).await;
    let got: Vec<&str> = rows.iter().map(|r| r["gid"].as_str().unwrap_or_default()).collect();
    assert_eq!(got, expected);
    // The compact form without `opt_fields`.
    assert_eq!(rows[0], json!({"gid": first["gid"], "resource_type": "project", "name": first["name"]}));

    let (status, body) = get(&s, "/projects", &[("limit", "10")]).await;
    assert_eq!((status, body["errors"][0]["message"].as_str()), (400, Some("workspace: Missing input")));
    let (status, _) = get(&s, "/projects", &[("workspace", "42"), ("limit", "10")]).await;
    assert_eq!(status, 404);
    for limit in ["0", "101", "x"] {
        let (status, body) = get(&s, "/projects", &[("workspace", ASANA_WORKSPACE_GID), ("limit", limit)]).await;
        assert_eq!(status, 400, "limit {limit}: {body}");
    }
    let bad = [("workspace", ASANA_WORKSPACE_GID), ("limit", "3"), ("offset", "eyJvIjoxfQ")];
    let (status, body) = get(&s, "/projects", &bad).await;
    assert_eq!(
        (status, body["errors"][0]["message"].as_str()),
        (400, Some("offset: Your pagination token is invalid."))
    );
}

#[tokio::test]
async fn tasks_per_project_page_by_offset_with_opt_fields() {
    let s = Session::start(config(250).parents(2)).await;
    let project = gid(&s.sim, "projects", 1);
    let expected: Vec<u64> = (0..250).filter(|i| s.sim.parent_of("tasks", *i) == Some(1)).collect();
    assert_eq!(expected.len(), 125);
    let fields = "name,completed,assignee.name,modified_at,projects.name";
    let (rows, sizes) = walk(&s, "/tasks", &[("project", &project), ("limit", "100"), ("opt_fields", fields)]).await;
    assert_eq!(sizes, vec![100, 25]);
    for (row, i) in rows.iter().zip(&expected) {
        let e = s.sim.expected_record("tasks", *i).unwrap();
        let assignee = match &e["assignee"] {
            Value::Null => Value::Null,
            a => json!({"gid": a["gid"], "name": a["name"]}),
        };
        assert_eq!(
            row,
            &json!({
                "gid": e["gid"], "name": e["name"], "completed": e["completed"], "assignee": assignee,
                "modified_at": e["modified_at"], "projects": [{"gid": project}],
            })
        );
    }
    // `/projects/{gid}/tasks` lists the same; without `limit` a small listing comes whole.
    let (same, _) = walk(&s, &format!("/projects/{project}/tasks"), &[("limit", "40")]).await;
    assert_eq!(same.iter().map(|r| &r["gid"]).collect::<Vec<_>>(), rows.iter().map(|r| &r["gid"]).collect::<Vec<_>>());
    let (status, whole) = get(&s, "/tasks", &[("project", &project)]).await;
    assert_eq!((status, whole["data"].as_array().map(Vec::len)), (200, Some(125)));
    assert!(whole.get("next_page").is_none_or(Value::is_null));

    let (status, body) = get(&s, "/tasks", &[("limit", "10")]).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(&s, "/tasks", &[("project", "1"), ("limit", "10")]).await;
    assert_eq!(status, 404);
    // An offset from another listing is refused.
    let (_, page) = get(&s, "/tasks", &[("project", &project), ("limit", "10")]).await;
    let offset = page["next_page"]["offset"].as_str().unwrap().to_owned();
    let other = gid(&s.sim, "projects", 0);
    let (status, _) = get(&s, "/tasks", &[("project", &other), ("limit", "10"), ("offset", &offset)]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn modified_since_lists_only_changed_and_added_tasks_of_the_project() {
    let s = Session::start(config(60).parents(3)).await;
    let since = s.sim.anchor().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let project = gid(&s.sim, "projects", 0);
    let (status, none) =
        get(&s, "/tasks", &[("project", &project), ("modified_since", &since), ("limit", "100")]).await;
    assert_eq!((status, none["data"].as_array().map(Vec::len)), (200, Some(0)));
    let sim = &s.sim;
    let of = |p: u64| -> Vec<u64> { (0..60).filter(|i| sim.parent_of("tasks", *i) == Some(p)).collect() };
    let in_first = of(0);
    let in_second = of(1);
    for i in [in_first[2], in_first[7], in_second[0]] {
        assert!(s.sim.modify("tasks", i));
    }
    let added = s.sim.add("tasks", 3).expect("added");
    let added_here: Vec<u64> = added.filter(|i| s.sim.parent_of("tasks", *i) == Some(0)).collect();
    assert_eq!(added_here.len(), 1);
    let q = [
        ("project", project.as_str()),
        ("modified_since", since.as_str()),
        ("limit", "100"),
        ("opt_fields", "modified_at"),
    ];
    let (rows, _) = walk(&s, "/tasks", &q).await;
    let got: BTreeSet<String> = rows.iter().map(|r| r["gid"].as_str().unwrap().to_owned()).collect();
    let want: BTreeSet<String> =
        [in_first[2], in_first[7], added_here[0]].iter().map(|i| gid(&s.sim, "tasks", *i)).collect();
    assert_eq!(got, want);
    let (status, _) =
        get(&s, "/tasks", &[("project", &project), ("modified_since", "yesterday"), ("limit", "5")]).await;
    assert_eq!(status, 400);
}

async fn events(s: &Session, project: &str, sync: Option<&str>) -> (u16, Value) {
    let mut q = vec![("resource", project)];
    if let Some(t) = sync {
        q.push(("sync", t));
    }
    get(s, "/events", &q).await
}

#[tokio::test]
async fn events_412_gives_a_token_then_the_changes_since_it() {
    let s = Session::start(config(30).parents(2)).await;
    let project = gid(&s.sim, "projects", 0);
    let (status, first) = events(&s, &project, None).await;
    assert_eq!(status, 412, "{first}");
    assert!(first["errors"][0]["message"].as_str().is_some_and(|m| m.contains("Sync token invalid or too old")));
    let token = first["sync"].as_str().expect("a fresh token").to_owned();
    let (status, bad) = events(&s, &project, Some("not-a-token")).await;
    assert_eq!(status, 412);
    assert!(bad["sync"].is_string());

    // Nothing changed yet.
    let (status, quiet) = events(&s, &project, Some(&token)).await;
    assert_eq!((status, &quiet["data"], &quiet["has_more"]), (200, &json!([]), &json!(false)));
    let token = quiet["sync"].as_str().unwrap().to_owned();

    let mine: Vec<u64> = (0..30).filter(|i| s.sim.parent_of("tasks", *i) == Some(0)).collect();
    let theirs = (0..30).find(|i| s.sim.parent_of("tasks", *i) == Some(1)).unwrap();
    assert!(s.sim.modify("tasks", mine[1]));
    assert!(s.sim.modify("tasks", theirs));
    assert!(s.sim.delete("tasks", mine[4]));
    let added: Vec<u64> = s.sim.add("tasks", 2).unwrap().filter(|i| s.sim.parent_of("tasks", *i) == Some(0)).collect();
    assert_eq!(added.len(), 1);
    let (status, changes) = events(&s, &project, Some(&token)).await;
    assert_eq!((status, &changes["has_more"]), (200, &json!(false)));
    let got: BTreeSet<(String, String)> = changes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["resource"]["resource_type"], "task");
            assert!(e["created_at"].is_string(), "{e}");
            (text(&e["action"]), text(&e["resource"]["gid"]))
        })
        .collect();
    let t = |i: u64| (1_202_000_000_000_000u64 + i).to_string();
    let want: BTreeSet<(String, String)> =
        [("changed".to_owned(), t(mine[1])), ("deleted".to_owned(), t(mine[4])), ("added".to_owned(), t(added[0]))]
            .into_iter()
            .collect();
    assert_eq!(got, want);
    assert_eq!(gid(&s.sim, "tasks", mine[1]), t(mine[1]), "task gids are 1202… + index");
    let next = changes["sync"].as_str().unwrap().to_owned();
    let (_, after) = events(&s, &project, Some(&next)).await;
    assert_eq!(after["data"], json!([]));

    // A token is for its resource only, and expires.
    let other = gid(&s.sim, "projects", 1);
    assert_eq!(events(&s, &other, Some(&next)).await.0, 412);
    s.sim.expire_sync_states();
    let (status, expired) = events(&s, &project, Some(&next)).await;
    assert_eq!(status, 412);
    let fresh = expired["sync"].as_str().unwrap().to_owned();
    assert_eq!(events(&s, &project, Some(&fresh)).await.0, 200);
}

#[tokio::test]
async fn many_events_come_100_at_a_time_with_has_more() {
    let s = Session::start(config(300).parents(1)).await;
    let project = gid(&s.sim, "projects", 0);
    let token = events(&s, &project, None).await.1["sync"].as_str().unwrap().to_owned();
    for i in 0..230 {
        assert!(s.sim.modify("tasks", i));
    }
    for i in 250..260 {
        assert!(s.sim.delete("tasks", i));
    }
    let mut token = token;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let (status, page) = events(&s, &project, Some(&token)).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        sizes.push(data.len());
        seen.extend(data.iter().map(|e| (text(&e["action"]), text(&e["resource"]["gid"]))));
        token = page["sync"].as_str().unwrap().to_owned();
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(sizes, vec![100, 100, 40]);
    let changed = seen.iter().filter(|(a, _)| a == "changed").count();
    let deleted: BTreeSet<&str> = seen.iter().filter(|(a, _)| a == "deleted").map(|(_, g)| g.as_str()).collect();
    assert_eq!((changed, deleted.len()), (230, 10));
    assert!(deleted.contains(1_202_000_000_000_255u64.to_string().as_str()));
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
