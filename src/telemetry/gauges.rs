//! The gauges computed from the store, the same on every replica: connections by
//! status, each stream's last success and sync lag (bounded series: providers and
//! streams come from the manifests; tenants are aggregated), and the job lag.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{Metrics, StatusLabels, StreamLabels};
use crate::model::{ConnectionStatus, GaugeFigures};

/// Sets the gauges from `figures` read from the store at `now`; streams without an
/// enabled job any more lose their series.
pub fn apply(metrics: &Metrics, figures: &GaugeFigures, now: DateTime<Utc>) {
    for status in ConnectionStatus::ALL {
        let n = figures.connections.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
        metrics.connections.get_or_create(&StatusLabels { status: status.as_str().into() }).set(n);
    }
    let seconds = |since: DateTime<Utc>| (now - since).num_milliseconds().max(0) as f64 / 1000.0;
    let mut live = HashSet::new();
    for s in &figures.streams {
        let labels = StreamLabels { provider: s.provider.clone(), stream: s.stream.clone() };
        match s.last_success {
            Some(at) => {
                metrics.last_success.get_or_create(&labels).set(at.timestamp_millis() as f64 / 1000.0);
            }
            None => {
                metrics.last_success.remove(&labels);
            }
        }
        if let Some(oldest) = s.oldest {
            metrics.sync_lag.get_or_create(&labels).set(seconds(oldest));
        }
        live.insert(labels);
    }
    if let Ok(mut known) = metrics.streams_seen.lock() {
        for gone in known.difference(&live) {
            metrics.last_success.remove(gone);
            metrics.sync_lag.remove(gone);
        }
        *known = live;
    }
    metrics.job_lag.set(figures.oldest_due.map_or(0.0, seconds));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StreamFreshness;

    #[test]
    fn stream_series_follow_the_streams_that_have_jobs() {
        let m = Metrics::new();
        let now = Utc::now();
        let ago = |secs| now - chrono::TimeDelta::seconds(secs);
        let fresh = |stream: &str, last: Option<i64>, oldest: i64| StreamFreshness {
            provider: "aptem".into(),
            stream: stream.into(),
            last_success: last.map(ago),
            oldest: Some(ago(oldest)),
        };
        let figures = GaugeFigures {
            connections: vec![("connected".into(), 2), ("needs_reauth".into(), 1)],
            streams: vec![fresh("learners", Some(60), 600), fresh("employers", None, 30)],
            oldest_due: Some(ago(90)),
        };
        apply(&m, &figures, now);
        let text = m.encode();
        for line in [
            "tributary_connections{status=\"connected\"} 2",
            "tributary_connections{status=\"needs_reauth\"} 1",
            "tributary_connections{status=\"disabled\"} 0",
            "tributary_sync_lag_seconds{provider=\"aptem\",stream=\"learners\"} 600.0\n",
            "tributary_sync_lag_seconds{provider=\"aptem\",stream=\"employers\"} 30.0\n",
            "tributary_job_lag_seconds 90.0\n",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.contains("tributary_last_success_timestamp_seconds{provider=\"aptem\",stream=\"learners\"}"));
        assert!(!text.contains("tributary_last_success_timestamp_seconds{provider=\"aptem\",stream=\"employers\"}"));

        // The employers job is gone: its series go with it.
        let figures = GaugeFigures { streams: vec![fresh("learners", Some(5), 5)], ..GaugeFigures::default() };
        apply(&m, &figures, now);
        let text = m.encode();
        assert!(!text.contains("stream=\"employers\""), "{text}");
        assert!(text.contains("tributary_job_lag_seconds 0.0\n"), "{text}");
        assert!(text.contains("tributary_connections{status=\"needs_reauth\"} 0"), "{text}");
    }
}
