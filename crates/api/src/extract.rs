//! Extractors that turn every malformed request into the contract's 400 body, and the
//! OpenAPI description of the parameters they read.

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::{LocalBoxFuture, Ready, ready};
use letip_domain::input::schema::NO_NUL;
use letip_domain::query::{DEFAULT_LIMIT, DEFAULT_PAGE, MAX_LIMIT, MAX_PAGE};
use letip_domain::{
    BusinessPatch, EnrichmentRun, ListQuery, MessageStatusUpdate, NewBusiness, NewContact,
    NewMessage, ValidationError, WriteKey,
};
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};

use crate::error::ApiError;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 256 * 1024;

/// A raw request body that claims to be JSON, at most [`BODY_LIMIT`] bytes. The domain
/// parses it, so errors can name the field at fault.
#[derive(Debug)]
pub struct JsonBody(pub Bytes);

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body must be at most {BODY_LIMIT} bytes"),
    )
}

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            // A missing Content-Type is read as JSON; any other declared type is refused.
            if let Some(ct) = content_type
                && ct != "application/json"
                && !ct.ends_with("+json")
            {
                return Err(ApiError::bad_request(
                    "body must be JSON sent with Content-Type: application/json",
                ));
            }
            if declared_len.is_some_and(|n| n > BODY_LIMIT) {
                return Err(too_large());
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::bad_request(format!("body could not be read: {e}")))?;
                if body.len() + chunk.len() > BODY_LIMIT {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Self(body.freeze()))
        })
    }
}

/// A request body the domain has parsed into `T`: a [`JsonBody`] read whole, then checked
/// field by field, so a 400 names the field at fault; and the request's
/// `Idempotency-Key`, fingerprinted with the body.
#[derive(Debug)]
pub struct Input<T>(pub T, pub Key);

/// A body the domain parses from JSON bytes (each input type's own `from_json`).
pub trait FromJson: Sized {
    fn from_json(bytes: &[u8]) -> Result<Self, ValidationError>;
}

macro_rules! from_json {
    ($($input:ty),* $(,)?) => {$(
        impl FromJson for $input {
            fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
                <$input>::from_json(bytes)
            }
        }
    )*};
}

from_json!(
    NewBusiness,
    BusinessPatch,
    EnrichmentRun,
    NewContact,
    NewMessage,
    MessageStatusUpdate,
);

impl<T: FromJson + 'static> FromRequest for Input<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let key = Key::sent(req);
        let body = JsonBody::from_request(req, payload);
        Box::pin(async move {
            let key = key?;
            let body = body.await?.0;
            let input = T::from_json(&body)?;
            Ok(Self(input, key.with_body(&body)))
        })
    }
}

/// The header a client names a write with, so that a repeat is done once.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header of an answer given again for a repeated key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// A write's `Idempotency-Key` (the IETF httpapi draft), if the request has one: 1 to
/// 255 visible ASCII characters, else a 400 naming the header. Its fingerprint is a
/// SHA-256 of the method, the path and the body, so the same key with another request
/// is told apart.
#[derive(Debug, Clone)]
pub struct Key(Option<(String, Sha256)>);

impl Key {
    fn sent(req: &HttpRequest) -> Result<Self, ApiError> {
        let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
            return Ok(Self(None));
        };
        let bad = || {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {} visible ASCII characters",
                letip_domain::mutation::WRITE_KEY_MAX_LEN
            ))
        };
        let raw = value.to_str().map_err(|_| bad())?;
        // Checked here, so that a bad key is refused before the body is read.
        WriteKey::parse(raw, String::new(), 0).map_err(|_| bad())?;
        let mut hash = Sha256::new();
        hash.update(req.method().as_str());
        hash.update(b" ");
        hash.update(req.path());
        hash.update(b"\n");
        Ok(Self(Some((raw.to_owned(), hash))))
    }

    fn with_body(mut self, body: &[u8]) -> Self {
        if let Some((_, hash)) = &mut self.0 {
            hash.update(body);
        }
        self
    }

    /// The key, for a write whose answer has `status`.
    pub fn for_answer(&self, status: StatusCode) -> Option<WriteKey> {
        let (raw, hash) = self.0.as_ref()?;
        let fingerprint: String = hash
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        WriteKey::parse(raw, fingerprint, status.as_u16()).ok()
    }
}

/// A write with no body: its key alone.
impl FromRequest for Key {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::sent(req))
    }
}

/// The `{id}` of a record's path. Ids are serial: 1 to 2^31 - 1. Id 0 is a valid number
/// that names nothing (404, as the original backend answered); anything else that is not
/// plain decimal digits within an `i32` is a 400 naming `id`. The router has decoded the
/// segment already, lossily: bytes that are not UTF-8 became U+FFFD, never a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i32);

impl FromRequest for Id {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let raw = req.match_info().get("id").unwrap_or("");
        ready(parse_id("id", raw).map(Self))
    }
}

impl IntoParams for Id {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(
                    "The record's id, in decimal digits only; one that names no record \
                     answers 404.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                        .minimum(Some(1))
                        .maximum(Some(i32::MAX)),
                ))
                .build(),
        ]
    }
}

/// The query of the business list, parsed by the domain from the raw query string (so a
/// value that does not decode to UTF-8 is refused by name, not replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams(pub ListQuery);

impl FromRequest for ListParams {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            ListQuery::from_query(req.query_string())
                .map(Self)
                .map_err(ApiError::from),
        )
    }
}

impl IntoParams for ListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name: &str, description: &str, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let text = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NO_NUL))
        };
        let number = |min: u32, max: u32, default: u32| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(min))
                .maximum(Some(max))
                .default(Some(default.into()))
        };
        vec![
            query(
                "city",
                "Exact, case-sensitive city; empty filters nothing.",
                text(),
            ),
            query(
                "industry",
                "Exact, case-sensitive industry; empty filters nothing.",
                text(),
            ),
            query(
                "enrichment_status",
                "Exact status; empty filters nothing.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["pending", "enriched", "failed", ""])),
            ),
            query(
                "page",
                "1-based page, decimal digits only; a page past the end answers `data: []`.",
                number(1, MAX_PAGE, DEFAULT_PAGE),
            ),
            query(
                "limit",
                "Businesses per page, decimal digits only.",
                number(1, MAX_LIMIT, DEFAULT_LIMIT),
            ),
        ]
    }
}

/// Parses a path segment as a record id. Only plain decimal digits that fit an `i32` are
/// ids; anything else is a 400 that names the parameter.
pub fn parse_id(name: &str, raw: &str) -> Result<i32, ApiError> {
    if !raw.is_empty()
        && raw.bytes().all(|b| b.is_ascii_digit())
        && let Ok(id) = raw.parse::<i32>()
    {
        return Ok(id);
    }
    Err(ApiError::bad_request(format!(
        "{name} must be a positive integer (got {raw:?})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_decimal_integers() {
        assert_eq!(parse_id("id", "42"), Ok(42));
        assert_eq!(parse_id("id", "0"), Ok(0));
        assert_eq!(parse_id("id", "2147483647"), Ok(i32::MAX));
        for bad in [
            "",
            "abc",
            "-1",
            "1.5",
            "+3",
            "2147483648",
            " 1",
            "1\0",
            "\u{FFFD}",
        ] {
            let e = parse_id("id", bad).expect_err(bad);
            assert!(e.message().starts_with("id must be"), "{}", e.message());
        }
    }
}
