//! Resumable positions: where an interrupted pass of a stream continues. A position is
//! saved with every page (in the page's transaction) and read back by the next run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a pass stands after a page: enough to continue it in another process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPosition {
    /// The pass this position belongs to (one full or incremental read of the stream).
    pub pass: String,
    /// When it was saved.
    pub saved_at: DateTime<Utc>,
    /// The walk under way (for a child stream: of the parent in `parent`); `None` when
    /// the next step starts a new walk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<WalkPoint>,
    /// For a child stream: the parent record being read, or the last one read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentPoint>,
    /// Whether the pass reads the whole stream (no incremental cursor): a complete one
    /// may sweep.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
    /// When the pass began (positions saved before this was kept have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

/// The page position of one walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalkPoint {
    /// The next page to request.
    pub next: PagePosition,
    /// The incremental cursor this walk's requests start from (stored form); `None` for
    /// a full read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<String>,
    /// The highest cursor value read so far in this walk (stored form): the cursor
    /// moves there when the pass completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water: Option<String>,
    /// Pages and records this walk has read (page limits, page-number totals, the
    /// search-window cap).
    pub pages: u64,
    pub records: u64,
    #[serde(default)]
    pub window_records: u64,
    /// A state taken during this (full) walk, stored when it completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_state: Option<String>,
}

/// The next page of a walk, as the pagination kind names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum PagePosition {
    Start,
    Cursor(String),
    Url(String),
    Offset(u64),
    Page(u64),
    Done,
}

impl PagePosition {
    /// A short description for notes and logs (URLs without their query).
    pub fn describe(&self) -> String {
        match self {
            Self::Start => "the first page".into(),
            Self::Cursor(_) => "a page token".into(),
            Self::Url(u) => format!("the next URL {}", crate::http::display_path(u)),
            Self::Offset(o) => format!("offset {o}"),
            Self::Page(p) => format!("page {p}"),
            Self::Done => "the end of a walk".into(),
        }
    }
}

/// A child stream's parent position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentPoint {
    /// The parent record's key (its primary key).
    pub key: String,
    /// Whether every page of this parent has been read (the pass continues with the
    /// parent after it).
    pub done: bool,
}

/// What becomes of the stored position with a page.
#[derive(Debug, Clone, PartialEq)]
pub enum PositionUpdate {
    Keep,
    Save(String),
    Clear,
}

impl SavedPosition {
    /// Reads a stored position; `None` when it is not one (a newer or damaged form).
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Whether it is older than `ttl_secs` at `now`.
    pub fn expired(&self, ttl_secs: Option<u64>, now: DateTime<Utc>) -> bool {
        ttl_secs.is_some_and(|ttl| (now - self.saved_at).num_seconds() > i64::try_from(ttl).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_expire() {
        let saved_at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let p = SavedPosition {
            pass: "p1".into(),
            saved_at,
            walk: Some(WalkPoint {
                next: PagePosition::Url("http://h/q/01g-2000".into()),
                started_from: None,
                high_water: Some("2025-01-01T00:00:00.000000Z".into()),
                pages: 3,
                records: 6000,
                window_records: 0,
                pending_state: Some("token-1".into()),
            }),
            parent: Some(ParentPoint { key: "C1".into(), done: false }),
            full: true,
            started_at: Some(saved_at),
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(SavedPosition::parse(&text), Some(p.clone()));
        assert!(SavedPosition::parse("{\"nonsense\":1}").is_none());
        // A position saved before passes said whether they were full: not full.
        let old = SavedPosition::parse(r#"{"pass":"p0","saved_at":"2026-01-01T00:00:00Z"}"#).unwrap();
        assert!(!old.full);
        assert_eq!(old.started_at, None);
        let later = saved_at + chrono::Duration::seconds(901);
        assert!(p.expired(Some(900), later));
        assert!(!p.expired(Some(1000), later));
        assert!(!p.expired(None, later));
    }
}
