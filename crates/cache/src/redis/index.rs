//! Index entries: a lookup of an index and its members in one script, the memo of index
//! entries read (plain commands instead of the script), and the confirmation of a
//! caller's copies of an index and its members without a value sent.

use crate::Result;
use std::sync::Arc;

use bytes::Bytes;
use deadpool_redis::redis::{self, Value};

use super::RedisCache;
use super::scripts::{LOOKUP_INDEX_SCRIPT, State, eval};
use super::wire::{
    INDEX_MARK, Raw, has_tag_header, index_members, index_value, is_tag, pairs, raw_lookup,
    starts_with_tag, tagged, unseal,
};
use crate::{CacheError, IndexLookup, Key, Members, Ticket};

/// What the caller of [`RedisCache::lookup_index`] holds: its copy of the index's tag,
/// the value keys of the index's members, and its copies' tags of them (by position).
pub(crate) struct KnownIndex<'a> {
    pub(crate) tag: &'a str,
    /// The SHA-1 (hex) of the members section the copy was stored with
    /// ([`RedisCache::index_head_digest`]): a stored index under the same tag that names
    /// other members is not the copy.
    pub(crate) head: &'a str,
    pub(crate) names: &'a [String],
    pub(crate) tags: &'a [Option<Arc<str>>],
    /// The key names that confirm the copies in one round trip, when the caller has
    /// them (see [`RedisCache::confirm_keys`]).
    pub(crate) confirm: Option<&'a ConfirmKeys>,
}

/// The key names [`RedisCache::lookup_index`] reads to confirm copies of an index and of
/// its members without a script: every generation key (root and own of the index, then
/// of each member) and every value key (the index's, then each member's).
#[derive(Debug, Clone)]
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

/// The answer to a memo read: generations, whether the index exists, members' values.
pub(super) type MemoAnswer = (Vec<Option<String>>, i64, Vec<Option<Vec<u8>>>);

/// Most bytes of [`RedisCache`]'s memo of index entries (values and key names).
pub(super) const INDEX_MEMO_BYTES: u64 = 16 * 1024 * 1024;

/// An index entry as this process last read it: its tag and value, and the key names
/// that confirm it and read its members. It is never served on its own: a lookup reads
/// the index's generations and existence with the members' generations and values in one
/// atomic round trip of plain commands, and uses the memo only if the index is still
/// what it was (the tag equal to its generations, the entry present); else the script
/// answers. Values of members leave Redis through `MGET` rather than through a script,
/// which costs Redis a tenth of the time.
#[derive(Debug)]
pub(super) struct IndexMemo {
    tag: Arc<str>,
    value: Bytes,
    families: Vec<&'static str>,
    confirm: ConfirmKeys,
    /// The members as the last read found them, every one a hit: their tags, and the
    /// lookups answered for them. A lookup first confirms these (generations and
    /// existence, no value sent); only when one is not current are the values read.
    rows: Option<MemoRows>,
}

#[derive(Debug)]
struct MemoRows {
    tags: Vec<Option<Arc<str>>>,
    hits: Arc<[crate::Lookup]>,
}

impl IndexMemo {
    fn bytes(&self) -> usize {
        let rows = self.rows.as_ref().map_or(0, |r| {
            r.hits
                .iter()
                .map(|h| match h {
                    crate::Lookup::Hit(b) => b.len() + 32,
                    crate::Lookup::Miss(_) => 32,
                })
                .sum::<usize>()
        });
        self.value.len() + self.confirm.bytes() + rows + 64
    }
}

impl IndexMemo {
    /// The memo of a [`RedisCache`]: at most [`INDEX_MEMO_BYTES`], by index value key.
    pub(super) fn cache() -> moka::sync::Cache<String, Arc<Self>> {
        moka::sync::Cache::builder()
            .max_capacity(INDEX_MEMO_BYTES)
            .weigher(|k: &String, v: &Arc<Self>| {
                u32::try_from(k.len() + v.bytes()).unwrap_or(u32::MAX)
            })
            .build()
    }
}

