//! The configuration model: presets, revisions, overrides, validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tributary::config::{Catalog, ConfigDir, Effective, MappingSpec, Origin, ProviderLayer};
use tributary::model::ProviderId;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the repository's config directory that a test may edit.
pub fn config_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("config"), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn load(dir: &Path) -> Catalog {
    Catalog::load(&ConfigDir::Dir(dir.to_owned()), None).unwrap_or_else(|d| panic!("{d}"))
}

fn mapping(layer: &ProviderLayer, entity: &str, field: &str) -> Option<MappingSpec> {
    layer.mappings.get(entity).and_then(|m| m.get(field)).cloned()
}

fn path(s: &str) -> MappingSpec {
    MappingSpec::Path(s.to_owned())
}

#[test]
fn repository_and_builtin_configuration_are_valid_and_identical() {
    let on_disk = load(&repo().join("config"));
    let builtin = Catalog::load(&ConfigDir::Builtin, None).unwrap_or_else(|d| panic!("{d}"));
    let names: Vec<_> = on_disk.presets.iter().map(|p| p.name.to_string()).collect();
    assert_eq!(
        names,
        ["aptem", "aptem_hubspot", "aptem_microsoft_github", "aptem_salesforce", "bud", "bud_salesforce", "onefile"]
    );
    for p in on_disk.presets.iter() {
        assert_eq!(builtin.presets.get(p.name.as_str()).map(|b| &b.revision), Some(&p.revision));
        assert!(p.revision.starts_with('r') && p.revision.len() == 13, "{}", p.revision);
    }
    for provider in [
        "aptem",
        "bud",
        "onefile",
        "hubspot",
        "salesforce",
        "slack",
        "jira",
        "microsoft",
        "github",
        "github_app",
        "gitlab",
        "gitlab_oauth",
        "google_drive",
        "asana",
        "microsoft_delegated",
    ] {
        assert!(on_disk.manifests.get(provider).is_some(), "{provider}");
    }
    for entity in [
        "learner",
        "employer",
        "contact",
        "company",
        "deal",
        "issue",
        "message",
        "channel",
        "user",
        "group",
        "email",
        "merge_request",
        "file",
        "workspace",
    ] {
        assert!(on_disk.entities.get(entity).is_some(), "{entity}");
    }
    let learner = on_disk.entities.get("learner").unwrap();
    for field in [
        "external_id",
        "first_name",
        "last_name",
        "email",
        "uln",
        "programme",
        "start_date",
        "planned_end_date",
        "completion",
        "status",
        "division",
        "employer_id",
    ] {
        assert!(learner.field(field).is_some(), "learner.{field}");
    }
    assert_eq!(on_disk.tenant_files.len(), 1);
}

#[test]
fn presets_carry_the_specified_defaults() {
    let c = load(&repo().join("config"));
    let recommended: Vec<_> = c.presets.iter().filter(|p| p.recommended).map(|p| p.name.to_string()).collect();
    assert_eq!(recommended, ["aptem_hubspot"]);
    let ah = c.presets.get("aptem_hubspot").unwrap();
    let aptem = &ah.resolved[&ProviderId::parse("aptem").unwrap()];
    let hubspot = &ah.resolved[&ProviderId::parse("hubspot").unwrap()];
    assert_eq!(aptem.schedule.as_deref(), Some("hourly"));
    assert_eq!(hubspot.schedule.as_deref(), Some("daily at 02:00"));
    assert_eq!(mapping(aptem, "learner", "external_id"), Some(path("learner_id")));
    assert_eq!(mapping(aptem, "learner", "programme"), Some(path("programme_name")));
    let completion = mapping(aptem, "learner", "completion").unwrap();
    assert_eq!(completion.sources(), ["completion_date"]);
    assert_eq!(mapping(hubspot, "employer", "crm_id"), Some(path("id")));
    assert_eq!(mapping(hubspot, "employer", "name"), Some(path("properties.company")));
    assert_eq!(aptem.tags.get("lms_provider").map(String::as_str), Some("Aptem"));
    assert_eq!(hubspot.tags.get("crm_provider").map(String::as_str), Some("HubSpot"));
    assert_eq!(hubspot.streams["contacts"].entity.as_deref(), Some("employer"));
    assert!(aptem.filters.contains_key("exclude_test_learners"));
    // LMS-only presets hold one provider each.
    for lms in ["aptem", "bud", "onefile"] {
        assert_eq!(c.presets.get(lms).unwrap().providers.len(), 1);
    }
    assert_eq!(c.presets.get("bud_salesforce").unwrap().providers.len(), 2);
}

