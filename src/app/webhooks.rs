//! The inbox worker: turns accepted inbound webhooks into triggered jobs.
//!
//! Woken by the HTTP handler for each accepted delivery, it waits until deliveries stop
//! arriving for [`DEBOUNCE`] (at most [`DEBOUNCE_MAX`]), so a burst becomes one trigger
//! per job; then it triggers (`TriggerKind::Webhook`) the streams the manifest maps each
//! event type to, marks the deliveries processed, wakes this daemon's main loop and, on
//! PostgreSQL, every other replica (`NOTIFY`), whose listener wakes theirs. It also looks
//! at the inbox every [`SWEEP`], for deliveries a replica accepted but did not process
//! (it stopped in between).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{Catalog, WebhookSpec};
use crate::control::ControlMessage;
use crate::model::{JobFilter, ProviderId, StreamName, TenantId, TriggerKind};
use crate::store::{InboxRow, Store, StoreError};

/// Quiet time that ends a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(500);
/// The longest a burst delays its trigger.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(3);
/// How often the inbox is read without a wake-up.
const SWEEP: Duration = Duration::from_secs(10);
/// Deliveries read at once.
const BATCH: i64 = 500;
/// Processed deliveries are kept this long (then pruned).
const KEEP: chrono::Duration = chrono::Duration::hours(24);

pub(super) async fn inbox_worker(
    store: Store,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    accepted: Arc<Notify>,
    main: mpsc::Sender<ControlMessage>,
    shutdown: CancellationToken,
) {
    let mut sweeps = 0u32;
    loop {
        tokio::select! {
            () = accepted.notified() => {
                let started = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        () = accepted.notified() => if started.elapsed() >= DEBOUNCE_MAX { break },
                        () = tokio::time::sleep(DEBOUNCE) => break,
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            () = tokio::time::sleep(SWEEP) => {
                sweeps = sweeps.wrapping_add(1);
                if sweeps.is_multiple_of(360) && let Err(e) = store.prune_webhooks(Utc::now() - KEEP).await {
                    tracing::warn!("pruning the webhook inbox failed: {e}");
                }
            }
            () = shutdown.cancelled() => return,
        }
        match process(&store, &catalog).await {
            Ok(0) => {}
            Ok(jobs) => {
                tracing::debug!(jobs, "inbound webhooks triggered jobs");
                let _ = main.send(ControlMessage::Wake).await;
                if let Err(e) = store.notify_wake().await {
                    tracing::warn!("{e}");
                }
            }
            Err(e) => tracing::warn!("processing the webhook inbox failed: {e}"),
        }
    }
}

/// Triggers the streams of every pending delivery; the number of jobs triggered.
async fn process(store: &Store, catalog: &RwLock<Arc<Catalog>>) -> Result<usize, StoreError> {
    let mut triggered = 0;
    loop {
        let rows = store.pending_webhooks(BATCH).await?;
        if rows.is_empty() {
            return Ok(triggered);
        }
        let catalog = Arc::clone(&catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut targets: BTreeSet<(String, String, StreamName)> = BTreeSet::new();
        for row in &rows {
            let Some(spec) = catalog.manifests.get(&row.provider).and_then(|m| m.webhooks.as_ref()) else { continue };
            mark_deleted(store, row, spec).await?;
            for event in row.event_types.lines() {
                for stream in spec.streams_for(event) {
                    targets.insert((row.tenant_id.clone(), row.provider.clone(), stream.clone()));
                }
            }
        }
        let now = Utc::now();
        for (tenant, provider, stream) in targets {
            let (Ok(tenant), Ok(provider)) = (TenantId::parse(&tenant), ProviderId::parse(&provider)) else { continue };
            let filter = JobFilter { tenant: Some(tenant), provider: Some(provider), stream: Some(stream) };
            triggered += store.trigger_jobs(&filter, TriggerKind::Webhook, now).await?.len();
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        store.finish_webhooks(&ids, now).await?;
        if rows.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(triggered);
        }
    }
}

/// Marks deleted the records `row` reports deleted (soft: `deleted_at` and a `deleted`
/// change), as the manifest's `[[webhooks.deletes]]` say.
async fn mark_deleted(store: &Store, row: &InboxRow, spec: &WebhookSpec) -> Result<(), StoreError> {
    let deletions = spec.deletions(&row.event_types, &row.body);
    if deletions.is_empty() {
        return Ok(());
    }
    let (Ok(tenant), Ok(provider)) = (TenantId::parse(&row.tenant_id), ProviderId::parse(&row.provider)) else {
        return Ok(());
    };
    for (entity, key) in deletions {
        let n = store.mark_deleted(&tenant, &entity, &provider, &[key.as_str()], None).await?;
        tracing::debug!(%tenant, %provider, %entity, deleted = n, "webhook reported a record deleted");
    }
    Ok(())
}

/// On PostgreSQL: wakes the main loop whenever another replica triggered jobs, and has it
/// take the reconciliation queue when a change (any process's) queued a tenant.
pub(super) async fn wake_listener(store: Store, main: mpsc::Sender<ControlMessage>, shutdown: CancellationToken) {
    let mut listener = loop {
        match store.wake_listener().await {
            Ok(Some(l)) => break l,
            Ok(None) => {
                if store.backend() == "postgres" {
                    tracing::warn!(
                        "the store is behind a transaction pooler and [store] listen_url is not set: \
                         triggers and changes made elsewhere reach this daemon on its next wake-up, \
                         not at once"
                    );
                }
                return;
            }
            Err(e) => {
                tracing::warn!("{e}; retrying in 5 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    };
    loop {
        tokio::select! {
            n = listener.recv() => match n {
                Ok(n) => {
                    let message = if n.payload() == crate::store::RECONCILE_PAYLOAD {
                        ControlMessage::ReconcileQueued
                    } else {
                        ControlMessage::Wake
                    };
                    let _ = main.send(message).await;
                }
                Err(e) => {
                    tracing::warn!("listening for other replicas: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            },
            () = shutdown.cancelled() => return,
        }
    }
}
