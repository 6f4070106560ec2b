//! `RedisCache` against a real, private redis-server: storage, generations, faults.

mod common;

use common::*;
use std::time::Duration;

use bytes::Bytes;
use letip_cache::{
    Cache, CacheError, CacheHealth, Fill, IndexLookup, Key, Lookup, RedisCache, RedisConfig,
    Stored, Ticket,
};
use letip_testkit::{FaultProxy, RedisServer, eventually};

fn cache(url: String) -> RedisCache {
    RedisCache::new(RedisConfig {
        url,
        max_value_bytes: 1024,
        ..RedisConfig::default()
    })
    .expect("a valid configuration")
}

/// A private Redis, and a cache on it.
fn started() -> (RedisServer, RedisCache) {
    let redis = RedisServer::start();
    let c = cache(redis.url());
    (redis, c)
}

/// A private Redis behind a fault proxy, a cache that reaches it through the proxy, and
/// the key of detail `id`, stored in it as `value`.
async fn stored_behind_proxy(
    id: &str,
    value: &'static str,
) -> (RedisServer, FaultProxy, RedisCache, Key) {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.addr()).await;
    let c = cache(proxy.url());
    let k = detail(id);
    fill(&c, &k, value).await;
    (redis, proxy, c, k)
}

/// Connections are made on the runtime the cache was made in; one made in a runtime
/// that has ended since still connects, from the runtime it is used in.
#[test]
fn a_cache_made_in_a_runtime_that_has_ended_still_connects() {
    let redis = RedisServer::start();
    let made = tokio::runtime::Runtime::new().expect("a runtime");
    let c = made.block_on(async { cache(redis.url()) });
    drop(made);
    let used = tokio::runtime::Runtime::new().expect("a runtime");
    used.block_on(async {
        let k = detail("1");
        fill(&c, &k, "{\"id\":1}").await;
        assert_eq!(hit(&c, &k).await, &b"{\"id\":1}"[..]);
    });
}

#[tokio::test]
async fn a_value_put_with_a_current_ticket_is_served_exactly() {
    let (redis, c) = started();
    let k = detail("1");
    fill(&c, &k, "{\"id\":1,\"name\":\"line\\nbreak\"}").await;
    assert_eq!(
        hit(&c, &k).await,
        &b"{\"id\":1,\"name\":\"line\\nbreak\"}"[..]
    );
    // What Redis holds: the header, then the value; with the entry's TTL.
    let ttl: i64 = redis
        .cli(&["PTTL", "cache:v1:{detail%3A1}:detail:id=1"])
        .parse()
        .expect("a number");
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    assert_eq!(c.health().await, CacheHealth::Up);
}

/// A hit, and a miss of a scope whose generations exist, are one `MULTI` of plain
/// commands: no script runs (a script costs Redis several times a hit's work).
#[tokio::test]
async fn a_lookup_of_existing_generations_runs_no_script() {
    let (redis, c) = started();
    let k = detail("5");
    fill(&c, &k, "{\"id\":5}").await;
    c.invalidate(&["detail:6"]).await.expect("invalidate");
    redis.cli(&["CONFIG", "RESETSTAT"]);
    assert_eq!(hit(&c, &k).await, &b"{\"id\":5}"[..]);
    let t = miss(&c, &detail("6")).await;
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_exec:calls=2,"), "{stats}");
    assert!(!stats.contains("cmdstat_eval"), "{stats}");
    // The miss's ticket is the script's: a put under it is stored.
    let six = detail("6");
    let stored = c.put(&six, Fill::new(&t, "{\"id\":6}", TTL));
    assert_eq!(stored.await.expect("store"), Stored::Stored);
    assert_eq!(hit(&c, &detail("6")).await, &b"{\"id\":6}"[..]);
}

#[tokio::test]
async fn a_put_after_an_invalidation_is_refused() {
    let (_redis, c) = started();
    let k = detail("7");
    let before = miss(&c, &k).await;
    c.invalidate(&["detail:7"]).await.expect("invalidate");
    let stored = c.put(&k, Fill::new(&before, "old", TTL)).await;
    assert_eq!(stored.expect("put"), Stored::Stale);
    let after = miss(&c, &k).await;
    assert_ne!(before, after);
    assert_eq!(
        c.put(&k, Fill::new(&after, "new", TTL)).await.expect("put"),
        Stored::Stored
    );
    assert_eq!(hit(&c, &k).await, "new");
}

