//! Demo data: deterministic, realistic New Jersey leads, written fast enough to fill a
//! million businesses in well under two minutes.
//!
//! The same `seed` always yields the same businesses, contacts, logs and messages in the
//! same order (timestamps are relative to the moment seeding starts). Rows are generated
//! in batches on a blocking thread and written with one `INSERT ... SELECT FROM unnest(...)`
//! statement per table and batch: a handful of round trips per thousand businesses, with
//! every value sent as a typed array rather than as millions of bind parameters.

mod data;

use chrono::Utc;
use diesel::sql_types::{Array, Bool, Float8, Int4, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::SetupError;
use crate::db::{PgConn, PgPool};

use data::{Batch, generate};

/// What to seed.
#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    pub businesses: u64,
    pub seed: u64,
    /// Businesses per batch (one transaction each).
    pub batch: usize,
    /// Batches written at once, each on its own connection.
    pub writers: usize,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self {
            businesses: 1000,
            seed: 42,
            batch: 2000,
            writers: 3,
        }
    }
}

/// Rows written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub businesses: u64,
    pub contacts: u64,
    pub logs: u64,
    pub messages: u64,
}

impl std::ops::AddAssign for SeedReport {
    fn add_assign(&mut self, o: Self) {
        self.businesses += o.businesses;
        self.contacts += o.contacts;
        self.logs += o.logs;
        self.messages += o.messages;
    }
}

const INSERT_BUSINESSES: &str = "\
INSERT INTO business (id, name, address, city, zip, phone, website, business_type, industry,
    employee_count, year_founded, google_maps_url, latitude, longitude, enrichment_status,
    created_at, updated_at)
SELECT id, name, address, city, zip, phone, website, business_type, industry,
    employee_count, year_founded, google_maps_url, latitude, longitude, enrichment_status,
    timezone('UTC', created_at), timezone('UTC', created_at)
FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::int4[], $11::int4[], $12::text[],
    $13::float8[], $14::float8[], $15::text[], $16::timestamptz[])
    AS t(id, name, address, city, zip, phone, website, business_type, industry,
         employee_count, year_founded, google_maps_url, latitude, longitude,
         enrichment_status, created_at)";

const INSERT_CONTACTS: &str = "\
INSERT INTO contact (id, business_id, name, title, email, email_verified, phone, linkedin_url,
    is_primary, created_at, updated_at)
SELECT id, business_id, name, title, email, email_verified, phone, linkedin_url, is_primary,
    timezone('UTC', created_at), timezone('UTC', created_at)
FROM unnest($1::int4[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::bool[],
    $7::text[], $8::text[], $9::bool[], $10::timestamptz[])
    AS t(id, business_id, name, title, email, email_verified, phone, linkedin_url,
         is_primary, created_at)";

const INSERT_LOGS: &str = "\
INSERT INTO enrichment_log (business_id, service, status, error_message, created_at)
SELECT business_id, service, status, error_message, timezone('UTC', created_at)
FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
    AS t(business_id, service, status, error_message, created_at)";

const INSERT_MESSAGES: &str = "\
INSERT INTO outreach_message (business_id, contact_id, message_text, generated_at, sent_at,
    status)
SELECT business_id, contact_id, message_text, timezone('UTC', generated_at),
    timezone('UTC', sent_at), status
FROM unnest($1::int4[], $2::int4[], $3::text[], $4::timestamptz[], $5::timestamptz[],
    $6::text[]) AS t(business_id, contact_id, message_text, generated_at, sent_at, status)";

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = Int4)]
    id: i32,
}

/// Takes `n` values of a serial column's sequence.
async fn reserve_ids(
    conn: &mut diesel_async::AsyncPgConnection,
    sequence: &str,
    n: usize,
) -> Result<Vec<i32>, diesel::result::Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<Id> = diesel::sql_query(format!(
        "SELECT nextval('{sequence}')::int4 AS id FROM generate_series(1, $1)"
    ))
    .bind::<Int4, _>(i32::try_from(n).unwrap_or(i32::MAX))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Maps positions within a batch to the ids the database gave.
