//! Responsibilities, contributions and company intelligence.

use std::sync::atomic::{AtomicUsize, Ordering};

use tributary::model::{
    ContributionKind as K, ContributionRow, ContributionStatus, PairRow, Responsibility, RoleName, UserId,
};
use tributary::store::{ContributionFilter, Fold, Folded, NewContribution};

use super::*;

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

async fn member(store: &Store, tenant: &str, id: &str) {
    let audit = AuditEntry {
        at: chrono::Utc::now(),
        actor: "test".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: "membership.set".into(),
        tenant_id: Some(tenant_id(tenant)),
        subject: Some(id.into()),
        details: serde_json::Value::Null,
    };
    store.add_user(&user(id), id, None, &audit).await.unwrap();
    store.set_membership(&tenant_id(tenant), &user(id), &RoleName::parse("sales").unwrap(), &audit).await.unwrap();
}

async fn assign(store: &Store, tenant: &str, provider_id: &str, id: &str, responsibility: Responsibility) {
    store
        .assign_responsibility(
            &tenant_id(tenant),
            &provider(provider_id),
            &user(id),
            responsibility,
            None,
            None,
            "test",
        )
        .await
        .unwrap();
}

async fn connection_id(store: &Store, tenant: &str, provider_id: &str) -> i64 {
    store.get_connection(&tenant_id(tenant), &provider(provider_id), Owner::Company).await.unwrap().unwrap().id
}

fn contribution(who: &str, kind: K, connection_id: Option<i64>) -> NewContribution {
    NewContribution {
        user: user(who),
        connection_id,
        run_id: None,
        kind,
        confidence: 0.8,
        data: json!({ "from": who, "kind": kind.as_str(), "hours": [9, 17] }),
        data_freshness: at(5),
        quality: 91.5,
        impact: 72.0,
        reliability: 88.25,
        consistency: 60.0,
    }
}

/// Counts folds and keeps each user's latest row per kind, as an aggregation would; the
/// user is paired with every other user seen so far, the pair carrying the fold count.
fn counting(previous: Option<&Value>, row: &ContributionRow) -> Folded {
    let n = previous.and_then(|s| s["n"].as_i64()).unwrap_or(0);
    let mut entries = previous.and_then(|s| s.get("entries")).cloned().unwrap_or_else(|| json!({}));
    entries[format!("{}/{}", row.user, row.kind).as_str()] = json!({ "id": row.id, "status": row.status });
    let others: std::collections::BTreeSet<String> = entries
        .as_object()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.split('/').next())
                .filter(|u| *u != row.user.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let pairs = others
        .iter()
        .map(|other| PairRow { user_a: row.user.clone(), user_b: user(other), relation: json!({ "n": n + 1 }) })
        .collect();
    let state = json!({ "n": n + 1, "had_state": previous.is_some(), "entries": entries });
    Folded { state, user: row.user.clone(), pairs }
}

/// The stored pairs of an integration: (a, b, n).
async fn pairs(store: &Store, tenant: &str, provider_id: &str) -> Vec<(String, String, i64)> {
    let rows = store.intelligence_pairs(&tenant_id(tenant), &provider(provider_id)).await.unwrap();
    rows.into_iter().map(|p| (p.user_a.to_string(), p.user_b.to_string(), p.relation["n"].as_i64().unwrap())).collect()
}