#[tokio::test]
async fn invalidating_a_scope_hides_every_entry_of_it_and_nothing_else() {
    let (_redis, c) = started();
    let pages: Vec<Key> = (1..=3)
        .map(|p| Key::new("list", "list", &[("page", &p.to_string())]))
        .collect();
    let stats = Key::new("stats", "stats", &[]);
    for k in pages.iter().chain([&stats]) {
        fill(&c, k, "v").await;
    }
    c.invalidate(&["list"]).await.expect("invalidate");
    for k in &pages {
        miss(&c, k).await;
    }
    assert_eq!(hit(&c, &stats).await, "v");
}

#[tokio::test]
async fn too_large_values_are_not_stored_and_entries_expire() {
    let (_redis, c) = started();
    let k = Key::new("list", "list", &[]);
    let t = miss(&c, &k).await;
    let big = Bytes::from(vec![b'x'; 1025]);
    assert_eq!(
        c.put(&k, Fill::new(&t, big, TTL)).await.expect("put"),
        Stored::TooLarge
    );
    miss(&c, &k).await;
    c.put(&k, Fill::new(&t, "brief", Duration::from_millis(50)))
        .await
        .expect("put");
    assert_eq!(hit(&c, &k).await, "brief");
    tokio::time::sleep(Duration::from_millis(120)).await;
    miss(&c, &k).await;
}

#[tokio::test]
async fn a_lost_generation_key_makes_entries_misses_never_stale_hits() {
    let (redis, c) = started();
    let k = detail("3");
    let t = miss(&c, &k).await;
    let stored = c.put(&k, Fill::new(&t, "v", TTL)).await;
    assert_eq!(stored.expect("put"), Stored::Stored);
    // Eviction or expiry of the generation: the next one is new, never the old value.
    assert_eq!(redis.cli(&["DEL", "cache:v1:{detail%3A3}:#gen"]), "1");
    let t2 = miss(&c, &k).await;
    assert_ne!(t, t2);
    // A generation only grows: invalidations move it past the clock and past itself.
    c.invalidate(&["detail:3"]).await.expect("invalidate");
    let t3 = miss(&c, &k).await;
    // The tag is "{root generation}.{own generation}"; this scope is its own root.
    let number = |t: &Ticket| {
        let tag = t.generation().trim();
        let own = tag.rsplit('.').next().expect("two generations");
        own.parse::<u64>().expect("a number")
    };
    assert!(
        number(&t3) > number(&t2) && number(&t2) > number(&t),
        "{t:?} {t2:?} {t3:?}"
    );
}

#[tokio::test]
async fn an_entry_in_a_foreign_format_is_removed_and_reported() {
    let (redis, c) = started();
    let k = detail("9");
    redis.cli(&[
        "SET",
        "cache:v1:{detail%3A9}:detail:id=9",
        "not json at all",
    ]);
    let err = c.get(&k).await.expect_err("a foreign entry is not served");
    assert!(matches!(err, CacheError::Protocol(_)), "{err}");
    assert_eq!(
        redis.cli(&["EXISTS", "cache:v1:{detail%3A9}:detail:id=9"]),
        "0"
    );
    miss(&c, &k).await;

    // In the format, under the current generation, but not the bytes that were stored.
    fill(&c, &k, "{\"ok\":true}").await;
    let name = "cache:v1:{detail%3A9}:detail:id=9";
    let stored = redis.cli(&["GET", name]);
    let (header, sealed) = stored.split_once('\n').expect("a header");
    let tampered = format!("{header}\n{}{{\"ok\":false}}", &sealed[..8]);
    redis.cli(&["SET", name, &tampered, "PX", "60000"]);
    let err = c.get(&k).await.expect_err("a damaged entry is not served");
    assert!(matches!(err, CacheError::Protocol(_)), "{err}");
    assert_eq!(redis.cli(&["EXISTS", name]), "0");
}

