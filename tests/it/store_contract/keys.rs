//! Master-key rotation in the store: batches that resume, values read under both keys
//! mid-rotation, and nothing lost or sealed twice.

use std::ops::ControlFlow;

use tributary::secrets::{MasterKey, Sealed};
use tributary::store::{NewWebhookEndpoint, SealedKind, TokenWrite};

use super::*;

const OLD: [u8; 32] = [0x11; 32];
const NEW: [u8; 32] = [0x22; 32];

/// Every sealed value, opened with `key`: `kind tenant/provider plaintext`, sorted.
async fn open_all(store: &Store, key: &MasterKey) -> Vec<String> {
    let mut out = Vec::new();
    for kind in SealedKind::ALL {
        for v in store.sealed_not_under(kind, "-", 1_000).await.unwrap() {
            let plain = if kind == SealedKind::WebhookSecret {
                key.open_webhook_secret(&v.row, &v.blob).unwrap()
            } else {
                let what = if kind == SealedKind::Token { Sealed::AuthState } else { Sealed::Credentials };
                key.open_as(what, &tenant_id(&v.tenant), &provider(&v.provider), Owner::Company, &v.blob).unwrap()
            };
            out.push(format!("{} {}/{} {}", kind.as_str(), v.tenant, v.provider, String::from_utf8_lossy(&plain)));
        }
    }
    out.sort();
    out
}

/// Sealed values per key id (all kinds together).
async fn per_key(store: &Store) -> Vec<(String, i64)> {
    let mut totals: std::collections::BTreeMap<String, i64> = Default::default();
    for c in store.sealed_key_counts().await.unwrap() {
        *totals.entry(c.key_id).or_default() += c.count;
    }
    totals.into_iter().collect()
}

pub(super) async fn rotation_rewraps_every_sealed_value_and_resumes(store: &Store) {
    let old = MasterKey::from_bytes(OLD);
    // Six credentials, one token, one webhook signing secret: eight values under `old`.
    for t in ["acme", "globex", "initech"] {
        create(store, t, &["aptem", "hubspot"]).await;
        for p in ["aptem", "hubspot"] {
            let blob = old.seal(&tenant_id(t), &provider(p), format!("creds of {t}/{p}").as_bytes());
            let entry = audit(Some(t), "credentials.set", at(1));
            store.set_credentials(&tenant_id(t), &provider(p), Owner::Company, &blob, &entry).await.unwrap();
        }
    }
    let (acme, hubspot) = (tenant_id("acme"), provider("hubspot"));
    let row = store.lock_refresh(&acme, &hubspot, Owner::Company, "w1", at(30)).await.unwrap().unwrap();
    let token = old.seal_as(Sealed::AuthState, &acme, &hubspot, Owner::Company, b"token of acme");
    let write = TokenWrite {
        lock_owner: "w1",
        expected_version: row.credentials_version,
        credentials: None,
        auth_state: &token,
        expires_at: None,
    };
    store.save_token(&acme, &hubspot, Owner::Company, &write, None).await.unwrap().expect("the token is stored");
    let secret = old.seal_webhook_secret("ep_1", b"whsec of ep_1");
    let events = vec!["run.failed".to_owned()];
    let endpoint = NewWebhookEndpoint {
        id: "ep_1",
        tenant: Some(&acme),
        url: "https://example.com/h",
        events: &events,
        secret: &secret,
    };
    store.create_webhook_endpoint(&endpoint).await.unwrap();
    let before = open_all(store, &old).await;
    assert_eq!(before.len(), 8, "{before:?}");
    assert!(before.contains(&"token acme/hubspot token of acme".to_owned()), "{before:?}");
    assert_eq!(per_key(store).await, vec![(old.id(), 8)]);
    assert!(store.key_rotation().await.unwrap().is_none());

    // The rotation is registered with the new key's file, then stopped after 3 batches of 1.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new.key");
    crate::support::write_private(&file, hex::encode(NEW).as_bytes());
    let new_id = MasterKey::from_bytes(NEW).id();
    store.register_key_rotation(&new_id, file.to_str().unwrap()).await.unwrap();
    let ring = MasterKey::from_bytes(OLD);
    ring.adopt(MasterKey::read(&file).unwrap());
    let stop_after_3 = |p: &tributary::store::RotationProgress| {
        if p.batches == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    };
    let first = store.rotate_keys(&ring, 1, stop_after_3).await.unwrap();
    assert_eq!((first.rewrapped, first.batches, first.finished), (3, 3, false));
    let mut mixed = per_key(store).await;
    mixed.sort_by_key(|a| a.1);
    assert_eq!(mixed, vec![(new_id.clone(), 3), (old.id(), 5)]);
    let rotation = store.key_rotation().await.unwrap().unwrap();
    assert_eq!((rotation.key_id.as_str(), rotation.rewrapped, rotation.finished_at), (new_id.as_str(), 3, None));

    // Another process that loaded only the old key follows the registration: it reads
    // values under both keys and seals with the new one.
    let other = MasterKey::from_bytes(OLD);
    assert_eq!(store.follow_key_rotation(&other).await.unwrap(), Some(new_id.clone()));
    assert_eq!(store.follow_key_rotation(&other).await.unwrap(), None, "already following");
    assert_eq!(other.id(), new_id);
    assert_eq!(open_all(store, &other).await, before);

    // Resumed: the five left are re-encrypted; none twice.
    let second = store.rotate_keys(&ring, 2, |_| ControlFlow::Continue(())).await.unwrap();
    assert_eq!((second.rewrapped, second.finished), (5, true));
    assert_eq!(per_key(store).await, vec![(new_id.clone(), 8)]);
    let rotation = store.key_rotation().await.unwrap().unwrap();
    assert_eq!(rotation.rewrapped, 8);
    assert!(rotation.finished_at.is_some());
    // The new key alone opens everything, with the same plaintexts.
    assert_eq!(open_all(store, &MasterKey::read(&file).unwrap()).await, before);
    let again = store.rotate_keys(&ring, 2, |_| ControlFlow::Continue(())).await.unwrap();
    assert_eq!((again.rewrapped, again.batches, again.finished), (0, 0, true));
}

