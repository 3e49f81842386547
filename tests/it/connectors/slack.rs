use std::collections::BTreeMap;

use serde_json::{Value, json};
use tributary::model::{ConnectionStatus, Owner, RunOutcome};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, ok, text};

/// The `conversations.history` page size the manifest asks for.
const PAGE: u64 = 200;

/// Slack is in no preset: the tenant switches it on next to its LMS.
fn tenant(sim: &SimHandle) -> String {
    format!("preset = \"aptem\"\n[providers.slack]\nenabled = true\nbase_url = \"{}\"\n", sim.api_base())
}

/// The external id the manifest gives message `i`: `channel:ts`.
fn message_id(sim: &SimHandle, i: u64) -> String {
    let channel = channel_of(sim, i);
    format!("{channel}:{}", text(&sim.expected_record("messages", i).unwrap()["ts"]))
}

fn channel_of(sim: &SimHandle, i: u64) -> String {
    let parent = sim.parent_of("messages", i).expect("a message belongs to a channel");
    text(&sim.expected_record("channels", parent).unwrap()["id"])
}

/// The job cursor of a child stream: one cursor per channel id.
fn cursors(run: &tributary::model::RunRow) -> BTreeMap<String, String> {
    serde_json::from_str(run.stats.cursor_after.as_deref().expect("a cursor")).expect("a JSON object of cursors")
}

#[tokio::test]
async fn messages_of_every_channel_then_incremental_per_channel() {
    let n = 1_000;
    let sim = start(SimConfig::new(Provider::Slack, n).parents(3)).await.unwrap();
    let h = Harness::new("slack", &tenant(&sim), &sim).await;

    let channels = h.sync("channels").await;
    ok(&channels);
    assert_eq!(channels.stats.inserted, 3);
    let stored = h.records("channel").await;
    for p in 0..3 {
        let expected = sim.expected_record("channels", p).unwrap();
        let row = &stored[&text(&expected["id"])].data;
        assert_eq!(row["name"], expected["name"]);
        assert_eq!(row["is_private"], expected["is_private"]);
        assert_eq!(row["member_count"], expected["num_members"]);
    }

    let run = h.sync("messages").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.updated), (n as i64, n as i64, 0));
    // About 333 messages per channel: two pages of at most 200 each.
    assert_eq!(run.stats.pages, 6);
    let stored = h.records("message").await;
    assert_eq!(stored.len() as u64, n);
    let per_channel = (0..n).fold(BTreeMap::<String, u64>::new(), |mut m, i| {
        *m.entry(channel_of(&sim, i)).or_default() += 1;
        m
    });
    assert_eq!(per_channel.len(), 3, "every channel has messages");
    for (channel, count) in &per_channel {
        let got = stored.values().filter(|r| r.data["channel_id"] == json!(channel)).count() as u64;
        assert_eq!(got, *count, "messages of {channel}");
    }
    for i in [0, 1, 332, 333, 334, 666, 667, n - 1] {
        let expected = sim.expected_record("messages", i).unwrap();
        let row = &stored[&message_id(&sim, i)].data;
        assert_eq!(row["channel_id"], json!(channel_of(&sim, i)));
        assert_eq!(row["user_id"], expected["user"]);
        assert_eq!(row["text"], expected["text"]);
        let sent = sim.updated_at("messages", i).unwrap();
        assert_eq!(row["sent_at"], json!(sent.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()));
    }
    let before = cursors(&run);
    assert_eq!(before.keys().cloned().collect::<Vec<_>>(), per_channel.keys().cloned().collect::<Vec<_>>());

    // One new message: it lands in the first channel, whose cursor alone moves.
    let added = sim.add("messages", 1).unwrap().start;
    let first = channel_of(&sim, added);
    let inc = h.sync("messages").await;
    ok(&inc);
    assert_eq!(inc.cursor_before, run.stats.cursor_after);
    assert_eq!(
        (inc.stats.fetched, inc.stats.inserted, inc.stats.updated),
        (1, 1, 0),
        "`oldest` is exclusive: nothing else comes back"
    );
    let after = cursors(&inc);
    for (channel, cursor) in &before {
        if *channel == first {
            assert!(after[channel] > *cursor, "{channel} moved");
        } else {
            assert_eq!(after[channel], *cursor, "{channel} kept its cursor");
        }
    }
    assert!(h.records("message").await.contains_key(&message_id(&sim, added)));

    // An edited message in the last channel is reposted with a new `ts`; only that
    // channel's cursor moves now.
    let edited = n - 1;
    let last = channel_of(&sim, edited);
    assert_ne!(last, first);
    assert!(sim.modify("messages", edited));
    let inc2 = h.sync("messages").await;
    ok(&inc2);
    assert_eq!((inc2.stats.fetched, inc2.stats.inserted), (1, 1));
    let after2 = cursors(&inc2);
    for (channel, cursor) in &after {
        assert_eq!(after2[channel] > *cursor, *channel == last, "{channel}");
    }
    let stored = h.records("message").await;
    let row = &stored[&message_id(&sim, edited)].data;
    assert_eq!(row["text"], sim.expected_record("messages", edited).unwrap()["text"]);
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_page_and_partial_last_page() {
    super::assert_pagination_edges(
        PAGE,
        |n| SimConfig::new(Provider::Slack, n).parents(1),
        tenant,
        "slack",
        "messages",
        "message",
    )
    .await;
    // No channel at all: nothing to read, and still a success.
    let sim = start(SimConfig::new(Provider::Slack, 10).parents(0)).await.unwrap();
    let h = Harness::new("slack", &tenant(&sim), &sim).await;
    let run = h.sync("messages").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.pages), (0, 0));
}

