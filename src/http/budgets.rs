//! Rate-limit budgets shared by replicas on one PostgreSQL database: the renewal that
//! keeps this process's leased limiters ([`RateLimiters::leased`]) in step with its
//! shares in the store (`store::budgets`, which has the arithmetic).
//!
//! Every [`TICK`] (and at once when a quota key is used for the first time, at most
//! every [`MIN_GAP`]) the replica renews, in one transaction, a share of each quota key
//! it used in the last [`IDLE`]: what it asks for is the whole limit while its requests
//! waited on the share, else twice its pace. Each row is leased for [`LEASE`]; the local
//! share lapses at the same moment unless a renewal commits, so a replica cut off from
//! the store stops sending before the others grow into its share. Smaller shares are
//! applied before the renewal commits, larger ones after. Keys unused for [`IDLE`] are
//! given back locally first, then in the store; on a clean stop every share goes back. A
//! killed replica's rows expire after [`LEASE`] and the others take its share at their
//! next renewal.
//!
//! A first share starts with its burst when no other replica held one of the quota
//! within its window (the store says so: given-back rows stay, at zero, for a window):
//! a connection's first request on a replica then waits only for the renewal (one
//! round trip, at most [`MIN_GAP`] after the previous one), not for a drained limiter's
//! first interval.
//!
//! The store's work is one transaction per replica per tick whatever the number of
//! quota keys (a batch of arrays, no per-request traffic), and none while idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::RateLimiters;
use crate::store::{ShareRequest, Store};

/// How often shares are renewed.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a share outlives its last renewal.
pub const LEASE: Duration = Duration::from_secs(5);
/// A quota key unused this long is given back.
pub const IDLE: Duration = Duration::from_secs(5);
/// The shortest time between two renewals (new keys ask for one at once).
pub const MIN_GAP: Duration = Duration::from_millis(50);
/// Expired rows of dead replicas are deleted every this many renewals.
const PURGE_EVERY: u32 = 60;

/// Renews `replica`'s shares until `shutdown`, then gives them back. Nothing to do for
/// limiters that are not leased.
pub async fn run(store: Store, limits: Arc<RateLimiters>, replica: String, shutdown: CancellationToken) {
    let Some(wanted) = limits.renewal_wanted() else { return };
    let mut renewal = Renewal { store, limits, replica, held: false, last: Instant::now(), count: 0 };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(TICK) => {}
            () = wanted.notified() => {
                tokio::time::sleep(MIN_GAP.saturating_sub(renewal.last.elapsed())).await;
            }
        }
        renewal.once().await;
    }
    renewal.limits.drop_leases();
    if let Err(e) = renewal.store.release_budget_shares(&renewal.replica).await {
        tracing::warn!("giving back budget shares failed (they expire in {} s): {e}", LEASE.as_secs());
    }
}

struct Renewal {
    store: Store,
    limits: Arc<RateLimiters>,
    replica: String,
    /// Whether the store may still hold rows of this replica.
    held: bool,
    last: Instant,
    count: u32,
}

impl Renewal {
    async fn once(&mut self) {
        let elapsed = self.last.elapsed();
        self.last = Instant::now();
        let demands = self.limits.lease_demands(IDLE, elapsed);
        if demands.is_empty() && !self.held {
            return;
        }
        self.count = self.count.wrapping_add(1);
        let started = Instant::now();
        let requests: Vec<ShareRequest> = demands.iter().map(|d| d.request.clone()).collect();
        let limits = &self.limits;
        let renewed = self
            .store
            .renew_budget_shares(&self.replica, LEASE, &requests, self.count % PURGE_EVERY == 1, |grants| {
                for (d, g) in demands.iter().zip(grants) {
                    if g.requests < d.share {
                        limits.set_share(d, *g, None);
                    }
                }
            })
            .await;
        match renewed {
            Ok(grants) => {
                for (d, g) in demands.iter().zip(&grants) {
                    limits.set_share(d, *g, Some(started + LEASE));
                }
                self.held = !demands.is_empty();
            }
            Err(e) => tracing::debug!("budget shares not renewed (they lapse within {} s): {e}", LEASE.as_secs()),
        }
    }
}
