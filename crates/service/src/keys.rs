//! The cache keys and invalidation scopes of the lead data.
//!
//! | family | scope | key parts | TTL |
//! |---|---|---|---|
//! | `stats` | `stats` | none | `CACHE_TTL_STATS_SECS` (30 s) |
//! | `list` | `list|[city,industry,status]`: one child scope of `list` per filter combination | `city`, `industry`, `enrichment_status`, `page`, `limit` | `CACHE_TTL_LIST_SECS` (5 min) |
//! | `list_total` | `total|[city,industry,status]`: one child scope of `total` per filter combination | `city`, `industry`, `enrichment_status` | `CACHE_TTL_LIST_SECS` (5 min) |
//! | `row` | `list|row:{id}`: one child scope of `list` per business | `id` | `CACHE_TTL_LIST_SECS` (5 min) |
//! | `detail` | `detail:{id}` | `id` | `CACHE_TTL_DETAIL_SECS` (10 min) |
//!
//! A list page is an *index* entry (`letip_cache::Cache::get_index`): its `meta` and the
//! ids of its rows, in order; each row (a business with its contacts, as lists show it) is
//! a `row` entry of its own, shared by every page that lists it. A page's scope is made
//! stale only by what changes which businesses it lists, or in which order (a business
//! created, deleted, or moved to other filter values); a change to a listed business that
//! keeps its filter values (a phone, a contact) makes only its row stale. Rows are
//! children of `list` so that pages and rows share one hash tag (one slot on Redis
//! Cluster, where a page and its rows are looked up by one script), and the root `list`
//! reaches them all.
//!
//! A filter's total (`meta.total`) has a scope of its own: it only changes when a business
//! enters or leaves the filter's list (created, deleted, or its city, industry or status
//! changed), not when a listed row's other values or contacts change, which make only the
//! pages stale. Every page missed under that filter, at any depth and page size, reuses it.
//!
//! Absent filters are absent parts; the page and limit are always present, so `?page=1`
//! and no page at all share a key, as they share an answer.
//!
//! A business appears in the lists of exactly the filter combinations its values match
//! (8 of them: each filter absent or equal to its value), so a write that knows the
//! business's values before and after invalidates only those child scopes; one that does
//! not invalidates the root `list`, and with it every list page.

use letip_cache::Key;
use std::collections::BTreeSet;

use letip_domain::{BusinessFilter, Change, EnrichmentStatus, ListQuery, RowChange};

pub(crate) const STATS: &str = "stats";
pub(crate) const LIST: &str = "list";
pub(crate) const LIST_TOTAL: &str = "list_total";
pub(crate) const ROW: &str = "row";
/// The root scope of the filter totals.
pub(crate) const TOTAL: &str = "total";

pub(crate) fn stats() -> Key {
    Key::new(STATS, STATS, &[])
}

/// The scope of one filter combination under `root` (`list` for its pages, `total` for
/// its total).
fn filter_scope(
    root: &str,
    city: Option<&str>,
    industry: Option<&str>,
    status: Option<&str>,
) -> String {
    // A JSON array is an injective name for the combination, whatever the values hold.
    let filter = serde_json::to_string(&(city, industry, status)).unwrap_or_default();
    format!("{root}|{filter}")
}

/// Every scope under `root` of a filter combination whose list can show a business with
/// these values, for any of `statuses`.
fn scopes_showing(
    root: &str,
    city: Option<&str>,
    industry: Option<&str>,
    statuses: &[EnrichmentStatus],
) -> Vec<String> {
    // An empty value cannot be filtered on: `?city=` means no filter.
    let city = city.filter(|c| !c.is_empty());
    let industry = industry.filter(|i| !i.is_empty());
    let mut scopes = Vec::new();
    for c in [None, city].into_iter().collect::<BTreeSet<_>>() {
        for i in [None, industry].into_iter().collect::<BTreeSet<_>>() {
            scopes.push(filter_scope(root, c, i, None));
            for s in statuses {
                scopes.push(filter_scope(root, c, i, Some(s.as_str())));
            }
        }
    }
    scopes
}

/// Every list scope whose pages can show a business with these values, for any of
/// `statuses`.
pub(crate) fn lists_showing(
    city: Option<&str>,
    industry: Option<&str>,
    statuses: &[EnrichmentStatus],
) -> Vec<String> {
    scopes_showing(LIST, city, industry, statuses)
}

/// The scope and key parts of a filter combination.
fn filter_parts<'a>(root: &str, f: &'a BusinessFilter) -> (String, Vec<(&'static str, &'a str)>) {
    let mut parts: Vec<(&str, &str)> = Vec::new();
    if let Some(city) = &f.city {
        parts.push(("city", city));
    }
    if let Some(industry) = &f.industry {
        parts.push(("industry", industry));
    }
    if let Some(status) = f.enrichment_status {
        parts.push(("enrichment_status", status.as_str()));
    }
    let scope = filter_scope(
        root,
        f.city.as_deref(),
        f.industry.as_deref(),
        f.enrichment_status.map(EnrichmentStatus::as_str),
    );
    (scope, parts)
}

