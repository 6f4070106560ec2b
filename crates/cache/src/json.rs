//! Typed JSON on top of the bytes-level [`Cache`]: any `Cache` (trait objects included)
//! gets `get_json` and `put_json`. An entry that does not decode is removed, counted in
//! `cache_corrupt_total`, and reported as a miss that cannot store (the source of truth
//! answers; the next reader repopulates it).

use crate::{Fill, Result};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Cache, CacheError, Key, Lookup, Stored, Ticket};

/// What a typed lookup found.
#[derive(Debug)]
pub enum JsonLookup<T> {
    Hit(T),
    Miss(Ticket),
}

#[async_trait]
pub trait CacheExt: Cache {
    async fn get_json<T: DeserializeOwned + Send>(&self, key: &Key) -> Result<JsonLookup<T>> {
        match self.get(key).await? {
            Lookup::Miss(t) => Ok(JsonLookup::Miss(t)),
            Lookup::Hit(bytes) => match serde_json::from_slice(&bytes) {
                Ok(v) => Ok(JsonLookup::Hit(v)),
                Err(e) => {
                    tracing::warn!(family = key.family(), error = %e, "removing an undecodable cache entry");
                    crate::metrics::corrupt(key.family());
                    let _ = self.remove(key).await;
                    Ok(JsonLookup::Miss(Ticket::none()))
                }
            },
        }
    }

    async fn put_json<T: Serialize + Sync>(
        &self,
        key: &Key,
        ticket: &Ticket,
        value: &T,
        ttl: Duration,
    ) -> Result<Stored> {
        let bytes = serde_json::to_vec(value).map_err(|e| CacheError::Protocol(e.into()))?;
        self.put(key, Fill::new(ticket, Bytes::from(bytes), ttl))
            .await
    }
}

impl<C: Cache + ?Sized> CacheExt for C {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{MemoryCache, MemoryConfig};

    #[tokio::test]
    async fn typed_values_round_trip_and_undecodable_ones_are_removed() {
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(MemoryConfig::default()));
        let key = Key::new("user", "user:1", &[("id", "1")]);
        let JsonLookup::Miss(t) = cache.get_json::<Vec<u32>>(&key).await.expect("get") else {
            panic!("cold")
        };
        let value = vec![1u32, 2];
        let stored = cache
            .put_json(&key, &t, &value, Duration::from_secs(5))
            .await;
        assert_eq!(stored.expect("put"), Stored::Stored);
        assert!(
            matches!(cache.get_json::<Vec<u32>>(&key).await, Ok(JsonLookup::Hit(v)) if v == [1, 2])
        );

        // Stored as one type, read as another: removed and reported as an unusable miss.
        let wrong = cache.get_json::<String>(&key).await.expect("get");
        assert!(matches!(wrong, JsonLookup::Miss(t) if t == Ticket::none()));
        assert!(
            matches!(cache.get(&key).await, Ok(Lookup::Miss(_))),
            "the entry is gone"
        );
    }
}
