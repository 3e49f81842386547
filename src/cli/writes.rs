//! `writes`: write-back — submit a write (the record as JSON on stdin; answered at once
//! with the write's id and state), list, show with its attempts, retry, cancel.
//!
//! `tributary writes …` acts on the store as the operator; `tributary ctl writes …`
//! sends the same command to a running daemon (where a tenant admin may use it for its
//! own tenant). Both run [`Writes::run`](crate::control::writes::Writes::run) and print
//! its answer with [`print`]. Sending the writes to the providers is not built yet: they
//! wait in the outbox as `pending`.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::output::outln;
use super::{Global, output};
use crate::control::protocol::{Command, Scope, WriteCommand, WriteId, WriteList, WriteRetry, WriteSubmit};
use crate::control::writes::{DEFAULT_LIST, MAX_RECORD_BYTES, Writes, check_record};
use crate::store::{WriteDetail, WriteRow, WriteState};

#[derive(Debug, Subcommand)]
pub enum WritesCmd {
    /// Submit a write; the record (a JSON object in the tenant's target schema) is read
    /// from stdin. Prints the write's id and state at once.
    Submit {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        provider: String,
        /// The target entity, as the connector's `[writes.<entity>]` names it.
        #[arg(long)]
        entity: String,
        /// create, update, delete or comment.
        #[arg(long)]
        op: String,
        /// The provider's id of the object (update, delete, comment).
        #[arg(long = "id")]
        id: Option<String>,
        /// The same key at the same tenant returns the existing write instead of a new one.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The provider version the change is based on (checked before writing).
        #[arg(long)]
        base_version: Option<String>,
        /// Write even if the provider's version is newer than the base version.
        #[arg(long)]
        force: bool,
        /// Write through this user's connection (the company's without it).
        #[arg(long)]
        owner: Option<String>,
    },
    /// The latest writes, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// pending, in_flight, succeeded, failed, conflict or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long, default_value_t = DEFAULT_LIST)]
        limit: i64,
    },
    /// One write with its attempts.
    Show { id: String },
    /// Queue a failed or conflicting write again.
    Retry {
        id: String,
        /// Overwrite even if the provider's version is newer than the base version.
        #[arg(long)]
        force: bool,
    },
    /// Cancel a pending write.
    Cancel { id: String },
}

impl WritesCmd {
    /// The command as the control protocol carries it (`submit` reads its record from stdin).
    pub fn command(self) -> anyhow::Result<WriteCommand> {
        Ok(match self {
            Self::Submit { tenant, provider, entity, op, id, idempotency_key, base_version, force, owner } => {
                let record = read_record(std::io::stdin().lock())?;
                WriteCommand::Submit(Box::new(WriteSubmit {
                    tenant,
                    provider,
                    entity,
                    op,
                    id,
                    idempotency_key,
                    base_version,
                    force,
                    owner,
                    record,
                }))
            }
            Self::List { tenant, state, provider, limit } => {
                WriteCommand::List(WriteList { tenant, state, provider, limit: Some(limit) })
            }
            Self::Show { id } => WriteCommand::Show(WriteId { id }),
            Self::Retry { id, force } => WriteCommand::Retry(WriteRetry { id, force }),
            Self::Cancel { id } => WriteCommand::Cancel(WriteId { id }),
        })
    }
}

/// Reads a record: a JSON object of at most [`MAX_RECORD_BYTES`] (one byte past the limit
/// is read, not the whole input, so a huge stdin is refused without being held).
pub fn read_record(input: impl Read) -> anyhow::Result<Value> {
    let mut bytes = Vec::new();
    input.take(MAX_RECORD_BYTES as u64 + 1).read_to_end(&mut bytes).context("cannot read the record from stdin")?;
    if bytes.len() > MAX_RECORD_BYTES {
        anyhow::bail!("the record on stdin is larger than the limit of {MAX_RECORD_BYTES} bytes (1 MiB)");
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        anyhow::bail!("no record on stdin: expected a JSON object in the tenant's target schema");
    }
    let record: Value = serde_json::from_slice(&bytes).context("the record on stdin is not valid JSON")?;
    check_record(&record)?;
    Ok(record)
}

