//! The table of drops: a scope stamped when its copies were dropped, and the stamp of
//! the latest drop, so a drop is one insert and a lookup one atomic load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most scopes whose drops [`Epochs`] remembers one by one; past it, it forgets them
/// all and counts every older copy as dropped.
pub(super) const MAX_DROPPED_SCOPES: usize = 100_000;

/// When each scope's near copies were last dropped, on a clock of this process.
///
/// Invariant: a copy stamped `t` (the clock read before Redis answered it) is offered
/// only while no drop of its scope or its scope's root was stamped at `t` or later, and
/// `t` is later than the last forget. Dropping is one map insert, so a steady stream of
/// writes costs each lookup nothing; a scan of the copies (moka's invalidation
/// predicates) piled up under such a stream and halved the mix's throughput.
#[derive(Debug)]
pub(super) struct Epochs {
    pub(super) clock: AtomicU64,
    /// The stamp of the latest drop, stored before the drop is recorded: a copy stamped
    /// later than it is current without a look at the table (and its lock, which both
    /// HTTP workers would otherwise pass through on every hit).
    pub(super) last_drop: AtomicU64,
    pub(super) dropped: std::sync::RwLock<Dropped>,
}

#[derive(Debug, Default)]
pub(super) struct Dropped {
    pub(super) by_scope: std::collections::HashMap<Box<str>, u64>,
    /// Copies stamped at or before this are dropped, whatever their scope.
    pub(super) floor: u64,
}

impl Epochs {
    pub(super) fn new() -> Self {
        Self {
            clock: AtomicU64::new(1),
            last_drop: AtomicU64::new(0),
            dropped: std::sync::RwLock::default(),
        }
    }

    /// The stamp of a copy Redis is about to answer.
    pub(super) fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub(super) fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, Dropped> {
        self.dropped.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, Dropped> {
        self.dropped.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn drop_scopes<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) {
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

    pub(super) fn drop_all(&self) {
        let at = self.tick();
        let mut d = self.write();
        self.last_drop.fetch_max(at, Ordering::SeqCst);
        d.by_scope.clear();
        d.floor = at;
    }

    /// Whether no drop since `stamp` can have reached a copy stamped so. A drop that
    /// has not stored its stamp yet has not returned either, so a lookup that misses it
    /// is concurrent with the write it belongs to (which answers only after the drop).
    pub(super) fn none_since(&self, stamp: u64) -> bool {
        stamp > self.last_drop.load(Ordering::SeqCst)
    }

    pub(super) fn current(&self, scope: &str, stamp: u64) -> bool {
        self.none_since(stamp) || Self::current_in(&self.read(), scope, stamp)
    }

    /// Whether every one of `scopes` is current for a copy stamped `stamp`.
    pub(super) fn all_current(&self, scopes: &[Arc<str>], stamp: u64) -> bool {
        if self.none_since(stamp) {
            return true;
        }
        let d = self.read();
        scopes.iter().all(|s| Self::current_in(&d, s, stamp))
    }

    pub(super) fn current_in(d: &Dropped, scope: &str, stamp: u64) -> bool {
        let dropped_at = |s: &str| d.by_scope.get(s).copied().unwrap_or(0);
        let (root, child) = crate::redis::split_scope(scope);
        stamp > d.floor
            && dropped_at(root) < stamp
            && (child.is_none() || dropped_at(scope) < stamp)
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
