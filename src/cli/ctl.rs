//! `ctl`: talk to a running daemon over its control socket.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::output::outln;
use super::{Global, output};
use crate::control::client::call;
use crate::control::protocol::{
    AuditQuery, Command, Request, Scope, Target, UsageQuery, VERSION, WebhookCommand, WriteCommand,
};

/// Arguments of `tributary ctl`.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Control socket (default: the daemon's default path).
    #[arg(long, env = "TRIBUTARY_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Act as the tenant admin of this tenant instead of as an operator.
    #[arg(long, value_name = "TENANT")]
    pub as_tenant: Option<String>,
    #[command(subcommand)]
    pub command: CtlCmd,
}

#[derive(Debug, Subcommand)]
pub enum CtlCmd {
    /// Workers, running runs with progress, due and overdue jobs, last errors.
    Status,
    /// Tenants with their preset and connections.
    Tenants,
    /// Jobs, optionally of one tenant, provider or stream.
    Jobs {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        stream: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Recent runs.
    Runs {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Run jobs now: a tenant, one of its providers, or one stream.
    Trigger { tenant: String, provider: Option<String>, stream: Option<String> },
    /// Pause a tenant, a connection (tenant provider) or one job (--job).
    Pause {
        tenant: String,
        provider: Option<String>,
        #[arg(long)]
        job: Option<i64>,
    },
    /// Resume what `pause` stopped.
    Resume {
        tenant: String,
        provider: Option<String>,
        #[arg(long)]
        job: Option<i64>,
    },
    /// Company integration intelligence of a tenant (optionally one provider).
    Intelligence { tenant: String, provider: Option<String> },
    /// Usage analytics of a tenant (a tenant admin: its own), as `tributary usage`.
    Usage {
        tenant: String,
        #[arg(long)]
        provider: Option<String>,
        /// `day` or `week`.
        #[arg(long)]
        by: Option<String>,
        /// A date or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// Reload configuration (as SIGHUP).
    Reload,
    /// Drain and stop the daemon (as SIGTERM).
    Drain,
    /// Outbound webhook endpoints (a tenant admin: its own tenant's only).
    #[command(subcommand)]
    Webhooks(super::webhooks::WebhooksCmd),
    /// Write-back (a tenant admin: its own tenant's writes only).
    #[command(subcommand)]
    Writes(super::writes::WritesCmd),
    /// The audit log, newest first (a tenant admin: its own tenant's entries only).
    Audit {
        #[arg(long)]
        tenant: Option<String>,
        /// Entries at or after this time (RFC 3339, or a date: its midnight UTC).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
    },
}

fn target(tenant: Option<String>, provider: Option<String>, stream: Option<String>) -> Target {
    Target { tenant, provider, stream, ..Target::default() }
}

pub async fn run(g: &Global, args: CtlArgs) -> anyhow::Result<ExitCode> {
    let socket = match args.socket {
        Some(s) => s,
        None => {
            let catalog = g.catalog()?;
            let settings = &catalog.settings.daemon;
            match &settings.control_socket {
                Some(p) => p.clone(),
                None => crate::control::default_socket_path(&super::state_dir(&g.database_url(&catalog))),
            }
        }
    };
    let command = match args.command {
        CtlCmd::Status => Command::Status,
        CtlCmd::Tenants => Command::Tenants,
        CtlCmd::Jobs { tenant, provider, stream, limit } => {
            Command::Jobs(Target { limit, ..target(tenant, provider, stream) })
        }
        CtlCmd::Runs { tenant, limit } => Command::Runs(Target { limit, ..target(tenant, None, None) }),
        CtlCmd::Trigger { tenant, provider, stream } => Command::Trigger(target(Some(tenant), provider, stream)),
        CtlCmd::Pause { tenant, provider, job } => {
            Command::Pause(Target { job, ..target(Some(tenant), provider, None) })
        }
        CtlCmd::Resume { tenant, provider, job } => {
            Command::Resume(Target { job, ..target(Some(tenant), provider, None) })
        }
        CtlCmd::Intelligence { tenant, provider } => Command::Intelligence(target(Some(tenant), provider, None)),
        CtlCmd::Usage { tenant, provider, by, since } => Command::Usage(UsageQuery { tenant, provider, by, since }),
        CtlCmd::Reload => Command::Reload,
        CtlCmd::Drain => Command::Drain,
        CtlCmd::Webhooks(cmd) => Command::Webhooks(cmd.command()),
        CtlCmd::Writes(cmd) => Command::Writes(cmd.command()?),
        CtlCmd::Audit { tenant, since, limit } => Command::Audit(AuditQuery { tenant, since, limit }),
    };
    let scope = match args.as_tenant {
        Some(tenant) => Scope::Tenant { tenant },
        None => Scope::Operator,
    };
    let name = command.name();
    let printed = match &command {
        Command::Webhooks(w) => Printed::Webhooks(w.clone()),
        Command::Writes(w) => Printed::Writes(w.clone()),
        _ => Printed::Rendered,
    };
    let reply = call(&socket, &Request { v: VERSION, scope, command, caller: Default::default() })
        .await
        .map_err(anyhow::Error::msg)?;
    if g.json {
        output::json(&reply)?;
    } else if let Some(e) = &reply.error {
        eprintln!("error: {e}");
    } else if let Some(data) = &reply.data {
        match &printed {
            // As `tributary webhooks …` and `tributary writes …` print it.
            Printed::Webhooks(w) => super::webhooks::print(false, w, data)?,
            Printed::Writes(w) => super::writes::print(false, w, data)?,
            Printed::Rendered => render(name, data),
        }
    }
    Ok(if reply.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// How an answer is printed for a person.
enum Printed {
    Webhooks(WebhookCommand),
    Writes(WriteCommand),
    /// By [`render`].
    Rendered,
}

/// Human output: objects as `key: value` lines, arrays of objects as tables.
fn render(name: &str, data: &Value) {
    match data {
        // One document per integration: each as `key: value` lines.
        Value::Array(docs) if name == "intelligence" => {
            for doc in docs {
                render("", doc);
                outln!("");
            }
        }
        Value::Array(rows) => table(rows),
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Array(rows) if rows.first().is_some_and(Value::is_object) => {
                        outln!("{k}:");
                        table(rows);
                    }
                    Value::Array(rows) if rows.is_empty() => outln!("{k}: (none)"),
                    Value::Object(inner) => {
                        let parts: Vec<String> =
                            inner.iter().map(|(ik, iv)| format!("{ik}={}", output::compact(iv))).collect();
                        outln!("{k}: {}", parts.join(" "));
                    }
                    other => outln!("{k}: {}", output::compact(other)),
                }
            }
        }
        Value::String(s) => outln!("{s}"),
        other => outln!("{name}: {other}"),
    }
}

/// A replica's budget shares (status) as `quota share/limit` items.
fn budgets_text(v: &Value) -> Option<String> {
    let items = v.as_array()?;
    let parts: Option<Vec<String>> = items
        .iter()
        .map(|b| Some(format!("{} {}/{}", b.get("quota")?.as_str()?, b.get("requests")?, b.get("limit")?)))
        .collect();
    parts.filter(|p| !p.is_empty()).map(|p| p.join(", "))
}

fn table(rows: &[Value]) {
    let mut headers: Vec<String> = Vec::new();
    for r in rows {
        if let Value::Object(m) = r {
            for k in m.keys() {
                if !headers.contains(k) {
                    headers.push(k.clone());
                }
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            headers
                .iter()
                .map(|h| match r.get(h) {
                    None | Some(Value::Null) => "-".to_owned(),
                    Some(v) => {
                        let text = budgets_text(v).unwrap_or_else(|| output::compact(v));
                        if text.chars().count() > 60 {
                            format!("{}…", text.chars().take(59).collect::<String>())
                        } else {
                            text
                        }
                    }
                })
                .collect()
        })
        .collect();
    let upper: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    output::table(&upper.iter().map(String::as_str).collect::<Vec<_>>(), &cells);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::budgets_text;

    #[test]
    fn a_replicas_budget_shares_print_as_quota_share_of_limit() {
        let shares = json!([
            { "quota": "hubspot/110", "requests": 55, "limit": 110, "per_secs": 10 },
            { "quota": "slack/50/acme", "requests": 50, "limit": 50, "per_secs": 60 },
        ]);
        assert_eq!(budgets_text(&shares).as_deref(), Some("hubspot/110 55/110, slack/50/acme 50/50"));
        assert_eq!(budgets_text(&json!([])), None, "no shares: the usual `[]`");
        assert_eq!(budgets_text(&json!(["a"])), None, "other lists print as before");
        assert_eq!(budgets_text(&json!(3)), None);
    }
}
