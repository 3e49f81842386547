//! Users, memberships, role grants and user-owned connections.

use std::collections::BTreeMap;

use super::*;
use tributary::model::{JobFilter, RoleName, Saved, TriggerKind, UserId};
use tributary::store::{ClaimRequest, Exclusions, NOT_A_MEMBER_REASON, TokenWrite};

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn role(name: &str) -> RoleName {
    RoleName::parse(name).unwrap()
}

async fn add(store: &Store, id: &str) {
    store.add_user(&user(id), &format!("{id} name"), None, &audit(None, "user.add", at(0))).await.unwrap();
}

async fn member(store: &Store, tenant: &str, id: &str, role_name: &str) {
    store
        .set_membership(&tenant_id(tenant), &user(id), &role(role_name), &audit(Some(tenant), "membership.set", at(1)))
        .await
        .unwrap();
}

async fn set_credentials(
    store: &Store,
    tenant: &TenantId,
    provider: &ProviderId,
    owner: Owner<'_>,
    bytes: &[u8],
) -> Result<tributary::model::ConnectionRow, StoreError> {
    store.set_credentials(tenant, provider, owner, &sealed(bytes), &audit(Some("acme"), "credentials.set", at(3))).await
}

async fn audits(store: &Store) -> Vec<String> {
    store.list_audit(None, 100).await.unwrap().into_iter().map(|a| a.action).collect()
}

pub(super) async fn users_are_added_idempotently(store: &Store) {
    let bob = user("bob");
    let (row, saved) =
        store.add_user(&bob, "Bob Jones", Some("bob@example.com"), &audit(None, "user.add", at(0))).await.unwrap();
    assert_eq!(saved, Saved::Created);
    assert_eq!(
        (row.id.as_str(), row.name.as_str(), row.email.as_deref()),
        ("bob", "Bob Jones", Some("bob@example.com"))
    );
    assert!(row.memberships.is_empty());
    assert_eq!(row.created_at, row.updated_at);
    assert_eq!(store.get_user(&bob).await.unwrap(), Some(row.clone()));

    // The same again writes nothing, not even an audit entry.
    let (same, saved) =
        store.add_user(&bob, "Bob Jones", Some("bob@example.com"), &audit(None, "user.add", at(1))).await.unwrap();
    assert_eq!((same, saved), (row.clone(), Saved::Unchanged));
    assert_eq!(audits(store).await, ["user.add"]);

    // A new name, or dropping the email, updates.
    let (renamed, saved) =
        store.add_user(&bob, "Robert Jones", Some("bob@example.com"), &audit(None, "user.add", at(2))).await.unwrap();
    assert_eq!((renamed.name.as_str(), saved), ("Robert Jones", Saved::Updated));
    assert_eq!(renamed.created_at, row.created_at);
    let (no_email, saved) = store.add_user(&bob, "Robert Jones", None, &audit(None, "user.add", at(3))).await.unwrap();
    assert_eq!((no_email.email, saved), (None, Saved::Updated));
    assert_eq!(audits(store).await.len(), 3);
    assert_eq!(store.get_user(&user("nobody")).await.unwrap(), None);
}

pub(super) async fn memberships_give_users_a_role_per_tenant(store: &Store) {
    create(store, "acme", &["hubspot"]).await;
    create(store, "globex", &["hubspot"]).await;
    for id in ["bob", "carol", "zed"] {
        add(store, id).await;
    }
    let (acme, globex) = (tenant_id("acme"), tenant_id("globex"));
    let set = |tenant: &TenantId, id: &str, r: &str| {
        let (tenant, id, r) = (tenant.clone(), user(id), role(r));
        async move { store.set_membership(&tenant, &id, &r, &audit(None, "membership.set", at(1))).await }
    };
    let (m, saved) = set(&acme, "bob", "developer").await.unwrap();
    assert_eq!(
        (m.tenant_id.as_str(), m.user_id.as_str(), m.role.as_str(), saved),
        ("acme", "bob", "developer", Saved::Created)
    );
    assert_eq!(set(&globex, "bob", "sales").await.unwrap().1, Saved::Created);
    assert_eq!(set(&acme, "carol", "sales").await.unwrap().1, Saved::Created);
    // The same role again is unchanged; another role is an update.
    assert_eq!(set(&acme, "bob", "developer").await.unwrap().1, Saved::Unchanged);
    let (m, saved) = set(&acme, "carol", "admin").await.unwrap();
    assert_eq!((m.role.as_str(), saved), ("admin", Saved::Updated));

    let pairs = |ms: Vec<tributary::model::MembershipRow>| -> Vec<(String, String, String)> {
        ms.into_iter().map(|m| (m.tenant_id.to_string(), m.user_id.to_string(), m.role.to_string())).collect()
    };
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        pairs(store.memberships(&acme).await.unwrap()),
        [s("acme", "bob", "developer"), s("acme", "carol", "admin")]
    );
    assert_eq!(
        pairs(store.memberships_of(&user("bob")).await.unwrap()),
        [s("acme", "bob", "developer"), s("globex", "bob", "sales")]
    );
    assert!(store.memberships_of(&user("zed")).await.unwrap().is_empty());

    // Every user with every membership; a tenant's listing shows only its members and
    // only their membership of it.
    let all = store.list_users(None).await.unwrap();
    let summary: Vec<(&str, usize)> = all.iter().map(|u| (u.id.as_str(), u.memberships.len())).collect();
    assert_eq!(summary, [("bob", 2), ("carol", 1), ("zed", 0)]);
    let of_globex = store.list_users(Some(&globex)).await.unwrap();
    assert_eq!(of_globex.len(), 1);
    assert_eq!(pairs(of_globex[0].memberships.clone()), [s("globex", "bob", "sales")]);
    assert_eq!(store.get_user(&user("bob")).await.unwrap().unwrap().memberships.len(), 2);

    // Unknown users and tenants are named.
    let err = set(&acme, "ghost", "developer").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "user `ghost` does not exist");
    let err = set(&tenant_id("nowhere"), "bob", "developer").await.unwrap_err();
    assert_eq!(err.to_string(), "tenant `nowhere` does not exist");
    assert_eq!(audits(store).await.iter().filter(|a| *a == "membership.set").count(), 4);
}

