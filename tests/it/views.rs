//! The typed entity views (`entity_<name>`): made from entities.toml on both stores,
//! one typed column per declared field, deletion-aware, following entities.toml as it
//! changes (a removed field's column goes, its data stays), never touching views made by
//! hand; on PostgreSQL readable by a role that cannot read the records table, through
//! replacements. The daemon's side (start-up, reload) is in `daemon/views.rs`.

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row, SqliteConnection};
use tributary::config::{Diagnostics, Entities, Source};
use tributary::model::{AuditEntry, EntityName, Owner, PresetName, ProviderId, StreamName, TenantId};
use tributary::store::{PageWrite, PositionWrite, RecordInput, Store, TenantState, ViewsRefreshed};

use crate::support::cli::Env;
use crate::support::exec_raw;

crate::support::contract::contract! {
    store: [],
    url: [views_are_typed_deletion_aware_and_follow_entities],
}

const ENTITIES: &str = r#"
[entities.learner]
title = "Learner"
description = "A learner on a programme."
[entities.learner.fields]
external_id = { type = "string", required = true }
name = { type = "string" }
email = { type = "email" }
credits = { type = "integer" }
score = { type = "number", description = "The latest assessment's score." }
active = { type = "boolean" }
start_date = { type = "date" }
updated_at = { type = "datetime" }
extra = { type = "json" }

[entities.note]
title = "Note"
[entities.note.fields]
external_id = { type = "string", required = true }
text = { type = "string" }
"#;

/// `ENTITIES` without `learner.score` and `note`, with `ghost`.
const CHANGED: &str = r#"
[entities.learner]
title = "Learner"
[entities.learner.fields]
external_id = { type = "string", required = true }
name = { type = "string" }
email = { type = "email" }
credits = { type = "integer" }
active = { type = "boolean" }
start_date = { type = "date" }
updated_at = { type = "datetime" }
extra = { type = "json" }

[entities.ghost]
title = "Ghost"
[entities.ghost.fields]
external_id = { type = "string", required = true }
"#;

pub fn entities(toml: &str) -> Entities {
    let mut diag = Diagnostics::default();
    let entities = Entities::load(&Source::builtin("entities.toml", toml), &mut diag);
    assert!(diag.is_empty(), "{diag}");
    entities
}

/// The columns of `view` (name, declared type), in order; none when it does not exist.
pub async fn columns(url: &str, view: &str) -> Vec<(String, String)> {
    if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url).await.expect("open sqlite");
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
            .bind(view)
            .fetch_all(&mut conn)
            .await
            .expect("read a view's columns");
        conn.close().await.expect("close sqlite");
        rows
    } else {
        let mut conn = PgConnection::connect(url).await.expect("connect postgres");
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(view)
        .fetch_all(&mut conn)
        .await
        .expect("read a view's columns");
        conn.close().await.expect("close postgres");
        rows
    }
}

/// The rows of `sql`, whose columns are all text (PostgreSQL in the UTC time zone).
pub async fn texts(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let width = |row: &dyn Fn(usize) -> Option<Option<String>>| (0..).map_while(row).collect::<Vec<Option<String>>>();
    if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url).await.expect("open sqlite");
        let rows = sqlx::query(AssertSqlSafe(sql.to_owned())).fetch_all(&mut conn).await.expect(sql);
        conn.close().await.expect("close sqlite");
        rows.iter().map(|r| width(&|i| (i < r.len()).then(|| r.get::<Option<String>, _>(i)))).collect()
    } else {
        let mut conn = PgConnection::connect(url).await.expect("connect postgres");
        sqlx::query("SET TimeZone TO 'UTC'").execute(&mut conn).await.expect("set the time zone");
        let rows = sqlx::query(AssertSqlSafe(sql.to_owned())).fetch_all(&mut conn).await.expect(sql);
        conn.close().await.expect("close postgres");
        rows.iter().map(|r| width(&|i| (i < r.len()).then(|| r.get::<Option<String>, _>(i)))).collect()
    }
}

