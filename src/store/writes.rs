//! Write-back: the durable outbox of writes to providers and the log of their attempts
//! (migration 0011), SQL shared by both backends.
//!
//! A write is a row before it is acknowledged ([`Store::submit_write`]); an idempotency
//! key names at most one write per tenant, also under concurrent submissions (a unique
//! index decides). Workers in any replica claim due writes with a lease
//! ([`Store::claim_writes`]: `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer
//! on SQLite), one in flight per object: a write is claimable only when no earlier write
//! to the same object (tenant, provider, owner, entity, and the external id it names, or
//! the write itself for a create that names none) is still open, and no other write to
//! it is in flight. Each attempt is settled with [`Store::settle_write`], fenced on the
//! lease, and recorded in `write_attempts` in the same transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use super::error::{StoreError, db, not_found};
use super::intelligence::is_foreign_key_violation;
use super::postgres::PgStore;
use super::rows::{now, stored};
use super::sqlite::SqliteStore;
use super::statement::Bind;
pub use super::write_effects::RecordEffect;
use super::write_effects::write_event;
use crate::config::WriteOp;
use crate::model::{EntityName, Owner, OwnerColumn, ProviderId, TenantId, UserId};

/// The longest provider message (and error) kept, in bytes; longer ones are cut at a
/// character boundary.
pub const MAX_PROVIDER_MESSAGE: usize = 2_000;

/// Columns of [`WriteRow`], in `SELECT` order.
macro_rules! write_columns {
    () => {
        "id, tenant_id, provider, owner_user, entity, op, external_id, idempotency_key, \
         base_version, force, payload, state, attempts, next_attempt_at, lease_owner, lease_until, \
         result_id, result_version, error, error_class, created_at, updated_at, finished_at, claims"
    };
}

/// How the store reads an operation back from its TEXT column (`#[sqlx(try_from)]`).
impl TryFrom<String> for WriteOp {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("unknown write operation `{text}`"))
    }
}

/// Where a write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteState {
    /// Waiting to be sent (first time, or again after a retryable failure).
    Pending,
    /// Claimed by a worker, which holds its lease.
    InFlight,
    /// The provider applied it (`result_id`, `result_version`).
    Succeeded,
    /// Ended without applying it (a permanent error); `writes retry` queues it again.
    Failed,
    /// The provider's object is newer than the version the write was based on; nothing
    /// was overwritten. `writes retry --force` overrides.
    Conflict,
    /// Cancelled while pending; never sent.
    Cancelled,
}

impl WriteState {
    pub const ALL: [WriteState; 6] =
        [Self::Pending, Self::InFlight, Self::Succeeded, Self::Failed, Self::Conflict, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Conflict => "conflict",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the write will not change again on its own.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::InFlight)
    }
}

impl std::fmt::Display for WriteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for WriteState {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("unknown write state `{text}`"))
    }
}

/// A write as stored (and as the control socket answers it: the payload as JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct WriteRow {
    /// `wr_` and a UUID v7.
    pub id: String,
    pub tenant_id: TenantId,
    pub provider: ProviderId,
    /// The connection's owning user; `None` for the company's connection.
    #[sqlx(try_from = "OwnerColumn")]
    pub owner_user: Option<UserId>,
    pub entity: EntityName,
    #[sqlx(try_from = "String")]
    pub op: WriteOp,
    /// The provider's id of the object; `None` for a create until it succeeds (then see
    /// `result_id`).
    pub external_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// The provider version the write was based on.
    pub base_version: Option<String>,
    /// Write even if the provider's version is newer than `base_version`.
    pub force: bool,
    /// The record in the tenant's target schema (JSON text).
    #[serde(serialize_with = "json_text", deserialize_with = "text_of_json")]
    pub payload: String,
    #[sqlx(try_from = "String")]
    pub state: WriteState,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// The provider's id of the object written.
    pub result_id: Option<String>,
    /// The provider's version after the write (after a conflict: the provider's newer one).
    pub result_version: Option<String>,
    pub error: Option<String>,
    pub error_class: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How often the write was claimed (this claim included): a create claimed before may
    /// have reached the provider, so it is looked up before it is sent again.
    #[serde(default)]
    pub claims: i64,
}