pub(super) async fn user_connections_need_a_membership_and_follow_it(store: &Store) {
    let acme = create(store, "acme", &["hubspot", "aptem"]).await;
    add(store, "bob").await;
    let (bob, hubspot) = (user("bob"), provider("hubspot"));
    let connect = |schedule: Option<&'static str>| {
        let (t, p, u) = (acme.id.clone(), hubspot.clone(), bob.clone());
        async move { store.connect_user(&t, &p, &u, schedule, &audit(Some("acme"), "connection.connect", at(2))).await }
    };

    let err = connect(None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "user `bob` is not a member of tenant `acme`");
    member(store, "acme", "bob", "developer").await;

    let (conn, saved) = connect(Some("30m")).await.unwrap();
    assert_eq!(saved, Saved::Created);
    assert_eq!(conn.owner_user, Some(bob.clone()));
    assert_eq!(conn.owner_role, Some(role("developer")));
    assert_eq!((conn.status, conn.has_credentials), (ConnectionStatus::Pending, false));
    assert_eq!(conn.schedule.as_deref(), Some("30m"));
    assert_eq!(connect(Some("30m")).await.unwrap().1, Saved::Unchanged);
    let (conn, saved) = connect(None).await.unwrap();
    assert_eq!((conn.schedule, saved), (None, Saved::Updated));
    let company = store.get_connection(&acme.id, &hubspot, Owner::Company).await.unwrap().unwrap();
    assert_ne!(company.id, conn.id);
    assert_eq!(company.owner_user, None);
    assert_eq!(store.get_connection(&acme.id, &hubspot, Owner::User(&bob)).await.unwrap().unwrap().id, conn.id);
    let owners: Vec<_> = store.list_connections(&acme.id).await.unwrap().into_iter().map(|c| c.owner_user).collect();
    assert_eq!(owners, [None, None, Some(bob.clone())], "by provider, then owner");

    // Not to a provider the tenant does not have, nor one it disabled.
    let err = store
        .connect_user(&acme.id, &provider("jira"), &bob, None, &audit(Some("acme"), "connection.connect", at(2)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no connection for provider `jira` at tenant `acme`"), "{err}");
    store
        .set_connection_status(&acme.id, &provider("aptem"), Owner::Company, ConnectionStatus::Disabled, None)
        .await
        .unwrap();
    let err = store
        .connect_user(&acme.id, &provider("aptem"), &bob, None, &audit(Some("acme"), "connection.connect", at(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("provider `aptem` is disabled at tenant `acme`"), "{err}");

    // Credentials go to the addressed connection only.
    let conn = set_credentials(store, &acme.id, &hubspot, Owner::User(&bob), b"bob-secret").await.unwrap();
    assert_eq!((conn.status, conn.credentials_version), (ConnectionStatus::Connected, 1));
    assert_eq!(store.get_credentials(&acme.id, &hubspot, Owner::Company).await.unwrap(), None);
    assert_eq!(
        store.get_credentials(&acme.id, &hubspot, Owner::User(&bob)).await.unwrap(),
        Some((sealed(b"bob-secret"), 1))
    );
    let company = store.get_connection(&acme.id, &hubspot, Owner::Company).await.unwrap().unwrap();
    assert_eq!((company.status, company.has_credentials), (ConnectionStatus::Pending, false));
    let err = set_credentials(store, &acme.id, &hubspot, Owner::User(&user("carol")), b"x").await.unwrap_err();
    assert_eq!(err.to_string(), "user `carol` has no connection to `hubspot` at tenant `acme`");

    // A role change follows onto the connection.
    member(store, "acme", "bob", "sales").await;
    let conn = store.get_connection(&acme.id, &hubspot, Owner::User(&bob)).await.unwrap().unwrap();
    assert_eq!(conn.owner_role, Some(role("sales")));

    // Leaving the tenant disables the connection and its jobs; credentials, records and
    // cursors stay.
    let job = store.ensure_job(&acme.id, conn.id, &stream("contacts"), "15m").await.unwrap();
    assert!(job.enabled);
    let removed = store.remove_membership(&acme.id, &bob, &audit(Some("acme"), "membership.remove", at(4))).await;
    assert_eq!(removed.unwrap(), 1);
    let conn = store.get_connection(&acme.id, &hubspot, Owner::User(&bob)).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::Disabled);
    assert_eq!(conn.status_reason.as_deref(), Some(NOT_A_MEMBER_REASON));
    assert_eq!(conn.owner_role, None);
    assert!(conn.has_credentials);
    assert!(!store.get_job(&acme.id, job.id).await.unwrap().unwrap().enabled);
    let company = store.get_connection(&acme.id, &hubspot, Owner::Company).await.unwrap().unwrap();
    assert_eq!(company.status, ConnectionStatus::Pending, "the company connection is untouched");
    assert!(store.memberships(&acme.id).await.unwrap().is_empty());
    let err = store.remove_membership(&acme.id, &bob, &audit(Some("acme"), "membership.remove", at(5))).await;
    assert_eq!(err.unwrap_err().to_string(), "user `bob` is not a member of tenant `acme`");
    assert!(connect(None).await.is_err(), "a former member cannot connect");

    // Saving the tenant (its providers enabled) does not bring a former member's
    // connection back; becoming a member again does.
    store
        .update_tenant(&state("acme", &["hubspot", "aptem"]), &audit(Some("acme"), "tenant.apply", at(6)))
        .await
        .unwrap();
    let conn = store.get_connection(&acme.id, &hubspot, Owner::User(&bob)).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::Disabled);
    assert!(!store.get_job(&acme.id, job.id).await.unwrap().unwrap().enabled);
    member(store, "acme", "bob", "developer").await;
    let conn = store.get_connection(&acme.id, &hubspot, Owner::User(&bob)).await.unwrap().unwrap();
    assert_eq!((conn.status, conn.status_reason), (ConnectionStatus::Connected, None));
    assert_eq!(conn.owner_role, Some(role("developer")));

    // A provider switched off disables user connections too, and on again restores them.
    store.update_tenant(&state("acme", &["aptem"]), &audit(Some("acme"), "tenant.apply", at(7))).await.unwrap();
    let conn = store.get_connection(&acme.id, &hubspot, Owner::User(&bob)).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::Disabled);
    store
        .update_tenant(&state("acme", &["hubspot", "aptem"]), &audit(Some("acme"), "tenant.apply", at(8)))
        .await
        .unwrap();
    let conn = store.get_connection(&acme.id, &hubspot, Owner::User(&bob)).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::Connected);
}

