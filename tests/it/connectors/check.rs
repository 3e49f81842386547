//! `tributary connectors check` over every built-in manifest file, the variants
//! (`extends`) included: each one the binary embeds must pass the check an operator runs
//! on a file of their own.

use std::path::Path;

#[test]
fn connectors_check_accepts_every_built_in_manifest() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(repo.join("connectors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut checked = Vec::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let (success, text) = crate::support::connectors_check(file);
        assert!(success, "{name}: {text}");
        assert!(text.contains(&format!("valid manifest for `{name}` (")), "{name}: {text}");
        checked.push(name);
    }
    // Every provider the README lists, the variants among them: none was left out.
    assert_eq!(
        checked,
        [
            "aptem",
            "asana",
            "bud",
            "github",
            "github_app",
            "gitlab",
            "gitlab_oauth",
            "google_drive",
            "hubspot",
            "jira",
            "microsoft",
            "microsoft_delegated",
            "onefile",
            "salesforce",
            "slack",
        ]
    );
}
