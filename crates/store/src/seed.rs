//! Demo data: deterministic, realistic New Jersey leads, written fast enough to fill a
//! million businesses in well under two minutes.
//!
//! The same `seed` always yields the same businesses, contacts, logs and messages in the
//! same order (timestamps are relative to the moment seeding starts). Rows are generated
//! in batches on a blocking thread and written with one `INSERT ... SELECT FROM unnest(...)`
//! statement per table and batch: a handful of round trips per thousand businesses, with
//! every value sent as a typed array rather than as millions of bind parameters.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use diesel::sql_types::{Array, Bool, Float8, Int4, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::{StreamExt, TryStreamExt, stream};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::SetupError;
use crate::db::PgPool;

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

/// Town, county seat area code, latitude, longitude.
const TOWNS: &[(&str, &str, f64, f64)] = &[
    ("Freehold", "732", 40.2601, -74.2738),
    ("Red Bank", "732", 40.3471, -74.0643),
    ("Asbury Park", "732", 40.2204, -74.0121),
    ("Long Branch", "732", 40.3043, -73.9924),
    ("Middletown", "732", 40.3951, -74.0824),
    ("Manalapan", "732", 40.2801, -74.3432),
    ("Marlboro", "732", 40.3154, -74.2463),
    ("Holmdel", "732", 40.3451, -74.1840),
    ("Howell", "732", 40.1787, -74.1979),
    ("Wall", "732", 40.1668, -74.0932),
    ("Toms River", "732", 39.9537, -74.1979),
    ("Brick", "732", 40.0584, -74.1099),
    ("Lakewood", "732", 40.0979, -74.2176),
    ("Point Pleasant", "732", 40.0832, -74.0682),
    ("Matawan", "732", 40.4148, -74.2299),
    ("Old Bridge", "732", 40.4148, -74.3654),
    ("New Brunswick", "732", 40.4862, -74.4518),
    ("Edison", "732", 40.5187, -74.4121),
    ("Woodbridge", "732", 40.5576, -74.2846),
    ("Perth Amboy", "732", 40.5068, -74.2654),
    ("Piscataway", "732", 40.5548, -74.4643),
    ("East Brunswick", "732", 40.4279, -74.4157),
    ("Princeton", "609", 40.3573, -74.6672),
    ("Trenton", "609", 40.2206, -74.7597),
    ("Hamilton", "609", 40.2115, -74.6796),
    ("Lawrenceville", "609", 40.2973, -74.7296),
    ("Atlantic City", "609", 39.3643, -74.4229),
    ("Cherry Hill", "856", 39.9348, -75.0307),
    ("Camden", "856", 39.9259, -75.1196),
    ("Vineland", "856", 39.4864, -75.0260),
    ("Morristown", "973", 40.7968, -74.4815),
    ("Parsippany", "973", 40.8579, -74.4260),
    ("Montclair", "973", 40.8259, -74.2090),
    ("Newark", "973", 40.7357, -74.1724),
    ("Paterson", "973", 40.9168, -74.1718),
    ("Wayne", "973", 40.9254, -74.2765),
    ("Livingston", "973", 40.7959, -74.3149),
    ("Jersey City", "201", 40.7178, -74.0431),
    ("Hoboken", "201", 40.7440, -74.0324),
    ("Hackensack", "201", 40.8859, -74.0435),
    ("Paramus", "201", 40.9445, -74.0754),
    ("Fort Lee", "201", 40.8509, -73.9701),
    ("Ridgewood", "201", 40.9793, -74.1166),
    ("Elizabeth", "908", 40.6640, -74.2107),
    ("Summit", "908", 40.7157, -74.3643),
    ("Westfield", "908", 40.6590, -74.3474),
    ("Somerville", "908", 40.5743, -74.6099),
    ("Bridgewater", "908", 40.6007, -74.6482),
    ("Flemington", "908", 40.5123, -74.8593),
    ("Clifton", "973", 40.8584, -74.1638),
];

/// Industry, the noun a business of it is named with, and a Google business type.
const INDUSTRIES: &[(&str, &str, &str)] = &[
    ("Dental", "Dental", "dentist"),
    ("Legal", "Law Group", "lawyer"),
    ("Real Estate", "Realty", "real_estate_agency"),
    ("Accounting", "Accounting", "accounting"),
    ("Insurance", "Insurance Agency", "insurance_agency"),
    ("Restaurant", "Grill", "restaurant"),
    ("Automotive", "Auto Repair", "car_repair"),
    ("Construction", "Builders", "general_contractor"),
    ("Landscaping", "Landscaping", "landscaper"),
    ("Fitness", "Fitness", "gym"),
    ("Salon", "Salon", "beauty_salon"),
    ("Chiropractic", "Chiropractic", "chiropractor"),
    ("Veterinary", "Animal Hospital", "veterinary_care"),
    ("Plumbing", "Plumbing & Heating", "plumber"),
    ("HVAC", "Heating & Cooling", "hvac_contractor"),
    ("Marketing", "Marketing", "marketing_agency"),
    ("Financial Planning", "Wealth Partners", "financial_planner"),
    ("Photography", "Photography", "photographer"),
    ("Printing", "Print Shop", "print_shop"),
    ("IT Services", "Tech Solutions", "it_services"),
];

