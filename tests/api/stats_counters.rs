//! The stats counters PostgreSQL keeps: equal to the tables' counts after any mix of
//! concurrent writes, by the API and by other writers, and recounted on demand.

use std::sync::Arc;

use letip_tests::{TestApp, TestDb, id};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The six stats as the tables count them.
async fn counted(db: &TestDb) -> Value {
    let rows = db
        .rows(
            "SELECT (SELECT count(*) FROM business) AS \"totalBusinesses\",
                    (SELECT count(*) FROM business WHERE enrichment_status = 'enriched')
                        AS \"enrichedBusinesses\",
                    (SELECT count(*) FROM business WHERE enrichment_status = 'pending')
                        AS \"pendingEnrichment\",
                    (SELECT count(*) FROM contact) AS \"totalContacts\",
                    (SELECT count(*) FROM outreach_message WHERE status = 'sent')
                        AS \"messagesSent\",
                    (SELECT count(*) FROM outreach_message WHERE status = 'generated')
                        AS \"messagesPending\"",
        )
        .await;
    rows.into_iter().next().expect("one row")
}

/// One writer's share of the load: every kind of write, at random, on ids it made or
/// found.
async fn writer(app: Arc<TestApp>, seed: u64, operations: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut businesses: Vec<i64> = Vec::new();
    let mut contacts: Vec<i64> = Vec::new();
    let mut messages: Vec<i64> = Vec::new();
    for _ in 0..operations {
        let pick = |v: &Vec<i64>, rng: &mut StdRng| {
            (!v.is_empty()).then(|| v[rng.random_range(0..v.len())])
        };
        match rng.random_range(0..10) {
            0 | 1 => {
                let b = app
                    .business(json!({"name": format!("Writer {seed}")}))
                    .await;
                businesses.push(id(&b));
            }
            2 => {
                if let Some(b) = pick(&businesses, &mut rng) {
                    let res = app
                        .post(
                            &format!("/api/businesses/{b}/contacts"),
                            json!({"name": "C"}),
                        )
                        .await;
                    if res.status == 201 {
                        contacts.push(id(&res.body));
                    }
                }
            }
            3 => {
                if let Some(b) = pick(&businesses, &mut rng) {
                    let res = app
                        .post(
                            &format!("/api/businesses/{b}/messages"),
                            json!({"message_text": "Hi"}),
                        )
                        .await;
                    if res.status == 201 {
                        messages.push(id(&res.body));
                    }
                }
            }
            4 => {
                if let Some(m) = pick(&messages, &mut rng) {
                    let status = if rng.random_bool(0.7) {
                        "sent"
                    } else {
                        "failed"
                    };
                    app.patch(&format!("/api/messages/{m}"), json!({"status": status}))
                        .await;
                }
            }
            5 => {
                if let Some(b) = pick(&businesses, &mut rng) {
                    let status = if rng.random_bool(0.7) {
                        "enriched"
                    } else {
                        "failed"
                    };
                    app.post(
                        &format!("/api/enrich/{b}"),
                        json!({"status": status, "contacts": [{"name": "E1"}, {"name": "E2"}],
                               "logs": [{"service": "s", "status": "ok"}]}),
                    )
                    .await;
                }
            }
            6 => {
                if let Some(c) = pick(&contacts, &mut rng) {
                    app.delete(&format!("/api/contacts/{c}")).await;
                }
            }
            7 => {
                if let Some(b) = pick(&businesses, &mut rng) {
                    app.patch(&format!("/api/businesses/{b}"), json!({"city": "Freehold"}))
                        .await;
                }
            }
            _ => {
                // Deletes cascade to its contacts, logs and messages.
                if let Some(b) = pick(&businesses, &mut rng) {
                    app.delete(&format!("/api/businesses/{b}")).await;
                    businesses.retain(|x| *x != b);
                }
            }
        }
    }
}

