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
