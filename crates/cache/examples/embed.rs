//! Embedding the cache in another service: products by id and a list of a category's
//! products, cache-aside on the leased near tier in front of Redis, invalidated on every
//! update. Checks what it prints, so it fails if the cache ever answers stale data.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p letip-cache --example embed
//! ```
//! Without `REDIS_URL` it runs on the in-process memory cache.

// Printing its results is what this program is for.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use letip_cache::{
    CacheAside, CacheBuilder, IndexRead, Key, Lookup, MemoryConfig, RedisConfig, Source,
};

/// The source of truth: a map standing in for a database. Cloning shares it.
#[derive(Clone, Default)]
struct Db(Arc<Mutex<BTreeMap<u32, (String, String)>>>);

impl Db {
    fn name(&self, id: u32) -> Option<String> {
        let rows = self.0.lock().ok()?;
        rows.get(&id).map(|(name, _)| name.clone())
    }

    fn ids_in(&self, category: &str) -> Vec<u32> {
        let rows = self.0.lock().map(|r| r.clone()).unwrap_or_default();
        rows.iter()
            .filter(|(_, (_, c))| c == category)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// A product's entry: family `product`, scope `products|{id}` (a child of `products`).
fn product(id: u32) -> Key {
    Key::new(
        "product",
        format!("products|{id}"),
        &[("id", &id.to_string())],
    )
}

/// A category's list: an index entry of scope `products`, whose members are products.
fn category(name: &str) -> Key {
    Key::new("category", "products", &[("name", name)])
}

/// The ids a category's value holds, comma-separated.
fn ids_of(value: &[u8]) -> Vec<u32> {
    let text = std::str::from_utf8(value).unwrap_or_default();
    text.split(',').filter_map(|id| id.parse().ok()).collect()
}

/// The member keys an index value names (for caches that do not keep them with it).
fn members(value: &[u8]) -> Option<Vec<Key>> {
    Some(ids_of(value).into_iter().map(product).collect())
}

struct Products {
    db: Db,
    aside: CacheAside<String>,
}

impl Products {
    async fn get(&self, id: u32) -> Result<(String, Source), String> {
        let db = self.db.clone();
        let loaded = self
            .aside
            .get_or_load(&product(id), Duration::from_secs(600), move || async move {
                db.name(id)
                    .map(Bytes::from)
                    .ok_or(format!("no product {id}"))
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            String::from_utf8_lossy(&loaded.value).into_owned(),
            loaded.source,
        ))
    }

    /// The names of a category's products, and whether the list itself was a hit.
    async fn list(&self, name: &str) -> Result<(Vec<String>, bool), String> {
        let key = category(name);
        let db = self.db.clone();
        let owned = name.to_owned();
        let read = self
            .aside
            .get_or_load_index(
                &key,
                Duration::from_secs(300),
                &members,
                move || async move {
                    let ids = db.ids_in(&owned);
                    let value: Vec<String> = ids.iter().map(u32::to_string).collect();
                    Ok((
                        Bytes::from(value.join(",")),
                        ids.into_iter().map(product).collect(),
                    ))
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let IndexRead::Found {
            value,
            members: found,
            hit,
            ..
        } = read
        else {
            // The cache cannot be asked: read the source.
            let names = self
                .db
                .ids_in(name)
                .into_iter()
                .filter_map(|id| self.db.name(id));
            return Ok((names.collect(), false));
        };
        let ids = ids_of(&value);
        let mut names: Vec<Option<String>> = vec![None; ids.len()];
        let mut missing = Vec::new();
        for ((id, lookup), slot) in ids.iter().zip(found.iter()).zip(names.iter_mut()) {
            match lookup {
                Lookup::Hit(v) => *slot = Some(String::from_utf8_lossy(v).into_owned()),
                Lookup::Miss(ticket) => missing.push((*id, ticket.clone())),
            }
        }
        if !missing.is_empty() {
            let wanted: Vec<_> = missing
                .iter()
                .map(|(id, t)| (product(*id), t.clone()))
                .collect();
            let db = self.db.clone();
            let want: Vec<u32> = missing.iter().map(|(id, _)| *id).collect();
            let loaded = self
                .aside
                .load_members(Duration::from_secs(600), &wanted, async move {
                    Ok(want
                        .iter()
                        .filter_map(|id| db.name(*id).map(Bytes::from))
                        .collect())
                })
                .await
                .map_err(|e| e.to_string())?;
            // The missing ones, in the order they were asked.
            let empty = names.iter_mut().filter(|n| n.is_none());
            for (slot, v) in empty.zip(loaded.values) {
                *slot = Some(String::from_utf8_lossy(&v).into_owned());
            }
        }
        Ok((names.into_iter().flatten().collect(), hit))
    }

    async fn rename(&self, id: u32, name: &str) {
        if let Ok(mut rows) = self.db.0.lock()
            && let Some(row) = rows.get_mut(&id)
        {
            row.0 = name.to_owned();
        }
        // After the write, before answering it: the product's entry, and every list
        // that shows it (its rows live in the child scope; the lists would need the root
        // `products` only if membership changed).
        let _ = self
            .aside
            .cache()
            .invalidate(&[&format!("products|{id}")])
            .await;
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let builder = match std::env::var("REDIS_URL") {
        Ok(url) => CacheBuilder::tiered(RedisConfig {
            url,
            namespace: "embed-example:v1".into(),
            ..RedisConfig::default()
        }),
        Err(_) => CacheBuilder::memory(MemoryConfig::default()),
    };
    let caching = builder.build().map_err(|e| e.to_string())?;
    let db = Db::default();
    for (id, name, cat) in [
        (1, "kettle", "kitchen"),
        (2, "toaster", "kitchen"),
        (3, "lamp", "hall"),
    ] {
        db.0.lock()
            .map_err(|e| e.to_string())?
            .insert(id, (name.into(), cat.into()));
    }
    let products = Products {
        db,
        aside: caching.aside(),
    };
    // This example's source of truth lives in the process and starts anew at each run:
    // what an earlier run left in Redis describes a source that is gone.
    let _ = products.aside.cache().invalidate(&["products"]).await;

    let (name, first) = products.get(1).await?;
    let (_, second) = products.get(1).await?;
    println!("product 1: {name} ({first:?}, then {second:?})");
    assert_eq!((first, second), (Source::Miss, Source::Hit));

    let (names, _) = products.list("kitchen").await?;
    let (again, hit) = products.list("kitchen").await?;
    println!("kitchen: {names:?}, then {again:?} (list hit: {hit})");
    assert_eq!(names, ["kettle", "toaster"]);
    assert!(hit);

    products.rename(1, "electric kettle").await;
    let (name, source) = products.get(1).await?;
    let (names, _) = products.list("kitchen").await?;
    println!("after the rename: product 1 {name} ({source:?}); kitchen {names:?}");
    assert_eq!(name, "electric kettle");
    assert_eq!(names, ["electric kettle", "toaster"]);
    caching.shutdown();
    Ok(())
}
