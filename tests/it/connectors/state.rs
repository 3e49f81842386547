//! Stream state taken from the response, written as a manifest file only: a delta link
//! requested as the next pass's URL, a start page token fetched before the full pass and
//! sent as `{state}`, a sync token that an expired-token error hands out afresh; expired
//! states start a full pass; tombstones mark stored records deleted.

use serde_json::{Value, json};
use tributary::model::{ChangeKind, EntityName, RunOutcome};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{Harness, ok};

const DELTACRM: &str = r#"# DeltaCRM: companies three ways, each with a state from the response.
name = "deltacrm"
title = "DeltaCRM"
category = "crm"
description = "Companies from DeltaCRM"
base_url = "https://api.deltacrm.example"
default_schedule = "30m"

[auth]
kind = "bearer"
credentials = ["api_token"]
value = "Bearer {api_token}"

# An expired sync token: 412, with a fresh token in the body.
[[responses]]
status = [412]
action = "state_expired"
message = "/errors/0/message"

# A delta feed (Graph-like): `@odata.nextLink` pages, `@odata.deltaLink` on the last
# page, `@removed` items, 410 when the delta link is too old.
[streams.companies]
entity = "company"
[streams.companies.request]
path = "/companies/delta"
records = "/value"
pagination = { kind = "next_url", next = "/@odata.nextLink" }
[streams.companies.state]
from = "/@odata.deltaLink"
use = "url"
expired = { status = [410] }
[streams.companies.tombstone]
when = "/@removed"

# A changes feed (Drive-like): a start page token fetched before the full listing,
# changes that wrap the record, `removed: true` with the key beside it.
[streams.files]
entity = "company"
enabled_by_default = false
[streams.files.request]
path = "/files"
records = "/files"
pagination = { kind = "cursor", cursor = "/nextPageToken", param = "pageToken" }
[streams.files.state]
from = "/newStartPageToken"
use = "param"
record = "/file"
init = { request = { path = "/changes/startPageToken" }, from = "/startPageToken" }
request = { path = "/changes", query = { pageToken = "{state}" }, records = "/changes" }
[streams.files.tombstone]
when = "/removed"
equals = true
key = "/fileId"

# Events (Asana-like): the first request without a token answers 412 with one.
[streams.tasks]
entity = "company"
enabled_by_default = false
[streams.tasks.request]
path = "/tasks"
records = "/data"
[streams.tasks.state]
from = "/sync"
use = "param"
record = "/resource"
init = { request = { path = "/events" } }
request = { path = "/events", query = { sync = "{state}" }, records = "/data" }
[streams.tasks.tombstone]
when = "/action"
equals = "deleted"

# Events per parent (Asana's per project): one sync token per parent record.
[streams.groups]
entity = "company"
enabled_by_default = false
[streams.groups.request]
path = "/groups"
records = "/data"

[streams.members]
entity = "company"
parent = "groups"
enabled_by_default = false
[streams.members.request]
path = "/groups/{parent.id}/members"
records = "/data"
[streams.members.state]
from = "/sync"
use = "param"
record = "/resource"
init = { request = { path = "/events", query = { resource = "{parent.id}" } } }
request = { path = "/events", query = { resource = "{parent.id}", sync = "{state}" }, records = "/data" }
[streams.members.tombstone]
when = "/action"
equals = "deleted"

# A feed of deletions only (Asana's events beside a stream that lists the records): a
# full pass only takes the first token; other items are skipped.
[streams.feed]
entity = "company"
enabled_by_default = false
[streams.feed.request]
path = "/feed"
records = "/data"
pagination = { kind = "cursor", cursor = "/sync", param = "sync", has_more = "/has_more" }
[streams.feed.state]
from = "/sync"
use = "param"
init = { request = { path = "/feed" } }
init_only = true
# An expired token missed the gap: `companies` reads in full and sweeps.
expired_full_pass = ["companies"]
request = { query = { sync = "{state}" } }
[streams.feed.tombstone]
when = "/action"
equals = "deleted"
key = "/resource/id"
only = true

