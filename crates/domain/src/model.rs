//! The records the dashboard reads, serialized exactly as the original backend did
//! (snake_case fields, every field present, `null` when unset).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;

/// Where a business stands in the enrichment pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrichmentStatus {
    Pending,
    Enriched,
    Failed,
}

impl EnrichmentStatus {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Enriched, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Enriched => "enriched",
            Self::Failed => "failed",
        }
    }

    /// Parses a submitted value; `field` names it in the error.
    pub fn parse(field: &str, s: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                ValidationError::field(field, "must be one of pending, enriched, failed")
            })
    }
}

/// Where an outreach message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Generated,
    Sent,
    Failed,
}

impl MessageStatus {
    pub const ALL: [Self; 3] = [Self::Generated, Self::Sent, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| ValidationError::field(field, "must be one of generated, sent, failed"))
    }
}

/// A status column as stored. The original schema's status columns are plain text, so
/// another writer (the original backend, a script) may have stored a value this service
/// never writes: it is answered as stored, and counts as none of the known values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stored<T> {
    Known(T),
    Other(String),
}

/// The status enums: their values and text form.
pub trait StatusValue: Copy + 'static {
    const ALL: &'static [Self];
    fn text(self) -> &'static str;
}

impl StatusValue for EnrichmentStatus {
    const ALL: &'static [Self] = &Self::ALL;
    fn text(self) -> &'static str {
        self.as_str()
    }
}

impl StatusValue for MessageStatus {
    const ALL: &'static [Self] = &Self::ALL;
    fn text(self) -> &'static str {
        self.as_str()
    }
}

impl<T: StatusValue> Stored<T> {
    /// Reads a stored value: never fails.
    pub fn from_stored(s: String) -> Self {
        match T::ALL.iter().find(|v| v.text() == s) {
            Some(v) => Self::Known(*v),
            None => Self::Other(s),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(v) => v.text(),
            Self::Other(s) => s,
        }
    }

    /// The known value, or `None` for a value this service does not know.
    pub fn known(&self) -> Option<T> {
        match self {
            Self::Known(v) => Some(*v),
            Self::Other(_) => None,
        }
    }
}

impl<T> From<T> for Stored<T> {
    fn from(v: T) -> Self {
        Self::Known(v)
    }
}

impl<T: StatusValue> PartialEq<T> for Stored<T>
where
    T: PartialEq,
{
    fn eq(&self, other: &T) -> bool {
        self.known().is_some_and(|v| v == *other)
    }
}

impl<T: StatusValue> Serialize for Stored<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: StatusValue> Deserialize<'de> for Stored<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from_stored)
    }
}

/// A business lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Business {
    pub id: i32,
    pub name: String,
    pub address: Option<String>,
    pub city: Option<String>,
    /// `NJ` unless given; `null` only in rows another writer stored so.
    pub state: Option<String>,
    pub zip: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub business_type: Option<String>,
    pub industry: Option<String>,
    pub employee_count: Option<i32>,
    pub year_founded: Option<i32>,
    pub google_maps_url: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// `pending`, `enriched` or `failed`; a row another writer stored with any other value
    /// is answered with it as stored.
    #[schema(value_type = String, example = "pending")]
    pub enrichment_status: Stored<EnrichmentStatus>,
    pub source: String,
    #[serde(with = "crate::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::timestamp")]
    pub updated_at: DateTime<Utc>,
}

/// A person at a business.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub id: i32,
    pub business_id: i32,
    pub name: Option<String>,
    pub title: Option<String>,
    pub email: Option<String>,
    /// `false` unless given; `null` only in rows another writer stored so.
    pub email_verified: Option<bool>,
    pub phone: Option<String>,
    pub linkedin_url: Option<String>,
    pub is_primary: bool,
    #[serde(with = "crate::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::timestamp")]
    pub updated_at: DateTime<Utc>,
}

/// One call to an enrichment service made for a business.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnrichmentLog {
    pub id: i32,
    pub business_id: i32,
    pub service: String,
    pub status: String,
    /// The text stored: for a value sent as JSON, its JSON text (as the original backend's
    /// `JSON.stringify`); a string sent is stored and answered verbatim.
    pub request_data: Option<String>,
    /// As `request_data`.
    pub response_data: Option<String>,
    pub error_message: Option<String>,
    #[serde(with = "crate::timestamp")]
    pub created_at: DateTime<Utc>,
}

