//! One connection's token, shared by the runs of a process, and the refresh protocol
//! across processes.
//!
//! In the process: an [`AuthRegistry`] hands every run of a connection the same
//! [`ConnectionAuth`], whose async mutex lets one run at a time look for or obtain a
//! token; the others wait and then find the new token in its cache. Across replicas:
//! the refresher holds the connection's refresh lease in the store while it spends the
//! refresh token, and writes the result with a compare-and-swap on the credentials
//! version; a runner that finds the lease taken polls the store until the holder's
//! token appears (or the lease expires and it takes over).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::exchange::{Fresh, exchange};
use super::{CredentialSink, Stored, Token, TokenEvent};
use crate::config::AuthSpec;
use crate::http::HttpError;
use crate::http::template::Vars;
use crate::secrets::Credentials;

/// How long a refresher holds the lease: beyond the token client's 30 s timeout, so a
/// live refresher never loses it mid-call.
const LEASE: Duration = Duration::from_secs(45);
/// How often a runner waiting for another's refresh looks at the store.
const POLL: Duration = Duration::from_millis(100);
/// How long a runner waits for another's refresh before giving up for this request.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Attempts to store a new token before giving up (transient store errors).
const SAVE_ATTEMPTS: u32 = 3;

/// Per-connection token state shared by the runs of a process, keyed by the caller
/// (store instance, tenant and provider). Clones share the entries; an entry lives while
/// a run uses it.
#[derive(Clone, Default)]
pub struct AuthRegistry {
    entries: Arc<Mutex<HashMap<String, Weak<ConnectionAuth>>>>,
}

impl std::fmt::Debug for AuthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthRegistry")
    }
}