[mappings.company]
external_id = { from = "id", transform = ["string"] }
name = "name"
"#;

fn company(id: u64, name: &str) -> Value {
    json!({ "id": id, "name": name })
}

fn tenant(server: &MockServer, streams: &str) -> String {
    format!("preset = \"aptem\"\n[providers.deltacrm]\nenabled = true\nbase_url = \"{}\"\n{streams}", server.uri())
}

async fn harness(server: &MockServer, streams: &str) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deltacrm.toml"), DELTACRM).unwrap();
    let h = Harness::with_connectors(
        "deltacrm",
        &tenant(server, streams),
        &json!({ "api_token": "delta-secret" }),
        Some(dir.path()),
    )
    .await;
    (h, dir)
}

/// (external id, name, deleted) of every stored company.
async fn stored(h: &Harness) -> Vec<(String, Value, bool)> {
    h.records("company")
        .await
        .into_values()
        .map(|r| (r.external_id, r.data["name"].clone(), r.deleted_at.is_some()))
        .collect()
}

fn row(id: &str, name: &str, deleted: bool) -> (String, Value, bool) {
    (id.to_owned(), json!(name), deleted)
}

fn get(p: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path(p.to_owned())).and(header("authorization", "Bearer delta-secret"))
}

#[tokio::test]
async fn a_delta_link_is_the_next_pass_and_removed_items_delete_and_an_expired_link_reads_in_full() {
    let server = MockServer::start().await;
    let uri = server.uri();
    // The first full pass: two pages, the delta link on the last.
    get("/companies/delta")
        .and(query_param_is_missing("$skiptoken"))
        .and(query_param_is_missing("$deltatoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [company(1, "One"), company(2, "Two")],
            "@odata.nextLink": format!("{uri}/companies/delta?$skiptoken=p2"),
        })))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    get("/companies/delta")
        .and(query_param("$skiptoken", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [company(3, "Three")],
            "@odata.deltaLink": format!("{uri}/companies/delta?$deltatoken=t1"),
        })))
        .expect(1)
        .mount(&server)
        .await;
    // The pass from the delta link: a change and a removal.
    get("/companies/delta")
        .and(query_param("$deltatoken", "t1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [company(2, "Two renamed"), { "id": 3, "@removed": { "reason": "deleted" } }],
            "@odata.deltaLink": format!("{uri}/companies/delta?$deltatoken=t2"),
        })))
        .expect(1)
        .mount(&server)
        .await;
    // That link is too old by the third run: 410, then a full pass again.
    get("/companies/delta")
        .and(query_param("$deltatoken", "t2"))
        .respond_with(
            ResponseTemplate::new(410)
                .set_body_json(json!({ "error": { "code": "syncStateNotFound", "message": "resync" } })),
        )
        .expect(1)
        .mount(&server)
        .await;
    get("/companies/delta")
        .and(query_param_is_missing("$skiptoken"))
        .and(query_param_is_missing("$deltatoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [company(1, "One"), company(2, "Two renamed"), company(4, "Four")],
            "@odata.deltaLink": format!("{uri}/companies/delta?$deltatoken=t3"),
        })))
        .expect(1)
        .mount(&server)
        .await;

    let (h, _dir) = harness(&server, "").await;
    let full = ok(&h.sync("companies").await).clone();
    assert_eq!((full.stats.fetched, full.stats.inserted, full.stats.pages), (3, 3, 2));
    assert_eq!(full.stats.cursor_after, Some(format!("{uri}/companies/delta?$deltatoken=t1")));
    assert_eq!(stored(&h).await, [row("1", "One", false), row("2", "Two", false), row("3", "Three", false)]);

    let delta = ok(&h.sync("companies").await).clone();
    // The removal counts as an update (the record is marked deleted), like a deletion stream's.
    assert_eq!((delta.stats.fetched, delta.stats.inserted, delta.stats.updated), (2, 0, 2));
    assert_eq!(delta.stats.cursor_after, Some(format!("{uri}/companies/delta?$deltatoken=t2")));
    assert_eq!(stored(&h).await, [row("1", "One", false), row("2", "Two renamed", false), row("3", "Three", true)]);
    let company = EntityName::parse("company").unwrap();
    let changes = h.store.list_changes(&h.tenant, Some(&company), 0, 100).await.unwrap();
    let last = changes.iter().find(|c| c.external_id == "3").unwrap();
    assert_eq!(last.kind, ChangeKind::Deleted);
    assert_eq!(last.run_id, Some(delta.id));

    let again = ok(&h.sync("companies").await).clone();
    let note = again.stats.note.clone().unwrap_or_default();
    assert!(note.contains("stored state expired (HTTP 410"), "{note}");
    assert_eq!((again.stats.fetched, again.stats.inserted, again.stats.unchanged), (3, 1, 2));
    assert_eq!(again.stats.cursor_after, Some(format!("{uri}/companies/delta?$deltatoken=t3")));
    assert_eq!(stored(&h).await.len(), 4);
    server.verify().await;
}

