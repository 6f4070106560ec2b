//! The body of `POST /api/enrich/{id}`: an outcome, contacts and logs.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::schema;
use super::{RUN_ITEMS_MAX, contact::NewContact};
use super::{check_required_text, object, storable_all, typed};
use crate::validation::indexed;
use crate::{EnrichmentStatus, ValidationError};

/// The outcome an enrichment run may record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrichmentOutcome {
    Enriched,
    Failed,
}

impl From<EnrichmentOutcome> for EnrichmentStatus {
    fn from(o: EnrichmentOutcome) -> Self {
        match o {
            EnrichmentOutcome::Enriched => Self::Enriched,
            EnrichmentOutcome::Failed => Self::Failed,
        }
    }
}

/// One call an enrichment run made.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnrichmentLog {
    #[schema(schema_with = schema::log_label)]
    pub service: String,
    #[schema(schema_with = schema::log_label)]
    pub status: String,
    #[serde(default)]
    #[schema(schema_with = schema::log_data)]
    pub request_data: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = schema::log_data)]
    pub response_data: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub error_message: Option<String>,
}

impl NewEnrichmentLog {
    /// Checks every field; `prefix` is put before field names in errors (`logs[0].`).
    /// `service` and `status` are indexed, so their length is bounded.
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        let (request, response) = (self.request_text(), self.response_text());
        storable_all(
            prefix,
            [
                ("request_data", request.as_deref()),
                ("response_data", response.as_deref()),
                ("error_message", self.error_message.as_deref()),
            ],
        )?;
        for (field, value) in [("service", &self.service), ("status", &self.status)] {
            let field = format!("{prefix}{field}");
            indexed(&field, value)?;
            check_required_text(&field, value)?;
        }
        Ok(())
    }

    /// `request_data` as it is stored: a string verbatim, any other JSON value as its JSON
    /// text (what the original backend's `JSON.stringify` stored).
    pub fn request_text(&self) -> Option<String> {
        json_text(self.request_data.as_ref())
    }

    /// `response_data` as it is stored (see [`Self::request_text`]).
    pub fn response_text(&self) -> Option<String> {
        json_text(self.response_data.as_ref())
    }
}

fn json_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The outcome of one enrichment run, as `POST /api/enrich/{id}` accepts it.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentRun {
    pub status: EnrichmentOutcome,
    /// At most 200.
    #[serde(default)]
    #[schema(max_items = 200)]
    pub contacts: Vec<NewContact>,
    /// At most 200.
    #[serde(default)]
    #[schema(max_items = 200)]
    pub logs: Vec<NewEnrichmentLog>,
}

impl EnrichmentRun {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let map = object(bytes, &["status", "contacts", "logs"], &[])?;
        // serde reads a struct from an array too (`[null, null]`); the contract wants objects.
        for list in ["contacts", "logs"] {
            if let Some(Value::Array(items)) = map.get(list)
                && let Some(i) = items.iter().position(|item| !item.is_object())
            {
                return Err(ValidationError::field(
                    &format!("{list}[{i}]"),
                    "must be a JSON object",
                ));
            }
        }
        let run: Self = typed(map)?;
        run.validate()?;
        Ok(run)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, len) in [("contacts", self.contacts.len()), ("logs", self.logs.len())] {
            if len > RUN_ITEMS_MAX {
                return Err(ValidationError::field(
                    field,
                    format!("must have at most {RUN_ITEMS_MAX} items"),
                ));
            }
        }
        for (i, c) in self.contacts.iter().enumerate() {
            c.validate(&format!("contacts[{i}]."))?;
        }
        for (i, log) in self.logs.iter().enumerate() {
            log.validate(&format!("logs[{i}]."))?;
        }
        Ok(())
    }

    pub fn status(&self) -> EnrichmentStatus {
        self.status.into()
    }
}
