//! Date and time parsing for the `date` and `datetime` transforms and the `date` and
//! `datetime` field types. A small byte-level parser: the forms providers send are few
//! and fixed, and it runs on every record.

use std::fmt::Write;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};
use serde_json::Value;

use super::value::{View, with_text};

/// The UTC calendar date of `v`: `YYYY-MM-DD`, an ISO/RFC 3339 date-time (with an
/// offset: the date in UTC; without: as written), UK `DD/MM/YYYY`, or epoch
/// milliseconds as a number or a numeric string.
pub(crate) fn to_date(v: View<'_>) -> Option<String> {
    let date = match v {
        View::Str(s) => {
            let s = s.trim();
            match parse_iso(s) {
                Some(iso) => iso.utc_date()?,
                None => match parse_uk(s) {
                    Some(d) => d,
                    None => from_millis(epoch(s)?.millis())?.date_naive(),
                },
            }
        }
        View::Value(Value::Number(_)) => {
            let ms = with_text(v, |t| epoch(t).map(Epoch::millis))??;
            from_millis(ms)?.date_naive()
        }
        View::Value(_) => return None,
    };
    format_date(date)
}

/// `v` as an RFC 3339 UTC instant with millisecond precision
/// (`YYYY-MM-DDTHH:MM:SS.sssZ`): ISO/RFC 3339 with any fractional precision and any
/// offset (none means UTC), `YYYY-MM-DD HH:MM`, a bare date (midnight UTC), or epoch
/// seconds with a fraction (Slack's `"1712345678.000100"`) — epoch milliseconds when
/// the number is at least 10^11.
pub(crate) fn to_datetime(v: View<'_>) -> Option<String> {
    let instant = match v {
        View::Str(s) => {
            let s = s.trim();
            match parse_iso(s) {
                Some(iso) => iso.utc()?,
                None => from_millis(epoch(s)?.auto_millis()?)?,
            }
        }
        View::Value(Value::Number(_)) => {
            let ms = with_text(v, |t| epoch(t).and_then(Epoch::auto_millis))??;
            from_millis(ms)?
        }
        View::Value(_) => return None,
    };
    format_datetime(instant)
}

/// Whether `s` is a valid `YYYY-MM-DD` date.
pub(crate) fn is_date(s: &str) -> bool {
    s.len() == 10 && parse_iso(s).is_some_and(|iso| iso.time.is_none())
}

/// Whether `s` is an RFC 3339 date-time (seconds and an offset required).
pub(crate) fn is_rfc3339(s: &str) -> bool {
    DateTime::parse_from_rfc3339(s).is_ok()
}

fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

fn format_date(d: NaiveDate) -> Option<String> {
    if !(0..=9999).contains(&d.year()) {
        return None;
    }
    let mut out = String::with_capacity(10);
    write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day()).ok()?;
    Some(out)
}

fn format_datetime(t: DateTime<Utc>) -> Option<String> {
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let mut out = String::with_capacity(24);
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis().min(999)
    )
    .ok()?;
    Some(out)
}

/// A parsed ISO 8601 / RFC 3339 date with optional time and offset.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Iso {
    date: NaiveDate,
    time: Option<NaiveTime>,
    /// Seconds east of UTC, when an offset was given.
    offset: Option<i32>,
}

impl Iso {
    fn utc(self) -> Option<DateTime<Utc>> {
        let local = NaiveDateTime::new(self.date, self.time.unwrap_or(NaiveTime::MIN));
        let utc = local.checked_sub_signed(TimeDelta::seconds(self.offset.unwrap_or(0).into()))?;
        Some(utc.and_utc())
    }

    fn utc_date(self) -> Option<NaiveDate> {
        match (self.time, self.offset) {
            (Some(_), Some(_)) => Some(self.utc()?.date_naive()),
            _ => Some(self.date),
        }
    }
}

