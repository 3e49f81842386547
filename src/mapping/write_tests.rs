use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::json;

use super::super::tests::entity;
use super::*;
use crate::config::{Diagnostics, Manifest, Manifests, MappingRule, ReverseSpec, ReverseTable, Sources};

fn manifests() -> &'static Manifests {
    static ALL: OnceLock<Manifests> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut diag = Diagnostics::default();
        let m = Manifests::load(None, &mut diag);
        assert!(diag.is_empty(), "{diag:?}");
        m
    })
}

fn shipped(provider: &str, entity_name: &str) -> CompiledWrite {
    let m: &Manifest = manifests().get(provider).unwrap();
    let mut vars = m.tenant_variables();
    vars.extend(crate::config::BUILTIN_VARIABLES.iter().map(|s| (*s).to_owned()));
    CompiledWrite::compile(entity(entity_name), &m.mappings[entity_name], &m.writes[entity_name], vars).unwrap()
}

fn rule(from: &str, transform: &[&str], reverse: Option<ReverseSpec>) -> MappingSpec {
    MappingSpec::Rule(MappingRule {
        from: Some(Sources::One(from.into())),
        transform: transform.iter().map(|s| (*s).to_owned()).collect(),
        reverse,
        ..MappingRule::default()
    })
}

#[test]
fn every_shipped_write_compiles() {
    for m in manifests().iter() {
        for (name, spec) in &m.writes {
            let fields = m.mappings.get(name).cloned().unwrap_or_default();
            CompiledWrite::compile(entity(name), &fields, spec, Vec::new())
                .unwrap_or_else(|e| panic!("{}: writes.{name}: {e}", m.name));
        }
    }
}

#[test]
fn hubspot_contact_create_and_update() {
    let w = shipped("hubspot", "contact");
    let record = json!({"external_id": "ignored", "first_name": "Ann", "email": "ann@example.com", "phone": null});
    let req = build_request(&w, WriteOp::Create, &record, None).unwrap();
    assert_eq!(req.method, Method::Post);
    assert_eq!(req.path, "/crm/v3/objects/contacts");
    assert_eq!(
        req.body,
        Some(json!({"properties": {"firstname": "Ann", "email": "ann@example.com", "phone": null}})),
        "the key is not in the body; a null clears"
    );
    let req = build_request(&w, WriteOp::Update, &json!({"last_name": "Lee"}), Some("51")).unwrap();
    assert_eq!((req.method, req.path.as_str()), (Method::Patch, "/crm/v3/objects/contacts/51"));
    assert_eq!(req.body, Some(json!({"properties": {"lastname": "Lee"}})));
    assert_eq!(
        build_request(&w, WriteOp::Update, &json!({}), None),
        Err(WriteError::MissingId { op: WriteOp::Update })
    );
    assert!(matches!(
        build_request(&w, WriteOp::Delete, &json!({}), Some("1")),
        Err(WriteError::NotDeclared { op: WriteOp::Delete, .. })
    ));
}

#[test]
fn records_are_checked_against_the_entity() {
    let w = shipped("hubspot", "contact");
    let err = build_request(&w, WriteOp::Create, &json!({"email": "not-an-email"}), None).unwrap_err();
    assert!(matches!(&err, WriteError::Invalid { field, .. } if field == "email"), "{err}");
    assert!(!err.to_string().contains("not-an-email"), "no values in messages: {err}");
    let err = build_request(&w, WriteOp::Create, &json!({"nickname": "x"}), None).unwrap_err();
    assert!(matches!(&err, WriteError::UnknownField { field, .. } if field == "nickname"));
    assert_eq!(build_request(&w, WriteOp::Create, &json!([1]), None), Err(WriteError::NotAnObject("array")));
}

