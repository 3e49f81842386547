//! Incremental cursor values: read from records, compared, stored and rendered into
//! requests in the provider's own format.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use crate::config::CursorFormat;

/// A position in a stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CursorValue {
    Time(DateTime<Utc>),
    Text(String),
}

impl CursorValue {
    /// Parses a record's cursor field in `format`; `None` when absent or unreadable.
    pub fn from_record(value: &Value, format: CursorFormat) -> Option<Self> {
        if format == CursorFormat::Raw {
            return match value {
                Value::String(s) if !s.is_empty() => Some(Self::Text(s.clone())),
                Value::Number(n) => Some(Self::Text(n.to_string())),
                _ => None,
            };
        }
        let time = match value {
            Value::String(s) => parse_time(s, format),
            Value::Number(n) => n.as_f64().and_then(|x| epoch(x, format)),
            _ => None,
        }?;
        Some(Self::Time(time))
    }

    /// The stored form: RFC 3339 with microseconds for times (sorts as text), raw otherwise.
    pub fn stored(&self) -> String {
        match self {
            Self::Time(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            Self::Text(s) => s.clone(),
        }
    }

    /// Reads a stored cursor back.
    pub fn from_stored(s: &str, format: CursorFormat) -> Option<Self> {
        if format == CursorFormat::Raw {
            return (!s.is_empty()).then(|| Self::Text(s.to_owned()));
        }
        DateTime::parse_from_rfc3339(s).ok().map(|t| Self::Time(t.with_timezone(&Utc)))
    }

    /// The value minus a lookback window (times only).
    pub fn minus_secs(&self, secs: u64) -> Self {
        match self {
            Self::Time(t) => Self::Time(*t - chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))),
            Self::Text(s) => Self::Text(s.clone()),
        }
    }

    /// The form a request expects.
    pub fn render(&self, format: CursorFormat) -> String {
        let Self::Time(t) = self else {
            return self.stored();
        };
        match format {
            CursorFormat::Rfc3339 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            CursorFormat::Rfc3339Ms => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            CursorFormat::Rfc3339Us => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            CursorFormat::EpochMs => t.timestamp_millis().to_string(),
            CursorFormat::EpochS => t.timestamp().to_string(),
            CursorFormat::SlackTs => {
                format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros())
            }
            CursorFormat::JqlMinute => t.format("%Y-%m-%d %H:%M").to_string(),
            CursorFormat::Date => t.format("%Y-%m-%d").to_string(),
            CursorFormat::Raw => self.stored(),
        }
    }
}

fn epoch(x: f64, format: CursorFormat) -> Option<DateTime<Utc>> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let millis = match format {
        CursorFormat::EpochMs => x,
        CursorFormat::EpochS | CursorFormat::SlackTs => x * 1000.0,
        // Other formats meeting a number: large ones are milliseconds.
        _ if x >= 1e11 => x,
        _ => x * 1000.0,
    };
    let micros = (millis * 1000.0).round();
    if micros > 253_402_300_799_000_000.0 {
        return None;
    }
    Utc.timestamp_micros(micros as i64).single()
}

fn parse_time(s: &str, format: CursorFormat) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // Jira: `2024-03-01T10:52:52.688+0000`.
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    let x: f64 = s.parse().ok()?;
    epoch(x, format)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_every_provider_shape() {
        let t = |v: Value, f| CursorValue::from_record(&v, f).map(|c| c.stored());
        assert_eq!(
            t(json!("2024-06-01T10:52:52.6880167Z"), CursorFormat::Rfc3339).as_deref(),
            Some("2024-06-01T10:52:52.688016Z")
        );
        assert_eq!(
            t(json!("2024-06-01T10:52:52.68Z"), CursorFormat::Rfc3339).as_deref(),
            Some("2024-06-01T10:52:52.680000Z")
        );
        assert_eq!(
            t(json!("2024-06-01T11:00:00.000+0100"), CursorFormat::Rfc3339).as_deref(),
            Some("2024-06-01T10:00:00.000000Z")
        );
        assert_eq!(
            t(json!("1712345678.000100"), CursorFormat::SlackTs).as_deref(),
            Some("2024-04-05T19:34:38.000100Z")
        );
        assert_eq!(t(json!(1717239172000i64), CursorFormat::EpochMs).as_deref(), Some("2024-06-01T10:52:52.000000Z"));
        assert_eq!(t(json!("abc"), CursorFormat::Raw).as_deref(), Some("abc"));
        assert_eq!(t(json!(null), CursorFormat::Rfc3339), None);
        assert_eq!(t(json!("not a time"), CursorFormat::Rfc3339), None);
    }

    #[test]
    fn renders_for_requests_and_round_trips_storage() {
        let c = CursorValue::from_record(&json!("2024-06-01T10:52:52.123456Z"), CursorFormat::Rfc3339).unwrap();
        assert_eq!(c.render(CursorFormat::Rfc3339), "2024-06-01T10:52:52Z");
        assert_eq!(c.render(CursorFormat::Rfc3339Ms), "2024-06-01T10:52:52.123Z");
        assert_eq!(c.render(CursorFormat::Rfc3339Us), "2024-06-01T10:52:52.123456Z");
        assert_eq!(c.render(CursorFormat::EpochMs), "1717239172123");
        assert_eq!(c.render(CursorFormat::SlackTs), "1717239172.123456");
        assert_eq!(c.render(CursorFormat::JqlMinute), "2024-06-01 10:52");
        assert_eq!(c.minus_secs(60).render(CursorFormat::JqlMinute), "2024-06-01 10:51");
        assert_eq!(CursorValue::from_stored(&c.stored(), CursorFormat::Rfc3339), Some(c.clone()));
        assert!(CursorValue::from_stored("garbage", CursorFormat::Rfc3339).is_none());
        let later = CursorValue::from_record(&json!("2024-06-01T10:52:53Z"), CursorFormat::Rfc3339).unwrap();
        assert!(later > c);
    }
}
