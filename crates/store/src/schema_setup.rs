//! Bringing a database to the working schema: the migrations, then the indexes.
//!
//! One path serves an empty database and one the original backend made (with its data,
//! while that backend keeps writing): the migrations create what is missing and only add
//! (see `migrations/`), and indexes are built here, each with
//! `CREATE INDEX CONCURRENTLY IF NOT EXISTS` outside any transaction, so that building
//! one on a populated table never blocks writers. An index whose concurrent build was
//! interrupted is left INVALID by PostgreSQL, and `IF NOT EXISTS` would skip it forever:
//! it is dropped (concurrently) and built again.
//!
//! Several instances may start at once: a session-level advisory lock lets one of them
//! do the work while the others wait for it. They poll for the lock between sleeps
//! rather than wait inside a statement, because a concurrent index build waits for every
//! transaction holding an older snapshot, and a waiting lock call would hold one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;

use crate::db::{MIGRATIONS, SetupError};

/// Identifies the schema lock among the database's advisory locks ("letip" and 1).
const SCHEMA_LOCK: i64 = 0x6c65_7469_7000_0001;
/// How often a starting instance asks for the schema lock while another holds it.
const LOCK_POLL: Duration = Duration::from_millis(500);
/// Attempts at the migrations when one times out waiting for a table lock (each waits
/// at most its `lock_timeout`, so the original backend's writes never queue behind it
/// for long).
const LOCK_TIMEOUT_ATTEMPTS: usize = 12;

/// The predicates of the partial two-facet indexes. A query uses such an index only if
/// it states the predicate itself, which a filter may do when its own values are short
/// enough (every row it matches then has the same lengths): see `PAIR_PREDICATES`.
macro_rules! city_industry_short {
    () => {
        r#"octet_length("city") + octet_length("industry") < 2000"#
    };
}
macro_rules! city_status_short {
    () => {
        r#"octet_length("city") + octet_length("enrichment_status") < 2000"#
    };
}
macro_rules! industry_status_short {
    () => {
        r#"octet_length("industry") + octet_length("enrichment_status") < 2000"#
    };
}

/// The predicates of the two-facet indexes, as a filter states them: city and
/// industry, city and status, industry and status.
pub(crate) const PAIR_PREDICATES: [&str; 3] = [
    city_industry_short!(),
    city_status_short!(),
    industry_status_short!(),
];

/// Filter values at most this long (UTF-8 bytes, together) may state a two-facet
/// index's predicate: half its bound, so that no database encoding's longer spelling of
/// the same text can break it.
pub(crate) const PAIR_VALUES_MAX_BYTES: usize = 1000;

