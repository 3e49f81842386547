//! The direction of imports: a module of `src/` names only the modules before it in
//! the order that `src/lib.rs` writes down (under "Layers"). Every `crate::…` path in
//! the code (comments and string literals are not code) and every `super::…` chain
//! that climbs to the crate root counts, tests inside `src/` included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One import that points the wrong way.
#[derive(Debug, PartialEq)]
struct Upward {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// The order of `src/lib.rs`: the words of the `text` block under its "Layers" heading,
/// lowest first, separated by arrows.
fn layer_order(lib_rs: &str) -> Vec<String> {
    let doc: Vec<&str> = lib_rs.lines().filter_map(|l| l.strip_prefix("//!")).map(str::trim).collect();
    let heading = doc.iter().position(|l| *l == "## Layers").expect("src/lib.rs has a `## Layers` section");
    let open = heading + doc[heading..].iter().position(|l| *l == "```text").expect("a ```text block under Layers");
    let close = open + 1 + doc[open + 1..].iter().position(|l| *l == "```").expect("the block is closed");
    doc[open + 1..close]
        .iter()
        .flat_map(|l| l.split('→'))
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// `text` with comments, string literals and char literals blanked out (newlines kept, so
/// line numbers stay).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank =
        |out: &mut Vec<u8>, from: &[u8]| out.extend(from.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if rest[0] == b'r'
            && (rest.get(1) == Some(&b'"') || rest.get(1) == Some(&b'#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) == Some(&b'"') {
                let mut closing = vec![b'"'];
                closing.extend(std::iter::repeat_n(b'#', hashes));
                let body = 2 + hashes;
                body + rest[body..].windows(closing.len()).position(|w| w == closing.as_slice()).unwrap_or(rest.len())
                    + closing.len()
            } else {
                0
            }
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == b'\'' {
            // A char literal ('a', '\n', '\u{..}'); a lifetime has no closing quote.
            if rest.get(1) == Some(&b'\\') {
                rest.get(3..).and_then(|r| r.iter().position(|&c| c == b'\'')).map_or(0, |p| p + 4)
            } else {
                let len = text.get(i + 1..).and_then(|t| t.chars().next()).map_or(1, char::len_utf8);
                if rest.get(1 + len) == Some(&b'\'') { len + 2 } else { 0 }
            }
        } else {
            0
        };
        let end = end.min(rest.len());
        if end == 0 {
            out.push(b[i]);
            i += 1;
        } else {
            blank(&mut out, &rest[..end]);
            i += end;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The identifier at the start of `s`.
fn ident(s: &str) -> &str {
    let n = s.bytes().take_while(|&c| is_ident(c)).count();
    &s[..n]
}

/// The first segments of the top-level items of the `{ … }` use group that `s` starts
/// with (`{a::X, b::{Y, Z}, self}` → `a`, `b`, `self`), each with its offset in `s`.
fn group_heads(s: &str) -> Vec<(usize, &str)> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item = false;
    for (i, c) in s.char_indices() {
        match c {
            '{' => {
                depth += 1;
                at_item = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_item = true,
            c if at_item && !c.is_whitespace() => {
                heads.push((i, ident(&s[i..])));
                at_item = false;
            }
            _ => {}
        }
    }
    heads
}

/// The top-level modules that `code` names, each with the line it is named on: through
/// `crate::` and through `super::` chains that reach the crate root from a file `depth`
/// levels deep (`src/a.rs` and `src/a/mod.rs` are one level deep, `src/a/b.rs` two).
fn named_modules(code: &str, depth: usize) -> Vec<(usize, String)> {
    let bytes = code.as_bytes();
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let follows_ident = |p: usize| p > 0 && (is_ident(bytes[p - 1]) || bytes[p - 1] == b'$');
    let mut found = Vec::new();
    for (p, _) in code.match_indices("crate::") {
        if follows_ident(p) {
            continue;
        }
        let at = p + "crate::".len();
        if code[at..].starts_with('{') {
            found.extend(group_heads(&code[at..]).into_iter().map(|(o, head)| (line_of(at + o), head.to_owned())));
        } else {
            found.push((line_of(at), ident(&code[at..]).to_owned()));
        }
    }
    let mut from = 0;
    while let Some(p) = code[from..].find("super::").map(|p| p + from) {
        let mut at = p;
        let mut climbs = 0;
        while code[at..].starts_with("super::") {
            climbs += 1;
            at += "super::".len();
        }
        from = at;
        if !follows_ident(p) && climbs >= depth {
            found.push((line_of(at), ident(&code[at..]).to_owned()));
        }
    }
    found
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).expect("src is readable").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The upward imports of the tree at `src`, and the top-level modules missing from the
/// order.
fn check(src: &Path) -> (Vec<Upward>, Vec<String>) {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let order = layer_order(&lib);
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut upward = Vec::new();
    let mut unplaced = Vec::new();
    for path in files {
        let rel = path.strip_prefix(src).expect("below src");
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().expect("utf-8 path")).collect();
        let module = parts[0].trim_end_matches(".rs");
        if parts.len() == 1 && (module == "lib" || module == "main") {
            continue;
        }
        let Some(&own) = rank.get(module) else {
            if !unplaced.iter().any(|m| m == module) {
                unplaced.push(module.to_owned());
            }
            continue;
        };
        // src/a.rs and src/a/mod.rs are one level deep, src/a/b.rs two.
        let depth = if parts.last() == Some(&"mod.rs") { parts.len() - 1 } else { parts.len() };
        let text = std::fs::read_to_string(&path).expect("readable source");
        for (line, to) in named_modules(&code_only(&text), depth) {
            if let Some(&theirs) = rank.get(to.as_str())
                && theirs > own
            {
                upward.push(Upward { file: format!("src/{}", parts.join("/")), line, from: module.to_owned(), to });
            }
        }
    }
    (upward, unplaced)
}

#[test]
fn no_module_imports_from_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (upward, unplaced) = check(&src);
    assert!(unplaced.is_empty(), "modules missing from the order in src/lib.rs (## Layers): {unplaced:?}");
    let report: Vec<String> = upward
        .iter()
        .map(|u| format!("{}:{}: `{}` imports `{}`, which is above it", u.file, u.line, u.from, u.to))
        .collect();
    assert!(report.is_empty(), "imports that run up the layers:\n{}", report.join("\n"));
}

#[test]
fn the_order_names_every_module_once() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("src/lib.rs");
    let order = layer_order(&lib);
    let declared: Vec<&str> =
        lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';')).collect();
    let mut sorted = order.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), order.len(), "a module appears twice in {order:?}");
    let mut declared_sorted = declared.clone();
    declared_sorted.sort();
    assert_eq!(sorted, declared_sorted, "the order and the `pub mod` lines of src/lib.rs differ");
}

