use std::collections::BTreeSet;

use serde_json::{Value, json};
use tributary::model::{ConnectionStatus, Owner, RunOutcome};
use tributary_simulator::{Faults, Provider, SimConfig, SimHandle, start};

use super::{Harness, ok, text};

/// Microsoft is in no preset: the tenant switches it on next to its LMS; the identity
/// platform is the simulator too.
fn tenant(sim: &SimHandle) -> String {
    format!(
        "preset = \"aptem\"\n[providers.microsoft]\nenabled = true\nbase_url = \"{}\"\nvariables = {{ login_url = \"{}\" }}\n",
        sim.api_base(),
        sim.base_url()
    )
}

/// Requests to the token endpoint so far.
fn token_calls(sim: &SimHandle) -> u64 {
    let path = sim.token_url().unwrap().replace(&sim.base_url(), "");
    sim.requests_for(&path)
}

/// Two teams among six groups, five channels, 120 channel messages, twelve users with 60
/// mail messages between them.
fn config() -> SimConfig {
    SimConfig::new(Provider::Microsoft, 12)
        .parents(2)
        .stream_records("groups", 6)
        .stream_records("channels", 5)
        .stream_records("channel_messages", 120)
        .stream_records("messages", 60)
}

#[tokio::test]
async fn every_stream_syncs_in_full_with_one_client_credentials_token() {
    let sim = start(config()).await.unwrap();
    let h = Harness::new("microsoft", &tenant(&sim), &sim).await;

    let users = h.sync("users").await;
    ok(&users);
    assert_eq!((users.stats.fetched, users.stats.inserted, users.stats.pages), (12, 12, 1));
    let stored = h.records("user").await;
    for i in [0u64, 11] {
        let e = sim.expected_record("users", i).unwrap();
        let row = &stored[&text(&e["id"])].data;
        assert_eq!(row["name"], e["userPrincipalName"]);
        assert_eq!(row["display_name"], e["displayName"]);
        assert_eq!(row["email"], json!(e["mail"].as_str().unwrap().to_lowercase()));
        assert_eq!(row["is_bot"], false);
    }

    let groups = h.sync("groups").await;
    ok(&groups);
    assert_eq!(groups.stats.inserted, 6);
    let stored = h.records("group").await;
    for i in 0..6u64 {
        let e = sim.expected_record("groups", i).unwrap();
        let row = &stored[&text(&e["id"])].data;
        assert_eq!(row["name"], e["displayName"]);
        assert_eq!(row["email"], json!(e["mail"].as_str().unwrap().to_lowercase()));
        assert_eq!(row["is_team"], json!(i < 2), "group {i}: the first two are teams");
        assert_eq!(row["visibility"], e["visibility"]);
    }
    // The teams stream reads the same two team groups: nothing new.
    let teams = h.sync("teams").await;
    ok(&teams);
    assert_eq!((teams.stats.fetched, teams.stats.inserted), (2, 0));

    let channels = h.sync("channels").await;
    ok(&channels);
    assert_eq!(channels.stats.inserted, 5);
    let stored = h.records("channel").await;
    for i in 0..5u64 {
        let e = sim.expected_record("channels", i).unwrap();
        let row = &stored[&text(&e["id"])].data;
        assert_eq!(row["name"], e["displayName"]);
        assert_eq!(row["is_private"], json!(e["membershipType"] == "private"));
    }

    // Channel messages: channels of teams are the parents (two levels), 50 a page.
    let messages = h.sync("channel_messages").await;
    ok(&messages);
    assert_eq!((messages.stats.fetched, messages.stats.inserted), (120, 120));
    // 24 messages per channel: one page each.
    assert_eq!(messages.stats.pages, 5);
    let stored = h.records("message").await;
    assert_eq!(stored.len(), 120);
    for i in [0u64, 57, 119] {
        let e = sim.expected_record("channel_messages", i).unwrap();
        let channel = e["channelIdentity"]["channelId"].as_str().unwrap();
        let row = &stored[&format!("{channel}:{}", text(&e["id"]))].data;
        assert_eq!(row["channel_id"], channel);
        assert_eq!(row["user_id"], e["from"]["user"]["id"]);
        assert_eq!(row["text"], e["body"]["content"]);
        let instant = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        assert_eq!(instant(&row["sent_at"]), instant(&e["createdDateTime"]));
    }

    let mail = h.sync("messages").await;
    ok(&mail);
    assert_eq!((mail.stats.fetched, mail.stats.inserted), (60, 60));
    let stored = h.records("email").await;
    let mailboxes: BTreeSet<&str> = stored.values().map(|r| r.data["mailbox_id"].as_str().unwrap()).collect();
    assert_eq!(mailboxes.len(), 12);
    for i in [0u64, 31, 59] {
        let e = sim.expected_record("messages", i).unwrap();
        let row = &stored[&text(&e["id"])].data;
        let owner = sim.expected_record("users", sim.parent_of("messages", i).unwrap()).unwrap();
        assert_eq!(row["mailbox_id"], owner["id"]);
        assert_eq!(row["subject"], e["subject"]);
        assert_eq!(row["from_email"], e["from"]["emailAddress"]["address"]);
        assert_eq!(row["is_read"], e["isRead"]);
        assert_eq!(row["conversation_id"], e["conversationId"]);
    }

    // One client-credentials token served every run.
    assert_eq!(token_calls(&sim), 1);
}

