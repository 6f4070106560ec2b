//! [`RedisCache`]: the shared cache on Redis.
//!
//! Storage layout under a namespace `ns` (`cache:v1` unless the embedder names its own,
//! as the server does with `letip:v1`; the version segment means a format change never
//! reads old entries). `{root}` is the root of the entry's scope,
//! percent-encoded, in braces: a Redis Cluster hash tag, so an entry and the generations
//! it depends on always live on one node and every script touches one slot.
//!
//! | key | holds | TTL |
//! |---|---|---|
//! | `ns:{root}:{family}:{name}` | `"{root generation}.{own generation}\n"`, the CRC-32 of the value in 8 hex digits, the value | the entry's |
//! | `ns:{root}:#gen` | the root scope's generation | `generation_ttl` |
//! | `ns:{root}:#gen:{child}` | a child scope's generation (`root|child`) | `generation_ttl` |
//!
//! A lookup, a store and an invalidation are each one Lua script, so one round trip and
//! atomic. An entry is served only if its header equals its scope's current generation
//! and its value matches its checksum: an entry damaged or planted by something else is
//! removed and counted, never served (a CRC costs about a microsecond on a list page,
//! where re-parsing its JSON cost fourteen).
//! A generation is the Redis clock in microseconds when first made, and each invalidation
//! moves it to `max(current + 1, clock)`: it only grows, so a generation key that expired
//! or was evicted is made again with a value no older entry carries.
//!
//! The hot path takes no pool checkout: a few multiplexed connections, made and replaced
//! by deadpool-redis, are shared by every request, and each HTTP worker thread uses one
//! of its own (`connection.rs`).
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`RedisCache`], its key names, and the [`Cache`] implementation |
//! | `config.rs` | [`RedisConfig`], clients of a URL, a cluster URL's nodes, a Sentinel group |
//! | `connection.rs` | the shared connections, each call's timeout and breaker accounting |
//! | `identity.rs` | which Redis history is trusted: the floor, resets |
//! | `cluster.rs` | cluster connections that never retry on another node |
//! | `health.rs` | the breaker's gate, probes, pending invalidations |
//! | `entries.rs` | lookup, store, invalidate of single entries |
//! | `index.rs` | index entries, their memo and confirmations |
//! | `scripts.rs`, `lua/` | the Lua scripts and their answer codes |
//! | `wire.rs` | the stored value's format, as pure functions |

mod cluster;
mod config;
mod connection;
mod entries;
mod fence;
mod health;
mod identity;
mod index;
mod scripts;
mod wire;

pub(crate) use config::cluster_nodes;
pub use config::{RedisConfig, SentinelConfig};
pub use health::BackgroundProbe;
pub(crate) use index::{ConfirmKeys, KnownIndex};
pub(crate) use wire::{Raw, split_scope};

use crate::{Fill, Result};
use config::client;
use connection::{Pools, Slot};
use health::Gate;
use health::Pending;
use health::Probed;
use identity::History;
use index::IndexMemo;

use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, Script, Value};

use crate::breaker::{Breaker, BreakerConfig};
use crate::key::encode;
use crate::{
    Cache, CacheHealth, IndexLookup, Key, Lookup, Members, Stored, Ticket, check_members, metrics,
};

