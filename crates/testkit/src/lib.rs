//! Fixtures for tests that break Redis on purpose. They never touch a shared Redis: each
//! [`RedisServer`] is a private `redis-server` on a free loopback port, and a
//! [`FaultProxy`] sits between a client and any server to stall or cut its connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Polls `f` every 25 ms until it holds, for what a background mechanism (reconnection,
/// a breaker's backoff, pub/sub delivery) makes true; panics naming `what` after 10 s.
pub async fn eventually<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; bind soon).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("a bound address").port()
}

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

fn answers_ping(port: u16) -> bool {
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
fn process_id(port: u16) -> Option<u32> {
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
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
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
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A certificate authority and a server certificate it signed for 127.0.0.1 and
/// localhost, made with the `openssl` command in a directory removed when dropped.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "letip-test-ca-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl is installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=letip test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("writable");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        Self {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            dir,
        }
    }

    /// The authority's certificate, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca_cert).expect("the CA certificate")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
        let dir = std::env::temp_dir().join(format!("letip-cluster-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut nodes = Vec::new();
        for _ in 0..masters {
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
            .args(["--cluster-replicas", "0", "--cluster-yes"])
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
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    /// Bytes are held, in both directions, until the mode changes.
    Stall,
    /// Held only on connections whose client subscribed (sent `SUBSCRIBE`): a
    /// subscription that went silent while plain commands pass.
    StallSubscriptions,
}

impl Mode {
    fn passes(self, subscriber: bool) -> bool {
        match self {
            Self::Pass => true,
            Self::Stall => false,
            Self::StallSubscriptions => !subscriber,
        }
    }
}

/// A TCP proxy on a free loopback port in front of `upstream`. It can hold every byte
/// (a stalled server), or cut every open connection (a network failure), and counts
/// the requests of one kind that are in flight through it.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: Arc<watch::Sender<Mode>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    in_flight: Arc<InFlight>,
    close_next: Arc<AtomicI64>,
}

/// Requests of one kind sent through the proxy and not yet answered, over every open
/// connection: a request is an occurrence of `request` in what a client sends, its
/// answer an occurrence of `reply` in what the server sends back (in order, as Redis
/// answers). A connection that ends takes its unanswered requests with it.
#[derive(Debug)]
struct InFlight {
    request: &'static [u8],
    reply: &'static [u8],
    now: AtomicI64,
    peak: AtomicI64,
    total: AtomicI64,
}

/// Counts the occurrences of `needle` in `tail ++ chunk` and keeps the last bytes of the
/// stream in `tail`, so a needle split between two reads is counted once.
fn occurrences(needle: &[u8], tail: &mut Vec<u8>, chunk: &[u8]) -> i64 {
    if needle.is_empty() {
        return 0;
    }
    tail.extend_from_slice(chunk);
    let n = tail.windows(needle.len()).filter(|w| *w == needle).count();
    let keep = needle.len() - 1;
    let cut = tail.len().saturating_sub(keep);
    tail.drain(..cut);
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Which way a pump carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Up,
    Down,
}

/// Carries bytes one way. It keeps reading while the link is stalled (holding what it
/// reads), so a connection its source closes ends at once, stalled or not: held bytes
/// die with it, as on a real link, unless the link passes when the source closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    way: Way,
    count: (Arc<InFlight>, Arc<AtomicI64>),
    subscriber: Arc<AtomicBool>,
) {
    let (in_flight, open) = count;
    let is_subscriber = subscriber.clone();
    let (held, mut to_send) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = async move {
        // A local, not a capture: dropped when reading ends, which ends the writer once
        // it has sent what is held.
        let held = held;
        let mut tail = Vec::new();
        let mut subscribe_tail = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let Some(chunk) = buf.get(..n) else { return };
            match way {
                // Sent by the client: in flight from now, even while the proxy holds it.
                Way::Up => {
                    if occurrences(b"SUBSCRIBE", &mut subscribe_tail, chunk) > 0 {
                        subscriber.store(true, Ordering::SeqCst);
                    }
                    let sent = occurrences(in_flight.request, &mut tail, chunk);
                    if sent > 0 {
                        open.fetch_add(sent, Ordering::SeqCst);
                        in_flight.total.fetch_add(sent, Ordering::SeqCst);
                        let now = in_flight.now.fetch_add(sent, Ordering::SeqCst) + sent;
                        in_flight.peak.fetch_max(now, Ordering::SeqCst);
                    }
                }
                // Answered once the server answered, before the client can read it (and
                // send its next request): one request is never counted twice.
                Way::Down => {
                    let answered = occurrences(in_flight.reply, &mut tail, chunk);
                    if answered > 0 {
                        open.fetch_sub(answered, Ordering::SeqCst);
                        in_flight.now.fetch_sub(answered, Ordering::SeqCst);
                    }
                }
            }
            if held.send(chunk.to_vec()).is_err() {
                return;
            }
        }
    };
    let passes = mode.clone();
    let writer = async move {
        let mut mode = mode;
        while let Some(chunk) = to_send.recv().await {
            let sub = || is_subscriber.load(Ordering::SeqCst);
            if mode.wait_for(|m| m.passes(sub())).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let mut writer = std::pin::pin!(writer);
    tokio::select! {
        () = reader => {
            if *passes.borrow() == Mode::Pass {
                let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
            }
        }
        () = &mut writer => {}
    }
}

impl FaultProxy {
    /// Starts proxying to `upstream`. Must be called inside a Tokio runtime.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let mode = Arc::new(watch::channel(Mode::Pass).0);
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        // Redis's answer to a plain PING: what health checks send.
        let in_flight = Arc::new(InFlight {
            request: b"*1\r\n$4\r\nPING\r\n",
            reply: b"+PONG\r\n",
            now: AtomicI64::new(0),
            peak: AtomicI64::new(0),
            total: AtomicI64::new(0),
        });
        let close_next = Arc::new(AtomicI64::new(0));
        let upstream = Arc::new(Mutex::new(upstream));
        let accept = {
            let upstream = upstream.clone();
            let mode = mode.clone();
            let connections = connections.clone();
            let in_flight = in_flight.clone();
            let close_next = close_next.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if close_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                            (n > 0).then(|| n - 1)
                        })
                        .is_ok()
                    {
                        drop(client);
                        continue;
                    }
                    let mode = mode.clone();
                    let in_flight = in_flight.clone();
                    let upstream = *upstream.lock().unwrap_or_else(|p| p.into_inner());
                    let task = tokio::spawn(async move {
                        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let open = Arc::new(AtomicI64::new(0));
                        let count = || (in_flight.clone(), open.clone());
                        let subscriber = Arc::new(AtomicBool::new(false));
                        let up = tokio::spawn(pump(
                            cr,
                            sw,
                            mode.subscribe(),
                            Way::Up,
                            count(),
                            subscriber.clone(),
                        ));
                        let down = tokio::spawn(pump(
                            sr,
                            cw,
                            mode.subscribe(),
                            Way::Down,
                            count(),
                            subscriber,
                        ));
                        let (abort_up, abort_down) = (up.abort_handle(), down.abort_handle());
                        // Whichever side ends first ends both; aborting this task ends both,
                        // and the connection's unanswered requests are no longer in flight.
                        struct Both(
                            tokio::task::AbortHandle,
                            tokio::task::AbortHandle,
                            Arc<InFlight>,
                            Arc<AtomicI64>,
                        );
                        impl Drop for Both {
                            fn drop(&mut self) {
                                self.0.abort();
                                self.1.abort();
                                let open = self.3.swap(0, Ordering::SeqCst);
                                self.2.now.fetch_sub(open, Ordering::SeqCst);
                            }
                        }
                        let _both = Both(abort_up, abort_down, in_flight.clone(), open.clone());
                        tokio::select! {
                            _ = up => {}
                            _ = down => {}
                        }
                    });
                    connections
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(task);
                }
            })
        };
        Self {
            addr,
            upstream,
            mode,
            connections,
            accept,
            in_flight,
            close_next,
        }
    }

    /// Closes the next `n` connections as soon as they are accepted, before a byte
    /// passes: a server that ends new sessions (restarting, or terminating them).
    pub fn close_next(&self, n: i64) {
        self.close_next.store(n, Ordering::SeqCst);
    }

    /// The most plain `PING`s that were ever in flight through the proxy at once (sent
    /// by a client and not yet answered, on connections still open).
    pub fn pings_in_flight_peak(&self) -> i64 {
        self.in_flight.peak.load(Ordering::SeqCst)
    }

    /// Every plain `PING` sent through the proxy so far.
    pub fn pings_sent(&self) -> i64 {
        self.in_flight.total.load(Ordering::SeqCst)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Holds every byte from now on, in both directions.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Holds every byte, both ways, of the connections that subscribed (now or later):
    /// subscriptions go silent while plain commands pass.
    pub fn stall_subscriptions(&self) {
        self.mode.send_replace(Mode::StallSubscriptions);
    }

    /// Lets bytes through again, held ones first.
    pub fn resume(&self) {
        self.mode.send_replace(Mode::Pass);
    }

    /// Sends new connections to `upstream` from now on and closes every open one: an
    /// endpoint that fails over to another server, as a managed Redis's does.
    pub fn switch_to(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = upstream;
        self.cut();
    }

    /// Closes every open connection; new ones are accepted as before.
    pub fn cut(&self) {
        for task in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_needle_split_between_reads_is_counted_once() {
        let needle = b"PING\r\n";
        let mut tail = Vec::new();
        assert_eq!(occurrences(needle, &mut tail, b"*1\r\n$4\r\nPI"), 0);
        assert_eq!(
            occurrences(needle, &mut tail, b"NG\r\n*1\r\n$4\r\nPING\r\n"),
            2
        );
        assert_eq!(occurrences(needle, &mut tail, b"\r\n"), 0);
        assert_eq!(
            occurrences(needle, &mut tail, b"PING\r\nPING\r\nPING\r\n"),
            3
        );
    }
}
