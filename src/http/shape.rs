//! Which parts of a response body a reader uses, and a parser that builds only those.
//!
//! A page of records is most of a response body, and a run reads few of each record's
//! fields: the mapped sources, the primary key, the cursor. [`parse_body`] parses the
//! envelope (pagination fields, totals, error messages) whole, and each record under the
//! records pointer only along the paths of a [`Projection`]: everything else is scanned
//! and validated but never allocated. Looking up any kept path in the result gives what
//! it gives in the fully parsed record (proptested below); other paths look missing.
//!
//! The bytes the API sent stay available for the records that need them whole (dead
//! letters): [`raw_records`] re-reads the records array of a body as borrowed slices.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// The `visit_*` methods of the scalars, building what serde_json's own `Value` does.
macro_rules! scalars {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    };
}

/// The paths of each record a reader needs; an empty projection keeps only the shape
/// of the record's top level (an object stays an object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// The value is kept whole.
    Whole,
    /// Only these keys (or, in arrays, indexes) are kept, each as its node says.
    Keys(Vec<(Box<str>, Node)>),
}

impl Default for Node {
    fn default() -> Self {
        Self::Keys(Vec::new())
    }
}

impl Projection {
    /// A projection that keeps every record whole.
    pub fn whole() -> Self {
        Self { root: Node::Whole }
    }

    /// Whether records are kept whole.
    pub fn is_whole(&self) -> bool {
        self.root == Node::Whole
    }

    /// Keeps the value at `segments` (object keys, or array indexes written as
    /// numbers) whole; an empty path keeps the whole record.
    pub fn keep<S: AsRef<str>>(&mut self, segments: impl IntoIterator<Item = S>) {
        let mut node = &mut self.root;
        for seg in segments {
            let Node::Keys(children) = node else { return };
            let seg = seg.as_ref();
            let i = match children.iter().position(|(k, _)| &**k == seg) {
                Some(i) => i,
                None => {
                    children.push((seg.into(), Node::default()));
                    children.len() - 1
                }
            };
            node = &mut children[i].1;
        }
        *node = Node::Whole;
    }

    /// Keeps the value at a dotted path (`fields.status.name`, `items.0.id`) or an RFC
    /// 6901 pointer (`/fields/status`), the two spellings of paths into records.
    pub fn keep_path(&mut self, path: &str) {
        match path.strip_prefix('/') {
            Some(pointer) => self.keep(pointer.split('/').map(unescape)),
            None if path.is_empty() => self.keep(std::iter::empty::<&str>()),
            None => self.keep(path.split('.')),
        }
    }
}

/// Where a body's records are (an RFC 6901 pointer; empty: the body is the array), and
/// which of their parts to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyShape {
    records: Vec<String>,
    record: std::sync::Arc<Projection>,
}

impl BodyShape {
    /// Records at `pointer`, each kept as `record` says.
    pub fn new(pointer: &str, record: std::sync::Arc<Projection>) -> Self {
        Self { records: pointer_segments(pointer), record }
    }
}

fn pointer_segments(pointer: &str) -> Vec<String> {
    if pointer.is_empty() { Vec::new() } else { pointer.trim_start_matches('/').split('/').map(unescape).collect() }
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Parses a response body: whole, or with the records projected when `shape` is given.
pub fn parse_body(bytes: &[u8], shape: Option<&BodyShape>) -> serde_json::Result<Value> {
    let Some(shape) = shape.filter(|s| !s.record.is_whole()) else {
        return serde_json::from_slice(bytes);
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Envelope { rest: &shape.records, record: &shape.record.root }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The records array of `bytes` at `pointer`, each element as the bytes the API sent;
/// `None` when the body has no array there.
pub fn raw_records<'b>(bytes: &'b [u8], pointer: &str) -> Option<Vec<&'b RawValue>> {
    let segments = pointer_segments(pointer);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = RawAt { rest: &segments }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// A whole value, as serde_json builds it.
fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    serde::Deserialize::deserialize(d)
}

/// The envelope on the way to the records: parsed whole except along `rest`.
struct Envelope<'a> {
    rest: &'a [String],
    record: &'a Node,
}

