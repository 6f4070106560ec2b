//! The statements of each [`Mutation`], run inside the transaction
//! [`super::PgStore::write`] opens for it.

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Nullable, Timestamp};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use letip_domain::{Contact, Entity, MessageStatus, Mutated, Mutation, RepoError, ValidationError};

use super::errors::is_foreign_key_violation;
use super::queries::{detail_from_rows, load_detail};
use crate::rows::{
    BusinessChanges, BusinessRow, ContactRow, InsertBusiness, InsertContact, InsertLog, MessageRow,
    utc_now,
};
use crate::schema::{business, contact, enrichment_log, outreach_message};

/// What a mutation answers once its statements ran: its answer, or why it was refused
/// (a record it names does not exist, a contact of another business); a refused one
/// wrote nothing.
pub(super) type Applied = Result<Mutated, RepoError>;

/// The name a mutation is counted under in `letip_db_queries_total`, and the statements
/// it sends.
pub(super) fn counted(m: &Mutation) -> (&'static str, u64) {
    match m {
        Mutation::CreateBusiness(_) => ("create_business", 1),
        Mutation::UpdateBusiness { .. } => ("update_business", 1),
        Mutation::DeleteBusiness { .. } => ("delete_business", 1),
        Mutation::Enrich { .. } => ("enrich", 4),
        Mutation::CreateContact { .. } => ("create_contact", 1),
        Mutation::DeleteContact { .. } => ("delete_contact", 1),
        Mutation::CreateMessage { .. } => ("create_message", 3),
        Mutation::UpdateMessage { .. } => ("update_message", 1),
    }
}

/// Runs `m`'s statements on `conn`, inside the caller's transaction.
pub(super) async fn apply(conn: &mut AsyncPgConnection, m: &Mutation) -> QueryResult<Applied> {
    match m {
        Mutation::CreateBusiness(new) => {
            // `updated_at` has no default in the schema: the writer sets it.
            let row: BusinessRow = diesel::insert_into(business::table)
                .values((
                    InsertBusiness::from(new),
                    business::created_at.eq(utc_now()),
                    business::updated_at.eq(utc_now()),
                ))
                .returning(BusinessRow::as_returning())
                .get_result(conn)
                .await?;
            Ok(Ok(Mutated::Business(row.into())))
        }
        Mutation::UpdateBusiness { id, patch } => {
            let row: Option<BusinessRow> = if patch.is_empty() {
                // Nothing to change: answer the business as it is.
                business::table
                    .find(*id)
                    .select(BusinessRow::as_select())
                    .first(conn)
                    .await
                    .optional()?
            } else {
                diesel::update(business::table.find(*id))
                    .set(BusinessChanges::from(patch.clone()))
                    .returning(BusinessRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?
            };
            Ok(row
                .map(|r| Mutated::Business(r.into()))
                .ok_or(RepoError::not_found(Entity::Business, *id)))
        }
        Mutation::DeleteBusiness { id } => {
            let deleted = diesel::delete(business::table.find(*id))
                .execute(conn)
                .await?;
            Ok(if deleted == 0 {
                Err(RepoError::not_found(Entity::Business, *id))
            } else {
                Ok(Mutated::Deleted)
            })
        }
        Mutation::Enrich { id, run } => enrich(conn, *id, run).await,
        Mutation::CreateContact { business_id, new } => {
            match diesel::insert_into(contact::table)
                .values((
                    InsertContact::new(*business_id, new),
                    contact::created_at.eq(utc_now()),
                    contact::updated_at.eq(utc_now()),
                ))
                .returning(ContactRow::as_returning())
                .get_result::<ContactRow>(conn)
                .await
            {
                Ok(row) => Ok(Ok(Mutated::Contact(Contact::from(row)))),
                // The business does not exist (or was deleted meanwhile).
                Err(e) if is_foreign_key_violation(&e) => {
                    Ok(Err(RepoError::not_found(Entity::Business, *business_id)))
                }
                Err(e) => Err(e),
            }
        }
        Mutation::DeleteContact { id } => Ok(diesel::delete(contact::table.find(*id))
            .returning(ContactRow::as_returning())
            .get_result::<ContactRow>(conn)
            .await
            .optional()?
            .map(|c| Mutated::Contact(c.into()))
            .ok_or(RepoError::not_found(Entity::Contact, *id))),
        Mutation::CreateMessage { business_id, new } => {
            create_message(conn, *business_id, new).await
        }
        Mutation::UpdateMessage { id, update } => {
            let target = diesel::update(outreach_message::table.find(*id));
            let status = update.status();
            let row = if status == MessageStatus::Sent {
                target
                    .set((
                        outreach_message::status.eq(status.as_str()),
                        outreach_message::sent_at.eq(diesel::dsl::sql::<Nullable<Timestamp>>(
                            "timezone('UTC', now())",
                        )),
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
            .optional()?;
            Ok(row
                .map(|m| Mutated::Message(m.into()))
                .ok_or(RepoError::not_found(Entity::Message, *id)))
        }
    }
}

async fn enrich(
    conn: &mut AsyncPgConnection,
    id: i32,
    run: &letip_domain::EnrichmentRun,
) -> QueryResult<Applied> {
    // Answers the transaction's time, for the rows inserted below.
    let Some(now) = diesel::update(business::table.find(id))
        .set(business::enrichment_status.eq(run.status().as_str()))
        .returning(utc_now())
        .get_result::<chrono::NaiveDateTime>(conn)
        .await
        .optional()?
    else {
        return Ok(Err(RepoError::not_found(Entity::Business, id)));
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
    let rows = load_detail(conn, id).await?.ok_or(DieselError::NotFound)?;
    Ok(Ok(Mutated::Detail(detail_from_rows(rows))))
}

async fn create_message(
    conn: &mut AsyncPgConnection,
    business_id: i32,
    new: &letip_domain::NewMessage,
) -> QueryResult<Applied> {
    // Locks the business against deletion until the message is in.
    let exists = business::table
        .find(business_id)
        .select(business::id)
        .for_key_share()
        .first::<i32>(conn)
        .await
        .optional()?;
    if exists.is_none() {
        return Ok(Err(RepoError::not_found(Entity::Business, business_id)));
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
    Ok(Ok(Mutated::Message(row.into())))
}
