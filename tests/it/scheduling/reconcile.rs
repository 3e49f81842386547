use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use tributary::model::{EntityName, JobRow, Owner, ReconcileCounts};
use tributary::store::{DesiredJob, PageWrite, RecordInput, Store, StoreError};

use super::{at, provider, stream, tenant, tenant_id};

/// `next_due` for these tests: the job id in minutes, so each job's time is known.
fn by_id(_schedule: &str, job_id: i64) -> Option<DateTime<Utc>> {
    Some(at(job_id))
}

fn desired(connection_id: i64, stream_name: &str, schedule: &str) -> DesiredJob {
    DesiredJob { connection_id, stream: stream(stream_name), schedule: schedule.into() }
}

async fn by_stream(store: &Store, tenant: &tributary::model::TenantId) -> BTreeMap<String, JobRow> {
    store.list_jobs(tenant).await.unwrap().into_iter().map(|j| (format!("{}/{}", j.provider, j.stream), j)).collect()
}

fn counts(created: u64, updated: u64, reenabled: u64, disabled: u64, unchanged: u64) -> ReconcileCounts {
    ReconcileCounts { created, updated, reenabled, disabled, unchanged }
}

pub(super) async fn reconcile_creates_updates_disables_and_reenables(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot", "aptem"]).await;
    let hubspot = store.get_connection(&acme, &provider("hubspot"), Owner::Company).await.unwrap().unwrap().id;
    let aptem = store.get_connection(&acme, &provider("aptem"), Owner::Company).await.unwrap().unwrap().id;
    let first = [
        desired(hubspot, "contacts", "15m"),
        desired(hubspot, "companies", "daily at 02:00"),
        desired(aptem, "learners", "hourly"),
    ];
    assert_eq!(store.reconcile_jobs(&acme, &first, &by_id).await.unwrap(), counts(3, 0, 0, 0, 0));
    let jobs = by_stream(store, &acme).await;
    for job in jobs.values() {
        assert!(job.enabled);
        assert_eq!(job.next_run_at, Some(at(job.id)), "next_due gets each job's id");
    }
    assert_eq!(jobs["hubspot/companies"].schedule, "daily at 02:00");

    // A run moved the contacts cursor; the job is then rescheduled by its worker.
    let contacts = jobs["hubspot/contacts"].id;
    let entity = EntityName::parse("contact").unwrap();
    let hubspot_id = provider("hubspot");
    let records = [RecordInput { external_id: "c1".into(), data: json!({}) }];
    let page = PageWrite {
        entity: &entity,
        provider: &hubspot_id,
        records: &records,
        job_id: contacts,
        cursor: Some("2026-11-01"),
        lease_owner: None,
        dead_letters: &[],
        position: tributary::store::PositionWrite::Keep,
        run: None,
        mark_seen: false,
    };
    store.write_page(&acme, &page).await.unwrap();
    let jobs = by_stream(store, &acme).await;

    // Same configuration: nothing changes, the next run times stay.
    let later = |_: &str, _: i64| Some(at(999));
    assert_eq!(store.reconcile_jobs(&acme, &first, &later).await.unwrap(), counts(0, 0, 0, 0, 3));
    assert_eq!(by_stream(store, &acme).await, jobs);

    // Schedule changed, a stream removed, one added.
    let second = [
        desired(hubspot, "contacts", "30m"),
        desired(aptem, "learners", "hourly"),
        desired(aptem, "organizations", "hourly"),
    ];
    assert_eq!(store.reconcile_jobs(&acme, &second, &later).await.unwrap(), counts(1, 1, 0, 1, 1));
    let now = by_stream(store, &acme).await;
    assert_eq!(now["hubspot/contacts"].schedule, "30m");
    assert_eq!(now["hubspot/contacts"].next_run_at, Some(at(999)));
    assert_eq!(now["hubspot/contacts"].cursor.as_deref(), Some("2026-11-01"));
    assert!(!now["hubspot/companies"].enabled);
    assert_eq!(now["hubspot/companies"].next_run_at, jobs["hubspot/companies"].next_run_at);
    assert_eq!(now["aptem/learners"], jobs["aptem/learners"]);
    assert!(now["aptem/organizations"].enabled);

    // The provider is dropped (preset switched): its jobs stop; then it comes back.
    let third = [desired(aptem, "learners", "hourly"), desired(aptem, "organizations", "hourly")];
    assert_eq!(store.reconcile_jobs(&acme, &third, &later).await.unwrap(), counts(0, 0, 0, 1, 2));
    assert!(!by_stream(store, &acme).await["hubspot/contacts"].enabled);
    let fourth = [
        desired(hubspot, "contacts", "30m"),
        desired(hubspot, "companies", "daily at 02:00"),
        desired(aptem, "learners", "hourly"),
        desired(aptem, "organizations", "hourly"),
    ];
    assert_eq!(store.reconcile_jobs(&acme, &fourth, &by_id).await.unwrap(), counts(0, 0, 2, 0, 2));
    let back = by_stream(store, &acme).await;
    assert!(back.values().all(|j| j.enabled));
    assert_eq!(back["hubspot/contacts"].cursor.as_deref(), Some("2026-11-01"));
    assert_eq!(back["hubspot/contacts"].next_run_at, Some(at(999)), "kept: it was already scheduled");
    assert_eq!(back["hubspot/contacts"].id, contacts);
}

pub(super) async fn reconcile_rejects_foreign_connections_and_duplicates(store: &Store) {
    let acme = tenant(store, "acme", &["hubspot"]).await;
    let globex = tenant(store, "globex", &["hubspot"]).await;
    let theirs = store.get_connection(&globex, &provider("hubspot"), Owner::Company).await.unwrap().unwrap().id;
    let mine = store.get_connection(&acme, &provider("hubspot"), Owner::Company).await.unwrap().unwrap().id;

    let err = store
        .reconcile_jobs(&acme, &[desired(mine, "contacts", "15m"), desired(theirs, "deals", "15m")], &by_id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&theirs.to_string()), "{err}");
    assert!(store.list_jobs(&acme).await.unwrap().is_empty(), "nothing is written");
    assert!(store.list_jobs(&globex).await.unwrap().is_empty());

    let twice = [desired(mine, "contacts", "15m"), desired(mine, "contacts", "1h")];
    let err = store.reconcile_jobs(&acme, &twice, &by_id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");

    let err = store.reconcile_jobs(&tenant_id("nobody"), &[], &by_id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}
