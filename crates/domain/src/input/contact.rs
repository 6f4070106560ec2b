//! The body of `POST /api/businesses/{id}/contacts`, and a contact of an enrichment run.

use serde::Deserialize;
use utoipa::ToSchema;

use super::schema;
use super::{object, storable_all, typed};
use crate::ValidationError;
use crate::validation::email;

/// A new contact of a business.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub title: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::email)]
    pub email: Option<String>,
    /// Defaults to `false`.
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub phone: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub linkedin_url: Option<String>,
    /// Defaults to `false`.
    #[serde(default)]
    pub is_primary: Option<bool>,
}

const CONTACT_FIELDS: &[&str] = &[
    "name",
    "title",
    "email",
    "email_verified",
    "phone",
    "linkedin_url",
    "is_primary",
];
const READ_ONLY_RECORD: &[&str] = &["id", "business_id", "created_at", "updated_at"];

impl NewContact {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let new: Self = typed(object(bytes, CONTACT_FIELDS, READ_ONLY_RECORD)?)?;
        new.validate("")?;
        Ok(new)
    }

    /// Checks every field; `prefix` is put before field names in errors (`contacts[0].`).
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        storable_all(
            prefix,
            [
                ("name", self.name.as_deref()),
                ("title", self.title.as_deref()),
                ("email", self.email.as_deref()),
                ("phone", self.phone.as_deref()),
                ("linkedin_url", self.linkedin_url.as_deref()),
            ],
        )?;
        if let Some(e) = &self.email {
            email(&format!("{prefix}email"), e)?;
        }
        Ok(())
    }
}
