//! Control requests, answered by the main loop. Scope checks come first: a tenant admin
//! sees and triggers only its own tenant and changes nothing else but its own tenant's
//! webhook endpoints and writes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::{Daemon, Running};
use crate::control::ControlMessage;
use crate::control::protocol::{
    AuditQuery, Command, Reply, Request, Scope, Target, WebhookCommand, WriteCommand, authorize,
};
use crate::control::webhooks::{Endpoints, WebhookError};
use crate::control::writes::{WriteError, Writes};
use crate::model::{AuditOutcome, JobFilter, PauseScope, ProviderId, StreamName, TenantId, TriggerKind};
use crate::store::AuditFilter;

/// Budget shares listed in status (every replica's, by replica and quota).
const BUDGETS_SHOWN: i64 = 1_000;

impl Daemon {
    pub(super) async fn handle(&mut self, msg: ControlMessage) {
        match msg {
            ControlMessage::Request(request, reply) => {
                let name = request.command.name();
                let answer = self.answer(request).await;
                if !answer.ok {
                    tracing::debug!(
                        command = name,
                        error = answer.error.as_deref().unwrap_or(""),
                        "control request refused"
                    );
                }
                let _ = reply.send(answer);
            }
            ControlMessage::Reload => {
                let _ = self.reload().await;
            }
            ControlMessage::Drain => self.start_drain(),
            ControlMessage::TriggerAll => {
                match self.store.trigger_jobs(&JobFilter::default(), TriggerKind::Manual, Utc::now()).await {
                    Ok(jobs) => tracing::info!(jobs = jobs.len(), "SIGUSR1: every enabled job triggered"),
                    Err(e) => tracing::warn!("triggering every job failed: {e}"),
                }
                self.wake = true;
            }
            ControlMessage::Wake => self.wake = true,
            ControlMessage::ReconcileQueued => {
                self.reconcile_queued().await;
                self.wake = true;
            }
            ControlMessage::ExitNow => {}
        }
    }

    /// Answers `request` with the scope its caller has (from the peer's credentials, or
    /// the API key's), never the one the client merely asked for. Changes are audited
    /// whatever their outcome; refusals are logged, counted and audited.
    async fn answer(&mut self, request: Request) -> Reply {
        let scope = match self.scope_of(&request).await {
            Ok(scope) => scope,
            Err(e) => return Reply::error(e),
        };
        if let Err(e) = authorize(&scope, &request.command) {
            self.refused(&request, &scope, &e).await;
            return Reply::error(e);
        }
        // Without the store only what the daemon knows itself can be answered, at once.
        if let Some(outage) = self.health.outage()
            && !matches!(request.command, Command::Status | Command::Drain)
        {
            return Reply::error(format!("the store is {}; try again when it answers", outage.describe()));
        }
        let owner = match scope {
            Scope::Operator => self.owner_of(&request.command).await,
            Scope::Tenant { .. } => None,
        };
        let failed = |e: String| (AuditOutcome::Error, e);
        let result = match &request.command {
            Command::Status => Ok(self.status(&scope).await),
            Command::Tenants => self.tenants().await.map_err(failed),
            Command::Jobs(t) => self.jobs(t).await.map_err(failed),
            Command::Runs(t) => self.runs(t).await.map_err(failed),
            Command::Trigger(t) => self.trigger(t).await.map_err(failed),
            Command::Pause(t) => self.pause(t, true).await.map_err(failed),
            Command::Resume(t) => self.pause(t, false).await.map_err(failed),
            Command::Intelligence(t) => self.intelligence(t).await.map_err(failed),
            Command::Reload => self.reload().await.map(|r| json!(r)).map_err(failed),
            Command::Drain => {
                self.start_drain();
                Ok(json!({ "draining": true, "in_flight": self.running.len() }))
            }
            Command::Webhooks(w) => self.webhooks(&scope, w).await,
            Command::Writes(w) => self.writes(&scope, w).await,
            Command::Audit(q) => self.audit_log(&scope, q).await.map_err(failed),
            Command::Usage(q) => usage(&self.store, q).await.map_err(failed),
        };
        self.audit_answer(&request, &scope, owner.as_deref(), &result).await;
        match result {
            Ok(data) => Reply::ok(data),
            Err((_, e)) => Reply::error(e),
        }
    }

