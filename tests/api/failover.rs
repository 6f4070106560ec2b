//! Two instances on the default cache (the leased near tier) in front of a Redis Sentinel
//! group of real processes (`REDIS_SENTINEL_NODES`): through a `SENTINEL FAILOVER` and a
//! `kill -9` of the Redis primary, every read after a write's answer shows it, on either
//! instance, and nothing answers 5xx; afterwards the cache serves hits again.

use letip_server::{CacheBackend, Config};
use letip_testkit::SentinelGroup;
use letip_tests::{TestApp, id};
use serde_json::json;

fn on_sentinel(group: &SentinelGroup) -> impl Fn(&mut Config) + use<> {
    let nodes = group.sentinel_nodes();
    move |c: &mut Config| {
        c.cache_backend = CacheBackend::Tiered;
        c.redis_sentinel_nodes = nodes.clone();
        // Only its password, database and TLS count: the sentinels name the host.
        c.redis_url = "redis://127.0.0.1:1/0".into();
    }
}

/// Writes on `a` and reads on both until `failing_over` is done, then a few rounds more:
/// every read shows the last answered write; no answer is a 5xx.
async fn strict_through(a: &TestApp, b: &TestApp, failing_over: tokio::task::JoinHandle<u16>) {
    let created = a
        .business(json!({"name": "Round 0", "city": "Keyport"}))
        .await;
    let path = format!("/api/businesses/{}", id(&created));
    let (mut round, mut after) = (0, 0);
    while after < 20 {
        if failing_over.is_finished() {
            after += 1;
        }
        round += 1;
        let name = format!("Round {round}");
        let patched = a.patch(&path, json!({"name": name})).await;
        assert_eq!(patched.status, 200, "round {round}: {}", patched.text);
        for (who, app) in [("a", a), ("b", b)] {
            let read = app.get(&path).await;
            assert_eq!(read.status, 200, "round {round} on {who}: {}", read.text);
            assert_eq!(read.body["name"], name, "round {round} on {who}");
            let list = app.get("/api/businesses?city=Keyport").await;
            assert_eq!(list.status, 200, "round {round} on {who}: {}", list.text);
            assert_eq!(list.body["data"][0]["name"], name, "round {round} on {who}");
        }
    }
    failing_over.await.expect("the failover ran");
    // The cache works again on the new primary: a read twice is a hit the second time.
    letip_testkit::eventually("b serves hits again", async || {
        b.get(&path).await;
        b.get(&path).await.header("x-cache") == Some("HIT")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_stay_strict_through_a_sentinel_failover() {
    let group = std::sync::Arc::new(SentinelGroup::start(1));
    let a = TestApp::spawn_with(on_sentinel(&group)).await;
    let b = a.spawn_beside(on_sentinel(&group)).await;
    let g = group.clone();
    let failing_over = tokio::task::spawn_blocking(move || g.failover());
    strict_through(&a, &b, failing_over).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_stay_strict_when_the_redis_primary_is_killed() {
    let group = std::sync::Arc::new(std::sync::Mutex::new(SentinelGroup::start(1)));
    let nodes = on_sentinel(&group.lock().expect("the group"));
    let a = TestApp::spawn_with(&nodes).await;
    let b = a.spawn_beside(&nodes).await;
    let g = group.clone();
    let failing_over =
        tokio::task::spawn_blocking(move || g.lock().expect("the group").kill_primary());
    strict_through(&a, &b, failing_over).await;
}
