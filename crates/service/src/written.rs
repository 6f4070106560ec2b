//! What a committed write made, handed to the hooks a [`crate::CachedRepository`] runs
//! after it has invalidated the cache and before the write is answered: live events,
//! say (see [`crate::Notifying`]).

use letip_domain::{Business, Mutated, Mutation};

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

/// What [`Written`] needs to know of a mutation that its answer does not say, taken
/// before the mutation is handed over.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sent {
    Created,
    Updated { moved: bool },
    Deleted { id: i32 },
    Other,
}

impl Sent {
    pub(crate) fn of(m: &Mutation) -> Self {
        match m {
            Mutation::CreateBusiness(_) => Self::Created,
            Mutation::UpdateBusiness { patch, .. } => Self::Updated {
                moved: patch.city.is_some() || patch.industry.is_some(),
            },
            Mutation::DeleteBusiness { id } => Self::Deleted { id: *id },
            _ => Self::Other,
        }
    }

    /// The committed write that answered `done`.
    pub(crate) fn written(self, done: &Mutated) -> Written<'_> {
        match (self, done) {
            (Self::Created, Mutated::Business(b)) => Written::Created(b),
            (Self::Updated { moved }, Mutated::Business(business)) => {
                Written::Updated { business, moved }
            }
            // A business answered by a write not known as a create or an update.
            (_, Mutated::Business(business)) => Written::Updated {
                business,
                moved: true,
            },
            (Self::Deleted { id }, _) => Written::Deleted { id },
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
