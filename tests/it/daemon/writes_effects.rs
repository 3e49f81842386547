//! What a write does besides the request, in a running daemon against the HubSpot
//! simulator: the stored record changes at once (read-your-writes) and the change feed
//! advances; an update based on an older version than the provider's ends `conflict`
//! with nothing overwritten, and `retry --force` overrides it; a refused credential
//! marks the connection `needs_reauth` and the write waits; each final state is a
//! `write.*` event in the outbox.

use serde_json::Value;
use tributary::model::{ChangeKind, EntityName, ProviderId, TenantId};
use tributary::store::{WriteDetail, WriteState};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Fixture, NEVER, eventually};

/// Contacts the simulator starts with; a created contact is index `SEEDED`, id `SEEDED + 1`.
const SEEDED: u64 = 3;

async fn connected(fx: &Fixture, sim: &SimHandle) {
    let tenant = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n",
        sim.base_url()
    );
    fx.connect("acme", &tenant, &[("hubspot", sim.credentials())]).await;
}

/// Submits a contact write from the command line; the write's id.
async fn submit(fx: &Fixture, extra: &[&str], record: &str) -> String {
    let mut args = vec!["writes", "submit", "--tenant", "acme", "--provider", "hubspot", "--entity", "contact"];
    args.extend_from_slice(extra);
    let said = fx.ok(&args, record).await;
    said.split_whitespace().nth(1).expect("the write's id").to_owned()
}

async fn settled(fx: &Fixture, id: &str) -> WriteDetail {
    eventually("the write to settle", || async {
        let detail = fx.store.get_write(id).await.unwrap().expect("the write is stored");
        detail.write.state.is_final().then_some(detail)
    })
    .await
}

fn key() -> (TenantId, EntityName, ProviderId) {
    (TenantId::parse("acme").unwrap(), EntityName::parse("contact").unwrap(), ProviderId::parse("hubspot").unwrap())
}

async fn stored(fx: &Fixture, id: &str) -> Value {
    let (t, e, p) = key();
    fx.store.get_record(&t, &e, &p, id).await.unwrap().expect("the written record is stored").data
}

/// The simulator's contact `index` as its API returns it.
fn at_provider(sim: &SimHandle, index: u64) -> Value {
    sim.expected_record("contacts", index).expect("the contact exists")
}

