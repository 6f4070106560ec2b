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
//!
//! `lists.rs` holds the list family: pages as index entries of ids, rows, totals.

mod lists;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use letip_cache::{Cache, CacheAside, CacheHealth, Key, LoadError, Loaded, Source, StaleConfig};
use letip_domain::RepoResult;
use letip_domain::{
    Body, BusinessDetail, BusinessFilter, BusinessPage, BusinessWithContacts, CacheStatus, Cause,
    Change, FeedEvent, Fetched, Health, ListQuery, Mutated, Mutation, Once, RepoError, Repository,
    Stats, WriteKey,
};
use serde::Serialize;
use serde::de::IgnoredAny;

use crate::pages::Pages;
use crate::written::{Sent, WriteHook, Written};
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
    /// Run after each write's invalidation, in order.
    hooks: Vec<Arc<dyn WriteHook>>,
}

const FEED_NONE: u8 = 0;
const FEED_UP: u8 = 1;
const FEED_DOWN: u8 = 2;

type Load = Box<dyn FnOnce(Arc<dyn Repository>) -> BoxFuture<'static, RepoResult<Bytes>> + Send>;

/// Loads a read from the inner repository as JSON bytes.
fn load<T, F>(read: F) -> Load
where
    T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce(Arc<dyn Repository>) -> BoxFuture<'static, RepoResult<Fetched<T>>> + Send + 'static,
{
    Box::new(move |repo| {
        Box::pin(async move {
            read(repo)
                .await?
                .into_json()
                .map_err(|e| RepoError::Internal(Cause::new(e)))
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
        Source::Stale { age } => CacheStatus::Stale { age },
    };
    fetched(loaded.value, status)
}

/// A shared load's failure as the repository's: the load's own error, or an internal
/// one if its task ended without a result.
fn repo_error(e: LoadError<RepoError>) -> RepoError {
    match e {
        LoadError::Load(e) => e,
        LoadError::Aborted(why) => RepoError::Internal(Cause::msg(format!("load failed: {why}"))),
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
            hooks: Vec::new(),
        }
    }

    /// Runs `hook` after each write, once the cache no longer holds what it changed.
    #[must_use]
    pub fn with_hook(mut self, hook: Arc<dyn WriteHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Fail-safe reads: while the inner repository answers `Unavailable`, a read whose
    /// entry's TTL ran out is answered with the value this process last stored for it
    /// (as [`CacheStatus::Stale`]) for up to `config.grace` past the TTL, if the cache
    /// shows nothing was written to it since: stats, details, and list pages whose
    /// index and every row were kept.
    #[must_use]
    pub fn with_stale(mut self, config: StaleConfig) -> Self {
        self.aside = Arc::new(
            CacheAside::new(self.cache.clone())
                .check_hits_with(is_json)
                .serve_stale(config, |e| matches!(e, RepoError::Unavailable(_))),
        );
        self
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

    /// Reads through the source of truth when the cache cannot be asked, or for reads
    /// not cached: concurrent reads of a key share only a load that had not started when
    /// they arrived, so each sees every write answered before it began, on any instance.
    async fn bypass<T>(&self, key: &Key, load: Load) -> RepoResult<Fetched<T>> {
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
    ) -> RepoResult<Fetched<T>> {
        let loaded = self
            .aside
            .get_or_load(key, ttl, || load()(self.inner.clone()))
            .await
            .map_err(repo_error)?;
        Ok(answered(loaded))
    }

    /// Makes what a committed mutation changed unreachable in the cache, then runs the
    /// write hooks. A failure is the cache's to remember (it refuses to serve until it
    /// has recovered); the write itself succeeded and is answered as such.
    async fn changed(&self, written: Written<'_>) {
        self.invalidate(&invalidation::of(written), false).await;
        for hook in &self.hooks {
            hook.written(written);
        }
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

#[async_trait]
impl Repository for CachedRepository {
    async fn stats(&self) -> RepoResult<Fetched<Stats>> {
        if !self.cache.is_enabled() {
            return self.inner.stats().await;
        }
        let load = || load(|repo: Arc<dyn Repository>| Box::pin(async move { repo.stats().await }));
        static STATS: LazyLock<Key> = LazyLock::new(keys::stats);
        self.read(&STATS, self.ttls.stats, load).await
    }

    async fn list_businesses(&self, query: &ListQuery) -> RepoResult<Fetched<BusinessPage>> {
        if !self.cache.is_enabled() {
            return self.inner.list_businesses(query).await;
        }
        self.list(query).await
    }

    async fn count_businesses(&self, filter: &BusinessFilter) -> RepoResult<i64> {
        if !self.cache.is_enabled() {
            return self.inner.count_businesses(filter).await;
        }
        match self.totals().get(&self.inner, filter).await? {
            Some(total) => Ok(total),
            None => self.inner.count_businesses(filter).await,
        }
    }

    async fn list_page(&self, query: &ListQuery, total: i64) -> RepoResult<Fetched<BusinessPage>> {
        // The caller vouches for the total; nothing here is worth caching under it.
        self.inner.list_page(query, total).await
    }

    async fn page_ids(&self, query: &ListQuery, total: i64) -> RepoResult<Vec<i32>> {
        self.inner.page_ids(query, total).await
    }

    async fn listed_rows(&self, ids: &[i32]) -> RepoResult<Vec<BusinessWithContacts>> {
        self.inner.listed_rows(ids).await
    }

    async fn business_detail(&self, id: i32) -> RepoResult<Fetched<BusinessDetail>> {
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

    async fn write(&self, mutation: Mutation, key: Option<&WriteKey>) -> RepoResult<Once> {
        let sent = Sent::of(&mutation);
        let once = match self.inner.write(mutation, key).await {
            Ok(once) => once,
            // It may have committed (its COMMIT could not be settled): what it may have
            // changed is dropped, so that a repeat later answered as done is seen. A
            // write refused before its COMMIT (`Unavailable`) changed nothing, and
            // leaves what the cache holds to answer while the database is away.
            Err(e @ RepoError::Unsettled(_)) => {
                self.invalidate(&sent.unsettled, false).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match &once {
            Once::Done(done) => self.changed(sent.written(done)).await,
            // Written before: invalidated then by its writer, unless that writer could
            // not settle it; dropped again, without hooks (no event for a repeat).
            Once::Replayed(replay) => match Mutated::from_json(sent.kind, &replay.json) {
                Ok(done) => {
                    self.invalidate(&invalidation::of(sent.written(&done)), false)
                        .await;
                }
                Err(_) => self.invalidate(&sent.unsettled, false).await,
            },
        }
        Ok(once)
    }

    async fn reconcile_stats(&self) -> RepoResult<u32> {
        let corrected = self.inner.reconcile_stats().await?;
        if corrected > 0
            && let Err(e) = self.cache.invalidate(&[keys::STATS]).await
        {
            tracing::debug!(error = %e, "invalidating the corrected stats failed");
        }
        Ok(corrected)
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
