//! Process-wide rate limiting: one governor limiter per quota, shared by every session
//! and run of the process through [`RateLimiters`].
//!
//! - **Quotas.** A manifest's `[rate_limit]` is `requests` per `per_secs`. With
//!   `scope = "connection"` (the default) every connection (tenant + provider) has its
//!   own budget: one keyed limiter per provider, keyed by tenant (the same quota shape
//!   fanned out). With `scope = "provider"` every tenant shares one budget (one app
//!   quota): one direct limiter, taken in FIFO turns so tenants share it fairly.
//! - **Shape.** A limit is a sliding-window promise: never more than `requests` in any
//!   `per_secs`. A small burst (2 plus 1 % of the quota) is allowed and the rest is
//!   spread evenly over the window stretched by 2 % (a margin for network jitter), which
//!   keeps every window at or under `requests` and uses about 93–97 % of it.
//! - **Replicas.** On SQLite (one daemon) a quota is whole. Replicas on one PostgreSQL
//!   database lease shares of each quota through the store ([`RateLimiters::leased`],
//!   renewed by `http::budgets`, computed by `store::budgets`): a quota key
//!   (provider-scope: the provider; connection-scope: provider and tenant) gets a limiter
//!   of this replica's share, zero (wait) until the first renewal gives it one, and the
//!   shares of the fleet never add up to more than the limit. A limiter replaced for a
//!   new share starts with only the part of its burst the fleet's reported requests
//!   leave, and, when smaller, not before the old one would have admitted the next
//!   request (`lease`).
//! - **Adaptive.** A response's remaining/reset headers (named by the manifest) spread the
//!   requests left until the reset; remaining 0 without a reset pauses for one window.
//!   A throttle response's wait (`Retry-After` or the reset) holds the whole quota.
//! - **Writes' share.** A handle is of the read or the write class
//!   ([`QuotaHandle::for_writes`]). While writes wait on a key, a read that would take a
//!   request defers when writes got less than the write share (`[writes] rate_share`) of
//!   the key's recent grants; writes never defer. When only one class waits it uses the
//!   whole budget: nothing is kept idle for the other. On a shared quota reads and writes
//!   take FIFO turns of their own, so a read waiting for its turn never stands in front
//!   of a write.
//! - **Eviction.** [`RateLimiters::sweep`] (run every minute from [`RateLimiters::quota`]
//!   and by the daemon's housekeeping) drops keys whose state is indistinguishable from
//!   a fresh one (governor's `retain_recent`), so idle connections cost nothing.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use reqwest::header::HeaderMap;

use crate::config::{QuotaScope, RateLimitSpec};

mod lease;

use lease::Lease;

/// A quota's burst is 2 plus one request per this many (a share's: 1 plus, the store's
/// [`crate::store::share_burst`]). Every request of the burst is one fewer in the steady rate (a
/// window holds the burst and the spread requests), so it is kept small; it lets a
/// client that pauses for up to `burst - 1` intervals (a worker between two batches)
/// catch up instead of losing those requests.
const BURST_PER: u32 = crate::store::budgets::SHARE_BURST_PER;
/// The window is stretched by this fraction: requests timed at the client arrive with
/// jitter at the server, and the server's count is the one that matters.
const JITTER_MARGIN: f64 = 0.02;
/// How often [`RateLimiters::quota`] sweeps idle keys.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Writes' share is counted over this many recent grants of a key.
const SHARE_WINDOW: u32 = 20;
/// The longest a deferred read sleeps before it looks again.
const DEFER_MAX: Duration = Duration::from_millis(50);
/// Writes' share of a quota while reads and writes both wait on it (`[writes] rate_share`).
pub const DEFAULT_WRITE_SHARE: f64 = 0.25;
/// How often a request on a leased quota without a share looks again.
const UNLEASED_POLL: Duration = Duration::from_millis(25);
/// The longest a request on a leased quota waits before it looks again (its share may
/// have grown meanwhile).
const LEASED_RECHECK: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The governor quota that keeps `requests` per `per_secs` (this process's share of a
/// quota, at least 1) in every sliding window.
pub fn window_quota(requests: u32, per_secs: u32) -> Quota {
    shaped_quota(requests, per_secs, 2)
}

/// [`window_quota`] for one replica's share of a fleet's quota: a burst of one plus one
/// per [`BURST_PER`]. Every share keeps its own burst, and each burst request is one
/// fewer in the share's steady rate: at small shares (5 of a 10-a-second quota split in
/// two) the constant two would cost a fifth of the rate.
pub fn share_quota(requests: u32, per_secs: u32) -> Quota {
    shaped_quota(requests, per_secs, 1)
}

fn shaped_quota(requests: u32, per_secs: u32, base_burst: u32) -> Quota {
    let n = requests.max(1);
    let window = Duration::from_secs(u64::from(per_secs.max(1)));
    let burst = (base_burst + n / BURST_PER).min(n);
    // GCRA admits `burst + ceil(w / period) - 1` requests in a window `w`; with
    // `cells = n - burst + 1` periods spanning more than the window that is at most `n`.
    let cells = n - burst + 1;
    let period = window.mul_f64(1.0 + JITTER_MARGIN) / cells;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst)
}

