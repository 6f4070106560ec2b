use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use letip_tests::{TestApp, id};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr))
        .await
        .expect("the websocket upgrade succeeds");
    ws
}

/// The next JSON text frame whose event is `name`.
async fn next_event(ws: &mut Ws, name: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let msg = ws
                .next()
                .await
                .expect("the socket stays open")
                .expect("a frame");
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(&text).expect("frames are JSON");
                if v["event"] == name {
                    return v;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong() {
    let app = TestApp::spawn().await;
    let mut ws = connect(&app).await;
    ws.send(Message::text(r#"{"event": "ping"}"#))
        .await
        .expect("sent");
    assert_eq!(next_event(&mut ws, "pong").await, json!({"event": "pong"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_business_mutation_is_announced_with_fresh_stats() {
    let app = TestApp::spawn().await;
    let mut ws = connect(&app).await;

    let b = app.business(json!({"name": "Live"})).await;
    let created = next_event(&mut ws, "business:created").await;
    assert_eq!(created["data"], b);
    let stats = next_event(&mut ws, "stats:updated").await;
    assert_eq!(stats["data"]["totalBusinesses"], 1);

    let updated = app
        .patch(
            &format!("/api/businesses/{}", id(&b)),
            json!({"city": "Wall"}),
        )
        .await;
    assert_eq!(
        next_event(&mut ws, "business:updated").await["data"],
        updated.body
    );

    app.post(
        &format!("/api/enrich/{}", id(&b)),
        json!({"status": "enriched"}),
    )
    .await;
    let enriched = next_event(&mut ws, "business:enriched").await;
    assert_eq!(enriched["data"]["enrichment_status"], "enriched");
    assert!(
        enriched["data"].get("contacts").is_none(),
        "the payload is the business"
    );

    app.delete(&format!("/api/businesses/{}", id(&b))).await;
    assert_eq!(
        next_event(&mut ws, "business:deleted").await["data"],
        json!({"id": id(&b)})
    );
    let stats = next_event(&mut ws, "stats:updated").await;
    assert_eq!(stats["data"]["totalBusinesses"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_sends_few_stats_recomputations() {
    let app = TestApp::spawn().await;
    let mut ws = connect(&app).await;
    let writes = 40;
    let posts = (0..writes).map(|i| app.post("/api/businesses", json!({"name": format!("B{i}")})));
    for res in futures_util::future::join_all(posts).await {
        assert_eq!(res.status, 201);
    }
    // Collect every stats frame until the final count arrives.
    let mut frames = 0;
    loop {
        let s = next_event(&mut ws, "stats:updated").await;
        frames += 1;
        if s["data"]["totalBusinesses"] == writes {
            break;
        }
    }
    assert!(
        frames < writes / 2,
        "{frames} stats frames for {writes} writes"
    );
}

/// An event is published once the cache no longer holds what the write changed: a client
/// that reads on the event, before the write's own answer, already sees the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_made_on_an_event_sees_the_write() {
    let redis = letip_testkit::RedisServer::start();
    let app = TestApp::spawn_redis(&redis.url()).await;
    let mut ws = connect(&app).await;
    let b = app.business(json!({"name": "Before"})).await;
    let path = format!("/api/businesses/{}", id(&b));
    for round in 0..20 {
        // Cached under its current generation.
        app.get(&path).await;
        assert_eq!(app.get(&path).await.header("x-cache"), Some("HIT"));
        let name = format!("After {round}");
        let patch = app
            .client
            .patch(app.url(&path))
            .json(&json!({"name": name}));
        let write = tokio::spawn(patch.send());
        next_event(&mut ws, "business:updated").await;
        let read = app.get(&path).await;
        assert_eq!(read.body["name"], name.as_str(), "round {round}");
        write
            .await
            .expect("the write ran")
            .expect("the write answered");
    }
}
