//! Cache-aside for Rust services that never serves data older than a write that was
//! answered: one builder for every mode ([`CacheBuilder`]: none, in-process memory,
//! Redis shared by every instance, or a leased near tier in front of Redis that answers
//! hits without a round trip) and one call, [`CacheAside::get_or_load`], with stampede
//! protection, the stale-set guard, damaged-entry handling and a bypass while Redis is
//! away built in.
//!
//! The call: this key, this TTL, and how to load it on a miss.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use letip_cache::{CacheBuilder, Key, MemoryConfig, Source};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // CacheBuilder::tiered(RedisConfig { url, namespace, .. }) for the leased near tier.
//! let caching = CacheBuilder::memory(MemoryConfig::default()).build()?;
//! let users = caching.aside::<String>();
//! let key = Key::new("user", "user:7", &[("id", "7")]);
//! let load = || async { Ok::<_, String>(Bytes::from("Ada")) }; // the source of truth
//!
//! let first = users.get_or_load(&key, Duration::from_secs(60), load).await?;
//! assert_eq!((first.value.as_ref(), first.source), (&b"Ada"[..], Source::Miss));
//! let again = users.get_or_load(&key, Duration::from_secs(60), load).await?;
//! assert_eq!(again.source, Source::Hit);
//!
//! // After the next write of user 7, before answering it:
//! users.cache().invalidate(&["user:7"]).await?;
//! let after = users.get_or_load(&key, Duration::from_secs(60), load).await?;
//! assert_eq!(after.source, Source::Miss);
//! # Ok(()) }
//! ```
//!
//! The crate stores bytes under [`Key`]s and knows nothing of what they mean. What it adds
//! to a plain key-value store is what cache-aside needs to never serve stale data:
//!
//! - **Generation-checked writes.** Every key belongs to a *scope*. A [`Cache::get`] that
//!   misses hands back a [`Ticket`]: the scope's generation at that moment.
//!   [`Cache::put`] stores the value only if the generation is still the same, atomically,
//!   so a reader that loaded old data before a writer's [`Cache::invalidate`] can never
//!   store it afterwards (the stale-set race).
//! - **O(1) bulk invalidation.** Invalidating a scope bumps its generation; every entry
//!   of the scope becomes a miss at once, and expires by its TTL.
//! - **Faults are misses.** Every method may fail with a [`CacheError`]; callers go to
//!   their source of truth. The Redis implementation bounds every call by a timeout, stops
//!   calling a Redis that keeps failing (a circuit breaker with jittered backoff), and
//!   after it missed an invalidation it refuses to serve anything until it has made every
//!   older entry unreachable.
//!
//! See `examples/embed.rs` for a runnable service that embeds it.

mod announced;
mod aside;
mod breaker;
mod builder;
mod bus;
mod error;
mod flight;
mod json;
mod key;
mod lease;
mod memory;
pub mod metrics;
mod noop;
mod redis;
mod stale;
mod tiered;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

// What an embedder needs first: the builder, the cache-aside call, keys and settings.
pub use aside::{CacheAside, IndexRead, Loaded, LoadedMembers, Source};
pub use builder::{CacheBuilder, Caching};
pub use error::{CacheError, Cause};
pub use flight::LoadError;
pub use key::Key;
pub use lease::LeaseConfig;
pub use memory::MemoryConfig;
pub use redis::{RedisConfig, SentinelConfig};
pub use stale::{StaleConfig, StaleValue};
pub use tiered::NearConfig;

// The backends, for wiring by hand, and the bus between instances.
pub use announced::AnnouncedCache;
pub use bus::{BusEvent, RedisBus};
pub use json::{CacheExt, JsonLookup};
pub use lease::Waited;
pub use memory::MemoryCache;
pub use noop::NoopCache;
pub use redis::{BackgroundProbe, RedisCache};
pub use tiered::TieredCache;

/// Whether the cache can currently be used; reported by health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheHealth {
    Up,
    Down,
    /// No cache is configured: every read goes to the source of truth.
    Disabled,
}

impl CacheHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Disabled => "disabled",
        }
    }
}

/// The generation of a key's scope observed by a [`Cache::get`] that missed. A
/// [`Cache::put`] with it succeeds only while the scope has not been invalidated since.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ticket(Option<Arc<str>>);

impl Ticket {
    /// A ticket that can store nothing: what a cache that stores nothing hands out.
    pub fn none() -> Self {
        Self(None)
    }

    pub(crate) fn new(tag: impl Into<Arc<str>>) -> Self {
        Self(Some(tag.into()))
    }

    pub(crate) fn tag(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// A string that differs between two tickets of different generations; callers use
    /// it to tell reads of different generations apart (for single-flight, say).
    pub fn generation(&self) -> &str {
        self.0.as_deref().unwrap_or("-")
    }
}

/// A loaded value to store: the [`Ticket`] its lookup handed out, the bytes, and how long
/// to keep them.
#[derive(Debug, Clone)]
pub struct Fill<'a> {
    pub ticket: &'a Ticket,
    pub value: Bytes,
    pub ttl: Duration,
}

impl<'a> Fill<'a> {
    pub fn new(ticket: &'a Ticket, value: impl Into<Bytes>, ttl: Duration) -> Self {
        Self {
            ticket,
            value: value.into(),
            ttl,
        }
    }
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The stored value, of the scope's current generation.
    Hit(Bytes),
    /// Nothing current is stored; load from the source of truth, then `put` with this.
    Miss(Ticket),
}

