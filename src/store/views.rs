//! Typed entity views: one view per target entity of `entities.toml`, `entity_<name>`
//! over `records`, with one typed column per declared field (in declaration order)
//! between the record's identity and its bookkeeping:
//!
//! `tenant_id`, `provider`, `external_id`, the fields…, `first_seen_at`, `synced_at`
//! (`records.last_synced`: when a change of the record's data was last stored),
//! `deleted_at`, `change_seq`, `tags` (the record's data without its declared fields:
//! the preset's tags such as `lms_provider`, and what fields no longer declared left).
//!
//! The key field `external_id` is the record's `external_id` column; a field whose name
//! is one of the record columns above is the column `field_<name>`. A value that does
//! not fit its field's type reads as NULL, never as an error.
//!
//! [`Store::refresh_views`] makes the views follow the entities in one transaction:
//! creates the missing ones, replaces those whose definition changed (drop and create:
//! PostgreSQL's `CREATE OR REPLACE VIEW` cannot drop or reorder columns; the grants on a
//! replaced view are granted again), drops the views of entities no longer declared,
//! and leaves the unchanged ones alone. Only views it made itself are replaced or
//! dropped: a view carries a mark (PostgreSQL: in its comment, with a hash of its
//! definition; SQLite: in its SQL text).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::AssertSqlSafe;

use super::Store;
use super::error::{StoreError, db};
use crate::config::{Entities, Entity, FieldType};

/// A view's name is this, then its entity's name.
pub const VIEW_PREFIX: &str = "entity_";

/// The longest identifier PostgreSQL keeps (longer ones are cut, silently).
const MAX_IDENTIFIER: usize = 63;

/// Marks the views [`Store::refresh_views`] manages.
const MARK: &str = "Generated from entities.toml";

/// Serializes view refreshes of daemons sharing one PostgreSQL database.
const PG_LOCK_KEY: i64 = 0x7472_6962_7669_6577;

/// How long a PostgreSQL refresh waits for a lock (a consumer's long query on a view it
/// replaces, another daemon's refresh) before it gives up, leaving the views as they were.
const PG_LOCK_TIMEOUT: &str = "10s";

/// Record columns before the fields: (view column, `records` column, description).
const HEAD: [(&str, &str, &str); 3] = [
    ("tenant_id", "tenant_id", "The tenant (customer organization) the record belongs to."),
    ("provider", "provider", "The provider the record comes from."),
    ("external_id", "external_id", "The record's id at the provider (the value of the entity's key field)."),
];

/// Record columns after the fields (then `tags`).
const TAIL: [(&str, &str, &str); 4] = [
    ("first_seen_at", "first_seen", "When the record was first stored."),
    ("synced_at", "last_synced", "When a change of the record's data was last stored."),
    ("deleted_at", "deleted_at", "When the record was deleted at the provider; NULL while it exists."),
    ("change_seq", "change_seq", "The record's latest number in its tenant's change feed."),
];

const TAGS: &str = "tags";
const TAGS_DESCRIPTION: &str = "The record's data without its declared fields: the preset's tags \
     (e.g. lms_provider) and the data of fields no longer declared.";

/// What [`Store::refresh_views`] did; views by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ViewsRefreshed {
    pub created: Vec<String>,
    pub replaced: Vec<String>,
    pub dropped: Vec<String>,
    pub unchanged: usize,
    /// Entities without a view, each with the reason (their view, if any, is left as it
    /// was).
    pub problems: Vec<String>,
}

impl ViewsRefreshed {
    /// Whether a view was created, replaced or dropped.
    pub fn changed(&self) -> bool {
        !(self.created.is_empty() && self.replaced.is_empty() && self.dropped.is_empty())
    }
}

