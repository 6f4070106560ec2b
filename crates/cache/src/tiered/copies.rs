//! Near copies: what a copy holds (tag, bytes, stamp, when Redis last confirmed it),
//! whether it may be served unasked, and keeping copies of entries and index pages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;

use super::TieredCache;
use super::front::FRONT;
use crate::redis::ConfirmKeys;
use crate::{Key, Lookup};

/// How long a near copy is served under a lease since Redis last confirmed it before one
/// lookup confirms it again (the others serving it meanwhile); past twice this, every
/// lookup asks. Twice this bounds how long a copy outlives its Redis entry, or an
/// invalidation that was never announced (one applied late by a retry).
pub(super) const CONFIRM_EVERY: u64 = 1_000_000_000;

#[derive(Debug)]
pub(super) struct NearEntry {
    pub(super) tag: Arc<str>,
    pub(super) bytes: Bytes,
    pub(super) ttl: Duration,
    /// The entry's scope, and the [`Epochs`] clock read before Redis answered it.
    pub(super) scope: Arc<str>,
    pub(super) stamp: u64,
    /// For an index copy: its members' key names, made once when the copy is kept.
    pub(super) plan: Option<Arc<IndexPlan>>,
    /// When Redis last confirmed the copy (or answered it).
    pub(super) confirmed: Arc<Confirmation>,
    /// Set when the near tier lets the copy go (replaced, invalidated, evicted, expired),
    /// before that call returns: the threads' front maps then stop offering it.
    pub(super) retired: AtomicBool,
}

impl NearEntry {
    /// What the copy counts for against a near tier's bound, kept under `name`.
    pub(super) fn weight(&self, name: &str) -> usize {
        let plan = self.plan.as_ref().map_or(0, |p| p.bytes());
        name.len() + self.bytes.len() + self.scope.len() + plan + 64
    }
}

/// When Redis last confirmed a copy, on [`lease::clock`], and whether a lookup is
/// confirming it again now.
#[derive(Debug, Default)]
pub(super) struct Confirmation {
    pub(super) at: AtomicU64,
    pub(super) confirming: AtomicBool,
}

impl Confirmation {
    pub(super) fn new(at: u64) -> Arc<Self> {
        Arc::new(Self {
            at: AtomicU64::new(at),
            confirming: AtomicBool::new(false),
        })
    }
}

/// Whether a lookup under a lease may serve a copy without asking Redis.
pub(super) enum Unasked {
    Serve,
    /// Not without asking: this lookup confirms the copy again (the others go on
    /// serving it meanwhile), and lets go of that when dropped.
    Confirm(Confirming),
    Ask,
}

pub(super) struct Confirming(Arc<Confirmation>);

impl Drop for Confirming {
    fn drop(&mut self) {
        self.0.confirming.store(false, Ordering::Release);
    }
}

