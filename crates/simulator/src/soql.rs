//! The subset of SOQL the Salesforce simulator understands:
//!
//! ```text
//! SELECT f1, f2 FROM Object
//!   [WHERE cond [AND cond]…]          cond: field op literal (=, >, >=, <, <=)
//!   [ORDER BY field [ASC|DESC] [, Id [ASC]]]
//!   [LIMIT n]
//! ```
//!
//! Conditions are allowed on the datetime fields (unquoted ISO literal), on
//! `Id` (quoted), `IsDeleted = true|false` (unquoted; deleted rows exist only for
//! `queryAll`), and `=` on any other field with a quoted string literal
//! (`Email = 'ann@example.com'`; backslash escapes as SOQL has them, `\'` for a
//! quote), compared case-insensitively as Salesforce compares text. Anything
//! else is `MALFORMED_QUERY`; unknown fields are `INVALID_FIELD`, unknown
//! objects `INVALID_TYPE`.

use crate::filter::Cmp;
use crate::util::{self, Ts};

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Soql {
    /// Canonical object name.
    pub object: &'static str,
    /// Canonical names of the selected fields, in order.
    pub fields: Vec<&'static str>,
    /// Conditions on the modification time.
    pub time: Vec<(Cmp, Ts)>,
    /// Conditions on `Id` (the id text).
    pub ids: Vec<(Cmp, String)>,
    /// `field = 'text'` conditions on other fields (the literal unescaped).
    pub equals: Vec<(&'static str, String)>,
    /// `IsDeleted = true|false`.
    pub deleted: Option<bool>,
    /// Order by modification time (`true`) or by `Id` (`false`).
    pub by_time: bool,
    /// Descending order.
    pub desc: bool,
    /// `LIMIT n`.
    pub limit: Option<u64>,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SoqlError {
    /// Syntax the simulator does not accept.
    Malformed(String),
    /// A field the object does not have.
    InvalidField(String),
    /// An object the simulator does not serve.
    InvalidType(String),
}

/// An object's name and fields; the first field is `Id`, datetime fields
/// are listed in `times`.
pub(crate) struct ObjectDef {
    /// Canonical name.
    pub name: &'static str,
    /// Every field, canonical case.
    pub fields: &'static [&'static str],
    /// The datetime fields that can be filtered and ordered on.
    pub times: &'static [&'static str],
}

fn tokenize(q: &str) -> Result<Vec<String>, SoqlError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == ',' {
            tokens.push(",".to_owned());
            i += 1;
        } else if matches!(c, '<' | '>' | '=' | '!') {
            let two = chars.get(i + 1) == Some(&'=');
            tokens.push(chars[i..i + if two { 2 } else { 1 }].iter().collect());
            i += if two { 2 } else { 1 };
        } else if c == '\'' {
            // The literal runs to the first quote not escaped by a backslash.
            let mut end = i + 1;
            while end < chars.len() && chars[end] != '\'' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            if end >= chars.len() {
                return Err(SoqlError::Malformed("unterminated string literal".into()));
            }
            tokens.push(chars[i..=end].iter().collect());
            i = end + 1;
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], ',' | '<' | '>' | '=' | '!' | '\'')
            {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        }
    }
    Ok(tokens)
}

struct Cursor {
    tokens: Vec<String>,
    pos: usize,
}

impl Cursor {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case(word)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, word: &str) -> Result<(), SoqlError> {
        if self.keyword(word) { Ok(()) } else { Err(unexpected(self.peek())) }
    }
}

/// The text of a quoted literal token (`'O\'Brien'` → `O'Brien`); `None` when it is not
/// quoted or has an escape SOQL does not know.
fn unquote(token: &str) -> Option<String> {
    let inner = token.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'b' => '\u{8}',
            'f' => '\u{c}',
            c @ ('\'' | '"' | '\\' | '_' | '%') => c,
            _ => return None,
        });
    }
    Some(out)
}

fn unexpected(token: Option<&str>) -> SoqlError {
    SoqlError::Malformed(match token {
        Some(t) => format!("unexpected token: '{t}'"),
        None => "unexpected end of query".to_owned(),
    })
}

