//! Configuration errors, collected rather than returned one at a time.

use std::fmt;

use serde::Serialize;

/// One problem in one file at one key path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file the problem is in (as given on the command line or `<built-in>/…`).
    pub file: String,
    /// Dotted key path inside the file, e.g. `presets.aptem.providers.aptem.schedule`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

/// Every problem found while loading or validating configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, file: &str, path: &str, message: impl Into<String>) {
        self.0.push(Diagnostic { file: file.to_owned(), path: path.to_owned(), message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when nothing was reported, the diagnostics otherwise.
    pub fn finish<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.0.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} configuration error{}:", if n == 1 { "" } else { "s" })?;
        for d in &self.0 {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Joins key path segments, quoting segments that are not bare TOML keys.
pub fn join(prefix: &str, segment: &str) -> String {
    if segment.is_empty() {
        return prefix.to_owned();
    }
    let bare = segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    let segment = if bare { segment.to_owned() } else { quoted(segment) };
    if prefix.is_empty() { segment } else { format!("{prefix}.{segment}") }
}

/// `key` as a TOML basic string, as it would be written in the file.
fn quoted(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    out.push('"');
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_quote_segments_as_toml_writes_them() {
        assert_eq!(join("", "providers"), "providers");
        assert_eq!(join("providers", "aptem"), "providers.aptem");
        assert_eq!(join("mappings", "full name"), "mappings.\"full name\"");
        assert_eq!(join("x", "tab\there \"q\" \\ \u{1} é"), "x.\"tab\\there \\\"q\\\" \\\\ \\u0001 é\"");
        // Each quoted key reads back as the same key.
        for key in ["full name", "say \"hi\"", "back\\slash", "line\nbreak", "bell\u{7}", "café"] {
            let table: toml::Table = toml::from_str(&format!("{} = 1", quoted(key))).unwrap();
            assert_eq!(table.keys().collect::<Vec<_>>(), [key]);
        }
    }
}
