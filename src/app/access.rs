//! Who may use the control socket, and the audit log of what callers did: `[control]`
//! resolved at start-up and reload, requests refused before they run (logged, counted
//! and audited), and the audit entry of every change a request made or tried to make.

use std::path::Path;

use serde_json::Value;

use super::Daemon;
use crate::config::Catalog;
use crate::config::control::{Accounts, ControlAccess};
use crate::control::access::{self, Denied};
use crate::control::audit;
use crate::control::protocol::{Command, Request, Scope, WebhookCommand};
use crate::model::AuditOutcome;
use crate::telemetry::ControlDenied;

impl Daemon {
    /// Resolves `[control]` at start-up; the daemon's own uid is the bound socket's owner.
    pub(super) fn resolve_access(&mut self, socket: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        self.uid = std::fs::metadata(socket).map(|m| m.uid())?;
        self.access = self.access_of(&self.catalog.clone()).map_err(anyhow::Error::msg)?;
        tracing::info!(
            operators = ?self.access.operators.uids,
            operator_groups = ?self.access.operators.gids,
            tenants_with_admins = self.access.tenant_admins.len(),
            "control socket access from [control]"
        );
        Ok(())
    }

    /// `[control]` of `catalog` on this system.
    pub(super) fn access_of(&self, catalog: &Catalog) -> Result<ControlAccess, String> {
        catalog.settings.control.resolve(&Accounts::system(), self.uid).map_err(|errors| {
            errors
                .iter()
                .map(|(key, message)| format!("tributary.toml: {key}: {message}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// The scope `request`'s caller acts with, or the refusal (logged, counted, audited).
    pub(super) async fn scope_of(&self, request: &Request) -> Result<Scope, String> {
        match access::scope_for(&self.access, &request.caller, &request.scope) {
            Ok(scope) => Ok(scope),
            Err(Denied { reason, message }) => {
                let actor = access::actor(&self.access, &request.caller);
                ControlDenied { actor: &actor, command: request.command.name(), reason, message: &message }
                    .emit(&self.metrics);
                // An unknown peer has no scope; one that asked too much is recorded with
                // what it asked for.
                let scope = (reason == "wider_scope").then(|| audit::scope_label(&request.scope));
                self.write_audit(
                    &actor,
                    scope.as_deref(),
                    &request.command,
                    None,
                    Err((AuditOutcome::Denied, &message)),
                )
                .await;
                Err(message)
            }
        }
    }

    /// Records a command refused for its scope (logged, counted and audited).
    pub(super) async fn refused(&self, request: &Request, scope: &Scope, message: &str) {
        let actor = access::actor(&self.access, &request.caller);
        ControlDenied { actor: &actor, command: request.command.name(), reason: "scope", message }.emit(&self.metrics);
        let label = audit::scope_label(scope);
        self.write_audit(&actor, Some(&label), &request.command, None, Err((AuditOutcome::Denied, message))).await;
    }

    /// The tenant of the webhook endpoint a command names (looked up before it runs: a
    /// removed endpoint cannot say afterwards).
    pub(super) async fn owner_of(&self, command: &Command) -> Option<String> {
        let id = match command {
            Command::Webhooks(WebhookCommand::Remove(w) | WebhookCommand::Test(w)) => &w.id,
            Command::Webhooks(WebhookCommand::Replay(r)) => &r.id,
            _ => return None,
        };
        self.store.get_webhook_endpoint(id).await.ok().flatten().and_then(|e| e.tenant_id)
    }

    /// Audits a change's outcome (reads are audited only when denied).
    pub(super) async fn audit_answer(
        &self,
        request: &Request,
        scope: &Scope,
        owner: Option<&str>,
        result: &Result<Value, (AuditOutcome, String)>,
    ) {
        if !audit::is_change(&request.command) {
            return;
        }
        let actor = access::actor(&self.access, &request.caller);
        let label = audit::scope_label(scope);
        let outcome = match result {
            Ok(answer) => Ok(answer),
            Err((outcome, message)) => Err((*outcome, message.as_str())),
        };
        self.write_audit(&actor, Some(&label), &request.command, owner, outcome).await;
    }

    async fn write_audit(
        &self,
        actor: &str,
        scope: Option<&str>,
        command: &Command,
        owner: Option<&str>,
        outcome: Result<&Value, (AuditOutcome, &str)>,
    ) {
        let entry = audit::entry(actor, scope, command, owner, outcome);
        if let Err(e) = self.store.audit(entry).await {
            tracing::warn!(action = audit::action(command), "writing the audit entry failed: {e}");
        }
    }
}
