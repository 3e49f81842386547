//! Outbound event webhooks: endpoints and the events written to their outbox, SQL
//! shared by both backends (delivering them: `outbox.rs`).
//!
//! An event is written to the outbox by [`enqueue_event`](SqliteStore::enqueue_event)
//! inside the transaction of the state change it reports (a run's end, a connection's
//! status), one row per enabled endpoint subscribed to it; the row's id is the
//! `webhook-id` of every attempt.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use super::error::{StoreError, db};
use super::postgres::PgStore;
use super::rows::now;
use super::sqlite::SqliteStore;
use crate::model::{Owner, ProviderId, RunOutcome, RunRow, SealedBlob, TenantId};

/// A registered endpoint (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct WebhookEndpoint {
    pub id: String,
    /// `None`: operator-wide (every tenant's events).
    pub tenant_id: Option<String>,
    pub url: String,
    /// Comma-separated event types.
    pub events: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    /// Whether the endpoint subscribes to `event`.
    pub fn subscribes(&self, event: &str) -> bool {
        subscribed(&self.events, event)
    }
}

fn subscribed(events: &str, event: &str) -> bool {
    events.split(',').map(str::trim).any(|e| e == event || e == "*")
}

/// A new endpoint, its secret already sealed.
#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint<'a> {
    pub id: &'a str,
    pub tenant: Option<&'a TenantId>,
    pub url: &'a str,
    pub events: &'a [String],
    pub secret: &'a SealedBlob,
}

/// The event envelope every payload shares: `{"type", "timestamp", "data"}`.
pub fn envelope(event_type: &str, at: DateTime<Utc>, data: Value) -> Value {
    serde_json::json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
}

/// The event a finished run reports: `run.succeeded`, `run.failed` or `run.cancelled`
/// (other outcomes report nothing), with its data.
pub(super) fn run_event(run: &RunRow) -> Option<(&'static str, Value)> {
    let event = match run.outcome {
        RunOutcome::Success => "run.succeeded",
        RunOutcome::Failed => "run.failed",
        RunOutcome::Cancelled => "run.cancelled",
        _ => return None,
    };
    let s = &run.stats;
    Some((
        event,
        serde_json::json!({
            "tenant_id": run.tenant_id.as_str(),
            "run_id": run.id.to_string(),
            "job_id": run.job_id,
            "provider": run.provider.as_str(),
            "stream": run.stream.as_str(),
            "trigger": run.trigger.as_str(),
            "outcome": run.outcome.as_str(),
            "started_at": run.started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "finished_at": run.finished_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            "fetched": s.fetched,
            "inserted": s.inserted,
            "updated": s.updated,
            "unchanged": s.unchanged,
            "dead_lettered": s.dead_lettered,
            "error": s.error,
            "error_class": s.error_class,
        }),
    ))
}

/// The data of `connection.needs_reauth` and `connection.restored`.
pub(super) fn connection_event_data(
    tenant: &TenantId,
    provider: &ProviderId,
    owner: Owner<'_>,
    status: &str,
    reason: Option<&str>,
) -> Value {
    serde_json::json!({
        "tenant_id": tenant.as_str(),
        "provider": provider.as_str(),
        "owner": owner.user().map(|u| u.as_str()),
        "status": status,
        "reason": reason,
    })
}

impl SqliteStore {
    /// A connection's status before a change; the transaction (`BEGIN IMMEDIATE`) already
    /// holds the only write lock, so no other change comes between the read and the write.
    const CONNECTION_STATUS: &'static str =
        "SELECT status FROM connections WHERE tenant_id = $1 AND provider = $2 AND owner_user = $3";
}

impl PgStore {
    /// A connection's status before a change, its row locked until the transaction ends:
    /// a concurrent change waits, then reads this one's result, so each real transition
    /// is reported once (read without the lock, two changes could both see the old
    /// status and both report, or both miss, the transition).
    const CONNECTION_STATUS: &'static str =
        "SELECT status FROM connections WHERE tenant_id = $1 AND provider = $2 AND owner_user = $3 FOR UPDATE";
}

