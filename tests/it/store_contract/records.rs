//! Page writes: counting, cursors, leases, duplicates and large pages.

use super::*;

pub(super) async fn write_page_counts_inserted_updated_unchanged(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let three = records(&[
        ("c1", json!({ "name": "Ada", "tags": ["a"] })),
        ("c2", json!({ "name": "Grace" })),
        ("c3", json!({ "name": "Edsger", "n": 3 })),
    ]);
    let page = Page::new("contact", "hubspot", three.clone());
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, None)).await.unwrap(), outcome(3, 0, 0));
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, None)).await.unwrap(), outcome(0, 0, 3));
    let before = store.get_record(&acme.id, &entity("contact"), &provider("hubspot"), "c2").await.unwrap().unwrap();

    let mut next = three.clone();
    next[1].data = json!({ "name": "Grace Hopper" });
    next.push(RecordInput { external_id: "c4".into(), data: json!({ "name": "Barbara" }) });
    let page = Page::new("contact", "hubspot", next);
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, None)).await.unwrap(), outcome(1, 1, 2));

    let stored = store.list_records(&acme.id, &entity("contact"), 100).await.unwrap();
    let got: Vec<_> = stored.iter().map(|r| (r.external_id.as_str(), r.data.clone())).collect();
    assert_eq!(
        got,
        [
            ("c1", json!({ "name": "Ada", "tags": ["a"] })),
            ("c2", json!({ "name": "Grace Hopper" })),
            ("c3", json!({ "name": "Edsger", "n": 3 })),
            ("c4", json!({ "name": "Barbara" })),
        ]
    );
    let c2 = &stored[1];
    assert_eq!((c2.tenant_id.as_str(), c2.entity.as_str(), c2.provider.as_str()), ("acme", "contact", "hubspot"));
    assert_ne!(c2.content_hash, before.content_hash);
    assert_eq!(c2.content_hash.len(), 32);
    assert_eq!(c2.first_seen, before.first_seen);
    assert!(c2.last_synced >= before.last_synced);
    assert_eq!(c2.deleted_at, None);
    assert_eq!(store.list_records(&acme.id, &entity("contact"), 2).await.unwrap().len(), 2);
    assert_eq!(store.count_records(&acme.id, None).await.unwrap(), 4);
    assert_eq!(store.count_records(&acme.id, Some(&entity("deal"))).await.unwrap(), 0);

    // The same external id under another entity or provider is another record.
    let deals = Page::new("deal", "hubspot", records(&[("c1", json!({ "amount": 5 }))]));
    assert_eq!(store.write_page(&acme.id, &deals.write(contacts.id, None)).await.unwrap(), outcome(1, 0, 0));
    assert_eq!(store.count_records(&acme.id, None).await.unwrap(), 5);
    let empty = Page::new("contact", "hubspot", vec![]);
    assert_eq!(store.write_page(&acme.id, &empty.write(contacts.id, None)).await.unwrap(), outcome(0, 0, 0));
}

pub(super) async fn write_page_moves_the_cursor_in_the_same_transaction(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({ "n": 1 }))]));
    store.write_page(&acme.id, &page.write(contacts.id, Some("after=c1"))).await.unwrap();
    assert_eq!(store.get_job(&acme.id, contacts.id).await.unwrap().unwrap().cursor.as_deref(), Some("after=c1"));
    store.write_page(&acme.id, &page.write(contacts.id, None)).await.unwrap();
    assert_eq!(store.get_job(&acme.id, contacts.id).await.unwrap().unwrap().cursor.as_deref(), Some("after=c1"));
    let run = store.start_run(&acme.id, contacts.id, RunTrigger::Manual).await.unwrap();
    assert_eq!(run.cursor_before.as_deref(), Some("after=c1"));

    // A page for a job that does not exist writes nothing.
    let lost = Page::new("contact", "hubspot", records(&[("c2", json!({}))]));
    let err = store.write_page(&acme.id, &lost.write(contacts.id + 100, Some("x"))).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(store.count_records(&acme.id, None).await.unwrap(), 1);
}

pub(super) async fn fenced_writes_need_the_lease(store: &Store, url: &str) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({ "n": 1 })), ("c2", json!({ "n": 2 }))]));
    let fenced = |owner| PageWrite { lease_owner: Some(owner), ..page.write(contacts.id, Some("c2")) };

    // Nobody holds the lease yet.
    let err = store.write_page(&acme.id, &fenced("worker-1")).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { job_id } if job_id == contacts.id), "{err:?}");

    crate::support::exec_raw(url, "UPDATE jobs SET lease_owner = 'worker-1'").await;
    let err = store.write_page(&acme.id, &fenced("worker-2")).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    let no_cursor = PageWrite { cursor: None, ..fenced("worker-2") };
    let err = store.write_page(&acme.id, &no_cursor).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    assert_eq!(store.count_records(&acme.id, None).await.unwrap(), 0);
    assert_eq!(store.get_job(&acme.id, contacts.id).await.unwrap().unwrap().cursor, None);

    assert_eq!(store.write_page(&acme.id, &fenced("worker-1")).await.unwrap(), outcome(2, 0, 0));
    let job = store.get_job(&acme.id, contacts.id).await.unwrap().unwrap();
    assert_eq!(job.cursor.as_deref(), Some("c2"));
    assert_eq!(job.lease_owner.as_deref(), Some("worker-1"));
    assert_eq!(store.count_records(&acme.id, None).await.unwrap(), 2);
}

