//! The reads' SQL, the rows it answers, and their decoding into the domain's records.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use letip_domain::RepoResult;
use letip_domain::{
    Business, BusinessDetail, BusinessFilter, BusinessPage, BusinessWithContacts, Contact,
    EnrichmentStatus, Fetched, ListQuery, OutreachMessage, PageMeta,
};

use crate::rows::{BusinessRow, ContactRow, EnrichmentLogRow, MessageRow};
use crate::schema::{business, contact};
use crate::schema_setup::{PAIR_PREDICATES, PAIR_VALUES_MAX_BYTES};

pub(super) fn filtered(f: &BusinessFilter) -> business::BoxedQuery<'_, diesel::pg::Pg> {
    let mut q = business::table.into_boxed();
    // Two facets: state the predicate of their partial index, which every matching row
    // meets when the values are short (`schema_setup::PAIR_PREDICATES`), so that the
    // planner may use it.
    let status = f.enrichment_status.map(EnrichmentStatus::as_str);
    let [city_industry, city_status, industry_status] = PAIR_PREDICATES;
    let pair = match (&f.city, &f.industry, status) {
        (Some(c), Some(i), _) => Some((c.len() + i.len(), city_industry)),
        (Some(c), None, Some(s)) => Some((c.len() + s.len(), city_status)),
        (None, Some(i), Some(s)) => Some((i.len() + s.len(), industry_status)),
        _ => None,
    };
    if let Some((bytes, predicate)) = pair
        && bytes <= PAIR_VALUES_MAX_BYTES
    {
        q = q.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(predicate));
    }
    if let Some(city) = &f.city {
        q = q.filter(business::city.eq(city));
    }
    if let Some(industry) = &f.industry {
        q = q.filter(business::industry.eq(industry));
    }
    if let Some(status) = f.enrichment_status {
        q = q.filter(business::enrichment_status.eq(status.as_str()));
    }
    q
}

/// How many businesses `filter` lists. The counts the stats counters keep (every
/// business, and those enriched or pending) are read from them, a sum of a few rows
/// exact in the statement's snapshot like the count it replaces (see
/// `migrations/*_stats_counters`); any other filter is counted from its index.
pub(super) async fn count_filtered(
    conn: &mut AsyncPgConnection,
    f: &BusinessFilter,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Total {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        total: i64,
    }
    let counter = match (&f.city, &f.industry, f.enrichment_status) {
        (None, None, None) => Some(COUNT_ALL_SQL),
        (None, None, Some(EnrichmentStatus::Enriched)) => Some(COUNT_ENRICHED_SQL),
        (None, None, Some(EnrichmentStatus::Pending)) => Some(COUNT_PENDING_SQL),
        _ => None,
    };
    match counter {
        Some(sql) => Ok(diesel::sql_query(sql)
            .get_result::<Total>(conn)
            .await?
            .total),
        None => filtered(f).count().get_result(conn).await,
    }
}

pub(super) const COUNT_ALL_SQL: &str =
    "SELECT coalesce(sum(businesses), 0)::int8 AS total FROM letip_stats";
pub(super) const COUNT_ENRICHED_SQL: &str =
    "SELECT coalesce(sum(enriched), 0)::int8 AS total FROM letip_stats";
pub(super) const COUNT_PENDING_SQL: &str =
    "SELECT coalesce(sum(pending), 0)::int8 AS total FROM letip_stats";

