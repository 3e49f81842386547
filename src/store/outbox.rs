//! The outbound webhook outbox's delivery side: claiming due messages, recording attempts
//! (the delivery log), listing and replaying, SQL shared by both backends. Events are
//! written to the outbox in `webhooks.rs`.
//!
//! Delivery workers in any replica claim due rows with a lease
//! ([`Store::claim_webhooks`]: `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer
//! on SQLite) and record finished attempts with [`Store::settle_webhooks`], fenced on the
//! lease.

use chrono::{DateTime, Utc};

use super::Store;
use super::error::{StoreError, db};
use super::postgres::PgStore;
use super::rows::{now, stored};
use super::sqlite::SqliteStore;
use crate::model::SealedBlob;

/// A claimed outbox message with what its delivery needs.
#[derive(Clone, sqlx::FromRow)]
pub struct WebhookMessage {
    pub id: String,
    pub endpoint_id: String,
    pub tenant_id: Option<String>,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub url: String,
    pub secret: Vec<u8>,
    pub secret_key_id: String,
}

impl std::fmt::Debug for WebhookMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookMessage")
            .field("id", &self.id)
            .field("endpoint_id", &self.endpoint_id)
            .field("event_type", &self.event_type)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl WebhookMessage {
    pub fn sealed_secret(&self) -> SealedBlob {
        SealedBlob { key_id: self.secret_key_id.clone(), bytes: self.secret.clone() }
    }
}

/// An outbox message as listed (without the endpoint's secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct WebhookOutboxRow {
    pub id: String,
    pub endpoint_id: String,
    pub tenant_id: Option<String>,
    pub event_type: String,
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct WebhookDelivery {
    pub message_id: String,
    pub attempt: i64,
    pub endpoint_id: String,
    pub event_type: String,
    /// The HTTP status, if a response came.
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// How an attempt ended, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookSettle {
    /// A 2xx: the message is delivered.
    Delivered,
    /// Try again at this time.
    Retry(DateTime<Utc>),
    /// Give up on the message and disable its endpoint with this reason (410 Gone, or
    /// the retry schedule is exhausted).
    GiveUp(String),
}

/// One delivery attempt, to record with [`Store::settle_webhooks`].
#[derive(Debug, Clone)]
pub struct WebhookAttemptRecord {
    /// The message attempted.
    pub message: String,
    /// The HTTP status, if one came back.
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// What went wrong (never the secret or the body).
    pub error: Option<String>,
    pub settle: WebhookSettle,
}

impl SqliteStore {
    /// The due messages a claim takes (the single writer serializes claims).
    const CLAIM_WEBHOOKS: &'static str = "UPDATE webhook_outbox SET lease_owner = $1, lease_until = $2 \
         WHERE id IN (SELECT o.id FROM webhook_outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= $3 \
         AND (o.lease_until IS NULL OR o.lease_until <= $3) \
         AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = o.endpoint_id AND e.enabled) \
         ORDER BY o.next_attempt_at LIMIT $4)";
}

impl PgStore {
    /// The due messages a claim takes; replicas skip each other's locked rows.
    const CLAIM_WEBHOOKS: &'static str = "UPDATE webhook_outbox SET lease_owner = $1, lease_until = $2 \
         WHERE id IN (SELECT o.id FROM webhook_outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= $3 \
         AND (o.lease_until IS NULL OR o.lease_until <= $3) \
         AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = o.endpoint_id AND e.enabled) \
         ORDER BY o.next_attempt_at LIMIT $4 FOR UPDATE OF o SKIP LOCKED)";
}

