//! `sync` progress: a bar on a terminal (records, total, percentage, ETA, rate-limit
//! waits), log lines otherwise; the bar of `records export`; and the log writer that
//! suspends the bar so log lines never break it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::http::WaitWatch;
use crate::model::RunStats;

/// The bar on screen, if any: log lines are written with it suspended.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn current_bar() -> Option<ProgressBar> {
    BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Writes log lines to stderr, clearing the progress bar first and drawing it again after.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match current_bar() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Waits shorter than this are not worth showing.
const SHOWN_WAIT: Duration = Duration::from_secs(1);

/// The progress display of one run.
pub struct Progress {
    label: String,
    fields: Arc<RunFields>,
    bar: Option<ProgressBar>,
    started: Instant,
    last_logged: Option<Instant>,
    /// The last line shown, without the live wait.
    line: Arc<Mutex<String>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

/// What every progress log line names: the run's tenant, provider, stream and id.
struct RunFields {
    tenant: String,
    provider: String,
    stream: String,
    run_id: Mutex<Option<uuid::Uuid>>,
}

impl RunFields {
    fn log(&self, label: &str, text: &str) {
        let run_id = *self.run_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tracing::info!(
            tenant = %self.tenant,
            provider = %self.provider,
            stream = %self.stream,
            run_id = run_id.map(tracing::field::display),
            "{label}: {text}"
        );
    }
}

impl Progress {
    /// A bar on a terminal, log lines otherwise; `watch` reports live rate-limit waits.
    pub fn start(tenant: &str, provider: &str, stream: &str, watch: Arc<WaitWatch>) -> Self {
        let label = format!("{provider}/{stream}");
        let fields = Arc::new(RunFields {
            tenant: tenant.to_owned(),
            provider: provider.to_owned(),
            stream: stream.to_owned(),
            run_id: Mutex::new(None),
        });
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let line = Arc::new(Mutex::new(String::new()));
        let bar = terminal.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            *BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar.clone());
            bar
        });
        // Live waits: the bar shows them as they happen; log lines say once per wait.
        let ticker = {
            let (bar, line, label, fields) = (bar.clone(), line.clone(), label.clone(), fields.clone());
            tokio::spawn(async move {
                let mut announced: Option<Instant> = None;
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let wait = watch.current().filter(|(since, _)| since.elapsed() >= SHOWN_WAIT);
                    let text = wait.map(|(since, until)| describe_wait(since, until, Instant::now()));
                    match &bar {
                        Some(bar) => {
                            let base = line.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                            bar.set_message(match &text {
                                Some(t) => format!("{base} · {t}"),
                                None => base,
                            });
                        }
                        None => {
                            if let (Some((since, _)), Some(text)) = (wait, &text)
                                && announced != Some(since)
                            {
                                announced = Some(since);
                                fields.log(&label, text);
                            }
                        }
                    }
                }
            })
        };
        Self { label, fields, bar, started: Instant::now(), last_logged: None, line, ticker: Some(ticker) }
    }

    /// Shows the counters of run `run_id` after a page.
    pub fn update(&mut self, run_id: uuid::Uuid, stats: &RunStats) {
        *self.fields.run_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(run_id);
        let text = progress_line(stats, self.started.elapsed());
        *self.line.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = text.clone();
        match &self.bar {
            Some(bar) => bar.set_message(text),
            None if stats.pages > 0 && self.last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) => {
                self.last_logged = Some(Instant::now());
                self.fields.log(&self.label, &text);
            }
            None => {}
        }
    }

    /// Clears the bar.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            *BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bar counting records toward a known total (`records export`), drawn on stderr;
/// log lines are written with it suspended. Cleared when finished or dropped.
pub struct CountBar {
    bar: ProgressBar,
}

impl CountBar {
    pub fn start(label: &str, total: u64) -> Self {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {wide_bar} {human_pos}/{human_len} records ({percent}%) · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(label.to_owned());
        *BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar.clone());
        Self { bar }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }
}

impl Drop for CountBar {
    fn drop(&mut self) {
        *BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.bar.finish_and_clear();
    }
}

/// `1,200 of 5,000 records (24%) · 400/s · ETA 10s · page 3 · 1,200 new, 0 changed ·
/// 2 rate-limit waits (4.1s)`.
pub fn progress_line(s: &RunStats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = s.fetched as f64 / secs;
    let mut out = match s.total.filter(|t| *t > 0) {
        Some(total) => {
            let percent = (s.fetched as f64 * 100.0 / total as f64).min(100.0);
            let left = (total - s.fetched).max(0) as f64;
            let eta = if rate > 0.0 { format!(" · ETA {}", human_secs(left / rate)) } else { String::new() };
            format!("{} of {total} records ({percent:.0}%) · {rate:.0}/s{eta}", s.fetched)
        }
        None => format!("{} records · {rate:.0}/s", s.fetched),
    };
    out.push_str(&format!(" · page {} · {} new, {} changed", s.pages, s.inserted, s.updated));
    if s.rate_limit_waits > 0 {
        out.push_str(&format!(
            " · {} rate-limit waits ({})",
            s.rate_limit_waits,
            human_secs(s.rate_limit_wait_ms as f64 / 1000.0)
        ));
    }
    out
}

/// `waiting on the rate limit: 12s left` (or `for 3s` when the end is not known).
pub fn describe_wait(since: Instant, until: Option<Instant>, now: Instant) -> String {
    match until {
        Some(until) => format!(
            "waiting on the rate limit: {} left",
            human_secs(until.saturating_duration_since(now).as_secs_f64())
        ),
        None => format!("waiting on the rate limit for {}", human_secs(now.duration_since(since).as_secs_f64())),
    }
}

fn human_secs(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 10.0 {
        format!("{secs:.1}s")
    } else if secs < 120.0 {
        format!("{secs:.0}s")
    } else if secs < 7200.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (secs / 3600.0) as u64, ((secs % 3600.0) / 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_total_percentage_eta_and_waits() {
        let stats = RunStats {
            fetched: 1200,
            total: Some(4800),
            pages: 3,
            inserted: 1200,
            rate_limit_waits: 2,
            rate_limit_wait_ms: 4_100,
            ..RunStats::default()
        };
        let line = progress_line(&stats, Duration::from_secs(3));
        assert_eq!(
            line,
            "1200 of 4800 records (25%) · 400/s · ETA 9.0s · page 3 · 1200 new, 0 changed · 2 rate-limit waits (4.1s)"
        );
        let unknown = progress_line(&RunStats { fetched: 10, pages: 1, ..RunStats::default() }, Duration::from_secs(1));
        assert_eq!(unknown, "10 records · 10/s · page 1 · 0 new, 0 changed");
        let now = Instant::now();
        assert_eq!(describe_wait(now, Some(now + Duration::from_secs(42)), now), "waiting on the rate limit: 42s left");
        assert_eq!(describe_wait(now, None, now + Duration::from_millis(3_500)), "waiting on the rate limit for 3.5s");
        assert_eq!(human_secs(125.0), "2m05s");
    }
}