const NAME_PREFIXES: &[&str] = &[
    "",
    "",
    "",
    "Family",
    "Premier",
    "Shore",
    "Garden State",
    "Main Street",
    "Coastal",
    "Central Jersey",
    "Elite",
    "Hometown",
    "Summit",
    "Pinnacle",
    "Liberty",
    "Heritage",
];
const STREETS: &[&str] = &[
    "Main St",
    "Broad St",
    "Park Ave",
    "Route 9",
    "Route 35",
    "Washington St",
    "Maple Ave",
    "Ocean Ave",
    "Church St",
    "Highway 34",
    "Center St",
    "Union Ave",
];
const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Maria",
    "Daniel",
    "Priya",
    "Wei",
    "Carlos",
    "Aisha",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Russo",
    "Esposito",
    "Patel",
    "Shah",
    "Kim",
    "Nguyen",
    "Murphy",
    "O'Brien",
    "Cohen",
    "Kowalski",
];
const TITLES: &[&str] = &[
    "Owner",
    "Office Manager",
    "President",
    "Managing Partner",
    "Practice Manager",
    "General Manager",
    "Marketing Director",
    "Operations Manager",
];
const SERVICES: &[&str] = &["google_places", "hunter", "apollo", "clearbit"];
const OPENERS: &[&str] = &[
    "I came across {name} while looking at {industry} businesses in {city}",
    "Fellow Le Tip members in {city} have mentioned {name}",
    "I noticed {name} has been serving {city} for a while",
];

#[derive(Default)]
struct Batch {
    ids: Vec<i32>,
    name: Vec<String>,
    address: Vec<Option<String>>,
    city: Vec<Option<String>>,
    zip: Vec<Option<String>>,
    phone: Vec<Option<String>>,
    website: Vec<Option<String>>,
    business_type: Vec<Option<String>>,
    industry: Vec<Option<String>>,
    employee_count: Vec<Option<i32>>,
    year_founded: Vec<Option<i32>>,
    maps_url: Vec<Option<String>>,
    latitude: Vec<Option<f64>>,
    longitude: Vec<Option<f64>>,
    status: Vec<String>,
    created_at: Vec<DateTime<Utc>>,

    c_id: Vec<i32>,
    c_business: Vec<i32>,
    c_name: Vec<Option<String>>,
    c_title: Vec<Option<String>>,
    c_email: Vec<Option<String>>,
    c_verified: Vec<bool>,
    c_phone: Vec<Option<String>>,
    c_linkedin: Vec<Option<String>>,
    c_primary: Vec<bool>,
    c_created: Vec<DateTime<Utc>>,

    l_business: Vec<i32>,
    l_service: Vec<String>,
    l_status: Vec<String>,
    l_error: Vec<Option<String>>,
    l_created: Vec<DateTime<Utc>>,

    m_business: Vec<i32>,
    m_contact: Vec<Option<i32>>,
    m_text: Vec<String>,
    m_generated: Vec<DateTime<Utc>>,
    m_sent: Vec<Option<DateTime<Utc>>>,
    m_status: Vec<String>,
}

fn slug(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    // Every list above is a non-empty constant.
    items.choose(rng).expect("non-empty constant list")
}

