//! The change feed: every written record takes the next number of its tenant's change
//! sequence, in the transaction of its page.

use std::collections::BTreeSet;

use tributary::model::{ChangeKind, ChangeRange, ChangeRow};
use tributary::store::{DeadLetterInput, RunProgress};
use uuid::Uuid;

use super::*;

fn progress(run_id: Uuid) -> RunProgress {
    RunProgress {
        run_id,
        fetched: 0,
        filtered: 0,
        dead_lettered: 0,
        pages: 1,
        http_calls: 1,
        retries: 0,
        rate_limit_waits: 0,
        rate_limit_wait_ms: 0,
    }
}

fn dead_letter(run_id: Uuid) -> Vec<DeadLetterInput> {
    vec![DeadLetterInput {
        run_id: Some(run_id),
        stream: "contacts".into(),
        source_id: Some("bad".into()),
        reason: "required field `contact.external_id` is missing".into(),
        record: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
    }]
}

/// (seq, entity, external id, kind, run) of each change.
fn summary(changes: &[ChangeRow]) -> Vec<(i64, &str, &str, ChangeKind, Option<Uuid>)> {
    changes.iter().map(|c| (c.seq, c.entity.as_str(), c.external_id.as_str(), c.kind, c.run_id)).collect()
}

async fn changes(store: &Store, tenant: &TenantId, entity: Option<&str>, since: i64) -> Vec<ChangeRow> {
    store.list_changes(tenant, entity.map(super::entity).as_ref(), since, 1000).await.unwrap()
}

pub(super) async fn changes_number_every_write_per_tenant(store: &Store) {
    use ChangeKind::{Inserted, Updated};
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let r1 = store.start_run(&acme.id, contacts.id, RunTrigger::Cli).await.unwrap().id;
    let first = Page::new(
        "contact",
        "hubspot",
        records(&[("c1", json!({ "n": 1 })), ("c2", json!({ "n": 2 })), ("c3", json!({ "n": 3 }))]),
    );
    let write = PageWrite { run: Some(progress(r1)), ..first.write(contacts.id, None) };
    assert_eq!(store.write_page(&acme.id, &write).await.unwrap(), outcome(3, 0, 0));
    assert_eq!(
        summary(&changes(store, &acme.id, None, 0).await),
        [
            (1, "contact", "c1", Inserted, Some(r1)),
            (2, "contact", "c2", Inserted, Some(r1)),
            (3, "contact", "c3", Inserted, Some(r1)),
        ]
    );
    let c1 = &changes(store, &acme.id, None, 0).await[0];
    let stored = store.get_record(&acme.id, &entity("contact"), &provider("hubspot"), "c1").await.unwrap().unwrap();
    assert_eq!((c1.provider.as_str(), c1.changed_at), ("hubspot", stored.last_synced));

    // Unchanged records keep their numbers: nothing new in the feed.
    assert_eq!(store.write_page(&acme.id, &write).await.unwrap(), outcome(0, 0, 3));
    assert!(changes(store, &acme.id, None, 3).await.is_empty());

    // A second run: an updated record moves to the end, a new one follows.
    let r2 = store.start_run(&acme.id, contacts.id, RunTrigger::Cli).await.unwrap().id;
    let second = Page::new(
        "contact",
        "hubspot",
        records(&[
            ("c1", json!({ "n": 1 })),
            ("c2", json!({ "n": 22 })),
            ("c3", json!({ "n": 3 })),
            ("c4", json!({ "n": 4 })),
        ]),
    );
    let write2 = PageWrite { run: Some(progress(r2)), ..second.write(contacts.id, None) };
    assert_eq!(store.write_page(&acme.id, &write2).await.unwrap(), outcome(1, 1, 2));
    assert_eq!(
        summary(&changes(store, &acme.id, None, 0).await),
        [
            (1, "contact", "c1", Inserted, Some(r1)),
            (3, "contact", "c3", Inserted, Some(r1)),
            (4, "contact", "c2", Updated, Some(r2)),
            (5, "contact", "c4", Inserted, Some(r2)),
        ]
    );

    // Another tenant's sequence is its own.
    let globex = create(store, "globex", &["hubspot"]).await;
    let globex_contacts = job(store, "globex", "hubspot", "contacts").await;
    let theirs = Page::new("contact", "hubspot", records(&[("g1", json!({ "n": 1 }))]));
    store.write_page(&globex.id, &theirs.write(globex_contacts.id, None)).await.unwrap();
    assert_eq!(summary(&changes(store, &globex.id, None, 0).await), [(1, "contact", "g1", Inserted, None)]);

    // Another entity continues the tenant's sequence; the feed filters by entity.
    let deals = Page::new("deal", "hubspot", records(&[("d1", json!({ "amount": 5 }))]));
    store.write_page(&acme.id, &deals.write(contacts.id, None)).await.unwrap();
    assert_eq!(summary(&changes(store, &acme.id, None, 5).await), [(6, "deal", "d1", Inserted, None)]);
    assert_eq!(changes(store, &acme.id, Some("contact"), 0).await.len(), 4);
    assert_eq!(summary(&changes(store, &acme.id, Some("deal"), 0).await), [(6, "deal", "d1", Inserted, None)]);

    // Paging with the last sequence.
    let page1 = store.list_changes(&acme.id, None, 0, 2).await.unwrap();
    assert_eq!(page1.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 3]);
    let page2 = store.list_changes(&acme.id, None, 3, 2).await.unwrap();
    assert_eq!(page2.iter().map(|c| c.seq).collect::<Vec<_>>(), [4, 5]);
    assert!(store.list_changes(&acme.id, None, 0, 0).await.unwrap().is_empty());

    // What each run changed, as it stands in the feed.
    let contact = entity("contact");
    assert_eq!(
        store.change_range(&acme.id, r1, &contact).await.unwrap(),
        Some(ChangeRange { from_seq: 1, to_seq: 3, inserted: 2, updated: 0, deleted: 0 })
    );
    assert_eq!(
        store.change_range(&acme.id, r2, &contact).await.unwrap(),
        Some(ChangeRange { from_seq: 4, to_seq: 5, inserted: 1, updated: 1, deleted: 0 })
    );
    assert_eq!(store.change_range(&acme.id, r2, &entity("deal")).await.unwrap(), None);
    assert_eq!(store.change_range(&globex.id, r2, &contact).await.unwrap(), None);
}

