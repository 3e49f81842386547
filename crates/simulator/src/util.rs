//! Small helpers shared by every provider module: query and form parsing,
//! timestamp parsing and formatting, signed cursors, Basic-auth decoding and
//! response builders. Nothing here knows about a particular provider.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A timestamp inside the simulator.
pub(crate) type Ts = DateTime<Utc>;

/// Decoded `key=value` pairs of a query string or form body, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `a=1&b=x+y&c=%2F`; malformed escapes are kept literally.
    pub(crate) fn parse(raw: &str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| match part.split_once('=') {
                Some((k, v)) => (decode_component(k), decode_component(v)),
                None => (decode_component(part), String::new()),
            })
            .collect();
        Self(pairs)
    }

    /// Parses the query string of a request (absent means empty).
    pub(crate) fn from_query(raw: Option<&str>) -> Self {
        Self::parse(raw.unwrap_or_default())
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (for repeated parameters).
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// Every pair, in order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Adds a pair; used to merge a JSON body into query parameters.
    pub(crate) fn push(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Percent-decodes one query component, turning `+` into a space.
fn decode_component(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses a non-negative integer parameter; `None` when absent, `Err` when
/// present but not a number.
pub(crate) fn parse_u64(value: Option<&str>) -> Result<Option<u64>, ()> {
    match value {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| ()),
    }
}

/// Parses a timestamp as APIs send them: RFC 3339 (`Z` or offset, any
/// fraction), `+0000` offsets, naive UTC datetimes, plain dates, or epoch
/// milliseconds.
pub(crate) fn parse_ts(raw: &str) -> Option<Ts> {
    let s = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(Utc.from_utc_datetime(&t));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().and_then(DateTime::<Utc>::from_timestamp_millis);
    }
    None
}

/// `2024-06-01T10:00:00.123Z`.
pub(crate) fn iso_ms(t: Ts) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `2024-06-01T10:00:00.123+0000` (Salesforce and Jira style).
pub(crate) fn iso_ms_offset(t: Ts) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// `2024-06-01T10:00:52.6880167Z` with trailing zeros of the fraction
/// dropped (`…52.68Z`, `…52Z`), up to seven digits (.NET style).
pub(crate) fn iso_trimmed(t: Ts) -> String {
    let ticks = t.timestamp_subsec_nanos() / 100;
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if ticks == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{ticks:07}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// `YYYY-MM-DD`.
pub(crate) fn date(t: Ts) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Truncates a timestamp to a multiple of `resolution_ns` nanoseconds.
pub(crate) fn truncate(t: Ts, resolution_ns: i64) -> Ts {
    let nanos = t.timestamp_subsec_nanos() as i64;
    let keep = nanos - nanos % resolution_ns.max(1);
    let secs = t.timestamp();
    DateTime::<Utc>::from_timestamp(secs, keep as u32).unwrap_or(t)
}

/// SHA-256 of the parts joined by NUL, as bytes.
pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p);
    }
    h.finalize().into()
}

/// A short hexadecimal fingerprint of some text.
pub(crate) fn fingerprint(text: &str) -> String {
    hex::encode(&digest(&[text.as_bytes()])[..6])
}

/// Encodes `payload` into an opaque cursor that only this simulator (holder
/// of `secret`) can have issued.
pub(crate) fn sign_cursor(secret: &[u8], payload: &str) -> String {
    let tag = digest(&[secret, payload.as_bytes()]);
    format!("{}{}", hex::encode(&tag[..8]), hex::encode(payload))
}

/// Returns the payload of a cursor issued by [`sign_cursor`], or `None` for
/// anything the simulator did not issue.
pub(crate) fn verify_cursor(secret: &[u8], cursor: &str) -> Option<String> {
    if cursor.len() < 16 || !cursor.is_char_boundary(16) {
        return None;
    }
    let (tag, body) = cursor.split_at(16);
    let payload = String::from_utf8(hex::decode(body).ok()?).ok()?;
    let expected = digest(&[secret, payload.as_bytes()]);
    (hex::encode(&expected[..8]) == tag).then_some(payload)
}

/// Reads `key=value` out of a `;`-separated cursor payload.
pub(crate) fn payload_field<'a>(payload: &'a str, key: &str) -> Option<&'a str> {
    payload.split(';').find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// Decodes standard base64 (with or without padding).
pub(crate) fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in input.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Encodes bytes as standard padded base64.
pub(crate) fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bearer token of an `Authorization` header (`Bearer` or `OAuth`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth")).then(|| token.trim().to_owned())
}

/// The `user:password` pair of a Basic `Authorization` header.
pub(crate) fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// A header value as text.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A value, or the error response to send instead (boxed: responses are
/// large).
pub(crate) type Early<T> = Result<T, Box<Response>>;

/// A JSON response with the given status.
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    raw(status, "application/json;charset=utf-8", bytes)
}

/// A response with a content type and raw bytes.
pub(crate) fn raw(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An empty response with the given status.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Adds (or replaces) a header on a response; invalid values are skipped.
pub(crate) fn with_header(mut response: Response, name: &'static str, value: &str) -> Response {
    set_header(&mut response, name, value);
    response
}

/// Sets a header on a response in place; invalid values are skipped.
pub(crate) fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding_handles_plus_and_escapes() {
        let p = Params::parse("q=SELECT+Id%2C+Name&x=%ZZ&flag&a=1&a=2");
        assert_eq!(p.get("q"), Some("SELECT Id, Name"));
        assert_eq!(p.get("x"), Some("%ZZ"));
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.all("a"), vec!["1", "2"]);
        assert_eq!(Params::parse("t=%4").get("t"), Some("%4"));
    }

    #[test]
    fn timestamps_parse_in_every_accepted_form() {
        let z = parse_ts("2024-06-01T00:00:00Z");
        assert!(z.is_some());
        assert_eq!(parse_ts("2024-06-01T00:00:00+00:00"), z);
        assert_eq!(parse_ts("2024-06-01T00:00:00.000+0000"), z);
        assert_eq!(parse_ts("2024-06-01"), z);
        assert_eq!(parse_ts("1717200000000"), z);
        assert_eq!(parse_ts("nonsense"), None);
    }

    #[test]
    fn trimmed_iso_keeps_up_to_seven_digits() {
        let t = parse_ts("2024-06-01T10:00:52.6880167Z");
        assert_eq!(t.map(iso_trimmed).as_deref(), Some("2024-06-01T10:00:52.6880167Z"));
        let t = parse_ts("2024-06-01T10:00:52.68Z");
        assert_eq!(t.map(iso_trimmed).as_deref(), Some("2024-06-01T10:00:52.68Z"));
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let c = sign_cursor(b"k", "o=10;q=abc");
        assert_eq!(verify_cursor(b"k", &c).as_deref(), Some("o=10;q=abc"));
        assert_eq!(verify_cursor(b"other", &c), None);
        assert_eq!(verify_cursor(b"k", "garbage"), None);
        assert_eq!(payload_field("o=10;q=abc", "q"), Some("abc"));
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "user@example.com:tok3n"] {
            let enc = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&enc).as_deref(), Some(s.as_bytes()));
        }
    }
}
