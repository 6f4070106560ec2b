//! Validation errors that name the offending field, as the HTTP contract requires.

/// Input that was rejected. `message` is a whole sentence that starts with the field name,
/// so it can be shown to API clients as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error whose message is `"{field} {what}"`.
    pub fn field(field: &str, what: impl std::fmt::Display) -> Self {
        Self::new(field, format!("{field} {what}"))
    }
}

pub(crate) fn max_len(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    let len = value.chars().count();
    if len > max {
        return Err(ValidationError::field(
            field,
            format!("must be at most {max} characters long (got {len})"),
        ));
    }
    Ok(())
}

pub(crate) fn http_url(field: &str, value: &str) -> Result<(), ValidationError> {
    match url::Url::parse(value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        _ => Err(ValidationError::field(
            field,
            "must be an http(s) URL such as https://example.com",
        )),
    }
}

pub(crate) fn email(field: &str, value: &str) -> Result<(), ValidationError> {
    let parsed: Result<email_address::EmailAddress, _> = value.parse();
    // The address must also have a dot in its domain: `user@localhost` is valid by the RFC
    // but is never a deliverable lead.
    match parsed {
        Ok(addr) if addr.domain().contains('.') => Ok(()),
        _ => Err(ValidationError::field(
            field,
            "must be a valid email address",
        )),
    }
}

pub(crate) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: Option<T>,
    min: T,
    max: T,
) -> Result<(), ValidationError> {
    match value {
        Some(v) if !(min <= v && v <= max) => Err(ValidationError::field(
            field,
            format!("must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}
