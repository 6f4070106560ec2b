//! A write is answered as done only once PostgreSQL has committed it.
//!
//! A statement sent outside an explicit transaction is committed only at the protocol's
//! Sync, after its rows and its CommandComplete were sent; a failure at that commit (a
//! deferred constraint here, a session terminated or a failover in production) would
//! reach the client only after it had read a success. Deferred triggers that fail at
//! commit stand in for that moment deterministically.

use std::sync::Arc;
use std::time::Duration;

use letip_tests::{TestApp, id};
use serde_json::json;

/// Deferred triggers that refuse, at commit, rows carrying the marker value `refuse`.
const REFUSE_AT_COMMIT: &str = r#"
CREATE FUNCTION test_refuse_at_commit() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'refused at commit';
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER test_refuse_business AFTER INSERT OR UPDATE ON business
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.phone = 'refuse') EXECUTE FUNCTION test_refuse_at_commit();
CREATE CONSTRAINT TRIGGER test_refuse_contact AFTER INSERT OR UPDATE ON contact
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.phone = 'refuse') EXECUTE FUNCTION test_refuse_at_commit();
CREATE CONSTRAINT TRIGGER test_refuse_message AFTER UPDATE ON outreach_message
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.status = 'sent') EXECUTE FUNCTION test_refuse_at_commit();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_commit_fails_is_never_answered_as_done() {
    let app = TestApp::spawn().await;
    let b = app
        .business(json!({"name": "Kept", "phone": "732-555-0100"}))
        .await;
    let path = format!("/api/businesses/{}", id(&b));
    let message = app
        .post(&format!("{path}/messages"), json!({"message_text": "Hi"}))
        .await;
    assert_eq!(message.status, 201);
    app.db.batch(REFUSE_AT_COMMIT).await;

    let create = app
        .post("/api/businesses", json!({"name": "New", "phone": "refuse"}))
        .await;
    assert!(create.status >= 500, "{} {}", create.status, create.text);
    let update = app.patch(&path, json!({"phone": "refuse"})).await;
    assert!(update.status >= 500, "{} {}", update.status, update.text);
    let contact = app
        .post(
            &format!("{path}/contacts"),
            json!({"name": "Ann", "phone": "refuse"}),
        )
        .await;
    assert!(contact.status >= 500, "{} {}", contact.status, contact.text);
    let sent = app
        .patch(
            &format!("/api/messages/{}", id(&message.body)),
            json!({"status": "sent"}),
        )
        .await;
    assert!(sent.status >= 500, "{} {}", sent.status, sent.text);

    // Nothing of them is stored, and the API says so.
    let stored = app
        .db
        .rows(
            "SELECT (SELECT count(*) FROM business) AS businesses, \
             (SELECT phone FROM business ORDER BY id LIMIT 1) AS phone, \
             (SELECT count(*) FROM contact) AS contacts, \
             (SELECT status FROM outreach_message LIMIT 1) AS status",
        )
        .await;
    assert_eq!(
        stored,
        [json!({"businesses": 1, "phone": "732-555-0100", "contacts": 0, "status": "generated"})]
    );
    let detail = app.get(&path).await.body;
    assert_eq!(detail["phone"], "732-555-0100");
    assert_eq!(detail["contacts"], json!([]));
}

/// A deferred trigger that counts its runs (a sequence is not rolled back) and, on its
/// first run only, ends its own session at commit, for rows carrying the marker value
/// `vanish`: PostgreSQL answers that COMMIT with the session's termination and rolls the
/// transaction back.
const VANISH_AT_FIRST_COMMIT: &str = r#"
CREATE SEQUENCE test_commit_attempts;
CREATE FUNCTION test_vanish_at_commit() RETURNS trigger AS $$
BEGIN
    IF nextval('test_commit_attempts') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(1);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER test_vanish_business AFTER INSERT OR UPDATE ON business
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.phone = 'vanish') EXECUTE FUNCTION test_vanish_at_commit();
"#;

/// A COMMIT the server answered by ending the session was rolled back: the write runs
/// again on a new connection, and is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_answered_by_the_sessions_end_runs_again_and_is_stored_once() {
    let app = TestApp::spawn().await;
    app.db.batch(VANISH_AT_FIRST_COMMIT).await;
    let created = app
        .post(
            "/api/businesses",
            json!({"name": "Twice?", "phone": "vanish"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let attempts = app
        .db
        .rows("SELECT last_value FROM test_commit_attempts")
        .await;
    assert_eq!(
        attempts,
        [json!({"last_value": 2})],
        "rolled back, then run again"
    );
    let stored = app
        .db
        .rows("SELECT count(*)::int AS n FROM business WHERE name = 'Twice?'")
        .await;
    assert_eq!(stored, [json!({"n": 1})]);
}

/// A deferred trigger that counts its runs and holds the commit of rows carrying the
/// marker value `slow` for two seconds.
const SLOW_COMMIT: &str = r#"
CREATE SEQUENCE test_slow_commits;
CREATE FUNCTION test_slow_commit() RETURNS trigger AS $$
BEGIN
    PERFORM nextval('test_slow_commits');
    PERFORM pg_sleep(2);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER test_slow_business AFTER INSERT ON business
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.phone = 'slow') EXECUTE FUNCTION test_slow_commit();
"#;

/// A connection that closes, with no answer, once a write's COMMIT was sent may have
/// committed it (here it does: PostgreSQL finishes the commit of a session whose client
/// is gone). The server settles it by the write's key (its insert from another session
/// waits for the first transaction, then conflicts): answered as done, with the stored
/// answer, and stored once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_connection_closes_at_its_commit_is_settled_and_stored_once() {
    let (app, proxy) = TestApp::spawn_through_proxy().await;
    let app = Arc::new(app);
    app.db.batch(SLOW_COMMIT).await;

    let writer = app.clone();
    let create = tokio::spawn(async move {
        writer
            .post("/api/businesses", json!({"name": "Once", "phone": "slow"}))
            .await
    });
    // Cut every connection while the commit is under way.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let runs = app.db.rows("SELECT is_called FROM test_slow_commits").await;
        if runs == [json!({"is_called": true})] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the commit never began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.cut();
    let created = create.await.expect("the request ends");
    assert_eq!(created.status, 201, "{}", created.text);

    let stored = app
        .db
        .rows("SELECT id FROM business WHERE name = 'Once'")
        .await;
    assert_eq!(stored.len(), 1, "stored once");
    assert_eq!(
        stored[0]["id"], created.body["id"],
        "answered with what it stored"
    );
    let runs = app
        .db
        .rows("SELECT last_value FROM test_slow_commits")
        .await;
    assert_eq!(runs, [json!({"last_value": 1})], "run once");
}