    async fn status(&self, scope: &Scope) -> Value {
        let only = match scope {
            Scope::Tenant { tenant } => Some(tenant.as_str()),
            Scope::Operator => None,
        };
        let mine = |t: &TenantId| only.is_none_or(|o| o == t.as_str());
        let running: Vec<Value> =
            self.running.iter().filter(|(_, r)| mine(&r.tenant)).map(|(job_id, r)| running_json(*job_id, r)).collect();
        let errors: Vec<Value> = self
            .recent_errors
            .iter()
            .rev()
            .filter(|e| only.is_none_or(|o| e.tenant.as_deref() == Some(o)))
            .map(|e| json!(e))
            .collect();
        let mut out = json!({
            "daemon": {
                "owner": self.owner,
                "version": env!("CARGO_PKG_VERSION"),
                "started_at": self.started_at,
                "state": if self.draining.is_some() { "draining" } else { "running" },
                "workers": self.settings.workers,
                "busy": self.running.len(),
            },
            // The rejection's text names files and other tenants: operators only.
            "config": match (&self.config_error, only) {
                (None, _) => json!({ "state": "ok" }),
                (Some(e), None) => json!({ "state": "rejected (the previous configuration keeps running)", "error": e }),
                (Some(_), Some(_)) => json!({ "state": "rejected (the previous configuration keeps running)" }),
            },
            "store": match self.health.outage() {
                None => "reachable".to_owned(),
                Some(outage) => outage.describe(),
            },
            "running": running,
            "last_errors": errors,
        });
        if only.is_none()
            && self.health.outage().is_none()
            && let Ok(c) = self.store.job_counts(Utc::now(), Duration::from_secs(300)).await
        {
            out["jobs"] = json!(c);
        }
        // Every daemon sharing the store; a heartbeat older than three ticks is stale.
        if only.is_none()
            && self.health.outage().is_none()
            && let Ok(replicas) = self.store.list_replicas().await
        {
            let stale_before = Utc::now() - super::housekeeping::HOUSEKEEPING * 3;
            // Each replica's unexpired shares of the rate limits (PostgreSQL; on SQLite
            // the one daemon has every quota whole and the list is empty).
            let mut shares: HashMap<String, Vec<Value>> = HashMap::new();
            for b in self.store.list_budget_shares(BUDGETS_SHOWN).await.unwrap_or_default() {
                shares.entry(b.replica.clone()).or_default().push(json!({
                    "quota": b.quota, "requests": b.requests, "limit": b.limit, "per_secs": b.per_secs,
                    "wants": b.wants, "expires_at": b.expires_at,
                }));
            }
            out["replicas"] = Value::Array(
                replicas
                    .iter()
                    .map(|r| {
                        json!({
                            "id": r.id, "host": r.host, "pid": r.pid, "version": r.version,
                            "state": if r.heartbeat_at < stale_before { "stale" } else { r.state.as_str() },
                            "workers": r.workers, "busy": r.busy, "started_at": r.started_at,
                            "heartbeat_at": r.heartbeat_at, "this": r.id == self.owner,
                            "budgets": shares.remove(&r.id).unwrap_or_default(),
                        })
                    })
                    .collect(),
            );
        }
        out
    }

    async fn tenants(&self) -> Result<Value, String> {
        let mut out = Vec::new();
        for t in self.store.list_tenants().await.map_err(|e| e.to_string())? {
            let conns = self.store.list_connections(&t.id).await.map_err(|e| e.to_string())?;
            let conns: Vec<String> = conns.iter().map(|c| format!("{}:{}", c.provider, c.status)).collect();
            out.push(json!({
                "id": t.id, "name": t.name, "preset": t.preset, "revision": t.preset_revision,
                "timezone": t.timezone, "connections": conns.join(" "),
            }));
        }
        Ok(Value::Array(out))
    }

