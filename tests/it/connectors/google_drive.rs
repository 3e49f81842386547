//! Google Drive: files through `files.list` (page tokens, partial responses by
//! `fields`), the owner chosen among the permissions by a JSONPath condition, and
//! later passes through the changes feed (changed, added and removed files).

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
async fn files_sync_fully_then_through_the_changes_feed_with_removals() {
    let n = 2_345;
    let sim = start(SimConfig::new(Provider::GoogleDrive, n)).await.unwrap();
    let h = Harness::new("google_drive", &tenant(&sim), &sim).await;
    let start_token = sim.change_token();
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
    // The start page token first, then the listing with its fields, by page token.
    assert!(log[0].starts_with("GET /drive/v3/changes/startPageToken"), "{log:?}");
    let listing = &log[1..];
    assert_eq!(listing.len(), 3, "{log:?}");
    assert!(listing.iter().all(|l| l.contains("/files?") && l.contains("fields=") && l.contains("pageSize=1000")));
    assert!(listing.iter().skip(1).all(|l| l.contains("pageToken=")), "{log:?}");
    // The token taken before the listing is the stream's state.
    assert_eq!(run.stats.cursor_after.as_deref(), Some(start_token.as_str()));

    // Two files change (a new name and permissions), one is added, two are deleted.
    for i in [5u64, 2_000] {
        assert!(sim.modify("files", i));
    }
    let added = sim.add("files", 1).unwrap().start;
    let gone: Vec<String> = [7u64, 1_500]
        .iter()
        .map(|i| {
            let id = text(&sim.expected_record("files", *i).unwrap()["id"]);
            assert!(sim.delete("files", *i));
            id
        })
        .collect();
    let requests_before = sim.data_request_count();
    let inc = h.sync("files").await;
    ok(&inc);
    assert_eq!(inc.cursor_before.as_deref(), Some(start_token.as_str()));
    // Five changes: three files stored (one new), two tombstones (counted as updated).
    assert_eq!((inc.stats.fetched, inc.stats.inserted, inc.stats.updated), (5, 1, 4), "{:?}", inc.stats);
    assert_eq!(sim.data_request_count() - requests_before, 1, "one page of changes, no listing");
    let last = sim.request_log().last().cloned().unwrap();
    assert!(last.contains("/changes?") && last.contains(&format!("pageToken={start_token}")), "{last}");
    assert_eq!(inc.stats.cursor_after, Some(sim.change_token()), "the new start page token is stored");
    let stored = h.records("file").await;
    for i in [5u64, 2_000, added] {
        let expected = sim.expected_record("files", i).unwrap();
        let row = &stored[&text(&expected["id"])];
        assert!(row.deleted_at.is_none());
        assert_file(&row.data, &expected);
    }
    for id in &gone {
        assert!(stored[id].deleted_at.is_some(), "{id} is marked deleted");
    }
    assert_eq!(stored.values().filter(|r| r.deleted_at.is_none()).count() as u64, n - 1);

    // Nothing changed since: one request, no changes, the same token.
    let before = sim.data_request_count();
    let quiet = h.sync("files").await;
    ok(&quiet);
    assert_eq!((quiet.stats.fetched, sim.data_request_count() - before), (0, 1));
    assert_eq!(quiet.stats.cursor_after, Some(sim.change_token()));
}

/// A start page token Drive no longer accepts (400 `invalid` at `pageToken`) is
/// dropped: the run reads every file again with a fresh token and succeeds.
#[tokio::test]
async fn an_expired_start_page_token_reads_the_files_in_full() {
    let n = 40;
    let sim = start(SimConfig::new(Provider::GoogleDrive, n)).await.unwrap();
    let h = Harness::new("google_drive", &tenant(&sim), &sim).await;
    ok(&h.sync("files").await);
    assert!(sim.modify("files", 3));
    sim.expire_change_tokens();
    let run = h.sync("files").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.updated), (n as i64, 1), "{:?}", run.stats);
    let note = run.stats.note.clone().unwrap_or_default();
    assert!(note.contains("expired") && note.contains("400"), "{note}");
    assert_eq!(run.stats.cursor_after, Some(sim.change_token()));
    let expected = sim.expected_record("files", 3).unwrap();
    assert_file(&h.records("file").await[&text(&expected["id"])].data, &expected);
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
    // The start page token (request 1), then 12 pages with every other request throttled
    // (requests 2, 4, …, 24, the three kinds in turn): 12 waits, 25 requests.
    assert_eq!((run.stats.rate_limit_waits, run.stats.retries), (12, 0), "{:?}", run.stats);
    assert_eq!((sim.data_request_count(), run.stats.http_calls), (25, 25));
    assert_eq!(h.records("file").await.len() as u64, n);
}

