use serde_json::{Value, json};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};

/// The list page size the manifest asks for (`limit = 100`).
const PAGE: u64 = 100;

/// A tenant on the `aptem_hubspot` preset: HubSpot contacts are its employers.
fn tenant(sim: &SimHandle, extra: &str) -> String {
    format!("preset = \"aptem_hubspot\"\n[providers.hubspot]\nbase_url = \"{}\"\n{extra}", sim.base_url())
}

const ACCOUNT_MANAGER: &str =
    "[providers.hubspot.mappings.employer]\naccount_manager = \"properties.account_manager\"\n";

fn assert_employer(row: &Value, expected: &Value) {
    assert_eq!(row["crm_id"], expected["id"]);
    assert_eq!(row["name"], expected["properties"]["company"]);
    assert_eq!(row["account_manager"], expected["properties"]["account_manager"]);
    assert_eq!(row["crm_provider"], "HubSpot");
}

#[tokio::test]
async fn contacts_become_employers_with_the_account_manager_override_and_tag() {
    let n = 250;
    let sim = start(SimConfig::new(Provider::HubSpot, n)).await.unwrap();
    let h = Harness::new("hubspot", &tenant(&sim, ACCOUNT_MANAGER), &sim).await;
    let run = h.sync("contacts").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.updated), (n as i64, n as i64, 0));
    assert_eq!(run.stats.pages, 3);
    assert!(h.records("contact").await.is_empty(), "contacts map to employers here");
    let stored = h.records("employer").await;
    assert_eq!(stored.len() as u64, n);
    for i in [0, 1, 99, 100, 200, n - 1] {
        let expected = sim.expected_record("contacts", i).unwrap();
        assert_employer(&stored[&text(&expected["id"])].data, &expected);
    }
    let cursor = run.stats.cursor_after.clone().expect("a cursor after the full sync");

    // Three contacts change (a modification reassigns the account manager, which the
    // employer maps) and one is added.
    for i in [4u64, 120, 240] {
        assert!(sim.modify("contacts", i));
    }
    let added = sim.add("contacts", 1).unwrap().start;
    let inc = h.sync("contacts").await;
    ok(&inc);
    assert_eq!(inc.cursor_before.as_deref(), Some(cursor.as_str()));
    assert_eq!((inc.stats.inserted, inc.stats.updated), (1, 3));
    // The search filter is `GTE`: the boundary contact comes back too.
    assert!((4..=5).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    assert_eq!(inc.stats.unchanged, inc.stats.fetched - 4);
    let stored = h.records("employer").await;
    for i in [4u64, 120, 240] {
        let expected = sim.expected_record("contacts", i).unwrap();
        assert_employer(&stored[&text(&expected["id"])].data, &expected);
    }
    assert!(sim.requests_for("/crm/v3/objects/contacts/search") >= 1);
    let expected = sim.expected_record("contacts", added).unwrap();
    assert_employer(&h.records("employer").await[&text(&expected["id"])].data, &expected);
}

