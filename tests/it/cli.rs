//! The built binary, as an operator runs it.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use crate::support::cli::Env;
use crate::support::json;

#[test]
fn config_check_passes_on_the_repository_and_fails_listing_every_error() {
    let env = Env::new();
    assert!(env.ok(&["config", "check"]).contains("configuration is valid"));
    let broken = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for f in ["entities.toml", "presets.toml"] {
        std::fs::copy(repo.join(f), broken.path().join(f)).unwrap();
    }
    let presets = broken.path().join("presets.toml");
    let text = std::fs::read_to_string(&presets).unwrap();
    let text = text.replacen("schedule = \"hourly\"", "schedule = \"often\"", 1)
        + "\n[presets.x]\ntitle = \"X\"\nproviders = [\"ghost\"]\n";
    std::fs::write(&presets, text).unwrap();
    let out = env.run(&["--config", broken.path().to_str().unwrap(), "config", "check"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("presets.toml: providers.aptem.schedule: invalid schedule `often`"), "{stderr}");
    assert!(stderr.contains("presets.toml: presets.x.providers[0]: preset names provider `ghost`"), "{stderr}");
    let out = env.run(&["--config", broken.path().to_str().unwrap(), "--json", "config", "check"]);
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["ok"], false);
    assert!(report["errors"].as_array().unwrap().len() >= 2);
}