#[tokio::test]
async fn down_at_start_then_up_reconnects_by_itself() {
    let port = letip_testkit::free_port();
    let c = cache(format!("redis://127.0.0.1:{port}"));
    let k = detail("1");
    assert!(c.get(&k).await.is_err());
    assert_eq!(c.health().await, CacheHealth::Down);
    let t = Ticket::none();
    assert!(
        c.put(&k, Fill::new(&t, "v", TTL))
            .await
            .is_ok_and(|s| s == Stored::Stale)
    );

    let _redis = RedisServer::start_on(port);
    eventually("the cache answers again", async || c.get(&k).await.is_ok()).await;
    assert_eq!(c.health().await, CacheHealth::Up);
}

#[tokio::test]
async fn killed_and_restarted_it_serves_again_and_nothing_old() {
    let (mut redis, c) = started();
    let k = detail("5");
    fill(&c, &k, "v").await;
    redis.kill();
    assert!(
        c.get(&k).await.is_err(),
        "a dead Redis is an error, not a miss"
    );
    redis.restart();
    eventually("the cache answers again", async || c.get(&k).await.is_ok()).await;
    miss(&c, &k).await;
}

#[tokio::test]
async fn a_stalled_redis_costs_a_timeout_then_the_circuit_opens() {
    let (_redis, proxy, c, k) = stored_behind_proxy("1", "v").await;

    proxy.stall();
    for _ in 0..3 {
        // The call times out, or making a replacement connection does.
        let err = c.get(&k).await.expect_err("stalled");
        assert!(err.to_string().to_lowercase().contains("time"), "{err}");
    }
    // The circuit is open: calls are refused without waiting on Redis.
    let err = c.get(&k).await.expect_err("open circuit");
    assert!(err.to_string().contains("circuit open"), "{err}");
    assert_eq!(c.health().await, CacheHealth::Down);

    proxy.resume();
    eventually("the cache answers again", async || c.get(&k).await.is_ok()).await;
    assert_eq!(
        hit(&c, &k).await,
        "v",
        "no invalidation was missed: the entry is still good"
    );
}

#[tokio::test]
async fn after_a_missed_invalidation_no_older_entry_is_ever_served() {
    let (_redis, proxy, c, k) = stored_behind_proxy("2", "before the write").await;

    // The write's invalidation cannot reach Redis.
    proxy.cut();
    proxy.stall();
    assert!(c.invalidate(&["detail:2"]).await.is_err());
    proxy.resume();

    // Redis holds the old entry under a current generation, yet it is never served.
    eventually("the cache answers again", async || c.get(&k).await.is_ok()).await;
    fill(&c, &k, "after").await;
    assert_eq!(hit(&c, &k).await, "after");
}

#[tokio::test]
async fn a_cut_connection_is_replaced() {
    let (_redis, proxy, c, k) = stored_behind_proxy("4", "v").await;
    proxy.cut();
    // The first calls may see the dead connections; new ones are made.
    eventually("a new connection serves hits", async || {
        matches!(c.get(&k).await, Ok(Lookup::Hit(_)))
    })
    .await;
}

#[tokio::test]
async fn a_malformed_url_is_a_configuration_error() {
    let err = RedisCache::new(RedisConfig {
        url: "definitely not a url".into(),
        ..RedisConfig::default()
    })
    .expect_err("rejected");
    assert!(matches!(err, CacheError::Config(_)), "{err}");
}

#[tokio::test]
async fn a_password_in_the_url_authenticates_and_a_wrong_one_only_costs_misses() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let k = detail("1");
    let good = cache(format!("redis://:s3cret@127.0.0.1:{}", redis.port()));
    eventually("the cache authenticates", async || {
        good.get(&k).await.is_ok()
    })
    .await;
    fill(&good, &k, "v").await;
    assert_eq!(hit(&good, &k).await, "v");
    assert_eq!(good.health().await, CacheHealth::Up);

    let wrong = cache(format!("redis://:nope@127.0.0.1:{}", redis.port()));
    assert!(wrong.get(&k).await.is_err());
    assert_eq!(wrong.health().await, CacheHealth::Down);
}

