//! When a job runs next: fixed intervals, daily wall-clock times and cron expressions,
//! the latter two evaluated in the tenant's time zone, each shifted by a small jitter
//! that is fixed per job.
//!
//! # Daylight saving time
//!
//! `daily at HH:MM` is evaluated exactly like the cron expression `0 MM HH * * *`, with
//! croner's rules for fixed-time jobs, so both forms always agree:
//!
//! - **Spring forward** (a wall-clock time that does not exist that day, e.g. 02:30 in
//!   Europe/Berlin on the last Sunday of March): the run happens once, at the first
//!   wall-clock time after the gap (03:00 CEST). It never vanishes.
//! - **Fall back** (a wall-clock time that happens twice, e.g. 01:30 in Europe/London on
//!   the last Sunday of October): the run happens once, at the first of the two
//!   instants (01:30 BST). It never runs twice.
//!
//! Cron expressions with wildcards or steps in the time fields (`*/15 * * * *`) follow
//! real time instead: occurrences inside a gap do not exist, and both passes of a
//! repeated hour run (an hourly pattern stays hourly in UTC). Intervals (`15m`) are
//! plain durations on the UTC time line and are not affected by DST at all.
//!
//! (In Europe/London the clocks change at 01:00 GMT / 02:00 BST, so a 02:30 schedule
//! there is neither skipped nor repeated; the affected London times are 01:00–01:59.)

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use crate::model::{Schedule, parse_cron};

/// Default cap of the jitter added to daily and cron schedules.
pub const DEFAULT_FIXED_JITTER: Duration = Duration::from_secs(60);

/// Cap of the jitter added to intervals (which is otherwise 10% of the interval).
pub const MAX_INTERVAL_JITTER: Duration = Duration::from_secs(5 * 60);

/// A deterministic, per-job spread of run times, so that a thousand tenants on "hourly"
/// do not all fire in the same second while each job keeps a stable rhythm: the same
/// job always gets the same offset for the same schedule.
///
/// The offset lies in `[0, bound]`, where the bound is 10% of the interval (at most
/// [`MAX_INTERVAL_JITTER`]) for intervals, and the configured fixed maximum (default
/// [`DEFAULT_FIXED_JITTER`]) for daily times and cron expressions. Jitter only ever
/// delays a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter {
    seed: u64,
    /// Cap for daily and cron schedules.
    fixed_max: Duration,
    /// Share of an interval (or backoff delay) the offset may reach, in percent.
    relative_percent: u32,
    /// Cap for intervals.
    interval_max: Duration,
}

impl Jitter {
    /// No jitter: every offset is zero.
    pub const NONE: Jitter =
        Jitter { seed: 0, fixed_max: Duration::ZERO, relative_percent: 0, interval_max: Duration::ZERO };

    /// The jitter of job `job_id`, with the default caps.
    pub fn for_job(job_id: i64) -> Self {
        Self {
            seed: mix(job_id.cast_unsigned()),
            fixed_max: DEFAULT_FIXED_JITTER,
            relative_percent: 10,
            interval_max: MAX_INTERVAL_JITTER,
        }
    }

    /// The same jitter with another cap for daily and cron schedules.
    pub fn with_fixed_max(self, fixed_max: Duration) -> Self {
        Self { fixed_max, ..self }
    }

    /// The largest offset this jitter may add to `schedule`.
    pub fn bound(&self, schedule: &Schedule) -> Duration {
        match schedule {
            Schedule::Every(interval) => self.share_of(*interval).min(self.interval_max),
            Schedule::DailyAt(_) | Schedule::Cron(_) => self.fixed_max,
        }
    }

    /// This job's offset for `schedule`: the same every time, within [`Jitter::bound`].
    pub fn offset(&self, schedule: &Schedule) -> Duration {
        self.spread(self.bound(schedule), 0)
    }

