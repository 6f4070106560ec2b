//! A write is answered as done only once PostgreSQL has committed it.
//!
//! A statement sent outside an explicit transaction is committed only at the protocol's
//! Sync, after its rows and its CommandComplete were sent; a failure at that commit (a
//! deferred constraint here, a session terminated or a failover in production) would
//! reach the client only after it had read a success. Deferred triggers that fail at
//! commit stand in for that moment deterministically.

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