impl WriteRow {
    /// The payload as JSON (`Null` if the stored text does not parse).
    pub fn payload_json(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or(Value::Null)
    }
}

/// Serializes JSON text as the JSON it holds (as a string if it does not parse).
fn json_text<S: serde::Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => serde::Serialize::serialize(&value, serializer),
        Err(_) => serializer.serialize_str(text),
    }
}

/// Reads JSON back as its compact text (the inverse of [`json_text`]).
fn text_of_json<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value: Value = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.to_string())
}

/// One attempt of a write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct WriteAttempt {
    pub write_id: String,
    pub attempt: i64,
    /// The HTTP status, if a response came.
    pub status: Option<i64>,
    /// What the provider said (its error message), at most [`MAX_PROVIDER_MESSAGE`] bytes.
    pub provider_message: Option<String>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// A write with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteDetail {
    pub write: WriteRow,
    pub attempts: Vec<WriteAttempt>,
}

/// A write to submit.
#[derive(Debug, Clone)]
pub struct NewWrite<'a> {
    pub tenant: &'a TenantId,
    pub provider: &'a ProviderId,
    pub owner: Owner<'a>,
    pub entity: &'a EntityName,
    pub op: WriteOp,
    /// Required for every operation but `create`.
    pub external_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub base_version: Option<&'a str>,
    pub force: bool,
    /// The record in the tenant's target schema.
    pub payload: &'a Value,
}

/// How an attempt ended, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteSettle {
    /// The provider applied the write.
    Succeeded { status: Option<u16>, result_id: String, result_version: Option<String> },
    /// Try again at `at` (a 429, a 5xx, a timeout): the write is pending again.
    Retry { at: DateTime<Utc>, status: Option<u16>, message: String, error_class: String },
    /// A permanent failure (e.g. a validation error): the write ends `failed`.
    Failed { status: Option<u16>, message: String, error_class: String },
    /// The provider's version is newer than the base version: the write ends `conflict`.
    Conflict { status: Option<u16>, provider_version: String, base_version: Option<String> },
}

impl WriteSettle {
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            Self::Succeeded { status, .. }
            | Self::Retry { status, .. }
            | Self::Failed { status, .. }
            | Self::Conflict { status, .. } => *status,
        }
    }
}

/// Which writes [`Store::list_writes`] lists.
#[derive(Debug, Clone, Default)]
pub struct WriteFilter {
    pub tenant: Option<TenantId>,
    pub state: Option<WriteState>,
    pub provider: Option<ProviderId>,
    pub limit: i64,
}

/// `text` cut to at most [`MAX_PROVIDER_MESSAGE`] bytes, at a character boundary.
pub fn bounded(text: &str) -> &str {
    if text.len() <= MAX_PROVIDER_MESSAGE {
        return text;
    }
    let mut end = MAX_PROVIDER_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The column values a settle writes: state, next attempt, result id and version, error,
/// error class, and the attempt's provider message and error.
struct Settled<'a> {
    state: WriteState,
    next_attempt_at: Option<DateTime<Utc>>,
    result_id: Option<&'a str>,
    result_version: Option<&'a str>,
    error: Option<String>,
    error_class: Option<&'a str>,
    provider_message: Option<&'a str>,
}

fn settled(settle: &WriteSettle) -> Settled<'_> {
    match settle {
        WriteSettle::Succeeded { result_id, result_version, .. } => Settled {
            state: WriteState::Succeeded,
            next_attempt_at: None,
            result_id: Some(result_id),
            result_version: result_version.as_deref(),
            error: None,
            error_class: None,
            provider_message: None,
        },
        WriteSettle::Retry { at, message, error_class, .. } => Settled {
            state: WriteState::Pending,
            next_attempt_at: Some(stored(*at)),
            result_id: None,
            result_version: None,
            error: Some(bounded(message).to_owned()),
            error_class: Some(error_class),
            provider_message: Some(bounded(message)),
        },
        WriteSettle::Failed { message, error_class, .. } => Settled {
            state: WriteState::Failed,
            next_attempt_at: None,
            result_id: None,
            result_version: None,
            error: Some(bounded(message).to_owned()),
            error_class: Some(error_class),
            provider_message: Some(bounded(message)),
        },
        WriteSettle::Conflict { provider_version, base_version, .. } => Settled {
            state: WriteState::Conflict,
            next_attempt_at: None,
            result_id: None,
            result_version: Some(provider_version),
            error: Some(
                bounded(&format!(
                    "the provider's version `{provider_version}` is newer than the base version `{}`",
                    base_version.as_deref().unwrap_or("(none)")
                ))
                .to_owned(),
            ),
            error_class: Some("conflict"),
            provider_message: None,
        },
    }
}