fn remap<'a>(positions: impl IntoIterator<Item = &'a mut i32>, ids: &[i32]) {
    for p in positions {
        if let Some(&id) = usize::try_from(*p).ok().and_then(|i| ids.get(i)) {
            *p = id;
        }
    }
}

/// A connection from `pool`, its failure a setup error.
async fn connection(pool: &PgPool) -> Result<PgConn, SetupError> {
    pool.get()
        .await
        .map_err(|e| SetupError::Pool(e.to_string()))
}

async fn write(pool: &PgPool, mut b: Batch) -> Result<SeedReport, SetupError> {
    let mut conn = connection(pool).await?;
    let report = SeedReport {
        businesses: b.name.len() as u64,
        contacts: b.c_business.len() as u64,
        logs: b.l_business.len() as u64,
        messages: b.m_business.len() as u64,
    };
    conn.transaction(async |conn| {
        // Millions of rows are not announced one by one: one reset follows the load.
        conn.batch_execute("SET LOCAL letip.quiet = 'on'").await?;
        let business_ids = reserve_ids(conn, "business_id_seq", b.ids.len()).await?;
        let contact_ids = reserve_ids(conn, "contact_id_seq", b.c_id.len()).await?;
        b.ids.clone_from(&business_ids);
        b.c_id.clone_from(&contact_ids);
        remap(&mut b.c_business, &business_ids);
        remap(&mut b.l_business, &business_ids);
        remap(&mut b.m_business, &business_ids);
        remap(b.m_contact.iter_mut().flatten(), &contact_ids);
        diesel::sql_query(INSERT_BUSINESSES)
            .bind::<Array<Int4>, _>(&b.ids)
            .bind::<Array<Text>, _>(&b.name)
            .bind::<Array<Nullable<Text>>, _>(&b.address)
            .bind::<Array<Nullable<Text>>, _>(&b.city)
            .bind::<Array<Nullable<Text>>, _>(&b.zip)
            .bind::<Array<Nullable<Text>>, _>(&b.phone)
            .bind::<Array<Nullable<Text>>, _>(&b.website)
            .bind::<Array<Nullable<Text>>, _>(&b.business_type)
            .bind::<Array<Nullable<Text>>, _>(&b.industry)
            .bind::<Array<Nullable<Int4>>, _>(&b.employee_count)
            .bind::<Array<Nullable<Int4>>, _>(&b.year_founded)
            .bind::<Array<Nullable<Text>>, _>(&b.maps_url)
            .bind::<Array<Nullable<Float8>>, _>(&b.latitude)
            .bind::<Array<Nullable<Float8>>, _>(&b.longitude)
            .bind::<Array<Text>, _>(&b.status)
            .bind::<Array<Timestamptz>, _>(&b.created_at)
            .execute(conn)
            .await?;
        diesel::sql_query(INSERT_CONTACTS)
            .bind::<Array<Int4>, _>(&b.c_id)
            .bind::<Array<Int4>, _>(&b.c_business)
            .bind::<Array<Nullable<Text>>, _>(&b.c_name)
            .bind::<Array<Nullable<Text>>, _>(&b.c_title)
            .bind::<Array<Nullable<Text>>, _>(&b.c_email)
            .bind::<Array<Bool>, _>(&b.c_verified)
            .bind::<Array<Nullable<Text>>, _>(&b.c_phone)
            .bind::<Array<Nullable<Text>>, _>(&b.c_linkedin)
            .bind::<Array<Bool>, _>(&b.c_primary)
            .bind::<Array<Timestamptz>, _>(&b.c_created)
            .execute(conn)
            .await?;
        diesel::sql_query(INSERT_LOGS)
            .bind::<Array<Int4>, _>(&b.l_business)
            .bind::<Array<Text>, _>(&b.l_service)
            .bind::<Array<Text>, _>(&b.l_status)
            .bind::<Array<Nullable<Text>>, _>(&b.l_error)
            .bind::<Array<Timestamptz>, _>(&b.l_created)
            .execute(conn)
            .await?;
        diesel::sql_query(INSERT_MESSAGES)
            .bind::<Array<Int4>, _>(&b.m_business)
            .bind::<Array<Nullable<Int4>>, _>(&b.m_contact)
            .bind::<Array<Text>, _>(&b.m_text)
            .bind::<Array<Timestamptz>, _>(&b.m_generated)
            .bind::<Array<Nullable<Timestamptz>>, _>(&b.m_sent)
            .bind::<Array<Text>, _>(&b.m_status)
            .execute(conn)
            .await?;
        Ok::<_, diesel::result::Error>(())
    })
    .await?;
    Ok(report)
}

