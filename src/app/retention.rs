//! The daily pruning pass: the history `[retention]` no longer keeps, removed in small
//! batches (see [`Store::prune`]) with a pause between them so syncs go on.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Catalog;
use crate::store::Store;

/// The first pass runs this long after start-up (a restart loop does not prune in a loop).
const FIRST_PASS: Duration = Duration::from_secs(600);
/// Then one pass a day.
const EVERY: Duration = Duration::from_secs(24 * 3600);
/// The pause between two batches.
const PAUSE: Duration = Duration::from_millis(50);

pub(super) async fn pruner(store: Store, catalog: Arc<RwLock<Arc<Catalog>>>, shutdown: CancellationToken) {
    let mut wait = FIRST_PASS;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        let policy = catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner).settings.retention.clone();
        let pass = store.prune(&policy, chrono::Utc::now(), false, PAUSE);
        let report = tokio::select! {
            () = shutdown.cancelled() => return,
            report = pass => report,
        };
        match report {
            Ok(r) => tracing::info!(
                runs = r.runs,
                dead_letters = r.dead_letters,
                webhook_messages = r.webhook_messages,
                contributions = r.contributions,
                writes = r.writes,
                deleted_records = r.deleted_records,
                "history pruned"
            ),
            Err(e) => tracing::warn!("pruning history failed (tried again tomorrow): {e}"),
        }
    }
}
