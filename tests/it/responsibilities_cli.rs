//! `tributary responsibilities …`, as an operator runs it.

use tributary::model::{TenantId, UserId};
use tributary::store::Store;

use crate::support::cli::Env;
use crate::support::json;

const ASSIGN: [&str; 6] = ["responsibilities", "assign", "--tenant", "acme", "--provider", "hubspot"];

fn assign<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    ASSIGN.iter().copied().chain(extra.iter().copied()).collect()
}

#[tokio::test]
async fn responsibilities_are_assigned_listed_and_removed() {
    let env = Env::new();
    env.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--subdomain", "acme", "--preset", "aptem_hubspot"]);
    for user in ["alice", "bob"] {
        env.ok(&["users", "add", user, "--name", user, "--tenant", "acme", "--role", "sales"]);
    }
    let store = Store::connect(&env.url()).await.unwrap();
    let acme = TenantId::parse("acme").unwrap();

    let said = env.ok(&assign(&["--user", "alice", "--as", "owner"]));
    assert!(said.contains("alice is owner of acme/hubspot"), "{said}");
    assert!(
        said.contains(
            "data_source, usage_pattern, performance_metrics, error_reporting, optimization_suggestion, \
             configuration (default) after every run"
        ),
        "{said}"
    );
    let bob = json(
        &env.ok(&[
            &["--json"][..],
            &assign(&["--user", "bob", "--as", "contributor", "--scope", "usage_pattern, data_source"]),
            &["--auto-contribute", "false"],
        ]
        .concat()),
    );
    assert_eq!(bob["responsibility"], "contributor");
    assert_eq!(bob["scope"], serde_json::json!(["data_source", "usage_pattern"]));
    assert_eq!(bob["explicit_scope"], true);
    assert_eq!(bob["auto_contribute"], false);

    let listed = json(&env.ok(&["--json", "responsibilities", "list", "--tenant", "acme"]));
    let users: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["alice", "bob"]);
    let table = env.ok(&["responsibilities", "list", "--tenant", "acme", "--provider", "hubspot"]);
    let line = table.lines().find(|l| l.contains("bob")).expect("bob's row");
    assert!(
        line.contains("contributor") && line.contains("no") && line.contains("data_source, usage_pattern"),
        "{line}"
    );
    assert!(env.ok(&["responsibilities", "list", "--tenant", "acme", "--provider", "aptem"]).contains("(none)"));

    // Bad words are named with the accepted ones; nothing changes.
    let err = env.fails(&assign(&["--user", "bob", "--as", "boss"]));
    assert!(err.contains("unknown responsibility `boss`"), "{err}");
    assert!(err.contains("owner, admin, user, viewer, contributor, reviewer, maintainer"), "{err}");
    let err = env.fails(&assign(&["--user", "bob", "--as", "user", "--scope", "usage_pattern,gossip"]));
    assert!(err.contains("unknown contribution kind `gossip` in --scope"), "{err}");
    assert!(err.contains("data_source, usage_pattern, performance_metrics, error_reporting"), "{err}");
    let err = env.fails(&assign(&["--user", "bob", "--as", "user", "--auto-contribute", "maybe"]));
    assert!(err.contains("maybe") && err.contains("true") && err.contains("false"), "{err}");
    let err = env.fails(&assign(&["--user", "carol", "--as", "user"]));
    assert!(err.contains("user `carol` is not a member of tenant `acme`"), "{err}");
    let err = env.fails(&[
        "responsibilities",
        "assign",
        "--tenant",
        "acme",
        "--provider",
        "ghost",
        "--user",
        "bob",
        "--as",
        "user",
    ]);
    assert!(err.contains("unknown provider `ghost`") && err.contains("hubspot"), "{err}");
    let err = env.fails(&["responsibilities", "list", "--tenant", "nowhere"]);
    assert!(err.contains("tenant `nowhere` not found"), "{err}");
    let bob_now = store.responsibility(&acme, &"hubspot".parse().unwrap(), &UserId::parse("bob").unwrap()).await;
    assert_eq!(bob_now.unwrap().unwrap().responsibility.as_str(), "contributor");

    let removed = env.ok(&["responsibilities", "remove", "--tenant", "acme", "--provider", "hubspot", "--user", "bob"]);
    assert!(removed.contains("removed the responsibility of bob for acme/hubspot"), "{removed}");
    let err = env.fails(&["responsibilities", "remove", "--tenant", "acme", "--provider", "hubspot", "--user", "bob"]);
    assert!(err.contains("user `bob` has no responsibility for acme/hubspot"), "{err}");

    let audit = store.list_audit(Some(&acme), 20).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.action.starts_with("responsibility.") && e.outcome == tributary::model::AuditOutcome::Ok)
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    // The refused attempts are audited as errors, with their message.
    let failed = audit.iter().find(|e| e.action == "responsibility.remove" && e.message.is_some());
    assert!(failed.is_some_and(|e| e.message.as_deref().unwrap().contains("has no responsibility")), "{audit:#?}");
    assert_eq!(
        actions,
        [
            ("responsibility.remove", "cli:ops"),
            ("responsibility.assign", "cli:ops"),
            ("responsibility.assign", "cli:ops")
        ]
    );
    store.close().await;
}
