//! `/health` follows reality on a server that gets no other request: Redis killed and
//! restarted, down at start, flapping; the near tier's subscription; the change feed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use letip_server::CacheBackend;
use letip_testkit::{FaultProxy, RedisServer, eventually};
use letip_tests::TestApp;

/// `/health`'s `field`.
async fn health(app: &TestApp, field: &str) -> String {
    let res = app.get("/health").await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.body[field].as_str().unwrap_or("absent").to_owned()
}

/// Polls only `/health`, once a second, as a load balancer would, until `field` says
/// `up`; answers how many polls that took. Two polls span the 2 s Redis may take to be
/// reported back.
async fn polls_until_up(app: &TestApp, field: &str) -> u32 {
    for poll in 1..=10 {
        if health(app, field).await == "up" {
            return poll;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("{field} never reported up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_reports_redis_back_at_once_after_a_restart() {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    assert_eq!(health(&app, "redis").await, "up");
    redis.kill();
    eventually("health reports redis down", async || {
        health(&app, "redis").await == "down"
    })
    .await;
    // Long enough for the breaker's backoff to grow past what a poll would wait out.
    for _ in 0..8 {
        assert_eq!(health(&app, "redis").await, "down");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    redis.restart();
    let polls = polls_until_up(&app, "redis").await;
    assert!(
        polls <= 2,
        "redis reported up after {polls} polls a second apart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_with_redis_down_reports_it_up_once_it_starts() {
    let port = letip_testkit::free_port();
    let app = TestApp::spawn_redis(&format!("redis://127.0.0.1:{port}")).await;
    for _ in 0..8 {
        assert_eq!(health(&app, "redis").await, "down");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _redis = RedisServer::start_on(port);
    let polls = polls_until_up(&app, "redis").await;
    assert!(
        polls <= 2,
        "redis reported up after {polls} polls a second apart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_polled_fast_while_redis_flaps_sends_one_probe_at_a_time() {
    let mut redis = RedisServer::start();
    let link = FaultProxy::start(redis.addr()).await;
    let app = Arc::new(TestApp::spawn_redis(&link.url()).await);
    assert_eq!(health(&app, "redis").await, "up");

    // 50 polls a second, in bursts of five at once, for 10 s, while Redis is killed and
    // restarted, down and up for 200 to 400 ms each. (Not stalled: a PING a stalled
    // link holds stays in flight on the wire after its check gave up on it.)
    let end = Instant::now() + Duration::from_secs(10);
    let poller = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while Instant::now() < end {
                tick.tick().await;
                let burst = (0..5).map(|_| app.get("/health"));
                for res in futures_util::future::join_all(burst).await {
                    answers.push((res.status, res.body["redis"].as_str().map(str::to_owned)));
                }
            }
            answers
        })
    };
    let mut phase = 0u64;
    while Instant::now() < end {
        if phase.is_multiple_of(2) {
            redis.kill();
        } else {
            redis.restart();
        }
        tokio::time::sleep(Duration::from_millis(200 + (phase * 70) % 200)).await;
        phase += 1;
    }
    redis.restart();
    let answers = poller.await.expect("the poller");

    assert!(answers.len() >= 200, "{} answers", answers.len());
    let not_200: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(not_200.is_empty(), "non-200 answers: {not_200:?}");
    for state in ["up", "down"] {
        assert!(
            answers.iter().any(|(_, r)| r.as_deref() == Some(state)),
            "redis was never reported {state}"
        );
    }
    // Few while the circuit is open (at most two a second), many while it is closed.
    assert!(link.pings_sent() >= 3, "health checks asked Redis");
    assert_eq!(
        link.pings_in_flight_peak(),
        1,
        "health probes in flight at once ({} sent)",
        link.pings_sent()
    );
    let polls = polls_until_up(&app, "redis").await;
    assert!(
        polls <= 2,
        "redis reported up after {polls} polls a second apart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_tier_subscription_is_reported_and_back_with_redis() {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| {
        c.cache_backend = CacheBackend::Tiered;
        c.redis_url = redis.url();
    })
    .await;
    eventually("the near tier subscribed", async || {
        health(&app, "near_tier").await == "up"
    })
    .await;
    redis.kill();
    eventually("the lost subscription is reported", async || {
        health(&app, "near_tier").await == "down"
    })
    .await;
    // Long enough for the subscription's backoff to grow to seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();
    // A health check that finds Redis back wakes the subscription: no waiting out its
    // backoff.
    // Resubscribing takes a connection and a SUBSCRIBE after the wake-up: a loaded
    // machine needs more than one second for them now and then. Without the wake-up it
    // waits out a backoff of up to 5 s.
    let polls = polls_until_up(&app, "near_tier").await;
    assert!(polls <= 4, "near tier reported up after {polls} polls");
    assert_eq!(health(&app, "redis").await, "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_is_reported_while_a_cache_is_on() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    assert_eq!(health(&app, "change_feed").await, "up");
    assert_eq!(
        health(&app, "near_tier").await,
        "absent",
        "no near tier here"
    );
    // Its database gone: it cannot reconnect, and says so.
    letip_store::drop_database(&app.db.url)
        .await
        .expect("the database can be dropped");
    eventually("the change feed is reported down", async || {
        app.get("/health").await.body["change_feed"] == "down"
    })
    .await;
}