/// The rows of one list page and their contacts, given the filter's total.
///
/// The page's ids come first, from an index-only scan of the filter's
/// `(…, created_at, id)` index, then only those rows are fetched: a deep page skips index
/// entries, not table rows (page 50,000 of a million businesses: about 0.1 s instead of
/// 3 s). Two statements rather than a subquery, because a prepared statement's generic
/// plan cannot see the LIMIT and would join the subquery by scanning the whole table.
pub(super) async fn load_page(
    conn: &mut AsyncPgConnection,
    query: &ListQuery,
    total: i64,
) -> QueryResult<PageRows> {
    // A page past the end is empty: no need to ask.
    if query.offset() >= total {
        return Ok((Vec::new(), Vec::new(), 0));
    }
    let ids = load_page_ids(conn, query, total).await?;
    if ids.is_empty() {
        return Ok((Vec::new(), Vec::new(), 1));
    }
    let rows: Vec<BusinessRow> = business::table
        .filter(business::id.eq_any(&ids))
        .select(BusinessRow::as_select())
        .order((business::created_at.desc(), business::id.desc()))
        .load(conn)
        .await?;
    let contacts: Vec<ContactRow> = contact::table
        .filter(contact::business_id.eq_any(&ids))
        .order((contact::business_id, contact::id))
        .select(ContactRow::as_select())
        .load(conn)
        .await?;
    Ok((rows, contacts, 3))
}

/// A page's rows, their contacts, and how many statements reading them took.
pub(super) type PageRows = (Vec<BusinessRow>, Vec<ContactRow>, u64);

pub(super) fn page_from_rows(
    query: &ListQuery,
    total: i64,
    rows: Vec<BusinessRow>,
    contacts: Vec<ContactRow>,
) -> RepoResult<Fetched<BusinessPage>> {
    let mut by_business: HashMap<i32, Vec<Contact>> = HashMap::new();
    for c in contacts {
        let c = Contact::from(c);
        by_business.entry(c.business_id).or_default().push(c);
    }
    let data = rows
        .into_iter()
        .map(|row| {
            let business = Business::from(row);
            let contacts = by_business.remove(&business.id).unwrap_or_default();
            BusinessWithContacts { business, contacts }
        })
        .collect();
    Ok(Fetched::bypass(BusinessPage {
        data,
        meta: PageMeta::new(total, query.page, query.limit),
    }))
}

#[derive(QueryableByName)]
pub(super) struct StatsRow {
    #[diesel(sql_type = BigInt)]
    pub(super) total_businesses: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) enriched_businesses: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) pending_enrichment: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) total_contacts: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) messages_sent: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) messages_pending: i64,
}

/// The six dashboard counters: the sums of the 16 rows of `letip_stats`, which triggers
/// keep equal to the tables' counts in every writing transaction (migration
/// `stats_counters`). One statement over 16 rows, whatever the size of the tables.
pub(super) const STATS_SQL: &str = "\
SELECT sum(businesses)::int8 AS total_businesses, sum(enriched)::int8 AS enriched_businesses,
       sum(pending)::int8 AS pending_enrichment, sum(contacts)::int8 AS total_contacts,
       sum(messages_sent)::int8 AS messages_sent,
       sum(messages_generated)::int8 AS messages_pending
FROM letip_stats";

/// The select list that `DETAIL_SQL` and `LISTED_SQL` share: the business's columns, in
/// `BusinessRow`'s order, and its contacts as a JSON array of rows, oldest first. A macro
/// rather than a constant because `concat!` takes only literals.
macro_rules! business_and_contacts_columns {
    () => {
        r#"
SELECT b.id, b.name, b.address, b.city, b.state, b.zip, b.phone, b.website, b.business_type,
       b.industry, b.employee_count, b.year_founded, b.google_maps_url, b.latitude,
       b.longitude, b.enrichment_status, b.source, b.created_at, b.updated_at,
       (SELECT coalesce(json_agg(c ORDER BY c.id), '[]')::text
        FROM (SELECT id, business_id, name, title, email, email_verified, phone,
                     linkedin_url, is_primary, created_at, updated_at
              FROM contact WHERE business_id = b.id) AS c) AS contacts"#
    };
}

/// A business and its children, as one statement answers them: the business's columns,
/// and its contacts, newest logs and newest messages as JSON arrays of rows (built by
/// PostgreSQL's `json_agg`). These tables hold no floating-point column, so JSON carries
/// every value they can hold exactly.
#[derive(QueryableByName)]
pub(super) struct DetailRow {
    #[diesel(embed)]
    pub(super) business: BusinessRow,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) contacts: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) logs: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) messages: String,
}

