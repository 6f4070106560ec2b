//! [`AnnouncedCache`]: a [`RedisCache`] whose writes take part in the leases of near tiers
//! sharing its Redis.

use crate::{Fill, Result};
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::task::AbortOnDropHandle;

use crate::bus::RedisBus;
use crate::lease::{LeaseConfig, Leases, Waited};
use crate::{Cache, CacheHealth, IndexLookup, Key, Lookup, Members, RedisCache, Stored};

/// A [`RedisCache`] for an instance without a near tier beside instances with a leased
/// one (a [`TieredCache`](crate::TieredCache) whose bus is on `channel`): it holds no
/// lease and serves only from Redis, but each invalidation is announced on `channel`
/// and answered only once every lease holder dropped it or its lease ran out, exactly as
/// a leased near tier's own writes. Without it, a near tier's copies would outlive its
/// writes until the change feed or the holder's next confirmation reached them.
#[derive(Debug)]
pub struct AnnouncedCache {
    far: Arc<RedisCache>,
    leases: Arc<Leases>,
    _acks: Arc<RedisBus>,
    _listener: AbortOnDropHandle<()>,
}

impl AnnouncedCache {
    /// Announces `far`'s invalidations on `channel`. Must be called inside a Tokio
    /// runtime.
    pub fn new(far: Arc<RedisCache>, channel: &str, config: LeaseConfig) -> Self {
        let origin = format!("{:016x}", rand::random::<u64>());
        let leases = Arc::new(Leases::new(far.clone(), channel, origin, config));
        let (acks, listener) = leases.receive_acks();
        Self {
            far,
            leases,
            _acks: acks,
            _listener: listener,
        }
    }

    /// [`Cache::invalidate`], answering what the write waited for.
    pub async fn invalidate_waited(&self, scopes: &[&str]) -> (Result<()>, Waited) {
        let result = self.far.invalidate(scopes).await;
        let waited = self.leases.announce_and_wait(scopes, true).await;
        (result, waited)
    }
}

#[async_trait]
impl Cache for AnnouncedCache {
    async fn get(&self, key: &Key) -> Result<Lookup> {
        self.far.get(key).await
    }

    async fn put(&self, key: &Key, fill: Fill<'_>) -> Result<Stored> {
        self.far.put(key, fill).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        self.far.get_many(keys).await
    }

    async fn get_index(&self, key: &Key, members: Members<'_>) -> Result<IndexLookup> {
        self.far.get_index(key, members).await
    }

    async fn put_index(&self, key: &Key, fill: Fill<'_>, members: &[Key]) -> Result<Stored> {
        self.far.put_index(key, fill, members).await
    }

    async fn invalidate(&self, scopes: &[&str]) -> Result<()> {
        self.invalidate_waited(scopes).await.0
    }

    async fn invalidate_detached(&self, scopes: &[&str]) -> Result<()> {
        let result = self.far.invalidate(scopes).await;
        self.leases.announce_and_wait(scopes, false).await;
        result
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.far.remove(key).await
    }

    async fn health(&self) -> CacheHealth {
        self.far.health().await
    }

    fn verifies_integrity(&self) -> bool {
        self.far.verifies_integrity()
    }
}
