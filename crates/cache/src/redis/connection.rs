//! Connections: a few multiplexed ones shared by every call (no pool checkout on the hot
//! path), and one of its own for each thread of a current-thread runtime (an HTTP
//! worker's), each checked before it serves anything (`identity.rs`); every call is
//! bounded by a timeout and counted by the breaker.
//!
//! **Why a worker has its own.** A multiplexed connection's reader is a task of the
//! runtime that made it. A call from an HTTP worker over a shared connection (made on
//! the main runtime) passes two threads: the worker wakes the reader's thread to write,
//! and the reader wakes the worker with the answer; each wake is a futex call and, on
//! an idle machine, a sleeping thread scheduled again. Over the worker's own connection
//! the call stays on its thread: the worker's event loop writes it and reads the answer.
//! Only the thread that made such a connection uses it, so its reader is never held up
//! by another thread's requests (a shared connection made on a worker would be).

use crate::Result;
use std::sync::RwLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool_redis::Runtime;
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::RedisCache;
use super::cluster::{ClusterManager, ClusterObject, ClusterPool};
use super::config::{RedisConfig, client, cluster_nodes};
use super::fence;
use super::health::Gate;
use super::identity::{self, Reset};
use crate::breaker::Transition;
use crate::{CacheError, Cause, metrics};

/// A shared connection to one server or to a cluster; cloning it is cheap and every clone
/// multiplexes onto the same sockets.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Which kind a [`Conn`] is, kept after the connection moved into a call.
#[derive(Debug, Clone, Copy)]
pub(super) enum ConnKind {
    Single,
    Cluster,
}

/// Where connections come from: deadpool-redis makes, checks and replaces them.
#[derive(Clone)]
pub(super) enum Pools {
    Single(deadpool_redis::Pool),
    /// To the primary a Sentinel group names when each connection is made.
    Sentinel(deadpool_redis::sentinel::Pool),
    Cluster(ClusterPool),
}

impl Pools {
    /// deadpool pools for `config`'s URL: of single-server connections, or of cluster
    /// connections that never retry on another node (`cluster.rs`).
    pub(super) fn new(config: &RedisConfig) -> Result<Self> {
        /// The same limits for single-server and cluster pools: one connection per slot
        /// plus one spare, every wait bounded by the connect timeout.
        fn bounded<M, W>(
            builder: deadpool::managed::PoolBuilder<M, W>,
            config: &RedisConfig,
        ) -> deadpool::managed::PoolBuilder<M, W>
        where
            M: deadpool::managed::Manager,
            W: From<deadpool::managed::Object<M>>,
        {
            builder
                .max_size(config.connections.max(1) + 1)
                .wait_timeout(Some(config.connect_timeout))
                .create_timeout(Some(config.connect_timeout))
                .recycle_timeout(Some(config.connect_timeout))
                .runtime(Runtime::Tokio1)
        }
        fn bad(e: impl std::error::Error + Send + Sync + 'static) -> CacheError {
            CacheError::Config(Cause::new(e))
        }
        if let Some(sentinel) = &config.sentinel {
            if sentinel.nodes.is_empty() {
                return Err(CacheError::Config(
                    "the Sentinel group names no sentinel".into(),
                ));
            }
            if config.tls_ca_pem.is_some() {
                return Err(CacheError::Config(
                    "a private TLS authority is not supported with Sentinel: the primary's \
                     certificate must be signed by one the system trusts"
                        .into(),
                ));
            }
            let builder = sentinel
                .pool_config(&config.url)
                .map_err(bad)?
                .builder()
                .map_err(bad)?;
            return Ok(Pools::Sentinel(
                bounded(builder, config).build().map_err(bad)?,
            ));
        }
        Ok(if let Some(nodes) = cluster_nodes(&config.url) {
            if nodes.is_empty() {
                return Err(CacheError::Config("a cluster URL names no node".into()));
            }
            for node in &nodes {
                redis::Client::open(node.as_str()).map_err(bad)?;
            }
            let manager = ClusterManager::new(nodes).map_err(bad)?;
            Pools::Cluster(
                bounded(ClusterPool::builder(manager), config)
                    .build()
                    .map_err(bad)?,
            )
        } else {
            // A URL the client cannot parse fails here rather than on every request.
            let client = client(&config.url, config.tls_ca_pem.as_deref()).map_err(bad)?;
            let manager =
                deadpool_redis::Manager::new(client.get_connection_info().clone()).map_err(bad)?;
            Pools::Single(
                bounded(deadpool_redis::Pool::builder(manager), config)
                    .build()
                    .map_err(bad)?,
            )
        })
    }
}

