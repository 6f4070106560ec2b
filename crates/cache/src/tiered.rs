//! [`TieredCache`]: an in-process near tier (moka) in front of a [`RedisCache`].
//!
//! Guarantee (strict in both modes): a near hit is exactly as fresh as a Redis hit,
//! across instances. **Leased** (with a bus and [`NearConfig::lease`]): while this
//! instance holds a lease (see `lease.rs`), a copy no drop has reached is served with no
//! round trip, and every write waits until each lease holder dropped what it changed.
//! **Confirmed** (no lease held, or leases off): a copy is served only after Redis
//! confirmed that its generation is still current, in one round trip that carries no
//! value; what the near tier saves is then the transfer of the value and Redis's work on
//! it, not the round trip.
//!
//! Invalidations are also published on a [`RedisBus`]; every instance drops its near
//! copies of the scopes named, and all of them when its subscription drops or is made
//! again. In the confirmed mode that only keeps memory for current data; the leased
//! mode rests on it (in order, lost only with the connection). A drop costs O(1) whatever
//! the copies held: it stamps the scope in a table of [`Epochs`], and a copy older than
//! its scope's (or its root's) stamp is not offered again, and is replaced when Redis
//! answers the entry or evicted like any unused copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use tokio::task::AbortHandle;

use crate::bus::{BusEvent, RedisBus};
use crate::lease::{self, LeaseConfig, Leases, Message, Waited};
use crate::redis::{ConfirmKeys, KnownIndex, Raw};
use crate::{
    Cache, CacheError, CacheHealth, IndexLookup, Key, Lookup, Members, RedisCache, Stored, Ticket,
    metrics,
};

/// Settings of the near tier.
#[derive(Debug, Clone, Copy)]
pub struct NearConfig {
    /// Most bytes of keys and values held in process.
    pub max_bytes: u64,
    /// With a bus: serve near copies without a round trip while holding a lease (see
    /// [`LeaseConfig`]); `None` confirms every near hit with Redis.
    pub lease: Option<LeaseConfig>,
}

impl Default for NearConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            lease: Some(LeaseConfig::default()),
        }
    }
}

/// How long a near copy is served under a lease since Redis last confirmed it before one
/// lookup confirms it again (the others serving it meanwhile); past twice this, every
/// lookup asks. Twice this bounds how long a copy outlives its Redis entry, or an
/// invalidation that was never announced (one applied late by a retry).
const CONFIRM_EVERY: u64 = 1_000_000_000;

#[derive(Debug)]
struct NearEntry {
    tag: Arc<str>,
    bytes: Bytes,
    ttl: Duration,
    /// The entry's scope, and the [`Epochs`] clock read before Redis answered it.
    scope: Arc<str>,
    stamp: u64,
    /// For an index copy: its members' key names, made once when the copy is kept.
    plan: Option<Arc<IndexPlan>>,
    /// When Redis last confirmed the copy (or answered it).
    confirmed: Arc<Confirmation>,
    /// Set when the near tier lets the copy go (replaced, invalidated, evicted, expired),
    /// before that call returns: the threads' front maps then stop offering it.
    retired: AtomicBool,
}

impl NearEntry {
    /// What the copy counts for against a near tier's bound, kept under `name`.
    fn weight(&self, name: &str) -> usize {
        let plan = self.plan.as_ref().map_or(0, |p| p.bytes());
        name.len() + self.bytes.len() + self.scope.len() + plan + 64
    }
}

/// Most copies, and bytes they count for, that each thread's front map keeps.
const FRONT_COPIES: usize = 1024;
const FRONT_BYTES: usize = 8 * 1024 * 1024;

/// A thread's front map of one near tier (its `owner`): the copies this thread looked up
/// last, as the very `Arc`s the near tier holds. A copy is offered from here only while
/// the near tier has not let it go (`retired`), so it answers exactly what the near tier
/// would, without the shared map's bookkeeping (a read queue and an epoch guard that
/// both HTTP workers write on every lookup). Full, it starts afresh.
struct Front {
    owner: u64,
    /// When this thread last looked a copy up here, on its own count of lookups.
    used: u64,
    copies: std::collections::HashMap<Box<str>, Arc<NearEntry>, foldhash::fast::RandomState>,
    bytes: usize,
}

/// Near tiers a thread keeps a front map for; one more replaces the least recently
/// used (a process embedding several caches keeps a map for each).
const FRONTS: usize = 4;

/// A thread's front maps, and its count of lookups.
#[derive(Default)]
struct Fronts {
    maps: Vec<Front>,
    lookups: u64,
}