pub(super) async fn each_fold_replaces_its_users_pairs(store: &Store) {
    create(store, "acme", &["hubspot"]).await;
    for id in ["alice", "bob", "carol"] {
        member(store, "acme", id).await;
    }
    let pair = |a: &str, b: &str, n: i64| (a.to_owned(), b.to_owned(), n);
    record(store, "acme", "hubspot", &contribution("bob", K::DataSource, None)).await;
    assert!(pairs(store, "acme", "hubspot").await.is_empty());
    // Carol pairs with Bob; then Alice with both (stored a < b whatever order given).
    record(store, "acme", "hubspot", &contribution("carol", K::DataSource, None)).await;
    assert_eq!(pairs(store, "acme", "hubspot").await, [pair("bob", "carol", 2)]);
    record(store, "acme", "hubspot", &contribution("alice", K::UsagePattern, None)).await;
    assert_eq!(
        pairs(store, "acme", "hubspot").await,
        [pair("alice", "bob", 3), pair("alice", "carol", 3), pair("bob", "carol", 2)]
    );
    // A fold replaces exactly its user's pairs: Bob's are rewritten, Alice–Carol stays.
    record(store, "acme", "hubspot", &contribution("bob", K::UsagePattern, None)).await;
    assert_eq!(
        pairs(store, "acme", "hubspot").await,
        [pair("alice", "bob", 4), pair("alice", "carol", 3), pair("bob", "carol", 4)]
    );
    // A replacement replaces every pair.
    let ab = PairRow { user_a: user("bob"), user_b: user("alice"), relation: json!({ "n": 9 }) };
    store.replace_intelligence(&tenant_id("acme"), &provider("hubspot"), &json!({}), &[ab]).await.unwrap();
    assert_eq!(pairs(store, "acme", "hubspot").await, [pair("alice", "bob", 9)]);
    assert!(pairs(store, "acme", "aptem").await.is_empty());
}

const COUNTING: Fold<'static> = &counting;

async fn record(store: &Store, tenant: &str, provider_id: &str, new: &NewContribution) -> ContributionRow {
    store.record_contribution(&tenant_id(tenant), &provider(provider_id), new, COUNTING).await.unwrap().0
}

async fn status_of(store: &Store, tenant: &str, id: i64) -> ContributionStatus {
    store.contribution(&tenant_id(tenant), id).await.unwrap().unwrap().status
}

pub(super) async fn responsibilities_default_from_the_responsibility_and_are_replaced(store: &Store) {
    let acme = create(store, "acme", &["hubspot", "aptem"]).await.id;
    let hubspot = provider("hubspot");
    for id in ["alice", "bob"] {
        member(store, "acme", id).await;
    }

    let owner = store
        .assign_responsibility(&acme, &hubspot, &user("alice"), Responsibility::Owner, None, None, "cli:ops")
        .await
        .unwrap();
    assert_eq!(owner.tenant, acme);
    assert_eq!(owner.provider, hubspot);
    assert_eq!(owner.user, user("alice"));
    assert_eq!(owner.responsibility, Responsibility::Owner);
    assert!(owner.auto_contribute);
    assert_eq!(owner.scope, K::ALL.to_vec());
    assert!(!owner.explicit_scope);
    assert_eq!(store.responsibility(&acme, &hubspot, &user("alice")).await.unwrap(), Some(owner.clone()));

    let viewer = store
        .assign_responsibility(&acme, &hubspot, &user("bob"), Responsibility::Viewer, None, None, "cli:ops")
        .await
        .unwrap();
    assert!(!viewer.auto_contribute);
    assert!(viewer.scope.is_empty());

    // Assigning again replaces responsibility, flag and scope; the scope is deduplicated
    // and kept in declaration order.
    let scope = [K::UsagePattern, K::DataSource, K::UsagePattern];
    let contributor = store
        .assign_responsibility(
            &acme,
            &hubspot,
            &user("bob"),
            Responsibility::Contributor,
            Some(false),
            Some(&scope),
            "cli:ops",
        )
        .await
        .unwrap();
    assert_eq!(contributor.responsibility, Responsibility::Contributor);
    assert!(!contributor.auto_contribute);
    assert_eq!(contributor.scope, vec![K::DataSource, K::UsagePattern]);
    assert!(contributor.explicit_scope);
    assert_eq!(contributor.created_at, viewer.created_at);
    assert!(contributor.updated_at >= viewer.updated_at);

    // An explicit empty scope is not the default one.
    let admin = store
        .assign_responsibility(&acme, &provider("aptem"), &user("alice"), Responsibility::Admin, None, Some(&[]), "x")
        .await
        .unwrap();
    assert!(admin.scope.is_empty());
    assert!(admin.explicit_scope);
    assert!(admin.auto_contribute);
    let admin = store
        .assign_responsibility(&acme, &provider("aptem"), &user("alice"), Responsibility::Admin, None, None, "x")
        .await
        .unwrap();
    assert_eq!(admin.scope, vec![K::PerformanceMetrics, K::ErrorReporting]);
    assert!(!admin.explicit_scope);

    let all = store.responsibilities(&acme, None).await.unwrap();
    let keys: Vec<(String, String)> = all.iter().map(|r| (r.provider.to_string(), r.user.to_string())).collect();
    assert_eq!(
        keys,
        [("aptem", "alice"), ("hubspot", "alice"), ("hubspot", "bob")].map(|(p, u)| (p.to_owned(), u.to_owned()))
    );
    assert_eq!(all[2], contributor);
    let on_hubspot = store.responsibilities(&acme, Some(&hubspot)).await.unwrap();
    assert_eq!(on_hubspot, vec![owner, contributor]);

    let audit = store.list_audit(Some(&acme), 50).await.unwrap();
    let assigned = audit
        .iter()
        .find(|e| e.action == "responsibility.assign" && e.subject.as_deref() == Some("hubspot/bob"))
        .expect("an audit entry for the assignment");
    assert_eq!(assigned.actor, "cli:ops");
    assert_eq!(assigned.details["responsibility"], "contributor");
    assert_eq!(assigned.details["auto_contribute"], false);
    assert_eq!(assigned.details["scope"], json!(["data_source", "usage_pattern"]));

    assert!(store.remove_responsibility(&acme, &hubspot, &user("bob"), "cli:ops").await.unwrap());
    assert!(!store.remove_responsibility(&acme, &hubspot, &user("bob"), "cli:ops").await.unwrap());
    assert_eq!(store.responsibility(&acme, &hubspot, &user("bob")).await.unwrap(), None);
    let removals = store
        .list_audit(Some(&acme), 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "responsibility.remove")
        .collect::<Vec<_>>();
    assert_eq!(removals.len(), 1);
    assert_eq!(removals[0].details["responsibility"], "contributor");
}