impl AuthRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The registry of the whole process (what a `Syncer` uses unless given another).
    pub fn global() -> Self {
        static GLOBAL: OnceLock<AuthRegistry> = OnceLock::new();
        GLOBAL.get_or_init(AuthRegistry::new).clone()
    }

    /// The shared state of the connection named `key`.
    pub fn connection(&self, key: &str) -> Arc<ConnectionAuth> {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(conn) = entries.get(key).and_then(Weak::upgrade) {
            return conn;
        }
        entries.retain(|_, e| e.strong_count() > 0);
        let conn = Arc::new(ConnectionAuth::default());
        entries.insert(key.to_owned(), Arc::downgrade(&conn));
        conn
    }

    /// Connections with a live entry.
    pub fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.values().filter(|e| e.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One connection's token state in a process.
pub struct ConnectionAuth {
    cache: tokio::sync::Mutex<Cache>,
    /// The credentials version whose grant was refused (-1: none), checked before every
    /// request so the connection's other runs stop at once.
    refused_version: AtomicI64,
    refused_reason: Mutex<String>,
}

impl Default for ConnectionAuth {
    fn default() -> Self {
        Self {
            cache: tokio::sync::Mutex::new(Cache::default()),
            refused_version: AtomicI64::new(-1),
            refused_reason: Mutex::new(String::new()),
        }
    }
}

#[derive(Default)]
struct Cache {
    token: Option<Token>,
    credentials: Option<Arc<Credentials>>,
}

/// A usable token and the credentials it belongs to.
pub(super) struct Obtained {
    pub token: Token,
    pub credentials: Arc<Credentials>,
    /// This call obtained it from the provider.
    pub refreshed: bool,
}

/// `stored`'s token, if it can be used instead of `rejected`.
fn usable(stored: &Stored, rejected: Option<i64>, margin: Duration) -> Option<Token> {
    stored.token.as_ref().filter(|t| Some(t.serial) != rejected && t.usable(Utc::now(), margin)).cloned()
}

fn refused_error(reason: &str) -> HttpError {
    HttpError::Token {
        message: format!(
            "the provider refused this connection's credentials ({reason}); \
             store new ones with `tributary credentials set`"
        ),
        permanent: true,
    }
}

impl ConnectionAuth {
    /// Why credentials `version` were refused, if they were (in this process).
    pub(super) fn refused(&self, version: i64) -> Option<String> {
        (self.refused_version.load(Ordering::Acquire) == version).then(|| {
            let reason = self.refused_reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            refused_error(&reason).to_string()
        })
    }

    fn set_refused(&self, version: i64, reason: &str) {
        *self.refused_reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = reason.to_owned();
        self.refused_version.store(version, Ordering::Release);
    }

    /// A usable token other than `rejected`: the cached one, the stored one, or a new
    /// one (refreshed under the lease, or another runner's that appeared meanwhile).
    pub(super) async fn obtain(
        &self,
        spec: &AuthSpec,
        client: &reqwest::Client,
        base: &Vars<'_>,
        sink: &dyn CredentialSink,
        rejected: Option<i64>,
        margin: Duration,
    ) -> Result<Obtained, HttpError> {
        let mut cache = self.cache.lock().await;
        if let (Some(t), Some(c)) = (&cache.token, &cache.credentials)
            && Some(t.serial) != rejected
            && t.usable(Utc::now(), margin)
            && self.refused(t.version).is_none()
        {
            return Ok(Obtained { token: t.clone(), credentials: c.clone(), refreshed: false });
        }
        // The credentials changed under us at most once per call (an operator storing
        // new ones while we refreshed): then start again with those.
        let mut swaps_lost = 0;
        loop {
            let stored = sink.load().await?;
            if stored.refused {
                return Err(refused_error("the grant was refused earlier"));
            }
            let got = match usable(&stored, rejected, margin) {
                Some(token) => Obtained { token, credentials: stored.credentials, refreshed: false },
                None => match self.refresh(spec, client, base, sink, rejected, margin, stored.serial).await? {
                    Some(got) => got,
                    None if swaps_lost == 0 => {
                        swaps_lost += 1;
                        continue;
                    }
                    None => {
                        return Err(HttpError::Token {
                            message: "the credentials kept changing during the token refresh".into(),
                            permanent: false,
                        });
                    }
                },
            };
            cache.token = Some(got.token.clone());
            cache.credentials = Some(got.credentials.clone());
            return Ok(got);
        }
    }

    /// Takes the refresh lease (or finds the token of whoever held it) and refreshes.
    /// `None` if the compare-and-swap lost (the credentials changed meanwhile).
    #[allow(clippy::too_many_arguments)]
    async fn refresh(
        &self,
        spec: &AuthSpec,
        client: &reqwest::Client,
        base: &Vars<'_>,
        sink: &dyn CredentialSink,
        rejected: Option<i64>,
        margin: Duration,
        seen_serial: i64,
    ) -> Result<Option<Obtained>, HttpError> {
        let owner = uuid::Uuid::now_v7().to_string();
        let started = Instant::now();
        let locked = loop {
            if let Some(locked) = sink.lock(&owner, LEASE).await? {
                break locked;
            }
            tokio::time::sleep(POLL).await;
            let stored = sink.load().await?;
            if stored.refused {
                return Err(refused_error("another runner's refresh was refused"));
            }
            if let Some(token) = usable(&stored, rejected, margin) {
                sink.event(&TokenEvent::Shared);
                return Ok(Some(Obtained { token, credentials: stored.credentials, refreshed: false }));
            }
            if started.elapsed() > MAX_WAIT {
                return Err(HttpError::Token {
                    message: format!(
                        "another runner has held this connection's token refresh for over {} s",
                        MAX_WAIT.as_secs()
                    ),
                    permanent: false,
                });
            }
        };
        // Someone may have finished just before we took the lease.
        if locked.refused {
            sink.unlock(&owner).await?;
            return Err(refused_error("the grant was refused earlier"));
        }
        if let Some(token) = usable(&locked, rejected, margin) {
            sink.unlock(&owner).await?;
            if locked.serial != seen_serial {
                sink.event(&TokenEvent::Shared);
            }
            return Ok(Some(Obtained { token, credentials: locked.credentials, refreshed: false }));
        }
        let fresh = match exchange(spec, client, base, &locked.credentials).await {
            Ok(fresh) => fresh,
            Err(e) => {
                let reason = e.to_string();
                if matches!(e, HttpError::Token { permanent: true, .. }) {
                    self.set_refused(locked.version, &reason);
                    sink.event(&TokenEvent::Refused { reason: &reason });
                    if let Err(store) = sink.refuse(locked.version, &reason).await {
                        tracing::warn!("recording refused credentials failed: {store}");
                    }
                    // Recording released the lease, unless new credentials arrived meanwhile.
                    let _ = sink.unlock(&owner).await;
                    let message = format!(
                        "{reason}; the connection needs new credentials (`tributary credentials set`) \
                         and makes no further requests with these"
                    );
                    return Err(HttpError::Token { message, permanent: true });
                } else {
                    sink.event(&TokenEvent::Failed { reason: &reason });
                    if let Err(store) = sink.unlock(&owner).await {
                        tracing::warn!("releasing the refresh lease failed: {store}");
                    }
                }
                return Err(e);
            }
        };
        self.store(sink, &owner, locked, fresh).await
    }

    /// Stores a fresh token (and rotated refresh token) before anyone uses it.
    async fn store(
        &self,
        sink: &dyn CredentialSink,
        owner: &str,
        locked: Stored,
        fresh: Fresh,
    ) -> Result<Option<Obtained>, HttpError> {
        let current = locked.credentials.get("refresh_token").map(secrecy::ExposeSecret::expose_secret);
        let rotated = fresh.refresh_token.as_deref().filter(|n| !n.is_empty() && Some(*n) != current).map(|new| {
            let mut c = (*locked.credentials).clone();
            c.set("refresh_token", new);
            c
        });
        let mut token = Token::new(fresh.access, fresh.lifetime, fresh.provided);
        let mut attempt = 0;
        let saved = loop {
            attempt += 1;
            match sink.save(owner, locked.version, rotated.as_ref(), &token).await {
                Ok(saved) => break saved,
                Err(e) if attempt < SAVE_ATTEMPTS => {
                    tracing::warn!(attempt, "storing a new token failed (retrying): {e}");
                    tokio::time::sleep(POLL * attempt).await;
                }
                Err(e) => {
                    let reason = format!("cannot store the new token: {e}");
                    sink.event(&TokenEvent::Failed { reason: &reason });
                    let _ = sink.unlock(owner).await;
                    return Err(HttpError::Token { message: reason, permanent: false });
                }
            }
        };
        let Some((version, serial)) = saved else {
            let reason = "the credentials changed during the refresh; the new token was discarded";
            sink.event(&TokenEvent::Failed { reason });
            let _ = sink.unlock(owner).await;
            return Ok(None);
        };
        token.serial = serial;
        token.version = version;
        sink.event(&TokenEvent::Obtained { rotated: rotated.is_some() });
        let credentials = rotated.map_or(locked.credentials, Arc::new);
        Ok(Some(Obtained { token, credentials, refreshed: true }))
    }
}
