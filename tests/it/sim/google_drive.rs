//! Google Drive v3: files.list and the changes feed.

use serde_json::Value;
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, read};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::GoogleDrive, n)
}

async fn get(s: &Session, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    read(s.get(path).query(query).send().await.expect("send")).await
}

#[tokio::test]
async fn files_page_by_token_and_return_only_the_fields_asked_for() {
    let s = Session::start(config(25)).await;
    let (status, first) = get(&s, "/files", &[("pageSize", "10")]).await;
    assert_eq!(status, 200, "{first}");
    // Without `fields`: Drive's default subset.
    assert_eq!(first["kind"], "drive#fileList");
    let file = first["files"][0].as_object().unwrap();
    let mut keys: Vec<&str> = file.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "kind", "mimeType", "name"]);

    let fields = "nextPageToken,files(id,modifiedTime,permissions(role,emailAddress))";
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![("pageSize", "10"), ("fields", fields)];
        if let Some(t) = &token {
            q.push(("pageToken", t.as_str()));
        }
        let (status, page) = get(&s, "/files", &q).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for f in page["files"].as_array().unwrap() {
            assert_eq!(f.as_object().unwrap().len(), 3, "{f}");
            assert!(f["permissions"][0].as_object().unwrap().keys().all(|k| k == "role" || k == "emailAddress"));
            ids.push(f["id"].as_str().unwrap().to_owned());
        }
        assert!(page.get("kind").is_none(), "not asked for: {page}");
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> =
        (0..25).map(|i| s.sim.expected_record("files", i).unwrap()["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, expected);

    for (query, location) in [
        (vec![("pageSize", "0")], "pageSize"),
        (vec![("pageToken", "forged")], "pageToken"),
        (vec![("q", "name contains 'x'")], "q"),
        (vec![("fields", "files(id")], "fields"),
    ] {
        let (status, body) = get(&s, "/files", &query).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert_eq!(body["error"]["code"], 400);
        assert_eq!(body["error"]["errors"][0]["location"], location, "{body}");
    }
}

#[tokio::test]
async fn the_changes_feed_lists_changed_added_and_removed_files_from_a_start_token() {
    let s = Session::start(config(30)).await;
    let (status, start) = get(&s, "/changes/startPageToken", &[]).await;
    assert_eq!(status, 200, "{start}");
    let token = start["startPageToken"].as_str().unwrap().to_owned();
    assert_eq!(token, s.sim.change_token());
    // Nothing changed yet: no changes, the same token back.
    let (_, empty) = get(&s, "/changes", &[("pageToken", &token)]).await;
    assert_eq!(empty["changes"], serde_json::json!([]));
    assert_eq!(empty["newStartPageToken"].as_str(), Some(token.as_str()));

    assert!(s.sim.modify("files", 3));
    let added = s.sim.add("files", 2).unwrap();
    assert!(s.sim.delete("files", 7));
    let fields = "nextPageToken,newStartPageToken,changes(fileId,removed,time,file(id,name,version))";
    let (status, page1) = get(&s, "/changes", &[("pageToken", &token), ("pageSize", "2"), ("fields", fields)]).await;
    assert_eq!(status, 200, "{page1}");
    let next = page1["nextPageToken"].as_str().expect("more changes follow").to_owned();
    assert!(page1.get("newStartPageToken").is_none());
    let (_, page2) = get(&s, "/changes", &[("pageToken", &next), ("pageSize", "2"), ("fields", fields)]).await;
    assert!(page2.get("nextPageToken").is_none(), "{page2}");
    let new_start = page2["newStartPageToken"].as_str().expect("the last page gives the next start").to_owned();
    assert_eq!(new_start, s.sim.change_token());

    let changes: Vec<&Value> =
        page1["changes"].as_array().unwrap().iter().chain(page2["changes"].as_array().unwrap()).collect();
    let id = |i: u64| s.sim.expected_record("files", i).map(|r| r["id"].clone());
    assert_eq!(changes.len(), 4);
    assert_eq!((changes[0]["fileId"].clone(), changes[0]["removed"].clone()), (id(3).unwrap(), false.into()));
    assert_eq!(changes[0]["file"]["version"], "2", "a modification is a new version");
    for (c, i) in changes[1..3].iter().zip(added) {
        assert_eq!(c["file"]["id"], id(i).unwrap());
        assert_eq!(c["removed"], false);
    }
    // The deleted file: removed, without its `file`.
    assert_eq!(changes[3]["removed"], true);
    assert!(changes[3].get("file").is_none(), "{}", changes[3]);
    assert_eq!(changes[3]["fileId"].as_str().map(|f| f.starts_with("1Drv")), Some(true));
    assert_eq!(id(7), None);

    // With `includeRemoved=false` the deletion is left out.
    let (_, kept) = get(&s, "/changes", &[("pageToken", &token), ("includeRemoved", "false")]).await;
    assert_eq!(kept["changes"].as_array().unwrap().len(), 3);

    // Positions the journal no longer holds, and ones never issued, are refused.
    s.sim.expire_change_tokens();
    for bad in [token.as_str(), "999999", "x"] {
        let (status, body) = get(&s, "/changes", &[("pageToken", bad)]).await;
        assert_eq!((status, body["error"]["errors"][0]["location"].as_str()), (400, Some("pageToken")), "{body}");
    }
    let (status, body) = get(&s, "/changes", &[]).await;
    assert_eq!((status, body["error"]["errors"][0]["reason"].as_str()), (400, Some("required")));
    let (_, fresh) = get(&s, "/changes", &[("pageToken", &s.sim.change_token())]).await;
    assert_eq!(fresh["changes"], serde_json::json!([]));
}

#[tokio::test]
async fn bad_tokens_get_drives_401_and_dead_refresh_tokens_invalid_grant() {
    let s = Session::start(config(2)).await;
    let url = format!("{}/files", s.sim.api_base());
    let (status, body) = read(s.client.get(&url).bearer_auth("ya29.nope").send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["errors"][0]["reason"], "authError");
    assert_eq!(body["error"]["message"], "Invalid Credentials");
    s.sim.revoke();
    let creds = s.sim.credentials();
    let (status, body) =
        super::common::refresh(&s.sim, &s.client, &creds, creds["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}