    async fn jobs(&self, t: &Target) -> Result<Value, String> {
        let filter = filter(t)?;
        let rows = self.store.list_jobs_filtered(&filter, t.limit.unwrap_or(200)).await.map_err(|e| e.to_string())?;
        let now = Utc::now();
        Ok(Value::Array(
            rows.iter()
                .map(|j| {
                    let running = j.lease_owner.is_some() && j.lease_expires_at.is_some_and(|x| x > now);
                    json!({
                        "id": j.id, "tenant": j.tenant_id, "provider": j.provider, "stream": j.stream,
                        "schedule": j.schedule, "next_run_at": j.next_run_at, "enabled": j.enabled, "paused": j.paused,
                        "running": running, "failures": j.consecutive_failures, "cursor": j.cursor,
                    })
                })
                .collect(),
        ))
    }

    async fn runs(&self, t: &Target) -> Result<Value, String> {
        let tenant = t.tenant.as_deref().map(TenantId::parse).transpose().map_err(|e| e.to_string())?;
        let rows = self.store.list_runs(tenant.as_ref(), t.limit.unwrap_or(20)).await.map_err(|e| e.to_string())?;
        Ok(Value::Array(
            rows.iter()
                .map(|r| {
                    json!({
                        "id": r.id, "tenant": r.tenant_id, "stream": format!("{}/{}", r.provider, r.stream),
                        "trigger": r.trigger.as_str(), "started_at": r.started_at, "outcome": r.outcome,
                        "fetched": r.stats.fetched, "inserted": r.stats.inserted, "updated": r.stats.updated,
                        "error": r.stats.error,
                    })
                })
                .collect(),
        ))
    }

    async fn intelligence(&self, t: &Target) -> Result<Value, String> {
        let tenant = t.tenant.as_deref().ok_or("`intelligence` needs a tenant")?;
        let tenant = TenantId::parse(tenant).map_err(|e| e.to_string())?;
        let provider = t.provider.as_deref().map(ProviderId::parse).transpose().map_err(|e| e.to_string())?;
        let rows = crate::intelligence::integrations(&self.store, &tenant, provider.as_ref(), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Value::Array(rows.iter().map(crate::intelligence::Integration::to_json).collect()))
    }

