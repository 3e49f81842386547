//! The write-back outbox: a write is stored before it is acknowledged, once per
//! idempotency key (also under concurrent submissions); claims lease due writes one in
//! flight per object, in submission order, also between two claimers; settles are
//! fenced on the lease and recorded with their attempt; retry and cancel change only the
//! states they are for.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Duration;
use tributary::config::WriteOp;
use tributary::model::UserId;
use tributary::store::{NewWrite, WriteFilter, WriteRow, WriteSettle, WriteState};

use super::*;

/// Far enough ahead that no lease in a test expires on its own.
fn later() -> DateTime<Utc> {
    Utc::now() + Duration::hours(1)
}

struct Spec<'a> {
    tenant: TenantId,
    provider: ProviderId,
    entity: EntityName,
    op: WriteOp,
    external_id: Option<&'a str>,
    key: Option<&'a str>,
    payload: Value,
}

fn spec<'a>(op: WriteOp, external_id: Option<&'a str>, payload: Value) -> Spec<'a> {
    Spec {
        tenant: tenant_id("acme"),
        provider: provider("hubspot"),
        entity: entity("contact"),
        op,
        external_id,
        key: None,
        payload,
    }
}

impl Spec<'_> {
    fn new_write(&self) -> NewWrite<'_> {
        NewWrite {
            tenant: &self.tenant,
            provider: &self.provider,
            owner: Owner::Company,
            entity: &self.entity,
            op: self.op,
            external_id: self.external_id,
            idempotency_key: self.key,
            base_version: Some("v1"),
            force: false,
            payload: &self.payload,
        }
    }
}

async fn submit(store: &Store, spec: &Spec<'_>) -> WriteRow {
    let (row, created) = store.submit_write(&spec.new_write()).await.unwrap();
    assert!(created);
    row
}

