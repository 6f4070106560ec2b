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

mod business;
mod contact;
mod enrichment;
mod message;
pub mod schema;
#[cfg(test)]
mod tests;

pub use business::{BusinessPatch, NewBusiness};
pub use contact::NewContact;
pub use enrichment::{EnrichmentRun, NewEnrichmentLog};
pub use message::{MessageStatusUpdate, NewMessage};

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::ValidationError;
use crate::validation::{max_len, parse_json, storable};

/// Longest business name accepted, after trimming. The only per-field length limit: the
/// original API had no other, and stored rows may hold longer values in any text column.
/// Other text is bounded by the request body limit alone.
pub(super) const NAME_MAX: usize = 255;
/// Most contacts or logs one enrichment run may record (one insert statement each).
pub(super) const RUN_ITEMS_MAX: usize = 200;

/// Parses `bytes` as a JSON object whose keys are all in `allowed`.
pub(super) fn object(
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
pub(super) fn typed<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, ValidationError> {
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
pub(super) struct Int(i32);

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

pub(super) fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    Option::<Int>::deserialize(d).map(|v| v.map(|i| i.0))
}

pub(super) fn present_int<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<i32>>, D::Error> {
    int(d).map(Some)
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub(super) fn check_name(name: &mut String) -> Result<(), ValidationError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::field("name", "must not be empty"));
    }
    max_len("name", trimmed, NAME_MAX)?;
    *name = trimmed.to_owned();
    Ok(())
}

pub(super) fn check_required_text(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::field(field, "must not be empty"));
    }
    Ok(())
}

/// Refuses the first of `fields` (named after `prefix`) that PostgreSQL cannot store.
pub(super) fn storable_all<'a>(
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

pub(super) fn flat(v: &Option<Option<String>>) -> Option<&str> {
    v.as_ref().and_then(|v| v.as_deref())
}
