use std::time::Duration;

use governor::RateLimiter;
use governor::clock::{Clock, FakeRelativeClock, Reference};
use reqwest::header::{HeaderMap, HeaderValue};

use super::*;

fn spec(requests: u32, per_secs: u32, scope: QuotaScope) -> RateLimitSpec {
    RateLimitSpec {
        requests,
        per_secs,
        scope,
        remaining_header: Some("X-Remaining".into()),
        reset_header: Some("X-Reset".into()),
        retry_after_header: "Retry-After".into(),
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
fn busiest_window(times: &[Duration], w: Duration) -> usize {
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
    for (requests, per_secs, replicas) in
        [(20, 1, 1), (50, 60, 1), (110, 10, 1), (100, 10, 2), (1, 1, 1), (2, 1, 1), (3, 5, 1), (1000, 1, 3)]
    {
        let w = Duration::from_secs(u64::from(per_secs));
        let n = (requests / replicas).max(1) as usize;
        let times = admitted(window_quota(requests, per_secs, replicas), w * 8);
        let busiest = busiest_window(&times, w);
        assert!(busiest <= n, "{requests}/{per_secs}s ÷ {replicas}: {busiest} in one window");
        if n >= 20 {
            let used = times.len() as f64 / (8.0 * n as f64);
            assert!(used >= 0.9, "{requests}/{per_secs}s ÷ {replicas}: used {used:.3}");
        }
    }
}

#[test]
fn connection_scope_budgets_are_separate_and_provider_scope_is_shared() {
    let limits = RateLimiters::new(1);
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
    let limits = RateLimiters::new(1);
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
    let limits = RateLimiters::new(1);
    let s = spec(1000, 1, QuotaScope::Connection);
    let a = limits.quota("crm", "a", Some(&s)).unwrap();
    let b = limits.quota("crm", "b", Some(&s)).unwrap();
    a.hold_until(Instant::now() + Duration::from_millis(80));
    assert!(b.acquire().await < Duration::from_millis(40));
    assert!(a.acquire().await >= Duration::from_millis(75));
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
    let limits = RateLimiters::new(1);
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
