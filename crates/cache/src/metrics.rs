//! Metrics of every cache, by family, through the `metrics` facade (export them with any
//! recorder, Prometheus for example). The per-lookup counters are counted per thread and
//! added to the recorder's series in batches: call [`flush`] before rendering them.
//!
//! | name | labels | meaning |
//! |---|---|---|
//! | `cache_requests_total` | `family`, `result` = `hit` / `miss` / `error` | lookups |
//! | `cache_sets_total` | `family`, `result` = `stored` / `stale` / `too_large` / `error` | stores |
//! | `cache_invalidations_total` | `family` (the scope's first segment) | scopes invalidated |
//! | `cache_corrupt_total` | `family` | entries found unusable and removed |
//! | `cache_stale_answers_total` | `family` | values answered past their TTL because the load failed (fail-safe reads) |
//! | `cache_stale_kept_bytes` | | bytes of keys and values kept for fail-safe reads (at most their `max_bytes`), updated as values are kept |
//! | `cache_near_hits_total` | `family` | hits served from the near tier once Redis confirmed them (also counted as hits) |
//! | `cache_near_leased_hits_total` | `family` | hits served from the near tier under a lease, without a round trip (also counted as hits) |
//! | `cache_near_bytes` | `namespace` | bytes of keys and values the near tier holds (at most its `max_bytes`), updated every second |
//! | `cache_near_entries` | `namespace` | copies the near tier holds |
//! | `cache_lease_renewals_total` | | leases renewed and proven by their heartbeat |
//! | `cache_lease_losses_total` | | leases that ended unrenewed or were revoked (subscription lost) |
//! | `cache_lease_valid` | | 1 while this instance holds a lease |
//! | `cache_lease_wait_seconds` | | how long a write waited for acknowledgements (or lease ends) |
//! | `cache_lease_expiry_waits_total` | `why` = `holder` / `new_table` / `unannounced` | holders that did not acknowledge and whose lease a write waited out; writes that waited out a table younger than a lease; writes whose announcement failed and that waited out a lease |
//! | `cache_redis_duration_seconds` | `op` | Redis call latency, failures included |
//! | `cache_redis_history_resets_total` | `seen` = `changed` / `began` | connections that found a Redis this process had not seen last (`changed`), or whose check began a new history (`began`): entries stored before are no longer served |
//! | `cache_redis_probes_total` | `by` = `health` / `background`, `result` = `up` / `down` | PINGs sent to learn whether Redis answers (health checks, and the background prober while the circuit is open) |

use crate::Result;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::fast::FixedState;

/// Increments of one counter series made on one thread and not yet added to the
/// recorder's series: the recorder's atomic is shared by every thread, and both HTTP
/// workers incrementing it on every hit passed its cache line between their cores.
/// Aligned so that no two threads' cells share a line.
#[repr(align(128))]
struct Cell {
    counter: metrics::Counter,
    pending: AtomicU64,
    /// Cleared when its thread ends; the next flush, or the next cell made, adds what
    /// it holds and lets it go.
    alive: AtomicBool,
}

impl Cell {
    fn flush(&self) {
        let n = self.pending.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.counter.increment(n);
        }
    }
}

/// A thread's cells. When the thread ends they are marked dead, and the next flush, or
/// the next cell made on any thread, adds what they hold and lets them go: threads that
/// come and go leave nothing behind. (Nothing is recorded from the thread's own
/// teardown: the recorder may read thread-locals that are gone by then.)
struct ThreadCells(HashMap<[usize; 3], Arc<Cell>, FixedState>);

impl Drop for ThreadCells {
    fn drop(&mut self) {
        for cell in self.0.values() {
            cell.alive.store(false, Ordering::Release);
        }
    }
}

/// Adds what every cell holds, and lets the dead ones go.
fn flush_all(cells: &mut Vec<Arc<Cell>>) {
    cells.retain(|cell| {
        let alive = cell.alive.load(Ordering::Acquire);
        cell.flush();
        alive
    });
}

/// Pending increments a cell adds to its series by itself, whether or not anyone
/// [`flush`]es: what a series can lag behind, per thread.
const FLUSH_EVERY: u64 = 256;

/// Every thread's cells, for [`flush`].
static CELLS: Mutex<Vec<Arc<Cell>>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's cells of the counters every lookup increments, by name and
    /// labels, made once per thread: finding a series in the recorder (hashing its
    /// name and labels under a lock) on every lookup costs more than a hit from
    /// memory. They are found by the addresses of their static names, not by their
    /// text: two copies of a name take two cells of the one series. Install the
    /// recorder before the first lookup, as the `metrics` crate asks of every handle.
    static COUNTERS: RefCell<ThreadCells> =
        RefCell::new(ThreadCells(HashMap::with_hasher(FixedState::default())));
}

