//! [`MemoryCache`]: an in-process cache on moka, bounded by the bytes it holds, with a
//! time to live per entry. For a single instance: other processes never see its entries
//! or its invalidations.

use crate::{Fill, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;

use crate::{Cache, CacheHealth, Key, Lookup, Stored, Ticket, metrics};

/// Settings of a [`MemoryCache`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryConfig {
    /// Most bytes of keys and values held; the least recently used go first.
    pub max_bytes: u64,
    /// Values larger than this are not stored.
    pub max_value_bytes: usize,
    /// How long a scope's generation is remembered; at least the longest entry TTL.
    pub generation_ttl: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            max_value_bytes: 1024 * 1024,
            generation_ttl: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// The generations of the scope's root and of the scope, when it was stored.
    generation: (u64, u64),
    bytes: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Entry, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// An in-process cache with the same generation semantics as [`crate::RedisCache`].
pub struct MemoryCache {
    values: moka::future::Cache<String, Entry>,
    generations: moka::sync::Cache<String, u64>,
    /// Source of generations. It starts from the clock and only grows, so a generation
    /// that was forgotten and made again never equals an older one.
    next_generation: AtomicU64,
    max_value_bytes: usize,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.values.entry_count())
            .field("bytes", &self.values.weighted_size())
            .finish()
    }
}

