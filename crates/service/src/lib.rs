//! Services around a repository: the cached repository decorator and live events.
//!
//! Both implement [`letip_domain::Repository`] by wrapping another implementation, so the
//! binary stacks them (`Notifying(Cached(PgStore))`) and the HTTP layer sees one trait
//! object.

mod cached;
pub mod events;
pub mod invalidation;
mod keys;
mod pages;

pub use cached::{CacheTtls, CachedRepository};
pub use events::{Event, EventHub, Notifying};
/// Adds the cache's per-thread counts to the metrics recorder: call it before rendering.
pub use letip_cache::metrics::flush as flush_cache_metrics;