fn no_write(id: &str) -> StoreError {
    not_found(format!("no write `{id}`"))
}

/// Why a reused idempotency key is refused, if the new write differs from the stored one.
fn key_reuse(existing: &WriteRow, new: &NewWrite<'_>, key: &str) -> Option<StoreError> {
    let same = existing.provider == *new.provider
        && existing.owner_user.as_ref() == new.owner.user()
        && existing.entity == *new.entity
        && existing.op == new.op
        && existing.external_id.as_deref() == new.external_id
        && existing.payload_json() == *new.payload;
    (!same).then(|| StoreError::Conflict {
        what: format!(
            "idempotency key `{key}` was already used at tenant `{}` for write {} ({} of {} at {}) \
             with a different request; use a new key for a different write",
            existing.tenant_id, existing.id, existing.op, existing.entity, existing.provider
        ),
    })
}

/// The condition on `w` (at time `$3`) that makes a write claimable.
macro_rules! claimable {
    () => {
        "((w.state = 'pending' AND w.next_attempt_at <= $3) \
          OR (w.state = 'in_flight' AND w.lease_until <= $3)) \
         AND NOT EXISTS (SELECT 1 FROM writes e WHERE e.tenant_id = w.tenant_id \
          AND e.provider = w.provider AND e.owner_user = w.owner_user AND e.entity = w.entity \
          AND e.object_key = w.object_key AND e.id <> w.id \
          AND ((e.state IN ('pending', 'in_flight') \
                AND (e.created_at < w.created_at OR (e.created_at = w.created_at AND e.id < w.id))) \
               OR (e.state = 'in_flight' AND e.lease_until > $3)))"
    };
}

impl SqliteStore {
    /// The writes a claim takes (the single writer serializes claims): due pending writes
    /// and in-flight ones whose lease expired, each the earliest open write to its object
    /// with no other write to it in flight.
    const CLAIM_WRITES: &'static str = concat!(
        "UPDATE writes SET state = 'in_flight', lease_owner = $1, lease_until = $2, updated_at = $3, claims = claims + 1 \
         WHERE id IN (SELECT w.id FROM writes w WHERE ",
        claimable!(),
        " ORDER BY w.created_at, w.id LIMIT $4) RETURNING ",
        write_columns!()
    );
}

impl PgStore {
    /// The writes a claim takes; replicas skip each other's locked rows. A write whose
    /// earlier sibling another claimer holds locked still sees that sibling open, so it
    /// waits for it.
    const CLAIM_WRITES: &'static str = concat!(
        "UPDATE writes SET state = 'in_flight', lease_owner = $1, lease_until = $2, updated_at = $3, claims = claims + 1 \
         WHERE id IN (SELECT w.id FROM writes w WHERE ",
        claimable!(),
        " ORDER BY w.created_at, w.id LIMIT $4 FOR UPDATE OF w SKIP LOCKED) RETURNING ",
        write_columns!()
    );
}