/// The Redis cache. Cheap to share: wrap it in an `Arc`.
pub struct RedisCache {
    /// Tells caches apart in the threads' own connections.
    id: u64,
    pools: Pools,
    slots: Vec<Slot>,
    next_slot: AtomicUsize,
    breaker: Breaker,
    /// Health probes, one at a time: a check that arrives while one is under way waits
    /// for it and takes a newer probe's outcome as its own.
    probe: tokio::sync::Mutex<Option<Probed>>,
    /// Woken when the circuit opens, for the background prober.
    opened: Arc<tokio::sync::Notify>,
    /// Whether the last call answered; flipping to true bumps `answering_again`.
    answering: AtomicBool,
    /// Bumped each time Redis answers after a failure, so subscriptions waiting out a
    /// backoff reconnect at once.
    answering_again: tokio::sync::watch::Sender<u64>,
    /// The history this process trusts: the floor every script is given, and what to
    /// drop when a connection finds a server that may have forgotten acknowledged writes.
    history: History,
    /// Scopes whose invalidation could not be applied. Nothing of such a scope is served
    /// until its invalidation has been applied, as any entry of it may be stale.
    pending: Mutex<Pending>,
    /// Whether `pending` holds any scope: a lookup reads this, not the lock both HTTP
    /// workers would otherwise take on every hit.
    any_pending: AtomicBool,
    /// Index entries this process has read, with their members' key names, so that the
    /// next lookup of one asks with plain commands (see [`IndexMemo`]).
    indexes: moka::sync::Cache<String, Arc<IndexMemo>>,
    /// The runtime the cache was made in, where its connections are made: a
    /// multiplexed connection's reader runs as a task of the runtime it was made in, and
    /// made by a request on an HTTP worker it would read every caller's answers (the
    /// lease renewals' among them) only between that worker's requests.
    runtime: Option<tokio::runtime::Handle>,
    /// With a Sentinel group: what names the primary for subscriptions (the pools ask
    /// their own).
    sentinel: Option<tokio::sync::Mutex<redis::sentinel::SentinelClient>>,
    /// With a Sentinel group: the histories whose old primaries this process has fenced
    /// (see `fence.rs`), by the replication id each promotion left.
    fenced: Mutex<Vec<String>>,
    namespace: String,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("namespace", &self.namespace)
            .field("breaker", &self.breaker)
            .field("pending_invalidations", &self.pending_scopes().len())
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Builds the cache. Connections are made on first use, so this succeeds while Redis
    /// is down; only a malformed URL is an error.
    pub fn new(config: RedisConfig) -> Result<Self> {
        let connections = config.connections.max(1);
        let pools = Pools::new(&config)?;
        let sentinel = config
            .sentinel
            .as_ref()
            .map(|s| s.client(&config.url).map(tokio::sync::Mutex::new))
            .transpose()
            .map_err(|e| crate::CacheError::Config(crate::Cause::new(e)))?;
        let ns = config.namespace.clone();
        static CACHES: AtomicU64 = AtomicU64::new(1);
        Ok(Self {
            id: CACHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            pools,
            slots: (0..connections).map(|_| RwLock::new(None)).collect(),
            next_slot: AtomicUsize::new(0),
            breaker: Breaker::new(BreakerConfig::default()),
            history: History::default(),
            pending: Mutex::new(Pending::default()),
            any_pending: AtomicBool::new(false),
            indexes: IndexMemo::cache(),
            probe: tokio::sync::Mutex::new(None),
            opened: Arc::new(tokio::sync::Notify::new()),
            answering: AtomicBool::new(true),
            answering_again: tokio::sync::watch::Sender::new(0),
            runtime: tokio::runtime::Handle::try_current().ok(),
            sentinel,
            fenced: Mutex::new(Vec::new()),
            namespace: ns,
            config,
        })
    }

    /// The prefix of every key this cache writes, and of its channels.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Where `key`'s value is stored; also what a near tier names its copy. The hash tag
    /// is the scope's root, so a scope, its children and their entries share a slot.
    pub(crate) fn value_key(&self, key: &Key) -> String {
        let (root, _) = split_scope(key.scope());
        let mut name =
            String::with_capacity(self.namespace.len() + root.len() + key.name().len() + 4);
        self.push_value_key(&mut name, key);
        name
    }

    fn push_value_key(&self, name: &mut String, key: &Key) {
        let (root, _) = split_scope(key.scope());
        name.push_str(&self.namespace);
        name.push_str(":{");
        crate::key::encode_into(name, root);
        name.push_str("}:");
        name.push_str(key.name());
    }

