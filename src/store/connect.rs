//! What both backends share when they open a database: errors for URLs they cannot
//! use (passwords redacted) and the id of each opened store.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::StoreError;

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
