//! A [`CredentialSink`] in memory: a session without a store keeps its credentials
//! (with a rotated refresh token) and token here.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{CredentialSink, SinkFuture, Stored, Token};
use crate::secrets::Credentials;

pub(super) struct MemorySink {
    state: Mutex<Stored>,
}

impl MemorySink {
    pub(super) fn new(credentials: Credentials) -> Self {
        let stored = Stored { credentials: Arc::new(credentials), version: 0, token: None, serial: 0, refused: false };
        Self { state: Mutex::new(stored) }
    }

    fn state(&self) -> MutexGuard<'_, Stored> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl CredentialSink for MemorySink {
    fn load(&self) -> SinkFuture<'_, Stored> {
        let stored = self.state().clone();
        Box::pin(async move { Ok(stored) })
    }

    fn lock<'a>(&'a self, _owner: &'a str, _lease: Duration) -> SinkFuture<'a, Option<Stored>> {
        let stored = self.state().clone();
        Box::pin(async move { Ok(Some(stored)) })
    }

    fn save<'a>(
        &'a self,
        _owner: &'a str,
        version: i64,
        rotated: Option<&'a Credentials>,
        token: &'a Token,
    ) -> SinkFuture<'a, Option<(i64, i64)>> {
        let mut state = self.state();
        let saved = (state.version == version).then(|| {
            if let Some(c) = rotated {
                state.credentials = Arc::new(c.clone());
                state.version += 1;
            }
            state.serial += 1;
            let mut token = token.clone();
            token.serial = state.serial;
            token.version = state.version;
            state.token = Some(token);
            (state.version, state.serial)
        });
        Box::pin(async move { Ok(saved) })
    }

    fn unlock<'a>(&'a self, _owner: &'a str) -> SinkFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }

    fn refuse<'a>(&'a self, version: i64, _reason: &'a str) -> SinkFuture<'a, ()> {
        let mut state = self.state();
        if state.version == version {
            state.refused = true;
            state.token = None;
        }
        Box::pin(async move { Ok(()) })
    }
}