macro_rules! webhook_methods {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Writes `event_type` with `data` to the outbox of every enabled endpoint
            /// subscribed to it (the tenant's and the operator-wide ones), inside the
            /// caller's transaction. Returns how many messages were written.
            pub(super) async fn enqueue_event(
                conn: &mut <$db as sqlx::Database>::Connection,
                tenant: Option<&TenantId>,
                event_type: &str,
                data: Value,
            ) -> Result<usize, StoreError> {
                let endpoints: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, events FROM webhook_endpoints WHERE enabled \
                     AND (tenant_id IS NULL OR tenant_id = $1)",
                )
                .bind(tenant.map(TenantId::as_str))
                .fetch_all(&mut *conn)
                .await
                .map_err(db("reading webhook endpoints"))?;
                let now = now();
                let payload = envelope(event_type, now, data).to_string();
                let mut written = 0;
                for (endpoint, events) in endpoints {
                    if !subscribed(&events, event_type) {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO webhook_outbox (id, endpoint_id, tenant_id, event_type, payload, \
                         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                    )
                    .bind(format!("msg_{}", Uuid::now_v7().simple()))
                    .bind(&endpoint)
                    .bind(tenant.map(TenantId::as_str))
                    .bind(event_type)
                    .bind(&payload)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("writing a webhook message"))?;
                    written += 1;
                }
                Ok(written)
            }

            /// The status of `owner`'s connection to `provider`, read inside the caller's
            /// transaction before a change, to tell which event the change is; no other
            /// change of the connection can come between this read and the transaction's end.
            pub(super) async fn connection_status_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                tenant: &TenantId,
                provider: &ProviderId,
                owner: Owner<'_>,
            ) -> Result<Option<String>, StoreError> {
                sqlx::query_scalar(Self::CONNECTION_STATUS)
                .bind(tenant.as_str())
                .bind(provider.as_str())
                .bind(owner.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading a connection status"))
            }

            /// Writes `connection.needs_reauth` (a connection became `needs_reauth`) or
            /// `connection.restored` (a `needs_reauth` or `error` connection became
            /// `connected`) inside the caller's transaction; other changes report nothing.
            pub(super) async fn enqueue_connection_change(
                conn: &mut <$db as sqlx::Database>::Connection,
                tenant: &TenantId,
                provider: &ProviderId,
                owner: Owner<'_>,
                before: Option<&str>,
                after: &str,
                reason: Option<&str>,
            ) -> Result<(), StoreError> {
                let event = match (before, after) {
                    (Some(b), "needs_reauth") if b != "needs_reauth" => "connection.needs_reauth",
                    (Some("needs_reauth" | "error"), "connected") => "connection.restored",
                    _ => return Ok(()),
                };
                let data = connection_event_data(tenant, provider, owner, after, reason);
                Self::enqueue_event(conn, Some(tenant), event, data).await?;
                Ok(())
            }

            /// Writes one `records.changed` per entity the run changed (counts and the
            /// change-sequence range), inside the caller's transaction (the run's end). The
            /// records are read only when an endpoint subscribes to the event.
            pub(super) async fn enqueue_records_changed(
                conn: &mut <$db as sqlx::Database>::Connection,
                run: &RunRow,
            ) -> Result<(), StoreError> {
                let tenant = &run.tenant_id;
                let endpoints: Vec<(String,)> = sqlx::query_as(
                    "SELECT events FROM webhook_endpoints WHERE enabled AND (tenant_id IS NULL OR tenant_id = $1)",
                )
                .bind(tenant.as_str())
                .fetch_all(&mut *conn)
                .await
                .map_err(db("reading webhook endpoints"))?;
                if !endpoints.iter().any(|(events,)| subscribed(events, "records.changed")) {
                    return Ok(());
                }
                let changes: Vec<(String, Option<i64>, Option<i64>, i64, i64, i64)> = sqlx::query_as(
                    "SELECT entity, min(change_seq), max(change_seq), \
                     COALESCE(sum(CASE WHEN change_kind = 'inserted' THEN 1 ELSE 0 END), 0), \
                     COALESCE(sum(CASE WHEN change_kind = 'updated' THEN 1 ELSE 0 END), 0), \
                     COALESCE(sum(CASE WHEN change_kind = 'deleted' THEN 1 ELSE 0 END), 0) \
                     FROM records WHERE change_run = $1 AND tenant_id = $2 AND change_seq IS NOT NULL \
                     GROUP BY entity ORDER BY entity",
                )
                .bind(run.id)
                .bind(tenant.as_str())
                .fetch_all(&mut *conn)
                .await
                .map_err(db("reading a run's record changes"))?;
                for (entity, from, to, inserted, updated, deleted) in changes {
                    let data = serde_json::json!({
                        "tenant_id": tenant.as_str(),
                        "run_id": run.id.to_string(),
                        "provider": run.provider.as_str(),
                        "stream": run.stream.as_str(),
                        "entity": entity,
                        "inserted": inserted,
                        "updated": updated,
                        "deleted": deleted,
                        "from_seq": from,
                        "to_seq": to,
                    });
                    Self::enqueue_event(conn, Some(tenant), "records.changed", data).await?;
                }
                Ok(())
            }

            pub(super) async fn emit_event(
                &self,
                tenant: Option<&TenantId>,
                event_type: &str,
                data: Value,
            ) -> Result<usize, StoreError> {
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                let n = Self::enqueue_event(&mut tx, tenant, event_type, data).await?;
                tx.commit().await.map_err(db("committing a webhook message"))?;
                Ok(n)
            }

            pub(super) async fn emit_test_event(
                &self,
                endpoint: &str,
                tenant: Option<&TenantId>,
            ) -> Result<usize, StoreError> {
                let now = now();
                let data = serde_json::json!({"endpoint_id": endpoint, "tenant_id": tenant.map(TenantId::as_str)});
                let done = sqlx::query(
                    "INSERT INTO webhook_outbox (id, endpoint_id, tenant_id, event_type, payload, \
                     next_attempt_at, created_at) VALUES ($1, $2, $3, 'webhook.test', $4, $5, $5)",
                )
                .bind(format!("msg_{}", Uuid::now_v7().simple()))
                .bind(endpoint)
                .bind(tenant.map(TenantId::as_str))
                .bind(envelope("webhook.test", now, data).to_string())
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(db("writing a webhook test message"))?;
                Ok(usize::try_from(done.rows_affected()).unwrap_or(0))
            }

            pub(super) async fn create_webhook_endpoint(
                &self,
                new: &NewWebhookEndpoint<'_>,
            ) -> Result<WebhookEndpoint, StoreError> {
                sqlx::query_as(
                    "INSERT INTO webhook_endpoints (id, tenant_id, url, events, secret, secret_key_id, \
                     enabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7) \
                     RETURNING id, tenant_id, url, events, enabled, disabled_reason, created_at",
                )
                .bind(new.id)
                .bind(new.tenant.map(TenantId::as_str))
                .bind(new.url)
                .bind(new.events.join(","))
                .bind(new.secret.bytes.as_slice())
                .bind(&new.secret.key_id)
                .bind(now())
                .fetch_one(&self.pool)
                .await
                .map_err(db("registering a webhook endpoint"))
            }

            pub(super) async fn list_webhook_endpoints(
                &self,
                tenant: Option<&TenantId>,
            ) -> Result<Vec<WebhookEndpoint>, StoreError> {
                sqlx::query_as(
                    "SELECT id, tenant_id, url, events, enabled, disabled_reason, created_at \
                     FROM webhook_endpoints WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY created_at, id",
                )
                .bind(tenant.map(TenantId::as_str))
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing webhook endpoints"))
            }

            pub(super) async fn get_webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
                sqlx::query_as(
                    "SELECT id, tenant_id, url, events, enabled, disabled_reason, created_at \
                     FROM webhook_endpoints WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("reading a webhook endpoint"))
            }

            pub(super) async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE message_id IN \
                     (SELECT id FROM webhook_outbox WHERE endpoint_id = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("removing a webhook endpoint's deliveries"))?;
                sqlx::query("DELETE FROM webhook_outbox WHERE endpoint_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("removing a webhook endpoint's messages"))?;
                let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("removing a webhook endpoint"))?;
                tx.commit().await.map_err(db("committing a webhook endpoint's removal"))?;
                Ok(done.rows_affected() > 0)
            }

            pub(super) async fn set_webhook_endpoint_enabled(
                &self,
                id: &str,
                enabled: bool,
                reason: Option<&str>,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE webhook_endpoints SET enabled = $1, disabled_reason = $2 WHERE id = $3")
                    .bind(enabled)
                    .bind(reason)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(db("enabling or disabling a webhook endpoint"))?;
                Ok(done.rows_affected() > 0)
            }

        }
    };
}

