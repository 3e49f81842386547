//! Reading TOML sources: files on disk or copies built into the binary, parsed into
//! tables first and then into typed structs piece by piece, so that one bad key does
//! not hide the next.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::diag::{Diagnostics, join};

/// A TOML document and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Shown in diagnostics: a path or `<built-in>/name`.
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn builtin(name: &str, text: &str) -> Self {
        Self { name: format!("<built-in>/{name}"), text: text.to_owned() }
    }

    pub fn read(path: &Path, diag: &mut Diagnostics) -> Option<Self> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Some(Self { name, text }),
            Err(e) => {
                diag.push(&name, "", format!("cannot read file: {e}"));
                None
            }
        }
    }

    /// Parses the document into a table; a syntax error is reported with line and column.
    pub fn parse(&self, diag: &mut Diagnostics) -> Option<toml::Table> {
        match self.text.parse::<toml::Table>() {
            Ok(table) => Some(table),
            Err(e) => {
                let at = e.span().map(|s| line_col(&self.text, s.start)).unwrap_or_default();
                diag.push(&self.name, "", format!("invalid TOML{at}: {}", e.message()));
                None
            }
        }
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" at line {line}, column {col}")
}

/// Deserializes `value` into `T`, reporting a failure with the key path where it happened.
pub fn typed<T: DeserializeOwned>(value: toml::Value, diag: &mut Diagnostics, file: &str, path: &str) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let inner = if inner == "." { String::new() } else { inner };
            let full = if inner.is_empty() {
                path.to_owned()
            } else if path.is_empty() {
                inner
            } else {
                format!("{path}.{inner}")
            };
            diag.push(file, &full, e.into_inner().to_string());
            None
        }
    }
}

/// Reports keys of `value` (a table) not in `known`, so that the rest of the table can
/// still be checked instead of stopping at the first unknown key.
pub fn unknown_keys(value: &toml::Value, known: &[&str], diag: &mut Diagnostics, file: &str, path: &str) {
    if let toml::Value::Table(t) = value {
        for key in t.keys().filter(|k| !known.contains(&k.as_str())) {
            diag.push(
                file,
                path,
                format!(
                    "unknown field `{key}`, expected one of {}",
                    known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

/// Takes the sub-table at `key`, reporting a non-table value.
pub fn take_table(table: &mut toml::Table, key: &str, diag: &mut Diagnostics, file: &str, path: &str) -> toml::Table {
    match table.remove(key) {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            diag.push(file, &join(path, key), format!("expected a table, found {}", other.type_str()));
            toml::Table::new()
        }
    }
}

/// The `*.toml` files of a directory, sorted by name; a missing directory is reported.
pub fn toml_files(dir: &Path, diag: &mut Diagnostics) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diag.push(&dir.display().to_string(), "", format!("cannot read directory: {e}"));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    files
}
