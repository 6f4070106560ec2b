//! The server on the database the original backend made, as it is: it adopts the schema
//! with its data, answers every stored value as stored, leaves every column the original
//! reads and writes as it was, and the original backend's own statements keep working
//! beside it.

use std::sync::Arc;

use letip_tests::{TestApp, TestDb, id};
use serde_json::{Value, json};

const ORIGINAL_SCHEMA: &str = include_str!("../fixtures/original_schema.sql");
const ORIGINAL_DATA: &str = include_str!("../fixtures/original_data.sql");

const TABLES: &str = "'business', 'contact', 'enrichment_log', 'outreach_message'";

/// A database as the original backend left it, with its data.
async fn original_database() -> Arc<TestDb> {
    let db = Arc::new(TestDb::new());
    db.create().await;
    db.batch(ORIGINAL_SCHEMA).await;
    db.batch(ORIGINAL_DATA).await;
    db
}

/// Every column of the lead tables: name, position, type, precision, nullability, default.
async fn columns(db: &TestDb) -> Vec<Value> {
    db.rows(&format!(
        "SELECT table_name, column_name, ordinal_position, data_type, datetime_precision,
                is_nullable, column_default
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name IN ({TABLES})
         ORDER BY table_name, ordinal_position"
    ))
    .await
}

/// Every index of the lead tables, with its definition and validity.
async fn indexes(db: &TestDb) -> Vec<Value> {
    db.rows(&format!(
        "SELECT i.tablename, i.indexname, i.indexdef, x.indisvalid AS valid
         FROM pg_indexes i
         JOIN pg_class c ON c.relname = i.indexname
         JOIN pg_index x ON x.indexrelid = c.oid
         WHERE i.schemaname = 'public' AND i.tablename IN ({TABLES})
         ORDER BY i.tablename, i.indexname"
    ))
    .await
}

/// Every constraint and trigger of the lead tables.
async fn constraints_and_triggers(db: &TestDb) -> Vec<Value> {
    db.rows(&format!(
        "SELECT conrelid::regclass::text AS tab, conname AS name, pg_get_constraintdef(oid) AS def
         FROM pg_constraint WHERE conrelid::regclass::text IN ({TABLES})
         UNION ALL
         SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
         FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text IN ({TABLES})
         ORDER BY 1, 2"
    ))
    .await
}

async fn sql_count(db: &TestDb, sql: &str) -> i64 {
    let rows = db.rows(&format!("SELECT count(*) AS n FROM {sql}")).await;
    rows.first().and_then(|r| r["n"].as_i64()).expect("a count")
}

