//! What the cache's integration tests share: keys, a far tier, and lookups that expect
//! an answer. Each test file uses part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use letip_cache::{Cache, Fill, IndexLookup, Key, Lookup, RedisCache, RedisConfig, Stored, Ticket};

pub const TTL: Duration = Duration::from_secs(60);

/// A Redis cache on `url` with the default settings.
pub fn far(url: &str) -> Arc<RedisCache> {
    let config = RedisConfig {
        url: url.to_owned(),
        ..RedisConfig::default()
    };
    Arc::new(RedisCache::new(config).expect("config"))
}

pub fn detail(id: &str) -> Key {
    Key::new("detail", format!("detail:{id}"), &[("id", id)])
}

/// A row of a list: a member of a page index.
pub fn row(id: u32) -> Key {
    Key::new("row", format!("list|row:{id}"), &[("id", &id.to_string())])
}

/// The row keys a test index names (its value is the ids, comma-separated).
pub fn rows_named(value: &[u8]) -> Option<Vec<Key>> {
    std::str::from_utf8(value)
        .ok()?
        .split(',')
        .map(|id| id.parse().ok().map(row))
        .collect()
}

pub async fn miss(c: &(impl Cache + ?Sized), k: &Key) -> Ticket {
    match c.get(k).await.expect("the cache answers") {
        Lookup::Miss(t) => t,
        Lookup::Hit(b) => panic!("expected a miss, got {b:?}"),
    }
}

pub async fn hit(c: &(impl Cache + ?Sized), k: &Key) -> Bytes {
    match c.get(k).await.expect("the cache answers") {
        Lookup::Hit(b) => b,
        Lookup::Miss(_) => panic!("expected a hit"),
    }
}

/// Misses `k`, then stores `value` under the miss's ticket.
pub async fn fill(c: &(impl Cache + ?Sized), k: &Key, value: impl Into<Bytes>) {
    let t = miss(c, k).await;
    let stored = c.put(k, Fill::new(&t, value, TTL)).await;
    assert_eq!(stored.expect("put"), Stored::Stored);
}

/// Stores `value` under `k` unless a current entry is there, and answers what is.
pub async fn warm(c: &(impl Cache + ?Sized), k: &Key, value: &'static [u8]) -> Bytes {
    match c.get(k).await.expect("lookup") {
        Lookup::Miss(t) => {
            let stored = c.put(k, Fill::new(&t, Bytes::from_static(value), TTL));
            assert_eq!(stored.await.expect("store"), Stored::Stored);
            Bytes::from_static(value)
        }
        Lookup::Hit(b) => b,
    }
}

/// Which members of an index hit, and the bytes of those that do.
pub fn members(found: &IndexLookup) -> Vec<Option<Bytes>> {
    let IndexLookup::Hit { members, .. } = found else {
        panic!("expected the index to hit")
    };
    members
        .iter()
        .map(|m| match m {
            Lookup::Hit(b) => Some(b.clone()),
            Lookup::Miss(_) => None,
        })
        .collect()
}