pub(super) async fn responsibilities_and_contributions_need_a_membership(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await.id;
    create(store, "globex", &["hubspot"]).await;
    member(store, "globex", "carol").await;
    let hubspot = provider("hubspot");
    for tenant in [acme.clone(), tenant_id("nowhere")] {
        let err = store
            .assign_responsibility(&tenant, &hubspot, &user("carol"), Responsibility::Owner, None, None, "x")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("user `carol` is not a member of tenant `{tenant}`"));
    }
    let err = store
        .record_contribution(&acme, &hubspot, &contribution("carol", K::DataSource, None), COUNTING)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "user `carol` is not a member of tenant `acme`");
    assert!(store.responsibilities(&acme, None).await.unwrap().is_empty());
    assert!(store.contributions(&acme, &ContributionFilter::default()).await.unwrap().is_empty());
    assert!(store.intelligence(&acme, None).await.unwrap().is_empty());
}

pub(super) async fn contributions_supersede_their_predecessor_and_fold_once(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await.id;
    let hubspot = provider("hubspot");
    member(store, "acme", "alice").await;
    let conn = connection_id(store, "acme", "hubspot").await;
    let folds = AtomicUsize::new(0);
    let seen = |previous: Option<&Value>, row: &ContributionRow| {
        folds.fetch_add(1, Ordering::SeqCst);
        counting(previous, row)
    };

    let (first, state) = store
        .record_contribution(&acme, &hubspot, &contribution("alice", K::DataSource, Some(conn)), &seen)
        .await
        .unwrap();
    assert_eq!(folds.load(Ordering::SeqCst), 1);
    assert_eq!(first.status, ContributionStatus::Active);
    assert_eq!(first.tenant, acme);
    assert_eq!(first.provider, hubspot);
    assert_eq!(first.connection_id, Some(conn));
    assert_eq!(first.kind, K::DataSource);
    assert_eq!((first.confidence, first.quality, first.impact), (0.8, 91.5, 72.0));
    assert_eq!((first.reliability, first.consistency), (88.25, 60.0));
    assert_eq!(first.data["hours"], json!([9, 17]));
    assert_eq!(first.data_freshness, at(5));
    assert_eq!((first.superseded_by, first.reviewed_by.as_ref(), first.reviewed_at), (None, None, None));
    assert_eq!(store.contribution(&acme, first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(
        (state.version, state.state["n"].as_i64(), state.state["had_state"].as_bool()),
        (1, Some(1), Some(false))
    );
    assert_eq!(state.tenant, acme);

    let (perf, state) = store
        .record_contribution(&acme, &hubspot, &contribution("alice", K::PerformanceMetrics, Some(conn)), &seen)
        .await
        .unwrap();
    assert_eq!((state.version, state.state["had_state"].as_bool()), (2, Some(true)));
    assert_eq!(status_of(store, "acme", first.id).await, ContributionStatus::Active);

    // The same user, connection and kind again: the first becomes superseded.
    let mut newer = contribution("alice", K::DataSource, Some(conn));
    newer.data = json!({ "freshness_hours": 2 });
    let (second, state) = store.record_contribution(&acme, &hubspot, &newer, &seen).await.unwrap();
    let first_now = store.contribution(&acme, first.id).await.unwrap().unwrap();
    assert_eq!(first_now.status, ContributionStatus::Superseded);
    assert_eq!(first_now.superseded_by, Some(second.id));
    assert!(first_now.updated_at >= first.updated_at);
    assert_eq!(state.version, 3);
    assert_eq!(state.state["entries"]["alice/data_source"]["id"], second.id);
    assert_eq!(folds.load(Ordering::SeqCst), 3);

    // Without a connection it is another series, superseded only by its own kind.
    let loose = record(store, "acme", "hubspot", &contribution("alice", K::DataSource, None)).await;
    assert_eq!(status_of(store, "acme", second.id).await, ContributionStatus::Active);
    let loose_again = record(store, "acme", "hubspot", &contribution("alice", K::DataSource, None)).await;
    assert_eq!(status_of(store, "acme", loose.id).await, ContributionStatus::Superseded);
    assert_eq!(status_of(store, "acme", second.id).await, ContributionStatus::Active);

    let current: Vec<i64> = store.current_contributions(&acme, &hubspot).await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(current, vec![perf.id, second.id, loose_again.id]);

    // A run of the tenant's provider may be named; it is kept.
    let job = job(store, "acme", "hubspot", "contacts").await;
    let run = store.start_run(&acme, job.id, RunTrigger::Scheduled).await.unwrap();
    let mut from_run = contribution("alice", K::UsagePattern, Some(conn));
    from_run.run_id = Some(run.id);
    let (row, state) = store.record_contribution(&acme, &hubspot, &from_run, COUNTING).await.unwrap();
    assert_eq!(row.run_id, Some(run.id));
    assert_eq!(store.contribution(&acme, row.id).await.unwrap(), Some(row));
    assert_eq!(state.version, 6);
    assert_eq!(state.state["n"], 6);
    assert_eq!(store.intelligence(&acme, Some(&hubspot)).await.unwrap(), vec![state.clone()]);
    assert_eq!(store.intelligence(&acme, None).await.unwrap(), vec![state]);
}

pub(super) async fn contributions_are_listed_newest_first_by_filter(store: &Store) {
    let acme = create(store, "acme", &["hubspot", "aptem"]).await.id;
    for id in ["alice", "bob"] {
        member(store, "acme", id).await;
    }
    let a1 = record(store, "acme", "hubspot", &contribution("alice", K::DataSource, None)).await;
    let b1 = record(store, "acme", "hubspot", &contribution("bob", K::UsagePattern, None)).await;
    let a2 = record(store, "acme", "aptem", &contribution("alice", K::ErrorReporting, None)).await;
    let a3 = record(store, "acme", "hubspot", &contribution("alice", K::DataSource, None)).await;

    let ids = |rows: Vec<ContributionRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    let list = |filter: ContributionFilter| {
        let acme = acme.clone();
        async move { ids(store.contributions(&acme, &filter).await.unwrap()) }
    };
    assert_eq!(list(ContributionFilter::default()).await, vec![a3.id, a2.id, b1.id, a1.id]);
    assert_eq!(
        list(ContributionFilter { provider: Some(provider("hubspot")), ..Default::default() }).await,
        vec![a3.id, b1.id, a1.id]
    );
    assert_eq!(
        list(ContributionFilter { user: Some(user("alice")), ..Default::default() }).await,
        vec![a3.id, a2.id, a1.id]
    );
    assert_eq!(list(ContributionFilter { kind: Some(K::DataSource), ..Default::default() }).await, vec![a3.id, a1.id]);
    assert_eq!(
        list(ContributionFilter { status: Some(ContributionStatus::Superseded), ..Default::default() }).await,
        vec![a1.id]
    );
    assert_eq!(
        list(ContributionFilter {
            provider: Some(provider("hubspot")),
            user: Some(user("alice")),
            status: Some(ContributionStatus::Active),
            ..Default::default()
        })
        .await,
        vec![a3.id]
    );
    assert_eq!(list(ContributionFilter { limit: 2, ..Default::default() }).await, vec![a3.id, a2.id]);
    assert!(list(ContributionFilter { limit: -1, ..Default::default() }).await.is_empty());
    assert!(list(ContributionFilter { user: Some(user("nobody")), ..Default::default() }).await.is_empty());
}

pub(super) async fn reviews_decide_active_contributions_only(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await.id;
    let hubspot = provider("hubspot");
    for id in ["alice", "bob", "rita", "carol"] {
        member(store, "acme", id).await;
    }
    assign(store, "acme", "hubspot", "alice", Responsibility::Owner).await;
    assign(store, "acme", "hubspot", "rita", Responsibility::Reviewer).await;
    assign(store, "acme", "hubspot", "bob", Responsibility::User).await;
    let usage = record(store, "acme", "hubspot", &contribution("bob", K::UsagePattern, None)).await;
    let errors = record(store, "acme", "hubspot", &contribution("bob", K::ErrorReporting, None)).await;

    let (approved, state) = store.review_contribution(&acme, usage.id, true, &user("rita"), COUNTING).await.unwrap();
    assert_eq!(approved.status, ContributionStatus::Approved);
    assert_eq!(approved.reviewed_by, Some(user("rita")));
    assert!(approved.reviewed_at.is_some());
    assert_eq!(approved.data, usage.data);
    assert_eq!(store.contribution(&acme, usage.id).await.unwrap(), Some(approved.clone()));
    assert_eq!(state.version, 3);
    assert_eq!(state.state["entries"]["bob/usage_pattern"]["status"], "approved");

    let err = store.review_contribution(&acme, usage.id, false, &user("alice"), COUNTING).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("contribution {} at tenant `acme` is approved", usage.id)), "{err}");
    assert!(err.to_string().contains("only an active contribution"), "{err}");

    for (who, has) in [("bob", "has: user"), ("carol", "has: none"), ("stranger", "has: none")] {
        let err = store.review_contribution(&acme, errors.id, false, &user(who), COUNTING).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("user `{who}` may not review")), "{err}");
        assert!(err.to_string().contains(has), "{err}");
    }
    assert_eq!(status_of(store, "acme", errors.id).await, ContributionStatus::Active);

    let (rejected, state) = store.review_contribution(&acme, errors.id, false, &user("alice"), COUNTING).await.unwrap();
    assert_eq!(rejected.status, ContributionStatus::Rejected);
    assert_eq!(rejected.reviewed_by, Some(user("alice")));
    assert_eq!(state.version, 4);
    assert_eq!(state.state["entries"]["bob/error_reporting"]["status"], "rejected");
    let current: Vec<i64> = store.current_contributions(&acme, &hubspot).await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(current, vec![usage.id]);

    // A newer contribution supersedes an approved one too.
    let newer = record(store, "acme", "hubspot", &contribution("bob", K::UsagePattern, None)).await;
    let old = store.contribution(&acme, usage.id).await.unwrap().unwrap();
    assert_eq!((old.status, old.superseded_by), (ContributionStatus::Superseded, Some(newer.id)));
    let err = store.review_contribution(&acme, usage.id, true, &user("rita"), COUNTING).await.unwrap_err();
    assert!(err.to_string().contains("is superseded"), "{err}");

    let err = store.review_contribution(&acme, 999_999, true, &user("rita"), COUNTING).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "no contribution 999999 at tenant `acme`");
    assert_eq!(store.intelligence(&acme, Some(&hubspot)).await.unwrap()[0].version, 5);

    assert_eq!(
        store.contribution_counts().await.unwrap(),
        vec![
            (K::ErrorReporting, ContributionStatus::Rejected, 1),
            (K::UsagePattern, ContributionStatus::Active, 1),
            (K::UsagePattern, ContributionStatus::Superseded, 1),
        ]
    );
}

