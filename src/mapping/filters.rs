//! Record filters: a test on one value of the raw record (`source`) or of the mapped
//! record (`field`), and whether matching records are kept or dropped.

use serde_json::Value;

use super::value::{View, with_text};
use crate::config::SourcePath;
use crate::config::{FilterAction, FilterOp, FilterSpec};

/// A compiled filter.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) name: String,
    pub(crate) target: Target,
    test: Test,
    action: FilterAction,
}

/// What a filter looks at.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A path into the raw record, tested before mapping.
    Source(SourcePath),
    /// A target field, tested on the mapped value.
    Field(String),
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Exists,
    Missing,
    Contains(String),
    StartsWith(String),
    EndsWith(String),
}

impl Filter {
    /// Compiles one filter; the error says what is wrong with it. Whether a `field`
    /// exists is the caller's business (it knows the entity).
    pub(crate) fn compile(name: &str, spec: &FilterSpec) -> Result<Self, String> {
        let target = match (&spec.source, &spec.field) {
            (Some(path), None) => {
                Target::Source(SourcePath::compile(path).map_err(|e| format!("bad source path `{path}`: {e}"))?)
            }
            (None, Some(field)) => Target::Field(field.clone()),
            _ => {
                return Err("give exactly one of `source` (a source path) or `field` (a target field)".into());
            }
        };
        let op = spec.op;
        let text = |v: &Option<Value>| -> Result<String, String> {
            match v {
                Some(v) => with_text(View::of(v), str::to_owned)
                    .ok_or_else(|| format!("`{}` needs a string or number `value`", op_name(op))),
                None => Err(format!("`{}` needs a `value`", op_name(op))),
            }
        };
        let list = |v: &Option<Value>| match v {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => Err(format!("`{}` needs an array `value`", op_name(op))),
        };
        let one = |v: &Option<Value>| v.clone().ok_or_else(|| format!("`{}` needs a `value`", op_name(op)));
        let test = match op {
            FilterOp::Eq => Test::Eq(one(&spec.value)?),
            FilterOp::Ne => Test::Ne(one(&spec.value)?),
            FilterOp::In => Test::In(list(&spec.value)?),
            FilterOp::NotIn => Test::NotIn(list(&spec.value)?),
            FilterOp::Exists | FilterOp::Missing if spec.value.is_some() => {
                return Err(format!("`{}` takes no `value`", op_name(op)));
            }
            FilterOp::Exists => Test::Exists,
            FilterOp::Missing => Test::Missing,
            FilterOp::Contains => Test::Contains(text(&spec.value)?),
            FilterOp::StartsWith => Test::StartsWith(text(&spec.value)?),
            FilterOp::EndsWith => Test::EndsWith(text(&spec.value)?),
        };
        Ok(Self { name: name.to_owned(), target, test, action: spec.action })
    }

    /// Whether a record whose tested value is `v` (`None` when absent) is kept.
    pub(crate) fn keeps(&self, v: Option<&Value>) -> bool {
        let v = v.filter(|v| !v.is_null());
        let matched = match (&self.test, v) {
            (Test::Exists, v) => v.is_some(),
            (Test::Missing, v) => v.is_none(),
            (Test::Eq(want), v) => v.is_some_and(|v| loose_eq(v, want)),
            (Test::Ne(want), v) => !v.is_some_and(|v| loose_eq(v, want)),
            (Test::In(list), v) => v.is_some_and(|v| list.iter().any(|w| loose_eq(v, w))),
            (Test::NotIn(list), v) => !v.is_some_and(|v| list.iter().any(|w| loose_eq(v, w))),
            (_, None) => false,
            (Test::Contains(want), Some(Value::Array(items))) => {
                items.iter().any(|i| with_text(View::of(i), |t| t == want).unwrap_or(false))
            }
            (Test::Contains(want), Some(v)) => text_test(v, |t| t.contains(want.as_str())),
            (Test::StartsWith(want), Some(v)) => text_test(v, |t| t.starts_with(want.as_str())),
            (Test::EndsWith(want), Some(v)) => text_test(v, |t| t.ends_with(want.as_str())),
        };
        match self.action {
            FilterAction::Include => matched,
            FilterAction::Exclude => !matched,
        }
    }
}

fn text_test(v: &Value, f: impl FnOnce(&str) -> bool) -> bool {
    with_text(View::of(v), f).unwrap_or(false)
}

/// JSON equality, except that numbers compare by value (`5` = `5.0`) and a string and a
/// number compare by their string forms (`"12"` = `12`).
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y || x.as_f64().is_some_and(|x| y.as_f64() == Some(x)),
        },
        (Value::String(s), n @ Value::Number(_)) | (n @ Value::Number(_), Value::String(s)) => text_test(n, |t| t == s),
        _ => a == b,
    }
}

