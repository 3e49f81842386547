//! The write executor on its own (`Syncer::execute_write`) against the simulators:
//! headers the manifest asks for reach the provider — the write's idempotency key in
//! the operation's `idempotency_header`, the base version as Salesforce's
//! `If-Unmodified-Since` HTTP-date — and the provider's 412 is a conflict.

use serde_json::{Value, json};
use tributary::config::WriteOp;
use tributary::model::{EntityName, Owner, ProviderId, TenantId};
use tributary::store::{NewWrite, Store, WriteRow, WriteSettle};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use crate::support::world::World;

async fn world(store: &Store, sim: &SimHandle, provider: &str, connectors: Option<&std::path::Path>) -> World {
    let world = World::builder().connectors(connectors).on(store.clone());
    // Salesforce's base URL is the instance URL its token response names.
    let at = match provider {
        "salesforce" => format!("variables = {{ login_url = \"{}\" }}", sim.base_url()),
        _ => format!("base_url = \"{}\"", sim.base_url()),
    };
    let body = format!("preset = \"aptem_{provider}\"\n[providers.{provider}]\n{at}\n");
    let tenant = world.create_tenant("acme", "Acme", &body).await;
    world.credentials(&tenant, &ProviderId::parse(provider).unwrap(), None, &sim.credentials()).await;
    world
}

/// Stores a write and claims it, as the daemon's worker does.
#[allow(clippy::too_many_arguments)]
async fn claimed(
    store: &Store,
    provider: &str,
    entity: &str,
    op: WriteOp,
    id: Option<&str>,
    key: Option<&str>,
    base: Option<&str>,
    record: &Value,
) -> WriteRow {
    let (tenant, provider, entity) =
        (TenantId::parse("acme").unwrap(), ProviderId::parse(provider).unwrap(), EntityName::parse(entity).unwrap());
    let new = NewWrite {
        tenant: &tenant,
        provider: &provider,
        owner: Owner::Company,
        entity: &entity,
        op,
        external_id: id,
        idempotency_key: key,
        base_version: base,
        force: false,
        payload: record,
    };
    store.submit_write(&new).await.unwrap();
    let until = chrono::Utc::now() + chrono::Duration::minutes(5);
    let mut claimed = store.claim_writes("test", until, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    claimed.remove(0)
}

#[tokio::test]
async fn the_idempotency_key_goes_in_the_declared_header() {
    let sim = start(SimConfig::new(Provider::HubSpot, 2)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The shipped HubSpot manifest with an idempotency header on contact creates.
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/connectors/hubspot.toml")).unwrap();
    let create = r#"create = { method = "POST", path = "/crm/v3/objects/contacts", id = "/id""#;
    assert!(shipped.contains(create));
    let with_header = shipped.replacen(create, &format!(r#"{create}, idempotency_header = "Idempotency-Key""#), 1);
    std::fs::write(dir.path().join("hubspot.toml"), with_header).unwrap();
    let (store, _dir) = crate::support::sqlite_store().await;
    let world = world(&store, &sim, "hubspot", Some(dir.path())).await;

    let w = claimed(
        &store,
        "hubspot",
        "contact",
        WriteOp::Create,
        None,
        Some("order-42"),
        None,
        &json!({"email": "ada@acme.example.com"}),
    )
    .await;
    let outcome = world.syncer().execute_write(&w).await;
    assert!(matches!(outcome.settle, WriteSettle::Succeeded { .. }), "{outcome:?}");
    let received = sim.writes_received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].headers.get("idempotency-key").map(String::as_str), Some("order-42"), "{received:?}");
}

#[tokio::test]
async fn salesforce_updates_carry_the_base_version_and_a_412_is_a_conflict() {
    let sim = start(SimConfig::new(Provider::Salesforce, 2)).await.unwrap();
    let (store, _dir) = crate::support::sqlite_store().await;
    let world = world(&store, &sim, "salesforce", None).await;
    let contact = sim.expected_record("contacts", 0).unwrap();
    let id = contact["Id"].as_str().unwrap().to_owned();
    let version = contact["SystemModstamp"].as_str().unwrap().to_owned();

    // Based on the current version: sent with the precondition, applied.
    let current = claimed(
        &store,
        "salesforce",
        "contact",
        WriteOp::Update,
        Some(&id),
        None,
        Some(&version),
        &json!({"first_name": "Ada"}),
    )
    .await;
    let outcome = world.syncer().execute_write(&current).await;
    assert!(matches!(outcome.settle, WriteSettle::Succeeded { status: Some(204), .. }), "{outcome:?}");
    let sent = sim.writes_received();
    let header = sent[0].headers.get("if-unmodified-since").cloned().unwrap_or_default();
    assert!(header.ends_with(" GMT") && header.len() == 29, "an HTTP-date: {header}");
    store.settle_write(&current.id, "test", 1, &outcome.settle).await.unwrap();

    // Based on the version before that update: the provider refuses it, nothing changes.
    let stale = claimed(
        &store,
        "salesforce",
        "contact",
        WriteOp::Update,
        Some(&id),
        None,
        Some("2001-01-01T00:00:00.000+0000"),
        &json!({"first_name": "Augusta"}),
    )
    .await;
    let outcome = world.syncer().execute_write(&stale).await;
    match &outcome.settle {
        WriteSettle::Conflict { status: Some(412), provider_version, base_version } => {
            assert_eq!(base_version.as_deref(), Some("2001-01-01T00:00:00.000+0000"));
            let now = sim.expected_record("contacts", 0).unwrap();
            assert_eq!(provider_version, now["SystemModstamp"].as_str().unwrap(), "read after the 412");
            assert_eq!(now["FirstName"], "Ada", "nothing overwritten");
        }
        other => panic!("{other:?}"),
    }
    assert!(outcome.effect.is_none());
}

#[tokio::test]
async fn a_lookup_does_not_adopt_an_object_that_predates_the_write() {
    // The simulator's companies were created a month ago.
    let anchor = chrono::Utc::now() - chrono::Duration::days(30);
    let sim = start(SimConfig::new(Provider::HubSpot, 3).anchor(anchor)).await.unwrap();
    let (store, _dir) = crate::support::sqlite_store().await;
    let world = world(&store, &sim, "hubspot", None).await;
    let existing = sim.expected_record("companies", 0).unwrap();
    let domain = existing["properties"]["domain"].as_str().unwrap().to_owned();
    let record = json!({"name": "Another Engines", "domain": domain});
    let first = claimed(&store, "hubspot", "company", WriteOp::Create, None, None, None, &record).await;
    // Its worker gave it back before sending anything; another claim takes it.
    assert!(store.release_write(&first.id, "test").await.unwrap());
    let until = chrono::Utc::now() + chrono::Duration::minutes(5);
    let w = store.claim_writes("other", until, 1).await.unwrap().remove(0);
    assert_eq!(w.claims, 2, "{w:?}");

    let outcome = world.syncer().execute_write(&w).await;
    match &outcome.settle {
        WriteSettle::Succeeded { result_id, .. } => {
            assert_ne!(result_id, existing["id"].as_str().unwrap(), "the older company is not the write's");
        }
        other => panic!("{other:?}"),
    }
    let posts = sim.writes_received().iter().filter(|r| r.path == "/crm/v3/objects/companies").count();
    assert_eq!(posts, 1, "the create was sent");
}
