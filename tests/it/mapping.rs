//! Field mapping against the real configuration: connector manifests, presets and the
//! example tenant, with records shaped like the providers' own. The mapping semantics
//! one rule at a time are tested next to the code, in `src/mapping/tests.rs`.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Value, json};

use tributary::config::{Catalog, ConfigDir, Effective, Entity, ProviderLayer};
use tributary::mapping::{CompiledMapping, MapResult, MappedRecord};

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
        Catalog::load(&ConfigDir::Dir(dir), None).expect("the shipped configuration is valid")
    })
}

fn entity(name: &str) -> &'static Entity {
    catalog().entities.get(name).expect("entity exists")
}

/// The example tenant's effective layer for one provider.
fn acme(provider: &str) -> ProviderLayer {
    let c = catalog();
    let (_, spec) = c.tenant_files.iter().find(|(_, t)| t.id.as_str() == "acme").expect("config/tenants/acme.toml");
    let preset = c.presets.get(spec.preset.as_str()).expect("preset");
    let eff = Effective::compute(c, &spec.preset, &preset.revision, &preset.resolved, &spec.overrides);
    eff.providers[provider].config.clone()
}

/// A preset's resolved layer for one provider.
fn preset(preset: &str, provider: &str) -> ProviderLayer {
    catalog().presets.get(preset).expect("preset").resolved[provider].clone()
}

/// A connector's own defaults.
fn connector(provider: &str) -> ProviderLayer {
    catalog().manifests.get(provider).expect("manifest").base_layer()
}

