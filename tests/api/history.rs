//! A Redis that forgets writes it acknowledged: restarted from an older snapshot, killed
//! with its append-only file fsynced once a second, or replaced behind its address by a
//! replica that had not received the last writes. Two instances, on the Redis mode and
//! on the leased near tier: every read after a write's answer shows the write, and the
//! cache answers hits again soon after Redis does.

use std::time::{Duration, Instant};

use letip_server::CacheBackend;
use letip_testkit::{FaultProxy, RedisServer};
use letip_tests::{TestApp, id};
use serde_json::json;

/// How a test's Redis loses the tail of its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `SAVE` before the writes, then killed and restarted from that snapshot.
    Snapshot,
    /// `--appendonly yes --appendfsync everysec`, killed (SIGKILL) right after the writes
    /// and restarted from its append-only file, whose tail written since the writes began
    /// is lost as a power cut loses what was not yet fsynced (a SIGKILL alone loses
    /// nothing the kernel already holds).
    AppendOnly,
    /// The replica, whose link was held during the writes, promoted with
    /// `REPLICAOF NO ONE` and put behind the address the instances use.
    Promotion,
}

/// The Redis of a test and what stands in front of it.
struct Deployment {
    primary: RedisServer,
    /// With [`Fault::AppendOnly`]: the append-only file and its length before the writes.
    fsynced: Option<(std::path::PathBuf, u64)>,
    /// With [`Fault::Promotion`]: the replica, the proxy its replication passes through,
    /// and the proxy the instances talk to.
    replica: Option<(RedisServer, FaultProxy, FaultProxy)>,
}