impl<'de> DeserializeSeed<'de> for Envelope<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Envelope<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match self.rest.split_first() {
                Some((first, rest)) if *first == key => map.next_value_seed(Envelope { rest, record: self.record })?,
                _ => map.next_value_seed(Whole)?,
            };
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        match self.rest.split_first() {
            // The records array itself.
            None => {
                while let Some(v) = seq.next_element_seed(Pick(self.record))? {
                    out.push(v);
                }
            }
            Some((first, rest)) => {
                let index = first.parse::<usize>().ok();
                while let Some(v) = if index == Some(out.len()) {
                    seq.next_element_seed(Envelope { rest, record: self.record })?
                } else {
                    seq.next_element_seed(Whole)?
                } {
                    out.push(v);
                }
            }
        }
        Ok(Value::Array(out))
    }

    scalars!();
}

/// A whole value (a seed, for use beside the projecting seeds).
struct Whole;

impl<'de> DeserializeSeed<'de> for Whole {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        whole(d)
    }
}

/// A record (or a part of one) kept as its node says.
#[derive(Clone, Copy)]
struct Pick<'a>(&'a Node);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Node::Whole => whole(d),
            Node::Keys(children) => d.deserialize_any(Fields(children)),
        }
    }
}

/// A value of which only `children` are kept (the rest of an object is skipped; the
/// elements of an array no index names become null).
struct Fields<'a>(&'a [(Box<str>, Node)]);

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let children = self.0;
        let mut out = Map::new();
        while let Some(found) = map.next_key_seed(Match(children))? {
            match found {
                Some(i) => {
                    let (key, node) = &children[i];
                    let value = map.next_value_seed(Pick(node))?;
                    out.insert(key.to_string(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let children = self.0;
        // Elements no path reaches become null, so indexes (and the length) stay true.
        let mut out = Vec::new();
        loop {
            let i = out.len();
            let child = children.iter().find(|(k, _)| k.parse::<usize>().ok() == Some(i));
            let next = match child {
                Some((_, node)) => seq.next_element_seed(Pick(node))?,
                None => seq.next_element::<IgnoredAny>()?.map(|_| Value::Null),
            };
            match next {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }

    scalars!();
}

/// Which kept key an object key is, without allocating it.
struct Match<'a>(&'a [(Box<str>, Node)]);

impl<'de> DeserializeSeed<'de> for Match<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Match<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(k, _)| &**k == key))
    }
}

/// Finds the records array along `rest` and returns its elements' raw bytes.
struct RawAt<'a> {
    rest: &'a [String],
}