/// The view of one entity.
#[derive(Debug, Clone, PartialEq)]
struct EntityView {
    entity: String,
    name: String,
    comment: String,
    columns: Vec<Column>,
    /// Every declared field (what `tags` leaves out).
    declared: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Column {
    name: String,
    source: Source,
    comment: Option<String>,
}

/// Where a view column's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// A column of `records`.
    Record(&'static str),
    /// A declared field of the record's data.
    Field(String, FieldType),
    /// The record's data without the declared fields.
    Tags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// A relation named like a view, as the database holds it.
struct Existing {
    /// A view carrying the mark.
    managed: bool,
    /// What tells whether its definition is the planned one (see [`EntityView::signature`]).
    signature: String,
}

/// What a refresh does to one view.
enum Action<'a> {
    Create(&'a EntityView),
    Replace(&'a EntityView),
    Drop(String),
}

/// The views of `entities`, and the problems of those that cannot have one.
fn plan(entities: &Entities) -> (Vec<EntityView>, Vec<(String, String)>) {
    let mut views = Vec::new();
    let mut problems = Vec::new();
    for entity in entities.iter() {
        match entity_view(entity) {
            Ok(view) => views.push(view),
            Err(reason) => problems.push((entity.name.to_string(), reason)),
        }
    }
    (views, problems)
}

fn entity_view(entity: &Entity) -> Result<EntityView, String> {
    let name = format!("{VIEW_PREFIX}{}", entity.name);
    if name.len() > MAX_IDENTIFIER {
        return Err(format!(
            "entity `{}` has no view: `{name}` is longer than {MAX_IDENTIFIER} characters",
            entity.name
        ));
    }
    let reserved: BTreeSet<&str> = HEAD.iter().chain(TAIL.iter()).map(|(column, ..)| *column).chain([TAGS]).collect();
    let record = |(column, source, description): &(&str, &'static str, &str)| Column {
        name: (*column).to_owned(),
        source: Source::Record(source),
        comment: Some((*description).to_owned()),
    };
    let mut columns: Vec<Column> = HEAD.iter().map(record).collect();
    for field in &entity.fields {
        let field_name = field.name.as_str();
        // The key field is the record's `external_id` column.
        if field_name == "external_id" && field.name == entity.key {
            continue;
        }
        let column = if reserved.contains(field_name) { format!("field_{field_name}") } else { field_name.to_owned() };
        columns.push(Column {
            name: column,
            source: Source::Field(field_name.to_owned(), field.kind),
            comment: field.description.clone(),
        });
    }
    columns.extend(TAIL.iter().map(record));
    columns.push(Column { name: TAGS.to_owned(), source: Source::Tags, comment: Some(TAGS_DESCRIPTION.to_owned()) });
    let mut seen = BTreeSet::new();
    for column in &columns {
        if column.name.len() > MAX_IDENTIFIER {
            return Err(format!(
                "entity `{}` has no view: column `{}` is longer than {MAX_IDENTIFIER} characters",
                entity.name, column.name
            ));
        }
        if !seen.insert(column.name.as_str()) {
            return Err(format!("entity `{}` has no view: two columns would be named `{}`", entity.name, column.name));
        }
    }
    let comment = match &entity.description {
        Some(d) => format!("{}: {d}", entity.title),
        None => entity.title.clone(),
    };
    Ok(EntityView {
        entity: entity.name.to_string(),
        name,
        comment,
        columns,
        declared: entity.fields.iter().map(|f| f.name.to_string()).collect(),
    })
}

impl EntityView {
    /// The statements that create the view (PostgreSQL: and its comments).
    fn create(&self, dialect: Dialect) -> Vec<String> {
        match dialect {
            Dialect::Sqlite => vec![self.select(dialect, &format!("/* {MARK} */ "))],
            Dialect::Postgres => {
                let mut out = vec![self.select(dialect, "")];
                let view = ident(&self.name);
                out.push(format!("COMMENT ON VIEW {view} IS {}", pg_literal(&self.pg_comment())));
                for column in &self.columns {
                    if let Some(comment) = &column.comment {
                        out.push(format!(
                            "COMMENT ON COLUMN {view}.{} IS {}",
                            ident(&column.name),
                            pg_literal(comment)
                        ));
                    }
                }
                out
            }
        }
    }

    /// `CREATE VIEW … AS SELECT`, with `note` (a comment) after `SELECT`.
    fn select(&self, dialect: Dialect, note: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let expr = match &c.source {
                    Source::Record(column) => format!("r.{column}"),
                    Source::Field(field, kind) => field_expr(dialect, field, *kind),
                    Source::Tags => self.tags_expr(dialect),
                };
                format!("{expr} AS {}", ident(&c.name))
            })
            .collect();
        format!(
            "CREATE VIEW {} AS SELECT {note}{} FROM records AS r WHERE r.entity = {}",
            ident(&self.name),
            columns.join(", "),
            sql_literal(&self.entity)
        )
    }

    fn tags_expr(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Sqlite => {
                let paths: Vec<String> = self.declared.iter().map(|f| sql_literal(&format!("$.{f}"))).collect();
                format!("CAST(json_remove(r.data, {}) AS TEXT)", paths.join(", "))
            }
            Dialect::Postgres => {
                let names: Vec<String> = self.declared.iter().map(|f| sql_literal(f)).collect();
                format!("r.data - ARRAY[{}]::text[]", names.join(", "))
            }
        }
    }

