//! The faults: what each slot injects, the schedule of slots, and the processes and
//! proxies they act on.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use letip_server::CacheBackend;
use letip_testkit::{FaultProxy, PgCluster, RedisServer, SentinelGroup};
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
    /// The read replica replays each commit `REPLICA_LAG` late.
    ReplicaLagging,
    /// The read replica stopped (`pg_ctl stop -m immediate`), then started again.
    ReplicaDown,
    /// `SENTINEL FAILOVER`: a replica of Redis promoted, the primary demoted.
    SentinelFailover,
    /// The Redis primary killed (SIGKILL): the sentinels promote its replica; the killed
    /// node comes back as a replica of it.
    RedisPrimaryKilled,
}

/// The fault of each slot, repeated for longer runs; the first ten (the default 60 s)
/// hold every fault but the replica's, which the next two hold.
const SCHEDULE: [Fault; 14] = [
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
    Fault::ReplicaLagging,
    Fault::ReplicaDown,
    Fault::ACutOff,
    Fault::CPaused,
];

/// The schedule with Redis behind Sentinel (`CHECKER_REDIS=sentinel`): the faults that
/// need one Redis behind proxies are left out; the first eight hold every other fault.
const SENTINEL_SCHEDULE: [Fault; 10] = [
    Fault::Calm,
    Fault::SentinelFailover,
    Fault::ReplicaLagging,
    Fault::CPaused,
    Fault::RedisPrimaryKilled,
    Fault::PostgresDropped,
    Fault::ReplicaDown,
    Fault::PostgresDown,
    Fault::SentinelFailover,
    Fault::RedisPrimaryKilled,
];

/// The schedule of a run: `CHECKER_FAULTS` (fault names, comma-separated, e.g.
/// `ACutOff,PostgresDropped`) to repeat a few faults, else the topology's.
pub(crate) fn schedule(sentinel: bool) -> Vec<Fault> {
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
        Fault::ReplicaLagging,
        Fault::ReplicaDown,
        Fault::SentinelFailover,
        Fault::RedisPrimaryKilled,
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
        Err(_) if sentinel => SENTINEL_SCHEDULE.to_vec(),
        Err(_) => SCHEDULE.to_vec(),
    }
}

/// How late the replica replays in a `ReplicaLagging` slot.
const REPLICA_LAG: Duration = Duration::from_secs(2);

/// How long PostgreSQL stays unreachable in a `PostgresDown` slot.
const OUTAGE: Duration = Duration::from_secs(3);
/// How long after an outage a 503 is still expected: the pools' and the change feed's
/// first connections after it.
const OUTAGE_TAIL: Duration = Duration::from_secs(2);

/// How long C stays stopped: longer than its lease (500 ms).
const PAUSE: Duration = Duration::from_millis(2500);

/// The Redis the instances share: one server (persistent, for the slots that restart it
/// from an older snapshot) behind a proxy for A and one for B, or a Sentinel group they
/// find the primary of by themselves.
pub(crate) enum Redis {
    Single {
        link_b: FaultProxy,
        link_a: FaultProxy,
        redis: RedisServer,
    },
    Sentinel(SentinelGroup),
}

impl Redis {
    /// The port of the Redis primary now.
    pub(crate) fn port(&self) -> u16 {
        match self {
            Self::Single { redis, .. } => redis.addr().port(),
            Self::Sentinel(group) => group.primary_port(),
        }
    }
}

/// The database: a private primary and a streaming replica every instance reads misses
/// from (`CHECKER_REPLICA=0`: the shared server, no replica).
pub(crate) struct Database {
    pub(crate) replica: Option<PgCluster>,
    pub(crate) primary: Option<PgCluster>,
}