/// What [`Cache::get_index`] found.
#[derive(Debug, Clone)]
pub enum IndexLookup {
    /// The index's value, of its scope's current generation, and the lookup of each of
    /// its members, in the order they were stored: each checked against its own scope.
    /// Shared, so that a cache answering the same lookups again (a near tier) hands out
    /// one count rather than one per member, and so that a caller can tell them apart
    /// by address.
    Hit {
        value: Bytes,
        members: Arc<[Lookup]>,
    },
    /// No current index; load it, then [`Cache::put_index`] with this ticket.
    Miss(Ticket),
}

/// Rebuilds the member keys of an index from its value (`None`: not an index's value).
pub type Members<'a> = &'a (dyn Fn(&[u8]) -> Option<Vec<Key>> + Sync);

/// The crate's result: an error is a [`CacheError`] unless said otherwise.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// What a [`Cache::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    /// The scope was invalidated after the ticket was issued: the value may be stale and
    /// was not stored.
    Stale,
    /// The value is larger than the cache accepts.
    TooLarge,
    /// The cache stores nothing.
    Skipped,
}

/// Refuses members outside the root scope of their index.
pub(crate) fn check_members(key: &Key, members: &[Key]) -> Result<()> {
    let root = |k: &Key| redis::split_scope(k.scope()).0.to_owned();
    let own = root(key);
    match members.iter().find(|m| root(m) != own) {
        Some(m) => Err(CacheError::Config(
            format!(
                "index member {} is not in the root scope {own} of its index",
                m.name()
            )
            .into(),
        )),
        None => Ok(()),
    }
}

/// A shared cache with generation-scoped entries and per-entry time to live.
#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug + 'static {
    /// The value stored under `key`, if it is of the current generation of its scope.
    async fn get(&self, key: &Key) -> Result<Lookup>;

    /// Stores `value` under `key` for `ttl`, unless `key`'s scope was invalidated since
    /// `ticket` was issued. The check and the write are one atomic step.
    async fn put(&self, key: &Key, fill: Fill<'_>) -> Result<Stored>;

    /// Looks up several keys: each answer is what [`Cache::get`] would give, in the same
    /// order. One round trip where the backend can (Redis: one script per hash slot).
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            found.push(self.get(key).await?);
        }
        Ok(found)
    }

    /// Looks up an *index*, an entry whose value names other entries (its members: the
    /// rows of a page, say), and on a hit every member with it: one round trip where the
    /// backend can (Redis: one script). The index being current says nothing of its
    /// members; each is checked against its own scope, and a member that misses carries
    /// its own ticket. `members` rebuilds the member keys from the index's value; a
    /// backend that stored them with the index does not call it. A key is used either
    /// through `get`/`put` or through `get_index`/`put_index`, never both.
    async fn get_index(&self, key: &Key, members: Members<'_>) -> Result<IndexLookup> {
        match self.get(key).await? {
            Lookup::Miss(ticket) => Ok(IndexLookup::Miss(ticket)),
            Lookup::Hit(value) => {
                let Some(keys) = members(&value) else {
                    metrics::corrupt(key.family());
                    let _ = self.remove(key).await;
                    return Err(CacheError::Protocol(
                        "an index whose members cannot be read".into(),
                    ));
                };
                let members = self.get_many(&keys).await?.into();
                Ok(IndexLookup::Hit { value, members })
            }
        }
    }

    /// Stores an index, like [`Cache::put`], naming `members`. Every member's scope must
    /// have the root of `key`'s scope, so that on Redis Cluster an index and its members
    /// share one hash slot (a [`CacheError::Config`] otherwise).
    async fn put_index(&self, key: &Key, fill: Fill<'_>, members: &[Key]) -> Result<Stored> {
        check_members(key, members)?;
        self.put(key, fill).await
    }

    /// Makes every entry of each scope a miss, at once.
    async fn invalidate(&self, scopes: &[&str]) -> Result<()>;

    // The methods below are hooks between the backends and the layers that wire them,
    // hidden from the documentation: a cache has sensible defaults for them.

    /// [`Cache::invalidate`] for an invalidation no answer waits on (one applied from a
    /// change feed, say): a cache whose writes wait for other instances (the leased near
    /// tier) announces it and does not wait.
    #[doc(hidden)]
    async fn invalidate_detached(&self, scopes: &[&str]) -> Result<()> {
        self.invalidate(scopes).await
    }

    /// Deletes one entry (an entry found corrupt, say).
    async fn remove(&self, key: &Key) -> Result<()>;

    /// Whether the backend answers now.
    async fn health(&self) -> CacheHealth;

    /// For a cache with a near tier, whether its invalidation subscription is in place
    /// (`Disabled` for any other cache).
    #[doc(hidden)]
    fn near_tier(&self) -> CacheHealth {
        CacheHealth::Disabled
    }

    /// `false` for a cache that never stores anything, so callers can skip work.
    #[doc(hidden)]
    fn is_enabled(&self) -> bool {
        true
    }

    /// `true` when a hit is guaranteed to be exactly the bytes that were put (an entry
    /// damaged or written by something else is detected and never returned), so callers
    /// need not re-check what they get.
    #[doc(hidden)]
    fn verifies_integrity(&self) -> bool {
        false
    }
}