pub(crate) fn list(q: &ListQuery) -> Key {
    let (page, limit) = (q.page.to_string(), q.limit.to_string());
    let (scope, mut parts) = filter_parts(LIST, &q.filter);
    parts.extend([("page", page.as_str()), ("limit", limit.as_str())]);
    Key::new(LIST, &scope, &parts)
}

/// The total of a filter's list.
pub(crate) fn list_total(f: &BusinessFilter) -> Key {
    let (scope, parts) = filter_parts(TOTAL, f);
    Key::new(LIST_TOTAL, &scope, &parts)
}

/// The scope of a business's listed row.
pub(crate) fn row_scope(id: i32) -> String {
    // A child of the `LIST` root.
    numbered("list|row:", id)
}

/// A business's listed row (the business and its contacts), shared by the pages that list it.
pub(crate) fn row(id: i32) -> Key {
    Key::new(
        ROW,
        row_scope(id),
        &[("id", itoa::Buffer::new().format(id))],
    )
}

pub(crate) fn detail_scope(id: i32) -> String {
    numbered("detail:", id)
}

pub(crate) fn detail(id: i32) -> Key {
    Key::new(
        "detail",
        detail_scope(id),
        &[("id", itoa::Buffer::new().format(id))],
    )
}

/// `prefix` then `id` in decimal, as `format!` would write them, without its machinery:
/// these are built on every hit.
fn numbered(prefix: &str, id: i32) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(id);
    let mut out = String::with_capacity(prefix.len() + digits.len());
    out.push_str(prefix);
    out.push_str(digits);
    out
}

