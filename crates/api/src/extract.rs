//! Extractors that turn every malformed request into the contract's 400 body.

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;

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
        for bad in ["", "abc", "-1", "1.5", "+3", "2147483648", " 1"] {
            let e = parse_id("id", bad).expect_err(bad);
            assert!(e.message().starts_with("id must be"), "{}", e.message());
        }
    }
}