/// A pooled connection held in a slot.
pub(super) enum Pooled {
    Single(deadpool_redis::Connection),
    Sentinel(deadpool_redis::sentinel::Connection),
    Cluster(ClusterObject),
}

impl Pooled {
    fn shared(&self) -> Conn {
        match self {
            Self::Single(c) => Conn::Single((**c).clone()),
            Self::Sentinel(c) => Conn::Single((**c).clone()),
            Self::Cluster(c) => Conn::Cluster((**c).clone()),
        }
    }

    /// Takes the connection out of its pool for good, so it is never recycled.
    fn discard(self) {
        match self {
            Self::Single(c) => drop(deadpool_redis::Connection::take(c)),
            Self::Sentinel(c) => drop(deadpool_redis::sentinel::Connection::take(c)),
            Self::Cluster(c) => drop(deadpool::managed::Object::take(c)),
        }
    }
}

impl Pools {
    /// A new connection to the one server (the primary a Sentinel group names now), not
    /// pooled; `None` for a cluster.
    async fn create_single(
        &self,
    ) -> Option<std::result::Result<MultiplexedConnection, RedisError>> {
        use deadpool::managed::Manager;
        Some(match self {
            Self::Single(p) => p.manager().create().await,
            Self::Sentinel(p) => p.manager().create().await,
            Self::Cluster(_) => return None,
        })
    }
}

/// A slot holding one shared connection, or nothing until the next call makes one.
pub(super) type Slot = RwLock<Option<Pooled>>;

/// Which connection a call used, to replace it if it failed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Held {
    /// The shared connection of this slot.
    Shared(usize),
    /// This thread's own.
    Own,
}

/// A thread's own connection to one cache's Redis.
struct Own {
    /// [`RedisCache::id`] of the cache.
    cache: u64,
    /// `None` on a thread that uses the shared connections (a multi-threaded runtime's),
    /// or until the next call makes one.
    conn: Option<MultiplexedConnection>,
    /// Whether this thread makes its own.
    makes: bool,
}

/// Caches a thread keeps its own connection to; one more replaces the oldest.
const OWN_PER_THREAD: usize = 8;