/// What the faults act on: Redis, the proxy from every instance to PostgreSQL, the
/// replica, and C's process; with the faults injected so far.
/// Dropped in the order of its fields: C's process first, the database last.
pub(crate) struct Injector {
    pub(crate) c_process: tokio::process::Child,
    /// Every instance reaches PostgreSQL through it.
    pub(crate) link_pg: FaultProxy,
    /// PostgreSQL's own address, where `link_pg` leads back to after an outage.
    pub(crate) postgres: std::net::SocketAddr,
    pub(crate) redis: Redis,
    pub(crate) database: Database,
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
            redis,
            database,
            faults,
        } = self;
        let postgres = *postgres;
        let single = match redis {
            Redis::Single {
                link_b,
                link_a,
                redis,
            } => Some((link_b, link_a, redis)),
            Redis::Sentinel(_) => None,
        };
        match (fault, single) {
            (Fault::Calm, _) => tokio::time::sleep_until(slot_end.into()).await,
            (Fault::RedisKilled, Some((_, _, redis))) => {
                *faults.entry("redis killed and restarted").or_default() += 1;
                redis.kill();
                tokio::time::sleep_until(slot_end.into()).await;
                redis.restart_empty();
            }
            (Fault::RedisRestored, Some((_, _, redis))) => {
                *faults
                    .entry("redis restored from an older snapshot")
                    .or_default() += 1;
                assert_eq!(redis.cli(&["save"]), "OK", "redis takes a snapshot");
                tokio::time::sleep(SLOT / 2).await;
                redis.restart();
                tokio::time::sleep_until(slot_end.into()).await;
            }
            (Fault::RedisStalled, Some((link_b, link_a, _))) => {
                *faults.entry("redis stalled").or_default() += 1;
                link_a.stall();
                link_b.stall();
                tokio::time::sleep_until(slot_end.into()).await;
                link_a.resume();
                link_b.resume();
            }
            (Fault::ACutOff, Some((_, link_a, _))) => {
                *faults.entry("A cut off from redis").or_default() += 1;
                *run.cut_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + SLOT * 10);
                link_a.stall();
                tokio::time::sleep_until(slot_end.into()).await;
                link_a.resume();
                *run.cut_until.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + FEED_BOUND);
            }
            (Fault::BSubscriptionCut, Some((link_b, _, _))) => {
                *faults.entry("B's subscriptions silent").or_default() += 1;
                link_b.stall_subscriptions();
                tokio::time::sleep_until(slot_end.into()).await;
                link_b.resume();
            }
            (Fault::CPaused, _) => {
                *faults.entry("C stopped (SIGSTOP)").or_default() += 1;
                signal(c_process, "-STOP");
                tokio::time::sleep(PAUSE).await;
                signal(c_process, "-CONT");
                tokio::time::sleep_until(slot_end.into()).await;
            }
            (Fault::PostgresDown, _) => {
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
            (Fault::PostgresDropped, _) => {
                *faults.entry("postgres connections dropped").or_default() += 1;
                while Instant::now() + Duration::from_secs(2) < slot_end {
                    drop_postgres_connections(&run.a.db).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                tokio::time::sleep_until(slot_end.into()).await;
            }
            (Fault::ReplicaLagging, _) => {
                if let Some(replica) = &database.replica {
                    *faults.entry("replica lagging 2 s").or_default() += 1;
                    replica.set_apply_delay(REPLICA_LAG);
                    tokio::time::sleep_until(slot_end.into()).await;
                    replica.set_apply_delay(Duration::ZERO);
                } else {
                    tokio::time::sleep_until(slot_end.into()).await;
                }
            }
            (Fault::ReplicaDown, _) => {
                if let Some(replica) = &database.replica {
                    *faults.entry("replica down").or_default() += 1;
                    tokio::task::block_in_place(|| replica.stop());
                    tokio::time::sleep_until(slot_end.into()).await;
                    tokio::task::block_in_place(|| replica.restart());
                } else {
                    tokio::time::sleep_until(slot_end.into()).await;
                }
            }
            (Fault::SentinelFailover, None) => {
                if let Redis::Sentinel(group) = redis {
                    *faults.entry("sentinel failover").or_default() += 1;
                    tokio::task::block_in_place(|| group.failover());
                    run.redis_port
                        .store(group.primary_port(), Ordering::Relaxed);
                }
                tokio::time::sleep_until(slot_end.into()).await;
            }
            (Fault::RedisPrimaryKilled, None) => {
                if let Redis::Sentinel(group) = redis {
                    *faults.entry("redis primary killed (-9)").or_default() += 1;
                    tokio::task::block_in_place(|| {
                        group.kill_primary();
                        group.restart_killed();
                    });
                    run.redis_port
                        .store(group.primary_port(), Ordering::Relaxed);
                }
                tokio::time::sleep_until(slot_end.into()).await;
            }
            // A fault of the other Redis topology: a calm slot.
            (_, _) => tokio::time::sleep_until(slot_end.into()).await,
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
