//! Value transforms. Each works on a [`Val`] and keeps borrowing from the record when
//! it can (a trimmed or already lower-case string is not copied). Null passes through
//! every transform; a present value a transform cannot convert is a failure that
//! reports only the value's JSON type.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::{Number, Value};

use super::dates;
use super::value::{NULL, Val, View, type_name, with_text};

/// A transform of one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    Trim,
    Lower,
    Upper,
    String,
    Int,
    Number,
    Bool,
    Date,
    Datetime,
    NullIfEmpty,
    SplitNameFirst,
    SplitNameLast,
}

/// A transform that merges the values of several sources into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combiner {
    Concat,
    Coalesce,
}

/// One entry of a mapping's `transform` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    One(Transform),
    Combine(Combiner),
}

impl Step {
    /// The step a transform name stands for (the names of `config::TRANSFORMS`).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        use Transform as T;
        Some(match name {
            "trim" => Self::One(T::Trim),
            "lower" => Self::One(T::Lower),
            "upper" => Self::One(T::Upper),
            "string" => Self::One(T::String),
            "int" => Self::One(T::Int),
            "number" => Self::One(T::Number),
            "bool" => Self::One(T::Bool),
            "date" => Self::One(T::Date),
            "datetime" => Self::One(T::Datetime),
            "null_if_empty" => Self::One(T::NullIfEmpty),
            "split_name_first" => Self::One(T::SplitNameFirst),
            "split_name_last" => Self::One(T::SplitNameLast),
            "concat" => Self::Combine(Combiner::Concat),
            "coalesce" => Self::Combine(Combiner::Coalesce),
            _ => return None,
        })
    }
}

impl Transform {
    /// The name configuration uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Trim => "trim",
            Self::Lower => "lower",
            Self::Upper => "upper",
            Self::String => "string",
            Self::Int => "int",
            Self::Number => "number",
            Self::Bool => "bool",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::NullIfEmpty => "null_if_empty",
            Self::SplitNameFirst => "split_name_first",
            Self::SplitNameLast => "split_name_last",
        }
    }

    /// Applies the transform; the error is the JSON type of a value it cannot convert.
    pub(crate) fn apply(self, v: Val<'_>) -> Result<Val<'_>, &'static str> {
        if v.is_null() {
            return Ok(v);
        }
        let kind = type_name(v.view());
        match self {
            Self::Trim => Ok(on_str(v, |s| s.trim())),
            Self::Lower => Ok(match v.into_str() {
                Ok(s) => Val::Str(lower(s)),
                Err(v) => v,
            }),
            Self::Upper => Ok(match v.into_str() {
                Ok(s) => Val::Str(upper(s)),
                Err(v) => v,
            }),
            Self::String => match v.view() {
                View::Str(_) => Ok(v),
                view => with_text(view, |t| Val::Own(Value::String(t.to_owned()))).ok_or(kind),
            },
            Self::Int => to_int(&v).map(|i| Val::Own(i.into())).ok_or(kind),
            Self::Number => to_number(&v).map(|n| Val::Own(n.into())).ok_or(kind),
            Self::Bool => to_bool(v.view()).map(|b| Val::Own(b.into())).ok_or(kind),
            Self::Date => dates::to_date(v.view()).map(|s| Val::Own(s.into())).ok_or(kind),
            Self::Datetime => dates::to_datetime(v.view()).map(|s| Val::Own(s.into())).ok_or(kind),
            Self::NullIfEmpty => match v.view() {
                View::Str(s) if s.trim().is_empty() => Ok(NULL),
                _ => Ok(v),
            },
            Self::SplitNameFirst => match v.into_str() {
                Ok(s) => Ok(match split_name(&s) {
                    Some((first, _)) => Val::Str(slice(s, first)),
                    None => NULL,
                }),
                Err(_) => Err(kind),
            },
            Self::SplitNameLast => match v.into_str() {
                Ok(s) => Ok(match split_name(&s) {
                    Some((_, Some(last))) => Val::Str(slice(s, last)),
                    _ => NULL,
                }),
                Err(_) => Err(kind),
            },
        }
    }
}

impl Combiner {
    /// The name configuration uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Concat => "concat",
            Self::Coalesce => "coalesce",
        }
    }
}

