//! The field-type check every produced value passes.

use serde_json::Value;

use super::dates;
use super::transforms::whole_f64;
use super::value::{View, text};
use crate::config::FieldType;

/// `v` as a value of type `kind`, or `None` on a mismatch.
pub(super) fn conform(kind: FieldType, v: Value) -> Option<Value> {
    match (kind, v) {
        (FieldType::Json, v) => Some(v),
        (FieldType::String, v @ Value::String(_)) => Some(v),
        (FieldType::String, v @ (Value::Number(_) | Value::Bool(_))) => text(View::of(&v)).map(Value::String),
        (FieldType::Email, Value::String(s)) if is_email(&s) => Some(Value::String(s)),
        (FieldType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
        (FieldType::Integer, Value::Number(n)) => whole_f64(n.as_f64()?).map(Value::from),
        (FieldType::Number, v @ Value::Number(_)) => Some(v),
        (FieldType::Boolean, v @ Value::Bool(_)) => Some(v),
        (FieldType::Date, Value::String(s)) if dates::is_date(&s) => Some(Value::String(s)),
        (FieldType::Datetime, Value::String(s)) if dates::is_rfc3339(&s) => Some(Value::String(s)),
        _ => None,
    }
}

/// One `@` with text on both sides.
fn is_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
}

pub(super) fn expected(kind: FieldType) -> &'static str {
    match kind {
        FieldType::String => "a string",
        FieldType::Email => "an email address (text@text)",
        FieldType::Integer => "an integer",
        FieldType::Number => "a number",
        FieldType::Boolean => "a boolean",
        FieldType::Date => "a date (`YYYY-MM-DD`)",
        FieldType::Datetime => "an RFC 3339 date-time",
        FieldType::Json => "JSON",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_accept_numbers_and_booleans() {
        assert_eq!(conform(FieldType::String, json!("x")), Some(json!("x")));
        assert_eq!(conform(FieldType::String, json!(42)), Some(json!("42")));
        assert_eq!(conform(FieldType::String, json!(1.5)), Some(json!("1.5")));
        assert_eq!(conform(FieldType::String, json!(true)), Some(json!("true")));
        assert_eq!(conform(FieldType::String, json!([])), None);
        assert_eq!(conform(FieldType::String, json!({})), None);
    }

    #[test]
    fn emails_need_one_at_with_text_around_it() {
        let email = |s: &str| conform(FieldType::Email, json!(s));
        assert_eq!(email("Ann@Example.com"), Some(json!("Ann@Example.com")));
        for bad in ["ann", "@example.com", "ann@", "a@b@c", ""] {
            assert_eq!(email(bad), None, "{bad}");
        }
        assert_eq!(conform(FieldType::Email, json!(5)), None);
    }

    #[test]
    fn numbers_booleans_and_json() {
        assert_eq!(conform(FieldType::Integer, json!(7)), Some(json!(7)));
        assert_eq!(conform(FieldType::Integer, json!(u64::MAX)), Some(json!(u64::MAX)));
        assert_eq!(conform(FieldType::Integer, json!(7.0)), Some(json!(7)));
        assert_eq!(conform(FieldType::Integer, json!(7.5)), None);
        assert_eq!(conform(FieldType::Integer, json!("7")), None);
        assert_eq!(conform(FieldType::Number, json!(7)), Some(json!(7)));
        assert_eq!(conform(FieldType::Number, json!("7")), None);
        assert_eq!(conform(FieldType::Boolean, json!(false)), Some(json!(false)));
        assert_eq!(conform(FieldType::Boolean, json!("false")), None);
        let anything = json!({"a": [1, null]});
        assert_eq!(conform(FieldType::Json, anything.clone()), Some(anything));
    }

    #[test]
    fn dates_and_datetimes_must_be_canonical() {
        assert_eq!(conform(FieldType::Date, json!("2024-03-01")), Some(json!("2024-03-01")));
        assert_eq!(conform(FieldType::Date, json!("01/03/2024")), None);
        assert_eq!(conform(FieldType::Date, json!(20240301)), None);
        let t = json!("2024-03-01T10:52:52.688Z");
        assert_eq!(conform(FieldType::Datetime, t.clone()), Some(t));
        assert_eq!(conform(FieldType::Datetime, json!("2024-03-01")), None);
        assert_eq!(conform(FieldType::Datetime, json!(1_712_345_678)), None);
    }

    #[test]
    fn every_type_has_an_expectation() {
        for kind in [
            FieldType::String,
            FieldType::Email,
            FieldType::Integer,
            FieldType::Number,
            FieldType::Boolean,
            FieldType::Date,
            FieldType::Datetime,
            FieldType::Json,
        ] {
            assert!(!expected(kind).is_empty());
        }
    }
}
