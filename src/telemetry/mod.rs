//! Telemetry: one Prometheus registry with every metric name in one place, and one
//! struct per notable happening whose `emit` writes the log line and updates the
//! metrics together, so the two cannot drift apart. Labels are bounded: provider and
//! stream (from the catalog), outcome, trigger, result and status class — never tenants.
//!
//! Counters move when things happen: every HTTP request, retry and rate-limit wait as
//! the session sees it ([`HttpMetrics`]), records and pages as each page commits
//! ([`RunTally`]); the store-wide gauges are set from the figures the daemon reads
//! from the store ([`gauges`]). Telemetry knows no module above the model: the modules
//! that report fill in its plain event structs.
//! `/metrics` serves the Prometheus text format, or OpenMetrics when asked for it.

mod events;
pub mod gauges;
mod metrics;

pub use self::events::*;
pub use self::metrics::*;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::metrics::stream;
    use super::*;
    use crate::model::{RunRow, RunStats};

    #[test]
    fn metrics_render_with_bounded_labels() {
        let m = Metrics::new();
        Metrics::set_gauge(&m.jobs, "due", 3);
        m.lease_losses.get_or_create(&ProviderLabels { provider: "hubspot".into() }).inc();
        m.run_duration.get_or_create(&stream("aptem", "learners")).observe(1.5);
        let text = m.encode();
        assert!(text.contains("tributary_jobs{state=\"due\"} 3"), "{text}");
        assert!(text.contains("tributary_lease_losses_total{provider=\"hubspot\"} 1"), "{text}");
        assert!(text.contains("# TYPE tributary_run_duration_seconds histogram"), "{text}");
        assert!(
            text.contains("tributary_run_duration_seconds_count{provider=\"aptem\",stream=\"learners\"} 1"),
            "{text}"
        );
        assert!(!text.contains("tenant"), "{text}");
    }

    #[test]
    fn requests_and_pages_count_as_they_happen_and_the_run_end_adds_nothing() {
        use crate::model::{ProviderId, RunOutcome, RunTrigger, StreamName, TenantId};
        let m = Metrics::new();
        let http = HttpMetrics::new(&m, "hubspot");
        for class in [2, 2, 2, 4, 0] {
            http.request(class, Duration::from_millis(30));
        }
        http.retry();
        http.rate_limit_wait(Duration::from_millis(1500));
        let running = InProgress::new(&m, "hubspot");
        assert!(m.encode().contains("tributary_runs_in_progress{provider=\"hubspot\"} 1\n"));
        drop(running);
        assert!(m.encode().contains("tributary_runs_in_progress{provider=\"hubspot\"} 0\n"));
        let mut tally = RunTally::new(&m, "hubspot", "contacts");
        let mut stats = RunStats { inserted: 4, filtered: 1, pages: 1, ..Default::default() };
        tally.advance(&stats);
        stats.inserted = 7;
        stats.pages = 2;
        tally.advance(&stats);
        tally.advance(&stats);
        let text = m.encode();
        for line in [
            "tributary_http_requests_total{provider=\"hubspot\",class=\"2xx\"} 3",
            "tributary_http_requests_total{provider=\"hubspot\",class=\"4xx\"} 1",
            "tributary_http_requests_total{provider=\"hubspot\",class=\"error\"} 1",
            "tributary_http_request_duration_seconds_count{provider=\"hubspot\",class=\"2xx\"} 3",
            "tributary_retries_total{provider=\"hubspot\"} 1",
            "tributary_rate_limit_waits_total{provider=\"hubspot\"} 1",
            "tributary_rate_limit_wait_seconds_total{provider=\"hubspot\"} 1.5",
            "tributary_records_total{provider=\"hubspot\",stream=\"contacts\",result=\"inserted\"} 7",
            "tributary_records_total{provider=\"hubspot\",stream=\"contacts\",result=\"filtered\"} 1",
            "tributary_pages_total{provider=\"hubspot\",stream=\"contacts\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // The run's end counts the run, not its records or requests again.
        let now = chrono::Utc::now();
        let run = RunRow {
            id: uuid::Uuid::now_v7(),
            tenant_id: TenantId::parse("acme").unwrap(),
            job_id: 1,
            provider: ProviderId::parse("hubspot").unwrap(),
            stream: StreamName::parse("contacts").unwrap(),
            trigger: RunTrigger::Scheduled,
            started_at: now,
            finished_at: Some(now),
            outcome: RunOutcome::Success,
            cursor_before: None,
            stats: RunStats { http_calls: 5, ..stats },
        };
        RunFinished { run: &run }.emit(&m);
        let after = m.encode();
        assert!(
            after.contains("tributary_records_total{provider=\"hubspot\",stream=\"contacts\",result=\"inserted\"} 7")
        );
        assert!(after.contains("tributary_http_requests_total{provider=\"hubspot\",class=\"2xx\"} 3"));
        assert!(
            after.contains(
                "tributary_runs_finished_total{provider=\"hubspot\",stream=\"contacts\",outcome=\"success\"} 1"
            )
        );
        assert!(!after.contains("acme"), "tenant ids must not be labels");
    }

    #[test]
    fn the_prometheus_text_names_counter_families_with_their_suffix() {
        let m = Metrics::new();
        m.lease_losses.get_or_create(&ProviderLabels { provider: "hubspot".into() }).inc();
        let open = m.encode_openmetrics();
        assert!(open.contains("# TYPE tributary_lease_losses counter") && open.ends_with("# EOF\n"), "{open}");
        let text = m.encode();
        assert!(text.contains("# HELP tributary_lease_losses_total Runs that lost their job lease.\n"), "{text}");
        assert!(text.contains("# TYPE tributary_lease_losses_total counter\n"), "{text}");
        assert!(text.contains("# TYPE tributary_build_info gauge\n"), "{text}");
        assert!(text.contains("tributary_build_info{version=\""), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        // Every family has its help.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps, "{text}");
    }
}
