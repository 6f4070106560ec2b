//! [`PgStore`]: the repository port on PostgreSQL.
//!
//! Reads that need more than one statement run in one REPEATABLE READ, READ ONLY
//! transaction, so a page and its total (or a business and its children) come from one
//! snapshot. Every write that touches several rows runs in one transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Duration;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Nullable, Timestamp};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use letip_domain::{
    Business, BusinessDetail, BusinessFilter, BusinessPage, BusinessPatch, BusinessWithContacts,
    Contact, EnrichmentRun, EnrichmentStatus, Entity, Fetched, Health, ListQuery, MessageStatus,
    MessageStatusUpdate, NewBusiness, NewContact, NewMessage, OutreachMessage, PageMeta, RepoError,
    Repository, Stats, ValidationError,
};

use crate::db::{PgConn, PgPool, PoolError};
use crate::rows::{
    BusinessChanges, BusinessRow, ContactRow, EnrichmentLogRow, InsertBusiness, InsertContact,
    InsertLog, MessageRow, utc_now,
};
use crate::schema::{business, contact, enrichment_log, outreach_message};
use crate::schema_setup::{PAIR_PREDICATES, PAIR_VALUES_MAX_BYTES};

/// The PostgreSQL repository.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// Counts statements sent to PostgreSQL, by operation, for `/metrics`.
fn queried(op: &'static str, statements: u64) {
    metrics::counter!("letip_db_queries_total", "op" => op).increment(statements);
}

/// The session was ended by the server (an administrator, a restart, a failover).
fn is_terminated(message: &str) -> bool {
    message.starts_with("terminating connection")
        || message.contains("server closed the connection")
}

fn db_error(e: DieselError) -> RepoError {
    match e {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            info,
        ) => RepoError::Unavailable(info.message().to_owned()),
        DieselError::DatabaseError(_, ref info) if is_terminated(info.message()) => {
            RepoError::Unavailable(info.message().to_owned())
        }
        other => RepoError::Internal(other.to_string()),
    }
}

/// An async closure whose future can be named, so that it can be required to be `Send`
/// for every lifetime of the connection it borrows (as diesel-async's `transaction`
/// does).
trait ConnCall<A, R>: AsyncFnOnce(A) -> R + FnOnce(A) -> <Self as ConnCall<A, R>>::Fut {
    type Fut: Future<Output = R>;
}

impl<F, A, Fut, R> ConnCall<A, R> for F
where
    F: AsyncFnOnce(A) -> R + FnOnce(A) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// What a call does: whether it may run again on a new connection, and who commits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    /// Statements that write, which [`PgStore::run`] runs in one transaction of its own.
    /// A statement outside an explicit transaction is committed only at the protocol's
    /// Sync, after its rows and its CommandComplete have been sent: a session ended in
    /// between (terminated, crashed, failed over) rolls it back after the client read a
    /// success. An explicit COMMIT is answered only once the write is committed.
    Write,
}

/// Whether `e` means the connection was lost such that the call may simply run again:
/// a read always; a write only if it cannot have committed. Before its COMMIT was sent
/// (`committing` false) nothing of it is committed, whatever reached the server. Once
/// the COMMIT was sent, only the server's own answer that it ended the session
/// (`terminating connection`, an error answer to the COMMIT: the transaction was rolled
/// back) is safe to retry. A socket that closed with no answer is ambiguous (the commit
/// may have happened: diesel-async answers every socket failure as "unable to send",
/// sent or not), and the write fails rather than risk being stored twice.
fn retryable(e: &DieselError, op: Op, committing: bool) -> bool {
    match e {
        DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
            _,
        ) => op == Op::Read || !committing,
        DieselError::DatabaseError(_, info) if op == Op::Write && committing => {
            info.message().starts_with("terminating connection")
        }
        DieselError::DatabaseError(_, info) => is_terminated(info.message()),
        _ => false,
    }
}