pub(super) async fn intelligence_is_replaced_on_demand_and_qualities_are_read(store: &Store) {
    let acme = create(store, "acme", &["hubspot", "aptem"]).await.id;
    let globex = create(store, "globex", &["hubspot"]).await.id;
    let (hubspot, aptem) = (provider("hubspot"), provider("aptem"));
    assert!(store.intelligence(&acme, None).await.unwrap().is_empty());
    assert!(store.intelligence_qualities().await.unwrap().is_empty());

    let first = store.replace_intelligence(&acme, &hubspot, &json!({ "quality": 82.5 }), &[]).await.unwrap();
    assert_eq!((first.version, &first.state), (1, &json!({ "quality": 82.5 })));
    let second = store.replace_intelligence(&acme, &hubspot, &json!({ "quality": 90, "n": 7 }), &[]).await.unwrap();
    assert_eq!(second.version, 2);
    assert!(second.updated_at >= first.updated_at);
    store.replace_intelligence(&acme, &aptem, &json!({ "quality": "high" }), &[]).await.unwrap();
    store.replace_intelligence(&globex, &hubspot, &json!({ "reliability": 1 }), &[]).await.unwrap();
    store.replace_intelligence(&globex, &aptem, &json!({ "quality": 70 }), &[]).await.unwrap();

    let rows = store.intelligence(&acme, None).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.provider.as_str()).collect::<Vec<_>>(), ["aptem", "hubspot"]);
    assert_eq!(rows[1], second);
    assert_eq!(store.intelligence(&acme, Some(&hubspot)).await.unwrap(), vec![second]);
    // By tenant then provider: acme/aptem, acme/hubspot, globex/aptem, globex/hubspot.
    assert_eq!(store.intelligence_qualities().await.unwrap(), vec![None, Some(90.0), Some(70.0), None]);

    // Folding continues from the replaced state.
    member(store, "acme", "alice").await;
    let (_, state) = store
        .record_contribution(&acme, &hubspot, &contribution("alice", K::DataSource, None), COUNTING)
        .await
        .unwrap();
    assert_eq!((state.version, &state.state["n"], &state.state["had_state"]), (3, &json!(8), &json!(true)));

    let err = store.replace_intelligence(&tenant_id("nowhere"), &hubspot, &json!({}), &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nowhere"), "{err}");
}

