use serde_json::{Value, json};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};
use tributary::model::Owner;

/// The Bud page size the manifest asks for.
const PAGE: u64 = 500;

fn tenant(sim: &SimHandle) -> String {
    format!(
        "preset = \"bud\"\n[providers.bud]\nbase_url = \"{base}\"\nvariables = {{ auth_url = \"{base}\" }}\n",
        base = sim.base_url()
    )
}

/// What the stored learner must hold for the simulator's record `expected`.
fn assert_learner(row: &Value, expected: &Value) {
    let full = expected["fullName"].as_str().unwrap();
    let (first, last) = full.rsplit_once(' ').unwrap();
    assert_eq!(row["external_id"], expected["id"]);
    assert_eq!(row["first_name"], first, "{full}");
    assert_eq!(row["last_name"], last, "{full}");
    assert_eq!(row["email"], json!(expected["email"].as_str().unwrap().to_lowercase()));
    assert_eq!(row["uln"], expected["learnerReferenceNumber"]);
    assert_eq!(row["programme"], expected["programmeName"]);
    assert_eq!(row["start_date"], expected["startDate"]);
    assert_eq!(row["planned_end_date"], expected["expectedEndDate"]);
    assert_eq!(row["status"], json!(text(&expected["status"])));
    assert_eq!(row["employer_id"], expected["employerId"]);
    assert_eq!(row["lms_provider"], "Bud");
}

#[tokio::test]
async fn full_sync_splits_names_then_incremental_reads_only_the_changes() {
    let n = 1_200;
    let sim = start(SimConfig::new(Provider::Bud, n)).await.unwrap();
    let h = Harness::new("bud", &tenant(&sim), &sim).await;
    let run = h.sync("learners").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.updated), (n as i64, n as i64, 0));
    assert_eq!(run.stats.pages, 3);
    let stored = h.records("learner").await;
    assert_eq!(stored.len() as u64, n);
    for i in [0, 1, 499, 500, 1_000, n - 1] {
        let expected = sim.expected_record("learners", i).unwrap();
        assert_learner(&stored[&text(&expected["id"])].data, &expected);
    }
    let cursor = run.stats.cursor_after.clone().expect("a cursor after the full sync");

    // Three learners change and one joins.
    let changed = [7u64, 640, 1_100];
    for i in changed {
        modify_until_changed(&sim, "learners", i, &["updatedAt"]);
    }
    let added = sim.add("learners", 1).unwrap().start;
    let inc = h.sync("learners").await;
    ok(&inc);
    assert_eq!(inc.cursor_before.as_deref(), Some(cursor.as_str()));
    assert_eq!((inc.stats.inserted, inc.stats.updated), (1, 3));
    // `updatedSince` is inclusive: the boundary learner comes back, unchanged.
    assert!((4..=5).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    assert_eq!(inc.stats.unchanged, inc.stats.fetched - 4);
    let stored = h.records("learner").await;
    assert_eq!(stored.len() as u64, n + 1);
    for i in changed.into_iter().chain([added]) {
        let expected = sim.expected_record("learners", i).unwrap();
        assert_learner(&stored[&text(&expected["id"])].data, &expected);
    }
    assert!(inc.stats.cursor_after.as_deref() > Some(cursor.as_str()));
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_page_and_partial_last_page() {
    super::assert_pagination_edges(PAGE, |n| SimConfig::new(Provider::Bud, n), tenant, "bud", "learners", "learner")
        .await;
}

#[tokio::test]
async fn employers_sync_and_a_revoked_client_needs_reauth() {
    let sim = start(SimConfig::new(Provider::Bud, 40)).await.unwrap();
    let h = Harness::new("bud", &tenant(&sim), &sim).await;
    let run = h.sync("employers").await;
    ok(&run);
    assert_eq!(run.stats.inserted, 40);
    let stored = h.records("employer").await;
    for i in [0u64, 39] {
        let expected = sim.expected_record("employers", i).unwrap();
        let row = &stored[&text(&expected["id"])];
        assert_eq!(row.data["name"], expected["name"]);
    }
    sim.revoke();
    let failed = h.sync("employers").await;
    assert_eq!(failed.outcome, tributary::model::RunOutcome::Failed);
    assert!(failed.stats.error.as_deref().unwrap_or("").contains("invalid_client"), "{:?}", failed.stats.error);
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, tributary::model::ConnectionStatus::NeedsReauth);
}

/// A server that caps the page size below what the manifest asks for still reports the
/// total: every record is read, none silently dropped after the first short page.
#[tokio::test]
async fn a_server_capped_page_size_still_reads_every_record_up_to_the_total() {
    let n = 400;
    let sim = start(SimConfig::new(Provider::Bud, n).page_size_cap(25)).await.unwrap();
    let h = Harness::new("bud", &tenant(&sim), &sim).await;
    let run = h.sync("learners").await;
    ok(&run);
    assert_eq!(run.stats.fetched, n as i64);
    assert_eq!(run.stats.pages, (n / 25) as i64);
    assert_eq!(h.records("learner").await.len() as u64, n);
}
