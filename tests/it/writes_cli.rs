//! `tributary writes …`, as an operator runs it: a submitted write is in the outbox at
//! once (checked against the catalog and the tenant's connections first), an idempotency
//! key returns the same write, and list, show, retry and cancel act on it.

use chrono::{Duration, Utc};
use tributary::store::{Store, WriteSettle, WriteState};

use crate::support::cli::Env;
use crate::support::json;

const SUBMIT: [&str; 8] = ["writes", "submit", "--tenant", "acme", "--provider", "hubspot", "--entity", "contact"];

fn submit<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    SUBMIT.iter().copied().chain(extra.iter().copied()).collect()
}

fn env() -> Env {
    let env = Env::new();
    env.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--subdomain", "acme", "--preset", "aptem_hubspot"]);
    env.ok(&["tenant", "create", "--id", "globex", "--name", "Globex", "--subdomain", "globex", "--preset", "aptem"]);
    env
}

/// Runs a command with `input` on stdin; its stdout, which it must succeed with.
fn ok_with(env: &Env, args: &[&str], input: &str) -> String {
    let out = env.with_stdin(args, input);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command with `input` on stdin that must fail; its stderr.
fn fails_with(env: &Env, args: &[&str], input: &str) -> String {
    let out = env.with_stdin(args, input);
    assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn writes_are_submitted_listed_shown_and_cancelled() {
    let env = env();
    let record = r#"{"email": "ada@example.com", "first_name": "Ada"}"#;
    let said = ok_with(&env, &submit(&["--op", "create"]), record);
    assert!(said.starts_with("write wr_") && said.trim_end().ends_with(" pending"), "{said}");
    let id = said.split_whitespace().nth(1).unwrap().to_owned();

    // Stored before the answer: the store has it, with the record as given.
    let store = Store::connect(&env.url()).await.unwrap();
    let stored = store.get_write(&id).await.unwrap().expect("the write is stored");
    assert_eq!(stored.write.state, WriteState::Pending);
    assert_eq!(stored.write.payload_json(), json(record));

    // An idempotency key answers with the same write; a different request under it is refused.
    let keyed = submit(&["--json", "--op", "update", "--id", "101", "--idempotency-key", "k-1", "--base-version", "7"]);
    let first = json(&ok_with(&env, &keyed, record));
    assert_eq!((first["created"].as_bool(), first["write"]["state"].as_str()), (Some(true), Some("pending")));
    assert_eq!(first["write"]["payload"], json(record));
    assert_eq!(first["write"]["base_version"], "7");
    let again = json(&ok_with(&env, &keyed, record));
    assert_eq!(again["created"], false);
    assert_eq!(again["write"]["id"], first["write"]["id"]);
    let said = ok_with(&env, &submit(&["--op", "update", "--id", "101", "--idempotency-key", "k-1"]), record);
    assert!(said.contains("already submitted with idempotency key `k-1`"), "{said}");
    let err = fails_with(&env, &keyed, r#"{"email": "other@example.com"}"#);
    assert!(err.contains("idempotency key `k-1`") && err.contains("different request"), "{err}");

    // Listed newest first; filtered by state.
    let listed = json(&env.ok(&["--json", "writes", "list", "--tenant", "acme"]));
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first["write"]["id"].as_str().unwrap(), &id]);
    let table = env.ok(&["writes", "list"]);
    let line = table.lines().find(|l| l.contains(&id)).expect("the create's row");
    assert!(line.contains("hubspot") && line.contains("contact") && line.contains("(new)"), "{line}");

    // Shown with its (no) attempts; cancelled once, then the state is named.
    let shown = env.ok(&["writes", "show", &id]);
    assert!(shown.contains("state: pending") && shown.contains("no attempts yet"), "{shown}");
    assert!(shown.contains("ada@example.com"), "{shown}");
    assert!(env.ok(&["writes", "cancel", &id]).contains("cancelled"));
    let err = env.fails(&["writes", "cancel", &id]);
    assert!(err.contains("already cancelled") && err.contains("only pending writes"), "{err}");
    let cancelled = json(&env.ok(&["--json", "writes", "list", "--state", "cancelled"]));
    assert_eq!(cancelled.as_array().unwrap().len(), 1);
    let err = env.fails(&["writes", "list", "--state", "done"]);
    assert!(err.contains("unknown state `done`") && err.contains("in_flight"), "{err}");
    let err = env.fails(&["writes", "show", "wr_missing"]);
    assert!(err.contains("no write `wr_missing`"), "{err}");
    store.close().await;
}

#[tokio::test]
async fn failed_and_conflicting_writes_are_retried() {
    let env = env();
    let said = ok_with(&env, &submit(&["--op", "update", "--id", "101", "--base-version", "3"]), r#"{"a": 1}"#);
    let id = said.split_whitespace().nth(1).unwrap().to_owned();
    let err = env.fails(&["writes", "retry", &id]);
    assert!(err.contains("is pending and cannot be retried"), "{err}");

    // What an executor would do: claim it and settle it failed, with the provider's message.
    let store = Store::connect(&env.url()).await.unwrap();
    store.claim_writes("worker", Utc::now() + Duration::minutes(5), 10).await.unwrap();
    let failed = WriteSettle::Failed {
        status: Some(400),
        message: "Property values were not valid: email".into(),
        error_class: "validation".into(),
    };
    store.settle_write(&id, "worker", 85, &failed).await.unwrap().unwrap();
    let err = env.fails(&["writes", "cancel", &id]);
    assert!(err.contains("is failed and cannot be cancelled"), "{err}");
    let shown = env.ok(&["writes", "show", &id]);
    assert!(shown.contains("state: failed") && shown.contains("Property values were not valid"), "{shown}");
    let line = shown.lines().find(|l| l.contains("85 ms")).expect("the attempt's row");
    assert!(line.contains("400") && line.contains("85 ms") && line.contains("validation"), "{line}");

    let retried = json(&env.ok(&["--json", "writes", "retry", &id, "--force"]));
    assert_eq!((retried["state"].as_str(), retried["force"].as_bool()), (Some("pending"), Some(true)));
    let detail = json(&env.ok(&["--json", "writes", "show", &id]));
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 1, "the attempt is kept");
    assert_eq!(detail["write"]["error"], serde_json::Value::Null);
    store.close().await;
}

#[test]
fn submissions_are_checked_before_they_are_stored() {
    let env = env();
    let record = r#"{"email": "ada@example.com"}"#;
    for (args, input, needle) in [
        (submit(&["--op", "create"]), "{\"email\": ", "the record on stdin is not valid JSON"),
        (submit(&["--op", "create"]), "[1, 2]", "the record must be a JSON object, not an array"),
        (submit(&["--op", "create"]), "", "no record on stdin"),
        (submit(&["--op", "upsert"]), record, "unknown operation `upsert` (known: create, update, delete, comment)"),
        (submit(&["--op", "update"]), record, "`update` needs the object's id"),
        (submit(&["--op", "create", "--id", "101"]), record, "`create` takes no id"),
        (submit(&["--op", "comment", "--id", "101"]), record, "declares no `comment` of `contact`"),
        (
            vec![
                "writes",
                "submit",
                "--tenant",
                "acme",
                "--provider",
                "hubspot",
                "--entity",
                "learner",
                "--op",
                "create",
            ],
            record,
            "connector `hubspot` declares no writes of `learner` (it declares: company, contact, deal)",
        ),
        (
            vec![
                "writes",
                "submit",
                "--tenant",
                "globex",
                "--provider",
                "hubspot",
                "--entity",
                "contact",
                "--op",
                "create",
            ],
            record,
            "provider `hubspot` is not enabled for tenant `globex`",
        ),
        (
            vec![
                "writes",
                "submit",
                "--tenant",
                "initech",
                "--provider",
                "hubspot",
                "--entity",
                "contact",
                "--op",
                "create",
            ],
            record,
            "no tenant `initech`",
        ),
        (
            submit(&["--op", "create", "--owner", "alice"]),
            record,
            "user `alice` has no enabled connection to `hubspot`",
        ),
    ] {
        let err = fails_with(&env, &args, input);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A huge stdin is refused without being read whole.
    let huge = format!("{{\"notes\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let err = fails_with(&env, &submit(&["--op", "create"]), &huge);
    assert!(err.contains("larger than the limit of 1048576 bytes"), "{err}");
    let listed = json(&env.ok(&["--json", "writes", "list"]));
    assert_eq!(listed, serde_json::json!([]), "nothing was stored");
}

/// `tributary prune` as an operator runs it: a dry run counts, a real one removes what
/// `[retention]` no longer keeps (here: a finished write, once it is old enough — the
/// repository's settings keep writes 90 days, so nothing goes now), `--json` says both.
#[tokio::test]
async fn prune_counts_and_removes_by_hand() {
    let env = env();
    let said = ok_with(&env, &submit(&["--op", "create"]), r#"{"email": "ada@acme.example.com"}"#);
    let id = said.split_whitespace().nth(1).unwrap().to_owned();
    env.ok(&["writes", "cancel", &id]);
    let dry = env.ok(&["prune", "--dry-run"]);
    assert!(dry.contains("WOULD REMOVE"), "{dry}");
    let line = dry.lines().find(|l| l.starts_with("writes")).unwrap_or_default();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["writes", "0"], "{dry}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "prune"])).unwrap();
    assert_eq!(json["dry_run"], false);
    assert_eq!(json["removed"]["writes"], 0, "{json}");
    let store = Store::connect(&env.url()).await.unwrap();
    assert!(store.get_write(&id).await.unwrap().is_some(), "a cancelled write younger than 90 days stays");
    assert!(env.fails(&["prune", "--everything"]).contains("--everything"));
}
