//! What both backends share when they open a database (errors for URLs they cannot use,
//! passwords redacted, and the id of each opened store) and when they begin a write.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::error::{StoreError, db};
use super::postgres::PgStore;
use super::rows::now;
use super::sqlite::SqliteStore;

/// An [`StoreError::InvalidUrl`] for `url`, with any password in it redacted.
pub(super) fn invalid_url(url: &str, reason: &str) -> StoreError {
    StoreError::InvalidUrl { url: redact_password(url), reason: reason.to_owned() }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`.
pub(super) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_owned();
    };
    format!("{scheme}://{user}:***@{host}{tail}")
}

/// Distinguishes `Store` values opened separately (clones share one).
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A new process-unique store instance id.
pub(super) fn next_instance() -> u64 {
    NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
}

/// `begin_write` for a backend.
macro_rules! begin_write {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Begins a transaction that will write (with [`Self::BEGIN_WRITE`]); returns it
            /// with the time its writes are stamped with.
            pub(super) async fn begin_write(
                &self,
            ) -> Result<(sqlx::Transaction<'static, $db>, DateTime<Utc>), StoreError> {
                let tx = self.pool.begin_with(Self::BEGIN_WRITE).await.map_err(db("starting a transaction"))?;
                Ok((tx, now()))
            }
        }
    };
}

begin_write!(SqliteStore, sqlx::Sqlite);
begin_write!(PgStore, sqlx::Postgres);
