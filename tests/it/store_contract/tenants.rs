//! Tenants, overrides, connections, credentials and jobs.

use super::*;

pub(super) async fn migrations_rerun_idempotently(store: &Store, url: &str) {
    create(store, "acme", &["aptem"]).await;
    for _ in 0..2 {
        let again = Store::connect(url).await.expect("reconnect and re-run migrations");
        assert_eq!(again.backend(), store.backend());
        let tenant = again.get_tenant(&tenant_id("acme")).await.unwrap();
        assert_eq!(tenant.unwrap().name, "acme Ltd");
        again.close().await;
    }
    assert_eq!(store.sqlite_path().is_some(), store.backend() == "sqlite");
}

pub(super) async fn tenant_create_conflicts_on_same_id(store: &Store) {
    let acme = create(store, "acme", &["aptem"]).await;
    let row = store.get_tenant(&acme.id).await.unwrap().unwrap();
    assert_eq!(row.id, acme.id);
    assert_eq!(row.name, "acme Ltd");
    assert_eq!(row.subdomain, "acme");
    assert_eq!(row.timezone, "Europe/London");
    assert_eq!(row.preset.as_str(), "aptem_hubspot");
    assert_eq!(row.preset_revision, "r1");
    assert_eq!(row.preset_snapshot, acme.preset_snapshot);
    assert_eq!(row.created_at, row.updated_at);

    let mut again = state("acme", &["hubspot"]);
    again.subdomain = "acme-2".into();
    let err = store.create_tenant(&again, &audit(Some("acme"), "tenant.create", at(1))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(err.to_string(), "tenant `acme` already exists");
    // Nothing of the failed create was written.
    let providers: Vec<_> = store.list_connections(&acme.id).await.unwrap();
    assert_eq!(providers.len(), 1);
    assert_eq!(store.list_audit(None, 10).await.unwrap().len(), 1);

    let mut taken = state("globex", &["aptem"]);
    taken.subdomain = "acme".into();
    let err = store.create_tenant(&taken, &audit(Some("globex"), "tenant.create", at(1))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("subdomain `acme`"), "{err}");
    assert!(store.list_connections(&taken.id).await.unwrap().is_empty());

    create(store, "zeta", &[]).await;
    create(store, "beta", &[]).await;
    let ids: Vec<_> = store.list_tenants().await.unwrap().into_iter().map(|t| t.id.to_string()).collect();
    assert_eq!(ids, ["acme", "beta", "zeta"]);
}

pub(super) async fn tenant_update_requires_an_existing_tenant(store: &Store) {
    let ghost = state("ghost", &["aptem"]);
    let err = store.update_tenant(&ghost, &audit(Some("ghost"), "tenant.update", at(1))).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("tenant `ghost`"), "{err}");
    assert!(store.get_tenant(&ghost.id).await.unwrap().is_none());
    assert!(store.list_audit(None, 10).await.unwrap().is_empty());

    let mut acme = create(store, "acme", &["aptem"]).await;
    let created = store.get_tenant(&acme.id).await.unwrap().unwrap();
    acme.name = "Acme Holdings".into();
    acme.preset_revision = "r2".into();
    let updated = store.update_tenant(&acme, &audit(Some("acme"), "tenant.update", at(2))).await.unwrap();
    assert_eq!(updated.name, "Acme Holdings");
    assert_eq!(updated.preset_revision, "r2");
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(store.get_tenant(&acme.id).await.unwrap().unwrap(), updated);
}

pub(super) async fn overrides_are_replaced_wholesale(store: &Store) {
    let mut acme = state("acme", &["aptem", "hubspot"]);
    acme.overrides = vec![
        (provider("hubspot"), json!({ "schedule": "1h" })),
        (provider("aptem"), json!({ "mappings": { "email": "$.mail" } })),
    ];
    store.create_tenant(&acme, &audit(Some("acme"), "tenant.create", at(0))).await.unwrap();
    assert_eq!(
        store.get_overrides(&acme.id).await.unwrap(),
        vec![
            (provider("aptem"), json!({ "mappings": { "email": "$.mail" } })),
            (provider("hubspot"), json!({ "schedule": "1h" })),
        ]
    );

    acme.overrides = vec![(provider("slack"), json!({ "enabled": false }))];
    store.update_tenant(&acme, &audit(Some("acme"), "tenant.update", at(1))).await.unwrap();
    assert_eq!(store.get_overrides(&acme.id).await.unwrap(), vec![(provider("slack"), json!({ "enabled": false }))]);

    acme.overrides.clear();
    store.update_tenant(&acme, &audit(Some("acme"), "tenant.update", at(2))).await.unwrap();
    assert!(store.get_overrides(&acme.id).await.unwrap().is_empty());
}