/// Who a request is, for the share of the budget writes are given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Class {
    #[default]
    Read,
    Write,
}

/// One key's recent grants and waiting writes.
#[derive(Debug, Default)]
struct Shares {
    writes_waiting: u32,
    /// The last grants' classes, newest in bit 0 (set: a write).
    recent: u32,
    /// Grants in `recent`, at most [`SHARE_WINDOW`].
    counted: u32,
    last_grant: Option<Instant>,
}

impl Shares {
    /// Writes' share of the recent grants (0 before any).
    fn write_share(&self) -> f64 {
        if self.counted == 0 {
            return 0.0;
        }
        let mask = if self.counted >= 32 { u32::MAX } else { (1 << self.counted) - 1 };
        f64::from((self.recent & mask).count_ones()) / f64::from(self.counted)
    }

    fn grant(&mut self, class: Class) {
        self.recent = (self.recent << 1) | u32::from(class == Class::Write);
        self.counted = (self.counted + 1).min(SHARE_WINDOW);
        self.last_grant = Some(Instant::now());
    }
}

enum Limiter {
    Direct(DefaultDirectRateLimiter),
    Keyed(DefaultKeyedRateLimiter<String>),
    /// Shares leased from the fleet, one per key (`""` for a provider-scope quota).
    Leased(Mutex<HashMap<String, Lease>>, Arc<tokio::sync::Notify>, u32),
}

impl Limiter {
    /// `None` when a request may go now (and is counted), else how long to wait.
    fn check(&self, key: &str) -> Option<Duration> {
        match self {
            Self::Direct(l) => l.check().err().map(|n| n.wait_time_from(l.clock().now())),
            Self::Keyed(l) => l.check_key(&key.to_owned()).err().map(|n| n.wait_time_from(l.clock().now())),
            Self::Leased(leases, renew, per_secs) => {
                let mut leases = lock(leases);
                let lease = leases.entry(key.to_owned()).or_insert_with(|| {
                    // A key new to this replica: ask for a share now, not at the next tick.
                    renew.notify_one();
                    Lease::new()
                });
                if lease.idle {
                    // A key back from idle asks for a share at once too.
                    lease.idle = false;
                    lease.waited = true;
                    renew.notify_one();
                }
                // A share can grow at any renewal: a request that a small share would
                // hold back for a minute looks again soon.
                lease.check(*per_secs).map(|wait| wait.min(LEASED_RECHECK))
            }
        }
    }
}

/// One provider's quota: its limiter and the holds responses put on it.
struct ProviderQuota {
    /// The manifest's spec (a changed manifest gets a new limiter).
    spec: RateLimitSpec,
    window: Duration,
    limiter: Limiter,
    /// FIFO turns for a shared (provider-scope) budget, one queue per [`Class`].
    turns: [tokio::sync::Mutex<()>; 2],
    /// Writes' share while reads and writes both wait (0: reads never defer).
    write_share: f64,
    /// How long a deferred read sleeps before it looks again.
    defer: Duration,
    /// Keys where writes wait or were granted lately.
    shares: Mutex<HashMap<String, Shares>>,
    /// Key → no request before this instant (throttle responses, remaining/reset).
    holds: Mutex<HashMap<String, Instant>>,
    last_used: Mutex<Instant>,
}

