//! What the checker knows: the writers' model of the businesses and counters, the scores
//! a read is judged by, and the run every client shares.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use letip_tests::TestApp;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::Value;

use crate::faults::Fault;
use crate::report::Report;

/// What the writers know of one business: its answered writes.
#[derive(Debug, Clone)]
pub(crate) struct Biz {
    pub(crate) city: String,
    /// When it entered its current city (create or move answered).
    pub(crate) city_since: Instant,
    /// Answer time of each observable write: entry `i` took the score from `i` to `i+1`.
    pub(crate) detail_writes: Vec<Instant>,
    /// The same, for what list rows show (updates, contacts, enrichment).
    pub(crate) list_writes: Vec<Instant>,
    /// A write was sent and not yet answered, or was sent at this time.
    pub(crate) in_flight: bool,
    pub(crate) last_sent: Instant,
    pub(crate) deleted: Option<Instant>,
}

/// Answer times of the counted writes, and what deletes sent so far may have removed.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) creates_done: Vec<Instant>,
    pub(crate) deletes_sent: i64,
    pub(crate) contacts_done: Vec<Instant>,
    pub(crate) contacts_removed_sent: i64,
    pub(crate) messages_done: Vec<Instant>,
    pub(crate) messages_removed_sent: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) businesses: HashMap<i64, Biz>,
    pub(crate) counters: Counters,
}

pub(crate) struct Run {
    pub(crate) a: TestApp,
    pub(crate) b: TestApp,
    /// A process of its own, so that it can be stopped; readers only.
    pub(crate) c: TestApp,
    pub(crate) model: Mutex<Model>,
    pub(crate) report: Mutex<Report>,
    pub(crate) started: Instant,
    /// Set while A is cut off (and for `FEED_BOUND` after): stale reads are measured
    /// against the bound instead of failing.
    pub(crate) cut_until: Mutex<Option<Instant>>,
    /// Set while PostgreSQL is unreachable (and for `OUTAGE_TAIL` after): a 503 is the
    /// answer expected of what the caches do not hold.
    pub(crate) down_until: Mutex<Option<Instant>>,
    /// Whether PostgreSQL is unreachable now.
    pub(crate) unreachable: std::sync::atomic::AtomicBool,
    /// The fault slot under way: its number and its fault.
    pub(crate) slot: Mutex<(usize, Fault)>,
    /// Reads and writes answered (or failed) so far.
    pub(crate) operations: AtomicU64,
    /// Every answered write by its answer time: what it was, on which instance, in
    /// which slot, so that a violation names the write it missed.
    pub(crate) answers: Mutex<HashMap<Instant, String>>,
    /// With `CHECKER_OPERATIONS`: the run ends once this many were made.
    pub(crate) target: Option<u64>,
    pub(crate) end: Instant,
    /// The Redis primary every instance shares, for what it holds when a read is found
    /// stale (moved by a failover).
    pub(crate) redis_port: std::sync::atomic::AtomicU16,
}

impl Run {
    /// The instance a write goes to: A or B, which are never stopped, so writes go on
    /// while C is.
    pub(crate) fn app(&self, rng: &mut StdRng) -> &TestApp {
        if rng.random_bool(0.5) {
            &self.a
        } else {
            &self.b
        }
    }

    /// The instance a read goes to: any of the three.
    pub(crate) fn reading_app(&self, rng: &mut StdRng) -> &TestApp {
        match rng.random_range(0..3) {
            0 => &self.a,
            1 => &self.b,
            _ => &self.c,
        }
    }

    pub(crate) fn name(&self, app: &TestApp) -> &'static str {
        if std::ptr::eq(app, &self.a) {
            "A"
        } else if std::ptr::eq(app, &self.b) {
            "B"
        } else {
            "C"
        }
    }

    /// Whether the clients should stop: the time is up, or the target count reached.
    pub(crate) fn over(&self) -> bool {
        match self.target {
            Some(n) => self.operations.load(Ordering::Relaxed) >= n,
            None => Instant::now() >= self.end,
        }
    }
}

pub(crate) fn detail_score(d: &Value) -> usize {
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

pub(crate) fn list_score(row: &Value) -> usize {
    usize::try_from(row["employee_count"].as_i64().unwrap_or(0)).unwrap_or(0)
        + row["contacts"].as_array().map_or(0, Vec::len)
        + usize::from(row["enrichment_status"] == "enriched")
}
