//! The leased near tier, on private redis-servers: `TieredCache`s stand for instances
//! sharing one Redis, some behind a proxy that stalls their link or their subscription.

mod common;

use common::*;
use std::time::Duration;

use letip_cache::{
    Cache, Fill, IndexLookup, Key, LeaseConfig, Lookup, NearConfig, RedisBus, TieredCache,
};
use letip_testkit::{FaultProxy, RedisServer, eventually};

const CHANNEL: &str = "cache:v1:invalidations";

fn lease(ms: u64, wait_for_acks: bool) -> Option<LeaseConfig> {
    Some(LeaseConfig {
        lease: Duration::from_millis(ms),
        wait_for_acks,
    })
}

/// An instance: data through `data`, its subscriptions through `subscribe`.
fn instance(data: &str, subscribe: &str, lease: Option<LeaseConfig>) -> TieredCache {
    let bus = RedisBus::new(far(subscribe), CHANNEL);
    let config = NearConfig {
        lease,
        ..NearConfig::default()
    };
    TieredCache::new(far(data), config, Some(bus))
}

async fn holds_lease(c: &TieredCache) {
    eventually("the instance holds a lease", async || c.holds_lease()).await;
}

/// Two instances on `url`, each holding a lease of `ms`.
async fn two_holding(url: &str, ms: u64) -> (TieredCache, TieredCache) {
    let (a, b) = (
        instance(url, url, lease(ms, true)),
        instance(url, url, lease(ms, true)),
    );
    holds_lease(&a).await;
    holds_lease(&b).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_lease_a_near_copy_is_served_without_asking_redis_until_the_lease_ends() {
    let redis = RedisServer::start();
    let link = FaultProxy::start(redis.addr()).await;
    let c = instance(&link.url(), &link.url(), lease(1000, true));
    // No lease before the subscription is in place and a renewal came back on it.
    assert!(!c.holds_lease());
    holds_lease(&c).await;
    let k = detail("1");
    warm(&c, &k, b"v0").await;
    assert!(matches!(c.get(&k).await, Ok(Lookup::Hit(v)) if v == "v0"));
    // Redis stops answering: the copy is still served, so it was served unasked...
    link.stall();
    assert!(matches!(c.get(&k).await, Ok(Lookup::Hit(v)) if v == "v0"));
    // ...until the lease, which can no longer be renewed, ends.
    eventually("the lease ends", async || !c.holds_lease()).await;
    assert!(c.get(&k).await.is_err(), "served after the lease ended");
    link.resume();
}

/// One thread, so that every lookup goes through the same front map of copies: a copy
/// the near tier let go of (removed here, then replaced) is never served from it.
#[tokio::test(flavor = "current_thread")]
async fn a_copy_the_near_tier_let_go_of_is_not_served_from_a_thread_s_front_map() {
    let redis = RedisServer::start();
    let c = instance(&redis.url(), &redis.url(), lease(1000, true));
    holds_lease(&c).await;
    let k = detail("1");
    warm(&c, &k, b"v0").await;
    // Served under the lease, so from this thread's front map from now on.
    for _ in 0..3 {
        assert!(matches!(c.get(&k).await, Ok(Lookup::Hit(v)) if v == "v0"));
    }
    c.remove(&k).await.expect("remove");
    assert!(
        matches!(c.get(&k).await, Ok(Lookup::Miss(_))),
        "a removed copy was served"
    );
    // A new copy replaces the one the front map saw.
    assert_eq!(warm(&c, &k, b"v1").await, "v1");
    for _ in 0..3 {
        assert!(matches!(c.get(&k).await, Ok(Lookup::Hit(v)) if v == "v1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answers_once_every_holder_dropped_what_it_changed() {
    let redis = RedisServer::start();
    let (a, b) = two_holding(&redis.url(), 500).await;
    let k = detail("2");
    // A table younger than a lease may have lost leases still running: the first
    // writes wait it out.
    let (_, first) = a.invalidate_waited(&["detail:2"]).await;
    assert!(first.announced);
    assert!(
        first.fenced,
        "the first write after the table was made: {first:?}"
    );
    eventually("the table is a lease old", async || {
        !a.invalidate_waited(&["detail:0"]).await.1.fenced
    })
    .await;
    for round in 0..50u32 {
        let value: &'static [u8] = if round % 2 == 0 { b"even" } else { b"odd" };
        let seen = warm(&b, &k, value).await;
        assert!(matches!(b.get(&k).await, Ok(Lookup::Hit(v)) if v == seen));
        let (result, waited) = a.invalidate_waited(&["detail:2"]).await;
        result.expect("invalidate");
        // B held a lease and answered: the write waited for it, not for its lease.
        assert_eq!(waited.holders, 1, "round {round}: {waited:?}");
        assert_eq!(waited.acked, 1, "round {round}: {waited:?}");
        assert_eq!(waited.expired, 0, "round {round}: {waited:?}");
        // The very next lookup on B, under its lease, does not serve the old copy.
        assert!(
            matches!(b.get(&k).await, Ok(Lookup::Miss(_))),
            "round {round}: B served its copy after A's write answered"
        );
    }
    // A table evicted (or lost with a restart) is new again: writes wait out a lease.
    assert_eq!(redis.cli(&["DEL", "cache:v1:{#near}:leases"]).trim(), "1");
    let (_, waited) = a.invalidate_waited(&["detail:2"]).await;
    assert!(
        waited.fenced,
        "the write after the table was lost: {waited:?}"
    );
}

/// B's subscription goes silent (its link to Redis stalls) while it holds a lease and a
/// copy. A writer that does not wait answers while B still serves the copy: a stale
/// read. A writer that waits answers only once B's lease has run out, and B then serves
/// nothing it cannot confirm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_wait_an_unreachable_holder_serves_a_stale_copy_after_the_write() {
    let redis = RedisServer::start();
    let link = FaultProxy::start(redis.addr()).await;
    let url = redis.url();
    let b = instance(&link.url(), &link.url(), lease(3000, true));
    let hasty = instance(&url, &url, lease(3000, false));
    let careful = instance(&url, &url, lease(3000, true));
    let k = detail("3");

    holds_lease(&b).await;
    let old = warm(&b, &k, b"before the write").await;
    link.stall();
    assert!(b.holds_lease());
    let (result, waited) = hasty.invalidate_waited(&["detail:3"]).await;
    result.expect("invalidate");
    assert!(waited.holders >= 1, "B held a lease: {waited:?}");
    assert!(
        matches!(b.get(&k).await, Ok(Lookup::Hit(v)) if v == old),
        "without the wait, B serves the copy the answered write made stale"
    );

    link.resume();
    eventually("B's link is back and its copy replaced", async || {
        matches!(b.get(&k).await, Ok(Lookup::Miss(_)))
    })
    .await;
    let old = warm(&b, &k, b"before the second write").await;
    holds_lease(&b).await;
    assert!(matches!(b.get(&k).await, Ok(Lookup::Hit(v)) if v == old));
    link.stall();
    let began = std::time::Instant::now();
    let (result, waited) = careful.invalidate_waited(&["detail:3"]).await;
    let took = began.elapsed();
    result.expect("invalidate");
    // The other writer answered; B, unreachable, was waited out: for no longer than its
    // lease, lengthened by the drift margin (a tenth), plus the write's round trips.
    assert_eq!(waited.expired, 1, "{waited:?}");
    assert!(
        took <= Duration::from_millis(3300 + 1500),
        "a write waited {took:?} for a holder whose lease is 3 s"
    );
    assert_eq!(waited.acked + 1, waited.holders, "{waited:?}");
    assert!(
        !b.holds_lease(),
        "the write answered before B's lease ended"
    );
    assert!(
        !matches!(b.get(&k).await, Ok(Lookup::Hit(v)) if v == old),
        "B served its copy after the write that waited out its lease"
    );
    link.resume();
}

/// B's subscription goes silent while its data connection works: it stops renewing, so
/// writers stop waiting for it within a lease, and it serves nothing unasked meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscription_ends_the_lease_and_reads_stay_fresh() {
    let redis = RedisServer::start();
    let link = FaultProxy::start(redis.addr()).await;
    let url = redis.url();
    let a = instance(&url, &url, lease(400, true));
    let b = instance(&url, &link.url(), lease(400, true));
    holds_lease(&a).await;
    holds_lease(&b).await;
    let k = detail("4");
    link.stall_subscriptions();
    let mut waits_for_b = 0;
    for round in 0..40u32 {
        let value: &'static [u8] = if round % 2 == 0 { b"even" } else { b"odd" };
        let seen = warm(&b, &k, value).await;
        let (result, waited) = a.invalidate_waited(&["detail:4"]).await;
        result.expect("invalidate");
        waits_for_b += waited.expired;
        assert_eq!(waited.acked, 0, "B cannot have received the announcement");
        assert!(
            !matches!(b.get(&k).await, Ok(Lookup::Hit(v)) if v == seen),
            "round {round}: B served a copy older than A's answered write"
        );
    }
    assert!(!b.holds_lease());
    assert!(waits_for_b >= 1, "A waited out B's last lease");
    let (_, waited) = a.invalidate_waited(&["detail:4"]).await;
    assert_eq!(waited.holders, 0, "B stopped renewing: {waited:?}");
    // The subscription speaks again: B's lease comes back.
    link.resume();
    holds_lease(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_under_a_lease_is_served_whole_and_never_after_a_write_to_one_of_its_rows() {
    let redis = RedisServer::start();
    let (a, b) = two_holding(&redis.url(), 500).await;
    let page = Key::new("list", "list", &[("page", "1")]);
    let members: Vec<Key> = (1..=3).map(row).collect();
    let Ok(IndexLookup::Miss(t)) = b.get_index(&page, &rows_named).await else {
        panic!("a cold page")
    };
    b.put_index(&page, Fill::new(&t, "1,2,3", TTL), &members)
        .await
        .expect("store");
    for m in &members {
        let Ok(Lookup::Miss(t)) = b.get(m).await else {
            panic!("a cold row")
        };
        b.put(m, Fill::new(&t, "r0", TTL)).await.expect("store");
    }
    // One confirmed lookup keeps the rows with the page; the next is served unasked.
    let hits = |found: &IndexLookup| match found {
        IndexLookup::Hit { members, .. } => members
            .iter()
            .map(|m| matches!(m, Lookup::Hit(v) if v == "r0"))
            .collect::<Vec<_>>(),
        IndexLookup::Miss(_) => Vec::new(),
    };
    let found = b.get_index(&page, &rows_named).await.expect("lookup");
    assert_eq!(hits(&found), [true, true, true]);
    let found = b.get_index(&page, &rows_named).await.expect("lookup");
    assert_eq!(hits(&found), [true, true, true]);
    let (_, waited) = a.invalidate_waited(&["list|row:2"]).await;
    assert_eq!(waited.acked, waited.holders);
    let found = b.get_index(&page, &rows_named).await.expect("lookup");
    assert_eq!(
        hits(&found),
        [true, false, true],
        "the written row is not served"
    );
}
