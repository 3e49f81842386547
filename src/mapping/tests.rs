//! The mapping semantics one rule at a time, on hand-written mappings over the
//! built-in entities; the shipped connector and preset mappings are exercised by
//! `tests/mapping.rs`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::{CompiledMapping, MapResult, MappedRecord, MappingError};
use crate::config::{
    BUILTIN_ENTITIES, Diagnostics, Entities, Entity, FilterAction, FilterOp, FilterSpec, MappingRule, MappingSpec,
    Source, Sources,
};

pub(super) const NO_FILTERS: &BTreeMap<String, FilterSpec> = &BTreeMap::new();
pub(super) const NO_TAGS: &BTreeMap<String, String> = &BTreeMap::new();

pub(super) fn entity(name: &str) -> &'static Entity {
    static ENTITIES: OnceLock<Entities> = OnceLock::new();
    let all = ENTITIES.get_or_init(|| {
        let mut diag = Diagnostics::default();
        let source = Source::builtin("config/entities.toml", BUILTIN_ENTITIES);
        let entities = Entities::load(&source, &mut diag);
        assert!(diag.is_empty(), "{diag:?}");
        entities
    });
    all.get(name).expect("a built-in entity")
}

pub(super) fn mapped(result: MapResult) -> MappedRecord {
    match result {
        MapResult::Mapped(m) => m,
        other => panic!("expected a mapped record, got {other:?}"),
    }
}

pub(super) fn dead(result: MapResult) -> String {
    match result {
        MapResult::DeadLetter { reason } => reason,
        other => panic!("expected a dead letter, got {other:?}"),
    }
}

pub(super) fn rule(from: &str, transforms: &[&str]) -> MappingSpec {
    MappingSpec::Rule(MappingRule {
        from: Some(Sources::One(from.into())),
        transform: transforms.iter().map(|t| t.to_string()).collect(),
        ..MappingRule::default()
    })
}

pub(super) fn fields(pairs: &[(&str, MappingSpec)]) -> BTreeMap<String, MappingSpec> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

pub(super) fn path(p: &str) -> MappingSpec {
    MappingSpec::Path(p.into())
}

pub(super) fn filter(
    source: Option<&str>,
    field: Option<&str>,
    op: FilterOp,
    value: Option<Value>,
    action: FilterAction,
) -> FilterSpec {
    FilterSpec {
        entity: "learner".into(),
        source: source.map(Into::into),
        field: field.map(Into::into),
        op,
        value,
        action,
        enabled: None,
    }
}

/// A learner mapping with only what the tests below need.
pub(super) fn learner_fields() -> BTreeMap<String, MappingSpec> {
    fields(&[
        ("external_id", path("learner_id")),
        ("first_name", path("first_name")),
        ("last_name", path("last_name")),
        ("email", rule("email", &["trim", "lower"])),
        ("status", path("status")),
    ])
}

pub(super) fn learner(id: Value, status: &str, email: &str) -> Value {
    json!({"learner_id": id, "first_name": "Ann", "last_name": "Lee", "email": email, "status": status})
}

#[test]
fn required_missing_is_a_dead_letter() {
    let m = CompiledMapping::compile(entity("learner"), &learner_fields(), NO_FILTERS, NO_TAGS).unwrap();
    let record = json!({"first_name": "Ann", "last_name": "Lee"});
    assert_eq!(dead(m.apply(&record)), "required field `learner.external_id` is missing (source `learner_id`)");
    let null_id = json!({"learner_id": null, "first_name": "Ann", "last_name": "Lee"});
    assert!(dead(m.apply(&null_id)).contains("`learner.external_id` is missing"));

    let mut partial = learner_fields();
    partial.insert("last_name".into(), MappingSpec::Off);
    let m = CompiledMapping::compile(entity("learner"), &partial, NO_FILTERS, NO_TAGS).unwrap();
    let reason = dead(m.apply(&learner(json!("L1"), "x", "a@b.c")));
    assert_eq!(reason, "required field `learner.last_name` is missing (not mapped)");

    assert!(dead(m.apply(&json!([1, 2]))).contains("is an array, not an object"));
}

