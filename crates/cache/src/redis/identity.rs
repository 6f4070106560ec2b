//! Which Redis history the cache trusts.
//!
//! Redis can forget writes it acknowledged: a restart from an RDB snapshot or an AOF
//! fsynced once a second, a failover to a replica that had not received the last writes
//! (replication is asynchronous), a cluster shard promoting such a replica. What it
//! forgets here are generation bumps, so entries stored before a write would become
//! current again, and lease renewals, so a writer would not wait for a holder. Nothing in
//! the data can tell: a snapshot restores every key, a marker key of the cache's included.
//!
//! What does tell is the server itself: `run_id` changes at every start and
//! `master_replid` at every promotion. Before a connection serves anything, the cache
//! reads the identity of every node behind it and runs [`CHECK`] against the record it
//! keeps in Redis (`ns:{#near}:identity`, next to the lease table): a node whose identity
//! is not the recorded one starts a new *history*. The script then, atomically:
//!
//! - raises the **floor**: a generation taken from the new node's clock (microseconds),
//!   and past every earlier floor. Every script is given the floor; a generation below it
//!   is moved past it before it is used (as an invalidation moves it), and nothing is
//!   stored under a tag below it. So every entry written before the new history began is
//!   a miss, whatever a snapshot restored: it costs what a Redis restarted empty costs,
//!   one miss per entry;
//! - forgets the lease table, so every writer waits out one lease before it answers:
//!   leases the old history granted end by then, whether or not their renewals survived.
//!
//! Every process that finds the record naming the node's identity adopts its floor, so
//! instances started later, or reconnecting later, agree on it. A process that sees a
//! node identity other than the last one it saw also drops what it derived from the old
//! history (the near tier's copies and lease, the index memo) and brings its
//! subscriptions back, all before the new connection answers its first call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use deadpool_redis::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use deadpool_redis::redis::{self, RedisError, RedisResult, Script, Value};

use super::connection::Conn;
use super::fence::Promotion;

/// KEYS: the identity record, the lease table. ARGV: the identity of the node(s). Answers
/// `{1, floor}` when it began a new history (a new floor, the lease table forgotten), or
/// `{0, floor}` when the record already names this identity.
pub(crate) const CHECK: &str = include_str!("lua/identity.lua");

/// The identity of one server from its `INFO` text: `run_id/master_replid` (a server that
/// hides its replication id is known by its run id alone). `None` if it shows neither.
pub(crate) fn identity_of(info: &str) -> Option<String> {
    let field = |name: &str| info_field(info, name).filter(|v| !v.is_empty());
    match (field("run_id"), field("master_replid")) {
        (Some(run), Some(repl)) => Some(format!("{run}/{repl}")),
        (Some(run), None) => Some(run.to_owned()),
        (None, _) => None,
    }
}

/// One field of an `INFO` text.
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The identity of a cluster from each master's: `addr=identity`, sorted by address and
/// joined by commas, so any node's restart or promotion changes it.
pub(crate) fn cluster_identity(mut nodes: Vec<(String, String)>) -> String {
    nodes.sort();
    nodes
        .iter()
        .map(|(addr, id)| format!("{addr}={id}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What a server that shows no identity is known by: a name of this connection alone, so
/// each new connection to it starts a new history. A cold cache after every reconnect is
/// what it costs not to know whether the server kept what it acknowledged.
pub(crate) fn unknown_identity() -> String {
    format!("unknown:{:016x}", rand::random::<u64>())
}

/// The floor's answer from [`CHECK`]: whether it began a new history, and the floor.
pub(crate) fn checked(answer: &[Value]) -> Option<(bool, u64)> {
    let [Value::Int(began), floor] = answer else {
        return None;
    };
    let floor = match floor {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
        Value::Int(i) => u64::try_from(*i).ok()?,
        _ => return None,
    };
    Some((*began == 1, floor))
}

static CHECK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CHECK));

/// An answer to `INFO`; `None` when the server refused it (renamed, or denied by an ACL):
/// then the server's identity is unknown, not its connection broken.
fn answered<T>(answer: RedisResult<T>) -> RedisResult<Option<T>> {
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "Redis does not show its identity (INFO); each new connection starts the cache afresh");
            Ok(None)
        }
    }
}

/// What [`check`] found.
pub(crate) struct Checked {
    pub(crate) identity: String,
    pub(crate) floor: u64,
    /// Whether the check began a new history.
    pub(crate) began: bool,
    /// The history a single server was promoted from, while it keeps it.
    pub(crate) promotion: Option<Promotion>,
}

/// Reads the identity of the server(s) behind `conn` and runs [`CHECK`] on `record` and
/// `lease_table`.
pub(crate) async fn check(
    conn: &mut Conn,
    record: &str,
    lease_table: &str,
) -> RedisResult<Checked> {
    let mut promotion = None;
    let identity = match conn {
        Conn::Single(c) => {
            let info = redis::cmd("INFO").query_async::<String>(c).await;
            answered(info)?.and_then(|info| {
                promotion = Promotion::of(&info);
                identity_of(&info)
            })
        }
        Conn::Cluster(c) => {
            let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let answer = answered(c.route_command(redis::cmd("INFO"), routing).await)?;
            let mut nodes = Vec::new();
            if let Some(Value::Map(pairs)) = answer {
                for (addr, info) in pairs {
                    let (Value::BulkString(addr), Value::BulkString(info)) = (addr, info) else {
                        continue;
                    };
                    let id = identity_of(&String::from_utf8_lossy(&info))
                        .unwrap_or_else(unknown_identity);
                    nodes.push((String::from_utf8_lossy(&addr).into_owned(), id));
                }
            }
            (!nodes.is_empty()).then(|| cluster_identity(nodes))
        }
    };
    let identity = identity.unwrap_or_else(unknown_identity);
    let answer: Vec<Value> = CHECK_SCRIPT
        .key(record)
        .key(lease_table)
        .arg(&identity)
        .invoke_async(conn)
        .await?;
    let (began, floor) = checked(&answer).ok_or_else(|| {
        RedisError::from((
            redis::ErrorKind::Client,
            "an unexpected answer to the identity check",
        ))
    })?;
    Ok(Checked {
        identity,
        floor,
        began,
        promotion,
    })
}