    /// The view's comment on PostgreSQL: the entity's title and description, the mark,
    /// and a hash of everything else the view is made of.
    fn pg_comment(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.select(Dialect::Postgres, "").as_bytes());
        for column in &self.columns {
            hasher.update([0]);
            hasher.update(column.name.as_bytes());
            hasher.update([0]);
            hasher.update(column.comment.as_deref().unwrap_or("").as_bytes());
        }
        let hash = hex::encode(&hasher.finalize()[..8]);
        format!("{}\n{MARK} (definition {hash}).", self.comment)
    }

    /// What the database keeps of the view that changes with its definition: its SQL on
    /// SQLite, its comment on PostgreSQL.
    fn signature(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Sqlite => self.select(dialect, &format!("/* {MARK} */ ")),
            Dialect::Postgres => self.pg_comment(),
        }
    }
}

/// The typed value of `field` of `r.data`; NULL when absent or not of the type.
fn field_expr(dialect: Dialect, field: &str, kind: FieldType) -> String {
    match dialect {
        Dialect::Sqlite => {
            let path = sql_literal(&format!("$.{field}"));
            let value = format!("json_extract(r.data, {path})");
            let of_type = |types: &str, affinity: &str| {
                format!("CAST(CASE WHEN json_type(r.data, {path}) IN ({types}) THEN {value} END AS {affinity})")
            };
            // A date or date-time that names no real day reads as NULL, as on PostgreSQL.
            let text_when = |test: String| {
                format!("CAST(CASE WHEN json_type(r.data, {path}) = 'text' AND {test} THEN {value} END AS TEXT)")
            };
            let day = format!("date(substr({value}, 1, 10)) = substr({value}, 1, 10)");
            match kind {
                FieldType::String | FieldType::Email => format!("CAST({value} AS TEXT)"),
                FieldType::Date => text_when(format!("length({value}) = 10 AND {day}")),
                FieldType::Datetime => text_when(format!(
                    "substr({value}, 11, 1) IN ('T', 't', ' ') AND {day} AND julianday({value}) IS NOT NULL"
                )),
                FieldType::Integer => of_type("'integer'", "INTEGER"),
                FieldType::Number => of_type("'integer', 'real'", "REAL"),
                FieldType::Boolean => of_type("'true', 'false'", "INTEGER"),
                FieldType::Json => format!("CAST(r.data -> {path} AS TEXT)"),
            }
        }
        Dialect::Postgres => {
            let key = sql_literal(field);
            let json = format!("(r.data -> {key})");
            let text = format!("(r.data ->> {key})");
            // CASE, not AND: PostgreSQL may evaluate the operands of AND in any order.
            let when_number = |then: String| format!("CASE WHEN jsonb_typeof({json}) = 'number' THEN {then} END");
            match kind {
                FieldType::String | FieldType::Email => text,
                FieldType::Integer => {
                    let n = format!("{json}::numeric");
                    when_number(format!(
                        "CASE WHEN {n} % 1 = 0 AND {n} BETWEEN {} AND {} THEN {n}::bigint END",
                        i64::MIN,
                        i64::MAX
                    ))
                }
                FieldType::Number => when_number(format!("{json}::numeric")),
                FieldType::Boolean => format!("CASE WHEN jsonb_typeof({json}) = 'boolean' THEN {json}::boolean END"),
                FieldType::Date => {
                    let when = format!("{text} ~ '^{DATE}$' AND left({text}, 4) <> '0000'");
                    format!("CASE WHEN {when} THEN CASE WHEN {} THEN {text}::date END END", real_day(&text))
                }
                FieldType::Datetime => {
                    let when = format!("{text} ~ '^{DATE}[Tt ]{TIME}$' AND left({text}, 4) <> '0000'");
                    format!("CASE WHEN {when} THEN CASE WHEN {} THEN {text}::timestamptz END END", real_day(&text))
                }
                FieldType::Json => json,
            }
        }
    }
}

