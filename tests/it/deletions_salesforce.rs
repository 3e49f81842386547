//! Salesforce deletions: the `*_deleted` streams read `queryAll` with `IsDeleted = true`
//! and mark the stored records deleted; `query` never lists deleted rows. On both
//! stores, against the Salesforce simulator.

use tributary::model::{ChangeKind, EntityName, ProviderId, RunOutcome, RunRow, TenantId};
use tributary::store::Store;
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use crate::support::world::{World, request};

/// Contacts the simulator serves.
const CONTACTS: u64 = 300;

async fn sync(world: &World, tenant: &TenantId, stream: &str) -> RunRow {
    let salesforce = ProviderId::parse("salesforce").unwrap();
    let run = world.syncer().run(&request(tenant, &salesforce, stream), &mut |_, _| {}).await.unwrap();
    assert_eq!(run.outcome, RunOutcome::Success, "{stream}: {:?}", run.stats.error);
    run
}

async fn deleted_ids(store: &Store, tenant: &TenantId) -> Vec<String> {
    let contact = EntityName::parse("contact").unwrap();
    let rows = store.list_records(tenant, &contact, 10_000).await.unwrap();
    rows.into_iter().filter(|r| r.deleted_at.is_some()).map(|r| r.external_id).collect()
}

/// The Salesforce id of contact `index`, as the simulator lists it.
fn contact_id(sim: &SimHandle, index: u64) -> String {
    sim.expected_record("contacts", index).unwrap()["Id"].as_str().unwrap().to_owned()
}

async fn query_all_lists_deleted_contacts_and_they_are_marked_deleted(store: &Store) {
    // Small batches: the deleted rows come after a page boundary.
    let sim = start(SimConfig::new(Provider::Salesforce, CONTACTS)).await.unwrap();
    let world = World::builder().on(store.clone());
    let body = format!(
        "preset = \"bud_salesforce\"\n[providers.salesforce]\nvariables = {{ login_url = \"{}\" }}\n\
         streams = {{ contacts_deleted = {{ enabled = true }} }}\n",
        sim.base_url()
    );
    let tenant = world.create_tenant("acme", "Acme", &body).await;
    world.credentials(&tenant, &ProviderId::parse("salesforce").unwrap(), None, &sim.credentials()).await;

    let full = sync(&world, &tenant, "contacts").await;
    assert_eq!(full.stats.inserted, CONTACTS as i64);
    let none = sync(&world, &tenant, "contacts_deleted").await;
    assert_eq!((none.stats.fetched, none.stats.updated), (0, 0));

    let gone = [contact_id(&sim, 5), contact_id(&sim, 250)];
    assert!(sim.delete("contacts", 5) && sim.delete("contacts", 250));
    let run = sync(&world, &tenant, "contacts_deleted").await;
    assert_eq!((run.stats.fetched, run.stats.updated, run.stats.unchanged), (2, 2, 0));
    let mut expected = gone.to_vec();
    expected.sort();
    assert_eq!(deleted_ids(store, &tenant).await, expected);
    let contact = EntityName::parse("contact").unwrap();
    let feed = store.list_changes(&tenant, Some(&contact), 0, 10_000).await.unwrap();
    let by_run: Vec<_> =
        feed.iter().filter(|c| c.run_id == Some(run.id)).map(|c| (c.external_id.clone(), c.kind)).collect();
    assert_eq!(by_run, expected.iter().map(|id| (id.clone(), ChangeKind::Deleted)).collect::<Vec<_>>());
    // The live listing (`query`) no longer has them; reading the deletions again changes
    // nothing.
    let inc = sync(&world, &tenant, "contacts").await;
    assert_eq!(inc.stats.updated, 0);
    let again = sync(&world, &tenant, "contacts_deleted").await;
    assert_eq!((again.stats.fetched, again.stats.updated, again.stats.unchanged), (2, 0, 2));
    assert!(sim.request_log().iter().any(|r| r.contains("/queryAll?")), "{:?}", sim.request_log());
}

crate::support::contract::contract! {
    store: [query_all_lists_deleted_contacts_and_they_are_marked_deleted],
    url: [],
}

/// The simulator's `queryAll` as a client sees it: deleted rows with `IsDeleted`
/// true, paged; `query` never returns them.
#[tokio::test]
async fn the_simulator_serves_query_all() {
    let sim = start(SimConfig::new(Provider::Salesforce, 450).page_size_cap(200)).await.unwrap();
    for i in [1, 300, 420] {
        assert!(sim.delete("contacts", i));
    }
    let client = reqwest::Client::new();
    let token: serde_json::Value = client
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", sim.credentials()["client_id"].as_str().unwrap()),
            ("client_secret", sim.credentials()["client_secret"].as_str().unwrap()),
            ("refresh_token", sim.credentials()["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap().to_owned();
    let get = |path: String| {
        let (client, bearer, base) = (client.clone(), bearer.clone(), sim.base_url());
        async move {
            let body: serde_json::Value =
                client.get(format!("{base}{path}")).bearer_auth(bearer).send().await.unwrap().json().await.unwrap();
            body
        }
    };
    let q = |endpoint: &str, cond: &str| {
        format!("/services/data/v60.0/{endpoint}?q=SELECT+Id,IsDeleted+FROM+Contact{cond}+ORDER+BY+SystemModstamp")
    };
    // Only the deleted rows.
    let deleted = get(q("queryAll", "+WHERE+IsDeleted+=+true")).await;
    assert_eq!((deleted["totalSize"].as_u64(), deleted["done"].as_bool()), (Some(3), Some(true)), "{deleted}");
    assert!(deleted["records"].as_array().unwrap().iter().all(|r| r["IsDeleted"] == true));
    // `query` never has them.
    let none = get(q("query", "+WHERE+IsDeleted+=+true")).await;
    assert_eq!(none["totalSize"].as_u64(), Some(0), "{none}");
    // `queryAll` without the condition: the 447 live rows, then the 3 deleted, paged.
    let mut page = get(q("queryAll", "")).await;
    assert_eq!(page["totalSize"].as_u64(), Some(450));
    let mut rows = Vec::new();
    loop {
        rows.extend(page["records"].as_array().unwrap().iter().map(|r| r["IsDeleted"].as_bool().unwrap()));
        if page["done"] == true {
            break;
        }
        page = get(page["nextRecordsUrl"].as_str().unwrap().to_owned()).await;
    }
    assert_eq!(rows.len(), 450);
    assert_eq!(rows.iter().filter(|d| **d).count(), 3);
    assert!(rows[447..].iter().all(|d| *d), "the deleted rows come last");
}
