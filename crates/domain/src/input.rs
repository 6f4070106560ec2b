//! Request bodies, parsed from JSON into validated types.
//!
//! Each `from_json` rejects, with a message naming the field: malformed JSON, a body that
//! is not an object, unknown or read-only fields, wrong types, unknown enum values and
//! values out of range. Nothing downstream re-checks them.

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::validation::{email, http_url, in_range, max_len};
use crate::{EnrichmentStatus, MessageStatus, ValidationError};

/// Longest business name accepted, after trimming. The only per-field length limit: the
/// original API had no other, and stored rows may hold longer values in any text column.
/// Other text is bounded by the request body limit alone.
const NAME_MAX: usize = 255;
/// Most contacts or logs one enrichment run may record (one insert statement each).
const RUN_ITEMS_MAX: usize = 200;

/// Fields that the server sets; clients may not send them.
const BUSINESS_READ_ONLY: &[&str] = &["id", "enrichment_status", "created_at", "updated_at"];
const BUSINESS_FIELDS: &[&str] = &[
    "name",
    "address",
    "city",
    "state",
    "zip",
    "phone",
    "website",
    "business_type",
    "industry",
    "employee_count",
    "year_founded",
    "google_maps_url",
    "latitude",
    "longitude",
    "source",
];

/// Parses `bytes` as a JSON object whose keys are all in `allowed`.
fn object(
    bytes: &[u8],
    allowed: &[&str],
    read_only: &[&str],
) -> Result<Map<String, Value>, ValidationError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ValidationError::new("body", format!("body is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ValidationError::new("body", "body must be a JSON object"));
    };
    for key in map.keys() {
        if read_only.contains(&key.as_str()) {
            return Err(ValidationError::field(
                key,
                "is read-only and cannot be set",
            ));
        }
        if !allowed.contains(&key.as_str()) {
            return Err(ValidationError::new(
                key.clone(),
                format!("property {key} should not exist"),
            ));
        }
    }
    Ok(map)
}

/// Deserializes a checked object into `T`, naming the field of any type error.
fn typed<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or(rest);
            let field = if path == "." {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            return ValidationError::field(&field, "is required");
        }
        if path == "." {
            ValidationError::new("body", inner)
        } else {
            ValidationError::new(path.clone(), format!("{path}: {inner}"))
        }
    })
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn check_name(name: &mut String) -> Result<(), ValidationError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::field("name", "must not be empty"));
    }
    max_len("name", trimmed, NAME_MAX)?;
    *name = trimmed.to_owned();
    Ok(())
}

fn check_required_text(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::field(field, "must not be empty"));
    }
    Ok(())
}

/// A new business, as `POST /api/businesses` accepts it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBusiness {
    /// 1 to 255 characters after trimming.
    pub name: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    /// Defaults to `NJ`.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub zip: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    /// An http(s) URL.
    #[serde(default)]
    pub website: Option<String>,
    #[serde(default)]
    pub business_type: Option<String>,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub employee_count: Option<i32>,
    #[serde(default)]
    pub year_founded: Option<i32>,
    #[serde(default)]
    pub google_maps_url: Option<String>,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    /// Defaults to `google_maps`.
    #[serde(default)]
    pub source: Option<String>,
}

impl NewBusiness {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let mut new: Self = typed(object(bytes, BUSINESS_FIELDS, BUSINESS_READ_ONLY)?)?;
        new.validate()?;
        Ok(new)
    }

    /// Checks every field and trims the name.
    pub fn validate(&mut self) -> Result<(), ValidationError> {
        check_name(&mut self.name)?;
        if let Some(state) = &self.state {
            check_required_text("state", state)?;
        }
        if let Some(source) = &self.source {
            check_required_text("source", source)?;
        }
        if let Some(w) = &self.website {
            http_url("website", w)?;
        }
        check_numbers(
            self.employee_count,
            self.year_founded,
            self.latitude,
            self.longitude,
        )
    }
}