#[test]
fn jira_defaults_read_only_fields_and_comment_template() {
    let w = shipped("jira", "issue");
    let record = json!({"summary": "Broken", "project_key": "OPS", "status": "Done", "key": "OPS-1"});
    let req = build_request(&w, WriteOp::Create, &record, None).unwrap();
    assert_eq!(
        req.body,
        Some(json!({"fields": {"issuetype": {"name": "Task"}, "summary": "Broken", "project": {"key": "OPS"}}}))
    );
    assert_eq!(req.skipped, ["key", "status"], "read-only fields are reported, not sent");
    let req = build_request(&w, WriteOp::Comment, &json!({"text": "Looked at it"}), Some("10001")).unwrap();
    assert_eq!(req.path, "/rest/api/3/issue/10001/comment");
    assert_eq!(req.body.unwrap().pointer("/body/content/0/content/0/text"), Some(&json!("Looked at it")));
    assert_eq!(
        build_request(&w, WriteOp::Comment, &json!({}), Some("1")),
        Err(WriteError::MissingValue("text".into()))
    );
}

#[test]
fn slack_renames_the_channel_and_reads_a_composite_id() {
    let w = shipped("slack", "message");
    let req =
        build_request(&w, WriteOp::Create, &json!({"channel_id": "C1", "text": "hi", "user_id": "U9"}), None).unwrap();
    assert_eq!(req.body, Some(json!({"channel": "C1", "text": "hi"})));
    let create = w.spec().create.as_ref().unwrap();
    let ok = json!({"ok": true, "channel": "C1", "ts": "1712345678.000100"});
    assert_eq!(
        write_result(create, &ok),
        WriteResult { id: Some("C1:1712345678.000100".into()), version: Some("1712345678.000100".into()) }
    );
    assert_eq!(provider_error(create, &ok), None);
    let refused = json!({"ok": false, "error": "channel_not_found"});
    assert_eq!(provider_error(create, &refused).as_deref(), Some("channel_not_found"));
    assert_eq!(write_result(create, &refused).id, None);
}

#[test]
fn ids_in_paths_are_percent_encoded() {
    let w = shipped("hubspot", "company");
    let req = build_request(&w, WriteOp::Update, &json!({"name": "X"}), Some("a/b c")).unwrap();
    assert_eq!(req.path, "/crm/v3/objects/companies/a%2Fb%20c");
}

#[test]
fn lookup_requests_fill_the_record() {
    let w = shipped("hubspot", "contact");
    let req = w.lookup_request(&json!({"email": "ann@example.com"})).unwrap().unwrap();
    assert_eq!(req.path, "/crm/v3/objects/contacts/search");
    assert_eq!(req.body.unwrap().pointer("/filterGroups/0/filters/0/value"), Some(&json!("ann@example.com")));
    assert_eq!(w.lookup_request(&json!({"first_name": "Ann"})).unwrap(), None, "no email, no lookup");
    let found = json!({"total": 1, "results": [{"id": "77", "updatedAt": "2026-01-01T00:00:00Z"}]});
    let l = w.spec().lookup.as_ref().unwrap();
    assert_eq!(found.pointer(&l.id), Some(&json!("77")));
}

#[test]
fn soql_lookups_keep_a_value_inside_its_literal() {
    let w = shipped("salesforce", "contact");
    let req = w.lookup_request(&json!({"email": "x' OR Email != 'y"})).unwrap().unwrap();
    assert_eq!(
        req.query["q"],
        r"SELECT Id, SystemModstamp, CreatedDate FROM Contact WHERE Email = 'x\' OR Email != \'y' LIMIT 2"
    );
}

#[test]
fn variables_stay_for_the_executor() {
    let spec = WriteSpec {
        update: Some(crate::config::WriteRequest {
            path: "/{site}/things/{id}".into(),
            headers: [("X-Name".to_owned(), "{first_name}".to_owned())].into(),
            ..Default::default()
        }),
        ..WriteSpec::default()
    };
    let fields: BTreeMap<String, MappingSpec> = [("first_name".to_owned(), MappingSpec::Path("fn".into()))].into();
    let w = CompiledWrite::compile(entity("contact"), &fields, &spec, vec!["site".into()]).unwrap();
    let req = build_request(&w, WriteOp::Update, &json!({"first_name": "Zoë"}), Some("9")).unwrap();
    assert_eq!(req.path, "/{site}/things/9");
    assert_eq!(req.headers["X-Name"], "Zoë");
    assert_eq!(req.body, Some(json!({"fn": "Zoë"})));
}

