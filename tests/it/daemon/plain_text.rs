//! What operators read is never Rust debug output: the control socket's replies, `ctl`'s
//! output and the JSON log lines of the daemon and of `tributary sync` name tenants,
//! cursors, counts and scopes in plain words and plain JSON — no `Some(…)`, no `None`,
//! no `Tenant("globex")`, no `ReconcileCounts { created: 0, … }`.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tributary::model::RunOutcome;
use tributary_simulator::{Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Daemon, Fixture, NEVER};
use crate::support::json;

/// The first piece of Rust debug syntax in `text`, if any: `Some(`/`Ok(`/`Err(`, `None`
/// as a whole value (`cursor=None`, `"None"`, `(None, 3)`), a type name followed by `(` (a tuple struct or enum variant such as
/// `Tenant("globex")`) or by ` { field:` (a struct such as `ReconcileCounts { created: 0 }`).
fn debug_syntax(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let word_start = |i: usize| i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    for start in 0..chars.len() {
        if !word_start(start) || !chars[start].is_ascii_uppercase() {
            continue;
        }
        let mut end = start;
        while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
            end += 1;
        }
        let word: String = chars[start..end].iter().collect();
        let rest: String = chars[end..chars.len().min(end + 40)].iter().collect();
        let context = || chars[start..chars.len().min(end + 40)].iter().collect::<String>();
        let before = if start == 0 { ' ' } else { chars[start - 1] };
        let value_before = matches!(before, '"' | '=' | '(' | '[' | ' ' | ':');
        let value_after = rest.is_empty() || rest.starts_with(['"', ',', ')', ']', '}']);
        if word == "None" && value_before && value_after {
            return Some(context());
        }
        if rest.starts_with('(') {
            return Some(context());
        }
        if let Some(after) = rest.strip_prefix(" { ") {
            let field: String = after.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !field.is_empty() && after[field.len()..].starts_with(':') {
                return Some(context());
            }
        }
    }
    None
}

/// Asserts `text` (what `what` showed an operator) holds no debug syntax.
fn assert_plain(what: &str, text: &str) {
    if let Some(found) = debug_syntax(text) {
        panic!("{what} shows Rust debug output `{found}`:\n{text}");
    }
}

/// Sends one request line and returns the reply line exactly as the socket sent it.
async fn exchange(daemon: &Daemon, request: &Value) -> String {
    let stream = UnixStream::connect(&daemon.socket).await.expect("connect to the control socket");
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{request}\n").as_bytes()).await.expect("send a request");
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await.expect("read a reply");
    reply
}

/// Sends `request` as an operator; asserts it succeeded and its reply line is plain.
async fn plain_reply(daemon: &Daemon, request: Value) -> Value {
    let line = exchange(daemon, &request).await;
    assert_plain(&format!("the reply to {request}"), &line);
    let reply = json(line.trim());
    assert_eq!(reply["ok"], true, "{request}: {line}");
    reply["data"].clone()
}

