//! Master-key rotation: which key ids the sealed values are under, the registered
//! rotation (the key every process seals with once it starts, read from its key file
//! by [`Store::follow_key_rotation`]), and the batches that re-encrypt values under it
//! ([`Store::rotate_keys`]): each batch replaces blobs in one transaction, only where
//! the stored blob is still the one that was read, so an interrupted rotation resumes
//! where it stopped and nothing is lost or sealed twice. No key is ever stored: only
//! key ids and the path of the new key's file.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::error::{StoreError, corrupt, db};
use super::rows::now;
use super::statement::Bind as _;
use crate::model::{AuditEntry, Owner, ProviderId, SealedBlob, TenantId, UserId};
use crate::secrets::{MasterKey, Sealed};

/// What [`Store::rotate_keys`] has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationProgress {
    /// The key every value is re-encrypted under.
    pub key_id: String,
    /// Values re-encrypted by this call.
    pub rewrapped: u64,
    /// Batches committed by this call.
    pub batches: u64,
    /// Whether no value remains under another key id (the rotation is finished).
    pub finished: bool,
}

/// What a sealed value is, by where it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SealedKind {
    /// `connections.credentials`.
    Credentials,
    /// `connections.auth_state` (a connection's current access token).
    Token,
    /// `webhook_endpoints.secret` (an outbound endpoint's signing secret).
    WebhookSecret,
}

impl SealedKind {
    pub const ALL: [SealedKind; 3] = [Self::Credentials, Self::Token, Self::WebhookSecret];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credentials => "credentials",
            Self::Token => "token",
            Self::WebhookSecret => "webhook_secret",
        }
    }
}

/// How many values of one kind are sealed under one key id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SealedCount {
    pub key_id: String,
    pub kind: SealedKind,
    pub count: i64,
}

/// A registered rotation: the key every process seals with since `started_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct KeyRotation {
    pub key_id: String,
    /// The path of the key's file (the same on every host that shares the store).
    pub key_file: String,
    pub started_at: DateTime<Utc>,
    /// Set once no sealed value remained under another key id.
    pub finished_at: Option<DateTime<Utc>>,
    /// Values re-encrypted under it so far (over every run of `keys rotate`).
    pub rewrapped: i64,
}

/// One sealed value to re-encrypt, with what its additional data binds it to.
#[derive(Debug, Clone)]
pub struct SealedValue {
    pub kind: SealedKind,
    /// `connections.id` (credentials, token) or `webhook_endpoints.id` (webhook secret).
    pub row: String,
    /// Tenant, provider and owning user ('' for the company) of a connection's value.
    pub tenant: String,
    pub provider: String,
    pub owner_user: String,
    pub blob: SealedBlob,
}

