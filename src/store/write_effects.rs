//! What a settled write changes besides its own row, in the transaction that settles it:
//! the stored record (read-your-writes, with the next number of the tenant's change
//! feed) and the `write.*` outbound event.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::{StoreError, db};
use super::postgres::PgStore;
use super::rows::content_hash_of_text;
use super::sqlite::SqliteStore;
use super::statement::Bind;
use super::writes::{WriteRow, WriteSettle, WriteState, bounded};
use crate::model::{EntityName, TenantId, UserId};

/// What a successful write changes in the stored records (read-your-writes), applied in
/// the transaction that settles it with the next number of the tenant's change feed.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordEffect {
    /// `fields` (target fields, a JSON object) laid over the stored record of
    /// `external_id` (a new record when there is none).
    Upsert { entity: EntityName, external_id: String, fields: Value },
    /// The object is gone at the provider: the stored record is marked deleted.
    Delete { entity: EntityName, external_id: String },
}

/// The outbound event a write that reached a final state reports, with its data:
/// `write.succeeded`, `write.failed` or `write.conflict`.
pub(super) fn write_event(row: &WriteRow, settle: &WriteSettle) -> Option<(&'static str, Value)> {
    let event = match row.state {
        WriteState::Succeeded => "write.succeeded",
        WriteState::Failed => "write.failed",
        WriteState::Conflict => "write.conflict",
        WriteState::Pending | WriteState::InFlight | WriteState::Cancelled => return None,
    };
    let mut data = serde_json::json!({
        "tenant_id": row.tenant_id.as_str(),
        "write_id": row.id,
        "provider": row.provider.as_str(),
        "owner_user": row.owner_user.as_ref().map(UserId::as_str),
        "entity": row.entity.as_str(),
        "op": row.op.as_str(),
        "external_id": row.external_id,
        "idempotency_key": row.idempotency_key,
        "attempts": row.attempts,
        "status": settle.status(),
    });
    let extra = match settle {
        WriteSettle::Succeeded { result_id, result_version, .. } => {
            serde_json::json!({"result_id": result_id, "result_version": result_version})
        }
        WriteSettle::Failed { message, error_class, .. } => {
            serde_json::json!({"error": bounded(message), "error_class": error_class})
        }
        WriteSettle::Conflict { provider_version, base_version, .. } => {
            serde_json::json!({"provider_version": provider_version, "base_version": base_version})
        }
        WriteSettle::Retry { .. } => Value::Null,
    };
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    Some((event, data))
}

/// The upsert of a written record (`$1..$4` its key, `$5` data, `$6` hash, `$7` now, `$8`
/// change number); `$json` casts the data parameter.
macro_rules! upsert_written_record {
    ($json:literal) => {
        concat!(
            "INSERT INTO records (tenant_id, entity, provider, external_id, data, content_hash, first_seen, \
             last_synced, change_run, change_seq, change_kind) VALUES ($1, $2, $3, $4, $5",
            $json,
            ", $6, $7, $7, NULL, $8, 'inserted') ON CONFLICT (tenant_id, entity, provider, external_id) DO UPDATE SET \
             data = excluded.data, content_hash = excluded.content_hash, last_synced = excluded.last_synced, \
             deleted_at = NULL, change_seq = excluded.change_seq, change_kind = 'updated', change_run = NULL"
        )
    };
}

impl SqliteStore {
    /// A written record's data and whether it is deleted (the single writer holds it).
    const WRITTEN_RECORD: &'static str = "SELECT data, deleted_at IS NOT NULL FROM records \
         WHERE tenant_id = $1 AND entity = $2 AND provider = $3 AND external_id = $4";
    const UPSERT_WRITTEN_RECORD: &'static str = upsert_written_record!("");
}

impl PgStore {
    /// A written record's data and whether it is deleted, locked until the settle commits
    /// (a page writing the record waits, and then writes over it).
    const WRITTEN_RECORD: &'static str = "SELECT data::text, deleted_at IS NOT NULL FROM records \
         WHERE tenant_id = $1 AND entity = $2 AND provider = $3 AND external_id = $4 FOR UPDATE";
    const UPSERT_WRITTEN_RECORD: &'static str = upsert_written_record!("::jsonb");
}

macro_rules! write_effect_methods {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Applies a succeeded write's effect to the stored record inside the settle
            /// transaction; a changed record takes the next number of the tenant's feed.
            pub(super) async fn apply_record_effect(
                tx: &mut sqlx::Transaction<'static, $db>,
                row: &WriteRow,
                effect: &RecordEffect,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let (entity, external_id) = match effect {
                    RecordEffect::Upsert { entity, external_id, .. } | RecordEffect::Delete { entity, external_id } => {
                        (entity, external_id)
                    }
                };
                let key = (row.tenant_id.as_str(), entity.as_str(), row.provider.as_str(), external_id.as_str());
                let stored: Option<(String, bool)> = sqlx::query_as(Self::WRITTEN_RECORD)
                    .bind_all(key)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db("reading the written record"))?;
                match effect {
                    RecordEffect::Upsert { fields, .. } => {
                        let before: Option<Value> = match &stored {
                            Some((text, false)) => serde_json::from_str(text).ok(),
                            _ => None,
                        };
                        let mut data = before
                            .clone()
                            .filter(Value::is_object)
                            .unwrap_or_else(|| Value::Object(Default::default()));
                        if let (Value::Object(d), Value::Object(f)) = (&mut data, fields) {
                            d.extend(f.iter().map(|(k, v)| (k.clone(), v.clone())));
                        }
                        if before.as_ref() == Some(&data) {
                            return Ok(());
                        }
                        let json = data.to_string();
                        let hash = content_hash_of_text(&json);
                        let seq = Self::next_change(tx, &row.tenant_id).await?;
                        sqlx::query(Self::UPSERT_WRITTEN_RECORD)
                            .bind_all(key)
                            .bind_all((json.as_str(), hash.as_str(), now, seq))
                            .execute(&mut **tx)
                            .await
                            .map_err(db("writing the written record"))?;
                    }
                    RecordEffect::Delete { .. } => {
                        if !matches!(stored, Some((_, false))) {
                            return Ok(());
                        }
                        let seq = Self::next_change(tx, &row.tenant_id).await?;
                        sqlx::query(
                            "UPDATE records SET deleted_at = $5, change_seq = $6, change_kind = 'deleted', \
                             change_run = NULL WHERE tenant_id = $1 AND entity = $2 AND provider = $3 \
                             AND external_id = $4",
                        )
                        .bind_all(key)
                        .bind_all((now, seq))
                        .execute(&mut **tx)
                        .await
                        .map_err(db("marking the written record deleted"))?;
                    }
                }
                Ok(())
            }

            /// Takes the next number of the tenant's change feed inside the transaction.
            async fn next_change(
                tx: &mut sqlx::Transaction<'static, $db>,
                tenant: &TenantId,
            ) -> Result<i64, StoreError> {
                sqlx::query_scalar(
                    "INSERT INTO change_sequences (tenant_id, last_seq) VALUES ($1, 1) ON CONFLICT (tenant_id) \
                     DO UPDATE SET last_seq = change_sequences.last_seq + 1 RETURNING last_seq",
                )
                .bind(tenant.as_str())
                .fetch_one(&mut **tx)
                .await
                .map_err(db("advancing the tenant's change sequence"))
            }
        }
    };
}

write_effect_methods!(SqliteStore, sqlx::Sqlite);
write_effect_methods!(PgStore, sqlx::Postgres);