#[tokio::test]
async fn the_original_database_is_adopted_and_every_stored_value_answered_as_stored() {
    let db = original_database().await;
    let before = columns(&db).await;
    let app = TestApp::spawn_on_db(db.clone(), |_| {}).await;

    // No column the original backend reads or writes changed in any way.
    assert_eq!(columns(&db).await, before);
    // The original backend's bookkeeping is untouched.
    assert_eq!(sql_count(&db, "\"_prisma_migrations\"").await, 1);

    // Stats equal SQL, counting only the statuses the contract names.
    let stats = app.stats().await;
    assert_eq!(
        stats,
        json!({
            "totalBusinesses": sql_count(&db, "business").await,
            "enrichedBusinesses": sql_count(&db, "business WHERE enrichment_status = 'enriched'").await,
            "pendingEnrichment": sql_count(&db, "business WHERE enrichment_status = 'pending'").await,
            "totalContacts": sql_count(&db, "contact").await,
            "messagesSent": sql_count(&db, "outreach_message WHERE status = 'sent'").await,
            "messagesPending": sql_count(&db, "outreach_message WHERE status = 'generated'").await,
        })
    );
    assert_eq!(stats["totalBusinesses"], 7);
    assert_eq!(stats["pendingEnrichment"], 4);
    assert_eq!(stats["messagesPending"], 1, "a draft is not pending");

    // Every business lists with its stored values, newest first, ties by id.
    let list = app.get("/api/businesses?limit=100").await;
    assert_eq!(list.status, 200, "{}", list.text);
    let ids: Vec<i64> = list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(id)
        .collect();
    assert_eq!(ids, [6, 5, 4, 3, 2, 1, 7]);
    assert_eq!(list.body["meta"]["total"], 7);

    let stored = db
        .rows(
            r#"SELECT *, to_char(created_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created_js,
                      to_char(updated_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS updated_js
               FROM business ORDER BY id"#,
        )
        .await
        .into_iter()
        .map(|r| (r["id"].as_i64().expect("id"), r))
        .collect::<std::collections::HashMap<_, _>>();
    for row in list.body["data"].as_array().expect("data") {
        let s = &stored[&id(row)];
        if id(row) == 7 {
            // JSON has no NaN or infinity: they are answered null, as the original
            // backend's JSON.stringify answered them.
            assert_eq!(row["latitude"], Value::Null);
            assert_eq!(row["longitude"], Value::Null);
            assert_eq!(row["name"], "Floating Point Farm");
            continue;
        }
        for field in [
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
        ] {
            assert_eq!(row[field], s[field], "business {} field {field}", id(row));
        }
        // TIMESTAMP(3) without time zone holds UTC: answered as JavaScript dates.
        assert_eq!(row["created_at"], s["created_js"], "business {}", id(row));
        assert_eq!(row["updated_at"], s["updated_js"], "business {}", id(row));
    }
    let by_id = |i: i64| {
        list.body["data"]
            .as_array()
            .and_then(|d| d.iter().find(|b| id(b) == i))
            .expect("listed")
            .clone()
    };
    assert_eq!(by_id(1)["created_at"], "2026-11-20T10:00:00.123Z");
    assert_eq!(by_id(1)["updated_at"], "2026-11-21T09:30:00.456Z");
    assert_eq!(by_id(3)["enrichment_status"], "in_progress");
    assert_eq!(by_id(4)["state"], Value::Null);
    assert_eq!(by_id(4)["latitude"], 123.4);
    assert_eq!(by_id(4)["employee_count"], -5);
    assert_eq!(by_id(5)["name"], "N".repeat(300));
    assert_eq!(by_id(6)["name"], "   padded   ");
    assert_eq!(by_id(1)["contacts"][1]["email_verified"], Value::Null);

    // Every detail answers 200 with its stored children.
    for i in 1..=7 {
        let d = app.get(&format!("/api/businesses/{i}")).await;
        assert_eq!(d.status, 200, "business {i}: {}", d.text);
    }
    let one = app.get("/api/businesses/1").await.body;
    assert_eq!(
        one["enrichment_logs"][0]["request_data"],
        r#"{"domain":"freeholddental.example.com"}"#
    );
    assert_eq!(
        one["outreach_messages"][1]["sent_at"],
        "2026-11-21T11:00:00.789Z"
    );
    assert_eq!(one["contacts"][1]["email"], "not-an-email");
    let four = app.get("/api/businesses/4").await.body;
    assert_eq!(four["enrichment_logs"][0]["request_data"], "not json {");
    assert_eq!(four["enrichment_logs"][0]["response_data"], "");
    assert_eq!(four["outreach_messages"][0]["status"], "draft");

    // Filters take any value a row can hold.
    let long_city = "C".repeat(300);
    let city = app
        .get(&format!(
            "/api/businesses?city={long_city}&industry={}",
            "I".repeat(400)
        ))
        .await;
    assert_eq!(city.status, 200, "{}", city.text);
    assert_eq!(city.body["meta"]["total"], 1);
    assert_eq!(city.body["data"][0]["id"], 5);
    let pending = app.get("/api/businesses?enrichment_status=pending").await;
    let ids: Vec<i64> = pending.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(id)
        .collect();
    assert_eq!(ids, [6, 5, 2, 7]);

    // API writes work on the adopted schema, and the original backend can read them.
    let created = app
        .business(json!({"name": "Colts Neck Farm", "city": "Colts Neck"}))
        .await;
    assert_eq!(created["created_at"], created["updated_at"]);
    let written = db
        .rows(&format!(
            "SELECT state, enrichment_status, source, updated_at = created_at AS same,
                    abs(extract(epoch FROM updated_at - timezone('UTC', now()))) < 60 AS utc
             FROM business WHERE id = {}",
            id(&created)
        ))
        .await;
    assert_eq!(
        written,
        [
            json!({"state": "NJ", "enrichment_status": "pending", "source": "google_maps",
                "same": true, "utc": true})
        ]
    );
    let enriched = app
        .post(
            "/api/enrich/3",
            json!({"status": "enriched",
                   "contacts": [{"name": "Max", "email": "max@marlboro-motors.example.com"}],
                   "logs": [{"service": "hunter", "status": "success",
                             "request_data": {"domain": "marlboro-motors.example.com"},
                             "response_data": "raw text"}]}),
        )
        .await;
    assert_eq!(enriched.status, 200, "{}", enriched.text);
    assert_eq!(enriched.body["enrichment_status"], "enriched");
    assert_eq!(
        enriched.body["enrichment_logs"][0]["request_data"],
        r#"{"domain":"marlboro-motors.example.com"}"#
    );
    assert_eq!(
        enriched.body["enrichment_logs"][0]["response_data"],
        "raw text"
    );
    let stored_log = db
        .rows("SELECT request_data, response_data FROM enrichment_log WHERE business_id = 3")
        .await;
    assert_eq!(
        stored_log,
        [
            json!({"request_data": r#"{"domain":"marlboro-motors.example.com"}"#,
                "response_data": "raw text"})
        ]
    );
    let patched = app
        .patch("/api/businesses/4", json!({"phone": "732-555-0199"}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["phone"], "732-555-0199");
    assert_eq!(patched.body["latitude"], 123.4, "other stored values stay");
    assert_ne!(patched.body["updated_at"], "2026-11-20T13:00:00.000Z");
    assert_eq!(app.delete("/api/businesses/5").await.status, 204);
    assert_eq!(app.get("/api/businesses/5").await.status, 404);
    let message = app
        .post(
            "/api/businesses/1/messages",
            json!({"message_text": "Hi again", "contact_id": 1}),
        )
        .await;
    assert_eq!(message.status, 201, "{}", message.text);
    let sent = app
        .patch(
            &format!("/api/messages/{}", id(&message.body)),
            json!({"status": "sent"}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let contact = app
        .post("/api/businesses/2/contacts", json!({"name": "Ann"}))
        .await;
    assert_eq!(contact.status, 201, "{}", contact.text);
    assert_eq!(contact.body["email_verified"], false);

    // Still no column changed.
    assert_eq!(columns(&db).await, before);
}

/// Statements of the shape the original backend's Prisma client sends: quoted,
/// schema-qualified names, parameters sent as text and cast by the statement, `updated_at`
/// set by the client, `JSON.stringify` text into `request_data`.
const ORIGINAL_BACKEND_WRITES: &[&str] = &[
    r#"INSERT INTO "public"."business" ("name","city","state","enrichment_status","source","created_at","updated_at")
       VALUES ('Holmdel Hardware','Holmdel',NULL,'queued','google_maps','2026-12-01 08:00:00.000'::timestamp(3),'2026-12-01 08:00:00.000'::timestamp(3))"#,
    r#"UPDATE "public"."business" SET "phone" = '(732) 555-0142', "updated_at" = '2026-12-01 08:05:00.250'::timestamp(3)
       WHERE "public"."business"."name" = 'Holmdel Hardware'"#,
    r#"INSERT INTO "public"."contact" ("business_id","name","email","email_verified","is_primary","created_at","updated_at")
       SELECT "id",'Hal','hal@holmdel.example.com',NULL,true,'2026-12-01 08:06:00.000'::timestamp(3),'2026-12-01 08:06:00.000'::timestamp(3)
       FROM "public"."business" WHERE "name" = 'Holmdel Hardware'"#,
    r#"INSERT INTO "public"."enrichment_log" ("business_id","service","status","request_data","response_data","created_at")
       SELECT "id",'hunter','success','{"domain":"holmdel.example.com"}','{"emails":[]}','2026-12-01 08:07:00.000'::timestamp(3)
       FROM "public"."business" WHERE "name" = 'Holmdel Hardware'"#,
    r#"INSERT INTO "public"."outreach_message" ("business_id","message_text","status","generated_at")
       SELECT "id",'Hi Hal','draft','2026-12-01 08:08:00.000'::timestamp(3)
       FROM "public"."business" WHERE "name" = 'Holmdel Hardware'"#,
    r#"UPDATE "public"."outreach_message" SET "status" = 'sent', "sent_at" = '2026-12-01 08:09:00.000'::timestamp(3)
       WHERE "message_text" = 'Hi Hal'"#,
];

#[tokio::test]
async fn the_original_backend_keeps_writing_beside_the_service() {
    let db = original_database().await;
    let app = TestApp::spawn_on_db(db.clone(), |_| {}).await;
    for statement in ORIGINAL_BACKEND_WRITES {
        db.execute(statement).await;
    }
    // The original backend's updated_at is its own: the service's trigger leaves it.
    let row = db
        .rows(r#"SELECT id, updated_at FROM business WHERE name = 'Holmdel Hardware'"#)
        .await;
    let hardware = row.first().expect("inserted").clone();
    assert_eq!(hardware["updated_at"], "2026-12-01T08:05:00.25");

    // The service answers the original backend's rows as stored.
    let detail = app.get(&format!("/api/businesses/{}", id(&hardware))).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    let d = &detail.body;
    assert_eq!(d["enrichment_status"], "queued");
    assert_eq!(d["state"], Value::Null);
    assert_eq!(d["phone"], "(732) 555-0142");
    assert_eq!(d["updated_at"], "2026-12-01T08:05:00.250Z");
    assert_eq!(d["contacts"][0]["email_verified"], Value::Null);
    assert_eq!(
        d["enrichment_logs"][0]["request_data"],
        r#"{"domain":"holmdel.example.com"}"#
    );
    assert_eq!(d["outreach_messages"][0]["status"], "sent");
    assert_eq!(
        d["outreach_messages"][0]["sent_at"],
        "2026-12-01T08:09:00.000Z"
    );

    // An update by another writer that does not set updated_at gets one (UTC), and one
    // that changes nothing keeps it.
    db.execute(&format!(
        "UPDATE business SET zip = '07733' WHERE id = {}",
        id(&hardware)
    ))
    .await;
    let touched = db
        .rows(&format!(
            "SELECT updated_at > '2026-12-01 08:05:00.250' AS moved,
                    abs(extract(epoch FROM updated_at - timezone('UTC', now()))) < 60 AS utc
             FROM business WHERE id = {}",
            id(&hardware)
        ))
        .await;
    assert_eq!(touched, [json!({"moved": true, "utc": true})]);

    // The original backend's delete cascades as before.
    db.execute(&format!(
        r#"DELETE FROM "public"."business" WHERE "id" = {}"#,
        id(&hardware)
    ))
    .await;
    assert_eq!(
        sql_count(&db, "contact WHERE email = 'hal@holmdel.example.com'").await,
        0
    );
    assert_eq!(
        app.get(&format!("/api/businesses/{}", id(&hardware)))
            .await
            .status,
        404
    );
    // And it can still write every odd value its schema admits.
    db.execute(
        r#"INSERT INTO "public"."business" ("name","state","enrichment_status","latitude","updated_at")
           VALUES (repeat('x', 1000), NULL, 'weird', 999, '2026-12-01 09:00:00'::timestamp(3))"#,
    )
    .await;
    assert_eq!(app.stats().await["totalBusinesses"], 8);
}

#[tokio::test]
async fn a_fresh_database_and_an_adopted_one_end_with_one_schema() {
    let fresh = TestApp::spawn().await;
    let adopted_db = original_database().await;
    let adopted = TestApp::spawn_on_db(adopted_db.clone(), |_| {}).await;

    assert_eq!(columns(&fresh.db).await, columns(&adopted.db).await);
    assert_eq!(indexes(&fresh.db).await, indexes(&adopted.db).await);
    assert_eq!(
        constraints_and_triggers(&fresh.db).await,
        constraints_and_triggers(&adopted.db).await
    );
    // Every index is valid, and the service's own are there beside the original's.
    let all = indexes(&adopted.db).await;
    assert!(all.iter().all(|i| i["valid"] == true), "{all:#?}");
    let names: Vec<&str> = all.iter().filter_map(|i| i["indexname"].as_str()).collect();
    for name in [
        "business_city_idx",
        "contact_email_idx",
        "letip_business_created_idx",
        "letip_business_city_created_idx",
        "letip_outreach_message_contact_id_idx",
    ] {
        assert!(names.contains(&name), "{name} missing: {names:?}");
    }
    // Starting again finds nothing to do and changes nothing.
    let again = adopted.spawn_beside(|_| {}).await;
    assert_eq!(indexes(&again.db).await, all);
}

#[tokio::test]
async fn an_interrupted_index_build_is_rebuilt_at_the_next_start() {
    let db = original_database().await;
    let first = TestApp::spawn_on_db(db.clone(), |_| {}).await;
    first.stop().await;
    // What an interrupted CREATE INDEX CONCURRENTLY leaves: an index marked invalid.
    db.execute(
        "UPDATE pg_index SET indisvalid = false
         WHERE indexrelid = 'letip_business_created_idx'::regclass",
    )
    .await;
    let _second = TestApp::spawn_on_db(db.clone(), |_| {}).await;
    let rows = db
        .rows(
            "SELECT indisvalid AS valid FROM pg_index
             WHERE indexrelid = 'letip_business_created_idx'::regclass",
        )
        .await;
    assert_eq!(rows, [json!({"valid": true})]);
}

#[tokio::test]
async fn what_the_service_writes_is_utc_whatever_the_session_time_zone() {
    let db = original_database().await;
    // A server far from UTC: sessions default to UTC+14.
    let name = db
        .url
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_owned();
    db.execute(&format!(
        "ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Kiritimati'"
    ))
    .await;
    let app = TestApp::spawn_on_db(db.clone(), |_| {}).await;
    let b = app.business(json!({"name": "Keyport Kayaks"})).await;
    let contact = app
        .post(
            &format!("/api/businesses/{}/contacts", id(&b)),
            json!({"name": "Kay"}),
        )
        .await;
    assert_eq!(contact.status, 201);
    let message = app
        .post(
            &format!("/api/businesses/{}/messages", id(&b)),
            json!({"message_text": "Hi"}),
        )
        .await;
    assert_eq!(message.status, 201);
    let sent = app
        .patch(
            &format!("/api/messages/{}", id(&message.body)),
            json!({"status": "sent"}),
        )
        .await;
    assert_eq!(sent.status, 200);
    let now = chrono_now_millis();
    for (what, at) in [
        ("business created_at", &b["created_at"]),
        ("contact created_at", &contact.body["created_at"]),
        ("message generated_at", &message.body["generated_at"]),
        ("message sent_at", &sent.body["sent_at"]),
    ] {
        let at = at.as_str().expect("a timestamp");
        let millis = parse_millis(at);
        assert!(
            (now - millis).abs() < 60_000,
            "{what} {at} is not the UTC time now"
        );
    }
    // And the stored rows agree, read by a session in the database's own zone.
    let stored = db
        .rows(&format!(
            "SELECT abs(extract(epoch FROM created_at - timezone('UTC', now()))) < 60 AS utc
             FROM business WHERE id = {}",
            id(&b)
        ))
        .await;
    assert_eq!(stored, [json!({"utc": true})]);
    // Stored rows read back as they were stored, whatever the zone.
    let one = app.get("/api/businesses/1").await;
    assert_eq!(one.body["created_at"], "2026-11-20T10:00:00.123Z");
}

fn chrono_now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn parse_millis(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("an RFC 3339 timestamp")
        .timestamp_millis()
}
