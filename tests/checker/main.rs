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
//! write refused then is not checked further); the read replica replaying each commit
//! 2 s late; the read replica stopped, then started again. Every read must be fresh,
//! except in the slot where A is cut off:
//! there A's writes reach B's readers through PostgreSQL's change feed, and the staleness
//! seen must stay within `FEED_BOUND` (docs/design.md, "Freshness guarantees").
//!
//! A request that gets no answer at all (a connection closed before the response, say)
//! is a **transport error**: counted with the request, the instance and the fault slot
//! it happened in, and it fails the run like a 5xx, since a user would see it.
//!
//! The database is a private PostgreSQL primary (`initdb`) with a streaming replica of
//! it (`pg_basebackup -R`) every instance reads misses from (`CHECKER_REPLICA=0`: the
//! shared server, no replica). `CHECKER_REDIS=sentinel` puts Redis behind a Sentinel
//! group (a primary, a replica, three sentinels) that the instances find the primary
//! through, with slots of `SENTINEL FAILOVER` and of a `kill -9` of the primary (the
//! faults that need one Redis behind proxies are left out then).
//!
//! `CHECKER_SECONDS` sets the length (60 by default; `scripts/checker.sh --seconds 600`
//! runs it longer); `CHECKER_FAULTS` repeats only the faults it names (comma-separated,
//! e.g. `ACutOff,PostgresDropped`); `CHECKER_BACKEND=redis` runs A and B in the Redis
//! mode beside C on the default; `CHECKER_OPERATIONS` instead runs until that many reads and writes
//! were checked (`scripts/checker.sh --release --operations 1000000`). The run prints
//! operations, operations per second, stale reads, violations, 5xx and transport
//! errors, and fails unless the last three are zero.

#![allow(clippy::indexing_slicing, clippy::print_stdout)]

mod checks;
mod faults;
mod model;
mod readers;
mod report;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use letip_server::CacheBackend;
use letip_testkit::{FaultProxy, PgCluster, RedisServer, SentinelGroup};
use letip_tests::{TestApp, TestDb};

use crate::faults::{Database, Fault, Injector, Redis, schedule, signal, spawn_process};
use crate::model::Run;
use crate::readers::reader;
use crate::writer::writer;

/// The longest a write answered by an instance cut off from Redis may stay hidden from
/// readers of the other instance.
const FEED_BOUND: Duration = Duration::from_secs(1);
const SLOT: Duration = Duration::from_secs(6);
const WRITERS: usize = 4;
const READERS: usize = 6;
/// Live businesses per writer: every city's list stays on one page of 100.
const OWNED: usize = 8;
const CITIES: [&str; 4] = ["Asbury Park", "Red Bank", "Freehold", "Ocean Grove"];

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
    // CHECKER_REDIS=sentinel: a Sentinel group every instance finds the primary through
    // (for the failover slots), else one Redis behind a proxy per instance.
    let sentinel = std::env::var("CHECKER_REDIS").as_deref() == Ok("sentinel");
    let redis = if sentinel {
        Redis::Sentinel(tokio::task::block_in_place(|| SentinelGroup::start(1)))
    } else {
        // Persistent, for the slots that restart it from an older snapshot.
        let redis = RedisServer::start_persistent(&[]);
        Redis::Single {
            link_a: FaultProxy::start(redis.addr()).await,
            link_b: FaultProxy::start(redis.addr()).await,
            redis,
        }
    };
    let redis_url = |link: Option<&FaultProxy>| match (&redis, link) {
        (Redis::Single { .. }, Some(link)) => link.url(),
        // With Sentinel the URL gives only the password and database.
        _ => "redis://127.0.0.1:1/0".to_owned(),
    };
    let sentinel_nodes = match &redis {
        Redis::Sentinel(group) => group.sentinel_nodes(),
        Redis::Single { .. } => String::new(),
    };
    let (link_a, link_b) = match &redis {
        Redis::Single { link_a, link_b, .. } => (Some(link_a), Some(link_b)),
        Redis::Sentinel(_) => (None, None),
    };
    let link_c = match &redis {
        Redis::Single { redis, .. } => Some(FaultProxy::start(redis.addr()).await),
        Redis::Sentinel(_) => None,
    };
    // A private primary with a streaming replica every instance reads misses from
    // (CHECKER_REPLICA=0: the shared PostgreSQL, no replica).
    let database = if std::env::var("CHECKER_REPLICA").as_deref() == Ok("0") {
        Database {
            replica: None,
            primary: None,
        }
    } else {
        let primary = tokio::task::block_in_place(PgCluster::start);
        let replica =
            tokio::task::block_in_place(|| PgCluster::replica_of(&primary, Duration::ZERO));
        Database {
            replica: Some(replica),
            primary: Some(primary),
        }
    };
    let db = match &database.primary {
        Some(primary) => Arc::new(TestDb {
            url: primary.url(&format!("letip_checker_{}", uuid::Uuid::new_v4().simple())),
        }),
        None => Arc::new(TestDb::new()),
    };
    let replica_urls: Vec<String> = database.replica.iter().map(|r| r.url(&db.name())).collect();
    // Every instance reaches PostgreSQL through `link_pg` (A's URL, which B and C take).
    // CHECKER_BACKEND=redis: A and B in the Redis mode (C stays on the default).
    let backend = match std::env::var("CHECKER_BACKEND").as_deref() {
        Ok("redis") => CacheBackend::Redis,
        _ => CacheBackend::Tiered,
    };
    let shared = |c: &mut letip_server::Config| {
        c.cache_backend = backend;
        c.redis_sentinel_nodes = sentinel_nodes.clone();
        c.database_replica_urls = replica_urls.clone();
    };
    let (a, link_pg) = TestApp::spawn_through_proxy_on(db, |c| {
        shared(c);
        c.redis_url = redis_url(link_a);
        // A gives up on an invalidation as soon as a read would: while it is cut off,
        // its writes are answered at once and reach B's readers through the change
        // feed alone (B waits the default second). Not with Sentinel, which has no
        // slot that cuts A off.
        if !sentinel {
            c.cache_invalidate_timeout_ms = c.cache_timeout_ms;
        }
    })
    .await;
    let postgres = a.db.addr();
    let b = a
        .spawn_beside(|c| {
            shared(c);
            c.redis_url = redis_url(link_b);
            c.database_url = a.config.database_url.clone();
        })
        .await;
    let (c, c_process) = spawn_process(&a, &redis_url(link_c.as_ref())).await;
    println!(
        "topology: Redis {}, PostgreSQL {}",
        if sentinel {
            "behind Sentinel (a primary, a replica, three sentinels)"
        } else {
            "one server behind a proxy per instance"
        },
        if database.replica.is_some() {
            "a private primary and a streaming replica"
        } else {
            "the shared server, no replica"
        }
    );
    let redis_port = redis.port();
    let mut injector = Injector {
        c_process,
        link_pg,
        postgres,
        redis,
        database,
        faults: HashMap::new(),
    };
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
        redis_port: std::sync::atomic::AtomicU16::new(redis_port),
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

    let schedule = schedule(sentinel);
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
        injector.inject(fault, slot_end, &run).await;
        slot += 1;
    }
    let mut finished = started;
    for t in tasks {
        finished = finished.max(t.await.expect("a client task"));
    }

    signal(&injector.c_process, "-CONT");
    let leases = report::leases(&run).await;
    let _ = injector.c_process.kill().await;
    let report = run.report.lock().unwrap_or_else(|p| p.into_inner());
    report.print_and_check(
        finished.duration_since(started).as_secs_f64(),
        target,
        seconds,
        &injector.faults,
        &leases,
    );
}
