//! Row types: what diesel reads and writes, and their conversion to domain records.
//!
//! The schema is the original backend's, which admits more than this service writes:
//! status columns are plain text, `state` and `email_verified` are nullable, and no text
//! column has a length limit. Every row converts to a record whatever it holds, so
//! reading never fails on a stored value. Timestamps are `TIMESTAMP(3)` without time
//! zone holding UTC.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::expression::SqlLiteral;
use diesel::prelude::*;
use diesel::sql_types::Timestamp;
use letip_domain::{
    Business, BusinessPatch, Contact, EnrichmentLog, NewBusiness, NewContact, NewEnrichmentLog,
    OutreachMessage, Stored,
};

use crate::schema::{business, contact, enrichment_log, outreach_message};

/// The current time as the schema stores it: UTC wall-clock time, whatever the session's
/// time zone. `now()` is the transaction's start, so every row a transaction writes gets
/// the same time.
pub(crate) fn utc_now() -> SqlLiteral<Timestamp> {
    diesel::dsl::sql("timezone('UTC', now())")
}

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = business, check_for_backend(diesel::pg::Pg))]
pub(crate) struct BusinessRow {
    id: i32,
    name: String,
    address: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    phone: Option<String>,
    website: Option<String>,
    business_type: Option<String>,
    industry: Option<String>,
    employee_count: Option<i32>,
    year_founded: Option<i32>,
    google_maps_url: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    enrichment_status: String,
    source: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl From<BusinessRow> for Business {
    fn from(r: BusinessRow) -> Self {
        Self {
            enrichment_status: Stored::from_stored(r.enrichment_status),
            id: r.id,
            name: r.name,
            address: r.address,
            city: r.city,
            state: r.state,
            zip: r.zip,
            phone: r.phone,
            website: r.website,
            business_type: r.business_type,
            industry: r.industry,
            employee_count: r.employee_count,
            year_founded: r.year_founded,
            google_maps_url: r.google_maps_url,
            latitude: r.latitude,
            longitude: r.longitude,
            source: r.source,
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        }
    }
}

/// `None` for `state` or `source` lets the column default apply.
#[derive(Debug, Insertable)]
#[diesel(table_name = business)]
pub(crate) struct InsertBusiness<'a> {
    name: &'a str,
    address: Option<&'a str>,
    city: Option<&'a str>,
    state: Option<&'a str>,
    zip: Option<&'a str>,
    phone: Option<&'a str>,
    website: Option<&'a str>,
    business_type: Option<&'a str>,
    industry: Option<&'a str>,
    employee_count: Option<i32>,
    year_founded: Option<i32>,
    google_maps_url: Option<&'a str>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    source: Option<&'a str>,
}

impl<'a> From<&'a NewBusiness> for InsertBusiness<'a> {
    fn from(n: &'a NewBusiness) -> Self {
        Self {
            name: &n.name,
            address: n.address.as_deref(),
            city: n.city.as_deref(),
            state: n.state.as_deref(),
            zip: n.zip.as_deref(),
            phone: n.phone.as_deref(),
            website: n.website.as_deref(),
            business_type: n.business_type.as_deref(),
            industry: n.industry.as_deref(),
            employee_count: n.employee_count,
            year_founded: n.year_founded,
            google_maps_url: n.google_maps_url.as_deref(),
            latitude: n.latitude,
            longitude: n.longitude,
            source: n.source.as_deref(),
        }
    }
}

/// A field that is `None` is left unchanged; `Some(None)` sets NULL.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = business)]
pub(crate) struct BusinessChanges {
    name: Option<String>,
    address: Option<Option<String>>,
    city: Option<Option<String>>,
    state: Option<String>,
    zip: Option<Option<String>>,
    phone: Option<Option<String>>,
    website: Option<Option<String>>,
    business_type: Option<Option<String>>,
    industry: Option<Option<String>>,
    employee_count: Option<Option<i32>>,
    year_founded: Option<Option<i32>>,
    google_maps_url: Option<Option<String>>,
    latitude: Option<Option<f64>>,
    longitude: Option<Option<f64>>,
    source: Option<String>,
}

