//! The readers: details, lists and stats on every instance, each read checked against
//! the writes answered before it was sent; and what PostgreSQL and Redis hold when one
//! is found stale.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::CITIES;
use crate::model::{Biz, Run, detail_score, list_score};

/// Records what PostgreSQL holds of `ids` now, after a read of them was found stale: it
/// tells a write that was not committed when answered from a read that missed one.
async fn note_database(run: &Run, read: &str, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    let list = ids
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let rows = run
        .a
        .db
        .rows(&format!(
            "SELECT id, city, employee_count, enrichment_status, \
             (SELECT count(*) FROM contact c WHERE c.business_id = b.id) AS contacts, \
             updated_at::text FROM business b WHERE id IN ({list})"
        ))
        .await;
    let note = format!(
        "at {:.3}s, after {read}: {}",
        run.started.elapsed().as_secs_f64(),
        Value::from(rows)
    );
    run.report
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .notes
        .push(note);
}

async fn read_detail(run: &Run, rng: &mut StdRng) {
    // `snapshot`: writes sent from then on are not in `before`. Taken under the lock
    // writers take to record a send, so none slips between the two.
    let (id, before, snapshot) = {
        let m = run.model.lock().unwrap_or_else(|p| p.into_inner());
        if m.businesses.is_empty() {
            return;
        }
        let ids: Vec<&i64> = m.businesses.keys().collect();
        let id = *ids[rng.random_range(0..ids.len())];
        (id, m.businesses[&id].clone(), Instant::now())
    };
    let app = run.reading_app(rng);
    let sent = Instant::now();
    let path = format!("/api/businesses/{id}");
    let Some(res) = run.answered(app, &format!("GET {path}"), app.try_get(&path).await) else {
        return;
    };
    if run.server_error("detail", &res) {
        return;
    }
    let after = {
        let m = run.model.lock().unwrap_or_else(|p| p.into_inner());
        m.businesses.get(&id).cloned()
    };
    let written_meanwhile = after
        .as_ref()
        .is_none_or(|b| b.in_flight || b.last_sent >= snapshot);
    if let Some(deleted) = before.deleted {
        if res.status != 404 {
            run.stale(
                sent,
                deleted,
                format!("business {id} shown after its delete"),
            );
        }
        return;
    }
    if res.status == 404 {
        if !(before.in_flight || written_meanwhile) {
            run.stale(sent, sent, format!("business {id} missing"));
        }
        return;
    }
    let score = detail_score(&res.body);
    if let Some(&missed) = before.detail_writes.get(score) {
        note_database(run, &format!("GET {path}"), &[id]).await;
        run.stale(
            sent,
            missed,
            format!(
                "detail {id} on {} ({}) shows {score} of {} writes",
                run.name(app),
                res.header("x-cache").unwrap_or("-"),
                before.detail_writes.len()
            ),
        );
    }
}

async fn read_list(run: &Run, rng: &mut StdRng) {
    let city = rng
        .random_bool(0.8)
        .then(|| CITIES[rng.random_range(0..CITIES.len())]);
    // As in `read_detail`, the snapshot's instant is taken under the lock.
    let (before, snapshot): (HashMap<i64, Biz>, Instant) = {
        let m = run.model.lock().unwrap_or_else(|p| p.into_inner());
        let before = m
            .businesses
            .iter()
            .filter(|(_, b)| city.is_none_or(|c| b.city == c))
            .map(|(id, b)| (*id, b.clone()))
            .collect();
        (before, Instant::now())
    };
    let creates_done = {
        let m = run.model.lock().unwrap_or_else(|p| p.into_inner());
        m.counters.creates_done.clone()
    };
    let app = run.reading_app(rng);
    let path = match city {
        Some(c) => format!("/api/businesses?limit=100&city={}", c.replace(' ', "%20")),
        None => "/api/businesses?limit=100".to_owned(),
    };
    let sent = Instant::now();
    let Some(res) = run.answered(app, &format!("GET {path}"), app.try_get(&path).await) else {
        return;
    };
    if run.server_error("list", &res) {
        return;
    }
    let cache = res.header("x-cache").unwrap_or("-").to_owned();
    *run.report
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .list_cache
        .entry(cache.clone())
        .or_default() += 1;
    let path = format!("{path} on {} ({cache})", run.name(app));
    let after: HashMap<i64, Biz> = {
        let m = run.model.lock().unwrap_or_else(|p| p.into_inner());
        before
            .keys()
            .filter_map(|id| m.businesses.get(id).map(|b| (*id, b.clone())))
            .collect()
    };
    let rows = res.body["data"].as_array().cloned().unwrap_or_default();
    let mut suspects = Vec::new();
    let mut shown = HashMap::new();
    for row in &rows {
        let id = row["id"].as_i64().unwrap_or_default();
        shown.insert(id, row);
        let Some(b) = before.get(&id) else { continue };
        if let Some(deleted) = b.deleted {
            run.stale(sent, deleted, format!("{path} shows deleted business {id}"));
            continue;
        }
        let score = list_score(row);
        if let Some(&missed) = b.list_writes.get(score) {
            suspects.push(id);
            run.stale(
                sent,
                missed,
                format!(
                    "{path} shows business {id} at {score} of {} writes",
                    b.list_writes.len()
                ),
            );
        }
    }
    let total = res.body["meta"]["total"].as_u64().unwrap_or(0);
    // The total counts at least every business that was surely in the list when the
    // read was sent; a total that counts fewer missed answered writes.
    let counted: Vec<Instant> = if city.is_some() {
        let mut since: Vec<Instant> = before
            .iter()
            .filter(|(id, b)| {
                b.deleted.is_none()
                    && !b.in_flight
                    && after
                        .get(*id)
                        .is_some_and(|a| !a.in_flight && a.last_sent < snapshot)
            })
            .map(|(_, b)| b.city_since)
            .collect();
        since.sort();
        since
    } else {
        let deletes_sent = {
            let m = run.model.lock().unwrap_or_else(|p| p.into_inner());
            m.counters.deletes_sent
        };
        let surely = usize::try_from(creates_done.len() as i64 - deletes_sent).unwrap_or(0);
        creates_done
            .iter()
            .rev()
            .take(surely)
            .rev()
            .copied()
            .collect()
    };
    let total_usize = usize::try_from(total).unwrap_or(usize::MAX);
    if total_usize < counted.len() {
        let missed = counted.len() - total_usize;
        let answered = counted[counted.len() - missed];
        run.stale(
            sent,
            answered,
            format!(
                "{path} has total {total}, at least {} expected",
                counted.len()
            ),
        );
    }
    if total > 100 {
        // Not everything fits on the page: absence proves nothing.
        note_database(run, &path, &suspects).await;
        return;
    }
    for (id, b) in &before {
        let quiet = after
            .get(id)
            .is_some_and(|a| !a.in_flight && a.last_sent < snapshot && !b.in_flight);
        if b.deleted.is_none() && quiet && !shown.contains_key(id) {
            suspects.push(*id);
            run.stale(
                sent,
                b.city_since,
                format!(
                    "{path} misses business {id} (total {total}, city {})",
                    b.city
                ),
            );
        }
    }
    if suspects.iter().any(|id| !shown.contains_key(id)) {
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| r["id"].as_i64().unwrap_or(-1))
            .collect();
        run.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .notes
            .push(format!("{path} showed ids {ids:?}"));
        note_redis(run, &path);
    }
    note_database(run, &path, &suspects).await;
}

