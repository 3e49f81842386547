//! Rate-limit budgets shared by the fleet (`budget_shares`): each replica on one
//! PostgreSQL database holds a share of every quota it used in the last few seconds, and
//! the shares of a quota never add up to more than its limit.
//!
//! A replica renews all of its rows in one transaction per tick
//! ([`Store::renew_budget_shares`]), under a transaction-level advisory lock, so two
//! replicas never compute their shares from the same picture. Within it, for each quota:
//! the unexpired shares of the other holders are read; the replica's fair share is the
//! max-min fair division of the limit by what every holder asks for ([`fair_shares`]);
//! it may grow only into the capacity the others do not hold, and it shrinks to its
//! fair share at once ([`next_share`]). A holder above its fair share shrinks at its own
//! next renewal, and the others grow into what it gave back at theirs, so a new holder
//! reaches its fair share within two ticks. A replica that stops renewing (killed) keeps
//! its rows until their lease expires; then the others grow into its share.
//!
//! A share given back (idle, or a clean stop) stays as an expired row for one window of
//! its quota, with the share it had; so does an expired one until the purge. Each row
//! carries what its replica sent under the quota, per thirtieth of the window, as of its
//! last renewal. A grant says whether another replica held a share within the quota's
//! window (`others_lately`) and how much of a burst a new limiter for the share may
//! start with (`credit`, [`start_credit`]): what the fleet's recent pace, the others'
//! unreported requests and their bursts leave of the limit. A lightly used quota leaves
//! a whole burst; one used at its pace leaves none, and a new limiter starts drained.
//!
//! The caller lowers its local limiters to a smaller share *before* the transaction
//! commits (`before_commit`) and raises them to a larger one only *after*, so at no
//! instant do the replicas' limiters together allow more than the limit.
//!
//! SQLite has one daemon: a quota stays whole there, and nothing is read or written.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::error::{StoreError, db};

/// Serializes budget renewals across replicas until the renewal commits (key: "trib" + 2).
const BUDGET_LOCK: &str = "SELECT pg_advisory_xact_lock(1953653346, 2)";

/// Buckets a quota's window is counted in: with each renewal a replica reports the
/// requests it sent in each of the last ones ([`SentCounts`]).
pub const SENT_BUCKETS: usize = 30;

/// A share's limiter lets through one request at once, and one more per this many of
/// its requests per window (`http::ratelimit::share_quota`).
pub const SHARE_BURST_PER: u32 = 100;

/// The burst of a limiter for `requests` per window of a fleet's quota (0 for no share).
pub fn share_burst(requests: u32) -> u32 {
    if requests == 0 { 0 } else { (1 + requests / SHARE_BURST_PER).min(requests) }
}

/// Requests one replica sent under its share of a quota, per bucket of a thirtieth of
/// the quota's window ([`SENT_BUCKETS`]), newest first. Buckets are numbered by the
/// wall clock (milliseconds since the epoch divided by the bucket's length), so the
/// counts of replicas line up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentCounts {
    /// The bucket `counts[0]` counts.
    pub newest: i64,
    pub counts: Vec<u32>,
}

impl SentCounts {
    /// A bucket's length for a window of `per_secs`, in milliseconds.
    pub fn bucket_ms(per_secs: u32) -> i64 {
        (i64::from(per_secs.max(1)) * 1000 / SENT_BUCKETS as i64).max(1)
    }

    /// The bucket the wall clock is in now, for a window of `per_secs`.
    pub fn bucket_now(per_secs: u32) -> i64 {
        let ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        i64::try_from(ms).unwrap_or(i64::MAX) / Self::bucket_ms(per_secs)
    }

    /// Makes `bucket` the newest: older counts move along, those past the window go.
    pub fn advance(&mut self, bucket: i64) {
        if self.counts.is_empty() {
            self.newest = bucket;
            return;
        }
        if bucket <= self.newest {
            return;
        }
        let shift = usize::try_from(bucket - self.newest).unwrap_or(usize::MAX).min(SENT_BUCKETS);
        self.counts.splice(0..0, std::iter::repeat_n(0, shift));
        self.counts.truncate(SENT_BUCKETS);
        while self.counts.last() == Some(&0) {
            self.counts.pop();
        }
        self.newest = bucket;
    }