impl Fronts {
    /// The front map of near tier `owner`, made (in place of the least recently used
    /// one when there are [`FRONTS`]) if this thread has none.
    fn of(&mut self, owner: u64) -> &mut Front {
        self.lookups += 1;
        let used = self.lookups;
        let at = match self.maps.iter().position(|f| f.owner == owner) {
            Some(at) => at,
            None => {
                let fresh = Front {
                    owner,
                    used,
                    copies: std::collections::HashMap::with_hasher(
                        foldhash::fast::RandomState::default(),
                    ),
                    bytes: 0,
                };
                match self.maps.iter().enumerate().min_by_key(|(_, f)| f.used) {
                    Some((at, _)) if self.maps.len() >= FRONTS => {
                        if let Some(slot) = self.maps.get_mut(at) {
                            *slot = fresh;
                        }
                        at
                    }
                    _ => {
                        self.maps.push(fresh);
                        self.maps.len() - 1
                    }
                }
            }
        };
        let front = self
            .maps
            .get_mut(at)
            .expect("the index was found or made just above");
        front.used = used;
        front
    }
}

thread_local! {
    static FRONT: std::cell::RefCell<Fronts> = std::cell::RefCell::new(Fronts::default());
}

/// Tells near tiers apart in the threads' front maps.
static NEAR_TIERS: AtomicU64 = AtomicU64::new(1);

impl Front {
    fn clear(&mut self) {
        self.copies.clear();
        self.bytes = 0;
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.copies.remove(name) {
            self.bytes = self.bytes.saturating_sub(old.weight(name));
        }
    }

    fn keep(&mut self, name: &str, copy: Arc<NearEntry>) {
        let weight = copy.weight(name);
        if self.copies.len() >= FRONT_COPIES || self.bytes + weight > FRONT_BYTES {
            self.clear();
        }
        if weight <= FRONT_BYTES {
            self.bytes += weight;
            if let Some(old) = self.copies.insert(name.into(), copy) {
                self.bytes = self.bytes.saturating_sub(old.weight(name));
            }
        }
    }
}

/// When Redis last confirmed a copy, on [`lease::clock`], and whether a lookup is
/// confirming it again now.
#[derive(Debug, Default)]
struct Confirmation {
    at: AtomicU64,
    confirming: AtomicBool,
}

impl Confirmation {
    fn new(at: u64) -> Arc<Self> {
        Arc::new(Self {
            at: AtomicU64::new(at),
            confirming: AtomicBool::new(false),
        })
    }
}

/// Whether a lookup under a lease may serve a copy without asking Redis.
enum Unasked {
    Serve,
    /// Not without asking: this lookup confirms the copy again (the others go on
    /// serving it meanwhile), and lets go of that when dropped.
    Confirm(Confirming),
    Ask,
}

struct Confirming(Arc<Confirmation>);

impl Drop for Confirming {
    fn drop(&mut self) {
        self.0.confirming.store(false, Ordering::Release);
    }
}

impl NearEntry {
    /// A copy confirmed within [`CONFIRM_EVERY`] is served unasked; one confirmed
    /// within twice that is confirmed again by one lookup while the others serve it;
    /// an older one is asked about by every lookup.
    fn unasked(&self, now: u64) -> Unasked {
        let age = now.saturating_sub(self.confirmed.at.load(Ordering::Relaxed));
        if age < CONFIRM_EVERY {
            Unasked::Serve
        } else if age < 2 * CONFIRM_EVERY {
            match self.confirmed.confirming.compare_exchange(
                false,
                true,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => Unasked::Confirm(Confirming(self.confirmed.clone())),
                Err(_) => Unasked::Serve,
            }
        } else {
            Unasked::Ask
        }
    }

    fn confirmed_at(&self, at: u64) {
        self.confirmed.at.fetch_max(at, Ordering::Relaxed);
    }
}

/// What a lookup of an index copy needs of its members, kept with the copy so that a
/// near-tier page hit does not rebuild some sixty key names.
#[derive(Debug)]
struct IndexPlan {
    /// The members' value keys, in order.
    names: Vec<String>,
    /// The members' scopes, in the same order.
    scopes: Vec<Arc<str>>,
    /// What confirms the index and its members in one round trip.
    confirm: ConfirmKeys,
    /// The members' copies (tag and bytes) as the last lookup of this index found them
    /// all current, so that the next one needs no lookup of each in the near tier. They
    /// are served only once confirmed, as any copy.
    rows: Vec<(Arc<str>, Bytes)>,
    /// The same copies as the lookups a page hit answers, made once.
    hits: Arc<[Lookup]>,
}

