//! Company intelligence: the aggregate of the current contributions to one company
//! integration (tenant + provider).
//!
//! The state keeps each contributor's current contribution per kind and the summary; the
//! relations of pairs of contributors ([`Pair`]) are kept beside it, one row per pair in
//! the store. A changed contribution ([`apply`]) replaces one entry of one user, yields
//! that user's pairs with every other contributor (which replace the user's stored
//! ones) and recomputes the summary from the per-user entries: time and data written
//! proportional to the integration's contributors, never a recomputation of every pair.
//! [`recompute`] builds the same state and pairs from scratch (on demand, and as the
//! reference the incremental path is tested against).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{ContributionKind, ContributionStatus};

/// Contributions older than the newest one by this many days weigh half as much.
pub const RECENCY_HALF_LIFE_DAYS: f64 = 7.0;
/// A contributor is active when their newest contribution is at most this many days
/// older than the integration's newest.
pub const ACTIVE_WINDOW_DAYS: f64 = 7.0;
/// Two contributions of one kind correlate when both are at least this confident …
pub const CORRELATION_CONFIDENCE: f64 = 0.7;
/// … and their scores agree at least this well (100 − mean absolute difference).
pub const CORRELATION_AGREEMENT: f64 = 85.0;
/// Contributions with an impact above this are high-impact (synergy candidates).
pub const SYNERGY_IMPACT: f64 = 70.0;
/// Impacts (0–100), or settings (percent of the larger), differing by more than this
/// conflict.
pub const CONFLICT_GAP: f64 = 30.0;

/// One contribution as the aggregation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub id: i64,
    pub user: &'a str,
    pub kind: ContributionKind,
    pub status: ContributionStatus,
    pub confidence: f64,
    pub quality: f64,
    pub impact: f64,
    pub reliability: f64,
    pub consistency: f64,
    pub freshness: DateTime<Utc>,
    pub data: &'a Value,
}

/// A contributor's current contribution of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: i64,
    pub status: ContributionStatus,
    pub confidence: f64,
    pub quality: f64,
    pub impact: f64,
    pub reliability: f64,
    pub consistency: f64,
    pub freshness: DateTime<Utc>,
    pub data: Value,
}

impl Entry {
    fn of(o: &Observation<'_>) -> Self {
        Self {
            id: o.id,
            status: o.status,
            confidence: o.confidence,
            quality: o.quality,
            impact: o.impact,
            reliability: o.reliability,
            consistency: o.consistency,
            freshness: o.freshness,
            data: o.data.clone(),
        }
    }
}

/// Two contributors whose contributions of one kind agree strongly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    pub kind: ContributionKind,
    /// 0–100: 100 minus the mean absolute difference of quality, reliability and
    /// consistency.
    pub agreement: f64,
}

/// Two contributors who both report high-impact contributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Synergy {
    pub kinds: Vec<ContributionKind>,
    /// The lower of the two users' highest impacts.
    pub impact: f64,
}

/// Two contributors whose impact or settings differ by more than [`CONFLICT_GAP`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// `impact:<kind>` or `schedule`.
    pub topic: String,
    /// What each side reports (first user, second user).
    pub left: Value,
    pub right: Value,
    /// The difference: impact points, or percent of the larger interval.
    pub gap: f64,
    pub resolution: String,
}

/// The relation of two contributors (`a` < `b`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub correlations: Vec<Correlation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synergy: Option<Synergy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
}

impl Pair {
    fn is_empty(&self) -> bool {
        self.correlations.is_empty() && self.synergy.is_none() && self.conflicts.is_empty()
    }
}

/// Errors reported by contributors, grouped by class, status and endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPattern {
    pub class: String,
    pub status: Option<i64>,
    pub endpoint: Option<String>,
    pub severity: String,
    pub users: Vec<String>,
    /// Errors counted over those users' reports.
    pub count: i64,
    pub message: String,
}

/// An optimization suggested by contributors' runs, grouped by suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    pub code: String,
    pub users: Vec<String>,
    /// The most confident contributor's suggestion text.
    pub suggestion: String,
    pub confidence: f64,
}

/// The figures derived from the per-user entries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Data quality, 0–100: data-source quality weighted by confidence and recency.
    pub quality: Option<f64>,
    /// Reliability, 0–100: every contribution's reliability, weighted the same way.
    pub reliability: Option<f64>,
    pub contributors_total: usize,
    pub contributors_active: usize,
    /// Current contributions counted.
    pub contributions: usize,
    /// Share of the contribution kinds represented (0–1).
    pub diversity: f64,
    /// 0–100: agreement between contributors' mean scores (100 − 2 × their standard
    /// deviation); `None` with fewer than two contributors.
    pub consensus: Option<f64>,
    pub newest: Option<DateTime<Utc>>,
    pub error_patterns: Vec<ErrorPattern>,
    pub optimization_insights: Vec<Insight>,
}