#[tokio::test]
async fn a_start_page_token_taken_before_the_full_pass_starts_the_changes_pass() {
    let server = MockServer::start().await;
    get("/changes/startPageToken")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "startPageToken": "100" })))
        .expect(1)
        .mount(&server)
        .await;
    get("/files")
        .and(query_param_is_missing("pageToken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "files": [company(1, "One"), company(2, "Two")], "nextPageToken": "f2",
        })))
        .expect(1)
        .mount(&server)
        .await;
    get("/files")
        .and(query_param("pageToken", "f2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "files": [company(3, "Three")] })))
        .expect(1)
        .mount(&server)
        .await;
    // The changes since the token: two pages, the new start token on the last.
    get("/changes")
        .and(query_param("pageToken", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "changes": [
                { "fileId": "2", "removed": false, "file": company(2, "Two renamed") },
                { "changeType": "drive", "driveId": "d1" },
            ],
            "nextPageToken": "101",
        })))
        .expect(1)
        .mount(&server)
        .await;
    get("/changes")
        .and(query_param("pageToken", "101"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "changes": [{ "fileId": "1", "removed": true }, { "fileId": "5", "removed": false, "file": company(5, "Five") }],
            "newStartPageToken": "102",
        })))
        .expect(1)
        .mount(&server)
        .await;

    let (h, _dir) = harness(&server, "streams = { files = { enabled = true } }\n").await;
    let full = ok(&h.sync("files").await).clone();
    assert_eq!((full.stats.fetched, full.stats.inserted), (3, 3));
    assert_eq!(full.stats.cursor_after.as_deref(), Some("100"));

    let changes = ok(&h.sync("files").await).clone();
    // Page 1: one change (the shared-drive item is not a record); page 2: a removal and a new file.
    assert_eq!((changes.stats.fetched, changes.stats.inserted, changes.stats.updated), (3, 1, 2));
    assert_eq!(changes.stats.cursor_after.as_deref(), Some("102"));
    assert_eq!(
        stored(&h).await,
        [row("1", "One", true), row("2", "Two renamed", false), row("3", "Three", false), row("5", "Five", false)]
    );
    server.verify().await;
}