/// Another writer: bulk statements in the database itself, as scripts and the original
/// backend write.
async fn bulk_writer(db: Arc<TestDb>, rounds: usize) {
    for round in 0..rounds {
        db.batch(&format!(
            "INSERT INTO business (name, enrichment_status, updated_at)
             SELECT 'Bulk {round}-' || i, (ARRAY['pending', 'enriched', 'failed', 'draft'])[1 + i % 4],
                    timezone('UTC', now())
             FROM generate_series(1, 20) AS i;
             INSERT INTO contact (business_id, name, updated_at)
             SELECT id, 'Bulk contact', timezone('UTC', now()) FROM business
             WHERE name LIKE 'Bulk {round}-%';
             INSERT INTO outreach_message (business_id, message_text, status)
             SELECT id, 'Bulk', (ARRAY['generated', 'sent', 'draft'])[1 + id % 3] FROM business
             WHERE name LIKE 'Bulk {round}-%';
             UPDATE business SET enrichment_status = 'enriched'
             WHERE name LIKE 'Bulk {round}-%' AND id % 2 = 0;
             UPDATE outreach_message SET status = 'generated' WHERE status = 'draft'
               AND business_id IN (SELECT id FROM business WHERE name LIKE 'Bulk {round}-%');
             DELETE FROM business WHERE name LIKE 'Bulk {round}-%' AND id % 3 = 0;"
        ))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_counters_equal_the_tables_after_a_concurrent_mixed_load() {
    // No cache: every stats read is a read of the counters.
    let app = Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for seed in 0..6 {
        tasks.push(tokio::spawn(writer(app.clone(), seed, 120)));
    }
    tasks.push(tokio::spawn(bulk_writer(app.db.clone(), 15)));
    for t in tasks {
        t.await.expect("a writer finishes");
    }
    let expected = counted(&app.db).await;
    assert_eq!(app.stats().await, expected);
    // The lists the counters count take their totals from them: the same numbers.
    for (query, counter) in [
        ("", "totalBusinesses"),
        ("&enrichment_status=enriched", "enrichedBusinesses"),
        ("&enrichment_status=pending", "pendingEnrichment"),
    ] {
        let res = app.get(&format!("/api/businesses?limit=1{query}")).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.body["meta"]["total"], expected[counter], "{query}");
    }
    let failed = app
        .db
        .rows("SELECT count(*) AS n FROM business WHERE enrichment_status = 'failed'")
        .await
        .into_iter()
        .next()
        .expect("one row")["n"]
        .clone();
    let res = app
        .get("/api/businesses?limit=1&enrichment_status=failed")
        .await;
    assert_eq!(res.body["meta"]["total"], failed, "{}", res.text);
    // The load did exercise every counter.
    for k in [
        "totalBusinesses",
        "enrichedBusinesses",
        "pendingEnrichment",
        "totalContacts",
        "messagesSent",
        "messagesPending",
    ] {
        assert!(
            expected[k].as_i64().unwrap_or(0) > 0,
            "{k} is 0: {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recount_restores_the_counters_after_writes_without_triggers() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.business(json!({"name": format!("B{i}")})).await;
    }
    // A restore or a bulk load with triggers off writes rows the counters do not see.
    app.db
        .batch(
            "SET session_replication_role = replica;
             INSERT INTO business (name, enrichment_status, updated_at)
             SELECT 'Restored', 'enriched', timezone('UTC', now()) FROM generate_series(1, 7);",
        )
        .await;
    assert_eq!(app.stats().await["totalBusinesses"], 5);
    letip_store::recount_stats(&app.db.url)
        .await
        .expect("the recount runs");
    assert_eq!(app.stats().await, counted(&app.db).await);
    assert_eq!(app.stats().await["totalBusinesses"], 12);
    assert_eq!(app.stats().await["enrichedBusinesses"], 7);

    // TRUNCATE fires no delete trigger: the counters are recounted after it.
    app.db
        .batch("TRUNCATE business, contact, enrichment_log, outreach_message")
        .await;
    assert_eq!(app.stats().await, counted(&app.db).await);
    assert_eq!(app.stats().await["totalBusinesses"], 0);
}

/// Writes made with triggers off (as a logical replication subscriber applies them):
/// the server's periodic reconcile brings the counters back to the tables within its
/// period, under concurrent writers too, counting each correction, and its cached
/// stats with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_counters_heal_within_the_reconcile_period_after_writes_without_triggers() {
    let redis = letip_testkit::RedisServer::start();
    let app = Arc::new(
        TestApp::spawn_with(|c| {
            c.stats_reconcile_secs = 1;
            c.cache_backend = letip_server::CacheBackend::Redis;
            c.redis_url = redis.url();
        })
        .await,
    );
    for i in 0..5 {
        app.business(json!({"name": format!("B{i}")})).await;
    }
    assert_eq!(app.stats().await["totalBusinesses"], 5, "cached now");
    let bypass = |app: Arc<TestApp>| async move {
        app.db
            .batch(
                "SET session_replication_role = replica;
                 INSERT INTO business (name, enrichment_status, updated_at)
                 SELECT 'Replicated', 'enriched', timezone('UTC', now())
                 FROM generate_series(1, 7);
                 DELETE FROM business WHERE name = 'B0';",
            )
            .await;
    };
    bypass(app.clone()).await;
    // Writers through the API all along, each firing its triggers.
    let writers: Vec<_> = (10..14)
        .map(|seed| tokio::spawn(writer(app.clone(), seed, 60)))
        .collect();
    bypass(app.clone()).await;
    for w in writers {
        w.await.expect("a writer finishes");
    }
    letip_testkit::eventually("the stats equal the tables", async || {
        app.stats().await == counted(&app.db).await
    })
    .await;
    assert_eq!(
        app.stats().await["totalBusinesses"],
        counted(&app.db).await["totalBusinesses"]
    );
    let corrections = async || -> f64 {
        app.get("/metrics")
            .await
            .text
            .lines()
            .filter(|l| l.starts_with("letip_stats_corrections_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let corrected = corrections().await;
    assert!(
        corrected >= 2.0,
        "businesses and enriched corrected: {corrected}"
    );
    // Corrected once, not over: the next periods find nothing to add.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        corrections().await,
        corrected,
        "no correction after the last"
    );
    assert_eq!(app.stats().await, counted(&app.db).await);
}
