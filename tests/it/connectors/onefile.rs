use serde_json::{Value, json};
use tributary::model::{ConnectionStatus, Owner, RunOutcome};
use tributary_simulator::{Provider, SimConfig, SimHandle, start};

use super::{Harness, modify_until_changed, ok, text};

/// The OneFile page size the manifest asks for.
const PAGE: u64 = 500;

fn tenant(sim: &SimHandle) -> String {
    format!("preset = \"onefile\"\n[providers.onefile]\nbase_url = \"{}\"\n", sim.api_base())
}

fn assert_learner(row: &Value, expected: &Value) {
    assert_eq!(row["first_name"], expected["FirstName"]);
    assert_eq!(row["last_name"], expected["LastName"]);
    assert_eq!(row["email"], json!(expected["Email"].as_str().unwrap().to_lowercase()));
    assert_eq!(row["uln"], expected["ULN"]);
    assert_eq!(row["programme"], expected["EpisodeName"]);
    let date = |v: &Value| json!(&v.as_str().unwrap()[..10]);
    assert_eq!(row["start_date"], date(&expected["StartOn"]));
    assert_eq!(row["planned_end_date"], date(&expected["PlannedEndDate"]));
    assert_eq!(row["employer_id"], json!(text(&expected["OrganisationID"])));
    assert_eq!(row["lms_provider"], "OneFile");
}

#[tokio::test]
async fn full_sync_turns_integer_ids_into_strings_then_incremental_reads_only_the_changes() {
    let n = 1_100;
    let sim = start(SimConfig::new(Provider::OneFile, n)).await.unwrap();
    let h = Harness::new("onefile", &tenant(&sim), &sim).await;
    let run = h.sync("learners").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.updated), (n as i64, n as i64, 0));
    assert_eq!(run.stats.pages, 3);
    let stored = h.records("learner").await;
    assert_eq!(stored.len() as u64, n);
    for i in [0, 1, 499, 500, 999, n - 1] {
        let expected = sim.expected_record("learners", i).unwrap();
        let id = expected["ID"].as_u64().expect("OneFile ids are integers");
        let row = &stored[&id.to_string()];
        assert_eq!(row.data["external_id"], json!(id.to_string()));
        assert_learner(&row.data, &expected);
    }
    let cursor = run.stats.cursor_after.clone().expect("a cursor after the full sync");

    let changed = [2u64, 555, 1_050];
    for i in changed {
        modify_until_changed(&sim, "learners", i, &["ModifiedOn"]);
    }
    let added = sim.add("learners", 1).unwrap().start;
    let inc = h.sync("learners").await;
    ok(&inc);
    assert_eq!(inc.cursor_before.as_deref(), Some(cursor.as_str()));
    assert_eq!((inc.stats.inserted, inc.stats.updated), (1, 3));
    // `ModifiedFrom` is inclusive: the boundary learner comes back, unchanged.
    assert!((4..=5).contains(&inc.stats.fetched), "fetched {}", inc.stats.fetched);
    let stored = h.records("learner").await;
    assert_eq!(stored.len() as u64, n + 1);
    for i in changed.into_iter().chain([added]) {
        let expected = sim.expected_record("learners", i).unwrap();
        assert_learner(&stored[&text(&expected["ID"])].data, &expected);
    }
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_page_and_partial_last_page() {
    super::assert_pagination_edges(
        PAGE,
        |n| SimConfig::new(Provider::OneFile, n),
        tenant,
        "onefile",
        "learners",
        "learner",
    )
    .await;
}

#[tokio::test]
async fn organisations_sync_and_a_revoked_customer_token_needs_reauth() {
    let sim = start(SimConfig::new(Provider::OneFile, 30)).await.unwrap();
    let h = Harness::new("onefile", &tenant(&sim), &sim).await;
    ok(&h.sync("organisations").await);
    let stored = h.records("employer").await;
    assert_eq!(stored.len(), 30);
    let expected = sim.expected_record("organisations", 29).unwrap();
    assert_eq!(stored[&text(&expected["ID"])].data["name"], expected["Name"]);

    sim.revoke();
    let failed = h.sync("organisations").await;
    assert_eq!(failed.outcome, RunOutcome::Failed);
    assert!(
        failed.stats.error.as_deref().unwrap_or("").contains("Authorization has been denied"),
        "{:?}",
        failed.stats.error
    );
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, ConnectionStatus::NeedsReauth);
}