fn ids(rows: &[WriteRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn succeeded(id: &str) -> WriteSettle {
    WriteSettle::Succeeded { status: Some(200), result_id: id.into(), result_version: Some("v2".into()) }
}

pub async fn writes_are_stored_once_per_idempotency_key(store: &Store) {
    create(store, "acme", &["hubspot"]).await;
    create(store, "globex", &["hubspot"]).await;
    let mut first = spec(WriteOp::Update, Some("101"), json!({"email": "a@example.com"}));
    first.key = Some("k-1");
    let (row, created) = store.submit_write(&first.new_write()).await.unwrap();
    assert!(created);
    assert!(row.id.starts_with("wr_") && row.id.len() == 35, "{}", row.id);
    assert_eq!((row.state, row.op, row.attempts), (WriteState::Pending, WriteOp::Update, 0));
    assert_eq!(row.external_id.as_deref(), Some("101"));
    assert_eq!(row.base_version.as_deref(), Some("v1"));
    assert_eq!(row.owner_user, None);
    assert_eq!(row.payload_json(), json!({"email": "a@example.com"}));
    let stored = store.get_write(&row.id).await.unwrap().expect("stored before it is acknowledged");
    assert_eq!(stored.write, row);
    assert!(stored.attempts.is_empty());

    // The same key and request: the same write, not a new one.
    let (again, created) = store.submit_write(&first.new_write()).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, row.id);

    // The same key with another payload, op or entity: refused, naming the key.
    for changed in [
        Spec { payload: json!({"email": "b@example.com"}), ..spec(WriteOp::Update, Some("101"), json!({})) },
        Spec { op: WriteOp::Delete, ..spec(WriteOp::Update, Some("101"), json!({"email": "a@example.com"})) },
        Spec { entity: entity("company"), ..spec(WriteOp::Update, Some("101"), json!({"email": "a@example.com"})) },
    ] {
        let changed = Spec { key: Some("k-1"), ..changed };
        let err = store.submit_write(&changed.new_write()).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("`k-1`") && err.to_string().contains(&row.id), "{err}");
    }

    // Another tenant's key space is its own.
    let other = Spec { tenant: tenant_id("globex"), key: Some("k-1"), ..spec(WriteOp::Create, None, json!({})) };
    let (theirs, created) = store.submit_write(&other.new_write()).await.unwrap();
    assert!(created);
    assert_ne!(theirs.id, row.id);

    // A write of a tenant that does not exist is not stored.
    let nobody = Spec { tenant: tenant_id("initech"), ..spec(WriteOp::Create, None, json!({})) };
    let err = store.submit_write(&nobody.new_write()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }) && err.to_string().contains("`initech`"), "{err}");

    // Writes without a key are each their own.
    let create_a = submit(store, &spec(WriteOp::Create, None, json!({"n": 1}))).await;
    let create_b = submit(store, &spec(WriteOp::Create, None, json!({"n": 1}))).await;
    assert_ne!(create_a.id, create_b.id);
    assert_eq!(create_a.external_id, None);

    // Update, delete and comment name their object.
    for op in [WriteOp::Update, WriteOp::Delete, WriteOp::Comment] {
        let err = store.submit_write(&spec(op, None, json!({})).new_write()).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("external id"), "{err}");
    }

    // A user's connection is its own owner.
    let alice = UserId::parse("alice").unwrap();
    let spec_user = spec(WriteOp::Create, None, json!({}));
    let as_user = NewWrite { owner: Owner::User(&alice), ..spec_user.new_write() };
    let (user_write, _) = store.submit_write(&as_user).await.unwrap();
    assert_eq!(user_write.owner_user, Some(alice));

    // Listed newest first, filtered by tenant, state and provider.
    let acme = store
        .list_writes(&WriteFilter { tenant: Some(tenant_id("acme")), limit: 100, ..WriteFilter::default() })
        .await
        .unwrap();
    assert_eq!(ids(&acme), [user_write.id.as_str(), &create_b.id, &create_a.id, &row.id]);
    let all = store.list_writes(&WriteFilter { limit: 100, ..WriteFilter::default() }).await.unwrap();
    assert_eq!(all.len(), 5);
    let two = store.list_writes(&WriteFilter { limit: 2, ..WriteFilter::default() }).await.unwrap();
    assert_eq!(two.len(), 2);
    let failed = WriteFilter { state: Some(WriteState::Failed), limit: 100, ..WriteFilter::default() };
    assert!(store.list_writes(&failed).await.unwrap().is_empty());
    let slack = WriteFilter { provider: Some(provider("slack")), limit: 100, ..WriteFilter::default() };
    assert!(store.list_writes(&slack).await.unwrap().is_empty());
}

