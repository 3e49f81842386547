//! Deletions the provider reports: a deletion stream (HubSpot's `archived=true`
//! listings) marks the stored records deleted, in the change feed as `deleted` with
//! their numbers; a record that comes back is stored again by the normal stream. On
//! both stores, against the HubSpot simulator; and the manifest and tenant checks of
//! deletion streams.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tributary::config::{Catalog, ConfigDir};
use tributary::model::{ChangeKind, EntityName, ProviderId, RecordRow, RunOutcome, RunRow, TenantId};
use tributary::store::Store;
use tributary_simulator::{Provider, SimConfig, start};

use crate::support::world::{World, request};

/// Contacts the simulator serves: two pages of the live listing.
const CONTACTS: u64 = 150;

async fn sync(world: &World, tenant: &TenantId, stream: &str) -> RunRow {
    let hubspot = ProviderId::parse("hubspot").unwrap();
    let run = world.syncer().run(&request(tenant, &hubspot, stream), &mut |_, _| {}).await.unwrap();
    assert_eq!(run.outcome, RunOutcome::Success, "{stream}: {:?}", run.stats.error);
    run
}

/// The tenant's stored contacts by external id.
async fn contacts(store: &Store, tenant: &TenantId) -> BTreeMap<String, RecordRow> {
    let contact = EntityName::parse("contact").unwrap();
    let rows = store.list_records(tenant, &contact, 10_000).await.unwrap();
    rows.into_iter().map(|r| (r.external_id.clone(), r)).collect()
}

fn deleted(stored: &BTreeMap<String, RecordRow>) -> Vec<&str> {
    stored.values().filter(|r| r.deleted_at.is_some()).map(|r| r.external_id.as_str()).collect()
}

/// The tenant's change feed after `since`: (external id, kind, run).
async fn changes_after(store: &Store, tenant: &TenantId, since: i64) -> Vec<(i64, String, ChangeKind, uuid::Uuid)> {
    let contact = EntityName::parse("contact").unwrap();
    let rows = store.list_changes(tenant, Some(&contact), since, 1_000).await.unwrap();
    rows.into_iter().map(|c| (c.seq, c.external_id, c.kind, c.run_id.unwrap())).collect()
}

async fn archived_contacts_are_marked_deleted_and_restored_ones_come_back(store: &Store) {
    let sim = start(SimConfig::new(Provider::HubSpot, CONTACTS)).await.unwrap();
    let world = World::builder().on(store.clone());
    let body = format!(
        "preset = \"aptem_hubspot\"\n[providers.hubspot]\nbase_url = \"{}\"\n\
         streams = {{ contacts = {{ enabled = true, entity = \"contact\" }}, contacts_archived = {{ enabled = true }} }}\n",
        sim.base_url()
    );
    let tenant = world.create_tenant("acme", "Acme", &body).await;
    world.credentials(&tenant, &ProviderId::parse("hubspot").unwrap(), None, &sim.credentials()).await;

    let full = sync(&world, &tenant, "contacts").await;
    assert_eq!(full.stats.inserted, CONTACTS as i64);
    let before = contacts(store, &tenant).await;
    assert_eq!(before.len() as u64, CONTACTS);
    assert!(deleted(&before).is_empty());
    let last_seq = changes_after(store, &tenant, 0).await.last().unwrap().0;

    // Nothing is deleted yet: the deletion stream reads an empty listing.
    let none = sync(&world, &tenant, "contacts_archived").await;
    assert_eq!((none.stats.fetched, none.stats.updated), (0, 0));
    assert!(changes_after(store, &tenant, last_seq).await.is_empty());

    // Two contacts are deleted in HubSpot (ids are indices + 1).
    assert!(sim.delete("contacts", 3));
    assert!(sim.delete("contacts", 120));
    let run = sync(&world, &tenant, "contacts_archived").await;
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.updated, run.stats.unchanged), (2, 0, 2, 0));
    let after = contacts(store, &tenant).await;
    assert_eq!(deleted(&after), ["121", "4"]);
    for (id, row) in &after {
        if id != "4" && id != "121" {
            assert_eq!(row, &before[id], "{id} is untouched");
        }
    }
    // In the change feed as deleted, numbered after everything before, by this run.
    let feed = changes_after(store, &tenant, last_seq).await;
    let got: Vec<_> = feed.iter().map(|(seq, id, kind, run_id)| (*seq, id.as_str(), *kind, *run_id)).collect();
    assert_eq!(
        got,
        [(last_seq + 1, "121", ChangeKind::Deleted, run.id), (last_seq + 2, "4", ChangeKind::Deleted, run.id)]
    );
    let contact = EntityName::parse("contact").unwrap();
    let range = store.change_range(&tenant, run.id, &contact).await.unwrap().unwrap();
    assert_eq!((range.from_seq, range.to_seq, range.deleted, range.updated), (last_seq + 1, last_seq + 2, 2, 0));

    // Read again, the listing changes nothing.
    let again = sync(&world, &tenant, "contacts_archived").await;
    assert_eq!((again.stats.fetched, again.stats.updated, again.stats.unchanged), (2, 0, 2));
    assert!(changes_after(store, &tenant, last_seq + 2).await.is_empty());
    assert_eq!(contacts(store, &tenant).await, after);

    // A contact restored in HubSpot comes back with the next normal sync; the other
    // stays deleted.
    assert!(sim.restore("contacts", 3));
    let inc = sync(&world, &tenant, "contacts").await;
    assert!(inc.stats.updated >= 1, "{:?}", inc.stats);
    let restored = contacts(store, &tenant).await;
    assert_eq!(deleted(&restored), ["121"]);
    assert_eq!(restored["4"].data["email"], before["4"].data["email"]);
    let feed = changes_after(store, &tenant, last_seq + 2).await;
    assert!(feed.iter().any(|(_, id, kind, _)| id == "4" && *kind == ChangeKind::Updated), "{feed:?}");
    // And is no longer listed as deleted.
    let last = sync(&world, &tenant, "contacts_archived").await;
    assert_eq!((last.stats.fetched, last.stats.updated), (1, 0));
    assert_eq!(deleted(&contacts(store, &tenant).await), ["121"]);
}

