//! The bodies of `POST /api/businesses/{id}/messages` and `PATCH /api/messages/{id}`.

use serde::Deserialize;
use utoipa::ToSchema;

use super::schema;
use super::{check_required_text, int, object, typed};
use crate::validation::storable;
use crate::{MessageStatus, ValidationError};

/// A new outreach message, as `POST /api/businesses/{id}/messages` accepts it.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    #[schema(schema_with = schema::message_text)]
    pub message_text: String,
    /// A contact of the same business.
    #[serde(default, deserialize_with = "int")]
    pub contact_id: Option<i32>,
}

impl NewMessage {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let new: Self = typed(object(
            bytes,
            &["message_text", "contact_id"],
            &["id", "business_id", "status", "generated_at", "sent_at"],
        )?)?;
        storable("message_text", &new.message_text)?;
        check_required_text("message_text", &new.message_text)?;
        Ok(new)
    }
}

/// A status an outreach message may be moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Failed,
}

/// `PATCH /api/messages/{id}`: `sent` also sets `sent_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageStatusUpdate {
    pub status: DeliveryStatus,
}

impl MessageStatusUpdate {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        typed(object(bytes, &["status"], &[])?)
    }

    pub fn status(self) -> MessageStatus {
        match self.status {
            DeliveryStatus::Sent => MessageStatus::Sent,
            DeliveryStatus::Failed => MessageStatus::Failed,
        }
    }
}