impl MemoryCache {
    pub fn new(config: MemoryConfig) -> Self {
        let values = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &String, v: &Entry| {
                u32::try_from(k.len() + v.bytes.len() + 64).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        let generations = moka::sync::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(config.generation_ttl)
            .build();
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        Self {
            values,
            generations,
            next_generation: AtomicU64::new(start),
            max_value_bytes: config.max_value_bytes,
        }
    }

    fn own_generation(&self, scope: &str) -> u64 {
        self.generations.get_with_by_ref(scope, || {
            self.next_generation.fetch_add(1, Ordering::Relaxed) + 1
        })
    }

    /// The generations an entry of `scope` depends on: its root's and its own.
    fn generation(&self, scope: &str) -> (u64, u64) {
        let (root, _) = crate::redis::split_scope(scope);
        (self.own_generation(root), self.own_generation(scope))
    }

    fn current(&self, scope: &str) -> Option<(u64, u64)> {
        let (root, _) = crate::redis::split_scope(scope);
        Some((self.generations.get(root)?, self.generations.get(scope)?))
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &Key) -> Result<Lookup> {
        let generation = self.generation(key.scope());
        match self.values.get(key.name()).await {
            Some(e) if e.generation == generation => {
                metrics::lookup(key.family(), "hit");
                Ok(Lookup::Hit(e.bytes))
            }
            _ => {
                metrics::lookup(key.family(), "miss");
                Ok(Lookup::Miss(Ticket::new(format!(
                    "{}.{}",
                    generation.0, generation.1
                ))))
            }
        }
    }

    async fn put(&self, key: &Key, fill: Fill<'_>) -> Result<Stored> {
        let Fill { ticket, value, ttl } = fill;
        if value.len() > self.max_value_bytes {
            metrics::set(key.family(), "too_large");
            return Ok(Stored::TooLarge);
        }
        let parsed = ticket.tag().and_then(|t| {
            let (root, own) = t.split_once('.')?;
            Some((root.parse::<u64>().ok()?, own.parse::<u64>().ok()?))
        });
        let Some(generation) = parsed else {
            metrics::set(key.family(), "stale");
            return Ok(Stored::Stale);
        };
        // The entry carries its generations, so even an invalidation that lands between
        // this check and the insert leaves it unreadable.
        if self.current(key.scope()) != Some(generation) {
            metrics::set(key.family(), "stale");
            return Ok(Stored::Stale);
        }
        self.values
            .insert(
                key.name().to_owned(),
                Entry {
                    generation,
                    bytes: value,
                    ttl,
                },
            )
            .await;
        metrics::set(key.family(), "stored");
        Ok(Stored::Stored)
    }

    async fn invalidate(&self, scopes: &[&str]) -> Result<()> {
        for scope in scopes {
            let next = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
            self.generations.insert((*scope).to_owned(), next);
        }
        metrics::invalidated(scopes);
        Ok(())
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.values.invalidate(key.name()).await;
        Ok(())
    }

    async fn health(&self) -> CacheHealth {
        CacheHealth::Up
    }

    /// Entries never leave the process, so nothing else can write them.
    fn verifies_integrity(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> MemoryCache {
        MemoryCache::new(MemoryConfig {
            max_value_bytes: 16,
            ..MemoryConfig::default()
        })
    }

    async fn ticket(c: &MemoryCache, k: &Key) -> Ticket {
        match c.get(k).await.expect("get") {
            Lookup::Miss(t) => t,
            Lookup::Hit(_) => panic!("expected a miss"),
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    /// Misses `k`, then puts `value` under the miss's ticket: what the put did.
    async fn store(c: &MemoryCache, k: &Key, value: impl Into<Bytes>, ttl: Duration) -> Stored {
        let t = ticket(c, k).await;
        c.put(k, Fill::new(&t, value, ttl)).await.expect("put")
    }

    async fn fill(c: &MemoryCache, k: &Key, value: &'static str) {
        assert_eq!(store(c, k, value, TTL).await, Stored::Stored);
    }

    #[tokio::test]
    async fn a_put_with_a_current_ticket_is_served() {
        let c = cache();
        let k = Key::new("detail", "detail:1", &[("id", "1")]);
        fill(&c, &k, "v1").await;
        assert!(matches!(c.get(&k).await, Ok(Lookup::Hit(b)) if b == "v1"));
    }

    #[tokio::test]
    async fn an_invalidation_between_get_and_put_refuses_the_put() {
        let c = cache();
        let k = Key::new("detail", "detail:1", &[("id", "1")]);
        let t = ticket(&c, &k).await;
        c.invalidate(&["detail:1"]).await.expect("invalidate");
        assert_eq!(
            c.put(&k, Fill::new(&t, "old", TTL)).await.expect("put"),
            Stored::Stale
        );
        assert!(matches!(c.get(&k).await, Ok(Lookup::Miss(_))));
    }

    #[tokio::test]
    async fn invalidating_a_scope_hides_all_its_entries_and_no_other() {
        let c = cache();
        let a = Key::new("list", "list", &[("page", "1")]);
        let b = Key::new("list", "list", &[("page", "2")]);
        let other = Key::new("stats", "stats", &[]);
        for k in [&a, &b, &other] {
            fill(&c, k, "x").await;
        }
        c.invalidate(&["list"]).await.expect("invalidate");
        assert!(matches!(c.get(&a).await, Ok(Lookup::Miss(_))));
        assert!(matches!(c.get(&b).await, Ok(Lookup::Miss(_))));
        assert!(matches!(c.get(&other).await, Ok(Lookup::Hit(_))));
    }

    #[tokio::test]
    async fn large_values_and_expired_entries_are_not_served() {
        let c = cache();
        let k = Key::new("list", "list", &[]);
        let big = vec![b'x'; 17];
        assert_eq!(store(&c, &k, big, TTL).await, Stored::TooLarge);
        let brief = Duration::from_millis(30);
        assert_eq!(store(&c, &k, "short", brief).await, Stored::Stored);
        assert!(matches!(c.get(&k).await, Ok(Lookup::Hit(_))));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(c.get(&k).await, Ok(Lookup::Miss(_))));
        c.remove(&k).await.expect("remove");
        assert_eq!(c.health().await, CacheHealth::Up);
        assert!(format!("{c:?}").contains("MemoryCache"));
    }

    #[tokio::test]
    async fn a_root_scope_invalidates_its_children_and_a_child_only_itself() {
        let c = cache();
        let wall = Key::new("list", "list|city=Wall", &[("city", "Wall")]);
        let brick = Key::new("list", "list|city=Brick", &[("city", "Brick")]);
        for k in [&wall, &brick] {
            fill(&c, k, "v").await;
        }
        c.invalidate(&["list|city=Wall"]).await.expect("invalidate");
        assert!(matches!(c.get(&wall).await, Ok(Lookup::Miss(_))));
        assert!(matches!(c.get(&brick).await, Ok(Lookup::Hit(_))));
        c.invalidate(&["list"]).await.expect("invalidate");
        assert!(matches!(c.get(&brick).await, Ok(Lookup::Miss(_))));
    }

    #[tokio::test]
    async fn a_ticket_that_never_was_cannot_store() {
        let c = cache();
        let k = Key::new("list", "list", &[]);
        assert_eq!(
            c.put(
                &k,
                Fill::new(&Ticket::none(), Bytes::from_static(b"x"), TTL)
            )
            .await
            .expect("put"),
            Stored::Stale
        );
        assert_eq!(
            c.put(
                &k,
                Fill::new(&Ticket::new("garbage"), Bytes::from_static(b"x"), TTL)
            )
            .await
            .expect("put"),
            Stored::Stale
        );
    }
}
