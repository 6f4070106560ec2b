//! Text PostgreSQL cannot store or compare (NUL, unpaired surrogates, bytes that are not
//! UTF-8, text too long for its index) is a 400 naming the field, and writes nothing.
//! Each of these was a 500 from PostgreSQL before the domain parsers refused it.

use letip_tests::{TestApp, id};
use reqwest::Method;
use serde_json::{Value, json};

/// Asserts a 400 whose message starts with `field`.
fn refused(res: &letip_tests::Res, field: &str) {
    let message = res.error(400);
    assert!(message.starts_with(field), "{field}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_body_is_refused_by_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let b = app.business(json!({"name": "Freehold Dental"})).await;
    let path = format!("/api/businesses/{}", id(&b));
    let before = app.get(&path).await.body;
    let counts = app.counts().await;

    refused(
        &app.post("/api/businesses", json!({"name": "Nul\u{0}Co"}))
            .await,
        "name",
    );
    refused(
        &app.patch(&path, json!({"phone": "1\u{0}2"})).await,
        "phone",
    );
    refused(
        &app.post(
            &format!("{path}/messages"),
            json!({"message_text": "Hi\u{0}there"}),
        )
        .await,
        "message_text",
    );
    refused(
        &app.post(&format!("{path}/contacts"), json!({"title": "\u{0}"}))
            .await,
        "title",
    );
    refused(
        &app.post(
            &format!("/api/enrich/{}", id(&b)),
            json!({"status": "enriched", "logs": [
                {"service": "hunter", "status": "ok", "response_data": "a\u{0}b"}]}),
        )
        .await,
        "logs[0].response_data",
    );

    assert_eq!(app.counts().await, counts, "nothing was written");
    assert_eq!(
        app.get(&path).await.body,
        before,
        "the business is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaired_surrogates_and_bytes_that_are_not_utf8_are_refused_by_field() {
    let app = TestApp::spawn().await;
    let counts = app.counts().await;
    let json = "application/json";
    refused(
        &app.raw(
            Method::POST,
            "/api/businesses",
            json,
            r#"{"name": "a\ud800b"}"#,
        )
        .await,
        "name",
    );
    refused(
        &app.raw(
            Method::POST,
            "/api/businesses",
            json,
            r#"{"name": "A", "city": "\udc00"}"#,
        )
        .await,
        "city",
    );
    let res = app
        .send(
            app.client
                .post(app.url("/api/businesses"))
                .header("content-type", json)
                .body(b"{\"name\": \"A\", \"zip\": \"0\xff\"}".to_vec()),
        )
        .await;
    refused(&res, "zip");
    assert_eq!(app.counts().await, counts, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_postgresql_cannot_compare_is_a_400_not_a_500() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("city=a%00b", "city"),
        ("industry=%00", "industry"),
        ("city=%FF", "city"),
        ("industry=%ED%A0%80", "industry"),
    ] {
        refused(&app.get(&format!("/api/businesses?{query}")).await, field);
    }
    // A lenient decoder used to filter on U+FFFD; a valid filter still works.
    let res = app.get("/api/businesses?city=Caf%C3%A9+Bar").await;
    assert_eq!(res.status, 200, "{}", res.text);
    // Unknown parameters are still ignored, whatever they hold.
    assert_eq!(app.get("/api/businesses?x=%00&%FF=1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_text_is_bounded_by_what_its_index_holds() {
    let app = TestApp::spawn().await;
    // 600 distinct four-byte characters: 2,400 bytes that do not compress, the most an
    // indexed column is given. PostgreSQL stores and indexes them.
    let widest: String = (0..600u32)
        .map(|i| char::from_u32(0x1F300 + i).expect("a character"))
        .collect();
    let b = app
        .business(json!({"name": "Wide", "city": widest, "industry": widest}))
        .await;
    let res = app
        .get(&format!(
            "/api/businesses?city={}",
            url::form_urlencoded::byte_serialize(widest.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["data"][0]["id"], b["id"]);
    let counts = app.counts().await;
    let longer = format!("{widest}x");
    for field in ["city", "industry"] {
        refused(
            &app.post("/api/businesses", json!({"name": "A", field: longer}))
                .await,
            field,
        );
        refused(
            &app.patch(
                &format!("/api/businesses/{}", id(&b)),
                json!({field: longer}),
            )
            .await,
            field,
        );
    }
    refused(
        &app.post(
            &format!("/api/enrich/{}", id(&b)),
            json!({"status": "failed", "logs": [{"service": longer, "status": "x"}]}),
        )
        .await,
        "logs[0].service",
    );
    assert_eq!(app.counts().await, counts, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_states_what_the_server_enforces() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/openapi.json").await.body;
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let param = |op: &Value, name: &str| {
        op["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    let schema = |name: &str| doc["components"]["schemas"][name].clone();

    let detail = op("/api/businesses/{id}", "get");
    let id_schema = &param(&detail, "id")["schema"];
    assert_eq!(
        (id_schema["minimum"].as_i64(), id_schema["maximum"].as_i64()),
        (Some(1), Some(2147483647))
    );
    let list = op("/api/businesses", "get");
    let page = &param(&list, "page")["schema"];
    assert_eq!(
        (
            page["minimum"].as_i64(),
            page["maximum"].as_i64(),
            page["default"].as_i64()
        ),
        (Some(1), Some(100000), Some(1))
    );
    let limit = &param(&list, "limit")["schema"];
    assert_eq!(
        (
            limit["minimum"].as_i64(),
            limit["maximum"].as_i64(),
            limit["default"].as_i64()
        ),
        (Some(1), Some(100), Some(20))
    );

    let name = &schema("NewBusiness")["properties"]["name"];
    // 255 characters after trimming: a pattern states it (a maxLength would count the
    // white space trimmed away).
    assert_eq!(
        (name["minLength"].as_i64(), name["maxLength"].as_i64()),
        (Some(1), None)
    );
    assert!(
        name["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("{0,253}")),
        "{name}"
    );
    assert_eq!(schema("NewBusiness")["required"], json!(["name"]));
    for field in ["name", "state", "source"] {
        assert_eq!(
            schema("BusinessPatch")["properties"][field]["type"],
            "string",
            "{field} is not nullable on PATCH"
        );
    }
    assert_eq!(
        schema("BusinessPatch")["properties"]["city"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(
        schema("NewMessage")["properties"]["message_text"]["minLength"],
        1
    );
    assert_eq!(
        schema("NewBusiness")["properties"]["website"]["format"],
        "uri"
    );
    assert_eq!(
        schema("NewContact")["properties"]["email"]["format"],
        "email"
    );
    for s in [
        "NewBusiness",
        "BusinessPatch",
        "NewContact",
        "NewEnrichmentLog",
        "EnrichmentRun",
        "NewMessage",
        "MessageStatusUpdate",
    ] {
        assert_eq!(
            schema(s)["additionalProperties"],
            false,
            "{s} refuses unknown fields"
        );
    }

    for (path, method, codes) in [
        (
            "/api/businesses",
            "post",
            &["201", "400", "413", "500", "503"][..],
        ),
        ("/api/businesses", "get", &["200", "400", "500", "503"]),
        (
            "/api/businesses/{id}",
            "patch",
            &["200", "400", "404", "413", "500", "503"],
        ),
        (
            "/api/businesses/{id}",
            "delete",
            &["204", "400", "404", "500", "503"],
        ),
        (
            "/api/messages/{id}",
            "patch",
            &["200", "400", "404", "413", "500", "503"],
        ),
    ] {
        let responses = &op(path, method)["responses"];
        for code in codes {
            assert!(
                responses[code].is_object(),
                "{method} {path} documents {code}"
            );
        }
        for code in codes
            .iter()
            .filter(|c| c.starts_with('4') || c.starts_with('5'))
        {
            assert_eq!(
                responses[code]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path} {code}"
            );
        }
    }
    assert!(
        doc["info"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Cannot PUT")),
        "the NestJS-style 404 is documented"
    );
}
