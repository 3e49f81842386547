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
//! A share given back (idle, or a clean stop) stays as a row at zero, expired, for one
//! window of its quota; so does an expired one until the purge. A grant says whether
//! another replica held a share within the quota's window (`others_lately`): when none
//! did, requests of others cannot count in any window this replica's limiter sees, and
//! its first share may start with its burst.
//!
//! The caller lowers its local limiters to a smaller share *before* the transaction
//! commits (`before_commit`) and raises them to a larger one only *after*, so at no
//! instant do the replicas' limiters together allow more than the limit.
//!
//! SQLite has one daemon: a quota stays whole there, and nothing is read or written.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::error::{StoreError, db};

/// Serializes budget renewals across replicas until the renewal commits (key: "trib" + 2).
const BUDGET_LOCK: &str = "SELECT pg_advisory_xact_lock(1953653346, 2)";

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
}

/// The share a renewal gave one quota (in the order of the requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareGrant {
    /// Requests per window this replica may send.
    pub requests: u32,
    /// Replicas holding an unexpired share of the quota, this one included.
    pub holders: u32,
    /// Whether another replica held a share of the quota within its last window (so
    /// requests of others may still count in it): a new share then starts drained.
    pub others_lately: bool,
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
                    .map(|r| ShareGrant { requests: r.limit, holders: 1, others_lately: false })
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
        // Shares given back stay as rows, at zero and expired, for one window more: the
        // next holder learns that requests sent under them may still count
        // (`others_lately`). The purge deletes them after that.
        sqlx::query(
            "UPDATE budget_shares SET requests = 0, wants = 0, expires_at = LEAST(expires_at, now()) \
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
                "SELECT quota, replica, requests, wants, expires_at > now() AS live FROM budget_shares \
                 WHERE quota = ANY($1) AND replica <> $2 \
                 AND expires_at > now() - make_interval(secs => per_secs::double precision + 1)",
            )
            .bind(&keys)
            .bind(replica)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(what))?;
            let mut others: std::collections::HashMap<&str, Vec<Holder>> = std::collections::HashMap::new();
            let lately: std::collections::HashSet<&str> = rows.iter().map(|r| r.quota.as_str()).collect();
            for r in rows.iter().filter(|r| r.live) {
                others.entry(r.quota.as_str()).or_default().push(Holder {
                    replica: r.replica.clone(),
                    share: count(r.requests),
                    wants: count(r.wants),
                });
            }
            for r in requests {
                let them = others.get(r.quota.as_str()).map_or(&[][..], Vec::as_slice);
                grants.push(ShareGrant {
                    requests: next_share(r.limit, replica, r.wants, them),
                    holders: u32::try_from(them.len() + 1).unwrap_or(u32::MAX),
                    others_lately: lately.contains(r.quota.as_str()),
                });
            }
            let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
            let shares: Vec<i64> = grants.iter().map(|g| i64::from(g.requests)).collect();
            let wants: Vec<i64> = requests.iter().map(|r| i64::from(r.wants)).collect();
            let limits: Vec<i64> = requests.iter().map(|r| i64::from(r.limit)).collect();
            let windows: Vec<i64> = requests.iter().map(|r| i64::from(r.per_secs)).collect();
            sqlx::query(
                "INSERT INTO budget_shares (quota, replica, requests, wants, quota_limit, per_secs, expires_at) \
                 SELECT q, $2, r, w, l, p, now() + make_interval(secs => $7::double precision / 1000) \
                 FROM UNNEST($1::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS t(q, r, w, l, p) \
                 ON CONFLICT (quota, replica) DO UPDATE SET requests = excluded.requests, wants = excluded.wants, \
                 quota_limit = excluded.quota_limit, per_secs = excluded.per_secs, expires_at = excluded.expires_at",
            )
            .bind(&keys)
            .bind(replica)
            .bind(&shares)
            .bind(&wants)
            .bind(&limits)
            .bind(&windows)
            .bind(lease_ms)
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
            "UPDATE budget_shares SET requests = 0, wants = 0, expires_at = LEAST(expires_at, now()) \
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