impl Deployment {
    async fn start(fault: Fault) -> Self {
        match fault {
            Fault::Snapshot => Self {
                primary: RedisServer::start_persistent(&[]),
                fsynced: None,
                replica: None,
            },
            Fault::AppendOnly => Self {
                primary: RedisServer::start_persistent(&[
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                ]),
                fsynced: None,
                replica: None,
            },
            Fault::Promotion => {
                let primary = RedisServer::start();
                let link = FaultProxy::start(primary.addr()).await;
                let port = link.addr().port().to_string();
                let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
                let front = FaultProxy::start(primary.addr()).await;
                let deadline = Instant::now() + Duration::from_secs(10);
                while !replica
                    .cli(&["info", "replication"])
                    .contains("master_link_status:up")
                {
                    assert!(Instant::now() < deadline, "the replica never synced");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Self {
                    primary,
                    fsynced: None,
                    replica: Some((replica, link, front)),
                }
            }
        }
    }

    /// What the instances connect to.
    fn url(&self) -> String {
        match &self.replica {
            Some((_, _, front)) => front.url(),
            None => self.primary.url(),
        }
    }

    /// Before the writes that will be lost.
    async fn before_writes(&mut self) {
        match &self.replica {
            Some((replica, link, _)) => {
                // Everything so far has reached the replica; nothing from now on will.
                let offset = |s: &RedisServer, field: &str| {
                    let info = s.cli(&["info", "replication"]);
                    info.lines()
                        .find_map(|l| l.strip_prefix(field))
                        .and_then(|v| v.trim().parse::<i64>().ok())
                        .unwrap_or(-1)
                };
                let deadline = Instant::now() + Duration::from_secs(10);
                while offset(replica, "slave_repl_offset:")
                    < offset(&self.primary, "master_repl_offset:")
                {
                    assert!(Instant::now() < deadline, "the replica never caught up");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                link.stall();
            }
            None => {
                if self
                    .primary
                    .cli(&["config", "get", "appendonly"])
                    .contains("no")
                {
                    assert_eq!(self.primary.cli(&["save"]), "OK");
                } else {
                    let dir = self.primary.dir().expect("a persistent server");
                    let aof = std::fs::read_dir(dir.join("appendonlydir"))
                        .expect("an append-only directory")
                        .flatten()
                        .map(|e| e.path())
                        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
                        .expect("an incremental append-only file");
                    let len = std::fs::metadata(&aof).expect("its length").len();
                    self.fsynced = Some((aof, len));
                }
            }
        }
    }

    /// Loses what was written since [`Self::before_writes`] and answers again.
    fn lose_the_tail(&mut self) {
        match &self.replica {
            Some((replica, link, front)) => {
                link.cut();
                assert_eq!(replica.cli(&["replicaof", "no", "one"]), "OK");
                front.switch_to(replica.addr());
            }
            None => {
                self.primary.kill();
                if let Some((aof, len)) = &self.fsynced {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(aof)
                        .expect("the append-only file");
                    file.set_len(*len).expect("its tail cut");
                }
                self.primary.restart();
            }
        }
    }
}

/// Reads `path` on `app` until it answers `X-Cache: HIT`; panics after `within`.
async fn hit_within(app: &TestApp, path: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let read = app.get(path).await;
        assert!(read.status < 500, "{path}: {}", read.text);
        if read.header("x-cache") == Some("HIT") {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{path} answered no hit within {within:?} of Redis answering again"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn forgetting_redis_never_brings_old_entries_back(backend: CacheBackend, fault: Fault) {
    let mut redis = Deployment::start(fault).await;
    let url = redis.url();
    let configure = |c: &mut letip_server::Config| {
        c.cache_backend = backend;
        c.redis_url = url.clone();
    };
    let a = TestApp::spawn_with(configure).await;
    let b = a.spawn_beside(configure).await;
    let mut details = Vec::new();
    for i in 0..4 {
        let biz = a
            .business(json!({"name": format!("before {i}"), "city": "Marlboro"}))
            .await;
        details.push(format!("/api/businesses/{}", id(&biz)));
    }
    let list = "/api/businesses?city=Marlboro";
    let mut paths: Vec<&str> = details.iter().map(String::as_str).collect();
    paths.extend([list, "/api/businesses", "/api/businesses/stats"]);
    for app in [&a, &b] {
        for p in &paths {
            hit_within(app, p, Duration::from_secs(5)).await;
        }
    }

    redis.before_writes().await;
    for (i, d) in details.iter().enumerate() {
        let patched = a.patch(d, json!({"name": format!("after {i}")})).await;
        assert_eq!(patched.status, 200, "{}", patched.text);
    }
    let contact = b
        .post(&format!("{}/contacts", details[0]), json!({"name": "Ann"}))
        .await;
    assert_eq!(contact.status, 201, "{}", contact.text);
    redis.lose_the_tail();
    let back = Instant::now();

    // Every read from now on was sent after every write's answer.
    let mut hits = 0;
    let mut reads = 0;
    let mut first_hits = [[None; 4]; 2];
    while back.elapsed() < Duration::from_secs(3) {
        for (n, app) in [&a, &b].into_iter().enumerate() {
            for (i, d) in details.iter().enumerate() {
                let sent = back.elapsed();
                let read = app.get(d).await;
                assert_eq!(read.status, 200, "{}", read.text);
                assert_eq!(
                    read.body["name"],
                    format!("after {i}"),
                    "{fault:?} on {backend:?}: {} answered {} ({:?})",
                    d,
                    read.text,
                    read.header("x-cache")
                );
                if read.header("x-cache") == Some("HIT") {
                    hits += 1;
                    first_hits[n][i].get_or_insert(sent);
                }
                reads += 1;
            }
            let page = app.get(list).await;
            assert_eq!(page.status, 200, "{}", page.text);
            let names: Vec<&str> = page.body["data"]
                .as_array()
                .expect("a page")
                .iter()
                .filter_map(|b| b["name"].as_str())
                .collect();
            assert!(
                names.iter().all(|n| n.starts_with("after")),
                "{fault:?} on {backend:?}: the list answered {names:?}"
            );
            let stats = app.get("/api/businesses/stats").await;
            assert_eq!(stats.body["totalContacts"], 1, "{}", stats.text);
            let first = app.get(&details[0]).await;
            assert_eq!(
                first.body["contacts"].as_array().map(Vec::len),
                Some(1),
                "{}",
                first.text
            );
        }
    }
    // Hits again, on both instances, within 2 s of Redis answering.
    let first_hits: Vec<Option<Duration>> = first_hits.iter().flatten().copied().collect();
    assert!(
        first_hits
            .iter()
            .all(|t| t.is_some_and(|t| t < Duration::from_secs(2))),
        "{fault:?} on {backend:?}: the first hit of each detail on each instance came after \
         {first_hits:?}"
    );
    println!(
        "{fault:?} on {backend:?}: {hits} of {reads} detail reads hit in the 3 s after Redis \
         came back, every one fresh; first hits after {first_hits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restored_from_an_older_snapshot_serves_nothing_older_on_redis() {
    forgetting_redis_never_brings_old_entries_back(CacheBackend::Redis, Fault::Snapshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restored_from_an_older_snapshot_serves_nothing_older_on_the_near_tier() {
    forgetting_redis_never_brings_old_entries_back(CacheBackend::Tiered, Fault::Snapshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_with_its_append_only_file_serves_nothing_older_on_redis() {
    forgetting_redis_never_brings_old_entries_back(CacheBackend::Redis, Fault::AppendOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_with_its_append_only_file_serves_nothing_older_on_the_near_tier() {
    forgetting_redis_never_brings_old_entries_back(CacheBackend::Tiered, Fault::AppendOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_promoted_behind_the_address_serves_nothing_older_on_redis() {
    forgetting_redis_never_brings_old_entries_back(CacheBackend::Redis, Fault::Promotion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_promoted_behind_the_address_serves_nothing_older_on_the_near_tier() {
    forgetting_redis_never_brings_old_entries_back(CacheBackend::Tiered, Fault::Promotion).await;
}
