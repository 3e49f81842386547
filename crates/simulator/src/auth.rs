//! Token bookkeeping shared by every provider: static secrets derived from
//! the seed, OAuth grants with optional refresh-token rotation and reuse
//! detection, access tokens with expiry, and global revocation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use super::util::{Ts, digest};

/// How an access token presented by a client stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    /// Good to use.
    Valid,
    /// Issued here but past its lifetime.
    Expired {
        /// Whole seconds since it expired.
        ago_secs: u64,
        /// When it expired.
        at: Ts,
    },
    /// Issued here but revoked (grant revoked or `revoke()` called).
    Revoked,
    /// Never issued here.
    Unknown,
}

/// Why a refresh was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshError {
    /// The token was never issued here.
    Unknown,
    /// A rotated-out token was presented again; the whole grant is revoked.
    Reused,
    /// The grant was revoked.
    Revoked,
}

/// A freshly issued access token (and rotated refresh token, if any).
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// The access token.
    pub access_token: String,
    /// The new refresh token when the provider rotates them.
    pub refresh_token: Option<String>,
    /// Lifetime in seconds, if tokens expire.
    pub expires_in: Option<u64>,
}

#[derive(Debug)]
struct Grant {
    current_refresh: String,
    revoked: bool,
}

#[derive(Debug)]
struct Access {
    grant: usize,
    expires: Option<Instant>,
    expires_wall: Option<Ts>,
}

/// All token state of one simulator.
#[derive(Debug)]
pub(crate) struct Auth {
    secret: [u8; 32],
    counter: u64,
    revoked: bool,
    ttl: Option<Duration>,
    rotate: bool,
    grants: Vec<Grant>,
    refresh_tokens: HashMap<String, usize>,
    access: HashMap<String, Access>,
}

/// Beyond this many remembered access tokens, long-expired ones are dropped.
const ACCESS_SOFT_CAP: usize = 10_000;

impl Auth {
    /// Token state for a simulator seeded with `seed`.
    pub(crate) fn new(seed: u64, ttl: Option<Duration>, rotate: bool) -> Self {
        Self {
            secret: digest(&[b"tributary-sim", &seed.to_le_bytes()]),
            counter: 0,
            revoked: false,
            ttl,
            rotate,
            grants: Vec::new(),
            refresh_tokens: HashMap::new(),
            access: HashMap::new(),
        }
    }

    /// The key that signs cursors.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// A stable secret for a label (API keys, client ids…): `len` hex chars.
    pub(crate) fn static_secret(&self, label: &str, len: usize) -> String {
        let mut s = hex::encode(digest(&[&self.secret, label.as_bytes()]));
        s.truncate(len.min(64));
        s
    }

