use letip_tests::{TestApp, id};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrichment_run_records_status_contacts_and_logs_at_once() {
    let app = TestApp::spawn().await;
    let b = app.business(json!({"name": "Acme"})).await;
    let res = app
        .post(
            &format!("/api/enrich/{}", id(&b)),
            json!({
                "status": "enriched",
                "contacts": [{"name": "Ann", "email": "ann@acme.example.com", "is_primary": true},
                             {"name": "Bob"}],
                "logs": [{"service": "hunter", "status": "success",
                          "request_data": {"domain": "acme.example.com"},
                          "response_data": {"emails": 2}},
                         {"service": "apollo", "status": "error", "error_message": "rate limited"}]
            }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let d = &res.body;
    assert_eq!(d["enrichment_status"], "enriched");
    assert_eq!(d["contacts"].as_array().map(Vec::len), Some(2));
    assert_eq!(d["enrichment_logs"].as_array().map(Vec::len), Some(2));
    assert_eq!(d["outreach_messages"], json!([]));
    let log = d["enrichment_logs"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["service"] == "hunter"))
        .expect("the hunter log");
    // Log data is answered as the text stored, as the original backend answered its
    // JSON.stringify output.
    assert_eq!(log["request_data"], r#"{"domain":"acme.example.com"}"#);
    assert_eq!(log["response_data"], r#"{"emails":2}"#);
    assert_eq!(log["error_message"], serde_json::Value::Null);
    for f in [
        "id",
        "business_id",
        "service",
        "status",
        "request_data",
        "response_data",
        "error_message",
        "created_at",
    ] {
        assert!(log.get(f).is_some(), "{f}");
    }
    // The answer is what the detail page shows.
    let detail = app.get(&format!("/api/businesses/{}", id(&b))).await;
    assert_eq!(&detail.body, d);
    let stats = app.stats().await;
    assert_eq!(stats["enrichedBusinesses"], 1);
    assert_eq!(stats["pendingEnrichment"], 0);
    assert_eq!(stats["totalContacts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_run_writes_nothing_at_all() {
    let app = TestApp::spawn().await;
    let b = app.business(json!({"name": "Acme"})).await;
    let path = format!("/api/enrich/{}", id(&b));
    for (body, field) in [
        (json!({"status": "pending"}), "status"),
        (json!({"status": "done"}), "status"),
        (json!({}), "status"),
        (
            json!({"status": "enriched", "contacts": [{"name": "ok"}, {"email": "broken"}]}),
            "contacts[1].email",
        ),
        (
            json!({"status": "enriched", "logs": [{"service": "hunter"}]}),
            "status",
        ),
        (
            json!({"status": "enriched", "logs": [{"service": "", "status": "x"}]}),
            "service",
        ),
        (
            json!({"status": "enriched", "contacts": "none"}),
            "contacts",
        ),
        (json!({"status": "enriched", "extra": true}), "extra"),
    ] {
        let res = app.post(&path, body.clone()).await;
        assert!(res.error(400).contains(field), "{body}: {}", res.text);
    }
    assert_eq!(app.counts().await, (1, 0, 0, 0));
    let detail = app
        .get(&path.replace("/api/enrich/", "/api/businesses/"))
        .await;
    assert_eq!(detail.body["enrichment_status"], "pending");
    app.post("/api/enrich/9999", json!({"status": "failed"}))
        .await
        .error(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_shows_the_10_newest_logs_and_5_newest_messages() {
    let app = TestApp::spawn().await;
    let b = app.business(json!({"name": "Busy"})).await;
    let logs: Vec<_> = (0..12)
        .map(|i| json!({"service": format!("s{i}"), "status": "success"}))
        .collect();
    app.post(
        &format!("/api/enrich/{}", id(&b)),
        json!({"status": "failed", "logs": logs}),
    )
    .await;
    for i in 0..7 {
        app.post(
            &format!("/api/businesses/{}/messages", id(&b)),
            json!({"message_text": format!("m{i}")}),
        )
        .await;
    }
    // Equal timestamps within one statement: the id breaks the tie, newest first.
    let d = app.get(&format!("/api/businesses/{}", id(&b))).await.body;
    let services: Vec<_> = d["enrichment_logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["service"].as_str().expect("service").to_owned())
        .collect();
    assert_eq!(services.len(), 10);
    assert_eq!(services.first().map(String::as_str), Some("s11"));
    assert!(!services.contains(&"s0".to_owned()) && !services.contains(&"s1".to_owned()));
    let texts: Vec<_> = d["outreach_messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["message_text"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(texts, ["m6", "m5", "m4", "m3", "m2"]);
}