pub(super) async fn enabled_providers_drive_connections_and_jobs(store: &Store) {
    let mut acme = create(store, "acme", &["aptem", "hubspot"]).await;
    let connections = store.list_connections(&acme.id).await.unwrap();
    let summary: Vec<_> = connections
        .iter()
        .map(|c| (c.provider.as_str(), c.owner_user.as_ref().map_or("", |u| u.as_str()), c.status, c.has_credentials))
        .collect();
    assert_eq!(
        summary,
        [("aptem", "", ConnectionStatus::Pending, false), ("hubspot", "", ConnectionStatus::Pending, false),]
    );
    let hubspot = connections[1].clone();
    let contacts = job(store, "acme", "hubspot", "contacts").await;
    let learners = job(store, "acme", "aptem", "learners").await;
    let page = Page::new("contact", "hubspot", records(&[("c1", json!({ "n": 1 }))]));
    store.write_page(&acme.id, &page.write(contacts.id, Some("cur-1"))).await.unwrap();

    // Switching to a preset without hubspot disables its connection and jobs.
    acme.enabled_providers = vec![provider("aptem")];
    store.update_tenant(&acme, &audit(Some("acme"), "tenant.update", at(1))).await.unwrap();
    let off = store.get_connection(&acme.id, &provider("hubspot"), Owner::Company).await.unwrap().unwrap();
    assert_eq!(off.id, hubspot.id);
    assert_eq!(off.status, ConnectionStatus::Disabled);
    assert!(off.status_reason.is_some());
    let contacts_off = store.get_job(&acme.id, contacts.id).await.unwrap().unwrap();
    assert!(!contacts_off.enabled);
    assert_eq!(contacts_off.cursor.as_deref(), Some("cur-1"));
    assert!(store.get_job(&acme.id, learners.id).await.unwrap().unwrap().enabled);
    let aptem = store.get_connection(&acme.id, &provider("aptem"), Owner::Company).await.unwrap().unwrap();
    assert_eq!(aptem.status, ConnectionStatus::Pending);
    // Its records stay.
    assert_eq!(store.count_records(&acme.id, Some(&entity("contact"))).await.unwrap(), 1);
    // Ensuring a job of a disabled connection does not switch it on.
    let ensured = job(store, "acme", "hubspot", "contacts").await;
    assert!(!ensured.enabled);

    // Switching back brings the same connection and job back.
    acme.enabled_providers = vec![provider("aptem"), provider("hubspot")];
    store.update_tenant(&acme, &audit(Some("acme"), "tenant.update", at(2))).await.unwrap();
    let back = store.get_connection(&acme.id, &provider("hubspot"), Owner::Company).await.unwrap().unwrap();
    assert_eq!(back.id, hubspot.id);
    assert_eq!(back.status, ConnectionStatus::Pending);
    assert_eq!(back.status_reason, None);
    let contacts_back = store.get_job(&acme.id, contacts.id).await.unwrap().unwrap();
    assert!(contacts_back.enabled);
    assert_eq!(contacts_back.cursor.as_deref(), Some("cur-1"));

    // A connection with credentials comes back `connected`.
    let hub = provider("hubspot");
    store
        .set_credentials(&acme.id, &hub, Owner::Company, &sealed(b"x"), &audit(Some("acme"), "credentials.set", at(3)))
        .await
        .unwrap();
    acme.enabled_providers = vec![];
    store.update_tenant(&acme, &audit(Some("acme"), "tenant.update", at(4))).await.unwrap();
    let all_off = store.list_connections(&acme.id).await.unwrap();
    assert!(all_off.iter().all(|c| c.status == ConnectionStatus::Disabled));
    assert!(store.list_jobs(&acme.id).await.unwrap().iter().all(|j| !j.enabled));
    acme.enabled_providers = vec![hub.clone()];
    store.update_tenant(&acme, &audit(Some("acme"), "tenant.update", at(5))).await.unwrap();
    let connected = store.get_connection(&acme.id, &hub, Owner::Company).await.unwrap().unwrap();
    assert_eq!(connected.status, ConnectionStatus::Connected);
    let aptem = store.get_connection(&acme.id, &provider("aptem"), Owner::Company).await.unwrap().unwrap();
    assert_eq!(aptem.status, ConnectionStatus::Disabled);
}

