//! Write-back as an operator or a tenant admin uses it: submit a write (checked against
//! the catalog, stored in the outbox, answered at once with its id and state), list,
//! show with its attempts, retry, cancel. `tributary writes …` (on the store, as the
//! operator) and the control socket's `writes` command (for whoever asks) both run
//! [`Writes::run`], so the checks and scopes are here only.
//!
//! A tenant admin acts on its own tenant's writes only: another tenant's write answers
//! exactly like one that does not exist, and it cannot submit to or list another tenant.

use serde_json::{Value, json};

use super::protocol::{Scope, WriteCommand, WriteList, WriteSubmit};
use crate::config::{Catalog, ConflictCheck, WriteOp};
use crate::mapping::{text_of, version_target};
use crate::model::{ConnectionStatus, EntityName, Owner, ProviderId, TenantId, UserId};
use crate::store::{NewWrite, Store, StoreError, WriteDetail, WriteFilter, WriteRow, WriteState};
use crate::tenants::Tenants;

/// The largest record a write carries, as compact JSON.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The most writes one `list` answer holds.
pub const MAX_LIST: i64 = 10_000;
/// Writes `list` holds when not told.
pub const DEFAULT_LIST: i64 = 50;

/// Why a write command was not done.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No such write — or one the asker may not see.
    #[error("no write `{0}`")]
    NotFound(String),
    /// Out of the asker's scope.
    #[error("{0}")]
    Refused(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The write-back outbox of a store as `scope` may use it, checked against `catalog`.
pub struct Writes<'a> {
    pub store: &'a Store,
    pub catalog: &'a Catalog,
    pub scope: &'a Scope,
}

