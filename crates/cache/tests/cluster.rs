//! `RedisCache` against a local Redis Cluster of three masters: keys of one scope share a
//! hash tag, so no command fails with CROSSSLOT, and scopes spread over the nodes.

mod common;

use common::{detail, fill, members};

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use letip_cache::{
    Cache, CacheHealth, Fill, IndexLookup, Key, Lookup, RedisCache, RedisConfig, Stored,
};
use letip_testkit::RedisCluster;

fn cluster_cache(cluster: &RedisCluster) -> RedisCache {
    let config = RedisConfig {
        url: cluster.url(),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    };
    RedisCache::new(config).expect("a cluster URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_works_across_the_slots_of_a_cluster() {
    let cluster = RedisCluster::start(3);
    let cache = cluster_cache(&cluster);
    assert_eq!(cache.health().await, CacheHealth::Up);

    let keys: Vec<Key> = (0..30).map(|i| detail(&i.to_string())).collect();
    for k in &keys {
        fill(&cache, k, k.name().to_owned()).await;
    }
    for k in &keys {
        assert!(matches!(cache.get(k).await, Ok(Lookup::Hit(b)) if b == k.name()));
    }
    // Several scopes (several slots) in one invalidation.
    let scopes: Vec<String> = (0..10).map(|i| format!("detail:{i}")).collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    cache.invalidate(&scopes).await.expect("invalidate");
    for (i, k) in keys.iter().enumerate() {
        let hit = matches!(cache.get(k).await, Ok(Lookup::Hit(_)));
        assert_eq!(hit, i >= 10, "key {i}");
    }

    // The entries are spread over the masters.
    let holders: HashSet<u16> = cluster
        .ports()
        .into_iter()
        .filter(|port| {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "dbsize"])
                .output()
                .expect("redis-cli runs");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                > 0
        })
        .collect();
    assert_eq!(holders.len(), 3, "every master holds some keys");

    // An index and its members share the index's root, so one script on one node looks
    // them all up, although it names the members' keys only in the index's value.
    let rows: Vec<Key> = (0..20)
        .map(|i| Key::new("row", format!("list|row:{i}"), &[("id", &i.to_string())]))
        .collect();
    let found = cache.get_many(&rows).await.expect("lookup");
    for (k, f) in rows.iter().zip(&found) {
        let Lookup::Miss(t) = f else { panic!("cold") };
        let v = Bytes::from(k.name().to_owned());
        let stored = cache.put(k, Fill::new(t, v, Duration::from_secs(60)));
        assert_eq!(stored.await.expect("store"), Stored::Stored);
    }
    let page = Key::new("list", "list|[null]", &[("page", "1")]);
    let named = |_: &[u8]| Some(rows.clone());
    let IndexLookup::Miss(t) = cache.get_index(&page, &named).await.expect("lookup") else {
        panic!("cold")
    };
    let stored = cache.put_index(&page, Fill::new(&t, "page", Duration::from_secs(60)), &rows);
    assert_eq!(stored.await.expect("store"), Stored::Stored);
    cache.invalidate(&["list|row:7"]).await.expect("invalidate");
    // Every row hits with its own value, but those invalidated.
    let all_but = |missing: &[usize]| -> Vec<Option<Bytes>> {
        (rows.iter().enumerate())
            .map(|(i, k)| (!missing.contains(&i)).then(|| Bytes::from(k.name().to_owned())))
            .collect()
    };
    let found = cache.get_index(&page, &named).await.expect("lookup");
    assert!(matches!(&found, IndexLookup::Hit { value, .. } if value == "page"));
    assert_eq!(members(&found), all_but(&[7]));
    // Read again, now through the memo of the index (one MULTI of plain commands in the
    // slot), after another row's invalidation.
    cache.invalidate(&["list|row:3"]).await.expect("invalidate");
    let found = cache.get_index(&page, &named).await.expect("lookup");
    assert!(matches!(&found, IndexLookup::Hit { value, .. } if value == "page"));
    assert_eq!(members(&found), all_but(&[3, 7]));
}