/// Whether the pool failed to hand out a connection because the new session it opened
/// was ended after the server accepted it: terminated before its setup statements ran,
/// or its socket closed during the handshake ("error communicating with the server" is
/// tokio-postgres's I/O error on an established socket). A new attempt opens another. A
/// server that refuses connections ("error connecting to server"), a timeout, or bad
/// credentials fail at once.
fn lost_while_connecting(e: &PoolError) -> bool {
    let PoolError::Backend(e) = e else {
        return false;
    };
    let message = e.to_string();
    message.contains("terminating connection")
        || message.contains("server closed the connection")
        || message.contains("error communicating with the server")
        || message.ends_with("connection closed")
}

/// How many more times than the pool has connections a call may run when connections
/// keep turning out dead: all the idle connections of the pool go at once when the
/// server restarts, and each is found dead only when used.
const EXTRA_ATTEMPTS: usize = 1;

fn is_foreign_key_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    )
}

fn filtered(f: &BusinessFilter) -> business::BoxedQuery<'_, diesel::pg::Pg> {
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
async fn count_filtered(conn: &mut AsyncPgConnection, f: &BusinessFilter) -> QueryResult<i64> {
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

const COUNT_ALL_SQL: &str = "SELECT coalesce(sum(businesses), 0)::int8 AS total FROM letip_stats";
const COUNT_ENRICHED_SQL: &str =
    "SELECT coalesce(sum(enriched), 0)::int8 AS total FROM letip_stats";
const COUNT_PENDING_SQL: &str = "SELECT coalesce(sum(pending), 0)::int8 AS total FROM letip_stats";

/// The rows of one list page and their contacts, given the filter's total.
///
/// The page's ids come first, from an index-only scan of the filter's
/// `(…, created_at, id)` index, then only those rows are fetched: a deep page skips index
/// entries, not table rows (page 50,000 of a million businesses: about 0.1 s instead of
/// 3 s). Two statements rather than a subquery, because a prepared statement's generic
/// plan cannot see the LIMIT and would join the subquery by scanning the whole table.
async fn load_page(
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
type PageRows = (Vec<BusinessRow>, Vec<ContactRow>, u64);

fn page_from_rows(
    query: &ListQuery,
    total: i64,
    rows: Vec<BusinessRow>,
    contacts: Vec<ContactRow>,
) -> Result<Fetched<BusinessPage>, RepoError> {
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
struct StatsRow {
    #[diesel(sql_type = BigInt)]
    total_businesses: i64,
    #[diesel(sql_type = BigInt)]
    enriched_businesses: i64,
    #[diesel(sql_type = BigInt)]
    pending_enrichment: i64,
    #[diesel(sql_type = BigInt)]
    total_contacts: i64,
    #[diesel(sql_type = BigInt)]
    messages_sent: i64,
    #[diesel(sql_type = BigInt)]
    messages_pending: i64,
}

/// The six dashboard counters: the sums of the 16 rows of `letip_stats`, which triggers
/// keep equal to the tables' counts in every writing transaction (migration
/// `stats_counters`). One statement over 16 rows, whatever the size of the tables.
const STATS_SQL: &str = "\
SELECT sum(businesses)::int8 AS total_businesses, sum(enriched)::int8 AS enriched_businesses,
       sum(pending)::int8 AS pending_enrichment, sum(contacts)::int8 AS total_contacts,
       sum(messages_sent)::int8 AS messages_sent,
       sum(messages_generated)::int8 AS messages_pending
FROM letip_stats";

/// A business and its children, as one statement answers them: the business's columns,
/// and its contacts, newest logs and newest messages as JSON arrays of rows (built by
/// PostgreSQL's `json_agg`). These tables hold no floating-point column, so JSON carries
/// every value they can hold exactly.
#[derive(QueryableByName)]
struct DetailRow {
    #[diesel(embed)]
    business: BusinessRow,
    #[diesel(sql_type = diesel::sql_types::Text)]
    contacts: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    logs: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    messages: String,
}

/// One statement, so one snapshot and one round trip, whatever the number of children:
/// every contact, the 10 newest logs and the 5 newest messages.
const DETAIL_SQL: &str = r#"
SELECT b.id, b.name, b.address, b.city, b.state, b.zip, b.phone, b.website, b.business_type,
       b.industry, b.employee_count, b.year_founded, b.google_maps_url, b.latitude,
       b.longitude, b.enrichment_status, b.source, b.created_at, b.updated_at,
       (SELECT coalesce(json_agg(c ORDER BY c.id), '[]')::text
        FROM (SELECT id, business_id, name, title, email, email_verified, phone,
                     linkedin_url, is_primary, created_at, updated_at
              FROM contact WHERE business_id = b.id) AS c) AS contacts,
       (SELECT coalesce(json_agg(l ORDER BY l.created_at DESC, l.id DESC), '[]')::text
        FROM (SELECT id, business_id, service, status, request_data, response_data,
                     error_message, created_at
              FROM enrichment_log WHERE business_id = b.id
              ORDER BY created_at DESC, id DESC LIMIT 10) AS l) AS logs,
       (SELECT coalesce(json_agg(m ORDER BY m.generated_at DESC, m.id DESC), '[]')::text
        FROM (SELECT id, business_id, contact_id, message_text, generated_at, sent_at, status
              FROM outreach_message WHERE business_id = b.id
              ORDER BY generated_at DESC, id DESC LIMIT 5) AS m) AS messages
FROM business AS b WHERE b.id = $1"#;

/// A listed row as one statement answers it: the business's columns and its contacts as
/// a JSON array of rows.
#[derive(QueryableByName)]
struct ListedRow {
    #[diesel(embed)]
    business: BusinessRow,
    #[diesel(sql_type = diesel::sql_types::Text)]
    contacts: String,
}

/// The listed rows of some businesses by id, with their contacts: one statement.
const LISTED_SQL: &str = r#"
SELECT b.id, b.name, b.address, b.city, b.state, b.zip, b.phone, b.website, b.business_type,
       b.industry, b.employee_count, b.year_founded, b.google_maps_url, b.latitude,
       b.longitude, b.enrichment_status, b.source, b.created_at, b.updated_at,
       (SELECT coalesce(json_agg(c ORDER BY c.id), '[]')::text
        FROM (SELECT id, business_id, name, title, email, email_verified, phone,
                     linkedin_url, is_primary, created_at, updated_at
              FROM contact WHERE business_id = b.id) AS c) AS contacts
FROM business AS b WHERE b.id = ANY($1)"#;

/// The listed rows of `ids`, in the order of `ids` (absent ones left out).
async fn load_listed(
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
async fn load_page_ids(
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

fn decode<T: serde::de::DeserializeOwned>(json: &str) -> QueryResult<T> {
    serde_json::from_str(json).map_err(|e| DieselError::DeserializationError(Box::new(e)))
}

/// Loads a business with its contacts, newest logs and newest messages, in one statement.
async fn load_detail(conn: &mut AsyncPgConnection, id: i32) -> QueryResult<Option<DetailRows>> {
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

type DetailRows = (
    BusinessRow,
    Vec<ContactRow>,
    Vec<EnrichmentLogRow>,
    Vec<MessageRow>,
);

fn detail_from_rows((row, contacts, logs, messages): DetailRows) -> BusinessDetail {
    BusinessDetail {
        business: row.into(),
        contacts: contacts.into_iter().map(Contact::from).collect(),
        enrichment_logs: logs.into_iter().map(Into::into).collect(),
        outreach_messages: messages.into_iter().map(OutreachMessage::from).collect(),
    }
}

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn conn(&self) -> Result<PgConn, RepoError> {
        self.pool
            .get()
            .await
            .map_err(|e| RepoError::Unavailable(e.to_string()))
    }

    /// Runs the call `make` makes on a pooled connection. A connection that turns out to
    /// be dead (its session was ended while it sat in the pool) is thrown away and a new
    /// call runs on a new one, when [`retryable`] allows, until every pooled connection could have been replaced.
    async fn run<T, F, M>(&self, op: Op, make: M) -> Result<T, RepoError>
    where
        M: Fn() -> F + Send,
        for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> QueryResult<T>
            + ConnCall<&'r mut AsyncPgConnection, QueryResult<T>, Fut: Send>
            + Send,
        T: Send,
    {
        let mut attempt = 1;
        let budget = self.pool.status().max_size + EXTRA_ATTEMPTS;
        loop {
            let mut conn = match self.pool.get().await {
                Ok(conn) => conn,
                Err(e) if attempt < budget && lost_while_connecting(&e) => {
                    tracing::debug!(error = %e, "lost a new database connection; opening another");
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(RepoError::Unavailable(e.to_string())),
            };
            let call = make();
            // Set once the write's statements have succeeded: what fails after that
            // failed at its COMMIT.
            let committing = AtomicBool::new(false);
            let flag = &committing;
            let outcome = match op {
                Op::Read => call(&mut conn).await,
                Op::Write => {
                    conn.transaction(async move |c| {
                        let done = call(c).await;
                        AtomicBool::store(flag, done.is_ok(), AtomicOrdering::Relaxed);
                        done
                    })
                    .await
                }
            };
            let committing = AtomicBool::load(&committing, AtomicOrdering::Relaxed);
            match outcome {
                Err(e) if attempt < budget && retryable(&e, op, committing) => {
                    tracing::debug!(error = %e, "lost a database connection; retrying on a new one");
                    drop(PgConn::take(conn));
                    attempt += 1;
                }
                result => return result.map_err(db_error),
            }
        }
    }
}

#[async_trait]
impl Repository for PgStore {
    async fn stats(&self) -> Result<Fetched<Stats>, RepoError> {
        queried("stats", 1);
        let r: StatsRow = self
            .run(Op::Read, || {
                async |conn| diesel::sql_query(STATS_SQL).get_result(conn).await
            })
            .await?;
        Ok(Fetched::bypass(Stats {
            total_businesses: r.total_businesses,
            enriched_businesses: r.enriched_businesses,
            pending_enrichment: r.pending_enrichment,
            total_contacts: r.total_contacts,
            messages_sent: r.messages_sent,
            messages_pending: r.messages_pending,
        }))
    }

    async fn list_businesses(&self, query: &ListQuery) -> Result<Fetched<BusinessPage>, RepoError> {
        let (total, (rows, contacts, statements)) = self
            .run(Op::Read, || {
                async |conn| {
                    conn.build_transaction()
                        .repeatable_read()
                        .read_only()
                        .run(async |conn| {
                            let total = count_filtered(conn, &query.filter).await?;
                            let page = load_page(conn, query, total).await?;
                            Ok::<_, DieselError>((total, page))
                        })
                        .await
                }
            })
            .await?;
        queried("list", 1 + statements);
        page_from_rows(query, total, rows, contacts)
    }

    async fn count_businesses(&self, filter: &BusinessFilter) -> Result<i64, RepoError> {
        queried("count", 1);
        self.run(Op::Read, || async |conn| count_filtered(conn, filter).await)
            .await
    }

    async fn list_page(
        &self,
        query: &ListQuery,
        total: i64,
    ) -> Result<Fetched<BusinessPage>, RepoError> {
        let (rows, contacts, statements) = self
            .run(Op::Read, || {
                async |conn| {
                    conn.build_transaction()
                        .repeatable_read()
                        .read_only()
                        .run(async |conn| load_page(conn, query, total).await)
                        .await
                }
            })
            .await?;
        queried("list", statements);
        page_from_rows(query, total, rows, contacts)
    }

    async fn page_ids(&self, query: &ListQuery, total: i64) -> Result<Vec<i32>, RepoError> {
        if query.offset() < total {
            queried("page_ids", 1);
        }
        self.run(Op::Read, || {
            async |conn| load_page_ids(conn, query, total).await
        })
        .await
    }

    async fn listed_rows(&self, ids: &[i32]) -> Result<Vec<BusinessWithContacts>, RepoError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        queried("rows", 1);
        self.run(Op::Read, || async |conn| load_listed(conn, ids).await)
            .await
    }

    async fn business_detail(&self, id: i32) -> Result<Fetched<BusinessDetail>, RepoError> {
        queried("detail", 1);
        let rows = self
            .run(Op::Read, || async |conn| load_detail(conn, id).await)
            .await?;
        let rows = rows.ok_or(RepoError::not_found(Entity::Business, id))?;
        Ok(Fetched::bypass(detail_from_rows(rows)))
    }

    async fn create_business(&self, new: NewBusiness) -> Result<Business, RepoError> {
        queried("create_business", 1);
        let row: BusinessRow = self
            .run(Op::Write, || {
                async |conn| {
                    // `updated_at` has no default in the schema: the writer sets it.
                    diesel::insert_into(business::table)
                        .values((
                            InsertBusiness::from(&new),
                            business::created_at.eq(utc_now()),
                            business::updated_at.eq(utc_now()),
                        ))
                        .returning(BusinessRow::as_returning())
                        .get_result(conn)
                        .await
                }
            })
            .await?;
        Ok(row.into())
    }

    async fn update_business(&self, id: i32, patch: BusinessPatch) -> Result<Business, RepoError> {
        queried("update_business", 1);
        let changes = (!patch.is_empty()).then(|| BusinessChanges::from(patch));
        let row: Option<BusinessRow> = self
            .run(Op::Write, || {
                async |conn| match &changes {
                    // Nothing to change: answer the business as it is.
                    None => business::table
                        .find(id)
                        .select(BusinessRow::as_select())
                        .first(conn)
                        .await
                        .optional(),
                    Some(changes) => diesel::update(business::table.find(id))
                        .set(changes)
                        .returning(BusinessRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional(),
                }
            })
            .await?;
        row.map(Business::from)
            .ok_or(RepoError::not_found(Entity::Business, id))
    }

    async fn delete_business(&self, id: i32) -> Result<(), RepoError> {
        queried("delete_business", 1);
        let deleted = self
            .run(Op::Write, || {
                async |conn| diesel::delete(business::table.find(id)).execute(conn).await
            })
            .await?;
        if deleted == 0 {
            return Err(RepoError::not_found(Entity::Business, id));
        }
        Ok(())
    }

    async fn enrich(&self, id: i32, run: EnrichmentRun) -> Result<BusinessDetail, RepoError> {
        let status = run.status().as_str();
        let rows = self
            .run(Op::Write, || {
                async |conn| {
                    // Answers the transaction's time, for the rows inserted below.
                    let Some(now) = diesel::update(business::table.find(id))
                        .set(business::enrichment_status.eq(status))
                        .returning(utc_now())
                        .get_result::<chrono::NaiveDateTime>(conn)
                        .await
                        .optional()?
                    else {
                        return Ok::<_, DieselError>(None);
                    };
                    if !run.contacts.is_empty() {
                        let contacts: Vec<_> = run
                            .contacts
                            .iter()
                            .map(|c| {
                                (
                                    InsertContact::new(id, c),
                                    contact::created_at.eq(now),
                                    contact::updated_at.eq(now),
                                )
                            })
                            .collect();
                        diesel::insert_into(contact::table)
                            .values(contacts)
                            .execute(conn)
                            .await?;
                    }
                    if !run.logs.is_empty() {
                        let logs: Vec<_> = run
                            .logs
                            .iter()
                            .map(|l| InsertLog::new(id, l, now))
                            .collect();
                        diesel::insert_into(enrichment_log::table)
                            .values(logs)
                            .execute(conn)
                            .await?;
                    }
                    load_detail(conn, id).await
                }
            })
            .await?;
        queried("enrich", 4);
        let rows = rows.ok_or(RepoError::not_found(Entity::Business, id))?;
        Ok(detail_from_rows(rows))
    }

    async fn create_contact(
        &self,
        business_id: i32,
        new: NewContact,
    ) -> Result<Contact, RepoError> {
        queried("create_contact", 1);
        self.run(Op::Write, || {
            async |conn| {
                match diesel::insert_into(contact::table)
                    .values((
                        InsertContact::new(business_id, &new),
                        contact::created_at.eq(utc_now()),
                        contact::updated_at.eq(utc_now()),
                    ))
                    .returning(ContactRow::as_returning())
                    .get_result::<ContactRow>(conn)
                    .await
                {
                    Ok(row) => Ok(Ok(Contact::from(row))),
                    // The business does not exist (or was deleted meanwhile).
                    Err(e) if is_foreign_key_violation(&e) => {
                        Ok(Err(RepoError::not_found(Entity::Business, business_id)))
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .await?
    }

    async fn delete_contact(&self, id: i32) -> Result<Contact, RepoError> {
        queried("delete_contact", 1);
        self.run(Op::Write, || {
            async |conn| {
                diesel::delete(contact::table.find(id))
                    .returning(ContactRow::as_returning())
                    .get_result::<ContactRow>(conn)
                    .await
                    .optional()
            }
        })
        .await?
        .map(Contact::from)
        .ok_or(RepoError::not_found(Entity::Contact, id))
    }

    async fn create_message(
        &self,
        business_id: i32,
        new: NewMessage,
    ) -> Result<OutreachMessage, RepoError> {
        queried("create_message", 3);
        let outcome = self
            .run(Op::Write, || {
                async |conn| {
                    // Locks the business against deletion until the message is in.
                    let exists = business::table
                        .find(business_id)
                        .select(business::id)
                        .for_key_share()
                        .first::<i32>(conn)
                        .await
                        .optional()?;
                    if exists.is_none() {
                        return Ok::<_, DieselError>(Err(RepoError::not_found(
                            Entity::Business,
                            business_id,
                        )));
                    }
                    if let Some(contact_id) = new.contact_id {
                        let owner = contact::table
                            .find(contact_id)
                            .select(contact::business_id)
                            .for_key_share()
                            .first::<i32>(conn)
                            .await
                            .optional()?;
                        if owner != Some(business_id) {
                            return Ok(Err(ValidationError::field(
                                "contact_id",
                                format!("{contact_id} is not a contact of business {business_id}"),
                            )
                            .into()));
                        }
                    }
                    let row: MessageRow = diesel::insert_into(outreach_message::table)
                        .values((
                            outreach_message::business_id.eq(business_id),
                            outreach_message::contact_id.eq(new.contact_id),
                            outreach_message::message_text.eq(&new.message_text),
                            outreach_message::generated_at.eq(utc_now()),
                        ))
                        .returning(MessageRow::as_returning())
                        .get_result(conn)
                        .await?;
                    Ok(Ok(row))
                }
            })
            .await?;
        Ok(outcome?.into())
    }

    async fn update_message_status(
        &self,
        id: i32,
        update: MessageStatusUpdate,
    ) -> Result<OutreachMessage, RepoError> {
        queried("update_message", 1);
        let status = update.status();
        let row = self
            .run(Op::Write, || {
                async |conn| {
                    let target = diesel::update(outreach_message::table.find(id));
                    if status == MessageStatus::Sent {
                        target
                            .set((
                                outreach_message::status.eq(status.as_str()),
                                outreach_message::sent_at.eq(
                                    diesel::dsl::sql::<Nullable<Timestamp>>(
                                        "timezone('UTC', now())",
                                    ),
                                ),
                            ))
                            .returning(MessageRow::as_returning())
                            .get_result::<MessageRow>(conn)
                            .await
                    } else {
                        target
                            .set(outreach_message::status.eq(status.as_str()))
                            .returning(MessageRow::as_returning())
                            .get_result::<MessageRow>(conn)
                            .await
                    }
                    .optional()
                }
            })
            .await?;
        row.map(OutreachMessage::from)
            .ok_or(RepoError::not_found(Entity::Message, id))
    }

    async fn health(&self) -> Health {
        let ping = async {
            let mut conn = self.conn().await.ok()?;
            diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
        };
        let database = tokio::time::timeout(Duration::from_secs(2), ping)
            .await
            .ok()
            .flatten()
            .is_some();
        Health {
            database,
            cache: "disabled",
            near_tier: None,
            change_feed: None,
        }
    }
}
