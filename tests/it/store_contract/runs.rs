//! Runs and the audit log.

use tributary::model::{JobFilter, PauseScope, TriggerKind};

use super::*;

pub(super) async fn runs_round_trip_newest_first(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let first = store.start_run(&acme.id, contacts.id, RunTrigger::Scheduled).await.unwrap();
    assert_eq!(first.tenant_id, acme.id);
    assert_eq!(first.job_id, contacts.id);
    assert_eq!((first.provider.as_str(), first.stream.as_str()), ("hubspot", "contacts"));
    assert_eq!(first.trigger, RunTrigger::Scheduled);
    assert_eq!(first.outcome, RunOutcome::Running);
    assert_eq!(first.cursor_before, None);
    assert_eq!(first.finished_at, None);
    assert_eq!(first.stats, RunStats::default());
    assert_eq!(first.id.get_version_num(), 7);
    assert_eq!(store.get_run(first.id, None).await.unwrap().unwrap(), first);

    let stats = RunStats {
        fetched: 11,
        inserted: 2,
        updated: 3,
        unchanged: 4,
        filtered: 1,
        dead_lettered: 1,
        pages: 5,
        http_calls: 7,
        retries: 8,
        rate_limit_waits: 9,
        rate_limit_wait_ms: 1_234,
        bytes_received: 65_536,
        http_errors: 3,
        http_p50_ms: Some(12.5),
        http_p95_ms: Some(40.25),
        http_p99_ms: Some(80.0),
        cursor_after: Some("after=99".into()),
        error: Some("HTTP 503 after 3 retries".into()),
        error_class: Some("transient".into()),
        error_status: Some(503),
        error_endpoint: Some("/crm/v3/objects/contacts".into()),
        total: None,
        replica: None,
        note: Some("resumed pass p1 at page 3 (saved 2026-01-01T00:00:00Z)".into()),
    };
    let finished = store.finish_run(&acme.id, first.id, RunOutcome::Failed, &stats).await.unwrap();
    assert_eq!(finished.outcome, RunOutcome::Failed);
    assert_eq!(finished.stats, stats);
    assert!(finished.finished_at.unwrap() >= finished.started_at);
    assert_eq!(store.get_run(first.id, Some(&acme.id)).await.unwrap().unwrap(), finished);
    let err = store.finish_run(&acme.id, first.id, RunOutcome::Success, &RunStats::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let err = store.finish_run(&acme.id, uuid::Uuid::now_v7(), RunOutcome::Success, &stats).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store.start_run(&acme.id, contacts.id + 100, RunTrigger::Manual).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    let second = store.start_run(&acme.id, contacts.id, RunTrigger::Webhook).await.unwrap();
    let third = store.start_run(&acme.id, contacts.id, RunTrigger::Cli).await.unwrap();
    let ids: Vec<_> = store.list_runs(Some(&acme.id), 10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [third.id, second.id, first.id]);
    let ids: Vec<_> = store.list_runs(None, 2).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [third.id, second.id]);
    let listed = store.list_runs(None, 10).await.unwrap();
    assert_eq!(listed[2], finished);
    assert_eq!(listed[1].trigger, RunTrigger::Webhook);
}

pub(super) async fn audit_is_listed_newest_first_per_scope(store: &Store) {
    create(store, "acme", &[]).await;
    create(store, "globex", &[]).await;
    let entries = [
        audit(Some("acme"), "credentials.set", at(10)),
        audit(None, "daemon.start", at(12)),
        AuditEntry { subject: None, details: json!([]), ..audit(Some("globex"), "tenant.rebase", at(11)) },
    ];
    for entry in &entries {
        store.record_audit(entry).await.unwrap();
    }
    let all = store.list_audit(None, 10).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[..3], [entries[1].clone(), entries[2].clone(), entries[0].clone()]);
    let acme: Vec<_> = store.list_audit(Some(&tenant_id("acme")), 10).await.unwrap();
    assert_eq!(acme.len(), 2);
    assert_eq!(acme[0], entries[0]);
    assert_eq!(acme[1].action, "tenant.create");
    assert_eq!(store.list_audit(None, 2).await.unwrap().len(), 2);
    assert!(store.list_audit(Some(&tenant_id("initech")), 10).await.unwrap().is_empty());
}

pub(super) async fn gauge_figures_aggregate_each_stream_over_tenants(store: &Store) {
    let hubspot = provider("hubspot");
    let acme = create(store, "acme", &["hubspot"]).await;
    let globex = create(store, "globex", &["hubspot"]).await;
    let paused = create(store, "initech", &["hubspot"]).await;
    let acme_job = job(store, "acme", "hubspot", "contacts").await;
    let globex_job = job(store, "globex", "hubspot", "contacts").await;
    let paused_job = job(store, "initech", "hubspot", "contacts").await;
    store.set_paused(&PauseScope::Job(paused.id.clone(), paused_job.id), true).await.unwrap();
    for tenant in [&acme.id, &globex.id] {
        store.set_connection_status(tenant, &hubspot, Owner::Company, ConnectionStatus::Connected, None).await.unwrap();
    }
    store
        .set_connection_status(&paused.id, &hubspot, Owner::Company, ConnectionStatus::NeedsReauth, None)
        .await
        .unwrap();
    // acme succeeded once, then failed; globex never succeeded; the paused job is left out.
    let run = store.start_run(&acme.id, acme_job.id, RunTrigger::Manual).await.unwrap();
    let succeeded = store.finish_run(&acme.id, run.id, RunOutcome::Success, &RunStats::default()).await.unwrap();
    let run = store.start_run(&acme.id, acme_job.id, RunTrigger::Manual).await.unwrap();
    store.finish_run(&acme.id, run.id, RunOutcome::Failed, &RunStats::default()).await.unwrap();
    let run = store.start_run(&paused.id, paused_job.id, RunTrigger::Manual).await.unwrap();
    store.finish_run(&paused.id, run.id, RunOutcome::Success, &RunStats::default()).await.unwrap();

    let now = Utc::now() + chrono::TimeDelta::hours(1);
    let figures = store.gauge_figures(now).await.unwrap();
    assert_eq!(figures.connections, [("connected".to_owned(), 2), ("needs_reauth".to_owned(), 1)]);
    assert_eq!(figures.streams.len(), 1, "{figures:?}");
    let contacts = &figures.streams[0];
    assert_eq!((contacts.provider.as_str(), contacts.stream.as_str()), ("hubspot", "contacts"));
    assert_eq!(contacts.last_success, succeeded.finished_at);
    // The furthest behind: globex, which never succeeded, since its job was created.
    assert_eq!(contacts.oldest, Some(globex_job.created_at));
    assert!(globex_job.created_at < succeeded.finished_at.unwrap());

    // A triggered job is due since its trigger; nothing else is due.
    let triggered_at = at(5);
    let filter = JobFilter { tenant: Some(globex.id.clone()), provider: None, stream: None };
    store.trigger_jobs(&filter, TriggerKind::Manual, triggered_at).await.unwrap();
    let due = store.gauge_figures(now).await.unwrap().oldest_due;
    let acme_due = store.get_job(&acme.id, acme_job.id).await.unwrap().unwrap().next_run_at;
    let expected = [Some(triggered_at), acme_due.filter(|d| *d <= now)].into_iter().flatten().min();
    assert_eq!(due, expected);
}