/// A reset's observer: called before the connection that found the new history answers
/// anything. It answers `false` once what it serves is gone, and is then let go.
pub(crate) type Hook = Box<dyn Fn() -> bool + Send + Sync>;

/// One process's view of the history: the floor every script is given, the identity it
/// last saw, and what to drop when that changes.
pub(crate) struct History {
    floor: AtomicU64,
    seen: Mutex<Option<String>>,
    hooks: Mutex<Vec<Hook>>,
    resets: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("floor", &self.floor())
            .finish_non_exhaustive()
    }
}

impl Default for History {
    fn default() -> Self {
        Self {
            floor: AtomicU64::new(0),
            seen: Mutex::new(None),
            hooks: Mutex::new(Vec::new()),
            resets: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl History {
    /// Generations below this belong to a history this process no longer trusts.
    pub(crate) fn floor(&self) -> u64 {
        self.floor.load(Ordering::Acquire)
    }

    /// Whether generation `g` (as Redis holds it) is at or above the floor.
    pub(crate) fn admits(&self, g: &str) -> bool {
        let floor = self.floor();
        floor == 0 || g.parse::<u64>().is_ok_and(|g| g >= floor)
    }

    /// Registers `hook`, called at every reset from now on.
    pub(crate) fn on_reset(&self, hook: Hook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// A receiver whose value changes at each reset, for subscriptions to reconnect.
    pub(crate) fn resets(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resets.subscribe()
    }

    /// A connection found `identity` with `floor` (`began`: its check started a new
    /// history). Raises the floor and, when the identity is not the one this process last
    /// saw or the check began a new history, runs the hooks; both before it returns.
    pub(crate) fn observe(&self, identity: &str, floor: u64, began: bool) -> Reset {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        self.floor.fetch_max(floor, Ordering::AcqRel);
        let reset = match seen.as_deref() {
            Some(s) if s != identity => Reset::Changed,
            _ if began => Reset::Began,
            _ => Reset::None,
        };
        if reset != Reset::None {
            self.hooks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|hook| hook());
            self.resets.send_modify(|n| *n = n.wrapping_add(1));
        }
        *seen = Some(identity.to_owned());
        reset
    }
}

/// What a connection's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reset {
    /// The server this process saw last, in the history it trusts.
    None,
    /// A server the record did not name (a first start, or a Redis that restarted while
    /// this process had not seen it yet): this check began a new history.
    Began,
    /// A server other than the one this process saw last.
    Changed,
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nrun_id:4f2c1e\r\ntcp_port:6379\r\n\r\n\
        # Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_replid:9ab3\r\n\
        master_replid2:0000000000000000000000000000000000000000\r\n";

    #[test]
    fn a_server_is_known_by_its_run_id_and_replication_id() {
        assert_eq!(identity_of(INFO).as_deref(), Some("4f2c1e/9ab3"));
        // master_replid2 is not master_replid.
        let no_repl = "run_id:4f2c1e\r\nmaster_replid2:77\r\n";
        assert_eq!(identity_of(no_repl).as_deref(), Some("4f2c1e"));
        assert_eq!(identity_of("redis_version:7\r\nrun_id:\r\n"), None);
        assert_eq!(identity_of(""), None);
    }

    #[test]
    fn a_cluster_is_known_by_every_master_whatever_the_order() {
        let a = cluster_identity(vec![("b:2".into(), "y".into()), ("a:1".into(), "x".into())]);
        let b = cluster_identity(vec![("a:1".into(), "x".into()), ("b:2".into(), "y".into())]);
        assert_eq!(a, b);
        assert_eq!(a, "a:1=x,b:2=y");
        assert_ne!(unknown_identity(), unknown_identity());
    }

    #[test]
    fn the_check_answers_whether_it_began_and_the_floor() {
        let began = [
            Value::Int(1),
            Value::BulkString(b"1765000000000000".to_vec()),
        ];
        assert_eq!(checked(&began), Some((true, 1_765_000_000_000_000)));
        assert_eq!(checked(&[Value::Int(0), Value::Int(5)]), Some((false, 5)));
        assert_eq!(checked(&[Value::Int(0)]), None);
        assert_eq!(checked(&[Value::Int(0), Value::Nil]), None);
    }

    #[test]
    fn a_new_identity_raises_the_floor_and_resets_once() {
        let history = History::default();
        let calls = std::sync::Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        history.on_reset(Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            true
        }));
        // The first identity a process sees is no change, unless it began a history.
        assert_eq!(history.observe("a", 10, false), Reset::None);
        assert_eq!(history.floor(), 10);
        assert_eq!(history.observe("a", 10, false), Reset::None);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(history.observe("b", 20, false), Reset::Changed);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The floor never moves back.
        assert_eq!(history.observe("b", 5, false), Reset::None);
        assert_eq!(history.floor(), 20);
        assert!(history.admits("20") && !history.admits("19") && !history.admits("x"));
        assert_eq!(history.observe("b", 30, true), Reset::Began);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