fn compile(layer: &ProviderLayer, entity_name: &str) -> CompiledMapping {
    let fields = layer.mappings.get(entity_name).cloned().unwrap_or_default();
    CompiledMapping::compile(entity(entity_name), &fields, &layer.filters, &layer.tags)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn mapped(result: MapResult) -> MappedRecord {
    match result {
        MapResult::Mapped(m) => m,
        other => panic!("expected a mapped record, got {other:?}"),
    }
}

fn dead(result: MapResult) -> String {
    match result {
        MapResult::DeadLetter { reason } => reason,
        other => panic!("expected a dead letter, got {other:?}"),
    }
}

fn keys(data: &Value) -> Vec<&str> {
    data.as_object().expect("an object").keys().map(String::as_str).collect()
}

#[test]
fn every_shipped_mapping_compiles() {
    let c = catalog();
    for m in c.manifests.iter() {
        for (entity_name, fields) in &m.mappings {
            let layer = m.base_layer();
            CompiledMapping::compile(entity(entity_name), fields, &layer.filters, &layer.tags)
                .unwrap_or_else(|e| panic!("{}: {e}", m.name));
        }
    }
    for p in c.presets.iter() {
        for (provider, layer) in &p.resolved {
            for entity_name in layer.mappings.keys() {
                let compiled = compile(layer, entity_name);
                assert_eq!(compiled.entity().as_str(), entity_name, "{}/{provider}", p.name);
            }
        }
    }
}

#[test]
fn aptem_learner_with_tenant_custom_field() {
    let m = compile(&acme("aptem"), "learner");
    let record = json!({
        "learner_id": "L-1001",
        "first_name": "Mary Ann",
        "last_name": "Smith",
        "email": "  Mary.Smith@Example.COM ",
        "uln": "1234567890",
        "programme_name": "Level 3 Data Technician",
        "start_date": "2023-09-04T00:00:00Z",
        "planned_end_date": "04/03/2025",
        "completion_date": "2024-03-01T10:52:52.6880167Z",
        "status": "Completed",
        "employer_id": 42,
        "custom_field_123": "North",
        "UpdatedDate": "2024-03-02T08:00:00.5+01:00",
        "unmapped": {"big": [1, 2, 3]},
    });
    let out = mapped(m.apply(&record));
    assert_eq!(out.external_id, "L-1001");
    assert_eq!(
        out.data,
        json!({
            "external_id": "L-1001",
            "first_name": "Mary Ann",
            "last_name": "Smith",
            "email": "mary.smith@example.com",
            "uln": "1234567890",
            "programme": "Level 3 Data Technician",
            "start_date": "2023-09-04",
            "planned_end_date": "2025-03-04",
            "completion": "2024-03-01",
            "status": "Completed",
            "division": "North",
            "employer_id": "42",
            "updated_at": "2024-03-02T07:00:00.500Z",
            "lms_provider": "Aptem",
        })
    );
    assert_eq!(
        keys(&out.data),
        [
            "external_id",
            "first_name",
            "last_name",
            "email",
            "uln",
            "programme",
            "start_date",
            "planned_end_date",
            "completion",
            "status",
            "division",
            "employer_id",
            "updated_at",
            "lms_provider",
        ],
        "entity fields in declaration order, then tags"
    );
}

#[test]
fn aptem_preset_filter_drops_test_learners() {
    let m = compile(&acme("aptem"), "learner");
    let record = json!({"learner_id": "L-9", "first_name": "T", "last_name": "Bot", "email": "bot@test.aptem.co.uk"});
    assert_eq!(m.apply(&record), MapResult::Filtered { filter: "exclude_test_learners".into() });
}

#[test]
fn hubspot_contact_becomes_an_employer_with_tags() {
    let m = compile(&acme("hubspot"), "employer");
    let record = json!({
        "id": "51",
        "properties": {"company": "Acme Widgets", "account_manager": "Priya", "email": "x@y.z"},
        "archived": false,
    });
    let out = mapped(m.apply(&record));
    assert_eq!(out.external_id, "51");
    assert_eq!(
        out.data,
        json!({"crm_id": "51", "name": "Acme Widgets", "account_manager": "Priya", "crm_provider": "HubSpot"})
    );
    let no_manager = json!({"id": 52, "properties": {"company": "Beta"}});
    let out = mapped(m.apply(&no_manager));
    assert_eq!(out.external_id, "52", "a numeric id becomes a string");
    assert_eq!(out.data["account_manager"], Value::Null, "a missing path is null");
}

#[test]
fn hubspot_deal_numbers_and_epoch_dates() {
    let m = compile(&connector("hubspot"), "deal");
    let record = json!({"id": "9", "properties": {
        "dealname": "Renewal", "amount": "1500.50", "dealstage": "won", "closedate": "1709251200000"
    }});
    let out = mapped(m.apply(&record));
    assert_eq!(out.data["amount"], json!(1500.5));
    assert_eq!(out.data["close_date"], json!("2024-03-01"));
}

#[test]
fn slack_message_id_joins_channel_and_ts() {
    let m = compile(&connector("slack"), "message");
    let record = json!({
        "type": "message", "channel_id": "C024BE91L", "user": "U2147483697",
        "text": "Hello", "ts": "1712345678.000100",
    });
    let out = mapped(m.apply(&record));
    assert_eq!(out.external_id, "C024BE91L:1712345678.000100");
    assert_eq!(out.data["sent_at"], json!("2024-04-05T19:34:38.000Z"));
    assert_eq!(out.data["thread_ts"], Value::Null);

    let channel = compile(&connector("slack"), "channel");
    let out =
        mapped(channel.apply(&json!({"id": "C1", "name": "general", "is_private": "false", "num_members": "12"})));
    assert_eq!(out.data["is_private"], json!(false));
    assert_eq!(out.data["member_count"], json!(12));
}

#[test]
fn bud_full_name_is_split() {
    let m = compile(&preset("bud", "bud"), "learner");
    let record = json!({"id": 77, "fullName": "Mary Ann Smith", "email": "M@X.io", "programmeName": "L2"});
    let out = mapped(m.apply(&record));
    assert_eq!(out.external_id, "77");
    assert_eq!(out.data["first_name"], json!("Mary Ann"));
    assert_eq!(out.data["last_name"], json!("Smith"));
    assert_eq!(out.data["lms_provider"], json!("Bud"));

    let reason = dead(m.apply(&json!({"id": 78, "fullName": "Cher"})));
    assert_eq!(reason, "required field `learner.last_name` is missing (source `fullName`)");
}

#[test]
fn onefile_integer_id_becomes_a_string() {
    let m = compile(&preset("onefile", "onefile"), "learner");
    let record = json!({"ID": 123456, "FirstName": "Sam", "LastName": "Jones", "OrganisationID": 9, "StartOn": "2024-01-08T00:00:00"});
    let out = mapped(m.apply(&record));
    assert_eq!(out.external_id, "123456");
    assert_eq!(out.data["external_id"], json!("123456"));
    assert_eq!(out.data["employer_id"], json!("9"));
    assert_eq!(out.data["start_date"], json!("2024-01-08"));
}

#[test]
fn jira_issue_offsets_without_colons() {
    let m = compile(&connector("jira"), "issue");
    let record = json!({"id": "10001", "key": "TRIB-1", "fields": {
        "summary": "Map fields", "status": {"name": "Done"}, "assignee": null,
        "project": {"key": "TRIB"}, "updated": "2024-03-01T10:52:52.688+0100",
    }});
    let out = mapped(m.apply(&record));
    assert_eq!(out.data["status"], json!("Done"));
    assert_eq!(out.data["assignee"], Value::Null);
    assert_eq!(out.data["updated_at"], json!("2024-03-01T09:52:52.688Z"));
}

#[test]
fn failures_name_field_source_and_type_but_not_the_value() {
    let m = compile(&connector("slack"), "channel");
    let reason = dead(m.apply(&json!({"id": "C1", "name": "n", "num_members": {"count": 99}})));
    assert_eq!(reason, "transform `int` cannot convert an object for `channel.member_count` (source `num_members`)");

    let m = compile(&connector("slack"), "user");
    let reason = dead(m.apply(&json!({"id": "U1", "name": ["Private", "Name"]})));
    assert!(reason.contains("`user.name` expects a string but got an array"), "{reason}");
    assert!(!reason.contains("Private"), "{reason}");
}
