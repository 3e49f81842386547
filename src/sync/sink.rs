//! Where a run's credentials and shared access token live: the connection's row in the
//! store, sealed on the way in and opened on the way out.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::http::HttpError;
use crate::http::auth::{CredentialSink, SinkFuture, Stored, Token};
use crate::model::{AuditEntry, Owner, ProviderId, TenantId};
use crate::secrets::{Credentials, MasterKey, Sealed};
use crate::store::{AuthRow, Store, StoreError, TokenWrite};
use crate::telemetry::{Metrics, TokenEvent, TokenRefresh};

/// A connection's credentials and shared token in the store: sealed on the way in,
/// opened on the way out, with token events reported as telemetry.
pub(super) struct StoreSink<'a> {
    pub(super) store: &'a Store,
    pub(super) key: &'a MasterKey,
    pub(super) tenant: &'a TenantId,
    pub(super) provider: &'a ProviderId,
    pub(super) owner: Owner<'a>,
    pub(super) metrics: &'a Metrics,
}

fn store_error(e: StoreError) -> HttpError {
    HttpError::Token { message: format!("the credential store failed: {e}"), permanent: false }
}

impl StoreSink<'_> {
    /// Opens what [`Store::get_auth`] or [`Store::lock_refresh`] returned.
    fn open(&self, row: AuthRow) -> Result<Stored, HttpError> {
        let sealed = row.credentials.ok_or_else(|| HttpError::Credentials("no credentials are stored".into()))?;
        let plain = self
            .key
            .open_as(Sealed::Credentials, self.tenant, self.provider, self.owner, &sealed)
            .map_err(|e| HttpError::Token { message: e.to_string(), permanent: false })?;
        let credentials = Credentials::from_json(&plain).map_err(|e| HttpError::Credentials(e.to_string()))?;
        // A stored token that no longer opens (another master key) is refreshed instead.
        let token = row.auth_state.and_then(|blob| {
            self.key
                .open_as(Sealed::AuthState, self.tenant, self.provider, self.owner, &blob)
                .map_err(|e| e.to_string())
                .and_then(|plain| Token::from_json(&plain, row.auth_state_serial, row.credentials_version))
                .inspect_err(|e| tracing::warn!(tenant = %self.tenant, provider = %self.provider, "{e}"))
                .ok()
        });
        Ok(Stored {
            credentials: Arc::new(credentials),
            version: row.credentials_version,
            token,
            serial: row.auth_state_serial,
            refused: row.refused,
        })
    }

    /// Follows a key rotation registered in the store when `row` holds a value sealed
    /// with a key this process does not hold yet.
    async fn follow_for(&self, row: &AuthRow) -> Result<(), HttpError> {
        let unknown = [row.credentials.as_ref(), row.auth_state.as_ref()]
            .into_iter()
            .flatten()
            .any(|blob| !self.key.holds(&blob.key_id));
        if unknown {
            self.store.follow_key_rotation(self.key).await.map_err(store_error)?;
        }
        Ok(())
    }

    fn gone(&self) -> HttpError {
        HttpError::Credentials(format!("the connection {}/{} no longer exists", self.tenant, self.provider))
    }
}

impl CredentialSink for StoreSink<'_> {
    fn load(&self) -> SinkFuture<'_, Stored> {
        Box::pin(async move {
            let row = self.store.get_auth(self.tenant, self.provider, self.owner).await.map_err(store_error)?;
            let row = row.ok_or_else(|| self.gone())?;
            self.follow_for(&row).await?;
            self.open(row)
        })
    }

    fn lock<'b>(&'b self, owner: &'b str, lease: Duration) -> SinkFuture<'b, Option<Stored>> {
        Box::pin(async move {
            let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
            let row = self
                .store
                .lock_refresh(self.tenant, self.provider, self.owner, owner, until)
                .await
                .map_err(store_error)?;
            if let Some(row) = &row {
                self.follow_for(row).await?;
            }
            row.map(|r| self.open(r)).transpose()
        })
    }

    fn save<'b>(
        &'b self,
        owner: &'b str,
        version: i64,
        rotated: Option<&'b Credentials>,
        token: &'b Token,
    ) -> SinkFuture<'b, Option<(i64, i64)>> {
        Box::pin(async move {
            // Seal with the key of a rotation under way, never with the one it replaces.
            self.store.follow_key_rotation(self.key).await.map_err(store_error)?;
            let sealed_token =
                self.key.seal_as(Sealed::AuthState, self.tenant, self.provider, self.owner, &token.to_json());
            let sealed_credentials = rotated
                .map(|c| self.key.seal_as(Sealed::Credentials, self.tenant, self.provider, self.owner, &c.to_json()));
            let write = TokenWrite {
                lock_owner: owner,
                expected_version: version,
                credentials: sealed_credentials.as_ref(),
                auth_state: &sealed_token,
                expires_at: token.expires_at,
            };
            let audit = AuditEntry {
                at: Utc::now(),
                actor: "sync".into(),
                scope: None,
                outcome: crate::model::AuditOutcome::Ok,
                message: None,
                action: "credentials.rotated".into(),
                tenant_id: Some(self.tenant.clone()),
                subject: Some(self.provider.to_string()),
                details: json!({ "key_id": self.key.id(), "from_version": version }),
            };
            self.store
                .save_token(self.tenant, self.provider, self.owner, &write, Some(&audit))
                .await
                .map_err(store_error)
        })
    }

    fn unlock<'b>(&'b self, owner: &'b str) -> SinkFuture<'b, ()> {
        Box::pin(async move {
            self.store
                .unlock_refresh(self.tenant, self.provider, self.owner, owner)
                .await
                .map(|_| ())
                .map_err(store_error)
        })
    }

    fn refuse<'b>(&'b self, version: i64, reason: &'b str) -> SinkFuture<'b, ()> {
        Box::pin(async move {
            self.store
                .refuse_credentials(self.tenant, self.provider, self.owner, version, reason)
                .await
                .map(|_| ())
                .map_err(store_error)
        })
    }

    fn event(&self, event: &TokenEvent<'_>) {
        TokenRefresh { tenant: self.tenant.as_str(), provider: self.provider.as_str(), event }.emit(self.metrics);
    }
}