/// Whether the database holds no business yet.
pub async fn is_empty(pool: &PgPool) -> Result<bool, SetupError> {
    let mut conn = connection(pool).await?;
    let rows: Vec<Id> = diesel::sql_query("SELECT id FROM business LIMIT 1")
        .load(&mut conn)
        .await?;
    Ok(rows.is_empty())
}

/// Writes `options.businesses` businesses with their contacts, logs and messages.
/// `progress` is called with the number of businesses written so far.
pub async fn seed(
    pool: &PgPool,
    options: SeedOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SeedReport, SetupError> {
    let now = Utc::now();
    let batch = options.batch.max(1) as u64;
    let starts = (0..options.businesses).step_by(batch as usize);
    let seed = options.seed;
    let total = options.businesses;
    let mut report = SeedReport::default();
    let mut writes = stream::iter(starts)
        .map(|first| async move {
            let count = batch.min(total - first) as usize;
            let rows = tokio::task::spawn_blocking(move || generate(seed, first, count, now))
                .await
                .map_err(|e| SetupError::Migrate(format!("seed generator failed: {e}")))?;
            write(pool, rows).await
        })
        // In order: rows of business `i` get lower ids than those of `i + 1`.
        .buffered(options.writers.max(1));
    while let Some(r) = writes.try_next().await? {
        report += r;
        progress(report.businesses);
    }
    drop(writes);
    // Fresh statistics for the planner and a visibility map for index-only scans: the
    // stats query counts millions of rows from indexes alone once this has run.
    let mut conn = connection(pool).await?;
    crate::changes::announce_reset(&mut conn).await?;
    diesel::sql_query("VACUUM (ANALYZE) business, contact, enrichment_log, outreach_message")
        .execute(&mut conn)
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::data::TOWNS;
    use super::*;

    #[test]
    fn the_same_seed_generates_the_same_rows() {
        let now = Utc::now();
        let a = generate(7, 0, 50, now);
        let b = generate(7, 0, 50, now);
        let c = generate(8, 0, 50, now);
        assert_eq!(a.name, b.name);
        assert_eq!(a.m_text, b.m_text);
        assert_ne!(a.name, c.name);
        // A batch boundary does not change what a business is.
        let tail = generate(7, 25, 25, now);
        assert_eq!(a.name.get(25..), Some(tail.name.as_slice()));
    }

    #[test]
    fn the_first_business_has_thousands_of_contacts() {
        let b = generate(7, 0, 3, Utc::now());
        let of = |pos: i32| b.c_business.iter().filter(|&&p| p == pos).count();
        assert_eq!(of(0), data::LARGEST_CONTACTS);
        assert!(of(1) <= 4 && of(2) <= 4);
    }

    #[test]
    fn the_mix_is_realistic() {
        // From the second business on: the first is the one with thousands of contacts.
        let b = generate(1, 1, 10_000, Utc::now());
        let share = |s: &str| b.status.iter().filter(|v| *v == s).count() as f64 / 10_000.0;
        assert!((share("pending") - 0.60).abs() < 0.03);
        assert!((share("enriched") - 0.35).abs() < 0.03);
        assert!((share("failed") - 0.05).abs() < 0.02);
        let per = |n: usize| n as f64 / 10_000.0;
        assert!((per(b.c_business.len()) - 2.0).abs() < 0.1);
        assert!((per(b.m_business.len()) - 3.0).abs() < 0.1);
        let towns: std::collections::HashSet<_> = b.city.iter().collect();
        assert_eq!(towns.len(), TOWNS.len());
        let industries: std::collections::HashSet<_> = b.industry.iter().collect();
        assert_eq!(industries.len(), 20);
    }
}
