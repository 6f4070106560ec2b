//! The stored value's format, as pure functions: the tag header (`root.own\n`), the
//! CRC-32 that seals every value, an index's members section, and the scripts' flat
//! answers.

use crate::Result;
use std::sync::Arc;

use bytes::Bytes;
use deadpool_redis::redis::Value;

use super::scripts::State;
use crate::{CacheError, Lookup, Ticket};

/// Whether `tag` is the tag of the generations `root` and `own` (`root.own\n`, as the
/// scripts write it).
pub(super) fn is_tag(tag: &str, root: &str, own: &str) -> bool {
    tag.strip_prefix(root)
        .and_then(|t| t.strip_prefix('.'))
        .and_then(|t| t.strip_prefix(own))
        == Some("\n")
}

/// Whether `value` starts with the tag of the generations `root` and `own`
/// (`root.own\n`), without making the tag.
pub(super) fn starts_with_tag(value: &[u8], root: &str, own: &str) -> bool {
    let (r, o) = (root.len(), own.len());
    value.len() > r + o + 1
        && value.get(..r) == Some(root.as_bytes())
        && value.get(r) == Some(&b'.')
        && value.get(r + 1..r + 1 + o) == Some(own.as_bytes())
        && value.get(r + 1 + o) == Some(&b'\n')
}

/// Whether `value` starts with a tag header (`digits.digits\n`), as the scripts'
/// `'^%d+%.%d+\n'` tells an entry of this cache's format stored under another tag.
pub(super) fn has_tag_header(value: &[u8]) -> bool {
    let Some(end) = value.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let header = value.get(..end).unwrap_or_default();
    let mut parts = header.splitn(2, |&b| b == b'.');
    let digits =
        |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    digits(parts.next()) && digits(parts.next())
}

/// A scope and its parent: `"list|city=X"` is the child `city=X` of the root `list`;
/// invalidating `list` invalidates every child. A scope without `|` is its own root.
pub(crate) fn split_scope(scope: &str) -> (&str, Option<&str>) {
    match scope.split_once('|') {
        Some((root, child)) => (root, Some(child)),
        None => (scope, None),
    }
}

/// Hex digits of the CRC-32 that precedes every stored value.
pub(super) const CRC_LEN: usize = 8;

/// The codec tag of a value stored compressed: `L`, then the CRC-32 of what follows (8
/// hex digits), then the value's size (4 bytes, little-endian) and its LZ4 block. A
/// plain value starts with its checksum's first hex digit, never this.
pub(super) const LZ4_TAG: u8 = b'L';

/// The value of a stored `crc ++ value` (or of a compressed one, see [`LZ4_TAG`]), if
/// the checksum matches and, compressed, it is at most `max_bytes` once decompressed.
pub(super) fn unseal(sealed: Bytes, max_bytes: usize) -> Option<Bytes> {
    if sealed.first() != Some(&LZ4_TAG) {
        return checked(sealed);
    }
    let packed = checked(sealed.slice(1..))?;
    let size = u32::from_le_bytes(packed.get(..4)?.try_into().ok()?);
    let size = usize::try_from(size).ok().filter(|&s| s <= max_bytes)?;
    lz4_flex::block::decompress(packed.get(4..)?, size)
        .ok()
        .map(Bytes::from)
}

/// What follows a matching checksum.
fn checked(sealed: Bytes) -> Option<Bytes> {
    let crc = sealed.get(..CRC_LEN)?;
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    let value = sealed.slice(CRC_LEN..);
    (crc32fast::hash(&value) == crc).then_some(value)
}

/// The start of an index's members section.
pub(super) const INDEX_MARK: &str = "@index ";

/// The members section of an index's payload: the member count, then three key names
/// per member (value, root generation, own generation), a line each.
pub(super) fn index_parts(payload: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    let rest = payload.strip_prefix(INDEX_MARK.as_bytes())?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let n: usize = std::str::from_utf8(rest.get(..nl)?).ok()?.parse().ok()?;
    let mut at = INDEX_MARK.len() + nl + 1;
    let mut values = Vec::with_capacity(n);
    for i in 0..n * 3 {
        let line = payload.get(at..)?;
        let end = line.iter().position(|&b| b == b'\n')?;
        if i % 3 == 0 {
            values.push(line.get(..end)?);
        }
        at += end + 1;
    }
    Some((values, at))
}

