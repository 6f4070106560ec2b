//! `RedisCache` on a Redis Sentinel group of real `redis-server` and `redis-sentinel`
//! processes: it follows the primary the sentinels name, and after a failover serves
//! nothing stored before it, though the promoted replica holds every such entry.

mod common;

use common::*;

use letip_cache::{Cache, RedisCache, RedisConfig, SentinelConfig};
use letip_testkit::{SentinelGroup, eventually};

/// A cache on `group`; its URL gives no host that answers: the sentinels name it.
fn cache(group: &SentinelGroup) -> RedisCache {
    RedisCache::new(RedisConfig {
        url: "redis://127.0.0.1:1/0".into(),
        sentinel: Some(SentinelConfig::new(
            &group.sentinel_nodes(),
            letip_testkit::sentinel::MASTER,
        )),
        ..RedisConfig::default()
    })
    .expect("a valid configuration")
}

/// Fills `k`, makes sure both replicas hold it, and answers the primary's port.
async fn stored_everywhere(group: &SentinelGroup, c: &RedisCache, k: &letip_cache::Key) -> u16 {
    fill(c, k, "before").await;
    assert_eq!(hit(c, k).await, "before");
    let primary = group.primary_port();
    assert!(
        group.cli(primary, &["dbsize"]).parse::<u64>().unwrap_or(0) > 0,
        "the cache writes to the primary the sentinels name"
    );
    assert_eq!(group.cli(primary, &["wait", "2", "2000"]), "2");
    primary
}

/// After the failover the cache answers again, first with a miss for the entry the
/// promoted replica still holds, then with what is stored on the new primary.
async fn nothing_older_after(
    group: &SentinelGroup,
    c: &RedisCache,
    k: &letip_cache::Key,
    new: u16,
) {
    assert!(
        group.cli(new, &["dbsize"]).parse::<u64>().unwrap_or(0) > 0,
        "the promoted replica holds the old entries"
    );
    eventually("the cache answers again", async || c.get(k).await.is_ok()).await;
    miss(c, k).await;
    fill(c, k, "after").await;
    assert_eq!(hit(c, k).await, "after");
    let stored = group.cli(new, &["keys", "*detail*"]);
    assert!(!stored.is_empty(), "the new entry is on the new primary");
}

#[tokio::test]
async fn after_sentinel_failover_it_follows_the_new_primary_and_serves_nothing_older() {
    let group = SentinelGroup::start(2);
    let c = cache(&group);
    let k = detail("1");
    let old = stored_everywhere(&group, &c, &k).await;
    let new = group.failover();
    assert_ne!(new, old);
    nothing_older_after(&group, &c, &k, new).await;
    // The demoted primary, now a replica of the new one, is never written again.
    assert!(group.cli(old, &["role"]).starts_with("slave"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_primary_is_killed_it_follows_the_promoted_replica_and_serves_nothing_older() {
    let mut group = SentinelGroup::start(2);
    let c = cache(&group);
    let k = detail("2");
    let old = stored_everywhere(&group, &c, &k).await;
    let new = group.kill_primary();
    assert_ne!(new, old);
    nothing_older_after(&group, &c, &k, new).await;
}

#[tokio::test]
async fn sentinel_nodes_are_read_as_a_comma_separated_list() {
    let s = SentinelConfig::new(" 10.0.0.1:26379, 10.0.0.2:26379,,", "cache");
    assert_eq!(s.nodes, vec!["10.0.0.1:26379", "10.0.0.2:26379"]);
    assert_eq!(s.master, "cache");
    let none = RedisCache::new(RedisConfig {
        sentinel: Some(SentinelConfig::new("", "mymaster")),
        ..RedisConfig::default()
    });
    assert!(none.is_err(), "a Sentinel group of no sentinel is refused");
}

/// The window a planned failover leaves: Sentinel promotes the replica at once but
/// turns the old primary into a replica of it only seconds later (its own delay, about
/// 10 s), and until then the old primary still answers as a primary. A cache still
/// connected to it and one that connected since, to the new primary, would disagree:
/// an invalidation made on the new primary would not reach a lookup on the old one
/// (this test failed so before the fence). The second cache's first connection fences
/// the old primary (made a replica, its clients closed) before it serves anything.
#[tokio::test]
async fn an_invalidation_on_the_promoted_primary_reaches_a_cache_still_on_the_old_one() {
    let group = SentinelGroup::start(2);
    let a = cache(&group);
    let k = detail("3");
    let old = stored_everywhere(&group, &a, &k).await;
    let sentinels: Vec<u16> = group
        .sentinel_nodes()
        .split(',')
        .filter_map(|n| n.rsplit(':').next()?.parse().ok())
        .collect();
    // What clients resolve: `SENTINEL MASTERS`, which names the old primary until the
    // failover is complete.
    let names_old = |sentinel: u16| {
        let masters = group.cli(sentinel, &["sentinel", "masters"]);
        masters.contains(&format!("port\n{old}\n")) || !masters.contains("port")
    };
    let first = *sentinels.first().expect("a sentinel");
    assert_eq!(
        group.cli(
            first,
            &["sentinel", "failover", letip_testkit::sentinel::MASTER]
        ),
        "OK"
    );
    eventually("every sentinel names the promoted replica", async || {
        !sentinels.iter().any(|s| names_old(*s))
    })
    .await;

    // Another instance, started now, finds the promoted primary and invalidates there.
    let b = cache(&group);
    b.invalidate(&["detail:3"]).await.expect("invalidate");
    assert!(
        !group
            .cli(group.primary_port(), &["keys", "*detail%3A3*"])
            .is_empty(),
        "the invalidation is on the new primary"
    );
    // Sentinel would demote the old primary seconds from now; the fence did at once.
    assert!(
        group.cli(old, &["role"]).starts_with("slave"),
        "the old primary is fenced"
    );
    // The first cache, connected to it until then, must not answer what the
    // invalidation made old (a miss or an error will do).
    if let Ok(letip_cache::Lookup::Hit(v)) = a.get(&k).await {
        assert_ne!(
            v, "before",
            "an entry invalidated on the new primary was served"
        );
    }
}
