//! Cache-aside: "give me this key, here is how to load it".
//!
//! [`CacheAside::get_or_load`] is the one call a service writes. Inside it:
//!
//! - **Never stale.** A lookup that misses hands out a ticket (the scope's generation);
//!   the loaded value is stored under it only while no invalidation happened since, so a
//!   reader that loaded old data before a write can never store it afterwards.
//! - **Stampede protection.** Concurrent misses of one key *and generation* share one
//!   load (single-flight), which stays shared for 250 ms after it completes for readers
//!   whose lookup missed just before it was stored. A read that starts after a write sees
//!   a newer generation, so it never joins a load that began before the write.
//! - **Damaged entries.** With a cache that does not verify what it answers, a hit that
//!   fails the check given to [`CacheAside::check_hits_with`] is removed, counted
//!   (`cache_corrupt_total`) and loaded again; never served.
//! - **Bypass.** When the cache cannot be asked (down, slow, its breaker open), reads go
//!   to the source, and concurrent ones share only a load that had not started when they
//!   arrived: each still sees every write answered before it began.
//! - **Fail-safe.** With [`CacheAside::serve_stale`], a load that fails because the
//!   source cannot be reached is answered with the value this process last stored for
//!   the key, up to a grace period past its TTL, if the lookup's ticket shows that its
//!   scope was not invalidated since ([`Source::Stale`]; see `stale.rs`).
//!
//! The same for *index* entries ([`CacheAside::get_or_load_index`]): an entry whose value
//! names member entries (a page of rows, say), looked up with its members in one call;
//! the members a read found missing are loaded together with
//! [`CacheAside::load_members`].

use crate::{Fill, Result};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::flight::{LoadError, SingleFlight};
use crate::stale::{Keeper, StaleConfig};
use crate::{Cache, IndexLookup, Key, Lookup, Members, Stored, Ticket, metrics};

/// How long a completed load stays shared with readers of the same generation.
const LINGER: Duration = Duration::from_millis(250);

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cache held it.
    Hit,
    /// Loaded (by this read or one it joined) and stored for the next.
    Miss,
    /// Loaded while the cache could not be asked; stored nowhere.
    Bypass,
    /// The load failed as [`CacheAside::serve_stale`] allows, and this is the value
    /// last stored for the key, stored `age` ago, its scope not invalidated since.
    Stale { age: Duration },
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub value: Bytes,
    pub source: Source,
}

/// An index entry as [`CacheAside::get_or_load_index`] found it.
#[derive(Debug)]
pub enum IndexRead {
    /// The index's value and a lookup of each member it names, in order: hits, and
    /// misses with the tickets to load them under ([`CacheAside::load_members`]).
    /// `hit`: whether the index itself was in the cache.
    Found {
        value: Bytes,
        members: Arc<[Lookup]>,
        hit: bool,
        /// Set when the index's load failed as [`CacheAside::serve_stale`] allows and
        /// this is its kept value, stored this long ago.
        stale: Option<Duration>,
    },
    /// The cache could not be asked: read the whole from the source, with
    /// [`CacheAside::load_fresh`].
    Unavailable,
}

/// The members [`CacheAside::load_members`] loaded, in the order they were asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedMembers {
    pub values: Vec<Bytes>,
    /// Set when their load failed as [`CacheAside::serve_stale`] allows and these are
    /// their kept values: the age of the oldest.
    pub stale: Option<Duration>,
}

/// Cache-aside reads over any [`Cache`], for loads that fail with `E`.
pub struct CacheAside<E> {
    cache: Arc<dyn Cache>,
    flights: SingleFlight<E>,
    check: fn(&[u8]) -> bool,
    /// What it stored, kept for fail-safe reads, and which load failures they answer.
    stale: Option<(Arc<Keeper>, StaleWhen<E>)>,
}

/// Which load failures a kept value may answer.
type StaleWhen<E> = fn(&E) -> bool;

impl<E> std::fmt::Debug for CacheAside<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheAside")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// The flight of a load under `ticket`: readers of the same generation share it.
fn flight_name(key: &Key, ticket: &Ticket) -> String {
    format!("{}#gen:{}", key.name(), ticket.generation())
}

/// Many values as one: each as its length (8 bytes, little-endian) then its bytes.
fn pack(values: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(values.iter().map(|v| v.len() + 8).sum());
    for v in values {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v);
    }
    Bytes::from(out)
}

/// The values [`pack`] made, or `None` if `packed` is not such a sequence.
fn unpack(packed: &Bytes) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < packed.len() {
        let len: [u8; 8] = packed.get(at..at + 8)?.try_into().ok()?;
        let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
        let start = at + 8;
        let end = start.checked_add(len).filter(|&e| e <= packed.len())?;
        out.push(packed.slice(start..end));
        at = end;
    }
    Some(out)
}

