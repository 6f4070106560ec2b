//! PostgreSQL unreachable: what the cache holds is still answered, every other request is
//! a 503 with the error body and `Retry-After`, never a 500; nothing is written.

use std::net::SocketAddr;

use letip_server::CacheBackend;
use letip_tests::{TestApp, id};
use serde_json::json;

/// An address nothing listens on: connections to it are refused.
fn nowhere() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], letip_testkit::free_port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_503_and_the_cache_still_answers() {
    let (app, proxy) =
        TestApp::spawn_through_proxy_with(|c| c.cache_backend = CacheBackend::Memory).await;
    let held = app
        .business(json!({"name": "Held", "phone": "732-555-0100"}))
        .await;
    let held = format!("/api/businesses/{}", id(&held));
    app.get(&held).await;
    assert_eq!(app.get(&held).await.header("x-cache"), Some("HIT"));
    let before = app.db.rows("SELECT count(*) AS n FROM business").await;

    proxy.switch_to(nowhere());

    let hit = app.get(&held).await;
    assert_eq!(hit.status, 200, "{}", hit.text);
    assert_eq!(hit.body["name"], "Held");
    for res in [
        app.get("/api/businesses/999999").await,
        app.get("/api/businesses?city=Nowhere").await,
        app.post("/api/businesses", json!({"name": "Lost"})).await,
        app.patch(&held, json!({"name": "Changed"})).await,
        app.post(&format!("{held}/contacts"), json!({"name": "Ann"}))
            .await,
        app.delete(&held).await,
    ] {
        assert_eq!(res.error(503), "Database unavailable, try again later");
        assert_eq!(res.body["error"], "Service Unavailable", "{}", res.text);
        assert_eq!(res.header("retry-after"), Some("5"), "{}", res.text);
    }
    let health = app.get("/health").await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.body["database"], "down");

    proxy.switch_to(app.db.addr());
    let after = app.db.rows("SELECT count(*) AS n FROM business").await;
    assert_eq!(before, after, "nothing was written during the outage");
    let read = app.get(&held).await;
    assert_eq!(read.body["name"], "Held", "the refused PATCH left no trace");
    let created = app.post("/api/businesses", json!({"name": "Back"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
}

/// Fail-safe reads on `backend`: an entry whose TTL ran out while the database is
/// unreachable answers its last value as `STALE` with its `Age`, unless it was
/// invalidated since; once the database answers, nothing is `STALE`.
async fn stale_reads_on(backend: CacheBackend) {
    let redis = letip_testkit::RedisServer::start();
    let (app, proxy) = TestApp::spawn_through_proxy_with(|c| {
        c.cache_backend = backend;
        c.redis_url = redis.url();
        c.cache_ttl_detail_secs = 1;
        c.cache_ttl_stats_secs = 1;
        c.cache_ttl_list_secs = 1;
    })
    .await;
    let kept = app
        .business(json!({"name": "Kept", "city": "Freehold"}))
        .await;
    let kept = format!("/api/businesses/{}", id(&kept));
    let changed = app.business(json!({"name": "Before"})).await;
    let changed = format!("/api/businesses/{}", id(&changed));
    app.get(&changed).await;
    // Invalidated, and not read again: what was cached of it is never answered.
    let patched = app.patch(&changed, json!({"name": "After"})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let (stats, list) = ("/api/businesses/stats", "/api/businesses?city=Freehold");
    for path in [&kept, stats, list] {
        let read = app.get(path).await;
        assert_ne!(read.header("x-cache"), Some("STALE"), "{path}");
    }
    let stats = app.get(stats).await.body;
    let list_body = app.get(list).await.body;
    assert_eq!(list_body["meta"]["total"], 1, "{list_body}");
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;

    proxy.switch_to(nowhere());

    // A write refused before its COMMIT changed nothing, and drops nothing.
    app.patch(&kept, json!({"name": "Refused"}))
        .await
        .error(503);
    let stale = app.get(&kept).await;
    assert_eq!(stale.status, 200, "{}", stale.text);
    assert_eq!(stale.header("x-cache"), Some("STALE"));
    assert_eq!(stale.body["name"], "Kept");
    let age: u64 = stale
        .header("age")
        .expect("an Age header")
        .parse()
        .expect("whole seconds");
    assert!((2..60).contains(&age), "age {age}");
    let counters = app.get("/api/businesses/stats").await;
    assert_eq!(counters.status, 200, "{}", counters.text);
    assert_eq!(counters.header("x-cache"), Some("STALE"));
    assert_eq!(counters.body, stats, "the counters as last stored");
    let page = app.get(list).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.header("x-cache"), Some("STALE"));
    assert!(page.header("age").is_some());
    assert_eq!(page.body, list_body, "the page as last stored");
    let never_read = app.get("/api/businesses?city=Elsewhere").await;
    never_read.error(503);
    let refused = app.get(&changed).await;
    assert_eq!(
        refused.error(503),
        "Database unavailable, try again later",
        "a value invalidated since it was stored is never answered"
    );

    proxy.switch_to(app.db.addr());
    database_answers(&app).await;
    let fresh = app.get(&kept).await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(
        fresh.header("x-cache"),
        Some("MISS"),
        "no STALE once it answers"
    );
    assert_eq!(fresh.header("age"), None);
    assert_eq!(app.get(&changed).await.body["name"], "After");
}

/// Waits until the server's health check reaches the database again (its pool drops
/// the connections the outage broke as it meets them).
async fn database_answers(app: &TestApp) {
    for _ in 0..100 {
        if app.get("/health").await.body["database"] == "up" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the database never answered the health check again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_answers_stale_while_the_database_is_unreachable() {
    stale_reads_on(CacheBackend::Tiered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_answers_stale_from_redis_and_memory_too() {
    stale_reads_on(CacheBackend::Redis).await;
    stale_reads_on(CacheBackend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_grace_an_expired_entry_is_a_503() {
    let (app, proxy) = TestApp::spawn_through_proxy_with(|c| {
        c.cache_ttl_detail_secs = 1;
        c.cache_stale_grace_secs = 0;
    })
    .await;
    let held = app.business(json!({"name": "Held"})).await;
    let held = format!("/api/businesses/{}", id(&held));
    app.get(&held).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    proxy.switch_to(nowhere());
    app.get(&held).await.error(503);
}