macro_rules! outbox_methods {
    ($store:ty) => {
        impl $store {
            pub(super) async fn claim_webhooks(
                &self,
                owner: &str,
                until: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<WebhookMessage>, StoreError> {
                let until = stored(until);
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                sqlx::query(Self::CLAIM_WEBHOOKS)
                    .bind(owner)
                    .bind(until)
                    .bind(now())
                    .bind(limit)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("claiming webhook messages"))?;
                let claimed: Vec<WebhookMessage> = sqlx::query_as(
                    "SELECT o.id, o.endpoint_id, o.tenant_id, o.event_type, o.payload, o.attempts, \
                     e.url, e.secret, e.secret_key_id \
                     FROM webhook_outbox o JOIN webhook_endpoints e ON e.id = o.endpoint_id \
                     WHERE o.lease_owner = $1 AND o.lease_until = $2 AND o.state = 'pending' \
                     ORDER BY o.next_attempt_at, o.id",
                )
                .bind(owner)
                .bind(until)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("reading claimed webhook messages"))?;
                tx.commit().await.map_err(db("committing a webhook claim"))?;
                Ok(claimed)
            }

            pub(super) async fn settle_webhooks(
                &self,
                owner: &str,
                attempts: &[WebhookAttemptRecord],
            ) -> Result<Vec<bool>, StoreError> {
                let now = now();
                let mut kept = Vec::with_capacity(attempts.len());
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                for a in attempts {
                    let (state, next, delivered) = match &a.settle {
                        WebhookSettle::Delivered => ("delivered", now, Some(now)),
                        WebhookSettle::Retry(at) => ("pending", stored(*at), None),
                        WebhookSettle::GiveUp(_) => ("failed", now, None),
                    };
                    let row: Option<(i64, String)> = sqlx::query_as(
                        "UPDATE webhook_outbox SET attempts = attempts + 1, state = $1, next_attempt_at = $2, \
                         delivered_at = $3, lease_owner = NULL, lease_until = NULL \
                         WHERE id = $4 AND lease_owner = $5 AND state = 'pending' RETURNING attempts, endpoint_id",
                    )
                    .bind(state)
                    .bind(next)
                    .bind(delivered)
                    .bind(&a.message)
                    .bind(owner)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("settling a webhook message"))?;
                    let Some((attempt, endpoint)) = row else {
                        kept.push(false);
                        continue;
                    };
                    kept.push(true);
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (message_id, attempt, endpoint_id, status, latency_ms, error, at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&a.message)
                    .bind(attempt)
                    .bind(&endpoint)
                    .bind(a.status.map(i64::from))
                    .bind(a.latency_ms)
                    .bind(a.error.as_deref())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("recording a webhook delivery"))?;
                    if let WebhookSettle::GiveUp(reason) = &a.settle {
                        sqlx::query("UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $1 WHERE id = $2")
                            .bind(reason)
                            .bind(&endpoint)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("disabling a webhook endpoint"))?;
                    }
                }
                tx.commit().await.map_err(db("committing webhook deliveries"))?;
                Ok(kept)
            }

            pub(super) async fn list_webhook_deliveries(
                &self,
                endpoint: &str,
                limit: i64,
            ) -> Result<Vec<WebhookDelivery>, StoreError> {
                sqlx::query_as(
                    "SELECT d.message_id, d.attempt, d.endpoint_id, o.event_type, d.status, d.latency_ms, \
                     d.error, d.at FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.message_id \
                     WHERE d.endpoint_id = $1 ORDER BY d.at DESC, d.message_id, d.attempt DESC LIMIT $2",
                )
                .bind(endpoint)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing webhook deliveries"))
            }

            pub(super) async fn list_webhook_messages(
                &self,
                endpoint: &str,
                limit: i64,
            ) -> Result<Vec<WebhookOutboxRow>, StoreError> {
                sqlx::query_as(
                    "SELECT id, endpoint_id, tenant_id, event_type, payload, state, attempts, \
                     next_attempt_at, created_at, delivered_at FROM webhook_outbox WHERE endpoint_id = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2",
                )
                    .bind(endpoint)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db("listing webhook messages"))
            }

            pub(super) async fn pending_webhook_count(&self) -> Result<i64, StoreError> {
                sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE state = 'pending'")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("counting pending webhook messages"))
            }

            pub(super) async fn replay_webhooks(
                &self,
                endpoint: &str,
                message: Option<&str>,
            ) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE webhook_outbox SET state = 'pending', next_attempt_at = $1, lease_owner = NULL, \
                     lease_until = NULL WHERE endpoint_id = $2 AND ($3 IS NULL OR id = $3) \
                     AND ($3 IS NOT NULL OR state = 'failed')",
                )
                .bind(now())
                .bind(endpoint)
                .bind(message)
                .execute(&mut *tx)
                .await
                .map_err(db("replaying webhook messages"))?;
                sqlx::query("UPDATE webhook_endpoints SET enabled = TRUE, disabled_reason = NULL WHERE id = $1")
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("enabling a webhook endpoint"))?;
                tx.commit().await.map_err(db("committing a webhook replay"))?;
                Ok(done.rows_affected())
            }
        }
    };
}

outbox_methods!(SqliteStore);
outbox_methods!(PgStore);

impl Store {
    /// Leases up to `limit` due messages of enabled endpoints to `owner` until `until`.
    pub async fn claim_webhooks(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WebhookMessage>, StoreError> {
        dispatch!(self.claim_webhooks(owner, until, limit))
    }

    /// Records attempts and what follows from each, in one transaction: for each, `true`
    /// if `owner` still held its message's lease, `false` if the lease was lost (nothing
    /// written for it).
    pub async fn settle_webhooks(
        &self,
        owner: &str,
        attempts: &[WebhookAttemptRecord],
    ) -> Result<Vec<bool>, StoreError> {
        dispatch!(self.settle_webhooks(owner, attempts))
    }

    /// The endpoint's latest attempts, newest first.
    pub async fn list_webhook_deliveries(
        &self,
        endpoint: &str,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        dispatch!(self.list_webhook_deliveries(endpoint, limit))
    }

    /// The endpoint's latest messages, newest first.
    pub async fn list_webhook_messages(&self, endpoint: &str, limit: i64) -> Result<Vec<WebhookOutboxRow>, StoreError> {
        dispatch!(self.list_webhook_messages(endpoint, limit))
    }

    /// How many outbox messages wait for delivery (every endpoint's; through the partial
    /// index of pending messages).
    pub async fn pending_webhook_count(&self) -> Result<i64, StoreError> {
        dispatch!(self.pending_webhook_count())
    }

    /// Makes the endpoint's failed messages (or the one `message`, whatever its state)
    /// due now and enables the endpoint again. Returns how many messages were requeued.
    pub async fn replay_webhooks(&self, endpoint: &str, message: Option<&str>) -> Result<u64, StoreError> {
        dispatch!(self.replay_webhooks(endpoint, message))
    }
}
