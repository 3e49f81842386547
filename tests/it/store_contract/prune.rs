//! Retention: what a pruning pass removes and what it never touches — live records,
//! jobs and their cursors, a job's latest runs, running runs, pending work.

use tributary::config::{RetentionSettings, WriteOp};
use tributary::store::{DeadLetterInput, NewWrite, WriteSettle};

use super::*;

pub(super) async fn pruning_removes_old_history_and_keeps_what_is_live(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let companies = job(store, "acme", "hubspot", "companies").await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let r = store.start_run(&acme.id, contacts.id, RunTrigger::Scheduled).await.unwrap();
        store.finish_run(&acme.id, r.id, RunOutcome::Success, &RunStats::default()).await.unwrap();
        runs.push(r.id);
    }
    let running = store.start_run(&acme.id, contacts.id, RunTrigger::Scheduled).await.unwrap();
    let only = store.start_run(&acme.id, companies.id, RunTrigger::Scheduled).await.unwrap();
    store.finish_run(&acme.id, only.id, RunOutcome::Failed, &RunStats::default()).await.unwrap();

    // Two records, one then deleted at the provider; a dead letter with the page; the
    // job's cursor moves with it.
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({"n": 1})), ("c2", json!({"n": 2}))]));
    let dead = vec![DeadLetterInput {
        run_id: Some(runs[0]),
        stream: "contacts".into(),
        source_id: Some("c3".into()),
        reason: "required field `contact.external_id` is missing".into(),
        record: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
    }];
    store
        .write_page(&acme.id, &PageWrite { dead_letters: &dead, ..page.write(contacts.id, Some("cursor-7")) })
        .await
        .unwrap();
    store.mark_deleted(&acme.id, &entity("contact"), &provider("hubspot"), &["c2"], None).await.unwrap();

    // A finished write and a pending one.
    let (hubspot, contact, payload) = (provider("hubspot"), entity("contact"), json!({"email": "a@b.example.com"}));
    let new = |key: &'static str| NewWrite {
        tenant: &acme.id,
        provider: &hubspot,
        owner: Owner::Company,
        entity: &contact,
        op: WriteOp::Create,
        external_id: None,
        idempotency_key: Some(key),
        base_version: None,
        force: false,
        payload: &payload,
    };
    let (done, _) = store.submit_write(&new("k1")).await.unwrap();
    let until = Utc::now() + chrono::Duration::minutes(5);
    store.claim_writes("w", until, 1).await.unwrap();
    let ok = WriteSettle::Succeeded { status: Some(201), result_id: "9".into(), result_version: None };
    store.settle_write(&done.id, "w", 1, &ok).await.unwrap().unwrap();
    let (pending, _) = store.submit_write(&new("k2")).await.unwrap();

    let policy = RetentionSettings { runs_keep: 2, deleted_records_days: 30, ..RetentionSettings::default() };
    // Nothing is old enough yet.
    let now = store.prune(&policy, Utc::now(), true, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(now.total(), 0, "{now:?}");

    // A year on: dry first, then for real; the counts agree.
    let later = Utc::now() + chrono::Duration::days(365);
    let dry = store.prune(&policy, later, true, std::time::Duration::ZERO).await.unwrap();
    let small = RetentionSettings { batch: 1, ..policy.clone() };
    let done_report = store.prune(&small, later, false, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(dry, done_report);
    assert_eq!(
        (done_report.runs, done_report.dead_letters, done_report.writes, done_report.deleted_records),
        (2, 1, 1, 1),
        "{done_report:?}"
    );
    assert_eq!(store.prune(&policy, later, false, std::time::Duration::ZERO).await.unwrap().total(), 0, "idempotent");

    // Kept: the job's two latest runs (one running), the other job's only run.
    let mut left: Vec<_> = store.list_runs(Some(&acme.id), 100).await.unwrap().into_iter().map(|r| r.id).collect();
    left.sort();
    let mut expected = vec![runs[2], running.id, only.id];
    expected.sort();
    assert_eq!(left, expected);
    // The live record, the job and its cursor, the pending write.
    let (t, e, p) = (&acme.id, &entity("contact"), &provider("hubspot"));
    assert!(store.get_record(t, e, p, "c1").await.unwrap().is_some());
    assert!(store.get_record(t, e, p, "c2").await.unwrap().is_none(), "purged a year after its deletion");
    let jobs = store.list_jobs(&acme.id).await.unwrap();
    let job = jobs.iter().find(|j| j.id == contacts.id).unwrap();
    assert_eq!(job.cursor.as_deref(), Some("cursor-7"));
    assert!(store.get_write(&pending.id).await.unwrap().is_some());
    assert!(store.get_write(&done.id).await.unwrap().is_none());
    assert!(store.list_dead_letters(&acme.id, None, 10).await.unwrap().is_empty());

    // Off (0 days) keeps a kind forever.
    store.mark_deleted(t, e, p, &["c1"], None).await.unwrap();
    let off = RetentionSettings { deleted_records_days: 0, ..policy };
    assert_eq!(store.prune(&off, later, false, std::time::Duration::ZERO).await.unwrap().deleted_records, 0);
    assert!(store.get_record(t, e, p, "c1").await.unwrap().is_some());
}