impl ProviderQuota {
    fn new(spec: &RateLimitSpec, fleet: Option<&Arc<tokio::sync::Notify>>, write_share: f64) -> Self {
        let quota = window_quota(spec.requests, spec.per_secs);
        let defer = quota.replenish_interval().clamp(Duration::from_millis(1), DEFER_MAX);
        let limiter = match (fleet, spec.scope) {
            (Some(renew), _) => Limiter::Leased(Mutex::new(HashMap::new()), renew.clone(), spec.per_secs.max(1)),
            (None, QuotaScope::Provider) => Limiter::Direct(DefaultDirectRateLimiter::direct(quota)),
            (None, QuotaScope::Connection) => Limiter::Keyed(DefaultKeyedRateLimiter::keyed(quota)),
        };
        Self {
            spec: spec.clone(),
            window: Duration::from_secs(u64::from(spec.per_secs.max(1))),
            limiter,
            turns: [tokio::sync::Mutex::new(()), tokio::sync::Mutex::new(())],
            write_share,
            defer,
            shares: Mutex::new(HashMap::new()),
            holds: Mutex::new(HashMap::new()),
            last_used: Mutex::new(Instant::now()),
        }
    }

    /// Evicts fresh keys and expired holds; `true` when nothing is left worth keeping.
    fn sweep(&self) -> bool {
        let now = Instant::now();
        lock(&self.holds).retain(|_, until| *until > now);
        let window = self.window.mul_f64(1.0 + JITTER_MARGIN);
        lock(&self.shares).retain(|_, s| s.writes_waiting > 0 || s.last_grant.is_some_and(|t| t.elapsed() <= window));
        let idle = match &self.limiter {
            Limiter::Keyed(l) => {
                l.retain_recent();
                l.shrink_to_fit();
                l.is_empty()
            }
            Limiter::Direct(_) => lock(&self.last_used).elapsed() > self.window.mul_f64(1.0 + JITTER_MARGIN),
            // Idle leases are given back, then forgotten, by the renewal (`lease_demands`).
            Limiter::Leased(leases, ..) => lock(leases).is_empty(),
        };
        idle && lock(&self.holds).is_empty() && lock(&self.shares).is_empty()
    }

    fn keys(&self) -> usize {
        match &self.limiter {
            Limiter::Keyed(l) => l.len(),
            Limiter::Direct(_) => 1,
            Limiter::Leased(leases, ..) => lock(leases).values().filter(|l| !l.idle).count(),
        }
    }

    /// Whether a read on `key` should leave the next request to a waiting write.
    fn read_defers(&self, key: &str) -> bool {
        lock(&self.shares).get(key).is_some_and(|s| s.writes_waiting > 0 && s.write_share() < self.write_share)
    }

    /// Counts a grant; a read's only where writes were seen (read-only keys cost nothing).
    fn granted(&self, key: &str, class: Class) {
        let mut shares = lock(&self.shares);
        if let Some(s) = shares.get_mut(key) {
            s.grant(class);
        } else if class == Class::Write {
            shares.entry(key.to_owned()).or_default().grant(class);
        }
    }
}

/// A write waiting on a key, counted while it lives (also when its wait is cancelled).
struct WriteWaiting<'q> {
    quota: &'q ProviderQuota,
    key: &'q str,
}

impl<'q> WriteWaiting<'q> {
    fn new(quota: &'q ProviderQuota, key: &'q str) -> Self {
        lock(&quota.shares).entry(key.to_owned()).or_default().writes_waiting += 1;
        Self { quota, key }
    }
}

impl Drop for WriteWaiting<'_> {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.quota.shares).get_mut(self.key) {
            s.writes_waiting = s.writes_waiting.saturating_sub(1);
        }
    }
}

/// Every quota of the process. Create one (per daemon or CLI invocation) and share it
/// with `Arc` so all sessions and runs draw from the same budgets.
pub struct RateLimiters {
    /// Leased quotas (replicas on PostgreSQL): woken when a key needs a share at once.
    fleet: Option<Arc<tokio::sync::Notify>>,
    write_share: f64,
    quotas: Mutex<HashMap<String, Arc<ProviderQuota>>>,
    last_sweep: Mutex<Instant>,
}

impl Default for RateLimiters {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiters")
            .field("leased", &self.fleet.is_some())
            .field("write_share", &self.write_share)
            .field("keys", &self.keys())
            .finish()
    }
}