/// `YYYY-MM-DD[(T|t| )HH:MM[:SS[(.|,)fraction]][ ][Z|z|±HH[:]MM|±HH]]`.
fn parse_iso(s: &str) -> Option<Iso> {
    let mut p = Cursor(s.as_bytes());
    let year = p.digits(4)?;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    if p.done() {
        return Some(Iso { date, time: None, offset: None });
    }
    if !matches!(p.next()?, b'T' | b't' | b' ') {
        return None;
    }
    let hour = p.digits(2)?;
    p.expect(b':')?;
    let minute = p.digits(2)?;
    let mut second = 0;
    let mut nanos = 0;
    if p.peek() == Some(b':') {
        p.next();
        second = p.digits(2)?;
        if matches!(p.peek(), Some(b'.' | b',')) {
            p.next();
            nanos = p.fraction_nanos()?;
        }
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    if p.peek() == Some(b' ') {
        p.next();
    }
    let offset = match p.next() {
        None => None,
        Some(b'Z' | b'z') => Some(0),
        Some(sign @ (b'+' | b'-')) => {
            let hours = p.digits(2)?;
            if p.peek() == Some(b':') {
                p.next();
            }
            let minutes = if p.done() { 0 } else { p.digits(2)? };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            Some(if sign == b'-' { -secs } else { secs })
        }
        Some(_) => return None,
    };
    p.done().then_some(Iso { date, time: Some(time), offset })
}

/// UK `D[D]/M[M]/YYYY`.
fn parse_uk(s: &str) -> Option<NaiveDate> {
    let mut parts = s.split('/');
    let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
    let short = |x: &str| (1..=2).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !short(d) || !short(m) || y.len() != 4 {
        return None;
    }
    if !y.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// A decimal epoch number `[-]digits[.digits]`, kept exact to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Epoch {
    negative: bool,
    whole: i64,
    /// The first three fraction digits, as thousandths.
    thousandths: i64,
}

impl Epoch {
    /// Read as milliseconds; a fraction of a millisecond is dropped.
    fn millis(self) -> i64 {
        if self.negative { -self.whole } else { self.whole }
    }

    /// Milliseconds when at least 10^11, otherwise seconds (with their fraction).
    fn auto_millis(self) -> Option<i64> {
        if self.whole >= 100_000_000_000 {
            return Some(self.millis());
        }
        let ms = self.whole.checked_mul(1000)?.checked_add(self.thousandths)?;
        Some(if self.negative { -ms } else { ms })
    }
}

fn epoch(s: &str) -> Option<Epoch> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, fraction) = rest.split_once('.').unwrap_or((rest, ""));
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    if rest.ends_with('.') {
        return None;
    }
    let mut thousandths = 0;
    for i in 0..3 {
        let digit = fraction.as_bytes().get(i).map_or(0, |b| b - b'0');
        thousandths = thousandths * 10 + i64::from(digit);
    }
    Some(Epoch { negative, whole: whole.parse().ok()?, thousandths })
}

