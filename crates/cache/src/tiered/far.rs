//! The round trips to Redis behind a near miss or an unleased near hit: a single entry,
//! and an index page with its members.

use crate::Result;
use std::sync::Arc;

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
                let copy = NearCopy {
                    tag,
                    bytes: bytes.clone(),
                    scope: key.scope().into(),
                    stamp,
                    asked,
                };
                self.keep(self.far.value_key(key), copy).await;
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
        let mut copies = Vec::with_capacity(names.len());
        if let (true, Some(p)) = (with_rows, &plan) {
            for (tag, bytes) in &p.rows {
                copies.push(Some((tag.clone(), bytes.clone())));
            }
        } else {
            for n in names {
                copies.push(self.copy_of(n).map(|c| (c.tag.clone(), c.bytes.clone())));
            }
        }
        let tags: Vec<Option<Arc<str>>> = copies
            .iter()
            .map(|c| c.as_ref().map(|(tag, _)| tag.clone()))
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
                let copy = NearCopy {
                    tag: tag.clone(),
                    bytes: bytes.clone(),
                    scope: key.scope().into(),
                    stamp,
                    asked,
                };
                self.keep_index(name.clone(), copy, plan.clone()).await;
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
        let mut found = Vec::with_capacity(raw.members.len());
        let mut rows = Vec::with_capacity(raw.members.len());
        for (i, member) in raw.members.into_iter().enumerate() {
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
                        let copy = NearCopy {
                            tag,
                            bytes: bytes.clone(),
                            scope: std::mem::replace(scope, Arc::from("")),
                            stamp,
                            asked,
                        };
                        self.keep(n, copy).await;
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
        // Every member current now: keep their copies with the index's for next time.
        if changed
            && rows.len() == found.len()
            && !rows.is_empty()
            && let Some(keys) = members(&value)
            && keys.len() == rows.len()
        {
            let mut plan = self.plan(key, &keys);
            plan.hits = rows.iter().map(|(_, b)| Lookup::Hit(b.clone())).collect();
            plan.rows = rows;
            let copy = NearCopy {
                tag,
                bytes: value.clone(),
                scope: key.scope().into(),
                stamp,
                asked,
            };
            self.keep_index(name, copy, Arc::new(plan)).await;
        }
        Ok(IndexLookup::Hit {
            value,
            members: found.into(),
        })
    }
}
