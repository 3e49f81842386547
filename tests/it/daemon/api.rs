//! The HTTP API (`/api/v1`) of a running daemon: keys made with `tributary api-keys`,
//! every route for every kind of key (operator, operator viewer, tenant admin, tenant
//! viewer, another tenant's admin), revocation and expiry at once, JSON errors, the
//! denied-request metric and log, bad-key rate limiting, the OpenAPI document, and TLS
//! served by the daemon with its certificate reloaded on SIGHUP.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tributary_simulator::{Provider, SimConfig, start};

use super::control::aptem_tenant;
use super::{Daemon, Fixture, NEVER, eventually};
use crate::support::json;

/// The address the daemon's HTTP server bound (it was started on port 0).
fn http_address(daemon: &Daemon) -> String {
    let started = daemon
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["fields"]["message"].as_str().is_some_and(|m| m.starts_with("HTTP server listening")))
        .unwrap_or_else(|| panic!("the daemon logged no HTTP address:\n{}", daemon.log_text()));
    started["fields"]["address"].as_str().expect("the address field").to_owned()
}

/// Creates a key with `tributary api-keys create ARGS`; returns the key it printed.
async fn create_key(fx: &Fixture, args: &[&str]) -> String {
    let mut all = vec!["api-keys", "create"];
    all.extend_from_slice(args);
    let out = fx.ok(&all, "").await;
    let key = out.trim().to_owned();
    assert!(key.starts_with("trb_") && !key.contains('\n'), "one key on stdout: {out}");
    key
}

/// One request; the status and the JSON body (`Null` when the body is not JSON).
async fn call(
    client: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
}

/// Asserts an error answer's shape and code.
fn assert_error(what: &str, status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
}

/// Who may do what: the answer expected for each kind of key, in the order
/// operator, operator viewer, acme admin, acme viewer, globex admin.
struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    expect: [u16; 5],
}

fn case(method: &'static str, path: impl Into<String>, body: Option<Value>, expect: [u16; 5]) -> Case {
    Case { method, path: path.into(), body, expect }
}

const OK: u16 = 200;
const DENIED: u16 = 403;
const HIDDEN: u16 = 404;
/// Let through to the daemon, whatever it answers then (a trigger may find its job still
/// running from the previous one): neither 401 nor 403.
const ALLOWED: u16 = 1;

