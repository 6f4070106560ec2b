//! Writes as values: what [`crate::Repository::write`] does, what it answers, and the
//! key under which a client asks for it to be done once (`Idempotency-Key`).

use crate::{
    Business, BusinessDetail, BusinessPatch, Contact, EnrichmentRun, MessageStatusUpdate,
    NewBusiness, NewContact, NewMessage, OutreachMessage,
};

/// One write the repository can make.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    CreateBusiness(NewBusiness),
    UpdateBusiness {
        id: i32,
        patch: BusinessPatch,
    },
    DeleteBusiness {
        id: i32,
    },
    /// Records one enrichment run in one transaction.
    Enrich {
        id: i32,
        run: EnrichmentRun,
    },
    CreateContact {
        business_id: i32,
        new: NewContact,
    },
    DeleteContact {
        id: i32,
    },
    CreateMessage {
        business_id: i32,
        new: NewMessage,
    },
    UpdateMessage {
        id: i32,
        update: MessageStatusUpdate,
    },
}

/// Which of [`Mutated`]'s kinds a mutation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    Business,
    Deleted,
    Detail,
    Contact,
    Message,
}

impl Mutation {
    pub fn answer_kind(&self) -> AnswerKind {
        match self {
            Self::CreateBusiness(_) | Self::UpdateBusiness { .. } => AnswerKind::Business,
            Self::DeleteBusiness { .. } => AnswerKind::Deleted,
            Self::Enrich { .. } => AnswerKind::Detail,
            Self::CreateContact { .. } | Self::DeleteContact { .. } => AnswerKind::Contact,
            Self::CreateMessage { .. } | Self::UpdateMessage { .. } => AnswerKind::Message,
        }
    }
}

/// What a committed [`Mutation`] answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutated {
    /// A business created or updated.
    Business(Business),
    /// A business deleted.
    Deleted,
    /// The business as its detail shows it after an enrichment run.
    Detail(BusinessDetail),
    /// A contact created, or deleted (as it was).
    Contact(Contact),
    Message(OutreachMessage),
}

impl Mutated {
    /// The answer as JSON, as it is stored with its key and as clients read it (a
    /// deleted business has no body).
    pub fn to_json(&self) -> serde_json::Result<String> {
        match self {
            Self::Business(b) => serde_json::to_string(b),
            Self::Deleted => Ok(String::new()),
            Self::Detail(d) => serde_json::to_string(d),
            Self::Contact(c) => serde_json::to_string(c),
            Self::Message(m) => serde_json::to_string(m),
        }
    }

    /// An answer of `kind` stored as [`Self::to_json`].
    pub fn from_json(kind: AnswerKind, json: &str) -> serde_json::Result<Self> {
        Ok(match kind {
            AnswerKind::Business => Self::Business(serde_json::from_str(json)?),
            AnswerKind::Deleted => Self::Deleted,
            AnswerKind::Detail => Self::Detail(serde_json::from_str(json)?),
            AnswerKind::Contact => Self::Contact(serde_json::from_str(json)?),
            AnswerKind::Message => Self::Message(serde_json::from_str(json)?),
        })
    }
}

/// A client's key for one write (the `Idempotency-Key` header), the fingerprint of the
/// request it came with, and the status its answer is given with. The first write under
/// a key is done, and its answer stored with the key in the same transaction; a repeat
/// with the same fingerprint answers that answer again, one with another fingerprint is
/// refused ([`crate::RepoError::KeyReused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteKey {
    pub key: String,
    pub fingerprint: String,
    pub status: u16,
}

/// The longest key a client may send (the draft sets no bound; Stripe's is 255).
pub const WRITE_KEY_MAX_LEN: usize = 255;

impl WriteKey {
    /// The key a client sent, if it is one: 1 to [`WRITE_KEY_MAX_LEN`] visible ASCII
    /// characters.
    pub fn parse(
        raw: &str,
        fingerprint: String,
        status: u16,
    ) -> Result<Self, crate::ValidationError> {
        let raw = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        if raw.is_empty()
            || raw.len() > WRITE_KEY_MAX_LEN
            || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(crate::ValidationError::field(
                "Idempotency-Key",
                format!("must be 1 to {WRITE_KEY_MAX_LEN} visible ASCII characters"),
            ));
        }
        Ok(Self {
            key: raw.to_owned(),
            fingerprint,
            status,
        })
    }
}

/// What a write with a key answers: done now, or the answer stored with the key when it
/// was done before.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per write, moved once, never kept in a collection"
)]
pub enum Once {
    Done(Mutated),
    Replayed(Replay),
}

/// An answer stored with a key: its status and its JSON (empty for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub status: u16,
    pub json: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_visible_ascii_of_bounded_length() {
        let ok = |raw: &str| WriteKey::parse(raw, "f".into(), 201).map(|k| k.key);
        assert_eq!(
            ok("8e03978e-40d5-43e8-bc93-6894a57f9324").as_deref(),
            Ok("8e03978e-40d5-43e8-bc93-6894a57f9324")
        );
        assert_eq!(
            ok("\"quoted\"").as_deref(),
            Ok("quoted"),
            "an sf-string is unquoted"
        );
        for bad in ["", "with space", "é", &"k".repeat(WRITE_KEY_MAX_LEN + 1)] {
            let e = ok(bad).expect_err(bad);
            assert!(e.message.contains("Idempotency-Key"), "{e:?}");
        }
    }

    #[test]
    fn an_answer_reads_back_as_it_was_stored() {
        let deleted = Mutated::Deleted;
        let json = deleted.to_json().expect("serializable");
        assert_eq!(json, "");
        assert_eq!(
            Mutated::from_json(Mutation::DeleteBusiness { id: 1 }.answer_kind(), &json)
                .expect("read back"),
            deleted
        );
    }
}
