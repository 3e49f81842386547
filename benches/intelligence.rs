//! Cost of folding one contribution into a company integration's intelligence, by the
//! number of contributors: the in-memory update (`aggregate::apply`: the user's entry,
//! their pairs with every other contributor, the summary) and the update as the store's
//! fold does it (parse the stored JSON state, apply, serialize the state and the user's
//! pairs). The reference measured in the same run: a from-scratch recomputation
//! (`aggregate::recompute`) of the same state, which is what an update would cost if it
//! recomputed every pair. Also printed: all pairs with something to say, the pairs one
//! update writes, and the stored state's size.
//!
//! `cargo bench --bench intelligence` runs 10, 100 and 1,000 contributors (3 kinds each);
//! `cargo bench --bench intelligence -- 50 500` picks sizes.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use tributary::intelligence::aggregate::{IntegrationState, Observation, apply, recompute};
use tributary::model::{ContributionKind, ContributionStatus};

const KINDS: [ContributionKind; 3] =
    [ContributionKind::DataSource, ContributionKind::UsagePattern, ContributionKind::PerformanceMetrics];

struct Row {
    id: i64,
    user: String,
    kind: ContributionKind,
    scores: [f64; 5],
    data: Value,
}

impl Row {
    fn observation(&self) -> Observation<'_> {
        let [confidence, quality, impact, reliability, consistency] = self.scores;
        Observation {
            id: self.id,
            user: &self.user,
            kind: self.kind,
            status: ContributionStatus::Active,
            confidence,
            quality,
            impact,
            reliability,
            consistency,
            freshness: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(self.id),
            data: &self.data,
        }
    }
}

/// A deterministic spread of scores and schedules, so pairs correlate, have synergy or
/// conflict in realistic proportions.
fn rows(users: usize) -> Vec<Row> {
    let mut out = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 100.0
    };
    for u in 0..users {
        for kind in KINDS {
            let interval = [900.0, 3600.0, 86_400.0][u % 3];
            let data = if kind == ContributionKind::UsagePattern {
                json!({ "schedule": format!("every {interval} seconds"), "interval_secs": interval, "changed_share": 0.5 })
            } else {
                json!({})
            };
            let scores = [0.5 + next() / 200.0, 60.0 + next() / 2.5, next(), 80.0 + next() / 5.0, 70.0 + next() / 3.3];
            out.push(Row { id: out.len() as i64 + 1, user: format!("user{u:05}"), kind, scores, data });
        }
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![10, 100, 1_000] } else { sizes };
    println!(
        "{:>12} {:>8} {:>12} {:>12} {:>16} {:>16} {:>12}",
        "contributors", "pairs", "written", "apply (µs)", "apply+JSON (µs)", "recompute (µs)", "state (KiB)"
    );
    for users in sizes {
        let mut all = rows(users);
        let (state, all_pairs) = recompute(all.iter().map(Row::observation));
        let stored = state.to_json();
        let size = serde_json::to_vec(&stored).map(|b| b.len()).unwrap_or(0);
        let samples = (20_000 / users).clamp(5, 200);
        let (mut applied, mut roundtrip, mut scratch, mut written) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..samples {
            // A newer contribution of one user, as after a run.
            let mut row = Row { id: all.len() as i64 + 1, ..rows(1).remove(0) };
            row.user = format!("user{:05}", (i * 7919) % users);
            row.kind = KINDS[i % 3];
            let copy = state.clone();
            let t = Instant::now();
            let next = apply(copy, &row.observation());
            applied.push(t.elapsed());
            written.push(next.1.len());
            std::hint::black_box(&next);
            let t = Instant::now();
            let parsed = IntegrationState::from_json(&stored).expect("a state it wrote");
            let (state, pairs) = apply(parsed, &row.observation());
            let json = (state.to_json(), pairs.iter().map(|p| serde_json::to_value(p).ok()).collect::<Vec<_>>());
            roundtrip.push(t.elapsed());
            std::hint::black_box(json);
            all.push(row);
            let t = Instant::now();
            std::hint::black_box(recompute(all.iter().map(Row::observation)));
            scratch.push(t.elapsed());
            all.pop();
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        written.sort_unstable();
        println!(
            "{users:>12} {:>8} {:>12} {:>12.1} {:>16.1} {:>16.1} {:>12.1}",
            all_pairs.len(),
            written[written.len() / 2],
            us(median(applied)),
            us(median(roundtrip)),
            us(median(scratch)),
            size as f64 / 1024.0
        );
    }
}