#[tokio::test]
async fn a_full_pass_cut_short_keeps_its_start_page_token_in_the_saved_position() {
    let server = MockServer::start().await;
    get("/changes/startPageToken")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "startPageToken": "700" })))
        .expect(1)
        .mount(&server)
        .await;
    get("/files")
        .and(query_param_is_missing("pageToken"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "files": [company(1, "One")], "nextPageToken": "f2" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    get("/files")
        .and(query_param("pageToken", "f2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "files": [company(2, "Two")] })))
        .expect(1)
        .mount(&server)
        .await;
    let (h, _dir) = harness(&server, "streams = { files = { enabled = true, max_pages_per_run = 1 } }\n").await;
    // The first run stops after a page: no state yet (the pass is not complete).
    let first = h.sync("files").await;
    assert_eq!(first.outcome, RunOutcome::Partial, "{:?}", first.stats.error);
    assert_eq!(first.stats.cursor_after, None);
    // The next run continues the pass and stores the token taken before it began.
    let second = ok(&h.sync("files").await).clone();
    assert_eq!((second.stats.fetched, second.stats.inserted), (1, 1));
    assert_eq!(second.stats.cursor_after.as_deref(), Some("700"));
    assert_eq!(stored(&h).await, [row("1", "One", false), row("2", "Two", false)]);
    server.verify().await;
}

#[tokio::test]
async fn a_sync_token_comes_from_the_expired_token_error_and_an_expired_one_reads_in_full() {
    let server = MockServer::start().await;
    let expired = |fresh: &str| {
        ResponseTemplate::new(412).set_body_json(json!({
            "errors": [{ "message": "Sync token invalid or too old" }], "sync": fresh,
        }))
    };
    // The first state: the events request without a token.
    get("/events").and(query_param_is_missing("sync")).respond_with(expired("s1")).expect(1).mount(&server).await;
    get("/tasks")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "data": [company(1, "One"), company(2, "Two")] })),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    get("/events")
        .and(query_param("sync", "s1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                { "action": "changed", "resource": company(2, "Two renamed") },
                { "action": "deleted", "resource": { "id": 1 } },
            ],
            "sync": "s2", "has_more": false,
        })))
        .expect(1)
        .mount(&server)
        .await;
    // s2 is too old by the third run: the error hands out s3 and the tasks are read in full.
    get("/events").and(query_param("sync", "s2")).respond_with(expired("s3")).expect(1).mount(&server).await;
    get("/tasks")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": [company(2, "Two renamed"), company(3, "Three")] })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let (h, _dir) = harness(&server, "streams = { tasks = { enabled = true } }\n").await;
    let full = ok(&h.sync("tasks").await).clone();
    assert_eq!((full.stats.fetched, full.stats.inserted), (2, 2));
    assert_eq!(full.stats.cursor_after.as_deref(), Some("s1"));

    let events = ok(&h.sync("tasks").await).clone();
    assert_eq!((events.stats.fetched, events.stats.updated), (2, 2));
    assert_eq!(events.stats.cursor_after.as_deref(), Some("s2"));
    assert_eq!(stored(&h).await, [row("1", "One", true), row("2", "Two renamed", false)]);

    let again = ok(&h.sync("tasks").await).clone();
    let note = again.stats.note.clone().unwrap_or_default();
    assert!(note.contains("stored state expired (HTTP 412: Sync token invalid or too old)"), "{note}");
    assert_eq!((again.stats.fetched, again.stats.inserted, again.stats.unchanged), (2, 1, 1));
    assert_eq!(again.stats.cursor_after.as_deref(), Some("s3"));
    server.verify().await;
}

