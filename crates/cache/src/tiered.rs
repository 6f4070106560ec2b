//! [`TieredCache`]: an in-process near tier (moka) in front of a [`RedisCache`].
//!
//! Guarantee (strict, and the only mode): a near copy is served only after Redis confirmed
//! that its generation is still current, in one round trip that carries no value. So a
//! near hit is exactly as fresh as a Redis hit, across instances: an invalidation made by
//! any instance is seen by the next lookup on every other. What the near tier saves is
//! the transfer of the value (a list page is tens of kilobytes) and Redis's work on it,
//! not the round trip.
//!
//! Invalidations are also published on a [`RedisBus`]; every instance drops its near
//! copies of the scopes named, and all of them when its subscription drops. That keeps
//! memory for current data; freshness never depends on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use crate::bus::{BusEvent, RedisBus};
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
}

impl Default for NearConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
struct NearEntry {
    tag: Arc<str>,
    bytes: Bytes,
    ttl: Duration,
    /// For an index copy: its members' key names, made once when the copy is kept.
    plan: Option<Arc<IndexPlan>>,
}

/// What a lookup of an index copy needs of its members, kept with the copy so that a
/// near-tier page hit does not rebuild some sixty key names.
#[derive(Debug)]
struct IndexPlan {
    /// The members' value keys, in order.
    names: Vec<String>,
    /// What confirms the index and its members in one round trip.
    confirm: ConfirmKeys,
    /// The members' copies (tag and bytes) as the last lookup of this index found them
    /// all current, so that the next one needs no lookup of each in the near tier. They
    /// are served only once confirmed, as any copy.
    rows: Vec<(Arc<str>, Bytes)>,
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

impl Expiry<String, NearEntry> for NearTtl {
    fn expire_after_create(&self, _k: &String, v: &NearEntry, _now: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _k: &String,
        v: &NearEntry,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// An invalidation announced to the other instances.
#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    origin: String,
    scopes: Vec<String>,
}

/// The two-tier cache.
pub struct TieredCache {
    far: Arc<RedisCache>,
    near: moka::future::Cache<String, NearEntry>,
    bus: Option<Arc<RedisBus>>,
    origin: String,
    listener: Option<AbortHandle>,
    /// Prefixes whose near copies are to be dropped (see [`drop_task`]).
    drops: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
    dropper: AbortHandle,
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
        self.dropper.abort();
        if let Some(l) = &self.listener {
            l.abort();
        }
    }
}

/// How long dropped scopes gather before the near tier drops their copies in one pass.
/// Each pass registers one predicate that moka checks against entries; one per write
/// would pile up faster than moka retires them under a steady write load, and every
/// lookup would pay for the pile. The drop only frees memory (a copy is served only once
/// Redis confirmed it), so it may wait.
const DROP_BATCH: Duration = Duration::from_millis(100);

/// Drops the near copies under the prefixes it is sent, a batch per [`DROP_BATCH`].
fn drop_task(
    near: moka::future::Cache<String, NearEntry>,
) -> (tokio::sync::mpsc::UnboundedSender<Vec<String>>, AbortHandle) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
    let task = tokio::spawn(async move {
        while let Some(mut prefixes) = rx.recv().await {
            tokio::time::sleep(DROP_BATCH).await;
            while let Ok(more) = rx.try_recv() {
                prefixes.extend(more);
            }
            prefixes.sort_unstable();
            prefixes.dedup();
            let _ =
                near.invalidate_entries_if(move |k, _| prefixes.iter().any(|p| k.starts_with(p)));
        }
    });
    (tx, task.abort_handle())
}