impl Store {
    /// How many sealed values each key id holds, by kind (key ids in order).
    pub async fn sealed_key_counts(&self) -> Result<Vec<SealedCount>, StoreError> {
        on_backend!(self, |s| {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT credentials_key_id, 'credentials', COUNT(*) FROM connections \
                 WHERE credentials IS NOT NULL GROUP BY credentials_key_id \
                 UNION ALL SELECT auth_state_key_id, 'token', COUNT(*) FROM connections \
                 WHERE auth_state IS NOT NULL GROUP BY auth_state_key_id \
                 UNION ALL SELECT secret_key_id, 'webhook_secret', COUNT(*) FROM webhook_endpoints \
                 GROUP BY secret_key_id ORDER BY 1, 2",
            )
            .fetch_all(&s.pool)
            .await
            .map_err(db("counting sealed values by key id"))?;
            Ok(rows
                .into_iter()
                .filter_map(|(key_id, kind, count)| {
                    let kind = SealedKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
                    Some(SealedCount { key_id, kind, count })
                })
                .collect())
        })
    }

    /// The newest registered rotation, if any.
    pub async fn key_rotation(&self) -> Result<Option<KeyRotation>, StoreError> {
        on_backend!(self, |s| {
            let row: Option<KeyRotation> = sqlx::query_as(
                "SELECT key_id, key_file, started_at, finished_at, rewrapped FROM key_rotations \
                 ORDER BY started_at DESC, key_id LIMIT 1",
            )
            .fetch_optional(&s.pool)
            .await
            .map_err(db("reading the key rotation"))?;
            Ok(row)
        })
    }

    /// Registers a rotation to `key_id`, whose file is `key_file`: from now on it is the
    /// newest (a rotation to a key registered before starts again).
    pub async fn register_key_rotation(&self, key_id: &str, key_file: &str) -> Result<KeyRotation, StoreError> {
        on_backend!(self, |s| {
            let row: KeyRotation = sqlx::query_as(
                "INSERT INTO key_rotations (key_id, key_file, started_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id) DO UPDATE SET key_file = excluded.key_file, \
                 started_at = CASE WHEN key_rotations.finished_at IS NULL \
                 AND key_rotations.key_file = excluded.key_file \
                 THEN key_rotations.started_at ELSE excluded.started_at END, finished_at = NULL \
                 RETURNING key_id, key_file, started_at, finished_at, rewrapped",
            )
            .bind_all((key_id, key_file, now()))
            .fetch_one(&s.pool)
            .await
            .map_err(db("registering a key rotation"))?;
            Ok(row)
        })
    }

    /// Up to `limit` sealed values of `kind` under a key id other than `key_id`.
    pub async fn sealed_not_under(
        &self,
        kind: SealedKind,
        key_id: &str,
        limit: i64,
    ) -> Result<Vec<SealedValue>, StoreError> {
        type Raw = (String, String, String, String, Vec<u8>, String);
        on_backend!(self, |s| {
            let sql = match kind {
                SealedKind::Credentials => {
                    "SELECT CAST(id AS TEXT), tenant_id, provider, owner_user, credentials, credentials_key_id \
                     FROM connections WHERE credentials IS NOT NULL AND credentials_key_id <> $1 \
                     ORDER BY id LIMIT $2"
                }
                SealedKind::Token => {
                    "SELECT CAST(id AS TEXT), tenant_id, provider, owner_user, auth_state, auth_state_key_id \
                     FROM connections WHERE auth_state IS NOT NULL AND auth_state_key_id <> $1 \
                     ORDER BY id LIMIT $2"
                }
                SealedKind::WebhookSecret => {
                    "SELECT id, COALESCE(tenant_id, ''), '', '', secret, secret_key_id FROM webhook_endpoints \
                     WHERE secret_key_id <> $1 ORDER BY id LIMIT $2"
                }
            };
            let rows: Vec<Raw> = sqlx::query_as(sql)
                .bind_all((key_id, limit))
                .fetch_all(&s.pool)
                .await
                .map_err(db("reading sealed values to re-encrypt"))?;
            Ok(rows
                .into_iter()
                .map(|(row, tenant, provider, owner_user, bytes, key_id)| SealedValue {
                    kind,
                    row,
                    tenant,
                    provider,
                    owner_user,
                    blob: SealedBlob { key_id, bytes },
                })
                .collect())
        })
    }

    /// Replaces each value's blob by its re-encryption, in one transaction, where the
    /// stored blob is still the one read (a value written meanwhile, e.g. a refreshed
    /// token, is left as it is); returns how many were replaced. The rotation to the
    /// new blobs' key counts them.
    pub async fn rewrap_sealed(&self, values: &[(SealedValue, SealedBlob)]) -> Result<u64, StoreError> {
        on_backend!(self, |s| {
            let (mut tx, _) = s.begin_write().await?;
            let mut done = 0;
            for (old, new) in values {
                let query = match old.kind {
                    SealedKind::Credentials | SealedKind::Token => {
                        let sql = if old.kind == SealedKind::Credentials {
                            "UPDATE connections SET credentials = $1, credentials_key_id = $2 \
                             WHERE id = $3 AND credentials_key_id = $4 AND credentials = $5"
                        } else {
                            "UPDATE connections SET auth_state = $1, auth_state_key_id = $2 \
                             WHERE id = $3 AND auth_state_key_id = $4 AND auth_state = $5"
                        };
                        let id: i64 = old.row.parse().map_err(|_| corrupt(format!("connection id `{}`", old.row)))?;
                        sqlx::query(sql).bind_all((new.bytes.as_slice(), new.key_id.as_str(), id))
                    }
                    SealedKind::WebhookSecret => sqlx::query(
                        "UPDATE webhook_endpoints SET secret = $1, secret_key_id = $2 \
                         WHERE id = $3 AND secret_key_id = $4 AND secret = $5",
                    )
                    .bind_all((new.bytes.as_slice(), new.key_id.as_str(), old.row.as_str())),
                };
                let r = query
                    .bind_all((old.blob.key_id.as_str(), old.blob.bytes.as_slice()))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("re-encrypting a sealed value"))?;
                done += r.rows_affected();
            }
            if let Some((_, first)) = values.first() {
                sqlx::query("UPDATE key_rotations SET rewrapped = rewrapped + $1 WHERE key_id = $2")
                    .bind_all((done as i64, first.key_id.as_str()))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("counting re-encrypted values"))?;
            }
            tx.commit().await.map_err(db("committing re-encrypted values"))?;
            Ok(done)
        })
    }

    /// Marks the rotation to `key_id` finished if no sealed value is under another key
    /// id (checked in the same transaction); returns whether it did.
    pub async fn finish_key_rotation(&self, key_id: &str) -> Result<bool, StoreError> {
        on_backend!(self, |s| {
            let (mut tx, at) = s.begin_write().await?;
            let r = sqlx::query(
                "UPDATE key_rotations SET finished_at = $1 WHERE key_id = $2 AND finished_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM connections WHERE (credentials IS NOT NULL \
                 AND credentials_key_id <> $2) OR (auth_state IS NOT NULL AND auth_state_key_id <> $2)) \
                 AND NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE secret_key_id <> $2)",
            )
            .bind_all((at, key_id))
            .execute(&mut *tx)
            .await
            .map_err(db("finishing a key rotation"))?;
            tx.commit().await.map_err(db("committing a finished key rotation"))?;
            Ok(r.rows_affected() == 1)
        })
    }

    /// Makes `key` seal with the key of the newest registered rotation, reading its key
    /// file when the ring does not hold it yet (the file must be private and hold the
    /// registered key id). Returns the id adopted, `None` if nothing changed.
    pub async fn follow_key_rotation(&self, key: &MasterKey) -> Result<Option<String>, StoreError> {
        let Some(rotation) = self.key_rotation().await? else {
            return Ok(None);
        };
        if key.id() == rotation.key_id {
            return Ok(None);
        }
        let path = std::path::Path::new(&rotation.key_file);
        let invalid = |why: String| StoreError::Invalid {
            what: format!(
                "the store's key rotation (started {}) seals with key `{}` from {}, but {why}",
                rotation.started_at.to_rfc3339(),
                rotation.key_id,
                path.display()
            ),
        };
        let new = MasterKey::read(path).map_err(|e| invalid(e.to_string()))?;
        if new.id() != rotation.key_id {
            return Err(invalid(format!("that file now holds key `{}`", new.id())));
        }
        key.adopt(new);
        tracing::info!(key_id = %rotation.key_id, key_file = %path.display(), "sealing with the rotated master key");
        Ok(Some(rotation.key_id))
    }

    /// Re-encrypts every sealed value under `key`'s sealing key, `batch` values per
    /// transaction, opening each with whichever key of the ring sealed it. After each
    /// batch `after_batch` may stop the rotation (it resumes on the next call). Marks
    /// the registered rotation finished when no value remains under another key id.
    pub async fn rotate_keys(
        &self,
        key: &MasterKey,
        batch: usize,
        mut after_batch: impl FnMut(&RotationProgress) -> std::ops::ControlFlow<()>,
    ) -> Result<RotationProgress, StoreError> {
        let target = key.id();
        let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut progress = RotationProgress { key_id: target.clone(), ..RotationProgress::default() };
        loop {
            let mut found = false;
            for kind in SealedKind::ALL {
                loop {
                    let values = self.sealed_not_under(kind, &target, limit).await?;
                    if values.is_empty() {
                        break;
                    }
                    found = true;
                    let pairs =
                        values.into_iter().map(|v| reseal(key, &v).map(|b| (v, b))).collect::<Result<Vec<_>, _>>()?;
                    progress.rewrapped += self.rewrap_sealed(&pairs).await?;
                    progress.batches += 1;
                    if after_batch(&progress).is_break() {
                        return Ok(progress);
                    }
                }
            }
            if !found && self.finish_key_rotation(&target).await? {
                progress.finished = true;
                return Ok(progress);
            }
            if !found {
                // Not registered, or already finished: nothing remains either way.
                progress.finished = self.sealed_key_counts().await?.iter().all(|c| c.key_id == target);
                return Ok(progress);
            }
        }
    }
}

