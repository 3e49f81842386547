//! Whether the store answers, as a process last saw it: a bounded probe that names the
//! underlying cause of a failure (a pool that timed out is asked why, by connecting
//! once directly), and the shared state a daemon keeps of it so readiness checks and
//! `status` answer at once from memory while the database is down.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{ConnectOptions, Connection};

use super::Store;
use super::error::StoreError;

/// A store outage as seen by the probes: since when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outage {
    pub since: DateTime<Utc>,
    pub cause: String,
}

impl Outage {
    /// `unreachable since <time>, cause <cause>`.
    pub fn describe(&self) -> String {
        format!("unreachable since {}, cause {}", self.since.format("%Y-%m-%dT%H:%M:%SZ"), self.cause)
    }
}

/// A change of the store's reachability, reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    /// The store stopped answering.
    Down(Outage),
    /// The store answers again after `outage`.
    Up(Outage),
}

/// The store's reachability, shared between the probe that updates it and whoever reads
/// it (the HTTP server, `status`, the main loop).
#[derive(Debug, Default)]
pub struct StoreHealth {
    outage: Mutex<Option<Outage>>,
}

impl StoreHealth {
    /// The current outage, if the last probe failed.
    pub fn outage(&self) -> Option<Outage> {
        self.outage.lock().map(|o| o.clone()).unwrap_or(None)
    }

    /// Records a probe's result; returns the change of state, if it is one. During an
    /// outage the latest cause is kept (no change of state).
    pub fn record(&self, result: Result<(), String>) -> Option<HealthChange> {
        let Ok(mut outage) = self.outage.lock() else {
            return None;
        };
        match (result, outage.as_mut()) {
            (Ok(()), None) => None,
            (Ok(()), Some(_)) => outage.take().map(HealthChange::Up),
            (Err(cause), Some(o)) => {
                o.cause = cause;
                None
            }
            (Err(cause), None) => {
                let next = Outage { since: Utc::now(), cause };
                *outage = Some(next.clone());
                Some(HealthChange::Down(next))
            }
        }
    }
}

impl Store {
    /// Runs a trivial statement within `within`; on failure, the underlying cause as
    /// text (`Connection refused (os error 111)` rather than `pool timed out`). A store
    /// that is only busy (a slow answer, every pooled connection in use, while a new
    /// connection opens fine) counts as reachable.
    pub async fn probe(&self, within: Duration) -> Result<(), String> {
        let half = within / 2;
        let err = match tokio::time::timeout(half, self.ping()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        };
        let busy = matches!(&err, None | Some(StoreError::Database { error: sqlx::Error::PoolTimedOut, .. }));
        match (self.connect_directly(half).await, err) {
            // A dropped or refused connection, a timeout: the direct attempt says why.
            (Some(Err(cause)), _) => Err(cause),
            (Some(Ok(())) | None, _) if busy => Ok(()),
            (_, Some(StoreError::Database { error, .. })) => Err(root_cause(&error)),
            (_, Some(other)) => Err(other.to_string()),
            (_, None) => Ok(()),
        }
    }

    /// Opens one connection outside the pool, for the error the pool does not report:
    /// `None` for SQLite (a file; nothing to connect to).
    async fn connect_directly(&self, within: Duration) -> Option<Result<(), String>> {
        let Store::Postgres(pg) = self else {
            return None;
        };
        let options = pg.pool.connect_options();
        Some(match tokio::time::timeout(within, options.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(root_cause(&e)),
            Err(_) => Err(format!("no connection within {} ms", within.as_millis())),
        })
    }
}

/// The innermost error's text, prefixed by what the driver says about it when that adds
/// something (`error communicating with database: Connection refused (os error 111)`).
fn root_cause(error: &sqlx::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    let top = error.to_string();
    let inner = source.to_string();
    if top.contains(&inner) { top } else { format!("{top}: {inner}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_state_is_reported_once() {
        let health = StoreHealth::default();
        assert_eq!(health.record(Ok(())), None);
        let Some(HealthChange::Down(down)) = health.record(Err("Connection refused".into())) else {
            panic!("the first failure is a change");
        };
        assert_eq!(down.cause, "Connection refused");
        assert_eq!(health.record(Err("Connection refused".into())), None, "the same cause again is no change");
        assert_eq!(health.outage(), Some(down.clone()));
        assert_eq!(health.record(Err("no answer within 500 ms".into())), None, "nor is a new cause");
        let other = health.outage().unwrap();
        assert_eq!(other.since, down.since, "the outage keeps its start");
        assert!(other.describe().starts_with("unreachable since "), "{}", other.describe());
        assert!(other.describe().ends_with(", cause no answer within 500 ms"));
        assert!(matches!(health.record(Ok(())), Some(HealthChange::Up(o)) if o.since == down.since));
        assert_eq!(health.outage(), None);
    }

    #[tokio::test]
    async fn a_closed_store_is_reported_with_its_cause() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        assert_eq!(store.probe(Duration::from_millis(800)).await, Ok(()));
        store.close().await;
        let cause = store.probe(Duration::from_millis(800)).await.unwrap_err();
        assert!(cause.contains("closed"), "{cause}");
    }
}