/// `[daemon]` and `[server]` of the matrix tests: bad keys are not limited here.
const UNLIMITED: &str = "\n[server]\napi_bad_keys_per_minute = 1000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_kind_of_key_and_revocation_at_once() {
    matrix(Fixture::sqlite(UNLIMITED).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_kind_of_key_and_revocation_at_once_on_postgres() {
    matrix(Fixture::postgres(UNLIMITED).await).await;
}

async fn matrix(fx: Fixture) {
    let sim = start(SimConfig::new(Provider::Aptem, 30)).await.unwrap();
    fx.connect("acme", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    fx.connect("globex", &aptem_tenant(&sim, NEVER), &[("aptem", sim.credentials())]).await;
    let keys = [
        create_key(&fx, &["--operator", "--name", "ops"]).await,
        create_key(&fx, &["--operator", "--role", "viewer", "--name", "ops-viewer"]).await,
        create_key(&fx, &["--tenant", "acme", "--role", "admin", "--name", "acme-admin"]).await,
        create_key(&fx, &["--tenant", "acme", "--role", "viewer", "--name", "acme-viewer", "--expires", "90d"]).await,
        create_key(&fx, &["--tenant", "globex", "--role", "admin", "--name", "globex-admin"]).await,
    ];
    let names = ["ops", "ops-viewer", "acme-admin", "acme-viewer", "globex-admin"];
    // The store holds digests, never a key.
    let listed = json(&fx.ok(&["--json", "api-keys", "list"], "").await);
    let listed_text = listed.to_string();
    assert_eq!(listed.as_array().map(Vec::len), Some(5), "{listed}");
    for key in &keys {
        assert!(!listed_text.contains(&key[4..]), "`api-keys list` shows no key");
        let (_, secret) = key[4..].split_once('_').unwrap();
        assert!(!listed_text.contains(secret));
    }
    let duplicate = fx.command(&["api-keys", "create", "--operator", "--name", "ops"]).output().await.unwrap();
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("`ops` exists already"));

    let daemon = fx.start("d", 4).await;
    let base = format!("http://{}/api/v1", http_address(&daemon));
    let client = reqwest::Client::new();

    // A finished acme run to read, and a webhook endpoint of acme's to act on.
    let (status, reply, _) =
        call(&client, &base, Some(&keys[0]), "POST", "/tenants/acme/trigger", Some(&json!({"stream": "learners"})))
            .await;
    assert_eq!(status, 200, "{reply}");
    let run_id = reply["triggered"][0]["run_id"].as_str().expect("a started run").to_owned();
    let run = fx.finished_run("acme", run_id.parse().unwrap()).await;
    assert!(run.stats.fetched > 0);
    let endpoint = json!({"tenant": "acme", "url": "https://hooks.example.com/acme", "events": ["run.failed"]});
    let (status, added, _) = call(&client, &base, Some(&keys[0]), "POST", "/webhooks", Some(&endpoint)).await;
    assert_eq!(status, 200, "{added}");
    let ep = added["endpoint"]["id"].as_str().expect("an endpoint id").to_owned();
    assert!(added["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{added}");

    let write = json!({"tenant": "acme", "provider": "aptem", "entity": "learner", "op": "update", "id": "L-1",
                       "record": {"first_name": "Ada"}});
    let cases = vec![
        case("GET", "/status", None, [OK, OK, OK, OK, OK]),
        case("GET", "/tenants", None, [OK, OK, DENIED, DENIED, DENIED]),
        case("GET", "/jobs?tenant=acme", None, [OK, OK, OK, OK, DENIED]),
        case("GET", "/jobs", None, [OK, OK, OK, OK, OK]),
        case("GET", "/runs?tenant=acme&limit=5", None, [OK, OK, OK, OK, DENIED]),
        case("GET", format!("/runs/{run_id}"), None, [OK, OK, OK, OK, HIDDEN]),
        case(
            "POST",
            "/tenants/acme/trigger",
            Some(json!({"stream": "learners"})),
            [ALLOWED, DENIED, ALLOWED, DENIED, DENIED],
        ),
        case("POST", "/tenants/globex/trigger", None, [ALLOWED, DENIED, DENIED, DENIED, ALLOWED]),
        case("POST", "/tenants/acme/pause", Some(json!({"provider": "aptem"})), [OK, DENIED, OK, DENIED, DENIED]),
        case("POST", "/tenants/acme/resume", Some(json!({"provider": "aptem"})), [OK, DENIED, OK, DENIED, DENIED]),
        case("GET", "/tenants/acme/intelligence", None, [OK, OK, OK, OK, DENIED]),
        case("GET", "/tenants/acme/usage?by=week", None, [OK, OK, OK, OK, DENIED]),
        case("GET", "/tenants/globex/usage", None, [OK, OK, DENIED, DENIED, OK]),
        case("GET", "/audit?limit=5", None, [OK, OK, OK, OK, OK]),
        case("GET", "/audit?tenant=globex", None, [OK, OK, DENIED, DENIED, OK]),
        case("GET", "/tenants/acme/records/learner?limit=2&fields=first_name", None, [OK, OK, OK, OK, DENIED]),
        case("GET", "/tenants/acme/changes?since=0&limit=3", None, [OK, OK, OK, OK, DENIED]),
        case("GET", "/webhooks", None, [OK, OK, OK, OK, OK]),
        case("POST", "/webhooks", Some(endpoint.clone()), [OK, DENIED, OK, DENIED, DENIED]),
        case("GET", format!("/webhooks/{ep}/deliveries"), None, [OK, OK, OK, OK, HIDDEN]),
        case("POST", format!("/webhooks/{ep}/replay"), None, [OK, DENIED, OK, DENIED, HIDDEN]),
        case("POST", format!("/webhooks/{ep}/test"), None, [OK, DENIED, OK, DENIED, HIDDEN]),
        case("GET", "/writes", None, [OK, OK, OK, OK, OK]),
        case("POST", "/writes", Some(write.clone()), [OK, DENIED, OK, DENIED, DENIED]),
        case("GET", "/writes/wr_none", None, [HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN]),
        case("POST", "/writes/wr_none/retry", None, [HIDDEN, DENIED, HIDDEN, DENIED, HIDDEN]),
        case("POST", "/writes/wr_none/cancel", None, [HIDDEN, DENIED, HIDDEN, DENIED, HIDDEN]),
        case("DELETE", "/webhooks/ep_none", None, [HIDDEN, DENIED, HIDDEN, DENIED, HIDDEN]),
    ];
    let mut writes = Vec::new();
    for c in &cases {
        for (i, key) in keys.iter().enumerate() {
            let what = format!("{} {} as {}", c.method, c.path, names[i]);
            let (status, body, _) = call(&client, &base, Some(key), c.method, &c.path, c.body.as_ref()).await;
            match c.expect[i] {
                OK => assert_eq!(status, 200, "{what}: {body}"),
                ALLOWED => assert!(![401, 403].contains(&status), "{what}: {status} {body}"),
                DENIED => assert_error(&what, status, &body, 403, "forbidden"),
                _ => assert_error(&what, status, &body, 404, "not_found"),
            }
            if c.method == "POST" && c.path == "/writes" && status == 200 {
                writes.push(body["write"]["id"].as_str().expect("a write id").to_owned());
            }
        }
    }
    assert_eq!(writes.len(), 2, "the operator's and acme's admin's writes");

    // What a key reads is its own tenant's: globex's admin sees no acme endpoint or write,
    // a tenant key's jobs are its tenant's.
    let (_, hooks, _) = call(&client, &base, Some(&keys[4]), "GET", "/webhooks", None).await;
    assert!(!hooks.to_string().contains("acme"), "{hooks}");
    let (_, hooks, _) = call(&client, &base, Some(&keys[3]), "GET", "/webhooks", None).await;
    assert!(hooks.to_string().contains(&ep), "{hooks}");
    let (_, listed, _) = call(&client, &base, Some(&keys[4]), "GET", "/writes", None).await;
    assert!(!listed.to_string().contains(&writes[0]), "{listed}");
    let (status, body, _) = call(&client, &base, Some(&keys[4]), "GET", &format!("/writes/{}", writes[0]), None).await;
    assert_error("another tenant's write", status, &body, 404, "not_found");
    let (_, jobs, _) = call(&client, &base, Some(&keys[4]), "GET", "/jobs", None).await;
    let tenants: BTreeSet<&str> = jobs.as_array().unwrap().iter().filter_map(|j| j["tenant"].as_str()).collect();
    assert_eq!(tenants, BTreeSet::from(["globex"]), "{jobs}");
    let (_, records, _) =
        call(&client, &base, Some(&keys[3]), "GET", "/tenants/acme/records/learner?limit=2&fields=first_name", None)
            .await;
    assert_eq!(records["total"], 30, "{records}");
    assert_eq!(records["records"].as_array().map(Vec::len), Some(2), "{records}");
    let first = &records["records"][0]["data"];
    assert_eq!(first.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["first_name".into()]));
    let after = records["next_after"].as_str().expect("a next page").to_owned();
    let (_, page, _) =
        call(&client, &base, Some(&keys[3]), "GET", &format!("/tenants/acme/records/learner?after={after}"), None)
            .await;
    assert_ne!(page["records"][0]["external_id"], records["records"][0]["external_id"], "{page}");
    let (_, changes, _) = call(&client, &base, Some(&keys[2]), "GET", "/tenants/acme/changes?limit=3", None).await;
    assert_eq!(changes["changes"].as_array().map(Vec::len), Some(3), "{changes}");
    assert!(changes["next_since"].as_i64().is_some_and(|n| n > 0), "{changes}");
    let (_, shown, _) = call(&client, &base, Some(&keys[2]), "GET", &format!("/runs/{run_id}"), None).await;
    assert_eq!(shown["run"]["id"], run_id.as_str(), "{shown}");
    assert_eq!(shown["run"]["fetched"], 30, "{shown}");
    // The admin of acme removes its endpoint; the viewer could not.
    let (status, body, _) = call(&client, &base, Some(&keys[2]), "DELETE", &format!("/webhooks/{ep}"), None).await;
    assert_eq!(status, 200, "{body}");

    // JSON errors everywhere: no key, a bad key, an unknown route, a bad body, a bad query.
    let (status, body, _) = call(&client, &base, None, "GET", "/status", None).await;
    assert_error("no key", status, &body, 401, "unauthorized");
    let forged = format!("{}0", &keys[0][..keys[0].len() - 1]);
    let (status, body, _) = call(&client, &base, Some(&forged), "GET", "/status", None).await;
    assert_error("a forged key", status, &body, 401, "unauthorized");
    let (status, body, _) = call(&client, &base, Some("hunter2"), "GET", "/status", None).await;
    assert_error("not a key", status, &body, 401, "unauthorized");
    let (status, body, _) = call(&client, &base, Some(&keys[0]), "GET", "/nothing/here", None).await;
    assert_error("an unknown route", status, &body, 404, "not_found");
    let (status, body, _) = call(&client, &base, Some(&keys[0]), "PUT", "/status", None).await;
    assert_error("a wrong method", status, &body, 405, "method_not_allowed");
    let (status, body, _) =
        call(&client, &base, Some(&keys[0]), "POST", "/webhooks", Some(&json!({"url": "https://h.example/x"}))).await;
    assert_error("a body without events", status, &body, 400, "bad_request");
    assert!(body["error"]["message"].as_str().unwrap().contains("events"), "{body}");
    let (status, body, _) = call(&client, &base, Some(&keys[0]), "GET", "/runs?limit=many", None).await;
    assert_error("a bad query", status, &body, 400, "bad_request");
    let (status, body, _) = call(&client, &base, Some(&keys[0]), "GET", "/tenants/nope/changes", None).await;
    assert_error("an unknown tenant", status, &body, 404, "not_found");
    let huge = json!({"url": "https://h.example/x", "events": ["x".repeat(2 * 1024 * 1024)]});
    // (On a client of its own: the server closes a connection whose body it did not read.)
    let (status, body, _) =
        call(&reqwest::Client::new(), &base, Some(&keys[0]), "POST", "/webhooks", Some(&huge)).await;
    assert_error("a body over the limit", status, &body, 413, "payload_too_large");

    // Revoked with the daemon running: refused on the very next request.
    let (status, _, _) = call(&client, &base, Some(&keys[3]), "GET", "/status", None).await;
    assert_eq!(status, 200);
    fx.ok(&["api-keys", "revoke", "acme-viewer"], "").await;
    let (status, body, _) = call(&client, &base, Some(&keys[3]), "GET", "/status", None).await;
    assert_error("a revoked key", status, &body, 401, "unauthorized");
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
    // An expired key likewise.
    let expired = create_key(&fx, &["--tenant", "acme", "--expires", "2020-01-01", "--name", "old"]).await;
    let (status, body, _) = call(&client, &base, Some(&expired), "GET", "/status", None).await;
    assert_error("an expired key", status, &body, 401, "unauthorized");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");

    // Every refusal is counted and logged, with the key's name and never the key.
    let metrics =
        reqwest::get(format!("http://{}/metrics", http_address(&daemon))).await.unwrap().text().await.unwrap();
    let count = |reason: &str| {
        let series = format!("tributary_api_requests_denied_total{{reason=\"{reason}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    let forbidden = cases.iter().flat_map(|c| c.expect).filter(|e| *e == DENIED).count();
    assert!(count("forbidden") >= forbidden as f64, "{forbidden} refusals: {metrics}");
    assert!(count("unauthorized") >= 5.0, "{metrics}");
    let refused = daemon.events("API request refused: the key's scope does not allow it");
    assert!(refused.iter().any(|e| e["fields"]["key"] == "globex-admin"), "{refused:?}");
    let log = daemon.log_text();
    for key in keys.iter().chain([&expired, &forged]) {
        let (_, secret) = key[4..].split_once('_').unwrap();
        assert!(!log.contains(secret), "a key's secret in the log");
    }
    // The usage of acme's finished run, and a tenant key's audit log is its tenant's own.
    let (status, usage, _) = call(&client, &base, Some(&keys[2]), "GET", "/tenants/acme/usage", None).await;
    assert_eq!(status, 200, "{usage}");
    assert!(usage.to_string().contains("learners"), "{usage}");
    let (status, entries, _) = call(&client, &base, Some(&keys[2]), "GET", "/audit", None).await;
    assert_eq!(status, 200, "{entries}");
    let entries = entries.as_array().expect("audit entries");
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["tenant_id"] == "acme"), "{entries:?}");
    // Creating and revoking keys is audited, by name, never with the key.
    let audit = json(&fx.ok(&["--json", "audit", "list"], "").await);
    let entries = audit.as_array().unwrap();
    let of = |action: &str, subject: &str| {
        entries.iter().any(|e| e["action"] == action && e["subject"] == subject && e["outcome"] == "ok")
    };
    assert!(of("api_key.create", "acme-viewer"), "{audit}");
    assert!(of("api_key.create", "old"), "{audit}");
    assert!(of("api_key.revoke", "acme-viewer"), "{audit}");
    let audit_text = audit.to_string();
    for key in keys.iter().chain([&expired]) {
        let (_, secret) = key[4..].split_once('_').unwrap();
        assert!(!audit_text.contains(secret), "a key's secret in the audit log");
    }
    drop(daemon);
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_are_rate_limited_per_address() {
    let fx = Fixture::sqlite("\n[server]\napi_bad_keys_per_minute = 3").await;
    let good = create_key(&fx, &["--operator"]).await;
    let daemon = fx.start("d", 1).await;
    let base = format!("http://{}/api/v1", http_address(&daemon));
    let client = reqwest::Client::new();
    let (status, _, _) = call(&client, &base, Some(&good), "GET", "/status", None).await;
    assert_eq!(status, 200, "a good key is not counted");
    for _ in 0..3 {
        let (status, body, _) = call(&client, &base, Some("trb_000000000000_00"), "GET", "/status", None).await;
        assert_error("a bad key", status, &body, 401, "unauthorized");
    }
    let (status, body, headers) = call(&client, &base, Some("trb_bad"), "GET", "/status", None).await;
    assert_error("over the limit", status, &body, 429, "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The address waits out its minute, good key or not.
    let (status, body, _) = call(&client, &base, Some(&good), "GET", "/status", None).await;
    assert_error("a good key from a blocked address", status, &body, 429, "rate_limited");
    let metrics =
        reqwest::get(format!("http://{}/metrics", http_address(&daemon))).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tributary_api_requests_denied_total{reason=\"rate_limited\"} 2"), "{metrics}");
    drop(daemon);
    fx.finish().await;
}

/// The routes the API serves (method, path), as documented for users.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/status"),
    ("get", "/api/v1/tenants"),
    ("get", "/api/v1/jobs"),
    ("get", "/api/v1/runs"),
    ("get", "/api/v1/runs/{id}"),
    ("post", "/api/v1/tenants/{tenant}/trigger"),
    ("post", "/api/v1/tenants/{tenant}/pause"),
    ("post", "/api/v1/tenants/{tenant}/resume"),
    ("get", "/api/v1/tenants/{tenant}/intelligence"),
    ("get", "/api/v1/tenants/{tenant}/usage"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/tenants/{tenant}/records/{entity}"),
    ("get", "/api/v1/tenants/{tenant}/changes"),
    ("get", "/api/v1/webhooks"),
    ("post", "/api/v1/webhooks"),
    ("delete", "/api/v1/webhooks/{id}"),
    ("post", "/api/v1/webhooks/{id}/test"),
    ("get", "/api/v1/webhooks/{id}/deliveries"),
    ("post", "/api/v1/webhooks/{id}/replay"),
    ("get", "/api/v1/writes"),
    ("post", "/api/v1/writes"),
    ("get", "/api/v1/writes/{id}"),
    ("post", "/api/v1/writes/{id}/retry"),
    ("post", "/api/v1/writes/{id}/cancel"),
    ("get", "/api/v1/openapi.json"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_lists_every_route_the_daemon_serves() {
    let fx = Fixture::sqlite("").await;
    let key = create_key(&fx, &["--operator"]).await;
    let daemon = fx.start("d", 1).await;
    let host = format!("http://{}", http_address(&daemon));
    // Served without a key.
    let doc: Value = reqwest::get(format!("{host}/api/v1/openapi.json")).await.unwrap().json().await.unwrap();
    let version = doc["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string(), "{}", doc["info"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            documented.insert((method.clone(), path.clone()));
            assert!(op["responses"]["200"].is_object(), "{method} {path} documents its answer");
            // Every path parameter is declared.
            for name in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
                });
                assert!(declared, "{method} {path}: path parameter `{name}` is not declared");
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(documented, expected, "the document and the served routes differ");
    // Every documented route is served (a route missing from the router answers 404 or 405).
    let client = reqwest::Client::new();
    for (method, path) in &expected {
        let concrete = path.replace("{tenant}", "nope").replace("{entity}", "learner").replace("{id}", "x1");
        let (status, body, _) = call(&client, &host, Some(&key), &method.to_uppercase(), &concrete, None).await;
        assert!(
            status != 405
                && !(status == 404 && body["error"]["message"].as_str().is_some_and(|m| m.starts_with("no API route"))),
            "{method} {path} is documented but not served: {status} {body}"
        );
    }
    drop(daemon);
    fx.finish().await;
}

fn openssl(args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl (the openssl command line makes the test's certificates)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A test CA (certificate and key) made with the openssl command line.
fn test_ca(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("ca.pem").display().to_string(), dir.join("ca.key").display().to_string());
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"];
    openssl(
        &[&["req", "-x509"], &ec[..], &["-subj", "/CN=tributary test CA", "-keyout", &key, "-out", &cert]].concat(),
    );
    (cert, key)
}

/// A certificate for 127.0.0.1 signed by `ca`: its PEM file, key file and DER bytes.
fn leaf(dir: &std::path::Path, name: &str, ca: &(String, String)) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let (cert, key, der) =
        (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")), dir.join(format!("{name}.der")));
    let (c, k, d) = (cert.display().to_string(), key.display().to_string(), der.display().to_string());
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"];
    openssl(
        &[
            &["req", "-x509", "-CA", &ca.0, "-CAkey", &ca.1],
            &ec[..],
            &["-subj", &format!("/CN={name}"), "-addext", "subjectAltName=IP:127.0.0.1"],
            &["-addext", "basicConstraints=critical,CA:FALSE", "-keyout", &k, "-out", &c],
        ]
        .concat(),
    );
    openssl(&["x509", "-outform", "der", "-in", &c, "-out", &d]);
    (cert, key, std::fs::read(der).unwrap())
}

/// The certificate the server presented, with an answer to `GET /api/v1/status`.
async fn served_certificate(base: &str, key: &str) -> (u16, Vec<u8>) {
    let client = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).tls_info(true).build().unwrap();
    let response = client.get(format!("{base}/api/v1/status")).bearer_auth(key).send().await.expect("HTTPS answers");
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    let der = info.peer_certificate().expect("a certificate").to_vec();
    (response.status().as_u16(), der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_serves_tls_and_reloads_its_certificate_on_sighup() {
    let certs = tempfile::tempdir().unwrap();
    let ca = test_ca(certs.path());
    let (cert, key, first) = leaf(certs.path(), "first", &ca);
    let fx =
        Fixture::sqlite(&format!("\n[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"", cert.display(), key.display()))
            .await;
    let api_key = create_key(&fx, &["--operator"]).await;
    let daemon = fx.start("d", 1).await;
    let base = format!("https://{}", http_address(&daemon));
    // Verified against the test CA as the only root.
    let pem = std::fs::read(&ca.0).unwrap();
    let strict =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]).build().unwrap();
    let response = strict.get(format!("{base}/api/v1/status")).bearer_auth(&api_key).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["daemon"]["state"], "running", "{status}");
    assert!(reqwest::get(format!("http://{}/healthz", http_address(&daemon))).await.is_err(), "no plain HTTP");
    assert_eq!(served_certificate(&base, &api_key).await, (200, first.clone()));

    // A new certificate in the same files; SIGHUP; new connections get it.
    let (new_cert, new_key, second) = leaf(certs.path(), "second", &ca);
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    assert_ne!(first, second);
    daemon.signal("HUP").await;
    eventually("the new certificate", || async {
        let (status, der) = served_certificate(&base, &api_key).await;
        (status == 200 && der == second).then_some(())
    })
    .await;
    // A broken pair is refused and the certificate in force stays.
    std::fs::write(&key, "not a key").unwrap();
    daemon.signal("HUP").await;
    eventually("the refused reload logged", || async {
        daemon.log_text().contains("TLS certificate not reloaded").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(served_certificate(&base, &api_key).await, (200, second));
    drop(daemon);
    fx.finish().await;
}
