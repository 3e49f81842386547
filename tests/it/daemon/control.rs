//! The control socket of a running daemon: triggers, bad requests and scopes.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tributary::control::protocol::{Command as Ctl, Scope, Target};
use tributary::model::{RunOutcome, RunTrigger};
use tributary::simulator::{Provider, SimConfig, SimHandle, start};

use super::{Fixture, NEVER, started_runs, target};
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
        Ctl::Jobs(target("acme", None, None)),
        Ctl::Pause(target("acme", None, None)),
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