pub async fn writes_to_one_object_are_claimed_one_at_a_time_in_order(store: &Store) {
    create(store, "acme", &["hubspot"]).await;
    let u1 = submit(store, &spec(WriteOp::Update, Some("101"), json!({"n": 1}))).await;
    let u2 = submit(store, &spec(WriteOp::Update, Some("101"), json!({"n": 2}))).await;
    let u3 = submit(store, &spec(WriteOp::Update, Some("101"), json!({"n": 3}))).await;
    let other = submit(store, &spec(WriteOp::Update, Some("202"), json!({"n": 1}))).await;
    let c1 = submit(store, &spec(WriteOp::Create, None, json!({"n": 1}))).await;
    let c2 = submit(store, &spec(WriteOp::Create, None, json!({"n": 2}))).await;
    // Another entity's object with the same id is another object.
    let company = Spec { entity: entity("company"), ..spec(WriteOp::Update, Some("101"), json!({})) };
    let company = submit(store, &company).await;

    // Different objects go in parallel; of one object only the earliest.
    let a = store.claim_writes("a", later(), 100).await.unwrap();
    assert_eq!(ids(&a), [u1.id.as_str(), &other.id, &c1.id, &c2.id, &company.id]);
    assert!(a.iter().all(|w| w.state == WriteState::InFlight && w.lease_owner.as_deref() == Some("a")));
    assert!(store.claim_writes("b", later(), 100).await.unwrap().is_empty(), "u2 waits for u1");

    // u1 settles: u2 is next, for whichever claimer asks first, and u3 still waits.
    assert!(store.settle_write(&u1.id, "a", 12, &succeeded("101")).await.unwrap().is_some());
    let b = store.claim_writes("b", later(), 100).await.unwrap();
    assert_eq!(ids(&b), [u2.id.as_str()]);
    assert!(store.claim_writes("a", later(), 100).await.unwrap().is_empty(), "u3 waits for u2");
    // A write that will be retried later still holds its place.
    let retry = WriteSettle::Retry {
        at: Utc::now() + Duration::hours(1),
        status: Some(429),
        message: "rate limited".into(),
        error_class: "rate_limited".into(),
    };
    let u2_after = store.settle_write(&u2.id, "b", 5, &retry).await.unwrap().unwrap();
    assert_eq!((u2_after.state, u2_after.attempts), (WriteState::Pending, 1));
    assert!(store.claim_writes("a", later(), 100).await.unwrap().is_empty(), "u2 is not due, u3 waits for it");
    // A cancelled write no longer holds up the ones after it.
    assert!(!store.release_write(&u2.id, "b").await.unwrap(), "u2 is not leased");
    let failed = WriteSettle::Failed { status: Some(400), message: "bad".into(), error_class: "invalid".into() };
    assert!(store.settle_write(&u2.id, "b", 5, &failed).await.unwrap().is_none(), "not leased: nothing written");
    store.cancel_write(&u2.id).await.unwrap();
    let a = store.claim_writes("a", later(), 100).await.unwrap();
    assert_eq!(ids(&a), [u3.id.as_str()]);

    // Retrying an earlier write does not put it in flight beside a later one.
    store.settle_write(&other.id, "a", 5, &failed).await.unwrap().unwrap();
    let o2 = submit(store, &spec(WriteOp::Update, Some("202"), json!({"n": 2}))).await;
    assert_eq!(ids(&store.claim_writes("b", later(), 100).await.unwrap()), [o2.id.as_str()]);
    store.retry_write(&other.id, false).await.unwrap();
    assert!(store.claim_writes("a", later(), 100).await.unwrap().is_empty(), "o2 is in flight");
    store.settle_write(&o2.id, "b", 5, &succeeded("202")).await.unwrap().unwrap();
    assert_eq!(ids(&store.claim_writes("a", later(), 100).await.unwrap()), [other.id.as_str()]);

    // An expired lease is claimed again, by anyone, before the writes after it.
    let u4 = submit(store, &spec(WriteOp::Update, Some("101"), json!({"n": 4}))).await;
    store.settle_write(&u3.id, "a", 5, &succeeded("101")).await.unwrap().unwrap();
    let short = store.claim_writes("a", Utc::now() - Duration::seconds(1), 100).await.unwrap();
    assert_eq!(ids(&short), [u4.id.as_str()]);
    let again = store.claim_writes("b", later(), 100).await.unwrap();
    assert_eq!(ids(&again), [u4.id.as_str()]);
    assert!(store.settle_write(&u4.id, "a", 5, &succeeded("101")).await.unwrap().is_none(), "a lost the lease");
    assert!(store.settle_write(&u4.id, "b", 5, &succeeded("101")).await.unwrap().is_some());
}

