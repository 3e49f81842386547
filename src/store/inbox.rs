//! Inbound webhooks: the inbox of accepted deliveries and the delivery ids remembered
//! to refuse replays (migration 0009). SQL shared by both backends.

use chrono::{DateTime, Utc};

use super::Store;
use super::error::{StoreError, db};
use super::postgres::PgStore;
use super::rows::stored;
use super::sqlite::SqliteStore;
use crate::model::{ProviderId, TenantId};

/// The PostgreSQL channel on which a replica that triggered jobs wakes the others.
pub const WAKE_CHANNEL: &str = "tributary_wake";

/// One accepted delivery waiting to trigger its streams.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboxRow {
    pub id: i64,
    pub tenant_id: String,
    pub provider: String,
    /// The event types, one a line.
    pub event_types: String,
    /// The body as received (read for the deletions it reports).
    pub body: Vec<u8>,
}

/// A delivery to keep.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub tenant: TenantId,
    pub provider: ProviderId,
    pub delivery_id: Option<String>,
    pub event_types: Vec<String>,
    pub body: Vec<u8>,
    pub at: DateTime<Utc>,
    /// Delivery ids remembered before this are forgotten (the window has passed).
    pub forget_before: DateTime<Utc>,
}

macro_rules! webhook_methods {
    ($store:ty) => {
        impl $store {
            pub(super) async fn accept_webhooks(&self, ds: &[NewDelivery]) -> Result<Vec<bool>, StoreError> {
                let mut kept = Vec::with_capacity(ds.len());
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                for d in ds {
                    if let Some(id) = d.delivery_id.as_deref() {
                        sqlx::query(
                            "DELETE FROM webhook_delivery_ids WHERE tenant_id = $1 AND provider = $2 \
                             AND delivery_id = $3 AND received_at < $4",
                        )
                        .bind(d.tenant.as_str())
                        .bind(d.provider.as_str())
                        .bind(id)
                        .bind(stored(d.forget_before))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("forgetting an old delivery id"))?;
                        let fresh = sqlx::query(
                            "INSERT INTO webhook_delivery_ids (tenant_id, provider, delivery_id, received_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        )
                        .bind(d.tenant.as_str())
                        .bind(d.provider.as_str())
                        .bind(id)
                        .bind(stored(d.at))
                        .execute(&mut *tx)
                        .await
                        .map_err(db("remembering a delivery id"))?
                        .rows_affected()
                            == 1;
                        if !fresh {
                            kept.push(false);
                            continue;
                        }
                    }
                    sqlx::query(
                        "INSERT INTO webhook_inbox (tenant_id, provider, delivery_id, event_types, body, received_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(d.tenant.as_str())
                    .bind(d.provider.as_str())
                    .bind(d.delivery_id.as_deref())
                    .bind(d.event_types.join("\n"))
                    .bind(&d.body)
                    .bind(stored(d.at))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("storing a webhook delivery"))?;
                    kept.push(true);
                }
                tx.commit().await.map_err(db("committing webhook deliveries"))?;
                Ok(kept)
            }

            pub(super) async fn pending_webhooks(&self, limit: i64) -> Result<Vec<InboxRow>, StoreError> {
                sqlx::query_as(
                    "SELECT id, tenant_id, provider, event_types, body FROM webhook_inbox \
                     WHERE processed_at IS NULL ORDER BY id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading the webhook inbox"))
            }

            pub(super) async fn webhook_inbox_len(&self) -> Result<i64, StoreError> {
                sqlx::query_scalar("SELECT COUNT(*) FROM webhook_inbox")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("counting the webhook inbox"))
            }

            pub(super) async fn finish_webhooks(&self, ids: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                for id in ids {
                    sqlx::query("UPDATE webhook_inbox SET processed_at = $1 WHERE id = $2 AND processed_at IS NULL")
                        .bind(stored(at))
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("marking a webhook delivery processed"))?;
                }
                tx.commit().await.map_err(db("committing processed webhook deliveries"))
            }

            pub(super) async fn prune_webhooks(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                let inbox = sqlx::query("DELETE FROM webhook_inbox WHERE processed_at < $1")
                    .bind(stored(before))
                    .execute(&self.pool)
                    .await
                    .map_err(db("pruning the webhook inbox"))?
                    .rows_affected();
                let ids = sqlx::query("DELETE FROM webhook_delivery_ids WHERE received_at < $1")
                    .bind(stored(before))
                    .execute(&self.pool)
                    .await
                    .map_err(db("pruning remembered delivery ids"))?
                    .rows_affected();
                Ok(inbox + ids)
            }
        }
    };
}

webhook_methods!(SqliteStore);
webhook_methods!(PgStore);

impl Store {
    /// Keeps accepted deliveries in the inbox with their delivery ids, all in one
    /// transaction. For each, `false` (and nothing stored for it) when its id was already
    /// seen since its `forget_before` — a replay, also of one earlier in `deliveries`.
    pub async fn accept_webhooks(&self, deliveries: &[NewDelivery]) -> Result<Vec<bool>, StoreError> {
        dispatch!(self.accept_webhooks(deliveries))
    }

    /// Up to `limit` deliveries whose streams are not yet triggered, oldest first.
    pub async fn pending_webhooks(&self, limit: i64) -> Result<Vec<InboxRow>, StoreError> {
        dispatch!(self.pending_webhooks(limit))
    }

    /// How many deliveries the inbox holds, processed or not.
    pub async fn webhook_inbox_len(&self) -> Result<i64, StoreError> {
        dispatch!(self.webhook_inbox_len())
    }

    /// Marks deliveries processed (their streams were triggered).
    pub async fn finish_webhooks(&self, ids: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
        dispatch!(self.finish_webhooks(ids, at))
    }

    /// Deletes processed deliveries and delivery ids older than `before`.
    pub async fn prune_webhooks(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        dispatch!(self.prune_webhooks(before))
    }

    /// Tells the other replicas (PostgreSQL `NOTIFY`) that jobs were triggered; nothing
    /// on SQLite, which has one daemon.
    pub async fn notify_wake(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(s) => sqlx::query("SELECT pg_notify($1, '')")
                .bind(WAKE_CHANNEL)
                .execute(&s.pool)
                .await
                .map(|_| ())
                .map_err(db("notifying other replicas")),
        }
    }

    /// A listener on [`WAKE_CHANNEL`] (PostgreSQL); `None` on SQLite, and behind a
    /// transaction pooler without `[store] listen_url` (wake-ups then come only from
    /// the daemon's own timers).
    pub async fn wake_listener(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(s) => {
                let Some(mut l) = s.listener().await.map_err(db("listening for other replicas"))? else {
                    return Ok(None);
                };
                l.listen(WAKE_CHANNEL).await.map_err(db("listening for other replicas"))?;
                Ok(Some(l))
            }
        }
    }
}