pub(super) async fn dead_letter_pages_and_deletions_take_sequences(store: &Store) {
    use ChangeKind::{Deleted, Inserted, Updated};
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let run = store.start_run(&acme.id, contacts.id, RunTrigger::Cli).await.unwrap().id;
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({ "n": 1 })), ("c2", json!({ "n": 2 }))]));
    let dead = dead_letter(run);
    let write = PageWrite { dead_letters: &dead, run: Some(progress(run)), ..page.write(contacts.id, None) };
    assert_eq!(store.write_page(&acme.id, &write).await.unwrap(), outcome(2, 0, 0));
    assert_eq!(
        summary(&changes(store, &acme.id, None, 0).await),
        [(1, "contact", "c1", Inserted, Some(run)), (2, "contact", "c2", Inserted, Some(run))]
    );
    // A page with dead letters that changes one record.
    let changed = Page::new("contact", "hubspot", records(&[("c1", json!({ "n": 11 })), ("c2", json!({ "n": 2 }))]));
    let write = PageWrite { dead_letters: &dead, run: Some(progress(run)), ..changed.write(contacts.id, None) };
    assert_eq!(store.write_page(&acme.id, &write).await.unwrap(), outcome(0, 1, 1));
    assert_eq!(summary(&changes(store, &acme.id, None, 2).await), [(3, "contact", "c1", Updated, Some(run))]);

    // Deletion: the records not deleted already, each with the next number.
    let (contact, hubspot) = (entity("contact"), provider("hubspot"));
    let deleter = store.start_run(&acme.id, contacts.id, RunTrigger::Cli).await.unwrap().id;
    let n = store.mark_deleted(&acme.id, &contact, &hubspot, &["c2", "c1", "nope"], Some(deleter)).await.unwrap();
    assert_eq!(n, 2);
    let deleted = changes(store, &acme.id, None, 3).await;
    assert_eq!(
        summary(&deleted),
        [(4, "contact", "c1", Deleted, Some(deleter)), (5, "contact", "c2", Deleted, Some(deleter))]
    );
    let c1 = store.get_record(&acme.id, &contact, &hubspot, "c1").await.unwrap().unwrap();
    assert_eq!(Some(deleted[0].changed_at), c1.deleted_at);
    assert_eq!(
        store.change_range(&acme.id, deleter, &contact).await.unwrap(),
        Some(ChangeRange { from_seq: 4, to_seq: 5, inserted: 0, updated: 0, deleted: 2 })
    );
    // Deleting again, another entity's ids, or nothing changes nothing.
    assert_eq!(store.mark_deleted(&acme.id, &contact, &hubspot, &["c1"], None).await.unwrap(), 0);
    assert_eq!(store.mark_deleted(&acme.id, &entity("deal"), &hubspot, &["c2"], None).await.unwrap(), 0);
    assert_eq!(store.mark_deleted(&acme.id, &contact, &hubspot, &[], None).await.unwrap(), 0);
    let other = create(store, "globex", &["hubspot"]).await;
    assert_eq!(store.mark_deleted(&other.id, &contact, &hubspot, &["c2"], None).await.unwrap(), 0);
    assert!(changes(store, &acme.id, None, 5).await.is_empty());

    // A deleted record that comes back (the page statement on PostgreSQL) is updated.
    let back = Page::new("contact", "hubspot", records(&[("c2", json!({ "n": 2 }))]));
    assert_eq!(store.write_page(&acme.id, &back.write(contacts.id, None)).await.unwrap(), outcome(0, 1, 0));
    assert_eq!(summary(&changes(store, &acme.id, None, 5).await), [(6, "contact", "c2", Updated, None)]);
    let c2 = store.get_record(&acme.id, &contact, &hubspot, "c2").await.unwrap().unwrap();
    assert_eq!(c2.deleted_at, None);
}

