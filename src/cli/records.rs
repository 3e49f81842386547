//! `records list|changes|export`: what was stored, for people and for consumers.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::output::outln;
use super::progress::CountBar;
use super::{Global, output};
use crate::config::{Catalog, Entity};
use crate::model::{EntityName, RecordRow, TenantId};
use crate::store::{RecordFilter, RecordKey, Store};

#[derive(Debug, Subcommand)]
pub enum RecordsCmd {
    /// Stored records of one entity, by provider then external id. Page with the
    /// `--after` cursor each page prints; `--json` for one document, `--jsonl` for one
    /// record per line.
    List {
        #[command(flatten)]
        select: Select,
        /// Only these fields of the entity, in this order (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "FIELD,...")]
        fields: Vec<String>,
        /// The next page: the cursor the previous page printed.
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// JSON lines: one record per line (the next page's cursor goes to stderr).
        #[arg(long)]
        jsonl: bool,
    },
    /// The tenant's change feed: records inserted, updated or deleted after a sequence
    /// number, in order. Page with the next `--since` it prints.
    Changes {
        #[arg(long)]
        tenant: String,
        /// Changes of this entity only.
        #[arg(long)]
        entity: Option<String>,
        /// Changes after this sequence number (0: from the start).
        #[arg(long, default_value_t = 0)]
        since: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Every stored record of one entity to stdout, as CSV or JSON lines, streamed from
    /// the store: the record's columns, then the entity's fields in `entities.toml` order.
    Export {
        #[command(flatten)]
        select: Select,
        #[arg(long, value_enum)]
        format: ExportFormat,
    },
}

/// Which records `list` and `export` read.
#[derive(Debug, clap::Args)]
pub struct Select {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    entity: String,
    /// Only records synced (stored or changed) at or after this time: RFC 3339
    /// (`2026-12-01T08:00:00Z`) or a date (`2026-12-01`, midnight UTC).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Records deleted at the provider too (left out by default).
    #[arg(long)]
    include_deleted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// RFC 4180: a header line, CRLF line ends, fields quoted when they need it.
    Csv,
    /// One JSON object per line, values typed.
    Jsonl,
}

pub async fn records(g: &Global, cmd: RecordsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        RecordsCmd::List { select, fields, after, limit, jsonl } => list(g, select, &fields, after, limit, jsonl).await,
        RecordsCmd::Changes { tenant, entity, since, limit } => {
            changes(g, &tenant, entity.as_deref(), since, limit).await
        }
        RecordsCmd::Export { select, format } => export(g, select, format).await,
    }
}

/// The entity `select` names and the filter it stands for; every argument checked
/// before the store is opened (except the tenant's existence: see [`open`]).
fn resolve<'c>(catalog: &'c Catalog, select: &Select) -> anyhow::Result<(&'c Entity, RecordFilter)> {
    let entity = catalog
        .entities
        .get(&select.entity)
        .ok_or_else(|| anyhow::anyhow!("unknown entity `{}` (known: {})", select.entity, catalog.entities.names()))?;
    let filter = RecordFilter {
        tenant: TenantId::parse(&select.tenant)?,
        entity: EntityName::parse(&select.entity)?,
        since: select.since.as_deref().map(parse_since).transpose()?,
        after: None,
        include_deleted: select.include_deleted,
    };
    Ok((entity, filter))
}

/// Opens the store and checks that the filter's tenant exists.
async fn open(g: &Global, catalog: &Catalog, filter: &RecordFilter) -> anyhow::Result<Store> {
    let store = g.store_existing(catalog).await?;
    if store.get_tenant(&filter.tenant).await?.is_none() {
        store.close().await;
        anyhow::bail!("tenant `{}` not found", filter.tenant);
    }
    Ok(store)
}

/// `--since`: an RFC 3339 time, or a date meaning its midnight in UTC.
fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`--since {text}` is neither an RFC 3339 time (2026-12-01T08:00:00Z) nor a date (2026-12-01)"
            )
        })
}

/// `--fields`: each one a field of `entity`.
fn check_fields(entity: &Entity, fields: &[String]) -> anyhow::Result<()> {
    for field in fields {
        if entity.field(field).is_none() {
            let known: Vec<&str> = entity.fields.iter().map(|f| f.name.as_str()).collect();
            anyhow::bail!("unknown field `{field}` of entity `{}` (fields: {})", entity.name, known.join(", "));
        }
    }
    Ok(())
}

