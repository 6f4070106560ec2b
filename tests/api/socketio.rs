//! Socket.IO at `/socket.io/` with the dashboard's own client: socket.io-client 4 on
//! Node.js (`tests/node`, installed by `scripts/test-deps.sh`), headless Chromium for
//! CORS, and raw Engine.IO requests for what no well-behaved client sends.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use letip_server::CacheBackend;
use letip_testkit::RedisServer;
use letip_tests::{Res, TestApp, id};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/node");
/// Longest wait for anything a client should see.
const WAIT: Duration = Duration::from_secs(20);

/// A Node.js script of `tests/node`, printing JSON lines.
struct Node {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// Lines read while looking for another kind, in order.
    backlog: std::collections::VecDeque<Value>,
}

impl Node {
    fn start(script: &str, options: &Value) -> Self {
        assert!(
            Path::new(NODE_DIR)
                .join("node_modules/socket.io-client")
                .exists(),
            "socket.io-client is not installed: run `bash scripts/test-deps.sh`"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(Path::new(NODE_DIR).join(script))
            .arg(options.to_string())
            .current_dir(NODE_DIR)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().expect("a stdin pipe");
        let stdout = child.stdout.take().expect("a stdout pipe");
        Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            backlog: std::collections::VecDeque::new(),
        }
    }

    /// A client of `app` with these transports (the client's default without).
    async fn client(app: &TestApp, transports: Option<&[&str]>) -> (Self, Value) {
        let mut options = json!({"url": app.url("")});
        if let Some(t) = transports {
            options["transports"] = json!(t);
        }
        let mut node = Self::start("client.mjs", &options);
        let connect = node.next("connect").await;
        (node, connect)
    }

    /// The next line the script prints.
    async fn line(&mut self, wait: Duration) -> Value {
        let line = tokio::time::timeout(wait, self.lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing printed within {wait:?}; before: {:?}",
                    self.backlog
                )
            })
            .expect("the script's stdout is readable")
            .unwrap_or_else(|| panic!("the script ended; it printed {:?}", self.backlog));
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// The first line, read or yet to come, that `matches`; others wait in the backlog.
    async fn find(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&matches) {
            return self.backlog.remove(i).expect("the position exists");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            assert!(
                !wait.is_zero(),
                "no {what} within {WAIT:?}: {:?}",
                self.backlog
            );
            let line = self.line(wait).await;
            if matches(&line) {
                return line;
            }
            self.backlog.push_back(line);
        }
    }

    /// The first line of type `kind`.
    async fn next(&mut self, kind: &str) -> Value {
        self.find(kind, |l| l["type"] == kind).await
    }

    /// The data of the first event `name`.
    async fn event(&mut self, name: &str) -> Value {
        self.find(name, |l| l["type"] == "event" && l["name"] == name)
            .await["data"]
            .clone()
    }

    async fn send(&mut self, command: Value) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("the script reads commands");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the script is running");
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

fn sio_url(app: &TestApp, query: &str) -> String {
    app.url(&format!("/socket.io/?EIO=4&{query}"))
}

/// Asserts Engine.IO's error answer.
fn engine_error(res: &Res, status: u16, code: u8) {
    assert_eq!(res.status, status, "{}", res.text);
    assert_eq!(res.body["code"], code, "{}", res.text);
    assert!(res.body["message"].is_string(), "{}", res.text);
}

/// Opens a long-polling session by hand; answers its sid.
async fn handshake(app: &TestApp) -> String {
    let res = app
        .send(app.client.get(sio_url(app, "transport=polling")))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let open: Value = serde_json::from_str(res.text.strip_prefix('0').expect("an open packet"))
        .expect("handshake JSON");
    open["sid"].as_str().expect("a sid").to_owned()
}

async fn poll(app: &TestApp, sid: &str) -> Res {
    app.send(
        app.client
            .get(sio_url(app, &format!("transport=polling&sid={sid}"))),
    )
    .await
}

async fn post(app: &TestApp, sid: &str, body: impl Into<reqwest::Body>) -> Res {
    app.send(
        app.client
            .post(sio_url(app, &format!("transport=polling&sid={sid}")))
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body),
    )
    .await
}

/// Whether the server still has session `sid` (a request it refuses either way).
async fn session_exists(app: &TestApp, sid: &str) -> bool {
    let res = app
        .send(
            app.client
                .put(sio_url(app, &format!("transport=polling&sid={sid}"))),
        )
        .await;
    match res.body["code"].as_u64() {
        Some(3) => true,
        Some(1) => false,
        _ => panic!("unexpected answer to a probe: {} {}", res.status, res.text),
    }
}

