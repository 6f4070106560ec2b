//! The writers: each owns its businesses and changes them one operation at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::model::{Biz, Run};
use crate::{CITIES, OWNED};

/// What a writer knows of its own business beyond the shared model.
#[derive(Debug, Default, Clone)]
struct Own {
    version: i64,
    contacts: i64,
    messages: Vec<i64>,
    sent: usize,
    enriched: bool,
}

pub(crate) async fn writer(run: Arc<Run>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut owned: HashMap<i64, Own> = HashMap::new();
    while !run.over() {
        if owned.len() < OWNED {
            let city = CITIES[rng.random_range(0..CITIES.len())];
            let app = run.app(&mut rng);
            let sent = Instant::now();
            let res = app
                .try_post(
                    "/api/businesses",
                    json!({"name": format!("w{seed} biz"), "city": city, "employee_count": 0}),
                )
                .await;
            let done = Instant::now();
            run.wrote(sent, done);
            let Some(res) = run.answered(app, "POST /api/businesses", res) else {
                continue;
            };
            if run.server_error("create", &res) || res.status != 201 {
                continue;
            }
            let id = res.body["id"].as_i64().unwrap_or_default();
            run.record_answer(done, app, &format!("create of business {id}"));
            let mut m = run.model.lock().unwrap_or_else(|p| p.into_inner());
            m.counters.creates_done.push(done);
            m.businesses.insert(
                id,
                Biz {
                    city: city.to_owned(),
                    city_since: done,
                    detail_writes: Vec::new(),
                    list_writes: Vec::new(),
                    in_flight: false,
                    last_sent: done,
                    deleted: None,
                },
            );
            owned.insert(id, Own::default());
            continue;
        }
        let ids: Vec<i64> = owned.keys().copied().collect();
        let id = ids[rng.random_range(0..ids.len())];
        let own = owned[&id].clone();
        let roll = rng.random_range(0..100);
        let app = run.app(&mut rng);
        let path = format!("/api/businesses/{id}");
        let mut moved_to = None;
        let sent = Instant::now();
        // (request, counts in detail score, counts in list score)
        let (res, detail, list, kind) = {
            {
                let mut m = run.model.lock().unwrap_or_else(|p| p.into_inner());
                let b = m.businesses.get_mut(&id).expect("owned");
                b.in_flight = true;
                b.last_sent = Instant::now();
                if roll >= 97 {
                    m.counters.deletes_sent += 1;
                    m.counters.contacts_removed_sent += own.contacts;
                    m.counters.messages_removed_sent += own.messages.len() as i64;
                }
            }
            if roll < 45 {
                let mut body = json!({"employee_count": own.version + 1});
                if rng.random_bool(0.3) {
                    let city = CITIES[rng.random_range(0..CITIES.len())];
                    body["city"] = json!(city);
                    moved_to = Some(city);
                }
                (app.try_patch(&path, body).await, true, true, "update")
            } else if roll < 65 && own.contacts < 6 {
                let res = app
                    .try_post(&format!("{path}/contacts"), json!({"name": "c"}))
                    .await;
                (res, true, true, "contact")
            } else if roll < 80 && own.messages.len() < 5 {
                let res = app
                    .try_post(&format!("{path}/messages"), json!({"message_text": "hi"}))
                    .await;
                (res, true, false, "message")
            } else if roll < 90 && own.sent < own.messages.len() {
                let msg = own.messages[own.sent];
                let res = app
                    .try_patch(&format!("/api/messages/{msg}"), json!({"status": "sent"}))
                    .await;
                (res, true, false, "send")
            } else if roll < 97 && !own.enriched {
                let res = app
                    .try_post(
                        &format!("/api/enrich/{id}"),
                        json!({"status": "enriched", "contacts": [],
                               "logs": [{"service": "checker", "status": "ok"}]}),
                    )
                    .await;
                (res, true, true, "enrich")
            } else if roll >= 97 {
                (app.try_delete(&path).await, false, false, "delete")
            } else {
                let mut m = run.model.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(b) = m.businesses.get_mut(&id) {
                    b.in_flight = false;
                }
                continue;
            }
        };
        let done = Instant::now();
        run.wrote(sent, done);
        let res = run.answered(app, &format!("{kind} of business {id}"), res);
        let failed = res
            .as_ref()
            .is_none_or(|res| run.server_error(kind, res) || res.status >= 400);
        let mut m = run.model.lock().unwrap_or_else(|p| p.into_inner());
        let Some(res) = res.filter(|_| !failed) else {
            // Its outcome is unknown: this business is no longer checked.
            m.businesses.remove(&id);
            owned.remove(&id);
            continue;
        };
        let answer = if kind == "update" {
            format!(
                " (answered employee_count {}, city {})",
                res.body["employee_count"], res.body["city"]
            )
        } else {
            String::new()
        };
        run.record_answer(done, app, &format!("{kind} of business {id}{answer}"));
        let own = owned.get_mut(&id).expect("owned");
        match kind {
            "update" => own.version += 1,
            "contact" => {
                own.contacts += 1;
                m.counters.contacts_done.push(done);
            }
            "message" => {
                own.messages
                    .push(res.body["id"].as_i64().unwrap_or_default());
                m.counters.messages_done.push(done);
            }
            "send" => own.sent += 1,
            "enrich" => own.enriched = true,
            _ => {}
        }
        let b = m.businesses.get_mut(&id).expect("owned");
        b.in_flight = false;
        if detail {
            b.detail_writes.push(done);
        }
        if list {
            b.list_writes.push(done);
        }
        if let Some(city) = moved_to
            && city != b.city
        {
            b.city = city.to_owned();
            b.city_since = done;
        }
        if kind == "delete" {
            b.deleted = Some(done);
            owned.remove(&id);
        }
    }
}
