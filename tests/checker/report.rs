//! The report: what the clients counted and found, printed at the end of the run, and
//! the assertions that fail it.

use std::collections::HashMap;

use crate::FEED_BOUND;
use crate::faults::Fault;
use crate::model::Run;

#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) writes: u64,
    /// How long each write took to be answered (ms), by the fault of its slot.
    pub(crate) write_ms: HashMap<Fault, Vec<f64>>,
    pub(crate) reads: HashMap<&'static str, u64>,
    pub(crate) server_errors: Vec<String>,
    /// Requests that got no answer: the request, the instance and the fault slot.
    pub(crate) transport_errors: Vec<String>,
    pub(crate) violations: Vec<String>,
    /// Staleness of reads found stale where it is allowed (A cut off), in ms.
    pub(crate) bounded: Vec<f64>,
    /// List reads by their `X-Cache` answer: a `HIT` is a page and all its rows from
    /// the cache, a `MISS` read some of them from PostgreSQL.
    pub(crate) list_cache: HashMap<String, u64>,
    /// What PostgreSQL held of a business just after a read of it was found stale.
    pub(crate) notes: Vec<String>,
    /// Requests answered while PostgreSQL was unreachable, by kind: answered (from a
    /// cache, for reads; writes sent just before) and refused with a 503.
    pub(crate) outage_answered: HashMap<String, u64>,
    pub(crate) outage_refused: HashMap<String, u64>,
}

/// What the leased near tier did on every instance, from their `/metrics`.
pub(crate) async fn leases(run: &Run) -> Vec<String> {
    // A and B share this process's metrics; C has its own.
    let mut leases = Vec::new();
    for (who, app) in [("A and B", &run.a), ("C", &run.c)] {
        if let Ok(m) = app.try_get("/metrics").await {
            leases.push(format!("leases on {who}: {}", lease_figures(&m.text)));
            let routed: Vec<String> = m
                .text
                .lines()
                .filter_map(|l| l.strip_prefix("letip_db_replica_reads_total{outcome=\""))
                .filter_map(|l| l.split_once("\"} "))
                .map(|(outcome, n)| format!("{outcome} {}", n.trim()))
                .collect();
            if !routed.is_empty() {
                leases.push(format!(
                    "reads outside writes on {who}: {}",
                    routed.join(", ")
                ));
            }
        }
    }
    leases
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

impl Report {
    /// Prints the run's figures and findings (a run of `elapsed` seconds, until `target`
    /// operations or for `seconds`, with `faults` injected and `leases` from [`leases`]),
    /// then fails it on violations, 5xx or transport errors, or too few reads or writes.
    pub(crate) fn print_and_check(
        &self,
        elapsed: f64,
        target: Option<u64>,
        seconds: u64,
        faults: &HashMap<&'static str, u32>,
        leases: &[String],
    ) {
        let mut bounded = self.bounded.clone();
        bounded.sort_by(f64::total_cmp);
        let pct = |p: usize| {
            bounded
                .get((bounded.len() * p / 100).min(bounded.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        let reads: u64 = self.reads.values().sum();
        let operations = self.writes + reads;
        println!(
            "freshness checker: {elapsed:.0} s ({}), faults {faults:?}",
            match target {
                Some(n) => format!("until {n} operations"),
                None => format!("{seconds} s asked"),
            }
        );
        println!(
            "operations: {operations} ({} writes, {reads} reads {:?}), {:.0} per second",
            self.writes,
            self.reads,
            operations as f64 / elapsed
        );
        println!("list reads by X-Cache: {:?}", self.list_cache);
        // What a write waits: bounded by one lease (500 ms) beyond its own work, for a
        // holder that is stopped or cut off as for one that answers.
        let mut by_fault: Vec<_> = self.write_ms.iter().collect();
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
        for line in leases {
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
            sorted(&self.outage_answered),
            sorted(&self.outage_refused)
        );
        println!(
            "violations: {}, 5xx: {}, transport errors: {}",
            self.violations.len(),
            self.server_errors.len(),
            self.transport_errors.len()
        );
        for v in self.violations.iter().take(40) {
            println!("  violation: {v}");
        }
        for n in self.notes.iter().take(40) {
            println!("  database: {n}");
        }
        for e in self.server_errors.iter().take(20) {
            println!("  5xx: {e}");
        }
        for e in self.transport_errors.iter().take(20) {
            println!("  transport error: {e}");
        }
        assert!(reads > 1000, "the readers kept reading ({reads})");
        assert!(self.writes > 200, "the writers kept writing");
        assert!(
            self.violations.is_empty(),
            "stale reads beyond the guarantees"
        );
        assert!(self.server_errors.is_empty(), "server errors");
        assert!(
            self.transport_errors.is_empty(),
            "requests that got no answer"
        );
    }
}
