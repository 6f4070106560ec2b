//! [`CacheBuilder`]: every mode of the crate from one builder, wired the same way for
//! the server and for any service that embeds the crate.
//!
//! | mode | what it makes |
//! |---|---|
//! | [`CacheBuilder::none`] | [`NoopCache`]: every read goes to the source |
//! | [`CacheBuilder::memory`] | [`MemoryCache`]: one process only |
//! | [`CacheBuilder::redis`] | [`RedisCache`], shared by every instance; with [`CacheBuilder::lease`], its writes also wait for the leased near tiers of instances in the tiered mode (an [`AnnouncedCache`]), so the two modes can run side by side |
//! | [`CacheBuilder::tiered`] | [`TieredCache`]: a near tier in front of Redis, leased by default (near hits without a round trip), confirmed with `lease(None)` |
//!
//! Redis modes also get the background probe that finds Redis again after an outage
//! (stopped with [`Caching::shutdown`] or when the [`Caching`] is dropped), and the
//! invalidation channel `{namespace}:invalidations` between instances.

use crate::Result;
use std::sync::Arc;

use crate::{
    AnnouncedCache, BackgroundProbe, Cache, CacheAside, LeaseConfig, MemoryCache, MemoryConfig,
    NearConfig, NoopCache, RedisBus, RedisCache, RedisConfig, TieredCache,
};

#[derive(Debug, Clone)]
enum Mode {
    None,
    Memory(MemoryConfig),
    Redis(RedisConfig),
    Tiered(RedisConfig),
}

/// Builds a cache of any mode. Redis modes must be built inside a Tokio runtime;
/// building never waits for Redis (connections are made on first use).
#[derive(Debug, Clone)]
pub struct CacheBuilder {
    mode: Mode,
    lease: Option<LeaseConfig>,
    near_max_bytes: u64,
}

impl CacheBuilder {
    fn of(mode: Mode) -> Self {
        Self {
            mode,
            lease: Some(LeaseConfig::default()),
            near_max_bytes: NearConfig::default().max_bytes,
        }
    }

    /// No cache: every read goes to the source (tests, or a cache switched off).
    pub fn none() -> Self {
        Self::of(Mode::None)
    }

    /// An in-process cache: fresh for one process only.
    pub fn memory(config: MemoryConfig) -> Self {
        Self::of(Mode::Memory(config))
    }

    /// Redis, shared by every instance.
    pub fn redis(config: RedisConfig) -> Self {
        Self::of(Mode::Redis(config))
    }

    /// A near tier in each instance in front of Redis, as fresh as Redis alone.
    pub fn tiered(config: RedisConfig) -> Self {
        Self::of(Mode::Tiered(config))
    }

    /// The near tier's lease (`None`: every near hit is confirmed by Redis). For the
    /// Redis mode, `Some` makes writes wait for the leased near tiers of other
    /// instances, as a tiered instance's writes do; every instance of one namespace
    /// must use the same lease.
    #[must_use]
    pub fn lease(mut self, lease: Option<LeaseConfig>) -> Self {
        self.lease = lease;
        self
    }

    /// Most bytes the near tier holds (keys and values).
    #[must_use]
    pub fn near_max_bytes(mut self, bytes: u64) -> Self {
        self.near_max_bytes = bytes;
        self
    }

    /// Makes the cache. Fails only on a configuration that cannot work (a malformed
    /// URL); Redis being down is not an error.
    pub fn build(self) -> Result<Caching> {
        let redis = |config: RedisConfig| -> Result<_> {
            let far = Arc::new(RedisCache::new(config)?);
            let probe = far.probe_in_background();
            let channel = format!("{}:invalidations", far.namespace());
            Ok((far, probe, channel))
        };
        Ok(match self.mode {
            Mode::None => Caching::local(Arc::new(NoopCache)),
            Mode::Memory(config) => Caching::local(Arc::new(MemoryCache::new(config))),
            Mode::Redis(config) => {
                let (far, probe, channel) = redis(config)?;
                let cache: Arc<dyn Cache> = match self.lease {
                    Some(lease) => Arc::new(AnnouncedCache::new(far.clone(), &channel, lease)),
                    None => far.clone(),
                };
                Caching {
                    cache,
                    far: Some(far),
                    probe: Some(probe),
                }
            }
            Mode::Tiered(config) => {
                let (far, probe, channel) = redis(config)?;
                let invalidations = RedisBus::new(far.clone(), &channel);
                let near = NearConfig {
                    max_bytes: self.near_max_bytes,
                    lease: self.lease,
                };
                Caching {
                    cache: Arc::new(TieredCache::new(far.clone(), near, Some(invalidations))),
                    far: Some(far),
                    probe: Some(probe),
                }
            }
        })
    }
}

/// A built cache and what keeps it running.
#[derive(Debug)]
pub struct Caching {
    cache: Arc<dyn Cache>,
    far: Option<Arc<RedisCache>>,
    probe: Option<BackgroundProbe>,
}

impl Caching {
    fn local(cache: Arc<dyn Cache>) -> Self {
        Self {
            cache,
            far: None,
            probe: None,
        }
    }

    /// The cache, to share.
    pub fn cache(&self) -> Arc<dyn Cache> {
        self.cache.clone()
    }

    /// Cache-aside reads over the cache, for loads that fail with `E`.
    pub fn aside<E: Clone + Send + Sync + 'static>(&self) -> CacheAside<E> {
        CacheAside::new(self.cache.clone())
    }

    /// A pub/sub channel `{namespace}:{name}` between the instances sharing this Redis
    /// (live events, say); `None` without Redis.
    pub fn bus(&self, name: &str) -> Option<Arc<RedisBus>> {
        let far = self.far.as_ref()?;
        Some(RedisBus::new(
            far.clone(),
            &format!("{}:{name}", far.namespace()),
        ))
    }

    /// Stops the background probe. Dropping the [`Caching`] does the same.
    pub fn shutdown(self) {
        if let Some(probe) = self.probe {
            probe.stop();
        }
    }
}
