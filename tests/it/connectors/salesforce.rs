use serde_json::Value;
use tributary::model::{ConnectionStatus, Owner, RunOutcome};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};

/// Salesforce's default query batch (the manifest asks for no other).
const BATCH: u64 = 2_000;

/// A tenant on the `bud_salesforce` preset: Salesforce accounts are its employers. The
/// token response's `instance_url` (the simulator) is where data calls go.
fn tenant(sim: &SimHandle, extra: &str) -> String {
    format!(
        "preset = \"bud_salesforce\"\n[providers.salesforce]\nvariables = {{ login_url = \"{}\" }}\n{extra}",
        sim.base_url()
    )
}

fn assert_employer(row: &Value, expected: &Value) {
    assert_eq!(row["crm_id"], expected["Id"]);
    assert_eq!(row["name"], expected["Name"]);
    assert_eq!(row["domain"], expected["Website"]);
    assert_eq!(row["account_manager"], expected["OwnerId"]);
    assert_eq!(row["crm_provider"], "Salesforce");
}

#[tokio::test]
async fn accounts_become_employers_then_incremental_reads_only_the_changes() {
    let n = 2_300;
    let sim = start(SimConfig::new(Provider::Salesforce, n)).await.unwrap();
    let h = Harness::new("salesforce", &tenant(&sim, ""), &sim).await;
    let run = h.sync("accounts").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.updated), (n as i64, n as i64, 0));
    assert_eq!(run.stats.pages, 2);
    assert!(h.records("company").await.is_empty(), "accounts map to employers here");
    let stored = h.records("employer").await;
    assert_eq!(stored.len() as u64, n);
    for i in [0, 1, 1_999, 2_000, n - 1] {
        let expected = sim.expected_record("accounts", i).unwrap();
        assert_employer(&stored[&text(&expected["Id"])].data, &expected);
    }
    let cursor = run.stats.cursor_after.clone().expect("a cursor after the full sync");

    // Modified accounts come back with nothing an employer maps changed (opportunities
    // below carry the content check); one account is new.
    for i in [5u64, 1_000] {
        assert!(sim.modify("accounts", i));
    }
    let added = sim.add("accounts", 1).unwrap().start;
    let inc = h.sync("accounts").await;
    ok(&inc);
    assert_eq!(inc.cursor_before.as_deref(), Some(cursor.as_str()));
    assert_eq!((inc.stats.inserted, inc.stats.updated), (1, 0));
    assert_eq!(inc.stats.unchanged, inc.stats.fetched - 1);
    // `SystemModstamp >=` at second precision re-reads the boundary account.
    assert!((3..=4).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    let expected = sim.expected_record("accounts", added).unwrap();
    assert_employer(&h.records("employer").await[&text(&expected["Id"])].data, &expected);
}

#[tokio::test]
async fn opportunities_incremental_updates_exactly_the_modified_ones() {
    let n = 500;
    let sim = start(SimConfig::new(Provider::Salesforce, n)).await.unwrap();
    let extra = "[providers.salesforce.streams.opportunities]\nenabled = true\n";
    let h = Harness::new("salesforce", &tenant(&sim, extra), &sim).await;
    ok(&h.sync("opportunities").await);
    let check = |row: &Value, expected: &Value| {
        assert_eq!(row["external_id"], expected["Id"]);
        assert_eq!(row["name"], expected["Name"]);
        assert_eq!(row["amount"].as_f64(), expected["Amount"].as_f64());
        assert_eq!(row["stage"], expected["StageName"]);
        assert_eq!(row["close_date"], expected["CloseDate"]);
        assert_eq!(row["company_id"], expected["AccountId"]);
    };
    let changed = [0u64, 250, 499];
    for i in changed {
        modify_until_changed(&sim, "opportunities", i, &["SystemModstamp"]);
    }
    let inc = h.sync("opportunities").await;
    ok(&inc);
    assert_eq!((inc.stats.inserted, inc.stats.updated), (0, 3));
    assert!((3..=4).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    let stored = h.records("deal").await;
    assert_eq!(stored.len() as u64, n);
    for i in changed.into_iter().chain([1, 498]) {
        let expected = sim.expected_record("opportunities", i).unwrap();
        check(&stored[&text(&expected["Id"])].data, &expected);
    }
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_batch_and_partial_last_batch() {
    super::assert_pagination_edges(
        BATCH,
        |n| SimConfig::new(Provider::Salesforce, n),
        |sim| tenant(sim, ""),
        "salesforce",
        "accounts",
        "employer",
    )
    .await;
}

#[tokio::test]
async fn throttling_403_is_waited_out_and_a_dead_refresh_token_needs_reauth() {
    let faults = tributary_simulator::Faults::none().rate_limit_every(2).retry_after_secs(0);
    let sim = start(SimConfig::new(Provider::Salesforce, 2_500).faults(faults)).await.unwrap();
    let h = Harness::new("salesforce", &tenant(&sim, ""), &sim).await;
    let run = h.sync("accounts").await;
    ok(&run);
    assert_eq!(run.stats.inserted, 2_500);
    assert_eq!(run.stats.rate_limit_waits, 1, "the second request is throttled");
    assert_eq!(run.stats.http_calls, 3);

    sim.revoke();
    let failed = h.sync("accounts").await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    assert!(failed.stats.error.as_deref().unwrap_or("").contains("invalid_grant"), "{:?}", failed.stats.error);
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::NeedsReauth);
}
