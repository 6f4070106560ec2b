use letip_tests::{TestApp, id};
use serde_json::{Value, json};

const CONTACT_FIELDS: &[&str] = &[
    "id",
    "business_id",
    "name",
    "title",
    "email",
    "email_verified",
    "phone",
    "linkedin_url",
    "is_primary",
    "created_at",
    "updated_at",
];
const MESSAGE_FIELDS: &[&str] = &[
    "id",
    "business_id",
    "contact_id",
    "message_text",
    "generated_at",
    "sent_at",
    "status",
];

fn assert_fields(v: &Value, fields: &[&str]) {
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), fields.len(), "{v}");
    for f in fields {
        assert!(obj.contains_key(*f), "{f} missing from {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_created_with_defaults_and_deleted() {
    let app = TestApp::spawn().await;
    let b = app.business(json!({"name": "Acme"})).await;
    let path = format!("/api/businesses/{}/contacts", id(&b));

    let bare = app.post(&path, json!({})).await;
    assert_eq!(bare.status, 201, "{}", bare.text);
    assert_fields(&bare.body, CONTACT_FIELDS);
    assert_eq!(bare.body["email_verified"], false);
    assert_eq!(bare.body["is_primary"], false);
    assert_eq!(bare.body["business_id"], b["id"]);

    let full = app
        .post(
            &path,
            json!({"name": "Jane Doe", "title": "Owner", "email": "jane@acme.example.com",
                   "email_verified": true, "phone": "732-555-0100",
                   "linkedin_url": "https://linkedin.com/in/jane", "is_primary": true}),
        )
        .await;
    assert_eq!(full.status, 201);
    assert_eq!(full.body["email"], "jane@acme.example.com");
    assert_eq!(full.body["is_primary"], true);

    let detail = app.get(&format!("/api/businesses/{}", id(&b))).await;
    let contacts = detail.body["contacts"].as_array().expect("contacts");
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0]["id"], bare.body["id"], "oldest first");

    assert_eq!(
        app.delete(&format!("/api/contacts/{}", id(&bare.body)))
            .await
            .status,
        204
    );
    app.delete(&format!("/api/contacts/{}", id(&bare.body)))
        .await
        .error(404);
    assert_eq!(app.counts().await.2, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_contacts_get_400_or_404_and_write_nothing() {
    let app = TestApp::spawn().await;
    let b = app.business(json!({"name": "Acme"})).await;
    let path = format!("/api/businesses/{}/contacts", id(&b));
    for (body, field) in [
        (json!({"email": "not-an-email"}), "email"),
        (json!({"email": "a@b"}), "email"),
        (json!({"email_verified": "yes"}), "email_verified"),
        (json!({"id": 1}), "id"),
        (json!({"business_id": 1}), "business_id"),
        (json!({"nickname": "J"}), "nickname"),
    ] {
        let res = app.post(&path, body.clone()).await;
        assert!(res.error(400).contains(field), "{body}: {}", res.text);
    }
    let res = app
        .post("/api/businesses/9999/contacts", json!({"name": "X"}))
        .await;
    assert!(res.error(404).contains("9999"));
    assert_eq!(app.counts().await.2, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_start_generated_and_move_to_sent_or_failed() {
    let app = TestApp::spawn().await;
    let b = app.business(json!({"name": "Acme"})).await;
    let contact = app
        .post(
            &format!("/api/businesses/{}/contacts", id(&b)),
            json!({"name": "Jo"}),
        )
        .await;
    let path = format!("/api/businesses/{}/messages", id(&b));

    let m = app
        .post(
            &path,
            json!({"message_text": "Hello Jo", "contact_id": contact.body["id"]}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    assert_fields(&m.body, MESSAGE_FIELDS);
    assert_eq!(m.body["status"], "generated");
    assert_eq!(m.body["sent_at"], Value::Null);
    assert_eq!(m.body["contact_id"], contact.body["id"]);
    let stats = app.stats().await;
    assert_eq!(
        (
            stats["messagesPending"].as_i64(),
            stats["messagesSent"].as_i64()
        ),
        (Some(1), Some(0))
    );

    let sent = app
        .patch(
            &format!("/api/messages/{}", id(&m.body)),
            json!({"status": "sent"}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    assert_eq!(sent.body["status"], "sent");
    assert!(sent.body["sent_at"].is_string());
    let stats = app.stats().await;
    assert_eq!(
        (
            stats["messagesPending"].as_i64(),
            stats["messagesSent"].as_i64()
        ),
        (Some(0), Some(1))
    );

    let other = app.post(&path, json!({"message_text": "Second"})).await;
    let failed = app
        .patch(
            &format!("/api/messages/{}", id(&other.body)),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(failed.body["status"], "failed");
    assert_eq!(failed.body["sent_at"], Value::Null);
    assert_eq!(failed.body["contact_id"], Value::Null);

    // Deleting the contact keeps the message, addressed to no one.
    app.delete(&format!("/api/contacts/{}", id(&contact.body)))
        .await;
    let detail = app.get(&format!("/api/businesses/{}", id(&b))).await;
    let msgs = detail.body["outreach_messages"]
        .as_array()
        .expect("messages");
    assert!(msgs.iter().all(|m| m["contact_id"].is_null()), "{msgs:?}");
    assert_eq!(msgs.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_400_or_404_and_write_nothing() {
    let app = TestApp::spawn().await;
    let a = app.business(json!({"name": "A"})).await;
    let b = app.business(json!({"name": "B"})).await;
    let bs_contact = app
        .post(
            &format!("/api/businesses/{}/contacts", id(&b)),
            json!({"name": "Bo"}),
        )
        .await;
    let path = format!("/api/businesses/{}/messages", id(&a));
    for (body, field) in [
        (json!({}), "message_text"),
        (json!({"message_text": ""}), "message_text"),
        (json!({"message_text": 5}), "message_text"),
        (
            json!({"message_text": "Hi", "contact_id": bs_contact.body["id"]}),
            "contact_id",
        ),
        (
            json!({"message_text": "Hi", "contact_id": 999_999}),
            "contact_id",
        ),
        (
            json!({"message_text": "Hi", "contact_id": "one"}),
            "contact_id",
        ),
        (json!({"message_text": "Hi", "status": "sent"}), "status"),
    ] {
        let res = app.post(&path, body.clone()).await;
        assert!(res.error(400).contains(field), "{body}: {}", res.text);
    }
    app.post(
        "/api/businesses/9999/messages",
        json!({"message_text": "Hi"}),
    )
    .await
    .error(404);
    assert_eq!(app.counts().await.3, 0);

    let m = app.post(&path, json!({"message_text": "Hi"})).await;
    let mpath = format!("/api/messages/{}", id(&m.body));
    for body in [
        json!({"status": "generated"}),
        json!({"status": "bogus"}),
        json!({}),
        json!({"status": "sent", "x": 1}),
    ] {
        let res = app.patch(&mpath, body.clone()).await;
        res.error(400);
    }
    assert_eq!(app.stats().await["messagesPending"], 1);
    app.patch("/api/messages/9999", json!({"status": "sent"}))
        .await
        .error(404);
}
