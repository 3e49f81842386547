//! The subset of JQL the Jira simulator understands:
//!
//! ```text
//! [project = KEY | project in (KEY)] [AND updated >= "yyyy-MM-dd HH:mm"]…
//!   [ORDER BY updated|key|id [ASC|DESC]]
//! ```
//!
//! Clauses are joined by `AND`; `updated` takes `=`, `>`, `>=`, `<`, `<=`
//! with a minute-precision (or date-only, or epoch-millisecond) literal in
//! UTC. A query with no clause is unbounded and refused, as Jira does.

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::filter::Cmp;
use crate::util::Ts;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Jql {
    /// The project named (key or id), if any.
    pub project: Option<String>,
    /// Conditions on `updated`.
    pub updated: Vec<(Cmp, Ts)>,
    /// Order by `updated` (`true`) or by key/id (`false`).
    pub by_updated: bool,
    /// Descending order.
    pub desc: bool,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JqlError {
    /// Not bounded by any clause.
    Unbounded,
    /// Bad syntax or an unsupported clause (the message to show).
    Invalid(String),
}

fn tokenize(q: &str) -> Result<Vec<String>, JqlError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '(' | ')' | ',') {
            out.push(c.to_string());
            i += 1;
        } else if matches!(c, '<' | '>' | '=' | '!') {
            let two = chars.get(i + 1) == Some(&'=');
            let len = if two { 2 } else { 1 };
            out.push(chars[i..i + len].iter().collect());
            i += len;
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..].iter().position(|x| *x == c).ok_or_else(|| {
                JqlError::Invalid("Error in the JQL Query: The quoted string has not been completed.".into())
            })?;
            out.push(chars[i..i + end + 2].iter().collect());
            i += end + 2;
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '(' | ')' | ',' | '<' | '>' | '=' | '!' | '"' | '\'')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

fn unquote(t: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = t.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    t
}

/// Parses a JQL date literal in UTC.
fn parse_time(literal: &str) -> Option<Ts> {
    let s = unquote(literal).trim();
    for f in ["%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
        }
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().and_then(chrono::DateTime::from_timestamp_millis);
    }
    None
}

fn syntax(detail: &str) -> JqlError {
    JqlError::Invalid(format!("Error in the JQL Query: {detail}"))
}

/// Parses `q`.
pub(crate) fn parse(q: &str) -> Result<Jql, JqlError> {
    let tokens = tokenize(q)?;
    let mut jql = Jql::default();
    let mut i = 0;
    let at = |i: usize| tokens.get(i).map(String::as_str);
    let is = |i: usize, word: &str| at(i).is_some_and(|t| t.eq_ignore_ascii_case(word));
    let mut clauses = 0;
    while i < tokens.len() && !is(i, "ORDER") {
        if clauses > 0 {
            if !is(i, "AND") {
                return Err(syntax(&format!(
                    "Expecting either 'OR' or 'AND' but got '{}'.",
                    at(i).unwrap_or_default()
                )));
            }
            i += 1;
        }
        let field = at(i).ok_or_else(|| syntax("Expecting a field name."))?;
        if field.eq_ignore_ascii_case("project") {
            if is(i + 1, "=") {
                let value = at(i + 2).ok_or_else(|| syntax("Expecting a project."))?;
                jql.project = Some(unquote(value).to_owned());
                i += 3;
            } else if is(i + 1, "in") && is(i + 2, "(") && is(i + 4, ")") {
                let value = at(i + 3).unwrap_or_default();
                jql.project = Some(unquote(value).to_owned());
                i += 5;
            } else {
                return Err(JqlError::Invalid(
                    "The simulator supports 'project = KEY' or 'project in (KEY)' only.".into(),
                ));
            }
        } else if field.eq_ignore_ascii_case("updated") {
            let cmp = at(i + 1)
                .filter(|o| o.starts_with(['<', '>', '=']))
                .and_then(Cmp::parse)
                .ok_or_else(|| syntax("Expecting an operator after 'updated'."))?;
            let literal = at(i + 2).ok_or_else(|| syntax("Expecting a date after the operator."))?;
            let t = parse_time(literal).ok_or_else(|| {
                JqlError::Invalid(format!(
                    "Date value '{}' for field 'updated' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.",
                    unquote(literal)
                ))
            })?;
            jql.updated.push((cmp, t));
            i += 3;
        } else {
            return Err(JqlError::Invalid(format!(
                "The simulator supports the fields 'project' and 'updated' only, not '{field}'."
            )));
        }
        clauses += 1;
    }
    if is(i, "ORDER") {
        if !is(i + 1, "BY") {
            return Err(syntax("Expecting 'BY' after 'ORDER'."));
        }
        let field = at(i + 2).ok_or_else(|| syntax("Expecting a field after 'ORDER BY'."))?;
        jql.by_updated = match field.to_ascii_lowercase().as_str() {
            "updated" => true,
            "key" | "id" => false,
            _ => {
                return Err(JqlError::Invalid(format!(
                    "The simulator can order by 'updated', 'key' or 'id' only, not '{field}'."
                )));
            }
        };
        i += 3;
        if is(i, "DESC") {
            jql.desc = true;
            i += 1;
        } else if is(i, "ASC") {
            i += 1;
        }
    }
    if let Some(extra) = at(i) {
        return Err(syntax(&format!("Unexpected '{extra}'.")));
    }
    if clauses == 0 {
        return Err(JqlError::Unbounded);
    }
    Ok(jql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_incremental_shape() {
        let q = parse(r#"project = SIMA AND updated >= "2024-06-01 10:00" ORDER BY updated ASC"#);
        let expected_time = parse_time("2024-06-01 10:00");
        assert!(expected_time.is_some());
        assert_eq!(
            q,
            Ok(Jql {
                project: Some("SIMA".into()),
                updated: expected_time.map(|t| vec![(Cmp::Ge, t)]).unwrap_or_default(),
                by_updated: true,
                desc: false,
            })
        );
        assert!(parse("project in (SIMB) order by key desc").is_ok_and(|q| q.desc && !q.by_updated));
        assert!(parse("updated > '2024/06/01'").is_ok());
    }

    #[test]
    fn refuses_unbounded_and_malformed_queries() {
        assert_eq!(parse(""), Err(JqlError::Unbounded));
        assert_eq!(parse("ORDER BY updated"), Err(JqlError::Unbounded));
        assert!(matches!(parse("project = A OR project = B"), Err(JqlError::Invalid(_))));
        assert!(matches!(parse("updated >= \"yesterday\""), Err(JqlError::Invalid(_))));
        assert!(matches!(parse("assignee = me"), Err(JqlError::Invalid(_))));
        assert!(matches!(parse("project = \"A"), Err(JqlError::Invalid(_))));
    }
}
