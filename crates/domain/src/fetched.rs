//! What a read returns: the value, either typed or as its already-serialized JSON, and
//! where it came from. Letting a cache hit carry its bytes to the HTTP response spares a
//! decode and a re-encode on the hot path without giving up the typed repository port.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

/// Where a read was answered from; the HTTP layer reports it as `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    /// No cache took part: caching is disabled or the cache was unavailable.
    Bypass,
    /// The source of truth could not be reached: the value last stored in the cache,
    /// `age` ago, with nothing written to what it shows since (a fail-safe read).
    Stale {
        age: std::time::Duration,
    },
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
            Self::Stale { .. } => "STALE",
        }
    }
}

/// A value, or the JSON that serializes it.
#[derive(Debug, Clone)]
pub enum Body<T> {
    Typed(T),
    /// The JSON document of a `T`, produced by serializing one.
    Json(Bytes),
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    pub body: Body<T>,
    pub cache: CacheStatus,
}

impl<T> Fetched<T> {
    /// A value read from the source of truth with no cache involved.
    pub fn bypass(value: T) -> Self {
        Self {
            body: Body::Typed(value),
            cache: CacheStatus::Bypass,
        }
    }

    pub fn with_cache(mut self, cache: CacheStatus) -> Self {
        self.cache = cache;
        self
    }
}

impl<T: Serialize + DeserializeOwned> Fetched<T> {
    /// The typed value, decoding the JSON if needed.
    pub fn into_value(self) -> Result<T, serde_json::Error> {
        match self.body {
            Body::Typed(v) => Ok(v),
            Body::Json(b) => serde_json::from_slice(&b),
        }
    }

    /// The JSON document, encoding the value if needed.
    pub fn into_json(self) -> Result<Bytes, serde_json::Error> {
        match self.body {
            Body::Typed(v) => serde_json::to_vec(&v).map(Bytes::from),
            Body::Json(b) => Ok(b),
        }
    }
}