#[tokio::test]
async fn an_expired_token_is_replaced_once_and_a_revoked_app_needs_reauth() {
    let sim = start(SimConfig::new(Provider::Microsoft, 30)).await.unwrap();
    let h = Harness::new("microsoft", &tenant(&sim), &sim).await;
    ok(&h.sync("users").await);
    assert_eq!(token_calls(&sim), 1);
    sim.expire_access_tokens();
    let run = h.sync("users").await;
    ok(&run);
    // A delta round: nothing changed.
    assert_eq!((run.stats.fetched, run.stats.http_calls), (0, 2), "{:?}", run.stats);
    assert_eq!(token_calls(&sim), 2, "the 401 made one new token");
    ok(&h.sync("users").await);
    assert_eq!(token_calls(&sim), 2, "and that token is reused");

    sim.revoke();
    sim.expire_access_tokens();
    let failed = h.sync("users").await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    assert!(failed.stats.error.as_deref().unwrap_or("").contains("invalid_client"), "{:?}", failed.stats.error);
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::NeedsReauth);
}

#[tokio::test]
async fn throttling_waits_the_retry_after_the_server_sends() {
    let faults = Faults::none().rate_limit_every(3).retry_after_secs(2);
    let sim = start(SimConfig::new(Provider::Microsoft, 50).page_size_cap(10).faults(faults)).await.unwrap();
    let h = Harness::new("microsoft", &tenant(&sim), &sim).await;
    let run = h.sync("users").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.pages), (50, 5));
    // Five pages: requests 3 and 6 were throttled, so seven requests in all.
    assert_eq!(sim.data_request_count(), 7);
    assert_eq!(run.stats.rate_limit_waits, 2);
    assert!(run.stats.rate_limit_wait_ms >= 4_000, "{:?}", run.stats);
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_page_and_partial_last_page() {
    // Delta pages of users hold 100 (the server decides; `$top` is not sent).
    super::assert_pagination_edges(
        100,
        |n| SimConfig::new(Provider::Microsoft, n),
        tenant,
        "microsoft",
        "users",
        "user",
    )
    .await;
}

/// Delegated access is the built-in variant `microsoft_delegated` (`extends = "microsoft"`
/// with another `[auth]`): the same streams, the refresh token rotates on every use and
/// the rotated one is what the next token call sends (the simulator revokes a grant whose
/// spent token comes back).
#[tokio::test]
async fn delegated_access_with_rotating_refresh_tokens_through_the_delegated_variant() {
    let sim = start(SimConfig::new(Provider::Microsoft, 8)).await.unwrap();
    let creds: Value = sim.oauth_credentials().unwrap();
    let toml = tenant(&sim).replace("[providers.microsoft]", "[providers.microsoft_delegated]");
    let h = Harness::with_connectors("microsoft_delegated", &toml, &creds, None).await;
    let delegated = h.catalog.manifests.get("microsoft_delegated").unwrap();
    let app = h.catalog.manifests.get("microsoft").unwrap();
    assert_eq!(delegated.auth.kind, tributary::config::AuthKind::Oauth2RefreshToken);
    assert_eq!(app.auth.kind, tributary::config::AuthKind::Oauth2ClientCredentials, "the base is unchanged");
    assert_eq!(delegated.streams, app.streams, "every stream comes from the base");
    assert_eq!(delegated.mappings, app.mappings);
    for round in 0..3 {
        let run = h.sync("users").await;
        ok(&run);
        // The first run is the full pass; the next ones are delta rounds with no changes.
        assert_eq!(run.stats.fetched, if round == 0 { 8 } else { 0 }, "round {round}");
        sim.expire_access_tokens();
    }
    assert_eq!(token_calls(&sim), 3, "one refresh per run, each with the token the last one returned");
    let messages = h.sync("channel_messages").await;
    assert!(ok(&messages).stats.inserted > 0, "{:?}", messages.stats);
}

/// `connectors check` passes the manifest; a child of channel messages (a third level of
/// parents) is refused with its key path.
#[test]
fn connectors_check_passes_and_refuses_a_third_level_of_parents() {
    let env = crate::support::cli::Env::new();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/microsoft.toml");
    let out = env.ok(&["connectors", "check", path]);
    assert!(out.contains("valid manifest for `microsoft` (6 streams)"), "{out}");
    let catalog = tributary::config::Catalog::load(&tributary::config::ConfigDir::Builtin, None)
        .unwrap_or_else(|d| panic!("{d}"));
    let manifest = catalog.manifests.get("microsoft").expect("built in");
    let quota = manifest.rate_limit.as_ref().expect("a rate limit");
    assert_eq!(quota.scope, tributary::config::QuotaScope::Provider, "the app's quota is shared by every tenant");

    let builtin = std::fs::read_to_string(path).unwrap();
    let (head, tail) = builtin.split_once("\n[mappings.user]").unwrap();
    let deeper = format!(
        "{head}\n[streams.replies]\nentity = \"message\"\nparent = \"channel_messages\"\n\
         [streams.replies.request]\npath = \"/teams/x/channels/{{parent.channel_id}}/messages/{{parent.id}}/replies\"\n\
         records = \"/value\"\n\n[mappings.user]{tail}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("microsoft.toml");
    std::fs::write(&file, deeper).unwrap();
    let err = env.fails(&["connectors", "check", file.to_str().unwrap()]);
    assert!(err.contains("streams.replies.parent: a parent's parent stream cannot itself be a child"), "{err}");
}