webhook_methods!(SqliteStore, sqlx::Sqlite);
webhook_methods!(PgStore, sqlx::Postgres);

impl Store {
    /// Writes an event to the outbox of every subscribed endpoint in its own transaction
    /// (for events that do not accompany a store write, e.g. `job.stalled`, `webhook.test`).
    pub async fn emit_event(
        &self,
        tenant: Option<&TenantId>,
        event_type: &str,
        data: Value,
    ) -> Result<usize, StoreError> {
        dispatch!(self.emit_event(tenant, event_type, data))
    }

    /// Queues a `webhook.test` message for one endpoint.
    pub async fn emit_test_event(&self, endpoint: &str, tenant: Option<&TenantId>) -> Result<usize, StoreError> {
        dispatch!(self.emit_test_event(endpoint, tenant))
    }

    /// Registers an endpoint.
    pub async fn create_webhook_endpoint(&self, new: &NewWebhookEndpoint<'_>) -> Result<WebhookEndpoint, StoreError> {
        dispatch!(self.create_webhook_endpoint(new))
    }

    /// The endpoints of a tenant (`Some`), or every endpoint (`None`).
    pub async fn list_webhook_endpoints(&self, tenant: Option<&TenantId>) -> Result<Vec<WebhookEndpoint>, StoreError> {
        dispatch!(self.list_webhook_endpoints(tenant))
    }

    /// One endpoint.
    pub async fn get_webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        dispatch!(self.get_webhook_endpoint(id))
    }

    /// Removes an endpoint with its messages and deliveries; `false` if there was none.
    pub async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        dispatch!(self.delete_webhook_endpoint(id))
    }

    /// Enables or disables an endpoint (with why).
    pub async fn set_webhook_endpoint_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.set_webhook_endpoint_enabled(id, enabled, reason))
    }
}
