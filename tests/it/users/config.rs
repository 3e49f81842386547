//! `[roles.<role>] streams = [...]` in tenant files: validation with file and key path.

use std::path::Path;

use tributary::config::{Catalog, ConfigDir};
use tributary::model::RoleName;

use crate::config_model::config_copy;

const HEADER: &str = "id = \"acme\"\nname = \"Acme\"\nsubdomain = \"acme\"\npreset = \"aptem_hubspot\"\n";

fn catalog() -> Catalog {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    Catalog::load(&ConfigDir::Dir(repo), None).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn roles_are_read_in_canonical_form() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.toml");
    let roles = "[roles.sales]\nstreams = [\"hubspot.*\"]\n[roles.developer]\nstreams = [\"hubspot.contacts\", \"jira.*\"]\n\
                 [roles.admin]\nstreams = [\"*\"]\n[roles.intern]\nstreams = []\n";
    std::fs::write(&file, format!("{HEADER}{roles}")).unwrap();
    let spec = catalog().tenant_file(&file).unwrap_or_else(|d| panic!("{d}"));
    let got: Vec<(&str, Vec<&str>)> =
        spec.roles.iter().map(|(r, s)| (r.as_str(), s.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        got,
        [
            ("admin", vec!["*"]),
            ("developer", vec!["hubspot.contacts", "jira.*"]),
            ("intern", vec![]),
            ("sales", vec!["hubspot.*"]),
        ]
    );
    // A file without roles has none (every user connection syncs nothing).
    std::fs::write(&file, HEADER).unwrap();
    assert!(catalog().tenant_file(&file).unwrap().roles.is_empty());
}

#[test]
fn the_example_tenant_grants_sales_all_of_hubspot_and_developers_contacts() {
    let c = catalog();
    let (_, acme) = &c.tenant_files[0];
    let role = |r: &str| acme.roles.get(&RoleName::parse(r).unwrap()).cloned();
    assert_eq!(role("sales"), Some(vec!["hubspot.*".to_owned()]));
    assert_eq!(role("developer"), Some(vec!["hubspot.contacts".to_owned()]));
}

#[test]
fn every_role_error_is_reported_with_file_and_key_path() {
    let dir = config_copy();
    let body = r#"
[roles.Sales]
streams = ["hubspot.*"]

[roles.developer]
streams = ["hubspot.contacts", "ghost.issues", "hubspot.tickets", "hubspot", "jira.*", "*", "ghost.*", "hubspot.Deals"]
colour = "red"

[roles.empty]

[roles.typo]
streams = "hubspot.*"
"#;
    std::fs::write(dir.path().join("tenants/acme.toml"), format!("{HEADER}{body}")).unwrap();
    std::fs::write(
        dir.path().join("tenants/roles.toml"),
        "id = \"globex\"\nname = \"G\"\nsubdomain = \"globex\"\npreset = \"aptem\"\nroles = { viewer = \"hubspot.*\" }\n",
    )
    .unwrap();
    let err = Catalog::load(&ConfigDir::Dir(dir.path().to_owned()), None).unwrap_err();
    let all: Vec<String> = err.iter().map(|d| d.to_string()).collect();
    let has = |file: &str, key: &str, needle: &str| {
        assert!(
            err.iter().any(|d| d.file.ends_with(file) && d.path == key && d.message.contains(needle)),
            "missing `{file}: {key}: …{needle}…` in:\n{}",
            all.join("\n")
        );
    };
    has("tenants/acme.toml", "roles.Sales", "invalid role name `Sales`");
    has("tenants/acme.toml", "roles.developer.streams[1]", "no connector manifest for provider `ghost`");
    has("tenants/acme.toml", "roles.developer.streams[2]", "provider `hubspot` has no stream `tickets`");
    has("tenants/acme.toml", "roles.developer.streams[3]", "`hubspot` is not a stream pattern");
    has("tenants/acme.toml", "roles.developer.streams[6]", "no connector manifest for provider `ghost`");
    has("tenants/acme.toml", "roles.developer.streams[7]", "`hubspot.Deals` is not a stream pattern");
    has("tenants/acme.toml", "roles.developer", "unknown field `colour`, expected one of `streams`");
    has("tenants/acme.toml", "roles.empty", "missing field `streams`");
    has("tenants/acme.toml", "roles.typo.streams", "invalid type");
    has("tenants/roles.toml", "roles.viewer", "invalid type");
    // The valid patterns of the same role raise nothing.
    for ok in ["[0]", "[4]", "[5]"] {
        let key = format!("roles.developer.streams{ok}");
        assert!(err.iter().all(|d| d.path != key), "{key} is valid:\n{}", all.join("\n"));
    }
    assert_eq!(err.len(), 10, "{}", all.join("\n"));
}