/// What [`Store::forget_key`] removed (or would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    pub key_id: String,
    /// Connections whose credentials were removed (`tenant/provider`, `…/user U`).
    pub credentials: Vec<String>,
    /// Stored access tokens removed (obtained again on the next run).
    pub tokens: i64,
    /// Outbound webhook endpoints removed (their signing secret is lost with the key).
    pub webhook_endpoints: Vec<String>,
}

impl Store {
    /// Removes every value sealed with `key_id` (a lost key): credentials (their
    /// connection becomes `pending`, its token goes too), tokens, and the webhook
    /// endpoints whose signing secret it sealed (with their queued messages); with
    /// `apply` false, only says what it would remove. One transaction, with `audit`.
    /// The key of a registered rotation cannot be forgotten.
    pub async fn forget_key(&self, key_id: &str, apply: bool, audit: &AuditEntry) -> Result<Forgotten, StoreError> {
        if self.key_rotation().await?.is_some_and(|r| r.key_id == key_id) {
            return Err(StoreError::Invalid {
                what: format!("key `{key_id}` is the key of the registered rotation: every process seals with it"),
            });
        }
        on_backend!(self, |s| {
            let (mut tx, at) = s.begin_write().await?;
            let creds: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT tenant_id, provider, owner_user FROM connections WHERE credentials_key_id = $1 \
                 ORDER BY tenant_id, provider, owner_user",
            )
            .bind(key_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing credentials under a key"))?;
            let (tokens,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM connections WHERE auth_state_key_id = $1")
                .bind(key_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("counting tokens under a key"))?;
            let endpoints: Vec<(String,)> =
                sqlx::query_as("SELECT id FROM webhook_endpoints WHERE secret_key_id = $1 ORDER BY id")
                    .bind(key_id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("listing webhook endpoints under a key"))?;
            let out = Forgotten {
                key_id: key_id.to_owned(),
                credentials: creds
                    .into_iter()
                    .map(|(t, p, u)| if u.is_empty() { format!("{t}/{p}") } else { format!("{t}/{p}/user {u}") })
                    .collect(),
                tokens,
                webhook_endpoints: endpoints.into_iter().map(|(id,)| id).collect(),
            };
            if !apply {
                return Ok(out);
            }
            let reason =
                format!("its credentials were sealed with master key {key_id}, which was forgotten: set them again");
            sqlx::query(
                "UPDATE connections SET credentials = NULL, credentials_key_id = NULL, \
                 credentials_version = credentials_version + 1, \
                 status = CASE WHEN status = 'disabled' THEN status ELSE 'pending' END, \
                 status_reason = CASE WHEN status = 'disabled' THEN status_reason ELSE $2 END, \
                 auth_state = NULL, auth_state_key_id = NULL, auth_state_version = NULL, \
                 auth_state_expires_at = NULL, updated_at = $3 WHERE credentials_key_id = $1",
            )
            .bind_all((key_id, reason.as_str(), at))
            .execute(&mut *tx)
            .await
            .map_err(db("forgetting credentials"))?;
            sqlx::query(
                "UPDATE connections SET auth_state = NULL, auth_state_key_id = NULL, auth_state_version = NULL, \
                 auth_state_expires_at = NULL, updated_at = $2 WHERE auth_state_key_id = $1",
            )
            .bind_all((key_id, at))
            .execute(&mut *tx)
            .await
            .map_err(db("forgetting tokens"))?;
            sqlx::query("DELETE FROM webhook_endpoints WHERE secret_key_id = $1")
                .bind(key_id)
                .execute(&mut *tx)
                .await
                .map_err(db("forgetting webhook endpoints"))?;
            super::jobs::insert_audit(&mut *tx, audit).await?;
            tx.commit().await.map_err(db("committing a forgotten key"))?;
            Ok(out)
        })
    }
}

/// `value` opened with the ring and sealed again with its sealing key.
fn reseal(key: &MasterKey, value: &SealedValue) -> Result<SealedBlob, StoreError> {
    let bad = |e: String| StoreError::Invalid {
        what: format!("cannot re-encrypt the {} of {}: {e}", value.kind.as_str(), value.describe()),
    };
    if value.kind == SealedKind::WebhookSecret {
        let plain = key.open_webhook_secret(&value.row, &value.blob).map_err(|e| bad(e.to_string()))?;
        return Ok(key.seal_webhook_secret(&value.row, &plain));
    }
    let tenant = TenantId::parse(&value.tenant).map_err(|e| bad(e.to_string()))?;
    let provider = ProviderId::parse(&value.provider).map_err(|e| bad(e.to_string()))?;
    let user = (!value.owner_user.is_empty()).then(|| UserId::parse(&value.owner_user)).transpose();
    let user = user.map_err(|e| bad(e.to_string()))?;
    let owner = Owner::of(user.as_ref());
    let what = if value.kind == SealedKind::Credentials { Sealed::Credentials } else { Sealed::AuthState };
    let plain = key.open_as(what, &tenant, &provider, owner, &value.blob).map_err(|e| bad(e.to_string()))?;
    Ok(key.seal_as(what, &tenant, &provider, owner, &plain))
}

impl SealedValue {
    /// Which row holds it, for messages.
    fn describe(&self) -> String {
        match self.kind {
            SealedKind::WebhookSecret => format!("webhook endpoint {}", self.row),
            _ if self.owner_user.is_empty() => format!("connection {}/{}", self.tenant, self.provider),
            _ => format!("connection {}/{} of user {}", self.tenant, self.provider, self.owner_user),
        }
    }
}