pub(super) async fn role_grants_are_replaced_wholesale_per_tenant(store: &Store) {
    create(store, "acme", &["hubspot"]).await;
    create(store, "globex", &["hubspot"]).await;
    let (acme, globex) = (tenant_id("acme"), tenant_id("globex"));
    assert!(store.role_grants(&acme).await.unwrap().is_empty());
    let grants = BTreeMap::from([
        (role("developer"), vec!["hubspot.contacts".to_owned(), "jira.*".to_owned()]),
        (role("sales"), vec!["hubspot.*".to_owned()]),
        (role("intern"), vec![]),
    ]);
    store.put_role_grants(&acme, &grants, &audit(Some("acme"), "roles.set", at(1))).await.unwrap();
    assert_eq!(store.role_grants(&acme).await.unwrap(), grants);
    assert!(store.role_grants(&globex).await.unwrap().is_empty(), "grants are per tenant");

    let fewer = BTreeMap::from([(role("sales"), vec!["*".to_owned()])]);
    store.put_role_grants(&acme, &fewer, &audit(Some("acme"), "roles.set", at(2))).await.unwrap();
    assert_eq!(store.role_grants(&acme).await.unwrap(), fewer);
    store.put_role_grants(&globex, &grants, &audit(Some("globex"), "roles.set", at(3))).await.unwrap();
    assert_eq!(store.role_grants(&acme).await.unwrap(), fewer);
    assert_eq!(store.role_grants(&globex).await.unwrap(), grants);

    let err = store.put_role_grants(&tenant_id("nowhere"), &grants, &audit(None, "roles.set", at(4))).await;
    assert_eq!(err.unwrap_err().to_string(), "tenant `nowhere` does not exist");
    assert_eq!(audits(store).await.iter().filter(|a| *a == "roles.set").count(), 3);
}