/// The state of one company integration's intelligence (its pairs are kept apart).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IntegrationState {
    #[serde(flatten)]
    pub summary: Summary,
    /// Current contribution per user and kind.
    pub users: BTreeMap<String, BTreeMap<ContributionKind, Entry>>,
}

impl IntegrationState {
    /// Reads a stored state; a state that does not parse (written by another version)
    /// is rebuilt by the caller with [`recompute`].
    pub fn from_json(value: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Every correlation of `pairs`, with its pair.
pub fn correlations(pairs: &[Pair]) -> impl Iterator<Item = (&Pair, &Correlation)> {
    pairs.iter().flat_map(|p| p.correlations.iter().map(move |c| (p, c)))
}

/// Every synergy of `pairs`, with its pair.
pub fn synergies(pairs: &[Pair]) -> impl Iterator<Item = (&Pair, &Synergy)> {
    pairs.iter().filter_map(|p| p.synergy.as_ref().map(|s| (p, s)))
}

/// Every conflict of `pairs`, with its pair.
pub fn conflicts(pairs: &[Pair]) -> impl Iterator<Item = (&Pair, &Conflict)> {
    pairs.iter().flat_map(|p| p.conflicts.iter().map(move |c| (p, c)))
}

/// Folds one changed contribution into `state`: a current one (active, approved)
/// becomes its user's entry for its kind; a rejected or superseded one is dropped if it
/// is that entry. Returns the new state and the user's relations to every other
/// contributor (by the other user), which replace all of the user's previous ones.
pub fn apply(mut state: IntegrationState, o: &Observation<'_>) -> (IntegrationState, Vec<Pair>) {
    let user = o.user;
    if o.status.is_current() {
        let entries = state.users.entry(user.to_owned()).or_default();
        // An older contribution never replaces a newer one of the same kind.
        if entries.get(&o.kind).is_none_or(|e| e.id <= o.id) {
            entries.insert(o.kind, Entry::of(o));
        }
    } else if let Some(entries) = state.users.get_mut(user) {
        if entries.get(&o.kind).is_some_and(|e| e.id == o.id) {
            entries.remove(&o.kind);
        }
        if entries.is_empty() {
            state.users.remove(user);
        }
    }
    let pairs = match state.users.get(user) {
        Some(mine) => state
            .users
            .iter()
            .filter(|(other, _)| other.as_str() != user)
            .filter_map(|(other, theirs)| {
                if user < other.as_str() { pair(user, mine, other, theirs) } else { pair(other, theirs, user, mine) }
            })
            .collect(),
        None => Vec::new(),
    };
    state.summary = summarize(&state.users);
    (state, pairs)
}

/// Builds the state and every pair from the integration's contributions (any order;
/// only current ones count, the newest per user and kind). Pairs come ordered by users.
pub fn recompute<'a>(contributions: impl IntoIterator<Item = Observation<'a>>) -> (IntegrationState, Vec<Pair>) {
    let mut users: BTreeMap<String, BTreeMap<ContributionKind, Entry>> = BTreeMap::new();
    for o in contributions.into_iter().filter(|o| o.status.is_current()) {
        let entries = users.entry(o.user.to_owned()).or_default();
        if entries.get(&o.kind).is_none_or(|e| e.id <= o.id) {
            entries.insert(o.kind, Entry::of(&o));
        }
    }
    let mut pairs = Vec::new();
    let names: Vec<&String> = users.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            pairs.extend(pair(a, &users[a.as_str()], b, &users[b.as_str()]));
        }
    }
    (IntegrationState { summary: summarize(&users), users }, pairs)
}

type Entries = BTreeMap<ContributionKind, Entry>;

