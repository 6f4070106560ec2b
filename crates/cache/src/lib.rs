//! A cache that other services embed: one object-safe async trait, [`Cache`], and its
//! implementations. The crate stores opaque bytes under string keys and knows nothing of
//! what they mean; callers own their key scheme and serialization.
//!
//! Every method may fail: a cache is an optimisation, so callers treat an error as a miss
//! and go to their source of truth.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// Why a cache call did not succeed. Callers fall back to the source of truth.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backend did not answer within its time budget or is known to be down.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with something the cache cannot use.
    #[error("cache protocol error: {0}")]
    Protocol(String),
}

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

/// A shared key-value cache with per-entry time to live.
#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug + 'static {
    /// The bytes stored under `key`, or `None` when absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;
    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError>;
    /// Removes every key given; absent keys are not an error.
    async fn delete(&self, keys: &[String]) -> Result<(), CacheError>;
    /// Whether the backend answers now.
    async fn health(&self) -> CacheHealth;
    /// `false` for a cache that never stores anything, so callers can skip serialization.
    fn is_enabled(&self) -> bool {
        true
    }
}

/// A cache that stores nothing: every read misses. Used when caching is disabled and in
/// tests that must see the source of truth on every read.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopCache;

#[async_trait]
impl Cache for NoopCache {
    async fn get(&self, _key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(None)
    }

    async fn set(&self, _key: &str, _value: Bytes, _ttl: Duration) -> Result<(), CacheError> {
        Ok(())
    }

    async fn delete(&self, _keys: &[String]) -> Result<(), CacheError> {
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
    use super::*;

    #[tokio::test]
    async fn noop_cache_never_returns_what_was_set() {
        let cache = NoopCache;
        cache
            .set("k", Bytes::from_static(b"v"), Duration::from_secs(60))
            .await
            .expect("noop set succeeds");
        assert_eq!(cache.get("k").await.expect("noop get succeeds"), None);
        assert_eq!(cache.health().await, CacheHealth::Disabled);
        assert!(!cache.is_enabled());
    }
}
