use letip_tests::{TestApp, id};
use serde_json::{Value, json};

fn ids(res: &Value) -> Vec<i64> {
    res["data"]
        .as_array()
        .expect("data is an array")
        .iter()
        .map(id)
        .collect()
}

async fn enrich(app: &TestApp, b: &Value, status: &str) {
    let res = app
        .post(&format!("/api/enrich/{}", id(b)), json!({"status": status}))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_list_has_zero_pages() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/businesses").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-cache"), Some("BYPASS"));
    assert_eq!(
        res.body,
        json!({"data": [], "meta": {"total": 0, "page": 1, "limit": 20, "totalPages": 0}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_is_newest_first_with_contacts_and_ties_broken_by_id() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.business(json!({"name": format!("B{i}")})).await);
    }
    let contact = app
        .post(
            &format!("/api/businesses/{}/contacts", id(&created[1])),
            json!({"name": "Ann", "email": "ann@b1.example.com"}),
        )
        .await;
    assert_eq!(contact.status, 201);

    let res = app.get("/api/businesses").await;
    let mut expected: Vec<i64> = created.iter().map(id).collect();
    expected.reverse();
    assert_eq!(ids(&res.body), expected);
    let b1 = res.body["data"]
        .as_array()
        .and_then(|d| d.iter().find(|b| b["id"] == created[1]["id"]))
        .expect("B1 is listed");
    assert_eq!(b1["contacts"][0]["email"], "ann@b1.example.com");
    assert_eq!(b1["name"], "B1");
    assert!(
        res.body["data"][0]["contacts"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    // The same instant for all: the id decides, highest first.
    app.db
        .execute("UPDATE business SET created_at = '2026-01-01T00:00:00Z'")
        .await;
    let tied = app.get("/api/businesses?limit=3").await;
    assert_eq!(ids(&tied.body), expected.get(..3).expect("three").to_vec());
    let rest = app.get("/api/businesses?limit=3&page=2").await;
    assert_eq!(ids(&rest.body), expected.get(3..).expect("two").to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_edges() {
    let app = TestApp::spawn().await;
    for i in 0..7 {
        app.business(json!({"name": format!("B{i}")})).await;
    }
    let meta = |v: &Value| v["meta"].clone();

    let last = app.get("/api/businesses?page=3&limit=3").await;
    assert_eq!(ids(&last.body).len(), 1);
    assert_eq!(
        meta(&last.body),
        json!({"total": 7, "page": 3, "limit": 3, "totalPages": 3})
    );

    let past = app.get("/api/businesses?page=4&limit=3").await;
    assert_eq!(past.status, 200);
    assert!(ids(&past.body).is_empty());
    assert_eq!(
        meta(&past.body),
        json!({"total": 7, "page": 4, "limit": 3, "totalPages": 3})
    );

    let one = app.get("/api/businesses?limit=1").await;
    assert_eq!(meta(&one.body)["totalPages"], 7);
    let max = app.get("/api/businesses?limit=100").await;
    assert_eq!(ids(&max.body).len(), 7);
    assert_eq!(meta(&max.body)["totalPages"], 1);

    for q in [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "page=",
        "limit=0",
        "limit=101",
        "limit=-5",
        "limit=ten",
        "limit=1&limit=2",
    ] {
        let res = app.get(&format!("/api/businesses?{q}")).await;
        let field = q.split('=').next().expect("a key");
        assert!(res.error(400).contains(field), "{q}: {}", res.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_match_exactly_alone_and_combined() {
    let app = TestApp::spawn().await;
    let mut all = Vec::new();
    for (name, city, industry, status) in [
        ("a", "Freehold", "Dental", None),
        ("b", "Freehold", "Dental", Some("enriched")),
        ("c", "Freehold", "Legal", Some("failed")),
        ("d", "Red Bank", "Dental", Some("enriched")),
        ("e", "Red Bank", "Legal", None),
        ("f", "freehold", "dental", None),
    ] {
        let b = app
            .business(json!({"name": name, "city": city, "industry": industry}))
            .await;
        if let Some(s) = status {
            enrich(&app, &b, s).await;
        }
        all.push(b);
    }
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|b| b["name"].as_str().expect("name").to_owned())
            .collect();
        n.sort();
        n
    };
    for (q, expected) in [
        ("city=Freehold", vec!["a", "b", "c"]),
        ("city=freehold", vec!["f"]),
        ("industry=Dental", vec!["a", "b", "d"]),
        ("enrichment_status=enriched", vec!["b", "d"]),
        ("enrichment_status=pending", vec!["a", "e", "f"]),
        ("enrichment_status=failed", vec!["c"]),
        ("city=Freehold&industry=Dental", vec!["a", "b"]),
        ("industry=Dental&city=Freehold", vec!["a", "b"]),
        ("city=Red%20Bank&enrichment_status=enriched", vec!["d"]),
        (
            "city=Red+Bank&industry=Legal&enrichment_status=pending",
            vec!["e"],
        ),
        (
            "city=Freehold&industry=Dental&enrichment_status=failed",
            vec![],
        ),
        ("city=Nowhere", vec![]),
        ("city=", vec!["a", "b", "c", "d", "e", "f"]),
        ("utm_source=newsletter", vec!["a", "b", "c", "d", "e", "f"]),
    ] {
        let res = app.get(&format!("/api/businesses?{q}")).await;
        assert_eq!(res.status, 200, "{q}: {}", res.text);
        assert_eq!(names(&res.body), expected, "{q}");
        assert_eq!(res.body["meta"]["total"], expected.len(), "{q}");
    }
    for q in ["enrichment_status=bogus", "enrichment_status=ENRICHED"] {
        let res = app.get(&format!("/api/businesses?{q}")).await;
        assert!(res.error(400).contains("enrichment_status"), "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_facet_filters_find_long_values_as_well_as_short_ones() {
    // Short values are served by the partial two-facet indexes, long ones (their bytes
    // together past the bound) by the one-facet indexes: both find every row.
    let app = TestApp::spawn().await;
    let mut made = Vec::new();
    // (city, industry): bytes together 20 and 980 (the bound is 1,000), 994 and
    // 1,028 (the index holds the row, the filter does not state its predicate) and
    // 2,208 (the index does not hold it either). At most 600 characters each.
    for (i, (city, industry)) in [
        ("c".repeat(9), "i".repeat(9)),
        ("c".repeat(489), "i".repeat(489)),
        ("€".repeat(330), "i".repeat(3)),
        ("€".repeat(340), "i".repeat(7)),
        ("🌀".repeat(550), "i".repeat(7)),
    ]
    .into_iter()
    .enumerate()
    {
        let (city, industry) = (format!("{i}{city}"), format!("{i}{industry}"));
        let b = app
            .business(json!({"name": format!("n{i}"), "city": city, "industry": industry}))
            .await;
        enrich(&app, &b, "enriched").await;
        made.push((b, city, industry));
    }
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for (b, city, industry) in &made {
        for q in [
            format!("city={}&industry={}", enc(city), enc(industry)),
            format!("city={}&enrichment_status=enriched", enc(city)),
            format!("industry={}&enrichment_status=enriched", enc(industry)),
            format!(
                "city={}&industry={}&enrichment_status=enriched",
                enc(city),
                enc(industry)
            ),
        ] {
            let res = app.get(&format!("/api/businesses?{q}")).await;
            assert_eq!(res.status, 200, "{}", res.text);
            assert_eq!(ids(&res.body), vec![id(b)], "{} bytes", city.len());
            assert_eq!(res.body["meta"]["total"], 1, "{} bytes", city.len());
        }
    }
}
