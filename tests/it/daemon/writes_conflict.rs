//! A conflict as a user reads it: an update submitted with an old `--base-version` of a
//! HubSpot contact ends `conflict`, and `tributary writes show` (and `ctl writes show`)
//! puts both versions side by side with the command that overrides it, which works.
//! (What conflicts and `--force` do in the store: `writes_effects.rs`.)

use tributary::store::WriteState;
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::Fixture;
use super::writes_crash::{SEEDED, connected, settled};

/// The simulator's current `updatedAt` of contact `id` (`1`-based).
fn version(sim: &SimHandle, id: u64) -> String {
    let contact = sim.expected_record("contacts", id - 1).expect("the contact exists");
    contact["updatedAt"].as_str().expect("a contact's updatedAt").to_owned()
}

/// Submits an update of contact `id` based on `base` with `tributary writes submit`.
async fn submit_update(fx: &Fixture, id: u64, base: &str, first_name: &str) -> String {
    let id = id.to_string();
    let record = serde_json::json!({ "first_name": first_name }).to_string();
    let args = ["writes", "submit", "--tenant", "acme", "--provider", "hubspot", "--entity", "contact"];
    let args: Vec<&str> = args.into_iter().chain(["--op", "update", "--id", &id, "--base-version", base]).collect();
    let said = fx.ok(&args, &record).await;
    let words: Vec<&str> = said.split_whitespace().collect();
    assert!(words.len() == 3 && words[0] == "write" && words[2] == "pending", "{said}");
    words[1].to_owned()
}

fn patches(sim: &SimHandle, id: u64) -> usize {
    let path = format!("/crm/v3/objects/contacts/{id}");
    sim.writes_received().iter().filter(|w| w.method == "PATCH" && w.path == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_of_a_newer_object_is_a_conflict_shown_with_both_versions_until_forced() {
    let sim = start(SimConfig::new(Provider::HubSpot, SEEDED)).await.unwrap();
    let fx = Fixture::sqlite("").await;
    connected(&fx, &sim).await;
    let daemon = fx.start("d", 1).await;

    // Based on a version older than the provider's: nothing is written.
    let provider_version = version(&sim, 1);
    let old = "2000-01-01T00:00:00.000Z";
    let stale = submit_update(&fx, 1, old, "Stale").await;
    let done = settled(&fx, &stale).await;
    assert_eq!(done.write.state, WriteState::Conflict, "{done:#?}");
    assert_eq!(done.write.result_version.as_deref(), Some(provider_version.as_str()), "{done:#?}");
    assert_eq!(patches(&sim, 1), 0, "a conflict overwrites nothing");

    let shown = fx.ok(&["writes", "show", &stale], "").await;
    for line in [
        "state: conflict".to_owned(),
        format!("  provider's version: {provider_version}"),
        format!("  write's base:       {old}"),
        format!("  to overwrite it anyway: tributary writes retry {stale} --force"),
    ] {
        assert!(shown.lines().any(|l| l == line), "`{line}` in:\n{shown}");
    }
    let socket = daemon.socket.to_str().expect("UTF-8 path");
    assert_eq!(fx.ok(&["ctl", "--socket", socket, "writes", "show", &stale], "").await, shown);

    // Forced: written over the newer version.
    let said = fx.ok(&["writes", "retry", &stale, "--force"], "").await;
    assert_eq!(said.trim_end(), format!("write {stale} pending"));
    let done = settled(&fx, &stale).await;
    assert_eq!(done.write.state, WriteState::Succeeded, "{done:#?}");
    assert_eq!(patches(&sim, 1), 1);
    let contact = sim.expected_record("contacts", 0).unwrap();
    assert_eq!(contact.pointer("/properties/firstname").and_then(|v| v.as_str()), Some("Stale"), "{contact}");
    drop(daemon);
    fx.finish().await;
}
