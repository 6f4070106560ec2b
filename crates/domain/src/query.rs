//! The list query: filters and pagination, parsed from the URL query string.

use std::collections::HashSet;

use crate::validation::storable;
use crate::{EnrichmentStatus, ValidationError};

pub const DEFAULT_PAGE: u32 = 1;
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// The deepest page served: an OFFSET beyond `MAX_PAGE * MAX_LIMIT` rows would make the
/// database walk millions of index entries for one request.
pub const MAX_PAGE: u32 = 100_000;

/// Exact-match filters of the business list. An empty value means no filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BusinessFilter {
    pub city: Option<String>,
    pub industry: Option<String>,
    pub enrichment_status: Option<EnrichmentStatus>,
}

/// One page of the business list under a filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListQuery {
    pub filter: BusinessFilter,
    /// 1-based.
    pub page: u32,
    /// 1 to 100.
    pub limit: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filter: BusinessFilter::default(),
            page: DEFAULT_PAGE,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl ListQuery {
    /// Rows to skip before this page.
    pub fn offset(&self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.limit)
    }

    /// Parses a raw URL query string (`city=Red%20Bank&page=2`), decoded as an HTML form
    /// is: `+` is a space, `%XX` a byte. A known parameter whose value does not decode to
    /// UTF-8 is refused by name (a lenient decoder would silently filter on U+FFFD
    /// instead); unknown parameters are ignored whatever they hold.
    pub fn from_query(raw: &str) -> Result<Self, ValidationError> {
        let mut pairs = Vec::new();
        for piece in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            let Ok(key) = String::from_utf8(form_decode(key)) else {
                continue;
            };
            if !is_known(&key) {
                continue;
            }
            let value = String::from_utf8(form_decode(value)).map_err(|_| {
                ValidationError::field(
                    &key,
                    "must be UTF-8 text once percent-decoded (such as %C3%A9 for é)",
                )
            })?;
            pairs.push((key, value));
        }
        Self::from_pairs(pairs)
    }

    /// Parses decoded query pairs. Unknown parameters are ignored, as the original backend
    /// did; a known one given twice is an error rather than a silent pick.
    pub fn from_pairs<K, V, I>(pairs: I) -> Result<Self, ValidationError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut q = Self::default();
        let mut seen = HashSet::new();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            if !is_known(key) {
                continue;
            }
            if !seen.insert(key.to_owned()) {
                return Err(ValidationError::field(key, "must be given at most once"));
            }
            match key {
                "city" => q.filter.city = filter_value(key, value)?,
                "industry" => q.filter.industry = filter_value(key, value)?,
                "enrichment_status" if !value.is_empty() => {
                    q.filter.enrichment_status = Some(EnrichmentStatus::parse(key, value)?);
                }
                "page" => q.page = number(key, value, 1, MAX_PAGE)?,
                "limit" => q.limit = number(key, value, 1, MAX_LIMIT)?,
                _ => {}
            }
        }
        Ok(q)
    }
}

fn is_known(key: &str) -> bool {
    matches!(
        key,
        "city" | "industry" | "enrichment_status" | "page" | "limit"
    )
}

/// `application/x-www-form-urlencoded` decoding to bytes, which may not be UTF-8.
fn form_decode(s: &str) -> Vec<u8> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).collect()
}

