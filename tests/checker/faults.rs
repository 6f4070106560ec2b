//! The faults: what each slot injects, the schedule of slots, and the processes and
//! proxies they act on.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use letip_server::CacheBackend;
use letip_testkit::{FaultProxy, RedisServer};
use letip_tests::{TestApp, TestDb};

use crate::model::Run;
use crate::{FEED_BOUND, SLOT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Fault {
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
pub(crate) fn schedule() -> Vec<Fault> {
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

/// What the faults act on: the Redis every instance shares (persistent, for the slots
/// that restart it from an older snapshot), the proxies from A and B to it and from every
/// instance to PostgreSQL, and C's process; with the faults injected so far.
/// Dropped in the order of its fields: C's process first, Redis last.
pub(crate) struct Injector {
    pub(crate) c_process: tokio::process::Child,
    /// Every instance reaches PostgreSQL through it.
    pub(crate) link_pg: FaultProxy,
    /// PostgreSQL's own address, where `link_pg` leads back to after an outage.
    pub(crate) postgres: std::net::SocketAddr,
    pub(crate) link_b: FaultProxy,
    pub(crate) link_a: FaultProxy,
    pub(crate) redis: RedisServer,
    /// How many slots each fault had, by its description.
    pub(crate) faults: HashMap<&'static str, u32>,
}

impl Injector {
    /// Injects `fault` for the slot ending at `slot_end`, and returns once it is over.
    pub(crate) async fn inject(&mut self, fault: Fault, slot_end: Instant, run: &Run) {
        let Self {
            c_process,
            link_pg,
            postgres,
            link_b,
            link_a,
            redis,
            faults,
        } = self;
        let postgres = *postgres;
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
                signal(c_process, "-STOP");
                tokio::time::sleep(PAUSE).await;
                signal(c_process, "-CONT");
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
pub(crate) async fn spawn_process(
    a: &TestApp,
    redis_url: &str,
) -> (TestApp, tokio::process::Child) {
    a.spawn_process(
        env!("CARGO_BIN_EXE_letip-instance"),
        CacheBackend::Tiered,
        redis_url,
    )
    .await
}

/// Sends `signal` (`-STOP`, `-CONT`) to a child process.
pub(crate) fn signal(child: &tokio::process::Child, signal: &str) {
    if let Some(pid) = child.id() {
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }
}
