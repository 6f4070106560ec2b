//! Single entries: lookup (one or many), store and invalidation (a generation bump), and
//! the removal of entries that fail their checksum or format.

use crate::Result;
use std::time::Duration;

use bytes::Bytes;
use deadpool_redis::redis::{self, Value};

use super::RedisCache;
use super::connection::unavailable;
use super::health::Gate;
use super::scripts::{
    INVALIDATE_SCRIPT, LOOKUP_MANY_SCRIPT, LOOKUP_SCRIPT, STORE_SCRIPT, State, eval,
};
use super::wire::{
    Raw, has_tag_header, pairs, raw_lookup, seal, split_scope, starts_with_tag, tagged, unseal,
};
use crate::{Cache, CacheError, Key, Lookup, Stored, Ticket, metrics};

impl RedisCache {
    /// Looks `key` up. With `known`, the tag of a copy the caller holds, a current copy
    /// is confirmed without sending the value.
    pub(crate) async fn lookup(&self, key: &Key, known: Option<&str>) -> Result<Raw> {
        self.recover(key.scope()).await?;
        if known.is_none()
            && let Some(raw) = self.lookup_plain(key).await?
        {
            return Ok(raw);
        }
        let [root, own] = self.generation_keys(key.scope());
        let keys = [self.value_key(key), root, own];
        let ttl = self.generation_ttl_ms();
        let known = known.unwrap_or("");
        let (state, bytes): (i64, Vec<u8>) = self
            .call("lookup", |mut c| async move {
                eval(&mut c, &LOOKUP_SCRIPT, &keys, |cmd| {
                    cmd.arg(ttl).arg(self.history.floor()).arg(known);
                })
                .await
            })
            .await?;
        match State::of(state) {
            State::Current => Ok(Raw::Current),
            State::Hit => {
                let (tag, sealed) = tagged(&Bytes::from(bytes));
                match unseal(sealed, self.config.max_value_bytes) {
                    Some(value) => Ok(Raw::Hit { tag, bytes: value }),
                    None => self.corrupt(key).await,
                }
            }
            State::Miss => Ok(Raw::Miss(Ticket::new(String::from_utf8_lossy(&bytes)))),
            State::Foreign => self.corrupt(key).await,
        }
    }

    /// [`Self::lookup`] with no copy, in one atomic round trip of plain commands
    /// (`MULTI`, `MGET` of both generations, `GET` of the value, `EXEC`) rather than the
    /// script, which costs Redis several times the work of a hit: the answer is the
    /// script's whenever both generations exist and are not below the floor; `None`
    /// otherwise, for the script to make them.
    async fn lookup_plain(&self, key: &Key) -> Result<Option<Raw>> {
        let [root, own] = self.generation_keys(key.scope());
        let name = self.value_key(key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("MGET")
            .arg(&root)
            .arg(&own)
            .cmd("GET")
            .arg(&name);
        let (gens, value): (Vec<Option<String>>, Option<Vec<u8>>) = self
            .call(
                "lookup",
                |mut c| async move { pipe.query_async(&mut c).await },
            )
            .await?;
        let [Some(root), Some(own)] = &gens[..] else {
            return Ok(None);
        };
        if !self.history.admits(root) || !self.history.admits(own) {
            return Ok(None);
        }
        let ticket = || Raw::Miss(Ticket::new(format!("{root}.{own}\n")));
        let raw = match value {
            None => ticket(),
            Some(v) if starts_with_tag(&v, root, own) => {
                let (tag, sealed) = tagged(&Bytes::from(v));
                match unseal(sealed, self.config.max_value_bytes) {
                    Some(value) => Raw::Hit { tag, bytes: value },
                    None => return self.corrupt(key).await.map(Some),
                }
            }
            Some(v) if has_tag_header(&v) => ticket(),
            Some(_) => return self.corrupt(key).await.map(Some),
        };
        Ok(Some(raw))
    }

    /// Stores `head` then `value` under one checksum, while `ticket` is current.
    pub(super) async fn store(
        &self,
        key: &Key,
        ticket: &Ticket,
        head: &[u8],
        value: &Bytes,
        ttl: Duration,
    ) -> Result<Stored> {
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
        let sealed = seal(head, value, self.config.compress_above);
        let stored: Result<i64, _> = self
            .call("store", |mut c| async move {
                STORE_SCRIPT
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

    /// One entry of a many-key answer: current, a hit whose checksum holds, else a
    /// miss with the ticket of the generation the script saw. A damaged entry is removed
    /// and counted.
    pub(super) async fn member(
        &self,
        family: &'static str,
        name: &str,
        state: State,
        bytes: Vec<u8>,
    ) -> Raw {
        match state {
            State::Miss => Raw::Miss(Ticket::new(String::from_utf8_lossy(&bytes))),
            State::Current => Raw::Current,
            State::Hit => {
                let (tag, sealed) = tagged(&Bytes::from(bytes));
                if let Some(value) = unseal(sealed, self.config.max_value_bytes) {
                    return Raw::Hit { tag, bytes: value };
                }
                // Its header is the current tag (the script compared it).
                self.remove_damaged(family, name).await;
                Raw::Miss(Ticket::new(tag))
            }
            // Not in this cache's format: the answer carries the current tag.
            State::Foreign => {
                self.remove_damaged(family, name).await;
                Raw::Miss(Ticket::new(String::from_utf8_lossy(&bytes)))
            }
        }
    }

    pub(super) async fn remove_damaged(&self, family: &'static str, name: &str) {
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

    /// Removes an entry that is not what this cache stored.
    pub(super) async fn corrupt(&self, key: &Key) -> Result<Raw> {
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
    pub(super) async fn bump(&self, scope: &str, for_write: bool) -> Result<()> {
        let key = self.generation_key(scope);
        let ttl = self.generation_ttl_ms();
        let timeout = self.config.invalidate_timeout.max(self.config.timeout);
        let gate = if for_write { Gate::Past } else { Gate::Breaker };
        self.call_within("invalidate", timeout, gate, |mut c| async move {
            INVALIDATE_SCRIPT
                .key(key)
                .arg(ttl)
                .arg(self.history.floor())
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    /// Many entries, with one script per hash slot (root scope), sent together.
    pub(super) async fn lookup_many(&self, keys: &[Key]) -> Result<Vec<Lookup>> {
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        self.recover_all(first.scope()).await?;
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
                    LOOKUP_MANY_SCRIPT
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
}
