//! The access token a connection's runs share, and the refresh lease that lets one
//! runner at a time (in any replica) spend the refresh token: SQL shared by both
//! backends.
//!
//! A refresh is: [`Store::lock_refresh`] (a lease on the connection row, taken only when
//! free or expired) → the token call → [`Store::save_token`], a compare-and-swap on
//! `credentials_version` fenced on the lease, which stores a rotated refresh token and
//! the new access token in one statement and releases the lease. A runner that finds the
//! lease taken waits and re-reads [`Store::get_auth`] until the holder's token appears.

use chrono::{DateTime, Utc};

use super::Store;
use super::error::{StoreError, corrupt, db};
use super::jobs::insert_audit;
use super::rows::{now, stored};
use super::statement::{Bind, connection, optional};
use super::types::{AuthRow, TokenWrite};
use crate::model::{AuditEntry, ConnectionStatus, Owner, ProviderId, SealedBlob, TenantId};

/// Columns of [`RawAuth`]. The token is returned only when it was obtained with the
/// current credentials; `refused` only when the refused grant is the current one.
macro_rules! auth_columns {
    () => {
        "credentials, credentials_key_id, credentials_version, status, \
         CASE WHEN auth_state_version = credentials_version THEN auth_state END AS auth_state, \
         auth_state_key_id, auth_state_serial, \
         COALESCE(refused_version = credentials_version, FALSE) AS refused, \
         refresh_lock_owner, refresh_lock_until"
    };
}

#[derive(sqlx::FromRow)]
struct RawAuth {
    credentials: Option<Vec<u8>>,
    credentials_key_id: Option<String>,
    credentials_version: i64,
    status: ConnectionStatus,
    auth_state: Option<Vec<u8>>,
    auth_state_key_id: Option<String>,
    auth_state_serial: i64,
    refused: bool,
    refresh_lock_owner: Option<String>,
    refresh_lock_until: Option<DateTime<Utc>>,
}

impl RawAuth {
    fn into_row(self, tenant: &TenantId, provider: &ProviderId, owner: Owner<'_>) -> Result<AuthRow, StoreError> {
        let blob = |bytes: Option<Vec<u8>>, key_id: Option<String>, what: &str| match (bytes, key_id) {
            (Some(bytes), Some(key_id)) => Ok(Some(SealedBlob { key_id, bytes })),
            (Some(_), None) => {
                Err(corrupt(format!("connections: {what} of {owner} for `{provider}` at `{tenant}` have no key id")))
            }
            (None, _) => Ok(None),
        };
        Ok(AuthRow {
            credentials: blob(self.credentials, self.credentials_key_id, "credentials")?,
            credentials_version: self.credentials_version,
            status: self.status,
            auth_state: blob(self.auth_state, self.auth_state_key_id, "the stored token")?,
            auth_state_serial: self.auth_state_serial,
            refused: self.refused,
            refresh_lock_owner: self.refresh_lock_owner,
            refresh_lock_until: self.refresh_lock_until,
        })
    }
}

/// `owner`'s connection to `provider` at the tenant, as a token refresh sees it.
const SELECT_AUTH: &str = concat!("SELECT ", auth_columns!(), " FROM connections WHERE ", connection_key!());

impl Store {
    /// Identifies this opened store within the process: clones share it, another
    /// [`Store::connect`] (even to the same database, as a replica would) gets another.
    pub fn instance_id(&self) -> u64 {
        match self {
            Store::Sqlite(s) => s.instance,
            Store::Postgres(s) => s.instance,
        }
    }

    /// The credentials and shared access token of `owner`'s connection to `provider` at
    /// the tenant, as a token refresh sees them; `None` if the connection does not exist.
    /// Each connection (the company's, each user's) has its own token.
    pub async fn get_auth(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
    ) -> Result<Option<AuthRow>, StoreError> {
        on_backend!(self, |s| {
            let key = connection(tenant, provider, owner);
            let raw: Option<RawAuth> = optional(&s.pool, SELECT_AUTH, key, "reading a connection's token").await?;
            raw.map(|r| r.into_row(tenant, provider, owner)).transpose()
        })
    }

    /// Takes (or renews) the connection's refresh lease for `holder` until `until`, if
    /// nobody else holds an unexpired one. Returns the row as it is then (`None`: someone
    /// else holds the lease, or there is no such connection).
    pub async fn lock_refresh(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        holder: &str,
        until: DateTime<Utc>,
    ) -> Result<Option<AuthRow>, StoreError> {
        on_backend!(self, |s| {
            let raw: Option<RawAuth> = sqlx::query_as(concat!(
                "UPDATE connections SET refresh_lock_owner = $4, refresh_lock_until = $5 WHERE ",
                connection_key!(),
                " AND (refresh_lock_owner IS NULL OR refresh_lock_owner = $4 \
                 OR refresh_lock_until IS NULL OR refresh_lock_until <= $6) RETURNING ",
                auth_columns!()
            ))
            .bind_key(connection(tenant, provider, owner))
            .bind_all((holder, stored(until), now()))
            .fetch_optional(&s.pool)
            .await
            .map_err(db("taking the refresh lease"))?;
            raw.map(|r| r.into_row(tenant, provider, owner)).transpose()
        })
    }