#[test]
fn the_issue_example_tenant_round_trip() {
    let env = Env::new();
    let created = env.ok(&[
        "tenant",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme Training Ltd",
        "--subdomain",
        "acme",
        "--preset",
        "aptem_hubspot",
    ]);
    assert!(created.contains("created tenant acme on preset aptem_hubspot"), "{created}");
    let out =
        env.run(&["tenant", "create", "--id", "acme", "--name", "Again", "--subdomain", "acme", "--preset", "aptem"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = repo.join("config/tenants/acme.toml");
    let applied = env.ok(&["tenant", "apply", file.to_str().unwrap()]);
    assert!(applied.contains("providers.aptem.schedule: hourly → every 15 minutes"), "{applied}");
    assert!(env.ok(&["tenant", "apply", file.to_str().unwrap()]).contains("unchanged"));

    let explained = env.ok(&["tenant", "show", "acme", "--explain"]);
    let line = explained.lines().find(|l| l.contains("mappings.learner.division")).unwrap();
    assert!(line.contains("custom_field_123") && line.contains("[tenant override]"), "{line}");
    let line = explained.lines().find(|l| l.contains("mappings.learner.external_id")).unwrap();
    assert!(line.contains("learner_id") && line.contains("[preset aptem_hubspot@r"), "{line}");

    let shown = json(&env.ok(&["--json", "tenant", "show", "acme", "--explain"]));
    assert_eq!(shown["preset"], "aptem_hubspot");
    assert_eq!(shown["providers"]["aptem"]["config"]["schedule"], "every 15 minutes");
    assert_eq!(shown["providers"]["aptem"]["origins"]["schedule"]["kind"], "override");
    assert_eq!(
        shown["providers"]["hubspot"]["config"]["mappings"]["employer"]["account_manager"],
        "properties.account_manager"
    );
    assert_eq!(shown["providers"]["hubspot"]["connection"]["status"], "pending");

    // The repository's config/tenants/acme.toml owns acme's preset (see
    // `operator_cli::set_preset_refuses_a_file_managed_tenant`); without it the store does.
    let bare = tempfile::tempdir().unwrap();
    for f in ["entities.toml", "presets.toml"] {
        std::fs::copy(repo.join("config").join(f), bare.path().join(f)).unwrap();
    }
    let switched = env.ok(&["--config", bare.path().to_str().unwrap(), "tenant", "set-preset", "acme", "aptem"]);
    assert!(switched.contains("connection hubspot disabled (its records stay)"), "{switched}");
    let list = json(&env.ok(&["--json", "tenant", "list"]));
    assert_eq!(list[0]["preset"], "aptem");
    assert!(env.ok(&["tenant", "rebase", "acme"]).contains("preset aptem"));
    let missing = env.run(&["tenant", "show", "nobody"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("tenant `nobody` not found"));
}

#[test]
fn credentials_come_from_stdin_are_encrypted_and_never_printed() {
    let env = Env::new();
    env.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--subdomain", "acme", "--preset", "aptem_hubspot"]);
    let secret = "s3cr3t-token-value-9f8e";
    let out = env.with_stdin(
        &["credentials", "set", "--tenant", "acme", "--provider", "aptem"],
        format!("{{\"api_token\": \"{secret}\"}}"),
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("stored credentials for acme/aptem"));
    assert!(stderr.contains("generated a new master key") && stderr.contains("tributary.master-key"), "{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    let key_file = env.dir.path().join("tributary.master-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Nothing on disk holds the plaintext (database, WAL, shared memory).
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    let shown = env.ok(&["credentials", "show"]);
    assert!(shown.contains("acme") && shown.contains("connected") && !shown.contains(secret), "{shown}");
    let listed = json(&env.ok(&["--json", "credentials", "show", "--tenant", "acme"]));
    let aptem = listed.as_array().unwrap().iter().find(|c| c["provider"] == "aptem").unwrap();
    assert_eq!(aptem["has_credentials"], true);
    assert_eq!(aptem["version"], 1);

    // Bad input is refused with a reason and changes nothing.
    for (provider, input, needle) in [
        ("hubspot", "{\"client_id\": \"x\"}", "missing: client_secret, refresh_token"),
        ("aptem", "not json", "not valid JSON"),
        ("ghost", "{}", "unknown provider `ghost`"),
    ] {
        let out = env.with_stdin(&["credentials", "set", "--tenant", "acme", "--provider", provider], input);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let listed = json(&env.ok(&["--json", "credentials", "show"]));
    assert_eq!(listed.as_array().unwrap().iter().filter(|c| c["has_credentials"] == true).count(), 1);
}

#[test]
fn a_configured_master_key_file_is_used() {
    let env = Env::new();
    env.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--subdomain", "acme", "--preset", "aptem"]);
    let key = env.dir.path().join("configured.key");
    crate::support::write_private(&key, "11".repeat(32).as_bytes());
    let mut cmd = env.cmd(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"]);
    cmd.env("TRIBUTARY_MASTER_KEY_FILE", &key).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"{\"api_token\":\"t\"}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!env.dir.path().join("tributary.master-key").exists());
    let listed = json(&env.ok(&["--json", "credentials", "show"]));
    assert_eq!(listed[0]["key_id"], tributary::secrets::MasterKey::from_bytes([0x11; 32]).id());
}

#[test]
fn every_command_explains_itself() {
    let env = Env::new();
    for args in [
        vec!["--help"],
        vec!["tenant", "--help"],
        vec!["tenant", "create", "--help"],
        vec!["credentials", "set", "--help"],
        vec!["config", "check", "--help"],
        vec!["presets", "--help"],
        vec!["connectors", "--help"],
    ] {
        let out = env.ok(&args);
        assert!(out.contains("Usage:"), "{args:?}");
    }
    let presets = json(&env.ok(&["--json", "presets", "list"]));
    assert_eq!(presets.as_array().unwrap().len(), 7);
    assert!(env.ok(&["presets", "show", "aptem_hubspot"]).contains("tags.crm_provider = HubSpot"));
    assert!(env.ok(&["connectors", "list"]).contains("session_token"));
}

// The simulator runs in this process while the binary blocks a thread: multi-threaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_runs_and_records_from_the_command_line() {
    let sim =
        tributary_simulator::start(tributary_simulator::SimConfig::new(tributary_simulator::Provider::Aptem, 1_200))
            .await
            .unwrap();
    let env = Env::new();
    let file = env.dir.path().join("acme.toml");
    std::fs::write(
        &file,
        format!(
            "id = \"acme\"\nname = \"Acme\"\nsubdomain = \"acme\"\npreset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\n",
            sim.api_base()
        ),
    )
    .unwrap();
    env.ok(&["tenant", "apply", file.to_str().unwrap()]);
    // Without credentials the sync refuses and says how to fix it.
    let out = env.run(&["sync", "--tenant", "acme", "--provider", "aptem", "--stream", "learners"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("credentials set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = env
        .with_stdin(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"], sim.credentials().to_string());
    assert!(out.status.success());
    let synced = env.ok(&["sync", "--tenant", "acme", "--provider", "aptem"]);
    assert!(synced.contains("aptem/learners: success") && synced.contains("fetched 1200, inserted 1200"), "{synced}");
    assert!(synced.contains("aptem/organizations: success"), "{synced}");

    let runs = json(&env.ok(&["--json", "runs", "list", "--tenant", "acme"]));
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let learners = runs.iter().find(|r| r["stream"] == "learners").unwrap();
    assert_eq!(learners["fetched"], 1200);
    assert_eq!(learners["outcome"], "success");
    let shown = env.ok(&["runs", "show", learners["id"].as_str().unwrap()]);
    assert!(shown.contains("inserted        1200"), "{shown}");
    let records =
        json(&env.ok(&["--json", "records", "list", "--tenant", "acme", "--entity", "learner", "--limit", "5"]));
    assert_eq!(records["total"], 1200);
    assert_eq!(records["records"].as_array().unwrap().len(), 5);

    // A revoked token fails the run: non-zero exit, the error in the run log.
    sim.revoke();
    let out = env.run(&["sync", "--tenant", "acme", "--provider", "aptem", "--stream", "learners"]);
    assert!(!out.status.success());
    let last = json(&env.ok(&["--json", "runs", "list", "--limit", "1"]));
    assert_eq!(last[0]["outcome"], "failed");
    assert!(last[0]["error"].as_str().unwrap().contains("rejects the credentials"));
    let bad = env.run(&["runs", "show", "not-a-uuid"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a run id"));
}

// The simulator runs in this process while the binary blocks a thread: multi-threaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_changes_pages_through_the_change_feed() {
    let sim = tributary_simulator::start(tributary_simulator::SimConfig::new(tributary_simulator::Provider::Aptem, 25))
        .await
        .unwrap();
    let env = Env::new();
    let file = env.dir.path().join("acme.toml");
    std::fs::write(
        &file,
        format!(
            "id = \"acme\"\nname = \"Acme\"\nsubdomain = \"acme\"\npreset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\n",
            sim.api_base()
        ),
    )
    .unwrap();
    env.ok(&["tenant", "apply", file.to_str().unwrap()]);
    let out = env
        .with_stdin(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"], sim.credentials().to_string());
    assert!(out.status.success());
    // Nothing synced yet: an empty feed.
    assert!(env.ok(&["records", "changes", "--tenant", "acme"]).contains("no changes after 0"));
    env.ok(&["sync", "--tenant", "acme", "--provider", "aptem", "--stream", "learners"]);
    let runs = json(&env.ok(&["--json", "runs", "list", "--tenant", "acme"]));
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();

    // Page through the learners ten at a time with the printed `next_since`.
    let mut since = 0;
    let mut seen = Vec::new();
    for expected in [10, 10, 5, 0] {
        let since_arg = since.to_string();
        let page = json(&env.ok(&[
            "--json", "records", "changes", "--tenant", "acme", "--entity", "learner", "--since", &since_arg,
            "--limit", "10",
        ]));
        let changes = page["changes"].as_array().unwrap();
        assert_eq!(changes.len(), expected, "{page}");
        for change in changes {
            assert_eq!(change["entity"], "learner");
            assert_eq!(change["kind"], "inserted");
            assert_eq!(change["run_id"], run_id.as_str());
            assert!(change["external_id"].is_string() && change["changed_at"].is_string(), "{change}");
            seen.push(change["seq"].as_i64().unwrap());
        }
        let next = page["next_since"].as_i64().unwrap();
        assert_eq!(next, seen.last().copied().unwrap_or(0));
        since = next;
    }
    // One sync of 25 learners: the numbers 1 to 25, in order.
    assert_eq!(seen, (1..=25).collect::<Vec<i64>>());

    // The table names each change and says how to continue.
    let text = env.ok(&["records", "changes", "--tenant", "acme", "--since", "20", "--limit", "3"]);
    assert!(text.contains("SEQ") && text.contains("EXTERNAL ID") && text.contains("KIND"), "{text}");
    assert!(text.contains("inserted") && text.contains(&run_id), "{text}");
    assert!(text.contains("3 changes; next: --since 23"), "{text}");

    // A sync that changes nothing adds nothing to the feed.
    env.ok(&["sync", "--tenant", "acme", "--provider", "aptem", "--stream", "learners"]);
    assert!(env.ok(&["records", "changes", "--tenant", "acme", "--since", "25"]).contains("no changes after 25"));

    // Bad input is an error, not a panic.
    assert!(env.fails(&["records", "changes", "--tenant", "acme", "--entity", "nope"]).contains("unknown entity"));
    assert!(env.fails(&["records", "changes", "--tenant", "acme", "--since=-1"]).contains("--since must be"));
}

/// Jobs follow every tenant command at once, without a daemon: a tenant switched to
/// another preset has its new provider's jobs when the command returns.
#[test]
fn tenant_commands_leave_the_jobs_following_them() {
    let env = Env::new();
    let created = json(&env.ok(&[
        "--json",
        "tenant",
        "create",
        "--id",
        "initco",
        "--name",
        "Initco",
        "--subdomain",
        "initco",
        "--preset",
        "bud",
    ]));
    assert_eq!(created["jobs"]["created"], 2, "{created}");
    let switched = json(&env.ok(&["--json", "tenant", "set-preset", "initco", "aptem"]));
    // The switch itself disabled Bud's connection and its jobs; the jobs Aptem needs are
    // made by the command.
    assert_eq!(switched["jobs"]["created"], 2, "{switched}");
    let back = json(&env.ok(&["--json", "tenant", "set-preset", "initco", "bud"]));
    assert_eq!(back["jobs"]["created"], 0, "Bud's jobs come back, none made twice: {back}");
    let stored = env.with_stdin(
        &["credentials", "set", "--tenant", "initco", "--provider", "bud"],
        r#"{"client_id":"c","client_secret":"s"}"#,
    );
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    let out = std::process::Command::new("sqlite3").arg(env.db()).arg("SELECT count(*) FROM reconcile_queue").output();
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "every command took its tenant off the queue");
    }
}