pub(super) async fn write_page_collapses_duplicate_ids(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let page = Page::new(
        "contact",
        "hubspot",
        records(&[("a", json!({ "v": 1 })), ("b", json!({ "v": 1 })), ("a", json!({ "v": 2 }))]),
    );
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, None)).await.unwrap(), outcome(2, 0, 0));
    let a = store.get_record(&acme.id, &entity("contact"), &provider("hubspot"), "a").await.unwrap().unwrap();
    assert_eq!(a.data, json!({ "v": 2 }));

    let page = Page::new("contact", "hubspot", records(&[("a", json!({ "v": 2 })), ("a", json!({ "v": 3 }))]));
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, None)).await.unwrap(), outcome(0, 1, 0));
    let page = Page::new("contact", "hubspot", records(&[("a", json!({ "v": 4 })), ("a", json!({ "v": 3 }))]));
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, None)).await.unwrap(), outcome(0, 0, 1));
    let a = store.get_record(&acme.id, &entity("contact"), &provider("hubspot"), "a").await.unwrap().unwrap();
    assert_eq!(a.data, json!({ "v": 3 }));
    assert_eq!(store.count_records(&acme.id, None).await.unwrap(), 2);
}

pub(super) async fn write_page_handles_pages_beyond_the_bind_limit(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let big = |n: usize, version: u32| -> Vec<RecordInput> {
        (0..n)
            .map(|i| RecordInput {
                external_id: format!("id-{i:05}"),
                data: json!({ "i": i, "version": version, "email": format!("u{i}@example.com") }),
            })
            .collect()
    };
    // 5,000 records × 8 columns is more than one statement binds (32,766).
    let page = Page::new("contact", "hubspot", big(5_000, 1));
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, Some("p1"))).await.unwrap(), outcome(5_000, 0, 0));
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, Some("p1"))).await.unwrap(), outcome(0, 0, 5_000));
    // 6,000 new and 5,000 changed records in one page.
    let page = Page::new("contact", "hubspot", big(11_000, 2));
    assert_eq!(
        store.write_page(&acme.id, &page.write(contacts.id, Some("p2"))).await.unwrap(),
        outcome(6_000, 5_000, 0)
    );
    // 11,000 changed records: rewritten over several statements.
    let page = Page::new("contact", "hubspot", big(11_000, 3));
    assert_eq!(store.write_page(&acme.id, &page.write(contacts.id, Some("p3"))).await.unwrap(), outcome(0, 11_000, 0));
    assert_eq!(store.count_records(&acme.id, Some(&entity("contact"))).await.unwrap(), 11_000);
    let last = store.get_record(&acme.id, &entity("contact"), &provider("hubspot"), "id-10999").await.unwrap().unwrap();
    assert_eq!(last.data, json!({ "i": 10_999, "version": 3, "email": "u10999@example.com" }));
    let first =
        store.get_record(&acme.id, &entity("contact"), &provider("hubspot"), "id-00000").await.unwrap().unwrap();
    assert_eq!(first.data["version"], json!(3));
    assert_eq!(store.get_job(&acme.id, contacts.id).await.unwrap().unwrap().cursor.as_deref(), Some("p3"));
}

pub(super) async fn dead_letters_are_written_with_their_page(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let run = store.start_run(&acme.id, contacts.id, tributary::model::RunTrigger::Cli).await.unwrap();
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({ "n": 1 }))]));
    let dead = vec![tributary::store::DeadLetterInput {
        run_id: Some(run.id),
        stream: "contacts".into(),
        source_id: Some("c2".into()),
        reason: "required field `contact.external_id` is missing".into(),
        record: serde_json::value::RawValue::from_string(r#"{"properties": {}}"#.into()).unwrap(),
    }];
    let write = PageWrite { dead_letters: &dead, ..page.write(contacts.id, Some("c1")) };
    store.write_page(&acme.id, &write).await.unwrap();
    let listed = store.list_dead_letters(&acme.id, Some(run.id), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].source_id.as_deref(), Some("c2"));
    assert_eq!(listed[0].entity.as_str(), "contact");
    assert_eq!(listed[0].record, json!({ "properties": {} }));
    // A fenced write that lost its lease stores no dead letter either.
    let lost = PageWrite { lease_owner: Some("nobody"), ..write };
    assert!(store.write_page(&acme.id, &lost).await.is_err());
    assert_eq!(store.list_dead_letters(&acme.id, None, 10).await.unwrap().len(), 1);
    // Another tenant sees none of them.
    let other = create(store, "globex", &["hubspot"]).await;
    assert!(store.list_dead_letters(&other.id, None, 10).await.unwrap().is_empty());
}