async fn deletion_pages_follow_the_paging_of_the_listing(store: &Store) {
    let sim = start(SimConfig::new(Provider::HubSpot, CONTACTS)).await.unwrap();
    let world = World::builder().on(store.clone());
    // Employers are HubSpot contacts here: the deletion stream goes with them.
    let body = format!(
        "preset = \"aptem_hubspot\"\n[providers.hubspot]\nbase_url = \"{}\"\n\
         streams = {{ contacts_archived = {{ enabled = true, entity = \"employer\" }} }}\n",
        sim.base_url()
    );
    let tenant = world.create_tenant("acme", "Acme", &body).await;
    world.credentials(&tenant, &ProviderId::parse("hubspot").unwrap(), None, &sim.credentials()).await;
    sync(&world, &tenant, "contacts").await;
    // More than a page (100) of deletions.
    for i in 0..130 {
        assert!(sim.delete("contacts", i));
    }
    let run = sync(&world, &tenant, "contacts_archived").await;
    assert_eq!((run.stats.pages, run.stats.fetched, run.stats.updated), (2, 130, 130));
    let employer = EntityName::parse("employer").unwrap();
    let rows = store.list_records(&tenant, &employer, 10_000).await.unwrap();
    let gone = rows.iter().filter(|r| r.deleted_at.is_some()).count();
    assert_eq!((rows.len(), gone), (CONTACTS as usize, 130));
    let feed = store.list_changes(&tenant, Some(&employer), 0, 1_000).await.unwrap();
    assert_eq!(feed.iter().filter(|c| c.kind == ChangeKind::Deleted && c.run_id == Some(run.id)).count(), 130);
}

crate::support::contract::contract! {
    store: [
        archived_contacts_are_marked_deleted_and_restored_ones_come_back,
        deletion_pages_follow_the_paging_of_the_listing,
    ],
    url: [],
}

fn repo_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn a_deletion_stream_needs_a_stream_that_reads_its_entity() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = r#"name = "acmecrm"
title = "Acme CRM"
category = "crm"
base_url = "https://{subdomain}.acmecrm.example"
[auth]
kind = "bearer"
[streams.accounts]
entity = "company"
request = { path = "/accounts" }
[streams.accounts_deleted]
entity = "company"
deletions = true
request = { path = "/accounts/deleted" }
[streams.deals_deleted]
entity = "deal"
deletions = true
request = { path = "/deals/deleted" }
[mappings.company]
external_id = "id"
name = "name"
"#;
    std::fs::write(dir.path().join("acmecrm.toml"), manifest).unwrap();
    let err = Catalog::load(&ConfigDir::Dir(repo_config()), Some(dir.path())).unwrap_err();
    let problems: Vec<_> = err.iter().filter(|d| d.file.ends_with("acmecrm.toml")).collect();
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].path, "streams.deals_deleted.deletions");
    assert!(problems[0].message.contains("reads `deal` normally"), "{err}");
}

#[test]
fn a_tenant_cannot_send_a_deletion_stream_to_an_entity_nothing_reads() {
    let catalog = Catalog::load(&ConfigDir::Dir(repo_config()), None).unwrap_or_else(|d| panic!("{d}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.toml");
    let tenant = |streams: &str| {
        format!(
            "id = \"acme\"\nname = \"Acme\"\nsubdomain = \"acme\"\npreset = \"aptem_hubspot\"\n[providers.hubspot]\nstreams = {{ {streams} }}\n"
        )
    };
    std::fs::write(&file, tenant("contacts_archived = { enabled = true, entity = \"learner\" }")).unwrap();
    let err = catalog.tenant_file(&file).unwrap_err();
    assert!(
        err.iter().any(|d| d.path.ends_with("streams.contacts_archived.entity")
            && d.message.contains("deletes `learner`, which no other stream of `hubspot` reads")
            && d.file.ends_with("acme.toml")),
        "{err}"
    );
    // The entity the preset sends contacts to, or the manifest's own, is fine.
    for ok in ["contacts_archived = { enabled = true, entity = \"employer\" }", "deals_archived = { enabled = true }"] {
        std::fs::write(&file, tenant(ok)).unwrap();
        catalog.tenant_file(&file).unwrap_or_else(|d| panic!("{ok}: {d}"));
    }
}
