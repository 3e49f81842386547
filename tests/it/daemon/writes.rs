//! Write-back through a running daemon's control socket: the operator submits for any
//! tenant, a tenant admin for its own only; to the admin, another tenant's write is
//! exactly like one that does not exist.

use serde_json::{Value, json};
use tributary::control::protocol::{Command as Ctl, Scope, WriteCommand, WriteId, WriteList, WriteRetry, WriteSubmit};

use super::{Fixture, NEVER};

/// A tenant with Aptem and HubSpot that never syncs on its own.
fn tenant_body() -> String {
    format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nschedule = \"{NEVER}\"\n"
    )
}

fn submit(tenant: &str, key: Option<&str>) -> Ctl {
    Ctl::Writes(WriteCommand::Submit(Box::new(WriteSubmit {
        tenant: tenant.into(),
        provider: "hubspot".into(),
        entity: "contact".into(),
        op: "create".into(),
        id: None,
        idempotency_key: key.map(Into::into),
        base_version: None,
        force: false,
        owner: None,
        record: json!({ "email": format!("someone@{tenant}.example.com") }),
    })))
}

fn list(tenant: Option<&str>) -> Ctl {
    Ctl::Writes(WriteCommand::List(WriteList { tenant: tenant.map(Into::into), ..WriteList::default() }))
}

/// The commands on one write.
fn on_write(id: &str) -> [Ctl; 3] {
    [
        Ctl::Writes(WriteCommand::Show(WriteId { id: id.into() })),
        Ctl::Writes(WriteCommand::Retry(WriteRetry { id: id.into(), force: true })),
        Ctl::Writes(WriteCommand::Cancel(WriteId { id: id.into() })),
    ]
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array().expect("a list of writes").iter().map(|w| w["id"].as_str().expect("an id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_socket_and_tenant_admins_act_on_their_own_only() {
    let fx = Fixture::sqlite("").await;
    for tenant in ["acme", "globex"] {
        fx.connect(tenant, &tenant_body(), &[]).await;
    }
    let daemon = fx.start("d", 1).await;
    let admin = Scope::Tenant { tenant: "acme".into() };

    // The operator submits for Globex; the answer is the stored write, pending.
    let theirs = daemon.ok(submit("globex", Some("k"))).await;
    assert_eq!((theirs["created"].as_bool(), theirs["write"]["state"].as_str()), (Some(true), Some("pending")));
    let theirs_id = theirs["write"]["id"].as_str().unwrap().to_owned();
    assert!(fx.store.get_write(&theirs_id).await.unwrap().is_some(), "stored before the answer");

    // Acme's admin submits for Acme (the same key is Acme's own), not for Globex.
    let reply = daemon.request(admin.clone(), submit("acme", Some("k"))).await;
    assert!(reply.ok, "{:?}", reply.error);
    let mine = reply.data.unwrap();
    assert_eq!(mine["created"], true);
    let mine_id = mine["write"]["id"].as_str().unwrap().to_owned();
    assert_ne!(mine_id, theirs_id);
    let again = daemon.request(admin.clone(), submit("acme", Some("k"))).await.data.unwrap();
    assert_eq!((again["created"].as_bool(), again["write"]["id"].as_str()), (Some(false), Some(mine_id.as_str())));
    for command in [submit("globex", None), list(Some("globex"))] {
        let name = command.name();
        let reply = daemon.request(admin.clone(), command).await;
        assert!(!reply.ok && reply.error.as_deref().unwrap().contains("tenant `globex`"), "{name}: {reply:?}");
    }

    // The operator lists both; the admin Acme's only.
    assert_eq!(ids(&daemon.ok(list(None)).await), [mine_id.as_str(), &theirs_id]);
    assert_eq!(ids(&daemon.request(admin.clone(), list(None)).await.data.unwrap()), [&mine_id]);

    // Globex's write is, to the admin, exactly a missing one, and it is left pending.
    for (theirs, missing) in on_write(&theirs_id).into_iter().zip(on_write("wr_missing")) {
        let name = theirs.name();
        let theirs = daemon.request(admin.clone(), theirs).await;
        let missing = daemon.request(admin.clone(), missing).await;
        assert!(!theirs.ok && !missing.ok, "{name}");
        let theirs = theirs.error.unwrap().replace(&theirs_id, "ID");
        assert_eq!(theirs, missing.error.unwrap().replace("wr_missing", "ID"), "{name}");
        assert_eq!(theirs, "no write `ID`");
    }
    // (Its connection has no credentials: the executor may have tried it and put it back
    // to wait for them, never ended it.)
    let left = fx.store.get_write(&theirs_id).await.unwrap().unwrap();
    assert!(!left.write.state.is_final(), "{left:?}");

    // Its own write: shown, then cancelled.
    let [show, _, cancel] = on_write(&mine_id);
    let shown = daemon.request(admin.clone(), show).await.data.unwrap();
    assert_eq!(shown["write"]["payload"], json!({"email": "someone@acme.example.com"}));
    // No request was sent: any attempt says the connection waits for credentials.
    for attempt in shown["attempts"].as_array().expect("attempts") {
        assert_eq!(attempt["status"], Value::Null, "{attempt}");
        assert_eq!(attempt["error"], "auth", "{attempt}");
    }
    let cancelled = daemon.request(admin.clone(), cancel).await.data.unwrap();
    assert_eq!(cancelled["state"], "cancelled");

    // `tributary ctl writes …` sends the same commands and prints as `writes …` does.
    let socket = daemon.socket.to_str().unwrap();
    let said = fx
        .ok(
            &["ctl", "--socket", socket, "--as-tenant", "acme", "writes", "submit", "--tenant", "acme"]
                .into_iter()
                .chain(["--provider", "hubspot", "--entity", "contact", "--op", "update", "--id", "101"])
                .collect::<Vec<_>>(),
            r#"{"email": "ada@acme.example.com"}"#,
        )
        .await;
    assert!(said.starts_with("write wr_") && said.trim_end().ends_with(" pending"), "{said}");
    let listed = fx.ok(&["ctl", "--socket", socket, "--as-tenant", "acme", "writes", "list"], "").await;
    assert!(listed.contains(&mine_id) && listed.contains("101") && !listed.contains(&theirs_id), "{listed}");
    drop(daemon);
    fx.finish().await;
}
