//! [`SentinelGroup`]: a private Redis primary with replicas, watched by three
//! `redis-sentinel` processes, that tests fail over on purpose.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::server::{answers_ping, redis_cli as cli};

/// The master's name the sentinels monitor.
pub const MASTER: &str = "mymaster";

/// A Redis primary and `replicas` replicas of it on free loopback ports, and three
/// sentinels (quorum two) that fail over after one second without an answer. Every
/// process is killed and its directory removed when dropped.
#[derive(Debug)]
pub struct SentinelGroup {
    /// Every data node: (port, process), the first one the primary at the start.
    nodes: Vec<(u16, Option<Child>)>,
    sentinels: Vec<(u16, Child)>,
    dir: PathBuf,
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl SentinelGroup {
    pub fn start(replicas: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("letip-sentinel-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let primary = free_port();
        let mut nodes = vec![(primary, Some(Self::spawn_node(&dir, primary, None)))];
        wait_for("the primary answers", Duration::from_secs(10), || {
            answers_ping(primary)
        });
        for _ in 0..replicas {
            let port = free_port();
            nodes.push((port, Some(Self::spawn_node(&dir, port, Some(primary)))));
        }
        for (port, _) in nodes.iter().skip(1) {
            wait_for("a replica is in sync", Duration::from_secs(20), || {
                cli(*port, &["info", "replication"]).contains("master_link_status:up")
            });
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir.display()
                ),
            )
            .expect("writing a sentinel's configuration");
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel starts (Debian package redis-sentinel)");
            sentinels.push((port, child));
        }
        let group = Self {
            nodes,
            sentinels,
            dir,
        };
        wait_for(
            "the sentinels know the replicas and each other",
            Duration::from_secs(30),
            || {
                group.sentinels.iter().all(|(port, _)| {
                    let master = cli(*port, &["sentinel", "master", MASTER]);
                    let field = |name: &str| {
                        let mut lines = master.lines();
                        lines
                            .by_ref()
                            .find(|l| *l == name)
                            .and_then(|_| lines.next())
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0)
                    };
                    field("num-slaves") >= replicas && field("num-other-sentinels") >= 2
                })
            },
        );
        group
    }

    fn spawn_node(dir: &std::path::Path, port: u16, replica_of: Option<u16>) -> Child {
        let mut c = Command::new("redis-server");
        c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--logfile")
            .arg(dir.join(format!("redis-{port}.log")))
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            // A replica writes what it received here, not where the test runs.
            .arg("--dir")
            .arg(dir)
            .args(["--dbfilename", &format!("dump-{port}.rdb")]);
        if let Some(primary) = replica_of {
            c.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts")
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`: the sentinels, as
    /// `REDIS_SENTINEL_NODES` names them.
    pub fn sentinel_nodes(&self) -> String {
        self.sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the primary the sentinels name now.
    pub fn primary_port(&self) -> u16 {
        let (port, _) = self.sentinels.first().expect("a sentinel");
        cli(*port, &["sentinel", "get-master-addr-by-name", MASTER])
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .expect("the sentinels name a primary")
    }

    /// Runs one command with redis-cli on the data node on `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// Waits until every sentinel names a primary other than `old` and that node
    /// answers as a primary.
    fn promoted_from(&self, old: u16) -> u16 {
        wait_for("a replica is promoted", Duration::from_secs(30), || {
            let now = self.primary_port();
            now != old
                && self.sentinels.iter().all(|(p, _)| {
                    cli(*p, &["sentinel", "get-master-addr-by-name", MASTER])
                        .contains(&now.to_string())
                })
                && cli(now, &["role"]).starts_with("master")
        });
        self.primary_port()
    }

    /// `SENTINEL FAILOVER`: the sentinels promote a replica and turn the old primary
    /// into a replica of it. Answers the new primary's port once it is promoted.
    pub fn failover(&self) -> u16 {
        let old = self.primary_port();
        let (port, _) = self.sentinels.first().expect("a sentinel");
        let answer = cli(*port, &["sentinel", "failover", MASTER]);
        assert_eq!(answer, "OK", "SENTINEL FAILOVER refused");
        let new = self.promoted_from(old);
        wait_for(
            "the old primary is a replica of the new one",
            Duration::from_secs(30),
            || cli(old, &["role"]).starts_with("slave"),
        );
        new
    }

    /// Kills the primary (SIGKILL); the sentinels find it down after a second and
    /// promote a replica. Answers the new primary's port once it is promoted.
    pub fn kill_primary(&mut self) -> u16 {
        let old = self.primary_port();
        if let Some((_, child)) = self.nodes.iter_mut().find(|(p, _)| *p == old)
            && let Some(mut child) = child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.promoted_from(old)
    }
}

impl SentinelGroup {
    /// Starts every killed node again, as a replica of the primary the sentinels name
    /// now, and waits until it is in sync (so that the group can fail over again).
    pub fn restart_killed(&mut self) {
        let primary = self.primary_port();
        for (port, child) in &mut self.nodes {
            if child.is_none() {
                *child = Some(Self::spawn_node(&self.dir, *port, Some(primary)));
                let port = *port;
                let in_sync =
                    || cli(port, &["info", "replication"]).contains("master_link_status:up");
                let deadline = Instant::now() + Duration::from_secs(20);
                while !in_sync() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !in_sync() {
                    // Pointed elsewhere meanwhile (a sentinel's reconfiguration racing
                    // the restart): point it at the primary again.
                    let (sentinel, _) = self.sentinels.first().expect("a sentinel");
                    let primary = cli(*sentinel, &["sentinel", "get-master-addr-by-name", MASTER])
                        .lines()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    cli(port, &["replicaof", "127.0.0.1", &primary]);
                    let log = self.dir.join(format!("redis-{port}.log"));
                    wait_for(
                        &format!("a restarted node is in sync (its log: {})", log.display()),
                        Duration::from_secs(30),
                        in_sync,
                    );
                }
            }
        }
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (_, child) in &mut self.nodes {
            if let Some(child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Kept after a failure, for the nodes' logs.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
