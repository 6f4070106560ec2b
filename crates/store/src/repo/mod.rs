//! [`PgStore`]: the repository port on PostgreSQL.
//!
//! Reads that need more than one statement run in one REPEATABLE READ, READ ONLY
//! transaction, so a page and its total (or a business and its children) come from one
//! snapshot. Every write that touches several rows runs in one transaction.
//!
//! `errors.rs` tells which failures may be retried; `queries.rs` holds the reads' SQL,
//! row types and decoding.

mod errors;
mod queries;

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Duration;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Nullable, Timestamp};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use letip_domain::RepoResult;
use letip_domain::{
    Business, BusinessDetail, BusinessFilter, BusinessPage, BusinessPatch, BusinessWithContacts,
    Cause, Contact, EnrichmentRun, Entity, Fetched, Health, ListQuery, MessageStatus,
    MessageStatusUpdate, NewBusiness, NewContact, NewMessage, OutreachMessage, RepoError,
    Repository, Stats, ValidationError,
};

use crate::db::{PgConn, PgPool};
use crate::rows::{
    BusinessChanges, BusinessRow, ContactRow, InsertBusiness, InsertContact, InsertLog, MessageRow,
    utc_now,
};
use crate::schema::{business, contact, enrichment_log, outreach_message};

use errors::*;
use queries::*;

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

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn conn(&self) -> RepoResult<PgConn> {
        self.pool
            .get()
            .await
            .map_err(|e| RepoError::Unavailable(Cause::new(e)))
    }

    /// Runs the call `make` makes on a pooled connection. A connection that turns out to
    /// be dead (its session was ended while it sat in the pool) is thrown away and a new
    /// call runs on a new one, when [`retryable`] allows, until every pooled connection could have been replaced.
    async fn run<T, F, M>(&self, op: Op, make: M) -> RepoResult<T>
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
                Err(e) => return Err(RepoError::Unavailable(Cause::new(e))),
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
    async fn stats(&self) -> RepoResult<Fetched<Stats>> {
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

    async fn list_businesses(&self, query: &ListQuery) -> RepoResult<Fetched<BusinessPage>> {
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

    async fn count_businesses(&self, filter: &BusinessFilter) -> RepoResult<i64> {
        queried("count", 1);
        self.run(Op::Read, || async |conn| count_filtered(conn, filter).await)
            .await
    }

    async fn list_page(&self, query: &ListQuery, total: i64) -> RepoResult<Fetched<BusinessPage>> {
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

    async fn page_ids(&self, query: &ListQuery, total: i64) -> RepoResult<Vec<i32>> {
        if query.offset() < total {
            queried("page_ids", 1);
        }
        self.run(Op::Read, || {
            async |conn| load_page_ids(conn, query, total).await
        })
        .await
    }

    async fn listed_rows(&self, ids: &[i32]) -> RepoResult<Vec<BusinessWithContacts>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        queried("rows", 1);
        self.run(Op::Read, || async |conn| load_listed(conn, ids).await)
            .await
    }

    async fn business_detail(&self, id: i32) -> RepoResult<Fetched<BusinessDetail>> {
        queried("detail", 1);
        let rows = self
            .run(Op::Read, || async |conn| load_detail(conn, id).await)
            .await?;
        let rows = rows.ok_or(RepoError::not_found(Entity::Business, id))?;
        Ok(Fetched::bypass(detail_from_rows(rows)))
    }

    async fn create_business(&self, new: NewBusiness) -> RepoResult<Business> {
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

    async fn update_business(&self, id: i32, patch: BusinessPatch) -> RepoResult<Business> {
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

    async fn delete_business(&self, id: i32) -> RepoResult<()> {
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

    async fn enrich(&self, id: i32, run: EnrichmentRun) -> RepoResult<BusinessDetail> {
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

    async fn create_contact(&self, business_id: i32, new: NewContact) -> RepoResult<Contact> {
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

    async fn delete_contact(&self, id: i32) -> RepoResult<Contact> {
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
    ) -> RepoResult<OutreachMessage> {
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
    ) -> RepoResult<OutreachMessage> {
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
