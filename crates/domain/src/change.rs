//! Committed changes to the lead data, as storage announces them to every service
//! instance. A cache decides from a change alone what it must forget.

use crate::EnrichmentStatus;

/// The values a business is filtered by in lists: which lists can show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facets {
    pub city: Option<String>,
    pub industry: Option<String>,
    pub status: EnrichmentStatus,
}

/// What happened to a business row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowChange {
    Inserted,
    Updated,
    Deleted,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A business row changed. `facets` holds its filter values before and/or after the
    /// change; empty when they are not known, which means it may have been in any list.
    Business {
        id: i32,
        row: RowChange,
        facets: Vec<Facets>,
    },
    /// A contact of the business was added, changed or removed.
    Contact { business_id: i32 },
    /// An outreach message of the business was added, changed or removed.
    Message { business_id: i32 },
    /// An enrichment log of the business was added, changed or removed.
    EnrichmentLog { business_id: i32 },
    /// Anything may have changed: a bulk load, or announcements that were missed.
    Unknown,
}

/// What a feed of changes delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// Changes committed by another writer, in commit order.
    Changed(Vec<Change>),
    /// The feed was interrupted and has resumed: changes committed meanwhile were not
    /// delivered.
    Resumed,
    /// The feed is interrupted (or could not connect at all): changes committed from now
    /// until the next `Resumed` are not delivered.
    Lost,
}