#[test]
fn type_mismatch_reasons_never_contain_the_value() {
    let m = CompiledMapping::compile(entity("learner"), &learner_fields(), NO_FILTERS, NO_TAGS).unwrap();
    let secret = "ann.secret-at-example.com";
    let reason = dead(m.apply(&learner(json!("L1"), "Active", secret)));
    assert!(reason.contains("`learner.email`"), "{reason}");
    assert!(reason.contains("email address"), "{reason}");
    assert!(reason.contains("source `email`"), "{reason}");
    assert!(!reason.contains("secret"), "{reason}");

    let mut f = learner_fields();
    f.insert("start_date".into(), rule("dob", &["trim", "date"]));
    let m = CompiledMapping::compile(entity("learner"), &f, NO_FILTERS, NO_TAGS).unwrap();
    let mut record = learner(json!("L1"), "Active", "a@b.c");
    record["dob"] = json!("born on 1990-13-45 (private)");
    let reason = dead(m.apply(&record));
    assert_eq!(reason, "transform `date` cannot convert a string for `learner.start_date` (source `dob`)");
}

#[test]
fn filters_on_source_and_field() {
    let filters = BTreeMap::from([
        (
            "only_active".to_owned(),
            filter(Some("status"), None, FilterOp::In, Some(json!(["Active", "Break"])), FilterAction::Include),
        ),
        (
            "no_staff".to_owned(),
            filter(None, Some("email"), FilterOp::EndsWith, Some(json!("@staff.org")), FilterAction::Exclude),
        ),
        (
            "switched_off".to_owned(),
            FilterSpec {
                enabled: Some(false),
                ..filter(Some("status"), None, FilterOp::Exists, None, FilterAction::Exclude)
            },
        ),
        (
            "other_entity".to_owned(),
            FilterSpec {
                entity: "employer".into(),
                ..filter(Some("status"), None, FilterOp::Exists, None, FilterAction::Exclude)
            },
        ),
    ]);
    let m = CompiledMapping::compile(entity("learner"), &learner_fields(), &filters, &BTreeMap::new()).unwrap();
    assert!(matches!(m.apply(&learner(json!(1), "Active", "a@b.c")), MapResult::Mapped(_)));
    assert_eq!(m.apply(&learner(json!(1), "Withdrawn", "a@b.c")), MapResult::Filtered { filter: "only_active".into() });
    // The field filter sees the mapped (trimmed, lower-cased) value, not the raw one.
    assert_eq!(
        m.apply(&learner(json!(1), "Break", " Bob@STAFF.org ")),
        MapResult::Filtered { filter: "no_staff".into() }
    );
    // Filters win over a dead letter in another field: excluded records are not errors.
    let no_id = json!({"first_name": "A", "last_name": "B", "status": "Gone", "email": "x@y.z"});
    assert_eq!(m.apply(&no_id), MapResult::Filtered { filter: "only_active".into() });
    let bad_staff =
        json!({"learner_id": [1], "first_name": "A", "last_name": "B", "status": "Active", "email": "x@staff.org"});
    assert_eq!(m.apply(&bad_staff), MapResult::Filtered { filter: "no_staff".into() });
}

#[test]
fn filter_equality_and_presence() {
    let filters = BTreeMap::from([
        (
            "id_not_7".to_owned(),
            filter(Some("learner_id"), None, FilterOp::Ne, Some(json!("7")), FilterAction::Include),
        ),
        ("needs_email".to_owned(), filter(None, Some("email"), FilterOp::Missing, None, FilterAction::Exclude)),
    ]);
    let m = CompiledMapping::compile(entity("learner"), &learner_fields(), &filters, &BTreeMap::new()).unwrap();
    assert_eq!(m.apply(&learner(json!(7), "A", "a@b.c")), MapResult::Filtered { filter: "id_not_7".into() });
    assert!(matches!(m.apply(&learner(json!(8), "A", "a@b.c")), MapResult::Mapped(_)));
    let no_email = json!({"learner_id": 8, "first_name": "A", "last_name": "B"});
    assert_eq!(m.apply(&no_email), MapResult::Filtered { filter: "needs_email".into() });
}