impl TieredCache {
    /// Puts a near tier in front of `far`. With a `bus`, invalidations are announced to
    /// (and received from) the other instances. Must be called inside a Tokio runtime.
    pub fn new(far: Arc<RedisCache>, config: NearConfig, bus: Option<Arc<RedisBus>>) -> Self {
        let near = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &String, v: &NearEntry| {
                let plan = v.plan.as_ref().map_or(0, |p| p.bytes());
                u32::try_from(k.len() + v.bytes.len() + plan + 64).unwrap_or(u32::MAX)
            })
            .expire_after(NearTtl)
            .support_invalidation_closures()
            .build();
        let origin = format!("{:016x}", rand::random::<u64>());
        let (drops, dropper) = drop_task(near.clone());
        let listener = bus.as_ref().map(|bus| {
            let mut events = bus.subscribe();
            let (near, far, origin) = (near.clone(), far.clone(), origin.clone());
            let drops = drops.clone();
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(BusEvent::Message(payload)) => {
                            let Ok(a) = serde_json::from_slice::<Announcement>(&payload) else {
                                continue;
                            };
                            if a.origin != origin {
                                let prefixes =
                                    a.scopes.iter().map(|s| far.scope_prefix(s)).collect();
                                let _ = drops.send(prefixes);
                            }
                        }
                        // Announcements may have been missed: keep nothing that one
                        // might have named.
                        Ok(BusEvent::Lost)
                        | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            near.invalidate_all();
                        }
                        Ok(BusEvent::Connected) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
            .abort_handle()
        });
        Self {
            far,
            near,
            bus,
            origin,
            listener,
            drops,
            dropper,
        }
    }
}

impl TieredCache {
    /// Keeps a near copy of an entry Redis answered. The TTL left in Redis is unknown
    /// here; a near copy is confirmed on every use, so a generous one only costs memory.
    async fn keep(&self, name: String, tag: Arc<str>, bytes: Bytes) {
        self.insert(name, tag, bytes, None).await;
    }

    /// Keeps an index copy with its members' names.
    async fn keep_index(&self, name: String, tag: Arc<str>, bytes: Bytes, plan: Arc<IndexPlan>) {
        self.insert(name, tag, bytes, Some(plan)).await;
    }

    async fn insert(
        &self,
        name: String,
        tag: Arc<str>,
        bytes: Bytes,
        plan: Option<Arc<IndexPlan>>,
    ) {
        // The TTL left in Redis is unknown here; the near copy is validated on every
        // use, so a generous one only costs memory.
        let ttl = Duration::from_secs(600);
        let entry = NearEntry {
            tag,
            bytes,
            ttl,
            plan,
        };
        self.near.insert(name, entry).await;
    }

    fn plan(&self, index: &Key, members: &[Key]) -> IndexPlan {
        IndexPlan {
            names: members.iter().map(|k| self.far.value_key(k)).collect(),
            confirm: self.far.confirm_keys(index, members),
            rows: Vec::new(),
        }
    }

    /// Whether the near tier holds a copy of `key` (for tests and diagnostics).
    pub async fn holds_near_copy(&self, key: &Key) -> bool {
        self.near.get(&self.far.value_key(key)).await.is_some()
    }
}

