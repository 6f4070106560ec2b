//! Each thread's front map of the copies it looked up last: the very `Arc`s moka holds,
//! offered only while moka still holds them, so a hit writes nothing both HTTP workers
//! share.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::copies::NearEntry;

/// Most copies, and bytes they count for, that each thread's front map keeps.
pub(super) const FRONT_COPIES: usize = 1024;
pub(super) const FRONT_BYTES: usize = 8 * 1024 * 1024;

/// A thread's front map of one near tier (its `owner`): the copies this thread looked up
/// last, as the very `Arc`s the near tier holds. A copy is offered from here only while
/// the near tier has not let it go (`retired`), so it answers exactly what the near tier
/// would, without the shared map's bookkeeping (a read queue and an epoch guard that
/// both HTTP workers write on every lookup). Full, it starts afresh.
pub(super) struct Front {
    pub(super) owner: u64,
    /// When this thread last looked a copy up here, on its own count of lookups.
    pub(super) used: u64,
    pub(super) copies:
        std::collections::HashMap<Box<str>, Arc<NearEntry>, foldhash::fast::RandomState>,
    pub(super) bytes: usize,
}

/// Near tiers a thread keeps a front map for; one more replaces the least recently
/// used (a process embedding several caches keeps a map for each).
pub(super) const FRONTS: usize = 4;

/// A thread's front maps, and its count of lookups.
#[derive(Default)]
pub(super) struct Fronts {
    pub(super) maps: Vec<Front>,
    pub(super) lookups: u64,
}

impl Fronts {
    /// The front map of near tier `owner`, made (in place of the least recently used
    /// one when there are [`FRONTS`]) if this thread has none.
    pub(super) fn of(&mut self, owner: u64) -> &mut Front {
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
    pub(super) static FRONT: std::cell::RefCell<Fronts> = std::cell::RefCell::new(Fronts::default());
}

/// Tells near tiers apart in the threads' front maps.
pub(super) static NEAR_TIERS: AtomicU64 = AtomicU64::new(1);

impl Front {
    pub(super) fn clear(&mut self) {
        self.copies.clear();
        self.bytes = 0;
    }

    pub(super) fn remove(&mut self, name: &str) {
        if let Some(old) = self.copies.remove(name) {
            self.bytes = self.bytes.saturating_sub(old.weight(name));
        }
    }

    pub(super) fn keep(&mut self, name: &str, copy: Arc<NearEntry>) {
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