#[test]
fn editing_defaults_changes_the_revision_of_affected_presets_only() {
    let dir = config_copy();
    let before = load(dir.path());
    let presets = dir.path().join("presets.toml");
    let text = std::fs::read_to_string(&presets).unwrap();
    std::fs::write(&presets, text.replacen("schedule = \"hourly\"", "schedule = \"2h\"", 1)).unwrap();
    let after = load(dir.path());
    for name in ["aptem", "aptem_hubspot", "aptem_salesforce"] {
        assert_ne!(before.presets.get(name).unwrap().revision, after.presets.get(name).unwrap().revision, "{name}");
    }
    for name in ["bud", "onefile", "bud_salesforce"] {
        assert_eq!(before.presets.get(name).unwrap().revision, after.presets.get(name).unwrap().revision, "{name}");
    }
}

#[test]
fn every_error_is_reported_at_once_with_file_and_key_path() {
    let dir = config_copy();
    let presets = dir.path().join("presets.toml");
    let mut text = std::fs::read_to_string(&presets).unwrap();
    text.push_str(
        r#"
[providers.nosuch]
schedule = "1h"

[presets.broken]
title = "Broken"
providers = ["aptem", "ghost"]
colour = "red"

[presets.broken.overrides.aptem]
schedule = "every banana"
streams = { lernerz = { enabled = true } }
mappings = { learner = { divison = "x" }, widget = { a = "b" } }
"#,
    );
    std::fs::write(&presets, text).unwrap();
    std::fs::write(
        dir.path().join("tenants/dup.toml"),
        "id = \"acme\"\nname = \"Acme again\"\nsubdomain = \"acme2\"\npreset = \"aptem\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tenants/bad.toml"),
        r#"id = "Bad_Id"
name = "Bad"
subdomain = "bad"
preset = "nope"
timezone = "Mars/Olympus"
"#,
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
    has("presets.toml", "providers.nosuch", "no connector manifest");
    has("presets.toml", "presets.broken", "unknown field `colour`");
    has("presets.toml", "presets.broken.providers[1]", "without a connector manifest");
    has("presets.toml", "presets.broken.overrides.aptem.schedule", "invalid schedule");
    has("presets.toml", "presets.broken.overrides.aptem.streams.lernerz", "unknown stream");
    has("presets.toml", "presets.broken.overrides.aptem.mappings.learner.divison", "unknown field of `learner`");
    has("presets.toml", "presets.broken.overrides.aptem.mappings.widget", "unknown entity");
    has("tenants/dup.toml", "id", "duplicate tenant id `acme`");
    has("tenants/bad.toml", "id", "invalid tenant id");
    has("tenants/bad.toml", "preset", "unknown preset `nope`");
    has("tenants/bad.toml", "timezone", "unknown time zone");
    assert!(err.len() >= 9, "{}", all.join("\n"));
}

#[test]
fn syntax_errors_name_the_line() {
    let dir = config_copy();
    std::fs::write(dir.path().join("entities.toml"), "[entities.learner\n").unwrap();
    let err = Catalog::load(&ConfigDir::Dir(dir.path().to_owned()), None).unwrap_err();
    assert!(err.iter().any(|d| d.file.ends_with("entities.toml") && d.message.contains("line 1")), "{err}");
}

#[test]
fn missing_required_mapping_is_an_error() {
    let dir = config_copy();
    let presets = dir.path().join("presets.toml");
    let text = std::fs::read_to_string(&presets).unwrap();
    std::fs::write(&presets, text.replace("external_id = \"learner_id\"", "external_id = false")).unwrap();
    let err = Catalog::load(&ConfigDir::Dir(dir.path().to_owned()), None).unwrap_err();
    assert!(
        err.iter()
            .any(|d| d.path == "presets.aptem.aptem.mappings.learner" && d.message.contains("learner.external_id")),
        "{err}"
    );
}

