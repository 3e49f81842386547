//! The demo's write-back round trip.
//!
//! Once the daemon is up, the demo submits two writes exactly as `tributary writes
//! submit` does (checked against the catalog and stored in the outbox, as the operator):
//! a HubSpot contact create for acme and a Jira comment on an issue for initech. The
//! daemon's write worker claims and sends them; the demo follows each in the store until
//! it settles and prints its id and state, the provider's id and version, the request the
//! simulator received and, for the create, the record stored for the new object.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::cli::output;
use crate::config::Catalog;
use crate::control::protocol::{Scope, WriteSubmit};
use crate::control::writes::Writes;
use crate::store::{Store, WriteRow};
use tributary_simulator::SimHandle;

/// How long the demo follows a write before saying it has not settled.
const SETTLE_PATIENCE: Duration = Duration::from_secs(60);
/// How long after a create succeeded the demo looks for its stored record.
const RECORD_PATIENCE: Duration = Duration::from_secs(2);
/// How often the store is read.
const POLL: Duration = Duration::from_millis(100);

/// One write the demo submits, and where its simulator should receive it.
pub(super) struct Planned {
    pub sim: SimHandle,
    pub submit: WriteSubmit,
    /// The request path the simulator receives the write at.
    pub path: String,
}

impl Planned {
    /// A contact created at acme's HubSpot.
    pub fn hubspot_contact(sim: SimHandle) -> Self {
        Self {
            sim,
            submit: submit(
                "acme",
                "hubspot",
                "contact",
                "create",
                None,
                serde_json::json!({
                    "email": "ada.lovelace@acme.example.com",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                }),
            ),
            path: "/crm/v3/objects/contacts".into(),
        }
    }

    /// A comment on initech's first simulated Jira issue.
    pub fn jira_comment(sim: SimHandle) -> Self {
        let issue = sim
            .expected_record("issues", 0)
            .and_then(|i| i.get("id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "10000".into());
        Self {
            sim,
            path: format!("/rest/api/3/issue/{issue}/comment"),
            submit: submit(
                "initech",
                "jira",
                "issue",
                "comment",
                Some(issue),
                serde_json::json!({ "text": "Followed up from tributary" }),
            ),
        }
    }
}

fn submit(tenant: &str, provider: &str, entity: &str, op: &str, id: Option<String>, record: Value) -> WriteSubmit {
    WriteSubmit {
        tenant: tenant.into(),
        provider: provider.into(),
        entity: entity.into(),
        op: op.into(),
        id,
        idempotency_key: None,
        base_version: None,
        force: false,
        owner: None,
        record,
    }
}

/// Once `ready` fires (the daemon runs), submits each planned write and prints how it
/// ended.
pub(super) async fn round_trip(catalog: Catalog, store: Store, planned: Vec<Planned>, ready: oneshot::Receiver<()>) {
    if ready.await.is_err() {
        return;
    }
    let writes = Writes { store: &store, catalog: &catalog, scope: &Scope::Operator };
    let mut submitted = Vec::new();
    for p in planned {
        let received_before = p.sim.writes_received().len();
        match writes.submit(&p.submit).await {
            Ok((write, _)) => {
                tracing::info!(write = %write.id, provider = %write.provider, op = %write.op, "demo: write submitted");
                submitted.push((p, write.id, received_before));
            }
            Err(e) => {
                println!("  write-back: {} {} {} not submitted: {e}", p.submit.provider, p.submit.entity, p.submit.op)
            }
        }
    }
    for (p, id, received_before) in submitted {
        match settled(&store, &id).await {
            Some(write) => report(&store, &p, &write, received_before).await,
            None => println!("  write-back: {id} has not settled within {} s", SETTLE_PATIENCE.as_secs()),
        }
    }
}

/// The write once it reached a final state; `None` if it does not within
/// [`SETTLE_PATIENCE`] (or cannot be read).
async fn settled(store: &Store, id: &str) -> Option<WriteRow> {
    let deadline = tokio::time::Instant::now() + SETTLE_PATIENCE;
    while tokio::time::Instant::now() < deadline {
        match store.get_write(id).await {
            Ok(Some(d)) if d.write.state.is_final() => return Some(d.write),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

/// Prints what became of a write: its state and the provider's id and version, what the
/// simulator received, and for a successful create the record stored for it.
async fn report(store: &Store, p: &Planned, w: &WriteRow, received_before: usize) {
    let on = w.external_id.as_deref().map(|id| format!(" on {id}")).unwrap_or_default();
    let mut line = format!("  write-back: {} {} {} {}{on}: {}", w.id, w.provider, w.entity, w.op, w.state);
    if let Some(id) = &w.result_id {
        line += &format!(", provider id {id}");
    }
    if let Some(version) = &w.result_version {
        line += &format!(", version {version}");
    }
    if let Some(error) = &w.error {
        line += &format!(" ({error})");
    }
    println!("{line}");
    let received = p.sim.writes_received();
    let mine: Vec<_> = received.iter().skip(received_before).filter(|r| r.path == p.path).collect();
    match mine.as_slice() {
        [] => println!("    the simulated {} received nothing at {}", w.provider, p.path),
        [r] => println!("    the simulated {} received {} {}", w.provider, r.method, r.path),
        [r, ..] => println!("    the simulated {} received {} {} ({} times)", w.provider, r.method, r.path, mine.len()),
    }
    if w.op == crate::config::WriteOp::Create
        && let Some(id) = &w.result_id
    {
        match stored(store, w, id).await {
            Some(data) => println!("    stored record: {} {id} {}", w.entity, output::compact(&data)),
            None => println!("    stored record: none yet for {} {id}", w.entity),
        }
    }
}

/// The data of the tenant's stored record of the written object, looked for a little
/// while (it is stored as the write succeeds).
async fn stored(store: &Store, w: &WriteRow, id: &str) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + RECORD_PATIENCE;
    loop {
        if let Ok(Some(r)) = store.get_record(&w.tenant_id, &w.entity, &w.provider, id).await {
            return Some(r.data);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