#[tokio::test]
async fn rediss_with_a_password_and_a_private_ca_works_and_an_untrusted_server_does_not() {
    let ca = letip_testkit::TestCa::new();
    let redis = RedisServer::start_tls(&ca, &["--requirepass", "s3cret"]);
    let url = format!("rediss://:s3cret@127.0.0.1:{}", redis.port());
    let tls = RedisCache::new(RedisConfig {
        url: url.clone(),
        tls_ca_pem: Some(ca.ca_pem()),
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    })
    .expect("a valid configuration");
    let k = detail("1");
    eventually("the cache connects over TLS", async || {
        tls.get(&k).await.is_ok()
    })
    .await;
    fill(&tls, &k, "v").await;
    assert_eq!(hit(&tls, &k).await, "v");
    tls.invalidate(&[k.scope()]).await.expect("invalidate");
    assert!(matches!(tls.get(&k).await, Ok(Lookup::Miss(_))));
    assert_eq!(tls.health().await, CacheHealth::Up);

    // Without the authority the server's certificate is not trusted; in plain text it
    // does not answer either. Both only cost errors (reads then go to the database).
    let untrusted = cache(url);
    assert!(untrusted.get(&k).await.is_err());
    let plain = cache(format!("redis://:s3cret@127.0.0.1:{}", redis.port()));
    assert!(plain.get(&k).await.is_err());
}

