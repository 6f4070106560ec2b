//! The list family: a page is an index entry of its `meta` and the ids of its rows;
//! each row is an entry of its own, shared by every page that lists it; each filter's
//! total is an entry of its own too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use letip_cache::{CacheAside, IndexRead, Key, LoadedMembers, Lookup, Ticket};
use letip_domain::RepoResult;
use letip_domain::{
    Body, BusinessFilter, BusinessPage, CacheStatus, Cause, Fetched, ListQuery, PageMeta,
    RepoError, Repository,
};
use serde::de::IgnoredAny;

use super::{CachedRepository, Load, fetched, load, repo_error};
use crate::keys;

/// The cached totals of filter combinations (`meta.total` of their list pages).
pub(super) struct Totals {
    pub(super) aside: Arc<CacheAside<RepoError>>,
    pub(super) ttl: Duration,
}

impl Totals {
    /// The total of `filter`: from a current cache entry, or counted (one count per
    /// generation, shared like any load) and stored under the lookup's ticket. `None`
    /// when the cache cannot be asked, so the caller reads total and page together.
    ///
    /// The entry's scope is made stale by every write that moves a business into or
    /// out of the filter's list (`keys::scopes_of`), so a total found current counts
    /// every write answered before this lookup, as a page entry would show it.
    pub(super) async fn get(
        &self,
        repo: &Arc<dyn Repository>,
        filter: &BusinessFilter,
    ) -> RepoResult<Option<i64>> {
        let key = keys::list_total(filter);
        let count = || {
            let (repo, filter) = (repo.clone(), filter.clone());
            async move {
                let total = repo.count_businesses(&filter).await?;
                Ok(Bytes::from(total.to_string()))
            }
        };
        let Some(loaded) = self
            .aside
            .try_get_or_load(&key, self.ttl, count)
            .await
            .map_err(repo_error)?
        else {
            tracing::debug!("cache unavailable; counting with the page");
            return Ok(None);
        };
        match std::str::from_utf8(&loaded.value)
            .ok()
            .and_then(|t| t.parse().ok())
        {
            Some(total) => Ok(Some(total)),
            None => {
                self.aside.discard(&key).await;
                Ok(None)
            }
        }
    }
}

/// A cached list page: its `meta` as JSON, and the ids of its rows in list order. Stored
/// as the meta, a newline, and the ids separated by commas.
#[derive(Debug, PartialEq)]
pub(super) struct IdPage {
    pub(super) meta: Bytes,
    pub(super) ids: Vec<i32>,
}

impl IdPage {
    pub(super) fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.meta.len() + 1 + self.ids.len() * 8);
        out.extend_from_slice(&self.meta);
        out.push(b'\n');
        for (i, id) in self.ids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(id.to_string().as_bytes());
        }
        Bytes::from(out)
    }

    /// The page `value` holds; its meta is checked to be JSON unless the cache
    /// `verified` the value is what was put.
    pub(super) fn decode(value: &Bytes, verified: bool) -> Option<Self> {
        let nl = value.iter().position(|&b| b == b'\n')?;
        let meta = value.slice(..nl);
        if !verified {
            serde_json::from_slice::<IgnoredAny>(&meta).ok()?;
        }
        let ids = std::str::from_utf8(value.get(nl + 1..)?).ok()?;
        let ids = if ids.is_empty() {
            Vec::new()
        } else {
            ids.split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?
        };
        Some(Self { meta, ids })
    }
}

/// The row keys a cached list page names (for caches that do not store them with it).
pub(super) fn page_members(value: &[u8]) -> Option<Vec<Key>> {
    let page = IdPage::decode(&Bytes::copy_from_slice(value), false)?;
    Some(page.ids.iter().map(|&id| keys::row(id)).collect())
}

pub(super) fn page_meta(total: i64, q: &ListQuery) -> RepoResult<Bytes> {
    serde_json::to_vec(&PageMeta::new(total, q.page, q.limit))
        .map(Bytes::from)
        .map_err(|e| RepoError::Internal(Cause::new(e)))
}

/// `{"data":[rows],"meta":meta}`, as `BusinessPage` serializes, from the parts' bytes.
pub(super) fn page_json(meta: &[u8], rows: &[Bytes]) -> Bytes {
    let len = rows.iter().map(|r| r.len() + 1).sum::<usize>() + meta.len() + 20;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"data\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(row);
    }
    out.extend_from_slice(b"],\"meta\":");
    out.extend_from_slice(meta);
    out.push(b'}');
    Bytes::from(out)
}

impl CachedRepository {
    pub(super) fn totals(&self) -> Totals {
        Totals {
            aside: self.aside.clone(),
            ttl: self.ttls.list,
        }
    }

    /// A whole list page read from the inner repository (when the cache cannot be asked,
    /// or for pages deeper than are cached): with the filter's total from the cache when
    /// it holds it, else total and page in one snapshot.
    pub(super) fn page_load(&self, query: &ListQuery) -> Load {
        let totals = self.totals();
        let q = query.clone();
        load(move |repo: Arc<dyn Repository>| {
            Box::pin(async move {
                match totals.get(&repo, &q.filter).await? {
                    Some(total) => repo.list_page(&q, total).await,
                    None => repo.list_businesses(&q).await,
                }
            })
        })
    }

