//! `tributary keys` as an operator runs it: a rotation killed half-way and run again,
//! a store that refuses keys opening none of its values, private key and database files.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tributary::model::{Owner, ProviderId, TenantId};
use tributary::secrets::{MasterKey, Sealed};
use tributary::store::{SealedKind, Store};

use crate::support::cli::Env;
use crate::support::json;

const TENANTS: usize = 6;

fn hubspot_creds(i: usize) -> String {
    format!(r#"{{"client_id": "id-{i}", "client_secret": "secret-{i}", "refresh_token": "rt-{i}"}}"#)
}

/// `TENANTS` tenants with Aptem and HubSpot credentials, stored from the command line.
fn populate(env: &Env) {
    for i in 0..TENANTS {
        let t = format!("t{i}");
        env.ok(&["tenant", "create", "--id", &t, "--name", &t, "--subdomain", &t, "--preset", "aptem_hubspot"]);
        let out = env.with_stdin(
            &["credentials", "set", "--tenant", &t, "--provider", "aptem"],
            format!(r#"{{"api_token": "token-{i}"}}"#),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = env.with_stdin(&["credentials", "set", "--tenant", &t, "--provider", "hubspot"], hubspot_creds(i));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Every stored credential set opened with `key`: `tenant/provider json`, sorted.
async fn opened(store: &Store, key: &MasterKey) -> Vec<String> {
    let mut out = Vec::new();
    for v in store.sealed_not_under(SealedKind::Credentials, "-", 1_000).await.unwrap() {
        let (t, p) = (TenantId::parse(&v.tenant).unwrap(), ProviderId::parse(&v.provider).unwrap());
        let plain = key.open_as(Sealed::Credentials, &t, &p, Owner::Company, &v.blob).unwrap();
        out.push(format!("{t}/{p} {}", String::from_utf8_lossy(&plain)));
    }
    out.sort();
    out
}

/// Credentials per key id.
async fn per_key(store: &Store) -> Vec<(String, i64)> {
    let mut out: Vec<_> = store.sealed_key_counts().await.unwrap().into_iter().map(|c| (c.key_id, c.count)).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_half_way_finishes_when_run_again_and_loses_nothing() {
    let env = Env::new();
    populate(&env);
    let store = Store::connect(&env.url()).await.unwrap();
    let old = MasterKey::read(&env.dir.path().join("tributary.master-key")).unwrap();
    let before = opened(&store, &old).await;
    assert_eq!(before.len(), 2 * TENANTS);
    assert!(before.contains(&r#"t3/aptem {"api_token":"token-3"}"#.to_owned()), "{before:?}");

    let out = env.ok(&["keys", "generate", "--out", "new.key"]);
    let new_id = MasterKey::read(&env.dir.path().join("new.key")).unwrap().id();
    assert!(out.contains(&new_id) && out.contains("mode 0600"), "{out}");
    assert_eq!(std::fs::metadata(env.dir.path().join("new.key")).unwrap().permissions().mode() & 0o777, 0o600);
    // Never over an existing key file.
    assert!(env.fails(&["keys", "generate", "--out", "new.key"]).contains("new.key"));

    // One value per batch, slowly; killed (SIGKILL) once some but not all are re-encrypted.
    let mut child = env
        .cmd(&["keys", "rotate", "--new-key-file", "new.key", "--batch-size", "1", "--pause-ms", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let moved = per_key(&store).await.iter().filter(|(id, _)| *id == new_id).map(|c| c.1).sum::<i64>();
        if moved >= 2 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the rotation ended before it was killed");
        assert!(Instant::now() < deadline, "the rotation re-encrypted nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status}");
    let mixed = per_key(&store).await;
    assert_eq!(mixed.len(), 2, "values under both keys: {mixed:?}");
    assert_eq!(mixed.iter().map(|c| c.1).sum::<i64>(), 2 * TENANTS as i64, "{mixed:?}");
    // Half-way, the old key (beside the store) and the registered new one open everything.
    let ring = MasterKey::read(&env.dir.path().join("tributary.master-key")).unwrap();
    assert_eq!(store.follow_key_rotation(&ring).await.unwrap(), Some(new_id.clone()));
    assert_eq!(opened(&store, &ring).await, before);

    let status = json(&env.ok(&["--json", "keys", "status"]));
    assert_eq!(status["rotation"]["key_id"], new_id.as_str(), "{status}");
    assert!(status["rotation"]["finished_at"].is_null(), "{status}");
    let listed: Vec<(String, i64)> = status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key_id"].as_str().unwrap().to_owned(), k["credentials"].as_i64().unwrap()))
        .collect();
    assert_eq!(listed, mixed);
    let human = env.ok(&["keys", "status"]);
    assert!(human.contains("under way") && human.contains("sealing key") && human.contains("to re-encrypt"), "{human}");

    // Run again: it finishes, and every value is re-encrypted exactly once.
    let remaining = mixed.iter().find(|(id, _)| *id != new_id).unwrap().1;
    let out = env.ok(&["keys", "rotate", "--new-key-file", "new.key"]);
    assert!(out.contains(&format!("re-encrypted {remaining} sealed values under master key {new_id}")), "{out}");
    assert!(out.contains("the rotation is finished") && out.contains("TRIBUTARY_MASTER_KEY_FILE"), "{out}");
    assert_eq!(per_key(&store).await, vec![(new_id.clone(), 2 * TENANTS as i64)]);
    let rotation = store.key_rotation().await.unwrap().unwrap();
    assert_eq!(rotation.rewrapped, 2 * TENANTS as i64, "nothing was sealed twice");
    assert!(rotation.finished_at.is_some());
    assert_eq!(opened(&store, &MasterKey::read(&env.dir.path().join("new.key")).unwrap()).await, before);
    // The rotation is audited by key id and file, never with a key.
    let audit: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "audit", "list"])).unwrap();
    let rotations: Vec<&serde_json::Value> =
        audit.as_array().unwrap().iter().filter(|e| e["action"] == "keys.rotate").collect();
    assert!(rotations.iter().any(|e| e["subject"] == new_id.as_str() && e["details"]["finished"] == true), "{audit}");
    let key_file = std::fs::read(env.dir.path().join("new.key")).unwrap();
    let key_hex = match key_file.len() {
        32 => hex::encode(&key_file),
        _ => String::from_utf8(key_file).unwrap().trim().to_lowercase(),
    };
    assert_eq!(key_hex.len(), 64);
    assert!(!audit.to_string().contains(&key_hex), "a key in the audit log");

    // Until the configuration names it, processes find the new key through the store and
    // seal with it; then the old key file can go.
    let out = env.with_stdin(&["credentials", "set", "--tenant", "t0", "--provider", "aptem"], r#"{"api_token": "x"}"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(per_key(&store).await, vec![(new_id.clone(), 2 * TENANTS as i64)]);
    std::fs::remove_file(env.dir.path().join("tributary.master-key")).unwrap();
    let mut child = env
        .cmd(&["credentials", "set", "--tenant", "t1", "--provider", "aptem"])
        .env("TRIBUTARY_MASTER_KEY_FILE", env.dir.path().join("new.key"))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), br#"{"api_token": "y"}"#).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(per_key(&store).await, vec![(new_id.clone(), 2 * TENANTS as i64)]);
    store.close().await;
}

#[test]
fn a_store_refuses_master_keys_that_open_none_of_its_values() {
    let env = Env::new();
    env.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--subdomain", "acme", "--preset", "aptem"]);
    let out =
        env.with_stdin(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"], r#"{"api_token":"t"}"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key_file = env.dir.path().join("tributary.master-key");
    let id = MasterKey::read(&key_file).unwrap().id();
    let set = |env: &Env, key: Option<&std::path::Path>| {
        let mut cmd = env.cmd(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"]);
        if let Some(key) = key {
            cmd.env("TRIBUTARY_MASTER_KEY_FILE", key);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), br#"{"api_token":"u"}"#).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // The key file is gone: no new key is generated beside the store.
    std::fs::rename(&key_file, env.dir.path().join("kept.key")).unwrap();
    let (ok, stderr) = set(&env, None);
    assert!(!ok && stderr.contains(&format!("`{id}` (1 values)")) && stderr.contains("no master key file"), "{stderr}");
    assert!(!key_file.exists(), "a key was generated");

    // Another key: refused, naming both ids.
    let other = env.dir.path().join("other.key");
    crate::support::write_private(&other, "77".repeat(32).as_bytes());
    let other_id = MasterKey::read(&other).unwrap().id();
    let (ok, stderr) = set(&env, Some(&other));
    assert!(!ok && stderr.contains(&id) && stderr.contains(&other_id) && stderr.contains("cannot open"), "{stderr}");

    // The right key, but readable by others: refused with how to fix it.
    let kept = env.dir.path().join("kept.key");
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, stderr) = set(&env, Some(&kept));
    assert!(!ok && stderr.contains("mode 0644") && stderr.contains("chmod 600"), "{stderr}");
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, stderr) = set(&env, Some(&kept));
    assert!(ok, "{stderr}");
    // A rotation to a key file others may read is refused too, before anything changes.
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut cmd = env.cmd(&["keys", "rotate", "--new-key-file", "other.key"]);
    let out = cmd.env("TRIBUTARY_MASTER_KEY_FILE", &kept).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("mode 0640"), "{stderr}");
    let status = json(&env.ok(&["--json", "keys", "status"]));
    assert!(status["rotation"].is_null(), "{status}");

    // The key is lost for good: forget what it sealed (a dry run first), then go on
    // with another key.
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = env.ok(&["keys", "forget", "--key-id", &id]);
    assert!(
        out.contains(&format!("would remove under key {id}: 1 credentials")) && out.contains("acme/aptem"),
        "{out}"
    );
    assert!(!set(&env, Some(&other)).0, "a dry run changed nothing");
    let out = env.ok(&["keys", "forget", "--key-id", &id, "--yes"]);
    assert!(out.contains(&format!("removed under key {id}: 1 credentials")), "{out}");
    let shown = json(&env.ok(&["--json", "credentials", "show", "--tenant", "acme"]));
    let aptem = shown.as_array().unwrap().iter().find(|c| c["provider"] == "aptem").unwrap();
    assert_eq!((&aptem["has_credentials"], &aptem["status"]), (&false.into(), &"pending".into()), "{shown}");
    let (ok, stderr) = set(&env, Some(&other));
    assert!(ok, "{stderr}");
    let status = json(&env.ok(&["--json", "keys", "status"]));
    assert_eq!(status["keys"][0]["key_id"], other_id.as_str(), "{status}");
    assert_eq!(status["keys"].as_array().unwrap().len(), 1, "{status}");
}

#[tokio::test]
async fn new_database_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let store = Store::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    // A write, so the WAL and shared-memory files exist beside the database.
    store.register_key_rotation("kdeadbeef", "/nowhere").await.unwrap();
    let mut seen = 0;
    for name in ["fresh.db", "fresh.db-wal", "fresh.db-shm"] {
        let path = dir.path().join(name);
        if name == "fresh.db" || path.exists() {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3, "the WAL and shared-memory files were expected while the store is open");
    store.close().await;
}
