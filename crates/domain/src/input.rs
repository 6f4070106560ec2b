//! Request bodies, parsed from JSON into validated types.
//!
//! Each `from_json` rejects, with a message naming the field: malformed JSON, a body that
//! is not an object, unknown or read-only fields, wrong types, unknown enum values and
//! values out of range, and text PostgreSQL cannot store (a NUL character, an unpaired
//! surrogate, bytes that are not UTF-8, or text too long for its column's index). Nothing
//! downstream re-checks them.
//!
//! Each field's schema in the OpenAPI document (see [`schema`]) states the same rules, so a
//! client generated from it never sends a request these parsers refuse.

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::validation::{email, http_url, in_range, indexed, max_len, parse_json, storable};
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
    let Value::Object(map) = parse_json(bytes)? else {
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

/// A 32-bit integer sent as a JSON number, integral floats too (`1995.0`: JSON Schema and
/// JavaScript call it an integer, and the original backend took it).
struct Int(i32);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl serde::de::Visitor<'_> for IntVisitor {
            type Value = i32;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("i32")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i32, E> {
                i32::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i32, E> {
                i32::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i32, E> {
                if v.fract() == 0.0 && (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&v) {
                    // Integral and in range: the conversion is exact.
                    Ok(v as i32)
                } else {
                    Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(IntVisitor).map(Self)
    }
}

fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    Option::<Int>::deserialize(d).map(|v| v.map(|i| i.0))
}

fn present_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i32>>, D::Error> {
    int(d).map(Some)
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

/// Refuses the first of `fields` (named after `prefix`) that PostgreSQL cannot store.
fn storable_all<'a>(
    prefix: &str,
    fields: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<(), ValidationError> {
    for (field, value) in fields {
        if let Some(v) = value.filter(|v| v.contains('\0')) {
            return storable(&format!("{prefix}{field}"), v);
        }
    }
    Ok(())
}

/// A new business, as `POST /api/businesses` accepts it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBusiness {
    #[schema(schema_with = schema::name)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub address: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::indexed_text)]
    pub city: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::state)]
    pub state: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub zip: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub phone: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::website)]
    pub website: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub business_type: Option<String>,
    #[serde(default)]
    #[schema(schema_with = schema::indexed_text)]
    pub industry: Option<String>,
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub employee_count: Option<i32>,
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 1000, maximum = 2100)]
    pub year_founded: Option<i32>,
    #[serde(default)]
    #[schema(schema_with = schema::text)]
    pub google_maps_url: Option<String>,
    #[serde(default)]
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    #[serde(default)]
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
    #[serde(default)]
    #[schema(schema_with = schema::source)]
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
        storable_all(
            "",
            [
                ("name", Some(self.name.as_str())),
                ("address", self.address.as_deref()),
                ("city", self.city.as_deref()),
                ("state", self.state.as_deref()),
                ("zip", self.zip.as_deref()),
                ("phone", self.phone.as_deref()),
                ("website", self.website.as_deref()),
                ("business_type", self.business_type.as_deref()),
                ("industry", self.industry.as_deref()),
                ("google_maps_url", self.google_maps_url.as_deref()),
                ("source", self.source.as_deref()),
            ],
        )?;
        check_name(&mut self.name)?;
        for (field, value) in [("city", &self.city), ("industry", &self.industry)] {
            if let Some(v) = value {
                indexed(field, v)?;
            }
        }
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
/// left as it is; `null` clears a nullable field (`name`, `state` and `source` are not).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::name)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::text)]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::indexed_text)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::state_patch)]
    pub state: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::text)]
    pub zip: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::text)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::website)]
    pub website: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::text)]
    pub business_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::indexed_text)]
    pub industry: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_int")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 10_000_000)]
    pub employee_count: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present_int")]
    #[schema(value_type = Option<i32>, minimum = 1000, maximum = 2100)]
    pub year_founded: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::text)]
    pub google_maps_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, minimum = -90, maximum = 90)]
    pub latitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, minimum = -180, maximum = 180)]
    pub longitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::source_patch)]
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
        storable_all(
            "",
            [
                ("name", flat(&self.name)),
                ("address", flat(&self.address)),
                ("city", flat(&self.city)),
                ("state", flat(&self.state)),
                ("zip", flat(&self.zip)),
                ("phone", flat(&self.phone)),
                ("website", flat(&self.website)),
                ("business_type", flat(&self.business_type)),
                ("industry", flat(&self.industry)),
                ("google_maps_url", flat(&self.google_maps_url)),
                ("source", flat(&self.source)),
            ],
        )?;
        if let Some(Some(name)) = &mut self.name {
            check_name(name)?;
        }
        for (field, value) in [("city", &self.city), ("industry", &self.industry)] {
            if let Some(v) = flat(value) {
                indexed(field, v)?;
            }
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

fn flat(v: &Option<Option<String>>) -> Option<&str> {
    v.as_ref().and_then(|v| v.as_deref())
}

/// The OpenAPI schemas of the text fields: the same rules as the parsers above, stated as
/// JSON Schema (`pattern` is an ECMA-262 regular expression, as JSON Schema uses).
pub mod schema {
    use utoipa::openapi::schema::{
        ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
    };

    use super::NAME_MAX;
    use crate::validation::INDEXED_TEXT_MAX;

    /// Any text without NUL (U+0000), which PostgreSQL text cannot hold.
    pub const NO_NUL: &str = r"^[^\u0000]*$";
    /// Text without NUL that is not empty once trimmed: it holds a character that is not
    /// Unicode White_Space (what Rust's `str::trim` removes, listed one by one because
    /// regular expression dialects disagree on `\s`).
    pub const NOT_BLANK: &str = concat!(
        r"^[^\u0000]*",
        r"[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        r"[^\u0000]*$"
    );
    /// A business name: 1 to 255 characters once white space is trimmed from both ends
    /// (any white space around them is accepted and trimmed away), without NUL. A
    /// `maxLength` could only count the untrimmed text.
    pub const NAME: &str = concat!(
        r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*",
        r"[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        r"(?:[^\u0000]{0,253}",
        r"[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?",
        r"[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    );
    /// An http(s) URI whose host is a domain name: what `website` is checked against.
    pub const HTTP_URL: &str = concat!(
        r"^[Hh][Tt][Tt][Pp][Ss]?://",
        r"(?:[A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*",
        r"(?::[0-9]{1,4})?",
        r"(?:[/?](?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?",
        r"(?:#(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"
    );
    /// An address whose domain has a dot (`user@localhost` is refused).
    pub const DOTTED_EMAIL: &str = r"^[^\u0000]*@[^\u0000@]*\.[^\u0000@]*$";

    fn string(nullable: bool) -> ObjectBuilder {
        let ty = if nullable {
            SchemaType::from_iter([Type::String, Type::Null])
        } else {
            SchemaType::new(Type::String)
        };
        ObjectBuilder::new().schema_type(ty)
    }

    /// Optional text of any length: `null` or absent leaves it unset.
    pub fn text() -> Schema {
        string(true).pattern(Some(NO_NUL)).into()
    }

    /// Optional text whose column is indexed: at most [`INDEXED_TEXT_MAX`] characters.
    pub fn indexed_text() -> Schema {
        string(true)
            .pattern(Some(NO_NUL))
            .max_length(Some(INDEXED_TEXT_MAX))
            .description(Some(format!(
                "At most {INDEXED_TEXT_MAX} characters: the column is indexed."
            )))
            .into()
    }

    /// The business name: required, never `null`.
    pub fn name() -> Schema {
        string(false)
            .pattern(Some(NAME))
            .min_length(Some(1))
            .description(Some(format!(
                "1 to {NAME_MAX} characters after trimming white space; stored trimmed."
            )))
            .into()
    }

    /// `state` of a new business: `null` or absent means `NJ`.
    pub fn state() -> Schema {
        string(true)
            .pattern(Some(NOT_BLANK))
            .min_length(Some(1))
            .description(Some("Defaults to `NJ` when absent or `null`; never blank."))
            .into()
    }

    /// `state` in a patch: it cannot be cleared.
    pub fn state_patch() -> Schema {
        string(false)
            .pattern(Some(NOT_BLANK))
            .min_length(Some(1))
            .description(Some(
                "Cannot be cleared: `null` and blank text are refused.",
            ))
            .into()
    }

    /// `source` of a new business: `null` or absent means `google_maps`.
    pub fn source() -> Schema {
        string(true)
            .pattern(Some(NOT_BLANK))
            .min_length(Some(1))
            .description(Some(
                "Defaults to `google_maps` when absent or `null`; never blank.",
            ))
            .into()
    }

    /// `source` in a patch: it cannot be cleared.
    pub fn source_patch() -> Schema {
        state_patch()
    }

    pub fn website() -> Schema {
        string(true)
            .format(Some(SchemaFormat::Custom("uri".into())))
            .pattern(Some(HTTP_URL))
            .description(Some(
                "An http(s) URL, such as https://example.com: ASCII only (a host in \
                 punycode, other characters %-escaped) and a domain name as its host.",
            ))
            .into()
    }

    pub fn email() -> Schema {
        string(true)
            .format(Some(SchemaFormat::Custom("email".into())))
            .pattern(Some(DOTTED_EMAIL))
            .description(Some("A valid email address with a dotted domain."))
            .into()
    }

    /// `service` and `status` of an enrichment log: required, not blank, indexed.
    pub fn log_label() -> Schema {
        string(false)
            .pattern(Some(NOT_BLANK))
            .min_length(Some(1))
            .max_length(Some(INDEXED_TEXT_MAX))
            .description(Some(format!(
                "Not blank; at most {INDEXED_TEXT_MAX} characters: the column is indexed."
            )))
            .into()
    }

    /// `request_data` / `response_data`: any JSON value. A string is stored verbatim (so it
    /// may not hold NUL); any other value is stored as its JSON text, where NUL is escaped.
    pub fn log_data() -> Schema {
        OneOfBuilder::new()
            .item(string(false).pattern(Some(NO_NUL)))
            .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([
                Type::Object,
                Type::Array,
                Type::Number,
                Type::Boolean,
                Type::Null,
            ])))
            .description(Some(
                "Any JSON value. A string is stored and answered verbatim; any other value \
                 is stored as its JSON text and answered as that string.",
            ))
            .into()
    }

    pub fn message_text() -> Schema {
        string(false)
            .pattern(Some(NOT_BLANK))
            .min_length(Some(1))
            .description(Some("Not blank; any length."))
            .into()
    }
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
    fn only_the_name_and_indexed_columns_have_a_length_limit() {
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
    fn text_postgresql_cannot_store_is_refused_by_field() {
        for (body, field) in [
            (r#"{"name": "Nul\u0000Co"}"#, "name"),
            (r#"{"name": "A", "city": "x\u0000"}"#, "city"),
            (
                r#"{"name": "A", "website": "https://a.com/\u0000"}"#,
                "website",
            ),
            (r#"{"name": "A", "zip": "\ud800"}"#, "zip"),
        ] {
            let e = err(NewBusiness::from_json(body.as_bytes()));
            assert_eq!(e.field, field, "{body}");
            assert!(e.message.starts_with(field), "{}", e.message);
        }
        let e = err(BusinessPatch::from_json(br#"{"phone": "1\u00002"}"#));
        assert_eq!(e.field, "phone");
        assert!(e.message.contains("NUL"), "{}", e.message);
        let e = err(NewMessage::from_json(br#"{"message_text": "Hi\u0000"}"#));
        assert_eq!(e.field, "message_text");
        let e = err(NewContact::from_json(br#"{"title": "\u0000"}"#));
        assert_eq!(e.field, "title");
        let e = err(EnrichmentRun::from_json(
            br#"{"status": "failed", "contacts": [{}, {"name": "\u0000"}]}"#,
        ));
        assert_eq!(e.field, "contacts[1].name");
        let e = err(EnrichmentRun::from_json(
            br#"{"status": "failed", "logs": [{"service": "s", "status": "ok", "request_data": "a\u0000"}]}"#,
        ));
        assert_eq!(e.field, "logs[0].request_data");
        // Inside JSON that is stored as its text, a NUL is escaped and so is storable.
        let run = EnrichmentRun::from_json(
            br#"{"status": "failed", "logs": [{"service": "s", "status": "ok", "request_data": {"a": "\u0000"}}]}"#,
        )
        .expect("valid");
        assert_eq!(
            run.logs
                .first()
                .and_then(NewEnrichmentLog::request_text)
                .as_deref(),
            Some(r#"{"a":"\u0000"}"#)
        );
    }

    #[test]
    fn indexed_columns_take_at_most_600_characters() {
        let ok = serde_json::json!({"name": "A", "city": "é".repeat(600)}).to_string();
        assert!(NewBusiness::from_json(ok.as_bytes()).is_ok());
        for field in ["city", "industry"] {
            let body = serde_json::json!({"name": "A", field: "x".repeat(601)}).to_string();
            assert_eq!(err(NewBusiness::from_json(body.as_bytes())).field, field);
            assert_eq!(err(BusinessPatch::from_json(body.as_bytes())).field, field);
        }
        let body = serde_json::json!({"status": "failed", "logs": [
            {"service": "s".repeat(601), "status": "ok"}]})
        .to_string();
        assert_eq!(
            err(EnrichmentRun::from_json(body.as_bytes())).field,
            "logs[0].service"
        );
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
    fn integers_may_be_sent_as_integral_floats() {
        let b = NewBusiness::from_json(
            br#"{"name": "A", "year_founded": 1995.0, "employee_count": 1e3}"#,
        )
        .expect("valid");
        assert_eq!((b.year_founded, b.employee_count), (Some(1995), Some(1000)));
        let p = BusinessPatch::from_json(br#"{"year_founded": 2000.0, "employee_count": null}"#)
            .expect("valid");
        assert_eq!(
            (p.year_founded, p.employee_count),
            (Some(Some(2000)), Some(None))
        );
        for bad in [r#""ten""#, "1.5", "3000000000", "true"] {
            let body = format!(r#"{{"name": "A", "employee_count": {bad}}}"#);
            let e = err(NewBusiness::from_json(body.as_bytes()));
            assert_eq!(e.field, "employee_count", "{bad}");
            assert!(e.message.contains("expected i32"), "{}", e.message);
        }
        let m = NewMessage::from_json(br#"{"message_text": "Hi", "contact_id": 4.0}"#).expect("ok");
        assert_eq!(m.contact_id, Some(4));
    }

    #[test]
    fn enrichment_items_must_be_objects() {
        let e = err(EnrichmentRun::from_json(
            br#"{"status": "failed", "contacts": [{}, [null, null]]}"#,
        ));
        assert_eq!(e.field, "contacts[1]");
        let e = err(EnrichmentRun::from_json(
            br#"{"status": "failed", "logs": ["x"]}"#,
        ));
        assert_eq!(e.field, "logs[0]");
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