fn op_name(op: FilterOp) -> &'static str {
    match op {
        FilterOp::Eq => "eq",
        FilterOp::Ne => "ne",
        FilterOp::In => "in",
        FilterOp::NotIn => "not_in",
        FilterOp::Exists => "exists",
        FilterOp::Missing => "missing",
        FilterOp::Contains => "contains",
        FilterOp::StartsWith => "starts_with",
        FilterOp::EndsWith => "ends_with",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filter(op: FilterOp, value: Option<Value>, action: FilterAction) -> Filter {
        let spec = FilterSpec {
            entity: "learner".into(),
            source: Some("status".into()),
            field: None,
            op,
            value,
            action,
            enabled: None,
        };
        Filter::compile("f", &spec).unwrap()
    }

    fn matches(op: FilterOp, value: Option<Value>, v: Option<Value>) -> bool {
        let include = filter(op, value.clone(), FilterAction::Include).keeps(v.as_ref());
        let exclude = filter(op, value, FilterAction::Exclude).keeps(v.as_ref());
        assert_ne!(include, exclude, "include and exclude are opposites");
        include
    }

    #[test]
    fn equality_is_json_equality_with_loose_numbers() {
        use FilterOp::{Eq, Ne};
        assert!(matches(Eq, Some(json!("active")), Some(json!("active"))));
        assert!(!matches(Eq, Some(json!("active")), Some(json!("Active"))));
        assert!(matches(Eq, Some(json!(12)), Some(json!("12"))));
        assert!(matches(Eq, Some(json!("12")), Some(json!(12))));
        assert!(matches(Eq, Some(json!(5)), Some(json!(5.0))));
        assert!(!matches(Eq, Some(json!(true)), Some(json!("true"))));
        assert!(!matches(Eq, Some(json!("x")), None));
        assert!(matches(Ne, Some(json!("x")), None));
        assert!(matches(Ne, Some(json!("x")), Some(json!("y"))));
        assert!(!matches(Ne, Some(json!(1)), Some(json!("1"))));
        assert!(matches(Eq, Some(json!({"a": [1]})), Some(json!({"a": [1]}))));
    }

    #[test]
    fn membership() {
        use FilterOp::{In, NotIn};
        let list = Some(json!(["a", 2]));
        assert!(matches(In, list.clone(), Some(json!("a"))));
        assert!(matches(In, list.clone(), Some(json!("2"))));
        assert!(!matches(In, list.clone(), Some(json!("b"))));
        assert!(!matches(In, list.clone(), None));
        assert!(matches(NotIn, list.clone(), Some(json!("b"))));
        assert!(matches(NotIn, list.clone(), Some(json!(null))));
        assert!(!matches(NotIn, list, Some(json!(2))));
    }

    #[test]
    fn presence_counts_null_as_missing() {
        use FilterOp::{Exists, Missing};
        assert!(matches(Exists, None, Some(json!(""))));
        assert!(!matches(Exists, None, Some(json!(null))));
        assert!(!matches(Exists, None, None));
        assert!(matches(Missing, None, Some(json!(null))));
        assert!(matches(Missing, None, None));
        assert!(!matches(Missing, None, Some(json!(0))));
    }

    #[test]
    fn text_tests_are_case_sensitive_on_string_forms() {
        use FilterOp::{Contains, EndsWith, StartsWith};
        let at = Some(json!("@test.aptem.co.uk"));
        assert!(matches(EndsWith, at.clone(), Some(json!("x@test.aptem.co.uk"))));
        assert!(!matches(EndsWith, at.clone(), Some(json!("x@TEST.aptem.co.uk"))));
        assert!(!matches(EndsWith, at, None));
        assert!(matches(StartsWith, Some(json!(12)), Some(json!(1234))));
        assert!(matches(Contains, Some(json!("nn")), Some(json!("Anne"))));
        assert!(matches(Contains, Some(json!("vip")), Some(json!(["a", "vip"]))));
        assert!(!matches(Contains, Some(json!("vip")), Some(json!({"vip": 1}))));
        assert!(matches(StartsWith, Some(json!("t")), Some(json!(true))));
    }

    #[test]
    fn bad_filters_say_why() {
        let spec = |op, value, source: Option<&str>, field: Option<&str>| FilterSpec {
            entity: "learner".into(),
            source: source.map(Into::into),
            field: field.map(Into::into),
            op,
            value,
            action: FilterAction::Exclude,
            enabled: None,
        };
        let err = |s: FilterSpec| Filter::compile("f", &s).unwrap_err();
        assert!(err(spec(FilterOp::In, Some(json!("a")), Some("x"), None)).contains("array"));
        assert!(err(spec(FilterOp::Eq, None, Some("x"), None)).contains("needs a `value`"));
        assert!(err(spec(FilterOp::Exists, Some(json!(1)), Some("x"), None)).contains("no `value`"));
        assert!(err(spec(FilterOp::Contains, Some(json!([1])), Some("x"), None)).contains("string"));
        assert!(err(spec(FilterOp::Exists, None, Some("x"), Some("y"))).contains("exactly one"));
        assert!(err(spec(FilterOp::Exists, None, None, None)).contains("exactly one"));
        assert!(err(spec(FilterOp::Exists, None, Some("a..b"), None)).contains("bad source path"));
    }
}
