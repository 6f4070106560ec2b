//! The bodies of `POST /api/businesses` and `PATCH /api/businesses/{id}`.

use serde::Deserialize;
use utoipa::ToSchema;

use super::schema;
use super::{
    check_name, check_required_text, flat, int, object, present, present_int, storable_all, typed,
};
use crate::ValidationError;
use crate::validation::{http_url, in_range, indexed};

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
