//! Manifest-language features every connector may use: selecting values by a JSONPath
//! condition, open provider categories, tenant overrides of rate limits and retries
//! within the manifest's bounds, and error rules that match bodies sent with HTTP 200.

use std::path::Path;

use tributary::config::{Catalog, ConfigDir, Diagnostics};

use crate::config_model::config_copy;

fn load(config: &Path, connectors: Option<&Path>) -> Result<Catalog, Diagnostics> {
    Catalog::load(&ConfigDir::Dir(config.to_owned()), connectors)
}

/// Asserts `err` has a diagnostic for `file` (by its end) at `key` whose message holds
/// `needle`.
fn has(err: &Diagnostics, file: &str, key: &str, needle: &str) {
    let all: Vec<String> = err.iter().map(|d| d.to_string()).collect();
    assert!(
        err.iter().any(|d| d.file.ends_with(file) && d.path == key && d.message.contains(needle)),
        "missing `{file}: {key}: …{needle}…` in:\n{}",
        all.join("\n")
    );
}

fn append(path: &Path, text: &str) {
    let mut old = std::fs::read_to_string(path).unwrap();
    old.push_str(text);
    std::fs::write(path, old).unwrap();
}

/// A path the language cannot evaluate — a JSONPath query with a syntax error or an
/// unknown function, or a condition written without the `$` — is refused when
/// configuration loads, naming the file, the entity and the field; nothing maps to null
/// silently at run time.
#[test]
fn source_paths_that_cannot_be_evaluated_are_refused_at_load() {
    let dir = config_copy();
    let tenant = dir.path().join("tenants").join("acme.toml");
    append(
        &tenant,
        "\n[providers.google_drive.mappings.file]\nowner_email = \"$.permissions[?@.role == ].emailAddress\"\n\
         department = { from = \"$.properties[?nosuch(@)]\" }\nname = \"permissions[?(@.role)].name\"\n\
         web_url = \"$.permissions[?@.role == 'owner'].emailAddress\"\n",
    );
    let err = load(dir.path(), None).unwrap_err();
    let key = |f: &str| format!("providers.google_drive.mappings.file.{f}");
    has(&err, "acme.toml", &key("owner_email"), "not a JSONPath query this language can evaluate");
    has(&err, "acme.toml", &key("department"), "bad source path `$.properties[?nosuch(@)]`");
    has(&err, "acme.toml", &key("name"), "JSONPath query starting with `$`");
    // The well-formed query is accepted: three errors, not four.
    assert_eq!(err.len(), 3, "{err}");

    // The same check for a manifest file, through `connectors check`.
    let connectors = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(repo.join("connectors/google_drive.toml")).unwrap();
    let good = "$.permissions[?@.role == 'owner'].emailAddress";
    assert!(manifest.contains(good));
    let check = crate::support::connectors_check;
    let (success, text) = check(&repo.join("connectors/google_drive.toml"));
    assert!(success && text.contains("valid manifest for `google_drive` (1 streams)"), "{text}");
    let file = connectors.path().join("google_drive.toml");
    std::fs::write(&file, manifest.replace(good, "$.permissions[?@.role = 'owner'].emailAddress")).unwrap();
    let (success, text) = check(&file);
    assert!(!success, "{text}");
    assert!(
        text.lines().any(|l| l.contains("google_drive.toml: mappings.file.owner_email: ")
            && l.contains("not a JSONPath query this language can evaluate")),
        "{text}"
    );
}

/// A query selects; it cannot be the place a write-back writes to.
#[test]
fn a_query_is_never_a_write_back_target() {
    let dir = config_copy();
    let tenant = dir.path().join("tenants").join("acme.toml");
    // Channels are not written back: a query is fine there.
    append(&tenant, "\n[providers.slack.mappings.channel]\nname = \"$.names[?@.primary == true].text\"\n");
    // Contacts are: a field mapped through a query needs a plain `reverse.to`.
    append(
        &tenant,
        "\n[providers.hubspot.mappings.contact]\nemail = \"$.properties.email\"\n\
         phone = { from = \"$.properties.phone\", reverse = { to = \"properties.phone\" } }\n",
    );
    let err = load(dir.path(), None).unwrap_err();
    has(&err, "acme.toml", "providers.hubspot.mappings.contact.email", "cannot be written to");
    assert_eq!(err.len(), 1, "{err}");
}