pub(super) async fn fenced_writes_that_lost_the_lease_take_no_sequence(store: &Store, url: &str) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    crate::support::exec_raw(url, "UPDATE jobs SET lease_owner = 'worker-1'").await;
    let run = store.start_run(&acme.id, contacts.id, RunTrigger::Cli).await.unwrap().id;
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({ "n": 1 }))]));
    let dead = dead_letter(run);
    let lost = PageWrite { lease_owner: Some("worker-2"), ..page.write(contacts.id, None) };
    assert!(matches!(store.write_page(&acme.id, &lost).await, Err(StoreError::LeaseLost { .. })));
    let lost_with_dead = PageWrite { dead_letters: &dead, ..lost.clone() };
    assert!(matches!(store.write_page(&acme.id, &lost_with_dead).await, Err(StoreError::LeaseLost { .. })));
    assert!(changes(store, &acme.id, None, 0).await.is_empty());
    // The holder's write takes the first number: the lost writes advanced nothing.
    let held = PageWrite { lease_owner: Some("worker-1"), ..page.write(contacts.id, None) };
    store.write_page(&acme.id, &held).await.unwrap();
    let got = changes(store, &acme.id, None, 0).await;
    assert_eq!(got.iter().map(|c| c.seq).collect::<Vec<_>>(), [1]);
}

/// Writers of one tenant on several jobs at once, with and without dead letters (both
/// write paths on PostgreSQL): every change has its own number, none is lost.
pub(super) async fn concurrent_writers_never_share_a_sequence(store: &Store, _url: &str) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let deals = job(store, "acme", "hubspot", "deals").await;
    let run = store.start_run(&acme.id, contacts.id, RunTrigger::Cli).await.unwrap().id;
    const PAGES: usize = 12;
    const PER_PAGE: usize = 15;
    let mut tasks = Vec::new();
    for (writer, job_id) in [contacts.id, deals.id, contacts.id, deals.id].into_iter().enumerate() {
        let store = store.clone();
        let tenant = acme.id.clone();
        tasks.push(tokio::spawn(async move {
            for p in 0..PAGES {
                // Each page writes new records and changes the previous page's.
                let mut items: Vec<(String, Value)> =
                    (0..PER_PAGE).map(|i| (format!("w{writer}-p{p}-{i}"), json!({ "v": 0 }))).collect();
                if p > 0 {
                    items.extend((0..PER_PAGE).map(|i| (format!("w{writer}-p{}-{i}", p - 1), json!({ "v": 1 }))));
                }
                let items: Vec<(&str, Value)> = items.iter().map(|(id, v)| (id.as_str(), v.clone())).collect();
                let page = Page::new("contact", "hubspot", records(&items));
                let dead = dead_letter(run);
                let base = page.write(job_id, None);
                let write = if writer >= 2 { PageWrite { dead_letters: &dead, ..base } } else { base };
                store.write_page(&tenant, &write).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = changes(store, &acme.id, None, 0).await;
    let writes = 4 * (PAGES * PER_PAGE + (PAGES - 1) * PER_PAGE);
    let distinct = 4 * PAGES * PER_PAGE;
    assert_eq!(all.len(), distinct);
    let seqs: BTreeSet<i64> = all.iter().map(|c| c.seq).collect();
    assert_eq!(seqs.len(), distinct, "no two records share a sequence");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    // Every write took a number: the last record's is the count of all writes.
    assert_eq!(all.last().unwrap().seq, i64::try_from(writes).unwrap());
    // The next write continues after it.
    let next = Page::new("contact", "hubspot", records(&[("after", json!({}))]));
    store.write_page(&acme.id, &next.write(contacts.id, None)).await.unwrap();
    let last = changes(store, &acme.id, None, i64::try_from(writes).unwrap()).await;
    assert_eq!(last.iter().map(|c| c.seq).collect::<Vec<_>>(), [i64::try_from(writes).unwrap() + 1]);
}
