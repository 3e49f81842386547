//! Microsoft Graph delta queries through the manifest: the first round is the full pass,
//! its `@odata.deltaLink` the stream's state; later rounds bring changed records and
//! `@removed` tombstones; an expired link (400 or 410 `syncStateNotFound`) reads in full.

use std::collections::BTreeMap;

use tributary::model::RunRow;
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};

fn tenant(sim: &SimHandle) -> String {
    format!(
        "preset = \"aptem\"\n[providers.microsoft]\nenabled = true\nbase_url = \"{}\"\nvariables = {{ login_url = \"{}\" }}\n",
        sim.api_base(),
        sim.base_url()
    )
}

fn counts(run: &RunRow) -> (i64, i64, i64) {
    (run.stats.fetched, run.stats.inserted, run.stats.updated)
}

#[tokio::test]
async fn users_delta_reflects_changes_and_removals_and_an_expired_link_reads_in_full() {
    let sim = start(SimConfig::new(Provider::Microsoft, 20)).await.unwrap();
    let h = Harness::new("microsoft", &tenant(&sim), &sim).await;
    let full = h.sync("users").await;
    ok(&full);
    assert_eq!(counts(&full), (20, 20, 0));
    let link = full.stats.cursor_after.clone().expect("the delta link is the state");
    assert!(link.starts_with(&format!("{}/users/delta?$deltatoken=", sim.api_base())), "{link}");

    let quiet = h.sync("users").await;
    ok(&quiet);
    assert_eq!(counts(&quiet), (0, 0, 0));
    assert!(sim.request_log().last().unwrap().contains("$deltatoken="), "the pass requested the delta link");

    modify_until_changed(&sim, "users", 3, &[]);
    modify_until_changed(&sim, "users", 7, &[]);
    let added = sim.add("users", 1).unwrap().start;
    let gone = text(&sim.expected_record("users", 11).unwrap()["id"]);
    assert!(sim.delete("users", 11));
    let inc = h.sync("users").await;
    ok(&inc);
    // Two changed, one new, one removed (a removal counts as an update).
    assert_eq!(counts(&inc), (4, 1, 3));
    let stored = h.records("user").await;
    assert_eq!(stored.len(), 21);
    assert!(stored[&gone].deleted_at.is_some(), "the removed user is marked deleted");
    for i in [3u64, 7, added] {
        let e = sim.expected_record("users", i).unwrap();
        let row = &stored[&text(&e["id"])];
        assert_eq!(row.data["display_name"], e["displayName"]);
        assert!(row.deleted_at.is_none());
    }

    sim.expire_sync_states();
    let again = h.sync("users").await;
    ok(&again);
    let note = again.stats.note.clone().unwrap_or_default();
    assert!(note.contains("stored state expired (HTTP 400"), "{note}");
    assert_eq!(again.stats.fetched, 20, "a full pass over the live users");
    assert_ne!(again.stats.cursor_after, inc.stats.cursor_after, "a fresh delta link");
    let after = h.sync("users").await;
    ok(&after);
    assert_eq!(after.stats.fetched, 0);
}

#[tokio::test]
async fn groups_delta_and_teams() {
    let sim = start(SimConfig::new(Provider::Microsoft, 3).parents(2).stream_records("groups", 8)).await.unwrap();
    let h = Harness::new("microsoft", &tenant(&sim), &sim).await;
    assert_eq!(counts(ok(&h.sync("groups").await)), (8, 8, 0));
    modify_until_changed(&sim, "groups", 4, &["renewedDateTime"]);
    let gone = text(&sim.expected_record("groups", 6).unwrap()["id"]);
    assert!(sim.delete("groups", 6));
    let inc = h.sync("groups").await;
    assert_eq!(counts(ok(&inc)), (2, 0, 2));
    let stored = h.records("group").await;
    assert!(stored[&gone].deleted_at.is_some());
    let e = sim.expected_record("groups", 4).unwrap();
    assert_eq!(stored[&text(&e["id"])].data["description"], e["description"]);
}

/// Channel messages: one delta link per channel (channels of teams are the parents);
/// Outlook mail: one per user, and its expired link is a 410.
#[tokio::test]
async fn channel_and_mail_deltas_per_parent() {
    let sim = start(
        SimConfig::new(Provider::Microsoft, 4)
            .parents(2)
            .stream_records("groups", 3)
            .stream_records("channels", 4)
            .stream_records("channel_messages", 80)
            .stream_records("messages", 40),
    )
    .await
    .unwrap();
    let h = Harness::new("microsoft", &tenant(&sim), &sim).await;

    let full = h.sync("channel_messages").await;
    assert_eq!(counts(ok(&full)), (80, 80, 0));
    let links: BTreeMap<String, String> =
        serde_json::from_str(full.stats.cursor_after.as_deref().expect("states")).expect("one state per channel");
    assert_eq!(links.len(), 4);
    assert!(links.values().all(|l| l.contains("/messages/delta?$deltatoken=")));

    modify_until_changed(&sim, "channel_messages", 5, &["etag", "lastModifiedDateTime", "lastEditedDateTime"]);
    let victim = sim.expected_record("channel_messages", 70).unwrap();
    let gone = format!("{}:{}", text(&victim["channelIdentity"]["channelId"]), text(&victim["id"]));
    assert!(sim.delete("channel_messages", 70));
    let inc = h.sync("channel_messages").await;
    assert_eq!(counts(ok(&inc)), (2, 0, 2));
    let stored = h.records("message").await;
    assert!(stored[&gone].deleted_at.is_some(), "the removed message is marked deleted");
    let e = sim.expected_record("channel_messages", 5).unwrap();
    let key = format!("{}:{}", text(&e["channelIdentity"]["channelId"]), text(&e["id"]));
    assert_eq!(stored[&key].data["text"], e["body"]["content"]);

    let mail = h.sync("messages").await;
    assert_eq!(counts(ok(&mail)), (40, 40, 0));
    modify_until_changed(&sim, "messages", 9, &["@odata.etag", "changeKey", "lastModifiedDateTime"]);
    let gone = text(&sim.expected_record("messages", 21).unwrap()["id"]);
    assert!(sim.delete("messages", 21));
    let inc = h.sync("messages").await;
    assert_eq!(counts(ok(&inc)), (2, 0, 2));
    let stored = h.records("email").await;
    assert!(stored[&gone].deleted_at.is_some());
    let e = sim.expected_record("messages", 9).unwrap();
    assert_eq!(stored[&text(&e["id"])].data["is_read"], e["isRead"]);

    sim.expire_sync_states();
    let again = h.sync("messages").await;
    ok(&again);
    let note = again.stats.note.clone().unwrap_or_default();
    // Every user's link expired: each mailbox is read in full again.
    assert_eq!(note.matches("expired (HTTP 410").count(), 4, "{note}");
    assert_eq!(again.stats.fetched, 39);
}