/// The files of `src` outside `src/cli` that name the simulator crate in code.
fn simulator_users(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .iter()
        .filter(|p| !p.strip_prefix(src).expect("below src").starts_with("cli"))
        .filter(|p| code_only(&std::fs::read_to_string(p).expect("readable source")).contains("tributary_simulator"))
        .map(|p| p.strip_prefix(src).expect("below src").display().to_string())
        .collect()
}

#[test]
fn only_the_cli_names_the_simulators() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_eq!(simulator_users(&src), Vec::<String>::new(), "the product's modules name the simulator crate");
    let scratch = tree(&[
        ("cli/demo.rs", "use tributary_simulator::start;\n"),
        ("store/mod.rs", "// tributary_simulator in a comment\nfn f() { tributary_simulator::start(); }\n"),
    ]);
    assert_eq!(simulator_users(scratch.path()), vec!["store/mod.rs".to_owned()]);
}

/// A scratch `src/` tree for the checker's own tests.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

const LIB: &str = "//! ## Layers\n//!\n//! ```text\n//! model → store\n//! → sync\n//! ```\n\npub mod model;\npub mod store;\npub mod sync;\n";

#[test]
fn an_upward_import_is_named_with_file_and_line() {
    let dir = tree(&[
        ("lib.rs", LIB),
        ("model.rs", "//! Uses `crate::sync` in a comment only.\nconst S: &str = \"crate::store::X\";\n"),
        ("store/mod.rs", "use crate::model::Id;\nmod rows;\n"),
        ("store/rows.rs", "use super::Store;\n\nfn f() -> crate::sync::Run { todo!() }\n"),
        ("sync/mod.rs", "use crate::{model::Id, store::Store};\n"),
    ]);
    let (upward, unplaced) = check(dir.path());
    assert!(unplaced.is_empty(), "{unplaced:?}");
    assert_eq!(
        upward,
        vec![Upward { file: "src/store/rows.rs".into(), line: 3, from: "store".into(), to: "sync".into() }]
    );
}

#[test]
fn groups_over_several_lines_and_super_chains_to_the_root_count() {
    let dir = tree(&[
        ("lib.rs", LIB),
        ("model/mod.rs", "use crate::{\n    model::Id,\n    store::Store,\n};\nfn f() { super::sync::go(); }\n"),
        ("store/mod.rs", "mod x { fn g() { let _ = 'a'; let _: &'static str = \"}\"; } }\n"),
    ]);
    let (upward, _) = check(dir.path());
    let found: Vec<(&str, usize, &str)> = upward.iter().map(|u| (u.file.as_str(), u.line, u.to.as_str())).collect();
    assert_eq!(found, vec![("src/model/mod.rs", 3, "store"), ("src/model/mod.rs", 5, "sync")]);
}

#[test]
fn a_module_missing_from_the_order_is_reported() {
    let dir = tree(&[("lib.rs", LIB), ("events.rs", "use crate::model::Id;\n")]);
    let (_, unplaced) = check(dir.path());
    assert_eq!(unplaced, vec!["events".to_owned()]);
}
