//! Source paths, compiled once into segment vectors so that looking a value up in a
//! record parses nothing and allocates nothing. Configuration compiles every path when
//! it loads, so a path that cannot be evaluated is refused there, not at run time.
//!
//! Four spellings are accepted:
//! - dotted: `properties.email`, `fields.status.name`, `items.0.id`;
//! - dotted with bracketed indexes: `items[0].id`, `matrix[1][2]`;
//! - an RFC 6901 JSON pointer when the path starts with `/`: `/properties/a.b`,
//!   `/items/0/id` (`~1` stands for `/` and `~0` for `~`);
//! - an RFC 9535 JSONPath query when the path starts with `$`, to select an element
//!   by a condition: `$.emails[?@.primary == true].address`,
//!   `$.custom_fields[?@.name == 'Cohort'].value`. The value is the first node the
//!   query selects (none: missing, as for the other spellings).

use serde_json::Value;
use serde_json_path::JsonPath;

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
    /// The plain steps: the whole path, or the part of a query before its first
    /// step that is not a plain key or index (what the query reads below).
    segments: Vec<Segment>,
    /// A JSONPath query (`$…`).
    query: Option<JsonPath>,
}

impl SourcePath {
    /// Compiles `text`; the error says what is wrong with it.
    pub(crate) fn compile(text: &str) -> Result<Self, String> {
        if text.starts_with('$') {
            let query =
                JsonPath::parse(text).map_err(|e| format!("not a JSONPath query this language can evaluate: {e}"))?;
            return Ok(Self { text: text.into(), segments: query_prefix(text), query: Some(query) });
        }
        let segments = if let Some(pointer) = text.strip_prefix('/') {
            pointer.split('/').map(|s| Segment::new(&unescape(s))).collect()
        } else {
            dotted(text)?
        };
        Ok(Self { text: text.into(), segments, query: None })
    }

    /// The path as written in configuration.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path is a JSONPath query (which selects, so it cannot be written to).
    pub(crate) fn is_query(&self) -> bool {
        self.query.is_some()
    }

    /// The steps of the path: object keys, or array indexes written as numbers. For a
    /// query, the plain steps before its first selector: everything it reads is below.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|s| &*s.key)
    }

    /// The value at this path, or `None` when any step is missing (a query: the first
    /// node it selects, `None` when it selects none).
    pub(crate) fn lookup<'a>(&self, record: &'a Value) -> Option<&'a Value> {
        if let Some(query) = &self.query {
            return query.query(record).first();
        }
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

/// The plain steps a JSONPath query starts with: `.name`, `['name']` and `[0]` after
/// the `$`, up to the first other selector (a filter, a wildcard, a descendant step).
fn query_prefix(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = text.strip_prefix('$').unwrap_or_default();
    loop {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                break;
            }
            out.push(Segment::new(name));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else { break };
            let inner = after[..end].trim();
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            match quoted {
                Some(name) if !name.contains(['\\', '\'', '"']) => out.push(Segment::new(name)),
                None if parse_index(inner).is_some() => out.push(Segment::new(inner)),
                _ => break,
            }
            rest = &after[end + 1..];
        } else {
            break;
        }
    }
    out
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
                return Err(format!(
                    "bad index in `{part}` (write `name[0]` with a whole number; to select an element by a \
                     condition, write a JSONPath query starting with `$`: `$.emails[?@.primary == true].address`)"
                ));
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
    fn jsonpath_queries_select_an_element_by_a_condition() {
        let r = json!({
            "emails": [
                {"address": "old@example.com", "primary": false},
                {"address": "main@example.com", "primary": true},
            ],
            "custom_fields": [{"name": "Cohort", "value": "2024A"}, {"name": "Region", "value": "North"}],
            "a b": {"c": 1},
        });
        assert_eq!(at("$.emails[?@.primary == true].address", &r), Some(&json!("main@example.com")));
        assert_eq!(at("$.custom_fields[?@.name == 'Region'].value", &r), Some(&json!("North")));
        assert_eq!(at("$.custom_fields[?@.name == 'Missing'].value", &r), None);
        // Several matches: the first.
        assert_eq!(at("$.emails[*].address", &r), Some(&json!("old@example.com")));
        assert_eq!(at("$['a b'].c", &r), Some(&json!(1)));
        assert_eq!(at("$.nothing", &r), None);
    }

    #[test]
    fn a_query_reads_below_its_plain_prefix() {
        let steps = |p: &str| SourcePath::compile(p).unwrap().segments().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(steps("$.emails[?@.primary == true].address"), ["emails"]);
        assert_eq!(steps("$.a.b[0]['c d'][*].e"), ["a", "b", "0", "c d"]);
        assert_eq!(steps("$..x"), Vec::<String>::new());
        assert_eq!(steps("$"), Vec::<String>::new());
        assert!(SourcePath::compile("$.a[?@.b == 1]").unwrap().is_query());
        assert!(!SourcePath::compile("a.b").unwrap().is_query());
    }

    #[test]
    fn queries_the_language_cannot_evaluate_are_refused() {
        for bad in ["$.a[?@.b ==]", "$.a[", "$.a[?nosuch(@.b)]", "$[?@.a == 'x']extra", "emails[?@.primary].address"] {
            let err = SourcePath::compile(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        let err = SourcePath::compile("emails[?(@.primary)].address").unwrap_err();
        assert!(err.contains("JSONPath query starting with `$`"), "{err}");
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