thread_local! {
    static OWN: std::cell::RefCell<Vec<Own>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What this thread holds for `cache`: its connection, or whether it should make one
/// (decided once per thread: on the thread of a current-thread runtime).
fn own_connection(cache: u64) -> (Option<MultiplexedConnection>, bool) {
    OWN.with_borrow_mut(|own| {
        if let Some(o) = own.iter().find(|o| o.cache == cache) {
            return (o.conn.clone(), o.makes);
        }
        let makes = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if own.len() >= OWN_PER_THREAD {
            own.remove(0);
        }
        own.push(Own {
            cache,
            conn: None,
            makes,
        });
        (None, makes)
    })
}

/// Keeps (or, with `None`, drops) this thread's own connection to `cache`.
fn keep_own(cache: u64, conn: Option<MultiplexedConnection>) {
    OWN.with_borrow_mut(|own| {
        if let Some(o) = own.iter_mut().find(|o| o.cache == cache) {
            o.conn = conn;
        }
    });
}

pub(super) fn unavailable(cause: impl Into<Cause>) -> CacheError {
    CacheError::Unavailable(cause.into())
}

/// Whether the connection that returned `e` should be replaced.
/// A server that refuses writes as a replica (`READONLY`) is one a failover demoted: its
/// connection is replaced by one to the primary.
pub(super) fn connection_is_broken(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

impl RedisCache {
    /// Registers `hook`, called whenever a connection finds a Redis that may have
    /// forgotten acknowledged writes, before that connection serves anything: what the
    /// caller derived from the old history (near copies, a lease) must go.
    pub(crate) fn on_reset(&self, hook: identity::Hook) {
        self.history.on_reset(hook);
    }

    /// A receiver whose value changes at each such reset, for subscriptions to come
    /// back on the new server.
    pub(crate) fn resets(&self) -> tokio::sync::watch::Receiver<u64> {
        self.history.resets()
    }

    /// A receiver whose value changes each time Redis answers after failing, for
    /// subscriptions to reconnect at once rather than after their backoff.
    pub(crate) fn answering_again(&self) -> tokio::sync::watch::Receiver<u64> {
        self.answering_again.subscribe()
    }

    /// This thread's own connection on the thread of a current-thread runtime (made if
    /// it has none), else a shared one.
    pub(super) async fn connection(&self) -> Result<(Held, Conn)> {
        if !matches!(self.pools, Pools::Cluster(_)) {
            match own_connection(self.id) {
                (Some(conn), _) => return Ok((Held::Own, Conn::Single(conn))),
                (None, true) => {
                    let made = tokio::time::timeout(
                        self.config.connect_timeout,
                        self.pools.create_single(),
                    )
                    .await
                    .map_err(|_| unavailable("connecting to Redis timed out"))?
                    .ok_or_else(|| unavailable("no single-server connection to a cluster"))?
                    .map_err(unavailable)?;
                    let mut conn = Conn::Single(made.clone());
                    self.check_history(&mut conn).await?;
                    keep_own(self.id, Some(made));
                    return Ok((Held::Own, conn));
                }
                (None, false) => {}
            }
        }
        self.shared_connection()
            .await
            .map(|(i, conn)| (Held::Shared(i), conn))
    }

    /// A shared connection, made if its slot is empty.
    async fn shared_connection(&self) -> Result<(usize, Conn)> {
        let i = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = self
            .slots
            .get(i)
            .ok_or_else(|| unavailable("no connection slot"))?;
        if let Some(conn) = slot.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok((i, conn.shared()));
        }
        let make = || {
            let pools = self.pools.clone();
            async move {
                match pools {
                    Pools::Single(p) => p.get().await.map(Pooled::Single).map_err(unavailable),
                    Pools::Sentinel(p) => p.get().await.map(Pooled::Sentinel).map_err(unavailable),
                    Pools::Cluster(p) => p.get().await.map(Pooled::Cluster).map_err(unavailable),
                }
            }
        };
        let made = async {
            match &self.runtime {
                // A runtime that has shut down runs nothing: then here, as without one.
                Some(runtime) => match runtime.spawn(make()).await {
                    Ok(made) => made,
                    Err(_) => make().await,
                },
                None => make().await,
            }
        };
        let pooled = tokio::time::timeout(self.config.connect_timeout, made)
            .await
            .map_err(|_| unavailable("connecting to Redis timed out"))??;
        let mut shared = pooled.shared();
        if let Err(e) = self.check_history(&mut shared).await {
            pooled.discard();
            return Err(e);
        }
        *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(pooled);
        Ok((i, shared))
    }

    /// Checks the identity of the server(s) behind a connection before it serves
    /// anything (see `identity.rs`): a server that is not the one this process last saw,
    /// or that begins a new history, raises the floor and drops what this process
    /// derived from the old one, before this returns.
    pub(super) async fn check_history(&self, conn: &mut Conn) -> Result<()> {
        let record = format!("{}:{{#near}}:identity", self.namespace);
        let table = self.lease_table();
        let checked = tokio::time::timeout(
            self.config.connect_timeout,
            identity::check(conn, &record, &table),
        )
        .await
        .map_err(|_| unavailable("checking the Redis identity timed out"))?
        .map_err(unavailable)?;
        if let (Some(promotion), Some(sentinel)) = (&checked.promotion, &self.config.sentinel)
            && !self.fenced(&promotion.previous_replid)
            && fence::fence(
                &self.config.url,
                sentinel,
                promotion,
                self.config.connect_timeout,
            )
            .await
        {
            self.fenced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(promotion.previous_replid.clone());
        }
        let reset = self
            .history
            .observe(&checked.identity, checked.floor, checked.began);
        if reset != Reset::None {
            self.indexes.invalidate_all();
            metrics::history_reset(reset == Reset::Changed);
        }
        match reset {
            Reset::Changed => tracing::warn!(
                namespace = %self.namespace,
                "Redis is not the server this cache last used (restarted, restored or failed \
                 over): nothing stored before is served"
            ),
            Reset::Began => tracing::info!(
                namespace = %self.namespace,
                "Redis begins a new history for this cache: nothing stored before is served"
            ),
            Reset::None => {}
        }
        Ok(())
    }

    /// Whether this process has fenced the old primary of the history a promotion left.
    fn fenced(&self, previous_replid: &str) -> bool {
        self.fenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|r| r == previous_replid)
    }

    /// Drops a connection that failed so the next call makes a new one.
    pub(super) fn discard(&self, held: Held) {
        match held {
            Held::Own => keep_own(self.id, None),
            Held::Shared(i) => {
                if let Some(slot) = self.slots.get(i)
                    && let Some(pooled) = slot.write().unwrap_or_else(|p| p.into_inner()).take()
                {
                    pooled.discard();
                }
            }
        }
    }

    pub(super) fn failed(&self) {
        self.answering.store(false, Ordering::Relaxed);
        if self.breaker.failure() == Some(Transition::Opened) {
            self.opened.notify_one();
            tracing::warn!(
                namespace = %self.namespace,
                "Redis is failing; reads go to the database until it answers again"
            );
        }
    }

    /// A failure of a call made past the breaker that must not move its schedule.
    pub(super) fn peek_failed(&self) {
        self.answering.store(false, Ordering::Relaxed);
    }

    pub(super) fn succeeded(&self) {
        // A plain load on the hot path; the swap only after a failure.
        if !self.answering.load(Ordering::Relaxed) && !self.answering.swap(true, Ordering::Relaxed)
        {
            self.answering_again.send_modify(|n| *n = n.wrapping_add(1));
        }
        if self.breaker.success() == Some(Transition::Closed) {
            tracing::info!(namespace = %self.namespace, "Redis answers again");
        }
    }

    /// Runs one Redis call under the breaker and the timeout.
    pub(super) async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(op, self.config.timeout, Gate::Breaker, f)
            .await
    }

    /// [`Self::call`] with its own timeout, through `gate` (a success always closes the
    /// breaker).
    pub(super) async fn call_within<T, F, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        gate: Gate,
        f: F,
    ) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if gate == Gate::Breaker && !self.breaker.allow() {
            return Err(unavailable("circuit open"));
        }
        let failed = || {
            if gate == Gate::Peek {
                self.peek_failed();
            } else {
                self.failed();
            }
        };
        let start = Instant::now();
        let (slot, conn) = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                metrics::redis_call(op, start.elapsed());
                failed();
                return Err(e);
            }
        };
        let conn_kind = match conn {
            Conn::Single(_) => ConnKind::Single,
            Conn::Cluster(_) => ConnKind::Cluster,
        };
        let outcome = tokio::time::timeout(timeout, f(conn)).await;
        metrics::redis_call(op, start.elapsed());
        match outcome {
            Ok(Ok(v)) => {
                self.succeeded();
                Ok(v)
            }
            Ok(Err(e)) => {
                // A cluster connection that failed may have lost a node, and is replaced
                // (and the new one checked) rather than left to find another node itself.
                if connection_is_broken(&e) || matches!(conn_kind, ConnKind::Cluster) {
                    self.discard(slot);
                }
                failed();
                Err(unavailable(e))
            }
            Err(_) => {
                // A stalled pipeline would make every later call on it wait as well.
                self.discard(slot);
                failed();
                Err(unavailable(format!("{op} timed out after {timeout:?}")))
            }
        }
    }
}