pub(super) async fn positions_and_run_counts_commit_with_their_page(store: &Store, url: &str) {
    use tributary::store::{PositionWrite, RunProgress};
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    assert_eq!(store.job_position(&acme.id, contacts.id).await.unwrap(), None);
    let run = store.start_run_by(&acme.id, contacts.id, RunTrigger::Cli, "host-1234").await.unwrap();
    assert_eq!(run.stats.replica.as_deref(), Some("host-1234"));
    let progress = |fetched, pages| RunProgress {
        run_id: run.id,
        fetched,
        filtered: 1,
        dead_lettered: 0,
        pages,
        http_calls: pages + 1,
        retries: 0,
        rate_limit_waits: 0,
        rate_limit_wait_ms: 0,
    };
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({ "n": 1 })), ("c2", json!({ "n": 2 }))]));

    // The first page saves where the pass continues and counts itself in the run.
    let first = PageWrite {
        position: PositionWrite::Save(r#"{"pass":"p1"}"#),
        run: Some(progress(3, 1)),
        ..page.write(contacts.id, None)
    };
    store.write_page(&acme.id, &first).await.unwrap();
    assert_eq!(store.job_position(&acme.id, contacts.id).await.unwrap().as_deref(), Some(r#"{"pass":"p1"}"#));
    let row = store.get_run(run.id, Some(&acme.id)).await.unwrap().unwrap();
    assert_eq!((row.stats.fetched, row.stats.inserted, row.stats.filtered, row.stats.pages), (3, 2, 1, 1));
    assert_eq!((row.stats.http_calls, row.stats.cursor_after.as_deref()), (2, None));

    // The next adds to the counts (the same records: unchanged) and moves the cursor.
    let second = PageWrite {
        position: PositionWrite::Save(r#"{"pass":"p1","n":2}"#),
        run: Some(progress(2, 2)),
        ..page.write(contacts.id, Some("c2"))
    };
    store.write_page(&acme.id, &second).await.unwrap();
    let row = store.get_run(run.id, Some(&acme.id)).await.unwrap().unwrap();
    assert_eq!((row.stats.fetched, row.stats.inserted, row.stats.unchanged, row.stats.pages), (5, 2, 2, 2));
    assert_eq!(row.stats.cursor_after.as_deref(), Some("c2"));
    assert_eq!(row.outcome, RunOutcome::Running);

    // A fenced write that lost its lease changes neither the position nor the counts.
    crate::support::exec_raw(url, "UPDATE jobs SET lease_owner = 'worker-1'").await;
    let lost = PageWrite { lease_owner: Some("worker-2"), position: PositionWrite::Clear, ..second.clone() };
    let err = store.write_page(&acme.id, &lost).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    assert!(store.job_position(&acme.id, contacts.id).await.unwrap().is_some());
    assert_eq!(store.get_run(run.id, Some(&acme.id)).await.unwrap().unwrap().stats.fetched, 5);

    // `Keep` leaves it; the page that completes the pass clears it.
    let keep = PageWrite { lease_owner: Some("worker-1"), run: None, ..page.write(contacts.id, None) };
    store.write_page(&acme.id, &keep).await.unwrap();
    assert!(store.job_position(&acme.id, contacts.id).await.unwrap().is_some());
    let clear = PageWrite { position: PositionWrite::Clear, ..keep.clone() };
    store.write_page(&acme.id, &clear).await.unwrap();
    assert_eq!(store.job_position(&acme.id, contacts.id).await.unwrap(), None);

    // The note says how the run began; finishing keeps it unless the run has its own.
    store.set_run_note(&acme.id, run.id, "resumed pass p1 at page 3").await.unwrap();
    let done = store.finish_run(&acme.id, run.id, RunOutcome::Cancelled, &RunStats::default()).await.unwrap();
    assert_eq!(done.stats.note.as_deref(), Some("resumed pass p1 at page 3"));
    assert_eq!(done.stats.replica.as_deref(), Some("host-1234"));

    // Counts sent for a finished run change nothing; an unknown job has no position.
    let late = PageWrite { run: Some(progress(100, 9)), ..keep };
    store.write_page(&acme.id, &late).await.unwrap();
    assert_eq!(store.get_run(run.id, Some(&acme.id)).await.unwrap().unwrap().stats.fetched, 0);
    let err = store.job_position(&acme.id, contacts.id + 100).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}
