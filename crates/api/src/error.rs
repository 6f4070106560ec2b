//! The one error type of the HTTP layer and its JSON body, the NestJS shape the dashboard
//! already parses: `{"statusCode": 400, "message": "...", "error": "Bad Request"}`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use letip_domain::{RepoError, ValidationError};
use serde::Serialize;

/// What a 503's `Retry-After` asks a client to wait, in seconds: about what a
/// PostgreSQL restart or failover takes, and short enough that a client does not sit
/// out a blip.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// What caused a server-side error, with its chain of sources: for the log line
    /// the request's answer is logged with, never for the client.
    cause: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    #[serde(rename = "statusCode")]
    status_code: u16,
    message: &'a str,
    error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            cause: None,
        }
    }

    /// The same error, with what caused it kept for the log.
    #[must_use]
    pub fn caused_by(mut self, cause: &(dyn std::error::Error + 'static)) -> Self {
        self.cause = Some(chain(cause));
        self
    }

    /// What caused it, with its sources, when it was a server-side failure.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A server fault. The client learns nothing of its cause; give it with
    /// [`caused_by`](Self::caused_by) for the log.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// PostgreSQL could not be reached and the cache did not hold the answer: try again
    /// in [`RETRY_AFTER_SECS`]. Not a fault of the server's, so never a 500.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Database unavailable, try again later",
        )
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        res.json(ErrorBody {
            status_code: self.status.as_u16(),
            message: &self.message,
            error: self.status.canonical_reason().unwrap_or("Error"),
        })
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::bad_request(e.message)
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound { .. } => Self::not_found(e.to_string()),
            RepoError::Invalid(v) => v.into(),
            RepoError::KeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key was already used with another request; nothing was written",
            ),
            RepoError::KeyInFlight => Self::new(
                StatusCode::CONFLICT,
                "A request with this Idempotency-Key is still being processed; \
                 repeat it once that one is answered",
            ),
            RepoError::Unavailable(_) | RepoError::Unsettled(_) => {
                Self::unavailable().caused_by(&e)
            }
            RepoError::Internal(_) => Self::internal().caused_by(&e),
        }
    }
}

/// `e` and the whole chain of its sources, for the log only.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    use std::fmt::Write as _;
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(chain, ": {s}");
        source = s.source();
    }
    chain
}
