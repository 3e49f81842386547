//! The command line and the daemon end to end: a developer at acme, granted only HubSpot
//! contacts, connects HubSpot with their own credentials; `sync --user`, `tenant show
//! --explain`, the daemon's runs and a role change, as an operator sees them.

use std::process::Stdio;

use serde_json::Value;
use tributary::control::protocol::{Command as Ctl, Scope};
use tributary::model::{Owner, ProviderId, RunOutcome, RunRow, TenantId, UserId};
use tributary_simulator::{Provider, SimConfig, start};

use crate::daemon::{Fixture, NEVER, started_runs, target};
use crate::support::json;

/// Runs a command that must fail; returns its stderr.
async fn fails(fx: &Fixture, args: &[&str]) -> String {
    let out = fx.command(args).stdin(Stdio::null()).output().await.expect("run the binary");
    assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `run` succeeded on `stream` through Bob's own connection.
async fn bobs_run(fx: &Fixture, run: &RunRow, stream: &str) {
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    assert_eq!(run.stream.as_str(), stream);
    let (acme, bob) = (TenantId::parse("acme").unwrap(), UserId::parse("bob").unwrap());
    let hubspot = ProviderId::parse("hubspot").unwrap();
    let job = fx.store.get_job(&acme, run.job_id).await.unwrap().unwrap();
    let bobs = fx.store.get_connection(&acme, &hubspot, Owner::User(&bob)).await.unwrap().unwrap();
    assert_eq!(job.connection_id, bobs.id, "the job of Bob's connection ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_syncs_only_hubspot_contacts_from_the_command_line_and_the_daemon() {
    let sim = start(SimConfig::new(Provider::HubSpot, 60)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    let body = format!(
        "preset = \"aptem_hubspot\"\n[providers.aptem]\nschedule = \"{NEVER}\"\n\
         [providers.hubspot]\nbase_url = \"{}\"\nschedule = \"{NEVER}\"\n\
         [roles.developer]\nstreams = [\"hubspot.contacts\"]\n[roles.sales]\nstreams = [\"hubspot.*\"]\n",
        sim.base_url()
    );
    // The company stores no HubSpot credentials: whatever runs, runs on Bob's.
    fx.connect("acme", &body, &[]).await;
    let add = ["users", "add", "bob", "--name", "Bob Jones", "--email", "bob@example.com"];
    let out = fx.ok(&[&add[..], &["--tenant", "acme", "--role", "developer"]].concat(), "").await;
    assert!(out.contains("bob is now a member of acme as developer"), "{out}");
    let err = fails(&fx, &["users", "connect", "carol", "--tenant", "acme", "--provider", "hubspot"]).await;
    assert!(err.contains("user `carol` is not a member of tenant `acme`"), "{err}");
    let err = fails(&fx, &["users", "connect", "bob", "--tenant", "acme", "--provider", "jira"]).await;
    assert!(err.contains("provider `jira` is not enabled for tenant `acme`"), "{err}");
    let out = fx.ok(&["users", "connect", "bob", "--tenant", "acme", "--provider", "hubspot"], "").await;
    assert!(out.contains(&format!("syncs contacts ({NEVER})")), "{out}");
    assert!(out.contains("not companies: not granted to role `developer` at acme"), "{out}");
    assert!(out.contains("--user bob"), "says how to store the credentials: {out}");
    let err = fails(&fx, &["sync", "--tenant", "acme", "--provider", "hubspot", "--user", "bob"]).await;
    assert!(err.contains("connection acme/hubspot is pending"), "{err}");
    fx.ok(
        &["credentials", "set", "--tenant", "acme", "--provider", "hubspot", "--user", "bob"],
        &sim.new_grant().unwrap().to_string(),
    )
    .await;
    let shown = json(&fx.ok(&["--json", "credentials", "show", "--tenant", "acme"], "").await);
    let hubspot: Vec<&Value> = shown.as_array().unwrap().iter().filter(|c| c["provider"] == "hubspot").collect();
    assert_eq!(hubspot.len(), 2, "{shown}");
    assert_eq!((&hubspot[0]["user"], &hubspot[0]["has_credentials"]), (&Value::Null, &Value::Bool(false)));
    assert_eq!((&hubspot[1]["user"], &hubspot[1]["status"]), (&Value::from("bob"), &Value::from("connected")));

    // `sync --user` runs the granted stream; an ungranted one is refused with the reason.
    let runs =
        json(&fx.ok(&["--json", "sync", "--tenant", "acme", "--provider", "hubspot", "--user", "bob"], "").await);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (&runs[0]["stream"], &runs[0]["outcome"], &runs[0]["fetched"]),
        (&"contacts".into(), &"success".into(), &60.into())
    );
    let err =
        fails(&fx, &["sync", "--tenant", "acme", "--provider", "hubspot", "--user", "bob", "--stream", "companies"])
            .await;
    assert!(
        err.contains(
            "user `bob`'s connection to `hubspot` at tenant `acme` may not sync stream `companies`: \
             not granted to role `developer` at acme"
        ),
        "{err}"
    );
    // The company connection has no credentials of its own.
    let err = fails(&fx, &["sync", "--tenant", "acme", "--provider", "hubspot", "--stream", "contacts"]).await;
    assert!(err.contains("connection acme/hubspot is pending"), "{err}");

    // `tenant show` lists roles and user connections; `--explain` says why a stream is absent.
    let show = fx.ok(&["tenant", "show", "acme"], "").await;
    assert!(show.contains("developer  hubspot.contacts  (members: bob)"), "{show}");
    assert!(show.contains("user bob (developer) → hubspot: connected"), "{show}");
    assert!(show.contains("    syncs: contacts"), "{show}");
    let explain = fx.ok(&["tenant", "show", "acme", "--explain"], "").await;
    assert!(explain.contains("    not companies: not granted to role `developer` at acme"), "{explain}");
    let shown = json(&fx.ok(&["--json", "tenant", "show", "acme"], "").await);
    assert_eq!(shown["roles"]["developer"], serde_json::json!(["hubspot.contacts"]), "{shown}");
    assert_eq!(shown["user_connections"][0]["streams"][0]["reason"], "not granted to role `developer` at acme");
    let users = json(&fx.ok(&["--json", "users", "list", "--tenant", "acme"], "").await);
    assert_eq!(users[0]["memberships"][0]["role"], "developer", "{users}");

    // The daemon: triggering every HubSpot job at acme runs Bob's contacts job only.
    let daemon = fx.start("d", 2).await;
    let reply = daemon.ok(Ctl::Trigger(target("acme", Some("hubspot"), None))).await;
    let started = started_runs(&reply);
    assert_eq!(started.len(), 1, "{reply}");
    bobs_run(&fx, &fx.finished_run("acme", started[0]).await, "contacts").await;

    // A role change from the command line: the jobs follow at once, and the daemon runs
    // the newly granted stream on Bob's connection.
    let out = fx.ok(&["users", "set-role", "bob", "--tenant", "acme", "--role", "sales"], "").await;
    assert!(out.contains("bob's role at acme: developer → sales") && out.contains("1 created"), "{out}");
    let reply = daemon.ok(Ctl::Trigger(target("acme", Some("hubspot"), Some("companies")))).await;
    let started = started_runs(&reply);
    assert_eq!(started.len(), 1, "{reply}");
    bobs_run(&fx, &fx.finished_run("acme", started[0]).await, "companies").await;

    // Leaving acme: Bob's connection is disabled and nothing of his can be triggered.
    let out = fx.ok(&["users", "remove", "bob", "--tenant", "acme"], "").await;
    assert!(out.contains("1 of their connections there disabled"), "{out}");
    let reply = daemon.request(Scope::Operator, Ctl::Trigger(target("acme", Some("hubspot"), None))).await;
    assert!(!reply.ok, "{reply:?}");
    let explain = fx.ok(&["tenant", "show", "acme", "--explain"], "").await;
    assert!(explain.contains("user bob (no role) → hubspot: disabled"), "{explain}");
    drop(daemon);
    fx.finish().await;
}
