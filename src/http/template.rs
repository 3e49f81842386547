//! `{name}` templates of the manifest language, rendered against a set of variables.

use std::collections::BTreeMap;

use serde_json::Value;

/// A placeholder that has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}` uses `{{{name}}}`, which has no value here")]
pub struct MissingVariable {
    pub template: String,
    pub name: String,
}

/// Variables for rendering; `parent.<path>` names resolve into the parent record.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub values: BTreeMap<String, String>,
    pub parent: Option<&'a Value>,
}

impl<'a> Vars<'a> {
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.values.insert(name.to_owned(), value.into());
        self
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_owned(), value.into());
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(path) = name.strip_prefix("parent.") {
            let v = lookup_path(self.parent?, path)?;
            return match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
        }
        self.values.get(name).cloned()
    }

    /// Renders one template.
    pub fn render(&self, template: &str) -> Result<String, MissingVariable> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let name = &after[..end];
            match self.lookup(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(MissingVariable { template: template.to_owned(), name: name.to_owned() });
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Renders every string inside a JSON value.
    pub fn render_json(&self, value: &Value) -> Result<Value, MissingVariable> {
        Ok(match value {
            Value::String(s) => Value::String(self.render(s)?),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.render_json(v)).collect::<Result<_, _>>()?),
            Value::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (k, v) in map {
                    out.insert(k.clone(), self.render_json(v)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// Reads a dotted path (`properties.email`, `items.0.id`) or a JSON pointer (`/a/b`).
pub fn lookup_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.starts_with('/') || path.is_empty() {
        return value.pointer(path);
    }
    let mut cur = value;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The text form of a scalar (strings without quotes); `None` for null or missing.
pub fn scalar_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_variables_parents_and_json() {
        let parent = json!({ "id": "C1", "n": 3 });
        let vars =
            Vars { parent: Some(&parent), ..Vars::default() }.with("cursor", "2024").with("base_url", "http://x");
        assert_eq!(
            vars.render("{base_url}/a?c={cursor}&p={parent.id}&n={parent.n}").unwrap(),
            "http://x/a?c=2024&p=C1&n=3"
        );
        assert_eq!(vars.render("no braces").unwrap(), "no braces");
        assert_eq!(vars.render("open { only").unwrap(), "open { only");
        let err = vars.render("{missing}").unwrap_err();
        assert_eq!(err.name, "missing");
        assert!(vars.render("{parent.nope}").is_err());
        let body = json!({ "filters": [{ "value": "{cursor}", "n": 1 }] });
        assert_eq!(vars.render_json(&body).unwrap(), json!({ "filters": [{ "value": "2024", "n": 1 }] }));
    }

    #[test]
    fn paths_and_pointers() {
        let v = json!({ "a": { "b": [ { "c": 1 } ] } });
        assert_eq!(lookup_path(&v, "a.b.0.c"), Some(&json!(1)));
        assert_eq!(lookup_path(&v, "/a/b/0/c"), Some(&json!(1)));
        assert_eq!(lookup_path(&v, "a.x"), None);
        assert_eq!(lookup_path(&v, ""), Some(&v));
    }
}