/// One statement, so one snapshot and one round trip, whatever the number of children:
/// every contact, the 10 newest logs and the 5 newest messages.
pub(super) const DETAIL_SQL: &str = concat!(
    business_and_contacts_columns!(),
    r#",
       (SELECT coalesce(json_agg(l ORDER BY l.created_at DESC, l.id DESC), '[]')::text
        FROM (SELECT id, business_id, service, status, request_data, response_data,
                     error_message, created_at
              FROM enrichment_log WHERE business_id = b.id
              ORDER BY created_at DESC, id DESC LIMIT 10) AS l) AS logs,
       (SELECT coalesce(json_agg(m ORDER BY m.generated_at DESC, m.id DESC), '[]')::text
        FROM (SELECT id, business_id, contact_id, message_text, generated_at, sent_at, status
              FROM outreach_message WHERE business_id = b.id
              ORDER BY generated_at DESC, id DESC LIMIT 5) AS m) AS messages
FROM business AS b WHERE b.id = $1"#
);

/// A listed row as one statement answers it: the business's columns and its contacts as
/// a JSON array of rows.
#[derive(QueryableByName)]
pub(super) struct ListedRow {
    #[diesel(embed)]
    pub(super) business: BusinessRow,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) contacts: String,
}

/// The listed rows of some businesses by id, with their contacts: one statement.
pub(super) const LISTED_SQL: &str = concat!(
    business_and_contacts_columns!(),
    "\nFROM business AS b WHERE b.id = ANY($1)"
);

/// The listed rows of `ids`, in the order of `ids` (absent ones left out).
pub(super) async fn load_listed(
    conn: &mut AsyncPgConnection,
    ids: &[i32],
) -> QueryResult<Vec<BusinessWithContacts>> {
    let rows: Vec<ListedRow> = diesel::sql_query(LISTED_SQL)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Int4>, _>(ids)
        .load(conn)
        .await?;
    let mut by_id: HashMap<i32, BusinessWithContacts> = HashMap::with_capacity(rows.len());
    for row in rows {
        let contacts: Vec<ContactRow> = decode(&row.contacts)?;
        let business = Business::from(row.business);
        by_id.insert(
            business.id,
            BusinessWithContacts {
                business,
                contacts: contacts.into_iter().map(Contact::from).collect(),
            },
        );
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// The ids of one list page, in list order, given the filter's total.
pub(super) async fn load_page_ids(
    conn: &mut AsyncPgConnection,
    query: &ListQuery,
    total: i64,
) -> QueryResult<Vec<i32>> {
    if query.offset() >= total {
        return Ok(Vec::new());
    }
    filtered(&query.filter)
        .select(business::id)
        .order((business::created_at.desc(), business::id.desc()))
        .limit(i64::from(query.limit))
        .offset(query.offset())
        .load(conn)
        .await
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(json: &str) -> QueryResult<T> {
    serde_json::from_str(json).map_err(|e| DieselError::DeserializationError(Box::new(e)))
}

/// Loads a business with its contacts, newest logs and newest messages, in one statement.
pub(super) async fn load_detail(
    conn: &mut AsyncPgConnection,
    id: i32,
) -> QueryResult<Option<DetailRows>> {
    let Some(row) = diesel::sql_query(DETAIL_SQL)
        .bind::<diesel::sql_types::Int4, _>(id)
        .get_result::<DetailRow>(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    Ok(Some((
        row.business,
        decode(&row.contacts)?,
        decode(&row.logs)?,
        decode(&row.messages)?,
    )))
}

pub(super) type DetailRows = (
    BusinessRow,
    Vec<ContactRow>,
    Vec<EnrichmentLogRow>,
    Vec<MessageRow>,
);

pub(super) fn detail_from_rows((row, contacts, logs, messages): DetailRows) -> BusinessDetail {
    BusinessDetail {
        business: row.into(),
        contacts: contacts.into_iter().map(Contact::from).collect(),
        enrichment_logs: logs.into_iter().map(Into::into).collect(),
        outreach_messages: messages.into_iter().map(OutreachMessage::from).collect(),
    }
}