/// `YYYY-MM-DD` with a month and a day of month that exist in some month (PostgreSQL
/// regular expression).
const DATE: &str = "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])";

/// `HH:MM:SS[.fff]` and an offset (`Z` or `±HH:MM`), as RFC 3339 writes them.
const TIME: &str = "([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)([.][0-9]+)?([Zz]|[+-](0[0-9]|1[0-5]):[0-5][0-9])";

/// Whether the day of `text`, which matches [`DATE`] (year not 0), exists in its month:
/// counted from the month's first day, it lands on the same date. Never an error.
fn real_day(text: &str) -> String {
    format!(
        "to_char((left({text}, 8) || '01')::date + (substr({text}, 9, 2)::int - 1), 'YYYY-MM-DD') = left({text}, 10)"
    )
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal, quoted for both dialects (PostgreSQL with standard-conforming
/// strings; use [`pg_literal`] for free text there).
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A PostgreSQL string literal that means the same whatever `standard_conforming_strings`
/// says.
fn pg_literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// What to do, given the relations named like views that exist; fills in `out`'s
/// unchanged count and problems.
fn decide<'a>(
    views: &'a [EntityView],
    problems: Vec<(String, String)>,
    existing: &BTreeMap<String, Existing>,
    dialect: Dialect,
    out: &mut ViewsRefreshed,
) -> Vec<Action<'a>> {
    let mut actions = Vec::new();
    // Entities whose view cannot be made keep the one they have.
    let mut keep: BTreeSet<String> = problems.iter().map(|(e, _)| format!("{VIEW_PREFIX}{e}")).collect();
    out.problems = problems.into_iter().map(|(_, reason)| reason).collect();
    for view in views {
        keep.insert(view.name.clone());
        match existing.get(&view.name) {
            None => actions.push(Action::Create(view)),
            Some(e) if !e.managed => out.problems.push(format!(
                "entity `{}` has no view: `{}` exists and was not made from entities.toml (drop or rename it)",
                view.entity, view.name
            )),
            Some(e) if e.signature == view.signature(dialect) => out.unchanged += 1,
            Some(_) => actions.push(Action::Replace(view)),
        }
    }
    for (name, e) in existing {
        if e.managed && !keep.contains(name) {
            actions.push(Action::Drop(name.clone()));
        }
    }
    actions
}

impl Store {
    // --- entity views --------------------------------------------------------------------