    /// Calls `f` with [`Self::value_key`] of `key`, built in a buffer of this thread's
    /// rather than a new string: what a lookup in a near tier needs.
    pub(crate) fn with_value_key<R>(&self, key: &Key, f: impl FnOnce(&str) -> R) -> R {
        thread_local! {
            static NAME: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        NAME.with(|buf| match buf.try_borrow_mut() {
            Ok(mut name) => {
                name.clear();
                self.push_value_key(&mut name, key);
                f(&name)
            }
            // Only if `f` itself looks a key up this way.
            Err(_) => f(&self.value_key(key)),
        })
    }

    /// The start of every value key of `scope`'s root (a child's entries are not told
    /// apart from its siblings' by name).
    pub(crate) fn scope_prefix(&self, scope: &str) -> String {
        let (root, _) = split_scope(scope);
        format!("{}:{{{}}}:", self.namespace, encode(root))
    }

    /// A client of the server to subscribe on, the `attempt`th time: the primary a
    /// Sentinel group names now, the one server, or each node of a cluster in turn.
    pub(crate) async fn subscription_client(
        &self,
        attempt: usize,
    ) -> redis::RedisResult<redis::Client> {
        if let Some(sentinel) = &self.sentinel {
            return sentinel.lock().await.async_get_client().await;
        }
        let urls = cluster_nodes(&self.config.url).unwrap_or_else(|| vec![self.config.url.clone()]);
        let url = urls
            .get(attempt % urls.len().max(1))
            .unwrap_or(&self.config.url);
        client(url, self.config.tls_ca_pem.as_deref())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.config.connect_timeout
    }

    /// Sends `payload` to every subscriber of `channel` (every node of a cluster).
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<()> {
        self.call("publish", |mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    /// The lease table: a sorted set of instances by the end of their lease (Redis clock,
    /// ms), with when it was made as member `#since` (its score negated).
    pub(crate) fn lease_table(&self) -> String {
        format!("{}:{{#near}}:leases", self.namespace)
    }

    /// Runs a lease script (see `lease.rs`) on the lease table's keys. `for_write`: a
    /// writer's announcement, tried past the breaker with the invalidation timeout.
    pub(crate) async fn lease_script(
        &self,
        op: &'static str,
        script: &Script,
        args: &[&[u8]],
        for_write: bool,
    ) -> Result<Value> {
        let table = self.lease_table();
        let (timeout, gate) = if for_write {
            (
                self.config.invalidate_timeout.max(self.config.timeout),
                Gate::Past,
            )
        } else {
            (self.config.timeout, Gate::Breaker)
        };
        self.call_within(op, timeout, gate, |mut c| async move {
            let mut invocation = script.key(table);
            for a in args {
                invocation.arg(*a);
            }
            invocation.invoke_async::<Value>(&mut c).await
        })
        .await
    }

    fn generation_key(&self, scope: &str) -> String {
        match split_scope(scope) {
            (root, None) => format!("{}:{{{}}}:#gen", self.namespace, encode(root)),
            (root, Some(child)) => format!(
                "{}:{{{}}}:#gen:{}",
                self.namespace,
                encode(root),
                encode(child)
            ),
        }
    }

    /// The generation keys a lookup of `scope` checks: its root's, then its own.
    fn generation_keys(&self, scope: &str) -> [String; 2] {
        let (root, _) = split_scope(scope);
        [self.generation_key(root), self.generation_key(scope)]
    }

    fn generation_ttl_ms(&self) -> u64 {
        u64::try_from(self.config.generation_ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &Key) -> Result<Lookup> {
        let result = self.lookup(key, None).await.map(|raw| match raw {
            Raw::Hit { bytes, .. } => Lookup::Hit(bytes),
            Raw::Miss(t) => Lookup::Miss(t),
            // Unreachable without a known tag; a miss that stores nothing is safe.
            Raw::Current => Lookup::Miss(Ticket::none()),
        });
        metrics::lookup_outcome(key.family(), &result);
        result
    }

    async fn put(&self, key: &Key, fill: Fill<'_>) -> Result<Stored> {
        self.store(key, fill.ticket, &[], &fill.value, fill.ttl)
            .await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        self.lookup_many(keys).await
    }

    async fn get_index(&self, key: &Key, members: Members<'_>) -> Result<IndexLookup> {
        let result = self.lookup_index_through_memo(key, members).await;
        metrics::lookup(
            key.family(),
            match &result {
                Ok(IndexLookup::Hit { .. }) => "hit",
                Ok(IndexLookup::Miss(_)) => "miss",
                Err(_) => "error",
            },
        );
        result
    }

    async fn put_index(&self, key: &Key, fill: Fill<'_>, members: &[Key]) -> Result<Stored> {
        check_members(key, members)?;
        let head = self.index_head(members);
        self.store(key, fill.ticket, head.as_bytes(), &fill.value, fill.ttl)
            .await
    }

    async fn invalidate(&self, scopes: &[&str]) -> Result<()> {
        // One script per scope (each touches one slot), sent together.
        let results =
            futures_util::future::join_all(scopes.iter().map(|scope| self.bump(scope, true))).await;
        let mut first_error = None;
        for (scope, result) in scopes.iter().zip(results) {
            match result {
                Ok(()) => metrics::invalidated(&[scope]),
                Err(e) => {
                    // Entries of this scope may now be stale in Redis: serve none of them
                    // until the invalidation has been applied.
                    self.pending_scopes().failed(scope);
                    self.any_pending
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let name = self.value_key(key);
        self.call("remove", |mut c| async move {
            redis::cmd("UNLINK")
                .arg(name)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    fn verifies_integrity(&self) -> bool {
        true
    }

    /// Asks Redis now (one probe at a time, shared by concurrent checks): a probe of
    /// the breaker's when one is due, else past the breaker at most every 500 ms, so an
    /// idle server reports Redis back within about that.
    async fn health(&self) -> CacheHealth {
        self.probe(Instant::now(), true, "health").await
    }
}
