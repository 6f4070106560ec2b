//! Fail-safe reads: the values this process stored, kept past their TTL for a grace
//! period, answered when a load fails because the source of truth cannot be reached,
//! and only while the cache says the value's scope has not been invalidated since.
//!
//! A kept value carries the [`Ticket`] it was stored under. A lookup that misses hands
//! out the scope's current ticket; the two are equal only if no invalidation of the
//! scope happened between the store and that lookup (every invalidation moves the
//! generation, a generation the cache lost is made anew from the clock, and a Redis
//! history the cache no longer trusts moves every generation past its floor). So a kept
//! value offered under the lookup's ticket is what the source held after every write
//! whose invalidation the lookup saw: every write answered before the read began.
//! When the cache cannot be asked there is no ticket, and nothing is offered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Key, Ticket};

/// How long values are kept past their TTL, and how many bytes of them at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleConfig {
    /// How long past its TTL a value may still be answered while loads fail (zero keeps
    /// nothing).
    pub grace: Duration,
    /// The most bytes of kept values (keys and values) this process holds; the least
    /// recently stored go first.
    pub max_bytes: u64,
}

impl Default for StaleConfig {
    /// An hour's grace, 64 MiB.
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3600),
            max_bytes: 64 << 20,
        }
    }
}

/// A value answered stale: the bytes, and how long ago this process stored them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleValue {
    pub value: Bytes,
    pub age: Duration,
}

#[derive(Debug)]
struct Kept {
    ticket: Ticket,
    value: Bytes,
    stored: Instant,
    /// Its TTL plus the grace.
    keep: Duration,
}

/// Expires each kept value at its own TTL plus the grace.
struct KeepFor;

impl moka::Expiry<String, Arc<Kept>> for KeepFor {
    fn expire_after_create(&self, _: &String, kept: &Arc<Kept>, _: Instant) -> Option<Duration> {
        Some(kept.keep)
    }

    fn expire_after_update(
        &self,
        _: &String,
        kept: &Arc<Kept>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(kept.keep)
    }
}

/// The kept values, by key name.
pub(crate) struct Keeper {
    kept: moka::sync::Cache<String, Arc<Kept>, foldhash::fast::RandomState>,
    grace: Duration,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("grace", &self.grace)
            .field("entries", &self.kept.entry_count())
            .finish()
    }
}

impl Keeper {
    /// `None` when `config` keeps nothing.
    pub(crate) fn new(config: StaleConfig) -> Option<Self> {
        if config.grace.is_zero() || config.max_bytes == 0 {
            return None;
        }
        let kept = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &String, v: &Arc<Kept>| {
                u32::try_from(k.len() + v.value.len() + 96).unwrap_or(u32::MAX)
            })
            .expire_after(KeepFor)
            .build_with_hasher(foldhash::fast::RandomState::default());
        Some(Self {
            kept,
            grace: config.grace,
        })
    }

    /// Keeps `value`, just stored under `ticket` for `ttl`.
    pub(crate) fn keep(&self, key: &Key, ticket: &Ticket, value: &Bytes, ttl: Duration) {
        if ticket.tag().is_none() {
            return;
        }
        self.kept.insert(
            key.name().to_owned(),
            Arc::new(Kept {
                ticket: ticket.clone(),
                value: value.clone(),
                stored: Instant::now(),
                keep: ttl.saturating_add(self.grace),
            }),
        );
        crate::metrics::stale_kept(self.kept.weighted_size());
    }

    /// The value kept for `key` if it was stored under `current`, the ticket a lookup
    /// just handed out: no invalidation of its scope happened in between.
    pub(crate) fn offer(&self, key: &Key, current: &Ticket) -> Option<StaleValue> {
        current.tag()?;
        let kept = self.kept.get(key.name())?;
        (kept.ticket == *current).then(|| StaleValue {
            value: kept.value.clone(),
            age: kept.stored.elapsed(),
        })
    }

    /// Lets the kept value of `key` go (found damaged, say).
    pub(crate) fn forget(&self, key: &Key) {
        self.kept.invalidate(key.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeper(grace: Duration) -> Keeper {
        Keeper::new(StaleConfig {
            grace,
            max_bytes: 1 << 20,
        })
        .expect("keeps")
    }

    #[test]
    fn a_kept_value_is_offered_under_its_own_ticket_only() {
        let k = keeper(Duration::from_secs(60));
        let key = Key::new("detail", "detail:1", &[("id", "1")]);
        let (then, now) = (Ticket::new("1.1\n"), Ticket::new("1.2\n"));
        k.keep(&key, &then, &Bytes::from("v1"), Duration::from_secs(1));
        let offered = k.offer(&key, &then).expect("same generation");
        assert_eq!(offered.value, Bytes::from("v1"));
        assert!(offered.age < Duration::from_secs(1));
        assert_eq!(k.offer(&key, &now), None, "invalidated since");
        assert_eq!(k.offer(&key, &Ticket::none()), None, "no ticket, no proof");
    }

    #[test]
    fn a_value_stored_with_no_ticket_is_not_kept() {
        let k = keeper(Duration::from_secs(60));
        let key = Key::new("detail", "detail:1", &[("id", "1")]);
        k.keep(
            &key,
            &Ticket::none(),
            &Bytes::from("v"),
            Duration::from_secs(1),
        );
        assert_eq!(k.offer(&key, &Ticket::none()), None);
    }

    #[test]
    fn a_value_goes_after_its_ttl_and_the_grace() {
        let k = keeper(Duration::from_millis(50));
        let key = Key::new("detail", "detail:1", &[("id", "1")]);
        let t = Ticket::new("1.1\n");
        k.keep(&key, &t, &Bytes::from("v"), Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(k.offer(&key, &t), None);
    }

    #[test]
    fn no_grace_keeps_nothing() {
        assert!(
            Keeper::new(StaleConfig {
                grace: Duration::ZERO,
                max_bytes: 1 << 20
            })
            .is_none()
        );
    }
}
