//! Manifest variants: `extends = "<name>"` takes another manifest whole and lays the
//! variant's keys over it — the same API with another `[auth]` (Microsoft Graph with
//! delegated access, GitLab through OAuth2) without a copy of every stream.
//!
//! The variant's top-level keys replace the base's (a table such as `[auth]` or
//! `[rate_limit]` replaces the base's whole), except the tables of named entries —
//! `variables`, `headers`, `streams`, `mappings`, `writes` — where each entry the variant
//! names replaces the base's entry of that name and the others are kept. The base is a
//! manifest of the same connector directory, else a built-in one, and does not itself
//! extend another.

use std::path::Path;

use super::diag::Diagnostics;
use super::manifest::BUILTIN;
use super::source::Source;

/// Tables whose entries a variant replaces one by one.
const BY_ENTRY: &[&str] = &["variables", "headers", "streams", "mappings", "writes"];

/// The raw table of the manifest named `name`: `dir`'s `<name>.toml` when it has one,
/// else the built-in one.
pub fn base_table(name: &str, dir: Option<&Path>) -> Option<toml::Table> {
    if name.is_empty() || name.contains(['/', '\\', '.']) {
        return None;
    }
    let file = format!("{name}.toml");
    if let Some(text) = dir.and_then(|d| std::fs::read_to_string(d.join(&file)).ok()) {
        return text.parse().ok();
    }
    BUILTIN.iter().find(|(f, _)| *f == file).and_then(|(_, text)| text.parse().ok())
}

/// `table` with its `extends` resolved through `lookup`; `None` (reported) when it names
/// no manifest, or one that extends another.
pub fn resolve(
    source: &Source,
    mut table: toml::Table,
    lookup: &dyn Fn(&str) -> Option<toml::Table>,
    diag: &mut Diagnostics,
) -> Option<toml::Table> {
    let Some(extends) = table.remove("extends") else {
        return Some(table);
    };
    let Some(name) = extends.as_str() else {
        diag.push(&source.name, "extends", "must be the name of another manifest (a string)");
        return None;
    };
    let Some(base) = lookup(name) else {
        diag.push(
            &source.name,
            "extends",
            format!("no manifest `{name}` to extend (neither in this connector directory nor built in)"),
        );
        return None;
    };
    if base.contains_key("extends") {
        diag.push(
            &source.name,
            "extends",
            format!("`{name}` extends another manifest itself; a variant extends a manifest that does not"),
        );
        return None;
    }
    Some(overlay(base, table))
}

/// `variant` laid over `base`.
fn overlay(mut base: toml::Table, variant: toml::Table) -> toml::Table {
    for (key, value) in variant {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(entries)), toml::Value::Table(over)) if BY_ENTRY.contains(&key.as_str()) => {
                entries.extend(over);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn a_variant_replaces_top_level_tables_whole_and_named_entries_one_by_one() {
        let base = table(
            "name = \"a\"\ntitle = \"A\"\n[auth]\nkind = \"bearer\"\nvalue = \"x\"\n\
             [streams.one]\nentity = \"e\"\n[streams.two]\nentity = \"f\"\n",
        );
        let variant = table("name = \"b\"\n[auth]\nkind = \"oauth2_refresh_token\"\n[streams.two]\nentity = \"g\"\n");
        let out = overlay(base, variant);
        assert_eq!(out["name"].as_str(), Some("b"));
        assert_eq!(out["title"].as_str(), Some("A"));
        assert_eq!(out["auth"], toml::Value::Table(table("kind = \"oauth2_refresh_token\"")), "auth replaced whole");
        assert_eq!(out["streams"]["one"]["entity"].as_str(), Some("e"));
        assert_eq!(out["streams"]["two"]["entity"].as_str(), Some("g"));
    }

    #[test]
    fn extends_must_name_a_manifest_that_does_not_extend_another() {
        let source = Source::builtin("v.toml", "");
        let lookup = |name: &str| match name {
            "base" => Some(table("name = \"base\"")),
            "variant" => Some(table("name = \"variant\"\nextends = \"base\"")),
            _ => None,
        };
        let mut diag = Diagnostics::default();
        assert!(resolve(&source, table("extends = \"nowhere\""), &lookup, &mut diag).is_none());
        assert!(resolve(&source, table("extends = \"variant\""), &lookup, &mut diag).is_none());
        assert!(resolve(&source, table("extends = 3"), &lookup, &mut diag).is_none());
        let text = diag.to_string();
        assert!(text.contains("no manifest `nowhere` to extend"), "{text}");
        assert!(text.contains("`variant` extends another manifest itself"), "{text}");
        assert!(text.contains("must be the name of another manifest"), "{text}");
        let ok = resolve(&source, table("extends = \"base\"\ntitle = \"T\""), &lookup, &mut diag).unwrap();
        assert_eq!((ok["name"].as_str(), ok["title"].as_str()), (Some("base"), Some("T")));
        assert!(!ok.contains_key("extends"));
    }

    #[test]
    fn a_base_is_taken_from_the_directory_before_the_built_ins() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(base_table("gitlab", None).unwrap()["name"].as_str(), Some("gitlab"));
        std::fs::write(dir.path().join("gitlab.toml"), "name = \"gitlab\"\ntitle = \"Mine\"\n").unwrap();
        assert_eq!(base_table("gitlab", Some(dir.path())).unwrap()["title"].as_str(), Some("Mine"));
        assert!(base_table("../gitlab", Some(dir.path())).is_none());
        assert!(base_table("nothing", Some(dir.path())).is_none());
    }
}
