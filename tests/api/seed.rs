use letip_server::{Config, SeedArgs};
use letip_tests::TestDb;

fn config(db: &TestDb) -> Config {
    let mut c = Config::from_env();
    c.database_url = db.url.clone();
    c
}

async fn names(db: &TestDb) -> Vec<String> {
    let mut c = config(db);
    c.port = 0;
    c.cache_backend = letip_server::CacheBackend::None;
    let running = letip_server::start(&c).await.expect("server starts");
    let body: serde_json::Value =
        reqwest::get(format!("http://{}/api/businesses?limit=100", running.addr))
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
    running.stop().await.expect("stops");
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|b| b["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_is_deterministic_and_respects_if_empty() {
    let (a, b) = (TestDb::new(), TestDb::new());
    let args = SeedArgs {
        businesses: 300,
        seed: 7,
        if_empty: false,
    };
    let report = letip_server::seed(&config(&a), &args, &|_| {})
        .await
        .expect("seeds")
        .expect("writes");
    assert_eq!(report.businesses, 300);
    assert!(report.contacts > 400 && report.messages > 600, "{report:?}");
    letip_server::seed(&config(&b), &args, &|_| {})
        .await
        .expect("seeds");
    let names_a = names(&a).await;
    assert_eq!(names_a.len(), 100);
    assert_eq!(names_a, names(&b).await);

    let again = SeedArgs {
        if_empty: true,
        ..args
    };
    assert!(
        letip_server::seed(&config(&a), &again, &|_| {})
            .await
            .expect("runs")
            .is_none()
    );
}

/// The seed's first business has 5,000 contacts: its detail (over a megabyte) and the
/// list page that shows it are cached and answered whole, on the default cache and on
/// Redis alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_business_with_thousands_of_contacts_is_cached_and_answered_whole() {
    let db = std::sync::Arc::new(TestDb::new());
    let args = SeedArgs {
        businesses: 30,
        seed: 42,
        if_empty: false,
    };
    letip_server::seed(&config(&db), &args, &|_| {})
        .await
        .expect("seeds")
        .expect("writes");
    let redis = letip_testkit::RedisServer::start();
    for backend in [
        letip_server::CacheBackend::Tiered,
        letip_server::CacheBackend::Redis,
    ] {
        let app = letip_tests::TestApp::spawn_on_db(db.clone(), |c| {
            c.cache_backend = backend;
            c.redis_url = redis.url();
            c.cache_namespace = format!("large-{backend:?}:v1");
        })
        .await;
        let page = app.get("/api/businesses?limit=50").await;
        let largest = page.body["data"]
            .as_array()
            .expect("rows")
            .iter()
            .max_by_key(|r| r["contacts"].as_array().map_or(0, Vec::len))
            .expect("a row")
            .clone();
        assert_eq!(largest["contacts"].as_array().map(Vec::len), Some(5_000));
        let path = format!("/api/businesses/{}", letip_tests::id(&largest));
        let first = app.get(&path).await;
        assert_eq!(first.status, 200);
        assert!(first.text.len() > 1_000_000, "{} bytes", first.text.len());
        assert_eq!(first.body["contacts"].as_array().map(Vec::len), Some(5_000));
        let second = app.get(&path).await;
        assert_eq!(second.header("x-cache"), Some("HIT"), "{backend:?}");
        assert_eq!(second.text, first.text, "{backend:?}: answered whole");
        let again = app.get("/api/businesses?limit=50").await;
        assert_eq!(again.header("x-cache"), Some("HIT"), "{backend:?}");
        assert_eq!(again.text, page.text);
        app.stop().await;
    }
}
