//! [`PgCluster`]: a private PostgreSQL cluster on a free loopback port, and streaming
//! replicas of it, for tests that stop, slow or lag a database (never the shared one).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Where Debian's PostgreSQL 15 keeps its server programs; `PG_BIN` overrides it.
fn bin(program: &str) -> PathBuf {
    let dir = std::env::var_os("PG_BIN").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    );
    let path = dir.join(program);
    if path.exists() {
        path
    } else {
        PathBuf::from(program)
    }
}

/// Runs `program` as the `postgres` user when this process is root (`initdb` and the
/// server refuse to run as root), as this user otherwise.
fn as_postgres(program: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin(program));
        c
    } else {
        Command::new(bin(program))
    }
}

fn run(mut command: Command, what: &str) {
    let out = command
        .stdout(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private PostgreSQL server (a primary, or a streaming replica of one) on a free
/// loopback port with trust authentication for `postgres`, stopped and removed when
/// dropped.
#[derive(Debug)]
pub struct PgCluster {
    port: u16,
    /// Holds `data/` (the cluster) and the server's log and socket.
    dir: PathBuf,
}

impl PgCluster {
    /// Makes a new cluster with `initdb` and starts it.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// [`Self::start`], with more settings (`postgresql.conf` lines) added.
    pub fn start_with(settings: &str) -> Self {
        let cluster = Self::empty();
        let mut initdb = as_postgres("initdb");
        initdb
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"]);
        run(initdb, "initdb");
        std::fs::write(
            cluster.data().join("postgresql.auto.conf"),
            format!(
                "fsync = off\nfull_page_writes = off\nsynchronous_commit = on\n\
                 max_wal_senders = 4\nwal_level = replica\n{settings}\n"
            ),
        )
        .expect("writing the cluster's settings");
        cluster.start_server();
        cluster
    }

    /// Makes a streaming replica of `primary` with `pg_basebackup -R`, replaying each
    /// transaction `apply_delay` after its commit (`recovery_min_apply_delay`), and starts
    /// it.
    pub fn replica_of(primary: &PgCluster, apply_delay: Duration) -> Self {
        let replica = Self::empty();
        let mut backup = as_postgres("pg_basebackup");
        backup
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-X", "stream", "-R", "--no-sync"])
            // An immediate checkpoint: the default spread one waits up to minutes after a
            // large load.
            .args(["--checkpoint", "fast"])
            .arg("-D")
            .arg(replica.data());
        run(backup, "pg_basebackup");
        let mut settings = std::fs::OpenOptions::new()
            .append(true)
            .open(replica.data().join("postgresql.auto.conf"))
            .expect("the replica's settings");
        std::io::Write::write_all(
            &mut settings,
            format!(
                "recovery_min_apply_delay = '{}ms'\nhot_standby_feedback = on\n",
                apply_delay.as_millis()
            )
            .as_bytes(),
        )
        .expect("writing the replica's settings");
        replica.start_server();
        replica
    }

    fn empty() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("letip-pg-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        // The server runs as `postgres`: it must own its directory.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        Self { port, dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, action: &str) -> Command {
        let mut c = as_postgres("pg_ctl");
        c.arg("-D").arg(self.data()).arg(action);
        c
    }

    fn start_server(&self) {
        let mut start = self.pg_ctl("start");
        start
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.display()
            ))
            .arg("-w");
        run(start, "pg_ctl start");
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): sessions end without a word.
    pub fn stop(&self) {
        let mut stop = self.pg_ctl("stop");
        stop.args(["-m", "immediate", "-w"]);
        run(stop, "pg_ctl stop");
    }

    /// Starts the stopped server again on its port.
    pub fn restart(&self) {
        self.start_server();
    }

    /// Changes how long the replica waits before replaying a commit, and reloads.
    pub fn set_apply_delay(&self, delay: Duration) {
        let settings = self.data().join("postgresql.auto.conf");
        let kept: String = std::fs::read_to_string(&settings)
            .expect("the replica's settings")
            .lines()
            .filter(|l| !l.starts_with("recovery_min_apply_delay"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(
            &settings,
            format!(
                "{kept}recovery_min_apply_delay = '{}ms'\n",
                delay.as_millis()
            ),
        )
        .expect("writing the replica's settings");
        run(self.pg_ctl("reload"), "pg_ctl reload");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL command with `psql` on database `name` and answers its output
    /// (unaligned, tuples only).
    pub fn psql(&self, name: &str, sql: &str) -> String {
        let out = Command::new(bin("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", name, "-At", "-c", sql])
            .output()
            .expect("psql runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until the replica has replayed everything `primary` has written.
    pub fn caught_up_with(&self, primary: &PgCluster) {
        let target = primary.psql("postgres", "SELECT pg_current_wal_insert_lsn()");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = self.psql(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"),
            );
            if done == "t" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica never replayed {target}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut stop = self.pg_ctl("stop");
        stop.args(["-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(self.dir());
    }
}
