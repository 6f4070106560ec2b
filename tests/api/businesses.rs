use letip_tests::{TestApp, id};
use reqwest::Method;
use serde_json::{Value, json};

const FIELDS: &[&str] = &[
    "id",
    "name",
    "address",
    "city",
    "state",
    "zip",
    "phone",
    "website",
    "business_type",
    "industry",
    "employee_count",
    "year_founded",
    "google_maps_url",
    "latitude",
    "longitude",
    "enrichment_status",
    "source",
    "created_at",
    "updated_at",
];

fn assert_business_shape(b: &Value) {
    let obj = b.as_object().expect("a business is an object");
    for f in FIELDS {
        assert!(obj.contains_key(*f), "field {f} missing from {b}");
    }
    for ts in ["created_at", "updated_at"] {
        let s = b[ts].as_str().expect("timestamps are strings");
        // JavaScript's Date format: milliseconds and Z.
        assert!(s.ends_with('Z') && s.len() == 24, "{ts} = {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_business_answers_201_with_defaults() {
    let app = TestApp::spawn().await;
    let b = app
        .business(json!({"name": "  Freehold Dental ", "city": "Freehold", "industry": "Dental"}))
        .await;
    assert_business_shape(&b);
    assert_eq!(b["name"], "Freehold Dental");
    assert_eq!(b["state"], "NJ");
    assert_eq!(b["source"], "google_maps");
    assert_eq!(b["enrichment_status"], "pending");
    assert_eq!(b["address"], Value::Null);
    assert_eq!(b["created_at"], b["updated_at"]);
    assert_eq!(b.as_object().map(|o| o.len()), Some(FIELDS.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_optional_field_round_trips() {
    let app = TestApp::spawn().await;
    let body = json!({
        "name": "Red Bank Law Group", "address": "12 Broad St", "city": "Red Bank",
        "state": "NY", "zip": "07701", "phone": "(732) 555-0101",
        "website": "https://rblaw.example.com", "business_type": "lawyer",
        "industry": "Legal", "employee_count": 12, "year_founded": 1998,
        "google_maps_url": "https://maps.google.com/?cid=1", "latitude": 40.347,
        "longitude": -74.064, "source": "referral"
    });
    let b = app.business(body.clone()).await;
    for (k, v) in body.as_object().expect("object") {
        assert_eq!(&b[k], v, "{k}");
    }
    let detail = app.get(&format!("/api/businesses/{}", id(&b))).await;
    assert_eq!(detail.status, 200);
    for (k, v) in body.as_object().expect("object") {
        assert_eq!(&detail.body[k], v, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_business_bodies_get_400_naming_the_field_and_write_nothing() {
    let app = TestApp::spawn().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(256)}), "name"),
        (json!({"name": 42}), "name"),
        (json!({"name": "A", "website": "not a url"}), "website"),
        (
            json!({"name": "A", "website": "ftp://files.example.com"}),
            "website",
        ),
        (
            json!({"name": "A", "employee_count": "many"}),
            "employee_count",
        ),
        (json!({"name": "A", "employee_count": -3}), "employee_count"),
        (json!({"name": "A", "latitude": 123.0}), "latitude"),
        (json!({"name": "A", "id": 7}), "id"),
        (
            json!({"name": "A", "created_at": "2026-01-01T00:00:00Z"}),
            "created_at",
        ),
        (
            json!({"name": "A", "updated_at": "2026-01-01T00:00:00Z"}),
            "updated_at",
        ),
        (
            json!({"name": "A", "enrichment_status": "enriched"}),
            "enrichment_status",
        ),
        (
            json!({"name": "A", "favourite_colour": "red"}),
            "favourite_colour",
        ),
        (json!(["name"]), "body"),
    ];
    for (body, field) in cases {
        let res = app.post("/api/businesses", body.clone()).await;
        let message = res.error(400);
        assert!(message.contains(field), "{body} -> {message}");
        assert_eq!(res.body["error"], "Bad Request");
    }
    let malformed = app
        .raw(
            Method::POST,
            "/api/businesses",
            "application/json",
            r#"{"name": "A""#,
        )
        .await;
    assert!(malformed.error(400).contains("JSON"));
    let form = app
        .raw(
            Method::POST,
            "/api/businesses",
            "application/x-www-form-urlencoded",
            "name=A",
        )
        .await;
    form.error(400);
    assert_eq!(app.counts().await, (0, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused() {
    let app = TestApp::spawn().await;
    let huge = format!(
        r#"{{"name": "A", "address": "{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let res = app
        .raw(Method::POST, "/api/businesses", "application/json", &huge)
        .await;
    assert!(res.error(413).contains("body"));
    assert_eq!(app.counts().await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_answers_404_for_a_missing_business_and_400_for_a_bad_id() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/businesses/999").await;
    assert!(res.error(404).contains("999"));
    assert_eq!(res.body["error"], "Not Found");
    for bad in ["abc", "1.5", "-1", "99999999999"] {
        let res = app.get(&format!("/api/businesses/{bad}")).await;
        assert!(res.error(400).contains("id"), "{bad}");
    }
    for (method, path) in [
        (Method::PATCH, "/api/businesses/x"),
        (Method::DELETE, "/api/businesses/x"),
        (Method::POST, "/api/enrich/x"),
        (Method::POST, "/api/businesses/x/contacts"),
        (Method::POST, "/api/businesses/x/messages"),
        (Method::DELETE, "/api/contacts/x"),
        (Method::PATCH, "/api/messages/x"),
    ] {
        let res = app
            .raw(method.clone(), path, "application/json", "{}")
            .await;
        assert!(res.error(400).contains("id"), "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_only_what_it_names() {
    let app = TestApp::spawn().await;
    let b = app
        .business(json!({"name": "Shore Fitness", "city": "Brick", "industry": "Fitness", "zip": "08723"}))
        .await;
    let path = format!("/api/businesses/{}", id(&b));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let res = app
        .patch(
            &path,
            json!({"city": "Wall", "zip": null, "employee_count": 30}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_business_shape(&res.body);
    assert_eq!(res.body["city"], "Wall");
    assert_eq!(res.body["zip"], Value::Null);
    assert_eq!(res.body["employee_count"], 30);
    assert_eq!(res.body["industry"], "Fitness");
    assert_eq!(res.body["name"], "Shore Fitness");
    assert_eq!(res.body["created_at"], b["created_at"]);
    assert!(res.body["updated_at"].as_str() > b["updated_at"].as_str());

    // An empty patch changes nothing, not even updated_at.
    let same = app.patch(&path, json!({})).await;
    assert_eq!(same.status, 200);
    assert_eq!(same.body, res.body);

    let detail = app.get(&path).await;
    assert_eq!(detail.body["city"], "Wall");
    assert_eq!(detail.body["zip"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_patches_get_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    let b = app
        .business(json!({"name": "Keep Me", "city": "Freehold"}))
        .await;
    let path = format!("/api/businesses/{}", id(&b));
    for (body, field) in [
        (json!({"name": null}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"state": null}), "state"),
        (json!({"id": 5}), "id"),
        (
            json!({"enrichment_status": "enriched"}),
            "enrichment_status",
        ),
        (json!({"created_at": "2020-01-01T00:00:00Z"}), "created_at"),
        (json!({"city": "Wall", "website": "nope"}), "website"),
        (json!({"year_founded": "1990"}), "year_founded"),
    ] {
        let res = app.patch(&path, body.clone()).await;
        assert!(res.error(400).contains(field), "{body}: {}", res.text);
    }
    let after = app.get(&path).await;
    assert_eq!(after.body["city"], "Freehold");
    assert_eq!(after.body["name"], "Keep Me");
    assert_eq!(after.body["updated_at"], b["updated_at"]);
    let missing = app
        .patch("/api/businesses/424242", json!({"city": "X"}))
        .await;
    missing.error(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_business_with_its_contacts_logs_and_messages() {
    let app = TestApp::spawn().await;
    let gone = app.business(json!({"name": "Gone Soon"})).await;
    let kept = app.business(json!({"name": "Stays"})).await;
    for b in [&gone, &kept] {
        let run = app
            .post(
                &format!("/api/enrich/{}", id(b)),
                json!({"status": "enriched", "contacts": [{"name": "Ann"}],
                       "logs": [{"service": "hunter", "status": "success"}]}),
            )
            .await;
        assert_eq!(run.status, 200, "{}", run.text);
        let msg = app
            .post(
                &format!("/api/businesses/{}/messages", id(b)),
                json!({"message_text": "Hi"}),
            )
            .await;
        assert_eq!(msg.status, 201);
    }
    assert_eq!(app.counts().await, (2, 2, 2, 2));

    let res = app.delete(&format!("/api/businesses/{}", id(&gone))).await;
    assert_eq!(res.status, 204);
    assert!(res.text.is_empty());
    assert_eq!(app.counts().await, (1, 1, 1, 1));
    app.get(&format!("/api/businesses/{}", id(&gone)))
        .await
        .error(404);
    app.delete(&format!("/api/businesses/{}", id(&gone)))
        .await
        .error(404);
    let kept_detail = app.get(&format!("/api/businesses/{}", id(&kept))).await;
    assert_eq!(
        kept_detail.body["contacts"].as_array().map(Vec::len),
        Some(1)
    );
}