#[tokio::test]
async fn a_child_stream_keeps_one_state_per_parent_and_an_expired_one_rereads_only_that_parent() {
    let server = MockServer::start().await;
    let expired = |fresh: &str| {
        ResponseTemplate::new(412)
            .set_body_json(json!({ "errors": [{ "message": "Sync token invalid" }], "sync": fresh }))
    };
    let events =
        |data: Value, sync: &str| ResponseTemplate::new(200).set_body_json(json!({ "data": data, "sync": sync }));
    get("/groups")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [{ "id": "G1" }, { "id": "G2" }] })))
        .mount(&server)
        .await;
    for (group, fresh) in [("G1", "g1-a"), ("G2", "g2-a")] {
        get("/events")
            .and(query_param("resource", group))
            .and(query_param_is_missing("sync"))
            .respond_with(expired(fresh))
            .expect(1)
            .mount(&server)
            .await;
    }
    get("/groups/G1/members")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [company(1, "One")] })))
        .expect(1)
        .mount(&server)
        .await;
    // G2 is read in full twice: first, and again once its token expired.
    get("/groups/G2/members")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [company(2, "Two")] })))
        .expect(2)
        .mount(&server)
        .await;
    get("/events")
        .and(query_param("resource", "G1"))
        .and(query_param("sync", "g1-a"))
        .respond_with(events(json!([{ "action": "deleted", "resource": { "id": 1 } }]), "g1-b"))
        .expect(1)
        .mount(&server)
        .await;
    get("/events")
        .and(query_param("resource", "G2"))
        .and(query_param("sync", "g2-a"))
        .respond_with(expired("g2-b"))
        .expect(1)
        .mount(&server)
        .await;

    let (h, _dir) = harness(&server, "streams = { groups = { enabled = true }, members = { enabled = true } }\n").await;
    let full = ok(&h.sync("members").await).clone();
    assert_eq!((full.stats.fetched, full.stats.inserted), (2, 2));
    assert_eq!(
        serde_json::from_str::<Value>(full.stats.cursor_after.as_deref().unwrap()).unwrap(),
        json!({ "G1": "g1-a", "G2": "g2-a" })
    );
    let next = ok(&h.sync("members").await).clone();
    let note = next.stats.note.clone().unwrap_or_default();
    assert!(note.contains("the stored state of parent G2 expired (HTTP 412"), "{note}");
    assert_eq!((next.stats.fetched, next.stats.updated, next.stats.unchanged), (2, 1, 1));
    assert_eq!(
        serde_json::from_str::<Value>(next.stats.cursor_after.as_deref().unwrap()).unwrap(),
        json!({ "G1": "g1-b", "G2": "g2-b" })
    );
    assert_eq!(stored(&h).await, [row("1", "One", true), row("2", "Two", false)]);
    server.verify().await;
}

#[test]
fn connectors_check_reports_state_and_tombstone_mistakes_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("deltacrm.toml");
    std::fs::write(&good, DELTACRM).unwrap();
    let (success, text) = crate::support::connectors_check(&good);
    assert!(success, "{text}");

    let edits = [
        ("from = \"/@odata.deltaLink\"", "from = \"@odata.deltaLink\""),
        ("when = \"/@removed\"", "when = \"@removed\""),
        ("query = { pageToken = \"{state}\" }", "query = { pageToken = \"{token}\" }"),
        ("init = { request = { path = \"/events\" } }", "init = { request = { query = { a = \"b\" } } }"),
        ("expired = { status = [410] }", "expired = { }"),
        ("key = \"/fileId\"", "key = \"fileId\""),
        ("expired_full_pass = [\"companies\"]", "expired_full_pass = [\"nosuch\", \"feed\"]"),
    ];
    let mut text = DELTACRM.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    let broken_dir = tempfile::tempdir().unwrap();
    let broken = broken_dir.path().join("deltacrm.toml");
    std::fs::write(&broken, text).unwrap();
    let (success, out) = crate::support::connectors_check(&broken);
    assert!(!success, "{out}");
    let expected = [
        ("streams.companies.state.from", "is not a JSON pointer"),
        ("streams.companies.tombstone.when", "is not a JSON pointer"),
        ("streams.files.state.request", "never uses `{state}`"),
        ("streams.files.state.request.query.pageToken", "unknown template variable `{token}`"),
        ("streams.tasks.state.init.request.path", "the init request needs a path"),
        ("streams.companies.state.expired", "name at least one `status` or `body` field"),
        ("streams.files.tombstone.key", "is not a JSON pointer"),
        ("streams.feed.state.expired_full_pass[0]", "unknown stream `nosuch`"),
        ("streams.feed.state.expired_full_pass[1]", "reads itself in full already"),
    ];
    for (key, message) in expected {
        assert!(
            out.lines().any(|l| l.contains(&format!(": {key}: ")) && l.contains(message)),
            "no `{key}: …{message}…` in:\n{out}"
        );
    }
    let errors: Vec<&str> = out.lines().filter(|l| l.contains("deltacrm.toml: ")).collect();
    assert_eq!(errors.len(), expected.len(), "{out}");

    // An unknown key in the state section names it.
    let unknown = DELTACRM.replacen("use = \"url\"", "use = \"url\"\nfrom_header = \"X-State\"", 1);
    std::fs::write(&broken, unknown).unwrap();
    let (success, out) = crate::support::connectors_check(&broken);
    assert!(!success && out.contains("from_header"), "{out}");
}

