//! The cache end to end: a private redis-server per test, the real server and database.

use std::sync::Arc;
use std::time::Duration;

use letip_domain::Repository;
use letip_testkit::{FaultProxy, RedisServer, eventually};
use letip_tests::{Probe, Res, TestApp, id};
use serde_json::{Value, json};

async fn spawn_probed(redis_url: &str) -> (TestApp, Arc<Probe>) {
    spawn_probed_with(redis_url, |_| {}).await
}

/// The server on a Redis backend at `redis_url`, its store wrapped in a [`Probe`].
async fn spawn_probed_with(
    redis_url: &str,
    adjust: impl FnOnce(&mut letip_server::Config),
) -> (TestApp, Arc<Probe>) {
    let probe = std::sync::Mutex::new(None);
    let app = TestApp::spawn_wrapped(
        |c| {
            c.cache_backend = letip_server::CacheBackend::Redis;
            c.redis_url = redis_url.to_owned();
            adjust(c);
        },
        |store| {
            let p = Probe::new(store);
            *probe.lock().expect("unpoisoned") = Some(p.clone());
            p as Arc<dyn Repository>
        },
    )
    .await;
    let probe = probe
        .lock()
        .expect("unpoisoned")
        .take()
        .expect("the store was wrapped");
    (app, probe)
}

/// Inserts rows behind the server's back and waits until the server has applied the
/// `rows` announcements the inserts make (it invalidates what they changed).
async fn insert_behind(app: &TestApp, sql: &str, rows: u64) {
    let before = app.changes_applied().await;
    app.db.execute(sql).await;
    eventually("the inserts' announcements are applied", async || {
        app.changes_applied().await >= before + rows
    })
    .await;
}

fn cache_of(res: &Res) -> &str {
    res.header("x-cache").unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_miss_then_hit_with_the_same_body_and_their_family_ttl() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    let miss_then_hit = async |path: &str| {
        let first = app.get(path).await;
        assert_eq!((first.status, cache_of(&first)), (200, "MISS"), "{path}");
        let second = app.get(path).await;
        assert_eq!((second.status, cache_of(&second)), (200, "HIT"), "{path}");
        assert_eq!(first.body, second.body, "{path}");
        assert_eq!(second.header("content-type"), Some("application/json"));
    };
    // Stats before any write: a write makes the server read stats for its
    // `stats:updated` event, which stores them, so after one the first read may hit.
    miss_then_hit("/api/businesses/stats").await;
    let b = app
        .business(json!({"name": "Cached", "city": "Freehold"}))
        .await;
    miss_then_hit("/api/businesses?city=Freehold&limit=5").await;
    miss_then_hit(&format!("/api/businesses/{}", id(&b))).await;
    let ttl = |pattern: &str| -> i64 {
        let key = redis.cli(&["--scan", "--pattern", pattern]);
        redis
            .cli(&["PTTL", key.lines().next().expect("a key")])
            .parse()
            .expect("a number")
    };
    let stats = ttl("letip:v1:{stats}:stats:*");
    let list = ttl("letip:v1:{list}:list:*");
    let detail = ttl("letip:v1:{detail*}:detail:*");
    assert!(stats > 20_000 && stats <= 30_000, "stats {stats}");
    assert!(list > 290_000 && list <= 300_000, "list {list}");
    assert!(detail > 590_000 && detail <= 600_000, "detail {detail}");
    assert_eq!(app.get("/health").await.body["redis"], "up");
}