    /// Counts one request sent in `bucket` (one from a clock that went back counts in
    /// the newest bucket).
    pub fn record(&mut self, bucket: i64) {
        self.advance(bucket);
        if self.counts.is_empty() {
            self.counts.push(0);
        }
        self.counts[0] = self.counts[0].saturating_add(1);
    }

    /// Requests counted in all buckets.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    fn text(&self) -> String {
        self.counts.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    }
}

/// Another replica's row of a quota within the quota's window, as [`start_credit`]
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Its share (the one it had, for a share given back or expired).
    pub share: u32,
    /// Whether it still holds the share (else it sends nothing more under it).
    pub live: bool,
    /// How long ago it last renewed (and reported `sent`).
    pub since_renewal: Duration,
    pub sent: SentCounts,
}

/// The burst a new limiter for `share` of a quota of `limit` per `per_secs` may start
/// with, from what the fleet sent within the window: this replica's counts (`mine`, up
/// to now) and the others' (`others`, as of their last renewal).
///
/// In any window that begins in the past and ends `x` into the future, the fleet sends
/// what it sent in the past part, `U(x)`, and what every limiter admits in the future
/// part: at most its burst and its share's rate for `x` (a share's limiter never admits
/// more than its share in a whole window). The shares together are at most `limit`,
/// so the window stays within the limit when the bursts together are at most
/// `limit − U(x)·W/(W − x)` for every `x`: the limit less the busiest recent pace of the
/// fleet, projected over a window. That pace is taken over the last 1 … 30 buckets.
/// Less what the others may have sent since their last report (a burst and their rate
/// for that time, at most a lease) and the bursts they may still send, the rest is this
/// limiter's, up to its own burst. A quota used lightly within a long window (a GitHub
/// connection: a few requests of 5,000 an hour) leaves a whole burst; one used at its
/// pace (HubSpot's 40 a second, shared) leaves none, and the limiter starts drained.
pub fn start_credit(
    limit: u32,
    per_secs: u32,
    share: u32,
    mine: &SentCounts,
    others: &[Sender],
    lease: Duration,
) -> u32 {
    let burst = share_burst(share);
    if burst == 0 {
        return 0;
    }
    let now = mine.newest.max(SentCounts::bucket_now(per_secs));
    let mut per_bucket = [0u64; SENT_BUCKETS];
    for sent in std::iter::once(mine).chain(others.iter().map(|o| &o.sent)) {
        for (i, c) in sent.counts.iter().enumerate() {
            let age = (now - (sent.newest - i as i64)).max(0);
            if let Some(b) = usize::try_from(age).ok().and_then(|a| per_bucket.get_mut(a)) {
                *b += u64::from(*c);
            }
        }
    }
    let mut recent = 0u64;
    let mut pace = 0u64;
    for (k, c) in per_bucket.iter().enumerate() {
        recent += c;
        pace = pace.max((recent * SENT_BUCKETS as u64).div_ceil(k as u64 + 1));
    }
    let window = f64::from(per_secs.max(1));
    let mut reserved = 1u64;
    for o in others {
        let since = o.since_renewal.min(lease).as_secs_f64();
        let unreported = u64::from(share_burst(o.share)) + (f64::from(o.share) * since / window).ceil() as u64;
        let to_come = if o.live { u64::from(share_burst(o.share)) + 1 } else { 0 };
        reserved += unreported + to_come;
    }
    let left = u64::from(limit).saturating_sub(pace).saturating_sub(reserved);
    u32::try_from(left.min(u64::from(burst))).unwrap_or(burst)
}

/// What one replica asks of one quota at a renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRequest {
    /// The quota's key across the fleet: `provider/requests` for a provider-scope quota,
    /// `provider/requests/tenant` for a connection's.
    pub quota: String,
    /// The quota's whole limit: requests per `per_secs`.
    pub limit: u32,
    pub per_secs: u32,
    /// The requests per window this replica could use (the limit while it waits on it).
    pub wants: u32,
    /// What it sent under the quota within the window, up to now.
    pub sent: SentCounts,
}