pub(super) async fn intelligence_is_isolated_between_tenants(store: &Store) {
    let acme = create(store, "acme", &["hubspot", "aptem"]).await.id;
    let globex = create(store, "globex", &["hubspot"]).await.id;
    let hubspot = provider("hubspot");
    // Alice works at both companies.
    for tenant in ["acme", "globex"] {
        member(store, tenant, "alice").await;
    }
    member(store, "acme", "owen").await;
    assign(store, "acme", "hubspot", "alice", Responsibility::User).await;
    assign(store, "acme", "hubspot", "owen", Responsibility::Owner).await;
    let acme_conn = connection_id(store, "acme", "hubspot").await;
    let globex_conn = connection_id(store, "globex", "hubspot").await;
    let acme_job = job(store, "acme", "hubspot", "contacts").await;
    let acme_run = store.start_run(&acme, acme_job.id, RunTrigger::Scheduled).await.unwrap();

    let at_acme = record(store, "acme", "hubspot", &contribution("alice", K::UsagePattern, Some(acme_conn))).await;
    let at_globex =
        record(store, "globex", "hubspot", &contribution("alice", K::UsagePattern, Some(globex_conn))).await;
    // The same user and kind at another company supersedes nothing here.
    assert_eq!(status_of(store, "acme", at_acme.id).await, ContributionStatus::Active);
    assert_eq!(at_globex.tenant, globex);

    // Another tenant's (or provider's) connection or run cannot be named.
    let mut foreign = contribution("alice", K::UsagePattern, Some(acme_conn));
    let err = store.record_contribution(&globex, &hubspot, &foreign, COUNTING).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("no connection {acme_conn}")), "{err}");
    let aptem_conn = connection_id(store, "acme", "aptem").await;
    foreign.connection_id = Some(aptem_conn);
    let err = store.record_contribution(&acme, &hubspot, &foreign, COUNTING).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    foreign.connection_id = Some(globex_conn);
    foreign.run_id = Some(acme_run.id);
    let err = store.record_contribution(&globex, &hubspot, &foreign, COUNTING).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&acme_run.id.to_string()), "{err}");

    // Reads under globex see only globex's rows.
    let listed = store.contributions(&globex, &ContributionFilter::default()).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![at_globex.id]);
    assert_eq!(store.contribution(&globex, at_acme.id).await.unwrap(), None);
    assert_eq!(
        store.current_contributions(&globex, &hubspot).await.unwrap().iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![at_globex.id]
    );
    assert!(store.responsibilities(&globex, None).await.unwrap().is_empty());
    assert_eq!(store.responsibility(&globex, &hubspot, &user("alice")).await.unwrap(), None);
    let globex_state = store.intelligence(&globex, None).await.unwrap();
    assert_eq!(globex_state.len(), 1);
    assert_eq!((globex_state[0].version, &globex_state[0].state["n"]), (1, &json!(1)));
    assert_eq!(globex_state[0].state["entries"]["alice/usage_pattern"]["id"], at_globex.id);

    // Writes under globex cannot reach acme's rows.
    let err = store.review_contribution(&globex, at_acme.id, true, &user("owen"), COUNTING).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(!store.remove_responsibility(&globex, &hubspot, &user("owen"), "x").await.unwrap());
    store.replace_intelligence(&globex, &hubspot, &json!({ "reset": true }), &[]).await.unwrap();

    // Acme is exactly as it was.
    assert_eq!(store.contribution(&acme, at_acme.id).await.unwrap(), Some(at_acme.clone()));
    let acme_state = store.intelligence(&acme, None).await.unwrap();
    assert_eq!(acme_state.len(), 1);
    assert_eq!((acme_state[0].version, &acme_state[0].state["n"]), (1, &json!(1)));
    assert_eq!(store.responsibilities(&acme, Some(&hubspot)).await.unwrap().len(), 2);
}