    /// This jitter's share (10%, or nothing for [`Jitter::NONE`]) of `span`.
    pub(crate) fn share_of(&self, span: Duration) -> Duration {
        span.checked_mul(self.relative_percent).map_or(span / 100 * self.relative_percent, |d| d / 100)
    }

    /// A deterministic duration in `[0, bound]` (millisecond steps), different for each
    /// `salt`.
    pub(crate) fn spread(&self, bound: Duration, salt: u64) -> Duration {
        let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        if bound_ms == 0 {
            return Duration::ZERO;
        }
        let draw = mix(self.seed ^ mix(salt));
        Duration::from_millis(draw % bound_ms.saturating_add(1))
    }
}

/// SplitMix64's finalizer: a fixed, well-mixed hash that never changes between
/// releases (unlike `std`'s hasher), so offsets survive upgrades.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The first run of `schedule` strictly after `after`, jitter included; `None` if the
/// schedule never runs again (a cron expression that matches no date, or a time beyond
/// the year 5000).
///
/// - Intervals count from `after`: `after + interval + offset`. Pass the time the last
///   run finished, so a slow run never makes runs pile up.
/// - Daily times and cron expressions: the first occurrence `o` in `tz` with
///   `o + offset > after`, then `o + offset`. An occurrence whose jittered time is still
///   ahead is therefore never skipped. See the module documentation for DST.
pub fn next_run_after(schedule: &Schedule, tz: Tz, after: DateTime<Utc>, jitter: Jitter) -> Option<DateTime<Utc>> {
    let offset = TimeDelta::from_std(jitter.offset(schedule)).ok()?;
    match schedule {
        Schedule::Every(interval) => {
            let interval = TimeDelta::from_std(*interval).ok()?;
            after.checked_add_signed(interval)?.checked_add_signed(offset)
        }
        Schedule::DailyAt(time) => {
            let cron = parse_cron(&format!("{} {} {} * * *", time.second(), time.minute(), time.hour())).ok()?;
            next_occurrence(&cron, tz, after.checked_sub_signed(offset)?)?.checked_add_signed(offset)
        }
        Schedule::Cron(expr) => {
            let cron = parse_cron(expr).ok()?;
            next_occurrence(&cron, tz, after.checked_sub_signed(offset)?)?.checked_add_signed(offset)
        }
    }
}

/// When a job with no run history (new, or its schedule just changed) runs first:
/// intervals at `now + offset` (a new connection syncs soon rather than an interval
/// later), daily times and cron expressions at their next occurrence.
pub fn first_run_at(schedule: &Schedule, tz: Tz, now: DateTime<Utc>, jitter: Jitter) -> Option<DateTime<Utc>> {
    match schedule {
        Schedule::Every(_) => now.checked_add_signed(TimeDelta::from_std(jitter.offset(schedule)).ok()?),
        Schedule::DailyAt(_) | Schedule::Cron(_) => next_run_after(schedule, tz, now, jitter),
    }
}

