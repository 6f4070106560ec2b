//! Adversarial load: 100,000 distinct filter combinations, pages and page sizes against
//! a Redis capped by `maxmemory`. Nothing fails, Redis stays under its cap with a TTL on
//! every key, the server's memory stays bounded, and no request reaches the database
//! unbounded (page sizes above 100 are refused). `ADVERSARIAL_REQUESTS` changes the count.

use futures_util::StreamExt;
use letip_server::CacheBackend;
use letip_testkit::RedisServer;
use letip_tests::TestApp;

const MAXMEMORY: u64 = 8 * 1024 * 1024;

fn info_field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory of this process (the server runs in it), in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn path(i: u64) -> String {
    match i % 5 {
        // A city no business has: a new filter combination each time.
        0 => format!("/api/businesses?city=c{i}"),
        1 => format!(
            "/api/businesses?industry=x{i}&enrichment_status=pending&page={}",
            1 + i % 60
        ),
        // Real pages of every size, deep ones included (past the cached depth).
        2 => format!("/api/businesses?page={}&limit={}", 1 + i % 400, 1 + i % 100),
        3 => format!(
            "/api/businesses?city=Freehold&limit={}&page={}",
            1 + i % 100,
            1 + i % 3
        ),
        _ => format!("/api/businesses/{}", 1 + i % 400),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_requests_leaves_redis_and_the_server_bounded() {
    let requests: u64 = std::env::var("ADVERSARIAL_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let redis = RedisServer::start_with(&[
        "--maxmemory",
        &MAXMEMORY.to_string(),
        "--maxmemory-policy",
        "volatile-lru",
    ]);
    let app = TestApp::spawn_with(|c| {
        c.cache_backend = CacheBackend::Redis;
        c.redis_url = redis.url();
    })
    .await;
    app.db
        .execute(
            "INSERT INTO business (name, city, industry, updated_at) SELECT 'Business ' || i, \
             (ARRAY['Freehold', 'Howell', 'Marlboro'])[1 + i % 3], 'Dental', now() \
             FROM generate_series(1, 300) i",
        )
        .await;
    let rss_before = rss();

    let answers = futures_util::stream::iter(0..requests)
        .map(|i| {
            let app = &app;
            async move { (i, app.get(&path(i)).await.status) }
        })
        .buffer_unordered(32);
    let mut answers = std::pin::pin!(answers);
    let (mut ok, mut missing, mut other) = (0u64, 0u64, Vec::new());
    while let Some((i, status)) = answers.next().await {
        match status {
            200 => ok += 1,
            // Details of ids past the 300 businesses.
            404 if i % 5 == 4 => missing += 1,
            s => other.push((path(i), s)),
        }
    }
    let rss_after = rss();
    let info = redis.cli(&["INFO", "all"]);
    let used = info_field(&info, "used_memory");
    let evicted = info_field(&info, "evicted_keys");
    let keys: u64 = redis.cli(&["DBSIZE"]).parse().unwrap_or(0);
    let without_ttl = redis.cli(&[
        "EVAL",
        "local n = 0 for _, k in ipairs(redis.call('KEYS', '*')) do \
         if redis.call('PTTL', k) < 0 and k ~= 'letip:v1:{#near}:identity' then n = n + 1 end \
         end return n",
        "0",
    ]);
    println!(
        "{requests} distinct requests: {ok} answered 200, {missing} 404; Redis used_memory \
         {:.1} MiB (maxmemory {:.0} MiB), {keys} keys, {evicted} evicted, {without_ttl} \
         without a TTL; test process RSS {:.0} -> {:.0} MiB",
        used as f64 / 1048576.0,
        MAXMEMORY as f64 / 1048576.0,
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
    );
    assert!(
        other.is_empty(),
        "unexpected answers: {:?}",
        &other[..other.len().min(5)]
    );
    // The one exception: the record of which Redis history the cache trusts, one small
    // key per namespace that eviction must not take.
    assert_eq!(without_ttl, "0", "every key has a TTL");
    assert!(
        used <= MAXMEMORY + 1024 * 1024,
        "Redis stays under its cap: {used} bytes"
    );
    assert!(
        rss_after < rss_before + 256 * 1024 * 1024,
        "the server's memory stays bounded: {rss_before} -> {rss_after} bytes"
    );
    // The database is never asked for an unbounded page.
    for bad in ["limit=101", "limit=100000", "page=100001", "page=0"] {
        let res = app.get(&format!("/api/businesses?{bad}")).await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
    }
}