/// A variant (`extends`) is checked as the manifest it makes with its base: from the same
/// directory when the directory has one, else built in; what it names must exist.
#[test]
fn connectors_check_takes_a_variants_base_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let variant = dir.path().join("mylab.toml");
    std::fs::write(
        &variant,
        "name = \"mylab\"\nextends = \"gitlab\"\ntitle = \"My GitLab\"\n\
         [auth]\nkind = \"bearer\"\ncredentials = [\"token\"]\nvalue = \"Bearer {token}\"\n",
    )
    .unwrap();
    let (success, text) = crate::support::connectors_check(&variant);
    assert!(success, "{text}");
    assert!(text.contains("valid manifest for `mylab` (3 streams)"), "{text}");

    // A base in the same directory wins over the built-in one.
    std::fs::write(dir.path().join("gitlab.toml"), "name = \"gitlab\"\n").unwrap();
    let (success, text) = crate::support::connectors_check(&variant);
    assert!(!success, "the directory's gitlab.toml is the base: {text}");
    assert!(text.contains("mylab.toml"), "{text}");

    let other = tempfile::tempdir().unwrap();
    let nowhere = other.path().join("lost.toml");
    std::fs::write(&nowhere, "name = \"lost\"\nextends = \"nowhere\"\n").unwrap();
    let (success, text) = crate::support::connectors_check(&nowhere);
    assert!(!success, "{text}");
    assert!(text.contains("lost.toml: extends: no manifest `nowhere` to extend"), "{text}");

    // A full pass that only takes a first state needs `init`.
    let feed = other.path().join("feed.toml");
    let text = DELTACRM.replacen("init = { request = { path = \"/events\" } }", "init_only = true", 1);
    assert!(text != DELTACRM);
    std::fs::write(&feed, text.replace("name = \"deltacrm\"", "name = \"feed\"")).unwrap();
    let (success, out) = crate::support::connectors_check(&feed);
    assert!(!success, "{out}");
    assert!(
        out.contains("streams.tasks.state.init_only: a full pass that only takes the first state needs `init`"),
        "{out}"
    );
}

#[tokio::test]
async fn a_feed_of_deletions_only_takes_its_first_token_and_keeps_only_the_deletions() {
    let server = MockServer::start().await;
    get("/companies/delta")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [company(1, "One"), company(2, "Two")], "@odata.deltaLink": format!("{}/companies/delta?t=1", server.uri()),
        })))
        .mount(&server)
        .await;
    // The first run: one request without a token, answered 412 with one; nothing else.
    get("/feed")
        .and(query_param_is_missing("sync"))
        .respond_with(
            ResponseTemplate::new(412)
                .set_body_json(json!({ "errors": [{ "message": "Sync token invalid" }], "sync": "f1" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    // The next: two responses (`has_more`), a changed record's stub skipped.
    get("/feed")
        .and(query_param("sync", "f1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                { "action": "changed", "resource": { "id": 2 } },
                { "action": "deleted", "resource": { "id": 1 } },
            ],
            "sync": "f2", "has_more": true,
        })))
        .expect(1)
        .mount(&server)
        .await;
    get("/feed")
        .and(query_param("sync", "f2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{ "action": "deleted", "resource": { "id": 9 } }], "sync": "f3", "has_more": false,
        })))
        .expect(1)
        .mount(&server)
        .await;

    let (h, _dir) = harness(&server, "streams = { feed = { enabled = true } }\n").await;
    ok(&h.sync("companies").await);
    let first = ok(&h.sync("feed").await).clone();
    assert_eq!((first.stats.fetched, first.stats.updated, first.stats.pages), (0, 0, 0), "{:?}", first.stats);
    assert_eq!(first.stats.cursor_after.as_deref(), Some("f1"));

    let second = ok(&h.sync("feed").await).clone();
    // Two deletions read: one of a stored record, one of a record never stored.
    assert_eq!((second.stats.fetched, second.stats.updated, second.stats.unchanged), (2, 1, 1), "{:?}", second.stats);
    assert_eq!(second.stats.cursor_after.as_deref(), Some("f3"));
    assert_eq!(stored(&h).await, [row("1", "One", true), row("2", "Two", false)], "the stub never overwrote record 2");
    server.verify().await;
}