fn check_numbers(
    employee_count: Option<i32>,
    year_founded: Option<i32>,
    latitude: Option<f64>,
    longitude: Option<f64>,
) -> Result<(), ValidationError> {
    in_range("employee_count", employee_count, 0, 10_000_000)?;
    in_range("year_founded", year_founded, 1000, 2100)?;
    in_range("latitude", latitude, -90.0, 90.0)?;
    in_range("longitude", longitude, -180.0, 180.0)
}

/// Changes to a business, as `PATCH /api/businesses/{id}` accepts them. An absent field is
/// left as it is; `null` clears a nullable field.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub state: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub zip: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub website: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub business_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub industry: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>)]
    pub employee_count: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>)]
    pub year_founded: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub google_maps_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub latitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub longitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub source: Option<Option<String>>,
}

impl BusinessPatch {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let mut patch: Self = typed(object(bytes, BUSINESS_FIELDS, BUSINESS_READ_ONLY)?)?;
        patch.validate()?;
        Ok(patch)
    }

    /// Checks every field given and trims the name. `name`, `state` and `source` cannot be
    /// cleared.
    pub fn validate(&mut self) -> Result<(), ValidationError> {
        for (field, value) in [
            ("name", &self.name),
            ("state", &self.state),
            ("source", &self.source),
        ] {
            if matches!(value, Some(None)) {
                return Err(ValidationError::field(field, "must not be null"));
            }
        }
        if let Some(Some(name)) = &mut self.name {
            check_name(name)?;
        }
        if let Some(Some(state)) = &self.state {
            check_required_text("state", state)?;
        }
        if let Some(Some(source)) = &self.source {
            check_required_text("source", source)?;
        }
        if let Some(w) = flat(&self.website) {
            http_url("website", w)?;
        }
        check_numbers(
            self.employee_count.flatten(),
            self.year_founded.flatten(),
            self.latitude.flatten(),
            self.longitude.flatten(),
        )
    }

    /// `true` when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A new contact of a business.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// A valid email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Defaults to `false`.
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
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
        if let Some(e) = &self.email {
            email(&format!("{prefix}email"), e)?;
        }
        Ok(())
    }
}

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
    pub service: String,
    pub status: String,
    /// Any JSON value: a string is stored verbatim, any other value as its JSON text.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub request_data: Option<Value>,
    /// As `request_data`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub response_data: Option<Value>,
    #[serde(default)]
    pub error_message: Option<String>,
}

impl NewEnrichmentLog {
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
    #[serde(default)]
    pub contacts: Vec<NewContact>,
    #[serde(default)]
    pub logs: Vec<NewEnrichmentLog>,
}

impl EnrichmentRun {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let run: Self = typed(object(bytes, &["status", "contacts", "logs"], &[])?)?;
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
            check_required_text(&format!("logs[{i}].service"), &log.service)?;
            check_required_text(&format!("logs[{i}].status"), &log.status)?;
        }
        Ok(())
    }

    pub fn status(&self) -> EnrichmentStatus {
        self.status.into()
    }
}

/// A new outreach message, as `POST /api/businesses/{id}/messages` accepts it.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    pub message_text: String,
    /// A contact of the same business.
    #[serde(default)]
    pub contact_id: Option<i32>,
}

