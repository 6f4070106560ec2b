//! The near tier and the bus, on private redis-servers: two `TieredCache`s stand for two
//! instances sharing one Redis.

// Printing the measured delays is part of what the delay test is for.
#![allow(clippy::print_stdout)]

mod common;

use common::*;
use std::time::{Duration, Instant};

use bytes::Bytes;
use letip_cache::{
    BusEvent, Cache, Fill, IndexLookup, Key, Lookup, NearConfig, RedisBus, Stored, TieredCache,
};
use letip_testkit::{RedisServer, eventually};

fn instance(url: &str, with_bus: bool) -> TieredCache {
    let far = far(url);
    let bus = with_bus.then(|| RedisBus::new(far.clone(), "cache:v1:invalidations"));
    TieredCache::new(far, NearConfig::default(), bus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_near_copy_is_served_without_fetching_the_value() {
    let redis = RedisServer::start();
    let c = instance(&redis.url(), false);
    let k = detail("1");
    warm(&c, &k, b"from the database").await;
    // Rewrite the stored value behind the cache's back, keeping its generation header:
    // only a copy served from the near tier can still say the original.
    let name = "cache:v1:{detail%3A1}:detail:id=1";
    let stored = redis.cli(&["GET", name]);
    let header = stored.split('\n').next().expect("a header");
    redis.cli(&["SET", name, &format!("{header}\nrewritten"), "PX", "60000"]);
    assert!(matches!(c.get(&k).await, Ok(Lookup::Hit(b)) if b == "from the database"));
    // Once the entry is gone from Redis (expired, evicted), the copy is not served.
    redis.cli(&["DEL", name]);
    assert!(matches!(c.get(&k).await, Ok(Lookup::Miss(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_s_invalidation_is_never_hidden_by_a_near_copy() {
    let redis = RedisServer::start();
    // No bus at all: freshness rests on validation alone.
    let (a, b) = (instance(&redis.url(), false), instance(&redis.url(), false));
    let k = detail("2");
    warm(&b, &k, b"v0").await;
    assert!(matches!(b.get(&k).await, Ok(Lookup::Hit(v)) if v == "v0"));
    assert!(b.holds_near_copy(&k));
    for round in 0..20 {
        a.invalidate(&["detail:2"]).await.expect("invalidate");
        // The very next lookup on B, with no delay, misses.
        let Ok(Lookup::Miss(t)) = b.get(&k).await else {
            panic!("round {round}: B served a copy older than A's invalidation")
        };
        b.put(&k, Fill::new(&t, "v1", TTL)).await.expect("store");
        assert!(matches!(b.get(&k).await, Ok(Lookup::Hit(v)) if v == "v1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_invalidations_drop_near_copies_everywhere_and_a_lost_subscription_drops_all() {
    let mut redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), true), instance(&redis.url(), true));
    let (k2, k3) = (detail("2"), detail("3"));
    // Subscriptions are made in the background; wait until an announcement gets through.
    warm(&b, &k2, b"v").await;
    eventually("an announcement gets through", async || {
        a.invalidate(&["detail:2"]).await.expect("invalidate");
        !b.holds_near_copy(&k2)
    })
    .await;

    warm(&b, &k2, b"v").await;
    warm(&b, &k3, b"v").await;
    a.invalidate(&["detail:2"]).await.expect("invalidate");
    eventually("the announced scope is dropped", async || {
        !b.holds_near_copy(&k2)
    })
    .await;
    assert!(b.holds_near_copy(&k3), "other scopes keep their copies");

    redis.kill();
    eventually("a lost subscription drops every copy", async || {
        !b.holds_near_copy(&k3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_delivery_delay_between_instances() {
    let redis = RedisServer::start();
    let (fa, fb) = (far(&redis.url()), far(&redis.url()));
    let a = RedisBus::new(fa, "bench");
    let b = RedisBus::new(fb, "bench");
    let mut inbox = b.subscribe();
    // Wait for B's subscription.
    while !matches!(inbox.recv().await, Ok(BusEvent::Connected)) {}
    let mut delays = Vec::new();
    let mut resent = 0;
    for i in 0..200u32 {
        // Pub/sub is at most once: a message sent while the subscription is still being
        // set up is lost, so a message not seen within 2 s is sent again (and its delay
        // measured from then) rather than waited for forever.
        let mut attempts = 0;
        let delay = loop {
            attempts += 1;
            assert!(attempts <= 3, "message {i} never arrived in three sends");
            let sent = Instant::now();
            a.publish(&i.to_be_bytes()).await.expect("published");
            let arrived = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    match inbox.recv().await {
                        Ok(BusEvent::Message(m)) if m.as_ref() == i.to_be_bytes() => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            panic!("the bus closed")
                        }
                        _ => {}
                    }
                }
            })
            .await;
            if arrived.is_ok() {
                break sent.elapsed();
            }
            resent += 1;
        };
        delays.push(delay);
    }
    delays.sort();
    let pct = |p: usize| delays[(delays.len() * p / 100).min(delays.len() - 1)];
    println!(
        "bus delivery between two instances over {} messages ({resent} sent again): p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        pct(50),
        pct(99),
        delays[delays.len() - 1]
    );
    assert_eq!(delays.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_copies_of_an_index_and_its_members_are_served_once_confirmed_and_never_after_an_invalidation()
 {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), false), instance(&redis.url(), false));
    let page = Key::new("list", "list|[null]", &[("page", "1")]);
    let rows = [row(1), row(2)];
    for (i, k) in rows.iter().enumerate() {
        let v: &'static [u8] = if i == 0 { b"one" } else { b"two" };
        warm(&b, k, v).await;
    }
    let IndexLookup::Miss(t) = b.get_index(&page, &rows_named).await.expect("lookup") else {
        panic!("cold")
    };
    let stored = b.put_index(&page, Fill::new(&t, "1,2", TTL), &rows);
    assert_eq!(stored.await.expect("store"), Stored::Stored);

    // Rewrite every stored value behind the cache's back, keeping the headers: only near
    // copies can still say the originals, and the index still names its rows.
    for (name, value) in [
        ("cache:v1:{list}:row:id=1", "rewritten"),
        ("cache:v1:{list}:row:id=2", "rewritten"),
    ] {
        let stored = redis.cli(&["GET", name]);
        let header = stored.split('\n').next().expect("a header");
        redis.cli(&["SET", name, &format!("{header}\n{value}"), "PX", "60000"]);
    }
    // Holding copies of the index and of every row, B confirms them with one MULTI of
    // plain commands and no script.
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let found = b.get_index(&page, &rows_named).await.expect("lookup");
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_exec:calls=1,"), "{stats}");
    assert!(!stats.contains("cmdstat_evalsha"), "{stats}");
    let IndexLookup::Hit { value, .. } = &found else {
        panic!("warm")
    };
    assert_eq!(&value[..], b"1,2");
    assert_eq!(
        members(&found),
        [Some(Bytes::from("one")), Some(Bytes::from("two"))]
    );

    // Row 1 expires in Redis: its near copy is not confirmed any more, row 2's still is.
    redis.cli(&["DEL", "cache:v1:{list}:row:id=1"]);
    let found = b.get_index(&page, &rows_named).await.expect("lookup");
    assert_eq!(members(&found), [None, Some(Bytes::from("two"))]);

    // Another instance invalidates row 2: B's very next lookup misses it too.
    a.invalidate(&["list|row:2"]).await.expect("invalidate");
    let found = b.get_index(&page, &rows_named).await.expect("lookup");
    assert_eq!(members(&found), [None, None]);
    // And the page itself: the index misses.
    a.invalidate(&["list|[null]"]).await.expect("invalidate");
    assert!(matches!(
        b.get_index(&page, &rows_named).await,
        Ok(IndexLookup::Miss(_))
    ));
}

/// Two loads under one ticket can store two indexes under one tag, one after the other
/// (a write committed between them and has not bumped the generation yet). A near copy of
/// the first is not the second: asked about by tag, the answer's members must still be
/// the copy's own, never the stored index's members answered in the copy's positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_copy_is_never_confirmed_against_another_index_stored_under_its_tag() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), false), instance(&redis.url(), false));
    let page = Key::new("list", "list|[null]", &[("page", "1")]);
    for (id, v) in [(1, &b"one"[..]), (2, b"two"), (3, b"three")] {
        warm(&b, &row(id), v).await;
    }
    // Both instances miss the page under the same generation.
    let IndexLookup::Miss(tb) = b.get_index(&page, &rows_named).await.expect("lookup") else {
        panic!("cold")
    };
    let IndexLookup::Miss(ta) = a.get_index(&page, &rows_named).await.expect("lookup") else {
        panic!("cold")
    };
    assert_eq!(ta.generation(), tb.generation());
    // B stores (and keeps a copy of) the page as it read it, then A as it read it later.
    let (first, later) = ([row(1), row(2)], [row(3), row(1)]);
    let stored = b.put_index(&page, Fill::new(&tb, "1,2", TTL), &first);
    assert_eq!(stored.await.expect("store"), Stored::Stored);
    let stored = a.put_index(&page, Fill::new(&ta, "3,1", TTL), &later);
    assert_eq!(stored.await.expect("store"), Stored::Stored);
    // Row 2 changes, so that B's copies are not all current and B asks by script.
    a.invalidate(&["list|row:2"]).await.expect("invalidate");
    let found = b.get_index(&page, &rows_named).await.expect("lookup");
    let IndexLookup::Hit { value, .. } = &found else {
        panic!("the page is stored")
    };
    let by_id = |id: &str| match id {
        "1" => Some(Bytes::from("one")),
        "3" => Some(Bytes::from("three")),
        _ => None,
    };
    // Each member answered is the one the answered index names at its position.
    let named: Vec<Option<Bytes>> = std::str::from_utf8(value)
        .expect("ids")
        .split(',')
        .map(by_id)
        .collect();
    assert_eq!(members(&found), named, "index {value:?}");
}

/// The near tier never holds more than its setting, whatever is read through it: the
/// copies it lets go are the least used, and what it holds is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_tier_holds_at_most_its_max_bytes() {
    let redis = RedisServer::start();
    let max_bytes = 64 * 1024;
    let config = NearConfig {
        max_bytes,
        ..NearConfig::default()
    };
    let c = TieredCache::new(far(&redis.url()), config, None);
    let value = vec![b'x'; 4096];
    // Sixteen times what it may hold.
    for id in 0..256 {
        let k = detail(&id.to_string());
        fill(&c, &k, value.clone()).await;
        let (bytes, _) = c.near_size();
        assert!(
            bytes <= max_bytes,
            "after {id} copies the near tier held {bytes} bytes"
        );
    }
    let (bytes, entries) = c.near_size();
    assert!(
        bytes > max_bytes / 2 && entries >= 8,
        "it still keeps copies up to its bound: {bytes} bytes in {entries} copies"
    );
    // What it let go is read from Redis, whole.
    assert_eq!(hit(&c, &detail("0")).await, value);
}
