//! The control socket of a running daemon: triggers, bad requests and scopes; webhook
//! endpoints managed by the operator and by tenant admins.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tributary::control::protocol::{
    Command as Ctl, Scope, Target, WebhookAdd, WebhookCommand, WebhookDeliveries, WebhookId, WebhookList, WebhookReplay,
};
use tributary::model::{RunOutcome, RunTrigger};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::outbound::{Mode, Receiver, WEBHOOKS};
use super::{Fixture, NEVER, eventually, started_runs, target};
use crate::support::json;

/// An Aptem tenant body pointing at `sim`, scheduled `schedule`.
pub fn aptem_tenant(sim: &SimHandle, schedule: &str) -> String {
    format!("preset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\nschedule = \"{schedule}\"\n", sim.api_base())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_trigger_starts_a_run_at_once_and_its_records_are_stored() {
    let sim = start(SimConfig::new(Provider::Aptem, 1_500)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let daemon = fx.start("d", 4).await;
    assert!(fx.runs("acme").await.is_empty(), "nothing is due before the trigger");

    let reply = daemon.ok(Ctl::Trigger(target("acme", Some("aptem"), Some("learners")))).await;
    let runs = started_runs(&reply);
    assert_eq!(runs.len(), 1, "the reply carries the started run's id: {reply}");
    assert_eq!(reply["triggered"][0]["state"], "running", "{reply}");
    let run = fx.finished_run("acme", runs[0]).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    assert_eq!(run.trigger, RunTrigger::Manual);
    assert_eq!((run.stats.fetched, run.stats.inserted), (1_500, 1_500));

    // The records are in the store, as `records list` reads them.
    let records = json(&fx.ok(&["--json", "records", "list", "--tenant", "acme", "--entity", "learner"], "").await);
    assert_eq!(records["total"], 1_500, "{records}");
    // The socket lists the run; only the triggered stream ran.
    let listed = daemon.ok(Ctl::Runs(target("acme", None, None))).await;
    let listed = listed.as_array().expect("runs are a list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], runs[0].to_string());
    assert_eq!(listed[0]["outcome"], "success");
    drop(daemon);
    fx.finish().await;
}

/// Sends raw lines on one connection and reads one reply line per request line.
async fn raw_exchange(socket: &std::path::Path, lines: &[Vec<u8>]) -> Vec<Value> {
    let stream = UnixStream::connect(socket).await.expect("connect to the control socket");
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut replies = Vec::new();
    for line in lines {
        write.write_all(line).await.expect("send a line");
        write.write_all(b"\n").await.expect("send a newline");
        let mut answer = String::new();
        reader.read_line(&mut answer).await.expect("read a reply");
        replies.push(json(answer.trim()));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_replies_and_tenant_admins_stay_within_their_tenant() {
    let sim = start(SimConfig::new(Provider::Aptem, 20)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    // Globex's token is wrong: its runs fail, and the error is Globex's alone.
    fx.connect("globex", &aptem_tenant(&sim, NEVER), &[("aptem", json!({ "api_token": "wrong" }))]).await;
    let daemon = fx.start("d", 4).await;

    // Malformed and unknown requests: one error reply each, on a connection that stays open.
    let bad: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"[1, 2, 3]".to_vec(),
        br#"{"cmd":"status"}"#.to_vec(),
        br#"{"v":2,"cmd":"status"}"#.to_vec(),
        br#"{"v":1}"#.to_vec(),
        br#"{"v":1,"cmd":"explode"}"#.to_vec(),
        br#"{"v":1,"cmd":"trigger","tenant":"acme","colour":"red"}"#.to_vec(),
        br#"{"v":1,"scope":"root","cmd":"status"}"#.to_vec(),
        br#"{"v":1,"cmd":"trigger","tenant":"Not A Tenant!"}"#.to_vec(),
        br#"{"v":1,"cmd":"trigger","tenant":"nobody"}"#.to_vec(),
        br#"{"v":1,"cmd":"pause","tenant":"nobody"}"#.to_vec(),
        vec![0xff, 0xfe, b'{'],
        vec![b'x'; 70 * 1024],
    ];
    let mut lines = bad.clone();
    lines.push(br#"{"v":1,"cmd":"status"}"#.to_vec());
    let replies = raw_exchange(&daemon.socket, &lines).await;
    for (line, reply) in bad.iter().zip(&replies) {
        let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
        assert_eq!(reply["ok"], false, "{shown}: {reply}");
        assert_eq!(reply["v"], 1, "{shown}: {reply}");
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()), "{shown}: {reply}");
    }
    let last = replies.last().expect("a status reply");
    assert_eq!(last["ok"], true, "the same connection still answers: {last}");
    // A client that hangs up mid-line disturbs nothing.
    let mut hangup = UnixStream::connect(&daemon.socket).await.unwrap();
    hangup.write_all(br#"{"v":1,"cmd":"sta"#).await.unwrap();
    drop(hangup);

    let failed = started_runs(&daemon.ok(Ctl::Trigger(target("globex", Some("aptem"), Some("learners")))).await);
    assert_eq!(fx.finished_run("globex", failed[0]).await.outcome, RunOutcome::Failed);

    let admin = Scope::Tenant { tenant: "acme".into() };
    let refused = [
        Ctl::Drain,
        Ctl::Reload,
        Ctl::Tenants,
        Ctl::Jobs(target("globex", None, None)),
        Ctl::Pause(target("globex", None, None)),
        Ctl::Runs(target("globex", None, None)),
        Ctl::Runs(Target::default()),
        Ctl::Trigger(target("globex", None, None)),
    ];
    for command in refused {
        let name = command.name();
        let reply = daemon.request(admin.clone(), command).await;
        assert!(!reply.ok, "a tenant admin may not `{name}` here");
        assert!(reply.error.as_deref().is_some_and(|e| !e.is_empty()), "{name}: {:?}", reply.error);
    }
    let out = fx
        .command(&["ctl", "--socket", daemon.socket.to_str().unwrap(), "--as-tenant", "acme", "drain"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs the operator scope"));

    // What the admin may do, it does, and sees its own tenant only.
    let reply = daemon.request(admin.clone(), Ctl::Trigger(target("acme", Some("aptem"), None))).await;
    assert!(reply.ok, "{:?}", reply.error);
    for id in started_runs(&reply.data.unwrap()) {
        assert_eq!(fx.finished_run("acme", id).await.outcome, RunOutcome::Success);
    }
    let runs = daemon.request(admin.clone(), Ctl::Runs(target("acme", None, None))).await.data.unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert!(runs.as_array().unwrap().iter().all(|r| r["tenant"] == "acme"), "{runs}");
    let status = daemon.request(admin, Ctl::Status).await.data.unwrap();
    assert!(status["last_errors"].as_array().unwrap().iter().all(|e| e["tenant"] == "acme"), "{status}");
    assert!(status.get("jobs").is_none(), "job counts span tenants: {status}");

    // The operator sees Globex's error, and the daemon runs on.
    let status = daemon.ok(Ctl::Status).await;
    assert_eq!(status["daemon"]["state"], "running", "{status}");
    assert!(status["last_errors"].as_array().unwrap().iter().any(|e| e["tenant"] == "globex"), "{status}");
    drop(daemon);
    fx.finish().await;
}

fn add_endpoint(tenant: Option<&str>, url: &str, events: &[&str]) -> Ctl {
    Ctl::Webhooks(WebhookCommand::Add(WebhookAdd {
        tenant: tenant.map(Into::into),
        url: url.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
    }))
}

fn list_endpoints(tenant: Option<&str>) -> Ctl {
    Ctl::Webhooks(WebhookCommand::List(WebhookList { tenant: tenant.map(Into::into) }))
}

/// The commands on one endpoint.
fn on_endpoint(id: &str) -> [Ctl; 4] {
    let id = id.to_owned();
    [
        Ctl::Webhooks(WebhookCommand::Remove(WebhookId { id: id.clone() })),
        Ctl::Webhooks(WebhookCommand::Test(WebhookId { id: id.clone() })),
        Ctl::Webhooks(WebhookCommand::Deliveries(WebhookDeliveries { id: id.clone(), limit: None })),
        Ctl::Webhooks(WebhookCommand::Replay(WebhookReplay { id, message: None })),
    ]
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array().expect("a list of endpoints").iter().map(|e| e["id"].as_str().expect("an id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoints_through_the_socket_and_tenant_admins_manage_only_their_own() {
    let sim = start(SimConfig::new(Provider::Aptem, 1)).await.unwrap();
    let fx = Fixture::sqlite(WEBHOOKS).await;
    for tenant in ["acme", "globex"] {
        fx.connect(tenant, &aptem_tenant(&sim, NEVER), &[]).await;
    }
    let daemon = fx.start("d", 2).await;
    let receiver = Receiver::start(Mode::Status(200)).await;
    let admin = Scope::Tenant { tenant: "acme".into() };

    // The operator registers a Globex endpoint and an operator-wide one; each reply
    // carries the endpoint's secret.
    let globex = daemon.ok(add_endpoint(Some("globex"), "https://hooks.example.com/globex", &["run.failed"])).await;
    let everyone = daemon.ok(add_endpoint(None, "https://hooks.example.com/all", &["*"])).await;
    assert_eq!(globex["endpoint"]["tenant_id"], "globex", "{globex}");
    assert_eq!(everyone["endpoint"]["tenant_id"], Value::Null, "{everyone}");
    let (globex_id, everyone_id) =
        (globex["endpoint"]["id"].as_str().unwrap(), everyone["endpoint"]["id"].as_str().unwrap());

    // Acme's admin registers its own endpoint, but none for everyone or for Globex.
    let reply = daemon.request(admin.clone(), add_endpoint(Some("acme"), &receiver.url, &["webhook.test"])).await;
    assert!(reply.ok, "{:?}", reply.error);
    let mine = reply.data.unwrap();
    let mine_id = mine["endpoint"]["id"].as_str().unwrap().to_owned();
    let mut secrets = vec![];
    for added in [&globex, &everyone, &mine] {
        let secret = added["secret"].as_str().expect("the secret, once");
        assert!(secret.starts_with("whsec_"), "{added}");
        secrets.push(secret.to_owned());
    }
    receiver.set_secret(&secrets[2]);
    for (command, needle) in [
        (add_endpoint(None, &receiver.url, &["*"]), "operator-wide"),
        (add_endpoint(Some("globex"), &receiver.url, &["*"]), "tenant `globex`"),
        (list_endpoints(Some("globex")), "tenant `globex`"),
    ] {
        let name = command.name();
        let reply = daemon.request(admin.clone(), command).await;
        assert!(!reply.ok && reply.error.as_deref().unwrap().contains(needle), "{name}: {reply:?}");
    }

    // The operator lists every endpoint, the admin Acme's only; no list shows a secret.
    let all = daemon.ok(list_endpoints(None)).await;
    assert_eq!(ids(&all), [globex_id, everyone_id, mine_id.as_str()]);
    let own = daemon.request(admin.clone(), list_endpoints(None)).await.data.unwrap();
    assert_eq!(ids(&own), [mine_id.as_str()]);
    assert_eq!(ids(&daemon.request(admin.clone(), list_endpoints(Some("acme"))).await.data.unwrap()), [&mine_id]);
    for text in [all.to_string(), own.to_string()] {
        assert!(!text.contains("whsec_") && !text.contains("secret"), "{text}");
    }

    // To the admin, Globex's endpoint and the operator-wide one are exactly like one that
    // does not exist, for every command; and they are left as they were.
    for foreign in [globex_id, everyone_id] {
        for (theirs, missing) in on_endpoint(foreign).into_iter().zip(on_endpoint("ep_missing")) {
            let name = theirs.name();
            let theirs = daemon.request(admin.clone(), theirs).await;
            let missing = daemon.request(admin.clone(), missing).await;
            assert!(!theirs.ok && !missing.ok, "{name}");
            let theirs = theirs.error.unwrap().replace(foreign, "ID");
            assert_eq!(theirs, missing.error.unwrap().replace("ep_missing", "ID"), "{name}");
            assert_eq!(theirs, "no webhook endpoint `ID`");
        }
        assert!(fx.store.list_webhook_messages(foreign, 10).await.unwrap().is_empty(), "no test event queued");
    }
    assert_eq!(ids(&daemon.ok(list_endpoints(None)).await).len(), 3, "nothing was removed");

    // Its own endpoint: a test event arrives signed with the secret it was given, and
    // the delivery log shows the attempt.
    let [remove, test, deliveries, replay] = on_endpoint(&mine_id);
    let queued = daemon.request(admin.clone(), test).await;
    assert_eq!(queued.data.as_ref().map(|d| d["queued"].clone()), Some(json!(1)), "{queued:?}");
    eventually("the test event to arrive", || async { (receiver.delivered().len() == 1).then_some(()) }).await;
    assert_eq!(receiver.seen.lock().unwrap().bad_signatures, 0);
    let log = eventually("the attempt in the delivery log", || async {
        let reply = daemon.request(admin.clone(), deliveries.clone()).await;
        let log = reply.data.unwrap_or_default();
        (log.as_array().is_some_and(|l| l.len() == 1)).then_some(log)
    })
    .await;
    assert_eq!(log[0]["status"], 200, "{log}");
    assert_eq!(log[0]["event_type"], "webhook.test", "{log}");
    assert!(!log.to_string().contains("whsec_"), "{log}");
    let replayed = daemon.request(admin.clone(), replay).await;
    assert_eq!(replayed.data.as_ref().map(|d| d["requeued"].clone()), Some(json!(0)), "{replayed:?}");

    // Bad input gets a clear error.
    for (command, needle) in [
        (add_endpoint(Some("acme"), "ftp://hooks.example.com/", &["*"]), "only http and https"),
        (add_endpoint(Some("acme"), "not a url", &["*"]), "invalid URL"),
        (add_endpoint(Some("acme"), &receiver.url, &["run.exploded"]), "unknown event `run.exploded`"),
        (add_endpoint(Some("acme"), &receiver.url, &[]), "no event"),
        (add_endpoint(Some("nobody"), &receiver.url, &["*"]), "no tenant `nobody`"),
        (Ctl::Webhooks(WebhookCommand::Deliveries(WebhookDeliveries { id: mine_id.clone(), limit: Some(0) })), "limit"),
    ] {
        let name = command.name();
        let reply = daemon.request(Scope::Operator, command).await;
        assert!(!reply.ok && reply.error.as_deref().unwrap().contains(needle), "{name}: {reply:?}");
    }

    // `tributary ctl webhooks …` sends the same commands and prints as `webhooks …` does.
    let socket = daemon.socket.to_str().unwrap();
    let listed = fx.ok(&["ctl", "--socket", socket, "--as-tenant", "acme", "webhooks", "list"], "").await;
    assert!(listed.contains(&mine_id) && !listed.contains(globex_id) && !listed.contains(everyone_id), "{listed}");
    let added = fx
        .ok(
            &["ctl", "--socket", socket, "--as-tenant", "acme", "webhooks", "add", "--tenant", "acme"]
                .into_iter()
                .chain(["--url", "https://hooks.example.com/2", "--events", "run.failed,run.succeeded"])
                .collect::<Vec<_>>(),
            "",
        )
        .await;
    assert!(added.contains("signing secret (shown once): whsec_"), "{added}");
    let out = fx
        .command(&["ctl", "--socket", socket, "--as-tenant", "acme", "webhooks", "test", globex_id])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no webhook endpoint"), "{out:?}");

    // The admin removes its endpoint; the others stay.
    assert!(daemon.request(admin.clone(), remove).await.ok);
    let left = daemon.ok(list_endpoints(None)).await;
    assert_eq!(ids(&left).len(), 3, "{left}");
    assert!(!ids(&left).contains(&mine_id.as_str()), "{left}");
    assert!(fx.store.list_webhook_messages(&mine_id, 10).await.unwrap().is_empty(), "its messages went with it");

    // No secret reached the daemon's log.
    let text = daemon.log_text();
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret in the log");
    }
    assert!(!text.contains("whsec_"), "a secret in the log:\n{text}");
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_webhook_targets_are_refused_through_the_socket_unless_allowed() {
    let fx = Fixture::sqlite("").await;
    let daemon = fx.start("d", 1).await;
    for url in ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]/hook", "http://169.254.169.254/"] {
        let reply = daemon.request(Scope::Operator, add_endpoint(None, url, &["*"])).await;
        assert!(!reply.ok, "{url}");
        let error = reply.error.unwrap();
        assert!(error.contains("allow_private_targets"), "{url}: {error}");
    }
    assert!(daemon.request(Scope::Operator, add_endpoint(None, "https://93.184.216.34/hook", &["*"])).await.ok);
    assert_eq!(ids(&daemon.ok(list_endpoints(None)).await).len(), 1);
    drop(daemon);
    fx.finish().await;
}
