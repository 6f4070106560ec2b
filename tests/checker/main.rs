//! The freshness checker: concurrent writers and readers against two server instances
//! sharing one PostgreSQL database and one Redis, while faults are injected, and a
//! checker of every read against the writes that completed before it was sent.
//!
//! Writers own their businesses and change them one operation at a time: update (every
//! update sets `employee_count` to the business's next version, some move it to another
//! city; the others change only the business's row entry, not the pages that list it), add a contact, create a message, mark a message sent, enrich (once), delete.
//! Each of those moves an observable score of the business by exactly one (the sum of
//! version, contacts, messages, sent messages and 1 once enriched), so a read can tell
//! how many of the business's completed writes it reflects. Readers read details, lists
//! and stats on both instances. A read is **stale** when it was sent after a write's
//! answer and does not reflect that write; its staleness is the time from that answer
//! to the read being sent. Stats are checked against counters: `totalBusinesses` may not
//! be below the creates answered before the read minus the deletes sent before its
//! answer (likewise for contacts and messages). A list's `meta.total` may not count fewer
//! than that for the unfiltered list, or fewer than the businesses surely in a city's
//! list when the read was sent (no write of theirs in flight).
//!
//! Faults, one at a time, in 6-second slots: Redis killed then restarted empty; Redis
//! restarted from a snapshot taken 3 s before (every invalidation, announcement and
//! lease renewal it acknowledged since is forgotten); Redis
//! stalled for both instances (through a proxy, longer than the cache timeout); instance
//! A alone cut off from Redis; PostgreSQL's idle connections terminated (the pool's and
//! the change feed's); PostgreSQL unreachable for 3 s (every connection cut, new ones
//! refused: what the caches hold is answered, the rest is a 503, never a 500, and a
//! write refused then is not checked further). Every read must be fresh, except in the slot where A is cut off:
//! there A's writes reach B's readers through PostgreSQL's change feed, and the staleness
//! seen must stay within `FEED_BOUND` (docs/design.md, "Freshness guarantees").
//!
//! A request that gets no answer at all (a connection closed before the response, say)
//! is a **transport error**: counted with the request, the instance and the fault slot
//! it happened in, and it fails the run like a 5xx, since a user would see it.
//!
//! `CHECKER_SECONDS` sets the length (60 by default; `scripts/checker.sh --seconds 600`
//! runs it longer); `CHECKER_FAULTS` repeats only the faults it names (comma-separated,
//! e.g. `ACutOff,PostgresDropped`); `CHECKER_BACKEND=redis` runs A and B in the Redis
//! mode beside C on the default; `CHECKER_OPERATIONS` instead runs until that many reads and writes
//! were checked (`scripts/checker.sh --release --operations 1000000`). The run prints
//! operations, operations per second, stale reads, violations, 5xx and transport
//! errors, and fails unless the last three are zero.