/// Warms stats, the list and the detail of `b`, runs `mutate`, then answers the three
/// fresh reads; each must be a miss (its entry was invalidated) or reflect the change.
async fn after(app: &TestApp, b: &Value, mutate: impl AsyncFnOnce()) -> (Res, Res, Res) {
    let detail = format!("/api/businesses/{}", id(b));
    for path in ["/api/businesses/stats", "/api/businesses", &detail] {
        app.get(path).await;
        assert_eq!(cache_of(&app.get(path).await), "HIT", "{path} is warm");
    }
    mutate().await;
    (
        app.get("/api/businesses/stats").await,
        app.get("/api/businesses").await,
        app.get(&detail).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_invalidates_what_it_changes() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    let b = app.business(json!({"name": "Acme", "city": "Wall"})).await;
    let path = format!("/api/businesses/{}", id(&b));

    // Business update: list and detail show it; stats are unchanged and may stay cached.
    let (_, list, detail) = after(&app, &b, async || {
        app.patch(&path, json!({"city": "Brick"})).await;
    })
    .await;
    assert_eq!(list.body["data"][0]["city"], "Brick");
    assert_eq!(detail.body["city"], "Brick");

    // Business create.
    let (stats, list, _) = after(&app, &b, async || {
        app.business(json!({"name": "Second"})).await;
    })
    .await;
    assert_eq!(stats.body["totalBusinesses"], 2);
    assert_eq!(list.body["meta"]["total"], 2);

    // Enrichment.
    let (stats, list, detail) = after(&app, &b, async || {
        app.post(
            &format!("/api/enrich/{}", id(&b)),
            json!({"status": "enriched", "contacts": [{"name": "Ann"}]}),
        )
        .await;
    })
    .await;
    assert_eq!(stats.body["enrichedBusinesses"], 1);
    assert_eq!(stats.body["totalContacts"], 1);
    let listed = |list: &Res| {
        list.body["data"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["id"] == b["id"]).cloned())
            .expect("listed")
    };
    assert_eq!(listed(&list)["enrichment_status"], "enriched");
    assert_eq!(detail.body["contacts"].as_array().map(Vec::len), Some(1));

    // Contact create.
    let mut contact = Value::Null;
    let (stats, list, detail) = after(&app, &b, async || {
        contact = app
            .post(&format!("{path}/contacts"), json!({"name": "Bo"}))
            .await
            .body;
    })
    .await;
    assert_eq!(stats.body["totalContacts"], 2);
    assert_eq!(listed(&list)["contacts"].as_array().map(Vec::len), Some(2));
    assert_eq!(detail.body["contacts"].as_array().map(Vec::len), Some(2));

    // Message create.
    let mut message = Value::Null;
    let (stats, _, detail) = after(&app, &b, async || {
        message = app
            .post(&format!("{path}/messages"), json!({"message_text": "Hi"}))
            .await
            .body;
    })
    .await;
    assert_eq!(stats.body["messagesPending"], 1);
    assert_eq!(detail.body["outreach_messages"][0]["status"], "generated");

    // Message status change.
    let (stats, _, detail) = after(&app, &b, async || {
        app.patch(
            &format!("/api/messages/{}", id(&message)),
            json!({"status": "sent"}),
        )
        .await;
    })
    .await;
    assert_eq!(
        (
            stats.body["messagesSent"].as_i64(),
            stats.body["messagesPending"].as_i64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(detail.body["outreach_messages"][0]["status"], "sent");

    // Contact delete.
    let (stats, list, detail) = after(&app, &b, async || {
        app.delete(&format!("/api/contacts/{}", id(&contact))).await;
    })
    .await;
    assert_eq!(stats.body["totalContacts"], 1);
    assert_eq!(listed(&list)["contacts"].as_array().map(Vec::len), Some(1));
    assert_eq!(detail.body["contacts"].as_array().map(Vec::len), Some(1));

    // Business delete.
    let (stats, list, detail) = after(&app, &b, async || {
        app.delete(&path).await;
    })
    .await;
    assert_eq!(stats.body["totalBusinesses"], 1);
    assert_eq!(list.body["meta"]["total"], 1);
    assert_eq!(detail.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_cold_key_costs_one_database_read() {
    let redis = RedisServer::start();
    // What is counted is the sharing of loads: a lookup that times out on a loaded
    // machine reads the database on purpose (a bypass), so lookups here may take longer.
    let (app, probe) = spawn_probed_with(&redis.url(), |c| c.cache_timeout_ms = 1000).await;
    // That insert is announced to the server, which invalidates what it changed: let
    // that land before the burst.
    insert_behind(
        &app,
        "INSERT INTO business (name, city, updated_at) SELECT 'B' || i, 'Freehold', now() FROM generate_series(1, 30) i",
        30,
    )
    .await;
    for (path, counter) in [
        ("/api/businesses/stats", &probe.stats_reads),
        ("/api/businesses?city=Freehold", &probe.list_reads),
        ("/api/businesses/7", &probe.detail_reads),
    ] {
        let before = Probe::count(counter);
        let burst = (0..100).map(|_| app.get(path));
        let answers = futures_util::future::join_all(burst).await;
        assert!(answers.iter().all(|r| r.status == 200), "{path}");
        assert!(answers.windows(2).all(|w| w[0].body == w[1].body), "{path}");
        assert_eq!(
            Probe::count(counter) - before,
            1,
            "{path}: one database read for 100 requests"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_loaded_old_data_cannot_store_it_after_a_write() {
    let redis = RedisServer::start();
    let (app, probe) = spawn_probed(&redis.url()).await;
    let b = app.business(json!({"name": "Before"})).await;
    let path = format!("/api/businesses/{}", id(&b));

    // A reader misses and reads the database, and is held before it stores.
    let pause = probe.pause_next_detail().await;
    let reader = {
        let (client, url) = (app.client.clone(), app.url(&path));
        tokio::spawn(async move {
            client
                .get(url)
                .send()
                .await
                .expect("answer")
                .json::<Value>()
                .await
        })
    };
    pause.read_done.await.expect("the reader read the database");

    // A writer commits and answers while the reader holds the old row.
    let write = app.patch(&path, json!({"name": "After"})).await;
    assert_eq!(write.status, 200);

    // The reader goes on: it may answer what it read (it started before the write)...
    pause.release.send(()).expect("the reader waits");
    let old = reader.await.expect("joined").expect("json");
    assert_eq!(old["name"], "Before");

    // ...but it must not have stored it: every read from now on shows the write.
    for _ in 0..3 {
        let fresh = app.get(&path).await;
        assert_eq!(
            fresh.body["name"],
            "After",
            "served {} ({})",
            fresh.body["name"],
            cache_of(&fresh)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_parallel_creates_then_stats_counts_them_all() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    app.get("/api/businesses/stats").await;
    let creates = (0..10).map(|i| app.post("/api/businesses", json!({"name": format!("P{i}")})));
    for r in futures_util::future::join_all(creates).await {
        assert_eq!(r.status, 201);
    }
    assert_eq!(app.stats().await["totalBusinesses"], 10);
    assert_eq!(
        app.get("/api/businesses?limit=100").await.body["meta"]["total"],
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_serves_from_postgres_then_reconnects() {
    let port = letip_testkit::free_port();
    let app = TestApp::spawn_redis(&format!("redis://127.0.0.1:{port}")).await;
    let b = app.business(json!({"name": "Up anyway"})).await;
    for _ in 0..5 {
        let res = app.get(&format!("/api/businesses/{}", id(&b))).await;
        assert_eq!((res.status, cache_of(&res)), (200, "BYPASS"));
        assert_eq!(res.body["name"], "Up anyway");
    }
    let health = app.get("/health").await;
    assert_eq!(
        (health.status, health.body["redis"].as_str()),
        (200, Some("down"))
    );

    let _redis = RedisServer::start_on(port);
    eventually("the cache serves hits again", async || {
        cache_of(&app.get("/api/businesses/stats").await) == "HIT"
    })
    .await;
    assert_eq!(app.get("/health").await.body["redis"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_costs_no_5xx_and_no_stale_read_after_restart() {
    let mut redis = RedisServer::start();
    let app = Arc::new(TestApp::spawn_redis(&redis.url()).await);
    let b = app.business(json!({"name": "v0"})).await;
    let path = format!("/api/businesses/{}", id(&b));

    let load = {
        let app = app.clone();
        let path = path.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..300 {
                let res = match i % 3 {
                    0 => app.get("/api/businesses/stats").await,
                    1 => app.get("/api/businesses").await,
                    _ => app.get(&path).await,
                };
                statuses.push(res.status);
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.kill();
    // A write while Redis is dead: its invalidation is lost.
    let write = app.patch(&path, json!({"name": "v1"})).await;
    assert_eq!(write.status, 200);
    assert_eq!(app.get(&path).await.body["name"], "v1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.restart();
    let statuses = load.await.expect("joined");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    eventually("reads go through Redis again", async || {
        cache_of(&app.get(&path).await) != "BYPASS"
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get(&path).await.body["name"], "v1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_is_bypassed_and_a_write_made_meanwhile_is_never_hidden() {
    let redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.addr()).await;
    let app = TestApp::spawn_redis(&proxy.url()).await;
    let b = app.business(json!({"name": "v0"})).await;
    let path = format!("/api/businesses/{}", id(&b));
    app.get(&path).await;
    assert_eq!(cache_of(&app.get(&path).await), "HIT");

    proxy.stall();
    for _ in 0..5 {
        let res = app.get(&path).await;
        assert_eq!((res.status, cache_of(&res)), (200, "BYPASS"));
    }
    // The write commits; its invalidation cannot reach Redis, which still holds v0.
    assert_eq!(app.patch(&path, json!({"name": "v1"})).await.status, 200);
    proxy.resume();
    eventually("reads go through Redis again", async || {
        cache_of(&app.get(&path).await) != "BYPASS"
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get(&path).await.body["name"], "v1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_is_not_json_is_bypassed_removed_and_counted() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    let b = app.business(json!({"name": "Intact"})).await;
    let path = format!("/api/businesses/{}", id(&b));
    app.get(&path).await;
    let key = redis.cli(&["--scan", "--pattern", "letip:v1:{detail*}:detail:*"]);
    let key = key.lines().next().expect("the detail entry").to_owned();

    // Garbage behind a valid header, then garbage in no known format at all.
    let stored = redis.cli(&["GET", &key]);
    let header = stored.split('\n').next().expect("a header").to_owned();
    for planted in [
        format!("{header}\n{{\"id\": 1, trunc"),
        "definitely not json".to_owned(),
    ] {
        redis.cli(&["SET", &key, &planted, "PX", "600000"]);
        let res = app.get(&path).await;
        assert_eq!((res.status, cache_of(&res)), (200, "BYPASS"), "{planted}");
        assert_eq!(res.body["name"], "Intact");
        assert_eq!(
            redis.cli(&["EXISTS", &key]),
            "0",
            "the bad entry is deleted"
        );
        assert_eq!(cache_of(&app.get(&path).await), "MISS");
        assert_eq!(cache_of(&app.get(&path).await), "HIT");
    }
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains(r#"cache_corrupt_total{family="detail"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"cache_requests_total{family="detail",result="hit"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_backend_caches_and_invalidates_too() {
    let app = TestApp::spawn_with(|c| c.cache_backend = letip_server::CacheBackend::Memory).await;
    let b = app.business(json!({"name": "Mem"})).await;
    let path = format!("/api/businesses/{}", id(&b));
    assert_eq!(cache_of(&app.get(&path).await), "MISS");
    assert_eq!(cache_of(&app.get(&path).await), "HIT");
    app.patch(&path, json!({"name": "Mem2"})).await;
    let res = app.get(&path).await;
    assert_eq!(
        (cache_of(&res), res.body["name"].as_str()),
        ("MISS", Some("Mem2"))
    );
    assert_eq!(app.get("/health").await.body["redis"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_values_cannot_reach_outside_their_key() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    redis.cli(&["SET", "unrelated", "kept"]);
    app.business(json!({"name": "A", "city": "x\r\nFLUSHALL"}))
        .await;
    for city in [
        "x%0D%0AFLUSHALL",
        "*",
        "letip:v1:%7Blist%7D:%23gen",
        "a%26industry%3DDental",
        "%E2%9C%93",
    ] {
        let path = format!("/api/businesses?city={city}");
        let first = app.get(&path).await;
        assert_eq!(first.status, 200, "{city}");
        assert_eq!(cache_of(&app.get(&path).await), "HIT", "{city}");
    }
    assert_eq!(redis.cli(&["GET", "unrelated"]), "kept");
    // The CRLF value found its business, and the key stayed inside the namespace.
    let res = app.get("/api/businesses?city=x%0D%0AFLUSHALL").await;
    assert_eq!(res.body["meta"]["total"], 1);
    let keys = redis.cli(&["KEYS", "*"]);
    for key in keys.lines().filter(|k| *k != "unrelated") {
        assert!(key.starts_with("letip:v1:{"), "{key}");
        assert!(
            !key.contains('\r') && !key.contains('\n') && !key.contains('*'),
            "{key:?}"
        );
    }
    // Distinct values never share an entry: each answered its own total.
    let star = app.get("/api/businesses?city=*").await;
    assert_eq!(star.body["meta"]["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_invalidates_only_the_lists_that_can_show_its_business() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    let freehold = app
        .business(json!({"name": "F", "city": "Freehold", "industry": "Dental"}))
        .await;
    app.business(json!({"name": "W", "city": "Wall", "industry": "Legal"}))
        .await;
    let lists = [
        "/api/businesses",
        "/api/businesses?city=Freehold",
        "/api/businesses?industry=Dental&enrichment_status=pending",
        "/api/businesses?city=Wall",
        "/api/businesses?industry=Legal",
        "/api/businesses?enrichment_status=enriched",
    ];
    let warm = async || {
        for p in lists {
            app.get(p).await;
            assert_eq!(cache_of(&app.get(p).await), "HIT", "{p}");
        }
    };
    let states = async || {
        let mut out = Vec::new();
        for p in lists {
            out.push(cache_of(&app.get(p).await).to_owned());
        }
        out
    };

    // A change that keeps its filters: no page is rebuilt, only its row, once: the
    // first page that lists it reads the row again, the others find it stored.
    warm().await;
    let path = format!("/api/businesses/{}", id(&freehold));
    app.patch(&path, json!({"phone": "732-555-0100"})).await;
    assert_eq!(states().await, ["MISS", "HIT", "HIT", "HIT", "HIT", "HIT"]);
    assert_eq!(
        app.get("/api/businesses?city=Freehold").await.body["data"][0]["phone"],
        "732-555-0100"
    );

    // A move to another city may change any list.
    warm().await;
    app.patch(&path, json!({"city": "Wall"})).await;
    assert_eq!(states().await, ["MISS"; 6]);
    assert_eq!(
        app.get("/api/businesses?city=Wall").await.body["meta"]["total"],
        2
    );
    assert_eq!(
        app.get("/api/businesses?city=Freehold").await.body["meta"]["total"],
        0
    );

    // An enrichment reaches the lists of its new status (and of its old one).
    warm().await;
    app.post(
        &format!("/api/enrich/{}", id(&freehold)),
        json!({"status": "enriched"}),
    )
    .await;
    let after = states().await;
    assert_eq!(after[5], "MISS", "enriched lists");
    assert_eq!(after[4], "HIT", "Legal lists cannot show a Dental business");
    assert_eq!(
        app.get("/api/businesses?enrichment_status=enriched")
            .await
            .body["meta"]["total"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_burst_still_shares_database_reads() {
    let port = letip_testkit::free_port();
    let (app, probe) = spawn_probed(&format!("redis://127.0.0.1:{port}")).await;
    app.db
        .execute("INSERT INTO business (name, updated_at) SELECT 'B' || i, now() FROM generate_series(1, 30) i")
        .await;
    let before = Probe::count(&probe.stats_reads);
    let burst = (0..100).map(|_| app.get("/api/businesses/stats"));
    let answers = futures_util::future::join_all(burst).await;
    assert!(
        answers
            .iter()
            .all(|r| r.status == 200 && cache_of(r) == "BYPASS")
    );
    let reads = Probe::count(&probe.stats_reads) - before;
    // Without sharing, every request would read: 100. Requests that arrive after a
    // shared read finished start another one.
    assert!(
        reads < 20,
        "{reads} database reads for 100 concurrent requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_caches_through_rediss_with_a_password_and_a_private_ca() {
    let ca = letip_testkit::TestCa::new();
    let redis = RedisServer::start_tls(&ca, &["--requirepass", "s3cret"]);
    let app = TestApp::spawn_with(|c| {
        c.cache_backend = letip_server::CacheBackend::Redis;
        c.redis_url = format!("rediss://:s3cret@127.0.0.1:{}", redis.port());
        c.redis_tls_ca_file = Some(ca.ca_cert.clone());
        // This test is about TLS, not latency: a handshake on a loaded machine may take
        // longer than the 50 ms a read normally gets.
        c.cache_timeout_ms = 2000;
    })
    .await;
    eventually("the server reaches Redis over TLS", async || {
        app.get("/health").await.body["redis"] == "up"
    })
    .await;
    app.business(json!({"name": "Over TLS"})).await;
    let first = app.get("/api/businesses/stats").await;
    let second = app.get("/api/businesses/stats").await;
    assert_eq!((cache_of(&first), cache_of(&second)), ("MISS", "HIT"));
    assert_eq!(second.body["totalBusinesses"], 1);
    let ca_file = ca.ca_cert.to_string_lossy().into_owned();
    let keys = redis.cli(&[
        "--tls",
        "--cacert",
        &ca_file,
        "-a",
        "s3cret",
        "--no-auth-warning",
        "DBSIZE",
    ]);
    assert!(
        keys.parse::<u64>().is_ok_and(|n| n > 0),
        "entries are in that Redis: {keys}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_past_the_cached_depth_are_read_from_postgres() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|c| {
        c.cache_backend = letip_server::CacheBackend::Redis;
        c.redis_url = redis.url();
        c.cache_list_max_page = 2;
    })
    .await;
    insert_behind(
        &app,
        "INSERT INTO business (name, updated_at) SELECT 'B' || i, now() FROM generate_series(1, 5) i",
        5,
    )
    .await;
    let shallow = [
        app.get("/api/businesses?limit=1&page=2").await,
        app.get("/api/businesses?limit=1&page=2").await,
    ];
    let deep = [
        app.get("/api/businesses?limit=1&page=3").await,
        app.get("/api/businesses?limit=1&page=3").await,
    ];
    assert_eq!(
        shallow.iter().map(cache_of).collect::<Vec<_>>(),
        ["MISS", "HIT"]
    );
    assert_eq!(
        deep.iter().map(cache_of).collect::<Vec<_>>(),
        ["BYPASS", "BYPASS"]
    );
    assert_eq!(deep[1].body["data"][0]["name"], "B3");
    assert_eq!(deep[1].body["meta"]["total"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_one_filter_share_one_count_until_a_write_can_change_it() {
    let redis = RedisServer::start();
    let (app, probe) = spawn_probed(&redis.url()).await;
    insert_behind(
        &app,
        "INSERT INTO business (name, city, created_at, updated_at) \
         SELECT 'F' || i, 'Freehold', '2026-11-01T00:00:00'::timestamp + (i / 3) * interval '1 minute', now() \
         FROM generate_series(1, 23) i",
        23,
    )
    .await;
    insert_behind(
        &app,
        "INSERT INTO business (name, city, updated_at) VALUES ('M', 'Marlboro', now())",
        1,
    )
    .await;
    let (counts, lists) = (
        Probe::count(&probe.count_reads),
        Probe::count(&probe.list_reads),
    );
    // The list as the database orders it (newest first, ties by id), in one page.
    let all = app.get("/api/businesses?city=Freehold&limit=100").await;
    let expected: Vec<i64> = all.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(id)
        .collect();
    assert_eq!(expected.len(), 23);

    let mut walked = Vec::new();
    for page in 1..=6 {
        let res = app
            .get(&format!(
                "/api/businesses?city=Freehold&limit=4&page={page}"
            ))
            .await;
        assert_eq!((res.status, cache_of(&res)), (200, "MISS"), "page {page}");
        assert_eq!(
            res.body["meta"],
            json!({"total": 23, "page": page, "limit": 4, "totalPages": 6})
        );
        walked.extend(res.body["data"].as_array().expect("data").iter().map(id));
    }
    assert_eq!(
        walked, expected,
        "pages given the total show the same rows in order"
    );
    assert_eq!(
        Probe::count(&probe.count_reads) - counts,
        1,
        "seven pages of one filter, in two page sizes, one count"
    );
    assert_eq!(Probe::count(&probe.list_reads) - lists, 7);

    // New values in listed rows leave the total as it was: the pages that show the row
    // are read again, the total is not counted again.
    let counts = Probe::count(&probe.count_reads);
    app.patch(
        &format!("/api/businesses/{}", expected[0]),
        json!({"phone": "1"}),
    )
    .await;
    app.post(
        &format!("/api/businesses/{}/contacts", expected[1]),
        json!({"name": "Pat"}),
    )
    .await;
    let page1 = app.get("/api/businesses?city=Freehold&limit=4").await;
    assert_eq!(cache_of(&page1), "MISS");
    assert_eq!(page1.body["data"][0]["phone"], "1");
    assert_eq!(page1.body["data"][1]["contacts"][0]["name"], "Pat");
    assert_eq!(page1.body["meta"]["total"], 23);
    let page7 = app
        .get("/api/businesses?city=Freehold&limit=4&page=7")
        .await;
    assert_eq!(page7.body["meta"]["total"], 23);
    assert_eq!(page7.body["data"], json!([]), "past the end");
    assert_eq!(Probe::count(&probe.count_reads) - counts, 0);

    // A business that moves to another city, a create and deletes change the totals of
    // the lists they enter or leave.
    let moved = app
        .patch(
            &format!("/api/businesses/{}", expected[2]),
            json!({"city": "Marlboro"}),
        )
        .await;
    assert_eq!(moved.status, 200);
    let total = async |query: &str| {
        app.get(&format!("/api/businesses?{query}&page=3"))
            .await
            .body["meta"]["total"]
            .clone()
    };
    assert_eq!(total("city=Freehold").await, 22);
    assert_eq!(total("city=Marlboro").await, 2);
    assert_eq!(total("limit=5").await, 24);
    app.business(json!({"name": "New", "city": "Freehold"}))
        .await;
    assert_eq!(total("city=Freehold&limit=4").await, 23);
    assert_eq!(total("limit=5").await, 25);
    app.delete(&format!("/api/businesses/{}", expected[5]))
        .await;
    app.delete(&format!("/api/businesses/{}", expected[6]))
        .await;
    let res = app
        .get("/api/businesses?city=Freehold&limit=4&page=6")
        .await;
    assert_eq!(
        res.body["meta"],
        json!({"total": 21, "page": 6, "limit": 4, "totalPages": 6})
    );
    assert_eq!(res.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(total("city=Marlboro").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_past_the_cached_depth_reuse_the_cached_total() {
    let redis = RedisServer::start();
    let (app, probe) = spawn_probed_with(&redis.url(), |c| c.cache_list_max_page = 1).await;
    insert_behind(
        &app,
        "INSERT INTO business (name, updated_at) SELECT 'B' || i, now() FROM generate_series(1, 10) i",
        10,
    )
    .await;
    let counts = Probe::count(&probe.count_reads);
    for page in 2..=10 {
        let res = app
            .get(&format!("/api/businesses?limit=1&page={page}"))
            .await;
        assert_eq!(cache_of(&res), "BYPASS", "page {page} is never stored");
        assert_eq!(res.body["meta"]["total"], 10);
        assert_eq!(res.body["data"][0]["name"], format!("B{}", 11 - page));
    }
    assert_eq!(
        Probe::count(&probe.count_reads) - counts,
        1,
        "nine deep pages, one count"
    );
    let keys = redis.cli(&["--scan", "--pattern", "*list_total*"]);
    assert_eq!(keys.lines().count(), 1, "one stored total: {keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_listed_row_reloads_that_row_alone_for_every_page() {
    let redis = RedisServer::start();
    let (app, probe) = spawn_probed(&redis.url()).await;
    let plain = app.spawn_beside(|_| {}).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let b = app
            .business(json!({"name": format!("F{i}"), "city": "Freehold"}))
            .await;
        ids.push(id(&b));
    }
    app.business(json!({"name": "W", "city": "Wall"})).await;
    let lists = [
        "/api/businesses",
        "/api/businesses?city=Freehold",
        "/api/businesses?city=Freehold&limit=2",
    ];
    for p in lists {
        app.get(p).await;
        assert_eq!(cache_of(&app.get(p).await), "HIT", "{p}");
    }
    let reads = || {
        (
            Probe::count(&probe.list_reads),
            Probe::count(&probe.count_reads),
            Probe::count(&probe.row_reads),
        )
    };
    // Every page answers exactly what a server without a cache answers.
    let same_as_database = async || {
        for p in lists {
            assert_eq!(app.get(p).await.text, plain.get(p).await.text, "{p}");
        }
    };
    same_as_database().await;

    // A phone changes: the pages stay, the row is read again, once, for all of them.
    let (pages, counts, rows) = reads();
    let edited = ids[2];
    app.patch(
        &format!("/api/businesses/{edited}"),
        json!({"phone": "732-555-0100"}),
    )
    .await;
    for p in lists {
        let res = app.get(p).await;
        let row = res.body["data"]
            .as_array()
            .and_then(|d| d.iter().find(|r| r["id"] == edited).cloned())
            .expect("listed");
        assert_eq!(row["phone"], "732-555-0100", "{p}");
    }
    assert_eq!(
        reads(),
        (pages, counts, rows + 1),
        "one row read, no page read"
    );
    for p in lists {
        assert_eq!(cache_of(&app.get(p).await), "HIT", "{p}");
    }
    same_as_database().await;

    // A contact: the same.
    let (pages, counts, rows) = reads();
    app.post(
        &format!("/api/businesses/{}/contacts", ids[1]),
        json!({"name": "Ann"}),
    )
    .await;
    let page = app.get("/api/businesses?city=Freehold").await;
    assert_eq!(page.body["data"][1]["contacts"][0]["name"], "Ann");
    assert_eq!(reads(), (pages, counts, rows + 1));
    same_as_database().await;

    // A damaged row: a page whose rows did not change is confirmed without their
    // values (from the rows this instance read last), so it is served right and reads
    // nothing; once another row of the page changes the values are read, and the
    // damaged one is removed, read again and stored whole.
    let key = format!("letip:v1:{{list}}:row:id={}", ids[0]);
    let stored = redis.cli(&["GET", &key]);
    let header = stored.split('\n').next().expect("a header").to_owned();
    let damaged = format!("{header}\n0badc0de{{}}");
    redis.cli(&["SET", &key, &damaged, "PX", "600000"]);
    let (pages, counts, rows) = reads();
    same_as_database().await;
    assert_eq!(reads(), (pages, counts, rows));
    app.patch(
        &format!("/api/businesses/{}", ids[1]),
        json!({"phone": "732-555-0101"}),
    )
    .await;
    same_as_database().await;
    let (_, _, after) = reads();
    assert!(after > rows, "the changed row and the damaged one are read");
    let repaired = redis.cli(&["GET", &key]);
    assert!(!repaired.is_empty() && repaired != damaged, "{repaired}");

    // A move to another city changes which businesses the pages list: they are read again.
    app.patch(
        &format!("/api/businesses/{edited}"),
        json!({"city": "Wall"}),
    )
    .await;
    let (pages, _, _) = reads();
    same_as_database().await;
    assert!(Probe::count(&probe.list_reads) > pages, "pages read again");
    assert_eq!(
        app.get("/api/businesses?city=Freehold").await.body["meta"]["total"],
        2
    );
}
