//! Keys: `family` (a metrics label and TTL group), `scope` (what is invalidated together;
//! `root|child` names a child scope: invalidating the root invalidates every child, and
//! invalidating a child only its own entries)
//! and a name built canonically from `(name, value)` parts.
//!
//! The name is injective and order-free: the same parts in any order give the same key,
//! and different parts never share one. Values are percent-encoded (everything but
//! `[A-Za-z0-9_.-]`), so `&`, `=`, `:`, `*`, spaces, unicode and case differences all
//! stay distinct and no value can forge a separator. A name longer than
//! [`MAX_PLAIN_LEN`] is replaced by its SHA-256, so keys stay short whatever the input.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Longest canonical name stored as it is; longer ones are hashed.
pub const MAX_PLAIN_LEN: usize = 120;

/// A cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    family: &'static str,
    scope: String,
    name: String,
}

pub(crate) fn encode_into(out: &mut String, value: &str) {
    let hex = |n: u8| char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 });
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    // Runs of safe bytes are copied whole. A run ends before an unsafe byte and starts
    // after one, and every byte of a multi-byte character is unsafe, so each run lies on
    // character boundaries.
    let mut run = 0;
    for (i, b) in value.bytes().enumerate() {
        if !safe(b) {
            out.push_str(value.get(run..i).unwrap_or_default());
            out.push('%');
            out.push(hex(b >> 4));
            out.push(hex(b & 0xF));
            run = i + 1;
        }
    }
    out.push_str(value.get(run..).unwrap_or_default());
}

/// Percent-encodes `value`; injective, and the result has no `:`, `&`, `=` or `{}`.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    encode_into(&mut out, value);
    out
}

impl Key {
    /// A key of `family` in `scope`, named by `parts`. Part names should be fixed
    /// identifiers; a value may be anything.
    pub fn new(family: &'static str, scope: impl Into<String>, parts: &[(&str, &str)]) -> Self {
        let mut name = String::with_capacity(
            family.len()
                + 2
                + parts
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 2)
                    .sum::<usize>(),
        );
        encode_into(&mut name, family);
        name.push(':');
        let start = name.len();
        let mut push = |i: usize, (part, value): &(&str, &str)| {
            if i > 0 {
                name.push('&');
            }
            encode_into(&mut name, part);
            name.push('=');
            encode_into(&mut name, value);
        };
        if parts.len() <= 1 {
            parts.iter().enumerate().for_each(|(i, p)| push(i, p));
        } else {
            let mut sorted: Vec<&(&str, &str)> = parts.iter().collect();
            sorted.sort_unstable();
            sorted.into_iter().enumerate().for_each(|(i, p)| push(i, p));
        }
        if name.len() - start > MAX_PLAIN_LEN {
            let digest = Sha256::digest(name.get(start..).unwrap_or_default().as_bytes());
            name.truncate(start);
            name.push_str("sha256-");
            for b in digest {
                let _ = write!(name, "{b:02x}");
            }
        } else if name.len() == start {
            name.push('_');
        }
        Self {
            family,
            scope: scope.into(),
            name,
        }
    }

    /// The metrics label and TTL group.
    pub fn family(&self) -> &'static str {
        self.family
    }

    /// What this key is invalidated with.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The storage name, without the cache's namespace.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn key(parts: &BTreeMap<String, String>) -> Key {
        let parts: Vec<(&str, &str)> = parts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Key::new("list", "list", &parts)
    }

    /// Values that stress the encoding: separators, escapes, unicode, case, length.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 &=:*%_.-]{0,12}",
            "\\PC{0,8}",
            "[a-z]{100,300}",
            Just(String::new()),
            Just("Red Bank".to_owned()),
            Just("red bank".to_owned()),
            Just("a&b=c".to_owned()),
            Just("a%26b%3Dc".to_owned()),
        ]
    }

    fn filters() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map(
            prop_oneof![
                Just("city"),
                Just("industry"),
                Just("enrichment_status"),
                Just("page"),
                Just("limit")
            ]
            .prop_map(str::to_owned),
            value(),
            0..5,
        )
    }

    proptest! {
        /// The encoding is the percent-encoding of every byte outside
        /// `[A-Za-z0-9_.-]`, in upper-case hex, whatever the text (names already stored
        /// in Redis depend on it).
        #[test]
        fn values_are_percent_encoded_byte_by_byte(value in value()) {
            let expected: String = value
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            prop_assert_eq!(encode(&value), expected);
        }

        #[test]
        fn the_same_parts_in_any_order_give_the_same_key(
            parts in filters(),
            seed in any::<u64>(),
        ) {
            let mut shuffled: Vec<(&str, &str)> =
                parts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // A deterministic shuffle driven by the seed.
            let len = shuffled.len();
            for i in (1..len).rev() {
                let j = usize::try_from(seed.rotate_left(u32::try_from(i).unwrap_or(0)) % (i as u64 + 1)).unwrap_or(0);
                shuffled.swap(i, j);
            }
            prop_assert_eq!(Key::new("list", "list", &shuffled), key(&parts));
        }

        #[test]
        fn different_parts_never_share_a_key(a in filters(), b in filters()) {
            prop_assume!(a != b);
            prop_assert_ne!(key(&a).name().to_owned(), key(&b).name().to_owned());
        }

        #[test]
        fn keys_stay_short_and_free_of_separators(parts in filters()) {
            let k = key(&parts);
            prop_assert!(k.name().len() <= "list:".len() + MAX_PLAIN_LEN);
            let body = k.name().trim_start_matches("list:");
            let clean = !body.contains(':') && !body.contains('{') && !body.contains(' ');
            prop_assert!(clean, "{}", body);
        }
    }

    #[test]
    fn tricky_values_stay_apart() {
        let k = |parts: &[(&str, &str)]| Key::new("list", "list", parts).name().to_owned();
        assert_ne!(
            k(&[("city", "a&industry=b")]),
            k(&[("city", "a"), ("industry", "b")])
        );
        assert_ne!(k(&[("city", "Freehold")]), k(&[("city", "freehold")]));
        assert_ne!(k(&[("city", "")]), k(&[]));
        assert_ne!(k(&[("city", "x")]), k(&[("industry", "x")]));
        assert_eq!(
            k(&[("page", "1"), ("city", "x")]),
            k(&[("city", "x"), ("page", "1")])
        );
        assert_eq!(k(&[]), "list:_");
        assert_eq!(k(&[("city", "Red Bank")]), "list:city=Red%20Bank");
        let long = "x".repeat(1000);
        assert!(k(&[("city", &long)]).starts_with("list:sha256-"));
        // Names already stored in Redis keep their spelling: these are the bytes every
        // earlier version made.
        assert_eq!(
            k(&[("page", "2"), ("city", "Red Bank")]),
            "list:city=Red%20Bank&page=2"
        );
        assert_eq!(
            k(&[("city", &"x".repeat(130))]),
            "list:sha256-b47991e9851a7631425756bd9158089fac5c3bcbbb64f1be9634ad3b4ae1dc8d"
        );
    }
}