/// The share a renewal gave one quota (in the order of the requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareGrant {
    /// Requests per window this replica may send.
    pub requests: u32,
    /// Replicas holding an unexpired share of the quota, this one included.
    pub holders: u32,
    /// Whether another replica held a share of the quota within its last window (so
    /// requests of others may still count in it).
    pub others_lately: bool,
    /// The burst a new limiter for this share may start with ([`start_credit`]); when
    /// others held the quota lately, a changed share starts with this much.
    pub credit: u32,
}

/// Another replica's hold on a quota, as the renewal reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub replica: String,
    pub share: u32,
    pub wants: u32,
}

/// One unexpired share, for status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BudgetShareRow {
    pub quota: String,
    pub replica: String,
    pub requests: i64,
    pub wants: i64,
    #[sqlx(rename = "quota_limit")]
    #[serde(rename = "limit")]
    pub limit: i64,
    pub per_secs: i64,
    pub expires_at: DateTime<Utc>,
}

/// Max-min fair division of `limit` among holders wanting `wants` (water-filling): who
/// wants less than an equal part gets what it wants, the rest is split equally among
/// the others. What nobody wants is split equally too (a quota is never left idle
/// for want of asking: a lone holder has it whole, however little it used lately).
/// The requests an integer division leaves over go one each, in the order given (the
/// same order on every replica).
pub fn fair_shares(limit: u32, wants: &[u32]) -> Vec<u32> {
    let mut shares = vec![0u32; wants.len()];
    let asking: Vec<usize> = (0..wants.len()).filter(|i| wants[*i] > 0).collect();
    let mut left = limit;
    let mut open = asking.clone();
    while !open.is_empty() && left > 0 {
        let part = left / open.len() as u32;
        if part == 0 {
            for i in open.iter().take(left as usize) {
                shares[*i] += 1;
            }
            return shares;
        }
        let mut next = Vec::with_capacity(open.len());
        let mut given = 0;
        for i in &open {
            let more = (wants[*i] - shares[*i]).min(part);
            shares[*i] += more;
            given += more;
            if shares[*i] < wants[*i] {
                next.push(*i);
            }
        }
        left -= given;
        open = next;
    }
    if left > 0 && !asking.is_empty() {
        let (part, extra) = (left / asking.len() as u32, left % asking.len() as u32);
        for (n, i) in asking.iter().enumerate() {
            shares[*i] += part + u32::from((n as u32) < extra);
        }
    }
    shares
}

/// This replica's next share of a quota of `limit`: its fair share among itself
/// (wanting `wants`) and `others`, but no more than the others leave unheld.
pub fn next_share(limit: u32, me: &str, wants: u32, others: &[Holder]) -> u32 {
    let mut holders: Vec<(&str, u32)> = others.iter().map(|h| (h.replica.as_str(), h.wants)).collect();
    holders.push((me, wants));
    holders.sort_unstable();
    let wanted: Vec<u32> = holders.iter().map(|h| h.1).collect();
    let fair = fair_shares(limit, &wanted);
    let mine = holders.iter().position(|h| h.0 == me).map_or(0, |i| fair[i]);
    let held: u64 = others.iter().map(|h| u64::from(h.share)).sum();
    let free = u64::from(limit).saturating_sub(held);
    mine.min(u32::try_from(free).unwrap_or(u32::MAX))
}

#[derive(sqlx::FromRow)]
struct OtherRow {
    quota: String,
    replica: String,
    requests: i64,
    wants: i64,
    /// Unexpired (else held within the last window, expired or given back since).
    live: bool,
    per_secs: i64,
    sent_bucket: i64,
    sent: Vec<i64>,
    since_renewal: f64,
}

