//! [`RedisServer`]: a private redis-server on a free port, killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::tls::TestCa;

/// A private redis-server, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    /// Where a persistent server keeps its snapshot and append-only file; removed when
    /// dropped.
    dir: Option<PathBuf>,
}

pub(crate) fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf.get(..n).is_some_and(|b| b.starts_with(b"+PONG")))
}

/// The process id of the redis-server answering on `port`, from `INFO server`.
pub(crate) fn process_id(port: u16) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while !text.windows(11).any(|w| w == b"process_id:") || !text.ends_with(b"\r\n") {
        let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
        text.extend_from_slice(buf.get(..n)?);
    }
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().find_map(|l| l.strip_prefix("process_id:"))?;
    line.trim().parse().ok()
}

impl RedisServer {
    /// Starts redis-server on a free port with persistence off.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts redis-server on `port` (one a client was already pointed at, say).
    pub fn start_on(port: u16) -> Self {
        let mut server = Self {
            port,
            child: None,
            extra: Vec::new(),
            dir: None,
        };
        server.spawn();
        server
    }

    /// Starts redis-server with a directory of its own for its snapshot (`SAVE`) and,
    /// with `["--appendonly", "yes"]` say, its append-only file, so that
    /// [`Self::restart`] brings back what it had persisted.
    pub fn start_persistent(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "letip-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let dir_arg = dir.to_string_lossy().into_owned();
        let mut args = vec!["--dir", dir_arg.as_str()];
        args.extend_from_slice(extra);
        let mut server = Self::start_with(&args);
        server.dir = Some(dir);
        server
    }

    /// Starts redis-server with extra arguments (`["--requirepass", "secret"]`, say).
    ///
    /// The free port is only free when it is picked: another test may start its own
    /// server on it first, and this one's would then fail to bind while the other's
    /// answers. So the server answering must be this one (its process id), or it starts
    /// again on another port; two tests never share a Redis.
    pub fn start_with(extra: &[&str]) -> Self {
        for _ in 0..20 {
            let mut server = Self {
                port: free_port(),
                child: None,
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                dir: None,
            };
            server.spawn();
            let needs_auth = server.extra.iter().any(|a| a == "--requirepass");
            let pid = server.child.as_ref().map(Child::id);
            if needs_auth || (pid.is_some() && process_id(server.port) == pid) {
                return server;
            }
        }
        panic!("no redis-server of this test could bind a port");
    }

    fn spawn(&mut self) {
        // A snapshot of its own, outside the working directory: a server made a replica
        // writes what it received there, and a server started later in the same
        // directory would load it as its own data.
        let dbfilename = format!("letip-test-{}.rdb", self.port);
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .args(["--dbfilename", &dbfilename])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Behind a password or TLS, PING in plain text gets no PONG: wait for the port.
        let needs_auth = self
            .extra
            .iter()
            .any(|a| a == "--requirepass" || a == "--tls-port");
        while !needs_auth && !answers_ping(self.port) {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        if needs_auth {
            while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts redis-server speaking only TLS (with `ca`'s server certificate) on a free
    /// port, with extra arguments.
    pub fn start_tls(ca: &TestCa, extra: &[&str]) -> Self {
        let port = free_port();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut args = vec![
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&ca.server_cert),
            "--tls-key-file".to_owned(),
            path(&ca.server_key),
            "--tls-ca-cert-file".to_owned(),
            path(&ca.ca_cert),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut server = Self {
            port,
            child: None,
            extra: args,
            dir: None,
        };
        server.spawn();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL): no goodbye to its clients, data lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port: empty, or from what it persisted (see
    /// [`Self::start_persistent`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The directory of a server started with [`Self::start_persistent`].
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Starts it again on the same port, empty even if it had persisted something.
    pub fn restart_empty(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        self.spawn();
    }

    /// Runs one command with redis-cli and answers its output.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

/// Runs one command with redis-cli on the server on `port` and answers its output.
pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
