//! What a committed write made, handed to the hooks a [`crate::CachedRepository`] runs
//! after it has invalidated the cache and before the write is answered: live events,
//! say (see [`crate::Notifying`]).

use letip_domain::Business;

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
}

/// Acts on a committed write. It runs on the write's path: anything slow belongs in a
/// task of its own.
pub trait WriteHook: Send + Sync + std::fmt::Debug + 'static {
    fn written(&self, write: Written<'_>);
}