/// A feed whose token expired names, in `state.expired_full_pass`, the stream that lists
/// its records: that stream's next run reads in full (here instead of its own delta
/// link) and sweeps the stored records it no longer lists, though no `sweep` is set —
/// the deletions the feed missed while its token was expired.
#[tokio::test]
async fn an_expired_feed_makes_the_stream_it_names_read_in_full_and_sweep() {
    let server = MockServer::start().await;
    let listing = |ids: &[(u64, &str)], token: &str| {
        json!({
            "value": ids.iter().map(|(id, name)| company(*id, name)).collect::<Vec<_>>(),
            "@odata.deltaLink": format!("{}/companies/delta?t={token}", server.uri()),
        })
    };
    // The first full listing, then (after the feed's token expired) the second: record 2
    // was deleted meanwhile (one of six: within the sweep's guard), and no feed reports it.
    get("/companies/delta")
        .and(query_param_is_missing("t"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(listing(
                &[(1, "One"), (2, "Two"), (3, "Three"), (4, "Four"), (5, "Five"), (6, "Six")],
                "1",
            )),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    get("/companies/delta")
        .and(query_param_is_missing("t"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(listing(&[(1, "One"), (3, "Three"), (4, "Four"), (5, "Five"), (6, "Six")], "2")),
        )
        .expect(1)
        .mount(&server)
        .await;
    // The stored delta link is never asked for: the due full pass replaces it.
    get("/companies/delta")
        .and(query_param("t", "1"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    get("/feed")
        .and(query_param_is_missing("sync"))
        .respond_with(
            ResponseTemplate::new(412).set_body_json(json!({ "errors": [{ "message": "no token" }], "sync": "f1" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    get("/feed")
        .and(query_param("sync", "f1"))
        .respond_with(
            ResponseTemplate::new(412)
                .set_body_json(json!({ "errors": [{ "message": "token too old" }], "sync": "f2" })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let (h, _dir) = harness(&server, "streams = { feed = { enabled = true } }\n").await;
    ok(&h.sync("companies").await);
    ok(&h.sync("feed").await);
    let expired = ok(&h.sync("feed").await).clone();
    let note = expired.stats.note.clone().unwrap_or_default();
    assert!(note.contains("expired (HTTP 412: token too old)"), "{note}");
    assert!(note.contains("a full pass that sweeps is due for `companies`"), "{note}");
    assert_eq!(expired.stats.cursor_after.as_deref(), Some("f2"));

    let full = ok(&h.sync("companies").await).clone();
    let note = full.stats.note.clone().unwrap_or_default();
    assert!(note.contains("swept 1 of 6 records not seen in the full pass"), "{note}");
    let deleted: Vec<String> = stored(&h).await.into_iter().filter(|r| r.2).map(|r| r.0).collect();
    assert_eq!(deleted, ["2"]);
    assert_eq!(full.stats.cursor_after, Some(format!("{}/companies/delta?t=2", server.uri())));
    server.verify().await;
}