/// The caller's value in an index's payload (after its members section).
pub(super) fn index_value(payload: &Bytes) -> Option<Bytes> {
    let (_, at) = index_parts(payload)?;
    Some(payload.slice(at..))
}

/// The value keys of an index's members, in order.
pub(super) fn index_members(payload: &[u8]) -> Option<Vec<String>> {
    let (names, _) = index_parts(payload)?;
    Some(
        names
            .into_iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
    )
}

/// A member's answer as a plain lookup (no copy was known, so none is current).
pub(crate) fn raw_lookup(raw: Raw) -> Lookup {
    match raw {
        Raw::Hit { bytes, .. } => Lookup::Hit(bytes),
        Raw::Miss(t) => Lookup::Miss(t),
        Raw::Current => Lookup::Miss(Ticket::none()),
    }
}

/// A script's flat `state, bytes, state, bytes, ...` answer, in pairs.
pub(super) fn pairs(values: Vec<Value>) -> Result<Vec<(State, Vec<u8>)>> {
    let bad = || CacheError::Protocol("an answer that is not state and bytes".into());
    let mut out = Vec::with_capacity(values.len() / 2);
    let mut values = values.into_iter();
    while let Some(state) = values.next() {
        let Value::Int(state) = state else {
            return Err(bad());
        };
        let bytes = match values.next().ok_or_else(bad)? {
            Value::BulkString(b) => b,
            Value::SimpleString(s) => s.into_bytes(),
            Value::Nil => Vec::new(),
            _ => return Err(bad()),
        };
        out.push((State::of(state), bytes));
    }
    Ok(out)
}

/// A stored value split into its tag header (`root.own\n`, empty if it has none) and
/// the sealed rest.
pub(super) fn tagged(bytes: &Bytes) -> (Arc<str>, Bytes) {
    let header = bytes.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
    let tag = String::from_utf8_lossy(bytes.get(..header).unwrap_or_default()).into();
    (tag, bytes.slice(header..))
}