/// Every index of the schema, by name: the original backend's first (its Prisma schema
/// made them; an adopted database has them already), then this service's.
pub const INDEXES: &[(&str, &str)] = &[
    ("business_city_idx", r#"ON "business"("city")"#),
    ("business_industry_idx", r#"ON "business"("industry")"#),
    (
        "business_enrichment_status_idx",
        r#"ON "business"("enrichment_status")"#,
    ),
    ("contact_business_id_idx", r#"ON "contact"("business_id")"#),
    ("contact_email_idx", r#"ON "contact"("email")"#),
    (
        "enrichment_log_business_id_idx",
        r#"ON "enrichment_log"("business_id")"#,
    ),
    (
        "enrichment_log_service_idx",
        r#"ON "enrichment_log"("service")"#,
    ),
    (
        "enrichment_log_status_idx",
        r#"ON "enrichment_log"("status")"#,
    ),
    (
        "outreach_message_business_id_idx",
        r#"ON "outreach_message"("business_id")"#,
    ),
    (
        "outreach_message_status_idx",
        r#"ON "outreach_message"("status")"#,
    ),
    // The list is ordered newest first with the id as tie-breaker; each filter has an
    // index that serves both its count and its page in that order (index-only scans).
    (
        "letip_business_created_idx",
        r#"ON "business" ("created_at" DESC, "id" DESC)"#,
    ),
    (
        "letip_business_city_created_idx",
        r#"ON "business" ("city", "created_at" DESC, "id" DESC)"#,
    ),
    (
        "letip_business_industry_created_idx",
        r#"ON "business" ("industry", "created_at" DESC, "id" DESC)"#,
    ),
    (
        "letip_business_status_created_idx",
        r#"ON "business" ("enrichment_status", "created_at" DESC, "id" DESC)"#,
    ),
    // Filters of two facets (and of three, through two of them and a check of the
    // third): their counts and pages are index-only scans of a range of exactly their
    // rows. With only the one-facet indexes, a page of city and industry at a million
    // businesses read some 2,000 table rows to find its 200, and its count a tenth of
    // the table. Partial: two texts as long as a one-facet index holds would not fit
    // one index row, and a database adopted with such values could not build the
    // index; a filter with values that long is served by the one-facet indexes.
    (
        "letip_business_city_industry_created_idx",
        concat!(
            r#"ON "business" ("city", "industry", "created_at" DESC, "id" DESC) WHERE "#,
            city_industry_short!()
        ),
    ),
    (
        "letip_business_city_status_created_idx",
        concat!(
            r#"ON "business" ("city", "enrichment_status", "created_at" DESC, "id" DESC) WHERE "#,
            city_status_short!()
        ),
    ),
    (
        "letip_business_industry_status_created_idx",
        concat!(
            r#"ON "business" ("industry", "enrichment_status", "created_at" DESC, "id" DESC) WHERE "#,
            industry_status_short!()
        ),
    ),
    // Serves ON DELETE SET NULL when a contact goes: without it, deleting one contact
    // scans every message.
    (
        "letip_outreach_message_contact_id_idx",
        r#"ON "outreach_message" ("contact_id") WHERE "contact_id" IS NOT NULL"#,
    ),
];

/// Runs the pending migrations, then builds every missing or invalid index. Answers how
/// many migrations ran. Blocking: call it from a blocking thread.
pub(crate) fn run(conn: &mut SchemaConnection) -> Result<usize, SetupError> {
    acquire_lock(conn)?;
    let outcome = migrate(conn).and_then(|applied| {
        build_indexes(conn)?;
        Ok(applied)
    });
    // Ending the session would release the lock too; releasing it at once lets a
    // waiting instance go on before this connection is dropped.
    let released = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<diesel::sql_types::BigInt, _>(SCHEMA_LOCK)
        .execute(conn);
    let applied = outcome?;
    released?;
    Ok(applied)
}

/// A connection for synchronous use on a blocking thread, as diesel's migration harness
/// needs it.
pub(crate) type SchemaConnection = AsyncConnectionWrapper<AsyncPgConnection>;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

fn acquire_lock(conn: &mut SchemaConnection) -> Result<(), SetupError> {
    let mut told = false;
    loop {
        let Locked { locked } = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind::<diesel::sql_types::BigInt, _>(SCHEMA_LOCK)
            .get_result(conn)?;
        if locked {
            return Ok(());
        }
        if !told {
            tracing::info!("another instance is preparing the schema; waiting for it");
            told = true;
        }
        std::thread::sleep(LOCK_POLL);
    }
}

fn migrate(conn: &mut SchemaConnection) -> Result<usize, SetupError> {
    let pending = conn
        .pending_migrations(MIGRATIONS)
        .map_err(|e| SetupError::Migrate(e.to_string()))?
        .len();
    for attempt in 1..=LOCK_TIMEOUT_ATTEMPTS {
        match conn.run_pending_migrations(MIGRATIONS) {
            Ok(_) => return Ok(pending),
            // The migrations before the one that timed out are committed; the next
            // attempt goes on from there.
            Err(e) if e.to_string().contains("lock timeout") && attempt < LOCK_TIMEOUT_ATTEMPTS => {
                tracing::warn!(
                    attempt,
                    error = %e,
                    "a migration waited too long for a table lock (a long transaction holds \
                     it); trying again"
                );
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(SetupError::Migrate(e.to_string())),
        }
    }
    Err(SetupError::Migrate(
        "migrations kept timing out waiting for table locks".into(),
    ))
}

#[derive(QueryableByName)]
struct IndexState {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    valid: bool,
}

/// The indexes of the current schema and whether each is valid.
fn index_states(conn: &mut SchemaConnection) -> Result<HashMap<String, bool>, SetupError> {
    let states: Vec<IndexState> = diesel::sql_query(
        "SELECT c.relname::text AS name, i.indisvalid AS valid
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema()",
    )
    .load(conn)?;
    Ok(states.into_iter().map(|s| (s.name, s.valid)).collect())
}

fn build_indexes(conn: &mut SchemaConnection) -> Result<(), SetupError> {
    let states = index_states(conn)?;
    for (name, definition) in INDEXES {
        match states.get(*name) {
            Some(true) => continue,
            Some(false) => {
                tracing::warn!(
                    index = name,
                    "dropping an index whose build was interrupted"
                );
                conn.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS \"{name}\""))?;
            }
            None => {}
        }
        let started = Instant::now();
        // One statement per call: a concurrent build cannot run in a transaction block,
        // which several statements in one query would make.
        conn.batch_execute(&format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"{name}\" {definition}"
        ))?;
        tracing::info!(
            index = name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "built index"
        );
    }
    Ok(())
}