    /// Makes the jobs due now, starts what capacity allows, and answers with the run
    /// ids of those that started within a moment (the rest are queued first in line).
    async fn trigger(&mut self, t: &Target) -> Result<Value, String> {
        let filter = filter(t)?;
        if filter.tenant.is_none() {
            return Err("`trigger` needs a tenant".into());
        }
        let jobs =
            self.store.trigger_jobs(&filter, TriggerKind::Manual, Utc::now()).await.map_err(|e| e.to_string())?;
        if jobs.is_empty() {
            return Err("no enabled, unpaused, connected job matches".into());
        }
        // This replica takes what it has room for first (so its answer can name the
        // runs); other replicas (PostgreSQL) are woken for the rest at once.
        self.dispatch().await;
        if let Err(e) = self.store.notify_wake().await {
            tracing::warn!("{e}");
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(1500);
        loop {
            let started =
                self.started_runs.lock().map(|m| jobs.iter().filter(|j| m.contains_key(&j.id)).count()).unwrap_or(0);
            let in_flight = jobs.iter().filter(|j| self.running.contains_key(&j.id)).count();
            if started >= in_flight || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let runs = self.started_runs.lock().map(|m| m.clone()).unwrap_or_default();
        Ok(json!({
            "triggered": jobs.iter().map(|j| json!({
                "job_id": j.id, "tenant": j.tenant_id, "provider": j.provider, "stream": j.stream,
                "run_id": runs.get(&j.id),
                "state": if runs.contains_key(&j.id) { "running" } else { "queued" },
            })).collect::<Vec<_>>(),
        }))
    }

    /// Webhook endpoints, as `tributary webhooks` manages them, within `scope` (what is
    /// out of it is `denied`).
    async fn webhooks(&self, scope: &Scope, command: &WebhookCommand) -> Result<Value, (AuditOutcome, String)> {
        let endpoints = Endpoints {
            store: &self.store,
            scope,
            allow_private: self.catalog.settings.webhooks.allow_private_targets,
        };
        endpoints.run(&self.key, command).await.map_err(|e| match e {
            WebhookError::Refused(_) => (AuditOutcome::Denied, e.to_string()),
            e => (AuditOutcome::Error, e.to_string()),
        })
    }

    /// Write-back, as `tributary writes` uses it, within `scope` (what is out of it is
    /// `denied`).
    async fn writes(&self, scope: &Scope, command: &WriteCommand) -> Result<Value, (AuditOutcome, String)> {
        let writes = Writes { store: &self.store, catalog: &self.catalog, scope };
        writes.run(command).await.map_err(|e| match e {
            WriteError::Refused(_) => (AuditOutcome::Denied, e.to_string()),
            e => (AuditOutcome::Error, e.to_string()),
        })
    }

    /// The audit log, newest first; a tenant admin's own tenant's entries only.
    async fn audit_log(&self, scope: &Scope, q: &AuditQuery) -> Result<Value, String> {
        let tenant = match scope {
            Scope::Tenant { tenant } => Some(tenant.as_str()),
            Scope::Operator => q.tenant.as_deref(),
        };
        let filter = AuditFilter {
            tenant: tenant.map(TenantId::parse).transpose().map_err(|e| e.to_string())?,
            since: q.since.as_deref().map(crate::control::audit::parse_since).transpose()?,
            limit: q.limit.unwrap_or(100),
        };
        let rows = self.store.list_audit_filtered(&filter).await.map_err(|e| e.to_string())?;
        Ok(json!(rows))
    }

    async fn pause(&mut self, t: &Target, paused: bool) -> Result<Value, String> {
        let tenant = TenantId::parse(t.tenant.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?;
        let scope = match (&t.provider, t.job) {
            (_, Some(job)) => PauseScope::Job(tenant, job),
            (Some(p), None) => PauseScope::Connection(tenant, ProviderId::parse(p).map_err(|e| e.to_string())?),
            (None, None) => PauseScope::Tenant(tenant),
        };
        self.store.set_paused(&scope, paused).await.map_err(|e| e.to_string())?;
        self.wake = true;
        Ok(json!({ if paused { "paused" } else { "resumed" }: scope.to_string() }))
    }
}

fn filter(t: &Target) -> Result<JobFilter, String> {
    Ok(JobFilter {
        tenant: t.tenant.as_deref().map(TenantId::parse).transpose().map_err(|e| e.to_string())?,
        provider: t.provider.as_deref().map(ProviderId::parse).transpose().map_err(|e| e.to_string())?,
        stream: t.stream.as_deref().map(StreamName::parse).transpose().map_err(|e| e.to_string())?,
    })
}

fn running_json(job_id: i64, r: &Running) -> Value {
    let (run_id, stats) = r.progress.lock().map(|p| (p.run_id, p.stats.clone())).unwrap_or_default();
    json!({
        "job_id": job_id, "tenant": r.tenant, "provider": r.provider, "stream": r.stream,
        "run_id": run_id, "trigger": r.claimed.trigger.as_str(), "seconds": r.started.elapsed().as_secs(),
        "fetched": stats.fetched, "pages": stats.pages, "inserted": stats.inserted, "updated": stats.updated,
    })
}

/// `usage`: the tenant's usage report (the scope was checked against its tenant).
async fn usage(store: &crate::store::Store, q: &crate::control::protocol::UsageQuery) -> Result<Value, String> {
    use crate::store::{UsagePeriod, parse_usage_since};
    let tenant = TenantId::parse(&q.tenant).map_err(|e| e.to_string())?;
    let provider = q.provider.as_deref().map(ProviderId::parse).transpose().map_err(|e| e.to_string())?;
    let by = q.by.as_deref().map_or(Ok(UsagePeriod::Day), UsagePeriod::parse)?;
    let since = q.since.as_deref().map(parse_usage_since).transpose()?;
    if store.get_tenant(&tenant).await.map_err(|e| e.to_string())?.is_none() {
        return Err(format!("tenant `{tenant}` not found"));
    }
    let report = store.usage(&tenant, provider.as_ref(), by, since).await.map_err(|e| e.to_string())?;
    Ok(json!(report))
}