/// Each of `columns` of the view's row `external_id` as (type of the value, its text):
/// `typeof` on SQLite, `pg_typeof` (the column's type) on PostgreSQL.
async fn typed(url: &str, view: &str, external_id: &str, columns: &[&str]) -> Vec<(String, Option<String>)> {
    let pg = url.starts_with("postgres");
    let select: Vec<String> = columns
        .iter()
        .map(
            |c| if pg { format!("pg_typeof({c})::text, {c}::text") } else { format!("typeof({c}), CAST({c} AS TEXT)") },
        )
        .collect();
    let sql =
        format!("SELECT {} FROM {view} WHERE tenant_id = 'acme' AND external_id = '{external_id}'", select.join(", "));
    let rows = texts(url, &sql).await;
    assert_eq!(rows.len(), 1, "one row of {external_id} in {view}");
    rows[0].chunks(2).map(|pair| (pair[0].clone().expect("a type"), pair[1].clone())).collect()
}

fn id<T>(parse: fn(&str) -> Result<T, tributary::model::IdError>, text: &str) -> T {
    parse(text).expect("a valid id")
}

/// Creates the tenant with the Aptem provider; returns its learners job's id.
async fn aptem_tenant(store: &Store, tenant: &str) -> i64 {
    let state = TenantState {
        id: id(TenantId::parse, tenant),
        name: format!("{tenant} Ltd"),
        subdomain: tenant.into(),
        timezone: "UTC".into(),
        preset: id(PresetName::parse, "aptem"),
        preset_revision: "r1".into(),
        preset_snapshot: json!({}),
        overrides: vec![],
        enabled_providers: vec![id(ProviderId::parse, "aptem")],
    };
    let audit = AuditEntry {
        at: Utc::now(),
        actor: "test".into(),
        scope: None,
        outcome: tributary::model::AuditOutcome::Ok,
        message: None,
        action: "tenant.create".into(),
        tenant_id: Some(state.id.clone()),
        subject: None,
        details: json!({}),
    };
    store.create_tenant(&state, &audit).await.expect("create the tenant");
    let aptem = id(ProviderId::parse, "aptem");
    let connection =
        store.get_connection(&state.id, &aptem, Owner::Company).await.expect("read").expect("the aptem connection");
    let stream = id(StreamName::parse, "learners");
    store.ensure_job(&state.id, connection.id, &stream, "15m").await.expect("ensure the job").id
}