/// `category` is an open list: `categories` in tributary.toml (default lms, crm, work)
/// says which a manifest may name; anything else is refused with file and key.
#[test]
fn categories_come_from_configuration() {
    let dir = config_copy();
    let connectors = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(repo.join("connectors/google_drive.toml")).unwrap();
    std::fs::write(
        connectors.path().join("google_drive.toml"),
        manifest.replace("category = \"work\"", "category = \"storage\""),
    )
    .unwrap();
    let err = load(dir.path(), Some(connectors.path())).unwrap_err();
    has(&err, "google_drive.toml", "category", "unknown category `storage` (known: lms, crm, work;");
    assert_eq!(err.len(), 1, "{err}");

    let settings = dir.path().join("tributary.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, format!("categories = [\"lms\", \"crm\", \"work\", \"storage\"]\n{text}")).unwrap();
    let catalog = load(dir.path(), Some(connectors.path())).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(catalog.manifests.get("google_drive").unwrap().category.as_str(), "storage");

    // The list itself is checked; the built-in manifests' categories must stay listed.
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(&settings, text.replace("\"storage\"]", "\"storage\", \"Bad Name\", \"crm\"]")).unwrap();
    let err = load(dir.path(), Some(connectors.path())).unwrap_err();
    has(&err, "tributary.toml", "categories[4]", "not a category name");
    has(&err, "tributary.toml", "categories[5]", "listed twice");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(
        &settings,
        text.replace("[\"lms\", \"crm\", \"work\", \"storage\", \"Bad Name\", \"crm\"]", "[\"storage\"]"),
    )
    .unwrap();
    let err = load(dir.path(), Some(connectors.path())).unwrap_err();
    has(&err, "connectors/hubspot.toml", "category", "unknown category `crm` (known: storage;");
}

/// Preset and tenant overrides of the rate limit and the retry policy stay within the
/// bounds the manifest sets; outside them (or where it sets none) they are refused at
/// load with file and key.
#[test]
fn rate_limit_and_retry_overrides_outside_the_manifests_bounds_are_refused() {
    let dir = config_copy();
    let tenant = dir.path().join("tenants").join("acme.toml");
    append(
        &tenant,
        "\n[providers.google_drive]\nrate_limit = { requests = 24001 }\nretry = { attempts = 11, max_backoff_secs = 0 }\n\
         [providers.bud]\nretry = { attempts = 3 }\n[providers.salesforce]\nrate_limit = { requests = 10 }\n",
    );
    let presets = dir.path().join("presets.toml");
    append(&presets, "\n[providers.slack]\nrate_limit = { requests = 51 }\n");
    let err = load(dir.path(), None).unwrap_err();
    has(&err, "acme.toml", "providers.google_drive.rate_limit.requests", "24001 is outside 1–24000 requests per 60 s");
    has(&err, "acme.toml", "providers.google_drive.retry.attempts", "11 is outside 1–10");
    has(&err, "acme.toml", "providers.google_drive.retry.max_backoff_secs", "0 is outside 1–64");
    has(&err, "acme.toml", "providers.bud.retry.attempts", "sets no bound for it (`[retry] max_attempts`");
    has(&err, "acme.toml", "providers.salesforce.rate_limit", "shared by every tenant");
    // Without `max_requests`, an override may only lower the limit.
    has(&err, "presets.toml", "providers.slack.rate_limit.requests", "51 is outside 1–50");
    assert_eq!(err.len(), 6, "{err}");

    // Within the bounds: accepted, and the effective configuration carries them.
    let dir = config_copy();
    let tenant = dir.path().join("tenants").join("acme.toml");
    append(
        &tenant,
        "\n[providers.google_drive]\nrate_limit = { requests = 20000 }\nretry = { attempts = 3, max_backoff_secs = 30 }\n",
    );
    let catalog = load(dir.path(), None).unwrap_or_else(|d| panic!("{d}"));
    let spec = &catalog.tenant_files[0].1;
    let layer = &spec.overrides[&tributary::model::ProviderId::parse("google_drive").unwrap()];
    let manifest = catalog.manifests.get("google_drive").unwrap();
    assert_eq!(layer.rate_limit(manifest).map(|r| (r.requests, r.per_secs)), Some((20000, 60)));
    assert_eq!(layer.retry.map(|r| (r.attempts, r.max_backoff_secs)), Some((Some(3), Some(30))));
}