#[test]
fn value_map_then_default() {
    let mut f = learner_fields();
    f.insert(
        "status".into(),
        MappingSpec::Rule(MappingRule {
            from: Some(Sources::One("state".into())),
            transform: vec!["lower".into()],
            map: BTreeMap::from([("c".to_owned(), json!("Completed")), ("1".to_owned(), json!("Active"))]),
            default: Some(json!("Unknown")),
            ..MappingRule::default()
        }),
    );
    f.insert(
        "division".into(),
        MappingSpec::Rule(MappingRule {
            value: Some(json!("  HQ ")),
            transform: vec!["trim".into()],
            ..MappingRule::default()
        }),
    );
    f.insert(
        "programme".into(),
        MappingSpec::Rule(MappingRule { default: Some(json!("None")), ..MappingRule::default() }),
    );
    let m = CompiledMapping::compile(entity("learner"), &f, NO_FILTERS, NO_TAGS).unwrap();
    let status = |state: Value| {
        let mut r = learner(json!(1), "", "a@b.c");
        r["state"] = state;
        mapped(m.apply(&r)).data["status"].clone()
    };
    assert_eq!(status(json!("C")), json!("Completed"), "hit after the transform");
    assert_eq!(status(json!(1)), json!("Active"), "numbers look up by string form");
    assert_eq!(status(json!("paused")), json!("paused"), "a miss passes through");
    assert_eq!(status(Value::Null), json!("Unknown"));
    let out = mapped(m.apply(&learner(json!(1), "", "a@b.c")));
    assert_eq!(out.data["status"], json!("Unknown"), "missing is null, then default");
    assert_eq!(out.data["division"], json!("HQ"), "a constant is transformed");
    assert_eq!(out.data["programme"], json!("None"));
}

#[test]
fn pointer_and_bracket_paths() {
    let mut f = learner_fields();
    f.insert("external_id".into(), path("/ids/lms.id"));
    f.insert("programme".into(), path("enrolments[1].name"));
    f.insert("division".into(), path("/org~1unit/0"));
    f.insert("status".into(), path("enrolments.0.status"));
    let m = CompiledMapping::compile(entity("learner"), &f, NO_FILTERS, NO_TAGS).unwrap();
    let record = json!({
        "ids": {"lms.id": "X-1"}, "first_name": "A", "last_name": "B",
        "enrolments": [{"name": "First", "status": "Done"}, {"name": "Second"}],
        "org/unit": ["South"],
    });
    let out = mapped(m.apply(&record));
    assert_eq!(out.external_id, "X-1");
    assert_eq!(out.data["programme"], json!("Second"));
    assert_eq!(out.data["division"], json!("South"));
    assert_eq!(out.data["status"], json!("Done"));
}

#[test]
fn coalesce_and_concat_with_one_or_several_sources() {
    let many = |from: &[&str], transforms: &[&str], separator: Option<&str>| {
        MappingSpec::Rule(MappingRule {
            from: Some(Sources::Many(from.iter().map(|s| s.to_string()).collect())),
            transform: transforms.iter().map(|s| s.to_string()).collect(),
            separator: separator.map(Into::into),
            ..MappingRule::default()
        })
    };
    let mut f = learner_fields();
    f.insert("email".into(), many(&["work_email", "home_email"], &["null_if_empty", "coalesce", "lower"], None));
    f.insert("programme".into(), many(&["code", "title"], &["trim", "concat"], Some(" — ")));
    f.insert("division".into(), many(&["region"], &["concat"], None));
    let m = CompiledMapping::compile(entity("learner"), &f, NO_FILTERS, NO_TAGS).unwrap();
    let record = json!({"learner_id": 1, "first_name": "A", "last_name": "B",
        "work_email": " ", "home_email": "A@Home.net", "code": " ST0119 ", "title": "Data", "region": 5});
    let out = mapped(m.apply(&record));
    assert_eq!(out.data["email"], json!("a@home.net"));
    assert_eq!(out.data["programme"], json!("ST0119 — Data"));
    assert_eq!(out.data["division"], json!("5"));
    let out = mapped(m.apply(&json!({"learner_id": 1, "first_name": "A", "last_name": "B"})));
    assert_eq!(out.data["email"], Value::Null);
    assert_eq!(out.data["programme"], Value::Null, "all null concatenates to null");
}