#[tokio::test]
async fn deals_incremental_reads_only_the_changed_and_added_deals() {
    let n = 300;
    let sim = start(SimConfig::new(Provider::HubSpot, n)).await.unwrap();
    let h = Harness::new("hubspot", &tenant(&sim, "[providers.hubspot.streams.deals]\nenabled = true\n"), &sim).await;
    let run = h.sync("deals").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted), (n as i64, n as i64));
    let check = |row: &Value, expected: &Value| {
        let p = &expected["properties"];
        assert_eq!(row["external_id"], expected["id"]);
        assert_eq!(row["name"], p["dealname"]);
        assert_eq!(row["stage"], p["dealstage"]);
        let amount: f64 = p["amount"].as_str().unwrap().parse().unwrap();
        assert_eq!(row["amount"].as_f64(), Some(amount));
        assert_eq!(row["close_date"], json!(&p["closedate"].as_str().unwrap()[..10]));
        assert_eq!(row["crm_provider"], "HubSpot");
    };
    let stored = h.records("deal").await;
    for i in [0u64, 150, n - 1] {
        let expected = sim.expected_record("deals", i).unwrap();
        check(&stored[&text(&expected["id"])].data, &expected);
    }

    let changed = [10u64, 11, 299];
    for i in changed {
        modify_until_changed(&sim, "deals", i, &["updatedAt", "properties.hs_lastmodifieddate"]);
    }
    let added = sim.add("deals", 2).unwrap();
    let inc = h.sync("deals").await;
    ok(&inc);
    assert_eq!((inc.stats.inserted, inc.stats.updated), (2, 3));
    assert!((5..=6).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    let stored = h.records("deal").await;
    assert_eq!(stored.len() as u64, n + 2);
    for i in changed.into_iter().chain(added) {
        let expected = sim.expected_record("deals", i).unwrap();
        check(&stored[&text(&expected["id"])].data, &expected);
    }
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_page_and_partial_last_page() {
    super::assert_pagination_edges(
        PAGE,
        |n| SimConfig::new(Provider::HubSpot, n),
        |sim| tenant(sim, ""),
        "hubspot",
        "contacts",
        "employer",
    )
    .await;
}

/// HubSpot search serves at most 10,000 results per query (paging further is a 400):
/// an incremental run over more restarts its window from the last value it saw.
#[tokio::test]
async fn an_incremental_search_over_ten_thousand_results_restarts_its_window() {
    let sim = start(SimConfig::new(Provider::HubSpot, 5)).await.unwrap();
    let h = Harness::new("hubspot", &tenant(&sim, ""), &sim).await;
    ok(&h.sync("contacts").await);
    let added = sim.add("contacts", 10_500).unwrap();
    let inc = h.sync("contacts").await;
    ok(&inc);
    assert_eq!((inc.stats.inserted, inc.stats.updated), (10_500, 0));
    assert_eq!(inc.stats.retries, 0, "no request may fail");
    // At most the boundary record is read again per window (two windows).
    assert!((10_500..=10_502).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    let searches = sim.requests_for("/crm/v3/objects/contacts/search");
    assert_eq!(searches as i64, inc.stats.http_calls, "every call of the run is a search");
    assert!((53..=54).contains(&searches), "{searches} search requests");
    let stored = h.records("employer").await;
    assert_eq!(stored.len(), 10_505);
    for i in [added.start, added.start + 9_999, added.start + 10_000, added.end - 1] {
        let expected = sim.expected_record("contacts", i).unwrap();
        assert_eq!(stored[&text(&expected["id"])].data["name"], expected["properties"]["company"]);
    }
    let last = sim.updated_at("contacts", added.end - 1).unwrap();
    assert_eq!(inc.stats.cursor_after.as_deref(), Some(last.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string().as_str()));
}

/// The 10,000-result cap is the search endpoint's: a full read through the list
/// endpoint pages past it without restarting anything.
#[tokio::test]
async fn a_full_list_sync_over_ten_thousand_contacts_is_not_capped() {
    let n = 10_050;
    let sim = start(SimConfig::new(Provider::HubSpot, n)).await.unwrap();
    let h = Harness::new("hubspot", &tenant(&sim, ""), &sim).await;
    let run = h.sync("contacts").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted), (n as i64, n as i64));
    assert_eq!(run.stats.pages, 101);
    assert_eq!(sim.requests_for("/crm/v3/objects/contacts/search"), 0);
    assert_eq!(h.records("employer").await.len() as u64, n);
    let last = sim.updated_at("contacts", n - 1).unwrap();
    assert_eq!(run.stats.cursor_after.as_deref(), Some(last.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string().as_str()));
}

/// The list endpoint is ordered by id, not by modification: a full read that fails
/// half-way must not leave a cursor that makes the next run skip what it never read.
#[tokio::test]
async fn a_full_sync_failing_half_way_leaves_no_cursor_past_unread_records() {
    let n = 500;
    let sim = start(SimConfig::new(Provider::HubSpot, n)).await.unwrap();
    // Contact 0 (first page) is now the most recently modified of all.
    assert!(sim.modify("contacts", 0));
    let h = Harness::new("hubspot", &tenant(&sim, ""), &sim).await;
    let failing = sim.clone();
    let run = h
        .sync_observed("contacts", &mut |_| {
            failing.set_faults(tributary_simulator::Faults::none().server_error_every(1));
        })
        .await;
    assert_eq!(run.outcome, tributary::model::RunOutcome::Failed);
    // The second and third pages were read ahead while the first and second were
    // written, before the faults.
    assert_eq!(run.stats.fetched, 3 * PAGE as i64, "the first three pages were stored");
    assert_eq!(run.stats.cursor_after, None, "no cursor from an incomplete full read");

    sim.set_faults(tributary_simulator::Faults::none());
    let again = h.sync("contacts").await;
    ok(&again);
    assert_eq!(again.cursor_before, None);
    assert_eq!(again.stats.inserted, (n - 3 * PAGE) as i64);
    assert_eq!(h.records("employer").await.len() as u64, n);
}