/// A node of the cluster killed and restarted from a snapshot taken before an
/// invalidation it acknowledged: the restored entries are never served, on that node or
/// any other, and the cache stores and hits again once the node answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_older_snapshot_serves_nothing_older() {
    let mut cluster = RedisCluster::start(3);
    let cache = cluster_cache(&cluster);
    let keys: Vec<Key> = (0..30).map(|i| detail(&i.to_string())).collect();
    for k in &keys {
        fill(&cache, k, "old").await;
    }
    for n in 0..3 {
        assert_eq!(cluster.cli(n, &["save"]), "OK");
    }
    let scopes: Vec<String> = (0..30).map(|i| format!("detail:{i}")).collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    cache.invalidate(&scopes).await.expect("invalidate");
    cluster.restart_node(0);
    answered_again_never_old(&cache, &keys).await;
    for k in &keys {
        assert!(matches!(cache.get(k).await, Ok(Lookup::Hit(b)) if b == "new"));
    }
}

/// Known gap: after `CLUSTER FAILOVER` the cache has answered entries the promoted
/// replica held from before (in most runs on this machine): the cluster client follows
/// the new slot owner without the identity check a new connection gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known gap: a replica promoted inside a cluster can serve older entries"]
async fn a_replica_promoted_inside_the_cluster_serves_nothing_older() {
    let cluster = RedisCluster::start_with_replicas(3, 1);
    let cache = cluster_cache(&cluster);
    let keys: Vec<Key> = (0..30).map(|i| detail(&i.to_string())).collect();
    for k in &keys {
        fill(&cache, k, "old").await;
    }
    // Every replica holds what its master held.
    for n in 0..6 {
        if cluster.cli(n, &["role"]).starts_with("master") {
            assert_eq!(cluster.cli(n, &["wait", "1", "5000"]), "1");
        }
    }
    let promoted = cluster.fail_over_a_replica();
    assert!(
        cluster
            .cli(promoted, &["dbsize"])
            .parse::<u64>()
            .unwrap_or(0)
            > 0,
        "the promoted replica holds the old entries"
    );

    // The entries of the promoted replica's slots: its replication id is new, so the
    // first lookup there (the old master answers MOVED) brings a connection checked
    // against every master, which begins a new history: none is served again.
    let held = cluster.cli(promoted, &["keys", "*"]);
    let keys: Vec<Key> = keys
        .into_iter()
        .enumerate()
        .filter(|(i, _)| held.contains(&format!("{{detail%3A{i}}}")))
        .map(|(_, k)| k)
        .collect();
    assert!(
        !keys.is_empty(),
        "the promoted replica holds entries: {held}"
    );
    answered_again_never_old(&cache, &keys).await;
}

/// Asks for every key until each answers: a miss is filled with `new` under its ticket
/// (a ticket taken on another node before this process saw the new history is below its
/// floor and stores nothing: the next lookup hands out a current one); a hit of `old`
/// fails the test.
async fn answered_again_never_old(cache: &RedisCache, keys: &[Key]) {
    let mut answered = vec![false; keys.len()];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while answered.iter().any(|a| !a) {
        assert!(
            std::time::Instant::now() < deadline,
            "the cache never answered again"
        );
        for (k, done) in keys.iter().zip(answered.iter_mut()) {
            match cache.get(k).await {
                Ok(Lookup::Hit(v)) if v == "old" => {
                    panic!("key {} answered {v:?}", k.name())
                }
                Ok(Lookup::Hit(_)) => *done = true,
                Ok(Lookup::Miss(t)) => {
                    let stored = cache.put(k, Fill::new(&t, "new", Duration::from_secs(60)));
                    *done = stored.await.is_ok_and(|s| s == Stored::Stored);
                }
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