#![allow(clippy::indexing_slicing, clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use letip_server::CacheBackend;
use letip_testkit::{FaultProxy, RedisServer};
use letip_tests::{Res, TestApp, TestDb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The longest a write answered by an instance cut off from Redis may stay hidden from
/// readers of the other instance.
const FEED_BOUND: Duration = Duration::from_secs(1);
const SLOT: Duration = Duration::from_secs(6);
const WRITERS: usize = 4;
const READERS: usize = 6;
/// Live businesses per writer: every city's list stays on one page of 100.
const OWNED: usize = 8;
const CITIES: [&str; 4] = ["Asbury Park", "Red Bank", "Freehold", "Ocean Grove"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    Calm,
    RedisKilled,
    /// Redis killed and restarted from the snapshot it took at the slot's start.
    RedisRestored,
    RedisStalled,
    ACutOff,
    PostgresDropped,
    /// B's subscriptions go silent while its data connection works.
    BSubscriptionCut,
    /// C's process is stopped (SIGSTOP) for longer than a lease, then continued.
    CPaused,
    /// PostgreSQL unreachable from every instance (connections cut, new ones refused)
    /// for `OUTAGE`: what the caches hold is answered, every other request is a 503.
    PostgresDown,
}

/// The fault of each slot, repeated for longer runs; the first ten (the default 60 s)
/// hold every fault.
const SCHEDULE: [Fault; 12] = [
    Fault::Calm,
    Fault::RedisKilled,
    Fault::BSubscriptionCut,
    Fault::RedisRestored,
    Fault::RedisStalled,
    Fault::CPaused,
    Fault::Calm,
    Fault::ACutOff,
    Fault::PostgresDropped,
    Fault::PostgresDown,
    Fault::ACutOff,
    Fault::CPaused,
];

/// The schedule of a run: `CHECKER_FAULTS` (fault names, comma-separated, e.g.
/// `ACutOff,PostgresDropped`) to repeat a few faults, else [`SCHEDULE`].
fn schedule() -> Vec<Fault> {
    let all = [
        Fault::Calm,
        Fault::RedisKilled,
        Fault::RedisRestored,
        Fault::RedisStalled,
        Fault::ACutOff,
        Fault::PostgresDropped,
        Fault::BSubscriptionCut,
        Fault::CPaused,
        Fault::PostgresDown,
    ];
    match std::env::var("CHECKER_FAULTS") {
        Ok(names) => names
            .split(',')
            .map(|n| {
                *all.iter()
                    .find(|f| format!("{f:?}") == n.trim())
                    .unwrap_or_else(|| panic!("CHECKER_FAULTS: no fault {n}"))
            })
            .collect(),
        Err(_) => SCHEDULE.to_vec(),
    }
}

/// How long PostgreSQL stays unreachable in a `PostgresDown` slot.
const OUTAGE: Duration = Duration::from_secs(3);
/// How long after an outage a 503 is still expected: the pools' and the change feed's
/// first connections after it.
const OUTAGE_TAIL: Duration = Duration::from_secs(2);

/// How long C stays stopped: longer than its lease (500 ms).
const PAUSE: Duration = Duration::from_millis(2500);

/// What the writers know of one business: its answered writes.
#[derive(Debug, Clone)]
struct Biz {
    city: String,
    /// When it entered its current city (create or move answered).
    city_since: Instant,
    /// Answer time of each observable write: entry `i` took the score from `i` to `i+1`.
    detail_writes: Vec<Instant>,
    /// The same, for what list rows show (updates, contacts, enrichment).
    list_writes: Vec<Instant>,
    /// A write was sent and not yet answered, or was sent at this time.
    in_flight: bool,
    last_sent: Instant,
    deleted: Option<Instant>,
}

/// Answer times of the counted writes, and what deletes sent so far may have removed.
#[derive(Debug, Default)]
struct Counters {
    creates_done: Vec<Instant>,
    deletes_sent: i64,
    contacts_done: Vec<Instant>,
    contacts_removed_sent: i64,
    messages_done: Vec<Instant>,
    messages_removed_sent: i64,
}

#[derive(Debug, Default)]
struct Model {
    businesses: HashMap<i64, Biz>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Report {
    writes: u64,
    /// How long each write took to be answered (ms), by the fault of its slot.
    write_ms: HashMap<Fault, Vec<f64>>,
    reads: HashMap<&'static str, u64>,
    server_errors: Vec<String>,
    /// Requests that got no answer: the request, the instance and the fault slot.
    transport_errors: Vec<String>,
    violations: Vec<String>,
    /// Staleness of reads found stale where it is allowed (A cut off), in ms.
    bounded: Vec<f64>,
    /// List reads by their `X-Cache` answer: a `HIT` is a page and all its rows from
    /// the cache, a `MISS` read some of them from PostgreSQL.
    list_cache: HashMap<String, u64>,
    /// What PostgreSQL held of a business just after a read of it was found stale.
    notes: Vec<String>,
    /// Requests answered while PostgreSQL was unreachable, by kind: answered (from a
    /// cache, for reads; writes sent just before) and refused with a 503.
    outage_answered: HashMap<String, u64>,
    outage_refused: HashMap<String, u64>,
}

struct Run {
    a: TestApp,
    b: TestApp,
    /// A process of its own, so that it can be stopped; readers only.
    c: TestApp,
    model: Mutex<Model>,
    report: Mutex<Report>,
    started: Instant,
    /// Set while A is cut off (and for `FEED_BOUND` after): stale reads are measured
    /// against the bound instead of failing.
    cut_until: Mutex<Option<Instant>>,
    /// Set while PostgreSQL is unreachable (and for `OUTAGE_TAIL` after): a 503 is the
    /// answer expected of what the caches do not hold.
    down_until: Mutex<Option<Instant>>,
    /// Whether PostgreSQL is unreachable now.
    unreachable: std::sync::atomic::AtomicBool,
    /// The fault slot under way: its number and its fault.
    slot: Mutex<(usize, Fault)>,
    /// Reads and writes answered (or failed) so far.
    operations: AtomicU64,
    /// Every answered write by its answer time: what it was, on which instance, in
    /// which slot, so that a violation names the write it missed.
    answers: Mutex<HashMap<Instant, String>>,
    /// With `CHECKER_OPERATIONS`: the run ends once this many were made.
    target: Option<u64>,
    end: Instant,
    /// The Redis every instance shares, for what it holds when a read is found stale.
    redis_port: u16,
}

impl Run {
    /// The instance a write goes to: A or B, which are never stopped, so writes go on
    /// while C is.
    fn app(&self, rng: &mut StdRng) -> &TestApp {
        if rng.random_bool(0.5) {
            &self.a
        } else {
            &self.b
        }
    }

    /// The instance a read goes to: any of the three.
    fn reading_app(&self, rng: &mut StdRng) -> &TestApp {
        match rng.random_range(0..3) {
            0 => &self.a,
            1 => &self.b,
            _ => &self.c,
        }
    }

    fn name(&self, app: &TestApp) -> &'static str {
        if std::ptr::eq(app, &self.a) {
            "A"
        } else if std::ptr::eq(app, &self.b) {
            "B"
        } else {
            "C"
        }
    }

    /// Whether the clients should stop: the time is up, or the target count reached.
    fn over(&self) -> bool {
        match self.target {
            Some(n) => self.operations.load(Ordering::Relaxed) >= n,
            None => Instant::now() >= self.end,
        }
    }

    /// The answer, or `None` after recording a request that got none.
    fn answered(
        &self,
        app: &TestApp,
        request: &str,
        res: Result<Res, reqwest::Error>,
    ) -> Option<Res> {
        self.operations.fetch_add(1, Ordering::Relaxed);
        match res {
            Ok(res) => Some(res),
            Err(e) => {
                let (slot, fault) = *self.slot.lock().unwrap_or_else(|p| p.into_inner());
                let mut source = String::new();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    source.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
                r.transport_errors.push(format!(
                    "at {:.3}s, slot {slot} ({fault:?}): {request} on {}: {e}{source}",
                    self.started.elapsed().as_secs_f64(),
                    self.name(app)
                ));
                None
            }
        }
    }

    fn server_error(&self, what: &str, res: &Res) -> bool {
        let down = self
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| Instant::now() <= until);
        if down {
            // Counted while the link is down only, not in the tail after it.
            let during = self.unreachable.load(Ordering::SeqCst);
            let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
            let counts = if res.status == 503 {
                &mut r.outage_refused
            } else {
                &mut r.outage_answered
            };
            if during && res.status != 500 {
                *counts.entry(what.to_owned()).or_default() += 1;
            }
            if res.status == 503 {
                return true;
            }
        }
        if res.status >= 500 {
            let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
            r.server_errors
                .push(format!("{what}: {} {}", res.status, res.text));
            return true;
        }
        false
    }

    /// Records a write answered at `done`, for violation reports.
    /// Counts a write sent at `sent` and answered (or failed) at `done`.
    fn wrote(&self, sent: Instant, done: Instant) {
        let fault = self.slot.lock().unwrap_or_else(|p| p.into_inner()).1;
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        report.writes += 1;
        let ms = done.duration_since(sent).as_secs_f64() * 1e3;
        report.write_ms.entry(fault).or_default().push(ms);
    }

    fn record_answer(&self, done: Instant, app: &TestApp, what: &str) {
        let (slot, fault) = *self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let line = format!(
            "{what} on {} at {:.3}s, slot {slot} ({fault:?})",
            self.name(app),
            done.duration_since(self.started).as_secs_f64()
        );
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(done, line);
    }

    /// Judges a read sent at `sent` that missed a write answered at `answered`.
    fn stale(&self, sent: Instant, answered: Instant, what: String) {
        let (slot, fault) = *self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let missed = self
            .answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&answered)
            .cloned()
            .unwrap_or_else(|| "a write".to_owned());
        let what = format!("{what} (read in slot {slot} ({fault:?}); missed {missed})");
        let staleness = sent.saturating_duration_since(answered);
        let allowed = self
            .cut_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| sent <= until);
        let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
        if allowed && staleness <= FEED_BOUND {
            r.bounded.push(staleness.as_secs_f64() * 1000.0);
        } else {
            r.violations.push(format!(
                "at {:.3}s: {what}, {staleness:?} after the write's answer{}",
                sent.duration_since(self.started).as_secs_f64(),
                if allowed { " (beyond the bound)" } else { "" }
            ));
        }
    }
}

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