#[async_trait]
impl Cache for TieredCache {
    async fn get(&self, key: &Key) -> Result<Lookup, CacheError> {
        let name = self.far.value_key(key);
        let copy = self.near.get(&name).await;
        let raw = self.far.lookup(key, copy.as_ref().map(|c| &*c.tag)).await;
        let result = match raw {
            Ok(Raw::Current) => match copy {
                Some(c) => {
                    metrics::near_hit(key.family());
                    Ok(Lookup::Hit(c.bytes))
                }
                None => Ok(Lookup::Miss(Ticket::none())),
            },
            Ok(Raw::Hit { tag, bytes }) => {
                // The TTL left in Redis is unknown here; the near copy is validated on
                // every use, so a generous one only costs memory.
                let ttl = Duration::from_secs(600);
                self.near
                    .insert(
                        name,
                        NearEntry {
                            tag,
                            bytes: bytes.clone(),
                            ttl,
                            plan: None,
                        },
                    )
                    .await;
                Ok(Lookup::Hit(bytes))
            }
            Ok(Raw::Miss(t)) => {
                self.near.invalidate(&name).await;
                Ok(Lookup::Miss(t))
            }
            Err(e) => Err(e),
        };
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
        let stored = self.far.put(key, ticket, value.clone(), ttl).await?;
        if let (Stored::Stored, Some(tag)) = (stored, ticket.tag()) {
            let entry = NearEntry {
                tag: tag.into(),
                bytes: value,
                ttl,
                plan: None,
            };
            self.near.insert(self.far.value_key(key), entry).await;
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
        let name = self.far.value_key(key);
        let copy = self.near.get(&name).await;
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
                copies.push(Some(NearEntry {
                    tag: tag.clone(),
                    bytes: bytes.clone(),
                    ttl: Duration::ZERO,
                    plan: None,
                }));
            }
        } else {
            for n in names {
                copies.push(self.near.get(n).await);
            }
        }
        let tags: Vec<Option<Arc<str>>> = copies
            .iter()
            .map(|c| c.as_ref().map(|c| c.tag.clone()))
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
        let mut changed = !with_rows;
        let (value, tag, names) = match (raw.index, copy) {
            (Raw::Current, Some(c)) => {
                metrics::near_hit(key.family());
                (c.bytes, c.tag, names)
            }
            (Raw::Current, None) => {
                metrics::lookup(key.family(), "miss");
                return Ok(IndexLookup::Miss(Ticket::none()));
            }
            (Raw::Hit { tag, bytes }, _) => {
                // The members are the new index's; no copy of them was offered.
                let keys = members(&bytes).unwrap_or_default();
                let plan = Arc::new(self.plan(key, &keys));
                self.keep_index(name.clone(), tag.clone(), bytes.clone(), plan.clone())
                    .await;
                copies = vec![None; plan.names.len()];
                fresh = plan.names.clone();
                changed = true;
                (bytes, tag, &fresh[..])
            }
            (Raw::Miss(t), _) => {
                self.near.invalidate(&name).await;
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
                    Some(c) => {
                        rows.push((c.tag, c.bytes.clone()));
                        Lookup::Hit(c.bytes)
                    }
                    None => Lookup::Miss(Ticket::none()),
                },
                Raw::Hit { tag, bytes } => {
                    changed = true;
                    rows.push((tag.clone(), bytes.clone()));
                    if !n.is_empty() {
                        self.keep(n, tag, bytes.clone()).await;
                    }
                    Lookup::Hit(bytes)
                }
                Raw::Miss(t) => {
                    changed = true;
                    self.near.invalidate(&n).await;
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
            plan.rows = rows;
            self.keep_index(name, tag, value.clone(), Arc::new(plan))
                .await;
        }
        Ok(IndexLookup::Hit {
            value,
            members: found,
        })
    }

    async fn put_index(
        &self,
        key: &Key,
        ticket: &Ticket,
        value: Bytes,
        members: &[Key],
        ttl: Duration,
    ) -> Result<Stored, CacheError> {
        let stored = self
            .far
            .put_index(key, ticket, value.clone(), members, ttl)
            .await?;
        if let (Stored::Stored, Some(tag)) = (stored, ticket.tag()) {
            let plan = Arc::new(self.plan(key, members));
            self.keep_index(self.far.value_key(key), tag.into(), value, plan)
                .await;
        }
        Ok(stored)
    }

    async fn invalidate(&self, scopes: &[&str]) -> Result<(), CacheError> {
        let result = self.far.invalidate(scopes).await;
        let _ = self
            .drops
            .send(scopes.iter().map(|s| self.far.scope_prefix(s)).collect());
        if let Some(bus) = &self.bus {
            let a = Announcement {
                origin: self.origin.clone(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            };
            if let Ok(payload) = serde_json::to_vec(&a) {
                let _ = bus.publish(&payload).await;
            }
        }
        result
    }

    async fn remove(&self, key: &Key) -> Result<(), CacheError> {
        self.near.invalidate(&self.far.value_key(key)).await;
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
