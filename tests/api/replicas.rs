//! Read replicas (`DATABASE_REPLICA_URLS`): a real streaming replica made with
//! `pg_basebackup -R` from a private primary. Misses read the replica once it has
//! replayed every write answered before them, never older data; a replica behind, down
//! or lagging past its bound is left out, and no answer fails because of it.

use std::sync::Arc;
use std::time::Duration;

use letip_server::Config;
use letip_testkit::{PgCluster, eventually};
use letip_tests::{TestApp, TestDb, id};
use serde_json::json;

const SERVED: &str = "letip_db_replica_reads_total{outcome=\"replica\"}";
const BEHIND: &str = "letip_db_replica_reads_total{outcome=\"primary_replica_behind\"}";

/// A primary, a replica of it replaying each commit `delay` late, and a server reading
/// through the cache-less path (every read is a database read) with both.
async fn spawn(
    delay: Duration,
    adjust: impl FnOnce(&mut Config),
) -> (PgCluster, PgCluster, TestApp) {
    let primary = PgCluster::start();
    let replica = PgCluster::replica_of(&primary, delay);
    let name = format!("letip_test_{}", uuid::Uuid::new_v4().simple());
    let db = Arc::new(TestDb {
        url: primary.url(&name),
    });
    let replica_url = replica.url(&name);
    let app = TestApp::spawn_on_db(db, |c| {
        c.database_replica_urls = vec![replica_url];
        adjust(c);
    })
    .await;
    (primary, replica, app)
}

async fn replica_state(app: &TestApp) -> String {
    let health = app.get("/health").await;
    health.body["replicas"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_read_a_replica_that_has_replayed_every_answered_write() {
    let (_primary, _replica, app) = spawn(Duration::ZERO, |_| {}).await;
    eventually("the replica is in use", async || {
        replica_state(&app).await == "up"
    })
    .await;
    let health = app.get("/health").await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert!(
        health.body["replicas"][0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("127.0.0.1:")),
        "{}",
        health.text
    );

    let created = app
        .business(json!({"name": "Replayed 0", "city": "Red Bank"}))
        .await;
    let path = format!("/api/businesses/{}", id(&created));
    for round in 1..=20 {
        let name = format!("Replayed {round}");
        let patched = app.patch(&path, json!({"name": name})).await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        let read = app.get(&path).await;
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(read.body["name"], name, "a read after the write saw it");
        let list = app.get("/api/businesses?city=Red%20Bank").await;
        assert_eq!(list.body["data"][0]["name"], name, "{}", list.text);
        assert_eq!(app.stats().await["totalBusinesses"], 1);
    }
    assert!(
        app.counter(SERVED).await > 0,
        "no read was served by the replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_is_never_read_for_what_it_has_not_replayed() {
    let (primary, replica, app) = spawn(Duration::from_secs(3), |c| {
        c.database_replica_max_lag_ms = 1000;
    })
    .await;
    eventually("the replica is in use", async || {
        replica_state(&app).await == "up"
    })
    .await;

    // Three seconds on the replica; a read from it now would answer 404 and old counts.
    let created = app
        .business(json!({"name": "Fresh", "city": "Holmdel"}))
        .await;
    let path = format!("/api/businesses/{}", id(&created));
    assert_eq!(
        replica.psql(&app.db.name(), "SELECT count(*) FROM business"),
        "0",
        "the replica has not replayed the write yet"
    );
    let read = app.get(&path).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["name"], "Fresh");
    let list = app.get("/api/businesses?city=Holmdel").await;
    assert_eq!(list.body["meta"]["total"], 1, "{}", list.text);
    assert_eq!(app.stats().await["totalBusinesses"], 1);
    assert!(
        app.counter(BEHIND).await > 0,
        "the primary answered instead"
    );

    // Behind by more than the bound: left out, shown in the health check, no error.
    eventually("the replica is reported lagging", async || {
        replica_state(&app).await == "lagging"
    })
    .await;
    assert_eq!(app.get(&path).await.status, 200);

    // Once it has replayed, it is used again for what it holds.
    replica.caught_up_with(&primary);
    eventually("the replica is in use again", async || {
        replica_state(&app).await == "up"
    })
    .await;
    let served = app.counter(SERVED).await;
    eventually("a read is served by the caught-up replica", async || {
        let read = app.get(&path).await;
        assert_eq!(read.body["name"], "Fresh", "{}", read.text);
        app.counter(SERVED).await > served
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_goes_down_is_left_out_without_an_error() {
    let (_primary, replica, app) = spawn(Duration::ZERO, |_| {}).await;
    eventually("the replica is in use", async || {
        replica_state(&app).await == "up"
    })
    .await;
    let created = app.business(json!({"name": "Kept"})).await;
    let path = format!("/api/businesses/{}", id(&created));
    assert_eq!(app.get(&path).await.status, 200);

    replica.stop();
    for _ in 0..20 {
        let read = app.get(&path).await;
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(read.body["name"], "Kept");
        assert_eq!(app.get("/api/businesses").await.status, 200);
    }
    eventually("the replica is reported down", async || {
        replica_state(&app).await == "down"
    })
    .await;
    let health = app.get("/health").await;
    assert_eq!(
        health.status, 200,
        "a replica down is no outage: {}",
        health.text
    );
    assert_eq!(health.body["database"], "up");

    replica.restart();
    eventually("the replica is in use again", async || {
        replica_state(&app).await == "up"
    })
    .await;
    let served = app.counter(SERVED).await;
    eventually("a read is served by the replica again", async || {
        assert_eq!(app.get(&path).await.status, 200);
        app.counter(SERVED).await > served
    })
    .await;
}
