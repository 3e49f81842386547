//! When a failed job runs again: exponential backoff with a per-job jitter.
//!
//! After the `n`-th consecutive failure the next attempt is at
//! `failed_at + min(base · 2^(n−1), max)` plus a deterministic jitter of up to 10% of
//! that delay. The schedule is not consulted: a 15-minute job that keeps failing slows
//! down to one attempt per `max`, and a daily job is retried long before its next
//! occurrence. So an attempt is never later than `max · 1.1` after the failure. After
//! `error_after` consecutive failures the caller marks the connection `error`; the job
//! stays scheduled at the backed-off pace, and the first success returns it to its
//! schedule.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::schedule::Jitter;

/// How failed runs are retried and when a connection is reported as failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Delay after the first failure.
    pub base: Duration,
    /// Largest delay; reached after `log2(max / base) + 1` failures.
    pub max: Duration,
    /// Consecutive failures after which the connection is marked `error`; 0 never marks.
    pub error_after: u32,
}

impl Default for FailurePolicy {
    /// 1 minute, doubling up to 1 hour; `error` after 5 failures in a row (about 15
    /// minutes of failing).
    fn default() -> Self {
        Self { base: Duration::from_secs(60), max: Duration::from_secs(3600), error_after: 5 }
    }
}

impl FailurePolicy {
    /// `min(base · 2^(n−1), max)` for `n` consecutive failures; zero for `n = 0`.
    pub fn delay(&self, consecutive_failures: u32) -> Duration {
        let Some(exponent) = consecutive_failures.checked_sub(1) else {
            return Duration::ZERO;
        };
        let factor = 2u32.checked_pow(exponent).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(Duration::MAX).min(self.max)
    }

    /// When to try again after the `consecutive_failures`-th failure in a row ended at
    /// `failed_at`: [`FailurePolicy::delay`] plus up to 10% of it, fixed per job and
    /// failure count.
    pub fn retry_at(&self, failed_at: DateTime<Utc>, consecutive_failures: u32, jitter: Jitter) -> DateTime<Utc> {
        let delay = self.delay(consecutive_failures);
        let spread = jitter.spread(jitter.share_of(delay), u64::from(consecutive_failures));
        let total = TimeDelta::from_std(delay.saturating_add(spread)).unwrap_or(TimeDelta::MAX);
        failed_at.checked_add_signed(total).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Whether `consecutive_failures` failures in a row make the connection `error`.
    pub fn marks_error(&self, consecutive_failures: u32) -> bool {
        self.error_after > 0 && consecutive_failures >= self.error_after
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn delays_double_from_base_and_stop_at_max() {
        let policy = FailurePolicy { base: secs(30), max: secs(600), error_after: 3 };
        let delays: Vec<u64> = (0..8).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 30, 60, 120, 240, 480, 600, 600]);
        // No overflow however long the failure streak.
        assert_eq!(policy.delay(40), secs(600));
        assert_eq!(policy.delay(u32::MAX), secs(600));
    }

    #[test]
    fn retries_are_jittered_by_at_most_a_tenth_and_deterministically() {
        let policy = FailurePolicy::default();
        let failed_at = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
        let mut distinct = std::collections::BTreeSet::new();
        for job in 0..500 {
            let jitter = Jitter::for_job(job);
            for n in 1..12 {
                let at = policy.retry_at(failed_at, n, jitter);
                let delay = TimeDelta::from_std(policy.delay(n)).unwrap();
                assert!(at >= failed_at + delay, "job {job} n {n}");
                assert!(at <= failed_at + delay + delay / 10, "job {job} n {n}");
                assert_eq!(at, policy.retry_at(failed_at, n, jitter));
                if n == 11 {
                    distinct.insert(at);
                    // Never later than max · 1.1 after the failure.
                    assert!(at <= failed_at + TimeDelta::minutes(66));
                }
            }
        }
        assert!(distinct.len() > 400, "{} distinct retry times", distinct.len());
        assert_eq!(policy.retry_at(failed_at, 1, Jitter::NONE), failed_at + TimeDelta::minutes(1));
    }

    #[test]
    fn connections_are_marked_error_after_the_configured_streak() {
        let policy = FailurePolicy::default();
        assert!(!policy.marks_error(4));
        assert!(policy.marks_error(5));
        assert!(policy.marks_error(6));
        let never = FailurePolicy { error_after: 0, ..policy };
        assert!(!never.marks_error(1_000));
    }
}