impl RateLimiters {
    /// Limiters of a process that is alone with the providers' quotas: each quota whole.
    pub fn new() -> Self {
        Self {
            fleet: None,
            write_share: DEFAULT_WRITE_SHARE,
            quotas: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Limiters of one replica of a fleet: every quota key is used within the share the
    /// renewal (`http::budgets::run`) leases for it, nothing before the first renewal.
    pub fn leased() -> Self {
        Self { fleet: Some(Arc::new(tokio::sync::Notify::new())), ..Self::new() }
    }

    /// Whether quotas are leased from the fleet.
    pub fn is_leased(&self) -> bool {
        self.fleet.is_some()
    }

    /// Notified when a quota key needs a share at once (leased limiters only).
    pub(crate) fn renewal_wanted(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.fleet.clone()
    }

    /// Writes get at least `share` (0 to 0.9) of a quota's grants while reads wait on it
    /// too (`[writes] rate_share`). Set it before the first quota is handed out.
    pub fn with_write_share(mut self, share: f64) -> Self {
        self.write_share = if share.is_finite() { share.clamp(0.0, 0.9) } else { DEFAULT_WRITE_SHARE };
        self
    }

    pub fn write_share(&self) -> f64 {
        self.write_share
    }

    /// The quota a request of `tenant` to `provider` draws from; `None` when the
    /// manifest declares no rate limit.
    pub fn quota(&self, provider: &str, tenant: &str, spec: Option<&RateLimitSpec>) -> Option<QuotaHandle> {
        let spec = spec?;
        if lock(&self.last_sweep).elapsed() >= SWEEP_EVERY {
            self.sweep();
        }
        // Tenants whose plans differ (a `rate_limit` override) each have their rate's own
        // limiter; those on the same rate share it.
        let id = format!("{provider}/{}", spec.requests);
        let quota = {
            let mut quotas = lock(&self.quotas);
            match quotas.get(&id) {
                Some(q) if q.spec == *spec => q.clone(),
                _ => {
                    let q = Arc::new(ProviderQuota::new(spec, self.fleet.as_ref(), self.write_share));
                    quotas.insert(id, q.clone());
                    q
                }
            }
        };
        let key = match spec.scope {
            QuotaScope::Connection => tenant.to_owned(),
            QuotaScope::Provider => String::new(),
        };
        Some(QuotaHandle { quota, key, class: Class::Read })
    }

    /// Drops keys (and whole providers) nobody used for longer than their window.
    pub fn sweep(&self) {
        *lock(&self.last_sweep) = Instant::now();
        let mut quotas = lock(&self.quotas);
        quotas.retain(|_, q| !(q.sweep() && Arc::strong_count(q) == 1));
    }

    /// Quota keys currently tracked (connections, plus one per shared provider quota).
    pub fn keys(&self) -> usize {
        lock(&self.quotas).values().map(|q| q.keys()).sum()
    }
}

/// One connection's view of its quota, for reads or (after [`Self::for_writes`]) writes.
#[derive(Clone)]
pub struct QuotaHandle {
    quota: Arc<ProviderQuota>,
    key: String,
    class: Class,
}

impl std::fmt::Debug for QuotaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaHandle")
            .field("scope", &self.quota.spec.scope)
            .field("key", &self.key)
            .field("class", &self.class)
            .finish()
    }
}

impl QuotaHandle {
    pub fn spec(&self) -> &RateLimitSpec {
        &self.quota.spec
    }

    /// The same quota for writes: they take their share ahead of waiting reads.
    pub fn for_writes(mut self) -> Self {
        self.class = Class::Write;
        self
    }

    pub fn class(&self) -> Class {
        self.class
    }

