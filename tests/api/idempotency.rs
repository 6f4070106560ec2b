//! A write is stored once: a client's repeat under an `Idempotency-Key` answers the first
//! answer again, and the server's own retry after a lost COMMIT answer settles the write
//! by its key instead of guessing.

use std::time::Duration;

use letip_server::CacheBackend;
use letip_tests::{Res, TestApp, id};
use serde_json::{Value, json};

/// The server as a process of its own, to kill.
const INSTANCE: &str = env!("CARGO_BIN_EXE_letip-instance");

/// Sends `method path` with `body` (none for `Null`) and, if given, `key`.
async fn keyed(app: &TestApp, method: &str, path: &str, body: &Value, key: Option<&str>) -> Res {
    app.try_keyed(method, path, body, key)
        .await
        .expect("the server answers")
}

trait Keyed {
    async fn try_keyed(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Result<Res, reqwest::Error>;
}

impl Keyed for TestApp {
    async fn try_keyed(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Result<Res, reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut req = self.client.request(method, self.url(path));
        if !body.is_null() {
            req = req.json(body);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        self.try_send(req).await
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let rows = app
        .db
        .rows(&format!("SELECT count(*) AS n FROM {sql}"))
        .await;
    rows.first().and_then(|r| r["n"].as_i64()).expect("a count")
}

fn replayed(res: &Res) -> bool {
    res.header("idempotent-replayed") == Some("true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_repeated_with_its_key_answers_the_first_answer_and_is_stored_once() {
    let app = TestApp::spawn_with(|c| c.cache_backend = CacheBackend::Memory).await;
    let b = keyed(
        &app,
        "POST",
        "/api/businesses",
        &json!({"name": "Once", "city": "Red Bank"}),
        Some("setup-business"),
    )
    .await;
    assert_eq!(b.status, 201, "{}", b.text);
    let bid = id(&b.body);
    let business = format!("/api/businesses/{bid}");
    let contact = keyed(
        &app,
        "POST",
        &format!("{business}/contacts"),
        &json!({"name": "Ann"}),
        Some("setup-contact"),
    )
    .await;
    let message = keyed(
        &app,
        "POST",
        &format!("{business}/messages"),
        &json!({"message_text": "Hi"}),
        Some("setup-message"),
    )
    .await;
    let (cid, mid) = (id(&contact.body), id(&message.body));

    let writes: Vec<(&str, String, Value, u16)> = vec![
        (
            "POST",
            "/api/businesses".into(),
            json!({"name": "Second"}),
            201,
        ),
        ("PATCH", business.clone(), json!({"name": "Renamed"}), 200),
        (
            "POST",
            format!("{business}/contacts"),
            json!({"name": "Ann"}),
            201,
        ),
        (
            "POST",
            format!("{business}/messages"),
            json!({"message_text": "Hi"}),
            201,
        ),
        (
            "PATCH",
            format!("/api/messages/{mid}"),
            json!({"status": "sent"}),
            200,
        ),
        (
            "POST",
            format!("/api/enrich/{bid}"),
            json!({"status": "enriched", "contacts": [{"name": "Bo"}], "logs": []}),
            200,
        ),
        ("DELETE", format!("/api/contacts/{cid}"), Value::Null, 204),
        ("DELETE", business.clone(), Value::Null, 204),
    ];
    let keys = [
        "create-1",
        "patch-1",
        "contact-1",
        "message-1",
        "sent-1",
        "enrich-1",
        "uncontact-1",
        "delete-1",
    ];
    let mut firsts = Vec::new();
    for ((method, path, body, status), key) in writes.iter().zip(keys) {
        let first = keyed(&app, method, path, body, Some(key)).await;
        assert_eq!(first.status, *status, "{method} {path}: {}", first.text);
        firsts.push(first);
    }
    // The repeats come after every write, the business deleted: each answers what its
    // first answered, and none writes again.
    for (((method, path, body, _), key), first) in writes.iter().zip(keys).zip(&firsts) {
        let again = keyed(&app, method, path, body, Some(key)).await;
        assert_eq!(
            again.status, first.status,
            "{method} {path}: {}",
            again.text
        );
        assert_eq!(again.text, first.text, "{method} {path}: the same bytes");
        assert!(replayed(&again), "{method} {path} is marked replayed");
        assert!(!replayed(first), "{method} {path}: the first answer is not");
    }
    assert_eq!(count(&app, "business WHERE name = 'Second'").await, 1);
    assert_eq!(
        count(&app, "business WHERE name IN ('Once', 'Renamed')").await,
        0
    );
    assert_eq!(count(&app, "contact").await, 0, "deleted with the business");
    assert_eq!(app.get(&business).await.status, 404);
    let stored = count(&app, "letip_write_key WHERE client").await;
    assert_eq!(stored, 11, "one key each, stored with its write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_used_with_another_request_is_422_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let first = keyed(
        &app,
        "POST",
        "/api/businesses",
        &json!({"name": "A"}),
        Some("k"),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let path = format!("/api/businesses/{}", id(&first.body));
    for (method, path, body) in [
        ("POST", "/api/businesses", json!({"name": "B"})),
        ("PATCH", path.as_str(), json!({"name": "A"})),
        ("DELETE", path.as_str(), Value::Null),
    ] {
        let res = keyed(&app, method, path, &body, Some("k")).await;
        assert!(
            res.error(422).contains("Idempotency-Key"),
            "{method} {path}: {}",
            res.text
        );
        assert_eq!(res.body["error"], "Unprocessable Entity");
    }
    assert_eq!(count(&app, "business WHERE name = 'B'").await, 0);
    assert_eq!(
        count(&app, "business WHERE name = 'A'").await,
        1,
        "not deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_a_400_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let long = "k".repeat(256);
    for key in ["", "with space", long.as_str()] {
        let res = keyed(
            &app,
            "POST",
            "/api/businesses",
            &json!({"name": "A"}),
            Some(key),
        )
        .await;
        assert!(
            res.error(400).contains("Idempotency-Key"),
            "{key:?}: {}",
            res.text
        );
    }
    assert_eq!(count(&app, "business").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_with_one_key_store_one_row() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let body = json!({"name": "Raced", "phone": "732-555-0100"});
    let answers = futures_util::future::join_all((0..50).map(|_| {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(
            async move { keyed(&app, "POST", "/api/businesses", &body, Some("raced")).await },
        )
    }))
    .await;
    let answers: Vec<Res> = answers
        .into_iter()
        .map(|a| a.expect("the request task ends"))
        .collect();
    let created: Vec<&Res> = answers.iter().filter(|r| r.status == 201).collect();
    for res in &answers {
        assert!(
            res.status == 201 || res.status == 409,
            "201 or 409: {} {}",
            res.status,
            res.text
        );
        if res.status == 409 {
            assert!(res.error(409).contains("still being processed"));
        }
    }
    assert!(!created.is_empty(), "one of them was done");
    for res in &created {
        assert_eq!(
            res.text, created[0].text,
            "every 201 is the one write's answer"
        );
    }
    assert_eq!(count(&app, "business WHERE name = 'Raced'").await, 1);
    let again = keyed(&app, "POST", "/api/businesses", &body, Some("raced")).await;
    assert_eq!(
        (again.status, again.text.as_str()),
        (201, created[0].text.as_str())
    );
    assert!(replayed(&again));
}

/// Writes whose COMMIT reached PostgreSQL but whose answer never came back (the proxy in
/// front of PostgreSQL closes the connection as the answer arrives): each is answered as
/// done, and stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_never_arrives_is_stored_once() {
    let (app, proxy) = TestApp::spawn_through_proxy().await;
    let b = app.business(json!({"name": "Kept"})).await;
    let path = format!("/api/businesses/{}", id(&b));

    proxy.cut_after_next(b"COMMIT");
    let created = app
        .post("/api/businesses", json!({"name": "Lost answer"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let rows = app
        .db
        .rows("SELECT id FROM business WHERE name = 'Lost answer'")
        .await;
    assert_eq!(rows.len(), 1, "stored once");
    assert_eq!(
        rows[0]["id"], created.body["id"],
        "answered with the stored row"
    );

    proxy.cut_after_next(b"COMMIT");
    let patched = app.patch(&path, json!({"name": "Patched"})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["name"], "Patched");

    proxy.cut_after_next(b"COMMIT");
    let message = app
        .post(&format!("{path}/messages"), json!({"message_text": "Once"}))
        .await;
    assert_eq!(message.status, 201, "{}", message.text);
    assert_eq!(
        count(&app, "outreach_message WHERE message_text = 'Once'").await,
        1
    );
    assert_eq!(app.get(&path).await.body["name"], "Patched");
}

/// The server killed (SIGKILL) while it handles a write: once after its COMMIT, its answer
/// lost on the way (the client's connection cut as the answer comes); once while the
/// write waits for a row lock. The client's retry with the same key, to another
/// instance, answers the first answer, or makes the write; each is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_retry_after_the_server_was_killed_mid_request_is_stored_once() {
    let a = TestApp::spawn().await;
    let (c, mut process) = a
        .spawn_process(INSTANCE, CacheBackend::None, &a.config.redis_url)
        .await;
    let cut = letip_testkit::FaultProxy::start(c.addr).await;
    let through = TestApp::external(cut.addr(), c.config.clone(), a.db.clone());

    // After its COMMIT.
    cut.cut_after_next(b"POST /api/businesses ");
    let body = json!({"name": "Answer lost"});
    let lost = through
        .try_keyed("POST", "/api/businesses", &body, Some("lost"))
        .await;
    assert!(lost.is_err(), "the answer never arrived: {lost:?}");
    process.start_kill().expect("SIGKILL");
    process.wait().await.expect("the instance ends");
    let retry = keyed(&a, "POST", "/api/businesses", &body, Some("lost")).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert!(replayed(&retry), "answered from the first write");
    let rows =
        a.db.rows("SELECT id FROM business WHERE name = 'Answer lost'")
            .await;
    assert_eq!(rows.len(), 1, "stored once");
    assert_eq!(rows[0]["id"], retry.body["id"]);

    // While it waits for a lock: the business's row held by another transaction.
    let (c, mut process) = a
        .spawn_process(INSTANCE, CacheBackend::None, &a.config.redis_url)
        .await;
    let b = a.business(json!({"name": "Held"})).await;
    let contacts = format!("/api/businesses/{}/contacts", id(&b));
    let mut holder = {
        use diesel_async::{AsyncConnection, SimpleAsyncConnection};
        let mut conn = diesel_async::AsyncPgConnection::establish(&a.db.url)
            .await
            .expect("a connection");
        conn.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM business WHERE id = {} FOR UPDATE",
            id(&b)
        ))
        .await
        .expect("the row is held");
        conn
    };
    let waiting = {
        let contacts = contacts.clone();
        tokio::spawn(async move {
            c.try_keyed("POST", &contacts, &json!({"name": "Held on"}), Some("held"))
                .await
        })
    };
    letip_testkit::eventually("the write waits for the row lock", async || {
        count(
            &a,
            "pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await
            > 0
    })
    .await;
    process.start_kill().expect("SIGKILL");
    process.wait().await.expect("the instance ends");
    assert!(waiting.await.expect("the task ends").is_err(), "no answer");
    {
        use diesel_async::SimpleAsyncConnection;
        holder.batch_execute("COMMIT").await.expect("released");
    }
    // The killed instance's session ends as soon as it next reads its socket; until then
    // it may still hold the key (409).
    let mut retry = None;
    for _ in 0..100 {
        let res = keyed(
            &a,
            "POST",
            &contacts,
            &json!({"name": "Held on"}),
            Some("held"),
        )
        .await;
        if res.status != 409 {
            retry = Some(res);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retry = retry.expect("the key is free again within 5 s");
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert!(!replayed(&retry), "the first attempt never committed");
    assert_eq!(count(&a, "contact WHERE name = 'Held on'").await, 1);
}
