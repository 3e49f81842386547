use serde_json::json;
use tributary_simulator::{Provider, SimConfig, start};

use super::{Harness, ok, text};
use tributary::model::Owner;

fn tenant(sim: &tributary_simulator::SimHandle, extra: &str) -> String {
    format!("preset = \"aptem\"\n[providers.aptem]\nbase_url = \"{}\"\n{extra}", sim.api_base())
}

#[tokio::test]
async fn full_then_incremental_sync_with_overrides_and_tags() {
    let sim = start(SimConfig::new(Provider::Aptem, 1_500)).await.unwrap();
    let h = Harness::new(
        "aptem",
        &tenant(&sim, "[providers.aptem.mappings.learner]\ndivision = \"custom_field_123\"\n"),
        &sim,
    )
    .await;
    let run = h.sync("learners").await;
    ok(&run);
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.updated), (1_500, 1_500, 0));
    assert_eq!(run.stats.pages, 2);
    let stored = h.records("learner").await;
    assert_eq!(stored.len(), 1_500);
    for i in [0u64, 1, 999, 1_000, 1_499] {
        let expected = sim.expected_record("learners", i).unwrap();
        let row = &stored[&text(&expected["learner_id"])];
        assert_eq!(row.data["programme"], expected["programme_name"]);
        assert_eq!(row.data["first_name"], expected["first_name"]);
        assert_eq!(row.data["division"], expected["custom_field_123"]);
        assert_eq!(row.data["employer_id"], json!(text(&expected["employer_id"])));
        assert_eq!(row.data["lms_provider"], "Aptem");
    }
    assert!(run.stats.cursor_after.is_some());

    // Nothing changed: only the boundary record comes back, unchanged.
    let again = h.sync("learners").await;
    ok(&again);
    assert_eq!((again.stats.inserted, again.stats.updated), (0, 0));
    assert!(again.stats.fetched <= 1, "fetched {}", again.stats.fetched);

    // Three learners change upstream (their timestamp always, their content until it differs).
    for i in [3u64, 700, 1_200] {
        super::modify_until_changed(&sim, "learners", i, &["UpdatedDate"]);
    }
    let inc = h.sync("learners").await;
    ok(&inc);
    assert_eq!((inc.stats.inserted, inc.stats.updated), (0, 3));
    assert!(inc.stats.fetched <= 4, "fetched {}", inc.stats.fetched);
    assert_eq!(inc.cursor_before, again.stats.cursor_after);
    let row = &h.records("learner").await[&text(&sim.expected_record("learners", 700).unwrap()["learner_id"])];
    assert_eq!(row.data["first_name"], sim.expected_record("learners", 700).unwrap()["first_name"]);
}

#[tokio::test]
async fn pagination_edges_empty_exactly_one_page_and_partial_last_page() {
    super::assert_pagination_edges(
        1_000,
        |n| SimConfig::new(Provider::Aptem, n),
        |sim| tenant(sim, ""),
        "aptem",
        "learners",
        "learner",
    )
    .await;
}

#[tokio::test]
async fn tenant_filters_count_what_they_drop() {
    let sim = start(SimConfig::new(Provider::Aptem, 300)).await.unwrap();
    let filter = "[providers.aptem.filters.no_withdrawn]\nentity = \"learner\"\nfield = \"status\"\nop = \"eq\"\nvalue = \"Withdrawn\"\naction = \"exclude\"\n";
    let h = Harness::new("aptem", &tenant(&sim, filter), &sim).await;
    let withdrawn =
        (0..300).filter(|i| sim.expected_record("learners", *i).unwrap()["status"] == "Withdrawn").count() as i64;
    assert!(withdrawn > 0);
    let run = h.sync("learners").await;
    ok(&run);
    assert_eq!(run.stats.filtered, withdrawn);
    assert_eq!(run.stats.inserted, 300 - withdrawn);
    assert!(h.records("learner").await.values().all(|r| r.data["status"] != "Withdrawn"));
}

#[tokio::test]
async fn a_wrong_token_fails_the_run_and_marks_the_connection() {
    let sim = start(SimConfig::new(Provider::Aptem, 10)).await.unwrap();
    let h = Harness::with_connectors("aptem", &tenant(&sim, ""), &json!({ "api_token": "wrong" }), None).await;
    let run = h.sync("learners").await;
    assert_eq!(run.outcome, tributary::model::RunOutcome::Failed);
    assert!(run.stats.error.as_deref().unwrap_or("").contains("rejects the credentials"), "{:?}", run.stats.error);
    let conn = h.store.get_connection(&h.tenant, &h.provider, Owner::Company).await.unwrap().unwrap();
    assert_eq!(conn.status, tributary::model::ConnectionStatus::NeedsReauth);
}
