//! How company intelligence is shown: one JSON document per integration (the CLI's
//! `--json` and the control socket), and a text rendering for people.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::aggregate::{IntegrationState, Pair, conflicts, correlations, synergies};
use crate::model::IntelligenceRow;
use crate::telemetry::quality_band;

/// One company integration's intelligence as shown to operators and tenant admins:
/// the summary, the relations between contributors, and each contributor's current
/// contribution kinds (not their data).
pub fn to_json(row: &IntelligenceRow, state: &IntegrationState, pairs: &[Pair]) -> Value {
    let s = &state.summary;
    let correlations: Vec<Value> = correlations(pairs)
        .map(|(p, c)| json!({ "users": [p.a, p.b], "kind": c.kind, "agreement": c.agreement }))
        .collect();
    let synergies: Vec<Value> =
        synergies(pairs).map(|(p, y)| json!({ "users": [p.a, p.b], "kinds": y.kinds, "impact": y.impact })).collect();
    let conflicts: Vec<Value> = conflicts(pairs)
        .map(|(p, c)| {
            json!({ "users": [p.a, p.b], "topic": c.topic, "left": c.left, "right": c.right, "gap": c.gap, "resolution": c.resolution })
        })
        .collect();
    let contributors: Vec<Value> = state
        .users
        .iter()
        .map(|(user, entries)| {
            let kinds: Vec<Value> = entries
                .iter()
                .map(|(k, e)| json!({ "kind": k, "id": e.id, "status": e.status, "confidence": e.confidence, "quality": e.quality, "impact": e.impact, "freshness": e.freshness }))
                .collect();
            json!({ "user": user, "contributions": kinds })
        })
        .collect();
    json!({
        "tenant": row.tenant,
        "provider": row.provider,
        "version": row.version,
        "updated_at": row.updated_at,
        "quality": s.quality,
        "quality_band": quality_band(s.quality),
        "reliability": s.reliability,
        "contributors_total": s.contributors_total,
        "contributors_active": s.contributors_active,
        "contributions": s.contributions,
        "diversity": s.diversity,
        "consensus": s.consensus,
        "newest_contribution": s.newest,
        "correlations": correlations,
        "synergies": synergies,
        "conflicts": conflicts,
        "error_patterns": s.error_patterns,
        "optimization_insights": s.optimization_insights,
        "contributors": contributors,
    })
}

fn score(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// A text rendering of [`to_json`]'s content.
pub fn to_text(row: &IntelligenceRow, state: &IntegrationState, pairs: &[Pair]) -> String {
    let s = &state.summary;
    let mut out = String::new();
    let _ = writeln!(out, "{}/{}  (version {})", row.tenant, row.provider, row.version);
    let _ = writeln!(
        out,
        "  quality {} ({})  reliability {}  consensus {}  diversity {:.0}%",
        score(s.quality),
        quality_band(s.quality),
        score(s.reliability),
        score(s.consensus),
        s.diversity * 100.0
    );
    let _ = writeln!(
        out,
        "  contributors {} ({} active), {} current contributions",
        s.contributors_total, s.contributors_active, s.contributions
    );
    for (user, entries) in &state.users {
        let kinds: Vec<&str> = entries.keys().map(|k| k.as_str()).collect();
        let _ = writeln!(out, "    {user}: {}", kinds.join(", "));
    }
    let mut section = |title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            let _ = writeln!(out, "  {title}:");
            for l in lines {
                let _ = writeln!(out, "    {l}");
            }
        }
    };
    section(
        "correlations",
        correlations(pairs)
            .map(|(p, c)| format!("{} ~ {} on {} (agreement {:.1})", p.a, p.b, c.kind, c.agreement))
            .collect(),
    );
    section(
        "synergies",
        synergies(pairs)
            .map(|(p, y)| {
                let kinds: Vec<&str> = y.kinds.iter().map(|k| k.as_str()).collect();
                format!("{} + {}: high impact on {} ({:.0})", p.a, p.b, kinds.join(", "), y.impact)
            })
            .collect(),
    );
    section(
        "conflicts",
        conflicts(pairs)
            .map(|(p, c)| format!("{} vs {} on {} (gap {:.0}): {}", p.a, p.b, c.topic, c.gap, c.resolution))
            .collect(),
    );
    section(
        "error patterns",
        s.error_patterns
            .iter()
            .map(|e| {
                let status = e.status.map(|s| format!(" HTTP {s}")).unwrap_or_default();
                let endpoint = e.endpoint.as_deref().map(|p| format!(" {p}")).unwrap_or_default();
                format!(
                    "[{}] {}{status}{endpoint}: {} error(s) from {} — {}",
                    e.severity,
                    e.class,
                    e.count,
                    e.users.join(", "),
                    e.message
                )
            })
            .collect(),
    );
    section(
        "optimization insights",
        s.optimization_insights
            .iter()
            .map(|i| format!("{} ({}): {}", i.code, i.users.join(", "), i.suggestion))
            .collect(),
    );
    out
}
