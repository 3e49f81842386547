//! A value on its way through a mapping: borrowed from the record as long as possible,
//! owned only once a transform has to build something new.

use std::borrow::Cow;
use std::fmt::{self, Write};

use serde_json::Value;

/// A value in flight. `Ref` points into the record or the compiled mapping, `Str` is a
/// string that may still borrow (a trimmed slice), `Own` was built by a transform.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Ref(&'a Value),
    Str(Cow<'a, str>),
    Own(Value),
}

/// A read-only view of a [`Val`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum View<'v> {
    Value(&'v Value),
    Str(&'v str),
}

pub(crate) const NULL: Val<'static> = Val::Ref(&Value::Null);

impl<'a> Val<'a> {
    pub(crate) fn view(&self) -> View<'_> {
        match self {
            Self::Ref(v) => View::of(v),
            Self::Str(s) => View::Str(s),
            Self::Own(v) => View::of(v),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.view(), View::Value(Value::Null))
    }

    /// The string inside, if the value is a string.
    pub(crate) fn into_str(self) -> Result<Cow<'a, str>, Self> {
        match self {
            Self::Ref(Value::String(s)) => Ok(Cow::Borrowed(s.as_str())),
            Self::Str(s) => Ok(s),
            Self::Own(Value::String(s)) => Ok(Cow::Owned(s)),
            other => Err(other),
        }
    }

    /// The finished value, cloned from the record only now and only this part of it.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Self::Ref(v) => v.clone(),
            Self::Str(s) => Value::String(s.into_owned()),
            Self::Own(v) => v,
        }
    }
}

impl<'v> View<'v> {
    /// The view of a finished value.
    pub(crate) fn of(v: &'v Value) -> Self {
        match v {
            Value::String(s) => Self::Str(s),
            other => Self::Value(other),
        }
    }
}

/// The JSON type of a value, for messages that must not contain the value itself.
pub(crate) fn type_name(v: View<'_>) -> &'static str {
    match v {
        View::Str(_) => "string",
        View::Value(Value::Null) => "null",
        View::Value(Value::Bool(_)) => "boolean",
        View::Value(Value::Number(_)) => "number",
        View::Value(Value::String(_)) => "string",
        View::Value(Value::Array(_)) => "array",
        View::Value(Value::Object(_)) => "object",
    }
}

/// Calls `f` with the string form of a scalar (a string as is, a number as JSON writes
/// it, `true`/`false`) without allocating; `None` for null, arrays and objects.
pub(crate) fn with_text<R>(v: View<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match v {
        View::Str(s) => Some(f(s)),
        View::Value(Value::Bool(b)) => Some(f(if *b { "true" } else { "false" })),
        View::Value(Value::Number(n)) => {
            let mut buf = StackBuf::new();
            write!(buf, "{n}").ok()?;
            Some(f(buf.as_str()))
        }
        View::Value(_) => None,
    }
}

/// The string form of a scalar as an owned string (for output values).
pub(crate) fn text(v: View<'_>) -> Option<String> {
    with_text(v, str::to_owned)
}

/// A small fixed buffer for formatting numbers without a heap allocation. JSON numbers
/// print in at most 24 bytes (`-1.7976931348623157e+308`).
pub(crate) struct StackBuf {
    bytes: [u8; 40],
    len: usize,
}

impl StackBuf {
    pub(crate) fn new() -> Self {
        Self { bytes: [0; 40], len: 0 }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the prefix is always valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dest = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scalars_have_string_forms() {
        let t = |v: Value| text(View::of(&v));
        assert_eq!(t(json!("x")), Some("x".into()));
        assert_eq!(t(json!(12)), Some("12".into()));
        assert_eq!(t(json!(-12)), Some("-12".into()));
        assert_eq!(t(json!(u64::MAX)), Some(u64::MAX.to_string()));
        assert_eq!(t(json!(12.5)), Some("12.5".into()));
        assert_eq!(t(json!(-1.7976931348623157e308)), Some("-1.7976931348623157e+308".into()));
        assert_eq!(t(json!(true)), Some("true".into()));
        assert_eq!(t(json!(null)), None);
        assert_eq!(t(json!([1])), None);
        assert_eq!(t(json!({"a": 1})), None);
    }

    #[test]
    fn type_names_never_show_the_value() {
        assert_eq!(type_name(View::of(&json!("secret"))), "string");
        assert_eq!(type_name(View::of(&json!(1))), "number");
        assert_eq!(type_name(View::of(&json!(null))), "null");
        assert_eq!(type_name(View::of(&json!([]))), "array");
        assert_eq!(type_name(View::of(&json!({}))), "object");
        assert_eq!(type_name(View::of(&json!(false))), "boolean");
    }

    #[test]
    fn strings_stay_borrowed_until_finished() {
        let v = json!("abc");
        let val = Val::Ref(&v);
        assert!(matches!(val.clone().into_str(), Ok(Cow::Borrowed("abc"))));
        assert_eq!(val.into_value(), v);
        assert!(NULL.is_null());
        assert!(Val::Own(json!(1)).into_str().is_err());
    }
}