    /// Answers a list page from its ids and its rows' lookups: the rows found current as
    /// they are, the others read from the inner repository by id (one statement, shared
    /// by concurrent reads missing the same rows at the same generations) and stored
    /// under their tickets. The page's JSON is assembled from the rows' bytes, never
    /// decoded. A listed business that is gone (deleted since the ids were read) makes
    /// the page a plain read of the inner repository, stored nowhere.
    pub(super) async fn assemble(
        &self,
        key: &Key,
        query: &ListQuery,
        page: &IdPage,
        members: &[Lookup],
        page_hit: bool,
        page_stale: Option<Duration>,
    ) -> RepoResult<Fetched<BusinessPage>> {
        let mut rows: Vec<Option<Bytes>> = Vec::with_capacity(page.ids.len());
        let mut missing: Vec<(usize, i32, Ticket)> = Vec::new();
        for (i, (&id, member)) in page.ids.iter().zip(members).enumerate() {
            match member {
                Lookup::Hit(bytes)
                    if self.cache.verifies_integrity()
                        || serde_json::from_slice::<IgnoredAny>(bytes).is_ok() =>
                {
                    rows.push(Some(bytes.clone()));
                }
                Lookup::Hit(_) => {
                    self.aside.discard(&keys::row(id)).await;
                    missing.push((i, id, Ticket::none()));
                    rows.push(None);
                }
                Lookup::Miss(ticket) => {
                    missing.push((i, id, ticket.clone()));
                    rows.push(None);
                }
            }
        }
        let all_hit = page_hit && missing.is_empty();
        let mut stale = page_stale;
        if !missing.is_empty() {
            let loaded = self.load_rows(&missing).await?;
            if loaded.values.len() != missing.len() {
                return self.bypass(key, self.page_load(query)).await;
            }
            stale = stale.max(loaded.stale);
            for ((i, _, _), bytes) in missing.iter().zip(loaded.values) {
                if let Some(row) = rows.get_mut(*i) {
                    *row = Some(bytes);
                }
            }
        }
        let mut found = Vec::with_capacity(rows.len());
        found.extend(rows.into_iter().flatten());
        let rows = found;
        let status = match stale {
            Some(age) => CacheStatus::Stale { age },
            None if all_hit => CacheStatus::Hit,
            None => CacheStatus::Miss,
        };
        Ok(fetched(page_json(&page.meta, &rows), status))
    }

    /// Reads the rows `missing` names (index in the page, id, ticket) and stores each
    /// under its ticket; answers their JSON in the same order, or fewer when some
    /// business is gone (or their kept values, while the database is unreachable). Reads missing the same rows at the same generations share one
    /// load (see [`CacheAside::load_members`]).
    pub(super) async fn load_rows(
        &self,
        missing: &[(usize, i32, Ticket)],
    ) -> RepoResult<LoadedMembers> {
        let wanted: Vec<(Key, Ticket)> = missing
            .iter()
            .map(|(_, id, t)| (keys::row(*id), t.clone()))
            .collect();
        let ids: Vec<i32> = missing.iter().map(|(_, id, _)| *id).collect();
        let inner = self.inner.clone();
        let load = async move {
            let found = inner.listed_rows(&ids).await?;
            let mut encoded = Vec::with_capacity(found.len());
            for row in &found {
                encoded.push(Bytes::from(
                    serde_json::to_vec(row).map_err(|e| RepoError::Internal(Cause::new(e)))?,
                ));
            }
            Ok(encoded)
        };
        self.aside
            .load_members(self.ttls.list, &wanted, load)
            .await
            .map_err(repo_error)
    }

    /// A list page: its ids from an index entry (loaded under the page's generation on
    /// a miss), its rows from their own entries, assembled as JSON without decoding.
    pub(super) async fn list(&self, query: &ListQuery) -> RepoResult<Fetched<BusinessPage>> {
        let key = keys::list(query);
        if query.page > self.list_max_page {
            return self.bypass(&key, self.page_load(query)).await;
        }
        let family = key.family();
        let load = || {
            let (inner, totals, q) = (self.inner.clone(), self.totals(), query.clone());
            async move {
                let total = match totals.get(&inner, &q.filter).await? {
                    Some(total) => total,
                    None => inner.count_businesses(&q.filter).await?,
                };
                let ids = inner.page_ids(&q, total).await?;
                let page = IdPage {
                    meta: page_meta(total, &q)?,
                    ids,
                };
                let members = page.ids.iter().map(|&id| keys::row(id)).collect();
                Ok((page.encode(), members))
            }
        };
        let read = self
            .aside
            .get_or_load_index(&key, self.ttls.list, &page_members, load)
            .await
            .map_err(repo_error)?;
        match read {
            IndexRead::Found {
                value,
                members,
                hit: true,
                ..
            } => {
                if let Some(body) = self.pages.get(key.name(), &value, &members) {
                    tracing::debug!(family, "cache hit");
                    return Ok(fetched(body, CacheStatus::Hit));
                }
                let Some(page) = IdPage::decode(&value, self.cache.verifies_integrity())
                    .filter(|p| p.ids.len() == members.len())
                else {
                    self.aside.discard(&key).await;
                    return self.bypass(&key, self.page_load(query)).await;
                };
                let fetched = self
                    .assemble(&key, query, &page, &members, true, None)
                    .await?;
                if let (CacheStatus::Hit, Body::Json(body)) = (&fetched.cache, &fetched.body) {
                    self.pages.keep(key.name(), value, members, body.clone());
                }
                Ok(fetched)
            }
            IndexRead::Found {
                value,
                members,
                hit: false,
                stale,
            } => {
                let page = IdPage::decode(&value, false).ok_or_else(|| {
                    RepoError::Internal(Cause::msg("a list page that is not one"))
                })?;
                self.assemble(&key, query, &page, &members, false, stale)
                    .await
            }
            IndexRead::Unavailable => self.bypass(&key, self.page_load(query)).await,
        }
    }
}