#[test]
fn debug_syntax_is_recognised() {
    for debug in [
        r#"{"paused":"Tenant(\"globex\")"}"#,
        "cursor=Some(\"2026-01-01\")",
        r#"{"cursor":"None"}"#,
        "jobs=ReconcileCounts { created: 0, updated: 0 }",
        "Connection(TenantId(\"acme\"), ProviderId(\"aptem\"))",
        "error: Err(Timeout)",
        "cursor=None",
        "(None, 3)",
    ] {
        assert!(debug_syntax(debug).is_some(), "{debug}");
    }
    for plain in [
        r#"{"paused":"tenant globex"}"#,
        "cursor=2026-01-01 jobs=3 created, 0 rescheduled",
        r#"{"cursor":null,"error":"HTTP 401 Unauthorized (after 0 retries)","note":"None of it"}"#,
        "last_errors: (none)",
        "Nonexistent Sometimes Ok",
    ] {
        assert_eq!(debug_syntax(plain), None, "{plain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_replies_ctl_output_and_json_logs_are_plain_text() {
    let sim = start(SimConfig::new(Provider::Aptem, 300)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    // Globex's token is wrong: its runs fail, and their error reaches `status` and `runs`.
    fx.connect("globex", &aptem_tenant(&sim, NEVER), &[("aptem", json!({ "api_token": "wrong" }))]).await;
    // At Hooli, Ann's own HubSpot connection, whose runs contribute to the company's
    // integration intelligence.
    let hubspot = start(SimConfig::new(Provider::HubSpot, 60)).await.unwrap();
    let body = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n[roles.sales]\nstreams = [\"hubspot.*\"]\n",
        hubspot.base_url()
    );
    fx.connect("hooli", &body, &[]).await;
    fx.ok(&["users", "add", "ann", "--name", "Ann", "--tenant", "hooli", "--role", "sales"], "").await;
    fx.ok(&["users", "connect", "ann", "--tenant", "hooli", "--provider", "hubspot"], "").await;
    let grant = hubspot.new_grant().unwrap().to_string();
    fx.ok(&["credentials", "set", "--tenant", "hooli", "--provider", "hubspot", "--user", "ann"], &grant).await;
    let assign = ["responsibilities", "assign", "--tenant", "hooli", "--provider", "hubspot", "--user", "ann"];
    fx.ok(&[&assign[..], &["--as", "owner"]].concat(), "").await;

    // Syncs from the command line with JSON logs: Acme's twice (the second starts from a
    // cursor), and Ann's, which records contributions.
    let acme = ["sync", "--tenant", "acme", "--provider", "aptem", "--stream", "learners"];
    let ann = ["sync", "--tenant", "hooli", "--provider", "hubspot", "--user", "ann", "--stream", "contacts"];
    for sync in [&acme[..], &acme[..], &ann[..]] {
        let args = [&["--log-format", "json"][..], sync].concat();
        let out = fx.command(&args).stdin(std::process::Stdio::null()).output().await.expect("run the binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            json(line);
            assert_plain("`tributary sync`'s log", line);
        }
    }

    let daemon = fx.start("d", 2).await;
    let socket = daemon.socket.to_str().expect("UTF-8 path").to_owned();
    let v = |request: Value| {
        let mut request = request;
        request["v"] = json!(1);
        request
    };

    // Runs: triggered through the socket, one failing.
    for tenant in ["acme", "globex"] {
        let reply = plain_reply(&daemon, v(json!({ "cmd": "trigger", "tenant": tenant, "provider": "aptem" }))).await;
        for id in super::started_runs(&reply) {
            fx.finished_run(tenant, id).await;
        }
    }
    let reply = plain_reply(
        &daemon,
        v(json!({ "cmd": "trigger", "tenant": "hooli", "provider": "hubspot", "stream": "contacts" })),
    )
    .await;
    for id in super::started_runs(&reply) {
        assert_eq!(fx.finished_run("hooli", id).await.outcome, RunOutcome::Success);
    }
    let runs = fx.runs("globex").await;
    assert!(runs.iter().any(|r| r.outcome == RunOutcome::Failed), "globex's runs fail");
    let runs = fx.runs("acme").await;
    assert!(runs.iter().any(|r| r.outcome == RunOutcome::Success && r.cursor_before.is_some()), "a run from a cursor");

    // Every scope of pause and resume, then the read-only commands.
    let job = plain_reply(&daemon, v(json!({ "cmd": "jobs", "tenant": "acme" }))).await[0]["id"].clone();
    for cmd in ["pause", "resume"] {
        let paused = plain_reply(&daemon, v(json!({ "cmd": cmd, "tenant": "globex" }))).await;
        let word = if cmd == "pause" { "paused" } else { "resumed" };
        assert_eq!(paused, json!({ word: "tenant globex" }));
        plain_reply(&daemon, v(json!({ "cmd": cmd, "tenant": "acme", "provider": "aptem" }))).await;
        plain_reply(&daemon, v(json!({ "cmd": cmd, "tenant": "acme", "job": job }))).await;
    }
    for request in [
        json!({ "cmd": "status" }),
        json!({ "cmd": "tenants" }),
        json!({ "cmd": "jobs" }),
        json!({ "cmd": "runs" }),
        json!({ "cmd": "runs", "tenant": "globex" }),
        json!({ "cmd": "intelligence", "tenant": "acme" }),
        json!({ "cmd": "intelligence", "tenant": "hooli" }),
        json!({ "cmd": "reload" }),
    ] {
        plain_reply(&daemon, v(request)).await;
    }
    let status = plain_reply(&daemon, v(json!({ "cmd": "status" }))).await;
    assert!(
        status["last_errors"].as_array().is_some_and(|e| e.iter().any(|e| e["tenant"] == "globex")),
        "the failed run is among the last errors: {status}"
    );

    // `ctl` as an operator reads it, in words and as JSON.
    for args in [
        vec!["status"],
        vec!["tenants"],
        vec!["jobs", "--tenant", "acme"],
        vec!["runs"],
        vec!["pause", "globex"],
        vec!["resume", "globex"],
        vec!["pause", "acme", "aptem"],
        vec!["resume", "acme", "aptem"],
        vec!["intelligence", "hooli"],
        vec!["reload"],
    ] {
        for json_output in [false, true] {
            let mut all = if json_output { vec!["--json"] } else { vec![] };
            all.extend(["ctl", "--socket", socket.as_str()]);
            all.extend(&args);
            let out = fx.ok(&all, "").await;
            assert_plain(&format!("`{}`", all.join(" ")), &out);
        }
    }

    // The daemon's log: every line JSON, none with debug text.
    plain_reply(&daemon, v(json!({ "cmd": "drain" }))).await;
    let mut daemon = daemon;
    assert!(daemon.exit_within(super::PATIENCE).await.success(), "{}", daemon.log_text());
    let log = daemon.log_text();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        json(line);
        assert_plain("the daemon's log", line);
    }
    for message in
        ["jobs reconciled with the configuration", "run started", "contribution recorded", "configuration reloaded"]
    {
        assert!(log.contains(message), "the log has `{message}`:\n{log}");
    }
    fx.finish().await;
}