#[test]
fn transforms_need_an_explicit_reverse() {
    let spec = WriteSpec::default();
    let lower: BTreeMap<String, MappingSpec> = [("email".to_owned(), rule("Email", &["lower"], None))].into();
    let err = CompiledWrite::compile(entity("contact"), &lower, &spec, vec![]).unwrap_err().to_string();
    assert!(err.contains("contact.email") && err.contains("`lower` cannot be undone"), "{err}");

    let table = ReverseSpec::Table(ReverseTable { transform: vec!["upper".into()], ..Default::default() });
    let fields: BTreeMap<String, MappingSpec> = [
        ("email".to_owned(), rule("Email", &["lower"], Some(ReverseSpec::Flag(true)))),
        ("phone".to_owned(), rule("Phone", &["trim"], Some(ReverseSpec::Flag(false)))),
        ("first_name".to_owned(), rule("First", &["lower"], Some(table))),
    ]
    .into();
    let r = ReverseMapping::compile(entity("contact"), &fields).unwrap();
    let out = r.reverse(&json!({"email": "a@b.c", "phone": "1", "first_name": "ann"})).unwrap();
    assert_eq!(out.fields, json!({"Email": "a@b.c", "First": "ANN"}));
    assert_eq!(out.skipped, ["phone"]);
}

#[test]
fn value_maps_reverse_by_swapping_unless_ambiguous() {
    let map = |pairs: &[(&str, &str)]| MappingRule {
        from: Some(Sources::One("dealstage".into())),
        map: pairs.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect(),
        ..MappingRule::default()
    };
    let fields: BTreeMap<String, MappingSpec> =
        [("stage".to_owned(), MappingSpec::Rule(map(&[("closedwon", "won"), ("closedlost", "lost")])))].into();
    let r = ReverseMapping::compile(entity("deal"), &fields).unwrap();
    assert_eq!(r.reverse(&json!({"stage": "won"})).unwrap().fields, json!({"dealstage": "closedwon"}));
    assert_eq!(r.reverse(&json!({"stage": "other"})).unwrap().fields, json!({"dealstage": "other"}));

    let fields: BTreeMap<String, MappingSpec> =
        [("stage".to_owned(), MappingSpec::Rule(map(&[("a", "same"), ("b", "same")])))].into();
    let err = ReverseMapping::compile(entity("deal"), &fields).unwrap_err().to_string();
    assert!(err.contains("deal.stage") && err.contains("not one-to-one"), "{err}");
}

#[test]
fn several_sources_and_overlapping_paths_are_refused() {
    let concat = MappingSpec::Rule(MappingRule {
        from: Some(Sources::Many(vec!["a".into(), "b".into()])),
        transform: vec!["concat".into()],
        ..MappingRule::default()
    });
    let fields: BTreeMap<String, MappingSpec> = [("name".to_owned(), concat)].into();
    let err = ReverseMapping::compile(entity("company"), &fields).unwrap_err().to_string();
    assert!(err.contains("company.name") && err.contains("several sources"), "{err}");

    let fields: BTreeMap<String, MappingSpec> = [
        ("name".to_owned(), MappingSpec::Path("props".into())),
        ("domain".to_owned(), MappingSpec::Path("props.domain".into())),
    ]
    .into();
    let err = ReverseMapping::compile(entity("company"), &fields).unwrap_err().to_string();
    assert!(err.contains("overlaps"), "{err}");
}

#[test]
fn constants_and_unmapped_fields_are_not_written() {
    let constant = MappingSpec::Rule(MappingRule { value: Some(json!("x")), ..MappingRule::default() });
    let fields: BTreeMap<String, MappingSpec> =
        [("industry".to_owned(), constant), ("domain".to_owned(), MappingSpec::Off)].into();
    let r = ReverseMapping::compile(entity("company"), &fields).unwrap();
    let out = r.reverse(&json!({"industry": "y", "domain": "d.com", "owner_id": "7"})).unwrap();
    assert_eq!(out.fields, json!({}));
    assert_eq!(out.skipped, ["domain", "industry", "owner_id"]);
    assert!(r.paths().is_empty());
}