#[tokio::test]
async fn a_root_scope_invalidates_its_children_and_a_child_only_itself() {
    let (redis, c) = started();
    let wall = Key::new("list", "list|city=Wall", &[("city", "Wall")]);
    let brick = Key::new("list", "list|city=Brick", &[("city", "Brick")]);
    let all = Key::new("list", "list|", &[]);
    for k in [&wall, &brick, &all] {
        fill(&c, k, "v").await;
    }
    c.invalidate(&["list|city=Wall", "list|"])
        .await
        .expect("invalidate");
    miss(&c, &wall).await;
    miss(&c, &all).await;
    assert_eq!(hit(&c, &brick).await, "v", "a sibling keeps its entries");
    // A reader of a child that loaded before the root moved cannot store afterwards.
    let t = miss(&c, &wall).await;
    c.invalidate(&["list"]).await.expect("invalidate");
    let stored = c.put(&wall, Fill::new(&t, "old", TTL)).await;
    assert_eq!(stored.expect("put"), Stored::Stale);
    miss(&c, &brick).await;
    // Every key of the family shares the root's hash tag (beside the record of which
    // Redis history the cache trusts).
    let keys = redis.cli(&["KEYS", "*"]);
    assert!(
        keys.lines()
            .filter(|k| *k != "cache:v1:{#near}:identity")
            .all(|k| k.starts_with("cache:v1:{list}:")),
        "{keys}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_probe_closes_the_circuit_and_applies_missed_invalidations() {
    let mut redis = RedisServer::start();
    let c = std::sync::Arc::new(cache(redis.url()));
    let _probe = c.probe_in_background();
    let k = detail("3");
    miss(&*c, &k).await;
    redis.kill();
    // Missed while Redis is away: remembered, and the circuit opens.
    assert!(c.invalidate(&["detail:3"]).await.is_err());
    for _ in 0..3 {
        let _ = c.get(&k).await;
    }
    let err = c.get(&k).await.expect_err("open circuit");
    assert!(err.to_string().contains("circuit open"), "{err}");
    redis.restart();
    // No call at all: the background probe finds Redis back and applies the
    // invalidation (which makes the scope's generation key again).
    let generation = "cache:v1:{detail%3A3}:#gen";
    eventually("the missed invalidation is applied", async || {
        redis.cli(&["EXISTS", generation]) == "1"
    })
    .await;
    // The first call finds the circuit closed (calls never probe themselves here).
    miss(&*c, &k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_health_checks_send_one_probe_at_a_time() {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.addr()).await;
    let c = std::sync::Arc::new(cache(proxy.url()));
    assert_eq!(c.health().await, CacheHealth::Up);
    proxy.stall();
    let checks = (0..50).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { c.health().await })
    });
    for check in futures_util::future::join_all(checks).await {
        assert_eq!(check.expect("a health check"), CacheHealth::Down);
    }
    proxy.resume();
    assert!(proxy.pings_sent() >= 1, "the checks asked Redis");
    assert_eq!(proxy.pings_in_flight_peak(), 1, "one probe at a time");
    eventually("health reports redis up", async || {
        c.health().await == CacheHealth::Up
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_asks_past_the_breaker_and_closes_it_when_redis_is_back() {
    let (mut redis, c) = started();
    let k = detail("1");
    miss(&c, &k).await;
    redis.kill();
    // Enough failures for the breaker's backoff to reach seconds.
    for _ in 0..40 {
        let _ = c.get(&k).await;
        assert_eq!(c.health().await, CacheHealth::Down);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.restart();
    // Past the half-second between health probes, not the breaker's backoff.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.health().await, CacheHealth::Up);
    miss(&c, &k).await;
}

async fn index(c: &RedisCache, k: &Key) -> IndexLookup {
    c.get_index(k, &rows_named).await.expect("Redis answers")
}

/// A page read again whose rows have not changed is confirmed without a value sent: the
/// index memo keeps the rows it last read, all hits, and one MULTI of generations and
/// existence tells they are current. Any change to a row is seen at once.
#[tokio::test]
async fn a_page_whose_rows_did_not_change_is_confirmed_without_their_values() {
    let (redis, c) = started();
    let page = Key::new("list", "list|[null]", &[("page", "1")]);
    let rows = [row(1), row(2)];
    for (k, v) in rows.iter().zip(["row 1", "row 2"]) {
        let t = miss(&c, k).await;
        let stored = c.put(k, Fill::new(&t, Bytes::from(v), TTL));
        assert_eq!(stored.await.expect("put"), Stored::Stored);
    }
    let IndexLookup::Miss(ticket) = index(&c, &page).await else {
        panic!("cold")
    };
    let stored = c.put_index(&page, Fill::new(&ticket, "1,2", TTL), &rows);
    assert_eq!(stored.await.expect("put"), Stored::Stored);
    // The script, then the memo with the values: both rows hit.
    for _ in 0..2 {
        let found = index(&c, &page).await;
        assert_eq!(
            members(&found),
            [Some(Bytes::from("row 1")), Some(Bytes::from("row 2"))]
        );
    }
    // Rewrite the rows behind the cache's back, keeping their headers: only rows the
    // memo kept can still say the originals.
    for name in ["cache:v1:{list}:row:id=1", "cache:v1:{list}:row:id=2"] {
        let stored = redis.cli(&["GET", name]);
        let header = stored.split('\n').next().expect("a header");
        redis.cli(&["SET", name, &format!("{header}\nrewritten"), "PX", "60000"]);
    }
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let found = index(&c, &page).await;
    assert_eq!(
        members(&found),
        [Some(Bytes::from("row 1")), Some(Bytes::from("row 2"))]
    );
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_exec:calls=1,"), "{stats}");
    assert!(
        stats.contains("cmdstat_mget:calls=1,"),
        "one MGET, of generations: {stats}"
    );
    assert!(!stats.contains("cmdstat_evalsha"), "{stats}");
    // Row 2 expires in Redis: the kept rows are not confirmed any more, the values are
    // read (row 1's, rewritten without its checksum, is found damaged and removed).
    redis.cli(&["DEL", "cache:v1:{list}:row:id=2"]);
    assert_eq!(members(&index(&c, &page).await), [None, None]);
    // Stored again and read twice, then invalidated: the very next lookup misses it.
    for (k, v) in rows.iter().zip(["row 1", "row 2"]) {
        let t = miss(&c, k).await;
        let stored = c.put(k, Fill::new(&t, Bytes::from(v), TTL));
        assert_eq!(stored.await.expect("put"), Stored::Stored);
    }
    for _ in 0..2 {
        assert!(members(&index(&c, &page).await).iter().all(Option::is_some));
    }
    c.invalidate(&["list|row:1"]).await.expect("invalidate");
    let found = index(&c, &page).await;
    assert_eq!(members(&found), [None, Some(Bytes::from("row 2"))]);
}

#[tokio::test]
async fn an_index_and_its_members_are_one_lookup_each_member_against_its_own_scope() {
    let (redis, c) = started();
    let page = Key::new("list", "list|[null]", &[("page", "1")]);
    let rows = [row(1), row(2), row(3)];
    let IndexLookup::Miss(ticket) = index(&c, &page).await else {
        panic!("cold")
    };
    // Rows 1 and 3 are cached; row 2 is not.
    let found = c.get_many(&rows).await.expect("Redis answers");
    for (i, f) in found.iter().enumerate() {
        let Lookup::Miss(t) = f else { panic!("cold") };
        if i != 1 {
            let v = Bytes::from(format!("row {}", i + 1));
            assert_eq!(
                c.put(&rows[i], Fill::new(t, v, TTL)).await.expect("put"),
                Stored::Stored
            );
        }
    }
    let stored = c.put_index(&page, Fill::new(&ticket, "1,2,3", TTL), &rows);
    assert_eq!(stored.await.expect("put"), Stored::Stored);
    let found = index(&c, &page).await;
    let IndexLookup::Hit { value, members: m } = &found else {
        panic!("warm")
    };
    assert_eq!(
        &value[..],
        b"1,2,3",
        "the caller's value, without the member names"
    );
    assert_eq!(
        members(&found),
        [Some(Bytes::from("row 1")), None, Some(Bytes::from("row 3"))]
    );
    // The missing member's ticket stores it.
    let Some(Lookup::Miss(t2)) = m.get(1) else {
        panic!("row 2 misses")
    };
    c.put(&rows[1], Fill::new(t2, Bytes::from("row 2"), TTL))
        .await
        .expect("put");
    // This lookup goes through the memo of the index the last one read: one MULTI of
    // plain commands, no script.
    redis.cli(&["CONFIG", "RESETSTAT"]);
    assert!(members(&index(&c, &page).await).iter().all(Option::is_some));
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_exec:calls=1,"), "{stats}");
    assert!(!stats.contains("cmdstat_evalsha"), "{stats}");

    // A member's scope invalidated: that member misses, the index still hits.
    c.invalidate(&["list|row:1"]).await.expect("invalidate");
    assert_eq!(members(&index(&c, &page).await)[0], None);
    // The index's own scope: the index misses.
    c.invalidate(&["list|[null]"]).await.expect("invalidate");
    assert!(matches!(index(&c, &page).await, IndexLookup::Miss(_)));
    // A member outside the index's root (another hash slot) is refused.
    let IndexLookup::Miss(t) = index(&c, &page).await else {
        panic!("cold")
    };
    assert!(matches!(
        c.put_index(&page, Fill::new(&t, "9", TTL), &[detail("9")])
            .await,
        Err(CacheError::Config(_))
    ));

    // A damaged index is removed, reported, and never followed.
    assert_eq!(
        c.put_index(&page, Fill::new(&t, "1,2,3", TTL), &rows)
            .await
            .expect("put"),
        Stored::Stored
    );
    let name = "cache:v1:{list}:list:page=1";
    let stored = redis.cli(&["GET", name]);
    let header = stored.split('\n').next().expect("a header").to_owned();
    for planted in [
        format!("{header}\n00000000@index 1\ncache:v1:{{detail%3A9}}:x\na\nb\n9"),
        format!(
            "{header}\n{}",
            &stored[header.len() + 1..].replace("row", "rOw")
        ),
    ] {
        redis.cli(&["SET", name, &planted, "PX", "60000"]);
        assert!(matches!(
            c.get_index(&page, &rows_named).await,
            Err(CacheError::Protocol(_))
        ));
        assert_eq!(redis.cli(&["EXISTS", name]), "0", "removed");
    }
}

/// A long value is stored compressed (its codec tag after the generation header) and
/// read back whole; one stored as it is, by a cache with compression off (an earlier
/// version, say), is read by a cache with it on, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_values_are_stored_compressed_and_read_whole_either_way() {
    let redis = RedisServer::start();
    let with = |compress_above| {
        RedisCache::new(RedisConfig {
            url: redis.url(),
            compress_above,
            ..RedisConfig::default()
        })
        .expect("a valid configuration")
    };
    let (packing, plain) = (with(Some(512)), with(None));
    let value = Bytes::from(br#"{"name":"Freehold Dental","city":"Freehold"},"#.repeat(200));
    for (writer, reader, id) in [(&packing, &plain, "1"), (&plain, &packing, "2")] {
        let k = detail(id);
        fill(writer, &k, value.clone()).await;
        let stored = redis.cli(&["GET", &format!("cache:v1:{{detail%3A{id}}}:detail:id={id}")]);
        let after_header = stored.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
        if id == "1" {
            assert!(after_header.starts_with('L'), "stored compressed");
            assert!(stored.len() < value.len() / 4, "{} bytes", stored.len());
        } else {
            assert!(!after_header.starts_with('L'), "stored as it is");
        }
        assert_eq!(hit(reader, &k).await, value);
        assert_eq!(hit(writer, &k).await, value);
    }
}
