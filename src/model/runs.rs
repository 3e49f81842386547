//! Runs: one execution of a job, with its counters and outcome (the sync log).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{ProviderId, RunOutcome, RunTrigger, StreamName, TenantId};

/// Counters and outcome written when a run finishes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
pub struct RunStats {
    pub fetched: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub filtered: i64,
    pub dead_lettered: i64,
    pub pages: i64,
    pub http_calls: i64,
    pub retries: i64,
    pub rate_limit_waits: i64,
    pub rate_limit_wait_ms: i64,
    /// Bytes of the response bodies the run read.
    pub bytes_received: i64,
    /// Requests that got no response (a transport error) or a 4xx or 5xx answer.
    pub http_errors: i64,
    /// Response time percentiles of the run's HTTP requests, in milliseconds.
    pub http_p50_ms: Option<f64>,
    pub http_p95_ms: Option<f64>,
    pub http_p99_ms: Option<f64>,
    pub cursor_after: Option<String>,
    pub error: Option<String>,
    /// What kind of error failed the run (`auth`, `client`, `transient`, `rate_limited`,
    /// `config`, `data`, `store`, `cancelled`), and the HTTP status and endpoint involved.
    pub error_class: Option<String>,
    pub error_status: Option<i64>,
    pub error_endpoint: Option<String>,
    /// The number of records the read returns, as the API reports it: progress while
    /// the run runs (not stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(skip)]
    pub total: Option<i64>,
    /// The replica (process) that ran it: the daemon's lease owner id, or
    /// `hostname-pid` for `tributary sync`.
    pub replica: Option<String>,
    /// How the run began, when there is something to say: which pass it resumed and
    /// from where, or that a saved position had expired and the pass restarted.
    pub note: Option<String>,
}

/// One run: the sync log.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub job_id: i64,
    pub provider: ProviderId,
    pub stream: StreamName,
    pub trigger: RunTrigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub cursor_before: Option<String>,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub stats: RunStats,
}
