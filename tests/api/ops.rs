use letip_testkit::RedisServer;
use letip_tests::{TestApp, id};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_database_and_a_disabled_cache() {
    let app = TestApp::spawn().await;
    let res = app.get("/health").await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.body,
        json!({"status": "ok", "redis": "disabled", "database": "up"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reads_answer_503_without_detail_when_postgres_is_gone() {
    let app = TestApp::spawn().await;
    app.business(json!({"name": "A"})).await;
    // The database disappears under the running server.
    letip_store::drop_database(&app.db.url)
        .await
        .expect("the database can be dropped");
    let res = app.get("/health").await;
    assert_eq!(res.status, 503);
    assert_eq!(
        res.body,
        json!({"status": "error", "redis": "disabled", "database": "down"})
    );
    let res = app.get("/api/businesses").await;
    assert_eq!(res.error(503), "Database unavailable, try again later");
    assert_eq!(res.header("retry-after"), Some("5"));
    assert!(
        !res.text.contains("letip_test"),
        "no internal detail: {}",
        res.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacheable_reads_say_bypass_when_caching_is_off() {
    let app = TestApp::spawn().await;
    let b = app.business(json!({"name": "A"})).await;
    for path in [
        "/api/businesses".to_owned(),
        "/api/businesses/stats".to_owned(),
        format!("/api/businesses/{}", id(&b)),
    ] {
        let res = app.get(&path).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.header("x-cache"), Some("BYPASS"), "{path}");
        assert!(
            res.header("x-request-id").is_some_and(|v| v.len() >= 32),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_answer_the_nestjs_404() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/nothing-here").await;
    assert_eq!(res.error(404), "Cannot GET /api/nothing-here");
    let res = app.send(app.client.put(app.url("/api/businesses"))).await;
    assert_eq!(res.error(404), "Cannot PUT /api/businesses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_http_latency_and_database_queries() {
    let app = TestApp::spawn_with(|c| c.cache_backend = letip_server::CacheBackend::Memory).await;
    app.business(json!({"name": "A"})).await;
    assert_eq!(
        app.get("/api/businesses").await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        app.get("/api/businesses").await.header("x-cache"),
        Some("HIT")
    );
    let res = app.get("/metrics").await;
    assert_eq!(res.status, 200);
    // Answers are counted by their X-Cache, so a whole-page hit rate can be read off.
    for cache in ["MISS", "HIT"] {
        let series = format!(
            r#"letip_http_request_duration_seconds_count{{method="GET",route="/api/businesses",status="200",cache="{cache}"}}"#
        );
        assert!(res.text.contains(&series), "{series} in {}", res.text);
    }
    assert!(
        res.text
            .contains(r#"letip_db_queries_total{op="page_ids"}"#),
        "{}",
        res.text
    );
    assert!(
        res.text
            .contains(r#"letip_db_queries_total{op="create_business"}"#)
    );
}

/// The value of the one sample named `series` in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Lookups are counted, and latencies batched, per thread: each scrape must add what
/// every thread holds, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scrape_counts_each_hit_and_latency_exactly_once() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    let b = app.business(json!({"name": "Counted"})).await;
    let path = format!("/api/businesses/{}", id(&b));
    let hits = r#"cache_requests_total{family="detail",result="hit"}"#;
    let latencies = r#"letip_http_request_duration_seconds_count{method="GET",route="/api/businesses/{id}",status="200",cache="HIT"}"#;
    assert_eq!(app.get(&path).await.header("x-cache"), Some("MISS"));
    let mut answered = 0;
    for round in [4, 3] {
        for _ in 0..round {
            assert_eq!(app.get(&path).await.header("x-cache"), Some("HIT"));
        }
        answered += round;
        let page = app.get("/metrics").await.text;
        assert_eq!(sample(&page, hits), Some(f64::from(answered)), "{page}");
        assert_eq!(
            sample(&page, latencies),
            Some(f64::from(answered)),
            "{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_the_docs_page_serves_it() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/openapi.json").await;
    assert_eq!(res.status, 200);
    assert!(
        res.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3'))
    );
    let paths = &res.body["paths"];
    for (path, method) in [
        ("/api/businesses", "get"),
        ("/api/businesses", "post"),
        ("/api/businesses/stats", "get"),
        ("/api/businesses/{id}", "get"),
        ("/api/businesses/{id}", "patch"),
        ("/api/businesses/{id}", "delete"),
        ("/api/enrich/{id}", "post"),
        ("/api/businesses/{id}/contacts", "post"),
        ("/api/contacts/{id}", "delete"),
        ("/api/businesses/{id}/messages", "post"),
        ("/api/messages/{id}", "patch"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/ws", "get"),
        ("/socket.io/", "get"),
        ("/socket.io/", "post"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    let schemas = &res.body["components"]["schemas"];
    assert!(schemas["Business"]["properties"]["enrichment_status"].is_object());
    assert!(schemas["Stats"]["properties"]["messagesPending"].is_object());

    let page = app.get("/api/docs/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("swagger"), "{}", page.text);
    let redirect = app
        .send(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client")
                .get(app.url("/api/docs")),
        )
        .await;
    assert_eq!(redirect.status, 308);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_every_kind_of_record_in_one_answer() {
    let app = TestApp::spawn().await;
    let stats = app.stats().await;
    assert_eq!(
        stats,
        json!({"totalBusinesses": 0, "enrichedBusinesses": 0, "pendingEnrichment": 0,
               "totalContacts": 0, "messagesSent": 0, "messagesPending": 0})
    );
    let a = app.business(json!({"name": "A"})).await;
    let b = app.business(json!({"name": "B"})).await;
    app.business(json!({"name": "C"})).await;
    app.post(
        &format!("/api/enrich/{}", id(&a)),
        json!({"status": "enriched", "contacts": [{}, {}]}),
    )
    .await;
    app.post(
        &format!("/api/enrich/{}", id(&b)),
        json!({"status": "failed"}),
    )
    .await;
    let m1 = app
        .post(
            &format!("/api/businesses/{}/messages", id(&a)),
            json!({"message_text": "1"}),
        )
        .await;
    app.post(
        &format!("/api/businesses/{}/messages", id(&a)),
        json!({"message_text": "2"}),
    )
    .await;
    let m3 = app
        .post(
            &format!("/api/businesses/{}/messages", id(&b)),
            json!({"message_text": "3"}),
        )
        .await;
    app.patch(
        &format!("/api/messages/{}", id(&m1.body)),
        json!({"status": "sent"}),
    )
    .await;
    app.patch(
        &format!("/api/messages/{}", id(&m3.body)),
        json!({"status": "failed"}),
    )
    .await;
    assert_eq!(
        app.stats().await,
        json!({"totalBusinesses": 3, "enrichedBusinesses": 1, "pendingEnrichment": 1,
               "totalContacts": 2, "messagesSent": 1, "messagesPending": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_the_server_finish() {
    let app = TestApp::spawn().await;
    app.business(json!({"name": "A"})).await;
    let addr = app.addr;
    app.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

/// Sends a GET of `/health` on `conn` and answers the status line, or `None` when the
/// connection was closed before an answer.
async fn health_on(conn: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if conn
        .write_all(b"GET /health HTTP/1.1\r\nHost: letip\r\n\r\n")
        .await
        .is_err()
    {
        return None;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The body is small: the head and the body arrive together or soon after.
    while !answer.ends_with(b"}") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_outlives_a_client_pool_s_idle_timeout() {
    let app = TestApp::spawn_with(|c| c.http_keep_alive_secs = 8).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("the server accepts");
    assert_eq!(
        health_on(&mut conn).await.as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    // Idle for longer than actix-web's default of 5 s, less than the configured 8 s:
    // the same connection still answers.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(
        health_on(&mut conn).await.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the server closed an idle connection before HTTP_KEEP_ALIVE_SECS"
    );
    // Past it, the server closes the connection itself.
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    assert_eq!(health_on(&mut conn).await, None);
}
