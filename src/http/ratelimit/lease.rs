//! Shares of the fleet's quotas leased to this replica ([`RateLimiters::leased`]): one
//! [`Lease`] per quota key, the demands a renewal sends the store (`http::budgets`) and
//! the shares it brings back. A quota key gets a limiter of this replica's share, zero
//! (wait) until the first renewal gives it one. A limiter replaced for a new share
//! starts with the part of its burst the fleet's reported requests leave (`credit`),
//! and not before the old one would have admitted its next request when smaller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::DefaultDirectRateLimiter;
use governor::clock::Clock;

use super::{JITTER_MARGIN, Limiter, ProviderQuota, RateLimiters, UNLEASED_POLL, lock, share_quota};
use crate::store::{SentCounts, ShareGrant, ShareRequest, share_burst};

/// One quota key's share of a quota leased from the fleet.
pub(super) struct Lease {
    /// Requests per window this replica may send (0: wait for a share).
    share: u32,
    limiter: Option<DefaultDirectRateLimiter>,
    /// A replaced limiter's next admission: the new one admits nothing before it.
    not_before: Option<Instant>,
    /// The share lapses then unless a renewal commits (it lapses in the store too).
    valid_until: Option<Instant>,
    /// Grants since the last renewal, and whether a request had to wait on the share.
    grants: u32,
    pub(super) waited: bool,
    last_used: Instant,
    /// Given back while idle (not renewed, no share); kept for a window after its last
    /// use with the limiter it had, so that the same share taken again continues it.
    pub(super) idle: bool,
    parked: Option<(u32, DefaultDirectRateLimiter)>,
    /// What this replica sent under the quota within its window (reported with each
    /// renewal: other replicas' new limiters start with what it leaves).
    sent: SentCounts,
}

impl Lease {
    pub(super) fn new() -> Self {
        Self {
            share: 0,
            limiter: None,
            not_before: None,
            valid_until: None,
            grants: 0,
            waited: true,
            last_used: Instant::now(),
            idle: false,
            parked: None,
            sent: SentCounts::default(),
        }
    }

    /// Gives the share back (the key went idle): requests wait for a new one.
    fn park(&mut self) {
        self.idle = true;
        self.parked = self.limiter.take().map(|l| (self.share, l));
        self.share = 0;
        self.valid_until = None;
    }

    pub(super) fn check(&mut self, per_secs: u32) -> Option<Duration> {
        let now = Instant::now();
        self.last_used = now;
        let wait = match (&self.limiter, self.valid_until) {
            (Some(l), Some(valid)) if valid > now => match self.not_before.filter(|t| *t > now) {
                Some(t) => Some(t - now),
                None => l.check().err().map(|n| n.wait_time_from(l.clock().now())),
            },
            _ => Some(UNLEASED_POLL),
        };
        match wait {
            None => {
                self.grants = self.grants.saturating_add(1);
                self.sent.record(SentCounts::bucket_now(per_secs));
            }
            Some(_) => self.waited = true,
        }
        wait
    }

    /// Changes the share. A first share of a key no other replica used within its window
    /// (`others_lately` false) starts with its burst: only this replica's own limiter
    /// counts in any window, so it continues the limiter this replica parked for the same
    /// share, else starts a fresh one. Otherwise the new limiter starts with the part of
    /// its burst the fleet's recent requests leave (`credit`: all of it on a lightly used
    /// quota, none on one used at its pace), and, if smaller, admits nothing before the
    /// old one would have, so the change allows no extra burst.
    fn set_share(&mut self, share: u32, per_secs: u32, others_lately: bool, credit: u32) {
        if share == self.share {
            return;
        }
        let now = Instant::now();
        let parked = self.parked.take();
        if self.limiter.is_none() && share > 0 && !others_lately {
            let continued = match parked {
                Some((was, l)) if was == share => Some(l),
                Some(other) => {
                    self.parked = Some(other);
                    None
                }
                None => Some(DefaultDirectRateLimiter::direct(share_quota(share, per_secs))),
            };
            if let Some(l) = continued {
                self.share = share;
                self.limiter = Some(l);
                return;
            }
        }
        let old = self.limiter.take().or(self.parked.take().map(|(_, l)| l));
        let old_next = old.and_then(|l| l.check().err().map(|n| n.wait_time_from(l.clock().now())));
        let carried = [old_next.map(|w| now + w), self.not_before].into_iter().flatten().max();
        // A smaller share admits nothing before the old one would have; a larger one may
        // go sooner than the smaller would have (it grew only into what the others gave
        // up, and its credit is what the fleet's requests leave): carrying a small
        // share's next admission — a minute away at one request per minute — would
        // stall it.
        let grows = share > self.share;
        self.share = share;
        self.not_before = if grows { None } else { carried.filter(|t| *t > now) };
        self.limiter = (share > 0).then(|| {
            let l = DefaultDirectRateLimiter::direct(share_quota(share, per_secs));
            for _ in credit.min(share_burst(share))..share_burst(share) {
                if l.check().is_err() {
                    break;
                }
            }
            l
        });
    }
}