/// A byte cursor for the ISO parser.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn next(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut out = 0u32;
        for _ in 0..n {
            let b = self.next()?;
            if !b.is_ascii_digit() {
                return None;
            }
            out = out * 10 + u32::from(b - b'0');
        }
        Some(out)
    }

    /// One or more fraction digits as nanoseconds; digits past the ninth are dropped.
    fn fraction_nanos(&mut self) -> Option<u32> {
        let mut nanos = 0u32;
        let mut count = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            self.next();
            if count < 9 {
                nanos = nanos * 10 + u32::from(b - b'0');
            }
            count += 1;
        }
        if count == 0 {
            return None;
        }
        for _ in count..9 {
            nanos *= 10;
        }
        Some(nanos)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn date(v: Value) -> Option<String> {
        match &v {
            Value::String(s) => to_date(View::Str(s)),
            other => to_date(View::Value(other)),
        }
    }

    fn datetime(v: Value) -> Option<String> {
        match &v {
            Value::String(s) => to_datetime(View::Str(s)),
            other => to_datetime(View::Value(other)),
        }
    }

    #[test]
    fn dates_from_every_accepted_form() {
        let d = |v: Value| date(v);
        assert_eq!(d(json!("2024-03-01")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!(" 2024-03-01 ")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!("2024-03-01T10:52:52.6880167Z")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!("2024-03-01T10:52:52.68Z")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!("2024-03-01T00:30:00+01:00")).as_deref(), Some("2024-02-29"));
        assert_eq!(d(json!("2024-03-01T23:30:00-02:00")).as_deref(), Some("2024-03-02"));
        assert_eq!(d(json!("2024-03-01T10:52:52.688+0000")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!("2024-03-01T23:30:00")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!("2024-03-01 10:52")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!("01/03/2024")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!("1/3/2024")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!(1_709_251_200_000_i64)).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!("1709251200000")).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!(86_400_000)).as_deref(), Some("1970-01-02"));
        assert_eq!(d(json!(1_709_251_200_000.0)).as_deref(), Some("2024-03-01"));
        assert_eq!(d(json!(-1)).as_deref(), Some("1969-12-31"));
    }

    #[test]
    fn dates_reject_what_is_not_a_date() {
        for bad in [
            json!("2024-02-30"),
            json!("2024-13-01"),
            json!("31/02/2024"),
            json!("03-01-2024"),
            json!("2024-3-1"),
            json!("yesterday"),
            json!(""),
            json!("2024-03-01T25:00:00Z"),
            json!("2024-03-01T10:00:00+24:00"),
            json!("2024-03-01Tjunk"),
            json!("1e3"),
            json!(1e300),
            json!(i64::MAX),
            json!(true),
            json!([]),
            json!({}),
        ] {
            assert_eq!(date(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn datetimes_normalize_to_utc_milliseconds() {
        let t = |v: Value| datetime(v);
        assert_eq!(t(json!("2024-03-01T10:52:52.6880167Z")).as_deref(), Some("2024-03-01T10:52:52.688Z"));
        assert_eq!(t(json!("2024-03-01T10:52:52.68Z")).as_deref(), Some("2024-03-01T10:52:52.680Z"));
        assert_eq!(t(json!("2024-03-01T10:52:52Z")).as_deref(), Some("2024-03-01T10:52:52.000Z"));
        assert_eq!(t(json!("2024-03-01T10:52:52+01:00")).as_deref(), Some("2024-03-01T09:52:52.000Z"));
        assert_eq!(t(json!("2024-03-01T10:52:52.123-0530")).as_deref(), Some("2024-03-01T16:22:52.123Z"));
        assert_eq!(t(json!("2024-03-01 10:52")).as_deref(), Some("2024-03-01T10:52:00.000Z"));
        assert_eq!(t(json!("2024-03-01")).as_deref(), Some("2024-03-01T00:00:00.000Z"));
        assert_eq!(t(json!("1712345678.000100")).as_deref(), Some("2024-04-05T19:34:38.000Z"));
        assert_eq!(t(json!("1712345678.999999")).as_deref(), Some("2024-04-05T19:34:38.999Z"));
        assert_eq!(t(json!(1_712_345_678)).as_deref(), Some("2024-04-05T19:34:38.000Z"));
        assert_eq!(t(json!(1_712_345_678.123)).as_deref(), Some("2024-04-05T19:34:38.123Z"));
        assert_eq!(t(json!(1_712_345_678_123_i64)).as_deref(), Some("2024-04-05T19:34:38.123Z"));
        assert_eq!(t(json!("1712345678123")).as_deref(), Some("2024-04-05T19:34:38.123Z"));
        assert_eq!(t(json!("-1.5")).as_deref(), Some("1969-12-31T23:59:58.500Z"));
    }

    #[test]
    fn datetimes_reject_what_is_not_a_time() {
        for bad in [
            json!("2024-03-01T10"),
            json!("2024-03-01T10:61:00Z"),
            json!("2024-03-01T10:00:00.Z"),
            json!("2024-03-01T10:00:00Zjunk"),
            json!("12."),
            json!("."),
            json!("-"),
            json!("99999999999999999999"),
            json!("01/03/2024 10:00"),
            json!(1e20),
            json!(null),
        ] {
            assert_eq!(datetime(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn type_checks() {
        assert!(is_date("2024-03-01"));
        assert!(!is_date("2024-03-01T00:00:00Z"));
        assert!(!is_date("2024-02-30"));
        assert!(is_rfc3339("2024-03-01T10:52:52.688Z"));
        assert!(is_rfc3339("2024-03-01T10:52:52+01:00"));
        assert!(!is_rfc3339("2024-03-01"));
        assert!(!is_rfc3339("2024-03-01T10:52"));
    }
}
