//! [`RedisCluster`]: a private Redis Cluster of masters on free ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::server::{answers_ping, redis_cli};

/// A private Redis Cluster of masters without replicas on free loopback ports, stopped and
/// removed when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<(u16, Child)>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts `masters` nodes with `--cluster-enabled yes` and joins them into one cluster
    /// covering every slot.
    pub fn start(masters: usize) -> Self {
        Self::start_with_replicas(masters, 0)
    }

    /// [`Self::start`], with `replicas` replicas of each master.
    pub fn start_with_replicas(masters: usize, replicas: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("letip-cluster-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = free_port();
            nodes.push((port, Self::spawn_node(&dir, port)));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (port, _) in &nodes {
            while !answers_ping(*port) {
                assert!(Instant::now() < deadline, "a cluster node did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes, dir };
        while !cluster.nodes.iter().all(|(p, _)| {
            let out = Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.contains("cluster_state:ok")
        }) {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Every replica has finished its first sync with its master.
        while !(0..cluster.nodes.len()).all(|n| {
            let role = cluster.cli(n, &["info", "replication"]);
            role.contains("role:master") || role.contains("master_link_status:up")
        }) {
            assert!(Instant::now() < deadline, "a replica never synced");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// One node on `port`, keeping its cluster configuration and its snapshot (`SAVE`)
    /// in `dir` under names of its own.
    fn spawn_node(dir: &Path, port: u16) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(format!("nodes-{port}.conf"))
            .arg("--dir")
            .arg(dir)
            .arg("--dbfilename")
            .arg(format!("dump-{port}.rdb"))
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts")
    }

    /// Runs one command with redis-cli on node `i` and answers its output.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let port = self
            .nodes
            .get(i)
            .map(|(p, _)| *p)
            .expect("a node of the cluster");
        redis_cli(port, args)
    }

    /// Kills node `i` (SIGKILL) and starts it again on its port from its last snapshot,
    /// as the same cluster node; answers once the cluster is ok again.
    pub fn restart_node(&mut self, i: usize) {
        let dir = self.dir.clone();
        let (port, child) = self.nodes.get_mut(i).expect("a node of the cluster");
        let _ = child.kill();
        let _ = child.wait();
        *child = Self::spawn_node(&dir, *port);
        let port = *port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !answers_ping(port) {
            assert!(Instant::now() < deadline, "the node did not start again");
            std::thread::sleep(Duration::from_millis(20));
        }
        while !(0..self.nodes.len()).all(|n| {
            self.cli(n, &["cluster", "info"])
                .contains("cluster_state:ok")
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster never became ok again"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Promotes the first replica with `CLUSTER FAILOVER` (its master becomes its replica)
    /// and answers its index once it is a master and the cluster is ok.
    pub fn fail_over_a_replica(&self) -> usize {
        let i = (0..self.nodes.len())
            .find(|&n| self.cli(n, &["role"]).starts_with("slave"))
            .expect("a replica in the cluster");
        assert_eq!(self.cli(i, &["cluster", "failover"]), "OK");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(self.cli(i, &["role"]).starts_with("master")
            && (0..self.nodes.len()).all(|n| {
                self.cli(n, &["cluster", "info"])
                    .contains("cluster_state:ok")
            }))
        {
            assert!(Instant::now() < deadline, "the replica was never promoted");
            std::thread::sleep(Duration::from_millis(50));
        }
        i
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(p, _)| *p).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