async fn write(store: &Store, tenant: &str, job_id: i64, entity: &str, records: &[(&str, Value)]) {
    let (entity, provider) = (id(EntityName::parse, entity), id(ProviderId::parse, "aptem"));
    let records: Vec<RecordInput> =
        records.iter().map(|(id, data)| RecordInput { external_id: (*id).into(), data: data.clone() }).collect();
    let page = PageWrite {
        entity: &entity,
        provider: &provider,
        records: &records,
        job_id,
        cursor: None,
        lease_owner: None,
        dead_letters: &[],
        position: PositionWrite::Keep,
        run: None,
        mark_seen: false,
    };
    store.write_page(&id(TenantId::parse, tenant), &page).await.expect("write a page");
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn views_are_typed_deletion_aware_and_follow_entities(store: &Store, url: &str) {
    let pg = url.starts_with("postgres");
    let job = aptem_tenant(store, "acme").await;
    let l1 = json!({
        "external_id": "l1", "name": "Ada", "email": "ada@example.com", "credits": 12, "score": 87.5,
        "active": true, "start_date": "2024-09-01", "updated_at": "2026-11-21T09:00:00.000Z",
        "extra": { "a": [1] }, "lms_provider": "Aptem",
    });
    // Values that do not fit their fields (stored under an older entities.toml) read as NULL.
    let l2 = json!({
        "external_id": "l2", "name": "Bo", "credits": "twelve", "score": "high", "active": "yes",
        "start_date": "2024-02-30", "updated_at": "2024-13-01T00:00:00Z",
    });
    write(store, "acme", job, "learner", &[("l1", l1), ("l2", l2)]).await;
    write(store, "acme", job, "note", &[("n1", json!({ "external_id": "n1", "text": "hello" }))]).await;
    // Made by hand: never replaced nor dropped.
    exec_raw(url, "CREATE VIEW entity_ghost AS SELECT 1 AS one").await;

    let done = store.refresh_views(&entities(ENTITIES)).await.expect("refresh the views");
    assert_eq!(done, ViewsRefreshed { created: names(&["entity_learner", "entity_note"]), ..Default::default() });

    let (text, int, real, boolean, date, time, json_type) = if pg {
        ("text", "bigint", "numeric", "boolean", "date", "timestamp with time zone", "jsonb")
    } else {
        ("TEXT", "INT", "REAL", "INT", "TEXT", "TEXT", "TEXT")
    };
    let stamp = if pg { "timestamp with time zone" } else { "TEXT" };
    let seq = if pg { "bigint" } else { "INTEGER" };
    let expected: Vec<(String, String)> = [
        ("tenant_id", text),
        ("provider", text),
        ("external_id", text),
        ("name", text),
        ("email", text),
        ("credits", int),
        ("score", real),
        ("active", boolean),
        ("start_date", date),
        ("updated_at", time),
        ("extra", json_type),
        ("first_seen_at", stamp),
        ("synced_at", stamp),
        ("deleted_at", stamp),
        ("change_seq", seq),
        ("tags", json_type),
    ]
    .iter()
    .map(|(c, t)| ((*c).to_owned(), (*t).to_owned()))
    .collect();
    assert_eq!(columns(url, "entity_learner").await, expected);

    let fields = ["credits", "score", "active", "start_date", "updated_at"];
    let values = typed(url, "entity_learner", "l1", &fields).await;
    let pair = |t: &str, v: &str| (t.to_owned(), Some(v.to_owned()));
    if pg {
        assert_eq!(
            values,
            [
                pair("bigint", "12"),
                pair("numeric", "87.5"),
                pair("boolean", "true"),
                pair("date", "2024-09-01"),
                pair("timestamp with time zone", "2026-11-21 09:00:00+00"),
            ]
        );
    } else {
        assert_eq!(
            values,
            [
                pair("integer", "12"),
                pair("real", "87.5"),
                pair("integer", "1"),
                pair("text", "2024-09-01"),
                pair("text", "2026-11-21T09:00:00.000Z"),
            ]
        );
    }
    let misfits = typed(url, "entity_learner", "l2", &fields).await;
    assert!(misfits.iter().all(|(_, v)| v.is_none()), "values that do not fit read as NULL: {misfits:?}");
    let rest = texts(
        url,
        &if pg {
            "SELECT extra::text, tags::text, provider, (first_seen_at IS NOT NULL AND synced_at IS NOT NULL)::text, \
             change_seq::text FROM entity_learner WHERE external_id = 'l1'"
                .to_owned()
        } else {
            "SELECT extra, tags, provider, CAST(first_seen_at IS NOT NULL AND synced_at IS NOT NULL AS TEXT), \
             CAST(change_seq AS TEXT) FROM entity_learner WHERE external_id = 'l1'"
                .to_owned()
        },
    )
    .await;
    let json_of = |v: &Option<String>| serde_json::from_str::<Value>(v.as_deref().expect("a value")).expect("JSON");
    assert_eq!(json_of(&rest[0][0]), json!({ "a": [1] }));
    assert_eq!(json_of(&rest[0][1]), json!({ "lms_provider": "Aptem" }), "tags: the data beyond the fields");
    assert_eq!(rest[0][2].as_deref(), Some("aptem"));
    assert_eq!(rest[0][3].as_deref(), Some(if pg { "true" } else { "1" }));
    assert!(rest[0][4].is_some(), "a change sequence: {rest:?}");

    // A deleted record stays in the view with its deletion time.
    let (acme, learner, aptem) =
        (id(TenantId::parse, "acme"), id(EntityName::parse, "learner"), id(ProviderId::parse, "aptem"));
    assert_eq!(store.mark_deleted(&acme, &learner, &aptem, &["l2"], None).await.unwrap(), 1);
    let by_state = texts(
        url,
        "SELECT external_id, CASE WHEN deleted_at IS NULL THEN 'live' ELSE 'deleted' END \
         FROM entity_learner ORDER BY external_id",
    )
    .await;
    let by_state: Vec<(String, String)> =
        by_state.into_iter().map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap())).collect();
    assert_eq!(by_state, [("l1".to_owned(), "live".to_owned()), ("l2".to_owned(), "deleted".to_owned())]);

    // The same entities again: nothing to do.
    let again = store.refresh_views(&entities(ENTITIES)).await.unwrap();
    assert_eq!(again, ViewsRefreshed { unchanged: 2, ..Default::default() });

    // `score` and `note` are gone from entities.toml, `ghost` is new but its name is taken.
    let changed = store.refresh_views(&entities(CHANGED)).await.unwrap();
    assert_eq!(
        (changed.created.clone(), changed.replaced.clone(), changed.dropped.clone(), changed.unchanged),
        (vec![], names(&["entity_learner"]), names(&["entity_note"]), 0)
    );
    assert_eq!(changed.problems.len(), 1, "{changed:?}");
    assert!(changed.problems[0].contains("`entity_ghost` exists and was not made from entities.toml"), "{changed:?}");
    let now: Vec<String> = columns(url, "entity_learner").await.into_iter().map(|(c, _)| c).collect();
    assert!(!now.iter().any(|c| c == "score") && now.iter().any(|c| c == "credits"), "{now:?}");
    assert!(columns(url, "entity_note").await.is_empty(), "the view of a removed entity is dropped");
    assert_eq!(columns(url, "entity_ghost").await.len(), 1, "a view made by hand stays as it was");
    // The removed field's data stays in the record (and shows among the tags).
    let record = store.get_record(&acme, &learner, &aptem, "l1").await.unwrap().expect("the record");
    assert_eq!(record.data["score"], json!(87.5));
    let tags = texts(
        url,
        &format!("SELECT {} FROM entity_learner WHERE external_id = 'l1'", if pg { "tags::text" } else { "tags" }),
    )
    .await;
    assert_eq!(json_of(&tags[0][0]), json!({ "lms_provider": "Aptem", "score": 87.5 }));
}

