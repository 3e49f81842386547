//! Google Drive: files through `files.list` (page tokens, partial responses by
//! `fields`), the owner chosen among the permissions by a JSONPath condition, and
//! incremental reads by `modifiedTime`.

use serde_json::{Value, json};
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};

use super::{Harness, ok, text};

/// A tenant on the `aptem` preset with Google Drive switched on.
fn tenant(sim: &SimHandle) -> String {
    format!(
        "preset = \"aptem\"\n[providers.google_drive]\nenabled = true\nbase_url = \"{api}\"\nvariables = {{ oauth_url \
         = \"{base}\" }}\n",
        api = sim.api_base(),
        base = sim.base_url()
    )
}

/// What the stored file must hold for the simulator's record `expected`.
fn assert_file(row: &Value, expected: &Value) {
    assert_eq!(row["external_id"], expected["id"]);
    assert_eq!(row["name"], expected["name"]);
    assert_eq!(row["mime_type"], expected["mimeType"]);
    let owners: Vec<&Value> =
        expected["permissions"].as_array().unwrap().iter().filter(|p| p["role"] == "owner").collect();
    assert_eq!(owners.len(), 1, "{expected}");
    assert_eq!(row["owner_email"], owners[0]["emailAddress"]);
    assert_eq!(row["owner_email"], expected["owners"][0]["emailAddress"], "the owner permission is the owner");
    assert_eq!(row["department"], expected["properties"]["department"]);
    assert_eq!(row["parent_id"], expected["parents"][0]);
    match expected.get("size") {
        Some(size) => assert_eq!(row["size"], json!(size.as_str().unwrap().parse::<i64>().unwrap())),
        None => assert!(row.get("size").is_none_or(Value::is_null), "{row}"),
    }
    assert_eq!(row["web_url"], expected["webViewLink"]);
    assert_eq!(row["trashed"], json!(false));
}

#[tokio::test]
async fn files_sync_fully_then_incrementally_with_the_owner_chosen_by_role() {
    let n = 2_345;
    let sim = start(SimConfig::new(Provider::GoogleDrive, n)).await.unwrap();
    let h = Harness::new("google_drive", &tenant(&sim), &sim).await;
    let run = h.sync("files").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.pages), (n as i64, n as i64, 3));
    let stored = h.records("file").await;
    assert_eq!(stored.len() as u64, n);
    // The owner's permission is not always the first: records where it is not prove the
    // condition selects it.
    let mut owner_elsewhere = 0;
    for i in (0..n).step_by(97).chain([n - 1]) {
        let expected = sim.expected_record("files", i).unwrap();
        if expected["permissions"][0]["role"] != "owner" {
            owner_elsewhere += 1;
        }
        assert_file(&stored[&text(&expected["id"])].data, &expected);
    }
    assert!(owner_elsewhere > 0, "no sampled file has its owner after another permission");
    let log = sim.request_log();
    assert!(log.iter().all(|l| l.contains("fields=") && l.contains("pageSize=1000")), "{log:?}");
    assert!(log.iter().skip(1).all(|l| l.contains("pageToken=")), "{log:?}");
    let cursor = run.stats.cursor_after.clone().expect("a cursor after the full pass");

    // Two files change (a new name and permissions), one is added.
    for i in [5u64, 2_000] {
        assert!(sim.modify("files", i));
    }
    let added = sim.add("files", 1).unwrap().start;
    let inc = h.sync("files").await;
    ok(&inc);
    assert_eq!(inc.cursor_before.as_deref(), Some(cursor.as_str()));
    assert_eq!((inc.stats.fetched, inc.stats.inserted, inc.stats.updated), (3, 1, 2));
    let q = sim.request_log().last().cloned().unwrap();
    assert!(q.contains("q=modifiedTime"), "{q}");
    let stored = h.records("file").await;
    for i in [5u64, 2_000, added] {
        let expected = sim.expected_record("files", i).unwrap();
        assert_file(&stored[&text(&expected["id"])].data, &expected);
    }
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_page_and_partial_last_page() {
    super::assert_pagination_edges(
        50,
        |n| SimConfig::new(Provider::GoogleDrive, n).page_size_cap(50),
        tenant,
        "google_drive",
        "files",
        "file",
    )
    .await;
}

/// Every throttle Drive sends — 403 `userRateLimitExceeded`, 403 `rateLimitExceeded`,
/// 429 `rateLimitExceeded`, none with `Retry-After` — is a rate-limit wait, not a
/// failure and not a retry.
#[tokio::test]
async fn rate_limit_403s_and_429s_are_waited_out() {
    let n = 120;
    let sim =
        start(SimConfig::new(Provider::GoogleDrive, n).page_size_cap(10).faults(Faults::none().rate_limit_every(2)))
            .await
            .unwrap();
    let h = Harness::new("google_drive", &tenant(&sim), &sim).await;
    let run = h.sync("files").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.pages), (n as i64, 12));
    // 12 pages, every other request throttled (requests 2, 4, …, 22, the three kinds in
    // turn): 11 waits between the 12 pages, 23 requests.
    assert_eq!((run.stats.rate_limit_waits, run.stats.retries), (11, 0), "{:?}", run.stats);
    assert_eq!((sim.data_request_count(), run.stats.http_calls), (23, 23));
    assert_eq!(h.records("file").await.len() as u64, n);
}