    /// Whether `revoke_all` was called.
    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked
    }

    /// A new unique token with a prefix.
    fn mint(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let tag = digest(&[&self.secret, b"token", &self.counter.to_le_bytes()]);
        format!("{prefix}{}", hex::encode(&tag[..20]))
    }

    /// Starts a new independent grant; returns its refresh token.
    pub(crate) fn new_grant(&mut self, refresh_prefix: &str) -> String {
        let token = self.mint(refresh_prefix);
        self.grants.push(Grant { current_refresh: token.clone(), revoked: false });
        self.refresh_tokens.insert(token.clone(), self.grants.len() - 1);
        token
    }

    /// The refresh token of the first grant, created on demand.
    pub(crate) fn initial_refresh(&mut self, refresh_prefix: &str) -> String {
        match self.grants.first() {
            Some(g) => g.current_refresh.clone(),
            None => self.new_grant(refresh_prefix),
        }
    }

    /// Issues an access token for grant 0 (client credentials, sessions).
    pub(crate) fn issue_session(&mut self, prefix: &str) -> Issued {
        if self.grants.is_empty() {
            self.new_grant("grant-");
        }
        self.issue(0, prefix, None)
    }

    fn issue(&mut self, grant: usize, prefix: &str, refresh_token: Option<String>) -> Issued {
        if self.access.len() > ACCESS_SOFT_CAP {
            let now = Instant::now();
            let old = Duration::from_secs(3600);
            self.access.retain(|_, a| a.expires.is_none_or(|e| now.saturating_duration_since(e) < old));
        }
        let token = self.mint(prefix);
        // A lifetime too long to represent never expires.
        let expires = self.ttl.and_then(|ttl| Instant::now().checked_add(ttl));
        let expires_wall =
            self.ttl.and_then(|ttl| TimeDelta::from_std(ttl).ok()).and_then(|ttl| Utc::now().checked_add_signed(ttl));
        let (expires, expires_wall) = match (expires, expires_wall) {
            (Some(e), Some(w)) => (Some(e), Some(w)),
            _ => (None, None),
        };
        self.access.insert(token.clone(), Access { grant, expires, expires_wall });
        Issued { access_token: token, refresh_token, expires_in: self.ttl.map(|t| t.as_secs()) }
    }

    /// Exchanges a refresh token. With rotation the presented token is spent
    /// and a new one returned; presenting a spent token revokes the grant.
    pub(crate) fn refresh(
        &mut self,
        refresh_token: &str,
        refresh_prefix: &str,
        access_prefix: &str,
    ) -> Result<Issued, RefreshError> {
        let Some(&grant) = self.refresh_tokens.get(refresh_token) else {
            return Err(RefreshError::Unknown);
        };
        if self.revoked || self.grants[grant].revoked {
            return Err(RefreshError::Revoked);
        }
        if self.grants[grant].current_refresh != refresh_token {
            self.grants[grant].revoked = true;
            return Err(RefreshError::Reused);
        }
        let rotated = if self.rotate {
            let next = self.mint(refresh_prefix);
            self.refresh_tokens.insert(next.clone(), grant);
            self.grants[grant].current_refresh = next.clone();
            Some(next)
        } else {
            None
        };
        Ok(self.issue(grant, access_prefix, rotated))
    }

    /// Checks an access token.
    pub(crate) fn check(&self, token: &str) -> TokenCheck {
        let Some(access) = self.access.get(token) else {
            return TokenCheck::Unknown;
        };
        if self.revoked || self.grants.get(access.grant).is_some_and(|g| g.revoked) {
            return TokenCheck::Revoked;
        }
        match (access.expires, access.expires_wall) {
            (Some(e), Some(at)) if Instant::now() >= e => {
                TokenCheck::Expired { ago_secs: Instant::now().saturating_duration_since(e).as_secs(), at }
            }
            _ => TokenCheck::Valid,
        }
    }

    /// Makes every issued access token expired now.
    pub(crate) fn expire_all(&mut self) {
        let now = Instant::now();
        let wall = Utc::now();
        for a in self.access.values_mut() {
            a.expires = Some(now);
            a.expires_wall = Some(wall);
        }
    }

    /// Invalidates every token and secret; refreshes fail from now on.
    pub(crate) fn revoke_all(&mut self) {
        self.revoked = true;
        for g in &mut self.grants {
            g.revoked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_spends_tokens_and_reuse_revokes_the_grant() {
        let mut auth = Auth::new(1, Some(Duration::from_secs(60)), true);
        let rt0 = auth.initial_refresh("r-");
        let other = auth.new_grant("r-");
        let first = auth.refresh(&rt0, "r-", "a-").ok();
        let rt1 = first.as_ref().and_then(|i| i.refresh_token.clone());
        assert!(rt1.is_some());
        let at1 = first.map(|i| i.access_token).unwrap_or_default();
        assert_eq!(auth.check(&at1), TokenCheck::Valid);
        assert_eq!(auth.refresh(&rt0, "r-", "a-").err(), Some(RefreshError::Reused));
        assert_eq!(auth.refresh(&rt1.unwrap_or_default(), "r-", "a-").err(), Some(RefreshError::Revoked));
        assert_eq!(auth.check(&at1), TokenCheck::Revoked);
        assert!(auth.refresh(&other, "r-", "a-").is_ok());
        assert_eq!(auth.refresh("nope", "r-", "a-").err(), Some(RefreshError::Unknown));
    }

    #[test]
    fn expiry_and_global_revocation() {
        let mut auth = Auth::new(1, Some(Duration::from_secs(60)), false);
        let rt = auth.initial_refresh("r-");
        let issued = auth.refresh(&rt, "r-", "a-").ok();
        assert!(issued.as_ref().is_some_and(|i| i.refresh_token.is_none()));
        let at = issued.map(|i| i.access_token).unwrap_or_default();
        auth.expire_all();
        assert!(matches!(auth.check(&at), TokenCheck::Expired { .. }));
        assert!(auth.refresh(&rt, "r-", "a-").is_ok());
        auth.revoke_all();
        assert_eq!(auth.refresh(&rt, "r-", "a-").err(), Some(RefreshError::Revoked));
        assert_eq!(auth.check("zzz"), TokenCheck::Unknown);
    }
}