/// Joins the string forms of several values, skipping nulls; all null gives null.
#[derive(Debug, Default)]
pub(crate) struct Concat<'a> {
    out: Option<Cow<'a, str>>,
}

impl<'a> Concat<'a> {
    /// Adds one value; arrays and objects have no string form and fail.
    pub(crate) fn push(&mut self, mut v: Val<'a>, separator: &str) -> Result<(), &'static str> {
        if v.is_null() {
            return Ok(());
        }
        let kind = type_name(v.view());
        let first = self.out.is_none();
        let out = self.out.get_or_insert(Cow::Borrowed(""));
        if first {
            match v.into_str() {
                Ok(s) => {
                    *out = s;
                    return Ok(());
                }
                Err(back) => v = back,
            }
        } else {
            out.to_mut().push_str(separator);
        }
        let buf = out.to_mut();
        with_text(v.view(), |t| buf.push_str(t)).ok_or(kind)
    }

    /// The joined string, or null when every value was null.
    pub(crate) fn finish(self) -> Val<'a> {
        self.out.map_or(NULL, Val::Str)
    }
}

fn on_str<'a>(v: Val<'a>, f: fn(&str) -> &str) -> Val<'a> {
    match v.into_str() {
        Ok(s) => {
            let range = subrange(&s, f(&s));
            Val::Str(slice(s, range))
        }
        Err(v) => v,
    }
}

/// Where `part` (a sub-slice of `whole`) sits in `whole`.
fn subrange(whole: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

/// A part of a string, still borrowed when the string was.
fn slice(s: Cow<'_, str>, range: Range<usize>) -> Cow<'_, str> {
    if range == (0..s.len()) {
        return s;
    }
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.get(range).unwrap_or_default()),
        Cow::Owned(o) => Cow::Owned(o.get(range).unwrap_or_default().to_owned()),
    }
}

fn lower(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()) { s } else { Cow::Owned(s.to_lowercase()) }
}

fn upper(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_lowercase()) { s } else { Cow::Owned(s.to_uppercase()) }
}

/// "Mary Ann Smith" → ("Mary Ann", Some("Smith")); "Cher" → ("Cher", None); blank → None.
fn split_name(s: &str) -> Option<(Range<usize>, Option<Range<usize>>)> {
    let name = s.trim();
    if name.is_empty() {
        return None;
    }
    Some(match name.rsplit_once(char::is_whitespace) {
        Some((first, last)) => (subrange(s, first.trim_end()), Some(subrange(s, last))),
        None => (subrange(s, name), None),
    })
}

fn to_int(v: &Val<'_>) -> Option<i64> {
    match v.view() {
        View::Value(Value::Number(n)) => n.as_i64().or_else(|| whole_f64(n.as_f64()?)),
        View::Str(s) => {
            let s = s.trim();
            s.parse().ok().or_else(|| whole_f64(s.parse().ok()?))
        }
        View::Value(_) => None,
    }
}