impl NewMessage {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let new: Self = typed(object(
            bytes,
            &["message_text", "contact_id"],
            &["id", "business_id", "status", "generated_at", "sent_at"],
        )?)?;
        if new.message_text.trim().is_empty() {
            return Err(ValidationError::field("message_text", "must not be empty"));
        }
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

fn flat(v: &Option<Option<String>>) -> Option<&str> {
    v.as_ref().and_then(|v| v.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: std::fmt::Debug>(r: Result<T, ValidationError>) -> ValidationError {
        r.expect_err("input must be rejected")
    }

    #[test]
    fn a_new_business_needs_a_name_of_1_to_255_chars_after_trimming() {
        assert_eq!(err(NewBusiness::from_json(b"{}")).field, "name");
        assert_eq!(
            err(NewBusiness::from_json(br#"{"name": "   "}"#)).field,
            "name"
        );
        let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(256));
        assert_eq!(err(NewBusiness::from_json(long.as_bytes())).field, "name");
        let ok = NewBusiness::from_json(br#"{"name": "  Freehold Dental "}"#).expect("valid");
        assert_eq!(ok.name, "Freehold Dental");
        let max = format!(r#"{{"name": "{}"}}"#, "é".repeat(255));
        assert!(NewBusiness::from_json(max.as_bytes()).is_ok());
    }

    #[test]
    fn only_the_name_has_a_length_limit() {
        // The original API limited no other text field, and stored rows hold longer ones.
        let long = "x".repeat(300);
        let body = serde_json::json!({
            "name": "A", "city": long, "industry": long, "address": long, "zip": long,
            "phone": long, "business_type": long, "state": long, "source": long,
            "website": format!("https://example.com/{}", "p".repeat(3000)),
        });
        let b = NewBusiness::from_json(body.to_string().as_bytes()).expect("valid");
        assert_eq!(b.city.as_deref(), Some(long.as_str()));
        let p = BusinessPatch::from_json(body.to_string().as_bytes()).expect("valid");
        assert_eq!(p.industry, Some(Some(long.clone())));
        let c = serde_json::json!({"name": long, "title": long, "phone": long});
        assert!(NewContact::from_json(c.to_string().as_bytes()).is_ok());
        let m = serde_json::json!({"message_text": "y".repeat(20_000)});
        assert!(NewMessage::from_json(m.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn read_only_and_unknown_fields_are_rejected_by_name() {
        for field in ["id", "created_at", "updated_at", "enrichment_status"] {
            let body = format!(r#"{{"name": "A", "{field}": 1}}"#);
            let e = err(NewBusiness::from_json(body.as_bytes()));
            assert_eq!(e.field, field);
            assert!(e.message.contains(field), "{}", e.message);
            let e = err(BusinessPatch::from_json(body.as_bytes()));
            assert_eq!(e.field, field);
        }
        let e = err(NewBusiness::from_json(br#"{"name": "A", "colour": "red"}"#));
        assert_eq!(e.message, "property colour should not exist");
    }

    #[test]
    fn wrong_types_and_malformed_json_name_the_problem() {
        let e = err(NewBusiness::from_json(
            br#"{"name": "A", "employee_count": "ten"}"#,
        ));
        assert_eq!(e.field, "employee_count");
        assert!(e.message.starts_with("employee_count"), "{}", e.message);
        assert_eq!(err(NewBusiness::from_json(b"{not json")).field, "body");
        assert_eq!(err(NewBusiness::from_json(b"[1]")).field, "body");
        assert_eq!(err(NewBusiness::from_json(b"")).field, "body");
        let e = err(NewBusiness::from_json(br#"{"name": 5}"#));
        assert_eq!(e.field, "name");
    }

    #[test]
    fn website_must_be_an_http_url() {
        for bad in [
            "example.com",
            "ftp://example.com",
            "javascript:alert(1)",
            "http://",
        ] {
            let body = serde_json::json!({"name": "A", "website": bad}).to_string();
            assert_eq!(
                err(NewBusiness::from_json(body.as_bytes())).field,
                "website",
                "{bad}"
            );
        }
        for good in ["http://example.com", "https://example.com/path?q=1"] {
            let body = serde_json::json!({"name": "A", "website": good}).to_string();
            assert!(NewBusiness::from_json(body.as_bytes()).is_ok(), "{good}");
        }
    }

    #[test]
    fn numbers_out_of_range_are_rejected() {
        for (field, value) in [
            ("employee_count", serde_json::json!(-1)),
            ("year_founded", serde_json::json!(3000)),
            ("latitude", serde_json::json!(91.0)),
            ("longitude", serde_json::json!(-181)),
        ] {
            let body = serde_json::json!({"name": "A", field: value}).to_string();
            assert_eq!(err(NewBusiness::from_json(body.as_bytes())).field, field);
        }
    }

    #[test]
    fn a_patch_tells_absent_from_null_and_refuses_to_clear_required_fields() {
        let p = BusinessPatch::from_json(br#"{"city": null, "industry": "Dental"}"#).expect("ok");
        assert_eq!(p.city, Some(None));
        assert_eq!(p.industry, Some(Some("Dental".into())));
        assert_eq!(p.name, None);
        assert!(
            BusinessPatch::from_json(b"{}")
                .expect("empty patch")
                .is_empty()
        );
        for field in ["name", "state", "source"] {
            let body = format!(r#"{{"{field}": null}}"#);
            assert_eq!(err(BusinessPatch::from_json(body.as_bytes())).field, field);
        }
        assert_eq!(
            err(BusinessPatch::from_json(br#"{"name": ""}"#)).field,
            "name"
        );
    }

    #[test]
    fn contacts_need_a_valid_email_when_one_is_given() {
        assert!(NewContact::from_json(b"{}").is_ok());
        assert!(NewContact::from_json(br#"{"email": "jane@freehold-dental.com"}"#).is_ok());
        for bad in ["jane", "jane@", "@x.com", "jane@localhost", "a b@c.com"] {
            let body = serde_json::json!({ "email": bad }).to_string();
            assert_eq!(
                err(NewContact::from_json(body.as_bytes())).field,
                "email",
                "{bad}"
            );
        }
        assert_eq!(err(NewContact::from_json(br#"{"id": 3}"#)).field, "id");
    }

    #[test]
    fn an_enrichment_run_records_enriched_or_failed_only() {
        let run = EnrichmentRun::from_json(
            br#"{"status": "enriched", "contacts": [{"email": "a@b.co"}],
                 "logs": [{"service": "hunter", "status": "ok", "request_data": {"q": 1}}]}"#,
        )
        .expect("valid");
        assert_eq!(run.status(), EnrichmentStatus::Enriched);
        assert_eq!(run.logs.len(), 1);
        assert_eq!(
            run.logs.first().and_then(NewEnrichmentLog::request_text),
            Some(r#"{"q":1}"#.to_owned())
        );
        assert!(err(EnrichmentRun::from_json(br#"{"status": "pending"}"#)).field == "status");
        assert_eq!(err(EnrichmentRun::from_json(b"{}")).field, "status");
        let e = err(EnrichmentRun::from_json(
            br#"{"status": "failed", "contacts": [{"email": "nope"}]}"#,
        ));
        assert_eq!(e.field, "contacts[0].email");
        let e = err(EnrichmentRun::from_json(
            br#"{"status": "failed", "logs": [{"service": "x"}]}"#,
        ));
        assert!(e.field.contains("status"), "{e:?}");
    }

    #[test]
    fn log_data_is_stored_as_text_a_string_verbatim() {
        let run = EnrichmentRun::from_json(
            br#"{"status": "enriched", "logs": [
                {"service": "a", "status": "ok", "request_data": "not {json",
                 "response_data": {"z": 1, "a": [true, null]}},
                {"service": "b", "status": "ok", "request_data": null, "response_data": 42}]}"#,
        )
        .expect("valid");
        let [a, b] = run.logs.as_slice() else {
            panic!("two logs")
        };
        assert_eq!(a.request_text().as_deref(), Some("not {json"));
        // Keys keep the order they were sent in, as JSON.stringify writes them.
        assert_eq!(
            a.response_text().as_deref(),
            Some(r#"{"z":1,"a":[true,null]}"#)
        );
        assert_eq!(b.request_text(), None);
        assert_eq!(b.response_text().as_deref(), Some("42"));
    }

    #[test]
    fn messages_need_text_and_move_only_to_sent_or_failed() {
        assert_eq!(err(NewMessage::from_json(b"{}")).field, "message_text");
        assert_eq!(
            err(NewMessage::from_json(br#"{"message_text": " "}"#)).field,
            "message_text"
        );
        let m = NewMessage::from_json(br#"{"message_text": "Hi", "contact_id": 4}"#).expect("ok");
        assert_eq!(m.contact_id, Some(4));
        let s = MessageStatusUpdate::from_json(br#"{"status": "sent"}"#).expect("ok");
        assert_eq!(s.status(), MessageStatus::Sent);
        assert_eq!(
            err(MessageStatusUpdate::from_json(
                br#"{"status": "generated"}"#
            ))
            .field,
            "status"
        );
        assert_eq!(
            err(MessageStatusUpdate::from_json(br#"{"status": "bogus"}"#)).field,
            "status"
        );
    }
}