impl Writes<'_> {
    /// Runs `command`; its answer as the control socket replies it (and `--json` prints it).
    pub async fn run(&self, command: &WriteCommand) -> Result<Value, WriteError> {
        Ok(match command {
            WriteCommand::Submit(submit) => {
                let (write, created) = self.submit(submit).await?;
                json!({ "write": write, "created": created })
            }
            WriteCommand::List(list) => json!(self.list(list).await?),
            WriteCommand::Show(s) => json!(self.show(&s.id).await?),
            WriteCommand::Retry(r) => json!(self.retry(&r.id, r.force).await?),
            WriteCommand::Cancel(c) => json!(self.cancel(&c.id).await?),
        })
    }

    /// The version of the object tributary last synced, where the provider's writes of
    /// the entity check conflicts and the tenant's mapping keeps the `version_field` in a
    /// target field: an update's base version when the writer names none.
    async fn synced_version(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        entity: &EntityName,
        id: &str,
    ) -> Result<Option<String>, WriteError> {
        let Some(spec) = self.catalog.manifests.get(provider.as_str()).and_then(|m| m.writes.get(entity.as_str()))
        else {
            return Ok(None);
        };
        let Some(field) = spec.version_field.as_deref().filter(|_| spec.conflict != ConflictCheck::None) else {
            return Ok(None);
        };
        let view = Tenants::new(self.catalog, self.store, "writes")
            .require(tenant)
            .await
            .map_err(|e| WriteError::Invalid(e.to_string()))?;
        let mapping = view.effective.providers.get(provider).and_then(|p| p.config.mappings.get(entity.as_str()));
        let Some(target) = mapping.and_then(|m| version_target(m, field)) else {
            return Ok(None);
        };
        let record = self.store.get_record(tenant, entity, provider, id).await?;
        Ok(record.filter(|r| r.deleted_at.is_none()).and_then(|r| r.data.get(target).and_then(text_of)))
    }

    /// Checks a write against the catalog and the tenant's connections and stores it;
    /// `(write, created)`, `created` false when its idempotency key named an earlier one.
    pub async fn submit(&self, s: &WriteSubmit) -> Result<(WriteRow, bool), WriteError> {
        self.own_tenant(&s.tenant)?;
        let tenant = parse(TenantId::parse, &s.tenant)?;
        let provider = parse(ProviderId::parse, &s.provider)?;
        let entity = parse(EntityName::parse, &s.entity)?;
        let owner = s.owner.as_deref().map(|u| parse(UserId::parse, u)).transpose()?;
        let op = WriteOp::parse(&s.op).ok_or_else(|| {
            WriteError::Invalid(format!("unknown operation `{}` (known: {})", s.op, list_of(WriteOp::ALL)))
        })?;
        check_record(&s.record)?;
        if self.store.get_tenant(&tenant).await?.is_none() {
            return Err(WriteError::Invalid(format!("no tenant `{tenant}`")));
        }
        self.check_declared(&provider, &entity, op)?;
        let owner = Owner::of(owner.as_ref());
        let connection = self.store.get_connection(&tenant, &provider, owner).await?;
        match connection {
            Some(c) if c.status != ConnectionStatus::Disabled => {}
            Some(_) | None if owner == Owner::Company => {
                return Err(WriteError::Invalid(format!("provider `{provider}` is not enabled for tenant `{tenant}`")));
            }
            _ => {
                return Err(WriteError::Invalid(format!(
                    "{owner} has no enabled connection to `{provider}` at tenant `{tenant}`"
                )));
            }
        }
        let external_id = s.id.as_deref().filter(|id| !id.is_empty());
        match (op.needs_id(), external_id) {
            (true, None) => {
                return Err(WriteError::Invalid(format!("`{op}` needs the object's id (--id EXTERNAL_ID)")));
            }
            (false, Some(_)) => {
                return Err(WriteError::Invalid("`create` takes no id: the provider assigns it".into()));
            }
            _ => {}
        }
        let base_version = match (s.base_version.as_deref().filter(|v| !v.is_empty()), op, external_id) {
            (Some(v), _, _) => Some(v.to_owned()),
            (None, WriteOp::Update, Some(id)) if !s.force => {
                self.synced_version(&tenant, &provider, &entity, id).await?
            }
            _ => None,
        };
        let new = NewWrite {
            tenant: &tenant,
            provider: &provider,
            owner,
            entity: &entity,
            op,
            external_id,
            idempotency_key: s.idempotency_key.as_deref().filter(|k| !k.is_empty()),
            base_version: base_version.as_deref(),
            force: s.force,
            payload: &s.record,
        };
        let (write, created) = self.store.submit_write(&new).await?;
        if created {
            tracing::info!(
                write = %write.id, tenant = %tenant, provider = %provider, entity = %entity, op = %op,
                "write submitted"
            );
        }
        Ok((write, created))
    }

    /// The latest writes in scope, newest first.
    pub async fn list(&self, l: &WriteList) -> Result<Vec<WriteRow>, WriteError> {
        if let Some(t) = &l.tenant {
            self.own_tenant(t)?;
        }
        let tenant = l.tenant.as_deref().or(self.own()).map(|t| parse(TenantId::parse, t)).transpose()?;
        let state = l
            .state
            .as_deref()
            .map(|s| {
                WriteState::parse(s).ok_or_else(|| {
                    WriteError::Invalid(format!("unknown state `{s}` (known: {})", list_of(WriteState::ALL)))
                })
            })
            .transpose()?;
        let provider = l.provider.as_deref().map(|p| parse(ProviderId::parse, p)).transpose()?;
        let limit = l.limit.unwrap_or(DEFAULT_LIST);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(WriteError::Invalid(format!("the limit must be between 1 and {MAX_LIST}, not {limit}")));
        }
        Ok(self.store.list_writes(&WriteFilter { tenant, state, provider, limit }).await?)
    }

    /// One write with its attempts.
    pub async fn show(&self, id: &str) -> Result<WriteDetail, WriteError> {
        self.visible(id).await
    }

    /// Queues a failed or conflicting write again (`force`: overwrite a newer version).
    pub async fn retry(&self, id: &str, force: bool) -> Result<WriteRow, WriteError> {
        let write = self.visible(id).await?.write;
        let row = self.store.retry_write(&write.id, force).await?;
        tracing::info!(write = %row.id, force, "write queued again");
        Ok(row)
    }

    /// Cancels a pending write.
    pub async fn cancel(&self, id: &str) -> Result<WriteRow, WriteError> {
        let write = self.visible(id).await?.write;
        let row = self.store.cancel_write(&write.id).await?;
        tracing::info!(write = %row.id, "write cancelled");
        Ok(row)
    }

    /// The tenant a tenant admin is confined to; `None` for the operator.
    fn own(&self) -> Option<&str> {
        match self.scope {
            Scope::Operator => None,
            Scope::Tenant { tenant } => Some(tenant),
        }
    }

    /// Refuses a tenant admin acting on another tenant.
    fn own_tenant(&self, tenant: &str) -> Result<(), WriteError> {
        match self.own() {
            Some(own) if own != tenant => {
                Err(WriteError::Refused(format!("a tenant admin of `{own}` cannot act on tenant `{tenant}`")))
            }
            _ => Ok(()),
        }
    }

    /// Whether the provider's manifest declares `op` for `entity`.
    fn check_declared(&self, provider: &ProviderId, entity: &EntityName, op: WriteOp) -> Result<(), WriteError> {
        let Some(manifest) = self.catalog.manifests.get(provider.as_str()) else {
            return Err(WriteError::Invalid(format!("no connector `{provider}`")));
        };
        let Some(spec) = manifest.writes.get(entity.as_str()) else {
            let declared: Vec<&str> = manifest.writes.keys().map(String::as_str).collect();
            return Err(WriteError::Invalid(format!(
                "connector `{provider}` declares no writes of `{entity}` (it declares: {})",
                if declared.is_empty() { "none".to_owned() } else { declared.join(", ") }
            )));
        };
        if spec.op(op).is_none() {
            let declared: Vec<&str> = spec.ops().map(|(o, _)| o.as_str()).collect();
            return Err(WriteError::Invalid(format!(
                "connector `{provider}` declares no `{op}` of `{entity}` (it declares: {})",
                if declared.is_empty() { "none".to_owned() } else { declared.join(", ") }
            )));
        }
        Ok(())
    }

    /// The write `id`, if it exists and is in scope; otherwise [`WriteError::NotFound`],
    /// the same for both.
    async fn visible(&self, id: &str) -> Result<WriteDetail, WriteError> {
        let found = self.store.get_write(id).await?;
        match (found, self.own()) {
            (Some(d), None) => Ok(d),
            (Some(d), Some(own)) if d.write.tenant_id.as_str() == own => Ok(d),
            _ => Err(WriteError::NotFound(id.to_owned())),
        }
    }
}