/// Slack rotates refresh tokens and treats a spent one as stolen (the grant dies), so
/// a refresh must store the new one before using the new access token. The next run
/// uses the stored access token while it is valid, and refreshes once it expired.
#[tokio::test]
async fn rotated_refresh_tokens_are_stored_between_runs_and_a_revoked_grant_needs_reauth() {
    let sim = start(SimConfig::new(Provider::Slack, 20)).await.unwrap();
    let initial = sim.credentials()["refresh_token"].as_str().unwrap().to_owned();
    let h = Harness::new("slack", &tenant(&sim), &sim).await;
    let version =
        || async { h.store.get_credentials(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap().1 };
    let token_calls = || sim.requests_for("/api/oauth.v2.access");
    let v0 = version().await;
    ok(&h.sync("users").await);
    let v1 = version().await;
    assert!(v1 > v0, "the rotated refresh token was stored ({v0} → {v1})");
    assert_eq!(token_calls(), 1);
    ok(&h.sync("users").await);
    assert_eq!((version().await, token_calls()), (v1, 1), "the stored access token was used again");
    sim.expire_access_tokens();
    let second = h.sync("users").await;
    ok(&second);
    assert!(version().await > v1);
    assert_eq!(token_calls(), 2);
    assert_eq!(second.stats.inserted, 0);
    let users = h.records("user").await;
    assert_eq!(users.len(), 20);
    let expected = sim.expected_record("users", 19).unwrap();
    let row = &users[&text(&expected["id"])].data;
    assert_eq!(row["display_name"], expected["profile"]["display_name"]);
    assert_eq!(row["email"], expected["profile"]["email"]);

    // What is stored is the grant's current refresh token, sealed.
    let (sealed, _) = h.store.get_credentials(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    let opened = h.key.open(&h.tenant, &h.provider, &sealed).unwrap();
    let opened: Value = serde_json::from_slice(&opened).unwrap();
    let refresh = opened["refresh_token"].as_str().unwrap();
    assert_ne!(refresh, initial);
    assert_eq!(refresh, sim.credentials()["refresh_token"].as_str().unwrap());
    let plain = refresh.as_bytes();
    assert!(!sealed.bytes.windows(plain.len()).any(|w| w == plain));

    sim.revoke();
    let failed = h.sync("users").await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    assert!(failed.stats.error.as_deref().unwrap_or("").contains("invalid_grant"), "{:?}", failed.stats.error);
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::NeedsReauth);
}

/// A token revoked while a run holds it (`token_revoked` in an HTTP 200) is an auth
/// failure: the run refreshes, the grant is dead, and the connection needs reauth.
#[tokio::test]
async fn a_token_revoked_during_a_run_needs_reauth() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth.v2.access"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "access_token": "xoxe.xoxb-1", "refresh_token": "xoxe-1-b", "expires_in": 43_200
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth.v2.access"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": false, "error": "invalid_grant" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/users.list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": false, "error": "token_revoked" })))
        .expect(1)
        .mount(&server)
        .await;
    let tenant = format!("preset = \"aptem\"\n[providers.slack]\nenabled = true\nbase_url = \"{}\"\n", server.uri());
    let creds = json!({ "client_id": "c", "client_secret": "s", "refresh_token": "xoxe-1-a" });
    let h = Harness::with_connectors("slack", &tenant, &creds, None).await;
    let run = h.sync("users").await;
    assert_eq!(run.outcome, RunOutcome::Failed);
    assert!(run.stats.error.as_deref().unwrap_or("").contains("invalid_grant"), "{:?}", run.stats.error);
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::NeedsReauth);
    server.verify().await;
}
