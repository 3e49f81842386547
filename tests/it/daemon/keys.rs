//! A running daemon during a master-key rotation (it reads values under both keys and
//! seals only with the new one), and usage analytics over the control socket.

use std::ops::ControlFlow;

use serde_json::json;
use tributary::control::protocol::{Command as Ctl, Scope, UsageQuery, WebhookAdd, WebhookCommand};
use tributary::model::RunOutcome;
use tributary::secrets::MasterKey;
use tributary::store::SealedKind;
use tributary_simulator::{Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::outbound::WEBHOOKS;
use super::{Fixture, NEVER, started_runs, target};
use crate::support::json;

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

/// Sealed values per (key id, kind).
async fn counts(fx: &Fixture) -> Vec<(String, &'static str, i64)> {
    let mut out: Vec<_> =
        fx.store.sealed_key_counts().await.unwrap().into_iter().map(|c| (c.key_id, c.kind.as_str(), c.count)).collect();
    out.sort();
    out
}

/// Triggers every tenant's learners and waits for the runs; all must succeed.
async fn sync_all(fx: &Fixture, daemon: &super::Daemon) {
    for t in TENANTS {
        let reply = daemon.ok(Ctl::Trigger(target(t, Some("aptem"), Some("learners")))).await;
        for id in started_runs(&reply) {
            let run = fx.finished_run(t, id).await;
            assert_eq!(run.outcome, RunOutcome::Success, "{t}: {:?}\n{}", run.stats.error, daemon.log_text());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_reads_both_keys_mid_rotation_and_seals_only_with_the_new_one() {
    let sim = start(SimConfig::new(Provider::Aptem, 30)).await.unwrap();
    let fx = Fixture::sqlite(WEBHOOKS).await;
    for t in TENANTS {
        fx.connect(t, &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    }
    let old = MasterKey::read(&fx.dir.path().join("master.key")).unwrap();
    let old_id = old.id();
    assert_eq!(counts(&fx).await, vec![(old_id.clone(), "credentials", 4)]);
    let daemon = fx.start("d", 2).await;
    sync_all(&fx, &daemon).await;

    // `keys generate`, then a rotation interrupted after two of the four credentials.
    let new_file = fx.dir.path().join("new.key");
    let generated = json(&fx.ok(&["--json", "keys", "generate", "--out", new_file.to_str().unwrap()], "").await);
    let new_id = generated["key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    fx.store.register_key_rotation(&new_id, new_file.to_str().unwrap()).await.unwrap();
    old.adopt(MasterKey::read(&new_file).unwrap());
    let stop_after_2 = |p: &tributary::store::RotationProgress| {
        if p.batches == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    };
    let progress = fx.store.rotate_keys(&old, 1, stop_after_2).await.unwrap();
    assert_eq!((progress.rewrapped, progress.finished), (2, false));
    let mut mixed = counts(&fx).await;
    mixed.sort_by_key(|c| c.0 != old_id);
    assert_eq!(mixed, vec![(old_id.clone(), "credentials", 2), (new_id.clone(), "credentials", 2)]);

    // The daemon, started with the old key only, syncs every tenant: it opens both.
    sync_all(&fx, &daemon).await;
    // What it seals now is sealed with the new key: a webhook endpoint's signing secret.
    let added = daemon
        .ok(Ctl::Webhooks(WebhookCommand::Add(WebhookAdd {
            tenant: Some("acme".into()),
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["run.failed".into()],
        })))
        .await;
    assert!(added["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{added}");
    let secrets: Vec<_> = fx.store.sealed_not_under(SealedKind::WebhookSecret, "-", 10).await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].blob.key_id, new_id, "the daemon sealed with the old key");

    // The operator finishes the rotation from the command line while the daemon runs.
    let out = fx.ok(&["keys", "rotate", "--new-key-file", new_file.to_str().unwrap()], "").await;
    assert!(out.contains("re-encrypted 2 sealed values") && out.contains("the rotation is finished"), "{out}");
    assert_eq!(counts(&fx).await, vec![(new_id.clone(), "credentials", 4), (new_id.clone(), "webhook_secret", 1)]);
    let status = json(&fx.ok(&["--json", "keys", "status"], "").await);
    assert_eq!(status["rotation"]["key_id"], new_id.as_str(), "{status}");
    assert!(status["rotation"]["finished_at"].is_string(), "{status}");
    assert_eq!(
        status["keys"],
        json!([{ "key_id": new_id, "credentials": 4, "tokens": 0, "webhook_secrets": 1, "total": 5 }])
    );
    sync_all(&fx, &daemon).await;
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_over_the_socket_and_the_command_line_equals_the_runs_and_stays_within_a_tenant() {
    let sim = start(SimConfig::new(Provider::Aptem, 120)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    fx.connect("globex", &aptem_tenant(&sim, NEVER), &[("aptem", json!({ "api_token": "wrong" }))]).await;
    let daemon = fx.start("d", 2).await;
    for t in ["acme", "acme", "globex"] {
        let reply = daemon.ok(Ctl::Trigger(target(t, Some("aptem"), None))).await;
        for id in started_runs(&reply) {
            fx.finished_run(t, id).await;
        }
    }
    let runs = fx.runs("acme").await;
    assert!(runs.len() >= 2 && runs.iter().all(|r| r.outcome == RunOutcome::Success), "{runs:?}");
    // Sums computed here from the run rows.
    let sum = |f: fn(&tributary::model::RunRow) -> i64| runs.iter().map(f).sum::<i64>();
    let usage = json(&fx.ok(&["--json", "usage", "--tenant", "acme", "--by", "week"], "").await);
    let totals = &usage["totals"];
    assert_eq!(totals["runs"], runs.len() as i64, "{usage}");
    assert_eq!(totals["http_calls"], sum(|r| r.stats.http_calls), "{usage}");
    assert_eq!(totals["fetched"], sum(|r| r.stats.fetched), "{usage}");
    assert_eq!(totals["written"], sum(|r| r.stats.inserted + r.stats.updated), "{usage}");
    assert_eq!(totals["bytes_received"], sum(|r| r.stats.bytes_received), "{usage}");
    assert_eq!(totals["rate_limit_wait_ms"], sum(|r| r.stats.rate_limit_wait_ms), "{usage}");
    assert_eq!(totals["failed_runs"], 0, "{usage}");
    assert!(sum(|r| r.stats.bytes_received) > 0 && sum(|r| r.stats.fetched) >= 120, "{runs:?}");
    let run_ms = sum(|r| (r.finished_at.unwrap() - r.started_at).num_milliseconds());
    assert_eq!(totals["run_ms"], run_ms, "{usage}");
    assert_eq!(usage["by"], "week");

    // The same over the socket: the operator, and acme's tenant admin for acme.
    let query = |tenant: &str| {
        Ctl::Usage(UsageQuery { tenant: tenant.into(), by: Some("week".into()), ..UsageQuery::default() })
    };
    assert_eq!(daemon.ok(query("acme")).await, usage);
    let admin = Scope::Tenant { tenant: "acme".into() };
    let own = daemon.request(admin.clone(), query("acme")).await;
    assert!(own.ok, "{own:?}");
    assert_eq!(own.data.unwrap(), usage);
    // Never another tenant's.
    let other = daemon.request(admin, query("globex")).await;
    assert!(!other.ok && other.error.as_deref().unwrap().contains("cannot act on tenant `globex`"), "{other:?}");
    // Globex's failed runs count under their error class.
    let failed = fx.runs("globex").await;
    assert!(!failed.is_empty() && failed.iter().all(|r| r.outcome == RunOutcome::Failed), "{failed:?}");
    let mut classes = serde_json::Map::new();
    for r in &failed {
        let class = r.stats.error_class.clone().expect("a failed run has an error class");
        let n = classes.get(&class).and_then(serde_json::Value::as_i64).unwrap_or(0);
        classes.insert(class, json!(n + 1));
    }
    let theirs = daemon.ok(query("globex")).await;
    assert_eq!(theirs["totals"]["failed_runs"], failed.len() as i64, "{theirs}");
    assert_eq!(theirs["errors"], serde_json::Value::Object(classes), "{theirs}");
    let month = UsageQuery { tenant: "acme".into(), by: Some("month".into()), ..UsageQuery::default() };
    let bad = daemon.request(Scope::Operator, Ctl::Usage(month)).await;
    assert!(!bad.ok && bad.error.as_deref().unwrap().contains("unknown period `month`"), "{bad:?}");
    drop(daemon);
    fx.finish().await;
}