pub(super) async fn out_of_range_numbers_are_rejected(store: &Store) {
    let acme = create(store, "acme", &["hubspot"]).await.id;
    let hubspot = provider("hubspot");
    member(store, "acme", "alice").await;
    type Spoil = fn(&mut NewContribution);
    let cases: [(&str, Spoil); 5] = [
        ("confidence NaN is not between 0 and 1", |c| c.confidence = f64::NAN),
        ("confidence 1.5 is not between 0 and 1", |c| c.confidence = 1.5),
        ("quality -1 is not between 0 and 100", |c| c.quality = -1.0),
        ("impact 100.5 is not between 0 and 100", |c| c.impact = 100.5),
        ("consistency inf is not between 0 and 100", |c| c.consistency = f64::INFINITY),
    ];
    for (message, spoil) in cases {
        let mut bad = contribution("alice", K::PerformanceMetrics, None);
        spoil(&mut bad);
        let err = store.record_contribution(&acme, &hubspot, &bad, COUNTING).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains(message), "{err}");
        assert!(err.to_string().contains("performance_metrics contribution of user `alice`"), "{err}");
    }
    let mut two = contribution("alice", K::PerformanceMetrics, None);
    two.quality = 101.0;
    two.reliability = -0.5;
    let err = store.record_contribution(&acme, &hubspot, &two, COUNTING).await.unwrap_err();
    assert!(err.to_string().contains("quality 101") && err.to_string().contains("reliability -0.5"), "{err}");
    assert!(store.contributions(&acme, &ContributionFilter::default()).await.unwrap().is_empty());
    assert!(store.intelligence(&acme, None).await.unwrap().is_empty());
}