/// A leased quota key due for renewal: what to ask the store, and where the answer goes.
pub(crate) struct LeaseDemand {
    quota: Arc<ProviderQuota>,
    key: String,
    pub request: ShareRequest,
    /// The share held now.
    pub share: u32,
}

impl RateLimiters {
    /// The leased quota keys to renew, after dropping those unused for `idle` (their
    /// requests wait for a new share if they come back): what each wants, from the
    /// grants and waits since the last renewal `elapsed` ago (which are reset).
    pub(crate) fn lease_demands(&self, idle: Duration, elapsed: Duration) -> Vec<LeaseDemand> {
        let quotas: Vec<(String, Arc<ProviderQuota>)> =
            lock(&self.quotas).iter().map(|(id, q)| (id.clone(), q.clone())).collect();
        let mut out = Vec::new();
        for (id, quota) in quotas {
            let Limiter::Leased(leases, ..) = &quota.limiter else { continue };
            let spec = &quota.spec;
            let mut leases = lock(leases);
            // An idle key's share is given back (its row too, as this renewal does not
            // name it); its parked limiter is kept for one window after its last use.
            let remembered = idle + quota.window.mul_f64(1.0 + JITTER_MARGIN);
            leases.retain(|_, l| !l.idle || l.last_used.elapsed() <= remembered);
            for (key, lease) in leases.iter_mut() {
                if lease.idle {
                    continue;
                }
                if lease.last_used.elapsed() > idle {
                    lease.park();
                    continue;
                }
                let limit = spec.requests.max(1);
                let wants = if lease.waited {
                    limit
                } else {
                    // Twice the pace of the last interval, per window.
                    let per_window =
                        f64::from(lease.grants) * f64::from(spec.per_secs.max(1)) / elapsed.as_secs_f64().max(0.001);
                    ((2.0 * per_window).ceil().min(f64::from(limit)) as u32).max(1)
                };
                lease.grants = 0;
                lease.waited = false;
                lease.sent.advance(SentCounts::bucket_now(spec.per_secs));
                let fleet_key = if key.is_empty() { id.clone() } else { format!("{id}/{key}") };
                out.push(LeaseDemand {
                    quota: quota.clone(),
                    key: key.clone(),
                    request: ShareRequest {
                        quota: fleet_key,
                        limit,
                        per_secs: spec.per_secs.max(1),
                        wants,
                        sent: lease.sent.clone(),
                    },
                    share: lease.share,
                });
            }
        }
        out
    }

    /// Sets a leased key's share (smaller ones before the renewal commits, larger ones
    /// after); `valid_until`, once committed, is when it lapses without a renewal.
    pub(crate) fn set_share(&self, demand: &LeaseDemand, grant: ShareGrant, valid_until: Option<Instant>) {
        let Limiter::Leased(leases, ..) = &demand.quota.limiter else { return };
        let mut leases = lock(leases);
        let lease = leases.entry(demand.key.clone()).or_insert_with(Lease::new);
        if lease.idle {
            // Given back since the renewal asked: it stays so.
            return;
        }
        lease.set_share(grant.requests, demand.quota.spec.per_secs, grant.others_lately, grant.credit);
        if let Some(until) = valid_until {
            lease.valid_until = Some(until);
        }
    }

    /// Drops every lease (a stop): requests wait from now on.
    pub(crate) fn drop_leases(&self) {
        for q in lock(&self.quotas).values() {
            if let Limiter::Leased(leases, ..) = &q.limiter {
                lock(leases).clear();
            }
        }
    }

