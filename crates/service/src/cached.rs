//! The cached repository: cache-aside reads in front of any repository, kept fresh by
//! invalidating what each mutation changes before its response is sent.
//!
//! What each mutation invalidates is decided by one table, `keys::scopes_of`, from the
//! [`Change`] it made; changes announced by other writers (storage's change feed, see
//! [`CachedRepository::follow`]) go through the same table.
//!
//! Freshness: a lookup that misses hands back the scope's generation; the value loaded
//! from the database is stored only if that generation is still current (one atomic
//! check in the cache). A writer bumps the generation after its commit and before its
//! response, so a reader that loaded old data can never store it afterwards, and a read
//! that starts after the response never finds an entry from before the write.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use letip_cache::{
    Cache, CacheAside, CacheHealth, IndexRead, Key, LoadError, Loaded, Lookup, Source, Ticket,
};
use letip_domain::{
    Body, Business, BusinessDetail, BusinessFilter, BusinessPage, BusinessPatch,
    BusinessWithContacts, CacheStatus, Change, Contact, EnrichmentRun, FeedEvent, Fetched, Health,
    ListQuery, MessageStatusUpdate, NewBusiness, NewContact, NewMessage, OutreachMessage, PageMeta,
    RepoError, Repository, Stats,
};
use serde::Serialize;
use serde::de::IgnoredAny;

use crate::pages::Pages;
use crate::{invalidation, keys};

/// How long each family of entries lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTtls {
    pub stats: Duration,
    pub list: Duration,
    pub detail: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            stats: Duration::from_secs(30),
            list: Duration::from_secs(300),
            detail: Duration::from_secs(600),
        }
    }
}

impl CacheTtls {
    pub fn longest(&self) -> Duration {
        self.stats.max(self.list).max(self.detail)
    }
}

/// A repository that answers reads from a cache when it can.
///
/// With a cache that stores nothing ([`letip_cache::NoopCache`]) every read goes to the
/// inner repository and is reported as a bypass.
#[derive(Debug)]
pub struct CachedRepository {
    inner: Arc<dyn Repository>,
    cache: Arc<dyn Cache>,
    ttls: CacheTtls,
    /// Cache-aside over `cache`: tickets, single-flight, damaged entries, bypass.
    aside: Arc<CacheAside<RepoError>>,
    /// List pages deeper than this are not cached.
    list_max_page: u32,
    /// The change feed's state, for health checks: [`FEED_NONE`] until `follow` is
    /// called, then [`FEED_UP`] or [`FEED_DOWN`].
    feed: AtomicU8,
    /// List pages assembled from hits, answered again while the cache answers the same
    /// bytes.
    pages: Pages,
}

const FEED_NONE: u8 = 0;
const FEED_UP: u8 = 1;
const FEED_DOWN: u8 = 2;

type Load =
    Box<dyn FnOnce(Arc<dyn Repository>) -> BoxFuture<'static, Result<Bytes, RepoError>> + Send>;

/// Loads a read from the inner repository as JSON bytes.
fn load<T, F>(read: F) -> Load
where
    T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce(Arc<dyn Repository>) -> BoxFuture<'static, Result<Fetched<T>, RepoError>>
        + Send
        + 'static,
{
    Box::new(move |repo| {
        Box::pin(async move {
            read(repo)
                .await?
                .into_json()
                .map_err(|e| RepoError::Internal(format!("cannot encode a read: {e}")))
        })
    })
}

fn fetched<T>(bytes: Bytes, cache: CacheStatus) -> Fetched<T> {
    Fetched {
        body: Body::Json(bytes),
        cache,
    }
}

fn answered<T>(loaded: Loaded) -> Fetched<T> {
    let status = match loaded.source {
        Source::Hit => CacheStatus::Hit,
        Source::Miss => CacheStatus::Miss,
        Source::Bypass => CacheStatus::Bypass,
    };
    fetched(loaded.value, status)
}

/// A shared load's failure as the repository's: the load's own error, or an internal
/// one if its task ended without a result.
fn repo_error(e: LoadError<RepoError>) -> RepoError {
    match e {
        LoadError::Load(e) => e,
        LoadError::Aborted(why) => RepoError::Internal(format!("load failed: {why}")),
    }
}

/// Whether a hit is JSON, for caches that do not verify what they answer: a corrupt
/// entry costs one database read, never a broken response.
fn is_json(value: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(value).is_ok()
}

