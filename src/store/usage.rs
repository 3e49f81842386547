//! Usage analytics: per tenant, provider, stream, UTC day and error class, what runs
//! cost and did (API calls, records fetched and written, errors, bytes, rate-limit
//! waits, run time). [`add_usage`] adds a finished run to its day in the transaction
//! that finishes it (`finish_run`, and the runs closed as abandoned), so
//! [`Store::usage`] reads a tenant's days by the primary key, never the run log.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use super::error::{StoreError, db};
use super::statement::Bind as _;
use super::{Conn, Store};
use crate::model::{ProviderId, RunOutcome, RunRow, TenantId};

/// The sums of one day (or week) of runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UsageCounts {
    pub runs: i64,
    /// Runs that failed or were abandoned.
    pub failed_runs: i64,
    pub http_calls: i64,
    /// Requests without a response, or answered 4xx or 5xx.
    pub http_errors: i64,
    pub retries: i64,
    pub fetched: i64,
    /// Records inserted or updated (deletions marked count as updated).
    pub written: i64,
    pub dead_lettered: i64,
    pub bytes_received: i64,
    pub rate_limit_waits: i64,
    pub rate_limit_wait_ms: i64,
    /// Wall time of the runs, start to finish.
    pub run_ms: i64,
}

impl UsageCounts {
    fn add(&mut self, o: &UsageCounts) {
        self.runs += o.runs;
        self.failed_runs += o.failed_runs;
        self.http_calls += o.http_calls;
        self.http_errors += o.http_errors;
        self.retries += o.retries;
        self.fetched += o.fetched;
        self.written += o.written;
        self.dead_lettered += o.dead_lettered;
        self.bytes_received += o.bytes_received;
        self.rate_limit_waits += o.rate_limit_waits;
        self.rate_limit_wait_ms += o.rate_limit_wait_ms;
        self.run_ms += o.run_ms;
    }

    /// One finished run's counts.
    pub fn of_run(run: &RunRow) -> Self {
        let s = &run.stats;
        let run_ms = run.finished_at.map_or(0, |f| (f - run.started_at).num_milliseconds().max(0));
        Self {
            runs: 1,
            failed_runs: i64::from(matches!(run.outcome, RunOutcome::Failed | RunOutcome::Abandoned)),
            http_calls: s.http_calls,
            http_errors: s.http_errors,
            retries: s.retries,
            fetched: s.fetched,
            written: s.inserted + s.updated,
            dead_lettered: s.dead_lettered,
            bytes_received: s.bytes_received,
            rate_limit_waits: s.rate_limit_waits,
            rate_limit_wait_ms: s.rate_limit_wait_ms,
            run_ms,
        }
    }
}

/// A run's error class in the aggregate: its own, `abandoned` for a run closed as
/// abandoned without one, empty for a run without an error.
pub fn usage_error_class(run: &RunRow) -> String {
    match (&run.stats.error_class, run.outcome) {
        (Some(class), _) => class.clone(),
        (None, RunOutcome::Abandoned) => "abandoned".to_owned(),
        (None, _) => String::new(),
    }
}

/// One stored aggregate row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageDay {
    pub provider: String,
    pub stream: String,
    pub day: String,
    pub error_class: String,
    #[sqlx(flatten)]
    pub counts: UsageCounts,
}

/// How usage is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsagePeriod {
    /// UTC days.
    Day,
    /// ISO weeks (Monday to Sunday, UTC), named by their Monday.
    Week,
}

impl UsagePeriod {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            other => Err(format!("unknown period `{other}` (expected `day` or `week`)")),
        }
    }

    /// The period `day` falls in: the day itself, or its week's Monday.
    pub fn start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => day,
            Self::Week => day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday())),
        }
    }
}

/// Usage of one provider stream in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageLine {
    /// The period's first day (`YYYY-MM-DD`).
    pub period: String,
    pub provider: String,
    pub stream: String,
    #[serde(flatten)]
    pub counts: UsageCounts,
    /// Runs by error class (only classes that occurred).
    pub errors: BTreeMap<String, i64>,
}

/// A tenant's usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    pub tenant: String,
    pub provider: Option<String>,
    pub by: UsagePeriod,
    pub since: Option<String>,
    /// By period, then provider and stream.
    pub lines: Vec<UsageLine>,
    pub totals: UsageCounts,
    pub errors: BTreeMap<String, i64>,
}

