//! PostgreSQL ending sessions costs a request nothing: a connection found dead, or a new
//! one ended before it was set up (a restart, a failover, `pg_terminate_backend`
//! reaching a session the pool had just opened), is replaced by another, within the
//! pool's bound of attempts, and only a call that may have committed fails.

use letip_tests::{TestApp, id};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_closed_at_once_are_replaced_for_reads_and_writes() {
    let (app, proxy) = TestApp::spawn_through_proxy().await;
    let b = app.business(json!({"name": "Before"})).await;

    // Every open session ends, and so do the next two the pool opens.
    proxy.cut();
    proxy.close_next(2);
    let stats = app.get("/api/businesses/stats").await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    assert_eq!(stats.body["totalBusinesses"], 1);

    proxy.cut();
    proxy.close_next(2);
    let created = app.post("/api/businesses", json!({"name": "After"})).await;
    assert_eq!(created.status, 201, "{}", created.text);

    proxy.cut();
    proxy.close_next(2);
    let detail = app.get(&format!("/api/businesses/{}", id(&b))).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    let names = app
        .db
        .rows("SELECT name FROM business ORDER BY id")
        .await
        .into_iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(names, ["Before", "After"], "each write stored once");
}