    /// Waits until a request may be sent (its class's turn on a shared quota, a hold,
    /// writes' share, then the limiter) and returns how long it waited: zero when the
    /// quota let it through at once, however long a busy machine took to get there.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let mut waited = false;
        let _writing = (self.class == Class::Write).then(|| WriteWaiting::new(&self.quota, &self.key));
        let _turn = match self.quota.spec.scope {
            QuotaScope::Provider => {
                let turn = &self.quota.turns[usize::from(self.class == Class::Write)];
                Some(match turn.try_lock() {
                    Ok(turn) => turn,
                    Err(_) => {
                        waited = true;
                        turn.lock().await
                    }
                })
            }
            QuotaScope::Connection => None,
        };
        loop {
            if let Some(until) = self.held_until().filter(|u| *u > Instant::now()) {
                waited = true;
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            if self.class == Class::Read && self.quota.read_defers(&self.key) {
                waited = true;
                tokio::time::sleep(self.quota.defer).await;
                continue;
            }
            match self.quota.limiter.check(&self.key) {
                None => break,
                Some(wait) => {
                    waited = true;
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.quota.granted(&self.key, self.class);
        *lock(&self.quota.last_used) = Instant::now();
        if waited { started.elapsed() } else { Duration::ZERO }
    }

    fn held_until(&self) -> Option<Instant> {
        lock(&self.quota.holds).get(&self.key).copied()
    }

    /// No request on this quota before `until`.
    pub fn hold_until(&self, until: Instant) {
        let mut holds = lock(&self.quota.holds);
        let entry = holds.entry(self.key.clone()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Adapts to what a (non-throttle) response says about the budget left: the
    /// requests remaining are spread until the reset; none remaining without a reset
    /// waits one window. Returns the hold placed, if any.
    pub fn observe(&self, headers: &HeaderMap, max: Duration) -> Option<Duration> {
        let spec = &self.quota.spec;
        let remaining = header_u64(headers, spec.remaining_header.as_deref()?)?;
        let reset = spec.reset_header.as_deref().and_then(|h| reset_in(headers, h));
        let pause = match reset {
            Some(until_reset) => until_reset / u32::try_from(remaining.saturating_add(1)).unwrap_or(u32::MAX),
            None if remaining == 0 => self.quota.window,
            None => return None,
        }
        .min(max);
        if pause < Duration::from_millis(1) {
            return None;
        }
        self.hold_until(Instant::now() + pause);
        Some(pause)
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_text(headers, name)?.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| v.max(0.0) as u64)
}

fn until(at: chrono::DateTime<chrono::Utc>) -> Duration {
    (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

/// `Retry-After` (or the manifest's header): seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let v = header_text(headers, name)?;
    if let Ok(secs) = v.parse::<f64>() {
        return Some(Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)));
    }
    chrono::DateTime::parse_from_rfc2822(v).ok().map(|at| until(at.to_utc()))
}

/// A reset header: epoch seconds or milliseconds, seconds from now, or a timestamp
/// (RFC 3339, RFC 2822, or minute precision like Jira's `2024-06-01T10:00Z`).
pub fn reset_in(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let v = header_text(headers, name)?;
    if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        return Some(if n >= 1e12 {
            until(chrono::DateTime::from_timestamp_millis(n as i64)?)
        } else if n >= 1e9 {
            until(chrono::DateTime::from_timestamp(n as i64, 0)?)
        } else {
            Duration::from_secs_f64(n.min(86_400.0))
        });
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(until(at.to_utc()));
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc2822(v) {
        return Some(until(at.to_utc()));
    }
    ["%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S%.f%z"]
        .iter()
        .find_map(|f| {
            chrono::DateTime::parse_from_str(v, f)
                .map(|d| d.to_utc())
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(v, f).map(|d| d.and_utc()))
                .ok()
        })
        .map(until)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::RateLimiter;
    use governor::clock::{Clock, FakeRelativeClock, Reference};
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    pub(super) fn spec(requests: u32, per_secs: u32, scope: QuotaScope) -> RateLimitSpec {
        RateLimitSpec {
            requests,
            per_secs,
            scope,
            remaining_header: Some("X-Remaining".into()),
            reset_header: Some("X-Reset".into()),
            retry_after_header: "Retry-After".into(),
            max_requests: None,
        }
    }

    /// When a greedy client is admitted, on a fake clock, over `horizon`.
    fn admitted(quota: Quota, horizon: Duration) -> Vec<Duration> {
        let clock = FakeRelativeClock::default();
        let start = clock.now();
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        let mut times = Vec::new();
        loop {
            let now = clock.now().duration_since(start).into();
            if now >= horizon {
                return times;
            }
            match limiter.check() {
                Ok(()) => times.push(now),
                Err(n) => clock.advance(n.wait_time_from(clock.now()).max(Duration::from_nanos(1))),
            }
        }
    }

    /// The most admissions in any half-open window `[t, t + w)`.
    pub(super) fn busiest_window(times: &[Duration], w: Duration) -> usize {
        let mut best = 0;
        let mut j = 0;
        for i in 0..times.len() {
            while j < times.len() && times[j] < times[i] + w {
                j += 1;
            }
            best = best.max(j - i);
        }
        best
    }

    #[test]
    fn no_window_ever_exceeds_the_quota_and_long_runs_use_most_of_it() {
        for (requests, per_secs, replicas) in [
            (20, 1, 1),
            (50, 60, 1),
            (100, 10, 1),
            (110, 10, 1),
            (100, 10, 2),
            (1, 1, 1),
            (2, 1, 1),
            (3, 5, 1),
            (1000, 1, 3),
        ] {
            let w = Duration::from_secs(u64::from(per_secs));
            let n = (requests / replicas).max(1) as usize;
            let times = admitted(window_quota((requests / replicas).max(1), per_secs), w * 8);
            let busiest = busiest_window(&times, w);
            assert!(busiest <= n, "{requests}/{per_secs}s ÷ {replicas}: {busiest} in one window");
            let used = times.len() as f64 / (8.0 * n as f64);
            if n >= 20 {
                assert!(used >= 0.9, "{requests}/{per_secs}s ÷ {replicas}: used {used:.3}");
            }
            if n >= 100 {
                // A small burst leaves at least 96 % of the limit to the steady rate.
                assert!(used >= 0.96, "{requests}/{per_secs}s ÷ {replicas}: used {used:.3}");
            }
        }
    }

    #[test]
    fn a_share_keeps_its_window_and_uses_most_of_it_even_when_small() {
        for (share, per_secs) in [(1, 1), (2, 1), (5, 1), (10, 1), (55, 10), (110, 10), (500, 60)] {
            let w = Duration::from_secs(u64::from(per_secs));
            let times = admitted(share_quota(share, per_secs), w * 8);
            let busiest = busiest_window(&times, w);
            assert!(busiest <= share as usize, "{share}/{per_secs}s: {busiest} in one window");
            let used = times.len() as f64 / (8.0 * f64::from(share));
            if share >= 5 {
                // One request of burst: the rest of the share is its steady rate.
                assert!(used >= 0.95, "{share}/{per_secs}s: used {used:.3}");
            }
        }
    }

    #[test]
    fn connection_scope_budgets_are_separate_and_provider_scope_is_shared() {
        let limits = RateLimiters::new();
        let own = spec(2, 60, QuotaScope::Connection);
        let a = limits.quota("crm", "a", Some(&own)).unwrap();
        let b = limits.quota("crm", "b", Some(&own)).unwrap();
        for h in [&a, &a, &b, &b] {
            assert_eq!(h.quota.limiter.check(&h.key), None, "each connection has its own burst");
        }
        assert!(a.quota.limiter.check(&a.key).is_some());
        assert_eq!(limits.keys(), 2);

        let shared = spec(2, 60, QuotaScope::Provider);
        let c = limits.quota("erp", "a", Some(&shared)).unwrap();
        let d = limits.quota("erp", "b", Some(&shared)).unwrap();
        assert_eq!(c.quota.limiter.check(&c.key), None);
        assert_eq!(d.quota.limiter.check(&d.key), None);
        assert!(d.quota.limiter.check(&d.key).is_some(), "one budget for every tenant");
        assert!(limits.quota("none", "a", None).is_none());
    }

    #[tokio::test]
    async fn idle_keys_are_evicted_and_providers_in_use_are_kept() {
        let limits = RateLimiters::new();
        let fast = spec(40, 1, QuotaScope::Connection);
        for tenant in ["a", "b", "c"] {
            limits.quota("crm", tenant, Some(&fast)).unwrap().acquire().await;
        }
        let shared = limits.quota("erp", "a", Some(&spec(40, 1, QuotaScope::Provider))).unwrap();
        shared.acquire().await;
        assert_eq!(limits.keys(), 4);
        tokio::time::sleep(Duration::from_millis(120)).await;
        limits.sweep();
        assert_eq!(limits.keys(), 1, "the shared quota is still held by a session");
        assert_eq!(lock(&limits.quotas).len(), 1);
        drop(shared);
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        limits.sweep();
        assert_eq!((limits.keys(), lock(&limits.quotas).len()), (0, 0));
    }

    #[tokio::test]
    async fn holds_delay_the_next_request_of_that_key_only() {
        let limits = RateLimiters::new();
        let s = spec(1000, 1, QuotaScope::Connection);
        let a = limits.quota("crm", "a", Some(&s)).unwrap();
        let b = limits.quota("crm", "b", Some(&s)).unwrap();
        a.hold_until(Instant::now() + Duration::from_millis(80));
        assert!(b.acquire().await < Duration::from_millis(40));
        assert!(a.acquire().await >= Duration::from_millis(75));
    }

    /// Greedy readers and writers on one quota key until `total` grants: the grants'
    /// classes in order and their instants.
    async fn contend(
        limits: &RateLimiters,
        spec: &RateLimitSpec,
        readers: &[&str],
        writers: &[&str],
        total: usize,
    ) -> (Vec<Class>, Vec<Instant>) {
        let grants = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let mut tasks = tokio::task::JoinSet::new();
        let handles = readers
            .iter()
            .map(|t| limits.quota("crm", t, Some(spec)).unwrap())
            .chain(writers.iter().map(|t| limits.quota("crm", t, Some(spec)).unwrap().for_writes()));
        for handle in handles {
            let grants = grants.clone();
            tasks.spawn(async move {
                loop {
                    handle.acquire().await;
                    let mut g = lock(&grants);
                    if g.0.len() >= total {
                        return;
                    }
                    g.0.push(handle.class());
                    g.1.push(Instant::now());
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let (classes, times) = std::mem::take(&mut *lock(&grants));
        (classes, times)
    }

    fn write_share_of(classes: &[Class]) -> f64 {
        classes.iter().filter(|c| **c == Class::Write).count() as f64 / classes.len() as f64
    }

    fn busiest(times: &[Instant], w: Duration) -> usize {
        let start = times[0];
        busiest_window(&times.iter().map(|t| *t - start).collect::<Vec<_>>(), w)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_writes_get_their_share_of_a_connection_quota_and_the_limit_holds() {
        // Eight greedy readers against one writer: by numbers alone the writer would get
        // about one grant in nine.
        let limits = RateLimiters::new().with_write_share(0.5);
        let s = spec(20, 1, QuotaScope::Connection);
        let (classes, times) = contend(&limits, &s, &["a"; 8], &["a"], 50).await;
        let share = write_share_of(&classes);
        assert!(share >= 0.45, "writes got {share:.2} of {} grants: {classes:?}", classes.len());
        assert!(classes.contains(&Class::Read), "reads keep the rest: {classes:?}");
        assert!(busiest(&times, Duration::from_secs(1)) <= 20, "never above the limit");
        // Another connection's reads are not held back by these writes.
        let b = limits.quota("crm", "b", Some(&s)).unwrap();
        assert_eq!(b.acquire().await, Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_holding_the_shared_quotas_turn_does_not_block_writes() {
        // Provider scope: reads of two tenants take FIFO turns; a write of a third tenant
        // still gets its share (a read deferring to it while holding the read turn).
        let limits = RateLimiters::new().with_write_share(0.25);
        let s = spec(20, 1, QuotaScope::Provider);
        let run = contend(&limits, &s, &["a", "a", "a", "b", "b", "b"], &["c"], 40);
        let (classes, times) =
            tokio::time::timeout(Duration::from_secs(60), run).await.expect("writes were not blocked");
        let share = write_share_of(&classes);
        assert!(share >= 0.2, "writes got {share:.2}: {classes:?}");
        assert!(classes.contains(&Class::Read), "{classes:?}");
        assert!(busiest(&times, Duration::from_secs(1)) <= 20);
    }

    #[tokio::test]
    async fn either_class_alone_may_use_the_whole_budget() {
        for scope in [QuotaScope::Connection, QuotaScope::Provider] {
            let limits = RateLimiters::new().with_write_share(0.9);
            let s = spec(20, 1, scope);
            let read = limits.quota("crm", "a", Some(&s)).unwrap();
            let write = read.clone().for_writes();
            // The burst (2) goes to reads at once: nothing is kept for writes not waiting.
            assert_eq!(read.acquire().await, Duration::ZERO, "{scope:?}");
            assert_eq!(read.acquire().await, Duration::ZERO, "{scope:?}");
            assert!(write.acquire().await > Duration::ZERO, "{scope:?}: the reads spent the budget");

            let limits = RateLimiters::new().with_write_share(0.0);
            let read = limits.quota("crm", "a", Some(&s)).unwrap();
            let write = read.clone().for_writes();
            assert_eq!(write.acquire().await, Duration::ZERO, "{scope:?}");
            assert_eq!(write.acquire().await, Duration::ZERO, "{scope:?}");
            assert!(read.acquire().await > Duration::ZERO, "{scope:?}: the writes spent the budget");
        }
    }

    #[tokio::test]
    async fn a_cancelled_write_stops_counting_as_waiting() {
        let limits = RateLimiters::new().with_write_share(0.9);
        let s = spec(20, 1, QuotaScope::Connection);
        let write = limits.quota("crm", "a", Some(&s)).unwrap().for_writes();
        let read = limits.quota("crm", "a", Some(&s)).unwrap();
        read.acquire().await;
        read.acquire().await;
        // The reads spent the burst: this write waits, and is given up.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), write.acquire()).await;
        assert!(gave_up.is_err());
        assert!(!read.quota.read_defers(&read.key), "no write waits any more");
        let waiting = write.clone();
        let pending = tokio::spawn(async move { waiting.acquire().await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(read.quota.read_defers(&read.key), "a write waits and has less than its share");
        pending.abort();
        let _ = pending.await;
        assert!(!read.quota.read_defers(&read.key));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn remaining_and_reset_headers_spread_what_is_left() {
        let limits = RateLimiters::new();
        let q = limits.quota("crm", "a", Some(&spec(100, 10, QuotaScope::Connection))).unwrap();
        let max = Duration::from_secs(300);
        let near = |d: Option<Duration>, secs: f64| d.is_some_and(|d| (d.as_secs_f64() - secs).abs() < 0.05);
        assert!(near(q.observe(&headers(&[("x-remaining", "0"), ("x-reset", "2")]), max), 2.0));
        assert!(near(q.observe(&headers(&[("x-remaining", "9"), ("x-reset", "10")]), max), 1.0));
        assert!(near(q.observe(&headers(&[("x-remaining", "0")]), max), 10.0), "one window without a reset");
        assert_eq!(q.observe(&headers(&[("x-remaining", "50")]), max), None);
        assert_eq!(q.observe(&headers(&[("x-remaining", "5000"), ("x-reset", "1")]), max), None);
        assert_eq!(q.observe(&headers(&[]), max), None);
        assert!(near(q.observe(&headers(&[("x-remaining", "0"), ("x-reset", "86400")]), Duration::from_secs(5)), 5.0));
    }

    #[test]
    fn retry_after_and_reset_formats() {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64().round() as i64);
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(secs(retry_after(&h, "Retry-After")), Some(7));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let h = headers(&[("retry-after", &later)]);
        assert!(secs(retry_after(&h, "retry-after")).is_some_and(|s| (28..=30).contains(&s)));
        assert_eq!(retry_after(&headers(&[]), "retry-after"), None);

        let epoch = (chrono::Utc::now().timestamp() + 20).to_string();
        let epoch_ms = (chrono::Utc::now().timestamp_millis() + 20_000).to_string();
        let rfc3339 = (chrono::Utc::now() + chrono::Duration::seconds(20)).to_rfc3339();
        for v in [epoch.as_str(), epoch_ms.as_str(), "20", rfc3339.as_str()] {
            let got = secs(reset_in(&headers(&[("x-reset", v)]), "X-Reset"));
            assert!(got.is_some_and(|s| (18..=20).contains(&s)), "{v}: {got:?}");
        }
        // Jira: minute precision.
        let jira = (chrono::Utc::now() + chrono::Duration::minutes(2)).format("%Y-%m-%dT%H:%MZ").to_string();
        let got = secs(reset_in(&headers(&[("x-reset", &jira)]), "x-reset"));
        assert!(got.is_some_and(|s| (60..=120).contains(&s)), "{jira}: {got:?}");
        let past = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        assert_eq!(reset_in(&headers(&[("x-reset", &past)]), "x-reset"), Some(Duration::ZERO));
        assert_eq!(reset_in(&headers(&[("x-reset", "soon")]), "x-reset"), None);
    }
}
