//! Tenant isolation and corrupt rows.

use super::*;

pub(super) async fn tenants_are_isolated(store: &Store) {
    let a = create(store, "acme", &["hubspot", "aptem"]).await;
    let b = create(store, "globex", &["hubspot"]).await;
    let hubspot = provider("hubspot");
    let a_conn = store.get_connection(&a.id, &hubspot, Owner::Company).await.unwrap().unwrap();
    store
        .set_credentials(
            &a.id,
            &hubspot,
            Owner::Company,
            &sealed(b"acme-secret"),
            &audit(Some("acme"), "credentials.set", at(1)),
        )
        .await
        .unwrap();
    let a_job = job(store, "acme", "hubspot", "contacts").await;
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({ "who": "acme" }))]));
    store.write_page(&a.id, &page.write(a_job.id, Some("a-cursor"))).await.unwrap();
    let a_run = store.start_run(&a.id, a_job.id, RunTrigger::Manual).await.unwrap();

    // Reads under B see only B's own rows.
    let b_conn = store.get_connection(&b.id, &hubspot, Owner::Company).await.unwrap().unwrap();
    assert_ne!(b_conn.id, a_conn.id);
    assert!(!b_conn.has_credentials);
    assert!(store.list_connections(&b.id).await.unwrap().iter().all(|c| c.tenant_id == b.id));
    assert_eq!(store.get_credentials(&b.id, &hubspot, Owner::Company).await.unwrap(), None);
    assert!(store.get_connection(&b.id, &provider("aptem"), Owner::Company).await.unwrap().is_none());
    assert!(store.get_job(&b.id, a_job.id).await.unwrap().is_none());
    assert!(store.list_jobs(&b.id).await.unwrap().is_empty());
    assert!(store.list_records(&b.id, &entity("contact"), 100).await.unwrap().is_empty());
    assert!(store.get_record(&b.id, &entity("contact"), &hubspot, "c1").await.unwrap().is_none());
    assert_eq!(store.count_records(&b.id, None).await.unwrap(), 0);
    assert!(store.get_run(a_run.id, Some(&b.id)).await.unwrap().is_none());
    assert!(store.get_run(a_run.id, None).await.unwrap().is_some());
    assert!(store.list_runs(Some(&b.id), 10).await.unwrap().is_empty());
    assert!(store.list_audit(Some(&b.id), 10).await.unwrap().iter().all(|e| e.tenant_id.as_ref() == Some(&b.id)));

    // Writes under B cannot reach A's rows.
    let err = store.ensure_job(&b.id, a_conn.id, &stream("contacts"), "1m").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let intruder = Page::new("contact", "hubspot", records(&[("c1", json!({ "who": "globex" })), ("c9", json!({}))]));
    let err = store.write_page(&b.id, &intruder.write(a_job.id, Some("b-cursor"))).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store.write_page(&b.id, &intruder.write(a_job.id, None)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store.start_run(&b.id, a_job.id, RunTrigger::Manual).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store.finish_run(&b.id, a_run.id, RunOutcome::Cancelled, &RunStats::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store
        .set_connection_status(&b.id, &provider("aptem"), Owner::Company, ConnectionStatus::Disabled, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    store
        .set_credentials(
            &b.id,
            &hubspot,
            Owner::Company,
            &sealed(b"globex-secret"),
            &audit(Some("globex"), "credentials.set", at(2)),
        )
        .await
        .unwrap();
    let mut b_off = b.clone();
    b_off.enabled_providers.clear();
    store.update_tenant(&b_off, &audit(Some("globex"), "tenant.update", at(3))).await.unwrap();

    // A is exactly as it was.
    assert_eq!(
        store.get_credentials(&a.id, &hubspot, Owner::Company).await.unwrap(),
        Some((sealed(b"acme-secret"), 1))
    );
    let a_conn_now = store.get_connection(&a.id, &hubspot, Owner::Company).await.unwrap().unwrap();
    assert_eq!(a_conn_now.status, ConnectionStatus::Connected);
    let a_job_now = store.get_job(&a.id, a_job.id).await.unwrap().unwrap();
    assert!(a_job_now.enabled);
    assert_eq!(a_job_now.cursor.as_deref(), Some("a-cursor"));
    let records_now = store.list_records(&a.id, &entity("contact"), 10).await.unwrap();
    assert_eq!(records_now.len(), 1);
    assert_eq!(records_now[0].data, json!({ "who": "acme" }));
    assert_eq!(store.get_run(a_run.id, Some(&a.id)).await.unwrap().unwrap().outcome, RunOutcome::Running);
    assert_eq!(store.count_records(&b.id, None).await.unwrap(), 0);
}

pub(super) async fn corrupt_rows_are_errors_not_panics(store: &Store, url: &str) {
    create(store, "acme", &["aptem"]).await;
    crate::support::exec_raw(url, "UPDATE connections SET status = 'exploded'").await;
    let err = store.list_connections(&tenant_id("acme")).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("exploded"), "{err}");

    crate::support::exec_raw(
        url,
        "INSERT INTO tenants (id, name, subdomain, timezone, preset, preset_revision, \
         preset_snapshot, created_at, updated_at) VALUES ('Not Valid', 'x', 'x', 'UTC', \
         'aptem', 'r1', '{}', '2026-11-21T09:00:00+00:00', '2026-11-21T09:00:00+00:00')",
    )
    .await;
    let err = store.list_tenants().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("Not Valid"), "{err}");
}
