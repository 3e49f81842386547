//! Properties over arbitrary input: whatever a provider sends, `apply` answers with a
//! result and never panics, and dates come out canonical or not at all.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::tests::{NO_FILTERS, NO_TAGS, entity, filter, learner, learner_fields, rule};
use super::{CompiledMapping, MapResult};
use crate::config::{Diagnostics, FilterAction, FilterOp, Manifests};

/// Every mapping of every built-in connector manifest, compiled.
fn shipped() -> &'static [CompiledMapping] {
    static SHIPPED: OnceLock<Vec<CompiledMapping>> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let mut diag = Diagnostics::default();
        let manifests = Manifests::load(None, &mut diag);
        assert!(diag.is_empty(), "{diag:?}");
        let mut out = Vec::new();
        for m in manifests.iter() {
            for (name, fields) in &m.mappings {
                let compiled = CompiledMapping::compile(entity(name), fields, NO_FILTERS, NO_TAGS);
                out.push(compiled.unwrap_or_else(|e| panic!("{}: {e}", m.name)));
            }
        }
        out
    })
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::from),
        "[0-9:./TZ+ -]{0,30}".prop_map(Value::from),
        Just(json!("2024-03-01T10:52:52.6880167Z")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}|learner_id|email|status|id|ts", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A mapping that runs every transform, every field type and both filter kinds.
fn everything() -> CompiledMapping {
    let mut f = learner_fields();
    for (field, from, t) in [
        ("uln", "a", vec!["string", "upper"]),
        ("programme", "b", vec!["null_if_empty", "split_name_first"]),
        ("division", "c", vec!["split_name_last"]),
        ("start_date", "d", vec!["date"]),
        ("planned_end_date", "email", vec!["date"]),
        ("completion", "status", vec!["datetime", "date"]),
        ("employer_id", "e", vec!["int", "string"]),
    ] {
        f.insert(field.into(), rule(from, &t));
    }
    let filters = BTreeMap::from([
        ("s".to_owned(), filter(Some("id"), None, FilterOp::Contains, Some(json!("x")), FilterAction::Exclude)),
        ("f".to_owned(), filter(None, Some("status"), FilterOp::NotIn, Some(json!(["A", 1])), FilterAction::Include)),
    ]);
    CompiledMapping::compile(entity("learner"), &f, &filters, NO_TAGS).unwrap()
}

proptest! {
    #[test]
    fn apply_never_panics(record in arb_json(), inner in arb_json()) {
        let m = everything();
        let _ = m.apply(&record);
        let wrapped = json!({"learner_id": inner.clone(), "email": inner.clone(), "status": inner.clone(),
            "a": inner.clone(), "b": inner.clone(), "d": inner.clone(), "e": inner, "first_name": "A", "last_name": "B"});
        let _ = m.apply(&wrapped);
        for m in shipped() {
            let _ = m.apply(&record);
            let _ = m.apply(&wrapped);
        }
    }

    #[test]
    fn dates_from_any_string_are_valid_or_dead_letters(s in "\\PC{0,40}", digits in "[0-9]{1,16}(\\.[0-9]{0,8})?") {
        let mut f = learner_fields();
        f.insert("start_date".into(), rule("x", &["date"]));
        f.insert("status".into(), rule("x", &["datetime"]));
        let m = CompiledMapping::compile(entity("learner"), &f, NO_FILTERS, NO_TAGS).unwrap();
        for input in [s.as_str(), digits.as_str()] {
            let mut record = learner(json!(1), "", "a@b.c");
            record["x"] = json!(input);
            match m.apply(&record) {
                MapResult::Mapped(out) => {
                    let date = out.data["start_date"].as_str().unwrap_or_default();
                    prop_assert_eq!(date.len(), 10);
                    let t = out.data["status"].as_str().unwrap_or_default();
                    prop_assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{}", t);
                    prop_assert!(t.ends_with('Z') && t.len() == 24, "{}", t);
                }
                MapResult::DeadLetter { reason } => {
                    let expected = [
                        "transform `date` cannot convert a string for `learner.start_date` (source `x`)",
                        "transform `datetime` cannot convert a string for `learner.status` (source `x`)",
                    ];
                    prop_assert!(expected.contains(&reason.as_str()), "{}", reason);
                }
                MapResult::Filtered { .. } => prop_assert!(false, "no filters here"),
            }
        }
    }
}

/// A contact record of string and email fields, each at a generated provider path, some
/// sharing parents; `None` values are left out of the record, `Some(None)` are nulls.
fn arb_reversible() -> impl Strategy<Value = (BTreeMap<String, String>, serde_json::Map<String, Value>)> {
    let parents = prop_oneof![Just(""), Just("properties."), Just("fields.x."), Just("a.b.c.")];
    let text = prop_oneof![Just(Value::Null), "[ -~]{0,16}".prop_map(Value::from)];
    let email = prop_oneof![Just(Value::Null), "[a-z]{1,8}@[a-z]{1,8}\\.com".prop_map(Value::from)];
    let fields = ["first_name", "last_name", "email", "phone", "company_id"];
    let per_field = fields.map(|f| {
        let value = if f == "email" { email.clone().boxed() } else { text.clone().boxed() };
        (parents.clone(), "[a-zA-Z_][a-zA-Z0-9_]{0,8}", proptest::option::of(value))
    });
    per_field.prop_map(move |picked| {
        let mut paths = BTreeMap::new();
        let mut record = serde_json::Map::new();
        for (i, (f, (parent, leaf, value))) in fields.iter().zip(picked).enumerate() {
            // The index keeps leaves apart, so no path lies inside another.
            paths.insert((*f).to_owned(), format!("{parent}{leaf}{i}"));
            if let Some(v) = value {
                record.insert((*f).to_owned(), v);
            }
        }
        (paths, record)
    })
}

proptest! {
    /// For plain path mappings, mapping the reversed body forward again gives back the
    /// record's fields.
    #[test]
    fn reversed_bodies_map_forward_to_the_same_fields((paths, record) in arb_reversible()) {
        let mut fields: BTreeMap<String, crate::config::MappingSpec> =
            paths.iter().map(|(f, p)| (f.clone(), crate::config::MappingSpec::Path(p.clone()))).collect();
        fields.insert("external_id".into(), crate::config::MappingSpec::Path("id".into()));
        let reverse = super::ReverseMapping::compile(entity("contact"), &fields).unwrap();
        let reversed = reverse.reverse(&Value::Object(record.clone())).unwrap();
        prop_assert!(reversed.skipped.is_empty());
        let mut provider = reversed.fields;
        provider["id"] = json!("k1");
        let forward = CompiledMapping::compile(entity("contact"), &fields, NO_FILTERS, NO_TAGS).unwrap();
        let MapResult::Mapped(out) = forward.apply(&provider) else {
            return Err(TestCaseError::fail("the reversed body did not map"));
        };
        prop_assert_eq!(out.external_id, "k1");
        for (field, value) in &record {
            prop_assert_eq!(out.data.get(field), Some(value), "{}", field);
        }
        for field in paths.keys().filter(|f| !record.contains_key(*f)) {
            prop_assert!(out.data.get(field).is_none_or(Value::is_null), "{} was not in the record", field);
        }
    }
}