pub(super) async fn each_owner_has_its_own_token_lease_and_status(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    add(store, "bob").await;
    member(store, "acme", "bob", "developer").await;
    let (bob, hubspot) = (user("bob"), provider("hubspot"));
    store
        .connect_user(&acme.id, &hubspot, &bob, None, &audit(Some("acme"), "connection.connect", at(2)))
        .await
        .unwrap();
    for owner in [Owner::Company, Owner::User(&bob)] {
        set_credentials(store, &acme.id, &hubspot, owner, b"c").await.unwrap();
    }
    let (t, p, user_owner) = (&acme.id, &hubspot, Owner::User(&bob));
    let soon = chrono::Utc::now() + chrono::Duration::seconds(60);

    // Bob's refresh lease does not block the company's.
    assert!(store.lock_refresh(t, p, user_owner, "w1", soon).await.unwrap().is_some());
    assert!(store.lock_refresh(t, p, user_owner, "w2", soon).await.unwrap().is_none());
    assert!(store.lock_refresh(t, p, Owner::Company, "w2", soon).await.unwrap().is_some());

    // A token saved on Bob's connection is Bob's alone.
    let token = sealed(b"bob-token");
    let write =
        TokenWrite { lock_owner: "w1", expected_version: 1, credentials: None, auth_state: &token, expires_at: None };
    assert_eq!(store.save_token(t, p, user_owner, &write, None).await.unwrap(), Some((1, 1)));
    assert_eq!(store.get_auth(t, p, user_owner).await.unwrap().unwrap().auth_state, Some(token.clone()));
    let company = store.get_auth(t, p, Owner::Company).await.unwrap().unwrap();
    assert_eq!((company.auth_state, company.auth_state_serial), (None, 0));
    assert!(store.unlock_refresh(t, p, Owner::Company, "w2").await.unwrap());
    assert!(!store.unlock_refresh(t, p, user_owner, "w2").await.unwrap());

    // A refused grant or a status change hits the addressed connection only.
    assert!(store.refuse_credentials(t, p, Owner::Company, 1, "invalid_grant").await.unwrap());
    assert!(store.get_auth(t, p, Owner::Company).await.unwrap().unwrap().refused);
    let bobs = store.get_auth(t, p, user_owner).await.unwrap().unwrap();
    assert!(!bobs.refused);
    assert_eq!((bobs.status, bobs.auth_state), (ConnectionStatus::Connected, Some(token)));
    store.set_connection_status(t, p, user_owner, ConnectionStatus::Error, Some("HTTP 500")).await.unwrap();
    let company = store.get_connection(t, p, Owner::Company).await.unwrap().unwrap();
    assert_eq!(company.status, ConnectionStatus::NeedsReauth);
    let bobs = store.get_connection(t, p, user_owner).await.unwrap().unwrap();
    assert_eq!((bobs.status, bobs.status_reason.as_deref()), (ConnectionStatus::Error, Some("HTTP 500")));
}

pub(super) async fn claimed_jobs_name_their_connection_owner(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await;
    add(store, "bob").await;
    member(store, "acme", "bob", "developer").await;
    let (bob, hubspot) = (user("bob"), provider("hubspot"));
    let (mine, _) = store
        .connect_user(&acme.id, &hubspot, &bob, None, &audit(Some("acme"), "connection.connect", at(2)))
        .await
        .unwrap();
    for owner in [Owner::Company, Owner::User(&bob)] {
        set_credentials(store, &acme.id, &hubspot, owner, b"c").await.unwrap();
    }
    let company_job = job(store, "acme", "hubspot", "contacts").await;
    let bob_job = store.ensure_job(&acme.id, mine.id, &stream("contacts"), "15m").await.unwrap();
    let now = chrono::Utc::now();
    let filter = JobFilter { tenant: Some(acme.id.clone()), ..JobFilter::default() };
    assert_eq!(store.trigger_jobs(&filter, TriggerKind::Manual, now).await.unwrap().len(), 2);
    let request = ClaimRequest {
        owner: "w1",
        now,
        lease_until: now + chrono::Duration::seconds(60),
        limit: 10,
        exclude: Exclusions::default(),
    };
    let mut claimed: Vec<(i64, Option<UserId>)> =
        store.claim_due_jobs(&request).await.unwrap().into_iter().map(|c| (c.job.id, c.owner)).collect();
    claimed.sort();
    let mut expected = vec![(company_job.id, None), (bob_job.id, Some(bob))];
    expected.sort();
    assert_eq!(claimed, expected);
}