#[test]
fn the_example_tenant_file_applies_every_override_kind() {
    let c = load(&repo().join("config"));
    let (_, acme) = &c.tenant_files[0];
    assert_eq!(acme.id.as_str(), "acme");
    assert_eq!(acme.name, "Acme Training Ltd");
    let preset = c.presets.get("aptem_hubspot").unwrap();
    let eff = Effective::compute(&c, &acme.preset, &preset.revision, &preset.resolved, &acme.overrides);
    let aptem = &eff.providers[&ProviderId::parse("aptem").unwrap()];
    let hubspot = &eff.providers[&ProviderId::parse("hubspot").unwrap()];
    // "every 15 minutes" replaces the hourly default.
    assert_eq!(aptem.config.schedule.as_deref(), Some("every 15 minutes"));
    assert_eq!(aptem.origins["schedule"], Origin::Override);
    // A custom field mapped to learner.division; the rest of the defaults stay.
    assert_eq!(mapping(&aptem.config, "learner", "division"), Some(path("custom_field_123")));
    assert_eq!(mapping(&aptem.config, "learner", "external_id"), Some(path("learner_id")));
    assert_eq!(
        aptem.origins["mappings.learner.external_id"],
        Origin::Preset { preset: preset.name.clone(), revision: preset.revision.clone() }
    );
    // A HubSpot custom property mapped to employer.account_manager.
    assert_eq!(mapping(&hubspot.config, "employer", "account_manager"), Some(path("properties.account_manager")));
    assert_eq!(hubspot.origins["mappings.employer.account_manager"], Origin::Override);
    assert!(hubspot.config.is_enabled() && aptem.config.is_enabled());
}

#[test]
fn a_provider_disabled_by_override_stays_off_while_the_other_runs() {
    let c = load(&repo().join("config"));
    let preset = c.presets.get("aptem_hubspot").unwrap();
    let mut overrides = BTreeMap::new();
    overrides
        .insert(ProviderId::parse("hubspot").unwrap(), ProviderLayer { enabled: Some(false), ..Default::default() });
    let eff = Effective::compute(&c, &preset.name, &preset.revision, &preset.resolved, &overrides);
    let enabled: Vec<_> = eff.enabled().map(|p| p.provider.to_string()).collect();
    assert_eq!(enabled, ["aptem"]);
}

#[test]
fn a_mapping_override_replaces_the_whole_default_for_that_field() {
    let c = load(&repo().join("config"));
    let preset = c.presets.get("aptem").unwrap();
    let layer: ProviderLayer = toml::from_str("[mappings.learner]\ncompletion = \"finished_on\"\n").unwrap();
    let overrides = BTreeMap::from([(ProviderId::parse("aptem").unwrap(), layer)]);
    let eff = Effective::compute(&c, &preset.name, &preset.revision, &preset.resolved, &overrides);
    // The default was a table with a `date` transform; the override is a bare path, nothing merged in.
    assert_eq!(
        mapping(&eff.providers[&ProviderId::parse("aptem").unwrap()].config, "learner", "completion"),
        Some(path("finished_on"))
    );
}

/// The head of a run-time connector manifest the tests below complete: one stream of
/// companies with an id.
const ACME_CRM: &str = r#"name = "acmecrm"
title = "Acme CRM"
category = "crm"
base_url = "https://{subdomain}.acmecrm.example"
[auth]
kind = "bearer"
[streams.accounts]
entity = "company"
request = { path = "/accounts" }
[mappings.company]
external_id = "id"
"#;

#[test]
fn external_connector_directory_adds_a_provider() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acmecrm.toml"), format!("{ACME_CRM}name = \"name\"\n")).unwrap();
    let c = Catalog::load(&ConfigDir::Dir(repo().join("config")), Some(dir.path())).unwrap_or_else(|d| panic!("{d}"));
    let m = c.manifests.get("acmecrm").unwrap();
    assert_eq!(m.auth.required_credentials(), ["token"]);
    std::fs::write(dir.path().join("wrongname.toml"), "name = \"other\"\ntitle=\"x\"\ncategory=\"crm\"\nbase_url=\"https://x\"\n[auth]\nkind=\"bearer\"\n[streams.a]\nentity=\"company\"\nwidgets = 1\n").unwrap();
    let err = Catalog::load(&ConfigDir::Dir(repo().join("config")), Some(dir.path())).unwrap_err();
    assert!(
        err.iter().any(|d| d.file.ends_with("wrongname.toml")
            && d.path == "streams.a.widgets"
            && d.message.contains("unknown field `widgets`")),
        "{err}"
    );
}