impl NearEntry {
    /// A copy confirmed within [`CONFIRM_EVERY`] is served unasked; one confirmed
    /// within twice that is confirmed again by one lookup while the others serve it;
    /// an older one is asked about by every lookup.
    pub(super) fn unasked(&self, now: u64) -> Unasked {
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

    pub(super) fn confirmed_at(&self, at: u64) {
        self.confirmed.at.fetch_max(at, Ordering::Relaxed);
    }
}

/// What a lookup of an index copy needs of its members, kept with the copy so that a
/// near-tier page hit does not rebuild some sixty key names.
#[derive(Debug)]
pub(super) struct IndexPlan {
    /// The members' value keys, in order.
    pub(super) names: Vec<String>,
    /// The members' scopes, in the same order.
    pub(super) scopes: Vec<Arc<str>>,
    /// What confirms the index and its members in one round trip.
    pub(super) confirm: ConfirmKeys,
    /// The digest of the members section the index is stored with: what tells this copy
    /// from another index stored under the same tag.
    pub(super) head: String,
    /// The members' copies (tag and bytes) as the last lookup of this index found them
    /// all current, so that the next one needs no lookup of each in the near tier. They
    /// are served only once confirmed, as any copy.
    pub(super) rows: Vec<(Arc<str>, Bytes)>,
    /// The same copies as the lookups a page hit answers, made once.
    pub(super) hits: Arc<[Lookup]>,
}

impl IndexPlan {
    pub(super) fn bytes(&self) -> usize {
        self.confirm.bytes()
            + self.head.len()
            + self
                .rows
                .iter()
                .map(|(t, b)| t.len() + b.len())
                .sum::<usize>()
    }
}

pub(super) struct NearTtl;

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

/// The near copies by value key. A near hit is little more than this lookup, so it is
/// moka's synchronous map (no future to box, no await: nothing in it waits) hashed by
/// foldhash, seeded per process, in a fraction of SipHash's time.
pub(super) type Near = moka::sync::Cache<String, Arc<NearEntry>, foldhash::fast::RandomState>;

/// What a near copy is made of.
pub(super) struct NearCopy {
    pub(super) tag: Arc<str>,
    pub(super) bytes: Bytes,
    pub(super) scope: Arc<str>,
    pub(super) stamp: u64,
    /// [`lease::clock`] before Redis answered it.
    pub(super) asked: u64,
}

impl NearCopy {
    pub(super) fn new(
        tag: Arc<str>,
        bytes: Bytes,
        scope: Arc<str>,
        stamp: u64,
        asked: u64,
    ) -> Self {
        Self {
            tag,
            bytes,
            scope,
            stamp,
            asked,
        }
    }
}

impl TieredCache {
    /// Keeps a near copy of an entry Redis answered. The TTL left in Redis is unknown
    /// here; a near copy is confirmed on every use, so a generous one only costs memory.
    pub(super) fn keep(&self, name: String, copy: NearCopy) {
        self.insert(name, copy, None);
    }

    /// Keeps an index copy with its members' names.
    pub(super) fn keep_index(&self, name: String, copy: NearCopy, plan: Arc<IndexPlan>) {
        self.insert(name, copy, Some(plan));
    }

    pub(super) fn insert(&self, name: String, copy: NearCopy, plan: Option<Arc<IndexPlan>>) {
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
    pub(super) fn copy_of(&self, name: &str) -> Option<Arc<NearEntry>> {
        self.near
            .get(name)
            .filter(|c| self.epochs.current(&c.scope, c.stamp))
    }

    /// Calls `f` with what [`Self::copy_of`] would answer, from this thread's front map
    /// when it holds a copy the near tier still has (the near tier's copy is looked up and
    /// remembered there otherwise). `f` runs while the front map is borrowed, so that a
    /// hit takes no count of the copy that both workers would pass between their cores.
    pub(super) fn with_copy<R>(
        &self,
        name: &str,
        f: impl FnOnce(Option<&Arc<NearEntry>>) -> R,
    ) -> R {
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

    pub(super) fn plan(&self, index: &Key, members: &[Key]) -> IndexPlan {
        IndexPlan {
            names: members.iter().map(|k| self.far.value_key(k)).collect(),
            scopes: members.iter().map(|k| Arc::from(k.scope())).collect(),
            confirm: self.far.confirm_keys(index, members),
            head: self.far.index_head_digest(members),
            rows: Vec::new(),
            hits: Arc::new([]),
        }
    }

    /// Whether the near tier holds a copy of `key` it would offer (for tests and
    /// diagnostics).
    #[doc(hidden)]
    pub fn holds_near_copy(&self, key: &Key) -> bool {
        self.copy_of(&self.far.value_key(key)).is_some()
    }

    /// Whether this instance holds a lease at `now` (on [`lease::clock`]).
    pub(super) fn holds_lease_at(&self, now: u64) -> bool {
        self.leases.as_ref().is_some_and(|l| l.valid_at(now))
    }
}
