//! [`RedisCache`]: the shared cache on Redis.
//!
//! Storage layout under a namespace `ns` (default `letip:v1`; the version segment means a
//! format change never reads old entries). `{root}` is the root of the entry's scope,
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
//! by deadpool-redis, are shared by every request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::Runtime;
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, Cmd, Pipeline, RedisError, RedisFuture, Script, Value};

use crate::breaker::{Breaker, BreakerConfig, Transition};
use crate::cluster::{ClusterManager, ClusterObject, ClusterPool};
use crate::identity::{self, History, Reset};
use crate::key::encode;
use crate::{
    Cache, CacheError, CacheHealth, IndexLookup, Key, Lookup, Members, Stored, Ticket,
    check_members, metrics,
};

/// Settings of a [`RedisCache`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://...` for TLS, or
    /// `redis+cluster://host:port,host:port`.
    pub url: String,
    /// PEM certificate(s) of the authority that signed the server's TLS certificate,
    /// for `rediss://` servers with a private CA (the system's roots otherwise).
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Prefix of every key; its version segment separates incompatible formats.
    pub namespace: String,
    /// Longest a lookup or store may take before it counts as failed (the request then
    /// reads the database).
    pub timeout: Duration,
    /// Longest an invalidation may take. Longer than `timeout`: a write waits for its
    /// invalidation rather than leave it to the slower paths (its change announcement,
    /// or the retry before this process serves the scope again), unless the breaker
    /// already knows Redis is away.
    pub invalidate_timeout: Duration,
    /// Longest making a new connection may take.
    pub connect_timeout: Duration,
    /// Multiplexed connections shared by all requests.
    pub connections: usize,
    /// Values larger than this are not stored.
    pub max_value_bytes: usize,
    /// How long a scope's generation lives; at least the longest entry TTL, so entries
    /// are not orphaned early.
    pub generation_ttl: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            tls_ca_pem: None,
            namespace: "letip:v1".into(),
            timeout: Duration::from_millis(50),
            invalidate_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(200),
            connections: 2,
            max_value_bytes: 1024 * 1024,
            generation_ttl: Duration::from_secs(3600),
        }
    }
}

/// Whether `tag` is the tag of the generations `root` and `own` (`root.own\n`, as the
/// scripts write it).
fn is_tag(tag: &str, root: &str, own: &str) -> bool {
    tag.strip_prefix(root)
        .and_then(|t| t.strip_prefix('.'))
        .and_then(|t| t.strip_prefix(own))
        == Some("\n")
}

/// Whether `value` starts with a tag header (`digits.digits\n`), as the scripts'
/// `'^%d+%.%d+\n'` tells an entry of this cache's format stored under another tag.
fn has_tag_header(value: &[u8]) -> bool {
    let Some(end) = value.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let header = value.get(..end).unwrap_or_default();
    let mut parts = header.splitn(2, |&b| b == b'.');
    let digits =
        |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    digits(parts.next()) && digits(parts.next())
}

/// The lookups of entries inside a script. `gen(key)` answers a scope's generation,
/// making it from the Redis clock (microseconds) when it is missing, and moving it past
/// the floor (`ARGV[2]`, see `identity.rs`) when it is below: a generation of a history
/// the cache no longer trusts is invalidated before it is used. A script reads each
/// generation once. `entry(value key, root generation key, own generation key, known
/// tag)` answers `state, bytes`: 3 and no bytes when the caller's copy (of the known
/// tag) is current and the entry has not expired, 1 and the stored bytes on a hit, 0
/// and the tag to store under on a miss, 2 and the tag for an entry that is not in this
/// cache's format (written by something else: the caller removes it). `entries(names,
/// knowns, out)` looks up many entries (`names` three key names per entry, `knowns` a
/// known tag or '' per entry, or nil) with one MGET of their generations, one EXISTS of
/// the copies it confirms and one MGET of the values it sends, and appends `state,
/// bytes` of each to `out`, in order, as `entry` would answer them.
const ENTRY_FNS: &str = r"
local floor = tonumber(ARGV[2]) or 0
local gens = {}
local function fresh(key, old)
  local t = redis.call('TIME')
  local g = string.format('%d', math.max(t[1] * 1000000 + t[2], floor, (tonumber(old) or 0) + 1))
  redis.call('SET', key, g, 'PX', ARGV[1])
  return g
end
local function gen(key)
  local g = gens[key]
  if g then return g end
  g = redis.call('GET', key)
  if not g or (tonumber(g) or 0) < floor then g = fresh(key, g) end
  gens[key] = g
  return g
