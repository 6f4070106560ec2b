//! Validation errors that name the offending field, as the HTTP contract requires, and the
//! checks every parser shares: text PostgreSQL can store, lengths, URLs, emails, ranges.

use serde_json::Value;

/// Input that was rejected. `message` is a whole sentence that starts with the field name,
/// so it can be shown to API clients as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error whose message is `"{field} {what}"`.
    pub fn field(field: &str, what: impl std::fmt::Display) -> Self {
        Self::new(field, format!("{field} {what}"))
    }
}

pub(crate) fn max_len(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    let len = value.chars().count();
    if len > max {
        return Err(ValidationError::field(
            field,
            format!("must be at most {max} characters long (got {len})"),
        ));
    }
    Ok(())
}

/// An http(s) URL: an RFC 3986 URI (ASCII only, `%XX` escapes) whose host is a domain
/// name, exactly what `schema::HTTP_URL` in the OpenAPI document describes, and one the
/// WHATWG URL parser accepts.
pub(crate) fn http_url(field: &str, value: &str) -> Result<(), ValidationError> {
    match url::Url::parse(value) {
        Ok(u)
            if (u.scheme() == "http" || u.scheme() == "https")
                && u.host().is_some()
                && http_uri_shape(value) =>
        {
            Ok(())
        }
        _ => Err(ValidationError::field(
            field,
            "must be an http(s) URL such as https://example.com",
        )),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// `^[Hh][Tt][Tt][Pp][Ss]?://` host `(:port)?` then path, query and fragment of URI
/// characters; the host is dot-separated labels of letters, digits and `-`, the last one
/// starting with a letter (so it is never read as an IPv4 address).
fn http_uri_shape(value: &str) -> bool {
    let Some(rest) = strip_prefix_ignore_case(value, "https://")
        .or_else(|| strip_prefix_ignore_case(value, "http://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let label_ok =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !host.split('.').all(label_ok)
        || !host
            .rsplit('.')
            .next()
            .and_then(|l| l.bytes().next())
            .is_some_and(|b| b.is_ascii_alphabetic())
    {
        return false;
    }
    let (before, fragment) = match tail.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (tail, None),
    };
    uri_chars(before) && fragment.is_none_or(uri_chars)
}

/// RFC 3986 `pchar`s, `/` and `?`, with `%` only as a `%XX` escape.
fn uri_chars(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |at: usize| b.get(at).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

pub(crate) fn email(field: &str, value: &str) -> Result<(), ValidationError> {
    let parsed: Result<email_address::EmailAddress, _> = value.parse();
    // The address must also have a dot in its domain: `user@localhost` is valid by the RFC
    // but is never a deliverable lead.
    match parsed {
        Ok(addr) if addr.domain().contains('.') => Ok(()),
        _ => Err(ValidationError::field(
            field,
            "must be a valid email address",
        )),
    }
}

pub(crate) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: Option<T>,
    min: T,
    max: T,
) -> Result<(), ValidationError> {
    match value {
        Some(v) if !(min <= v && v <= max) => Err(ValidationError::field(
            field,
            format!("must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

/// Most characters of a text column that an index of the original schema holds (`city`,
/// `industry`, an enrichment log's `service` and `status`). A B-tree entry holds at most
/// 2,704 bytes; 600 characters are at most 2,400 bytes of UTF-8, so an entry always fits
/// with the row's timestamp and id beside it. Longer text would make the insert fail.
pub const INDEXED_TEXT_MAX: usize = 600;

/// PostgreSQL text cannot hold U+0000: the statement would fail. Refused here, by name.
pub(crate) fn storable(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(ValidationError::field(
            field,
            "must not contain the NUL character (\\u0000)",
        ));
    }
    Ok(())
}

/// `value` is storable and short enough for the index on its column.
pub(crate) fn indexed(field: &str, value: &str) -> Result<(), ValidationError> {
    storable(field, value)?;
    max_len(field, value, INDEXED_TEXT_MAX)
}

/// Parses a JSON body. When it is malformed only because a string holds what no text can
/// (an unpaired UTF-16 surrogate escape such as `\ud800`, or bytes that are not UTF-8),
/// the error names the field holding it rather than the whole body.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, ValidationError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        let encoding = ["surrogate", "hex escape", "unicode code point"]
            .iter()
            .any(|m| message.contains(m));
        match encoding.then(|| unicode_fault(bytes)).flatten() {
            Some(field) => ValidationError::field(
                &field,
                "must be Unicode text: it holds an unpaired UTF-16 surrogate or bytes that \
                 are not UTF-8",
            ),
            None => ValidationError::new("body", format!("body is not valid JSON: {message}")),
        }
    })
}

/// The path (`name`, `contacts[0].email`) of the first string of `bytes` that holds an
/// unpaired surrogate escape or invalid UTF-8, or `None` when the body is malformed for
/// another reason too. Each such sequence is replaced by a private-use character the body
/// does not contain; the repaired body is parsed and searched for it. serde_json offers no
/// lenient mode that could do this, so it is done here; it runs only on rejected bodies.
fn unicode_fault(bytes: &[u8]) -> Option<String> {
    let lower = bytes.to_ascii_lowercase();
    let marker = ('\u{E000}'..='\u{E0FF}').find(|c| {
        let mut buf = [0; 4];
        let raw = c.encode_utf8(&mut buf).as_bytes();
        let escape = format!("\\u{:04x}", u32::from(*c));
        !contains(bytes, raw) && !contains(&lower, escape.as_bytes())
    })?;
    let mut repaired = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        mark_lone_surrogates(chunk.valid(), marker, &mut repaired);
        if !chunk.invalid().is_empty() {
            repaired.push(marker);
        }
    }
    let value: Value = serde_json::from_str(&repaired).ok()?;
    path_of(&value, marker, "")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The code unit of the `\uXXXX` escape at the start of `s`.
fn escape_at(s: &str) -> Option<u32> {
    let hex = s.strip_prefix("\\u")?.get(..4)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Copies `s` to `out` with every `\uXXXX` escape of an unpaired surrogate replaced by
/// `marker`. Escapes of other characters, and pairs, are copied as they are.
fn mark_lone_surrogates(s: &str, marker: char, out: &mut String) {
    let mut rest = s;
    while let Some(at) = rest.find('\\') {
        let (before, tail) = rest.split_at(at);
        out.push_str(before);
        let taken = match escape_at(tail) {
            Some(0xD800..=0xDBFF) => {
                let low = tail.get(6..).and_then(escape_at);
                if matches!(low, Some(0xDC00..=0xDFFF)) {
                    12
                } else {
                    out.push(marker);
                    rest = tail.get(6..).unwrap_or("");
                    continue;
                }
            }
            Some(0xDC00..=0xDFFF) => {
                out.push(marker);
                rest = tail.get(6..).unwrap_or("");
                continue;
            }
            Some(_) => 6,
            // `\\`, `\"` and the other short escapes: the backslash and the next character.
            None => tail.char_indices().nth(2).map_or(tail.len(), |(i, _)| i),
        };
        let (escape, after) = tail.split_at(taken);
        out.push_str(escape);
        rest = after;
    }
    out.push_str(rest);
}

/// The path of the first string or key under `value` that holds `marker`. A key names its
/// object (the body, at the top).
fn path_of(value: &Value, marker: char, path: &str) -> Option<String> {
    let here = || {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(s) => s.contains(marker).then(here),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| path_of(item, marker, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains(marker) {
                return Some(here());
            }
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            path_of(item, marker, &inner)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &[u8]) -> String {
        parse_json(body).expect_err("rejected").field
    }

    #[test]
    fn serde_json_refuses_unpaired_surrogates_and_the_error_names_the_field() {
        assert_eq!(field(br#"{"name": "a\ud800b"}"#), "name");
        assert_eq!(field(br#"{"name": "ok", "city": "\udc00"}"#), "city");
        assert_eq!(
            field(br#"{"contacts": [{"email": "\uD83D"}]}"#),
            "contacts[0].email"
        );
        assert_eq!(
            field(br#"{"logs": [{}, {"request_data": {"q": ["\ud800\ud800"]}}]}"#),
            "logs[1].request_data.q[0]"
        );
        assert_eq!(field(br#"{"a\ud800": 1}"#), "body");
        let e = parse_json(br#"{"name": "\ud800"}"#).expect_err("rejected");
        assert!(
            e.message.starts_with("name must be Unicode text"),
            "{}",
            e.message
        );
        // A pair is one character, and an escaped backslash is no escape.
        assert_eq!(
            parse_json(br#"{"name": "\ud83d\ude00 \\ud800"}"#).expect("valid")["name"],
            "\u{1F600} \\ud800"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_by_field() {
        assert_eq!(field(b"{\"phone\": \"1\xff2\"}"), "phone");
        assert_eq!(field(b"{\"zip\": \"\xed\xa0\x80\"}"), "zip");
        // Malformed for another reason as well: the body is at fault.
        assert_eq!(field(b"{\"phone\": \"\xff\""), "body");
        assert_eq!(field(br#"{"name": "\ud800"#), "body");
    }

    #[test]
    fn the_marker_is_never_a_character_of_the_body() {
        let body = format!(r#"{{"city": "{}", "name": "\ud800"}}"#, '\u{E000}');
        assert_eq!(field(body.as_bytes()), "name");
        let body = r#"{"city": "\uE000\ue001", "name": "\ud800"}"#;
        assert_eq!(field(body.as_bytes()), "name");
    }

    #[test]
    fn websites_are_http_uris_with_a_domain_host() {
        for good in [
            "http://example.com",
            "HTTPS://a-b.example.co:8080/p/a%20th?q=1&r=(2)#frag/x?",
            "https://localhost",
        ] {
            assert!(http_url("website", good).is_ok(), "{good}");
        }
        for bad in [
            "http://",
            "ftp://example.com",
            "http://127.0.0.1",
            "http://example.com:65536",
            "http://exa mple.com",
            "http://example.com/a b",
            "http://example.com/é",
            "http://example.com/%zz",
            "http://example.com/a#b#c",
            "http://a..b",
            "http://example.com/\u{0}",
        ] {
            assert!(http_url("website", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nul_is_refused_by_name() {
        let e = storable("phone", "1\u{0}2").expect_err("rejected");
        assert_eq!(e.field, "phone");
        assert!(
            e.message.starts_with("phone must not contain"),
            "{}",
            e.message
        );
        assert!(storable("phone", "12").is_ok());
    }
}