impl IndexPlan {
    fn bytes(&self) -> usize {
        self.confirm.bytes()
            + self
                .rows
                .iter()
                .map(|(t, b)| t.len() + b.len())
                .sum::<usize>()
    }
}

struct NearTtl;

impl Expiry<String, Arc<NearEntry>> for NearTtl {
    fn expire_after_create(
        &self,
        _k: &String,
        v: &Arc<NearEntry>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _k: &String,
        v: &Arc<NearEntry>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The two-tier cache.
pub struct TieredCache {
    far: Arc<RedisCache>,
    near: Near,
    /// This near tier's name in the threads' front maps.
    id: u64,
    bus: Option<Arc<RedisBus>>,
    origin: String,
    /// The listener, the renewer and the acknowledgement listener.
    tasks: Vec<AbortHandle>,
    epochs: Arc<Epochs>,
    leases: Option<Arc<Leases>>,
    /// This instance's acknowledgement channel, kept subscribed.
    _acks: Option<Arc<RedisBus>>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("far", &self.far)
            .field("near_entries", &self.near.entry_count())
            .finish_non_exhaustive()
    }
}

impl Drop for TieredCache {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Most scopes whose drops [`Epochs`] remembers one by one; past it, it forgets them
/// all and counts every older copy as dropped.
const MAX_DROPPED_SCOPES: usize = 100_000;

/// When each scope's near copies were last dropped, on a clock of this process.
///
/// Invariant: a copy stamped `t` (the clock read before Redis answered it) is offered
/// only while no drop of its scope or its scope's root was stamped at `t` or later, and
/// `t` is later than the last forget. Dropping is one map insert, so a steady stream of
/// writes costs each lookup nothing; a scan of the copies (moka's invalidation
/// predicates) piled up under such a stream and halved the mix's throughput.
#[derive(Debug)]
struct Epochs {
    clock: AtomicU64,
    /// The stamp of the latest drop, stored before the drop is recorded: a copy stamped
    /// later than it is current without a look at the table (and its lock, which both
    /// HTTP workers would otherwise pass through on every hit).
    last_drop: AtomicU64,
    dropped: std::sync::RwLock<Dropped>,
}

#[derive(Debug, Default)]
struct Dropped {
    by_scope: std::collections::HashMap<Box<str>, u64>,
    /// Copies stamped at or before this are dropped, whatever their scope.
    floor: u64,
}

impl Epochs {
    fn new() -> Self {
        Self {
            clock: AtomicU64::new(1),
            last_drop: AtomicU64::new(0),
            dropped: std::sync::RwLock::default(),
        }
    }

    /// The stamp of a copy Redis is about to answer.
    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Dropped> {
        self.dropped.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Dropped> {
        self.dropped.write().unwrap_or_else(|p| p.into_inner())
    }

    fn drop_scopes<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) {
        let mut d = self.write();
        for scope in scopes {
            let at = self.tick();
            self.last_drop.fetch_max(at, Ordering::SeqCst);
            if d.by_scope.len() >= MAX_DROPPED_SCOPES {
                d.by_scope.clear();
                d.floor = at;
            } else {
                d.by_scope.insert(scope.into(), at);
            }
        }
    }

    fn drop_all(&self) {
        let at = self.tick();
        let mut d = self.write();
        self.last_drop.fetch_max(at, Ordering::SeqCst);
        d.by_scope.clear();
        d.floor = at;
    }

    /// Whether no drop since `stamp` can have reached a copy stamped so. A drop that
    /// has not stored its stamp yet has not returned either, so a lookup that misses it
    /// is concurrent with the write it belongs to (which answers only after the drop).
    fn none_since(&self, stamp: u64) -> bool {
        stamp > self.last_drop.load(Ordering::SeqCst)
    }

    fn current(&self, scope: &str, stamp: u64) -> bool {
        self.none_since(stamp) || Self::current_in(&self.read(), scope, stamp)
    }

    /// Whether every one of `scopes` is current for a copy stamped `stamp`.
    fn all_current(&self, scopes: &[Arc<str>], stamp: u64) -> bool {
        if self.none_since(stamp) {
            return true;
        }
        let d = self.read();
        scopes.iter().all(|s| Self::current_in(&d, s, stamp))
    }