fn detail_score(d: &Value) -> usize {
    let len = |k: &str| d[k].as_array().map_or(0, Vec::len);
    let sent = d["outreach_messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["status"] == "sent").count());
    usize::try_from(d["employee_count"].as_i64().unwrap_or(0)).unwrap_or(0)
        + len("contacts")
        + len("outreach_messages")
        + sent
        + usize::from(d["enrichment_status"] == "enriched")
}

fn list_score(row: &Value) -> usize {
    usize::try_from(row["employee_count"].as_i64().unwrap_or(0)).unwrap_or(0)
        + row["contacts"].as_array().map_or(0, Vec::len)
        + usize::from(row["enrichment_status"] == "enriched")
}

/// What a writer knows of its own business beyond the shared model.
#[derive(Debug, Default, Clone)]
struct Own {
    version: i64,
    contacts: i64,
    messages: Vec<i64>,
    sent: usize,
    enriched: bool,
}

async fn writer(run: Arc<Run>, seed: u64) {
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
            .args(["-p", &run.redis_port.to_string()])
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

async fn reader(run: Arc<Run>, seed: u64) {
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

async fn drop_postgres_connections(db: &TestDb) {
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'",
    )
    .await;
}

/// Instance C: the server as a process of its own beside `a` (same database), on the
/// leased near tier through `redis_url`.
async fn spawn_process(a: &TestApp, redis_url: &str) -> (TestApp, tokio::process::Child) {
    a.spawn_process(
        env!("CARGO_BIN_EXE_letip-instance"),
        CacheBackend::Tiered,
        redis_url,
    )
    .await
}

/// What the leased near tier did, from a `/metrics` text: hits served unasked, renewals
/// and losses of leases, writes that waited and lease ends they waited out.
fn lease_figures(metrics: &str) -> String {
    let sum = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    };
    format!(
        "{:.0} near hits unasked, {:.0} renewals, {:.0} losses, {:.0} writes waited \
         ({:.1} s in all), {:.0} lease ends waited out",
        sum("cache_near_leased_hits_total"),
        sum("cache_lease_renewals_total"),
        sum("cache_lease_losses_total"),
        sum("cache_lease_wait_seconds_count"),
        sum("cache_lease_wait_seconds_sum"),
        sum("cache_lease_expiry_waits_total"),
    )
}

/// Sends `signal` (`-STOP`, `-CONT`) to a child process.
fn signal(child: &tokio::process::Child, signal: &str) {
    if let Some(pid) = child.id() {
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_never_miss_an_answered_write_while_faults_are_injected() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let seconds: u64 = std::env::var("CHECKER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let target: Option<u64> = std::env::var("CHECKER_OPERATIONS")
        .ok()
        .and_then(|s| s.parse().ok());
    let calm = std::env::var_os("CHECKER_CALM").is_some();
    // Persistent, for the slots that restart it from an older snapshot.
    let mut redis = RedisServer::start_persistent(&[]);
    let link_a = FaultProxy::start(redis.addr()).await;
    let link_b = FaultProxy::start(redis.addr()).await;
    let link_c = FaultProxy::start(redis.addr()).await;
    // Every instance reaches PostgreSQL through `link_pg` (A's URL, which B and C take).
    // CHECKER_BACKEND=redis: A and B in the Redis mode (C stays on the default).
    let backend = match std::env::var("CHECKER_BACKEND").as_deref() {
        Ok("redis") => CacheBackend::Redis,
        _ => CacheBackend::Tiered,
    };
    let (a, link_pg) = TestApp::spawn_through_proxy_with(|c| {
        c.cache_backend = backend;
        c.redis_url = link_a.url();
        // A gives up on an invalidation as soon as a read would: while it is cut off,
        // its writes are answered at once and reach B's readers through the change
        // feed alone (B waits the default second).
        c.cache_invalidate_timeout_ms = c.cache_timeout_ms;
    })
    .await;
    let postgres = a.db.addr();
    let b = a
        .spawn_beside(|c| {
            c.cache_backend = backend;
            c.redis_url = link_b.url();
            c.database_url = a.config.database_url.clone();
        })
        .await;
    let (c, mut c_process) = spawn_process(&a, &link_c.url()).await;
    let started = Instant::now();
    let run = Arc::new(Run {
        a,
        b,
        c,
        model: Mutex::default(),
        report: Mutex::default(),
        started,
        cut_until: Mutex::new(None),
        down_until: Mutex::new(None),
        unreachable: std::sync::atomic::AtomicBool::new(false),
        slot: Mutex::new((0, Fault::Calm)),
        operations: AtomicU64::new(0),
        answers: Mutex::default(),
        target,
        end: started + Duration::from_secs(seconds),
        redis_port: redis.addr().port(),
    });
    println!(
        "started at {:?} (seconds since the epoch)",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    );
    let mut tasks = Vec::new();
    // Each client answers when it stopped, for the rate of operations.
    for w in 0..WRITERS {
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            writer(run, w as u64).await;
            Instant::now()
        }));
    }
    for r in 0..READERS {
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            reader(run, 1000 + r as u64).await;
            Instant::now()
        }));
    }

    let schedule = schedule();
    let mut faults: HashMap<&'static str, u32> = HashMap::new();
    let mut slot = 0;
    while !run.over() {
        // CHECKER_CALM=1: the same load with no fault, as a control run.
        let fault = if calm {
            Fault::Calm
        } else {
            schedule[slot % schedule.len()]
        };
        *run.slot.lock().unwrap_or_else(|p| p.into_inner()) = (slot, fault);
        let slot_end = Instant::now() + SLOT;
        let slot_end = if target.is_some() {
            slot_end
        } else {
            slot_end.min(run.end)
        };
        match fault {
            Fault::Calm => tokio::time::sleep_until(slot_end.into()).await,
            Fault::RedisKilled => {
                *faults.entry("redis killed and restarted").or_default() += 1;
                redis.kill();
                tokio::time::sleep_until(slot_end.into()).await;
                redis.restart_empty();
            }
            Fault::RedisRestored => {
                *faults
                    .entry("redis restored from an older snapshot")
                    .or_default() += 1;
                assert_eq!(redis.cli(&["save"]), "OK", "redis takes a snapshot");
                tokio::time::sleep(SLOT / 2).await;
                redis.restart();
                tokio::time::sleep_until(slot_end.into()).await;
            }
            Fault::RedisStalled => {
                *faults.entry("redis stalled").or_default() += 1;
                link_a.stall();
                link_b.stall();
                tokio::time::sleep_until(slot_end.into()).await;
                link_a.resume();
                link_b.resume();
            }
            Fault::ACutOff => {
                *faults.entry("A cut off from redis").or_default() += 1;
                *run.cut_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + SLOT * 10);
                link_a.stall();
                tokio::time::sleep_until(slot_end.into()).await;
                link_a.resume();
                *run.cut_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + FEED_BOUND);
            }
            Fault::BSubscriptionCut => {
                *faults.entry("B's subscriptions silent").or_default() += 1;
                link_b.stall_subscriptions();
                tokio::time::sleep_until(slot_end.into()).await;
                link_b.resume();
            }
            Fault::CPaused => {
                *faults.entry("C stopped (SIGSTOP)").or_default() += 1;
                signal(&c_process, "-STOP");
                tokio::time::sleep(PAUSE).await;
                signal(&c_process, "-CONT");
                tokio::time::sleep_until(slot_end.into()).await;
            }
            Fault::PostgresDown => {
                *faults.entry("postgres unreachable").or_default() += 1;
                *run.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + SLOT * 10);
                let nowhere =
                    std::net::SocketAddr::from(([127, 0, 0, 1], letip_testkit::free_port()));
                link_pg.switch_to(nowhere);
                run.unreachable.store(true, Ordering::SeqCst);
                tokio::time::sleep(OUTAGE).await;
                run.unreachable.store(false, Ordering::SeqCst);
                link_pg.switch_to(postgres);
                *run.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + OUTAGE_TAIL);
                tokio::time::sleep_until(slot_end.into()).await;
            }
            Fault::PostgresDropped => {
                *faults.entry("postgres connections dropped").or_default() += 1;
                while Instant::now() + Duration::from_secs(2) < slot_end {
                    drop_postgres_connections(&run.a.db).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                tokio::time::sleep_until(slot_end.into()).await;
            }
        }
        slot += 1;
    }
    let mut finished = started;
    for t in tasks {
        finished = finished.max(t.await.expect("a client task"));
    }

    signal(&c_process, "-CONT");
    // A and B share this process's metrics; C has its own.
    let mut leases = Vec::new();
    for (who, app) in [("A and B", &run.a), ("C", &run.c)] {
        if let Ok(m) = app.try_get("/metrics").await {
            leases.push(format!("leases on {who}: {}", lease_figures(&m.text)));
        }
    }
    let _ = c_process.kill().await;
    let report = run.report.lock().unwrap_or_else(|p| p.into_inner());
    let mut bounded = report.bounded.clone();
    bounded.sort_by(f64::total_cmp);
    let pct = |p: usize| {
        bounded
            .get((bounded.len() * p / 100).min(bounded.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let reads: u64 = report.reads.values().sum();
    let elapsed = finished.duration_since(started).as_secs_f64();
    let operations = report.writes + reads;
    println!(
        "freshness checker: {elapsed:.0} s ({}), faults {faults:?}",
        match target {
            Some(n) => format!("until {n} operations"),
            None => format!("{seconds} s asked"),
        }
    );
    println!(
        "operations: {operations} ({} writes, {reads} reads {:?}), {:.0} per second",
        report.writes,
        report.reads,
        operations as f64 / elapsed
    );
    println!("list reads by X-Cache: {:?}", report.list_cache);
    // What a write waits: bounded by one lease (500 ms) beyond its own work, for a
    // holder that is stopped or cut off as for one that answers.
    let mut by_fault: Vec<_> = report.write_ms.iter().collect();
    by_fault.sort_by_key(|(f, _)| format!("{f:?}"));
    for (fault, ms) in by_fault {
        let mut ms = ms.clone();
        ms.sort_by(f64::total_cmp);
        let at = |p: usize| ms[(ms.len() * p / 100).min(ms.len() - 1)];
        println!(
            "writes in {fault:?} slots: {}, answered in p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms.len(),
            at(50),
            at(99),
            ms[ms.len() - 1]
        );
    }
    for line in &leases {
        println!("{line}");
    }
    println!(
        "stale reads while A was cut off from Redis: {} (bound {FEED_BOUND:?}); staleness p50 \
         {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        bounded.len(),
        pct(50),
        pct(99),
        bounded.last().copied().unwrap_or(0.0)
    );
    let sorted = |m: &HashMap<String, u64>| {
        let mut v: Vec<_> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
        v.sort();
        v.join(", ")
    };
    println!(
        "while PostgreSQL was unreachable: answered {}; refused with a 503 {}",
        sorted(&report.outage_answered),
        sorted(&report.outage_refused)
    );
    println!(
        "violations: {}, 5xx: {}, transport errors: {}",
        report.violations.len(),
        report.server_errors.len(),
        report.transport_errors.len()
    );
    for v in report.violations.iter().take(40) {
        println!("  violation: {v}");
    }
    for n in report.notes.iter().take(40) {
        println!("  database: {n}");
    }
    for e in report.server_errors.iter().take(20) {
        println!("  5xx: {e}");
    }
    for e in report.transport_errors.iter().take(20) {
        println!("  transport error: {e}");
    }
    assert!(reads > 1000, "the readers kept reading ({reads})");
    assert!(report.writes > 200, "the writers kept writing");
    assert!(
        report.violations.is_empty(),
        "stale reads beyond the guarantees"
    );
    assert!(report.server_errors.is_empty(), "server errors");
    assert!(
        report.transport_errors.is_empty(),
        "requests that got no answer"
    );
}
