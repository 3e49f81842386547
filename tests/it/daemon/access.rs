//! Control-socket scopes from the peer's credentials (`[control]`), the audit log of
//! control actions, denied requests and command-line changes, and what a tenant admin's
//! replies leave out.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tributary::control::protocol::{
    AuditQuery, Command as Ctl, Scope, WebhookAdd, WebhookCommand, WebhookId, WebhookReplay, WriteCommand, WriteId,
    WriteSubmit,
};
use tributary::model::{AuditEntry, AuditOutcome};
use tributary::store::AuditFilter;
use tributary_simulator::{Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Fixture, NEVER, eventually, target};
use crate::support::json;

/// Replaces tributary.toml: an empty `[daemon]` and `control` as `[control]`'s body.
fn write_control(fx: &Fixture, control: &str) {
    std::fs::write(fx.config_dir().join("tributary.toml"), format!("[daemon]\n\n[control]\n{control}\n"))
        .expect("write tributary.toml");
}

async fn audit_log(fx: &Fixture) -> Vec<AuditEntry> {
    fx.store.list_audit_filtered(&AuditFilter { limit: 10_000, ..AuditFilter::default() }).await.expect("audit log")
}

/// The one entry of `action` by a control-socket peer with `outcome`.
fn entry<'a>(log: &'a [AuditEntry], action: &str, outcome: AuditOutcome) -> &'a AuditEntry {
    let found: Vec<&AuditEntry> =
        log.iter().filter(|e| e.action == action && e.outcome == outcome && e.actor.starts_with("peer:")).collect();
    assert_eq!(found.len(), 1, "one `{action}` {outcome} entry expected: {log:#?}");
    found[0]
}