/// `f` as an i64 when it is a whole number in range.
pub(crate) fn whole_f64(f: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    // The cast is exact when it is used: `f` is whole and strictly inside the i64 range.
    (f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

fn to_number(v: &Val<'_>) -> Option<Number> {
    match v.view() {
        View::Value(Value::Number(n)) => Number::from_f64(n.as_f64()?),
        View::Str(s) => Number::from_f64(s.trim().parse().ok()?),
        View::Value(_) => None,
    }
}

fn to_bool(v: View<'_>) -> Option<bool> {
    match v {
        View::Value(Value::Bool(b)) => Some(*b),
        View::Value(Value::Number(n)) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        View::Str(s) => {
            let s = s.trim();
            let any = |words: &[&str]| words.iter().any(|w| s.eq_ignore_ascii_case(w));
            if any(&["true", "yes", "1"]) {
                Some(true)
            } else if any(&["false", "no", "0"]) {
                Some(false)
            } else {
                None
            }
        }
        View::Value(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(name: &str, v: Value) -> Result<Value, &'static str> {
        let Some(Step::One(t)) = Step::parse(name) else {
            panic!("`{name}` is not a one-value transform");
        };
        t.apply(Val::Ref(&v)).map(Val::into_value)
    }

    #[test]
    fn every_configured_transform_name_parses() {
        for name in crate::config::TRANSFORMS {
            let step = Step::parse(name).unwrap();
            let back = match step {
                Step::One(t) => t.name(),
                Step::Combine(c) => c.name(),
            };
            assert_eq!(back, *name);
        }
        assert_eq!(Step::parse("reverse"), None);
    }

    #[test]
    fn null_passes_through_everything() {
        for name in crate::config::TRANSFORMS {
            if let Some(Step::One(t)) = Step::parse(name) {
                assert_eq!(t.apply(NULL).map(Val::into_value), Ok(Value::Null), "{name}");
            }
        }
    }

    #[test]
    fn string_case_and_trim() {
        assert_eq!(run("trim", json!("  a b \n")), Ok(json!("a b")));
        assert_eq!(run("trim", json!(5)), Ok(json!(5)));
        assert_eq!(run("lower", json!("MiXeD")), Ok(json!("mixed")));
        assert_eq!(run("lower", json!("ÉCOLE")), Ok(json!("école")));
        assert_eq!(run("lower", json!(true)), Ok(json!(true)));
        assert_eq!(run("upper", json!("straße")), Ok(json!("STRASSE")));
        assert_eq!(run("upper", json!([1])), Ok(json!([1])));
        let v = json!("already lower");
        let out = Transform::Lower.apply(Val::Ref(&v)).unwrap();
        assert!(matches!(out, Val::Str(Cow::Borrowed(_))), "no copy when nothing changes");
        let v = json!("  x ");
        let out = Transform::Trim.apply(Val::Ref(&v)).unwrap();
        assert!(matches!(out, Val::Str(Cow::Borrowed("x"))), "trim borrows");
    }

    #[test]
    fn string_forms() {
        assert_eq!(run("string", json!(12)), Ok(json!("12")));
        assert_eq!(run("string", json!(-3.5)), Ok(json!("-3.5")));
        assert_eq!(run("string", json!(false)), Ok(json!("false")));
        assert_eq!(run("string", json!("s")), Ok(json!("s")));
        assert_eq!(run("string", json!({"a": 1})), Err("object"));
        assert_eq!(run("string", json!([])), Err("array"));
    }

    #[test]
    fn integers() {
        assert_eq!(run("int", json!(12)), Ok(json!(12)));
        assert_eq!(run("int", json!(12.0)), Ok(json!(12)));
        assert_eq!(run("int", json!("12")), Ok(json!(12)));
        assert_eq!(run("int", json!(" -12 ")), Ok(json!(-12)));
        assert_eq!(run("int", json!("12.0")), Ok(json!(12)));
        assert_eq!(run("int", json!("1e3")), Ok(json!(1000)));
        assert_eq!(run("int", json!("12.5")), Err("string"));
        assert_eq!(run("int", json!(12.5)), Err("number"));
        assert_eq!(run("int", json!(u64::MAX)), Err("number"));
        assert_eq!(run("int", json!("1e30")), Err("string"));
        assert_eq!(run("int", json!("")), Err("string"));
        assert_eq!(run("int", json!("twelve")), Err("string"));
        assert_eq!(run("int", json!("NaN")), Err("string"));
        assert_eq!(run("int", json!(true)), Err("boolean"));
        assert_eq!(whole_f64(-9_223_372_036_854_775_808.0), Some(i64::MIN));
        assert_eq!(whole_f64(9_223_372_036_854_775_808.0), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(run("number", json!(5)), Ok(json!(5.0)));
        assert_eq!(run("number", json!(2.5)), Ok(json!(2.5)));
        assert_eq!(run("number", json!("1500.50")), Ok(json!(1500.5)));
        assert_eq!(run("number", json!(" 7 ")), Ok(json!(7.0)));
        assert_eq!(run("number", json!("1e3")), Ok(json!(1000.0)));
        assert_eq!(run("number", json!("inf")), Err("string"));
        assert_eq!(run("number", json!("NaN")), Err("string"));
        assert_eq!(run("number", json!("")), Err("string"));
        assert_eq!(run("number", json!("£5")), Err("string"));
        assert_eq!(run("number", json!([])), Err("array"));
    }

    #[test]
    fn booleans() {
        for yes in [json!(true), json!("true"), json!("TRUE"), json!("yes"), json!("1"), json!(1), json!(1.0)] {
            assert_eq!(run("bool", yes.clone()), Ok(json!(true)), "{yes}");
        }
        for no in [json!(false), json!("false"), json!(" No "), json!("0"), json!(0)] {
            assert_eq!(run("bool", no.clone()), Ok(json!(false)), "{no}");
        }
        assert_eq!(run("bool", json!("maybe")), Err("string"));
        assert_eq!(run("bool", json!(2)), Err("number"));
        assert_eq!(run("bool", json!({})), Err("object"));
    }

    #[test]
    fn dates_and_datetimes() {
        assert_eq!(run("date", json!("2024-03-01T10:52:52.6880167Z")), Ok(json!("2024-03-01")));
        assert_eq!(run("date", json!("01/03/2024")), Ok(json!("2024-03-01")));
        assert_eq!(run("date", json!("1709251200000")), Ok(json!("2024-03-01")));
        assert_eq!(run("date", json!("soon")), Err("string"));
        assert_eq!(run("date", json!(true)), Err("boolean"));
        assert_eq!(run("datetime", json!("1712345678.000100")), Ok(json!("2024-04-05T19:34:38.000Z")));
        assert_eq!(run("datetime", json!("2024-03-01T10:52:52.68+01:00")), Ok(json!("2024-03-01T09:52:52.680Z")));
        assert_eq!(run("datetime", json!("later")), Err("string"));
        assert_eq!(run("datetime", json!([])), Err("array"));
    }

    #[test]
    fn null_if_empty() {
        assert_eq!(run("null_if_empty", json!("")), Ok(Value::Null));
        assert_eq!(run("null_if_empty", json!(" \t")), Ok(Value::Null));
        assert_eq!(run("null_if_empty", json!(" x ")), Ok(json!(" x ")));
        assert_eq!(run("null_if_empty", json!(0)), Ok(json!(0)));
        assert_eq!(run("null_if_empty", json!([])), Ok(json!([])));
    }

    #[test]
    fn name_splitting() {
        let first = |v: Value| run("split_name_first", v);
        let last = |v: Value| run("split_name_last", v);
        assert_eq!(first(json!("Mary Ann Smith")), Ok(json!("Mary Ann")));
        assert_eq!(last(json!("Mary Ann Smith")), Ok(json!("Smith")));
        assert_eq!(first(json!("  Jo   Bloggs  ")), Ok(json!("Jo")));
        assert_eq!(last(json!("  Jo   Bloggs  ")), Ok(json!("Bloggs")));
        assert_eq!(first(json!("Cher")), Ok(json!("Cher")));
        assert_eq!(last(json!("Cher")), Ok(Value::Null));
        assert_eq!(first(json!("   ")), Ok(Value::Null));
        assert_eq!(last(json!("")), Ok(Value::Null));
        assert_eq!(first(json!("Zoë Ångström")), Ok(json!("Zoë")));
        assert_eq!(last(json!(42)), Err("number"));
        assert_eq!(first(json!({})), Err("object"));
    }

    #[test]
    fn concat_joins_string_forms_and_skips_nulls() {
        let vals = [json!("C01"), json!(null), json!(1712345678.0001), json!(true)];
        let mut c = Concat::default();
        for v in &vals {
            c.push(Val::Ref(v), ":").unwrap();
        }
        assert_eq!(c.finish().into_value(), json!("C01:1712345678.0001:true"));

        let one = json!("only");
        let mut c = Concat::default();
        c.push(NULL, "-").unwrap();
        c.push(Val::Ref(&one), "-").unwrap();
        assert!(matches!(c.finish(), Val::Str(Cow::Borrowed("only"))));

        let mut c = Concat::default();
        c.push(NULL, " ").unwrap();
        assert!(c.finish().is_null());

        let mut c = Concat::default();
        assert_eq!(c.push(Val::Own(json!([1])), " "), Err("array"));
        let n = json!(5);
        let mut c = Concat::default();
        c.push(Val::Ref(&n), " ").unwrap();
        c.push(Val::Ref(&n), " ").unwrap();
        assert_eq!(c.finish().into_value(), json!("5 5"));
    }
}