impl<E: Clone + Send + Sync + 'static> CacheAside<E> {
    pub fn new(cache: Arc<dyn Cache>) -> Self {
        Self {
            cache,
            flights: SingleFlight::default(),
            check: |_| true,
            stale: None,
        }
    }

    /// Fail-safe reads: keeps each value this process stores for `config.grace` past
    /// its TTL (at most `config.max_bytes` of them), and answers a read whose load fails
    /// with an error `when` accepts (the source is unreachable, say) with the kept value,
    /// as [`Source::Stale`], if the read's lookup shows its scope was not invalidated
    /// since it was stored. A read the cache cannot be asked, and a value this process
    /// did not store, still fail.
    #[must_use]
    pub fn serve_stale(mut self, config: StaleConfig, when: fn(&E) -> bool) -> Self {
        self.stale = Keeper::new(config).map(|k| (Arc::new(k), when));
        self
    }

    /// The keeper, when a load that failed with `error` may be answered stale.
    fn stale_for(&self, error: &LoadError<E>) -> Option<&Keeper> {
        let (keeper, when) = self.stale.as_ref()?;
        match error {
            LoadError::Load(e) if when(e) => Some(keeper),
            _ => None,
        }
    }

    /// The kept value of `key` under `ticket`, for a load that failed with `error`.
    fn stale_answer(&self, key: &Key, ticket: &Ticket, error: &LoadError<E>) -> Option<Loaded> {
        let kept = self.stale_for(error)?.offer(key, ticket)?;
        metrics::stale_answer(key.family());
        tracing::debug!(family = key.family(), age = ?kept.age, "answered stale");
        Some(Loaded {
            value: kept.value,
            source: Source::Stale { age: kept.age },
        })
    }

    /// Checks every hit with `check` when the cache does not verify what it answers
    /// itself (Redis, the near tier and the memory cache do: they answer exactly what was
    /// put, so the check is skipped for them). A hit that fails it is removed, counted
    /// and loaded again.
    #[must_use]
    pub fn check_hits_with(mut self, check: fn(&[u8]) -> bool) -> Self {
        self.check = check;
        self
    }

    /// The cache underneath, for invalidations.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    fn usable(&self, value: &[u8]) -> bool {
        self.cache.verifies_integrity() || (self.check)(value)
    }

    /// The value of `key`: from the cache, or from `load` (called only on a miss, or
    /// when the cache cannot be asked), stored for `ttl` unless the key's scope was
    /// invalidated since the lookup. Fails only when the load fails.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &Key,
        ttl: Duration,
        load: F,
    ) -> Result<Loaded, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
    {
        let lookup = match self.cache.get(key).await {
            Ok(Lookup::Hit(value)) if self.usable(&value) => {
                tracing::debug!(family = key.family(), "cache hit");
                return Ok(Loaded {
                    value,
                    source: Source::Hit,
                });
            }
            other => other,
        };
        // Boxed apart, so that a hit polls a small future and copies none of a miss's
        // state.
        Box::pin(self.cold(key.clone(), ttl, lookup, load())).await
    }

    /// [`Self::get_or_load`], but `None`, and no load, when the cache cannot be asked:
    /// for a value the caller then reads from the source together with others, in one
    /// snapshot.
    pub async fn try_get_or_load<F, Fut>(
        &self,
        key: &Key,
        ttl: Duration,
        load: F,
    ) -> Result<Option<Loaded>, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
    {
        match self.cache.get(key).await {
            Ok(Lookup::Hit(value)) if self.usable(&value) => Ok(Some(Loaded {
                value,
                source: Source::Hit,
            })),
            Err(e) => {
                tracing::debug!(family = key.family(), error = %e, "cache unavailable");
                self.forget(key);
                Ok(None)
            }
            lookup => Box::pin(self.cold(key.clone(), ttl, lookup, load()))
                .await
                .map(Some),
        }
    }

    /// The rest of [`Self::get_or_load`]: a damaged entry removed, a miss loaded once for
    /// every reader of its generation, a cache that cannot be asked read through.
    async fn cold<Fut>(
        &self,
        key: Key,
        ttl: Duration,
        lookup: Result<Lookup>,
        load: Fut,
    ) -> Result<Loaded, LoadError<E>>
    where
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
    {
        let family = key.family();
        match lookup {
            Ok(Lookup::Hit(_)) => {
                self.discard(&key).await;
                self.load_fresh(&key, load).await
            }
            Ok(Lookup::Miss(ticket)) => {
                tracing::debug!(family, "cache miss");
                let flight = flight_name(&key, &ticket);
                let (cache, keeper) = (self.cache.clone(), self.keeper());
                let (k, t) = (key.clone(), ticket.clone());
                let loaded = self
                    .flights
                    .run(flight, LINGER, async move {
                        let value = load.await?;
                        match cache.put(&k, Fill::new(&t, value.clone(), ttl)).await {
                            Ok(Stored::Stored) => {
                                if let Some(keeper) = keeper {
                                    keeper.keep(&k, &t, &value, ttl);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => tracing::debug!(family, error = %e, "cache store failed"),
                        }
                        Ok(value)
                    })
                    .await;
                match loaded {
                    Ok(value) => Ok(Loaded {
                        value,
                        source: Source::Miss,
                    }),
                    Err(e) => self.stale_answer(&key, &ticket, &e).ok_or(e),
                }
            }
            Err(e) => {
                tracing::debug!(family, error = %e, "cache unavailable; reading the source");
                // The entry may have been removed as damaged: a load that lingers for
                // its generation would keep it from being stored again.
                self.forget(&key);
                self.load_fresh(&key, load).await
            }
        }
    }

    /// Loads `key`'s value from the source, stored nowhere: for reads the cache cannot
    /// answer (it is down, or the value is not cached at all). Concurrent calls for one
    /// key share only a load that had not started when they arrived (one runs, the next
    /// gathers the calls that arrive meanwhile), so each sees every write answered
    /// before it began.
    pub async fn load_fresh<Fut>(&self, key: &Key, load: Fut) -> Result<Loaded, LoadError<E>>
    where
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
    {
        let value = self.flights.run_fresh(key.name().to_owned(), load).await?;
        Ok(Loaded {
            value,
            source: Source::Bypass,
        })
    }

    /// Removes `key`'s entry, found damaged or not what the caller stored (a value it
    /// cannot decode), counts it, and stops sharing loads of it, so the next read loads
    /// and stores it again.
    pub async fn discard(&self, key: &Key) {
        tracing::warn!(
            family = key.family(),
            key = key.name(),
            "removing a cache entry that fails its check"
        );
        metrics::corrupt(key.family());
        let _ = self.cache.remove(key).await;
        self.forget(key);
        if let Some((keeper, _)) = &self.stale {
            keeper.forget(key);
        }
    }

    fn forget(&self, key: &Key) {
        self.flights.forget_prefix(&format!("{}#gen:", key.name()));
    }

    fn keeper(&self) -> Option<Arc<Keeper>> {
        self.stale.as_ref().map(|(k, _)| k.clone())
    }

    /// An index entry and a lookup of each of its members, in one call: on a miss, its
    /// value from `load` (called only then) with the keys of the members it names,
    /// stored under the lookup's ticket; the members are then looked up. `members`
    /// names the member keys of a stored value (caches that do not keep them with it
    /// ask it). Reads of one generation share the index's load; each looks the members
    /// up itself, since a member's changes leave the index's generation as it was.
    pub async fn get_or_load_index<F, Fut>(
        &self,
        key: &Key,
        ttl: Duration,
        members: Members<'_>,
        load: F,
    ) -> Result<IndexRead, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Bytes, Vec<Key>), E>> + Send + 'static,
    {
        match self.cache.get_index(key, members).await {
            Ok(IndexLookup::Hit { value, members }) => {
                tracing::debug!(family = key.family(), "cache hit");
                Ok(IndexRead::Found {
                    value,
                    members,
                    hit: true,
                    stale: None,
                })
            }
            Ok(IndexLookup::Miss(ticket)) => {
                Box::pin(self.index_miss(key, ttl, ticket, members, load())).await
            }
            Err(e) => {
                tracing::debug!(family = key.family(), error = %e, "cache unavailable");
                self.forget(key);
                Ok(IndexRead::Unavailable)
            }
        }
    }

    async fn index_miss<Fut>(
        &self,
        key: &Key,
        ttl: Duration,
        ticket: Ticket,
        members: Members<'_>,
        load: Fut,
    ) -> Result<IndexRead, LoadError<E>>
    where
        Fut: Future<Output = Result<(Bytes, Vec<Key>), E>> + Send + 'static,
    {
        let family = key.family();
        tracing::debug!(family, "cache miss");
        let flight = flight_name(key, &ticket);
        let (cache, keeper) = (self.cache.clone(), self.keeper());
        let (k, t) = (key.clone(), ticket.clone());
        let loaded = self
            .flights
            .run(flight, LINGER, async move {
                let (value, keys) = load.await?;
                match cache
                    .put_index(&k, Fill::new(&t, value.clone(), ttl), &keys)
                    .await
                {
                    Ok(Stored::Stored) => {
                        if let Some(keeper) = keeper {
                            keeper.keep(&k, &t, &value, ttl);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(family, error = %e, "cache store failed"),
                }
                Ok(value)
            })
            .await;
        let (value, stale) = match loaded {
            Ok(value) => (value, None),
            Err(e) => match self.stale_answer(key, &ticket, &e) {
                Some(Loaded {
                    value,
                    source: Source::Stale { age },
                }) => (value, Some(age)),
                _ => return Err(e),
            },
        };
        let Some(keys) = members(&value) else {
            return Ok(IndexRead::Unavailable);
        };
        let lookups = match self.cache.get_many(&keys).await {
            Ok(found) if found.len() == keys.len() => found,
            _ => vec![Lookup::Miss(Ticket::none()); keys.len()],
        };
        Ok(IndexRead::Found {
            value,
            members: lookups.into(),
            hit: false,
            stale,
        })
    }

    /// Loads the members a read found missing, `missing` naming each with the ticket its
    /// lookup handed out, and stores each under its ticket (together: one round trip,
    /// not one per member). `load` answers their values in the same order, or fewer
    /// when some are gone (then nothing is stored, and the caller reads the whole from
    /// the source). Reads missing the same members at the same generations share one
    /// load; without a generation for each, a read shares only a load that had not
    /// started when it arrived.
    pub async fn load_members<Fut>(
        &self,
        ttl: Duration,
        missing: &[(Key, Ticket)],
        load: Fut,
    ) -> Result<LoadedMembers, LoadError<E>>
    where
        Fut: Future<Output = Result<Vec<Bytes>, E>> + Send + 'static,
    {
        let mut flight = String::from("members");
        for (key, ticket) in missing {
            flight.push(':');
            flight.push_str(key.name());
            flight.push('@');
            flight.push_str(ticket.generation());
        }
        let known = missing.iter().all(|(_, t)| *t != Ticket::none());
        let wanted = missing.to_vec();
        let (cache, keeper) = (self.cache.clone(), self.keeper());
        let load = async move {
            let values = load.await?;
            if values.len() == wanted.len() {
                let puts = values.iter().zip(&wanted).map(|(value, (key, ticket))| {
                    let (cache, keeper) = (&cache, &keeper);
                    async move {
                        match cache.put(key, Fill::new(ticket, value.clone(), ttl)).await {
                            Ok(Stored::Stored) => {
                                if let Some(keeper) = keeper {
                                    keeper.keep(key, ticket, value, ttl);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(family = key.family(), error = %e, "cache store failed");
                            }
                        }
                    }
                });
                futures_util::future::join_all(puts).await;
            }
            Ok(pack(&values))
        };
        let packed = if known {
            self.flights.run(flight, LINGER, load).await
        } else {
            self.flights.run_fresh(flight, load).await
        };
        let packed = match packed {
            Ok(packed) => packed,
            Err(e) => return self.stale_members(missing, &e).ok_or(e),
        };
        let values = unpack(&packed)
            .ok_or_else(|| LoadError::Aborted("members that do not unpack".into()))?;
        Ok(LoadedMembers {
            values,
            stale: None,
        })
    }

    /// The kept values of every member `missing` names under its ticket, for a load
    /// that failed with `error`; `None` unless every one is kept.
    fn stale_members(
        &self,
        missing: &[(Key, Ticket)],
        error: &LoadError<E>,
    ) -> Option<LoadedMembers> {
        let keeper = self.stale_for(error)?;
        let mut values = Vec::with_capacity(missing.len());
        let mut oldest = Duration::ZERO;
        for (key, ticket) in missing {
            let kept = keeper.offer(key, ticket)?;
            oldest = oldest.max(kept.age);
            values.push(kept.value);
        }
        for (key, _) in missing {
            metrics::stale_answer(key.family());
        }
        Some(LoadedMembers {
            values,
            stale: Some(oldest),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_values_unpack_as_they_were_whatever_they_hold() {
        let values = vec![
            Bytes::from_static(b"a\nb"),
            Bytes::new(),
            Bytes::from(vec![0u8; 300]),
        ];
        assert_eq!(unpack(&pack(&values)), Some(values));
        assert_eq!(unpack(&pack(&[])), Some(Vec::new()));
        assert_eq!(unpack(&Bytes::from_static(b"\x05\0\0\0\0\0\0\0ab")), None);
        assert_eq!(unpack(&Bytes::from_static(b"\x01\0")), None);
    }
}
