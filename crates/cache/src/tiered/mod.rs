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
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`TieredCache`], its settings, writes and the [`Cache`] implementation |
//! | `copies.rs` | near copies and when one may be served |
//! | `front.rs` | each thread's front map of copies |
//! | `epochs.rs` | the table of drops |
//! | `listener.rs` | what arrives on the invalidation channel |
//! | `far.rs` | the round trips to Redis (the far tier) |

mod copies;
mod epochs;
mod far;
mod front;
mod listener;

use crate::{Fill, Result};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::task::AbortOnDropHandle;

use self::copies::{Confirmation, Near, NearCopy, NearEntry, NearTtl, Unasked};
use self::epochs::Epochs;
use self::front::NEAR_TIERS;
use self::listener::listen;
use crate::bus::RedisBus;
use crate::lease::{self, LeaseConfig, Leases, Message, Waited};
use crate::{Cache, CacheHealth, IndexLookup, Key, Lookup, Members, RedisCache, Stored, metrics};

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

/// The two-tier cache.
pub struct TieredCache {
    far: Arc<RedisCache>,
    near: Near,
    /// This near tier's name in the threads' front maps.
    id: u64,
    bus: Option<Arc<RedisBus>>,
    origin: String,
    /// The listener, the renewer and the acknowledgement listener.
    _tasks: Vec<AbortOnDropHandle<()>>,
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

#[async_trait]
impl Cache for TieredCache {
    async fn get(&self, key: &Key) -> Result<Lookup> {
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

    async fn put(&self, key: &Key, fill: Fill<'_>) -> Result<Stored> {
        let (stamp, asked) = (self.epochs.now(), lease::clock());
        let Fill { ticket, value, ttl } = fill.clone();
        let stored = self.far.put(key, fill).await?;
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
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        self.far.get_many(keys).await
    }

    /// The index and its members as near copies where the one Redis script confirms
    /// them current (it sends the values of the others only), so a page whose rows did
    /// not change costs one round trip that carries no value.
    async fn get_index(&self, key: &Key, members: Members<'_>) -> Result<IndexLookup> {
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

    async fn put_index(&self, key: &Key, fill: Fill<'_>, members: &[Key]) -> Result<Stored> {
        let (stamp, asked) = (self.epochs.now(), lease::clock());
        let Fill {
            ticket,
            value,
            ttl: _,
        } = fill.clone();
        let stored = self.far.put_index(key, fill, members).await?;
        if let (Stored::Stored, Some(tag)) = (stored, ticket.tag()) {
            let plan = Arc::new(self.plan(key, members));
            let copy = NearCopy {
                tag: tag.into(),
                bytes: value,
                scope: key.scope().into(),
                stamp,
                asked,
            };
            self.keep_index(self.far.value_key(key), copy, plan);
        }
        Ok(stored)
    }

    /// Bumps the scopes in Redis, drops them here, and announces them; with leases, waits
    /// until every other lease holder has dropped them or its lease has run out.
    async fn invalidate(&self, scopes: &[&str]) -> Result<()> {
        self.invalidate_waited(scopes).await.0
    }

    /// Announced, not waited for: every lease holder applies the same feed itself.
    async fn invalidate_detached(&self, scopes: &[&str]) -> Result<()> {
        self.invalidate_with(scopes, false).await.0
    }

    async fn remove(&self, key: &Key) -> Result<()> {
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
        let mut tasks = vec![AbortOnDropHandle::new(tokio::spawn(report_size(
            near.clone(),
            far.namespace().to_owned(),
        )))];
        let mut acks = None;
        if let Some(bus) = &bus {
            let events = bus.subscribe();
            tasks.push(AbortOnDropHandle::new(tokio::spawn(listen(
                events,
                near.clone(),
                origin.clone(),
                epochs.clone(),
                leases.clone(),
            ))));
        }
        if let (Some(bus), Some(leases)) = (&bus, &leases) {
            let (ack_bus, receiving) = leases.receive_acks();
            tasks.push(receiving);
            acks = Some(ack_bus);
            let bus = bus.clone();
            let renewing = leases.clone().renew_forever(move || bus.is_connected());
            tasks.push(AbortOnDropHandle::new(tokio::spawn(renewing)));
        }
        Self {
            far,
            near,
            id: NEAR_TIERS.fetch_add(1, Ordering::Relaxed),
            bus,
            origin,
            _tasks: tasks,
            epochs,
            leases,
            _acks: acks,
        }
    }

    /// Bytes of keys and values the near tier holds once its pending evictions ran (at
    /// most [`NearConfig::max_bytes`]), and how many copies.
    pub fn near_size(&self) -> (u64, u64) {
        self.near.run_pending_tasks();
        (self.near.weighted_size(), self.near.entry_count())
    }

    /// Whether this instance holds a lease now, so that near copies are served without
    /// a round trip (for tests and diagnostics).
    #[doc(hidden)]
    pub fn holds_lease(&self) -> bool {
        self.holds_lease_at(lease::clock())
    }

    /// [`Cache::invalidate`], answering what the write waited for.
    #[doc(hidden)]
    pub async fn invalidate_waited(&self, scopes: &[&str]) -> (Result<()>, Waited) {
        self.invalidate_with(scopes, true).await
    }

    async fn invalidate_with(&self, scopes: &[&str], wait: bool) -> (Result<()>, Waited) {
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

/// Every second: runs the near tier's pending evictions and reports its size.
async fn report_size(near: Near, namespace: String) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        near.run_pending_tasks();
        metrics::near_size(&namespace, near.weighted_size(), near.entry_count());
    }
}
