//! [`NoopCache`]: stores nothing.

use crate::{Fill, Result};

use async_trait::async_trait;

use crate::{Cache, CacheHealth, Key, Lookup, Stored, Ticket};

/// A cache that stores nothing: every read misses. For running without a cache, and for
/// tests that must see the source of truth on every read.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopCache;

#[async_trait]
impl Cache for NoopCache {
    async fn get(&self, _key: &Key) -> Result<Lookup> {
        Ok(Lookup::Miss(Ticket::none()))
    }

    async fn put(&self, _key: &Key, _fill: Fill<'_>) -> Result<Stored> {
        Ok(Stored::Skipped)
    }

    async fn invalidate(&self, _scopes: &[&str]) -> Result<()> {
        Ok(())
    }

    async fn remove(&self, _key: &Key) -> Result<()> {
        Ok(())
    }

    async fn health(&self) -> CacheHealth {
        CacheHealth::Disabled
    }

    fn is_enabled(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn never_returns_what_was_put() {
        let cache = NoopCache;
        let key = Key::new("f", "s", &[]);
        let Lookup::Miss(t) = cache.get(&key).await.expect("get") else {
            panic!("a noop cache never hits")
        };
        let stored = cache.put(&key, Fill::new(&t, "v", Duration::from_secs(9)));
        assert_eq!(stored.await.expect("put"), Stored::Skipped);
        assert!(matches!(cache.get(&key).await, Ok(Lookup::Miss(_))));
        assert_eq!(cache.health().await, CacheHealth::Disabled);
        assert!(!cache.is_enabled());
        cache.invalidate(&["s"]).await.expect("invalidate");
        cache.remove(&key).await.expect("remove");
    }
}