/// Every event of a business's life reaches the client, as `/ws` sends them.
async fn lifecycle(app: &TestApp, node: &mut Node) {
    let b = app
        .business(json!({"name": "Live", "city": "Freehold"}))
        .await;
    assert_eq!(node.event("business:created").await, b);
    let stats = node.event("stats:updated").await;
    assert_eq!(stats["totalBusinesses"], 1);
    let path = format!("/api/businesses/{}", id(&b));
    let updated = app.patch(&path, json!({"city": "Wall"})).await;
    assert_eq!(node.event("business:updated").await, updated.body);
    app.post(
        &format!("/api/enrich/{}", id(&b)),
        json!({"status": "enriched"}),
    )
    .await;
    assert_eq!(
        node.event("business:enriched").await["enrichment_status"],
        "enriched"
    );
    app.delete(&path).await;
    assert_eq!(node.event("business:deleted").await, json!({"id": id(&b)}));
    loop {
        if node.event("stats:updated").await["totalBusinesses"] == 0 {
            break;
        }
    }
}

async fn pong(node: &mut Node) {
    node.send(json!({"emit": "ping", "ack": true})).await;
    assert_eq!(node.next("ack").await["value"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_only_client_gets_every_event_and_its_pong() {
    let app = TestApp::spawn().await;
    let (mut node, connect) = Node::client(&app, Some(&["websocket"])).await;
    assert_eq!(connect["transport"], "websocket");
    pong(&mut node).await;
    lifecycle(&app, &mut node).await;
    // A WebSocket session is not served on long-polling.
    let sid = connect["sid"].as_str().expect("a sid");
    engine_error(&poll(&app, sid).await, 400, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_only_client_gets_every_event_and_its_pong() {
    let app = TestApp::spawn().await;
    let (mut node, connect) = Node::client(&app, Some(&["polling"])).await;
    assert_eq!(connect["transport"], "polling");
    pong(&mut node).await;
    lifecycle(&app, &mut node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_options_start_on_polling_then_upgrade_to_websocket() {
    let app = TestApp::spawn().await;
    let (mut node, connect) = Node::client(&app, None).await;
    assert_eq!(node.next("open").await["transport"], "polling");
    assert_eq!(node.next("upgrade").await["transport"], "websocket");
    pong(&mut node).await;
    lifecycle(&app, &mut node).await;
    // The session moved to WebSocket: long-polling requests for it are refused.
    let sid = connect["sid"].as_str().expect("a sid");
    engine_error(&poll(&app, sid).await, 400, 3);
    engine_error(&post(&app, sid, "3").await, 400, 3);
    // The dashboard's own options.
    let (mut dashboard, connect) = Node::client(&app, Some(&["websocket", "polling"])).await;
    assert_eq!(connect["transport"], "websocket");
    pong(&mut dashboard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_auth_is_ignored_and_other_namespaces_are_refused() {
    let app = TestApp::spawn().await;
    let mut node = Node::start(
        "client.mjs",
        &json!({"url": app.url(""), "auth": {"token": "anything"}}),
    );
    node.next("connect").await;
    let mut admin = Node::start(
        "client.mjs",
        &json!({"url": app.url(""), "namespace": "/admin", "transports": ["websocket"]}),
    );
    assert_eq!(
        admin.next("connect_error").await["message"],
        "Invalid namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_instance_receives_the_writes_made_on_the_other() {
    let redis = RedisServer::start();
    let configure = |c: &mut letip_server::Config| {
        c.cache_backend = CacheBackend::Redis;
        c.redis_url = redis.url();
    };
    let a = TestApp::spawn_with(configure).await;
    let b = a.spawn_beside(configure).await;
    let (mut node, _) = Node::client(&b, Some(&["websocket", "polling"])).await;
    // B subscribes to the bus in the background: write on A until its events get through.
    let start = Instant::now();
    loop {
        a.business(json!({"name": "probe"})).await;
        let got = tokio::time::timeout(
            Duration::from_millis(500),
            node.find("an event", |l| l["type"] == "event"),
        )
        .await;
        if got.is_ok() {
            break;
        }
        assert!(start.elapsed() < WAIT, "B never relayed A's events");
    }
    let created = a.business(json!({"name": "from A"})).await;
    loop {
        let event = node.event("business:created").await;
        if event["id"] == created["id"] {
            assert_eq!(event, created);
            break;
        }
    }
    loop {
        if node.event("stats:updated").await["totalBusinesses"].as_i64() >= Some(2) {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_get_every_event_while_one_never_reads() {
    let app = TestApp::spawn().await;
    let clients = 500;
    let writes = 20;
    let mut crowd = Node::start(
        "crowd.mjs",
        &json!({"url": app.url(""), "clients": clients, "expect": writes}),
    );
    let ready = crowd.line(Duration::from_secs(60)).await;
    assert_eq!(ready, json!({"type": "ready", "clients": clients}));

    // A client that joins and then never reads a byte, with a receive buffer as small as
    // the kernel allows.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(1024).expect("a small buffer");
    let stream = socket.connect(app.addr).await.expect("connects");
    let (mut stuck, _) = tokio_tungstenite::client_async(
        format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr),
        stream,
    )
    .await
    .expect("upgrades");
    stuck.send(Message::text("40")).await.expect("sent");

    for i in 0..writes {
        app.business(json!({"name": format!("crowd-{i}")})).await;
    }
    let done = crowd.line(Duration::from_secs(60)).await;
    assert_eq!(done["type"], "done", "{done}");
    assert_eq!(done["events"], clients * writes);
    println!(
        "{clients} socket.io clients: event delay from commit p50 {} ms, max {} ms",
        done["p50_ms"], done["max_ms"]
    );
    drop(stuck);
}

/// A client that stops reading falls behind in its own bounded buffer and skips events,
/// while another gets every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_skips_events_and_slows_no_one() {
    let app = TestApp::spawn_with(|c| {
        c.socketio_client_buffer = 16;
        // Long enough that the stuck connection outlives the flood.
        c.socketio_ping_timeout_ms = 120_000;
    })
    .await;
    let (mut fast, _) = Node::client(&app, Some(&["websocket"])).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(1024).expect("a small buffer");
    let stream = socket.connect(app.addr).await.expect("connects");
    let (mut stuck, _) = tokio_tungstenite::client_async(
        format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr),
        stream,
    )
    .await
    .expect("upgrades");
    stuck.send(Message::text("40")).await.expect("sent");

    // About 5 KB per event: 1,500 of them are far more than the stuck connection's
    // socket buffers, its writer's queue and its 16-event buffer hold.
    let long = |c: char, n: usize| c.to_string().repeat(n);
    let writes = 1500;
    for i in 0..writes {
        let res = app
            .post(
                "/api/businesses",
                json!({
                    "name": format!("flood-{i}"),
                    "website": format!("https://www.example.com/{}", long('w', 2000)),
                    "google_maps_url": format!("https://maps.example.com/{}", long('m', 2000)),
                    "address": long('a', 500),
                }),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
    }
    // The reading client got every one, in order, while the other read nothing.
    for i in 0..writes {
        assert_eq!(
            fast.event("business:created").await["name"],
            format!("flood-{i}")
        );
    }
    // What the stuck client reads once it starts is well-formed and in order, with the
    // events it fell behind on skipped.
    let mut received = Vec::new();
    while received.last() != Some(&(writes - 1)) {
        let frame = tokio::time::timeout(WAIT, stuck.next())
            .await
            .expect("frames keep coming")
            .expect("the connection stays open")
            .expect("a frame");
        let Message::Text(text) = frame else { continue };
        let Some(event) = text.strip_prefix("42") else {
            continue;
        };
        let event: Value = serde_json::from_str(event).expect("an event array");
        if event[0] == "business:created" {
            let name = event[1]["name"].as_str().expect("a name");
            let n: usize = name
                .strip_prefix("flood-")
                .and_then(|n| n.parse().ok())
                .expect("a flood name");
            assert!(
                received.last().is_none_or(|&last| n > last),
                "{n} after {received:?}"
            );
            received.push(n);
        }
    }
    assert!(
        received.len() < writes,
        "the client that did not read skipped nothing"
    );
    let metrics = app.get("/metrics").await.text;
    let skipped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("letip_socketio_events_skipped_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(skipped > 0.0, "skips are counted");
    println!(
        "{writes} events: the client that did not read received {} of them later (skipped {skipped})",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_is_dropped_within_ping_interval_plus_timeout() {
    let (interval, timeout) = (500, 500);
    let app = TestApp::spawn_with(|c| {
        c.socketio_ping_interval_ms = interval;
        c.socketio_ping_timeout_ms = timeout;
    })
    .await;
    let (ws, ws_connect) = Node::client(&app, Some(&["websocket"])).await;
    let (polling, polling_connect) = Node::client(&app, Some(&["polling"])).await;
    let sids = [&ws_connect["sid"], &polling_connect["sid"]].map(|s| s.as_str().expect("a sid"));
    // Heartbeats keep answering clients connected past the timeout.
    tokio::time::sleep(Duration::from_millis(3 * (interval + timeout))).await;
    for sid in sids {
        assert!(session_exists(&app, sid).await, "{sid} is alive");
    }
    // Frozen: the connections stay open, nothing answers.
    ws.signal("-STOP");
    polling.signal("-STOP");
    let frozen = Instant::now();
    let bound = Duration::from_millis(interval + timeout);
    for sid in sids {
        while session_exists(&app, sid).await {
            assert!(
                frozen.elapsed() < bound + Duration::from_secs(2),
                "{sid} still open {:?} after its client froze",
                frozen.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "frozen clients dropped {:?} after they froze (interval + timeout = {bound:?})",
        frozen.elapsed()
    );
    ws.signal("-CONT");
    polling.signal("-CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_disconnects_its_socketio_clients() {
    let app = TestApp::spawn().await;
    let (mut ws, _) = Node::client(&app, Some(&["websocket"])).await;
    let (mut polling, _) = Node::client(&app, Some(&["polling"])).await;
    // A long-poll waiting for the next packet.
    let sid = handshake(&app).await;
    assert_eq!(post(&app, &sid, "40").await.text, "ok");
    assert!(poll(&app, &sid).await.text.starts_with("40{"));
    let waiting = tokio::spawn({
        let req = app
            .client
            .get(sio_url(&app, &format!("transport=polling&sid={sid}")));
        async move { req.send().await.expect("answered").text().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let stopping = tokio::spawn(app.stop());
    // The waiting poll is told the session is closed, at once rather than at the 30 s
    // shutdown timeout.
    assert_eq!(waiting.await.expect("joined").expect("a body"), "1");
    let ws_close = ws.next("disconnect").await;
    assert_eq!(ws_close["reason"], "transport close", "{:?}", ws.backlog);
    // A polling client between two polls sees its next request fail instead: it
    // reconnects either way.
    let polling_close = polling.next("disconnect").await;
    assert!(
        ["transport close", "transport error"]
            .contains(&polling_close["reason"].as_str().unwrap_or("")),
        "{polling_close}"
    );
    stopping.await.expect("stopped");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_engine_io_errors() {
    let app = TestApp::spawn().await;
    let get = |q: &str| app.client.get(sio_url(&app, q));
    engine_error(
        &app.send(
            app.client
                .get(app.url("/socket.io/?EIO=3&transport=polling")),
        )
        .await,
        400,
        5,
    );
    engine_error(
        &app.send(app.client.get(app.url("/socket.io/?transport=polling")))
            .await,
        400,
        5,
    );
    engine_error(&app.send(get("transport=flash")).await, 400, 0);
    engine_error(
        &app.send(app.client.get(app.url("/socket.io/"))).await,
        400,
        0,
    );
    engine_error(&poll(&app, "nope").await, 400, 1);
    engine_error(&post(&app, "nope", "40").await, 400, 1);
    engine_error(
        &app.send(app.client.post(sio_url(&app, "transport=polling")))
            .await,
        400,
        2,
    );
    // A WebSocket handshake that is not a WebSocket upgrade.
    engine_error(&app.send(get("transport=websocket")).await, 400, 3);
    // An upgrade for a session that does not exist is refused before switching.
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid=nope",
        app.addr
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 400);
            let body: Value =
                serde_json::from_slice(res.body().as_deref().unwrap_or_default()).expect("JSON");
            assert_eq!(body["code"], 1);
        }
        other => panic!("upgrade for an unknown sid: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_end_the_session_with_a_400() {
    let app = TestApp::spawn().await;
    for body in [
        "",
        "x",
        "40\x1e\x1e3",
        "4x",
        "42[\"ping\"]",
        "40\x1e42{",
        "40\x1e40",
        "2",
    ] {
        let sid = handshake(&app).await;
        let res = post(&app, &sid, body).await;
        engine_error(&res, 400, 3);
        engine_error(&poll(&app, &sid).await, 400, 1);
    }
    // Not UTF-8.
    let sid = handshake(&app).await;
    engine_error(&post(&app, &sid, vec![0x34_u8, 0xff, 0xfe]).await, 400, 3);
    // Over maxPayload: 413, and the session ends.
    let sid = handshake(&app).await;
    let big = format!("42[\"x\",\"{}\"]", "a".repeat(1_000_000));
    let res = post(&app, &sid, big).await;
    assert_eq!(res.status, 413, "{}", res.text);
    engine_error(&poll(&app, &sid).await, 400, 1);
    // Two polls at once end the session: the second is refused, the first told to close.
    let sid = handshake(&app).await;
    let first = tokio::spawn({
        let req = app
            .client
            .get(sio_url(&app, &format!("transport=polling&sid={sid}")));
        async move { req.send().await.expect("answered").text().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine_error(&poll(&app, &sid).await, 400, 3);
    assert_eq!(first.await.expect("joined").expect("a body"), "1");
    // A well-formed exchange still works after all that.
    let sid = handshake(&app).await;
    let res = post(&app, &sid, "40\x1e421[\"ping\"]").await;
    assert_eq!((res.status, res.text.as_str()), (200, "ok"));
    let answer = poll(&app, &sid).await;
    let packets: Vec<&str> = answer.text.split('\x1e').collect();
    assert!(
        packets
            .first()
            .is_some_and(|p| p.starts_with("40{\"sid\":")),
        "{}",
        answer.text
    );
    assert_eq!(packets.get(1), Some(&"431[\"pong\"]"), "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_frames_close_the_connection() {
    let app = TestApp::spawn_with(|c| c.socketio_max_payload = 1000).await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    for (frame, code) in [
        ("4x".to_owned(), 1002),
        ("42[\"ping\"]".to_owned(), 1002),
        ("x".to_owned(), 1002),
        (format!("42[\"x\",\"{}\"]", "a".repeat(2000)), 1009),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("upgrades");
        let open = ws.next().await.expect("a frame").expect("open packet");
        assert!(
            open.to_text().is_ok_and(|t| t.starts_with("0{")),
            "{open:?}"
        );
        ws.send(Message::text(frame)).await.expect("sent");
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    other => panic!("no close frame: {other:?}"),
                }
            }
        })
        .await
        .expect("closed in time");
        assert_eq!(closed, Some(code));
    }
    // The handshake advertises the limit.
    let sid_open = app
        .send(app.client.get(sio_url(&app, "transport=polling")))
        .await;
    assert!(
        sid_open.text.contains("\"maxPayload\":1000"),
        "{}",
        sid_open.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_and_exposes_the_cache_headers() {
    let app = TestApp::spawn().await;
    let origin = "http://dashboard.example.com";
    let preflight = app
        .send(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/businesses"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type"),
        )
        .await;
    assert_eq!(preflight.status, 200, "{}", preflight.text);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    let methods = preflight
        .header("access-control-allow-methods")
        .expect("methods");
    for m in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert!(
        preflight
            .header("access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("content-type"))
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("86400"));
    // A preflight for a route that does not exist is still a preflight, not a 404.
    let preflight = app
        .send(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/nowhere"))
                .header("origin", origin)
                .header("access-control-request-method", "GET"),
        )
        .await;
    assert_eq!(preflight.status, 200);
    // A method the API does not have is refused by the preflight.
    let put = app
        .send(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/businesses"))
                .header("origin", origin)
                .header("access-control-request-method", "PUT"),
        )
        .await;
    assert_eq!(put.status, 400);

    let stats = app
        .send(
            app.client
                .get(app.url("/api/businesses/stats"))
                .header("origin", origin),
        )
        .await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.header("access-control-allow-origin"), Some("*"));
    let exposed = stats
        .header("access-control-expose-headers")
        .expect("exposed headers")
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-cache") && exposed.contains("x-request-id"),
        "{exposed}"
    );
    // Errors carry CORS headers too, so the dashboard can read them.
    let missing = app
        .send(
            app.client
                .get(app.url("/api/businesses/999"))
                .header("origin", origin),
        )
        .await;
    assert_eq!(missing.error(404), "Business with id 999 not found");
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    // Without a preflight's headers, OPTIONS is an unknown method as before.
    let bare = app
        .send(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/businesses")),
        )
        .await;
    assert_eq!(bare.error(404), "Cannot OPTIONS /api/businesses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins_restricts_who_may_call_from_a_browser() {
    let app = TestApp::spawn_with(|c| {
        c.cors_origins = "https://dash.example.com, http://localhost:5173".into();
    })
    .await;
    let from = |origin: &str| {
        app.client
            .get(app.url("/api/businesses/stats"))
            .header("origin", origin)
    };
    let allowed = app.send(from("http://localhost:5173")).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert!(allowed.header("vary").is_some_and(|v| v.contains("Origin")));
    let refused = app.send(from("https://evil.example.com")).await;
    assert_eq!(refused.status, 200, "served, but the browser withholds it");
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let preflight = app
        .send(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/businesses"))
                .header("origin", "https://evil.example.com")
                .header("access-control-request-method", "POST"),
        )
        .await;
    assert_eq!(preflight.status, 400);
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    // Socket.IO refuses a session from a refused origin, on both transports.
    let socketio = app
        .send(
            app.client
                .get(sio_url(&app, "transport=polling"))
                .header("origin", "https://evil.example.com"),
        )
        .await;
    engine_error(&socketio, 403, 4);
    let ws = tokio_tungstenite::connect_async(
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            app.addr
        ))
        .map(|mut r| {
            r.headers_mut().insert(
                "origin",
                "https://evil.example.com".parse().expect("a header value"),
            );
            r
        })
        .expect("a request"),
    )
    .await;
    assert!(
        matches!(&ws, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403),
        "{ws:?}"
    );
    let ok = app
        .send(
            app.client
                .get(sio_url(&app, "transport=polling"))
                .header("origin", "https://dash.example.com"),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

/// Serves the browser test's page and the client's browser build, from an origin of
/// its own.
async fn page_server() -> std::net::SocketAddr {
    let page = std::fs::read(Path::new(NODE_DIR).join("page.html")).expect("the test page");
    let script = std::fs::read(
        Path::new(NODE_DIR).join("node_modules/socket.io-client/dist/socket.io.min.js"),
    )
    .expect("socket.io-client's browser build: run `bash scripts/test-deps.sh`");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (page, script) = (page.clone(), script.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut reader = BufReader::new(&mut conn);
                let mut line = String::new();
                while reader.read_line(&mut line).await.is_ok_and(|n| n > 2) {
                    head.extend_from_slice(line.as_bytes());
                    line.clear();
                }
                let path = String::from_utf8_lossy(&head)
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_owned();
                let (ctype, body, status) = if path.starts_with("/socket.io.min.js") {
                    ("application/javascript", script, "200 OK")
                } else if path == "/" || path.starts_with("/?") {
                    ("text/html; charset=utf-8", page, "200 OK")
                } else {
                    ("text/plain", b"not found".to_vec(), "404 Not Found")
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&body).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_reads_the_api_and_live_events_in_chromium() {
    let open = TestApp::spawn().await;
    let page = page_server().await;
    let listed = TestApp::spawn_with(|c| c.cors_origins = format!("http://{page}")).await;
    let refused = TestApp::spawn_with(|c| c.cors_origins = "https://dash.example.com".into()).await;
    let url = |app: &TestApp| format!("http://{page}/?api={}", app.url(""));
    let mut browser = Node::start(
        "browser.mjs",
        &json!({"pages": [url(&open), url(&listed), url(&refused)]}),
    );
    for app in [&open, &listed] {
        let report = browser.line(Duration::from_secs(60)).await;
        let r = &report["result"];
        assert_eq!(r["stats"]["totalBusinesses"], 0, "{report}");
        assert_eq!(r["xCache"], "BYPASS", "{report}");
        assert!(r["requestId"].is_string(), "{report}");
        assert_eq!(r["transports"], json!(["websocket", "polling"]), "{report}");
        assert_eq!(r["pong"], "pong", "{report}");
        assert_eq!(r["createdStatus"], 201, "{report}");
        assert_eq!(r["events"], json!([r["created"], r["created"]]), "{report}");
        assert_eq!(app.stats().await["totalBusinesses"], 1);
    }
    let report = browser.line(Duration::from_secs(60)).await;
    let r = &report["result"];
    assert!(r["statsError"].is_string(), "{report}");
    assert!(r["stats"].is_null(), "{report}");
    assert!(r["dashboardError"].is_string(), "{report}");
    assert!(r["pollingError"].is_string(), "{report}");
    assert!(r["events"].is_null(), "{report}");
}
