//! The round trips to Redis behind a near miss or an unleased near hit: a single entry,
//! and an index page with its members.

use crate::Result;
use std::sync::Arc;

use bytes::Bytes;

use super::TieredCache;
use super::copies::{Confirming, NearCopy, NearEntry};
use crate::redis::{KnownIndex, Raw};
use crate::{IndexLookup, Key, Lookup, Members, Ticket, metrics};

impl TieredCache {
    /// A lookup that asks Redis, offering the near copy (if any) to be confirmed; a
    /// `_confirming` claim is let go of when it ends.
    pub(super) async fn get_far(
        &self,
        key: &Key,
        copy: Option<Arc<NearEntry>>,
        stamp: u64,
        asked: u64,
        _confirming: Option<Confirming>,
    ) -> Result<Lookup> {
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
                let copy = NearCopy::new(tag, bytes.clone(), key.scope().into(), stamp, asked);
                self.keep(self.far.value_key(key), copy);
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
    pub(super) async fn get_index_far(
        &self,
        key: &Key,
        members: Members<'_>,
        copy: Option<Arc<NearEntry>>,
        stamp: u64,
        asked: u64,
        _confirming: Option<Confirming>,
    ) -> Result<IndexLookup> {
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
        let mut copies: Vec<Option<Row>> = match (with_rows, &plan) {
            (true, Some(p)) => p.rows.iter().cloned().map(Some).collect(),
            _ => (names.iter())
                .map(|n| self.copy_of(n).map(|c| (c.tag.clone(), c.bytes.clone())))
                .collect(),
        };
        let tags: Vec<Option<Arc<str>>> = copies
            .iter()
            .map(|c| c.as_ref().map(|(tag, _)| tag.clone()))
            .collect();
        let known = copy.as_ref().map(|c| KnownIndex {
            tag: &c.tag,
            head: plan.as_ref().map_or("", |p| &p.head),
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
                let copy =
                    NearCopy::new(tag.clone(), bytes.clone(), key.scope().into(), stamp, asked);
                self.keep_index(name.clone(), copy, plan.clone());
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
        let offered = Offered {
            names,
            copies,
            scopes,
            stamp,
            asked,
        };
        let (found, rows, members_changed) = self.answer_members(raw.members, offered);
        // Every member current now: keep their copies with the index's for next time.
        if (changed || members_changed)
            && rows.len() == found.len()
            && !rows.is_empty()
            && let Some(keys) = members(&value)
            && keys.len() == rows.len()
        {
            let mut plan = self.plan(key, &keys);
            plan.hits = rows.iter().map(|(_, b)| Lookup::Hit(b.clone())).collect();
            plan.rows = rows;
            let copy = NearCopy::new(tag, value.clone(), key.scope().into(), stamp, asked);
            self.keep_index(name, copy, Arc::new(plan));
        }
        Ok(IndexLookup::Hit {
            value,
            members: found.into(),
        })
    }

    /// Each member as Redis answered it: a confirmed copy, a new value (kept as a near
    /// copy), or a miss (its copy dropped). Answers the lookups, the members' rows while
    /// all are current, and whether anything differs from the copies offered.
    fn answer_members(&self, raw: Vec<Raw>, a: Offered<'_>) -> (Vec<Lookup>, Vec<Row>, bool) {
        let Offered {
            names,
            mut copies,
            mut scopes,
            stamp,
            asked,
        } = a;
        let mut changed = false;
        let mut found = Vec::with_capacity(raw.len());
        let mut rows = Vec::with_capacity(raw.len());
        for (i, member) in raw.into_iter().enumerate() {
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
                        let scope = std::mem::replace(scope, Arc::from(""));
                        self.keep(n, NearCopy::new(tag, bytes.clone(), scope, stamp, asked));
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
        (found, rows, changed)
    }
}

/// A member's copy: its tag and bytes.
type Row = (Arc<str>, Bytes);

/// What an index lookup offered for its members, and when it began.
struct Offered<'a> {
    names: &'a [String],
    copies: Vec<Option<Row>>,
    scopes: Vec<Arc<str>>,
    stamp: u64,
    asked: u64,
}