/// The relation of users `a` < `b`; `None` when there is nothing to say.
fn pair(a: &str, ea: &Entries, b: &str, eb: &Entries) -> Option<Pair> {
    let mut out = Pair { a: a.to_owned(), b: b.to_owned(), ..Pair::default() };
    for (kind, x) in ea {
        let Some(y) = eb.get(kind) else { continue };
        let agreement = 100.0
            - ((x.quality - y.quality).abs()
                + (x.reliability - y.reliability).abs()
                + (x.consistency - y.consistency).abs())
                / 3.0;
        if x.confidence > CORRELATION_CONFIDENCE
            && y.confidence > CORRELATION_CONFIDENCE
            && agreement >= CORRELATION_AGREEMENT
        {
            out.correlations.push(Correlation { kind: *kind, agreement: round2(agreement) });
        }
        let gap = (x.impact - y.impact).abs();
        if gap > CONFLICT_GAP {
            out.conflicts.push(Conflict {
                topic: format!("impact:{kind}"),
                left: x.impact.into(),
                right: y.impact.into(),
                gap: round2(gap),
                resolution: format!(
                    "`{a}` and `{b}` see very different impact on {kind} ({:.0} vs {:.0}): compare their \
                     connections' settings and streams",
                    x.impact, y.impact
                ),
            });
        }
    }
    let high = |e: &Entries| -> (Vec<ContributionKind>, f64) {
        let kinds: Vec<_> = e.iter().filter(|(_, v)| v.impact > SYNERGY_IMPACT).map(|(k, _)| *k).collect();
        let top = e.values().map(|v| v.impact).fold(0.0_f64, f64::max);
        (kinds, top)
    };
    let (ka, ta) = high(ea);
    let (kb, tb) = high(eb);
    if !ka.is_empty() && !kb.is_empty() {
        let kinds: BTreeSet<ContributionKind> = ka.into_iter().chain(kb).collect();
        out.synergy = Some(Synergy { kinds: kinds.into_iter().collect(), impact: round2(ta.min(tb)) });
    }
    if let (Some(sa), Some(sb)) = (schedule_of(ea), schedule_of(eb)) {
        let gap = (sa.interval - sb.interval).abs() / sa.interval.max(sb.interval) * 100.0;
        if gap > CONFLICT_GAP {
            out.conflicts.push(Conflict {
                topic: "schedule".into(),
                left: sa.describe(),
                right: sb.describe(),
                gap: round2(gap),
                resolution: schedule_resolution(a, &sa, b, &sb),
            });
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A contributor's sync schedule, from their usage or configuration contribution.
struct ScheduleFacts {
    schedule: String,
    interval: f64,
    /// Share of their runs that changed data, when known.
    changed_share: Option<f64>,
}

impl ScheduleFacts {
    fn describe(&self) -> Value {
        serde_json::json!({ "schedule": self.schedule, "interval_secs": self.interval, "changed_share": self.changed_share })
    }
}

fn schedule_of(e: &Entries) -> Option<ScheduleFacts> {
    [ContributionKind::UsagePattern, ContributionKind::Configuration].iter().find_map(|k| {
        let data = &e.get(k)?.data;
        let interval = data.get("interval_secs")?.as_f64().filter(|v| *v > 0.0)?;
        Some(ScheduleFacts {
            schedule: data.get("schedule").and_then(Value::as_str).unwrap_or("").to_owned(),
            interval,
            changed_share: data.get("changed_share").and_then(Value::as_f64),
        })
    })
}

/// Which schedule both should use: the faster one if the faster side's runs mostly find
/// changes, else the slower one.
fn schedule_resolution(a: &str, sa: &ScheduleFacts, b: &str, sb: &ScheduleFacts) -> String {
    let ((fast_user, fast), (slow_user, slow)) =
        if sa.interval <= sb.interval { ((a, sa), (b, sb)) } else { ((b, sb), (a, sa)) };
    match fast.changed_share {
        Some(share) if share >= 0.5 => format!(
            "align on `{}`: {:.0}% of `{fast_user}`'s more frequent runs find changes, so `{slow_user}`'s `{}` \
             lags behind the data",
            fast.schedule,
            share * 100.0,
            slow.schedule
        ),
        Some(share) => format!(
            "align on `{}`: only {:.0}% of `{fast_user}`'s runs on `{}` find changes, so the slower schedule \
             loses little and saves requests",
            slow.schedule,
            share * 100.0,
            fast.schedule
        ),
        None => format!(
            "choose one schedule for the integration (`{}` or `{}`) so both users see the same freshness",
            fast.schedule, slow.schedule
        ),
    }
}

fn summarize(users: &BTreeMap<String, Entries>) -> Summary {
    let newest = users.values().flat_map(|e| e.values().map(|v| v.freshness)).max();
    let Some(newest) = newest else { return Summary::default() };
    let age_days = |t: DateTime<Utc>| (newest - t).num_milliseconds().max(0) as f64 / 86_400_000.0;
    let weight = |e: &Entry| e.confidence.max(0.0) * 0.5_f64.powf(age_days(e.freshness) / RECENCY_HALF_LIFE_DAYS);
    let weighted = |pick: &dyn Fn(&ContributionKind, &Entry) -> Option<f64>| -> Option<f64> {
        let (mut sum, mut total) = (0.0, 0.0);
        for entries in users.values() {
            for (kind, e) in entries {
                if let Some(v) = pick(kind, e) {
                    sum += weight(e) * v;
                    total += weight(e);
                }
            }
        }
        (total > 0.0).then(|| round2(sum / total))
    };
    let quality = weighted(&|k, e| (*k == ContributionKind::DataSource).then_some(e.quality));
    let reliability = weighted(&|_, e| Some(e.reliability));
    let contributions = users.values().map(BTreeMap::len).sum();
    let active = users
        .values()
        .filter(|e| e.values().map(|v| v.freshness).max().is_some_and(|t| age_days(t) <= ACTIVE_WINDOW_DAYS))
        .count();
    let kinds: BTreeSet<ContributionKind> = users.values().flat_map(|e| e.keys().copied()).collect();
    let means: Vec<f64> = users
        .values()
        .map(|e| e.values().map(|v| (v.quality + v.reliability + v.consistency) / 3.0).sum::<f64>() / e.len() as f64)
        .collect();
    let consensus = (means.len() >= 2).then(|| {
        let mean = means.iter().sum::<f64>() / means.len() as f64;
        let sd = (means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / means.len() as f64).sqrt();
        round2((100.0 - 2.0 * sd).clamp(0.0, 100.0))
    });
    Summary {
        quality,
        reliability,
        contributors_total: users.len(),
        contributors_active: active,
        contributions,
        diversity: round2(kinds.len() as f64 / ContributionKind::ALL.len() as f64),
        consensus,
        newest: Some(newest),
        error_patterns: error_patterns(users),
        optimization_insights: insights(users),
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

fn error_patterns(users: &BTreeMap<String, Entries>) -> Vec<ErrorPattern> {
    let mut groups: BTreeMap<(String, Option<i64>, Option<String>), ErrorPattern> = BTreeMap::new();
    for (user, entries) in users {
        let Some(e) = entries.get(&ContributionKind::ErrorReporting) else { continue };
        let text = |k: &str| e.data.get(k).and_then(Value::as_str).map(str::to_owned);
        let class = text("class").unwrap_or_else(|| "unknown".into());
        let status = e.data.get("status").and_then(Value::as_i64);
        let endpoint = text("endpoint");
        let severity = text("severity").unwrap_or_default();
        let count = e.data.get("count").and_then(Value::as_i64).unwrap_or(1);
        let message = text("message").unwrap_or_default();
        let group = groups.entry((class.clone(), status, endpoint.clone())).or_insert_with(|| ErrorPattern {
            class,
            status,
            endpoint,
            severity: severity.clone(),
            users: Vec::new(),
            count: 0,
            message: message.clone(),
        });
        group.users.push(user.clone());
        group.count += count;
        if severity_rank(&severity) > severity_rank(&group.severity) {
            group.severity = severity;
            group.message = message;
        }
    }
    let mut out: Vec<ErrorPattern> = groups.into_values().collect();
    out.sort_by(|x, y| severity_rank(&y.severity).cmp(&severity_rank(&x.severity)).then(y.count.cmp(&x.count)));
    out
}

fn insights(users: &BTreeMap<String, Entries>) -> Vec<Insight> {
    let mut by_code: BTreeMap<String, Insight> = BTreeMap::new();
    for (user, entries) in users {
        let Some(e) = entries.get(&ContributionKind::OptimizationSuggestion) else { continue };
        let Some(list) = e.data.get("suggestions").and_then(Value::as_array) else { continue };
        for s in list {
            let Some(code) = s.get("code").and_then(Value::as_str) else { continue };
            let text = s.get("suggestion").and_then(Value::as_str).unwrap_or("").to_owned();
            let insight = by_code.entry(code.to_owned()).or_insert_with(|| Insight {
                code: code.to_owned(),
                users: Vec::new(),
                suggestion: text.clone(),
                confidence: e.confidence,
            });
            insight.users.push(user.clone());
            if e.confidence > insight.confidence {
                insight.confidence = e.confidence;
                insight.suggestion = text;
            }
        }
    }
    let mut out: Vec<Insight> = by_code.into_values().collect();
    out.sort_by(|x, y| y.users.len().cmp(&x.users.len()).then(x.code.cmp(&y.code)));
    out
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
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
                    rows.push(Row {
                        id,
                        user,
                        kind,
                        status: ContributionStatus::Active,
                        scores: *scores,
                        day: *day,
                        data,
                    });
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
        let schedule: Vec<_> = conflicts(&pairs)
            .filter(|(_, c)| c.topic == "schedule")
            .map(|(p, c)| (p.a.clone(), p.b.clone(), c))
            .collect();
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
}