/// A tenant's retry policy (within the manifest's `[retry]` bounds) is the one its runs
/// use: two attempts, not the default five.
#[tokio::test]
async fn a_tenants_retry_attempts_are_the_runs() {
    let sim =
        start(SimConfig::new(Provider::GoogleDrive, 5).faults(Faults::none().server_error_every(1))).await.unwrap();
    let h = Harness::new("google_drive", &format!("{}retry = {{ attempts = 2 }}\n", tenant(&sim)), &sim).await;
    let run = h.sync("files").await;
    assert_eq!(run.outcome, tributary::model::RunOutcome::Failed);
    let error = run.stats.error.clone().unwrap_or_default();
    assert!(error.contains("gave up after 2 attempts") && error.contains("Backend Error"), "{error}");
    assert_eq!((sim.data_request_count(), run.stats.retries), (2, 1));
}

/// A tenant's rate limit replaces the manifest's for its runs: at 300 a minute (a burst
/// of five, then one request every 200 ms) a run of eight requests waits on its quota
/// at least three times; at the manifest's 12,000 it does not.
#[tokio::test]
async fn a_tenants_rate_limit_paces_its_runs() {
    let sim = start(SimConfig::new(Provider::GoogleDrive, 70).page_size_cap(10)).await.unwrap();
    let world = crate::support::world::World::builder().rate_limits().on_sqlite().await;
    let provider = tributary::model::ProviderId::parse("google_drive").unwrap();
    let slow =
        world.create_tenant("slow", "Slow", &format!("{}rate_limit = {{ requests = 300 }}\n", tenant(&sim))).await;
    let fast = world.create_tenant("fast", "Fast", &tenant(&sim)).await;
    for t in [&slow, &fast] {
        world.credentials(t, &provider, None, &sim.credentials()).await;
    }
    let h = Harness { world, tenant: slow.clone(), provider };
    let syncer = h.syncer();
    let paced = h.sync_using(&syncer, &slow, "files").await;
    ok(&paced);
    let free = h.sync_using(&syncer, &fast, "files").await;
    ok(&free);
    // Eight requests each: the start page token and seven pages.
    assert_eq!((paced.stats.http_calls, free.stats.http_calls), (8, 8));
    assert!(paced.stats.rate_limit_waits >= 3, "{:?}", paced.stats);
    assert_eq!(free.stats.rate_limit_waits, 0, "{:?}", free.stats);
}

/// The manifest's rules on Google's envelope: a usage-limit reason anywhere among the
/// errors is a rate limit (403 or 429); a 403 for any other reason fails with Google's
/// message; 401 refreshes the token.
#[test]
fn the_manifests_rules_tell_throttles_from_refusals() {
    use tributary::config::{Catalog, ConfigDir, ResponseAction};
    use tributary::http::classify::classify;
    let catalog = Catalog::load(&ConfigDir::Builtin, None).unwrap();
    let rules = &catalog.manifests.get("google_drive").unwrap().responses;
    let envelope = |code: u16, reasons: &[&str], message: &str| {
        let errors: Vec<Value> =
            reasons.iter().map(|r| json!({ "domain": "usageLimits", "reason": r, "message": message })).collect();
        json!({ "error": { "code": code, "message": message, "errors": errors } })
    };
    let verdict = |status: u16, body: &Value| classify(rules, status, body.to_string().as_bytes(), Some(body));
    for (status, reasons) in [
        (403, vec!["userRateLimitExceeded"]),
        (403, vec!["rateLimitExceeded"]),
        (403, vec!["dailyLimitExceededUnreg", "userRateLimitExceeded"]),
        (429, vec!["rateLimitExceeded"]),
        (429, vec![]),
    ] {
        let v = verdict(status, &envelope(status, &reasons, "Rate Limit Exceeded"));
        assert_eq!(v.action, ResponseAction::RateLimited, "{status} {reasons:?}");
        assert_eq!(v.message.as_deref(), Some("Rate Limit Exceeded"));
    }
    let denied =
        envelope(403, &["insufficientFilePermissions"], "The user does not have sufficient permissions for this file.");
    let v = verdict(403, &denied);
    assert_eq!(v.action, ResponseAction::Fail);
    assert_eq!(v.message.as_deref(), Some("The user does not have sufficient permissions for this file."));
    assert_eq!(verdict(401, &envelope(401, &["authError"], "Invalid Credentials")).action, ResponseAction::AuthExpired);
}