/// Generates businesses `first..first + count` of the seed's sequence. Ids are given by
/// the database later; here each business knows only its position in the batch.
fn generate(seed: u64, first: u64, count: usize, now: DateTime<Utc>) -> Batch {
    let mut b = Batch::default();
    for i in first..first + count as u64 {
        // One generator per business: the data of business `i` depends on nothing else.
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i);
        let &(city, area, lat, lng) = pick(&mut rng, TOWNS);
        let &(industry, noun, kind) = pick(&mut rng, INDUSTRIES);
        let prefix = *pick(&mut rng, NAME_PREFIXES);
        let name = match rng.random_range(0..3) {
            0 if !prefix.is_empty() => format!("{prefix} {noun}"),
            1 => format!("{} {noun}", pick(&mut rng, LAST_NAMES)),
            _ => format!("{city} {noun}"),
        };
        let domain = format!("{}{}.com", slug(&name), i + 1);
        let name = format!("{name} #{}", i + 1);
        let pos = b.name.len() as i32;
        // Newest businesses last: position in the sequence maps to age (up to two years).
        let created = now - TimeDelta::seconds(rng.random_range(0..63_072_000));
        let roll = rng.random_range(0..100);
        let status = match roll {
            0..60 => "pending",
            60..95 => "enriched",
            _ => "failed",
        };
        b.ids.push(pos);
        b.name.push(name.clone());
        b.address.push(Some(format!(
            "{} {}",
            rng.random_range(1..2000),
            pick(&mut rng, STREETS)
        )));
        b.city.push(Some(city.to_owned()));
        b.zip
            .push(Some(format!("0{}", rng.random_range(7001..8999))));
        b.phone.push(Some(format!(
            "({area}) 555-{:04}",
            rng.random_range(0..10_000)
        )));
        b.website.push(
            rng.random_bool(0.8)
                .then(|| format!("https://www.{domain}")),
        );
        b.business_type.push(Some(kind.to_owned()));
        b.industry.push(Some(industry.to_owned()));
        b.employee_count.push(Some(rng.random_range(1..250)));
        b.year_founded.push(Some(rng.random_range(1950..2026)));
        b.maps_url.push(Some(format!(
            "https://maps.google.com/?cid={}",
            rng.random::<u64>()
        )));
        b.latitude.push(Some(lat + rng.random_range(-0.02..0.02)));
        b.longitude.push(Some(lng + rng.random_range(-0.02..0.02)));
        b.status.push(status.to_owned());
        b.created_at.push(created);

        // About two contacts per business, one of them primary.
        let contacts = rng.random_range(0..=4);
        let first_contact = b.c_business.len();
        for c in 0..contacts {
            let first_name = *pick(&mut rng, FIRST_NAMES);
            let last_name = *pick(&mut rng, LAST_NAMES);
            b.c_id.push(0);
            b.c_business.push(pos);
            b.c_name.push(Some(format!("{first_name} {last_name}")));
            b.c_title.push(Some((*pick(&mut rng, TITLES)).to_owned()));
            b.c_email.push(Some(format!(
                "{}.{}@{domain}",
                slug(first_name),
                slug(last_name)
            )));
            b.c_verified.push(rng.random_bool(0.5));
            b.c_phone.push(
                rng.random_bool(0.6)
                    .then(|| format!("({area}) 555-{:04}", rng.random_range(0..10_000))),
            );
            b.c_linkedin.push(rng.random_bool(0.4).then(|| {
                format!(
                    "https://www.linkedin.com/in/{}-{}",
                    slug(first_name),
                    slug(last_name)
                )
            }));
            b.c_primary.push(c == 0);
            b.c_created
                .push(created + TimeDelta::minutes(rng.random_range(1..10_000)));
        }

        // Enriched and failed businesses have the logs of their runs.
        if status != "pending" {
            for _ in 0..rng.random_range(1..=3) {
                let failed = status == "failed" && rng.random_bool(0.7);
                b.l_business.push(pos);
                b.l_service.push((*pick(&mut rng, SERVICES)).to_owned());
                b.l_status
                    .push(if failed { "error" } else { "success" }.to_owned());
                b.l_error
                    .push(failed.then(|| "upstream returned 429 Too Many Requests".to_owned()));
                b.l_created
                    .push(created + TimeDelta::minutes(rng.random_range(1..20_000)));
            }
        }

        // About three messages per business: 50% generated, 40% sent, 10% failed.
        for _ in 0..rng.random_range(0..=6) {
            let contact = (contacts > 0)
                .then(|| first_contact + rng.random_range(0..contacts))
                .filter(|_| rng.random_bool(0.8));
            let generated = created + TimeDelta::minutes(rng.random_range(1..40_000));
            let roll = rng.random_range(0..10);
            let (mstatus, sent) = match roll {
                0..5 => ("generated", None),
                5..9 => (
                    "sent",
                    Some(generated + TimeDelta::minutes(rng.random_range(1..600))),
                ),
                _ => ("failed", None),
            };
            let opener = pick(&mut rng, OPENERS)
                .replace("{name}", &name)
                .replace("{industry}", &industry.to_ascii_lowercase())
                .replace("{city}", city);
            b.m_business.push(pos);
            b.m_contact
                .push(contact.and_then(|c| i32::try_from(c).ok()));
            b.m_text.push(format!(
                "Hi, {opener}. Our Le Tip chapter meets weekly to pass referrals between local \
                 professionals, and we have no {} member yet. Would you join us as a guest?",
                industry.to_ascii_lowercase()
            ));
            b.m_generated.push(generated);
            b.m_sent.push(sent);
            b.m_status.push(mstatus.to_owned());
        }
    }
    b
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
fn remap(positions: &mut [i32], ids: &[i32]) {
    for p in positions.iter_mut() {
        if let Some(&id) = usize::try_from(*p).ok().and_then(|i| ids.get(i)) {
            *p = id;
        }
    }
}

async fn write(pool: &PgPool, mut b: Batch) -> Result<SeedReport, SetupError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| SetupError::Pool(e.to_string()))?;
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
        for c in b.m_contact.iter_mut().flatten() {
            if let Some(&id) = usize::try_from(*c).ok().and_then(|i| contact_ids.get(i)) {
                *c = id;
            }
        }
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
    let mut conn = pool
        .get()
        .await
        .map_err(|e| SetupError::Pool(e.to_string()))?;
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
    let mut conn = pool
        .get()
        .await
        .map_err(|e| SetupError::Pool(e.to_string()))?;
    crate::changes::announce_reset(&mut conn).await?;
    diesel::sql_query("VACUUM (ANALYZE) business, contact, enrichment_log, outreach_message")
        .execute(&mut conn)
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
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
    fn the_mix_is_realistic() {
        let b = generate(1, 0, 10_000, Utc::now());
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
