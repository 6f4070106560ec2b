//! The one error type of the HTTP layer and its JSON body, the NestJS shape the dashboard
//! already parses: `{"statusCode": 400, "message": "...", "error": "Bad Request"}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use letip_domain::{RepoError, ValidationError};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
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
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A server fault. The cause is logged by the caller; the client learns nothing of it.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
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
        HttpResponse::build(self.status).json(ErrorBody {
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
            RepoError::Unavailable(_) | RepoError::Internal(_) => {
                // The whole chain of causes, for the log only.
                let mut causes = String::new();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    causes.push_str(&format!(": {s}"));
                    source = s.source();
                }
                tracing::error!(error = %e, causes, "request failed");
                Self::internal()
            }
        }
    }
}
