//! The SQLite and PostgreSQL migration trees stay in lockstep: the same version numbers
//! with the same names, and after migrating, the same tables with the same columns
//! (names and nullability; the types are each dialect's own). A migration written for
//! one backend alone fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sqlx::{Connection, PgConnection, Row, SqliteConnection};

use crate::support::{postgres_store, sqlite_store, sqlite_url};

/// Tables of the migration tool itself, not of the schema.
const TOOL_TABLES: &[&str] = &["_sqlx_migrations"];

/// `version_name` of every `.sql` file in a migrations folder.
fn migration_files(dir: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect()
}

#[test]
fn both_backends_have_the_same_migration_files() {
    let sqlite = migration_files("migrations/sqlite");
    let postgres = migration_files("migrations/postgres");
    assert!(!sqlite.is_empty(), "no SQLite migrations found");
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "migrations must come in pairs with the same version and name: only in migrations/sqlite: \
         {only_sqlite:?}; only in migrations/postgres: {only_postgres:?}"
    );
}

/// Table → column → nullable.
type Catalog = BTreeMap<String, BTreeMap<String, bool>>;

async fn sqlite_catalog(url: &str) -> Catalog {
    let mut conn = SqliteConnection::connect(url).await.expect("open the migrated SQLite file");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            .fetch_all(&mut conn)
            .await
            .expect("list SQLite tables");
    let mut catalog = Catalog::new();
    for table in tables.into_iter().filter(|t| !TOOL_TABLES.contains(&t.as_str())) {
        let rows = sqlx::query("SELECT name, \"notnull\", pk FROM pragma_table_info(?)")
            .bind(&table)
            .fetch_all(&mut conn)
            .await
            .expect("read SQLite columns");
        let columns = rows
            .iter()
            .map(|r| {
                let not_null: i64 = r.get(1);
                let pk: i64 = r.get(2);
                // A PRIMARY KEY column is NOT NULL in PostgreSQL whether or not it says so.
                (r.get::<String, _>(0), not_null == 0 && pk == 0)
            })
            .collect();
        catalog.insert(table, columns);
    }
    conn.close().await.expect("close");
    catalog
}

async fn postgres_catalog(url: &str) -> Catalog {
    let mut conn = PgConnection::connect(url).await.expect("open the migrated PostgreSQL database");
    let rows = sqlx::query(
        "SELECT c.table_name::text, c.column_name::text, c.is_nullable = 'YES' \
         FROM information_schema.columns c JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read PostgreSQL columns");
    let mut catalog = Catalog::new();
    for r in rows {
        let table: String = r.get(0);
        if TOOL_TABLES.contains(&table.as_str()) {
            continue;
        }
        catalog.entry(table).or_default().insert(r.get(1), r.get(2));
    }
    conn.close().await.expect("close");
    catalog
}

#[tokio::test]
async fn both_backends_migrate_to_the_same_tables_and_columns() {
    let (store, _dir) = sqlite_store().await;
    let sqlite = sqlite_catalog(&sqlite_url(&store)).await;
    store.close().await;
    let db = postgres_store().await;
    let postgres = postgres_catalog(&db.url).await;
    db.drop_db().await;

    assert!(sqlite.contains_key("records") && sqlite.contains_key("runs"), "the catalog was read: {sqlite:?}");
    let tables = |c: &Catalog| c.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(tables(&sqlite), tables(&postgres), "tables differ between SQLite and PostgreSQL");
    let mut differences = Vec::new();
    for (table, columns) in &sqlite {
        let other = &postgres[table];
        for (column, nullable) in columns {
            match other.get(column) {
                None => differences.push(format!("{table}.{column}: only in SQLite")),
                Some(n) if n != nullable => differences.push(format!(
                    "{table}.{column}: {} in SQLite, {} in PostgreSQL",
                    if *nullable { "nullable" } else { "NOT NULL" },
                    if *n { "nullable" } else { "NOT NULL" }
                )),
                Some(_) => {}
            }
        }
        for column in other.keys().filter(|c| !columns.contains_key(*c)) {
            differences.push(format!("{table}.{column}: only in PostgreSQL"));
        }
    }
    assert!(differences.is_empty(), "the migrated schemas differ:\n{}", differences.join("\n"));
}

/// Records stored before the change feed existed are numbered by its migration, per
/// tenant in the order they were last written, so the feed starts complete.
#[tokio::test]
async fn the_change_feed_migration_numbers_existing_records() {
    use tributary::model::{ChangeKind, EntityName, TenantId};
    let dir = tempfile::tempdir().unwrap();
    // The migrations before the feed, applied to a fresh file.
    let before = dir.path().join("before");
    std::fs::create_dir(&before).unwrap();
    for name in migration_files("migrations/sqlite").into_iter().filter(|n| n.as_str() < "0008") {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite").join(&name);
        std::fs::copy(from, before.join(&name)).unwrap();
    }
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path()).await.unwrap().run(&mut conn).await.unwrap();
    for tenant in ["acme", "globex"] {
        sqlx::query(
            "INSERT INTO tenants (id, name, subdomain, timezone, preset, preset_revision, preset_snapshot, \
             created_at, updated_at) VALUES ($1, $1, $1, 'UTC', 'aptem', 'r1', '{}', \
             '2026-11-21T09:00:00Z', '2026-11-21T09:00:00Z')",
        )
        .bind(tenant)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    for (tenant, id, synced, deleted) in [
        ("acme", "c2", "2026-11-21T09:01:00.000000Z", None),
        ("acme", "c1", "2026-11-21T09:03:00.000000Z", None),
        ("acme", "c3", "2026-11-21T09:02:00.000000Z", Some("2026-11-21T09:04:00.000000Z")),
        ("globex", "g1", "2026-11-21T09:05:00.000000Z", None),
    ] {
        sqlx::query(
            "INSERT INTO records (tenant_id, entity, provider, external_id, data, content_hash, first_seen, \
             last_synced, deleted_at) VALUES ($1, 'contact', 'hubspot', $2, '{}', 'h', $3, $3, $4)",
        )
        .bind(tenant)
        .bind(id)
        .bind(synced)
        .bind(deleted)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    // Opening the store applies the feed's migration to the stored records.
    let store = tributary::store::Store::connect(&url).await.unwrap();
    let feed = |tenant: &'static str| {
        let store = store.clone();
        async move {
            let tenant = TenantId::parse(tenant).unwrap();
            let rows = store.list_changes(&tenant, None, 0, 100).await.unwrap();
            rows.into_iter().map(|c| (c.seq, c.external_id, c.kind, c.run_id)).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        feed("acme").await,
        [
            (1, "c2".to_owned(), ChangeKind::Inserted, None),
            (2, "c3".to_owned(), ChangeKind::Deleted, None),
            (3, "c1".to_owned(), ChangeKind::Inserted, None),
        ]
    );
    assert_eq!(feed("globex").await, [(1, "g1".to_owned(), ChangeKind::Inserted, None)]);
    // The counter continues after them: a deletion takes acme's next number.
    let acme = TenantId::parse("acme").unwrap();
    let (contact, hubspot) =
        (EntityName::parse("contact").unwrap(), tributary::model::ProviderId::parse("hubspot").unwrap());
    assert_eq!(store.mark_deleted(&acme, &contact, &hubspot, &["c1"], None).await.unwrap(), 1);
    assert_eq!(feed("acme").await.last().map(|c| (c.0, c.2)), Some((4, ChangeKind::Deleted)));
    store.close().await;
}
