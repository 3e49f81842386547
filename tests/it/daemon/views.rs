//! The daemon makes the entity views when it starts and makes them follow entities.toml
//! when it reloads; a sync's records read typed through them.

use tributary::control::protocol::Command as Ctl;
use tributary::model::RunOutcome;
use tributary_simulator::{Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Fixture, NEVER, started_runs, target};
use crate::views::{columns, texts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_views_are_made_at_start_up_and_follow_a_reload() {
    views_follow_the_entities(Fixture::sqlite("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_views_are_made_at_start_up_and_follow_a_reload() {
    views_follow_the_entities(Fixture::postgres("").await).await;
}

fn type_of(columns: &[(String, String)], name: &str) -> Option<String> {
    columns.iter().find(|(c, _)| c == name).map(|(_, t)| t.clone())
}

async fn views_follow_the_entities(fx: Fixture) {
    let pg = fx.url.starts_with("postgres");
    let sim = start(SimConfig::new(Provider::Aptem, 20)).await.unwrap();
    let path = fx.config_dir().join("entities.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    // An entity only this test declares, and a learner field no mapping fills.
    let note = "\n[entities.note]\ntitle = \"Note\"\n[entities.note.fields]\n\
                external_id = { type = \"string\", required = true }\n";
    let division = "division = { type = \"string\" }\n";
    assert!(original.contains(division), "the repository's learner declares `division`");
    std::fs::write(&path, format!("{original}{note}")).unwrap();
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let daemon = fx.start("d", 2).await;

    // Made at start-up, before any sync: one per entity, typed.
    let learner = columns(&fx.url, "entity_learner").await;
    let (date, time, int, number) =
        if pg { ("date", "timestamp with time zone", "bigint", "numeric") } else { ("TEXT", "TEXT", "INT", "REAL") };
    assert_eq!(type_of(&learner, "start_date").as_deref(), Some(date), "{learner:?}");
    assert_eq!(type_of(&learner, "updated_at").as_deref(), Some(time), "{learner:?}");
    assert!(type_of(&learner, "division").is_some(), "{learner:?}");
    assert_eq!(type_of(&columns(&fx.url, "entity_channel").await, "member_count").as_deref(), Some(int));
    assert_eq!(type_of(&columns(&fx.url, "entity_deal").await, "amount").as_deref(), Some(number));
    assert!(!columns(&fx.url, "entity_note").await.is_empty(), "the extra entity has its view");

    // A sync's records, typed, with the preset's tag.
    let runs = started_runs(&daemon.ok(Ctl::Trigger(target("acme", Some("aptem"), Some("learners")))).await);
    let run = fx.finished_run("acme", runs[0]).await;
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    let summary = if pg {
        "SELECT count(*)::text, count(start_date)::text, count(updated_at)::text, min(tags ->> 'lms_provider'), \
         min(pg_typeof(start_date)::text) FROM entity_learner WHERE tenant_id = 'acme' AND deleted_at IS NULL"
    } else {
        "SELECT CAST(count(*) AS TEXT), CAST(count(start_date) AS TEXT), CAST(count(updated_at) AS TEXT), \
         min(tags ->> '$.lms_provider'), min(typeof(start_date)) FROM entity_learner \
         WHERE tenant_id = 'acme' AND deleted_at IS NULL"
    };
    let rows = texts(&fx.url, summary).await;
    let expected = ["20", "20", "20", "Aptem", if pg { "date" } else { "text" }];
    assert_eq!(rows[0], expected.map(|v| Some(v.to_owned())));

    // entities.toml loses `learner.division` and `note`; a reload follows.
    std::fs::write(&path, original.replace(division, "")).unwrap();
    let reply = daemon.ok(Ctl::Reload).await;
    let views = &reply["views"];
    assert_eq!(views["replaced"], serde_json::json!(["entity_learner"]), "{reply}");
    assert_eq!(views["dropped"], serde_json::json!(["entity_note"]), "{reply}");
    assert_eq!(views["unchanged"], 14, "{reply}");
    let learner = columns(&fx.url, "entity_learner").await;
    assert!(type_of(&learner, "division").is_none() && type_of(&learner, "uln").is_some(), "{learner:?}");
    assert!(columns(&fx.url, "entity_note").await.is_empty(), "the removed entity's view is dropped");
    assert_eq!(rows, texts(&fx.url, summary).await, "the records read the same through the new view");
    drop(daemon);
    fx.finish().await;
}