impl OtherRow {
    /// The row as a sender within a window of `per_secs`. Counts kept for another
    /// window length (a tenant's override changed it) all count as sent just now.
    fn sender(&self, per_secs: u32) -> Sender {
        let counts: Vec<u32> = self.sent.iter().map(|c| count(*c)).collect();
        let sent = if i64::from(per_secs) == self.per_secs {
            SentCounts { newest: self.sent_bucket, counts }
        } else {
            let all: u64 = counts.iter().map(|c| u64::from(*c)).sum();
            SentCounts {
                newest: SentCounts::bucket_now(per_secs),
                counts: vec![u32::try_from(all).unwrap_or(u32::MAX)],
            }
        };
        Sender {
            share: count(self.requests),
            live: self.live,
            since_renewal: Duration::try_from_secs_f64(self.since_renewal.max(0.0)).unwrap_or(Duration::MAX),
            sent,
        }
    }
}

fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl Store {
    /// Renews `replica`'s shares of the quotas in `requests` (one row each, leased for
    /// `lease`), gives back its shares of every other quota, and returns the new shares in the
    /// order of `requests`. `before_commit` sees them before they are committed: the
    /// caller lowers its limiters there. `purge` also deletes rows expired more than a
    /// window and a minute ago.
    /// On SQLite every quota is whole.
    pub async fn renew_budget_shares(
        &self,
        replica: &str,
        lease: Duration,
        requests: &[ShareRequest],
        purge: bool,
        before_commit: impl FnOnce(&[ShareGrant]),
    ) -> Result<Vec<ShareGrant>, StoreError> {
        let s = match self {
            Store::Sqlite(_) => {
                let grants: Vec<ShareGrant> = requests
                    .iter()
                    .map(|r| ShareGrant {
                        requests: r.limit,
                        holders: 1,
                        others_lately: false,
                        credit: share_burst(r.limit),
                    })
                    .collect();
                before_commit(&grants);
                return Ok(grants);
            }
            Store::Postgres(s) => s,
        };
        let what = "renewing this replica's budget shares";
        let keys: Vec<String> = requests.iter().map(|r| r.quota.clone()).collect();
        let mut tx = s.pool.begin().await.map_err(db(what))?;
        sqlx::query(BUDGET_LOCK).execute(&mut *tx).await.map_err(db(what))?;
        // Shares given back stay as rows, expired (so held no more) with the share they
        // had and what was sent under it, for one window more: the next holder learns
        // that requests sent under them may still count (`others_lately`, `credit`).
        // The purge deletes them after that.
        sqlx::query(
            "UPDATE budget_shares SET wants = 0, expires_at = LEAST(expires_at, now()) \
             WHERE replica = $1 AND NOT (quota = ANY($2)) AND expires_at > now()",
        )
        .bind(replica)
        .bind(&keys)
        .execute(&mut *tx)
        .await
        .map_err(db(what))?;
        if purge {
            sqlx::query(
                "DELETE FROM budget_shares \
                 WHERE expires_at < now() - make_interval(secs => per_secs::double precision) - interval '1 minute'",
            )
            .execute(&mut *tx)
            .await
            .map_err(db(what))?;
        }
        let mut grants = Vec::with_capacity(requests.len());
        if !requests.is_empty() {
            let rows: Vec<OtherRow> = sqlx::query_as(
                "SELECT quota, replica, requests, wants, expires_at > now() AS live, per_secs, sent_bucket, sent, \
                 EXTRACT(EPOCH FROM now() - renewed_at)::float8 AS since_renewal FROM budget_shares \
                 WHERE quota = ANY($1) AND replica <> $2 \
                 AND expires_at > now() - make_interval(secs => per_secs::double precision + 1)",
            )
            .bind(&keys)
            .bind(replica)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(what))?;
            let mut others: std::collections::HashMap<&str, Vec<Holder>> = std::collections::HashMap::new();
            let mut lately: std::collections::HashMap<&str, Vec<&OtherRow>> = std::collections::HashMap::new();
            for r in &rows {
                lately.entry(r.quota.as_str()).or_default().push(r);
            }
            for r in rows.iter().filter(|r| r.live) {
                others.entry(r.quota.as_str()).or_default().push(Holder {
                    replica: r.replica.clone(),
                    share: count(r.requests),
                    wants: count(r.wants),
                });
            }
            for r in requests {
                let them = others.get(r.quota.as_str()).map_or(&[][..], Vec::as_slice);
                let share = next_share(r.limit, replica, r.wants, them);
                let senders: Vec<Sender> = lately
                    .get(r.quota.as_str())
                    .map(|rows| rows.iter().map(|o| o.sender(r.per_secs)).collect())
                    .unwrap_or_default();
                grants.push(ShareGrant {
                    requests: share,
                    holders: u32::try_from(them.len() + 1).unwrap_or(u32::MAX),
                    others_lately: !senders.is_empty(),
                    credit: start_credit(r.limit, r.per_secs, share, &r.sent, &senders, lease),
                });
            }
            let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
            let shares: Vec<i64> = grants.iter().map(|g| i64::from(g.requests)).collect();
            let wants: Vec<i64> = requests.iter().map(|r| i64::from(r.wants)).collect();
            let limits: Vec<i64> = requests.iter().map(|r| i64::from(r.limit)).collect();
            let windows: Vec<i64> = requests.iter().map(|r| i64::from(r.per_secs)).collect();
            let buckets: Vec<i64> = requests.iter().map(|r| r.sent.newest).collect();
            let sent: Vec<String> = requests.iter().map(|r| r.sent.text()).collect();
            sqlx::query(
                "INSERT INTO budget_shares \
                 (quota, replica, requests, wants, quota_limit, per_secs, expires_at, sent_bucket, sent, renewed_at) \
                 SELECT q, $2, r, w, l, p, now() + make_interval(secs => $7::double precision / 1000), b, \
                 CASE WHEN s = '' THEN '{}'::bigint[] ELSE string_to_array(s, ',')::bigint[] END, now() \
                 FROM UNNEST($1::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $8::bigint[], $9::text[]) \
                 AS t(q, r, w, l, p, b, s) \
                 ON CONFLICT (quota, replica) DO UPDATE SET requests = excluded.requests, wants = excluded.wants, \
                 quota_limit = excluded.quota_limit, per_secs = excluded.per_secs, expires_at = excluded.expires_at, \
                 sent_bucket = excluded.sent_bucket, sent = excluded.sent, renewed_at = excluded.renewed_at",
            )
            .bind(&keys)
            .bind(replica)
            .bind(&shares)
            .bind(&wants)
            .bind(&limits)
            .bind(&windows)
            .bind(lease_ms)
            .bind(&buckets)
            .bind(&sent)
            .execute(&mut *tx)
            .await
            .map_err(db(what))?;
        }
        before_commit(&grants);
        tx.commit().await.map_err(db(what))?;
        Ok(grants)
    }

    /// Gives back every share `replica` holds (a clean stop). Nothing is stored on SQLite.
    pub async fn release_budget_shares(&self, replica: &str) -> Result<(), StoreError> {
        let Store::Postgres(s) = self else { return Ok(()) };
        sqlx::query(
            "UPDATE budget_shares SET wants = 0, expires_at = LEAST(expires_at, now()) \
             WHERE replica = $1 AND expires_at > now()",
        )
        .bind(replica)
        .execute(&s.pool)
        .await
        .map_err(db("giving back this replica's budget shares"))?;
        Ok(())
    }

    /// The unexpired shares of every replica (at most `limit`), by replica and quota.
    pub async fn list_budget_shares(&self, limit: i64) -> Result<Vec<BudgetShareRow>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(Vec::new()),
            Store::Postgres(s) => sqlx::query_as(
                "SELECT quota, replica, requests, wants, quota_limit, per_secs, expires_at FROM budget_shares \
                 WHERE expires_at > now() ORDER BY replica, quota LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&s.pool)
            .await
            .map_err(db("listing budget shares")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(replica: &str, share: u32, wants: u32) -> Holder {
        Holder { replica: replica.into(), share, wants }
    }

    #[test]
    fn fair_shares_divide_the_limit_by_what_each_wants() {
        assert_eq!(fair_shares(110, &[110, 110]), [55, 55]);
        assert_eq!(fair_shares(110, &[110, 110, 110]), [37, 37, 36], "the remainder goes one each, in order");
        assert_eq!(fair_shares(100, &[10, 100]), [10, 90], "an idle holder's part goes to the busy one");
        assert_eq!(fair_shares(100, &[10, 30, 100, 100]), [10, 30, 30, 30]);
        assert_eq!(fair_shares(2, &[5, 5, 5]), [1, 1, 0], "fewer requests than holders");
        assert_eq!(fair_shares(100, &[0, 100]), [0, 100]);
        assert_eq!(fair_shares(100, &[]), Vec::<u32>::new());
        assert_eq!(fair_shares(0, &[3]), [0]);
        // What nobody asks for is split too: a quota is not left idle.
        assert_eq!(fair_shares(100, &[1]), [100], "a lone light user has it whole");
        assert_eq!(fair_shares(100, &[10, 30]), [40, 60]);
        assert_eq!(fair_shares(101, &[1, 1, 1]), [34, 34, 33]);
    }

    #[test]
    fn a_replica_grows_only_into_what_others_do_not_hold_and_shrinks_to_its_fair_share() {
        // Alone: the whole quota.
        assert_eq!(next_share(110, "a", 110, &[]), 110);
        // b arrives while a holds everything: nothing until a shrinks.
        let a_all = [holder("a", 110, 110)];
        assert_eq!(next_share(110, "b", 110, &a_all), 0);
        // a's next renewal sees b (share 0, wanting everything): a shrinks to half.
        assert_eq!(next_share(110, "a", 110, &[holder("b", 0, 110)]), 55);
        // Then b grows into the half a gave back.
        assert_eq!(next_share(110, "b", 110, &[holder("a", 55, 110)]), 55);
        // A lone holder has the whole quota however little it asks for.
        assert_eq!(next_share(110, "a", 1, &[]), 110);
        // An idle replica keeps only what it uses; the busy one takes the rest.
        assert_eq!(next_share(110, "a", 4, &[holder("b", 55, 110)]), 4);
        assert_eq!(next_share(110, "b", 110, &[holder("a", 4, 4)]), 106);
        // The others' shares are respected even above their fair part (they shrink
        // at their own renewal).
        assert_eq!(next_share(100, "c", 100, &[holder("a", 60, 100), holder("b", 40, 100)]), 0);
    }

    fn sent(newest: i64, counts: &[u32]) -> SentCounts {
        SentCounts { newest, counts: counts.to_vec() }
    }

    #[test]
    fn sent_counts_move_along_the_window_and_forget_what_left_it() {
        let mut c = SentCounts::default();
        c.record(100);
        c.record(100);
        c.record(102);
        assert_eq!(c, sent(102, &[1, 0, 2]));
        c.advance(101);
        assert_eq!(c, sent(102, &[1, 0, 2]), "a clock that went back changes nothing");
        c.record(101);
        assert_eq!(c, sent(102, &[2, 0, 2]), "and counts in the newest bucket");
        c.advance(102 + SENT_BUCKETS as i64 - 1);
        assert_eq!(c.counts.len(), SENT_BUCKETS);
        assert_eq!(c.total(), 2, "the oldest bucket is still within the window");
        c.advance(102 + SENT_BUCKETS as i64);
        assert_eq!(c, sent(102 + SENT_BUCKETS as i64, &[]), "nothing within the window");
        assert_eq!(c.text(), "");
        assert_eq!(sent(7, &[3, 0, 1]).text(), "3,0,1");
        assert_eq!(SentCounts::bucket_ms(3600), 120_000);
        assert_eq!(SentCounts::bucket_ms(1), 33);
    }

    fn other(share: u32, live: bool, since_ms: u64, sent: SentCounts) -> Sender {
        Sender { share, live, since_renewal: Duration::from_millis(since_ms), sent }
    }

    #[test]
    fn a_new_limiter_starts_with_what_the_fleets_recent_requests_leave_of_its_burst() {
        let lease = Duration::from_secs(5);
        let now = SentCounts::bucket_now(3600);
        let none = SentCounts::default();
        assert_eq!(share_burst(5000), 51);
        assert_eq!(share_burst(0), 0);
        // Alone on a quota nobody used: the whole burst.
        assert_eq!(start_credit(5000, 3600, 5000, &none, &[], lease), 51);
        // No share, no credit.
        assert_eq!(start_credit(5000, 3600, 0, &none, &[], lease), 0);
        // A GitHub connection another replica gave back after 12 requests this hour:
        // the whole burst.
        let gave_back = other(5000, false, 30_000, sent(now - 3, &[8, 0, 4]));
        assert_eq!(start_credit(5000, 3600, 5000, &none, &[gave_back], lease), 51);
        // A quota the fleet used at its pace over the window: nothing left.
        let steady = other(2500, true, 500, sent(now, &[166; SENT_BUCKETS]));
        assert_eq!(start_credit(5000, 3600, 2500, &sent(now, &[0]), &[steady], lease), 0);
        // Idle for most of the window but busy just now: the recent pace counts, not
        // the window's total (4,900 in the last two buckets would be 73,500 an hour).
        let burst_now = other(5000, false, 1_000, sent(now, &[4000, 900]));
        assert_eq!(start_credit(5000, 3600, 5000, &none, &[burst_now], lease), 0);
        // 10 a second, shared by two: each holder's burst and what it may have sent
        // since its last report are kept back; at pace nothing is left.
        let now1 = SentCounts::bucket_now(1);
        let half = other(5, true, 900, sent(now1, &[0, 1, 0, 0, 0, 0, 1]));
        assert_eq!(start_credit(10, 1, 5, &none, &[half], lease), 0);
        // Salesforce's 100,000 a day, 1,001 sent this hour by a replica that stopped:
        // a quarter share starts with its whole burst (251).
        let nowd = SentCounts::bucket_now(86_400);
        let stopped = other(100_000, false, 2_000, sent(nowd, &[1001]));
        assert_eq!(start_credit(100_000, 86_400, 25_000, &none, &[stopped], lease), 251);
        // This replica's own recent requests count as the others' do.
        let mine = sent(now, &[4000, 900]);
        assert_eq!(start_credit(5000, 3600, 5000, &mine, &[], lease), 0);
    }

    #[test]
    fn converging_replicas_never_hold_more_than_the_limit() {
        // Replicas renew in turn, each from the store's picture; whatever the order and
        // the wants, the shares never add up to more than the limit, and with steady
        // wants they settle on the fair division.
        for limit in [1u32, 2, 7, 10, 110, 1000] {
            for wants in [vec![limit, limit], vec![limit, 1, limit], vec![3, limit, limit, limit]] {
                let names: Vec<String> = (0..wants.len()).map(|i| format!("r{i}")).collect();
                let mut shares = vec![0u32; wants.len()];
                for round in 0..12 {
                    for turn in 0..wants.len() {
                        let i = (turn + round) % wants.len();
                        let others: Vec<Holder> = (0..wants.len())
                            .filter(|j| *j != i)
                            .map(|j| holder(&names[j], shares[j], wants[j]))
                            .collect();
                        shares[i] = next_share(limit, &names[i], wants[i], &others);
                        let sum: u32 = shares.iter().sum();
                        assert!(sum <= limit, "{limit} {wants:?}: {shares:?}");
                    }
                }
                let mut order: Vec<usize> = (0..wants.len()).collect();
                order.sort_by(|x, y| names[*x].cmp(&names[*y]));
                let fair = fair_shares(limit, &order.iter().map(|i| wants[*i]).collect::<Vec<_>>());
                let expected: Vec<u32> =
                    (0..wants.len()).map(|i| fair[order.iter().position(|o| *o == i).unwrap()]).collect();
                assert_eq!(shares, expected, "{limit} {wants:?}");
            }
        }
    }
}