/// Every scope a committed change makes stale: the one invalidation table of the service,
/// used for a write's own invalidation and for changes announced by other writers.
///
/// | change | stats | list pages | list totals | rows and detail of |
/// |---|---|---|---|---|
/// | business inserted or deleted | yes | those that can show it (all if its values are unknown) | the same combinations | the business |
/// | business updated, filter values kept | no | none | none | the business |
/// | business updated, filter values changed | if its status changed | those that showed it before or after | the same combinations | the business |
/// | business updated, values unknown | yes | all | all | the business (all rows) |
/// | contact | yes | none | none | its business |
/// | outreach message | yes | none (lists show no messages) | none | its detail |
/// | enrichment log | no | none | none | its detail |
/// | unknown | yes | all | all | every row (details: see docs/design.md) |
///
/// An update's facets are the row's filter values before and after; one set of facets
/// means they did not change. An update with known facets never moves a business's place
/// in the list order (this service never changes `created_at` or an id; the change feed
/// announces other writers' changes of those with unknown facets), so when its filter
/// values are kept it changes no page's membership or order.
pub(crate) fn scopes_of(change: &Change) -> BTreeSet<String> {
    let mut scopes = BTreeSet::new();
    match change {
        Change::Business { id, row, facets } => {
            if facets.is_empty() {
                scopes.insert(LIST.to_owned());
                scopes.insert(TOTAL.to_owned());
                scopes.insert(STATS.to_owned());
            } else {
                // Whether the business entered or left a list: its pages and totals move.
                let moved =
                    *row != RowChange::Updated || facets.windows(2).any(|w| w.first() != w.last());
                if moved {
                    for f in facets {
                        let (city, industry) = (f.city.as_deref(), f.industry.as_deref());
                        scopes.extend(lists_showing(city, industry, &[f.status]));
                        scopes.extend(scopes_showing(TOTAL, city, industry, &[f.status]));
                    }
                }
                let status_moved = facets
                    .windows(2)
                    .any(|w| w.first().map(|f| f.status) != w.last().map(|f| f.status));
                if *row != RowChange::Updated || status_moved {
                    scopes.insert(STATS.to_owned());
                }
            }
            scopes.insert(row_scope(*id));
            scopes.insert(detail_scope(*id));
        }
        Change::Contact { business_id } => {
            scopes.insert(STATS.to_owned());
            scopes.insert(row_scope(*business_id));
            scopes.insert(detail_scope(*business_id));
        }
        Change::Message { business_id } => {
            scopes.insert(STATS.to_owned());
            scopes.insert(detail_scope(*business_id));
        }
        Change::EnrichmentLog { business_id } => {
            scopes.insert(detail_scope(*business_id));
        }
        Change::Unknown => {
            scopes.insert(STATS.to_owned());
            scopes.insert(LIST.to_owned());
            scopes.insert(TOTAL.to_owned());
        }
    }
    // A root covers every child scope.
    for root in [LIST, TOTAL] {
        if scopes.contains(root) {
            let children = format!("{root}|");
            scopes.retain(|s| !s.starts_with(&children));
        }
    }
    scopes
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
        // A filter's total has a scope of its own and no page's key.
        let freehold = q(Some("Freehold"), None, 1);
        let total = list_total(&freehold.filter);
        assert_eq!(total.scope(), r#"total|["Freehold",null,null]"#);
        assert!(keys.iter().all(|k| *k != total));
        assert_ne!(total, list_total(&q(Some("freehold"), None, 1).filter));
        assert_ne!(total, list_total(&BusinessFilter::default()));
        assert_eq!(detail(42).scope(), "detail:42");
        // A business in Freehold, Dental, pending shows in exactly 8 filter combinations,
        // the one of each key built for those filters among them.
        let scopes = lists_showing(
            Some("Freehold"),
            Some("Dental"),
            &[EnrichmentStatus::Pending],
        );
        assert_eq!(scopes.len(), 8);
        assert!(scopes.contains(&keys[0].scope().to_owned()));
        assert!(scopes.contains(&keys[2].scope().to_owned()));
        assert!(scopes.contains(&keys[4].scope().to_owned()));
        assert!(
            !scopes.contains(&keys[3].scope().to_owned()),
            "freehold is another city"
        );
        assert_eq!(lists_showing(None, Some(""), &[]).len(), 1);
        assert_ne!(detail(4), detail(42));
    }

    fn facets(city: &str, status: EnrichmentStatus) -> letip_domain::Facets {
        letip_domain::Facets {
            city: Some(city.to_owned()),
            industry: None,
            status,
        }
    }

    #[test]
    fn a_change_makes_stale_exactly_what_can_show_it() {
        use EnrichmentStatus::{Enriched, Pending};
        let moved = scopes_of(&Change::Business {
            id: 7,
            row: RowChange::Updated,
            facets: vec![facets("Freehold", Pending), facets("Marlboro", Pending)],
        });
        assert!(!moved.contains(STATS), "no counter changes");
        assert!(moved.contains("detail:7"));
        assert!(moved.contains(&filter_scope(LIST, Some("Freehold"), None, None)));
        assert!(moved.contains(&filter_scope(LIST, Some("Marlboro"), None, Some("pending"))));
        assert!(!moved.contains(&filter_scope(LIST, Some("Howell"), None, None)));
        assert!(!moved.contains(LIST));
        assert!(moved.contains(&filter_scope(TOTAL, Some("Freehold"), None, None)));
        assert!(moved.contains(&filter_scope(TOTAL, Some("Marlboro"), None, None)));
        assert!(!moved.contains(&filter_scope(TOTAL, Some("Howell"), None, None)));

        assert!(moved.contains("list|row:7"));

        // New values in a listed row (a phone, say) leave every page and total as it
        // was: only the row and the detail are stale.
        let edited = scopes_of(&Change::Business {
            id: 7,
            row: RowChange::Updated,
            facets: vec![facets("Freehold", Pending), facets("Freehold", Pending)],
        });
        assert_eq!(
            edited.iter().map(String::as_str).collect::<Vec<_>>(),
            ["detail:7", "list|row:7"]
        );
        let own_edit = scopes_of(&Change::Business {
            id: 7,
            row: RowChange::Updated,
            facets: vec![facets("Freehold", Pending)],
        });
        assert_eq!(own_edit, edited);
        let created = scopes_of(&Change::Business {
            id: 8,
            row: RowChange::Inserted,
            facets: vec![facets("Freehold", Pending)],
        });
        assert!(created.contains(&filter_scope(TOTAL, None, None, None)));
        assert!(created.contains(&filter_scope(
            TOTAL,
            Some("Freehold"),
            None,
            Some("pending")
        )));
        assert!(!created.contains(&filter_scope(TOTAL, None, None, Some("enriched"))));
        assert!(created.contains(&filter_scope(LIST, Some("Freehold"), None, None)));

        let enriched = scopes_of(&Change::Business {
            id: 7,
            row: RowChange::Updated,
            facets: vec![facets("Freehold", Pending), facets("Freehold", Enriched)],
        });
        assert!(enriched.contains(STATS), "the enriched counter moves");

        let unknown = scopes_of(&Change::Business {
            id: 7,
            row: RowChange::Deleted,
            facets: vec![],
        });
        assert_eq!(
            unknown.into_iter().collect::<Vec<_>>(),
            ["detail:7", LIST, STATS, TOTAL]
        );
        let contact = scopes_of(&Change::Contact { business_id: 3 });
        assert_eq!(
            contact.into_iter().collect::<Vec<_>>(),
            ["detail:3", "list|row:3", STATS],
            "a contact changes its business's row, never a page or a total"
        );
        let log = scopes_of(&Change::EnrichmentLog { business_id: 3 });
        assert_eq!(log.into_iter().collect::<Vec<_>>(), ["detail:3"]);
    }
}
