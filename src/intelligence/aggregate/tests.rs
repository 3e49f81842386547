use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

use std::collections::BTreeMap;

use super::*;

/// A contribution as the store keeps it.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    user: String,
    kind: ContributionKind,
    status: ContributionStatus,
    scores: [f64; 5],
    day: i64,
    data: Value,
}

impl Row {
    fn observation(&self) -> Observation<'_> {
        let [confidence, quality, impact, reliability, consistency] = self.scores;
        Observation {
            id: self.id,
            user: &self.user,
            kind: self.kind,
            status: self.status,
            confidence,
            quality,
            impact,
            reliability,
            consistency,
            freshness: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::days(self.day),
            data: &self.data,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A new contribution: supersedes the user's current one of its kind.
    Add { user: u8, kind: u8, scores: [f64; 5], day: i64, interval: Option<u32>, severity: u8 },
    /// A reviewer approves or rejects the `n`-th row (if it is still active).
    Review { n: usize, approve: bool },
}

fn op() -> impl Strategy<Value = Op> {
    let score = 0.0..=100.0f64;
    prop_oneof![
        4 => (0u8..5, 0u8..6, 0.0..=1.0f64, score.clone(), score.clone(), score.clone(), score, 0i64..30,
              prop::option::of(prop::sample::select(vec![900u32, 3600, 86_400])), 0u8..4)
            .prop_map(|(user, kind, c, q, i, r, s, day, interval, severity)| Op::Add {
                user, kind, scores: [c, q, i, r, s], day, interval, severity,
            }),
        1 => (0usize..64, any::<bool>()).prop_map(|(n, approve)| Op::Review { n, approve }),
    ]
}

fn data_for(kind: ContributionKind, interval: Option<u32>, severity: u8) -> Value {
    let severity = ["low", "medium", "high", "critical"][usize::from(severity)];
    match kind {
        ContributionKind::UsagePattern | ContributionKind::Configuration => {
            json!({ "schedule": format!("every {} seconds", interval.unwrap_or(60)), "interval_secs": interval, "changed_share": 0.25 })
        }
        ContributionKind::ErrorReporting => {
            json!({ "class": "transient", "status": 503, "endpoint": "/x", "severity": severity, "count": 2, "message": "m" })
        }
        ContributionKind::OptimizationSuggestion => {
            json!({ "suggestions": [{ "code": "slower_schedule", "suggestion": format!("s{severity}") }] })
        }
        _ => json!({}),
    }
}

/// Runs `ops` the way the store does (supersede, then fold the new row; review, then
/// fold the reviewed row), passing the state through JSON as the store does, and checks
/// after every step that the incremental state equals a recomputation from scratch.
fn check(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut rows: Vec<Row> = Vec::new();
    let mut stored = IntegrationState::default().to_json();
    // The pairs as the store keeps them: one per pair of users.
    let mut pairs: BTreeMap<(String, String), Pair> = BTreeMap::new();
    for op in ops {
        let changed = match op {
            Op::Add { user, kind, scores, day, interval, severity } => {
                let user = format!("user{user}");
                let kind = ContributionKind::ALL[usize::from(*kind)];
                for r in rows.iter_mut().filter(|r| r.user == user && r.kind == kind && r.status.is_current()) {
                    r.status = ContributionStatus::Superseded;
                }
                let id = rows.len() as i64 + 1;
                let data = data_for(kind, *interval, *severity);
                rows.push(Row { id, user, kind, status: ContributionStatus::Active, scores: *scores, day: *day, data });
                rows.len() - 1
            }
            Op::Review { n, approve } => {
                let Some(r) = rows.get_mut(*n) else { continue };
                if r.status != ContributionStatus::Active {
                    continue;
                }
                r.status = if *approve { ContributionStatus::Approved } else { ContributionStatus::Rejected };
                *n
            }
        };
        let state = IntegrationState::from_json(&stored).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let user = rows[changed].user.clone();
        let (state, mine) = apply(state, &rows[changed].observation());
        stored = state.to_json();
        pairs.retain(|(a, b), _| *a != user && *b != user);
        for p in mine {
            prop_assert!(p.a < p.b && (p.a == user || p.b == user), "{p:?}");
            pairs.insert((p.a.clone(), p.b.clone()), p);
        }
        let (scratch, scratch_pairs) = recompute(rows.iter().map(Row::observation));
        prop_assert_eq!(&state, &scratch);
        prop_assert_eq!(&stored, &scratch.to_json());
        prop_assert_eq!(pairs.values().cloned().collect::<Vec<_>>(), scratch_pairs);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn incremental_aggregation_equals_recomputation(ops in prop::collection::vec(op(), 1..60)) {
        check(&ops)?;
    }
}

fn obs<'a>(id: i64, user: &'a str, kind: ContributionKind, scores: [f64; 5], data: &'a Value) -> Observation<'a> {
    let [confidence, quality, impact, reliability, consistency] = scores;
    Observation {
        id,
        user,
        kind,
        status: ContributionStatus::Active,
        confidence,
        quality,
        impact,
        reliability,
        consistency,
        freshness: Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap(),
        data,
    }
}

#[test]
fn agreeing_confident_users_correlate_and_high_impact_users_have_synergy() {
    let empty = json!({});
    let (state, pairs) = recompute([
        obs(1, "ann", ContributionKind::DataSource, [0.9, 95.0, 80.0, 90.0, 88.0], &empty),
        obs(2, "bob", ContributionKind::DataSource, [0.8, 93.0, 75.0, 92.0, 85.0], &empty),
        // Confident but disagreeing, and low impact: neither correlation nor synergy.
        obs(3, "cat", ContributionKind::DataSource, [0.9, 40.0, 20.0, 50.0, 30.0], &empty),
    ]);
    let corr: Vec<_> = correlations(&pairs).map(|(p, c)| (p.a.as_str(), p.b.as_str(), c.kind)).collect();
    assert_eq!(corr, vec![("ann", "bob", ContributionKind::DataSource)]);
    let syn: Vec<_> = synergies(&pairs).map(|(p, s)| (p.a.as_str(), p.b.as_str(), s.impact)).collect();
    assert_eq!(syn, vec![("ann", "bob", 75.0)]);
    // cat's impact differs from ann's by 60 and bob's by 55 points.
    let conflicts: Vec<_> = conflicts(&pairs).map(|(p, c)| (p.a.as_str(), p.b.as_str(), c.gap)).collect();
    assert_eq!(conflicts, vec![("ann", "cat", 60.0), ("bob", "cat", 55.0)]);
    assert_eq!(state.summary.contributors_total, 3);
    // Weighted by confidence: (0.9·95 + 0.8·93 + 0.9·40) / 2.6.
    let want = (0.9 * 95.0 + 0.8 * 93.0 + 0.9 * 40.0) / 2.6;
    assert!((state.summary.quality.unwrap() - want).abs() < 0.01, "{:?} vs {want}", state.summary.quality);
}

#[test]
fn low_confidence_blocks_correlation() {
    let empty = json!({});
    let (_, pairs) = recompute([
        obs(1, "ann", ContributionKind::PerformanceMetrics, [0.7, 95.0, 10.0, 90.0, 88.0], &empty),
        obs(2, "bob", ContributionKind::PerformanceMetrics, [0.95, 95.0, 10.0, 90.0, 88.0], &empty),
    ]);
    assert_eq!(correlations(&pairs).count(), 0, "confidence must be above 0.7 on both sides");
}

#[test]
fn hourly_and_daily_schedules_conflict_with_a_resolution() {
    let hourly = json!({ "schedule": "hourly", "interval_secs": 3600.0, "changed_share": 0.1 });
    let daily = json!({ "schedule": "daily", "interval_secs": 86400.0, "changed_share": 0.9 });
    let near = json!({ "schedule": "every 50 minutes", "interval_secs": 3000.0 });
    let (_, pairs) = recompute([
        obs(1, "ann", ContributionKind::UsagePattern, [0.5, 50.0, 10.0, 100.0, 100.0], &hourly),
        obs(2, "bob", ContributionKind::UsagePattern, [0.5, 50.0, 20.0, 100.0, 100.0], &daily),
        obs(3, "cat", ContributionKind::UsagePattern, [0.5, 50.0, 15.0, 100.0, 100.0], &near),
    ]);
    let schedule: Vec<_> =
        conflicts(&pairs).filter(|(_, c)| c.topic == "schedule").map(|(p, c)| (p.a.clone(), p.b.clone(), c)).collect();
    let users: Vec<_> = schedule.iter().map(|(a, b, _)| (a.as_str(), b.as_str())).collect();
    // 3600 vs 3000 differ by 16.7 % of the larger: no conflict.
    assert_eq!(users, vec![("ann", "bob"), ("bob", "cat")]);
    let (_, _, c) = &schedule[0];
    // Only 10 % of ann's hourly runs change anything: align on the slower `daily`.
    assert!(c.resolution.contains("align on `daily`"), "{}", c.resolution);
    assert!(c.gap > 95.0);
}

#[test]
fn errors_group_by_class_status_and_endpoint() {
    let a = json!({ "class": "client", "status": 400, "endpoint": "/v1/x", "severity": "high", "count": 1, "message": "bad" });
    let b = json!({ "class": "client", "status": 400, "endpoint": "/v1/x", "severity": "high", "count": 3, "message": "bad" });
    let c = json!({ "class": "auth", "status": 401, "endpoint": "/v1/x", "severity": "critical", "count": 1, "message": "no" });
    let (state, _) = recompute([
        obs(1, "ann", ContributionKind::ErrorReporting, [1.0, 25.0, 75.0, 50.0, 100.0], &a),
        obs(2, "bob", ContributionKind::ErrorReporting, [1.0, 25.0, 75.0, 50.0, 100.0], &b),
        obs(3, "cat", ContributionKind::ErrorReporting, [1.0, 0.0, 100.0, 50.0, 100.0], &c),
    ]);
    let patterns: Vec<_> =
        state.summary.error_patterns.iter().map(|p| (p.class.as_str(), p.users.len(), p.count)).collect();
    // The critical one first, then the shared client error with both users' counts.
    assert_eq!(patterns, vec![("auth", 1, 1), ("client", 2, 4)]);
}