#[test]
fn reverse_transform_failures_name_the_field() {
    let table = ReverseSpec::Table(ReverseTable { transform: vec!["int".into()], ..Default::default() });
    let fields: BTreeMap<String, MappingSpec> = [("phone".to_owned(), rule("phone", &["string"], Some(table)))].into();
    let r = ReverseMapping::compile(entity("contact"), &fields).unwrap();
    assert_eq!(r.reverse(&json!({"phone": "12"})).unwrap().fields, json!({"phone": 12}));
    let err = r.reverse(&json!({"phone": "call me"})).unwrap_err();
    assert!(matches!(&err, WriteError::Transform { field, transform: "int", .. } if field == "phone"), "{err}");
}

#[test]
fn provider_errors_without_an_ok_flag() {
    let create = shipped("salesforce", "company").spec().create.clone().unwrap();
    let body = json!([{"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING"}]);
    assert_eq!(provider_error(&create, &body).as_deref(), Some("Required fields are missing: [Name]"));
    let created = json!({"id": "001A", "success": true, "errors": []});
    assert_eq!(write_result(&create, &created), WriteResult { id: Some("001A".into()), version: None });
}

#[test]
fn versions_compare_as_time_then_number_then_text() {
    // HubSpot's, Salesforce's and Jira's forms of the same instant are equal; later is newer.
    assert!(!is_newer("2024-05-01T10:00:00.000Z", "2024-05-01T10:00:00.000+0000"));
    assert!(!is_newer("2024-05-01T11:00:00.000+01:00", "2024-05-01T10:00:00Z"));
    assert!(is_newer("2024-05-01T10:00:00.001Z", "2024-05-01T10:00:00.000Z"));
    assert!(!is_newer("2024-05-01T09:59:59.999Z", "2024-05-01T10:00:00.000Z"));
    assert!(is_newer("12", "9"), "numbers compare as numbers, not text");
    assert!(!is_newer("9", "12"));
    assert!(is_newer("\"etag-b\"", "\"etag-a\""), "other versions: any difference");
    assert!(!is_newer("\"etag-a\"", "\"etag-a\""));
    assert_eq!(normalized_version("2024-05-01T10:00:00+0000"), "2024-05-01T10:00:00.000Z");
    assert_eq!(normalized_version("v7"), "v7");
}

#[test]
fn http_dates_for_if_unmodified_since() {
    assert_eq!(http_date("2024-05-01T10:00:00.250+0000").as_deref(), Some("Wed, 01 May 2024 10:00:00 GMT"));
    assert_eq!(http_date("2024-05-01T12:30:05+02:00").as_deref(), Some("Wed, 01 May 2024 10:30:05 GMT"));
    assert_eq!(http_date("\"etag\""), None);
}

#[test]
fn the_synced_version_is_where_the_mapping_puts_the_version_field() {
    let hubspot = &manifests().get("hubspot").unwrap().mappings["contact"];
    assert_eq!(version_target(hubspot, "updatedAt"), Some("updated_at"));
    assert_eq!(version_target(hubspot, "properties.hs_lastmodifieddate"), None);
    let mut plain = BTreeMap::new();
    plain.insert("version".to_owned(), MappingSpec::Path("meta.version".into()));
    assert_eq!(version_target(&plain, "meta.version"), Some("version"));
    let record = json!({"fields": {"updated": "2024-05-01T10:00:00.000+0000"}, "n": 3});
    assert_eq!(value_at(&record, "fields.updated").as_deref(), Some("2024-05-01T10:00:00.000+0000"));
    assert_eq!(value_at(&record, "n").as_deref(), Some("3"));
    assert_eq!(value_at(&record, "fields.missing"), None);
}

#[test]
fn version_reads_get_the_update_path() {
    let jira = shipped("jira", "issue");
    let read = jira.read_request(&json!({"summary": "x"}), "PROJ 1").unwrap().unwrap();
    assert_eq!((read.method, read.path.as_str(), read.body), (Method::Get, "/rest/api/3/issue/PROJ%201", None));
    let slack = shipped("slack", "message");
    assert!(slack.read_request(&json!({}), "C1:1.2").unwrap().is_none(), "no update declared");
}