pub(super) async fn concurrent_contributions_lose_no_update(store: &Store, url: &str) {
    const PER_STORE: usize = 20;
    let acme = create(store, "acme", &["hubspot"]).await.id;
    let hubspot = provider("hubspot");
    for id in ["alice", "bob"] {
        member(store, "acme", id).await;
    }
    // A second pool on the same database, as another replica has.
    let replica = Store::connect(url).await.unwrap();
    assert_ne!(replica.instance_id(), store.instance_id());

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 * PER_STORE {
        let target = if i % 2 == 0 { store.clone() } else { replica.clone() };
        let (tenant, provider) = (acme.clone(), hubspot.clone());
        let who = if i % 4 < 2 { "alice" } else { "bob" };
        let kind = if i % 3 == 0 { K::DataSource } else { K::PerformanceMetrics };
        tasks.spawn(async move {
            target.record_contribution(&tenant, &provider, &contribution(who, kind, None), COUNTING).await.unwrap()
        });
    }
    let mut versions = Vec::new();
    while let Some(done) = tasks.join_next().await {
        versions.push(done.unwrap().1.version);
    }
    versions.sort_unstable();
    let total = (2 * PER_STORE) as i64;
    assert_eq!(versions, (1..=total).collect::<Vec<_>>(), "every fold saw the one before it");

    let state = &store.intelligence(&acme, Some(&hubspot)).await.unwrap()[0];
    assert_eq!((state.version, state.state["n"].as_i64()), (total, Some(total)));
    let all = store.contributions(&acme, &ContributionFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 2 * PER_STORE);
    // One current contribution per (user, kind); every other one points at a newer one of
    // its series.
    let current = store.current_contributions(&acme, &hubspot).await.unwrap();
    assert_eq!(current.len(), 4);
    for row in all.iter().filter(|r| r.status == ContributionStatus::Superseded) {
        let by = all.iter().find(|n| Some(n.id) == row.superseded_by).expect("the superseding contribution");
        assert!(by.id > row.id && by.user == row.user && by.kind == row.kind, "{row:?} → {by:?}");
    }
    for row in &current {
        assert_eq!(state.state["entries"][format!("{}/{}", row.user, row.kind).as_str()]["id"], row.id);
    }
    replica.close().await;
}

pub(super) async fn corrupt_contribution_rows_are_errors_not_panics(store: &Store, url: &str) {
    let acme = create(store, "acme", &["hubspot"]).await.id;
    member(store, "acme", "alice").await;
    assign(store, "acme", "hubspot", "alice", Responsibility::Owner).await;
    record(store, "acme", "hubspot", &contribution("alice", K::DataSource, None)).await;

    crate::support::exec_raw(url, "UPDATE responsibilities SET scope = '[\"telepathy\"]'").await;
    let err = store.responsibilities(&acme, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("telepathy"), "{err}");

    crate::support::exec_raw(url, "UPDATE contributions SET kind = 'gossip'").await;
    let err = store.contributions(&acme, &ContributionFilter::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("gossip"), "{err}");
    let err = store.contribution_counts().await.unwrap_err();
    assert!(err.to_string().contains("gossip"), "{err}");
}