impl RedisCache {
    /// An index and its members, in one script. With `known`, the tag of the caller's
    /// copy of the index, the value keys of its members and the tags of the caller's
    /// copies of them: copies found current are confirmed without sending their values.
    pub(crate) async fn lookup_index(
        &self,
        key: &Key,
        known: Option<KnownIndex<'_>>,
    ) -> Result<RawIndex> {
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
        let known_head = known.as_ref().map_or("", |k| k.head);
        let member_tags: Vec<&str> = known
            .as_ref()
            .map(|k| k.tags.iter().map(|t| t.as_deref().unwrap_or("")).collect())
            .unwrap_or_default();
        let answer: Vec<Value> = self
            .call("lookup_index", |mut c| async move {
                eval(&mut c, &LOOKUP_INDEX_SCRIPT, &keys, |cmd| {
                    cmd.arg(ttl)
                        .arg(self.history.floor())
                        .arg(&prefix)
                        .arg(known_tag)
                        .arg(known_head)
                        .arg(&member_tags[..]);
                })
                .await
            })
            .await?;
        let mut pairs = pairs(answer)?.into_iter();
        let (state, bytes) = pairs
            .next()
            .ok_or_else(|| CacheError::Protocol("an empty answer to a lookup".into()))?;
        let (index, names) = match state {
            State::Miss => {
                let ticket = Ticket::new(String::from_utf8_lossy(&bytes));
                return Ok(RawIndex {
                    index: Raw::Miss(ticket),
                    members: Vec::new(),
                });
            }
            State::Current => (
                Raw::Current,
                known.map(|k| k.names.to_vec()).unwrap_or_default(),
            ),
            State::Hit => {
                let (tag, sealed) = tagged(&Bytes::from(bytes));
                let payload = unseal(sealed, self.config.max_value_bytes);
                let parts = payload
                    .as_ref()
                    .and_then(|p| Some((index_value(p)?, index_members(p)?)));
                let Some((value, names)) = parts else {
                    self.remove_damaged(key.family(), &name).await;
                    return Err(CacheError::Protocol(
                        "an index that fails its checksum".into(),
                    ));
                };
                (Raw::Hit { tag, bytes: value }, names)
            }
            State::Foreign => {
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
    pub(super) async fn lookup_index_through_memo(
        &self,
        key: &Key,
        members: Members<'_>,
    ) -> Result<IndexLookup> {
        self.recover_all(key.scope()).await?;
        let name = self.value_key(key);
        if let Some(memo) = self.indexes.get(&name) {
            if let Some(rows) = &memo.rows {
                let known = KnownIndex {
                    tag: &memo.tag,
                    head: "",
                    names: memo.confirm.values.get(1..).unwrap_or_default(),
                    tags: &rows.tags,
                    confirm: Some(&memo.confirm),
                };
                if self.confirm_index(&known).await?.is_some() {
                    return Ok(IndexLookup::Hit {
                        value: memo.value.clone(),
                        members: rows.hits.clone(),
                    });
                }
            }
            if let Some((found, tags)) = self.read_memo(&memo).await? {
                if let (Some(tags), IndexLookup::Hit { members, .. }) = (tags, &found) {
                    let with_rows = IndexMemo {
                        tag: memo.tag.clone(),
                        value: memo.value.clone(),
                        families: memo.families.clone(),
                        confirm: memo.confirm.clone(),
                        rows: Some(MemoRows {
                            tags,
                            hits: members.clone(),
                        }),
                    };
                    self.indexes.insert(name, Arc::new(with_rows));
                }
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
                        rows: None,
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
    /// with that tag as its ticket. With the answer, every member's tag when all are hits.
    pub(super) async fn read_memo(
        &self,
        memo: &IndexMemo,
    ) -> Result<Option<(IndexLookup, Option<Vec<Option<Arc<str>>>>)>> {
        let confirm = &memo.confirm;
        let (Some(index), Some(names)) = (confirm.values.first(), confirm.values.get(1..)) else {
            return Ok(None);
        };
        if names.is_empty() || confirm.tags.len() != names.len() + 1 {
            return Ok(None);
        }
        let mut pipe = generations_and_existence(&confirm.gens, index);
        pipe.cmd("MGET").arg(names);
        let (gens, exists, values): MemoAnswer = self
            .call("index_memo", |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await?;
        if exists != 1 || gens.len() != confirm.gens.len() || values.len() != names.len() {
            return Ok(None);
        }
        // A generation below the floor is the script's to move first. Each generation
        // is checked once, however many members share it (the root's, by every row).
        let mut current: Vec<(&str, &str)> = Vec::with_capacity(confirm.tags.len());
        let admitted: Vec<Option<&str>> = (gens.iter())
            .map(|g| g.as_deref().filter(|g| self.history.admits(g)))
            .collect();
        for &(r, o) in &confirm.tags {
            let (Some(Some(root)), Some(Some(own))) = (admitted.get(r), admitted.get(o)) else {
                return Ok(None);
            };
            current.push((root, own));
        }
        if !current
            .first()
            .is_some_and(|(root, own)| is_tag(&memo.tag, root, own))
        {
            return Ok(None);
        }
        let mut members = Vec::with_capacity(names.len());
        let mut tags = Some(Vec::with_capacity(names.len()));
        for (i, (name, value)) in names.iter().zip(values).enumerate() {
            let (root, own) = current.get(i + 1).copied().unwrap_or_default();
            let tag = || format!("{root}.{own}\n").into_bytes();
            let (state, bytes) = match value {
                None => (State::Miss, tag()),
                Some(v) if starts_with_tag(&v, root, own) => (State::Hit, v),
                Some(v) if has_tag_header(&v) => (State::Miss, tag()),
                Some(_) => (State::Foreign, tag()),
            };
            let family = memo.families.get(i).copied().unwrap_or_default();
            let found = self.member(family, name, state, bytes).await;
            tags = match (&found, tags) {
                (Raw::Hit { tag, .. }, Some(mut t)) => {
                    t.push(Some(tag.clone()));
                    Some(t)
                }
                _ => None,
            };
            members.push(raw_lookup(found));
        }
        let found = IndexLookup::Hit {
            value: memo.value.clone(),
            members: members.into(),
        };
        Ok(Some((found, tags)))
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
    pub(super) async fn confirm_index(&self, known: &KnownIndex<'_>) -> Result<Option<RawIndex>> {
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
        let pipe = generations_and_existence(&confirm.gens, &confirm.values);
        let (found, exist): (Vec<Option<String>>, usize) = self
            .call("confirm_index", |mut c| async move {
                pipe.query_async(&mut c).await
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

    /// The SHA-1 (hex) of the members section an index naming `members` is stored with,
    /// as the lookup script computes it of a stored index.
    pub(crate) fn index_head_digest(&self, members: &[Key]) -> String {
        sha1_smol::Sha1::from(self.index_head(members))
            .digest()
            .to_string()
    }

    /// The members section an index entry is stored with: the member count, then the
    /// value key and both generation keys of each member, a line each.
    pub(super) fn index_head(&self, members: &[Key]) -> String {
        let mut head = format!("{INDEX_MARK}{}\n", members.len());
        for m in members {
            let [root, own] = self.generation_keys(m.scope());
            for name in [self.value_key(m), root, own] {
                head.push_str(&name);
                head.push('\n');
            }
        }
        head
    }
}

/// `MULTI`, `MGET` of the generations `gens`, `EXISTS` of `keys`: what tells whether
/// copies are still current (their tags against the generations) and unexpired.
fn generations_and_existence(gens: &[String], keys: impl redis::ToRedisArgs) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("MGET").arg(gens).cmd("EXISTS").arg(keys);
    pipe
}