mod no_panics {
    use proptest::prelude::*;
    use tributary::config::{Catalog, ConfigDir};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_tenant_files_never_panic(body in "(id|name|subdomain|preset|timezone|providers|\\[|\\]|=|\"|\\.|aptem|hubspot|schedule|mappings|learner|1h|\\n| ){0,60}") {
            let catalog = Catalog::load(&ConfigDir::Builtin, None).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("t.toml");
            std::fs::write(&file, &body).unwrap();
            let result = catalog.tenant_file(&file);
            if let Err(d) = result {
                prop_assert!(!d.is_empty());
            }
        }
    }
}

/// A field of an entity the connector writes must reverse: every layer is checked at
/// load, with file and key.
#[test]
fn irreversible_fields_of_written_entities_are_refused_at_load() {
    let dir = config_copy();
    let presets = dir.path().join("presets.toml");
    let text = std::fs::read_to_string(&presets).unwrap();
    let text = text.replace(
        r#"completion = { from = "completion_date", transform = ["date"], reverse = true }"#,
        r#"completion = { from = "completion_date", transform = ["date"] }"#,
    );
    std::fs::write(&presets, text).unwrap();
    let tenant = dir
        .path()
        .join("tenants")
        .join(std::fs::read_dir(dir.path().join("tenants")).unwrap().next().unwrap().unwrap().file_name());
    let mut text = std::fs::read_to_string(&tenant).unwrap();
    // Fine: a value map reverses by swapping, `reverse = false` opts out.
    text.push_str(
        "\n[providers.aptem.mappings.learner.status]\nfrom = \"status\"\nmap = { A = \"active\", W = \"withdrawn\" }\n",
    );
    text.push_str(
        "\n[providers.aptem.mappings.learner.uln]\nfrom = \"uln\"\ntransform = [\"trim\"]\nreverse = false\n",
    );
    // Refused: two source values give one target value.
    text.push_str(
        "\n[providers.aptem.mappings.learner.programme]\nfrom = \"programme_name\"\nmap = { a = \"x\", b = \"x\" }\n",
    );
    std::fs::write(&tenant, text).unwrap();
    let err = Catalog::load(&ConfigDir::Dir(dir.path().to_owned()), None).unwrap_err();
    let all: Vec<String> = err.iter().map(|d| d.to_string()).collect();
    let has = |file: &str, key: &str, needle: &str| {
        assert!(
            err.iter().any(|d| d.file.ends_with(file) && d.path == key && d.message.contains(needle)),
            "missing `{file}: {key}: …{needle}…` in:\n{}",
            all.join("\n")
        );
    };
    has("presets.toml", "providers.aptem.mappings.learner.completion", "transform `date` cannot be undone");
    has("acme.toml", "providers.aptem.mappings.learner.programme", "not one-to-one");
    assert_eq!(err.len(), 2, "{}", all.join("\n"));
}

#[test]
fn write_declarations_are_checked_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acmecrm.toml"),
        format!(
            "{ACME_CRM}{}",
            r#"name = { from = "name", transform = ["upper"] }
[writes.company]
conflict = "read"
create = { method = "POST", path = "/accounts/{id}", id = "id" }
update = { method = "PATCH", path = "/accounts/{id}?by={owner}" }
[writes.widget]
create = { method = "POST", path = "/widgets" }
"#
        ),
    )
    .unwrap();
    let err = Catalog::load(&ConfigDir::Dir(repo().join("config")), Some(dir.path())).unwrap_err();
    let all: Vec<String> = err.iter().map(|d| d.to_string()).collect();
    let has = |key: &str, needle: &str| {
        assert!(
            err.iter().any(|d| d.file.ends_with("acmecrm.toml") && d.path == key && d.message.contains(needle)),
            "missing `{key}: …{needle}…` in:\n{}",
            all.join("\n")
        );
    };
    has("mappings.company.name", "cannot be written back");
    has("writes.company.version_field", "needs the `version_field`");
    has("writes.company.create.path", "unknown placeholder `{id}`");
    has("writes.company.create.id", "neither a JSON pointer");
    has("writes.company.update.path", "unknown placeholder `{owner}`");
    has("writes.widget", "unknown entity `widget`");
}