impl Store {
    /// Stores a write as `pending`, due now; `(write, true)`. With an idempotency key the
    /// tenant already used, the write stored under it instead, `(write, false)` — also
    /// when submissions race (a unique index decides) — or [`StoreError::Conflict`]
    /// naming the key when that write differs (provider, owner, entity, operation,
    /// external id or payload).
    ///
    /// [`StoreError::Invalid`] for an update, delete or comment without an external id,
    /// [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn submit_write(&self, new: &NewWrite<'_>) -> Result<(WriteRow, bool), StoreError> {
        if new.op.needs_id() && new.external_id.is_none_or(str::is_empty) {
            return Err(StoreError::Invalid {
                what: format!("a write that does `{}` needs the external id of the object", new.op),
            });
        }
        let id = format!("wr_{}", Uuid::now_v7().simple());
        let object_key = new.external_id.unwrap_or(&id).to_owned();
        let payload = new.payload.to_string();
        on_backend!(self, |s| {
            let now = now();
            let inserted: Option<WriteRow> = sqlx::query_as(concat!(
                "INSERT INTO writes (id, tenant_id, provider, owner_user, entity, op, external_id, \
                 object_key, idempotency_key, base_version, force, payload, state, next_attempt_at, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 'pending', $13, $13, $13) ON CONFLICT DO NOTHING RETURNING ",
                write_columns!()
            ))
            .bind_all((
                &id,
                new.tenant.as_str(),
                new.provider.as_str(),
                new.owner.as_str(),
                new.entity.as_str(),
                new.op.as_str(),
                new.external_id,
                &object_key,
                new.idempotency_key,
                new.base_version,
                new.force,
                &payload,
            ))
            .bind(now)
            .fetch_optional(&s.pool)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    StoreError::NotFound { what: format!("tenant `{}` does not exist", new.tenant) }
                } else {
                    db("submitting a write")(e)
                }
            })?;
            if let Some(row) = inserted {
                return Ok((row, true));
            }
            let Some(key) = new.idempotency_key else {
                return Err(StoreError::Conflict { what: format!("write id `{id}` is already taken") });
            };
            let existing: Option<WriteRow> = sqlx::query_as(concat!(
                "SELECT ",
                write_columns!(),
                " FROM writes WHERE tenant_id = $1 AND idempotency_key = $2"
            ))
            .bind_all((new.tenant.as_str(), key))
            .fetch_optional(&s.pool)
            .await
            .map_err(db("reading the write of an idempotency key"))?;
            let Some(existing) = existing else {
                return Err(StoreError::Conflict {
                    what: format!("idempotency key `{key}` of tenant `{}` could not be stored; try again", new.tenant),
                });
            };
            match key_reuse(&existing, new, key) {
                Some(err) => Err(err),
                None => Ok((existing, false)),
            }
        })
    }

    /// Leases up to `limit` claimable writes to `owner` until `until`, marking them
    /// `in_flight`, oldest first: due pending writes and in-flight ones whose lease
    /// expired, at most one per object (the earliest open one, and none while another
    /// write to the object is in flight).
    pub async fn claim_writes(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WriteRow>, StoreError> {
        on_backend!(self, |s: B| {
            let (mut tx, now) = s.begin_write().await?;
            let mut rows: Vec<WriteRow> = sqlx::query_as(B::CLAIM_WRITES)
                .bind_all((owner, stored(until), now, limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db("claiming writes"))?;
            tx.commit().await.map_err(db("committing a write claim"))?;
            rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(rows)
        })
    }

    /// Records an attempt of the write `owner` holds and what follows from it, in one
    /// transaction: the write's new state and an attempt row. `None` (nothing written)
    /// if `owner` no longer holds the write's lease.
    pub async fn settle_write(
        &self,
        id: &str,
        owner: &str,
        latency_ms: i64,
        settle: &WriteSettle,
    ) -> Result<Option<WriteRow>, StoreError> {
        self.settle_write_with(id, owner, latency_ms, settle, None).await
    }

    /// [`Store::settle_write`], and in the same transaction: a succeeded write's `effect`
    /// on the stored record (read-your-writes: the record changes at once and takes the
    /// next number of the tenant's change feed; an unchanged record keeps its number),
    /// and the `write.succeeded|failed|conflict` event of a final state to every
    /// subscribed endpoint.
    pub async fn settle_write_with(
        &self,
        id: &str,
        owner: &str,
        latency_ms: i64,
        settle: &WriteSettle,
        effect: Option<&RecordEffect>,
    ) -> Result<Option<WriteRow>, StoreError> {
        let v = settled(settle);
        on_backend!(self, |s: B| {
            let (mut tx, now) = s.begin_write().await?;
            let finished = v.state.is_final().then_some(now);
            let row: Option<WriteRow> = sqlx::query_as(concat!(
                "UPDATE writes SET attempts = attempts + 1, state = $1, \
                 next_attempt_at = COALESCE($2, next_attempt_at), lease_owner = NULL, lease_until = NULL, \
                 result_id = COALESCE($3, result_id), result_version = COALESCE($4, result_version), \
                 error = $5, error_class = $6, updated_at = $7, finished_at = $8 \
                 WHERE id = $9 AND lease_owner = $10 AND state = 'in_flight' RETURNING ",
                write_columns!()
            ))
            .bind_all((
                v.state.as_str(),
                v.next_attempt_at,
                v.result_id,
                v.result_version,
                v.error.as_deref(),
                v.error_class,
                now,
                finished,
                id,
                owner,
            ))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("settling a write"))?;
            let Some(row) = row else {
                return Ok(None);
            };
            sqlx::query(
                "INSERT INTO write_attempts (write_id, attempt, status, provider_message, latency_ms, error, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind_all((
                id,
                row.attempts,
                settle.status().map(i64::from),
                v.provider_message,
                latency_ms,
                v.error_class,
                now,
            ))
            .execute(&mut *tx)
            .await
            .map_err(db("recording a write attempt"))?;
            if let (WriteState::Succeeded, Some(effect)) = (row.state, effect) {
                B::apply_record_effect(&mut tx, &row, effect, now).await?;
            }
            if let Some((event, data)) = write_event(&row, settle) {
                B::enqueue_event(&mut tx, Some(&row.tenant_id), event, data).await?;
            }
            tx.commit().await.map_err(db("committing a write attempt"))?;
            Ok(Some(row))
        })
    }

    /// Gives back the lease `owner` holds on the write without an attempt (e.g. the
    /// worker stops before sending): pending again, due now. `false` if `owner` did not
    /// hold it.
    pub async fn release_write(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        on_backend!(self, |s| {
            let now = now();
            let done = sqlx::query(
                "UPDATE writes SET state = 'pending', lease_owner = NULL, lease_until = NULL, \
                 next_attempt_at = $1, updated_at = $1 WHERE id = $2 AND lease_owner = $3 AND state = 'in_flight'",
            )
            .bind_all((now, id, owner))
            .execute(&s.pool)
            .await
            .map_err(db("releasing a write"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Gives back every write `owner` holds (a daemon stopping with writes in flight):
    /// pending again, due now, so the next daemon takes them at once instead of after
    /// their lease. A create among them may have reached the provider: its claim count
    /// makes the next attempt look it up first. The number released.
    pub async fn release_writes_of(&self, owner: &str) -> Result<u64, StoreError> {
        on_backend!(self, |s| {
            let now = now();
            let done = sqlx::query(
                "UPDATE writes SET state = 'pending', lease_owner = NULL, lease_until = NULL, \
                 next_attempt_at = $1, updated_at = $1 WHERE lease_owner = $2 AND state = 'in_flight'",
            )
            .bind_all((now, owner))
            .execute(&s.pool)
            .await
            .map_err(db("releasing writes"))?;
            Ok(done.rows_affected())
        })
    }

    /// Up to `filter.limit` writes, newest first, of the tenant, state and provider the
    /// filter names (every one it leaves `None`).
    pub async fn list_writes(&self, filter: &WriteFilter) -> Result<Vec<WriteRow>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<WriteRow> = sqlx::query_as(concat!(
                "SELECT ",
                write_columns!(),
                " FROM writes WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR state = $2) \
                 AND ($3 IS NULL OR provider = $3) ORDER BY created_at DESC, id DESC LIMIT $4"
            ))
            .bind_all((
                filter.tenant.as_ref().map(TenantId::as_str),
                filter.state.map(WriteState::as_str),
                filter.provider.as_ref().map(ProviderId::as_str),
                filter.limit,
            ))
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing writes"))?;
            Ok(rows)
        })
    }

    /// One write with its attempts, oldest first.
    pub async fn get_write(&self, id: &str) -> Result<Option<WriteDetail>, StoreError> {
        on_backend!(self, |s| {
            let write: Option<WriteRow> =
                sqlx::query_as(concat!("SELECT ", write_columns!(), " FROM writes WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&s.pool)
                    .await
                    .map_err(db("reading a write"))?;
            let Some(write) = write else {
                return Ok(None);
            };
            // Only the attempts the row counts: one settled after the row was read would
            // show an attempt whose outcome the row does not.
            let attempts: Vec<WriteAttempt> = sqlx::query_as(
                "SELECT write_id, attempt, status, provider_message, latency_ms, error, at \
                 FROM write_attempts WHERE write_id = $1 AND attempt <= $2 ORDER BY attempt",
            )
            .bind(id)
            .bind(write.attempts)
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading a write's attempts"))?;
            Ok(Some(WriteDetail { write, attempts }))
        })
    }

    /// Queues a `failed` or `conflict` write again, due now (with `force`, it will
    /// overwrite a newer provider version). [`StoreError::NotFound`] if there is no such
    /// write, [`StoreError::Conflict`] if it is in another state.
    pub async fn retry_write(&self, id: &str, force: bool) -> Result<WriteRow, StoreError> {
        let row = on_backend!(self, |s| {
            let now = now();
            let row: Option<WriteRow> = sqlx::query_as(concat!(
                "UPDATE writes SET state = 'pending', next_attempt_at = $1, updated_at = $1, \
                 finished_at = NULL, error = NULL, error_class = NULL, force = (force OR $2) \
                 WHERE id = $3 AND state IN ('failed', 'conflict') RETURNING ",
                write_columns!()
            ))
            .bind_all((now, force, id))
            .fetch_optional(&s.pool)
            .await
            .map_err(db("retrying a write"))?;
            row
        });
        match row {
            Some(row) => Ok(row),
            None => Err(self.unchanged(id, "retried", "only failed or conflict writes can be retried").await),
        }
    }

    /// Cancels a pending write (not one in flight: it may be reaching the provider).
    /// [`StoreError::NotFound`] if there is no such write, [`StoreError::Conflict`] if it
    /// is not pending.
    pub async fn cancel_write(&self, id: &str) -> Result<WriteRow, StoreError> {
        let row = on_backend!(self, |s| {
            let now = now();
            let row: Option<WriteRow> = sqlx::query_as(concat!(
                "UPDATE writes SET state = 'cancelled', updated_at = $1, finished_at = $1 \
                 WHERE id = $2 AND state = 'pending' RETURNING ",
                write_columns!()
            ))
            .bind_all((now, id))
            .fetch_optional(&s.pool)
            .await
            .map_err(db("cancelling a write"))?;
            row
        });
        match row {
            Some(row) => Ok(row),
            None => Err(self.unchanged(id, "cancelled", "only pending writes can be cancelled").await),
        }
    }

    /// The error for a write that a retry or cancel left unchanged: missing, or in a
    /// state that does not allow it.
    async fn unchanged(&self, id: &str, done: &str, rule: &str) -> StoreError {
        match self.get_write(id).await {
            Err(err) => err,
            Ok(None) => no_write(id),
            Ok(Some(d)) => StoreError::Conflict {
                what: format!("write {id} is {} and cannot be {done}; {rule}", describe(d.write.state)),
            },
        }
    }
}

/// A state as a sentence fragment.
fn describe(state: WriteState) -> &'static str {
    match state {
        WriteState::Pending => "pending",
        WriteState::InFlight => "in flight (a worker is sending it)",
        WriteState::Succeeded => "already succeeded",
        WriteState::Failed => "failed",
        WriteState::Conflict => "in conflict",
        WriteState::Cancelled => "already cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_and_states_round_trip_their_words() {
        for op in WriteOp::ALL {
            assert_eq!(WriteOp::try_from(op.as_str().to_owned()), Ok(op));
        }
        for state in WriteState::ALL {
            assert_eq!(WriteState::parse(state.as_str()), Some(state));
        }
        assert!(WriteOp::try_from("upsert".to_owned()).unwrap_err().contains("`upsert`"));
        assert!(WriteState::try_from("done".to_owned()).unwrap_err().contains("`done`"));
    }

    #[test]
    fn provider_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_PROVIDER_MESSAGE);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_PROVIDER_MESSAGE && cut.len() >= MAX_PROVIDER_MESSAGE - 1);
        assert_eq!(bounded("short"), "short");
    }
}
