//! Plain domain types shared by every module: identifiers, schedules, statuses, and
//! the vocabulary the program speaks about what it keeps — tenants and their users,
//! connections, jobs, runs, records and company intelligence (the submodules). The
//! store persists these; every other module reads and writes them. How each value is
//! kept in a database column, so that stored rows decode straight into these types, is
//! in `column`.
//!
//! Identifiers are validated once, in their `parse` constructor; everything that
//! holds one may rely on its shape.

mod column;
mod connections;
mod intelligence;
mod jobs;
mod records;
mod runs;
mod tenants;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveTime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use self::column::OwnerColumn;
pub use self::connections::{ConnectionRow, Owner, SealedBlob};
pub use self::intelligence::{ContributionRow, IntelligenceRow, PairRow, ResponsibilityRow};
pub use self::jobs::{
    ClaimedJob, GaugeFigures, JobCounts, JobFilter, JobRow, PauseScope, ReconcileCounts, StreamFreshness,
};
pub use self::records::{ChangeKind, ChangeRange, ChangeRow, DeadLetterRow, PageOutcome, RecordRow};
pub use self::runs::{RunRow, RunStats};
pub use self::tenants::{AuditEntry, MembershipRow, Saved, TenantRow, UserRow};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`: {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal, $extra:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `value`: 1 to
            #[doc = concat!(stringify!($max), " characters, lowercase ASCII letters, digits and `", $extra, "`, starting with a letter.")]
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let err = |reason| IdError { kind: $kind, value: value.to_owned(), reason };
                if value.is_empty() {
                    return Err(err("must not be empty"));
                }
                if value.len() > $max {
                    return Err(err(concat!("longer than ", stringify!($max), " characters")));
                }
                if !value.as_bytes()[0].is_ascii_lowercase() {
                    return Err(err("must start with a lowercase letter"));
                }
                if !value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || $extra.as_bytes().contains(&b))
                {
                    return Err(err(concat!("only lowercase letters, digits and `", $extra, "` are allowed")));
                }
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A tenant (customer organization), e.g. `acme`. Also used in host names, so `-` not `_`.
    TenantId, "tenant id", 63, "-"
);
identifier!(
    /// A provider (connector), e.g. `hubspot`.
    ProviderId, "provider id", 63, "_"
);
identifier!(
    /// A stream of one provider, e.g. `contacts`.
    StreamName, "stream name", 63, "_"
);
identifier!(
    /// A normalized target entity, e.g. `learner`.
    EntityName, "entity name", 63, "_"
);
identifier!(
    /// A field of a target entity, e.g. `external_id`.
    FieldName, "field name", 63, "_"
);
identifier!(
    /// A preset, e.g. `aptem_hubspot`.
    PresetName, "preset name", 63, "_"
);

/// When a job runs. Parsed from the forms operators write:
/// `15m`, `90s`, `2h`, `1d`, `every 15 minutes`, `every hour`, `hourly`, `daily`,
/// `daily at 02:00`, or a 5- or 6-field cron expression (`*/15 * * * *`).
#[derive(Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A fixed interval between runs.
    Every(Duration),
    /// Once a day at a wall-clock time in the tenant's time zone.
    DailyAt(NaiveTime),
    /// A cron expression, evaluated in the tenant's time zone.
    Cron(String),
}

/// Why a schedule expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule `{input}`: {reason}")]
pub struct ScheduleError {
    pub input: String,
    pub reason: String,
}

impl Schedule {
    pub fn parse(input: &str) -> Result<Self, ScheduleError> {
        let err = |reason: &str| ScheduleError { input: input.to_owned(), reason: reason.to_owned() };
        let text = input.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(err("empty"));
        }
        match text.as_str() {
            "hourly" | "every hour" => return Ok(Self::Every(Duration::from_secs(3600))),
            "daily" | "every day" => return Ok(Self::DailyAt(NaiveTime::MIN)),
            "every minute" => return Ok(Self::Every(Duration::from_secs(60))),
            _ => {}
        }
        if let Some(time) = text.strip_prefix("daily at ") {
            let time = NaiveTime::parse_from_str(time.trim(), "%H:%M")
                .map_err(|_| err("expected `daily at HH:MM` with a 24-hour time"))?;
            return Ok(Self::DailyAt(time));
        }
        if let Some(rest) = text.strip_prefix("every ") {
            return parse_words_interval(rest).map(Self::Every).map_err(|r| err(&r));
        }
        if text.split_whitespace().count() >= 5 {
            return parse_cron(input.trim())
                .map(|_| Self::Cron(input.trim().to_owned()))
                .map_err(|e| err(&format!("bad cron expression: {e}")));
        }
        parse_compact_interval(&text).map(Self::Every).map_err(|r| err(&r))
    }
}

impl Schedule {
    /// Parses like [`Schedule::parse`] and also rejects a cron expression that does not
    /// fire within five years (`0 0 30 2 *`, February 30th): for checking what an
    /// operator writes, where such a schedule is a mistake, not a plan.
    pub fn parse_checked(input: &str) -> Result<Self, ScheduleError> {
        let schedule = Self::parse(input)?;
        if let Self::Cron(expr) = &schedule {
            let now = chrono::Utc::now();
            let horizon = now + chrono::Duration::days(5 * 366);
            let fires = parse_cron(expr).ok().and_then(|c| c.find_next_occurrence(&now, false).ok());
            if fires.is_none_or(|next| next > horizon) {
                return Err(ScheduleError {
                    input: input.to_owned(),
                    reason: "the cron expression never fires (no occurrence within 5 years)".into(),
                });
            }
        }
        Ok(schedule)
    }
}

/// Parses a cron expression of 5 fields (minute hour day-of-month month day-of-week) or
/// 6 (with a leading seconds field); day-of-month and day-of-week combine with OR, as in
/// Vixie cron. A seventh (year) field is rejected. The scheduler evaluates expressions
/// with the same parser, so whatever parses here also runs.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expr)
}

fn unit_seconds(unit: &str) -> Option<u64> {
    Some(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return None,
    })
}

fn interval(count: u64, unit: &str) -> Result<Duration, String> {
    let secs = unit_seconds(unit).ok_or_else(|| format!("unknown unit `{unit}` (use s, m, h or d)"))?;
    if count == 0 {
        return Err("the interval must be greater than zero".into());
    }
    count
        .checked_mul(secs)
        .filter(|s| *s <= 366 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| "the interval must be at most a year".into())
}

/// `15 minutes`, `2 hours`.
fn parse_words_interval(rest: &str) -> Result<Duration, String> {
    let mut words = rest.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(n), Some(unit), None) => {
            let count = n.parse().map_err(|_| format!("`{n}` is not a whole number"))?;
            interval(count, unit)
        }
        (Some(unit), None, None) => interval(1, unit),
        _ => Err("expected `every N minutes|hours|days`".into()),
    }
}

/// `15m`, `2h`, `1d`, `90s`.
fn parse_compact_interval(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    if n.is_empty() {
        return Err("expected an interval (`15m`, `1h`), `every …`, `daily at HH:MM` or a cron expression".into());
    }
    let count = n.parse().map_err(|_| format!("`{n}` is too large"))?;
    interval(count, unit.trim())
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every(d) => {
                let s = d.as_secs();
                if s % 86_400 == 0 {
                    write!(f, "{}d", s / 86_400)
                } else if s % 3600 == 0 {
                    write!(f, "{}h", s / 3600)
                } else if s % 60 == 0 {
                    write!(f, "{}m", s / 60)
                } else {
                    write!(f, "{s}s")
                }
            }
            Self::DailyAt(t) => write!(f, "daily at {}", t.format("%H:%M")),
            Self::Cron(c) => f.write_str(c),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

/// The state of a connection (tenant × provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Enabled, but no credentials have been stored yet.
    Pending,
    Connected,
    Error,
    NeedsReauth,
    Disabled,
}

impl ConnectionStatus {
    pub const ALL: [Self; 5] = [Self::Pending, Self::Connected, Self::Error, Self::NeedsReauth, Self::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Connected => "connected",
            Self::Error => "error",
            Self::NeedsReauth => "needs_reauth",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    Scheduled,
    Manual,
    Webhook,
    Cli,
}

impl RunTrigger {
    pub const ALL: [Self; 4] = [Self::Scheduled, Self::Manual, Self::Webhook, Self::Cli];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
            Self::Webhook => "webhook",
            Self::Cli => "cli",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for RunTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What asked for a job to run ahead of its schedule. A pending trigger makes the job
/// claimable at once, before jobs that are merely due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// An operator or tenant admin (control socket, SIGUSR1).
    Manual,
    /// An inbound webhook from the provider.
    Webhook,
}

impl TriggerKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 2] = [Self::Manual, Self::Webhook];

    /// The stored name (`manual`, `webhook`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Webhook => "webhook",
        }
    }

    /// The kind stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl From<TriggerKind> for RunTrigger {
    fn from(kind: TriggerKind) -> Self {
        match kind {
            TriggerKind::Manual => Self::Manual,
            TriggerKind::Webhook => Self::Webhook,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Success,
    Failed,
    Cancelled,
    /// Stopped at the run's bounds (pages or duration) with its position committed; the
    /// next run continues the pass. Not a failure.
    Partial,
    /// Its process died (or lost the store) holding the job's lease, and whoever next
    /// saw the lease expired closed it.
    Abandoned,
}

impl RunOutcome {
    pub const ALL: [Self; 6] =
        [Self::Running, Self::Success, Self::Failed, Self::Cancelled, Self::Partial, Self::Abandoned];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Partial => "partial",
            Self::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

identifier!(
    /// A person who uses tributary at one or more companies, e.g. `alice`.
    UserId, "user id", 63, "-_."
);
identifier!(
    /// A user's role at one company (`developer`, `sales`, …): decides which streams that
    /// user's own connections may sync there.
    RoleName, "role name", 63, "_-"
);

/// An enum stored and shown as a fixed lowercase word: `ALL`, `as_str`, `parse`,
/// `Display` and serde as that word.
macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            /// The accepted words, for error messages.
            pub fn words() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown {} `{s}` (expected one of: {})", stringify!($name), Self::words()))
                })
            }
        }
    };
}

word_enum!(
    /// How an audited action ended: done, refused for the caller's scope, or failed.
    AuditOutcome {
        Ok => "ok",
        Denied => "denied",
        Error => "error",
    }
);

word_enum!(
    /// What kind of fact a contribution reports about a company integration.
    ContributionKind {
        DataSource => "data_source",
        UsagePattern => "usage_pattern",
        PerformanceMetrics => "performance_metrics",
        ErrorReporting => "error_reporting",
        OptimizationSuggestion => "optimization_suggestion",
        Configuration => "configuration",
    }
);

word_enum!(
    /// Where a contribution stands: `active` when made, `approved`/`rejected` by a
    /// reviewer, `superseded` by a newer one of the same user, connection and kind.
    ContributionStatus {
        Active => "active",
        Approved => "approved",
        Rejected => "rejected",
        Superseded => "superseded",
    }
);

impl ContributionStatus {
    /// Counts towards company intelligence.
    pub fn is_current(self) -> bool {
        matches!(self, Self::Active | Self::Approved)
    }
}

word_enum!(
    /// What a user is responsible for on one company integration (tenant + provider).
    Responsibility {
        /// Contributes everything.
        Owner => "owner",
        /// Performance and error data.
        Admin => "admin",
        /// Usage and error data.
        User => "user",
        /// Nothing.
        Viewer => "viewer",
        /// What its scope says.
        Contributor => "contributor",
        /// Approves or rejects contributions; contributes nothing itself.
        Reviewer => "reviewer",
        /// Technical data: performance and errors.
        Maintainer => "maintainer",
    }
);

impl Responsibility {
    /// The contribution kinds this responsibility contributes unless its scope is set
    /// explicitly (a `contributor` has no default scope: it contributes what it is given).
    pub fn default_scope(self) -> &'static [ContributionKind] {
        use ContributionKind as K;
        match self {
            Self::Owner => ContributionKind::ALL,
            Self::Admin | Self::Maintainer => &[K::PerformanceMetrics, K::ErrorReporting],
            Self::User => &[K::UsagePattern, K::ErrorReporting],
            Self::Viewer | Self::Contributor | Self::Reviewer => &[],
        }
    }

    /// Whether contributions are made automatically after runs unless set otherwise.
    pub fn default_auto_contribute(self) -> bool {
        !matches!(self, Self::Viewer | Self::Reviewer)
    }

    /// May approve or reject other users' contributions on the integration.
    pub fn may_review(self) -> bool {
        matches!(self, Self::Owner | Self::Reviewer)
    }
}

word_enum!(
    /// What kind of error failed a run: decides the severity of its error report.
    ErrorClass {
        /// The provider refuses the credentials: an operator must re-authorize.
        Auth => "auth",
        /// The provider answered with a permanent error (4xx other than auth and limits).
        Client => "client",
        /// Transient failures (5xx, timeouts, transport) outlasted the retry budget.
        Transient => "transient",
        /// The provider kept rate limiting beyond the waits allowed.
        RateLimited => "rate_limited",
        /// The configuration or manifest cannot produce a request (missing variable…).
        Config => "config",
        /// The provider's responses could not be read as the manifest says (bad body,
        /// pagination loop, window stuck).
        Data => "data",
        /// The state store failed.
        Store => "store",
        /// The run was stopped (drain, lease lost) and resumes later.
        Cancelled => "cancelled",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_reject_bad_shapes() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("acme-2").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("acme_2").is_err());
        assert!(TenantId::parse("2acme").is_err());
        assert!(TenantId::parse(&"a".repeat(64)).is_err());
        assert!(ProviderId::parse("aptem_hubspot").is_ok());
        assert!(ProviderId::parse("a b").is_err());
        let err = FieldName::parse("Bad").unwrap_err();
        assert_eq!(err.kind, "field name");
    }

    #[test]
    fn schedules_parse_every_documented_form() {
        let min = |m: u64| Schedule::Every(Duration::from_secs(m * 60));
        assert_eq!(Schedule::parse("15m").unwrap(), min(15));
        assert_eq!(Schedule::parse("every 15 minutes").unwrap(), min(15));
        assert_eq!(Schedule::parse("Every 15 Minutes").unwrap(), min(15));
        assert_eq!(Schedule::parse("hourly").unwrap(), min(60));
        assert_eq!(Schedule::parse("1h").unwrap(), min(60));
        assert_eq!(Schedule::parse("every hour").unwrap(), min(60));
        assert_eq!(Schedule::parse("every 2 hours").unwrap(), min(120));
        assert_eq!(Schedule::parse("1d").unwrap(), min(1440));
        assert_eq!(
            Schedule::parse("daily at 02:00").unwrap(),
            Schedule::DailyAt(NaiveTime::from_hms_opt(2, 0, 0).unwrap())
        );
        assert_eq!(Schedule::parse("*/15 * * * *").unwrap(), Schedule::Cron("*/15 * * * *".into()));
        assert_eq!(Schedule::parse("0 30 2 * * *").unwrap(), Schedule::Cron("0 30 2 * * *".into()));
    }

    #[test]
    fn schedules_reject_nonsense_with_a_reason() {
        for bad in [
            "",
            "0m",
            "15x",
            "every",
            "every banana",
            "daily at 25:00",
            "* * * * 99",
            "0 0 0 * * * 2030",
            "m15",
            "99999999999999999999m",
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn cron_schedules_that_never_fire_are_rejected_when_checked() {
        for never in ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 31 11 *"] {
            assert!(Schedule::parse(never).is_ok(), "{never} parses");
            let err = Schedule::parse_checked(never).unwrap_err();
            assert!(err.reason.contains("never fires"), "{never}: {}", err.reason);
        }
        // Leap days fire every four years: within the horizon.
        for fine in ["0 0 29 2 *", "*/15 * * * *", "15m", "daily at 02:00"] {
            assert!(Schedule::parse_checked(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn schedule_display_round_trips() {
        for s in ["15m", "2h", "1d", "90s", "daily at 02:00", "*/5 * * * *"] {
            let parsed = Schedule::parse(s).unwrap();
            assert_eq!(Schedule::parse(&parsed.to_string()).unwrap(), parsed);
        }
    }
}