fn field(def: &ObjectDef, name: &str) -> Result<&'static str, SoqlError> {
    def.fields
        .iter()
        .find(|f| f.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| {
            SoqlError::InvalidField(format!(
                "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.",
                def.name
            ))
        })
}

/// Parses `q` against the objects the simulator serves.
pub(crate) fn parse(q: &str, objects: &[ObjectDef]) -> Result<Soql, SoqlError> {
    let mut c = Cursor { tokens: tokenize(q)?, pos: 0 };
    c.expect("SELECT")?;
    let mut names = Vec::new();
    loop {
        match c.next() {
            Some(t) if t != "," && !t.eq_ignore_ascii_case("FROM") => names.push(t),
            other => return Err(unexpected(other.as_deref())),
        }
        if !c.keyword(",") {
            break;
        }
    }
    c.expect("FROM")?;
    let object_name = c.next().ok_or_else(|| unexpected(None))?;
    let def = objects
        .iter()
        .find(|o| o.name.eq_ignore_ascii_case(&object_name))
        .ok_or_else(|| SoqlError::InvalidType(format!("sObject type '{object_name}' is not supported.")))?;
    let fields = names.iter().map(|n| field(def, n)).collect::<Result<Vec<_>, _>>()?;
    let mut query = Soql {
        object: def.name,
        fields,
        time: Vec::new(),
        ids: Vec::new(),
        equals: Vec::new(),
        deleted: None,
        by_time: false,
        desc: false,
        limit: None,
    };
    if c.keyword("WHERE") {
        loop {
            let name = c.next().ok_or_else(|| unexpected(None))?;
            let f = field(def, &name)?;
            let op = c.next();
            let cmp = op
                .as_deref()
                .filter(|o| o.starts_with(['<', '>', '=']))
                .and_then(Cmp::parse)
                .ok_or_else(|| unexpected(op.as_deref()))?;
            let literal = c.next().ok_or_else(|| unexpected(None))?;
            if def.times.contains(&f) {
                let t = (!literal.starts_with('\''))
                    .then(|| util::parse_ts(&literal))
                    .flatten()
                    .filter(|_| literal.contains('T'))
                    .ok_or_else(|| {
                        SoqlError::Malformed(format!(
                            "value of filter criterion for field '{f}' must be of type dateTime and should not be enclosed in quotes"
                        ))
                    })?;
                query.time.push((cmp, t));
            } else if f == "IsDeleted" {
                let flag = match literal.to_ascii_lowercase().as_str() {
                    "true" if cmp == Cmp::Eq => true,
                    "false" if cmp == Cmp::Eq => false,
                    _ => {
                        return Err(SoqlError::Malformed(format!(
                            "the simulator compares IsDeleted with = true or = false only, not {literal}"
                        )));
                    }
                };
                query.deleted = Some(flag);
            } else if f == "Id" {
                let id =
                    unquote(&literal).ok_or_else(|| SoqlError::Malformed(format!("invalid ID field: {literal}")))?;
                query.ids.push((cmp, id));
            } else if cmp == Cmp::Eq {
                let text = unquote(&literal).ok_or_else(|| {
                    SoqlError::Malformed(format!("the simulator compares {f} with a quoted string only, not {literal}"))
                })?;
                query.equals.push((f, text));
            } else {
                return Err(SoqlError::Malformed(format!(
                    "the simulator can only compare {f} with =; ranges are on Id and {}",
                    def.times.join(", ")
                )));
            }
            if !c.keyword("AND") {
                break;
            }
        }
    }
    if c.keyword("ORDER") {
        c.expect("BY")?;
        let mut first = true;
        loop {
            let name = c.next().ok_or_else(|| unexpected(None))?;
            let f = field(def, &name)?;
            let desc = if c.keyword("DESC") {
                true
            } else {
                c.keyword("ASC");
                false
            };
            if first {
                query.by_time = def.times.contains(&f);
                query.desc = desc;
                if !query.by_time && f != "Id" {
                    return Err(SoqlError::Malformed(format!(
                        "the simulator can only order by Id and {}",
                        def.times.join(", ")
                    )));
                }
            } else if f != "Id" {
                return Err(SoqlError::Malformed(
                    "the simulator only accepts Id as a second ORDER BY field".to_owned(),
                ));
            }
            first = false;
            if !c.keyword(",") {
                break;
            }
        }
    }
    if c.keyword("LIMIT") {
        let n = c.next();
        query.limit = Some(n.as_deref().and_then(|n| n.parse().ok()).ok_or_else(|| unexpected(n.as_deref()))?);
    }
    match c.peek() {
        None => Ok(query),
        Some(t) => Err(unexpected(Some(t))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECTS: &[ObjectDef] = &[ObjectDef {
        name: "Account",
        fields: &["Id", "IsDeleted", "Name", "SystemModstamp"],
        times: &["SystemModstamp"],
    }];

    #[test]
    fn is_deleted_compares_with_a_boolean() {
        let q = parse("SELECT Id FROM Account WHERE IsDeleted = TRUE ORDER BY SystemModstamp", OBJECTS);
        assert_eq!(q.map(|q| q.deleted), Ok(Some(true)));
        let q = parse("SELECT Id FROM Account WHERE isdeleted = false", OBJECTS);
        assert_eq!(q.map(|q| q.deleted), Ok(Some(false)));
        assert_eq!(parse("SELECT Id FROM Account", OBJECTS).map(|q| q.deleted), Ok(None));
        for bad in ["IsDeleted = 'true'", "IsDeleted > true", "IsDeleted = 1"] {
            let q = parse(&format!("SELECT Id FROM Account WHERE {bad}"), OBJECTS);
            assert!(matches!(q, Err(SoqlError::Malformed(_))), "{bad}: {q:?}");
        }
    }

    #[test]
    fn parses_the_incremental_shape() {
        let q = parse(
            "select id, NAME, SystemModstamp from account where SystemModstamp >= 2024-01-01T00:00:00Z and Id > '001' order by SystemModstamp asc, Id limit 5",
            OBJECTS,
        );
        let q = q.ok();
        assert_eq!(q.as_ref().map(|q| q.fields.clone()), Some(vec!["Id", "Name", "SystemModstamp"]));
        assert_eq!(q.as_ref().map(|q| (q.by_time, q.desc, q.limit)), Some((true, false, Some(5))));
        assert_eq!(q.as_ref().map(|q| q.ids.len()), Some(1));
        assert_eq!(q.map(|q| q.time.len()), Some(1));
    }

    #[test]
    fn rejects_what_salesforce_rejects() {
        assert!(matches!(parse("SELECT Foo FROM Account", OBJECTS), Err(SoqlError::InvalidField(_))));
        assert!(matches!(parse("SELECT Id FROM Nope", OBJECTS), Err(SoqlError::InvalidType(_))));
        assert!(matches!(parse("SELECT Id FRM Account", OBJECTS), Err(SoqlError::Malformed(_))));
        assert!(matches!(
            parse("SELECT Id FROM Account WHERE SystemModstamp > '2024-01-01T00:00:00Z'", OBJECTS),
            Err(SoqlError::Malformed(_))
        ));
        assert!(matches!(parse("SELECT Id FROM Account LIMIT", OBJECTS), Err(SoqlError::Malformed(_))));
        assert!(matches!(parse("SELECT FROM Account", OBJECTS), Err(SoqlError::Malformed(_))));
        assert!(matches!(parse("SELECT Id FROM Account WHERE Name > 'x'", OBJECTS), Err(SoqlError::Malformed(_))));
        assert!(matches!(parse("SELECT Id FROM Account WHERE Name = x", OBJECTS), Err(SoqlError::Malformed(_))));
        assert!(matches!(parse("SELECT Id FROM Account WHERE Name = 'x", OBJECTS), Err(SoqlError::Malformed(_))));
        assert!(matches!(parse("SELECT Id FROM Account WHERE Name = 'a\\qb'", OBJECTS), Err(SoqlError::Malformed(_))));
    }

    #[test]
    fn text_equality_with_escaped_quotes() {
        let q = parse(r"SELECT Id FROM Account WHERE Name = 'O\'Brien \\ Co' AND Id = 'x'", OBJECTS);
        let q = q.ok();
        assert_eq!(q.as_ref().map(|q| q.equals.clone()), Some(vec![("Name", r"O'Brien \ Co".to_owned())]));
        assert_eq!(q.map(|q| q.ids), Some(vec![(Cmp::Eq, "x".to_owned())]));
    }
}