end
local function classify(v, tag)
  if not v then return 0, tag end
  if string.sub(v, 1, #tag) == tag then return 1, v end
  if string.match(v, '^%d+%.%d+\n') then return 0, tag end
  return 2, tag
end
local function entry(k, root, own, known)
  local tag = gen(root) .. '.' .. gen(own) .. '\n'
  if known and known ~= '' and known == tag and redis.call('EXISTS', k) == 1 then
    return 3, ''
  end
  return classify(redis.call('GET', k), tag)
end
local function entries(names, knowns, out)
  local n = #names / 3
  if n == 0 then return end
  local want, asked = {}, {}
  for i = 1, #names do
    if i % 3 ~= 1 then
      local k = names[i]
      if not gens[k] and not asked[k] then
        asked[k] = true
        want[#want + 1] = k
      end
    end
  end
  if #want > 0 then
    local got = redis.call('MGET', unpack(want))
    for i, k in ipairs(want) do
      local g = got[i]
      if not g or (tonumber(g) or 0) < floor then g = fresh(k, g) end
      gens[k] = g
    end
  end
  local tags, confirm, send = {}, {}, {}
  for i = 1, n do
    local tag = gens[names[3 * i - 1]] .. '.' .. gens[names[3 * i]] .. '\n'
    tags[i] = tag
    local known = knowns and knowns[i]
    if known and known ~= '' and known == tag then
      confirm[#confirm + 1] = i
    else
      send[#send + 1] = i
    end
  end
  local states, bytes = {}, {}
  if #confirm > 0 then
    local keys = {}
    for j, i in ipairs(confirm) do keys[j] = names[3 * i - 2] end
    if redis.call('EXISTS', unpack(keys)) == #keys then
      for _, i in ipairs(confirm) do states[i] = 3; bytes[i] = '' end
    else
      for _, i in ipairs(confirm) do
        if redis.call('EXISTS', names[3 * i - 2]) == 1 then
          states[i] = 3; bytes[i] = ''
        else
          send[#send + 1] = i
        end
      end
    end
  end
  if #send > 0 then
    local keys = {}
    for j, i in ipairs(send) do keys[j] = names[3 * i - 2] end
    local values = redis.call('MGET', unpack(keys))
    for j, i in ipairs(send) do
      states[i], bytes[i] = classify(values[j], tags[i])
    end
  end
  for i = 1, n do
    out[#out + 1] = states[i]
    out[#out + 1] = bytes[i]
  end
end
";

/// KEYS: value, the scope's root generation, its own generation (the same key for a scope
/// without a parent). ARGV: generation TTL (ms), floor, the tag of a copy the caller holds
/// (or ''). Answers `entry`'s `{state, bytes}`.
const LOOKUP: &str = r"
return {entry(KEYS[1], KEYS[2], KEYS[3], ARGV[3])}
";

/// KEYS: value, root generation and own generation of each entry, three by three (all of
/// one hash slot). ARGV: generation TTL (ms), floor. Returns `state, bytes` of each entry,
/// flat.
const LOOKUP_MANY: &str = r"
local out = {}
entries(KEYS, nil, out)
return out
";

/// KEYS: the index's value, root generation, own generation. ARGV: generation TTL (ms),
/// floor, the prefix every member key must have (the index's own hash tag), the tag of the
/// caller's copy of the index (or ''), then the tag of the caller's copy of each member
/// (or ''). Answers the index's `state, bytes` as `entry` does (3, and no value, when the
/// caller's copy is current) and, on a hit, `state, bytes` of every member the index
/// names (its members section: `@index N\n`, then three key names a line each per
/// member, after the 8-digit checksum); the members' known tags count only when the
/// index's does, since they are given by position. A section that does not parse, or
/// names a key outside the prefix, is answered as not in this cache's format (2).
const LOOKUP_INDEX: &str = r"
local state, v = entry(KEYS[1], KEYS[2], KEYS[3])
if state ~= 1 then return {state, v} end
local pos = string.find(v, '\n', 1, true) + 9
if string.sub(v, pos, pos + 6) ~= '@index ' then return {2, ''} end
local e = string.find(v, '\n', pos, true)
local n = e and tonumber(string.sub(v, pos + 7, e - 1))
if not n then return {2, ''} end
local current = ARGV[4] ~= '' and string.sub(v, 1, #ARGV[4]) == ARGV[4]
local out = {1, v}
if current then out = {3, ''} end
pos = e + 1
local prefix = ARGV[3]
local names, knowns = {}, {}
for i = 1, 3 * n do
  local stop = string.find(v, '\n', pos, true)
  if not stop then return {2, ''} end
  local name = string.sub(v, pos, stop - 1)
  if string.sub(name, 1, #prefix) ~= prefix then return {2, ''} end
  names[i] = name
  pos = stop + 1
end
if current then
  for i = 1, n do knowns[i] = ARGV[4 + i] end
end
entries(names, knowns, out)
return out
";

/// KEYS: value, root generation, own generation. ARGV: tag, value, TTL (ms), floor. Stores
/// only while the tag is current, and never under a generation below the floor.
const STORE: &str = r"
local floor = tonumber(ARGV[4]) or 0
local root = redis.call('GET', KEYS[2])
local own = redis.call('GET', KEYS[3])
if root and own and (tonumber(root) or 0) >= floor and (tonumber(own) or 0) >= floor
    and (root .. '.' .. own .. '\n') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// KEYS: generation. ARGV: generation TTL (ms), floor. Moves the generation past its
/// current value, the clock and the floor.
const INVALIDATE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local floor = tonumber(ARGV[2]) or 0
redis.call('SET', KEYS[1], string.format('%d', math.max(current + 1, now, floor)), 'PX', ARGV[1])
return 1
";

struct Scripts {
    lookup: Script,
    lookup_many: Script,
    lookup_index: Script,
    store: Script,
    invalidate: Script,
}

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
enum ConnKind {
    Single,
    Cluster,
}

/// Where connections come from: deadpool-redis makes, checks and replaces them.
#[derive(Clone)]
enum Pools {
    Single(deadpool_redis::Pool),
    Cluster(ClusterPool),
}

/// A pooled connection held in a slot.
enum Pooled {
    Single(deadpool_redis::Connection),
    Cluster(ClusterObject),
}

impl Pooled {
    fn shared(&self) -> Conn {
        match self {
            Self::Single(c) => Conn::Single((**c).clone()),
            Self::Cluster(c) => Conn::Cluster((**c).clone()),
        }
    }

    /// Takes the connection out of its pool for good, so it is never recycled.
    fn discard(self) {
        match self {
            Self::Single(c) => drop(deadpool_redis::Connection::take(c)),
            Self::Cluster(c) => drop(deadpool::managed::Object::take(c)),
        }
    }
}

/// The nodes of a cluster URL: `redis+cluster://[user:pass@]h1:p1,h2:p2` (or
/// `rediss+cluster://` for TLS), each as a plain URL with the same credentials.
/// A client of `url`, trusting `ca_pem` for TLS when given.
fn client(url: &str, ca_pem: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    match ca_pem {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            },
        ),
        None => redis::Client::open(url),
    }
}

pub(crate) fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.strip_suffix("+cluster")?;
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    Some(
        hosts
            .split(',')
            .filter(|h| !h.trim().is_empty())
            .map(|h| format!("{scheme}://{userinfo}{}", h.trim()))
            .collect(),
    )
}

/// A slot holding one shared connection, or nothing until the next call makes one.
type Slot = RwLock<Option<Pooled>>;

/// A scope and its parent: `"list|city=X"` is the child `city=X` of the root `list`;
/// invalidating `list` invalidates every child. A scope without `|` is its own root.
pub(crate) fn split_scope(scope: &str) -> (&str, Option<&str>) {
    match scope.split_once('|') {
        Some((root, child)) => (root, Some(child)),
        None => (scope, None),
    }
}

/// Hex digits of the CRC-32 that precedes every stored value.
const CRC_LEN: usize = 8;

/// The value of a stored `crc ++ value`, if the checksum matches.
fn unseal(sealed: Bytes) -> Option<Bytes> {
    let crc = sealed.get(..CRC_LEN)?;
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    let value = sealed.slice(CRC_LEN..);
    (crc32fast::hash(&value) == crc).then_some(value)
}

/// The start of an index's members section.
const INDEX_MARK: &str = "@index ";

/// The members section of an index's payload: the member count, then three key names
/// per member (value, root generation, own generation), a line each.
fn index_parts(payload: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    let rest = payload.strip_prefix(INDEX_MARK.as_bytes())?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let n: usize = std::str::from_utf8(rest.get(..nl)?).ok()?.parse().ok()?;
    let mut at = INDEX_MARK.len() + nl + 1;
    let mut values = Vec::with_capacity(n);
    for i in 0..n * 3 {
        let line = payload.get(at..)?;
        let end = line.iter().position(|&b| b == b'\n')?;
        if i % 3 == 0 {
            values.push(line.get(..end)?);
        }
        at += end + 1;
    }
    Some((values, at))
}

/// The caller's value in an index's payload (after its members section).
fn index_value(payload: &Bytes) -> Option<Bytes> {
    let (_, at) = index_parts(payload)?;
    Some(payload.slice(at..))
}

/// The value keys of an index's members, in order.
fn index_members(payload: &[u8]) -> Option<Vec<String>> {
    let (names, _) = index_parts(payload)?;
    Some(
        names
            .into_iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
    )
}

/// What the caller of [`RedisCache::lookup_index`] holds: its copy of the index's tag,
/// the value keys of the index's members, and its copies' tags of them (by position).
pub(crate) struct KnownIndex<'a> {
    pub(crate) tag: &'a str,
    pub(crate) names: &'a [String],
    pub(crate) tags: &'a [Option<Arc<str>>],
    /// The key names that confirm the copies in one round trip, when the caller has
    /// them (see [`RedisCache::confirm_keys`]).
    pub(crate) confirm: Option<&'a ConfirmKeys>,
}

/// The key names [`RedisCache::lookup_index`] reads to confirm copies of an index and of
/// its members without a script: every generation key (root and own of the index, then
/// of each member) and every value key (the index's, then each member's).
#[derive(Debug)]
pub(crate) struct ConfirmKeys {
    /// Each generation key once (the members of a page share their root's).
    gens: Vec<String>,
    /// The positions in `gens` of the root and own generation of the index, then of
    /// each member.
    tags: Vec<(usize, usize)>,
    values: Vec<String>,
}

impl ConfirmKeys {
    /// Bytes held, for the near tier's weigher.
    pub(crate) fn bytes(&self) -> usize {
        self.gens
            .iter()
            .chain(&self.values)
            .map(|n| n.len() + 24)
            .sum::<usize>()
            + self.tags.len() * 16
    }
}

/// What an index lookup found, with the tags a near tier needs: the index (its value
/// without the member names), then each member.
#[derive(Debug)]
pub(crate) struct RawIndex {
    pub(crate) index: Raw,
    pub(crate) members: Vec<Raw>,
}

/// A member's answer as a plain lookup (no copy was known, so none is current).
pub(crate) fn raw_lookup(raw: Raw) -> Lookup {
    match raw {
        Raw::Hit { bytes, .. } => Lookup::Hit(bytes),
        Raw::Miss(t) => Lookup::Miss(t),
        Raw::Current => Lookup::Miss(Ticket::none()),
    }
}

/// A script's flat `state, bytes, state, bytes, ...` answer, in pairs.
fn pairs(values: Vec<Value>) -> Result<Vec<(i64, Vec<u8>)>, CacheError> {
    let bad = || CacheError::Protocol("an answer that is not state and bytes".into());
    let mut out = Vec::with_capacity(values.len() / 2);
    let mut values = values.into_iter();
    while let Some(state) = values.next() {
        let Value::Int(state) = state else {
            return Err(bad());
        };
        let bytes = match values.next().ok_or_else(bad)? {
            Value::BulkString(b) => b,
            Value::SimpleString(s) => s.into_bytes(),
            Value::Nil => Vec::new(),
            _ => return Err(bad()),
        };
        out.push((state, bytes));
    }
    Ok(out)
}

/// What a lookup found, with the generation tags a near tier needs.
#[derive(Debug)]
pub(crate) enum Raw {
    /// The caller's copy (of the tag it gave) is current.
    Current,
    Hit {
        tag: Arc<str>,
        bytes: Bytes,
    },
    Miss(Ticket),
}

/// Scopes whose invalidation failed, each with the number of its latest failure. A
/// retry that succeeds clears a scope only if it failed no more since the retry began:
/// a write whose invalidation fails while an older one's retry is in flight made a
/// change that retry cannot have covered.
#[derive(Debug, Default)]
struct Pending {
    scopes: HashMap<String, u64>,
    failures: u64,
}

impl Pending {
    fn failed(&mut self, scope: &str) {
        self.failures += 1;
        self.scopes.insert(scope.to_owned(), self.failures);
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        self.scopes.iter().map(|(s, n)| (s.clone(), *n)).collect()
    }

    /// A retry of `scope`'s invalidation, begun when its latest failure was `failure`,
    /// succeeded.
    fn applied(&mut self, scope: &str, failure: u64) {
        if self.scopes.get(scope) == Some(&failure) {
            self.scopes.remove(scope);
        }
    }

    fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    fn len(&self) -> usize {
        self.scopes.len()
    }
}

/// Which calls go to Redis while the breaker holds calls off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Refused while the breaker holds calls off (or, when due, the breaker's probe).
    Breaker,
    /// The breaker's probe, already taken with [`Breaker::try_probe`].
    Probe,
    /// Tried anyway; a failure counts like any other (a write's own invalidation).
    Past,
    /// Tried anyway; a failure leaves the breaker's schedule as it is (a health check
    /// between the breaker's probes). A success closes the circuit.
    Peek,
}

/// The outcome of the last health probe, and when it started.
#[derive(Debug, Clone, Copy)]
struct Probed {
    started: Instant,
    health: CacheHealth,
}

/// While the circuit is open and its next probe is not due, a health check asks Redis
/// at most this often (and answers "down" in between without asking), so frequent
/// health polls never flood a Redis that is down, yet report its return within this.
const PEEK_EVERY: Duration = Duration::from_millis(500);

/// The Redis cache. Cheap to share: wrap it in an `Arc`.
pub struct RedisCache {
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
    scripts: Scripts,
    /// The history this process trusts: the floor every script is given, and what to
    /// drop when a connection finds a server that may have forgotten acknowledged writes.
    history: History,
    /// Scopes whose invalidation could not be applied. Nothing of such a scope is served
    /// until its invalidation has been applied, as any entry of it may be stale.
    pending: Mutex<Pending>,
    /// Index entries this process has read, with their members' key names, so that the
    /// next lookup of one asks with plain commands (see [`IndexMemo`]).
    indexes: moka::sync::Cache<String, Arc<IndexMemo>>,
    /// The runtime the cache was made in, where its connections are made: a
    /// multiplexed connection's reader runs as a task of the runtime it was made in, and
    /// made by a request on an HTTP worker it would read every caller's answers (the
    /// lease renewals' among them) only between that worker's requests.
    runtime: Option<tokio::runtime::Handle>,
    namespace: String,
    config: RedisConfig,
}

/// The answer to a memo read: generations, whether the index exists, members' values.
type MemoAnswer = (Vec<Option<String>>, i64, Vec<Option<Vec<u8>>>);

/// Most bytes of [`RedisCache`]'s memo of index entries (values and key names).
const INDEX_MEMO_BYTES: u64 = 16 * 1024 * 1024;

/// An index entry as this process last read it: its tag and value, and the key names
/// that confirm it and read its members. It is never served on its own: a lookup reads
/// the index's generations and existence with the members' generations and values in one
/// atomic round trip of plain commands, and uses the memo only if the index is still
/// what it was (the tag equal to its generations, the entry present); else the script
/// answers. Values of members leave Redis through `MGET` rather than through a script,
/// which costs Redis a tenth of the time.
#[derive(Debug)]
struct IndexMemo {
    tag: Arc<str>,
    value: Bytes,
    families: Vec<&'static str>,
    confirm: ConfirmKeys,
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

fn unavailable(e: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

/// Whether the connection that returned `e` should be replaced.
fn connection_is_broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

impl RedisCache {
    /// Builds the cache. Connections are made on first use, so this succeeds while Redis
    /// is down; only a malformed URL is an error.
    pub fn new(config: RedisConfig) -> Result<Self, CacheError> {
        let connections = config.connections.max(1);
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
        let bad = |e: &dyn std::fmt::Display| CacheError::Config(e.to_string());
        let pools = if let Some(nodes) = cluster_nodes(&config.url) {
            if nodes.is_empty() {
                return Err(CacheError::Config("a cluster URL names no node".into()));
            }
            for node in &nodes {
                redis::Client::open(node.as_str()).map_err(|e| bad(&e))?;
            }
            let manager = ClusterManager::new(nodes).map_err(|e| bad(&e))?;
            Pools::Cluster(
                bounded(ClusterPool::builder(manager), &config)
                    .build()
                    .map_err(|e| bad(&e))?,
            )
        } else {
            // A URL the client cannot parse fails here rather than on every request.
            let client = client(&config.url, config.tls_ca_pem.as_deref()).map_err(|e| bad(&e))?;
            let manager = deadpool_redis::Manager::new(client.get_connection_info().clone())
                .map_err(|e| bad(&e))?;
            Pools::Single(
                bounded(deadpool_redis::Pool::builder(manager), &config)
                    .build()
                    .map_err(|e| bad(&e))?,
            )
        };
        let ns = config.namespace.clone();
        Ok(Self {
            pools,
            slots: (0..connections).map(|_| RwLock::new(None)).collect(),
            next_slot: AtomicUsize::new(0),
            breaker: Breaker::new(BreakerConfig::default()),
            scripts: Scripts {
                lookup: Script::new(&format!("{ENTRY_FNS}{LOOKUP}")),
                lookup_many: Script::new(&format!("{ENTRY_FNS}{LOOKUP_MANY}")),
                lookup_index: Script::new(&format!("{ENTRY_FNS}{LOOKUP_INDEX}")),
                store: Script::new(STORE),
                invalidate: Script::new(INVALIDATE),
            },
            history: History::default(),
            pending: Mutex::new(Pending::default()),
            indexes: moka::sync::Cache::builder()
                .max_capacity(INDEX_MEMO_BYTES)
                .weigher(|k: &String, v: &Arc<IndexMemo>| {
                    u32::try_from(k.len() + v.value.len() + v.confirm.bytes() + 64)
                        .unwrap_or(u32::MAX)
                })
                .build(),
            probe: tokio::sync::Mutex::new(None),
            opened: Arc::new(tokio::sync::Notify::new()),
            answering: AtomicBool::new(true),
            answering_again: tokio::sync::watch::Sender::new(0),
            runtime: tokio::runtime::Handle::try_current().ok(),
            namespace: ns,
            config,
        })
    }

    /// Probes Redis in the background while the circuit is open, on the breaker's
    /// schedule, so recovery costs no user request anything: the first request after
    /// an outage finds the circuit closed, the remembered invalidations applied, and
    /// subscriptions woken. Meanwhile calls never probe themselves. The task ends when
    /// the returned handle is dropped (or stopped), or when the cache is dropped. Must
    /// be called inside a Tokio runtime.
    pub fn probe_in_background(self: &Arc<Self>) -> BackgroundProbe {
        self.breaker.probe_in_background(true);
        let cache: Weak<Self> = Arc::downgrade(self);
        let opened = self.opened.clone();
        let task = tokio::spawn(async move {
            loop {
                let due = match cache.upgrade() {
                    Some(c) => c.breaker.probe_due_in(),
                    None => return,
                };
                match due {
                    // Wait for the circuit to open (a permit is kept if it opens before
                    // this waits), looking again now and then.
                    None => {
                        tokio::select! {
                            () = opened.notified() => {}
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                    Some(_) => {
                        let Some(c) = cache.upgrade() else { return };
                        c.probe_now(Instant::now(), "background").await;
                        drop(c);
                        // A probe under way elsewhere: look again shortly.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        BackgroundProbe {
            task: task.abort_handle(),
            cache: Arc::downgrade(self),
        }
    }

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

    /// Asks Redis whether it answers, as one of the breaker's probes when one is due,
    /// else (with `peek`) past the breaker at most every [`PEEK_EVERY`]. One at a time:
    /// a caller that arrived before a probe started takes that probe's outcome. A
    /// successful probe applies the remembered invalidations before it answers.
    async fn probe(&self, arrived: Instant, peek: bool, by: &'static str) -> CacheHealth {
        let mut last = self.probe.lock().await;
        if let Some(p) = *last
            && p.started >= arrived
        {
            return p.health;
        }
        let gate = if !self.breaker.is_open() {
            Gate::Breaker
        } else if self.breaker.try_probe() {
            Gate::Probe
        } else if peek && last.is_none_or(|p| p.started.elapsed() >= PEEK_EVERY) {
            Gate::Peek
        } else {
            return CacheHealth::Down;
        };
        let started = Instant::now();
        // No user waits for a probe: it may take as long as a connection may.
        let timeout = self.config.timeout.max(self.config.connect_timeout);
        // A probe abandoned half-way (its caller gone) counts as failed, so the breaker
        // is never left waiting for an outcome that will not come.
        let abandoned = ProbeGuard {
            breaker: &self.breaker,
            armed: gate == Gate::Probe,
        };
        let ping = |gate| {
            self.call_within("ping", timeout, gate, |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
        };
        let mut pong = ping(gate).await;
        if pong.is_err() && started.elapsed() < timeout {
            // Failed at once: most often a connection that died with the last Redis
            // (its socket is closed and has just been dropped). Asking once more, on a
            // new connection and past the breaker (a failure leaves its schedule
            // alone), tells whether Redis answers now.
            pong = ping(Gate::Peek).await;
        }
        abandoned.disarm();
        let health = if pong.is_ok() {
            // The circuit is closed: apply what was missed now, not at a user's lookup.
            let _ = self.recover("").await;
            CacheHealth::Up
        } else {
            CacheHealth::Down
        };
        metrics::probe(by, health.as_str());
        *last = Some(Probed { started, health });
        health
    }

    /// [`Self::probe`] for the background prober: only the breaker's own probes.
    async fn probe_now(&self, arrived: Instant, by: &'static str) -> CacheHealth {
        self.probe(arrived, false, by).await
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

    /// The URLs of the servers: one, or every node of a cluster.
    pub(crate) fn node_urls(&self) -> Vec<String> {
        cluster_nodes(&self.config.url).unwrap_or_else(|| vec![self.config.url.clone()])
    }

    /// A client of one server (`url` is one of [`Self::node_urls`]), with this cache's
    /// TLS settings.
    pub(crate) fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        client(url, self.config.tls_ca_pem.as_deref())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.config.connect_timeout
    }

    /// Sends `payload` to every subscriber of `channel` (every node of a cluster).
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
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
    ) -> Result<Value, CacheError> {
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

    fn pending_scopes(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn generation_ttl_ms(&self) -> u64 {
        u64::try_from(self.config.generation_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// A shared connection, made if its slot is empty.
    async fn connection(&self) -> Result<(usize, Conn), CacheError> {
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
    async fn check_history(&self, conn: &mut Conn) -> Result<(), CacheError> {
        let record = format!("{}:{{#near}}:identity", self.namespace);
        let table = self.lease_table();
        let checked = tokio::time::timeout(
            self.config.connect_timeout,
            identity::check(conn, &record, &table),
        )
        .await
        .map_err(|_| unavailable("checking the Redis identity timed out"))?
        .map_err(unavailable)?;
        let (identity, floor, began) = checked;
        let reset = self.history.observe(&identity, floor, began);
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

    /// Drops a connection that failed so the next call makes a new one.
    fn discard(&self, i: usize) {
        if let Some(slot) = self.slots.get(i)
            && let Some(pooled) = slot.write().unwrap_or_else(|p| p.into_inner()).take()
        {
            pooled.discard();
        }
    }

    fn failed(&self) {
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
    fn peek_failed(&self) {
        self.answering.store(false, Ordering::Relaxed);
    }

    fn succeeded(&self) {
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
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, CacheError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(op, self.config.timeout, Gate::Breaker, f)
            .await
    }

    /// [`Self::call`] with its own timeout, through `gate` (a success always closes the
    /// breaker).
    async fn call_within<T, F, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        gate: Gate,
        f: F,
    ) -> Result<T, CacheError>
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

    /// Looks `key` up. With `known`, the tag of a copy the caller holds, a current copy
    /// is confirmed without sending the value.
    pub(crate) async fn lookup(&self, key: &Key, known: Option<&str>) -> Result<Raw, CacheError> {
        self.recover(key.scope()).await?;
        let [root, own] = self.generation_keys(key.scope());
        let keys = [self.value_key(key), root, own];
        let ttl = self.generation_ttl_ms();
        let known = known.unwrap_or("");
        let (state, bytes): (i64, Vec<u8>) = self
            .call("lookup", |mut c| async move {
                self.scripts
                    .lookup
                    .key(&keys[..])
                    .arg(ttl)
                    .arg(self.history.floor())
                    .arg(known)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match state {
            3 => Ok(Raw::Current),
            1 => {
                let bytes = Bytes::from(bytes);
                let header = bytes.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
                let tag: Arc<str> =
                    String::from_utf8_lossy(bytes.get(..header).unwrap_or_default()).into();
                match unseal(bytes.slice(header..)) {
                    Some(value) => Ok(Raw::Hit { tag, bytes: value }),
                    None => self.corrupt(key).await,
                }
            }
            0 => Ok(Raw::Miss(Ticket::new(String::from_utf8_lossy(&bytes)))),
            _ => self.corrupt(key).await,
        }
    }

    /// Stores `head` then `value` under one checksum, while `ticket` is current.
    async fn store(
        &self,
        key: &Key,
        ticket: &Ticket,
        head: &[u8],
        value: &Bytes,
        ttl: Duration,
    ) -> Result<Stored, CacheError> {
        if head.len() + value.len() > self.config.max_value_bytes {
            metrics::set(key.family(), "too_large");
            return Ok(Stored::TooLarge);
        }
        let Some(tag) = ticket.tag() else {
            metrics::set(key.family(), "stale");
            return Ok(Stored::Stale);
        };
        let [root, own] = self.generation_keys(key.scope());
        let keys = [self.value_key(key), root, own];
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut crc = crc32fast::Hasher::new();
        crc.update(head);
        crc.update(value);
        let mut sealed = Vec::with_capacity(CRC_LEN + head.len() + value.len());
        sealed.extend_from_slice(format!("{:08x}", crc.finalize()).as_bytes());
        sealed.extend_from_slice(head);
        sealed.extend_from_slice(value);
        let stored: Result<i64, _> = self
            .call("store", |mut c| async move {
                self.scripts
                    .store
                    .key(&keys[..])
                    .arg(tag)
                    .arg(&sealed[..])
                    .arg(ttl_ms)
                    .arg(self.history.floor())
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        let outcome = match stored {
            Ok(1) => Stored::Stored,
            Ok(_) => Stored::Stale,
            Err(e) => {
                metrics::set(key.family(), "error");
                return Err(e);
            }
        };
        metrics::set(
            key.family(),
            if outcome == Stored::Stored {
                "stored"
            } else {
                "stale"
            },
        );
        Ok(outcome)
    }

    /// Like [`Self::recover`], and refuses while any invalidation is still to be applied:
    /// a lookup of many scopes serves nothing until all of them are current.
    async fn recover_all(&self, scope: &str) -> Result<(), CacheError> {
        self.recover(scope).await?;
        if self.pending_scopes().is_empty() {
            Ok(())
        } else {
            Err(unavailable("invalidations are still to be applied"))
        }
    }

    /// One entry of a many-key answer: current (3), a hit whose checksum holds, else a
    /// miss with the ticket of the generation the script saw. A damaged entry is removed
    /// and counted.
    async fn member(&self, family: &'static str, name: &str, state: i64, bytes: Vec<u8>) -> Raw {
        match state {
            0 => Raw::Miss(Ticket::new(String::from_utf8_lossy(&bytes))),
            3 => Raw::Current,
            1 => {
                let bytes = Bytes::from(bytes);
                let header = bytes.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
                let tag: Arc<str> =
                    String::from_utf8_lossy(bytes.get(..header).unwrap_or_default()).into();
                if let Some(value) = unseal(bytes.slice(header..)) {
                    return Raw::Hit { tag, bytes: value };
                }
                // Its header is the current tag (the script compared it).
                self.remove_damaged(family, name).await;
                Raw::Miss(Ticket::new(tag))
            }
            // Not in this cache's format: the answer carries the current tag.
            _ => {
                self.remove_damaged(family, name).await;
                Raw::Miss(Ticket::new(String::from_utf8_lossy(&bytes)))
            }
        }
    }

    async fn remove_damaged(&self, family: &'static str, name: &str) {
        metrics::corrupt(family);
        tracing::warn!(
            family,
            "removing a cache entry that fails its checksum or format"
        );
        let _ = self
            .call("remove", |mut c| async move {
                redis::cmd("UNLINK")
                    .arg(name)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// An index and its members, in one script. With `known`, the tag of the caller's
    /// copy of the index, the value keys of its members and the tags of the caller's
    /// copies of them: copies found current are confirmed without sending their values.
    pub(crate) async fn lookup_index(
        &self,
        key: &Key,
        known: Option<KnownIndex<'_>>,
    ) -> Result<RawIndex, CacheError> {
        self.recover_all(key.scope()).await?;
        if let Some(k) = &known
            && let Some(raw) = self.confirm_index(k).await?
        {
            return Ok(raw);
        }
        let [root, own] = self.generation_keys(key.scope());
        let name = self.value_key(key);
        let keys = [name.clone(), root, own];
        let ttl = self.generation_ttl_ms();
        let prefix = self.scope_prefix(key.scope());
        let known_tag = known.as_ref().map_or("", |k| k.tag);
        let member_tags: Vec<&str> = known
            .as_ref()
            .map(|k| k.tags.iter().map(|t| t.as_deref().unwrap_or("")).collect())
            .unwrap_or_default();
        let answer: Vec<Value> = self
            .call("lookup_index", |mut c| async move {
                self.scripts
                    .lookup_index
                    .key(&keys[..])
                    .arg(ttl)
                    .arg(self.history.floor())
                    .arg(&prefix)
                    .arg(known_tag)
                    .arg(&member_tags[..])
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let mut pairs = pairs(answer)?.into_iter();
        let (state, bytes) = pairs
            .next()
            .ok_or_else(|| CacheError::Protocol("an empty answer to a lookup".into()))?;
        let (index, names) = match state {
            0 => {
                let ticket = Ticket::new(String::from_utf8_lossy(&bytes));
                return Ok(RawIndex {
                    index: Raw::Miss(ticket),
                    members: Vec::new(),
                });
            }
            3 => (
                Raw::Current,
                known.map(|k| k.names.to_vec()).unwrap_or_default(),
            ),
            1 => {
                let bytes = Bytes::from(bytes);
                let header = bytes.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
                let payload = unseal(bytes.slice(header..));
                let parts = payload
                    .as_ref()
                    .and_then(|p| Some((index_value(p)?, index_members(p)?)));
                let Some((value, names)) = parts else {
                    self.remove_damaged(key.family(), &name).await;
                    return Err(CacheError::Protocol(
                        "an index that fails its checksum".into(),
                    ));
                };
                let tag: Arc<str> =
                    String::from_utf8_lossy(bytes.get(..header).unwrap_or_default()).into();
                (Raw::Hit { tag, bytes: value }, names)
            }
            _ => {
                self.remove_damaged(key.family(), &name).await;
                return Err(CacheError::Protocol(
                    "an index that fails its format".into(),
                ));
            }
        };
        // The answers come in the members' order.
        let mut members = Vec::with_capacity(names.len());
        for (member, (state, bytes)) in names.iter().zip(pairs) {
            members.push(self.member(key.family(), member, state, bytes).await);
        }
        if members.len() != names.len() {
            return Err(CacheError::Protocol(
                "a short answer to an index lookup".into(),
            ));
        }
        Ok(RawIndex { index, members })
    }

    /// An index lookup for a caller holding no copies: through the memo of the index
    /// when it is still current, else through the script (which refills the memo).
    async fn index_lookup(
        &self,
        key: &Key,
        members: Members<'_>,
    ) -> Result<IndexLookup, CacheError> {
        self.recover_all(key.scope()).await?;
        let name = self.value_key(key);
        if let Some(memo) = self.indexes.get(&name) {
            if let Some(found) = self.read_memo(&memo).await? {
                return Ok(found);
            }
            self.indexes.invalidate(&name);
        }
        let raw = self.lookup_index(key, None).await?;
        Ok(match raw.index {
            Raw::Hit { tag, bytes } => {
                if let Some(keys) = members(&bytes)
                    && !keys.is_empty()
                    && keys.len() == raw.members.len()
                {
                    let memo = IndexMemo {
                        tag,
                        value: bytes.clone(),
                        families: keys.iter().map(Key::family).collect(),
                        confirm: self.confirm_keys(key, &keys),
                    };
                    self.indexes.insert(name, Arc::new(memo));
                }
                IndexLookup::Hit {
                    value: bytes,
                    members: raw.members.into_iter().map(raw_lookup).collect(),
                }
            }
            Raw::Miss(t) => IndexLookup::Miss(t),
            // Unreachable without a known tag; a miss that stores nothing is safe.
            Raw::Current => IndexLookup::Miss(Ticket::none()),
        })
    }

    /// The index of `memo` and its members, read with `MULTI`, `MGET` of every
    /// generation, `EXISTS` of the index, `MGET` of the members' values, `EXEC`; `None`
    /// when the index is not the memo's any more, or a generation is missing (the
    /// script makes it). Each member is answered as the script would: a hit when its
    /// value carries the tag of its generations (and passes its checksum), else a miss
    /// with that tag as its ticket.
    async fn read_memo(&self, memo: &IndexMemo) -> Result<Option<IndexLookup>, CacheError> {
        let confirm = &memo.confirm;
        let (Some(index), Some(names)) = (confirm.values.first(), confirm.values.get(1..)) else {
            return Ok(None);
        };
        if names.is_empty() || confirm.tags.len() != names.len() + 1 {
            return Ok(None);
        }
        let (gens, exists, values): MemoAnswer = self
            .call("index_memo", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .cmd("MGET")
                    .arg(&confirm.gens[..])
                    .cmd("EXISTS")
                    .arg(index)
                    .cmd("MGET")
                    .arg(names)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if exists != 1 || gens.len() != confirm.gens.len() || values.len() != names.len() {
            return Ok(None);
        }
        let mut tags = Vec::with_capacity(confirm.tags.len());
        for &(r, o) in &confirm.tags {
            let (Some(Some(root)), Some(Some(own))) = (gens.get(r), gens.get(o)) else {
                return Ok(None);
            };
            // A generation below the floor is the script's to move first.
            if !self.history.admits(root) || !self.history.admits(own) {
                return Ok(None);
            }
            tags.push(format!("{root}.{own}\n"));
        }
        if tags.first().map(String::as_str) != Some(&*memo.tag) {
            return Ok(None);
        }
        let mut members = Vec::with_capacity(names.len());
        for (i, (name, value)) in names.iter().zip(values).enumerate() {
            let tag = tags.get(i + 1).cloned().unwrap_or_default();
            let (state, bytes) = match value {
                None => (0, tag.into_bytes()),
                Some(v) if v.starts_with(tag.as_bytes()) => (1, v),
                Some(v) if has_tag_header(&v) => (0, tag.into_bytes()),
                Some(_) => (2, tag.into_bytes()),
            };
            let family = memo.families.get(i).copied().unwrap_or_default();
            members.push(raw_lookup(self.member(family, name, state, bytes).await));
        }
        Ok(Some(IndexLookup::Hit {
            value: memo.value.clone(),
            members: members.into(),
        }))
    }

    /// The names [`Self::confirm_index`] reads for `index` and its `members`.
    pub(crate) fn confirm_keys(&self, index: &Key, members: &[Key]) -> ConfirmKeys {
        let mut gens: Vec<String> = Vec::new();
        let mut at = |name: String| match gens.iter().position(|g| *g == name) {
            Some(i) => i,
            None => {
                gens.push(name);
                gens.len() - 1
            }
        };
        let tags = std::iter::once(index)
            .chain(members)
            .map(|k| {
                let [root, own] = self.generation_keys(k.scope());
                (at(root), at(own))
            })
            .collect();
        ConfirmKeys {
            gens,
            tags,
            values: std::iter::once(index)
                .chain(members)
                .map(|k| self.value_key(k))
                .collect(),
        }
    }

    /// Confirms in one atomic round trip of plain commands (`MULTI`, `MGET` of the
    /// generations, `EXISTS` of the entries, `EXEC`) that the caller's copies of an
    /// index and of every member are current: `Some` with every copy current, `None`
    /// when any is not (or a generation is missing), for the script to answer. No value
    /// is sent and no script runs, which is what keeps a near-tier page hit as cheap as a
    /// near-tier hit of one entry. A tag equal to the generations read means no
    /// invalidation of the copy's scopes happened since it was stored; the entries'
    /// existence means none has expired.
    async fn confirm_index(&self, known: &KnownIndex<'_>) -> Result<Option<RawIndex>, CacheError> {
        let n = known.names.len();
        let Some(confirm) = known.confirm else {
            return Ok(None);
        };
        if confirm.values.len() != n + 1
            || confirm.tags.len() != n + 1
            || known.tags.len() != n
            || known.tags.iter().any(Option::is_none)
        {
            return Ok(None);
        }
        let (found, exist): (Vec<Option<String>>, usize) = self
            .call("confirm_index", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .cmd("MGET")
                    .arg(&confirm.gens[..])
                    .cmd("EXISTS")
                    .arg(&confirm.values[..])
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if exist != n + 1 || found.len() != confirm.gens.len() {
            return Ok(None);
        }
        let tags = std::iter::once(Some(known.tag)).chain(known.tags.iter().map(|t| t.as_deref()));
        for (&(r, o), tag) in confirm.tags.iter().zip(tags) {
            let (Some(Some(root)), Some(Some(own)), Some(tag)) = (found.get(r), found.get(o), tag)
            else {
                return Ok(None);
            };
            if !is_tag(tag, root, own) || !self.history.admits(root) || !self.history.admits(own) {
                return Ok(None);
            }
        }
        Ok(Some(RawIndex {
            index: Raw::Current,
            members: (0..n).map(|_| Raw::Current).collect(),
        }))
    }

    /// Removes an entry that is not what this cache stored.
    async fn corrupt(&self, key: &Key) -> Result<Raw, CacheError> {
        metrics::corrupt(key.family());
        tracing::warn!(
            family = key.family(),
            "removing a cache entry that fails its checksum or format"
        );
        let _ = Cache::remove(self, key).await;
        Err(CacheError::Protocol(
            "an entry that fails its checksum or format".into(),
        ))
    }

    /// Bumps one scope's generation. A write's own invalidation (`for_write`) is tried
    /// even while the breaker holds other calls off: Redis may be back already (and
    /// another instance reading it), and a write can afford the wait a read cannot.
    async fn bump(&self, scope: &str, for_write: bool) -> Result<(), CacheError> {
        let key = self.generation_key(scope);
        let ttl = self.generation_ttl_ms();
        let timeout = self.config.invalidate_timeout.max(self.config.timeout);
        let gate = if for_write { Gate::Past } else { Gate::Breaker };
        self.call_within("invalidate", timeout, gate, |mut c| async move {
            self.scripts
                .invalidate
                .key(key)
                .arg(ttl)
                .arg(self.history.floor())
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    /// Applies invalidations that failed earlier. Until they succeed nothing of their
    /// scopes is served. All of them are applied at the first lookup that finds Redis
    /// again, whatever its scope, so a scope this process never reads again is not left
    /// stale for other readers of Redis.
    async fn recover(&self, scope: &str) -> Result<(), CacheError> {
        let (root, _) = split_scope(scope);
        let pending: Vec<(String, u64)> = {
            let pending = self.pending_scopes();
            if pending.is_empty() {
                return Ok(());
            }
            pending.snapshot()
        };
        for (s, failure) in pending {
            match self.bump(&s, false).await {
                Ok(()) => {
                    self.pending_scopes().applied(&s, failure);
                    tracing::info!(scope = %s, "applied an invalidation that had failed");
                }
                // Another scope's (on another cluster node, say) may wait for a later
                // lookup; this scope's may not.
                Err(e) if s == scope || s == root => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &Key) -> Result<Lookup, CacheError> {
        let result = self.lookup(key, None).await.map(|raw| match raw {
            Raw::Hit { bytes, .. } => Lookup::Hit(bytes),
            Raw::Miss(t) => Lookup::Miss(t),
            // Unreachable without a known tag; a miss that stores nothing is safe.
            Raw::Current => Lookup::Miss(Ticket::none()),
        });
        metrics::lookup_outcome(key.family(), &result);
        result
    }

    async fn put(
        &self,
        key: &Key,
        ticket: &Ticket,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Stored, CacheError> {
        self.store(key, ticket, &[], &value, ttl).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>, CacheError> {
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        self.recover_all(first.scope()).await?;
        // One script per hash slot (root scope), sent together.
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let root = split_scope(key.scope()).0;
            match groups.iter_mut().find(|(r, _)| *r == root) {
                Some((_, members)) => members.push(i),
                None => groups.push((root, vec![i])),
            }
        }
        let ttl = self.generation_ttl_ms();
        let calls = groups.iter().map(|(_, members)| {
            let names: Vec<String> = members
                .iter()
                .filter_map(|&i| keys.get(i))
                .flat_map(|key| {
                    let [root, own] = self.generation_keys(key.scope());
                    [self.value_key(key), root, own]
                })
                .collect();
            async move {
                self.call("lookup_many", |mut c| async move {
                    self.scripts
                        .lookup_many
                        .key(&names[..])
                        .arg(ttl)
                        .arg(self.history.floor())
                        .invoke_async::<Vec<Value>>(&mut c)
                        .await
                })
                .await
            }
        });
        let answers = futures_util::future::join_all(calls).await;
        let mut found: Vec<Option<Lookup>> = vec![None; keys.len()];
        for ((_, members), answer) in groups.iter().zip(answers) {
            let pairs = pairs(answer?)?;
            if pairs.len() != members.len() {
                return Err(CacheError::Protocol("a short answer to a lookup".into()));
            }
            for (&i, (state, bytes)) in members.iter().zip(pairs) {
                let key = keys.get(i).ok_or_else(|| unavailable("no such key"))?;
                let name = self.value_key(key);
                let lookup = raw_lookup(self.member(key.family(), &name, state, bytes).await);
                metrics::lookup_outcome(key.family(), &Ok(lookup.clone()));
                if let Some(slot) = found.get_mut(i) {
                    *slot = Some(lookup);
                }
            }
        }
        Ok(found
            .into_iter()
            .map(|f| f.unwrap_or_else(|| Lookup::Miss(Ticket::none())))
            .collect())
    }

    async fn get_index(&self, key: &Key, members: Members<'_>) -> Result<IndexLookup, CacheError> {
        let result = self.index_lookup(key, members).await;
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

    async fn put_index(
        &self,
        key: &Key,
        ticket: &Ticket,
        value: Bytes,
        members: &[Key],
        ttl: Duration,
    ) -> Result<Stored, CacheError> {
        check_members(key, members)?;
        let mut head = format!("{INDEX_MARK}{}\n", members.len());
        for m in members {
            let [root, own] = self.generation_keys(m.scope());
            for name in [self.value_key(m), root, own] {
                head.push_str(&name);
                head.push('\n');
            }
        }
        self.store(key, ticket, head.as_bytes(), &value, ttl).await
    }

    async fn invalidate(&self, scopes: &[&str]) -> Result<(), CacheError> {
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
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn remove(&self, key: &Key) -> Result<(), CacheError> {
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

/// Reports the breaker's probe as failed if dropped armed.
struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    armed: bool,
}

impl ProbeGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.failure();
        }
    }
}

/// The background prober of [`RedisCache::probe_in_background`]; dropping it stops it.
#[derive(Debug)]
pub struct BackgroundProbe {
    task: tokio::task::AbortHandle,
    cache: Weak<RedisCache>,
}

impl BackgroundProbe {
    /// Stops probing; calls probe by themselves again.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for BackgroundProbe {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(c) = self.cache.upgrade() {
            c.breaker.probe_in_background(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_clears_only_failures_it_began_after() {
        let mut p = Pending::default();
        p.failed("list");
        let retry = p.snapshot();
        // A write's invalidation fails while the retry is in flight.
        p.failed("list");
        for (scope, failure) in retry {
            p.applied(&scope, failure);
        }
        assert_eq!(p.len(), 1, "the later failure is still to be applied");
        let retry = p.snapshot();
        for (scope, failure) in retry {
            p.applied(&scope, failure);
        }
        assert!(p.is_empty());
    }

    #[test]
    fn cluster_urls_name_every_node_with_the_same_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001/"),
            Some(vec![
                "redis://:pw@10.0.0.1:7000".to_owned(),
                "redis://:pw@10.0.0.2:7001".to_owned()
            ])
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://h1:1,h2:2"),
            Some(vec!["rediss://h1:1".to_owned(), "rediss://h2:2".to_owned()])
        );
        assert_eq!(cluster_nodes("redis://h:6379"), None);
        assert!(
            RedisCache::new(RedisConfig {
                url: "redis+cluster://".into(),
                ..RedisConfig::default()
            })
            .is_err()
        );
    }
}