pub async fn settles_are_fenced_and_recorded_with_their_attempts(store: &Store) {
    create(store, "acme", &["hubspot"]).await;
    let w = submit(store, &spec(WriteOp::Update, Some("101"), json!({"n": 1}))).await;
    store.claim_writes("a", later(), 10).await.unwrap();
    let retry = WriteSettle::Retry {
        at: Utc::now() - Duration::seconds(1),
        status: Some(503),
        message: "unavailable".into(),
        error_class: "server_error".into(),
    };
    assert!(store.settle_write(&w.id, "b", 5, &retry).await.unwrap().is_none(), "b holds no lease");
    let row = store.settle_write(&w.id, "a", 40, &retry).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts, row.lease_owner.as_deref()), (WriteState::Pending, 1, None));
    assert_eq!((row.error.as_deref(), row.error_class.as_deref()), (Some("unavailable"), Some("server_error")));

    // A long provider message is kept bounded.
    assert_eq!(ids(&store.claim_writes("a", later(), 10).await.unwrap()), [w.id.as_str()]);
    let long = "x".repeat(10_000);
    let failed = WriteSettle::Failed { status: Some(422), message: long.clone(), error_class: "validation".into() };
    let row = store.settle_write(&w.id, "a", 30, &failed).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (WriteState::Failed, 2));
    assert!(row.finished_at.is_some());
    assert!(store.claim_writes("a", later(), 10).await.unwrap().is_empty(), "failed writes are not retried");

    let detail = store.get_write(&w.id).await.unwrap().unwrap();
    let attempts: Vec<_> = detail.attempts.iter().map(|a| (a.attempt, a.status, a.latency_ms)).collect();
    assert_eq!(attempts, [(1, Some(503), 40), (2, Some(422), 30)]);
    assert_eq!(detail.attempts[0].provider_message.as_deref(), Some("unavailable"));
    let kept = detail.attempts[1].provider_message.as_deref().unwrap();
    assert!(kept.len() == tributary::store::MAX_PROVIDER_MESSAGE && long.starts_with(kept));

    // Retried: pending and due again; then a conflict keeps both versions.
    let row = store.retry_write(&w.id, false).await.unwrap();
    assert_eq!((row.state, row.error.as_deref(), row.finished_at, row.force), (WriteState::Pending, None, None, false));
    store.claim_writes("a", later(), 10).await.unwrap();
    let conflict =
        WriteSettle::Conflict { status: Some(412), provider_version: "v7".into(), base_version: Some("v1".into()) };
    let row = store.settle_write(&w.id, "a", 20, &conflict).await.unwrap().unwrap();
    assert_eq!((row.state, row.result_version.as_deref()), (WriteState::Conflict, Some("v7")));
    let error = row.error.unwrap();
    assert!(error.contains("v7") && error.contains("v1"), "{error}");

    // Forced: the next attempt overwrites; success records the provider's id and version.
    let row = store.retry_write(&w.id, true).await.unwrap();
    assert!(row.force);
    store.claim_writes("a", later(), 10).await.unwrap();
    let row = store.settle_write(&w.id, "a", 10, &succeeded("101")).await.unwrap().unwrap();
    assert_eq!(row.state, WriteState::Succeeded);
    assert_eq!((row.result_id.as_deref(), row.result_version.as_deref()), (Some("101"), Some("v2")));
    assert_eq!(row.attempts, 4);
    assert_eq!(store.get_write(&w.id).await.unwrap().unwrap().attempts.len(), 4);

    // Neither retried nor cancelled once it succeeded; a missing write is not found.
    let err = store.retry_write(&w.id, false).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }) && err.to_string().contains("succeeded"), "{err}");
    let err = store.cancel_write(&w.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let err = store.cancel_write("wr_missing").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }) && err.to_string().contains("wr_missing"), "{err}");
    assert!(store.get_write("wr_missing").await.unwrap().is_none());
}