/// Any value a row can hold is a valid filter: the URL length limit bounds it. A NUL
/// cannot be in a row, and PostgreSQL refuses to compare with one.
fn filter_value(key: &str, value: &str) -> Result<Option<String>, ValidationError> {
    storable(key, value)?;
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn number(key: &str, value: &str, min: u32, max: u32) -> Result<u32, ValidationError> {
    let out_of_range =
        || ValidationError::field(key, format!("must be an integer from {min} to {max}"));
    // Only plain decimal digits: `+1`, `1.0` and `1e2` are not page numbers.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(out_of_range());
    }
    match value.parse::<u64>() {
        Ok(n) if (u64::from(min)..=u64::from(max)).contains(&n) => {
            u32::try_from(n).map_err(|_| out_of_range())
        }
        _ => Err(out_of_range()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ListQuery, ValidationError> {
        ListQuery::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_are_page_1_of_20_unfiltered() {
        let q = parse(&[]).expect("valid");
        assert_eq!(q, ListQuery::default());
        assert_eq!((q.page, q.limit, q.offset()), (1, 20, 0));
    }

    #[test]
    fn filters_and_pages_are_read() {
        let q = parse(&[
            ("city", "Freehold"),
            ("industry", "Dental"),
            ("enrichment_status", "enriched"),
            ("page", "3"),
            ("limit", "100"),
            ("utm_source", "ignored"),
        ])
        .expect("valid");
        assert_eq!(q.filter.city.as_deref(), Some("Freehold"));
        assert_eq!(q.filter.industry.as_deref(), Some("Dental"));
        assert_eq!(q.filter.enrichment_status, Some(EnrichmentStatus::Enriched));
        assert_eq!(q.offset(), 200);
        assert_eq!(parse(&[("city", "")]).expect("valid").filter.city, None);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (k, v) in [
            ("page", "0"),
            ("page", "-1"),
            ("page", "abc"),
            ("page", "1.5"),
            ("page", "+2"),
            ("page", "100001"),
            ("page", "99999999999999999999999"),
            ("limit", "0"),
            ("limit", "101"),
            ("limit", ""),
            ("enrichment_status", "bogus"),
            ("enrichment_status", "Pending"),
        ] {
            let e = parse(&[(k, v)]).expect_err("must be rejected");
            assert_eq!(e.field, k, "{k}={v}");
            assert!(e.message.starts_with(k), "{}", e.message);
        }
        let e = parse(&[("city", "a"), ("city", "b")]).expect_err("duplicate");
        assert_eq!(e.field, "city");
    }

    #[test]
    fn a_raw_query_is_decoded_as_a_form() {
        let q = ListQuery::from_query("city=Red+Bank&industry=Caf%C3%A9%20%26%20Bar&page=2&x=%FF")
            .expect("valid");
        assert_eq!(q.filter.city.as_deref(), Some("Red Bank"));
        assert_eq!(q.filter.industry.as_deref(), Some("Café & Bar"));
        assert_eq!(q.page, 2);
        assert_eq!(
            ListQuery::from_query("").expect("valid"),
            ListQuery::default()
        );
        assert_eq!(
            ListQuery::from_query("&&city&limit=5&")
                .expect("valid")
                .limit,
            5
        );
        // Unknown parameters are ignored whatever they hold, even undecodable names.
        assert!(ListQuery::from_query("%FF=1&utm=%00&%E2%82=x").is_ok());
    }

    #[test]
    fn text_postgresql_cannot_compare_is_refused_by_name() {
        for (raw, field) in [
            ("city=a%00b", "city"),
            ("industry=%00", "industry"),
            ("city=%FF", "city"),
            ("industry=%ED%A0%80", "industry"),
            ("city=ok&industry=%C3", "industry"),
            ("enrichment_status=%FE", "enrichment_status"),
            ("page=%00", "page"),
        ] {
            let e = ListQuery::from_query(raw).expect_err(raw);
            assert_eq!(e.field, field, "{raw}");
            assert!(e.message.starts_with(field), "{}", e.message);
        }
        let e = parse(&[("city", "a\0b")]).expect_err("NUL");
        assert_eq!(e.field, "city");
    }

    #[test]
    fn a_filter_takes_any_value_a_row_can_hold() {
        // Stored rows have no length limit, so neither has a filter on them.
        let long = "x".repeat(300);
        let q = parse(&[("city", long.as_str()), ("industry", "Dental & Co")]).expect("valid");
        assert_eq!(q.filter.city.as_deref(), Some(long.as_str()));
        assert_eq!(q.filter.industry.as_deref(), Some("Dental & Co"));
    }
}
