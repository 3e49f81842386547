//! The operator's view through the built binary: bounded credential input, validation
//! that names file and key, read-only commands that never create a store.

use std::path::Path;
use std::process::Output;

use crate::support::cli::Env;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn credentials_larger_than_the_limit_are_refused_from_stdin() {
    let env = Env::new();
    env.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--subdomain", "acme", "--preset", "aptem"]);
    // 10 MB of credential value.
    let huge = format!("{{\"api_token\": \"{}\"}}", "a".repeat(10 * 1024 * 1024));
    let out = env.with_stdin(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"], huge.as_bytes());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("larger than the limit of 65536 bytes"), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "credentials", "show"])).unwrap();
    assert!(listed.as_array().unwrap().iter().all(|c| c["has_credentials"] == false), "{listed}");
    // A normal credential set still goes in.
    let out =
        env.with_stdin(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"], br#"{"api_token":"t"}"#);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A copy of the repository's `config/` directory.
fn config_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    for f in ["entities.toml", "presets.toml", "tributary.toml", "tenants/acme.toml"] {
        std::fs::copy(repo.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn config_check_rejects_a_cron_that_never_fires_and_a_bad_listen_address() {
    let env = Env::new();
    let config = config_copy();
    let tenant = config.path().join("tenants/acme.toml");
    let text = std::fs::read_to_string(&tenant).unwrap().replace("\"every 15 minutes\"", "\"0 0 30 2 *\"");
    std::fs::write(&tenant, text).unwrap();
    let settings = config.path().join("tributary.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replacen("[daemon]", "[daemon]\nhttp_listen = \"localhost\"", 1)).unwrap();
    let out = env.run(&["--config", config.path().to_str().unwrap(), "config", "check"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "acme.toml: providers.aptem.schedule: invalid schedule `0 0 30 2 *`: the cron expression never fires"
        ),
        "{err}"
    );
    assert!(err.contains("tributary.toml: daemon.http_listen: `localhost` is not an address"), "{err}");
}

#[test]
fn config_check_refuses_the_removed_replicas_key_and_says_why() {
    let env = Env::new();
    let config = config_copy();
    let settings = config.path().join("tributary.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replacen("[daemon]", "[daemon]\nreplicas = 2", 1)).unwrap();
    let out = env.run(&["--config", config.path().to_str().unwrap(), "config", "check"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("tributary.toml: daemon.replicas: was removed"), "{err}");
    assert!(err.contains("share every rate limit through the store"), "{err}");
    assert!(!err.contains("unknown field"), "one message for the key, not a parse error: {err}");
}

#[test]
fn connectors_check_rejects_unclosed_templates_and_zero_rate_limits() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("badcrm.toml");
    std::fs::write(
        &file,
        r#"name = "badcrm"
title = "Bad CRM"
category = "crm"
base_url = "https://{subdomain.badcrm.example"
default_schedule = "1h"
rate_limit = { requests = 0, per_secs = 0 }

[auth]
kind = "api_key"
header = "X-Key"
value = "{api_key"

[streams.companies]
entity = "company"
[streams.companies.request]
path = "/companies/{cursor"
records = "/items"
query = { since = "{cursor}", owner = "{subdomain" }
headers = { X-Trace = "{subdomain" }
body = { filter = "{cursor" }

[mappings.company]
external_id = { from = "id", transform = ["string"] }
name = "name"
"#,
    )
    .unwrap();
    let out = env.run(&["connectors", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    for key in [
        "base_url",
        "auth.value",
        "streams.companies.request.path",
        "streams.companies.request.query.owner",
        "streams.companies.request.headers.X-Trace",
        "streams.companies.request.body",
    ] {
        assert!(err.contains(&format!("badcrm.toml: {key}: unclosed `{{`")), "{key}: {err}");
    }
    assert!(err.contains("badcrm.toml: rate_limit.requests: must be greater than zero"), "{err}");
    assert!(err.contains("badcrm.toml: rate_limit.per_secs: must be greater than zero"), "{err}");
}

#[test]
fn read_only_commands_never_create_a_database() {
    let env = Env::new();
    let url = format!("sqlite://{}", env.db().display());
    for args in [
        vec!["runs", "list"],
        vec!["runs", "show", "0190b6e4-0000-7000-8000-000000000000"],
        vec!["records", "list", "--tenant", "acme", "--entity", "learner"],
        vec!["tenant", "list"],
        vec!["tenant", "show", "acme"],
        vec!["credentials", "show"],
        vec!["intelligence", "show", "--tenant", "acme"],
        vec!["contributions", "list", "--tenant", "acme"],
        vec!["users", "list"],
        vec!["responsibilities", "list", "--tenant", "acme"],
    ] {
        let out = env.run(&args);
        assert!(!out.status.success(), "{args:?} succeeded without a store");
        let err = stderr(&out);
        assert!(err.contains(&format!("no database at `{url}`")), "{args:?}: {err}");
        assert!(!env.db().exists(), "{args:?} created {}", env.db().display());
    }
    // A PostgreSQL database that does not exist is named too, and not created.
    let server = std::env::var("TRIBUTARY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let missing = format!("{}/tributary_missing_{}", server.rsplit_once('/').unwrap().0, uuid::Uuid::now_v7().simple());
    let out = env.cmd(&["runs", "list"]).env("TRIBUTARY_DATABASE_URL", &missing).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot open the store at {missing}")), "{err}");
    // The creating commands still create the store.
    env.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--subdomain", "acme", "--preset", "aptem"]);
    assert!(env.db().exists());
    assert!(env.ok(&["tenant", "list"]).contains("acme"));
}

#[test]
fn set_preset_refuses_a_file_managed_tenant() {
    let env = Env::new();
    let config = config_copy();
    let file = config.path().join("tenants/acme.toml");
    let with = |args: &[&str]| {
        let mut all = vec!["--config", config.path().to_str().unwrap()];
        all.extend_from_slice(args);
        env.run(&all)
    };
    let out = with(&["tenant", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with(&["tenant", "set-preset", "acme", "aptem"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("managed by the tenant file {}", file.display())), "{err}");
    assert!(err.contains("set `preset = \"aptem\"` there"), "{err}");
    let listed: serde_json::Value =
        serde_json::from_slice(&with(&["--json", "tenant", "list"]).stdout).expect("tenant list as JSON");
    assert_eq!(listed[0]["preset"], "aptem_hubspot", "nothing changed");

    // Changing the file and applying it is the way; naming the file's own preset is a no-op switch.
    let text = std::fs::read_to_string(&file).unwrap().replace("preset = \"aptem_hubspot\"", "preset = \"aptem\"");
    std::fs::write(&file, text).unwrap();
    let out = with(&["tenant", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&with(&["--json", "tenant", "list"]).stdout).unwrap();
    assert_eq!(listed[0]["preset"], "aptem");
    let out = with(&["tenant", "set-preset", "acme", "aptem"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

// The simulator runs in this process while the binary blocks a thread: multi-threaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_test_reads_one_page_per_stream_and_stores_nothing() {
    use tributary_simulator::{Provider, SimConfig, start};
    let sim = start(SimConfig::new(Provider::Aptem, 450)).await.unwrap();
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
    let args = ["connections", "test", "--tenant", "acme", "--provider", "aptem"];
    // Without credentials it says how to store them.
    let out = env.run(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("credentials set"), "{}", stderr(&out));

    let good = sim.credentials().to_string();
    let out = env.with_stdin(&["credentials", "set", "--tenant", "acme", "--provider", "aptem"], good.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let requests_before = sim.request_count();
    let tested = env.ok(&args);
    assert!(tested.contains("aptem/learners: ok — "), "{tested}");
    assert!(tested.contains("records on the first page") && tested.contains("→ learner"), "{tested}");
    assert!(tested.contains("fields from the first record: ") && tested.contains("external_id"), "{tested}");
    assert!(tested.contains("aptem/organizations: ok"), "{tested}");
    assert!(sim.request_count() > requests_before);
    let probes: serde_json::Value = serde_json::from_str(&env.ok(&[
        "--json",
        "connections",
        "test",
        "--tenant",
        "acme",
        "--provider",
        "aptem",
        "--stream",
        "learners",
    ]))
    .unwrap();
    assert_eq!(probes[0]["stream"], "learners");
    assert!(probes[0]["records"].as_u64().unwrap() > 0, "{probes}");
    assert!(probes[0]["error"].is_null(), "{probes}");
    // Nothing stored: no runs, no records.
    let runs: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "runs", "list"])).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 0, "{runs}");
    let records: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "records", "list", "--tenant", "acme", "--entity", "learner"]))
            .unwrap();
    assert_eq!(records["total"], 0);

    // Wrong credentials: the stream's error names the cause, exit non-zero.
    let out = env.with_stdin(
        &["credentials", "set", "--tenant", "acme", "--provider", "aptem"],
        br#"{"api_token":"wrong-token"}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&args);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("aptem/learners: error (auth)"), "{stdout}");
    let runs: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "runs", "list"])).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 0, "{runs}");
}

/// Applies a tenant `acme` with `providers` (TOML) and stores `provider`'s simulator credentials.
fn connect(env: &Env, preset: &str, providers: &str, provider: &str, creds: &str) {
    let file = env.dir.path().join("acme.toml");
    std::fs::write(
        &file,
        format!("id = \"acme\"\nname = \"Acme\"\nsubdomain = \"acme\"\npreset = \"{preset}\"\n{providers}"),
    )
    .unwrap();
    env.ok(&["tenant", "apply", file.to_str().unwrap()]);
    let out = env.with_stdin(&["credentials", "set", "--tenant", "acme", "--provider", provider], creds.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
}

// The simulator runs in this process while the binary blocks a thread: multi-threaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_progress_shows_the_total_without_a_terminal() {
    use tributary_simulator::{Provider, SimConfig, start};
    // Salesforce reports `totalSize`.
    let sim = start(SimConfig::new(Provider::Salesforce, 600).page_size_cap(200)).await.unwrap();
    let env = Env::new();
    let providers = format!("[providers.salesforce]\nvariables = {{ login_url = \"{}\" }}\n", sim.base_url());
    connect(&env, "bud_salesforce", &providers, "salesforce", &sim.credentials().to_string());

    let tested =
        env.ok(&["connections", "test", "--tenant", "acme", "--provider", "salesforce", "--stream", "accounts"]);
    assert!(tested.contains("records on the first page of 600"), "{tested}");

    let out = env.run(&["sync", "--tenant", "acme", "--provider", "salesforce", "--stream", "accounts"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("salesforce/accounts: 200 of 600 records (33%)"), "{err}");
    assert!(err.contains("ETA "), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("fetched 600"));
}

// The simulator runs in this process while the binary blocks a thread: multi-threaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_progress_says_when_it_waits_on_a_rate_limit() {
    use tributary_simulator::{Faults, Provider, SimConfig, start};
    // Bud answers every 2nd data request with 429 and `Retry-After: 2`.
    let faults = Faults::none().rate_limit_every(2).retry_after_secs(2);
    let sim = start(SimConfig::new(Provider::Bud, 600).faults(faults)).await.unwrap();
    let env = Env::new();
    let providers = format!(
        "[providers.bud]\nbase_url = \"{base}\"\nvariables = {{ auth_url = \"{base}\" }}\n",
        base = sim.base_url()
    );
    connect(&env, "bud", &providers, "bud", &sim.credentials().to_string());
    let out = env.run(&["sync", "--tenant", "acme", "--provider", "bud", "--stream", "learners"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("bud/learners: waiting on the rate limit: "), "{err}");
    assert!(err.contains("of 600 records ("), "{err}");
}

/// Every stderr line parsed as a JSON log event.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stderr(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect()
}

// The simulator runs in this process while the binary blocks a thread: multi-threaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_run_on_every_event_and_fatal_errors_are_json() {
    use tributary_simulator::{Provider, SimConfig, start};
    let sim = start(SimConfig::new(Provider::Aptem, 1_500)).await.unwrap();
    let env = Env::new();
    let providers = format!("[providers.aptem]\nbase_url = \"{}\"\n", sim.api_base());
    connect(&env, "aptem", &providers, "aptem", &sim.credentials().to_string());
    // Twice: the second run starts from a cursor.
    for _ in 0..2 {
        let out = env.run(&[
            "--log-format",
            "json",
            "sync",
            "--tenant",
            "acme",
            "--provider",
            "aptem",
            "--stream",
            "learners",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let events = json_lines(&out);
        assert!(events.len() >= 3, "{}", stderr(&out));
        for e in &events {
            for key in ["tenant", "provider", "stream", "run_id"] {
                let value = e["fields"].get(key).or_else(|| e["span"].get(key));
                assert!(value.is_some_and(|v| v.is_string()), "`{key}` missing from {e}");
            }
            let text = e.to_string();
            assert!(!text.contains("Some(") && !text.contains("None"), "Debug text in {text}");
        }
        assert!(events.iter().any(|e| {
            e["fields"]["message"].as_str().is_some_and(|m| m.contains("of 1500 records") || m.contains("records ·"))
        }));
    }

    // A revoked token: the run fails and the connection needs new credentials; those
    // events name the run too.
    sim.revoke();
    let out =
        env.run(&["--log-format", "json", "sync", "--tenant", "acme", "--provider", "aptem", "--stream", "learners"]);
    assert!(!out.status.success());
    let events = json_lines(&out);
    assert!(events.iter().any(|e| e["level"] == "WARN"), "{}", stderr(&out));
    for e in &events {
        for key in ["tenant", "provider", "stream", "run_id"] {
            let value = e["fields"].get(key).or_else(|| e["span"].get(key));
            assert!(value.is_some_and(|v| v.is_string()), "`{key}` missing from {e}");
        }
    }

    // A fatal start-up error is one JSON log line too.
    let config = config_copy();
    let presets = config.path().join("presets.toml");
    let text = std::fs::read_to_string(&presets).unwrap().replacen("schedule = \"hourly\"", "schedule = \"often\"", 1);
    std::fs::write(&presets, text).unwrap();
    let out = env.run(&["--log-format", "json", "--config", config.path().to_str().unwrap(), "run"]);
    assert!(!out.status.success());
    let events = json_lines(&out);
    assert_eq!(events.len(), 1, "{}", stderr(&out));
    assert_eq!(events[0]["level"], "ERROR");
    let message = events[0]["fields"]["message"].as_str().unwrap();
    assert!(message.contains("invalid schedule `often`"), "{message}");
}