impl UsageReport {
    /// Folds stored days into periods.
    pub fn fold(
        tenant: &TenantId,
        provider: Option<&ProviderId>,
        by: UsagePeriod,
        since: Option<NaiveDate>,
        days: Vec<UsageDay>,
    ) -> Result<Self, StoreError> {
        let mut lines: BTreeMap<(String, String, String), UsageLine> = BTreeMap::new();
        let mut totals = UsageCounts::default();
        let mut errors: BTreeMap<String, i64> = BTreeMap::new();
        for d in days {
            let day = NaiveDate::parse_from_str(&d.day, "%Y-%m-%d")
                .map_err(|_| super::error::corrupt(format!("usage day `{}` is not a date", d.day)))?;
            let period = by.start(day).format("%Y-%m-%d").to_string();
            let line =
                lines.entry((period.clone(), d.provider.clone(), d.stream.clone())).or_insert_with(|| UsageLine {
                    period,
                    provider: d.provider.clone(),
                    stream: d.stream.clone(),
                    counts: UsageCounts::default(),
                    errors: BTreeMap::new(),
                });
            line.counts.add(&d.counts);
            totals.add(&d.counts);
            if !d.error_class.is_empty() {
                *line.errors.entry(d.error_class.clone()).or_default() += d.counts.runs;
                *errors.entry(d.error_class).or_default() += d.counts.runs;
            }
        }
        Ok(Self {
            tenant: tenant.to_string(),
            provider: provider.map(ToString::to_string),
            by,
            since: since.map(|d| d.format("%Y-%m-%d").to_string()),
            lines: lines.into_values().collect(),
            totals,
            errors,
        })
    }
}

/// `--since` of a usage query: an RFC 3339 time or a date (`YYYY-MM-DD`); usage is
/// counted by UTC day, from that time's day on.
pub fn parse_usage_since(text: &str) -> Result<NaiveDate, String> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc).date_naive())
        .map_err(|_| format!("`{text}` is neither a date (2026-12-01) nor an RFC 3339 time (2026-12-01T08:00:00Z)"))
}

impl Store {
    /// The tenant's usage (of one provider), by day or week, from `since` (a UTC day) on.
    pub async fn usage(
        &self,
        tenant: &TenantId,
        provider: Option<&ProviderId>,
        by: UsagePeriod,
        since: Option<NaiveDate>,
    ) -> Result<UsageReport, StoreError> {
        let since_text = since.map(|d| d.format("%Y-%m-%d").to_string());
        let days: Vec<UsageDay> = on_backend!(self, |s| {
            sqlx::query_as(
                "SELECT provider, stream, day, error_class, runs, failed_runs, http_calls, http_errors, \
                 retries, fetched, written, dead_lettered, bytes_received, rate_limit_waits, \
                 rate_limit_wait_ms, run_ms FROM usage_daily WHERE tenant_id = $1 \
                 AND ($2 = '' OR provider = $2) AND day >= $3 ORDER BY day, provider, stream, error_class",
            )
            .bind_all((tenant.as_str(), provider.map_or("", ProviderId::as_str), since_text.as_deref().unwrap_or("")))
            .fetch_all(&s.pool)
            .await
            .map_err(db("reading usage"))?
        });
        UsageReport::fold(tenant, provider, by, since, days)
    }
}

/// Adds the finished `run` to its tenant's usage of its UTC day of finishing.
pub(super) async fn add_usage(conn: impl Into<Conn<'_>>, run: &RunRow) -> Result<(), StoreError> {
    let Some(finished) = run.finished_at else {
        return Ok(());
    };
    let c = UsageCounts::of_run(run);
    let day = finished.date_naive().format("%Y-%m-%d").to_string();
    let class = usage_error_class(run);
    on_connection!(conn, |conn| {
        sqlx::query(
            "INSERT INTO usage_daily (tenant_id, provider, stream, day, error_class, runs, failed_runs, \
             http_calls, http_errors, retries, fetched, written, dead_lettered, bytes_received, \
             rate_limit_waits, rate_limit_wait_ms, run_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (tenant_id, provider, stream, day, error_class) DO UPDATE SET \
             runs = usage_daily.runs + excluded.runs, \
             failed_runs = usage_daily.failed_runs + excluded.failed_runs, \
             http_calls = usage_daily.http_calls + excluded.http_calls, \
             http_errors = usage_daily.http_errors + excluded.http_errors, \
             retries = usage_daily.retries + excluded.retries, \
             fetched = usage_daily.fetched + excluded.fetched, \
             written = usage_daily.written + excluded.written, \
             dead_lettered = usage_daily.dead_lettered + excluded.dead_lettered, \
             bytes_received = usage_daily.bytes_received + excluded.bytes_received, \
             rate_limit_waits = usage_daily.rate_limit_waits + excluded.rate_limit_waits, \
             rate_limit_wait_ms = usage_daily.rate_limit_wait_ms + excluded.rate_limit_wait_ms, \
             run_ms = usage_daily.run_ms + excluded.run_ms",
        )
        .bind_all((run.tenant_id.as_str(), run.provider.as_str(), run.stream.as_str(), day.as_str(), class.as_str()))
        .bind_all((c.runs, c.failed_runs, c.http_calls, c.http_errors, c.retries, c.fetched))
        .bind_all((c.written, c.dead_lettered, c.bytes_received, c.rate_limit_waits, c.rate_limit_wait_ms, c.run_ms))
        .execute(&mut *conn)
        .await
        .map_err(db("adding a run to the usage aggregate"))?;
        Ok(())
    })
}