impl CachedRepository {
    pub fn new(inner: Arc<dyn Repository>, cache: Arc<dyn Cache>, ttls: CacheTtls) -> Self {
        Self {
            inner,
            aside: Arc::new(CacheAside::new(cache.clone()).check_hits_with(is_json)),
            cache,
            ttls,
            list_max_page: u32::MAX,
            feed: AtomicU8::new(FEED_NONE),
            pages: Pages::default(),
        }
    }

    /// Caches list pages up to `page` only; deeper ones are read from the inner
    /// repository every time (still shared by concurrent reads), so however many pages
    /// clients walk through, the list family holds at most this many per filter
    /// combination and page size.
    #[must_use]
    pub fn with_list_max_page(mut self, page: u32) -> Self {
        self.list_max_page = page;
        self
    }

    pub fn ttls(&self) -> CacheTtls {
        self.ttls
    }

    fn totals(&self) -> Totals {
        Totals {
            aside: self.aside.clone(),
            ttl: self.ttls.list,
        }
    }

    /// Reads through the source of truth when the cache cannot be asked, or for reads
    /// not cached: concurrent reads of a key share only a load that had not started when
    /// they arrived, so each sees every write answered before it began, on any instance.
    async fn bypass<T>(&self, key: &Key, load: Load) -> Result<Fetched<T>, RepoError> {
        let loaded = self
            .aside
            .load_fresh(key, load(self.inner.clone()))
            .await
            .map_err(repo_error)?;
        Ok(answered(loaded))
    }

    /// A cache-aside read: `load` makes the database read, only on a miss.
    async fn read<T>(
        &self,
        key: &Key,
        ttl: Duration,
        load: impl FnOnce() -> Load + Send,
    ) -> Result<Fetched<T>, RepoError> {
        let loaded = self
            .aside
            .get_or_load(key, ttl, || load()(self.inner.clone()))
            .await
            .map_err(repo_error)?;
        Ok(answered(loaded))
    }

    /// A whole list page read from the inner repository (when the cache cannot be asked,
    /// or for pages deeper than are cached): with the filter's total from the cache when
    /// it holds it, else total and page in one snapshot.
    fn page_load(&self, query: &ListQuery) -> Load {
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
    async fn assemble(
        &self,
        key: &Key,
        query: &ListQuery,
        page: &IdPage,
        members: &[Lookup],
        page_hit: bool,
    ) -> Result<Fetched<BusinessPage>, RepoError> {
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
        if !missing.is_empty() {
            let loaded = self.load_rows(&missing).await?;
            if loaded.len() != missing.len() {
                return self.bypass(key, self.page_load(query)).await;
            }
            for ((i, _, _), bytes) in missing.iter().zip(loaded) {
                if let Some(row) = rows.get_mut(*i) {
                    *row = Some(bytes);
                }
            }
        }
        let mut found = Vec::with_capacity(rows.len());
        found.extend(rows.into_iter().flatten());
        let rows = found;
        Ok(fetched(
            page_json(&page.meta, &rows),
            if all_hit {
                CacheStatus::Hit
            } else {
                CacheStatus::Miss
            },
        ))
    }

    /// Reads the rows `missing` names (index in the page, id, ticket) and stores each
    /// under its ticket; answers their JSON in the same order, or fewer when some
    /// business is gone. Reads missing the same rows at the same generations share one
    /// load (see [`CacheAside::load_members`]).
    async fn load_rows(&self, missing: &[(usize, i32, Ticket)]) -> Result<Vec<Bytes>, RepoError> {
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
                encoded.push(Bytes::from(serde_json::to_vec(row).map_err(|e| {
                    RepoError::Internal(format!("cannot encode a row: {e}"))
                })?));
            }
            Ok(encoded)
        };
        self.aside
            .load_members(self.ttls.list, &wanted, load)
            .await
            .map_err(repo_error)
    }

    /// Makes what a committed mutation changed unreachable in the cache. A failure is
    /// the cache's to remember (it refuses to serve until it has recovered); the write
    /// itself succeeded and is answered as such.
    async fn changed(&self, changes: &[Change]) {
        self.invalidate(changes, false).await;
    }

    /// Invalidates what `changes` made stale; `detached` for changes no answer waits on
    /// (the change feed's), which a cache need not hold up for other instances.
    async fn invalidate(&self, changes: &[Change], detached: bool) {
        let scopes: std::collections::BTreeSet<String> =
            changes.iter().flat_map(keys::scopes_of).collect();
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let result = if detached {
            self.cache.invalidate_detached(&scopes).await
        } else {
            self.cache.invalidate(&scopes).await
        };
        if let Err(e) = result {
            tracing::debug!(?scopes, error = %e, "cache invalidation failed");
        }
    }

    /// Applies changes announced by other writers until `feed` ends: another instance
    /// that could not reach the cache, or any other client of the database. When the
    /// feed reports it missed announcements, stats and every list are invalidated.
    /// From this call on, health checks report the feed's state (connected, as a feed
    /// that could not connect says at once).
    pub fn follow(
        self: &Arc<Self>,
        feed: impl Stream<Item = FeedEvent> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.feed.store(FEED_UP, Ordering::Relaxed);
        let this = self.clone();
        async move {
            let mut feed = std::pin::pin!(feed);
            while let Some(event) = feed.next().await {
                let changes = match event {
                    FeedEvent::Changed(changes) => changes,
                    FeedEvent::Resumed => {
                        this.feed.store(FEED_UP, Ordering::Relaxed);
                        vec![Change::Unknown]
                    }
                    FeedEvent::Lost => {
                        this.feed.store(FEED_DOWN, Ordering::Relaxed);
                        continue;
                    }
                };
                this.invalidate(&changes, true).await;
                metrics::counter!("letip_changes_applied_total").increment(changes.len() as u64);
            }
            this.feed.store(FEED_DOWN, Ordering::Relaxed);
        }
    }
}