/// An API that sends errors with HTTP 200 (`{"ok": false, "error": …}`): a manifest-only
/// provider states a rule per action on the body, and runs follow them — a retry, a
/// rate-limit wait, an empty end of the stream, a failure with the provider's message and
/// an expired credential.
#[tokio::test]
async fn errors_sent_with_http_200_take_the_action_their_body_rule_says() {
    use serde_json::json;
    use wiremock::matchers::{method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const OKAPI: &str = r#"# OkAPI: every answer is HTTP 200; `ok = false` bodies carry the error.
name = "okapi"
title = "OkAPI"
category = "work"
base_url = "https://okapi.example"
default_schedule = "hourly"

[auth]
kind = "bearer"
credentials = ["token"]
value = "Bearer {token}"

[[responses]]
status = [200]
body = { "/ok" = false, "/error" = "busy" }
action = "retry"
message = "/error"

[[responses]]
status = [200]
body = { "/ok" = false, "$.warnings[*].code" = "slow_down" }
action = "rate_limited"
message = "/error"

[[responses]]
status = [200]
body = { "/ok" = false, "/error" = ["token_expired", "token_revoked"] }
action = "auth_expired"
message = "/error"

[[responses]]
status = [200]
body = { "/ok" = true, "/nothing_more" = true }
action = "empty"

[[responses]]
status = [200]
body = { "/ok" = false }
action = "fail"
message = "/detail"

[streams.companies]
entity = "company"
[streams.companies.request]
path = "/companies"
records = "/items"
pagination = { kind = "cursor", cursor = "/next", param = "page" }

[mappings.company]
external_id = { from = "id", transform = ["string"] }
name = "name"
"#;
    let server = MockServer::start().await;
    let page = |n: u64| json!({ "ok": true, "items": [{ "id": n, "name": format!("Company {n}") }], "next": format!("p{}", n + 1) });
    let mount = |m: Mock| m.mount(&server);
    // Page 1: busy once (retried), then throttled once (waited), then the page.
    mount(
        Mock::given(method("GET"))
            .and(path("/companies"))
            .and(query_param_is_missing("page"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": false, "error": "busy" })))
            .up_to_n_times(1),
    )
    .await;
    mount(
        Mock::given(method("GET"))
            .and(path("/companies"))
            .and(query_param_is_missing("page"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({ "ok": false, "error": "limited", "warnings": [{ "code": "deprecated" }, { "code": "slow_down" }] }),
            ))
            .up_to_n_times(1),
    )
    .await;
    mount(
        Mock::given(method("GET"))
            .and(path("/companies"))
            .and(query_param_is_missing("page"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page(1))),
    )
    .await;
    mount(
        Mock::given(method("GET"))
            .and(path("/companies"))
            .and(query_param("page", "p2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page(2))),
    )
    .await;
    // Page 3 says there is nothing more: the stream ends there.
    mount(
        Mock::given(method("GET"))
            .and(path("/companies"))
            .and(query_param("page", "p3"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": true, "nothing_more": true }))),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("okapi.toml"), OKAPI).unwrap();
    let tenant = format!("preset = \"aptem\"\n[providers.okapi]\nenabled = true\nbase_url = \"{}\"\n", server.uri());
    let h =
        crate::connectors::Harness::with_connectors("okapi", &tenant, &json!({ "token": "t" }), Some(dir.path())).await;
    let run = h.sync("companies").await;
    crate::connectors::ok(&run);
    let s = &run.stats;
    assert_eq!((s.fetched, s.inserted, s.http_calls), (2, 2, 5), "{s:?}");
    assert_eq!((s.retries, s.rate_limit_waits), (1, 1), "{s:?}");

    // A refusal: the run fails with the provider's message, not retried.
    server.reset().await;
    mount(
        Mock::given(method("GET")).and(path("/companies")).respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({ "ok": false, "error": "forbidden", "detail": "the token cannot read companies" }),
            ),
        ),
    )
    .await;
    let failed = h.sync_with("companies", true).await;
    assert_eq!(failed.outcome, tributary::model::RunOutcome::Failed);
    assert!(
        failed.stats.error.as_deref().unwrap_or_default().contains("the token cannot read companies"),
        "{:?}",
        failed.stats
    );
    assert_eq!((failed.stats.http_calls, failed.stats.error_class.as_deref()), (1, Some("client")));

    // An expired credential: a static token cannot be refreshed, so the run stops as an
    // authentication failure.
    server.reset().await;
    mount(
        Mock::given(method("GET"))
            .and(path("/companies"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": false, "error": "token_revoked" }))),
    )
    .await;
    let expired = h.sync_with("companies", true).await;
    assert_eq!(expired.outcome, tributary::model::RunOutcome::Failed);
    assert_eq!(expired.stats.error_class.as_deref(), Some("auth"), "{:?}", expired.stats);
    assert!(expired.stats.error.as_deref().unwrap_or_default().contains("token_revoked"), "{:?}", expired.stats);
}

/// A provider written only as a manifest file, for the tests below: contacts whose
/// emails and custom fields are arrays, a rate limit and retry bounds a tenant may move
/// within, and an error rule on the body.
const PEOPLEHUB: &str = r#"# PeopleHub: contacts with several emails (one primary) and named custom fields.
name = "peoplehub"
title = "PeopleHub"
category = "crm"
description = "Contacts from PeopleHub"
base_url = "https://api.peoplehub.example"
default_schedule = "hourly"

[auth]
kind = "bearer"
credentials = ["token"]
value = "Bearer {token}"

[rate_limit]
requests = 50
per_secs = 1
max_requests = 100

[retry]
max_attempts = 8
max_backoff_secs = 2

[[responses]]
status = [200]
body = { "$.errors[*].code" = "forbidden" }
action = "fail"
message = "/errors/0/message"

[streams.contacts]
entity = "contact"
[streams.contacts.request]
path = "/contacts"
records = "/items"
pagination = { kind = "cursor", cursor = "/next", param = "page" }

[mappings.contact]
external_id = { from = "id", transform = ["string"] }
first_name = "name.first"
email = "$.emails[?@.primary == true].address"
phone = "$.custom_fields[?@.name == 'Mobile'].value"
company_id = { from = "$.custom_fields[?@.name == 'Employer ID'].value", transform = ["string"] }
"#;

/// A tenant of `peoplehub` at `uri`, with `extra` lines under its provider table.
fn peoplehub_tenant(uri: &str, extra: &str) -> String {
    format!("preset = \"aptem\"\n[providers.peoplehub]\nenabled = true\nbase_url = \"{uri}\"\n{extra}")
}

fn peoplehub_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("peoplehub.toml"), PEOPLEHUB).unwrap();
    dir
}

/// Mappings of a manifest file that select an array element by a condition — the primary
/// email among several, a custom field by its name — store the selected values in a real
/// sync; where nothing matches, the field is empty, and a record whose arrays are in
/// another order maps the same.
#[tokio::test]
async fn a_manifest_file_maps_array_elements_selected_by_a_condition() {
    use serde_json::{Value, json};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let items = json!([
        {
            "id": 1, "name": { "first": "Ada" },
            "emails": [
                { "address": "ada.old@example.com", "primary": false },
                { "address": "ada@example.com", "primary": true },
            ],
            "custom_fields": [
                { "name": "Employer ID", "value": 42 },
                { "name": "Mobile", "value": "+44 7700 900001" },
            ],
        },
        {
            "id": 2, "name": { "first": "Brian" },
            "emails": [
                { "address": "brian@example.com", "primary": true },
                { "address": "b.k@example.com", "primary": false },
            ],
            "custom_fields": [{ "name": "Mobile", "value": "+44 7700 900002" }],
        },
        {
            "id": 3, "name": { "first": "Cleo" },
            "emails": [{ "address": "cleo.old@example.com", "primary": false }],
            "custom_fields": [],
        },
    ]);
    Mock::given(method("GET"))
        .and(path("/contacts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "items": items })))
        .mount(&server)
        .await;
    let dir = peoplehub_dir();
    let h = crate::connectors::Harness::with_connectors(
        "peoplehub",
        &peoplehub_tenant(&server.uri(), ""),
        &json!({ "token": "t" }),
        Some(dir.path()),
    )
    .await;
    let run = crate::connectors::ok(&h.sync("contacts").await).clone();
    assert_eq!((run.stats.fetched, run.stats.inserted, run.stats.dead_lettered), (3, 3, 0), "{:?}", run.stats);
    let stored = h.records("contact").await;
    let field = |id: &str, f: &str| stored[id].data.get(f).cloned().unwrap_or(Value::Null);
    let rows: Vec<[Value; 4]> = ["1", "2", "3"]
        .iter()
        .map(|id| [field(id, "first_name"), field(id, "email"), field(id, "phone"), field(id, "company_id")])
        .collect();
    assert_eq!(
        rows,
        [
            [json!("Ada"), json!("ada@example.com"), json!("+44 7700 900001"), json!("42")],
            [json!("Brian"), json!("brian@example.com"), json!("+44 7700 900002"), Value::Null],
            [json!("Cleo"), Value::Null, Value::Null, Value::Null],
        ]
    );
}

/// A `[[responses]]` body rule whose JSONPath key cannot be evaluated is refused by
/// `connectors check`, naming the file and the rule; the good file passes.
#[test]
fn a_bad_jsonpath_in_a_response_body_rule_is_refused_by_connectors_check() {
    let dir = peoplehub_dir();
    let file = dir.path().join("peoplehub.toml");
    let (success, text) = crate::support::connectors_check(&file);
    assert!(success && text.contains("valid manifest for `peoplehub` (1 streams)"), "{text}");

    let good = r#""$.errors[*].code" = "forbidden""#;
    assert!(PEOPLEHUB.contains(good));
    std::fs::write(&file, PEOPLEHUB.replace(good, r#""$.errors[?@.code == ].code" = "forbidden""#)).unwrap();
    let (success, text) = crate::support::connectors_check(&file);
    assert!(!success, "{text}");
    assert!(
        text.lines().any(|l| l.contains("peoplehub.toml: responses[0].body: ")
            && l.contains("`$.errors[?@.code == ].code` is not a JSONPath query")),
        "{text}"
    );
}

/// A tenant's `retry` override of a manifest-only provider is what its runs do: as many
/// attempts as it says (not the default five), and no wait between them longer than its
/// `max_backoff_secs`, jitter included.
#[tokio::test]
async fn a_tenants_retry_override_of_a_manifest_file_sets_attempts_and_bounds_backoff() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stamps = Arc::clone(&seen);
    Mock::given(method("GET"))
        .and(path("/contacts"))
        .respond_with(move |_: &wiremock::Request| {
            stamps.lock().unwrap().push(Instant::now());
            ResponseTemplate::new(503)
        })
        .mount(&server)
        .await;
    let dir = peoplehub_dir();
    let tenant = peoplehub_tenant(&server.uri(), "retry = { attempts = 7, max_backoff_secs = 1 }\n");
    let h = crate::connectors::Harness::with_connectors(
        "peoplehub",
        &tenant,
        &serde_json::json!({ "token": "t" }),
        Some(dir.path()),
    )
    .await;
    // Doubling from 250 ms (the test kit's syncers start at 5 ms).
    let mut syncer = h.syncer();
    syncer.retry.base_delay = Duration::from_millis(250);
    let run = h.sync_using(&syncer, &h.tenant, "contacts").await;
    assert_eq!(run.outcome, tributary::model::RunOutcome::Failed);
    assert_eq!(run.stats.error_class.as_deref(), Some("transient"), "{:?}", run.stats);
    let stamps = seen.lock().unwrap().clone();
    assert_eq!(stamps.len(), 7, "attempts the server received");
    assert_eq!(run.stats.retries, 6);
    // 250 ms, 500 ms, then the bound: each wait at most 1 s (plus the time to answer a
    // request on this host), though the jitter could double an unbounded one.
    let gaps: Vec<Duration> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g <= Duration::from_millis(1_200)), "{gaps:?}");
    assert!(gaps[2..].iter().all(|g| *g >= Duration::from_millis(950)), "the bound is reached: {gaps:?}");
}

/// A tenant's `rate_limit` override of a manifest-only provider paces its runs: at 4
/// requests a second (the manifest's 50 allowed up to 100), ten pages wait about two
/// seconds for the limiter; a tenant without it hardly waits.
#[tokio::test]
async fn a_tenants_rate_limit_override_of_a_manifest_file_paces_its_runs() {
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/contacts"))
        .respond_with(|req: &wiremock::Request| {
            let page: u64 = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.strip_prefix('p').and_then(|n| n.parse().ok()))
                .unwrap_or(1);
            let next = if page < 10 { json!(format!("p{}", page + 1)) } else { serde_json::Value::Null };
            ResponseTemplate::new(200)
                .set_body_json(json!({ "items": [{ "id": page, "name": { "first": "N" } }], "next": next }))
        })
        .mount(&server)
        .await;
    let dir = peoplehub_dir();
    // The manifest's limit is kept (other connector tests drop the limits).
    let world = crate::support::world::World::builder().connectors(Some(dir.path())).rate_limits().on_sqlite().await;
    let slow = peoplehub_tenant(&server.uri(), "rate_limit = { requests = 4 }\n");
    let tenant = world.create_tenant("acme", "Acme", &slow).await;
    let provider = tributary::model::ProviderId::parse("peoplehub").unwrap();
    world.credentials(&tenant, &provider, None, &json!({ "token": "t" })).await;
    let h = crate::connectors::Harness { world, tenant, provider };
    let other = h.add_tenant("globex", &peoplehub_tenant(&server.uri(), ""), &json!({ "token": "t" })).await;

    let paced = crate::connectors::ok(&h.sync("contacts").await).clone();
    assert_eq!((paced.stats.fetched, paced.stats.http_calls), (10, 10), "{:?}", paced.stats);
    // A burst of two, then one request every quarter second: eight waits, about 2 s.
    assert!(paced.stats.rate_limit_wait_ms >= 1_700, "{:?}", paced.stats);

    let syncer = h.syncer();
    let free = h.sync_using(&syncer, &other, "contacts").await;
    let free = crate::connectors::ok(&free);
    assert_eq!(free.stats.fetched, 10);
    assert!(free.stats.rate_limit_wait_ms < 700, "{:?}", free.stats);
}

/// Overrides outside a manifest file's bounds are refused at load, each with the tenant
/// file and key; within them they are accepted.
#[test]
fn overrides_outside_a_manifest_files_bounds_are_refused() {
    let dir = config_copy();
    let connectors = peoplehub_dir();
    let tenant = dir.path().join("tenants").join("acme.toml");
    let original = std::fs::read_to_string(&tenant).unwrap();
    append(
        &tenant,
        "\n[providers.peoplehub]\nenabled = true\nrate_limit = { requests = 101 }\n\
         retry = { attempts = 9, max_backoff_secs = 3 }\n",
    );
    let err = load(dir.path(), Some(connectors.path())).unwrap_err();
    has(&err, "acme.toml", "providers.peoplehub.rate_limit.requests", "101 is outside 1–100 requests per 1 s");
    has(&err, "acme.toml", "providers.peoplehub.retry.attempts", "9 is outside 1–8");
    has(&err, "acme.toml", "providers.peoplehub.retry.max_backoff_secs", "3 is outside 1–2");
    assert_eq!(err.len(), 3, "{err}");

    std::fs::write(&tenant, &original).unwrap();
    append(
        &tenant,
        "\n[providers.peoplehub]\nenabled = true\nrate_limit = { requests = 100 }\n\
         retry = { attempts = 8, max_backoff_secs = 2 }\n",
    );
    load(dir.path(), Some(connectors.path())).unwrap_or_else(|d| panic!("{d}"));
}