    fn current_in(d: &Dropped, scope: &str, stamp: u64) -> bool {
        let dropped_at = |s: &str| d.by_scope.get(s).copied().unwrap_or(0);
        let (root, child) = crate::redis::split_scope(scope);
        stamp > d.floor
            && dropped_at(root) < stamp
            && (child.is_none() || dropped_at(scope) < stamp)
    }
}

/// The near copies by value key. A near hit is little more than this lookup, so it is
/// moka's synchronous map (no future to box, no await: nothing in it waits) hashed by
/// foldhash, seeded per process, in a fraction of SipHash's time.
type Near = moka::sync::Cache<String, Arc<NearEntry>, foldhash::fast::RandomState>;

impl TieredCache {
    /// Puts a near tier in front of `far`. With a `bus`, invalidations are announced to
    /// (and received from) the other instances, and with `config.lease` near copies are
    /// served under a lease. Must be called inside a Tokio runtime.
    pub fn new(far: Arc<RedisCache>, config: NearConfig, bus: Option<Arc<RedisBus>>) -> Self {
        let near = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &String, v: &Arc<NearEntry>| {
                u32::try_from(v.weight(k)).unwrap_or(u32::MAX)
            })
            .expire_after(NearTtl)
            // Called before `insert` or `invalidate` returns for the copies they replace
            // or remove (moka notifies those synchronously), later for evictions.
            .eviction_listener(|_, copy: Arc<NearEntry>, _| {
                copy.retired.store(true, Ordering::Release);
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        let origin = format!("{:016x}", rand::random::<u64>());
        let epochs = Arc::new(Epochs::new());
        let leases = match (&bus, config.lease) {
            (Some(bus), Some(lease)) => Some(Arc::new(Leases::new(
                far.clone(),
                bus.channel(),
                origin.clone(),
                lease,
            ))),
            _ => None,
        };
        // A Redis that may have forgotten acknowledged writes (see `identity.rs`): no
        // copy or lease of the old history is trusted, before the connection that found
        // it serves anything.
        {
            let epochs = Arc::downgrade(&epochs);
            let leases = leases.as_ref().map(Arc::downgrade);
            far.on_reset(Box::new(move || {
                let Some(epochs) = epochs.upgrade() else {
                    return false;
                };
                if let Some(l) = leases.as_ref().and_then(std::sync::Weak::upgrade) {
                    l.revoke();
                }
                epochs.drop_all();
                true
            }));
        }
        let mut tasks = Vec::new();
        let mut acks = None;
        if let Some(bus) = &bus {
            let events = bus.subscribe();
            tasks.push(
                tokio::spawn(listen(
                    events,
                    near.clone(),
                    origin.clone(),
                    epochs.clone(),
                    leases.clone(),
                ))
                .abort_handle(),
            );
        }
        if let (Some(bus), Some(leases)) = (&bus, &leases) {
            let (ack_bus, receiving) = leases.receive_acks();
            tasks.push(receiving);
            acks = Some(ack_bus);
            let bus = bus.clone();
            tasks.push(
                tokio::spawn(leases.clone().renew_forever(move || bus.is_connected()))
                    .abort_handle(),
            );
        }
        Self {
            far,
            near,
            id: NEAR_TIERS.fetch_add(1, Ordering::Relaxed),
            bus,
            origin,
            tasks,
            epochs,
            leases,
            _acks: acks,
        }
    }

    /// Whether this instance holds a lease now, so that near copies are served without
    /// a round trip (for tests and diagnostics).
    pub fn holds_lease(&self) -> bool {
        self.holds_lease_at(lease::clock())
    }

    /// [`Cache::invalidate`], answering what the write waited for.
    pub async fn invalidate_waited(&self, scopes: &[&str]) -> (Result<(), CacheError>, Waited) {
        self.invalidate_with(scopes, true).await
    }

    async fn invalidate_with(
        &self,
        scopes: &[&str],
        wait: bool,
    ) -> (Result<(), CacheError>, Waited) {
        let result = self.far.invalidate(scopes).await;
        self.epochs.drop_scopes(scopes.iter().copied());
        let mut waited = Waited::default();
        if let Some(leases) = &self.leases {
            waited = leases.announce_and_wait(scopes, wait).await;
        } else if let Some(bus) = &self.bus {
            let a = Message {
                origin: self.origin.clone(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                write: None,
                beat: None,
            };
            if let Ok(payload) = serde_json::to_vec(&a) {
                waited.announced = bus.publish(&payload).await.is_ok();
            }
        }
        (result, waited)
    }
}

/// Applies what arrives on the invalidation channel: other instances' announcements
/// (dropping the copies they name, then acknowledging), this instance's heartbeats
/// (proving its lease), and the subscription's losses (dropping every copy). A
/// (re)subscription drops every copy too: one loaded before it may predate an
/// announcement it never received.
async fn listen(
    mut events: tokio::sync::broadcast::Receiver<BusEvent>,
    near: Near,
    origin: String,
    epochs: Arc<Epochs>,
    leases: Option<Arc<Leases>>,
) {
    loop {
        match events.recv().await {
            Ok(BusEvent::Message(payload)) => {
                let Ok(m) = serde_json::from_slice::<Message>(&payload) else {
                    continue;
                };
                if m.origin == origin {
                    if let (Some(seq), Some(l)) = (m.beat, &leases) {
                        l.beat_received(seq);
                    }
                    continue;
                }
                if !m.scopes.is_empty() {
                    epochs.drop_scopes(m.scopes.iter().map(String::as_str));
                }
                if let (Some(write), Some(l)) = (m.write, &leases) {
                    let l = l.clone();
                    tokio::spawn(async move { l.acknowledge(&m.origin, write).await });
                }
            }
            // Announcements may have been missed: keep nothing that one might have
            // named, and serve nothing unasked until a heartbeat proves the new
            // subscription.
            Ok(BusEvent::Lost | BusEvent::Connected)
            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Some(l) = &leases {
                    l.revoke();
                }
                epochs.drop_all();
                near.invalidate_all();
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl TieredCache {
    /// Keeps a near copy of an entry Redis answered. The TTL left in Redis is unknown
    /// here; a near copy is confirmed on every use, so a generous one only costs memory.
    async fn keep(&self, name: String, copy: NearCopy) {
        self.insert(name, copy, None).await;
    }

    /// Keeps an index copy with its members' names.
    async fn keep_index(&self, name: String, copy: NearCopy, plan: Arc<IndexPlan>) {
        self.insert(name, copy, Some(plan)).await;
    }

    async fn insert(&self, name: String, copy: NearCopy, plan: Option<Arc<IndexPlan>>) {
        // The TTL left in Redis is unknown here; the near copy is validated on every
        // use, so a generous one only costs memory.
        let entry = NearEntry {
            tag: copy.tag,
            bytes: copy.bytes,
            ttl: Duration::from_secs(600),
            scope: copy.scope,
            stamp: copy.stamp,
            plan,
            confirmed: Confirmation::new(copy.asked),
            retired: AtomicBool::new(false),
        };
        self.near.insert(name, Arc::new(entry));
    }

    /// The copy kept under `name`, unless its scope was dropped since Redis answered it.
    fn copy_of(&self, name: &str) -> Option<Arc<NearEntry>> {
        self.near
            .get(name)
            .filter(|c| self.epochs.current(&c.scope, c.stamp))
    }

    /// Calls `f` with what [`Self::copy_of`] would answer, from this thread's front map
    /// when it holds a copy the near tier still has (the near tier's copy is looked up and
    /// remembered there otherwise). `f` runs while the front map is borrowed, so that a
    /// hit takes no count of the copy that both workers would pass between their cores.
    fn with_copy<R>(&self, name: &str, f: impl FnOnce(Option<&Arc<NearEntry>>) -> R) -> R {
        let current = |c: &&Arc<NearEntry>| self.epochs.current(&c.scope, c.stamp);
        FRONT.with(|front| {
            let Ok(mut fronts) = front.try_borrow_mut() else {
                return f(self.copy_of(name).as_ref());
            };
            let front = fronts.of(self.id);
            let held = front
                .copies
                .get(name)
                .is_some_and(|c| !c.retired.load(Ordering::Acquire));
            if !held {
                front.remove(name);
                let Some(copy) = self.near.get(name) else {
                    return f(None);
                };
                front.keep(name, copy.clone());
                return f(Some(&copy).filter(current));
            }
            f(front.copies.get(name).filter(current))
        })
    }

    fn plan(&self, index: &Key, members: &[Key]) -> IndexPlan {
        IndexPlan {
            names: members.iter().map(|k| self.far.value_key(k)).collect(),
            scopes: members.iter().map(|k| Arc::from(k.scope())).collect(),
            confirm: self.far.confirm_keys(index, members),
            rows: Vec::new(),
            hits: Arc::new([]),
        }
    }

    /// Whether the near tier holds a copy of `key` it would offer (for tests and
    /// diagnostics).
    pub async fn holds_near_copy(&self, key: &Key) -> bool {
        self.copy_of(&self.far.value_key(key)).is_some()
    }
}

impl TieredCache {
    /// Whether this instance holds a lease at `now` (on [`lease::clock`]).
    fn holds_lease_at(&self, now: u64) -> bool {
        self.leases.as_ref().is_some_and(|l| l.valid_at(now))
    }

    /// A lookup that asks Redis, offering the near copy (if any) to be confirmed; a
    /// `_confirming` claim is let go of when it ends.
    async fn get_far(
        &self,
        key: &Key,
        copy: Option<Arc<NearEntry>>,
        stamp: u64,
        asked: u64,
        _confirming: Option<Confirming>,
    ) -> Result<Lookup, CacheError> {
        let raw = self.far.lookup(key, copy.as_ref().map(|c| &*c.tag)).await;
        let result = match raw {
            Ok(Raw::Current) => match copy {
                Some(c) => {
                    c.confirmed_at(asked);
                    metrics::near_hit(key.family());
                    Ok(Lookup::Hit(c.bytes.clone()))
                }
                None => Ok(Lookup::Miss(Ticket::none())),
            },
            Ok(Raw::Hit { tag, bytes }) => {
                let copy = NearCopy {
                    tag,
                    bytes: bytes.clone(),
                    scope: key.scope().into(),
                    stamp,
                    asked,
                };
                self.keep(self.far.value_key(key), copy).await;
                Ok(Lookup::Hit(bytes))
            }
            Ok(Raw::Miss(t)) => {
                self.near.invalidate(&self.far.value_key(key));
                Ok(Lookup::Miss(t))
            }
            Err(e) => Err(e),
        };
        metrics::lookup_outcome(key.family(), &result);
        result
    }

    /// [`Cache::get_index`] by one Redis script, offering the copies held.
    async fn get_index_far(
        &self,
        key: &Key,
        members: Members<'_>,
        copy: Option<Arc<NearEntry>>,
        stamp: u64,
        asked: u64,
        _confirming: Option<Confirming>,
    ) -> Result<IndexLookup, CacheError> {
        let name = self.far.value_key(key);
        // The members' names come with the copy (made when it was kept), or are made now.
        let plan = copy.as_ref().and_then(|c| {
            c.plan
                .clone()
                .or_else(|| members(&c.bytes).map(|keys| Arc::new(self.plan(key, &keys))))
        });
        let names: &[String] = plan.as_ref().map_or(&[], |p| &p.names);
        // The copies of the members: those kept with the index when it has them all, else
        // each from the near tier.
        let with_rows = plan
            .as_ref()
            .is_some_and(|p| !p.rows.is_empty() && p.rows.len() == p.names.len());
        let mut copies = Vec::with_capacity(names.len());
        if let (true, Some(p)) = (with_rows, &plan) {
            for (tag, bytes) in &p.rows {
                copies.push(Some((tag.clone(), bytes.clone())));
            }
        } else {
            for n in names {
                copies.push(self.copy_of(n).map(|c| (c.tag.clone(), c.bytes.clone())));
            }
        }
        let tags: Vec<Option<Arc<str>>> = copies
            .iter()
            .map(|c| c.as_ref().map(|(tag, _)| tag.clone()))
            .collect();
        let known = copy.as_ref().map(|c| KnownIndex {
            tag: &c.tag,
            names,
            tags: &tags,
            confirm: plan.as_ref().map(|p| &p.confirm),
        });
        let raw = match self.far.lookup_index(key, known).await {
            Ok(raw) => raw,
            Err(e) => {
                metrics::lookup(key.family(), "error");
                return Err(e);
            }
        };
        let fresh: Vec<String>;
        let mut scopes: Vec<Arc<str>> = plan.as_ref().map_or_else(Vec::new, |p| p.scopes.clone());
        let mut changed = !with_rows;
        let (value, tag, names) = match (raw.index, copy) {
            (Raw::Current, Some(c)) => {
                metrics::near_hit(key.family());
                c.confirmed_at(asked);
                // Members dropped since the copy was kept, yet confirmed now: keep them
                // again under this lookup's stamp.
                if plan
                    .as_ref()
                    .is_some_and(|p| !self.epochs.all_current(&p.scopes, c.stamp))
                {
                    changed = true;
                }
                (c.bytes.clone(), c.tag.clone(), names)
            }
            (Raw::Current, None) => {
                metrics::lookup(key.family(), "miss");
                return Ok(IndexLookup::Miss(Ticket::none()));
            }
            (Raw::Hit { tag, bytes }, _) => {
                // The members are the new index's; no copy of them was offered.
                let keys = members(&bytes).unwrap_or_default();
                let plan = Arc::new(self.plan(key, &keys));
                let copy = NearCopy {
                    tag: tag.clone(),
                    bytes: bytes.clone(),
                    scope: key.scope().into(),
                    stamp,
                    asked,
                };
                self.keep_index(name.clone(), copy, plan.clone()).await;
                copies = vec![None; plan.names.len()];
                fresh = plan.names.clone();
                scopes = plan.scopes.clone();
                changed = true;
                (bytes, tag, &fresh[..])
            }
            (Raw::Miss(t), _) => {
                self.near.invalidate(&name);
                metrics::lookup(key.family(), "miss");
                return Ok(IndexLookup::Miss(t));
            }
        };
        metrics::lookup(key.family(), "hit");
        let mut found = Vec::with_capacity(raw.members.len());
        let mut rows = Vec::with_capacity(raw.members.len());
        for (i, member) in raw.members.into_iter().enumerate() {
            let n = names.get(i).cloned().unwrap_or_default();
            found.push(match member {
                Raw::Current => match copies.get_mut(i).and_then(Option::take) {
                    Some((tag, bytes)) => {
                        rows.push((tag, bytes.clone()));
                        Lookup::Hit(bytes)
                    }
                    None => Lookup::Miss(Ticket::none()),
                },
                Raw::Hit { tag, bytes } => {
                    changed = true;
                    rows.push((tag.clone(), bytes.clone()));
                    if let (false, Some(scope)) = (n.is_empty(), scopes.get_mut(i)) {
                        let copy = NearCopy {
                            tag,
                            bytes: bytes.clone(),
                            scope: std::mem::replace(scope, Arc::from("")),
                            stamp,
                            asked,
                        };
                        self.keep(n, copy).await;
                    }
                    Lookup::Hit(bytes)
                }
                Raw::Miss(t) => {
                    changed = true;
                    self.near.invalidate(&n);
                    Lookup::Miss(t)
                }
            });
        }
        // Every member current now: keep their copies with the index's for next time.
        if changed
            && rows.len() == found.len()
            && !rows.is_empty()
            && let Some(keys) = members(&value)
            && keys.len() == rows.len()
        {
            let mut plan = self.plan(key, &keys);
            plan.hits = rows.iter().map(|(_, b)| Lookup::Hit(b.clone())).collect();
            plan.rows = rows;
            let copy = NearCopy {
                tag,
                bytes: value.clone(),
                scope: key.scope().into(),
                stamp,
                asked,
            };
            self.keep_index(name, copy, Arc::new(plan)).await;
        }
        Ok(IndexLookup::Hit {
            value,
            members: found.into(),
        })
    }
}

/// What a near copy is made of.
struct NearCopy {
    tag: Arc<str>,
    bytes: Bytes,
    scope: Arc<str>,
    stamp: u64,
    /// [`lease::clock`] before Redis answered it.
    asked: u64,
}

#[async_trait]
impl Cache for TieredCache {
    async fn get(&self, key: &Key) -> Result<Lookup, CacheError> {
        // The lease first: a copy that passes the epochs afterwards has seen every
        // announcement the lease rests on.
        let asked = lease::clock();
        let leased = self.holds_lease_at(asked);
        let stamp = self.epochs.now();
        let found = self.far.with_value_key(key, |name| {
            self.with_copy(name, |copy| match copy {
                Some(c) if leased => match c.unasked(asked) {
                    Unasked::Serve => Ok(c.bytes.clone()),
                    Unasked::Confirm(confirming) => Err((Some(c.clone()), Some(confirming))),
                    Unasked::Ask => Err((Some(c.clone()), None)),
                },
                copy => Err((copy.cloned(), None)),
            })
        });
        let (copy, confirming) = match found {
            Ok(bytes) => {
                metrics::leased_hit(key.family());
                return Ok(Lookup::Hit(bytes));
            }
            Err(asking) => asking,
        };
        // Boxed apart: a hit's future stays small, the round trip's is made only when
        // it is taken.
        Box::pin(self.get_far(key, copy, stamp, asked, confirming)).await
    }

    async fn put(
        &self,
        key: &Key,
        ticket: &Ticket,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Stored, CacheError> {
        let stamp = self.epochs.now();
        let asked = lease::clock();
        let stored = self.far.put(key, ticket, value.clone(), ttl).await?;
        if let (Stored::Stored, Some(tag)) = (stored, ticket.tag()) {
            let entry = NearEntry {
                tag: tag.into(),
                bytes: value,
                ttl,
                scope: key.scope().into(),
                stamp,
                plan: None,
                confirmed: Confirmation::new(asked),
                retired: AtomicBool::new(false),
            };
            self.near.insert(self.far.value_key(key), Arc::new(entry));
        }
        Ok(stored)
    }

    /// From Redis alone: a many-key lookup is one round trip that carries the values
    /// either way, and the near tier's saving (not sending a value) would cost one round
    /// trip per key.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>, CacheError> {
        self.far.get_many(keys).await
    }

    /// The index and its members as near copies where the one Redis script confirms
    /// them current (it sends the values of the others only), so a page whose rows did
    /// not change costs one round trip that carries no value.
    async fn get_index(&self, key: &Key, members: Members<'_>) -> Result<IndexLookup, CacheError> {
        let asked = lease::clock();
        let leased = self.holds_lease_at(asked);
        let stamp = self.epochs.now();
        // Under a lease, an index copy kept with all its members' copies, none of whose
        // scopes was dropped since, is the page.
        let found = self.far.with_value_key(key, |name| {
            self.with_copy(name, |copy| match copy {
                Some(c)
                    if leased
                        && let Some(p) = &c.plan
                        && p.rows.len() == p.names.len()
                        && self.epochs.all_current(&p.scopes, c.stamp) =>
                {
                    match c.unasked(asked) {
                        Unasked::Serve => Ok((c.bytes.clone(), p.hits.clone())),
                        Unasked::Confirm(confirming) => Err((Some(c.clone()), Some(confirming))),
                        Unasked::Ask => Err((Some(c.clone()), None)),
                    }
                }
                copy => Err((copy.cloned(), None)),
            })
        });
        let (copy, confirming) = match found {
            Ok((value, members)) => {
                metrics::leased_hit(key.family());
                return Ok(IndexLookup::Hit { value, members });
            }
            Err(asking) => asking,
        };
        Box::pin(self.get_index_far(key, members, copy, stamp, asked, confirming)).await
    }

    async fn put_index(
        &self,
        key: &Key,
        ticket: &Ticket,
        value: Bytes,
        members: &[Key],
        ttl: Duration,
    ) -> Result<Stored, CacheError> {
        let stamp = self.epochs.now();
        let asked = lease::clock();
        let stored = self
            .far
            .put_index(key, ticket, value.clone(), members, ttl)
            .await?;
        if let (Stored::Stored, Some(tag)) = (stored, ticket.tag()) {
            let plan = Arc::new(self.plan(key, members));
            let copy = NearCopy {
                tag: tag.into(),
                bytes: value,
                scope: key.scope().into(),
                stamp,
                asked,
            };
            self.keep_index(self.far.value_key(key), copy, plan).await;
        }
        Ok(stored)
    }

    /// Bumps the scopes in Redis, drops them here, and announces them; with leases, waits
    /// until every other lease holder has dropped them or its lease has run out.
    async fn invalidate(&self, scopes: &[&str]) -> Result<(), CacheError> {
        self.invalidate_waited(scopes).await.0
    }

    /// Announced, not waited for: every lease holder applies the same feed itself.
    async fn invalidate_detached(&self, scopes: &[&str]) -> Result<(), CacheError> {
        self.invalidate_with(scopes, false).await.0
    }

    async fn remove(&self, key: &Key) -> Result<(), CacheError> {
        self.near.invalidate(&self.far.value_key(key));
        self.far.remove(key).await
    }

    async fn health(&self) -> CacheHealth {
        self.far.health().await
    }

    fn near_tier(&self) -> CacheHealth {
        match &self.bus {
            Some(bus) if bus.is_connected() => CacheHealth::Up,
            Some(_) => CacheHealth::Down,
            None => CacheHealth::Disabled,
        }
    }

    fn verifies_integrity(&self) -> bool {
        self.far.verifies_integrity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_current_until_a_drop_of_its_scope_or_root_at_or_after_its_stamp() {
        let e = Epochs::new();
        let before = e.now();
        e.drop_scopes(["list|row:1"]);
        let after = e.now();
        // Dropped after the first copy was stamped, before the second.
        assert!(!e.current("list|row:1", before));
        assert!(e.current("list|row:1", after));
        // Siblings and other roots are untouched; a root's drop reaches its children.
        assert!(e.current("list|row:2", before));
        assert!(e.current("detail:1", before));
        e.drop_scopes(["list"]);
        assert!(!e.current("list|row:2", after));
        assert!(!e.current("list", after));
        assert!(e.current("detail:1", after));
        let stamp = e.now();
        e.drop_all();
        assert!(!e.current("detail:1", stamp));
        assert!(e.current("detail:1", e.now()));
    }

    #[test]
    fn forgetting_the_dropped_scopes_drops_every_older_copy() {
        let e = Epochs::new();
        let old = e.now();
        let names: Vec<String> = (0..MAX_DROPPED_SCOPES).map(|i| format!("s:{i}")).collect();
        e.drop_scopes(names.iter().map(String::as_str));
        let recent = e.now();
        e.drop_scopes(["other"]);
        // The table was full: it forgot every scope and moved its floor instead.
        assert!(!e.current("untouched", old));
        assert!(!e.current("untouched", recent));
        assert!(e.current("untouched", e.now()));
        assert!(e.read().by_scope.len() <= MAX_DROPPED_SCOPES);
    }
}