    /// Makes the entity views (`entity_<name>`) follow `entities`, in one transaction:
    /// missing views are created, changed ones replaced (keeping their grants on
    /// PostgreSQL), those of entities no longer declared dropped. Views not made here
    /// are never touched. An entity that cannot have a view (its name or a column name
    /// too long, two columns of one name, a relation of the view's name not made here)
    /// is a problem in the answer, and the others are refreshed.
    ///
    /// On PostgreSQL refreshes of several daemons take turns; one that waits more than
    /// 10 s for a lock (e.g. a long query on a view it replaces) fails, changing nothing.
    pub async fn refresh_views(&self, entities: &Entities) -> Result<ViewsRefreshed, StoreError> {
        let (views, problems) = plan(entities);
        let mut out = ViewsRefreshed::default();
        match self {
            Store::Sqlite(s) => {
                let (mut tx, _) = s.begin_write().await?;
                let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
                    "SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'view') AND substr(name, 1, length($1)) = $1",
                )
                .bind(VIEW_PREFIX)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("reading the entity views"))?;
                let existing = rows
                    .into_iter()
                    .map(|(kind, name, sql)| {
                        let signature = sql.unwrap_or_default();
                        (name, Existing { managed: kind == "view" && signature.contains(MARK), signature })
                    })
                    .collect();
                for action in decide(&views, problems, &existing, Dialect::Sqlite, &mut out) {
                    let (drop, create) = match action {
                        Action::Create(v) => (None, Some(v)),
                        Action::Replace(v) => (Some(v.name.clone()), Some(v)),
                        Action::Drop(name) => (Some(name), None),
                    };
                    if let Some(name) = &drop {
                        sqlx::query(AssertSqlSafe(format!("DROP VIEW {}", ident(name))))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("dropping an entity view"))?;
                    }
                    if let Some(view) = create {
                        for statement in view.create(Dialect::Sqlite) {
                            sqlx::query(AssertSqlSafe(statement))
                                .execute(&mut *tx)
                                .await
                                .map_err(db("creating an entity view"))?;
                        }
                    }
                    record(&mut out, drop, create);
                }
                tx.commit().await.map_err(db("committing the entity views"))?;
            }
            Store::Postgres(s) => {
                let mut tx = s.pool.begin().await.map_err(db("starting a transaction"))?;
                sqlx::query(AssertSqlSafe(format!("SET LOCAL lock_timeout = '{PG_LOCK_TIMEOUT}'")))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("setting the lock timeout"))?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_LOCK_KEY)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("waiting for another refresh of the entity views"))?;
                let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
                    "SELECT c.relname::text, c.relkind::text, obj_description(c.oid, 'pg_class') \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = current_schema() AND left(c.relname, length($1)) = $1",
                )
                .bind(VIEW_PREFIX)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("reading the entity views"))?;
                let existing = rows
                    .into_iter()
                    .map(|(name, kind, comment)| {
                        let signature = comment.unwrap_or_default();
                        (name, Existing { managed: kind == "v" && signature.contains(MARK), signature })
                    })
                    .collect();
                for action in decide(&views, problems, &existing, Dialect::Postgres, &mut out) {
                    let (drop, create) = match action {
                        Action::Create(v) => (None, Some(v)),
                        Action::Replace(v) => (Some(v.name.clone()), Some(v)),
                        Action::Drop(name) => (Some(name), None),
                    };
                    let mut grants = Vec::new();
                    if let Some(name) = &drop {
                        if create.is_some() {
                            grants = sqlx::query_as::<_, (String, String, bool)>(
                                "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                                 ELSE quote_ident(g.rolname) END, a.is_grantable \
                                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                                 CROSS JOIN LATERAL aclexplode(c.relacl) a \
                                 LEFT JOIN pg_roles g ON g.oid = a.grantee \
                                 WHERE n.nspname = current_schema() AND c.relname = $1 \
                                 AND a.grantee <> c.relowner",
                            )
                            .bind(name)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(db("reading the grants on an entity view"))?;
                        }
                        sqlx::query(AssertSqlSafe(format!("DROP VIEW {}", ident(name))))
                            .execute(&mut *tx)
                            .await
                            .map_err(db("dropping an entity view"))?;
                    }
                    if let Some(view) = create {
                        for statement in view.create(Dialect::Postgres) {
                            sqlx::query(AssertSqlSafe(statement))
                                .execute(&mut *tx)
                                .await
                                .map_err(db("creating an entity view"))?;
                        }
                        for (privilege, grantee, grantable) in &grants {
                            let option = if *grantable { " WITH GRANT OPTION" } else { "" };
                            let grant = format!("GRANT {privilege} ON {} TO {grantee}{option}", ident(&view.name));
                            sqlx::query(AssertSqlSafe(grant))
                                .execute(&mut *tx)
                                .await
                                .map_err(db("granting again on a replaced entity view"))?;
                        }
                    }
                    record(&mut out, drop, create);
                }
                tx.commit().await.map_err(db("committing the entity views"))?;
            }
        }
        Ok(out)
    }
}