async fn round_trip(fx: Fixture) {
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED)).await.unwrap();
    connected(&fx, &sim).await;
    fx.ok(
        &[
            "webhooks",
            "add",
            "--tenant",
            "acme",
            "--url",
            "https://hooks.example.com/tributary",
            "--events",
            "write.succeeded,write.failed,write.conflict",
        ],
        "",
    )
    .await;
    let daemon = fx.start("d", 1).await;
    let (tenant, entity, _) = key();

    // A create: the stored record has the provider's id and version at once.
    let created = settled(&fx, &submit(&fx, &["--op", "create"], r#"{"email": "ada@acme.example.com"}"#).await).await;
    assert_eq!(created.write.state, WriteState::Succeeded, "{created:?}");
    let id = (SEEDED + 1).to_string();
    assert_eq!(created.write.result_id.as_deref(), Some(id.as_str()));
    let record = stored(&fx, &id).await;
    assert_eq!(record["email"], "ada@acme.example.com", "{record}");
    assert_eq!(record["external_id"], id.as_str(), "{record}");
    let version = at_provider(&sim, SEEDED)["updatedAt"].as_str().unwrap().to_owned();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(record["updated_at"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&version).unwrap(),
        "the stored version is the provider's: {record}"
    );
    let changes = fx.store.list_changes(&tenant, Some(&entity), 0, 100).await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!((changes[0].external_id.as_str(), changes[0].kind), (id.as_str(), ChangeKind::Inserted));

    // An update based on the stored version (none named): read, compared, sent, merged.
    let updated = settled(&fx, &submit(&fx, &["--op", "update", "--id", &id], r#"{"first_name": "Ada"}"#).await).await;
    assert_eq!(updated.write.state, WriteState::Succeeded, "{updated:?}");
    assert!(updated.write.base_version.is_some(), "the base version defaults to the synced one: {updated:?}");
    assert_eq!(at_provider(&sim, SEEDED)["properties"]["firstname"], "Ada");
    let record = stored(&fx, &id).await;
    assert_eq!((record["first_name"].as_str(), record["email"].as_str()), (Some("Ada"), Some("ada@acme.example.com")));
    let changes = fx.store.list_changes(&tenant, Some(&entity), 0, 100).await.unwrap();
    assert_eq!(changes.len(), 1, "one row per record: {changes:?}");
    assert_eq!(changes[0].kind, ChangeKind::Updated);
    assert!(changes[0].seq >= 2, "the feed advanced: {changes:?}");
    let patches = |sim: &SimHandle| sim.writes_received().iter().filter(|w| w.method == "PATCH").count();
    assert_eq!(patches(&sim), 1);

    // Someone changes the contact at HubSpot: an update based on the older version is
    // a conflict, nothing is sent, both versions are shown.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(sim.modify("contacts", SEEDED));
    let newer = at_provider(&sim, SEEDED)["updatedAt"].as_str().unwrap().to_owned();
    let stale = submit(&fx, &["--op", "update", "--id", &id], r#"{"first_name": "Augusta"}"#).await;
    let conflict = settled(&fx, &stale).await;
    assert_eq!(conflict.write.state, WriteState::Conflict, "{conflict:?}");
    assert_eq!(patches(&sim), 1, "nothing was overwritten");
    assert_eq!(at_provider(&sim, SEEDED)["properties"]["firstname"], "Ada");
    let error = conflict.write.error.clone().unwrap_or_default();
    let base = conflict.write.base_version.clone().unwrap();
    assert!(error.contains(&newer) && error.contains(&base), "both versions are shown: {error}");
    assert_eq!(stored(&fx, &id).await["first_name"], "Ada");

    // `retry --force` overrides the check.
    fx.ok(&["writes", "retry", &stale, "--force"], "").await;
    let forced = settled(&fx, &stale).await;
    assert_eq!(forced.write.state, WriteState::Succeeded, "{forced:?}");
    assert_eq!(patches(&sim), 2);
    assert_eq!(at_provider(&sim, SEEDED)["properties"]["firstname"], "Augusta");
    assert_eq!(stored(&fx, &id).await["first_name"], "Augusta");

    // Every final state is an event for the tenant's endpoint, in the outbox.
    let endpoints = fx.store.list_webhook_endpoints(Some(&tenant)).await.unwrap();
    let messages = fx.store.list_webhook_messages(&endpoints[0].id, 100).await.unwrap();
    let mut kinds: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            let payload: Value = serde_json::from_str(&m.payload).unwrap();
            (m.event_type.clone(), payload["data"]["write_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    kinds.sort();
    let mut expected = vec![
        ("write.conflict".to_owned(), stale.clone()),
        ("write.succeeded".to_owned(), created.write.id.clone()),
        ("write.succeeded".to_owned(), updated.write.id.clone()),
        ("write.succeeded".to_owned(), stale.clone()),
    ];
    expected.sort();
    assert_eq!(kinds, expected);
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_show_in_the_store_at_once_and_stale_updates_conflict() {
    round_trip(Fixture::sqlite("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_show_in_the_store_at_once_and_stale_updates_conflict_on_postgres() {
    round_trip(Fixture::postgres("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_marks_the_connection_and_the_write_waits() {
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    connected(&fx, &sim).await;
    sim.revoke();
    let daemon = fx.start("d", 1).await;
    let id = submit(&fx, &["--op", "create"], r#"{"email": "ada@acme.example.com"}"#).await;
    let (tenant, _, provider) = key();
    eventually("the connection to need re-authorization", || async {
        let c = fx.store.get_connection(&tenant, &provider, tributary::model::Owner::Company).await.unwrap()?;
        (c.status == tributary::model::ConnectionStatus::NeedsReauth).then_some(())
    })
    .await;
    // The write's row and its attempts are read one after the other: wait for the row.
    let waiting = eventually("the attempt to be settled", || async {
        let d = fx.store.get_write(&id).await.unwrap()?;
        (d.write.attempts >= 1 && !d.attempts.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(waiting.write.state, WriteState::Pending, "it waits for new credentials: {waiting:?}");
    assert_eq!(waiting.write.error_class.as_deref(), Some("auth"), "{waiting:?}");
    assert!(sim.writes_received().is_empty());
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_looked_up_not_sent_again() {
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED)).await.unwrap();
    let fx = Fixture::sqlite("request_timeout_secs = 1").await;
    connected(&fx, &sim).await;
    let daemon = fx.start("d", 1).await;
    // The simulator applies the create and never answers: the attempt times out.
    sim.set_write_fault(Some(tributary_simulator::AmbiguousWrite::Hang));
    let companies = sim.record_count("companies");
    let said = fx
        .ok(
            &["writes", "submit", "--tenant", "acme", "--provider", "hubspot", "--entity", "company", "--op", "create"],
            r#"{"name": "Analytical Engines", "domain": "engines.example.com"}"#,
        )
        .await;
    let id = said.split_whitespace().nth(1).unwrap().to_owned();
    eventually("the first attempt to time out", || async {
        let d = fx.store.get_write(&id).await.unwrap()?;
        (!d.attempts.is_empty()).then_some(())
    })
    .await;
    assert_eq!(sim.record_count("companies"), companies + 1, "the provider applied it");
    sim.set_write_fault(None);

    let done = settled(&fx, &id).await;
    assert_eq!(done.write.state, WriteState::Succeeded, "{done:?}");
    // The first attempt timed out (no answer, transient); the second found the company.
    assert_eq!(done.attempts.len(), 2, "{done:?}");
    assert_eq!((done.attempts[0].status, done.attempts[0].error.as_deref()), (None, Some("transient")), "{done:?}");
    let posts = sim.writes_received().iter().filter(|w| w.path == "/crm/v3/objects/companies").count();
    assert_eq!(posts, 1, "sent once: {:?}", sim.writes_received());
    assert_eq!(sim.record_count("companies"), companies + 1, "exactly one object");
    let new_id = (companies + 1).to_string();
    assert_eq!(done.write.result_id.as_deref(), Some(new_id.as_str()), "the id the lookup found");
    let (tenant, _, provider) = key();
    let company = EntityName::parse("company").unwrap();
    let record = fx.store.get_record(&tenant, &company, &provider, &new_id).await.unwrap().unwrap();
    assert_eq!(record.data["domain"], "engines.example.com");
    drop(daemon);
    fx.finish().await;
}
