//! Reading and exporting records from the command line (`records list`, `records
//! export`), on both stores: records are written through the store, their times set to
//! fixed instants behind its back, and the built binary reads them.

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use tributary::model::{AuditEntry, EntityName, Owner, PresetName, ProviderId, StreamName, TenantId};
use tributary::store::{PageWrite, PositionWrite, RecordInput, Store, TenantState};

use crate::support::cli::Env;
use crate::support::{exec_raw, json};

crate::support::contract::contract! {
    store: [],
    url: [
        list_pages_by_cursor_in_a_stable_order,
        list_filters_by_time_deletion_and_fields,
        export_writes_csv_exactly,
        export_writes_typed_json_lines,
        unknown_names_are_errors_naming_them,
    ],
}

fn tenant_id(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn provider(id: &str) -> ProviderId {
    ProviderId::parse(id).unwrap()
}

/// A tenant with company connections to `providers`.
async fn tenant(store: &Store, id: &str, providers: &[&str]) {
    let state = TenantState {
        id: tenant_id(id),
        name: format!("{id} Ltd"),
        subdomain: id.into(),
        timezone: "Europe/London".into(),
        preset: PresetName::parse("aptem_hubspot").unwrap(),
        preset_revision: "r1".into(),
        preset_snapshot: json!({}),
        overrides: vec![],
        enabled_providers: providers.iter().map(|p| provider(p)).collect(),
    };
    let audit = AuditEntry {
        at: Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap(),
        actor: "cli:ops".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: "tenant.create".into(),
        tenant_id: Some(tenant_id(id)),
        subject: None,
        details: json!({}),
    };
    store.create_tenant(&state, &audit).await.unwrap();
}

/// Stores `records` (id, data) of `entity` from `provider` at the tenant.
async fn write(store: &Store, tenant: &str, provider_id: &str, entity: &str, records: &[(&str, Value)]) {
    let t = tenant_id(tenant);
    let p = provider(provider_id);
    let connection = store.get_connection(&t, &p, Owner::Company).await.unwrap().expect("a connection");
    let job = store.ensure_job(&t, connection.id, &StreamName::parse("things").unwrap(), "15m").await.unwrap();
    let records: Vec<RecordInput> =
        records.iter().map(|(id, data)| RecordInput { external_id: (*id).into(), data: data.clone() }).collect();
    let entity = EntityName::parse(entity).unwrap();
    let page = PageWrite {
        entity: &entity,
        provider: &p,
        records: &records,
        job_id: job.id,
        cursor: None,
        lease_owner: None,
        dead_letters: &[],
        position: PositionWrite::Keep,
        run: None,
        mark_seen: false,
    };
    store.write_page(&t, &page).await.unwrap();
}

async fn delete(store: &Store, tenant: &str, provider_id: &str, entity: &str, ids: &[&str]) {
    let entity = EntityName::parse(entity).unwrap();
    store.mark_deleted(&tenant_id(tenant), &entity, &provider(provider_id), ids, None).await.unwrap();
}

/// Every record first seen and synced at fixed instants; those listed in the second
/// statement synced later, deleted ones deleted at a fixed instant.
async fn fix_times(url: &str, later: &'static str) {
    exec_raw(
        url,
        "UPDATE records SET first_seen = '2026-11-01T08:00:00+00:00', last_synced = '2026-11-02T09:30:00+00:00'",
    )
    .await;
    exec_raw(url, later).await;
    exec_raw(url, "UPDATE records SET deleted_at = '2026-11-25T17:45:00+00:00' WHERE deleted_at IS NOT NULL").await;
}

/// Runs the binary on the store at `url`.
fn run(env: &Env, url: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    env.run(&all)
}

fn ok(env: &Env, url: &str, args: &[&str]) -> String {
    let out = run(env, url, args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(env: &Env, url: &str, args: &[&str]) -> String {
    let out = run(env, url, args);
    assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    let key = |r: &Value| format!("{}/{}", r["provider"].as_str().unwrap(), r["external_id"].as_str().unwrap());
    page["records"].as_array().unwrap().iter().map(key).collect()
}

/// Learners of two providers and another tenant: pages of 3 by the printed cursor
/// visit every record once, by provider then external id.
async fn list_pages_by_cursor_in_a_stable_order(store: &Store, url: &str) {
    tenant(store, "acme", &["aptem", "onefile"]).await;
    tenant(store, "globex", &["aptem"]).await;
    let learner = |id: &str| json!({ "external_id": id, "first_name": "Ann", "last_name": id });
    // Written out of order, across two pages.
    write(store, "acme", "onefile", "learner", &[("o2", learner("o2")), ("o1", learner("o1"))]).await;
    write(store, "acme", "aptem", "learner", &[("a3", learner("a3")), ("a1", learner("a1")), ("a2", learner("a2"))])
        .await;
    write(store, "acme", "aptem", "learner", &[("a4", learner("a4")), ("a0", learner("a0"))]).await;
    write(store, "acme", "aptem", "employer", &[("e1", json!({ "crm_id": "e1", "name": "E" }))]).await;
    write(store, "globex", "aptem", "learner", &[("g1", learner("g1"))]).await;
    let env = Env::new();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["--json", "records", "list", "--tenant", "acme", "--entity", "learner", "--limit", "3"];
        if let Some(cursor) = &after {
            args.extend(["--after", cursor.as_str()]);
        }
        let page = json(&ok(&env, url, &args));
        assert_eq!(page["total"], 7, "{page}");
        seen.extend(ids(&page));
        pages += 1;
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected = ["aptem/a0", "aptem/a1", "aptem/a2", "aptem/a3", "aptem/a4", "onefile/o1", "onefile/o2"];
    assert_eq!(seen, expected);

    // The table says how to go on; the last page says nothing more.
    let text = ok(&env, url, &["records", "list", "--tenant", "acme", "--entity", "learner", "--limit", "5"]);
    let cursor = text.lines().last().unwrap().split("--after ").nth(1).expect("a next cursor").trim().to_owned();
    assert!(text.contains("5 of 7 learner records; next: --after "), "{text}");
    let rest = ok(&env, url, &["records", "list", "--tenant", "acme", "--entity", "learner", "--after", &cursor]);
    assert!(rest.contains("o1") && rest.contains("o2") && !rest.contains("a4"), "{rest}");
    assert!(rest.trim_end().ends_with("2 of 7 learner records"), "{rest}");

    // JSON lines: one record per line, the cursor on stderr.
    let out =
        run(&env, url, &["records", "list", "--tenant", "acme", "--entity", "learner", "--limit", "4", "--jsonl"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout.lines().map(json).collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0]["external_id"], "a0");
    assert_eq!(lines[0]["data"]["last_name"], "a0");
    assert_eq!(lines[3]["external_id"], "a3");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let next = stderr.lines().find_map(|l| l.strip_prefix("next: --after ")).expect("the cursor on stderr");
    let last = json(&ok(
        &env,
        url,
        &["--json", "records", "list", "--tenant", "acme", "--entity", "learner", "--after", next, "--limit", "1"],
    ));
    assert_eq!(last["records"][0]["external_id"], "a4", "{last}");
}

/// `--since`, `--include-deleted` and `--fields` narrow a listing and its total.
async fn list_filters_by_time_deletion_and_fields(store: &Store, url: &str) {
    tenant(store, "acme", &["aptem"]).await;
    let learner = |id: &str, email: &str| json!({ "external_id": id, "first_name": "Ann", "last_name": "Lee", "email": email, "status": "active" });
    let records: Vec<(String, Value)> =
        (1..=6).map(|i| (format!("l{i}"), learner(&format!("l{i}"), "a@b.c"))).collect();
    let records: Vec<(&str, Value)> = records.iter().map(|(id, v)| (id.as_str(), v.clone())).collect();
    write(store, "acme", "aptem", "learner", &records).await;
    delete(store, "acme", "aptem", "learner", &["l2", "l5"]).await;
    fix_times(
        url,
        "UPDATE records SET last_synced = '2026-11-20T12:00:00+00:00' WHERE external_id IN ('l4', 'l5', 'l6')",
    )
    .await;
    let env = Env::new();
    let list = |extra: &[&str]| {
        let mut args = vec!["--json", "records", "list", "--tenant", "acme", "--entity", "learner"];
        args.extend_from_slice(extra);
        json(&ok(&env, url, &args))
    };
    let external = |page: &Value| -> Vec<String> {
        page["records"].as_array().unwrap().iter().map(|r| r["external_id"].as_str().unwrap().to_owned()).collect()
    };

    let live = list(&[]);
    assert_eq!(external(&live), ["l1", "l3", "l4", "l6"]);
    assert_eq!(live["total"], 4);
    assert!(live["next_after"].is_null());
    let all = list(&["--include-deleted"]);
    assert_eq!(external(&all), ["l1", "l2", "l3", "l4", "l5", "l6"]);
    assert_eq!(all["records"][1]["deleted_at"], "2026-11-25T17:45:00Z");
    assert!(all["records"][0]["deleted_at"].is_null());

    // At or after: the instant itself counts; a date is its midnight in UTC.
    let since = list(&["--since", "2026-11-20T12:00:00Z"]);
    assert_eq!(external(&since), ["l4", "l6"]);
    assert_eq!(since["total"], 2);
    assert_eq!(external(&list(&["--since", "2026-11-20T12:00:00.000001Z"])), Vec::<String>::new());
    assert_eq!(external(&list(&["--since", "2026-11-20T13:00:00+01:00", "--include-deleted"])), ["l4", "l5", "l6"]);
    assert_eq!(external(&list(&["--since", "2026-11-03"])), ["l4", "l6"]);
    assert_eq!(external(&list(&["--since", "2026-11-02"])), ["l1", "l3", "l4", "l6"]);

    // Only the named fields, in the order named; a field a record lacks is null.
    let some = list(&["--fields", "status,email,uln", "--limit", "1"]);
    assert_eq!(some["records"][0]["data"], json!({ "status": "active", "email": "a@b.c", "uln": null }));
    assert_eq!(
        serde_json::to_string(&some["records"][0]["data"]).unwrap(),
        r#"{"status":"active","email":"a@b.c","uln":null}"#
    );
    let text = ok(&env, url, &["records", "list", "--tenant", "acme", "--entity", "learner", "--fields", "email,uln"]);
    let header = text.lines().next().unwrap();
    assert!(header.contains("EMAIL") && header.contains("ULN") && !header.contains("DATA"), "{text}");
    assert!(text.contains("a@b.c") && !text.contains("active"), "{text}");
    assert!(text.trim_end().ends_with("4 of 4 learner records"), "{text}");
    let deleted = ok(&env, url, &["records", "list", "--tenant", "acme", "--entity", "learner", "--include-deleted"]);
    assert!(deleted.lines().next().unwrap().contains("DELETED"), "{deleted}");
    assert!(deleted.contains("2026-11-25 17:45:00"), "{deleted}");
}

/// Deals, whose fields are typed: the CSV export, byte for byte.
async fn deals(store: &Store, url: &str) {
    tenant(store, "acme", &["hubspot", "salesforce"]).await;
    tenant(store, "globex", &["hubspot"]).await;
    write(
        store,
        "acme",
        "hubspot",
        "deal",
        &[
            (
                "d1",
                json!({ "external_id": "d1", "name": "Plain", "amount": 1250.5, "stage": "won",
                        "close_date": "2026-03-01", "company_id": "c1", "updated_at": "2026-02-01T10:00:00Z",
                        "lms_provider": "a tag, not a field" }),
            ),
            (
                "d2",
                json!({ "external_id": "d2", "name": "Comma, Inc.", "amount": 3, "stage": "say \"hi\"",
                        "company_id": "", "updated_at": null }),
            ),
            (
                "d3",
                json!({ "external_id": "d3", "name": "Line 1\nLine 2\r\nLine 3", "amount": -0.75,
                        "stage": "Zoë 日本 🚀", "close_date": "2026-12-24" }),
            ),
            ("d4", json!({ "external_id": "d4", "name": "Gone" })),
        ],
    )
    .await;
    write(store, "acme", "salesforce", "deal", &[("s1", json!({ "external_id": "s1", "name": "\"", "amount": 10 }))])
        .await;
    write(store, "acme", "hubspot", "contact", &[("k1", json!({ "external_id": "k1" }))]).await;
    write(store, "globex", "hubspot", "deal", &[("g1", json!({ "external_id": "g1", "name": "Other" }))]).await;
    delete(store, "acme", "hubspot", "deal", &["d4"]).await;
    fix_times(
        url,
        "UPDATE records SET last_synced = '2026-11-20T12:00:00.500+00:00' WHERE external_id IN ('d3', 's1')",
    )
    .await;
}

const CSV_HEADER: &str = "tenant_id,provider,external_id,first_seen_at,synced_at,deleted_at,name,amount,stage,close_date,company_id,updated_at\r\n";
const SEEN: &str = "2026-11-01T08:00:00.000000Z";
const EARLY: &str = "2026-11-02T09:30:00.000000Z";
const LATE: &str = "2026-11-20T12:00:00.500000Z";

async fn export_writes_csv_exactly(store: &Store, url: &str) {
    deals(store, url).await;
    let env = Env::new();
    let export = |extra: &[&str]| {
        let mut args = vec!["records", "export", "--tenant", "acme", "--entity", "deal", "--format", "csv"];
        args.extend_from_slice(extra);
        ok(&env, url, &args)
    };
    let d1 = format!("acme,hubspot,d1,{SEEN},{EARLY},,Plain,1250.5,won,2026-03-01,c1,2026-02-01T10:00:00Z\r\n");
    let d2 = format!("acme,hubspot,d2,{SEEN},{EARLY},,\"Comma, Inc.\",3,\"say \"\"hi\"\"\",,\"\",\r\n");
    let d3 = format!("acme,hubspot,d3,{SEEN},{LATE},,\"Line 1\nLine 2\r\nLine 3\",-0.75,Zoë 日本 🚀,2026-12-24,,\r\n");
    let d4 = format!("acme,hubspot,d4,{SEEN},{EARLY},2026-11-25T17:45:00.000000Z,Gone,,,,,\r\n");
    let s1 = format!("acme,salesforce,s1,{SEEN},{LATE},,\"\"\"\",10,,,,\r\n");
    assert_eq!(export(&[]), format!("{CSV_HEADER}{d1}{d2}{d3}{s1}"));
    assert_eq!(export(&["--include-deleted"]), format!("{CSV_HEADER}{d1}{d2}{d3}{d4}{s1}"));
    assert_eq!(export(&["--since", "2026-11-20T12:00:00.5Z"]), format!("{CSV_HEADER}{d3}{s1}"));
    assert_eq!(export(&["--since", "2026-11-21"]), CSV_HEADER);

    // A reader that stops early ends the export quietly.
    let mut child = env
        .cmd(&["--database-url", url, "records", "export", "--tenant", "acme", "--entity", "deal", "--format", "csv"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn export_writes_typed_json_lines(store: &Store, url: &str) {
    deals(store, url).await;
    let env = Env::new();
    let text = ok(
        &env,
        url,
        &["records", "export", "--tenant", "acme", "--entity", "deal", "--format", "jsonl", "--include-deleted"],
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        format!(
            r#"{{"tenant_id":"acme","provider":"hubspot","external_id":"d1","first_seen_at":"{SEEN}","synced_at":"{EARLY}","deleted_at":null,"name":"Plain","amount":1250.5,"stage":"won","close_date":"2026-03-01","company_id":"c1","updated_at":"2026-02-01T10:00:00Z"}}"#
        )
    );
    let rows: Vec<Value> = lines.iter().map(|l| json(l)).collect();
    assert_eq!(rows[1]["name"], "Comma, Inc.");
    assert_eq!(rows[1]["amount"], json!(3));
    assert_eq!(rows[1]["stage"], "say \"hi\"");
    assert_eq!(rows[1]["company_id"], "");
    assert!(rows[1]["close_date"].is_null() && rows[1]["updated_at"].is_null());
    assert_eq!(rows[2]["name"], "Line 1\nLine 2\r\nLine 3");
    assert_eq!(rows[2]["amount"], json!(-0.75));
    assert_eq!(rows[2]["stage"], "Zoë 日本 🚀");
    assert_eq!(rows[2]["synced_at"], LATE);
    assert_eq!(rows[3]["external_id"], "d4");
    assert_eq!(rows[3]["deleted_at"], "2026-11-25T17:45:00.000000Z");
    assert_eq!(rows[4]["provider"], "salesforce");
    assert_eq!(rows[4]["amount"], json!(10));
    let keys: Vec<&str> = rows[4].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "tenant_id",
            "provider",
            "external_id",
            "first_seen_at",
            "synced_at",
            "deleted_at",
            "name",
            "amount",
            "stage",
            "close_date",
            "company_id",
            "updated_at"
        ]
    );
    let since = ok(
        &env,
        url,
        &["records", "export", "--tenant", "acme", "--entity", "deal", "--format", "jsonl", "--since", "2026-11-20"],
    );
    let since: Vec<Value> = since.lines().map(json).collect();
    assert_eq!(since.iter().map(|r| r["external_id"].as_str().unwrap()).collect::<Vec<_>>(), ["d3", "s1"]);

    // Booleans and integers stay typed.
    tenant(store, "initech", &["slack"]).await;
    write(
        store,
        "initech",
        "slack",
        "channel",
        &[("C1", json!({ "external_id": "C1", "name": "general", "is_private": false, "member_count": 42 }))],
    )
    .await;
    let channel =
        ok(&env, url, &["records", "export", "--tenant", "initech", "--entity", "channel", "--format", "jsonl"]);
    let channel = json(channel.trim_end());
    assert_eq!(channel["is_private"], json!(false));
    assert_eq!(channel["member_count"], json!(42));
}

async fn unknown_names_are_errors_naming_them(store: &Store, url: &str) {
    tenant(store, "acme", &["aptem"]).await;
    let env = Env::new();
    for command in [vec!["records", "list"], vec!["records", "export", "--format", "csv"]] {
        let with = |extra: &[&str]| {
            let mut args = command.clone();
            args.extend_from_slice(extra);
            fails(&env, url, &args)
        };
        let err = with(&["--tenant", "acme", "--entity", "lerner"]);
        assert!(err.contains("unknown entity `lerner`") && err.contains("learner"), "{err}");
        let err = with(&["--tenant", "nobody", "--entity", "learner"]);
        assert!(err.contains("tenant `nobody` not found"), "{err}");
        let err = with(&["--tenant", "acme", "--entity", "learner", "--since", "last week"]);
        assert!(err.contains("`--since last week`"), "{err}");
    }
    let err =
        fails(&env, url, &["records", "list", "--tenant", "acme", "--entity", "learner", "--fields", "email,mail"]);
    assert!(err.contains("unknown field `mail` of entity `learner`") && err.contains("email"), "{err}");
    let err = fails(&env, url, &["records", "list", "--tenant", "acme", "--entity", "learner", "--after", "xyz"]);
    assert!(err.contains("`--after xyz` is not a cursor"), "{err}");
    let err = fails(&env, url, &["records", "export", "--tenant", "acme", "--entity", "learner", "--format", "xml"]);
    assert!(err.contains("xml"), "{err}");
    let err = fails(&env, url, &["--json", "records", "list", "--tenant", "acme", "--entity", "learner", "--jsonl"]);
    assert!(err.contains("--json and --jsonl"), "{err}");
}