/// The first occurrence of `cron` in `tz` strictly after `after`.
fn next_occurrence(cron: &croner::Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false).ok().map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::{NaiveDate, NaiveTime, TimeZone};
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::{Berlin, London};

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn schedule(text: &str) -> Schedule {
        Schedule::parse(text).unwrap()
    }

    /// Every run of `schedule` in `(from, until]`, without jitter.
    fn runs(schedule: &Schedule, tz: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = from;
        while let Some(next) = next_run_after(schedule, tz, at, Jitter::NONE) {
            if next > until {
                break;
            }
            assert!(next > at, "{schedule:?} went backwards from {at} to {next}");
            out.push(next);
            at = next;
        }
        out
    }

    #[test]
    fn intervals_count_from_after_on_the_utc_time_line() {
        let after = utc(2026, 6, 1, 10, 7, 30);
        assert_eq!(next_run_after(&schedule("15m"), London, after, Jitter::NONE), Some(utc(2026, 6, 1, 10, 22, 30)));
        assert_eq!(next_run_after(&schedule("90s"), Tz::UTC, after, Jitter::NONE), Some(utc(2026, 6, 1, 10, 9, 0)));
        // Across the spring-forward night an hour is still 3,600 seconds.
        let before_jump = utc(2026, 3, 29, 0, 30, 0);
        assert_eq!(
            next_run_after(&schedule("hourly"), London, before_jump, Jitter::NONE),
            Some(utc(2026, 3, 29, 1, 30, 0))
        );
    }

    #[test]
    fn daily_at_runs_at_the_local_wall_clock_time() {
        let daily = schedule("daily at 02:00");
        // Summer: 02:00 BST is 01:00 UTC; winter: 02:00 GMT is 02:00 UTC.
        assert_eq!(
            next_run_after(&daily, London, utc(2026, 6, 1, 10, 0, 0), Jitter::NONE),
            Some(utc(2026, 6, 2, 1, 0, 0))
        );
        assert_eq!(
            next_run_after(&daily, London, utc(2026, 12, 1, 1, 59, 59), Jitter::NONE),
            Some(utc(2026, 12, 1, 2, 0, 0))
        );
        // Exactly at the run time, the next run is tomorrow's.
        assert_eq!(
            next_run_after(&daily, Tz::UTC, utc(2026, 12, 1, 2, 0, 0), Jitter::NONE),
            Some(utc(2026, 12, 2, 2, 0, 0))
        );
        assert_eq!(
            next_run_after(&daily, New_York, utc(2026, 12, 1, 2, 0, 0), Jitter::NONE),
            Some(utc(2026, 12, 1, 7, 0, 0))
        );
    }

    #[test]
    fn london_daily_times_across_both_transitions_run_once_a_day() {
        // 2026-03-29: 01:00 GMT becomes 02:00 BST. 2026-10-25: 02:00 BST becomes 01:00 GMT.
        for (time, spring, autumn) in [
            // 02:30 exists once on both days.
            ("02:30", utc(2026, 3, 29, 1, 30, 0), utc(2026, 10, 25, 2, 30, 0)),
            // 01:30 is skipped in spring (runs when the clock reaches 02:00 BST) and
            // repeated in autumn (runs at the first 01:30, BST).
            ("01:30", utc(2026, 3, 29, 1, 0, 0), utc(2026, 10, 25, 0, 30, 0)),
        ] {
            let daily = schedule(&format!("daily at {time}"));
            for (day, expected) in [(29, spring), (25, autumn)] {
                let month = if day == 29 { 3 } else { 10 };
                let all =
                    runs(&daily, London, utc(2026, month, day - 2, 12, 0, 0), utc(2026, month, day + 2, 12, 0, 0));
                let dates: Vec<NaiveDate> = all.iter().map(|t| t.with_timezone(&London).date_naive()).collect();
                let unique: BTreeSet<NaiveDate> = dates.iter().copied().collect();
                assert_eq!(dates.len(), 4, "{time} around {expected}: {all:?}");
                assert_eq!(unique.len(), 4, "{time} ran twice on one day: {all:?}");
                assert!(all.contains(&expected), "{time}: expected {expected} in {all:?}");
            }
        }
    }

    #[test]
    fn berlin_0230_moves_to_the_end_of_the_gap_and_runs_once_when_repeated() {
        let daily = schedule("daily at 02:30");
        // 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00 UTC): 02:30 does not exist.
        assert_eq!(
            next_run_after(&daily, Berlin, utc(2026, 3, 28, 12, 0, 0), Jitter::NONE),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
        assert_eq!(
            next_run_after(&daily, Berlin, utc(2026, 3, 29, 1, 0, 0), Jitter::NONE),
            Some(utc(2026, 3, 30, 0, 30, 0))
        );
        // 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:30 happens at 00:30 and 01:30
        // UTC; only the first runs.
        assert_eq!(
            next_run_after(&daily, Berlin, utc(2026, 10, 24, 12, 0, 0), Jitter::NONE),
            Some(utc(2026, 10, 25, 0, 30, 0))
        );
        assert_eq!(
            next_run_after(&daily, Berlin, utc(2026, 10, 25, 0, 30, 0), Jitter::NONE),
            Some(utc(2026, 10, 26, 1, 30, 0))
        );
    }

    #[test]
    fn daily_at_and_the_equivalent_cron_agree_all_year() {
        for tz in [Berlin, London, New_York] {
            for time in ["02:30", "01:30", "00:00", "23:59"] {
                let t = NaiveTime::parse_from_str(time, "%H:%M").unwrap();
                let daily = schedule(&format!("daily at {time}"));
                let cron = schedule(&format!("{} {} * * *", t.minute(), t.hour()));
                let from = utc(2026, 1, 1, 0, 0, 0);
                let until = utc(2027, 1, 1, 0, 0, 0);
                let a = runs(&daily, tz, from, until);
                let b = runs(&cron, tz, from, until);
                assert_eq!(a, b, "{tz} {time}");
                let days: BTreeSet<NaiveDate> = a.iter().map(|t| t.with_timezone(&tz).date_naive()).collect();
                assert_eq!((a.len(), days.len()), (365, 365), "{tz} {time}");
            }
        }
    }

    #[test]
    fn wildcard_cron_follows_real_time_across_both_transitions() {
        let half_hourly = schedule("*/30 * * * *");
        // Spring: 00:00 and 00:30 GMT, then 02:00 BST (01:00 UTC): no gap in real time.
        let spring = runs(&half_hourly, London, utc(2026, 3, 28, 23, 59, 0), utc(2026, 3, 29, 2, 0, 0));
        assert_eq!(
            spring,
            vec![
                utc(2026, 3, 29, 0, 0, 0),
                utc(2026, 3, 29, 0, 30, 0),
                utc(2026, 3, 29, 1, 0, 0),
                utc(2026, 3, 29, 1, 30, 0),
                utc(2026, 3, 29, 2, 0, 0),
            ]
        );
        // Autumn: 01:00 and 01:30 happen twice (BST, then GMT) and both passes run.
        let autumn = runs(&half_hourly, London, utc(2026, 10, 24, 23, 59, 0), utc(2026, 10, 25, 2, 0, 0));
        let local: Vec<String> =
            autumn.iter().map(|t| t.with_timezone(&London).format("%H:%M %Z").to_string()).collect();
        assert_eq!(local, ["01:00 BST", "01:30 BST", "01:00 GMT", "01:30 GMT", "02:00 GMT"], "{autumn:?}");
    }

    #[test]
    fn fixed_time_cron_in_new_york_skips_nothing_and_repeats_nothing() {
        // 2026-03-08 02:00 EST jumps to 03:00 EDT; 2026-11-01 02:00 EDT falls back to 01:00 EST.
        let cron = schedule("0 30 1 * * *"); // six fields: seconds first
        let spring = runs(&cron, New_York, utc(2026, 3, 7, 0, 0, 0), utc(2026, 3, 10, 0, 0, 0));
        assert_eq!(spring, vec![utc(2026, 3, 7, 6, 30, 0), utc(2026, 3, 8, 6, 30, 0), utc(2026, 3, 9, 5, 30, 0)]);
        let autumn = runs(&cron, New_York, utc(2026, 10, 31, 0, 0, 0), utc(2026, 11, 3, 0, 0, 0));
        assert_eq!(autumn, vec![utc(2026, 10, 31, 5, 30, 0), utc(2026, 11, 1, 5, 30, 0), utc(2026, 11, 2, 6, 30, 0)]);
    }

    #[test]
    fn impossible_cron_expressions_never_run() {
        assert_eq!(next_run_after(&schedule("0 0 30 2 *"), Tz::UTC, utc(2026, 1, 1, 0, 0, 0), Jitter::NONE), None);
    }

    #[test]
    fn jitter_is_bounded_per_schedule_kind() {
        for id in 0..2_000 {
            let jitter = Jitter::for_job(id);
            let cases = [
                ("15m", Duration::from_secs(90)),
                ("90s", Duration::from_secs(9)),
                ("hourly", MAX_INTERVAL_JITTER),
                ("1d", MAX_INTERVAL_JITTER),
                ("daily at 02:00", DEFAULT_FIXED_JITTER),
                ("*/5 * * * *", DEFAULT_FIXED_JITTER),
            ];
            for (text, bound) in cases {
                let s = schedule(text);
                assert_eq!(jitter.bound(&s), bound, "{text}");
                assert!(jitter.offset(&s) <= bound, "{text} job {id}");
            }
            let short = jitter.with_fixed_max(Duration::from_secs(5));
            assert!(short.offset(&schedule("daily at 02:00")) <= Duration::from_secs(5));
            assert_eq!(Jitter::NONE.offset(&schedule("hourly")), Duration::ZERO);
        }
    }

    #[test]
    fn jitter_is_deterministic_per_job_and_differs_between_jobs() {
        let hourly = schedule("hourly");
        let after = utc(2026, 6, 1, 10, 0, 0);
        let a = next_run_after(&hourly, London, after, Jitter::for_job(42));
        assert_eq!(a, next_run_after(&hourly, London, after, Jitter::for_job(42)));
        // The offset is a fixed phase: the same in every period.
        let later = next_run_after(&hourly, London, utc(2026, 6, 3, 17, 0, 0), Jitter::for_job(42)).unwrap();
        assert_eq!(a.unwrap() - after, later - utc(2026, 6, 3, 17, 0, 0));
        let offsets: BTreeSet<Duration> = (0..100).map(|id| Jitter::for_job(id).offset(&hourly)).collect();
        assert!(offsets.len() >= 95, "{} distinct offsets", offsets.len());
    }

    #[test]
    fn a_thousand_hourly_tenants_do_not_fire_in_the_same_second() {
        let hourly = schedule("hourly");
        let now = utc(2026, 6, 1, 10, 0, 0);
        let mut per_second: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
        for id in 1..=1_000 {
            let at = next_run_after(&hourly, London, now, Jitter::for_job(id)).unwrap();
            assert!(at >= now + TimeDelta::hours(1) && at <= now + TimeDelta::hours(1) + TimeDelta::minutes(5));
            *per_second.entry(at.with_nanosecond(0).unwrap()).or_default() += 1;
        }
        let busiest = per_second.values().max().copied().unwrap_or(0);
        assert!(per_second.len() >= 250, "only {} distinct seconds", per_second.len());
        assert!(busiest <= 12, "{busiest} runs in one second");
    }

    #[test]
    fn jitter_delays_a_cron_occurrence_without_skipping_it() {
        let daily = schedule("daily at 02:00");
        let jitter = Jitter::for_job(7);
        let offset = TimeDelta::from_std(jitter.offset(&daily)).unwrap();
        assert!(offset > TimeDelta::zero());
        let occurrence = utc(2026, 12, 1, 2, 0, 0);
        // Between the occurrence and its jittered time the jittered time is still next.
        let between = occurrence + offset / 2;
        assert_eq!(next_run_after(&daily, London, between, jitter), Some(occurrence + offset));
        // At the jittered time, tomorrow's.
        assert_eq!(
            next_run_after(&daily, London, occurrence + offset, jitter),
            Some(occurrence + TimeDelta::days(1) + offset)
        );
    }

    #[test]
    fn first_runs_of_intervals_come_soon_and_of_daily_times_at_the_next_occurrence() {
        let now = utc(2026, 6, 1, 10, 0, 0);
        let jitter = Jitter::for_job(3);
        let first = first_run_at(&schedule("1d"), London, now, jitter).unwrap();
        assert!(first >= now && first <= now + TimeDelta::minutes(5));
        assert_eq!(
            first_run_at(&schedule("daily at 02:00"), London, now, Jitter::NONE),
            Some(utc(2026, 6, 2, 1, 0, 0))
        );
    }
}
