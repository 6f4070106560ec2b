//! What each mutation invalidates: the [`Change`]s the cached repository makes of what
//! it wrote ([`of`]), which `keys::scopes_of` turns into scopes. The table in the README is [`table`]'s
//! output, and a test holds the two together.

use letip_domain::{Business, Change, EnrichmentStatus, Facets, RowChange};

use crate::keys;
use crate::written::Written;

/// The filter values of `b` under each of `statuses`.
fn facets(b: &Business, statuses: &[EnrichmentStatus]) -> Vec<Facets> {
    statuses
        .iter()
        .map(|&status| Facets {
            city: b.city.clone(),
            industry: b.industry.clone(),
            status,
        })
        .collect()
}

/// What `write` changed.
pub(crate) fn of(write: Written<'_>) -> Vec<Change> {
    match write {
        Written::Created(b) => created(b),
        Written::Updated { business, moved } => updated(business, moved),
        Written::Deleted { id } => deleted(id),
        Written::Enriched(b) => enriched(b),
        Written::Contact { business_id } => vec![Change::Contact { business_id }],
        Written::Message { business_id } => vec![Change::Message { business_id }],
        Written::Unknown => vec![Change::Unknown],
    }
}

/// A business created: the lists its values match, their totals, stats.
fn created(b: &Business) -> Vec<Change> {
    vec![Change::Business {
        id: b.id,
        row: RowChange::Inserted,
        facets: facets(b, b.enrichment_status.known().as_slice()),
    }]
}

/// A business updated. Its old city and industry are not known here: if the patch sent
/// either (`moved`), the business may have left any list.
fn updated(b: &Business, moved: bool) -> Vec<Change> {
    vec![Change::Business {
        id: b.id,
        row: RowChange::Updated,
        facets: if moved {
            Vec::new()
        } else {
            facets(b, b.enrichment_status.known().as_slice())
        },
    }]
}

/// A business deleted (its contacts, logs and messages with it).
fn deleted(id: i32) -> Vec<Change> {
    vec![Change::Business {
        id,
        row: RowChange::Deleted,
        facets: Vec::new(),
    }]
}

/// An enrichment recorded. The status the business had before is not known here: the
/// lists of every status that can show it. City and industry do not change.
fn enriched(b: &Business) -> Vec<Change> {
    vec![
        Change::Business {
            id: b.id,
            row: RowChange::Updated,
            facets: facets(b, &EnrichmentStatus::ALL),
        },
        Change::EnrichmentLog { business_id: b.id },
    ]
}

/// The README's table of what each mutation invalidates, made from the functions above
/// and `keys::scopes_of`, for a business with a city, an industry and a status.
pub fn table() -> String {
    let b: Business = serde_json::from_value(serde_json::json!({
        "id": 7, "name": "Freehold Dental", "address": null, "city": "Freehold",
        "state": "NJ", "zip": null, "phone": null, "website": null, "business_type": null,
        "industry": "Dental", "employee_count": null, "year_founded": null,
        "google_maps_url": null, "latitude": null, "longitude": null,
        "enrichment_status": "pending", "source": "google_maps",
        "created_at": "2026-11-25T18:31:25.123Z", "updated_at": "2026-11-25T18:31:25.123Z"
    }))
    .expect("the sample business is a business");
    let id = b.id;
    let rows = [
        ("`POST /api/businesses`", Written::Created(&b)),
        (
            "`PATCH /api/businesses/{id}`",
            Written::Updated {
                business: &b,
                moved: false,
            },
        ),
        (
            "`PATCH /api/businesses/{id}` sending `city` or `industry`",
            Written::Updated {
                business: &b,
                moved: true,
            },
        ),
        ("`DELETE /api/businesses/{id}`", Written::Deleted { id }),
        ("`POST /api/enrich/{id}`", Written::Enriched(&b)),
        (
            "`POST /api/businesses/{id}/contacts`",
            Written::Contact { business_id: id },
        ),
        (
            "`DELETE /api/contacts/{id}`",
            Written::Contact { business_id: id },
        ),
        (
            "`POST /api/businesses/{id}/messages`",
            Written::Message { business_id: id },
        ),
        (
            "`PATCH /api/messages/{id}`",
            Written::Message { business_id: id },
        ),
    ];
    let mut out = String::from(
        "| mutation | stats | list pages | list totals | its row (in every list) | its detail |\n\
         |---|---|---|---|---|---|\n",
    );
    for (mutation, write) in rows {
        let scopes: std::collections::BTreeSet<String> =
            of(write).iter().flat_map(keys::scopes_of).collect();
        let has = |s: &str| scopes.contains(s);
        let lists = |root: &str| {
            let children = scopes
                .iter()
                .filter(|s| s.starts_with(&format!("{root}|[")))
                .count();
            match (has(root), children) {
                (true, _) => "all".to_owned(),
                (false, 0) => String::new(),
                (false, n) => format!("the {n} filter combinations that can show it"),
            }
        };
        let yes = |b: bool| if b { "yes" } else { "" };
        out.push_str(&format!(
            "| {mutation} | {} | {} | {} | {} | {} |\n",
            yes(has(keys::STATS)),
            lists(keys::LIST),
            lists(keys::TOTAL),
            yes(has(keys::LIST) || has(&keys::row_scope(b.id))),
            yes(has(&keys::detail_scope(b.id))),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    /// The README's table between its markers is exactly [`super::table`]'s.
    #[test]
    fn the_documented_invalidation_table_is_the_one_the_code_applies() {
        let readme = include_str!("../../../README.md");
        let start =
            "<!-- invalidation table: generated by letip_service::invalidation::table -->\n";
        let end = "<!-- end of the invalidation table -->";
        let documented = readme
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table)
            .unwrap_or_else(|| panic!("README.md holds the table between its markers"));
        assert_eq!(
            documented,
            super::table(),
            "README.md's invalidation table differs from the code's: \
             `cargo run -p letip-service --example invalidation_table` prints the right one"
        );
    }
}
