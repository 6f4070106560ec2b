//! Services around a repository: the cached repository decorator and live events.
//!
//! [`CachedRepository`] implements [`letip_domain::Repository`] by wrapping another
//! implementation (`Cached(PgStore)`), so the HTTP layer sees one trait object; after each
//! write it runs its [`WriteHook`]s, such as [`Notifying`], which announces the write.

mod cached;
pub mod events;
pub mod invalidation;
mod keys;
mod pages;
mod written;

pub use cached::{CacheTtls, CachedRepository};
pub use events::{Event, EventHub, Notifying};
/// Adds the cache's per-thread counts to the metrics recorder: call it before rendering.
pub use letip_cache::metrics::flush as flush_cache_metrics;
pub use written::{WriteHook, Written};