pub(super) async fn a_registered_key_file_that_changed_is_an_error(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new.key");
    crate::support::write_private(&file, hex::encode(NEW).as_bytes());
    let new_id = MasterKey::from_bytes(NEW).id();
    store.register_key_rotation(&new_id, file.to_str().unwrap()).await.unwrap();
    // Another key now sits at the registered path.
    crate::support::write_private(&file, hex::encode([0x33u8; 32]).as_bytes());
    let err = store.follow_key_rotation(&MasterKey::from_bytes(OLD)).await.unwrap_err().to_string();
    assert!(err.contains(&new_id) && err.contains("new.key") && err.contains("now holds key"), "{err}");
    // A missing file names the path.
    std::fs::remove_file(&file).unwrap();
    let err = store.follow_key_rotation(&MasterKey::from_bytes(OLD)).await.unwrap_err().to_string();
    assert!(err.contains(&new_id) && err.contains("new.key"), "{err}");
}

pub(super) async fn forgetting_a_lost_key_removes_what_it_sealed(store: &Store) {
    let lost = MasterKey::from_bytes(OLD);
    let kept = MasterKey::from_bytes(NEW);
    create(store, "acme", &["aptem", "hubspot"]).await;
    let (acme, aptem, hubspot) = (tenant_id("acme"), provider("aptem"), provider("hubspot"));
    let entry = audit(Some("acme"), "credentials.set", at(1));
    store.set_credentials(&acme, &aptem, Owner::Company, &lost.seal(&acme, &aptem, b"a"), &entry).await.unwrap();
    store.set_credentials(&acme, &hubspot, Owner::Company, &kept.seal(&acme, &hubspot, b"h"), &entry).await.unwrap();
    let row = store.lock_refresh(&acme, &aptem, Owner::Company, "w1", at(30)).await.unwrap().unwrap();
    let token = lost.seal_as(Sealed::AuthState, &acme, &aptem, Owner::Company, b"t");
    let write = TokenWrite {
        lock_owner: "w1",
        expected_version: row.credentials_version,
        credentials: None,
        auth_state: &token,
        expires_at: None,
    };
    store.save_token(&acme, &aptem, Owner::Company, &write, None).await.unwrap().expect("the token is stored");
    let events = vec!["run.failed".to_owned()];
    for (id, key) in [("ep_lost", &lost), ("ep_kept", &kept)] {
        let secret = key.seal_webhook_secret(id, b"whsec");
        let endpoint = NewWebhookEndpoint {
            id,
            tenant: Some(&acme),
            url: "https://example.com/h",
            events: &events,
            secret: &secret,
        };
        store.create_webhook_endpoint(&endpoint).await.unwrap();
    }
    let forget = audit(None, "keys.forget", at(2));
    let dry = store.forget_key(&lost.id(), false, &forget).await.unwrap();
    assert_eq!(dry.credentials, vec!["acme/aptem".to_owned()]);
    assert_eq!((dry.tokens, dry.webhook_endpoints.clone()), (1, vec!["ep_lost".to_owned()]));
    assert_eq!(per_key(store).await.len(), 2, "a dry run removes nothing");
    assert_eq!(store.forget_key(&lost.id(), true, &forget).await.unwrap(), dry);
    assert_eq!(per_key(store).await, vec![(kept.id(), 2)]);
    let conn = store.get_connection(&acme, &aptem, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::Pending);
    assert!(conn.status_reason.unwrap_or_default().contains(&lost.id()));
    assert!(store.get_webhook_endpoint("ep_lost").await.unwrap().is_none());
    assert!(store.get_webhook_endpoint("ep_kept").await.unwrap().is_some());
    // The key every process seals with cannot be forgotten.
    store.register_key_rotation(&kept.id(), "/etc/tributary/next.key").await.unwrap();
    let err = store.forget_key(&kept.id(), true, &forget).await.unwrap_err().to_string();
    assert!(err.contains("registered rotation"), "{err}");
    assert_eq!(per_key(store).await, vec![(kept.id(), 2)]);
}