/// Adds every thread's pending counts to the recorder's series. Call it before
/// rendering them (the server's `/metrics` does); without it a counter lags by fewer
/// than 256 increments per thread.
pub fn flush() {
    flush_all(&mut CELLS.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Increments `name{family, result}` (`result` empty: no such label) in this thread's
/// cell.
fn count(name: &'static str, family: &'static str, result: &'static str) {
    let id = [
        name.as_ptr().addr(),
        family.as_ptr().addr(),
        result.as_ptr().addr(),
    ];
    COUNTERS.with_borrow_mut(|cells| {
        let cell = cells.0.entry(id).or_insert_with(|| {
            let counter = if result.is_empty() {
                metrics::counter!(name, "family" => family)
            } else {
                metrics::counter!(name, "family" => family, "result" => result)
            };
            let cell = Arc::new(Cell {
                counter,
                pending: AtomicU64::new(0),
                alive: AtomicBool::new(true),
            });
            let mut all = CELLS.lock().unwrap_or_else(|p| p.into_inner());
            flush_all(&mut all);
            all.push(cell.clone());
            cell
        });
        if cell.pending.fetch_add(1, Ordering::Relaxed) + 1 >= FLUSH_EVERY {
            cell.flush();
        }
    });
}

pub(crate) fn lookup(family: &'static str, result: &'static str) {
    count("cache_requests_total", family, result);
}

/// Counts a lookup by its outcome.
pub(crate) fn lookup_outcome(
    family: &'static str,
    outcome: &Result<crate::Lookup, crate::CacheError>,
) {
    lookup(
        family,
        match outcome {
            Ok(crate::Lookup::Hit(_)) => "hit",
            Ok(crate::Lookup::Miss(_)) => "miss",
            Err(_) => "error",
        },
    );
}

/// A hit served from the near tier after Redis confirmed it current.
pub(crate) fn near_hit(family: &'static str) {
    count("cache_near_hits_total", family, "");
}

/// A hit served from the near tier under a lease, with no round trip.
pub(crate) fn leased_hit(family: &'static str) {
    count("cache_near_leased_hits_total", family, "");
    lookup(family, "hit");
}

pub(crate) fn near_size(namespace: &str, bytes: u64, entries: u64) {
    let namespace = namespace.to_owned();
    metrics::gauge!("cache_near_bytes", "namespace" => namespace.clone()).set(bytes as f64);
    metrics::gauge!("cache_near_entries", "namespace" => namespace).set(entries as f64);
}

pub(crate) fn lease_renewed() {
    metrics::counter!("cache_lease_renewals_total").increment(1);
}

pub(crate) fn lease_lost() {
    metrics::counter!("cache_lease_losses_total").increment(1);
}

pub(crate) fn lease_valid(valid: bool) {
    metrics::gauge!("cache_lease_valid").set(if valid { 1.0 } else { 0.0 });
}

/// A write's wait for acknowledgements: how long, how many holders it waited out, and
/// whether it waited out a new table.
pub(crate) fn lease_wait(elapsed: Duration, expired: usize, fenced: bool, unannounced: bool) {
    metrics::histogram!("cache_lease_wait_seconds").record(elapsed.as_secs_f64());
    if expired > 0 {
        metrics::counter!("cache_lease_expiry_waits_total", "why" => "holder")
            .increment(expired as u64);
    }
    if fenced {
        metrics::counter!("cache_lease_expiry_waits_total", "why" => "new_table").increment(1);
    }
    if unannounced {
        metrics::counter!("cache_lease_expiry_waits_total", "why" => "unannounced").increment(1);
    }
}

pub(crate) fn set(family: &'static str, result: &'static str) {
    metrics::counter!("cache_sets_total", "family" => family, "result" => result).increment(1);
}

pub(crate) fn invalidated(scopes: &[&str]) {
    for scope in scopes {
        let family = scope.split(':').next().unwrap_or(scope).to_owned();
        metrics::counter!("cache_invalidations_total", "family" => family).increment(1);
    }
}

pub(crate) fn redis_call(op: &'static str, elapsed: Duration) {
    metrics::histogram!("cache_redis_duration_seconds", "op" => op).record(elapsed.as_secs_f64());
}

/// Counts an entry of `family` found unusable (undecodable, say) by a caller.
pub fn corrupt(family: &'static str) {
    metrics::counter!("cache_corrupt_total", "family" => family).increment(1);
}

/// A kept value of `family` answered past its TTL because its load failed.
pub(crate) fn stale_answer(family: &'static str) {
    metrics::counter!("cache_stale_answers_total", "family" => family).increment(1);
}

/// What the values kept for fail-safe reads weigh.
pub(crate) fn stale_kept(bytes: u64) {
    metrics::gauge!("cache_stale_kept_bytes").set(bytes as f64);
}

/// A PING sent to learn whether Redis answers, by whom and what it found.
pub(crate) fn probe(by: &'static str, result: &'static str) {
    metrics::counter!("cache_redis_probes_total", "by" => by, "result" => result).increment(1);
}

/// A connection's identity check reset the history (see `identity.rs`).
pub(crate) fn history_reset(changed: bool) {
    metrics::counter!(
        "cache_redis_history_resets_total",
        "seen" => if changed { "changed" } else { "began" }
    )
    .increment(1);
}