/// `data` with only `fields`, in that order (null where the record has none).
fn project(data: &Value, fields: &[String]) -> Value {
    Value::Object(fields.iter().map(|f| (f.clone(), data.get(f).cloned().unwrap_or(Value::Null))).collect())
}

async fn list(
    g: &Global,
    select: Select,
    fields: &[String],
    after: Option<String>,
    limit: i64,
    jsonl: bool,
) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let (entity, mut filter) = resolve(&catalog, &select)?;
    check_fields(entity, fields)?;
    if g.json && jsonl {
        anyhow::bail!("--json and --jsonl are two outputs: choose one");
    }
    if limit < 1 {
        anyhow::bail!("--limit must be at least 1");
    }
    filter.after = after
        .map(|c| {
            RecordKey::from_cursor(&c)
                .ok_or_else(|| anyhow::anyhow!("`--after {c}` is not a cursor `records list` printed"))
        })
        .transpose()?;
    let store = open(g, &catalog, &filter).await?;
    // One more than the page: whether there is a next page.
    let mut rows = store.read_records(&filter, limit.saturating_add(1)).await?;
    let total = store.count_selected_records(&filter).await?;
    store.close().await;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = rows.last().filter(|_| more).map(|r| RecordKey::of(r).to_cursor());
    if !fields.is_empty() {
        for row in &mut rows {
            row.data = project(&row.data, fields);
        }
    }
    if jsonl {
        for row in &rows {
            outln!("{}", serde_json::to_string(row)?);
        }
        if let Some(next) = &next {
            eprintln!("next: --after {next}");
        }
    } else if g.json {
        output::json(&json!({ "total": total, "records": rows, "next_after": next }))?;
    } else {
        let mut headers = vec!["PROVIDER", "EXTERNAL ID", "LAST SYNCED"];
        if filter.include_deleted {
            headers.push("DELETED");
        }
        let upper: Vec<String> = fields.iter().map(|f| f.to_uppercase()).collect();
        match fields {
            [] => headers.push("DATA"),
            _ => headers.extend(upper.iter().map(String::as_str)),
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut cells = vec![
                    r.provider.to_string(),
                    r.external_id.clone(),
                    r.last_synced.format("%Y-%m-%d %H:%M:%S").to_string(),
                ];
                if filter.include_deleted {
                    cells.push(r.deleted_at.map_or("-".into(), |d| d.format("%Y-%m-%d %H:%M:%S").to_string()));
                }
                match fields {
                    [] => cells.push(r.data.to_string().chars().take(100).collect()),
                    _ => cells.extend(fields.iter().map(|f| match r.data.get(f) {
                        None | Some(Value::Null) => "-".to_owned(),
                        Some(v) => output::compact(v).chars().take(60).collect(),
                    })),
                }
                cells
            })
            .collect();
        output::table(&headers, &table);
        let entity = &filter.entity;
        match &next {
            Some(next) => outln!("{} of {total} {entity} records; next: --after {next}", rows.len()),
            None => outln!("{} of {total} {entity} records", rows.len()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn changes(g: &Global, tenant: &str, entity: Option<&str>, since: i64, limit: i64) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    if let Some(entity) = entity
        && catalog.entities.get(entity).is_none()
    {
        anyhow::bail!("unknown entity `{entity}` (known: {})", catalog.entities.names());
    }
    if since < 0 {
        anyhow::bail!("--since must be 0 or a sequence number the feed printed");
    }
    let store = g.store_existing(&catalog).await?;
    let tenant = TenantId::parse(tenant)?;
    let entity = entity.map(EntityName::parse).transpose()?;
    let rows = store.list_changes(&tenant, entity.as_ref(), since, limit).await?;
    let next = rows.last().map_or(since, |c| c.seq);
    if g.json {
        output::json(&json!({ "changes": rows, "next_since": next }))?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|c| {
                vec![
                    c.seq.to_string(),
                    c.entity.to_string(),
                    c.provider.to_string(),
                    c.external_id.clone(),
                    c.kind.to_string(),
                    c.run_id.map_or("-".into(), |r| r.to_string()),
                    c.changed_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]
            })
            .collect();
        output::table(&["SEQ", "ENTITY", "PROVIDER", "EXTERNAL ID", "KIND", "RUN", "CHANGED"], &table);
        if rows.is_empty() {
            outln!("no changes after {since}");
        } else {
            outln!("{} changes; next: --since {next}", rows.len());
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn export(g: &Global, select: Select, format: ExportFormat) -> anyhow::Result<ExitCode> {
    let catalog = g.catalog()?;
    let (entity, filter) = resolve(&catalog, &select)?;
    let columns = Columns::of(entity);
    let store = open(g, &catalog, &filter).await?;
    // A bar only where someone watches it and it cannot mix with the records: stderr a
    // terminal, stdout not (redirected to a file or a pipe).
    let watched =
        std::io::IsTerminal::is_terminal(&std::io::stderr()) && !std::io::IsTerminal::is_terminal(&std::io::stdout());
    let bar = match watched {
        true => {
            let total = store.count_selected_records(&filter).await?;
            Some(CountBar::start(&format!("{} {}", filter.tenant, filter.entity), u64::try_from(total).unwrap_or(0)))
        }
        false => None,
    };
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout());
    let written = async {
        if format == ExportFormat::Csv {
            columns.csv_header(&mut out)?;
        }
        let mut pending = 0;
        let n = store
            .for_each_record(&filter, |row| -> anyhow::Result<()> {
                match format {
                    ExportFormat::Csv => columns.csv_row(&mut out, &row)?,
                    ExportFormat::Jsonl => columns.jsonl_row(&mut out, &row)?,
                }
                pending += 1;
                if pending == 1_000 {
                    if let Some(bar) = &bar {
                        bar.inc(pending);
                    }
                    pending = 0;
                }
                Ok(())
            })
            .await?;
        out.flush()?;
        anyhow::Ok(n)
    }
    .await;
    drop(bar);
    store.close().await;
    match written {
        Ok(n) => {
            tracing::info!(tenant = %filter.tenant, entity = %filter.entity, "exported {n} records");
            Ok(ExitCode::SUCCESS)
        }
        // A reader that stopped early (`| head`): the export ends quietly.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e).context("exporting records"),
    }
}

/// The columns of an export: the record's own, then the entity's fields.
struct Columns {
    /// `(column, field)` for each field of the entity, in `entities.toml` order.
    fields: Vec<(String, String)>,
}

/// The record's own columns, first in every export.
const RECORD_COLUMNS: [&str; 6] = ["tenant_id", "provider", "external_id", "first_seen_at", "synced_at", "deleted_at"];

impl Columns {
    /// A key field named `external_id` is the record's external id, not repeated; any
    /// other field named like a record column becomes `field_<field>` (as in the entity
    /// views).
    fn of(entity: &Entity) -> Self {
        let fields = entity
            .fields
            .iter()
            .filter(|f| !(f.name == entity.key && f.name.as_str() == "external_id"))
            .map(|f| {
                let name = f.name.as_str();
                let column = if RECORD_COLUMNS.contains(&name) { format!("field_{name}") } else { name.to_owned() };
                (column, name.to_owned())
            })
            .collect();
        Self { fields }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        RECORD_COLUMNS.into_iter().chain(self.fields.iter().map(|(c, _)| c.as_str()))
    }

    fn csv_header(&self, out: &mut impl Write) -> std::io::Result<()> {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            csv_text(out, name)?;
        }
        out.write_all(b"\r\n")
    }

    fn csv_row(&self, out: &mut impl Write, row: &RecordRow) -> std::io::Result<()> {
        csv_text(out, row.tenant_id.as_str())?;
        out.write_all(b",")?;
        csv_text(out, row.provider.as_str())?;
        out.write_all(b",")?;
        csv_text(out, &row.external_id)?;
        out.write_all(b",")?;
        out.write_all(timestamp(row.first_seen).as_bytes())?;
        out.write_all(b",")?;
        out.write_all(timestamp(row.last_synced).as_bytes())?;
        out.write_all(b",")?;
        if let Some(at) = row.deleted_at {
            out.write_all(timestamp(at).as_bytes())?;
        }
        for (_, field) in &self.fields {
            out.write_all(b",")?;
            csv_value(out, row.data.get(field))?;
        }
        out.write_all(b"\r\n")
    }

    fn jsonl_row(&self, out: &mut impl Write, row: &RecordRow) -> std::io::Result<()> {
        let mut object = serde_json::Map::with_capacity(RECORD_COLUMNS.len() + self.fields.len());
        object.insert("tenant_id".into(), row.tenant_id.as_str().into());
        object.insert("provider".into(), row.provider.as_str().into());
        object.insert("external_id".into(), row.external_id.as_str().into());
        object.insert("first_seen_at".into(), timestamp(row.first_seen).into());
        object.insert("synced_at".into(), timestamp(row.last_synced).into());
        object.insert("deleted_at".into(), row.deleted_at.map(timestamp).into());
        for (column, field) in &self.fields {
            object.insert(column.clone(), row.data.get(field).cloned().unwrap_or(Value::Null));
        }
        serde_json::to_writer(&mut *out, &object)?;
        out.write_all(b"\n")
    }
}

/// A stored instant in exports: RFC 3339 in UTC, to the microsecond the store keeps.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One CSV field of a record's value: empty for none (or null), text as it is (an
/// empty text as `""`, so it differs from none), numbers and booleans as JSON writes
/// them, arrays and objects as compact JSON.
fn csv_value(out: &mut impl Write, value: Option<&Value>) -> std::io::Result<()> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() => out.write_all(b"\"\""),
        Some(Value::String(s)) => csv_text(out, s),
        Some(Value::Number(n)) => write!(out, "{n}"),
        Some(Value::Bool(b)) => write!(out, "{b}"),
        Some(v) => csv_text(out, &v.to_string()),
    }
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a double quote, CR or LF,
/// with each double quote doubled; as it is otherwise.
fn csv_text(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    if !text.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        return out.write_all(text.as_bytes());
    }
    out.write_all(b"\"")?;
    for (i, part) in text.split('"').enumerate() {
        if i > 0 {
            out.write_all(b"\"\"")?;
        }
        out.write_all(part.as_bytes())?;
    }
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(value: Option<&Value>) -> String {
        let mut out = Vec::new();
        csv_value(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_fields_are_quoted_when_they_need_it() {
        assert_eq!(csv(Some(&json!("plain text"))), "plain text");
        assert_eq!(csv(Some(&json!("a,b"))), "\"a,b\"");
        assert_eq!(csv(Some(&json!("say \"hi\""))), "\"say \"\"hi\"\"\"");
        assert_eq!(csv(Some(&json!("\""))), "\"\"\"\"");
        assert_eq!(csv(Some(&json!("line 1\nline 2"))), "\"line 1\nline 2\"");
        assert_eq!(csv(Some(&json!("cr\rlf"))), "\"cr\rlf\"");
        assert_eq!(csv(Some(&json!("Zoë 日本 🚀"))), "Zoë 日本 🚀");
        assert_eq!(csv(Some(&json!(""))), "\"\"");
        assert_eq!(csv(None), "");
        assert_eq!(csv(Some(&Value::Null)), "");
        assert_eq!(csv(Some(&json!(42))), "42");
        assert_eq!(csv(Some(&json!(-1.5))), "-1.5");
        assert_eq!(csv(Some(&json!(true))), "true");
        assert_eq!(csv(Some(&json!({"a": [1, "x,y"]}))), "\"{\"\"a\"\":[1,\"\"x,y\"\"]}\"");
    }

    #[test]
    fn fields_named_like_record_columns_are_renamed_and_the_key_is_not_repeated() {
        use crate::config::{FieldDef, FieldType};
        use crate::model::FieldName;
        let field = |name: &str| FieldDef {
            name: FieldName::parse(name).unwrap(),
            kind: FieldType::String,
            required: true,
            description: None,
        };
        let entity = |key: &str| Entity {
            name: EntityName::parse("thing").unwrap(),
            title: "Thing".into(),
            key: FieldName::parse(key).unwrap(),
            description: None,
            fields: vec![field("external_id"), field("name"), field("synced_at"), field("provider")],
        };
        let names = |e: &Entity| Columns::of(e).names().map(str::to_owned).collect::<Vec<_>>().join(",");
        let record = "tenant_id,provider,external_id,first_seen_at,synced_at,deleted_at";
        assert_eq!(names(&entity("external_id")), format!("{record},name,field_synced_at,field_provider"));
        assert_eq!(names(&entity("name")), format!("{record},field_external_id,name,field_synced_at,field_provider"));
    }

    #[test]
    fn since_takes_rfc3339_or_a_date() {
        assert_eq!(parse_since("2026-12-01T08:30:00+01:00").unwrap().to_rfc3339(), "2026-12-01T07:30:00+00:00");
        assert_eq!(parse_since("2026-12-01").unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        let err = parse_since("yesterday").unwrap_err().to_string();
        assert!(err.contains("`--since yesterday`"), "{err}");
    }
}