impl From<BusinessPatch> for BusinessChanges {
    fn from(p: BusinessPatch) -> Self {
        Self {
            // The domain rejects `null` for these three, so flattening loses nothing.
            name: p.name.flatten(),
            state: p.state.flatten(),
            source: p.source.flatten(),
            address: p.address,
            city: p.city,
            zip: p.zip,
            phone: p.phone,
            website: p.website,
            business_type: p.business_type,
            industry: p.industry,
            employee_count: p.employee_count,
            year_founded: p.year_founded,
            google_maps_url: p.google_maps_url,
            latitude: p.latitude,
            longitude: p.longitude,
        }
    }
}

/// Also read from the JSON rows of a detail (see `repo::DETAIL_SQL`).
#[derive(Debug, Queryable, Selectable, serde::Deserialize)]
#[diesel(table_name = contact, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ContactRow {
    id: i32,
    business_id: i32,
    name: Option<String>,
    title: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    phone: Option<String>,
    linkedin_url: Option<String>,
    is_primary: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl From<ContactRow> for Contact {
    fn from(r: ContactRow) -> Self {
        Self {
            id: r.id,
            business_id: r.business_id,
            name: r.name,
            title: r.title,
            email: r.email,
            email_verified: r.email_verified,
            phone: r.phone,
            linkedin_url: r.linkedin_url,
            is_primary: r.is_primary,
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = contact)]
pub(crate) struct InsertContact<'a> {
    business_id: i32,
    name: Option<&'a str>,
    title: Option<&'a str>,
    email: Option<&'a str>,
    email_verified: bool,
    phone: Option<&'a str>,
    linkedin_url: Option<&'a str>,
    is_primary: bool,
}

/// The insert sets `created_at` and `updated_at` beside these: `updated_at` has no
/// default in the schema.
impl<'a> InsertContact<'a> {
    pub(crate) fn new(business_id: i32, c: &'a NewContact) -> Self {
        Self {
            business_id,
            name: c.name.as_deref(),
            title: c.title.as_deref(),
            email: c.email.as_deref(),
            email_verified: c.email_verified.unwrap_or(false),
            phone: c.phone.as_deref(),
            linkedin_url: c.linkedin_url.as_deref(),
            is_primary: c.is_primary.unwrap_or(false),
        }
    }
}

/// Also read from the JSON rows of a detail (see `repo::DETAIL_SQL`).
#[derive(Debug, Queryable, Selectable, serde::Deserialize)]
#[diesel(table_name = enrichment_log, check_for_backend(diesel::pg::Pg))]
pub(crate) struct EnrichmentLogRow {
    id: i32,
    business_id: i32,
    service: String,
    status: String,
    request_data: Option<String>,
    response_data: Option<String>,
    error_message: Option<String>,
    created_at: NaiveDateTime,
}

impl From<EnrichmentLogRow> for EnrichmentLog {
    fn from(r: EnrichmentLogRow) -> Self {
        Self {
            id: r.id,
            business_id: r.business_id,
            service: r.service,
            status: r.status,
            request_data: r.request_data,
            response_data: r.response_data,
            error_message: r.error_message,
            created_at: utc(r.created_at),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = enrichment_log)]
pub(crate) struct InsertLog<'a> {
    business_id: i32,
    service: &'a str,
    status: &'a str,
    request_data: Option<String>,
    response_data: Option<String>,
    error_message: Option<&'a str>,
    created_at: NaiveDateTime,
}

impl<'a> InsertLog<'a> {
    pub(crate) fn new(business_id: i32, l: &'a NewEnrichmentLog, now: NaiveDateTime) -> Self {
        Self {
            business_id,
            service: &l.service,
            status: &l.status,
            request_data: l.request_text(),
            response_data: l.response_text(),
            error_message: l.error_message.as_deref(),
            created_at: now,
        }
    }
}

/// Also read from the JSON rows of a detail (see `repo::DETAIL_SQL`).
#[derive(Debug, Queryable, Selectable, serde::Deserialize)]
#[diesel(table_name = outreach_message, check_for_backend(diesel::pg::Pg))]
pub(crate) struct MessageRow {
    id: i32,
    business_id: i32,
    contact_id: Option<i32>,
    message_text: String,
    generated_at: NaiveDateTime,
    sent_at: Option<NaiveDateTime>,
    status: String,
}

impl From<MessageRow> for OutreachMessage {
    fn from(r: MessageRow) -> Self {
        Self {
            status: Stored::from_stored(r.status),
            id: r.id,
            business_id: r.business_id,
            contact_id: r.contact_id,
            message_text: r.message_text,
            generated_at: utc(r.generated_at),
            sent_at: r.sent_at.map(utc),
        }
    }
}