fn tenant(t: &str) -> Scope {
    Scope::Tenant { tenant: t.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_come_from_the_peer_and_every_control_action_is_audited() {
    let sim = start(SimConfig::new(Provider::Aptem, 20)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    fx.connect("globex", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    // This process's uid: by default (no `[control]`) the daemon's own user is an operator.
    let me = std::fs::metadata(fx.dir.path()).expect("the fixture directory").uid();
    let daemon = fx.start("d", 2).await;
    let peer = format!("peer:{me}");

    // Mistyped `v` and `cmd` are refused by type, never coerced.
    for (line, expected) in [
        (r#"{"v":"1","cmd":"status"}"#, r#"`v` must be the number 1, not the string "1""#),
        (r#"{"v":1,"cmd":5}"#, "`cmd` must be a command name (a string), not the number 5"),
    ] {
        let stream = UnixStream::connect(&daemon.socket).await.expect("connect");
        let (read, mut write) = stream.into_split();
        write.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        BufReader::new(read).read_line(&mut answer).await.unwrap();
        assert_eq!(json(answer.trim()), json!({ "v": 1, "ok": false, "error": expected }), "{line}");
    }

    // Every kind of control action, as the operator.
    daemon.ok(Ctl::Trigger(target("acme", Some("aptem"), Some("learners")))).await;
    daemon.ok(Ctl::Pause(target("acme", Some("aptem"), None))).await;
    daemon.ok(Ctl::Resume(target("acme", Some("aptem"), None))).await;
    let add = WebhookAdd {
        tenant: Some("acme".into()),
        url: "https://hooks.example/in?token=s3cret".into(),
        events: vec!["*".into()],
    };
    let added = daemon.ok(Ctl::Webhooks(WebhookCommand::Add(add))).await;
    let endpoint = added["endpoint"]["id"].as_str().expect("an endpoint id").to_owned();
    daemon.ok(Ctl::Webhooks(WebhookCommand::Replay(WebhookReplay { id: endpoint.clone(), message: None }))).await;
    daemon.ok(Ctl::Webhooks(WebhookCommand::Remove(WebhookId { id: endpoint.clone() }))).await;
    let submit = WriteSubmit {
        tenant: "acme".into(),
        provider: "aptem".into(),
        entity: "spaceship".into(),
        op: "create".into(),
        id: None,
        idempotency_key: None,
        base_version: None,
        force: false,
        owner: None,
        record: json!({ "first_name": "Ada" }),
    };
    let refused = daemon.request(Scope::Operator, Ctl::Writes(WriteCommand::Submit(Box::new(submit)))).await;
    assert!(!refused.ok, "no such entity: {refused:?}");
    let missing =
        daemon.request(Scope::Operator, Ctl::Writes(WriteCommand::Cancel(WriteId { id: "wr_x".into() }))).await;
    assert!(!missing.ok);
    daemon.ok(Ctl::Reload).await;

    let log = audit_log(&fx).await;
    for (action, subject) in [
        ("control.trigger", Some("aptem/learners")),
        ("control.pause", Some("aptem")),
        ("control.resume", Some("aptem")),
        ("webhooks.add", Some(endpoint.as_str())),
        ("webhooks.replay", Some(endpoint.as_str())),
        ("webhooks.remove", Some(endpoint.as_str())),
    ] {
        let e = entry(&log, action, AuditOutcome::Ok);
        assert!(e.actor.starts_with(&peer), "{e:?}");
        assert_eq!(e.scope.as_deref(), Some("operator"), "{e:?}");
        assert_eq!(e.tenant_id.as_ref().map(|t| t.as_str()), Some("acme"), "{e:?}");
        assert_eq!(e.subject.as_deref(), subject, "{e:?}");
    }
    let reload = entry(&log, "control.reload", AuditOutcome::Ok);
    assert_eq!(reload.tenant_id, None);
    let submit = entry(&log, "writes.submit", AuditOutcome::Error);
    assert_eq!(submit.tenant_id.as_ref().map(|t| t.as_str()), Some("acme"));
    assert_eq!(submit.message.as_deref(), refused.error.as_deref());
    assert_eq!(entry(&log, "writes.cancel", AuditOutcome::Error).message.as_deref(), Some("no write `wr_x`"));
    // Never secrets: neither the signing secret nor the URL's token.
    let text = serde_json::to_string(&log).unwrap();
    let secret = added["secret"].as_str().expect("the signing secret");
    assert!(!text.contains(secret) && !text.contains("s3cret") && !text.contains("Ada"), "{text}");
    // Reads are not audited.
    assert!(log.iter().all(|e| e.action != "control.status"), "{log:#?}");

    // This uid becomes acme's admin, and nobody is an operator.
    write_control(&fx, &format!("operators = []\n[control.tenants.acme]\nadmins = [{me}]\n"));
    daemon.signal("HUP").await;
    let denied = eventually("the new [control] to take effect", || async {
        let reply = daemon.request(Scope::Operator, Ctl::Status).await;
        (!reply.ok).then_some(reply)
    })
    .await;
    let error = denied.error.unwrap_or_default();
    assert!(error.contains(&format!("uid {me}")) && error.contains("is a tenant admin, not an operator"), "{error}");
    assert!(error.contains("--as-tenant acme"), "{error}");
    // As acme's admin it may trigger acme's jobs, never act as globex's admin.
    let reply = daemon.request(tenant("acme"), Ctl::Trigger(target("acme", Some("aptem"), Some("learners")))).await;
    assert!(reply.ok, "{:?}", reply.error);
    let reply = daemon.request(tenant("globex"), Ctl::Status).await;
    assert!(reply.error.as_deref().is_some_and(|e| e.contains("is not an admin of tenant `globex`")), "{reply:?}");
    let reply = daemon.request(tenant("acme"), Ctl::Trigger(target("globex", None, None))).await;
    assert!(reply.error.as_deref().is_some_and(|e| e.contains("cannot act on tenant `globex`")), "{reply:?}");
    // As a user sees it: `ctl drain` (the operator scope by default) is refused.
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let out = fx.command(&["ctl", "--socket", &socket, "drain"]).output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a tenant admin, not an operator"), "{stderr}");

    // A rejected reload's error names globex's file: acme's admin sees that the
    // configuration was rejected, never the text.
    fx.write_tenant("globex", "preset = \"no_such_preset\"\n");
    daemon.signal("HUP").await;
    let status = eventually("the reload to be rejected", || async {
        let reply = daemon.request(tenant("acme"), Ctl::Status).await;
        let data = reply.data.unwrap_or(Value::Null);
        data["config"]["state"].as_str().is_some_and(|s| s.starts_with("rejected")).then_some(data)
    })
    .await;
    let text = status.to_string();
    assert!(!text.contains("globex") && !text.contains("no_such_preset") && !text.contains(".toml"), "{text}");
    assert!(status["config"].get("error").is_none(), "{status}");

    // Acme's admin reads acme's audit entries only, its own refusals among them.
    let mine = daemon.request(tenant("acme"), Ctl::Audit(AuditQuery::default())).await;
    let mine = mine.data.expect("audit entries");
    let mine = mine.as_array().expect("a list");
    assert!(mine.iter().all(|e| e["tenant_id"] == "acme"), "{mine:#?}");
    let log = audit_log(&fx).await;
    assert!(log.iter().any(|e| e.tenant_id.as_ref().is_some_and(|t| t.as_str() == "globex")), "globex has entries too");
    let acme_entries = log.iter().filter(|e| e.tenant_id.as_ref().is_some_and(|t| t.as_str() == "acme")).count();
    assert_eq!(mine.len(), acme_entries, "{mine:#?}");
    let trigger = mine.iter().find(|e| e["action"] == "control.trigger" && e["outcome"] == "ok");
    assert!(trigger.is_some_and(|e| e["scope"] == "tenant:acme" && e["subject"] == "aptem/learners"), "{mine:#?}");
    let refusal = mine.iter().find(|e| e["action"] == "control.trigger" && e["outcome"] == "denied");
    assert!(refusal.is_some(), "acme's admin's refused trigger on globex is acme's entry: {mine:#?}");
    let reply = daemon
        .request(tenant("acme"), Ctl::Audit(AuditQuery { tenant: Some("globex".into()), ..AuditQuery::default() }))
        .await;
    assert!(!reply.ok, "{reply:?}");

    // Nobody is named: every request of this uid is refused, logged and counted.
    fx.write_tenant("globex", &aptem_tenant(&sim, NEVER));
    write_control(&fx, "operators = []\n");
    daemon.signal("HUP").await;
    let denied = eventually("the peer to be unknown", || async {
        let reply = daemon.request(tenant("acme"), Ctl::Status).await;
        reply.error.filter(|e| e.contains("may not use this control socket"))
    })
    .await;
    assert!(denied.contains(&format!("uid {me}")), "{denied}");
    let reasons: Vec<Value> =
        daemon.events("control request denied").iter().map(|e| e["fields"]["reason"].clone()).collect();
    for reason in ["wider_scope", "scope", "unknown_peer"] {
        assert!(reasons.contains(&json!(reason)), "{reason} in {reasons:?}");
    }
    let log = audit_log(&fx).await;
    let unknown = log
        .iter()
        .find(|e| e.outcome == AuditOutcome::Denied && e.scope.is_none())
        .unwrap_or_else(|| panic!("the unknown peer's request is audited: {log:#?}"));
    assert_eq!(unknown.action, "control.status");
    assert!(unknown.message.as_deref().is_some_and(|m| m.contains("may not use this control socket")));
    let wider = |action: &str| {
        log.iter()
            .any(|e| e.action == action && e.outcome == AuditOutcome::Denied && e.scope.as_deref() == Some("operator"))
    };
    assert!(wider("control.status") && wider("control.drain"), "{log:#?}");
    drop(daemon);
    fx.finish().await;
}

/// `setpriv` runs `tributary ctl` as `nobody` (uid 65534), a second uid beside the
/// daemon's: it needs root. Without root the scope mapping is shown with this process's
/// own uid only (above and in `control::access`'s unit tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_uid_is_a_tenant_admin_through_the_real_socket() {
    let fx = Fixture::sqlite("").await;
    let me = std::fs::metadata(fx.dir.path()).expect("the fixture directory").uid();
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| Path::new(p).exists());
    let Some(setpriv) = setpriv.filter(|_| me == 0) else {
        eprintln!("not root or no setpriv: a second uid cannot be arranged here");
        return;
    };
    write_control(&fx, "socket_mode = \"0666\"\n[control.tenants.acme]\nadmins = [65534]\n");
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = fx.start("d", 1).await;
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let as_nobody = |args: &[&str]| {
        let mut all = vec!["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_tributary")];
        all.extend_from_slice(args);
        let mut cmd = tokio::process::Command::new(setpriv);
        cmd.args(all).current_dir(fx.dir.path()).env_remove("TRIBUTARY_SOCKET");
        cmd
    };
    let out = as_nobody(&["ctl", "--socket", &socket, "--as-tenant", "acme", "status"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_nobody(&["ctl", "--socket", &socket, "status"]).output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("uid 65534") && stderr.contains("is a tenant admin, not an operator"), "{stderr}");
    let out = as_nobody(&["ctl", "--socket", &socket, "--as-tenant", "acme", "reload"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("needs the operator scope"), "{stderr}");
    // The daemon's own user (root here) is still the operator.
    daemon.ok(Ctl::Status).await;

    let log = audit_log(&fx).await;
    let nobody: Vec<&AuditEntry> = log.iter().filter(|e| e.actor.starts_with("peer:65534")).collect();
    assert_eq!(nobody.len(), 2, "two refusals: {log:#?}");
    assert!(nobody.iter().all(|e| e.outcome == AuditOutcome::Denied), "{nobody:#?}");
    let reload = nobody.iter().find(|e| e.action == "control.reload").expect("the refused reload");
    assert_eq!(
        (reload.scope.as_deref(), reload.tenant_id.as_ref().map(|t| t.as_str())),
        (Some("tenant:acme"), Some("acme"))
    );
    drop(daemon);
    fx.finish().await;
}

/// The command line's changes are audited as `local`, and `audit list` reads the log
/// (SQLite and PostgreSQL).
async fn command_line_changes_are_audited(fx: Fixture) {
    fx.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--subdomain", "acme", "--preset", "aptem"], "")
        .await;
    fx.ok(
        &["tenant", "create", "--id", "globex", "--name", "Globex", "--subdomain", "globex", "--preset", "aptem"],
        "",
    )
    .await;
    fx.ok(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"], r#"{"api_token": "tok-s3cret"}"#).await;
    let added = json(
        &fx.ok(&["--json", "webhooks", "add", "--tenant", "acme", "--url", "https://h.example/x", "--events", "*"], "")
            .await,
    );
    let id = added["endpoint"]["id"].as_str().unwrap().to_owned();
    fx.ok(&["webhooks", "remove", &id], "").await;
    let out = fx.command(&["writes", "cancel", "wr_nope"]).output().await.unwrap();
    assert!(!out.status.success());
    let out = fx.command(&["tenant", "set-preset", "acme", "no_such_preset"]).output().await.unwrap();
    assert!(!out.status.success());
    fx.ok(&["prune"], "").await;

    let all = json(&fx.ok(&["--json", "audit", "list"], "").await);
    let all = all.as_array().expect("a list");
    let actions: Vec<(&str, &str)> =
        all.iter().map(|e| (e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap())).collect();
    // Newest first.
    assert_eq!(
        actions,
        [
            ("prune", "ok"),
            ("tenant.set_preset", "error"),
            ("writes.cancel", "error"),
            ("webhooks.remove", "ok"),
            ("webhooks.add", "ok"),
            ("credentials.set", "ok"),
            ("tenant.create", "ok"),
            ("tenant.create", "ok"),
        ]
    );
    assert!(all.iter().all(|e| e["scope"] == "local" && e["actor"].as_str().unwrap().starts_with("cli:")), "{all:#?}");
    assert_eq!(all[3]["tenant_id"], "acme", "the removed endpoint's tenant: {:#?}", all[3]);
    assert!(all[1]["message"].as_str().is_some_and(|m| m.contains("no_such_preset")), "{:#?}", all[1]);
    assert!(!serde_json::to_string(all).unwrap().contains("tok-s3cret"));

    let acme = json(&fx.ok(&["--json", "audit", "list", "--tenant", "acme"], "").await);
    let acme: Vec<&str> = acme.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(acme, ["tenant.set_preset", "webhooks.remove", "webhooks.add", "credentials.set", "tenant.create"]);
    let future = json(&fx.ok(&["--json", "audit", "list", "--since", "2999-01-01"], "").await);
    assert_eq!(future, json!([]));
    let since = all[1]["at"].as_str().unwrap();
    let recent = json(&fx.ok(&["--json", "audit", "list", "--since", since], "").await);
    assert_eq!(recent.as_array().map(Vec::len), Some(2), "{recent}");
    let table = fx.ok(&["audit", "list", "--tenant", "globex"], "").await;
    assert!(table.contains("tenant.create") && table.contains("local") && !table.contains("acme"), "{table}");
    let out = fx.command(&["audit", "list", "--since", "yesterday"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("since `yesterday` is neither"), "{stderr}");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_changes_are_audited_sqlite() {
    command_line_changes_are_audited(Fixture::sqlite("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_changes_are_audited_postgres() {
    command_line_changes_are_audited(Fixture::postgres("").await).await;
}
