//! Why a cache call did not succeed, with the error that caused it.

use std::error::Error;
use std::sync::Arc;

/// Why a cache call did not succeed. Callers fall back to the source of truth.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The backend did not answer in time, failed, or is known to be down.
    #[error("cache unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The backend answered something the cache cannot use.
    #[error("cache protocol error: {0}")]
    Protocol(#[source] Cause),
    /// The configuration cannot work (a malformed URL, say).
    #[error("cache configuration: {0}")]
    Config(#[source] Cause),
}

/// What caused a [`CacheError`]: the underlying error (Redis's, say) with its chain of
/// sources, or a message where there is none. Cheap to clone: one load's failure is
/// shared by every read that joined it.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync>);

impl Cause {
    /// The cause `e`: its message, then its sources.
    pub fn new(e: impl Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The cause's own sources: its message is the [`CacheError`]'s.
impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self(Arc::from(Box::<dyn Error + Send + Sync>::from(message)))
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl From<redis::RedisError> for Cause {
    fn from(e: redis::RedisError) -> Self {
        Self::new(e)
    }
}

impl From<deadpool_redis::PoolError> for Cause {
    fn from(e: deadpool_redis::PoolError) -> Self {
        Self::new(e)
    }
}

impl From<serde_json::Error> for Cause {
    fn from(e: serde_json::Error) -> Self {
        Self::new(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connecting failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_cause_and_its_sources_follow_the_error() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = CacheError::Unavailable(Cause::new(Outer(refused)));
        assert_eq!(e.to_string(), "cache unavailable: connecting failed");
        let mut chain = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        assert_eq!(chain, ["connecting failed", "refused"]);
    }
}