/// A record must be a JSON object of at most [`MAX_RECORD_BYTES`].
pub fn check_record(record: &Value) -> Result<(), WriteError> {
    if !record.is_object() {
        return Err(WriteError::Invalid(format!("the record must be a JSON object, not {}", kind(record))));
    }
    let size = record.to_string().len();
    if size > MAX_RECORD_BYTES {
        return Err(WriteError::Invalid(format!(
            "the record is {size} bytes; at most {MAX_RECORD_BYTES} are accepted"
        )));
    }
    Ok(())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse<T, E: std::fmt::Display>(parse: fn(&str) -> Result<T, E>, text: &str) -> Result<T, WriteError> {
    parse(text).map_err(|e| WriteError::Invalid(e.to_string()))
}

fn list_of<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_objects_of_bounded_size() {
        assert!(check_record(&json!({"email": "a@example.com"})).is_ok());
        for (value, needle) in [(json!([1]), "an array"), (json!("x"), "a string"), (Value::Null, "null")] {
            let err = check_record(&value).unwrap_err().to_string();
            assert!(err.contains("must be a JSON object") && err.contains(needle), "{err}");
        }
        let big = json!({ "notes": "x".repeat(MAX_RECORD_BYTES) });
        assert!(check_record(&big).unwrap_err().to_string().contains("at most"));
    }
}