/// Counts one action in `out`.
fn record(out: &mut ViewsRefreshed, dropped: Option<String>, created: Option<&EntityView>) {
    match (dropped, created) {
        (Some(_), Some(view)) => out.replaced.push(view.name.clone()),
        (None, Some(view)) => out.created.push(view.name.clone()),
        (Some(name), None) => out.dropped.push(name),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Diagnostics, Source as ConfigSource};

    fn entities(toml: &str) -> Entities {
        let mut diag = Diagnostics::default();
        let out = Entities::load(&ConfigSource::builtin("entities.toml", toml), &mut diag);
        assert!(diag.is_empty(), "{diag}");
        out
    }

    fn columns(view: &EntityView) -> Vec<&str> {
        view.columns.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn fields_sit_between_identity_and_bookkeeping_and_never_clash() {
        let (views, problems) = plan(&entities(
            "[entities.deal]\ntitle = \"Deal\"\n[entities.deal.fields]\n\
             external_id = { type = \"string\", required = true }\n\
             amount = { type = \"number\" }\nupdated_at = { type = \"datetime\" }\n\
             synced_at = { type = \"datetime\" }\ntags = { type = \"json\" }\n",
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            columns(&views[0]),
            [
                "tenant_id",
                "provider",
                "external_id",
                "amount",
                "updated_at",
                "field_synced_at",
                "field_tags",
                "first_seen_at",
                "synced_at",
                "deleted_at",
                "change_seq",
                "tags"
            ]
        );
    }

    #[test]
    fn a_key_other_than_external_id_keeps_its_column() {
        let (views, _) = plan(&entities(
            "[entities.employer]\ntitle = \"Employer\"\nkey = \"crm_id\"\n[entities.employer.fields]\n\
             crm_id = { type = \"string\", required = true }\nexternal_id = { type = \"string\" }\n",
        ));
        assert_eq!(&columns(&views[0])[..5], ["tenant_id", "provider", "external_id", "crm_id", "field_external_id"]);
    }

    #[test]
    fn names_too_long_or_clashing_are_problems_not_views() {
        let long = "e".repeat(57);
        let (views, problems) = plan(&entities(&format!(
            "[entities.{long}]\ntitle = \"Long\"\n[entities.{long}.fields]\nexternal_id = {{ type = \"string\", required = true }}\n\
             [entities.odd]\ntitle = \"Odd\"\n[entities.odd.fields]\nexternal_id = {{ type = \"string\", required = true }}\n\
             tags = {{ type = \"json\" }}\nfield_tags = {{ type = \"string\" }}\n"
        )));
        assert!(views.is_empty(), "{views:?}");
        let text = problems.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>().join("\n");
        assert!(text.contains("longer than 63 characters"), "{text}");
        assert!(text.contains("two columns would be named `field_tags`"), "{text}");
    }

    #[test]
    fn a_changed_description_changes_the_postgres_signature_only() {
        let make = |description: &str| {
            plan(&entities(&format!(
                "[entities.user]\ntitle = \"User\"\n[entities.user.fields]\n\
                 external_id = {{ type = \"string\", required = true }}\n\
                 name = {{ type = \"string\", description = \"{description}\" }}\n"
            )))
            .0
            .remove(0)
        };
        let (a, b) = (make("Full name."), make("Display name."));
        assert_ne!(a.signature(Dialect::Postgres), b.signature(Dialect::Postgres));
        assert_eq!(a.signature(Dialect::Sqlite), b.signature(Dialect::Sqlite));
        assert!(a.signature(Dialect::Postgres).contains(MARK) && a.signature(Dialect::Sqlite).contains(MARK));
    }

    #[test]
    fn free_text_is_quoted_for_postgres() {
        assert_eq!(pg_literal(r"it's a \d"), r"E'it''s a \\d'");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }
}