pub async fn only_pending_writes_are_cancelled(store: &Store) {
    create(store, "acme", &["hubspot"]).await;
    let flying = submit(store, &spec(WriteOp::Update, Some("1"), json!({}))).await;
    store.claim_writes("a", later(), 10).await.unwrap();
    let waiting = submit(store, &spec(WriteOp::Update, Some("2"), json!({}))).await;
    let err = store.cancel_write(&flying.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }) && err.to_string().contains("in flight"), "{err}");
    let row = store.cancel_write(&waiting.id).await.unwrap();
    assert_eq!(row.state, WriteState::Cancelled);
    assert!(row.finished_at.is_some());
    assert!(store.claim_writes("b", later(), 10).await.unwrap().is_empty(), "cancelled writes are never sent");
    // Released without an attempt, it can be cancelled.
    assert!(store.release_write(&flying.id, "a").await.unwrap());
    assert!(!store.release_write(&flying.id, "a").await.unwrap());
    let row = store.get_write(&flying.id).await.unwrap().unwrap();
    assert_eq!((row.write.state, row.write.attempts, row.attempts.len()), (WriteState::Pending, 0, 0));
    assert_eq!(store.cancel_write(&flying.id).await.unwrap().state, WriteState::Cancelled);
    let err = store.retry_write(&flying.id, false).await.unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
}

pub(super) async fn concurrent_submissions_with_one_key_make_one_write(store: &Store, _url: &str) {
    create(store, "acme", &["hubspot"]).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = spec(WriteOp::Create, None, json!({"email": "same@example.com"}));
            s.key = Some("once");
            store.submit_write(&s.new_write()).await.unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let (row, new) = task.await.unwrap();
        ids.insert(row.id);
        created += usize::from(new);
    }
    assert_eq!(ids.len(), 1, "every submission answers with the one write");
    assert_eq!(created, 1, "exactly one submission created it");
    let all = store.list_writes(&WriteFilter { limit: 100, ..WriteFilter::default() }).await.unwrap();
    assert_eq!(all.len(), 1);
}

pub(super) async fn two_claimers_apply_each_objects_writes_in_order(store: &Store, url: &str) {
    create(store, "acme", &["hubspot"]).await;
    const OBJECTS: usize = 4;
    const PER_OBJECT: usize = 5;
    let mut submitted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..PER_OBJECT {
        for o in 0..OBJECTS {
            let object = format!("obj-{o}");
            let row = submit(store, &spec(WriteOp::Update, Some(&object), json!({"n": n}))).await;
            submitted.entry(object).or_default().push(row.id);
        }
    }
    let second = Store::connect(url).await.unwrap();
    let in_flight = Arc::new(Mutex::new(HashSet::<String>::new()));
    let applied = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let mut tasks = Vec::new();
    for (name, claimer) in [("a", store.clone()), ("b", second.clone())] {
        let in_flight = in_flight.clone();
        let applied = applied.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10_000 {
                if applied.lock().unwrap().len() == OBJECTS * PER_OBJECT {
                    return;
                }
                let claimed = claimer.claim_writes(name, later(), 3).await.unwrap();
                // Held from the claim until just before the settle commits.
                for w in &claimed {
                    let object = w.external_id.clone().unwrap();
                    assert!(in_flight.lock().unwrap().insert(object.clone()), "two writes to {object} in flight");
                }
                for w in claimed {
                    tokio::task::yield_now().await;
                    let object = w.external_id.clone().unwrap();
                    applied.lock().unwrap().push((object.clone(), w.id.clone()));
                    in_flight.lock().unwrap().remove(&object);
                    claimer.settle_write(&w.id, name, 1, &succeeded(&object)).await.unwrap().unwrap();
                }
                tokio::task::yield_now().await;
            }
            panic!("the writes were not all applied");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    second.close().await;
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (object, id) in applied.lock().unwrap().iter() {
        order.entry(object.clone()).or_default().push(id.clone());
    }
    assert_eq!(order, submitted, "each object's writes applied once each, in submission order");
    let done = WriteFilter { state: Some(WriteState::Succeeded), limit: 100, ..WriteFilter::default() };
    assert_eq!(store.list_writes(&done).await.unwrap().len(), OBJECTS * PER_OBJECT);
}