impl<'de> DeserializeSeed<'de> for RawAt<'_> {
    type Value = Option<Vec<&'de RawValue>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawAt<'_> {
    type Value = Option<Vec<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            match self.rest.split_first() {
                Some((first, rest)) if *first == key && found.is_none() => {
                    found = map.next_value_seed(RawAt { rest })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        match self.rest.split_first() {
            None => {
                let mut out = Vec::new();
                while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                    out.push(raw);
                }
                Ok(Some(out))
            }
            Some((first, rest)) => {
                let index = first.parse::<usize>().ok();
                let mut found = None;
                let mut i = 0;
                loop {
                    let more = if index == Some(i) {
                        seq.next_element_seed(RawAt { rest })?.map(|f| found = f).is_some()
                    } else {
                        seq.next_element::<IgnoredAny>()?.is_some()
                    };
                    if !more {
                        break;
                    }
                    i += 1;
                }
                Ok(found)
            }
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A response body as the provider sent it, with where its records are.
#[derive(Debug, Clone, Default)]
pub struct RawBody {
    bytes: Vec<u8>,
    pointer: String,
}

impl RawBody {
    /// `bytes`, whose records are at `pointer`.
    pub fn new(bytes: Vec<u8>, pointer: &str) -> Self {
        Self { bytes, pointer: pointer.to_owned() }
    }

    /// Each record as the bytes the API sent, in order; `None` when the body has no
    /// records array.
    pub fn records(&self) -> Option<Vec<&RawValue>> {
        raw_records(&self.bytes, &self.pointer)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn shape(pointer: &str, paths: &[&str]) -> BodyShape {
        let mut p = Projection::default();
        for path in paths {
            p.keep_path(path);
        }
        BodyShape::new(pointer, std::sync::Arc::new(p))
    }

    fn parse(body: &Value, s: &BodyShape) -> Value {
        parse_body(body.to_string().as_bytes(), Some(s)).unwrap()
    }

    #[test]
    fn records_keep_only_the_kept_paths_and_the_envelope_stays_whole() {
        let body = json!({
            "nextPageToken": "t2", "isLast": false, "meta": {"total": 3, "x": [1, 2]},
            "issues": [
                {"id": "1", "key": "A-1", "fields": {"updated": "u1", "summary": "s", "status": {"name": "Open", "id": 3}}},
                {"id": "2", "fields": {"summary": null, "labels": ["a", "b"]}},
                "not an object",
                [1, 2],
            ],
        });
        let got = parse(&body, &shape("/issues", &["id", "fields.status.name", "/fields/labels"]));
        assert_eq!(
            got,
            json!({
                "nextPageToken": "t2", "isLast": false, "meta": {"total": 3, "x": [1, 2]},
                "issues": [
                    {"id": "1", "fields": {"status": {"name": "Open"}}},
                    {"id": "2", "fields": {"labels": ["a", "b"]}},
                    "not an object",
                    [null, null],
                ],
            })
        );
    }

    #[test]
    fn array_indexes_keep_their_place_and_a_root_array_is_the_records() {
        let body = json!([{"items": [{"id": 1, "x": 0}, {"id": 2, "x": 0}, {"id": 3}], "y": 1}]);
        let got = parse(&body, &shape("", &["items.1.id", "/items/02/id"]));
        assert_eq!(got, json!([{"items": [null, {"id": 2}, {"id": 3}]}]));
    }

    #[test]
    fn escaped_keys_and_pointer_escapes_match() {
        let body = json!({"data": {"rows": [{"a/b": 1, "c~d": 2, "e\"f": 3, "g": 4}]}});
        let got = parse(&body, &shape("/data/rows", &["/a~1b", "/c~0d", "e\"f"]));
        assert_eq!(got, json!({"data": {"rows": [{"a/b": 1, "c~d": 2, "e\"f": 3}]}}));
    }

    #[test]
    fn a_whole_projection_or_no_shape_parses_everything() {
        let body = json!({"r": [{"a": {"b": 1}, "c": 2}]});
        let mut whole = Projection::default();
        whole.keep_path("a");
        whole.keep_path("");
        assert!(whole.is_whole());
        let s = BodyShape::new("/r", std::sync::Arc::new(whole));
        assert_eq!(parse(&body, &s), body);
        assert_eq!(parse_body(body.to_string().as_bytes(), None).unwrap(), body);
        // A path below a kept whole value changes nothing.
        assert_eq!(parse(&body, &shape("/r", &["a", "a.b"])), json!({"r": [{"a": {"b": 1}}]}));
    }

    #[test]
    fn records_pointer_that_is_not_an_array_is_left_whole() {
        let body = json!({"r": {"a": 1, "b": 2}, "other": [{"a": 1, "b": 2}]});
        assert_eq!(parse(&body, &shape("/r", &["a"])), body);
        let missing = json!({"x": [{"a": 1, "b": 2}]});
        assert_eq!(parse(&missing, &shape("/r", &["a"])), missing);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        let s = shape("/r", &["a"]);
        for bad in [&b"{\"r\": [{\"a\": 1}"[..], b"{\"r\": [{\"a\": 1}]} trailing", b"", b"{\"r\": [{\"a\": tru}]}"] {
            assert!(parse_body(bad, Some(&s)).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Skipped parts are validated too: an invalid value anywhere fails the parse.
        assert!(parse_body(b"{\"r\": [{\"a\": 1, \"b\": [1,}]}", Some(&s)).is_err());
        // Deep nesting never overflows the stack: a kept value past serde_json's
        // recursion limit is an error; a skipped one is scanned without recursion.
        let deep = |key: &str| format!("{{\"r\": [{{\"{key}\": {}{}}}]}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_body(deep("a").as_bytes(), Some(&s)).is_err());
        assert_eq!(parse_body(deep("b").as_bytes(), Some(&s)).unwrap(), json!({"r": [{}]}));
        assert!(parse_body(deep("a").as_bytes(), None).is_err());
        assert_eq!(raw_records(deep("b").as_bytes(), "/r").map(|r| r.len()), Some(1));
    }

    #[test]
    fn raw_records_are_the_bytes_sent() {
        let body = br#"{"next": null, "items": [ {"id":1,  "name":"a\u00e9"} , [1,2], "x" ], "tail": {"items": 5}}"#;
        let raw = raw_records(body, "/items").unwrap();
        let texts: Vec<&str> = raw.iter().map(|r| r.get()).collect();
        assert_eq!(texts, [r#"{"id":1,  "name":"a\u00e9"}"#, "[1,2]", r#""x""#]);
        assert_eq!(RawBody::new(body.to_vec(), "/items").records().unwrap().len(), 3);
        assert!(raw_records(body, "/next").is_none());
        assert!(raw_records(body, "/absent").is_none());
        assert_eq!(raw_records(b"[1, {\"a\": 2}]", "").unwrap()[1].get(), "{\"a\": 2}");
        assert_eq!(raw_records(br#"{"d": [0, {"r": [7]}]}"#, "/d/1/r").unwrap()[0].get(), "7");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[ -~]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-d]{1,2}|0|1|a~b|c/d", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every path of `v` (as steps), the root included.
    fn paths_of(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(prefix.clone());
        let children: Vec<(String, &Value)> = match v {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Value::Array(a) => a.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
            _ => Vec::new(),
        };
        for (k, child) in children {
            prefix.push(k);
            paths_of(child, prefix, out);
            prefix.pop();
        }
    }

    fn lookup<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
        path.iter().try_fold(v, |cur, seg| match cur {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
            _ => None,
        })
    }

    proptest! {
        /// Whatever the records hold and whichever of their paths are kept (and some
        /// that are absent), a kept path looks up the same value in the projected
        /// record as in the record parsed whole, and the envelope is parsed whole.
        #[test]
        fn kept_paths_read_what_the_whole_record_holds(
            records in prop::collection::vec(arb_json(), 0..4),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            extra in prop::collection::vec("[a-d]{1,2}|0|1", 1..3),
            envelope in arb_json(),
        ) {
            let body = json!({"env": envelope, "records": records});
            let mut all = Vec::new();
            for r in &records {
                paths_of(r, &mut Vec::new(), &mut all);
            }
            let mut kept: Vec<Vec<String>> = picks.iter().filter(|_| !all.is_empty()).map(|i| i.get(&all).clone()).collect();
            kept.push(extra);
            let mut projection = Projection::default();
            for p in &kept {
                projection.keep(p);
            }
            let s = BodyShape::new("/records", std::sync::Arc::new(projection));
            let text = body.to_string();
            let got = parse_body(text.as_bytes(), Some(&s)).unwrap();
            prop_assert_eq!(&got["env"], &body["env"]);
            let got_records = got["records"].as_array().unwrap();
            prop_assert_eq!(got_records.len(), records.len());
            for (whole, projected) in records.iter().zip(got_records) {
                for p in &kept {
                    let want = lookup(whole, p);
                    let have = lookup(projected, p);
                    // Elements no path reaches read as null where the whole record
                    // has them; a kept path never does.
                    prop_assert_eq!(want, have, "path {:?}", p);
                }
            }
            let raw = raw_records(text.as_bytes(), "/records").unwrap();
            let reparsed: Vec<Value> = raw.iter().map(|r| serde_json::from_str(r.get()).unwrap()).collect();
            prop_assert_eq!(&reparsed, &records);
        }
    }
}
