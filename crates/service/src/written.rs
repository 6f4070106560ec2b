//! What a committed write made, handed to the hooks a [`crate::CachedRepository`] runs
//! after it has invalidated the cache and before the write is answered: live events,
//! say (see [`crate::Notifying`]).

use letip_domain::{AnswerKind, Business, Change, Mutated, Mutation, RowChange};

/// A committed write and what it answers.
#[derive(Debug, Clone, Copy)]
pub enum Written<'a> {
    Created(&'a Business),
    /// `moved`: the write sent the city or the industry, so the business may have left
    /// any list it was in (its values before the write are not known).
    Updated {
        business: &'a Business,
        moved: bool,
    },
    Deleted {
        id: i32,
    },
    Enriched(&'a Business),
    /// A contact of the business was added or removed.
    Contact {
        business_id: i32,
    },
    /// An outreach message of the business was added or changed.
    Message {
        business_id: i32,
    },
    /// Something was written, what is not known: everything may have changed.
    Unknown,
}

/// Acts on a committed write. It runs on the write's path: anything slow belongs in a
/// task of its own.
pub trait WriteHook: Send + Sync + std::fmt::Debug + 'static {
    fn written(&self, write: Written<'_>);
}

/// What the cached repository needs to know of a mutation once it is handed over: what
/// its answer does not say (to describe the write), the kind of its answer (to read a
/// stored one), and what it may have changed when its outcome is unknown.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    what: What,
    pub(crate) kind: AnswerKind,
    /// What the write may have changed, as far as its request says, for a write that
    /// may have committed but was not answered as done (its COMMIT unsettled while
    /// PostgreSQL was unreachable).
    pub(crate) unsettled: Vec<Change>,
}

#[derive(Debug, Clone, Copy)]
enum What {
    Created,
    Updated { moved: bool },
    Deleted { id: i32 },
    Other,
}

impl Sent {
    pub(crate) fn of(m: &Mutation) -> Self {
        let business = |id: i32, row: RowChange| Change::Business {
            id,
            row,
            facets: Vec::new(),
        };
        let (what, unsettled) = match m {
            Mutation::CreateBusiness(_) => (What::Created, vec![Change::Unknown]),
            Mutation::UpdateBusiness { id, patch } => (
                What::Updated {
                    moved: patch.city.is_some() || patch.industry.is_some(),
                },
                vec![business(*id, RowChange::Updated)],
            ),
            Mutation::DeleteBusiness { id } => (
                What::Deleted { id: *id },
                vec![business(*id, RowChange::Deleted)],
            ),
            Mutation::Enrich { id, .. } => (
                What::Other,
                vec![
                    business(*id, RowChange::Updated),
                    Change::EnrichmentLog { business_id: *id },
                ],
            ),
            Mutation::CreateContact { business_id, .. } => (
                What::Other,
                vec![Change::Contact {
                    business_id: *business_id,
                }],
            ),
            Mutation::CreateMessage { business_id, .. } => (
                What::Other,
                vec![Change::Message {
                    business_id: *business_id,
                }],
            ),
            // The business is not known from the request: every list and stats.
            Mutation::DeleteContact { .. } | Mutation::UpdateMessage { .. } => {
                (What::Other, vec![Change::Unknown])
            }
        };
        Self {
            what,
            kind: m.answer_kind(),
            unsettled,
        }
    }

    /// The committed write that answered `done`.
    pub(crate) fn written<'a>(&self, done: &'a Mutated) -> Written<'a> {
        match (self.what, done) {
            (What::Created, Mutated::Business(b)) => Written::Created(b),
            (What::Updated { moved }, Mutated::Business(business)) => {
                Written::Updated { business, moved }
            }
            // A business answered by a write not known as a create or an update.
            (_, Mutated::Business(business)) => Written::Updated {
                business,
                moved: true,
            },
            (What::Deleted { id }, _) => Written::Deleted { id },
            (_, Mutated::Deleted) => Written::Unknown,
            (_, Mutated::Detail(d)) => Written::Enriched(&d.business),
            (_, Mutated::Contact(c)) => Written::Contact {
                business_id: c.business_id,
            },
            (_, Mutated::Message(m)) => Written::Message {
                business_id: m.business_id,
            },
        }
    }
}