/// The cached totals of filter combinations (`meta.total` of their list pages).
struct Totals {
    aside: Arc<CacheAside<RepoError>>,
    ttl: Duration,
}

impl Totals {
    /// The total of `filter`: from a current cache entry, or counted (one count per
    /// generation, shared like any load) and stored under the lookup's ticket. `None`
    /// when the cache cannot be asked, so the caller reads total and page together.
    ///
    /// The entry's scope is made stale by every write that moves a business into or
    /// out of the filter's list (`keys::scopes_of`), so a total found current counts
    /// every write answered before this lookup, as a page entry would show it.
    async fn get(
        &self,
        repo: &Arc<dyn Repository>,
        filter: &BusinessFilter,
    ) -> Result<Option<i64>, RepoError> {
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
struct IdPage {
    meta: Bytes,
    ids: Vec<i32>,
}

impl IdPage {
    fn encode(&self) -> Bytes {
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
    fn decode(value: &Bytes, verified: bool) -> Option<Self> {
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
fn page_members(value: &[u8]) -> Option<Vec<Key>> {
    let page = IdPage::decode(&Bytes::copy_from_slice(value), false)?;
    Some(page.ids.iter().map(|&id| keys::row(id)).collect())
}

fn page_meta(total: i64, q: &ListQuery) -> Result<Bytes, RepoError> {
    serde_json::to_vec(&PageMeta::new(total, q.page, q.limit))
        .map(Bytes::from)
        .map_err(|e| RepoError::Internal(format!("cannot encode a page: {e}")))
}

/// `{"data":[rows],"meta":meta}`, as `BusinessPage` serializes, from the parts' bytes.
fn page_json(meta: &[u8], rows: &[Bytes]) -> Bytes {
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

#[async_trait]
impl Repository for CachedRepository {
    async fn stats(&self) -> Result<Fetched<Stats>, RepoError> {
        if !self.cache.is_enabled() {
            return self.inner.stats().await;
        }
        let load = || load(|repo: Arc<dyn Repository>| Box::pin(async move { repo.stats().await }));
        static STATS: LazyLock<Key> = LazyLock::new(keys::stats);
        self.read(&STATS, self.ttls.stats, load).await
    }

    async fn list_businesses(&self, query: &ListQuery) -> Result<Fetched<BusinessPage>, RepoError> {
        if !self.cache.is_enabled() {
            return self.inner.list_businesses(query).await;
        }
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
                let fetched = self.assemble(&key, query, &page, &members, true).await?;
                if let (CacheStatus::Hit, Body::Json(body)) = (&fetched.cache, &fetched.body) {
                    self.pages.keep(key.name(), value, members, body.clone());
                }
                Ok(fetched)
            }
            IndexRead::Found {
                value,
                members,
                hit: false,
            } => {
                let page = IdPage::decode(&value, false)
                    .ok_or_else(|| RepoError::Internal("a list page that is not one".into()))?;
                self.assemble(&key, query, &page, &members, false).await
            }
            IndexRead::Unavailable => self.bypass(&key, self.page_load(query)).await,
        }
    }

    async fn count_businesses(&self, filter: &BusinessFilter) -> Result<i64, RepoError> {
        if !self.cache.is_enabled() {
            return self.inner.count_businesses(filter).await;
        }
        match self.totals().get(&self.inner, filter).await? {
            Some(total) => Ok(total),
            None => self.inner.count_businesses(filter).await,
        }
    }

    async fn list_page(
        &self,
        query: &ListQuery,
        total: i64,
    ) -> Result<Fetched<BusinessPage>, RepoError> {
        // The caller vouches for the total; nothing here is worth caching under it.
        self.inner.list_page(query, total).await
    }

    async fn page_ids(&self, query: &ListQuery, total: i64) -> Result<Vec<i32>, RepoError> {
        self.inner.page_ids(query, total).await
    }

    async fn listed_rows(&self, ids: &[i32]) -> Result<Vec<BusinessWithContacts>, RepoError> {
        self.inner.listed_rows(ids).await
    }

    async fn business_detail(&self, id: i32) -> Result<Fetched<BusinessDetail>, RepoError> {
        if !self.cache.is_enabled() {
            return self.inner.business_detail(id).await;
        }
        let load = move || {
            load(move |repo: Arc<dyn Repository>| {
                Box::pin(async move { repo.business_detail(id).await })
            })
        };
        self.read(&keys::detail(id), self.ttls.detail, load).await
    }

    async fn create_business(&self, new: NewBusiness) -> Result<Business, RepoError> {
        let b = self.inner.create_business(new).await?;
        self.changed(&invalidation::created(&b)).await;
        Ok(b)
    }

    async fn update_business(&self, id: i32, patch: BusinessPatch) -> Result<Business, RepoError> {
        let moves = patch.city.is_some() || patch.industry.is_some();
        let b = self.inner.update_business(id, patch).await?;
        self.changed(&invalidation::updated(&b, moves)).await;
        Ok(b)
    }

    async fn delete_business(&self, id: i32) -> Result<(), RepoError> {
        self.inner.delete_business(id).await?;
        self.changed(&invalidation::deleted(id)).await;
        Ok(())
    }

    async fn enrich(&self, id: i32, run: EnrichmentRun) -> Result<BusinessDetail, RepoError> {
        let d = self.inner.enrich(id, run).await?;
        self.changed(&invalidation::enriched(&d.business)).await;
        Ok(d)
    }

    async fn create_contact(
        &self,
        business_id: i32,
        new: NewContact,
    ) -> Result<Contact, RepoError> {
        let c = self.inner.create_contact(business_id, new).await?;
        self.changed(&invalidation::contact(business_id)).await;
        Ok(c)
    }

    async fn delete_contact(&self, id: i32) -> Result<Contact, RepoError> {
        let c = self.inner.delete_contact(id).await?;
        self.changed(&invalidation::contact(c.business_id)).await;
        Ok(c)
    }

    async fn create_message(
        &self,
        business_id: i32,
        new: NewMessage,
    ) -> Result<OutreachMessage, RepoError> {
        let m = self.inner.create_message(business_id, new).await?;
        self.changed(&invalidation::message(business_id)).await;
        Ok(m)
    }

    async fn update_message_status(
        &self,
        id: i32,
        update: MessageStatusUpdate,
    ) -> Result<OutreachMessage, RepoError> {
        let m = self.inner.update_message_status(id, update).await?;
        self.changed(&invalidation::message(m.business_id)).await;
        Ok(m)
    }

    async fn health(&self) -> Health {
        let (inner, cache) = tokio::join!(self.inner.health(), self.cache.health());
        let near_tier = match self.cache.near_tier() {
            CacheHealth::Disabled => None,
            near => Some(near.as_str()),
        };
        let change_feed = match self.feed.load(Ordering::Relaxed) {
            FEED_UP => Some("up"),
            FEED_DOWN => Some("down"),
            _ => None,
        };
        Health {
            cache: cache.as_str(),
            near_tier,
            change_feed,
            ..inner
        }
    }
}