#[test]
fn compile_errors_name_entity_field_and_problem() {
    let learner_entity = entity("learner");
    let err = |f: BTreeMap<String, MappingSpec>| {
        CompiledMapping::compile(learner_entity, &f, NO_FILTERS, NO_TAGS).unwrap_err()
    };

    let e = err(fields(&[("shoe_size", path("x"))]));
    assert!(matches!(e, MappingError::UnknownField { .. }));
    assert!(e.to_string().contains("`learner`") && e.to_string().contains("`shoe_size`"), "{e}");

    let e = err(fields(&[("email", rule("email", &["rot13"]))]));
    assert_eq!(e.to_string().split(" (known").next(), Some("mapping of `learner.email`: unknown transform `rot13`"));

    let two = MappingSpec::Rule(MappingRule {
        from: Some(Sources::Many(vec!["a".into(), "b".into()])),
        ..MappingRule::default()
    });
    let e = err(fields(&[("programme", two)]));
    assert!(e.to_string().contains("`learner.programme`") && e.to_string().contains("`concat` or `coalesce`"), "{e}");

    let e = err(fields(&[("programme", path("a..b"))]));
    assert!(e.to_string().contains("bad source path `a..b`"), "{e}");

    let bad_const = MappingSpec::Rule(MappingRule {
        value: Some(json!("many")),
        transform: vec!["int".into()],
        ..MappingRule::default()
    });
    let e = err(fields(&[("uln", bad_const)]));
    assert!(e.to_string().contains("`int` cannot convert the constant string"), "{e}");
    let wrong_type = MappingSpec::Rule(MappingRule { value: Some(json!(["a"])), ..MappingRule::default() });
    let e = err(fields(&[("division", wrong_type)]));
    assert_eq!(
        e.to_string(),
        "mapping of `learner.division`: the constant cannot be used: field `learner.division` \
         expects a string but got an array (source `constant`)"
    );

    let e = err(fields(&[("shoe_size", path("x")), ("email", rule("e", &["nope"]))]));
    let MappingError::Several { errors, .. } = &e else { panic!("{e:?}") };
    assert_eq!(errors.len(), 2, "every problem at once: {e}");

    let tags = BTreeMap::from([("status".to_owned(), "x".to_owned())]);
    let e = CompiledMapping::compile(learner_entity, &learner_fields(), NO_FILTERS, &tags).unwrap_err();
    assert_eq!(e.to_string(), "tag `status` of `learner` has the same name as a field of the entity");

    let filters = BTreeMap::from([(
        "f".to_owned(),
        filter(None, Some("shoe_size"), FilterOp::Exists, None, FilterAction::Include),
    )]);
    let e = CompiledMapping::compile(learner_entity, &learner_fields(), &filters, NO_TAGS).unwrap_err();
    assert_eq!(e.to_string(), "filter `f` of `learner`: unknown field `shoe_size`");

    let filters =
        BTreeMap::from([("g".to_owned(), filter(None, Some("uln"), FilterOp::Exists, None, FilterAction::Include))]);
    let e = CompiledMapping::compile(learner_entity, &learner_fields(), &filters, NO_TAGS).unwrap_err();
    assert!(e.to_string().starts_with("filter `g` of `learner`: field `uln` is not mapped"), "{e}");

    let filters = BTreeMap::from([(
        "h".to_owned(),
        filter(Some("x"), None, FilterOp::In, Some(json!("x")), FilterAction::Include),
    )]);
    let e = CompiledMapping::compile(learner_entity, &learner_fields(), &filters, NO_TAGS).unwrap_err();
    assert!(matches!(e, MappingError::InvalidFilter { .. }), "{e}");
}
