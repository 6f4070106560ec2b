//! The cache keys and invalidation scopes of the lead data.
//!
//! | family | scope | key parts | TTL |
//! |---|---|---|---|
//! | `stats` | `stats` | none | `CACHE_TTL_STATS_SECS` (30 s) |
//! | `list` | `list` (every list page shares it) | `city`, `industry`, `enrichment_status`, `page`, `limit` | `CACHE_TTL_LIST_SECS` (5 min) |
//! | `detail` | `detail:{id}` | `id` | `CACHE_TTL_DETAIL_SECS` (10 min) |
//!
//! Absent filters are absent parts; the page and limit are always present, so `?page=1`
//! and no page at all share a key, as they share an answer.

use letip_cache::Key;
use letip_domain::ListQuery;

pub(crate) const STATS: &str = "stats";
pub(crate) const LIST: &str = "list";

pub(crate) fn stats() -> Key {
    Key::new(STATS, STATS, &[])
}

pub(crate) fn list(q: &ListQuery) -> Key {
    let (page, limit) = (q.page.to_string(), q.limit.to_string());
    let mut parts: Vec<(&str, &str)> = vec![("page", &page), ("limit", &limit)];
    if let Some(city) = &q.filter.city {
        parts.push(("city", city));
    }
    if let Some(industry) = &q.filter.industry {
        parts.push(("industry", industry));
    }
    if let Some(status) = q.filter.enrichment_status {
        parts.push(("enrichment_status", status.as_str()));
    }
    Key::new(LIST, LIST, &parts)
}

pub(crate) fn detail_scope(id: i32) -> String {
    format!("detail:{id}")
}

pub(crate) fn detail(id: i32) -> Key {
    Key::new("detail", &detail_scope(id), &[("id", &id.to_string())])
}

#[cfg(test)]
mod tests {
    use letip_domain::{BusinessFilter, EnrichmentStatus};

    use super::*;

    #[test]
    fn each_filter_combination_and_page_has_its_own_key() {
        let q = |city: Option<&str>, status: Option<EnrichmentStatus>, page: u32| ListQuery {
            filter: BusinessFilter {
                city: city.map(str::to_owned),
                industry: None,
                enrichment_status: status,
            },
            page,
            limit: 20,
        };
        let keys = [
            list(&q(None, None, 1)),
            list(&q(None, None, 2)),
            list(&q(Some("Freehold"), None, 1)),
            list(&q(Some("freehold"), None, 1)),
            list(&q(None, Some(EnrichmentStatus::Pending), 1)),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in keys.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        assert_eq!(list(&ListQuery::default()), list(&q(None, None, 1)));
        assert_eq!(detail(42).scope(), "detail:42");
        assert_ne!(detail(4), detail(42));
    }
}