pub async fn run(g: &Global, cmd: WritesCmd) -> anyhow::Result<ExitCode> {
    let command = cmd.command()?;
    let catalog = g.catalog()?;
    let store = g.store(&catalog).await?;
    let result = async {
        let writes = Writes { store: &store, catalog: &catalog, scope: &Scope::Operator };
        let answer = writes.run(&command).await;
        let audited = Command::Writes(command.clone());
        let outcome = answer.as_ref().map_err(ToString::to_string);
        super::audit_command(&store, &audited, None, outcome.as_ref().copied().map_err(String::as_str)).await;
        print(g.json, &command, &answer?)?;
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

/// Prints the answer to `command`: as it is with `--json`, else as lines and tables.
pub fn print(json: bool, command: &WriteCommand, answer: &Value) -> anyhow::Result<()> {
    if json {
        return output::json(answer);
    }
    match command {
        WriteCommand::Submit(_) => {
            let write: WriteRow = serde_json::from_value(answer["write"].clone())?;
            if answer["created"] == Value::Bool(true) {
                outln!("write {} {}", write.id, write.state);
            } else {
                outln!(
                    "write {} {} (already submitted with idempotency key `{}`)",
                    write.id,
                    write.state,
                    write.idempotency_key.as_deref().unwrap_or_default()
                );
            }
        }
        WriteCommand::List(_) => writes_table(&serde_json::from_value::<Vec<WriteRow>>(answer.clone())?),
        WriteCommand::Show(_) => show(&serde_json::from_value(answer.clone())?),
        WriteCommand::Retry(_) | WriteCommand::Cancel(_) => {
            let write: WriteRow = serde_json::from_value(answer.clone())?;
            outln!("write {} {}", write.id, write.state);
        }
    }
    Ok(())
}

fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The object a write addresses: its external id, or the provider's id once a create
/// succeeded, or `(new)`.
fn object(w: &WriteRow) -> String {
    w.external_id.clone().or_else(|| w.result_id.clone()).unwrap_or_else(|| "(new)".into())
}

/// For a conflict, its two versions side by side and what to do about it.
fn conflict(w: &WriteRow) -> Vec<String> {
    if w.state != WriteState::Conflict {
        return Vec::new();
    }
    let base = w.base_version.as_deref().unwrap_or("the stored record's version when it was sent");
    vec![
        "  nothing was overwritten: the provider's object is newer than the write's base".into(),
        format!("  provider's version: {}", w.result_version.as_deref().unwrap_or("-")),
        format!("  write's base:       {base}"),
        format!("  to overwrite it anyway: tributary writes retry {} --force", w.id),
    ]
}

fn writes_table(writes: &[WriteRow]) {
    let rows: Vec<Vec<String>> = writes
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.tenant_id.to_string(),
                w.provider.to_string(),
                w.entity.to_string(),
                w.op.to_string(),
                object(w),
                w.state.to_string(),
                w.attempts.to_string(),
                time(&w.created_at),
                w.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &["ID", "TENANT", "PROVIDER", "ENTITY", "OP", "OBJECT", "STATE", "ATTEMPTS", "CREATED", "ERROR"],
        &rows,
    );
}

fn show(d: &WriteDetail) {
    let w = &d.write;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    outln!("id: {}", w.id);
    outln!("tenant: {}", w.tenant_id);
    outln!("provider: {}", w.provider);
    outln!("owner: {}", w.owner_user.as_ref().map_or_else(|| "(company)".to_owned(), ToString::to_string));
    outln!("entity: {}", w.entity);
    outln!("op: {}", w.op);
    outln!("object: {}", object(w));
    outln!("state: {}", w.state);
    for line in conflict(w) {
        outln!("{line}");
    }
    outln!("idempotency key: {}", opt(&w.idempotency_key));
    outln!("base version: {}", opt(&w.base_version));
    outln!("force: {}", w.force);
    outln!("attempts: {}", w.attempts);
    outln!("next attempt: {}", time(&w.next_attempt_at));
    outln!("result id: {}", opt(&w.result_id));
    outln!("result version: {}", opt(&w.result_version));
    if let Some(e) = &w.error {
        outln!("error: {e} ({})", w.error_class.as_deref().unwrap_or("-"));
    }
    outln!("created: {}", time(&w.created_at));
    if let Some(f) = &w.finished_at {
        outln!("finished: {}", time(f));
    }
    outln!("record: {}", output::compact(&w.payload_json()));
    if d.attempts.is_empty() {
        outln!("no attempts yet");
        return;
    }
    let rows: Vec<Vec<String>> = d
        .attempts
        .iter()
        .map(|a| {
            vec![
                a.attempt.to_string(),
                time(&a.at),
                a.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                format!("{} ms", a.latency_ms),
                a.error.clone().unwrap_or_default(),
                a.provider_message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["ATTEMPT", "AT", "STATUS", "LATENCY", "ERROR", "PROVIDER MESSAGE"], &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_shows_both_versions_and_how_to_force_it() {
        let mut w: WriteRow = serde_json::from_value(serde_json::json!({
            "id": "wr_1", "tenant_id": "acme", "provider": "hubspot", "owner_user": null,
            "entity": "contact", "op": "update", "external_id": "7", "idempotency_key": null,
            "base_version": "v1", "force": false, "payload": {"first_name": "Ada"},
            "state": "conflict", "attempts": 1, "next_attempt_at": "2026-01-01T00:00:00Z",
            "lease_owner": null, "lease_until": null, "result_id": null, "result_version": "v7",
            "error": "newer", "error_class": "conflict", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let lines = conflict(&w);
        assert_eq!(
            lines[1..],
            [
                "  provider's version: v7",
                "  write's base:       v1",
                "  to overwrite it anyway: tributary writes retry wr_1 --force"
            ]
        );
        w.state = WriteState::Failed;
        assert!(conflict(&w).is_empty());
    }

    #[test]
    fn records_on_stdin_are_bounded_json_objects() {
        assert_eq!(read_record(&b" {\"a\": 1}\n"[..]).unwrap(), serde_json::json!({"a": 1}));
        for (input, needle) in [
            (&b""[..], "no record on stdin"),
            (&b"  \n"[..], "no record on stdin"),
            (&b"{\"a\":"[..], "not valid JSON"),
            (&b"[1, 2]"[..], "must be a JSON object"),
        ] {
            let err = format!("{:#}", read_record(input).unwrap_err());
            assert!(err.contains(needle), "{err}");
        }
        let huge = vec![b' '; MAX_RECORD_BYTES + 10];
        assert!(format!("{:#}", read_record(&huge[..]).unwrap_err()).contains("larger than the limit"));
    }
}
