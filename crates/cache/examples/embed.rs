//! Embedding the cache in another service: a user profile lookup, cache-aside, with
//! invalidation on update. Runs against Redis when `REDIS_URL` is set, else in memory:
//!
//! ```sh
//! cargo run -p letip-cache --example embed
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p letip-cache --example embed
//! ```

// Printing its results is what this program is for.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use letip_cache::{
    Cache, CacheExt, JsonLookup, Key, MemoryCache, MemoryConfig, RedisCache, RedisConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Profile {
    id: u32,
    name: String,
}

/// The service: a source of truth (a map standing in for a database) and a cache.
struct Profiles {
    db: Mutex<HashMap<u32, Profile>>,
    cache: Arc<dyn Cache>,
}

impl Profiles {
    fn key(id: u32) -> Key {
        // Family "profile" (metrics label), scope "profile:{id}" (what an update invalidates).
        Key::new(
            "profile",
            format!("profile:{id}"),
            &[("id", &id.to_string())],
        )
    }

    async fn get(&self, id: u32) -> Option<(Profile, &'static str)> {
        let key = Self::key(id);
        // A cache error is a miss without a ticket: read the source of truth, store nothing.
        let ticket = match self.cache.get_json::<Profile>(&key).await {
            Ok(JsonLookup::Hit(p)) => return Some((p, "hit")),
            Ok(JsonLookup::Miss(ticket)) => Some(ticket),
            Err(_) => None,
        };
        let profile = self.db.lock().ok()?.get(&id).cloned()?;
        if let Some(ticket) = ticket {
            // Stored only if no update invalidated the scope since the lookup.
            let _ = self
                .cache
                .put_json(&key, &ticket, &profile, Duration::from_secs(300))
                .await;
        }
        Some((profile, "miss"))
    }

    async fn rename(&self, id: u32, name: &str) {
        if let Ok(mut db) = self.db.lock()
            && let Some(p) = db.get_mut(&id)
        {
            p.name = name.to_owned();
        }
        // After the write, before answering: every later read sees it.
        let _ = self.cache.invalidate(&[&format!("profile:{id}")]).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache: Arc<dyn Cache> = match std::env::var("REDIS_URL") {
        Ok(url) => Arc::new(RedisCache::new(RedisConfig {
            url,
            namespace: "embed-example:v1".into(),
            ..RedisConfig::default()
        })?),
        Err(_) => Arc::new(MemoryCache::new(MemoryConfig::default())),
    };
    let service = Profiles {
        db: Mutex::new(HashMap::from([(
            7,
            Profile {
                id: 7,
                name: "Ada".into(),
            },
        )])),
        cache,
    };
    for _ in 0..2 {
        let (p, how) = service.get(7).await.ok_or("profile 7 exists")?;
        println!("{how}: {p:?}");
    }
    service.rename(7, "Ada Lovelace").await;
    let (p, how) = service.get(7).await.ok_or("profile 7 exists")?;
    println!("after the update, {how}: {p:?}");
    assert_eq!(p.name, "Ada Lovelace");
    Ok(())
}