/// The README's read-only role: it reads the views, not the records table, and keeps
/// reading a view that entities.toml changed.
#[tokio::test]
async fn a_read_only_role_reads_the_views_and_not_the_records() {
    let db = crate::support::postgres_store().await;
    let job = aptem_tenant(&db.store, "acme").await;
    write(&db.store, "acme", job, "learner", &[("l1", json!({ "external_id": "l1", "name": "Ada", "score": 1 }))])
        .await;
    db.store.refresh_views(&entities(ENTITIES)).await.unwrap();
    // Roles belong to the server, not the database: a name of this test's own.
    let role = format!("analyst_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        format!("CREATE ROLE {role} NOLOGIN"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT ON entity_learner TO {role}"),
    ] {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    async fn as_role(conn: &mut PgConnection, role: &str, sql: &str) -> Result<i64, String> {
        sqlx::query(AssertSqlSafe(format!("SET ROLE {role}"))).execute(&mut *conn).await.unwrap();
        let result = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string());
        sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
        result
    }
    let view = "SELECT count(*) FROM entity_learner WHERE tenant_id = 'acme'";
    assert_eq!(as_role(&mut conn, &role, view).await, Ok(1));
    let denied = as_role(&mut conn, &role, "SELECT count(*) FROM records").await.unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    let other = as_role(&mut conn, &role, "SELECT count(*) FROM entity_note").await.unwrap_err();
    assert!(other.contains("permission denied"), "only the granted views: {other}");

    // entities.toml changed the view: it was replaced, and the grant with it.
    let changed = db.store.refresh_views(&entities(CHANGED)).await.unwrap();
    assert_eq!(changed.replaced, names(&["entity_learner"]));
    assert_eq!(as_role(&mut conn, &role, view).await, Ok(1));

    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    db.drop_db().await;
}

/// `tributary views refresh` makes the views of the repository's entities.toml, then
/// finds nothing to do.
#[test]
fn views_refresh_makes_the_views_then_finds_nothing_to_do() {
    let env = Env::new();
    let first = env.ok(&["views", "refresh"]);
    assert!(first.contains("created: entity_channel, entity_company, entity_contact"), "{first}");
    assert!(first.contains("unchanged: 0"), "{first}");
    let second = env.ok(&["views", "refresh", "--json"]);
    let second: Value = serde_json::from_str(&second).expect("JSON");
    assert_eq!(second["created"], json!([]), "{second}");
    assert_eq!(second["unchanged"], 15, "{second}");
}