pub(super) async fn credentials_bump_version_connect_and_audit(store: &Store) {
    let acme = create(store, "acme", &["aptem", "hubspot"]).await;
    let aptem = provider("aptem");
    assert_eq!(store.get_credentials(&acme.id, &aptem, Owner::Company).await.unwrap(), None);

    let row = store
        .set_credentials(
            &acme.id,
            &aptem,
            Owner::Company,
            &sealed(b"sealed-1"),
            &audit(Some("acme"), "credentials.set", at(1)),
        )
        .await
        .unwrap();
    assert_eq!(row.status, ConnectionStatus::Connected);
    assert!(row.has_credentials);
    assert_eq!(row.credentials_version, 1);
    assert_eq!(row.credentials_key_id.as_deref(), Some("k1"));
    assert!(row.credentials_updated_at.is_some());
    assert_eq!(store.get_connection(&acme.id, &aptem, Owner::Company).await.unwrap().unwrap(), row);
    assert_eq!(store.get_credentials(&acme.id, &aptem, Owner::Company).await.unwrap(), Some((sealed(b"sealed-1"), 1)));

    store
        .set_connection_status(&acme.id, &aptem, Owner::Company, ConnectionStatus::NeedsReauth, Some("401"))
        .await
        .unwrap();
    let rotated = SealedBlob { key_id: "k2".into(), bytes: b"sealed-2".to_vec() };
    let row = store
        .set_credentials(&acme.id, &aptem, Owner::Company, &rotated, &audit(Some("acme"), "credentials.set", at(2)))
        .await
        .unwrap();
    assert_eq!(row.credentials_version, 2);
    assert_eq!(row.status, ConnectionStatus::Connected);
    assert_eq!(row.status_reason, None);
    assert_eq!(store.get_credentials(&acme.id, &aptem, Owner::Company).await.unwrap(), Some((rotated, 2)));

    // A disabled connection stays disabled.
    let hubspot = provider("hubspot");
    store.set_connection_status(&acme.id, &hubspot, Owner::Company, ConnectionStatus::Disabled, None).await.unwrap();
    let row = store
        .set_credentials(
            &acme.id,
            &hubspot,
            Owner::Company,
            &sealed(b"h"),
            &audit(Some("acme"), "credentials.set", at(3)),
        )
        .await
        .unwrap();
    assert_eq!(row.status, ConnectionStatus::Disabled);
    assert_eq!(row.credentials_version, 1);

    let err = store
        .set_credentials(
            &acme.id,
            &provider("slack"),
            Owner::Company,
            &sealed(b"s"),
            &audit(Some("acme"), "credentials.set", at(4)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "no connection for provider `slack` at tenant `acme` (is the provider enabled in its preset?)"
    );

    let actions: Vec<_> =
        store.list_audit(Some(&acme.id), 10).await.unwrap().into_iter().map(|a| (a.action, a.at)).collect();
    assert_eq!(
        actions,
        [
            ("credentials.set".to_owned(), at(3)),
            ("credentials.set".to_owned(), at(2)),
            ("credentials.set".to_owned(), at(1)),
            ("tenant.create".to_owned(), at(0)),
        ]
    );
}

pub(super) async fn connection_status_is_set_per_tenant(store: &Store) {
    let acme = create(store, "acme", &["aptem"]).await;
    let aptem = provider("aptem");
    let row = store
        .set_connection_status(
            &acme.id,
            &aptem,
            Owner::Company,
            ConnectionStatus::Error,
            Some("HTTP 500 from /learners"),
        )
        .await
        .unwrap();
    assert_eq!(row.status, ConnectionStatus::Error);
    assert_eq!(row.status_reason.as_deref(), Some("HTTP 500 from /learners"));
    assert_eq!(store.get_connection(&acme.id, &aptem, Owner::Company).await.unwrap().unwrap(), row);
    let err = store
        .set_connection_status(&acme.id, &provider("bud"), Owner::Company, ConnectionStatus::Connected, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub(super) async fn jobs_are_ensured_idempotently(store: &Store) {
    let acme = create(store, "acme", &["aptem", "hubspot"]).await;
    let first = job(store, "acme", "hubspot", "contacts").await;
    assert_eq!(first.tenant_id, acme.id);
    assert_eq!(first.provider.as_str(), "hubspot");
    assert_eq!(first.stream.as_str(), "contacts");
    assert_eq!(first.schedule, "15m");
    assert!(first.enabled && !first.paused);
    assert_eq!((first.cursor.clone(), first.lease_owner.clone(), first.attempts), (None, None, 0));

    let again = store.ensure_job(&acme.id, first.connection_id, &stream("contacts"), "daily at 02:00").await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.schedule, "daily at 02:00");
    assert_eq!(again.created_at, first.created_at);
    assert_eq!(store.get_job(&acme.id, first.id).await.unwrap().unwrap(), again);

    job(store, "acme", "aptem", "learners").await;
    job(store, "acme", "hubspot", "companies").await;
    let listed: Vec<_> =
        store.list_jobs(&acme.id).await.unwrap().into_iter().map(|j| format!("{}/{}", j.provider, j.stream)).collect();
    assert_eq!(listed, ["aptem/learners", "hubspot/companies", "hubspot/contacts"]);
    assert!(store.get_job(&acme.id, 999_999).await.unwrap().is_none());
}