/// `value`, sealed with its CRC-32 as [`unseal`] checks it: the checksum covers `head`
/// then `value`, and is followed by both. Without a head (the scripts read an index's),
/// a value longer than `compress_above` is stored compressed when that saves at least
/// an eighth of it.
pub(super) fn seal(head: &[u8], value: &[u8], compress_above: Option<usize>) -> Vec<u8> {
    if head.is_empty() && compress_above.is_some_and(|above| value.len() > above) {
        let packed = lz4_flex::block::compress_prepend_size(value);
        if packed.len() * 8 <= value.len() * 7 {
            let mut sealed = Vec::with_capacity(1 + CRC_LEN + packed.len());
            sealed.push(LZ4_TAG);
            sealed.extend_from_slice(format!("{:08x}", crc32fast::hash(&packed)).as_bytes());
            sealed.extend_from_slice(&packed);
            return sealed;
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    crc.update(value);
    let mut sealed = Vec::with_capacity(CRC_LEN + head.len() + value.len());
    sealed.extend_from_slice(format!("{:08x}", crc.finalize()).as_bytes());
    sealed.extend_from_slice(head);
    sealed.extend_from_slice(value);
    sealed
}

/// What a lookup found, with the generation tags a near tier needs.
#[derive(Debug)]
pub(crate) enum Raw {
    /// The caller's copy (of the tag it gave) is current.
    Current,
    Hit {
        tag: Arc<str>,
        bytes: Bytes,
    },
    Miss(Ticket),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_unseals_whole_and_a_damaged_one_not_at_all() {
        let sealed = Bytes::from(seal(b"", b"{\"id\":1}", Some(512)));
        assert_eq!(
            unseal(sealed.clone(), 1024).as_deref(),
            Some(&b"{\"id\":1}"[..])
        );
        let mut damaged = sealed.to_vec();
        if let Some(last) = damaged.last_mut() {
            *last ^= 1;
        }
        assert_eq!(unseal(Bytes::from(damaged), 1024), None);
        assert_eq!(unseal(Bytes::from_static(b"zz"), 1024), None);
        assert_eq!(unseal(Bytes::from_static(b"nothex!!value"), 1024), None);
    }

    #[test]
    fn a_long_value_is_stored_compressed_when_that_pays_and_unseals_whole() {
        let value: Vec<u8> = b"{\"name\":\"Freehold Dental\",\"city\":\"Freehold\"},".repeat(100);
        let sealed = seal(b"", &value, Some(512));
        assert_eq!(sealed.first(), Some(&LZ4_TAG));
        assert!(sealed.len() < value.len() / 4, "{} bytes", sealed.len());
        let sealed = Bytes::from(sealed);
        assert_eq!(
            unseal(sealed.clone(), value.len()).as_deref(),
            Some(&value[..])
        );
        // Larger than the caller allows once decompressed: refused, not allocated.
        assert_eq!(unseal(sealed.clone(), value.len() - 1), None);
        let mut damaged = sealed.to_vec();
        if let Some(b) = damaged.get_mut(20) {
            *b ^= 1;
        }
        assert_eq!(unseal(Bytes::from(damaged), value.len()), None);
        // Not compressed: below the threshold, with it off, with a head, or when
        // compressing saves less than an eighth.
        assert_ne!(seal(b"", &value[..400], Some(512)).first(), Some(&LZ4_TAG));
        assert_ne!(seal(b"", &value, None).first(), Some(&LZ4_TAG));
        assert_ne!(
            seal(b"@index 0\n", &value, Some(512)).first(),
            Some(&LZ4_TAG)
        );
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let plain = Bytes::from(seal(b"", &noise, Some(512)));
        assert_ne!(plain.first(), Some(&LZ4_TAG));
        assert_eq!(unseal(plain, noise.len()).as_deref(), Some(&noise[..]));
    }

    #[test]
    fn a_tag_header_is_two_numbers_and_a_newline() {
        assert!(is_tag("17.42\n", "17", "42"));
        assert!(!is_tag("17.42\n", "17", "4"));
        assert!(!is_tag("17.42", "17", "42"));
        assert!(starts_with_tag(b"17.42\nvalue", "17", "42"));
        assert!(!starts_with_tag(b"17.42\nvalue", "17", "4"));
        assert!(!starts_with_tag(b"17.420\nvalue", "17", "42"));
        assert!(starts_with_tag(b"17.42\n", "17", "42"));
        assert!(!starts_with_tag(b"17", "17", "42"));
        assert!(has_tag_header(b"1.2\nvalue"));
        assert!(!has_tag_header(b"1.\nvalue"));
        assert!(!has_tag_header(b"a.2\nvalue"));
        assert!(!has_tag_header(b"12value"));
        let (tag, rest) = tagged(&Bytes::from_static(b"1.2\nsealed"));
        assert_eq!((&*tag, &rest[..]), ("1.2\n", &b"sealed"[..]));
        let (tag, rest) = tagged(&Bytes::from_static(b"no header"));
        assert_eq!((&*tag, &rest[..]), ("", &b"no header"[..]));
    }

    #[test]
    fn an_index_payload_names_its_members_then_holds_the_value() {
        let payload = Bytes::from_static(b"@index 2\na\nga\noa\nb\ngb\nob\n[1,2]");
        let (values, at) = index_parts(&payload).expect("a members section");
        assert_eq!(values, vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(payload.get(at..), Some(&b"[1,2]"[..]));
        assert_eq!(index_value(&payload).as_deref(), Some(&b"[1,2]"[..]));
        assert_eq!(
            index_members(&payload),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        // Fewer names than it counts, or no count: not an index.
        assert_eq!(index_parts(b"@index 2\na\nga\noa\n"), None);
        assert_eq!(index_parts(b"@index x\n"), None);
        assert_eq!(index_parts(b"[1,2]"), None);
    }

    #[test]
    fn a_flat_answer_pairs_states_with_bytes() {
        let answer = vec![
            Value::Int(1),
            Value::BulkString(b"v".to_vec()),
            Value::Int(3),
            Value::Nil,
            Value::Int(7),
            Value::SimpleString("t".into()),
        ];
        let got = pairs(answer).expect("pairs");
        assert_eq!(
            got,
            vec![
                (State::Hit, b"v".to_vec()),
                (State::Current, Vec::new()),
                (State::Foreign, b"t".to_vec()),
            ]
        );
        assert!(pairs(vec![Value::Int(1)]).is_err());
        assert!(pairs(vec![Value::Nil, Value::Nil]).is_err());
    }
}