    /// This replica's shares: (fleet quota key, requests per window, window seconds).
    pub fn shares(&self) -> Vec<(String, u32, u32)> {
        let mut out = Vec::new();
        for (id, q) in lock(&self.quotas).iter() {
            if let Limiter::Leased(leases, ..) = &q.limiter {
                for (key, lease) in lock(leases).iter().filter(|(_, l)| !l.idle) {
                    let fleet_key = if key.is_empty() { id.clone() } else { format!("{id}/{key}") };
                    out.push((fleet_key, lease.share, q.spec.per_secs));
                }
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::tests::{busiest_window, spec};
    use super::*;
    use crate::config::QuotaScope;

    fn grant(requests: u32, others_lately: bool) -> ShareGrant {
        ShareGrant { requests, holders: 1, others_lately, credit: 0 }
    }

    /// The leased key's demand (there is one key in these tests).
    fn demand(limits: &RateLimiters) -> LeaseDemand {
        let mut d = limits.lease_demands(Duration::from_secs(60), Duration::from_secs(1));
        assert_eq!(d.len(), 1);
        d.remove(0)
    }

    #[tokio::test]
    async fn a_leased_quota_waits_for_its_share_and_lapses_without_a_renewal() {
        let limits = RateLimiters::leased();
        let s = spec(20, 1, QuotaScope::Provider);
        let q = limits.quota("erp", "a", Some(&s)).unwrap();
        assert!(limits.quota("none", "a", None).is_none());
        // No share yet: the request waits, and the renewal is asked for at once.
        let renew = limits.renewal_wanted().unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(60), q.acquire()).await.is_err());
        assert!(tokio::time::timeout(Duration::from_millis(10), renew.notified()).await.is_ok());
        let d = demand(&limits);
        assert_eq!((d.request.quota.as_str(), d.request.limit, d.request.wants, d.share), ("erp/20", 20, 20, 0));

        // A share of a key no other replica used lately: requests go at once.
        limits.set_share(&d, grant(10, false), Some(Instant::now() + Duration::from_millis(300)));
        assert_eq!(limits.shares(), [("erp/20".to_owned(), 10, 1)]);
        let waited = tokio::time::timeout(Duration::from_millis(200), q.acquire()).await.expect("a share");
        assert_eq!(waited, Duration::ZERO, "a fresh key starts with its burst");
        // The share lapses with its lease unless renewed.
        tokio::time::sleep(Duration::from_millis(320)).await;
        assert_eq!(q.quota.limiter.check(&q.key), Some(UNLEASED_POLL));
    }

    #[test]
    fn a_changed_share_allows_no_extra_burst_in_any_window() {
        // Greedy on one key while the share changes 10 → 4 → 10 → 0 → 10 per 1 s: no
        // window holds more than the largest share (a new limiter starts drained, and a
        // smaller one not before the old one's next admission).
        let limits = RateLimiters::leased();
        let s = spec(10, 1, QuotaScope::Connection);
        let q = limits.quota("crm", "t", Some(&s)).unwrap();
        assert_eq!(q.quota.limiter.check(&q.key), Some(UNLEASED_POLL));
        let d = demand(&limits);
        assert_eq!(d.request.quota, "crm/10/t", "a connection's quota is keyed by its tenant");
        let start = Instant::now();
        let mut times = Vec::new();
        // Other replicas hold shares of the key (the reason it changes).
        for (share, secs) in [(10, 1.5), (4, 1.5), (10, 1.0), (0, 0.3), (10, 1.2)] {
            limits.set_share(&d, grant(share, true), Some(Instant::now() + Duration::from_secs(10)));
            let until = Instant::now() + Duration::from_secs_f64(secs);
            while Instant::now() < until {
                match q.quota.limiter.check(&q.key) {
                    None => times.push(Instant::now() - start),
                    Some(wait) => std::thread::sleep(wait.min(until.saturating_duration_since(Instant::now()))),
                }
            }
        }
        assert!(times.len() >= 25, "{times:?}");
        assert!(busiest_window(&times, Duration::from_secs(1)) <= 10, "{times:?}");
        // Waits were counted: the renewal asks for the whole limit.
        assert_eq!(demand(&limits).request.wants, 10);
    }

    #[test]
    fn a_share_others_held_lately_starts_with_the_credit_the_store_gives_and_reports_what_it_sent() {
        // 5,000 an hour on a connection another replica used lately: the store's credit
        // (what the fleet's requests leave of the burst) goes at once, then one request
        // per period (0.73 s); every admission is counted in the current bucket.
        let limits = RateLimiters::leased();
        let s = spec(5000, 3600, QuotaScope::Connection);
        let q = limits.quota("github", "t", Some(&s)).unwrap();
        let _ = q.quota.limiter.check(&q.key);
        let d = demand(&limits);
        assert_eq!(share_burst(5000), 51);
        let credit = ShareGrant { credit: 7, ..grant(5000, true) };
        limits.set_share(&d, credit, Some(Instant::now() + Duration::from_secs(10)));
        let at_once = std::iter::from_fn(|| q.quota.limiter.check(&q.key).is_none().then_some(())).count();
        assert_eq!(at_once, 7, "the credit, no more");
        let sent = demand(&limits).request.sent;
        assert_eq!(sent.total(), 7);
        assert_eq!(sent.newest, SentCounts::bucket_now(3600));
        // A credit above the share's burst is only its burst.
        let limits = RateLimiters::leased();
        let q = limits.quota("github", "t", Some(&s)).unwrap();
        let _ = q.quota.limiter.check(&q.key);
        let d = demand(&limits);
        limits.set_share(
            &d,
            ShareGrant { credit: 500, ..grant(5000, true) },
            Some(Instant::now() + Duration::from_secs(10)),
        );
        let at_once = std::iter::from_fn(|| q.quota.limiter.check(&q.key).is_none().then_some(())).count();
        assert_eq!(at_once, 51);
    }

    #[test]
    fn a_shares_burst_is_the_one_the_store_counts() {
        for n in [1u32, 2, 5, 99, 100, 101, 250, 5000, 25_000, 100_000] {
            assert_eq!(share_quota(n, 10).burst_size().get(), share_burst(n), "{n}");
        }
    }

    #[test]
    fn idle_leased_keys_are_given_back_and_a_light_user_asks_for_what_it_uses() {
        let limits = RateLimiters::leased();
        let s = spec(100, 10, QuotaScope::Connection);
        let q = limits.quota("crm", "t", Some(&s)).unwrap();
        let _ = q.quota.limiter.check(&q.key);
        let d = demand(&limits);
        limits.set_share(&d, grant(50, true), Some(Instant::now() + Duration::from_secs(10)));
        // 50 per 10 s, drained (others used the key lately): one request every ~208 ms,
        // the first after one interval.
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(q.quota.limiter.check(&q.key), None);
        // One grant in a second without a wait: twice that pace per 10 s window.
        assert_eq!(demand(&limits).request.wants, 20);
        std::thread::sleep(Duration::from_millis(30));
        assert!(limits.lease_demands(Duration::from_millis(20), Duration::from_secs(1)).is_empty());
        assert_eq!(limits.keys(), 0);
        assert!(limits.shares().is_empty());
    }

    #[test]
    fn a_key_back_from_idle_continues_its_limiter_and_is_forgotten_after_a_window() {
        let limits = RateLimiters::leased();
        let s = spec(10, 1, QuotaScope::Connection);
        let q = limits.quota("crm", "t", Some(&s)).unwrap();
        assert_eq!(q.quota.limiter.check(&q.key), Some(UNLEASED_POLL));
        let d = demand(&limits);
        limits.set_share(&d, grant(10, false), Some(Instant::now() + Duration::from_secs(10)));
        // A fresh key: its burst (one request, at 10 per second) at once, then the pace.
        assert_eq!(q.quota.limiter.check(&q.key), None);
        assert!(q.quota.limiter.check(&q.key).is_some());
        // Idle: the share goes back (no demand); used again, it asks for one at once.
        assert!(limits.lease_demands(Duration::ZERO, Duration::from_secs(1)).is_empty());
        assert_eq!(limits.keys(), 0);
        assert_eq!(q.quota.limiter.check(&q.key), Some(UNLEASED_POLL));
        let d = demand(&limits);
        assert_eq!((d.share, d.request.wants), (0, 10));
        // The same share again: the parked limiter goes on, its burst still spent.
        limits.set_share(&d, grant(10, false), Some(Instant::now() + Duration::from_secs(10)));
        assert!(q.quota.limiter.check(&q.key).is_some(), "no second burst within the window");

        // Idle for longer than a window: forgotten, and a new share starts fresh.
        assert!(limits.lease_demands(Duration::ZERO, Duration::from_secs(1)).is_empty());
        std::thread::sleep(Duration::from_millis(1_100));
        assert!(limits.lease_demands(Duration::ZERO, Duration::from_secs(1)).is_empty());
        assert!(matches!(&q.quota.limiter, Limiter::Leased(l, ..) if lock(l).is_empty()));
        assert_eq!(q.quota.limiter.check(&q.key), Some(UNLEASED_POLL));
        let d = demand(&limits);
        limits.set_share(&d, grant(10, false), Some(Instant::now() + Duration::from_secs(10)));
        assert_eq!(q.quota.limiter.check(&q.key), None);
    }
}
