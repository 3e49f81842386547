//! Jobs (connection × stream): their rows, their leases, which of them an operator
//! addresses, and the figures that count them.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

use super::{ProviderId, RunTrigger, StreamName, TenantId, TriggerKind, UserId};

/// One (connection, stream) job.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub tenant_id: TenantId,
    pub connection_id: i64,
    pub provider: ProviderId,
    pub stream: StreamName,
    pub schedule: String,
    pub next_run_at: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub consecutive_failures: i64,
    pub paused: bool,
    pub enabled: bool,
    /// When a manual or webhook trigger asked for a run ahead of the schedule.
    pub trigger_requested_at: Option<DateTime<Utc>>,
    pub trigger_kind: Option<TriggerKind>,
    /// When the current lease was taken.
    pub claimed_at: Option<DateTime<Utc>>,
    /// The owner whose expired lease the current claim replaced.
    pub reclaimed_from: Option<String>,
    pub last_run_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `Store::reconcile_jobs` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileCounts {
    /// Jobs that did not exist.
    pub created: u64,
    /// Jobs whose schedule changed (or that had no next run time).
    pub updated: u64,
    /// Disabled jobs that are desired again (their cursor is kept).
    pub reenabled: u64,
    /// Enabled jobs no longer desired (stream removed, provider dropped).
    pub disabled: u64,
    /// Jobs already as desired.
    pub unchanged: u64,
}

impl std::fmt::Display for ReconcileCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} created, {} rescheduled, {} re-enabled, {} disabled, {} unchanged",
            self.created, self.updated, self.reenabled, self.disabled, self.unchanged
        )
    }
}

/// A job leased to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job as it is after the claim (lease fields set).
    pub job: JobRow,
    /// The tenant's time zone, in which its schedules are evaluated.
    pub timezone: Tz,
    /// `Scheduled`, or the pending trigger (`Manual`, `Webhook`) that made it run.
    pub trigger: RunTrigger,
    /// Whether the claim took over another worker's expired lease.
    pub reclaimed: bool,
    /// The user owning the job's connection; `None` for a company connection.
    pub owner: Option<UserId>,
}

/// Which jobs an operator command addresses; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub tenant: Option<TenantId>,
    pub provider: Option<ProviderId>,
    pub stream: Option<StreamName>,
}

/// What `Store::set_paused` pauses or resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseScope {
    /// Every job of the tenant.
    Tenant(TenantId),
    /// Every job of the tenant's connections to the provider.
    Connection(TenantId, ProviderId),
    /// One job of the tenant.
    Job(TenantId, i64),
}

impl std::fmt::Display for PauseScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tenant(t) => write!(f, "tenant {t}"),
            Self::Connection(t, p) => write!(f, "connection {t}/{p}"),
            Self::Job(t, job) => write!(f, "job {job} of tenant {t}"),
        }
    }
}

/// Job totals for `status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// Every job, enabled or not.
    pub total: i64,
    /// Jobs of enabled streams and providers.
    pub enabled: i64,
    /// Enabled jobs paused by themselves, their connection or their tenant.
    pub paused: i64,
    /// Enabled, unpaused jobs whose connection cannot run (`pending`, `needs_reauth`,
    /// `disabled`).
    pub blocked: i64,
    /// Claimable now: due or triggered, and not running.
    pub due: i64,
    /// Due (or triggered) for longer than the grace period.
    pub overdue: i64,
    /// Leased with an unexpired lease.
    pub running: i64,
}

/// How fresh one (provider, stream) is over every tenant's enabled, unpaused job of it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StreamFreshness {
    pub provider: String,
    pub stream: String,
    /// The most recent end of a successful run of any of the jobs.
    pub last_success: Option<DateTime<Utc>>,
    /// The job furthest behind: the oldest of each job's last success (or, for a job
    /// that never succeeded, its creation).
    pub oldest: Option<DateTime<Utc>>,
}

/// The store-wide figures behind the process's gauges (`Store::gauge_figures`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GaugeFigures {
    /// Connections by stored status (statuses without connections are absent).
    pub connections: Vec<(String, i64)>,
    pub streams: Vec<StreamFreshness>,
    /// The earliest due time (or trigger) of the claimable jobs; `None` when none is due.
    pub oldest_due: Option<DateTime<Utc>>,
}