/// Records the list pages and their generations Redis holds now, after a list read was
/// found to miss businesses: whether the page it answered is still stored as current.
fn note_redis(run: &Run, read: &str) {
    let cli = |args: &[&str]| {
        std::process::Command::new("redis-cli")
            .args([
                "-p",
                &run.redis_port
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let mut lines = Vec::new();
    for key in cli(&["--scan", "--pattern", "*{list}*"]).lines() {
        if key.contains("row") {
            continue;
        }
        let value = cli(&["GET", key]);
        let ttl = cli(&["PTTL", key]);
        let head: String = value.chars().take(160).collect();
        lines.push(format!("{key} (pttl {}) = {head}", ttl.trim()));
    }
    lines.sort();
    let note = format!(
        "at {:.3}s, Redis after {read}:\n  {}",
        run.started.elapsed().as_secs_f64(),
        lines.join("\n  ")
    );
    run.report
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .notes
        .push(note);
}

async fn read_stats(run: &Run, rng: &mut StdRng) {
    let done = {
        let m = run.model.lock().unwrap_or_else(|p| p.into_inner());
        let c = &m.counters;
        [
            c.creates_done.clone(),
            c.contacts_done.clone(),
            c.messages_done.clone(),
        ]
    };
    let app = run.reading_app(rng);
    let sent = Instant::now();
    let path = "/api/businesses/stats";
    let Some(res) = run.answered(app, &format!("GET {path}"), app.try_get(path).await) else {
        return;
    };
    if run.server_error("stats", &res) {
        return;
    }
    let gone = {
        let m = run.model.lock().unwrap_or_else(|p| p.into_inner());
        let c = &m.counters;
        [
            c.deletes_sent,
            c.contacts_removed_sent,
            c.messages_removed_sent,
        ]
    };
    let n = |k: &str| res.body[k].as_i64().unwrap_or(-1);
    let seen = [
        n("totalBusinesses"),
        n("totalContacts"),
        n("messagesSent") + n("messagesPending"),
    ];
    let names = ["totalBusinesses", "totalContacts", "messages"];
    for i in 0..3 {
        let at_least = done[i].len() as i64 - gone[i];
        if seen[i] < at_least {
            // It missed at least `at_least - seen` counted writes; the latest of that
            // many answered is the youngest it can have missed: a lower bound of the
            // staleness.
            let missed = usize::try_from(at_least - seen[i]).unwrap_or(1);
            let answered = done[i][done[i].len().saturating_sub(missed)];
            run.stale(
                sent,
                answered,
                format!(
                    "stats {} {}, at least {at_least} expected",
                    names[i], seen[i]
                ),
            );
        }
    }
}

pub(crate) async fn reader(run: Arc<Run>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !run.over() {
        let kind = match rng.random_range(0..10) {
            0..5 => {
                read_detail(&run, &mut rng).await;
                "detail"
            }
            5..8 => {
                read_list(&run, &mut rng).await;
                "list"
            }
            _ => {
                read_stats(&run, &mut rng).await;
                "stats"
            }
        };
        *run.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reads
            .entry(kind)
            .or_default() += 1;
    }
}
