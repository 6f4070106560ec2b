//! Several instances behind a load balancer: two servers sharing one PostgreSQL database
//! and one (private) Redis.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use letip_server::CacheBackend;
use letip_testkit::RedisServer;
use letip_tests::{TestApp, id};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn pair(redis_url: &str, backend: CacheBackend) -> (TestApp, TestApp) {
    let configure = |c: &mut letip_server::Config| {
        c.cache_backend = backend;
        c.redis_url = redis_url.to_owned();
    };
    let a = TestApp::spawn_with(configure).await;
    let b = a.spawn_beside(configure).await;
    (a, b)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

async fn warm(app: &TestApp, paths: &[&str]) {
    for p in paths {
        // The other instance's write also reaches this one through the change feed, a
        // moment later; that second invalidation may cost one more miss.
        let mut tries = 0;
        while app.get(p).await.header("x-cache") != Some("HIT") {
            tries += 1;
            assert!(tries < 5, "{p} never became warm");
        }
    }
}

/// How long after a write's answer an instance that cannot reach Redis may still have
/// its write hidden from the others (docs/design.md, "Freshness guarantees").
const FEED_BOUND: Duration = Duration::from_secs(1);

/// Polls `path` on `app` until `fresh` holds for the answer; answers how long it took.
async fn fresh_within(app: &TestApp, path: &str, fresh: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let read = app.get(path).await;
        assert!(read.status < 500, "{}", read.text);
        if fresh(&read.body) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < FEED_BOUND,
            "{path} still stale after {FEED_BOUND:?}: {}",
            read.text
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_an_instance_cut_off_from_redis_reaches_the_others_through_postgres() {
    let redis = RedisServer::start();
    let link_a = letip_testkit::FaultProxy::start(redis.addr()).await;
    let a = TestApp::spawn_with(|c| {
        c.cache_backend = CacheBackend::Redis;
        c.redis_url = link_a.url();
    })
    .await;
    let b = a
        .spawn_beside(|c| {
            c.cache_backend = CacheBackend::Redis;
            c.redis_url = redis.url();
        })
        .await;
    let biz = a
        .business(json!({"name": "v0", "city": "Colts Neck"}))
        .await;
    let detail = format!("/api/businesses/{}", id(&biz));
    let list = "/api/businesses?city=Colts%20Neck";
    warm(&b, &[detail.as_str(), list, "/api/businesses/stats"]).await;

    // A loses Redis; B does not.
    link_a.stall();
    let mut seen = Vec::new();
    let patched = a.patch(&detail, json!({"name": "v1"})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    seen.push(fresh_within(&b, &detail, |d| d["name"] == "v1").await);
    seen.push(fresh_within(&b, list, |l| l["data"][0]["name"] == "v1").await);

    warm(&b, &[detail.as_str(), "/api/businesses/stats"]).await;
    let contact = a
        .post(&format!("{detail}/contacts"), json!({"name": "Ann"}))
        .await;
    assert_eq!(contact.status, 201, "{}", contact.text);
    seen.push(fresh_within(&b, "/api/businesses/stats", |s| s["totalContacts"] == 1).await);
    seen.push(
        fresh_within(&b, &detail, |d| {
            d["contacts"].as_array().map(Vec::len) == Some(1)
        })
        .await,
    );
    println!("writes of an instance cut off from Redis became visible on the other after {seen:?}");

    // Back on Redis, A serves nothing it missed either.
    link_a.resume();
    let read = a.get(&detail).await;
    assert_eq!(read.body["name"], "v1", "{}", read.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_directly_in_the_database_invalidate_the_cache() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    let biz = app
        .business(json!({"name": "before", "city": "Holmdel"}))
        .await;
    let detail = format!("/api/businesses/{}", id(&biz));
    let list = "/api/businesses?city=Holmdel";
    warm(&app, &[detail.as_str(), list, "/api/businesses/stats"]).await;

    app.db
        .execute(&format!(
            "UPDATE business SET name = 'after', city = 'Rumson' WHERE id = {}",
            id(&biz)
        ))
        .await;
    fresh_within(&app, &detail, |d| d["name"] == "after").await;
    fresh_within(&app, list, |l| l["meta"]["total"] == 0).await;
    fresh_within(&app, "/api/businesses?city=Rumson", |l| {
        l["meta"]["total"] == 1
    })
    .await;

    app.db
        .execute(&format!(
            "INSERT INTO outreach_message (business_id, message_text) VALUES ({}, 'hi')",
            id(&biz)
        ))
        .await;
    fresh_within(&app, "/api/businesses/stats", |s| s["messagesPending"] == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_by_one_instance_is_never_contradicted_by_the_other() {
    for backend in [CacheBackend::Redis, CacheBackend::Tiered] {
        let redis = RedisServer::start();
        let (a, b) = pair(&redis.url(), backend).await;
        let biz = a.business(json!({"name": "Shared", "city": "Wall"})).await;
        let detail = format!("/api/businesses/{}", id(&biz));
        let paths = [
            "/api/businesses/stats",
            "/api/businesses?city=Wall",
            detail.as_str(),
        ];

        warm(&b, &paths).await;
        a.patch(&detail, json!({"name": "Renamed"})).await;
        assert_eq!(b.get(&detail).await.body["name"], "Renamed", "{backend:?}");
        assert_eq!(
            b.get("/api/businesses?city=Wall").await.body["data"][0]["name"],
            "Renamed"
        );

        warm(&b, &paths).await;
        a.post(&format!("{detail}/contacts"), json!({"name": "Ann"}))
            .await;
        assert_eq!(b.stats().await["totalContacts"], 1, "{backend:?}");
        assert_eq!(
            b.get(&detail).await.body["contacts"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        let listed = b.get("/api/businesses?city=Wall").await;
        assert_eq!(
            listed.body["data"][0]["contacts"].as_array().map(Vec::len),
            Some(1)
        );

        warm(&b, &paths).await;
        a.business(json!({"name": "Another", "city": "Wall"})).await;
        assert_eq!(b.stats().await["totalBusinesses"], 2, "{backend:?}");
        assert_eq!(
            b.get("/api/businesses?city=Wall").await.body["meta"]["total"],
            2
        );

        warm(&b, &paths).await;
        a.delete(&detail).await;
        assert_eq!(b.get(&detail).await.status, 404, "{backend:?}");
        assert_eq!(b.stats().await["totalBusinesses"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_tier_never_serves_a_value_the_other_instance_invalidated() {
    // The writer on the leased near tier too, then on Redis alone: either waits for B.
    for writer in [CacheBackend::Tiered, CacheBackend::Redis] {
        the_near_tier_never_serves_a_value_written_on(writer).await;
    }
}

async fn the_near_tier_never_serves_a_value_written_on(writer: CacheBackend) {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = TestApp::spawn_with(|c| {
        c.cache_backend = writer;
        c.redis_url = url.clone();
    })
    .await;
    let b = a
        .spawn_beside(|c| {
            c.cache_backend = CacheBackend::Tiered;
            c.redis_url = url.clone();
        })
        .await;
    let biz = a.business(json!({"name": "round 0"})).await;
    let detail = format!("/api/businesses/{}", id(&biz));
    let (mut stale, mut visible) = (0, Vec::new());
    for round in 1..=100 {
        // B holds a near copy of the current value...
        b.get(&detail).await;
        // ...A changes it and answers...
        a.patch(&detail, json!({"name": format!("round {round}")}))
            .await;
        let answered = Instant::now();
        // ...and B's very next read shows the change.
        let read = b.get(&detail).await;
        visible.push(answered.elapsed());
        if read.body["name"] != format!("round {round}") {
            stale += 1;
        }
    }
    visible.sort();
    println!(
        "near tier, write on A ({writer:?}) then read on B, 100 rounds: {stale} stale reads; \
         the change was visible to B's first read, which took p50 {:?}, p99 {:?}",
        percentile(&visible, 50),
        percentile(&visible, 99)
    );
    assert_eq!(stale, 0, "writer {writer:?}");
    let metrics = b.get("/metrics").await.text;
    assert!(
        metrics.contains("cache_near_leased_hits_total"),
        "the near tier served hits under its lease"
    );
}

/// A rolling upgrade from `CACHE_BACKEND=redis` to the default (the leased near tier):
/// the instances are replaced one at a time, and at every step a write answered by
/// either instance shows in the next read on the other, detail and list page alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_from_redis_to_the_default_stays_strict() {
    let redis = RedisServer::start();
    let on = |backend: CacheBackend| {
        let url = redis.url();
        move |c: &mut letip_server::Config| {
            c.cache_backend = backend;
            c.redis_url = url;
        }
    };
    let mut a = TestApp::spawn_with(on(CacheBackend::Redis)).await;
    let mut b = a.spawn_beside(on(CacheBackend::Redis)).await;
    let biz = a
        .business(json!({"name": "v0", "city": "Upgrade Town"}))
        .await;
    let detail = format!("/api/businesses/{}", id(&biz));
    let list = "/api/businesses?city=Upgrade%20Town";
    let (mut version, mut stale) = (0, Vec::new());
    for step in ["both on redis", "B on the default", "both on the default"] {
        match step {
            "B on the default" => {
                let old = std::mem::replace(&mut b, a.spawn_beside(on(CacheBackend::Tiered)).await);
                old.stop().await;
            }
            "both on the default" => {
                let old = std::mem::replace(&mut a, b.spawn_beside(on(CacheBackend::Tiered)).await);
                old.stop().await;
            }
            _ => {}
        }
        for round in 0..40 {
            let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
            // The reader holds the page and the detail (near copies, on the default)...
            for _ in 0..2 {
                reader.get(&detail).await;
                reader.get(list).await;
            }
            // ...the writer changes the name and answers...
            version += 1;
            let name = format!("v{version}");
            let res = writer.patch(&detail, json!({"name": name})).await;
            assert_eq!(res.status, 200, "{}", res.text);
            // ...and the reader's next reads show it.
            let shown = reader.get(&detail).await.body["name"].clone();
            let row = reader.get(list).await.body["data"][0]["name"].clone();
            if shown != name.as_str() || row != name.as_str() {
                stale.push(format!(
                    "{step}, round {round}: wrote {name}, read {shown} and {row}"
                ));
            }
        }
    }
    assert!(stale.is_empty(), "stale reads: {stale:#?}");
    let metrics = a.get("/metrics").await.text;
    assert!(
        metrics.contains("cache_near_leased_hits_total"),
        "the upgraded instances served near hits under their leases"
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_event(ws: &mut Ws, name: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let msg = ws.next().await.expect("open").expect("a frame");
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(&text).expect("JSON");
                if v["event"] == name {
                    return v;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_on_one_instance_sees_the_writes_made_on_the_other() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis.url(), CacheBackend::Redis).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", b.addr))
        .await
        .expect("upgrade");
    // The bus subscription is made in the background; wait until A's events get through.
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            a.business(json!({"name": "probe"})).await;
            let got = tokio::time::timeout(
                Duration::from_millis(300),
                next_event(&mut ws, "business:created"),
            )
            .await;
            if got.is_ok() {
                break;
            }
        }
    })
    .await;
    assert!(first.is_ok(), "B relays A's events");

    let mut delays = Vec::new();
    for i in 0..30 {
        let created = a.business(json!({"name": format!("live {i}")})).await;
        let answered = Instant::now();
        let event = loop {
            let e = next_event(&mut ws, "business:created").await;
            if e["data"]["id"] == created["id"] {
                break e;
            }
        };
        delays.push(answered.elapsed());
        assert_eq!(event["data"], created);
    }
    let stats = loop {
        let s = next_event(&mut ws, "stats:updated").await;
        if s["data"]["totalBusinesses"].as_i64() >= Some(31) {
            break s;
        }
    };
    assert!(stats["data"]["totalBusinesses"].as_i64() >= Some(31));
    delays.sort();
    println!(
        "event delay from A's answer to B's WebSocket client: p50 {:?}, p99 {:?}",
        percentile(&delays, 50),
        percentile(&delays, 99)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_both_instances_serve_correct_data() {
    let mut redis = RedisServer::start();
    let (a, b) = pair(&redis.url(), CacheBackend::Tiered).await;
    let biz = a.business(json!({"name": "v0"})).await;
    let detail = format!("/api/businesses/{}", id(&biz));
    warm(&b, &[detail.as_str(), "/api/businesses/stats"]).await;
    redis.kill();
    assert_eq!(a.patch(&detail, json!({"name": "v1"})).await.status, 200);
    a.business(json!({"name": "second"})).await;
    for app in [&a, &b] {
        let read = app.get(&detail).await;
        assert_eq!((read.status, read.body["name"].as_str()), (200, Some("v1")));
        assert_eq!(read.header("x-cache"), Some("BYPASS"));
        assert_eq!(app.stats().await["totalBusinesses"], 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_closes_websockets_with_a_close_frame() {
    let app = TestApp::spawn().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr))
        .await
        .expect("upgrade");
    let stopping = tokio::spawn(app.stop());
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed within 10 s");
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001), "going away");
    stopping.await.expect("joined");
}
