//! The OpenAPI schemas of the text fields: the same rules as the parsers above, stated as
//! JSON Schema (`pattern` is an ECMA-262 regular expression, as JSON Schema uses).

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

/// Text that is not blank: it holds a character other than white space.
fn not_blank(nullable: bool) -> ObjectBuilder {
    string(nullable)
        .pattern(Some(NOT_BLANK))
        .min_length(Some(1))
}

/// `state` of a new business: `null` or absent means `NJ`.
pub fn state() -> Schema {
    not_blank(true)
        .description(Some("Defaults to `NJ` when absent or `null`; never blank."))
        .into()
}

/// `state` in a patch: it cannot be cleared.
pub fn state_patch() -> Schema {
    not_blank(false)
        .description(Some(
            "Cannot be cleared: `null` and blank text are refused.",
        ))
        .into()
}

/// `source` of a new business: `null` or absent means `google_maps`.
pub fn source() -> Schema {
    not_blank(true)
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
    not_blank(false)
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
    not_blank(false)
        .description(Some("Not blank; any length."))
        .into()
}
