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
