//! The Le Tip lead domain: businesses, their contacts, enrichment logs and outreach
//! messages; the dashboard stats; the list filters; input validation; and the repository
//! port that storage and caching layers implement.
//!
//! This crate performs no I/O. Every input from outside is parsed here into a validated
//! type (parse, don't validate), so layers below never see unchecked data.

pub mod change;
pub mod fetched;
pub mod input;
pub mod model;
pub mod mutation;
pub mod ports;
pub mod query;
mod timestamp;
pub mod validation;

pub use change::{Change, Facets, FeedEvent, RowChange};
pub use fetched::{Body, CacheStatus, Fetched};
pub use input::{
    BusinessPatch, EnrichmentRun, MessageStatusUpdate, NewBusiness, NewContact, NewEnrichmentLog,
    NewMessage,
};
pub use model::{
    Business, BusinessDetail, BusinessPage, BusinessWithContacts, Contact, EnrichmentLog,
    EnrichmentStatus, MessageStatus, OutreachMessage, PageMeta, Stats, StatusValue, Stored,
};
pub use mutation::{AnswerKind, Mutated, Mutation, Once, Replay, WriteKey};
pub use ports::{Cause, Entity, Health, ReplicaHealth, RepoError, RepoResult, Repository};
pub use query::{BusinessFilter, ListQuery};
pub use validation::ValidationError;