/// A generated outreach message, possibly addressed to one contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutreachMessage {
    pub id: i32,
    pub business_id: i32,
    pub contact_id: Option<i32>,
    pub message_text: String,
    #[serde(with = "crate::timestamp")]
    pub generated_at: DateTime<Utc>,
    #[serde(with = "crate::timestamp::option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub sent_at: Option<DateTime<Utc>>,
    /// `generated`, `sent` or `failed`; a row another writer stored with any other value
    /// is answered with it as stored.
    #[schema(value_type = String, example = "generated")]
    pub status: Stored<MessageStatus>,
}

/// A business as the list shows it: with all its contacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessWithContacts {
    #[serde(flatten)]
    pub business: Business,
    pub contacts: Vec<Contact>,
}

/// A business as its detail page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessDetail {
    #[serde(flatten)]
    pub business: Business,
    /// Every contact, oldest first.
    pub contacts: Vec<Contact>,
    /// The 10 newest enrichment logs, newest first.
    pub enrichment_logs: Vec<EnrichmentLog>,
    /// The 5 newest outreach messages by `generated_at`, newest first.
    pub outreach_messages: Vec<OutreachMessage>,
}

/// Pagination figures of a list answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PageMeta {
    pub total: i64,
    pub page: i64,
    pub limit: i64,
    /// `ceil(total / limit)`; 0 when `total` is 0.
    #[serde(rename = "totalPages")]
    pub total_pages: i64,
}

impl PageMeta {
    pub fn new(total: i64, page: u32, limit: u32) -> Self {
        let limit = i64::from(limit.max(1));
        Self {
            total,
            page: i64::from(page),
            limit,
            total_pages: (total + limit - 1) / limit,
        }
    }
}

/// One page of businesses, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessPage {
    pub data: Vec<BusinessWithContacts>,
    pub meta: PageMeta,
}

/// The dashboard's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total_businesses: i64,
    pub enriched_businesses: i64,
    pub pending_enrichment: i64,
    pub total_contacts: i64,
    pub messages_sent: i64,
    /// Messages whose status is `generated`.
    pub messages_pending: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_pages_rounds_up_and_is_zero_for_no_rows() {
        assert_eq!(PageMeta::new(0, 1, 20).total_pages, 0);
        assert_eq!(PageMeta::new(1, 1, 20).total_pages, 1);
        assert_eq!(PageMeta::new(20, 1, 20).total_pages, 1);
        assert_eq!(PageMeta::new(21, 1, 20).total_pages, 2);
        assert_eq!(PageMeta::new(100, 1, 1).total_pages, 100);
    }

    #[test]
    fn timestamps_serialize_as_javascript_dates() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T18:31:25.123456Z")
            .expect("valid timestamp")
            .with_timezone(&Utc);
        let msg = OutreachMessage {
            id: 1,
            business_id: 2,
            contact_id: None,
            message_text: "hi".into(),
            generated_at: t,
            sent_at: None,
            status: MessageStatus::Generated.into(),
        };
        let json = serde_json::to_value(&msg).expect("serializes");
        assert_eq!(json["generated_at"], "2026-11-25T18:31:25.123Z");
        assert_eq!(json["sent_at"], serde_json::Value::Null);
        assert_eq!(json["status"], "generated");
        let back: OutreachMessage = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back.generated_at.timestamp_millis(), t.timestamp_millis());
    }

    #[test]
    fn a_status_another_writer_stored_is_answered_as_stored() {
        let draft = Stored::<MessageStatus>::from_stored("draft".into());
        assert_eq!(draft.known(), None);
        assert_ne!(draft, MessageStatus::Generated);
        assert_eq!(serde_json::to_value(&draft).expect("serializes"), "draft");
        let sent = Stored::<MessageStatus>::from_stored("sent".into());
        assert_eq!(sent, MessageStatus::Sent);
        assert_eq!(sent.as_str(), "sent");
        let back: Stored<EnrichmentStatus> =
            serde_json::from_str(r#""Enriched""#).expect("deserializes");
        assert_eq!(back, Stored::Other("Enriched".into()));
    }
}