    /// Stores a newly obtained token (and a rotated refresh token, sealed, with `audit`)
    /// and releases the refresh lease, in one transaction, only if the credentials are
    /// still at `write.expected_version` and `write.lock_owner` still holds the lease.
    /// A rotated refresh token increments `credentials_version`. Returns the credentials
    /// version and token serial written; `None` (nothing written) if the swap lost.
    pub async fn save_token(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        write: &TokenWrite<'_>,
        audit: Option<&AuditEntry>,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let bump = i64::from(write.credentials.is_some());
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            let saved: Option<(i64, i64)> = sqlx::query_as(concat!(
                "UPDATE connections SET \
                 credentials = COALESCE($4, credentials), \
                 credentials_key_id = COALESCE($5, credentials_key_id), \
                 credentials_version = credentials_version + $6, \
                 credentials_updated_at = CASE WHEN $6 = 1 THEN $7 ELSE credentials_updated_at END, \
                 auth_state = $8, auth_state_key_id = $9, auth_state_version = credentials_version + $6, \
                 auth_state_serial = auth_state_serial + 1, auth_state_expires_at = $10, \
                 auth_state_updated_at = $7, refresh_lock_owner = NULL, refresh_lock_until = NULL, \
                 updated_at = $7 WHERE ",
                connection_key!(),
                " AND credentials_version = $11 AND refresh_lock_owner = $12 \
                 RETURNING credentials_version, auth_state_serial"
            ))
            .bind_key(connection(tenant, provider, owner))
            .bind_all((
                write.credentials.map(|c| c.bytes.as_slice()),
                write.credentials.map(|c| c.key_id.as_str()),
                bump,
                now,
                write.auth_state.bytes.as_slice(),
                &write.auth_state.key_id,
                write.expires_at.map(stored),
                write.expected_version,
                write.lock_owner,
            ))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("storing a token"))?;
            if saved.is_none() {
                return Ok(None);
            }
            if let (Some(audit), true) = (audit, write.credentials.is_some()) {
                insert_audit(&mut *tx, audit).await?;
            }
            tx.commit().await.map_err(db("committing a token"))?;
            Ok(saved)
        })
    }

    /// Releases `holder`'s refresh lease; `false` if it did not hold it.
    pub async fn unlock_refresh(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        holder: &str,
    ) -> Result<bool, StoreError> {
        on_backend!(self, |s| {
            let done = sqlx::query(concat!(
                "UPDATE connections SET refresh_lock_owner = NULL, refresh_lock_until = NULL WHERE ",
                connection_key!(),
                " AND refresh_lock_owner = $4"
            ))
            .bind_key(connection(tenant, provider, owner))
            .bind(holder)
            .execute(&s.pool)
            .await
            .map_err(db("releasing the refresh lease"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// The provider refused the grant of credentials `version`: the connection becomes
    /// `needs_reauth` (a `disabled` one stays) with `reason`, its token is forgotten, the
    /// refresh lease released, and [`AuthRow::refused`] holds until new credentials are
    /// stored. `false` (nothing written) if the credentials are no longer at `version`.
    pub async fn refuse_credentials(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        owner: Owner<'_>,
        version: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        on_backend!(self, |s: B| {
            // The refusal and the `connection.needs_reauth` event commit together.
            let (mut tx, now) = s.begin_write().await?;
            let before = B::connection_status_in(&mut tx, tenant, provider, owner).await?;
            let done = sqlx::query(concat!(
                "UPDATE connections SET refused_version = credentials_version, \
                 status = CASE WHEN status = 'disabled' THEN status ELSE 'needs_reauth' END, \
                 status_reason = CASE WHEN status = 'disabled' THEN status_reason ELSE $4 END, \
                 auth_state = NULL, auth_state_key_id = NULL, auth_state_version = NULL, \
                 auth_state_expires_at = NULL, refresh_lock_owner = NULL, refresh_lock_until = NULL, \
                 updated_at = $5 WHERE ",
                connection_key!(),
                " AND credentials_version = $6"
            ))
            .bind_key(connection(tenant, provider, owner))
            .bind_all((reason, now, version))
            .execute(&mut *tx)
            .await
            .map_err(db("recording refused credentials"))?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            if before.as_deref() != Some("disabled") {
                B::enqueue_connection_change(
                    &mut tx,
                    tenant,
                    provider,
                    owner,
                    before.as_deref(),
                    "needs_reauth",
                    Some(reason),
                )
                .await?;
            }
            tx.commit().await.map_err(db("committing refused credentials"))?;
            Ok(true)
        })
    }
}
