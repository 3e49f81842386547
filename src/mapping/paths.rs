//! Source paths, compiled once into segment vectors so that looking a value up in a
//! record parses nothing and allocates nothing.
//!
//! Three spellings are accepted:
//! - dotted: `properties.email`, `fields.status.name`, `items.0.id`;
//! - dotted with bracketed indexes: `items[0].id`, `matrix[1][2]`;
//! - an RFC 6901 JSON pointer when the path starts with `/`: `/properties/a.b`,
//!   `/items/0/id` (`~1` stands for `/` and `~0` for `~`).

use serde_json::Value;

/// One step into a record: an object key, which is also an array index when it is a
/// canonical non-negative integer (`0`, `12`, never `01`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    key: Box<str>,
    index: Option<usize>,
}

impl Segment {
    fn new(key: &str) -> Self {
        Self { key: key.into(), index: parse_index(key) }
    }
}

/// A compiled source path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourcePath {
    text: Box<str>,
    segments: Vec<Segment>,
}

impl SourcePath {
    /// Compiles `text`; the error says what is wrong with it.
    pub(crate) fn compile(text: &str) -> Result<Self, String> {
        let segments = if let Some(pointer) = text.strip_prefix('/') {
            pointer.split('/').map(|s| Segment::new(&unescape(s))).collect()
        } else {
            dotted(text)?
        };
        Ok(Self { text: text.into(), segments })
    }

    /// The path as written in configuration.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The steps of the path: object keys, or array indexes written as numbers.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|s| &*s.key)
    }

    /// The value at this path, or `None` when any step is missing.
    pub(crate) fn lookup<'a>(&self, record: &'a Value) -> Option<&'a Value> {
        let mut current = record;
        for seg in &self.segments {
            current = match current {
                Value::Object(map) => map.get(&*seg.key)?,
                Value::Array(items) => items.get(seg.index?)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

fn dotted(text: &str) -> Result<Vec<Segment>, String> {
    if text.is_empty() {
        return Err("the path is empty".into());
    }
    let mut out = Vec::new();
    for part in text.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if name.contains(']') {
            return Err(format!("unmatched `]` in `{part}`"));
        }
        if name.is_empty() && rest.is_empty() {
            return Err("empty segment (two dots in a row, or a leading or trailing dot)".into());
        }
        if !name.is_empty() {
            out.push(Segment::new(name));
        }
        while !rest.is_empty() {
            let inner =
                rest.strip_prefix('[').and_then(|r| r.split_once(']')).filter(|(idx, _)| parse_index(idx).is_some());
            let Some((idx, after)) = inner else {
                return Err(format!("bad index in `{part}` (write `name[0]` with a whole number)"));
            };
            out.push(Segment::new(idx));
            rest = after;
        }
    }
    Ok(out)
}

fn parse_index(s: &str) -> Option<usize> {
    let canonical = s == "0" || (!s.starts_with('0') && !s.is_empty());
    if canonical && s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok() } else { None }
}

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at<'a>(path: &str, record: &'a Value) -> Option<&'a Value> {
        SourcePath::compile(path).unwrap().lookup(record)
    }

    #[test]
    fn dotted_paths_walk_objects_and_arrays() {
        let r = json!({
            "properties": {"email": "a@b.c"},
            "fields": {"status": {"name": "Done"}},
            "items": [{"id": 7}, {"id": 8}],
            "0": "key zero",
        });
        assert_eq!(at("properties.email", &r), Some(&json!("a@b.c")));
        assert_eq!(at("fields.status.name", &r), Some(&json!("Done")));
        assert_eq!(at("items.1.id", &r), Some(&json!(8)));
        assert_eq!(at("items[1].id", &r), Some(&json!(8)));
        assert_eq!(at("items[0]", &r), Some(&json!({"id": 7})));
        assert_eq!(at("0", &r), Some(&json!("key zero")));
        assert_eq!(at("items.2.id", &r), None);
        assert_eq!(at("items.x", &r), None);
        assert_eq!(at("properties.email.more", &r), None);
        assert_eq!(at("nothing", &r), None);
    }

    #[test]
    fn nested_brackets_and_leading_zeros() {
        let r = json!({"m": [[1, 2], [3, 4]], "a": ["x", "y"], "o": {"01": "z"}});
        assert_eq!(at("m[1][0]", &r), Some(&json!(3)));
        assert_eq!(at("m.1.1", &r), Some(&json!(4)));
        assert_eq!(at("a.01", &r), None, "01 is not an array index");
        assert_eq!(at("o.01", &r), Some(&json!("z")));
    }

    #[test]
    fn json_pointers_follow_rfc_6901() {
        let r = json!({"a.b": {"c/d": {"e~f": [10, 20]}}, "": 1});
        assert_eq!(at("/a.b/c~1d/e~0f/1", &r), Some(&json!(20)));
        assert_eq!(at("/", &r), Some(&json!(1)));
        assert_eq!(at("/a.b/c~1d/e~0f/-", &r), None);
        assert_eq!(at("/missing", &r), None);
        for (pointer, expected) in [("/a.b/c~1d/e~0f/0", json!(10)), ("/", json!(1))] {
            assert_eq!(r.pointer(pointer), Some(&expected), "serde_json agrees");
        }
    }

    #[test]
    fn malformed_paths_are_rejected_with_a_reason() {
        for bad in ["", "a..b", ".a", "a.", "a[x]", "a[1", "a]", "a[01]", "a[]"] {
            let err = SourcePath::compile(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn scalars_have_no_children() {
        let r = json!({"n": 5, "s": "text", "z": null});
        assert_eq!(at("n.0", &r), None);
        assert_eq!(at("s.0", &r), None);
        assert_eq!(at("z.a", &r), None);
        assert_eq!(at("z", &r), Some(&Value::Null));
    }
}
