//! The cached repository: cache-aside reads in front of any repository, kept fresh by
//! invalidating what each mutation changes before its response is sent.
//!
//! Invalidation table (scopes bumped after the inner mutation committed):
//!
//! | mutation | stats | lists | detail of |
//! |---|---|---|---|
//! | business create | yes | those showing it (8 filter combinations) | (new: nothing cached) |
//! | business update | no (no counter changes) | those showing it; all if city or industry changed | the business |
//! | business delete | yes | all | the business |
//! | enrichment run | yes | those showing it under any status | the business |
//! | contact create | yes | all (lists embed contacts) | its business |
//! | contact delete | yes | all | its business |
//! | message create | yes | none (lists show no messages) | its business |
//! | message status change | yes | none | its business |
//!
//! Freshness: a lookup that misses hands back the scope's generation; the value loaded
//! from the database is stored only if that generation is still current (one atomic
//! check in the cache). A writer bumps the generation after its commit and before its
//! response, so a reader that loaded old data can never store it afterwards, and a read
//! that starts after the response never finds an entry from before the write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use letip_cache::{Cache, Key, Lookup};
use letip_domain::{
    Body, Business, BusinessDetail, BusinessPage, BusinessPatch, CacheStatus, Contact,
    EnrichmentRun, EnrichmentStatus, Fetched, Health, ListQuery, MessageStatusUpdate, NewBusiness,
    NewContact, NewMessage, OutreachMessage, RepoError, Repository, Stats,
};
use serde::Serialize;
use serde::de::IgnoredAny;

use crate::flight::SingleFlight;
use crate::keys;

/// How long a completed load stays shared with readers of the same generation.
const FLIGHT_LINGER: Duration = Duration::from_millis(250);

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
    flights: SingleFlight,
    /// Mutations committed by this process. When the cache cannot be asked, reads share
    /// loads only among those that saw the same count, so none joins a load older than
    /// a write it follows.
    writes: AtomicU64,
}

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

impl CachedRepository {
    pub fn new(inner: Arc<dyn Repository>, cache: Arc<dyn Cache>, ttls: CacheTtls) -> Self {
        Self {
            inner,
            cache,
            ttls,
            flights: SingleFlight::default(),
            writes: AtomicU64::new(0),
        }
    }

    pub fn ttls(&self) -> CacheTtls {
        self.ttls
    }

    /// Reads through the source of truth, sharing the load with concurrent reads of the
    /// same key that saw the same number of local writes.
    async fn bypass<T>(&self, key: &Key, load: Load) -> Result<Fetched<T>, RepoError> {
        let flight = format!(
            "{}#local-{}",
            key.name(),
            self.writes.load(Ordering::Acquire)
        );
        let inner = self.inner.clone();
        let bytes = self
            .flights
            .run(flight, Duration::ZERO, load(inner))
            .await?;
        Ok(fetched(bytes, CacheStatus::Bypass))
    }

    async fn read<T>(&self, key: Key, ttl: Duration, load: Load) -> Result<Fetched<T>, RepoError> {
        let family = key.family();
        match self.cache.get(&key).await {
            Ok(Lookup::Hit(bytes)) => {
                // An entry is only served if it is JSON: a corrupt one costs one database
                // read, never a broken response. A cache that verifies integrity returns
                // exactly what was put (JSON this repository encoded), so the parse is
                // skipped there.
                if self.cache.verifies_integrity()
                    || serde_json::from_slice::<IgnoredAny>(&bytes).is_ok()
                {
                    tracing::debug!(family, "cache hit");
                    return Ok(fetched(bytes, CacheStatus::Hit));
                }
                tracing::warn!(
                    family,
                    key = key.name(),
                    "removing a cache entry that is not JSON"
                );
                letip_cache::metrics::corrupt(family);
                let _ = self.cache.remove(&key).await;
                self.flights.forget_prefix(&format!("{}#gen:", key.name()));
                self.bypass(&key, load).await
            }
            Ok(Lookup::Miss(ticket)) => {
                tracing::debug!(family, "cache miss");
                let flight = format!("{}#gen:{}", key.name(), ticket.generation());
                let (inner, cache) = (self.inner.clone(), self.cache.clone());
                // A caller whose lookup saw this generation may take this load's result
                // even just after it completed: no invalidation has happened since its
                // lookup, so nothing it must see is missing.
                let bytes = self
                    .flights
                    .run(flight, FLIGHT_LINGER, async move {
                        let bytes = load(inner).await?;
                        if let Err(e) = cache.put(&key, &ticket, bytes.clone(), ttl).await {
                            tracing::debug!(family, error = %e, "cache store failed");
                        }
                        Ok(bytes)
                    })
                    .await?;
                Ok(fetched(bytes, CacheStatus::Miss))
            }
            Err(e) => {
                tracing::debug!(family, error = %e, "cache unavailable; reading the database");
                // The entry may have been removed as damaged: a load that lingers for
                // its generation would keep it from being stored again.
                self.flights.forget_prefix(&format!("{}#gen:", key.name()));
                self.bypass(&key, load).await
            }
        }
    }

    async fn changed_all(&self, scopes: &[String]) {
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        self.changed(&scopes).await;
    }

    /// Makes what a committed mutation changed unreachable in the cache. A failure is
    /// the cache's to remember (it refuses to serve until it has recovered); the write
    /// itself succeeded and is answered as such.
    async fn changed(&self, scopes: &[&str]) {
        self.writes.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.cache.invalidate(scopes).await {
            tracing::debug!(?scopes, error = %e, "cache invalidation failed");
        }
    }
}

#[async_trait]
impl Repository for CachedRepository {
    async fn stats(&self) -> Result<Fetched<Stats>, RepoError> {
        if !self.cache.is_enabled() {
            return self.inner.stats().await;
        }
        let load = load(|repo: Arc<dyn Repository>| Box::pin(async move { repo.stats().await }));
        self.read(keys::stats(), self.ttls.stats, load).await
    }

    async fn list_businesses(&self, query: &ListQuery) -> Result<Fetched<BusinessPage>, RepoError> {
        if !self.cache.is_enabled() {
            return self.inner.list_businesses(query).await;
        }
        let q = query.clone();
        let load = load(move |repo: Arc<dyn Repository>| {
            Box::pin(async move { repo.list_businesses(&q).await })
        });
        self.read(keys::list(query), self.ttls.list, load).await
    }

    async fn business_detail(&self, id: i32) -> Result<Fetched<BusinessDetail>, RepoError> {
        if !self.cache.is_enabled() {
            return self.inner.business_detail(id).await;
        }
        let load = load(move |repo: Arc<dyn Repository>| {
            Box::pin(async move { repo.business_detail(id).await })
        });
        self.read(keys::detail(id), self.ttls.detail, load).await
    }

    async fn create_business(&self, new: NewBusiness) -> Result<Business, RepoError> {
        let b = self.inner.create_business(new).await?;
        let mut scopes = keys::lists_showing(
            b.city.as_deref(),
            b.industry.as_deref(),
            &[b.enrichment_status],
        );
        scopes.push(keys::STATS.to_owned());
        self.changed_all(&scopes).await;
        Ok(b)
    }

    async fn update_business(&self, id: i32, patch: BusinessPatch) -> Result<Business, RepoError> {
        // Its old city and industry are not known here: if either changes, so may any list.
        let moves = patch.city.is_some() || patch.industry.is_some();
        let b = self.inner.update_business(id, patch).await?;
        let mut scopes = if moves {
            vec![keys::LIST.to_owned()]
        } else {
            keys::lists_showing(
                b.city.as_deref(),
                b.industry.as_deref(),
                &[b.enrichment_status],
            )
        };
        scopes.push(keys::detail_scope(id));
        self.changed_all(&scopes).await;
        Ok(b)
    }

    async fn delete_business(&self, id: i32) -> Result<(), RepoError> {
        self.inner.delete_business(id).await?;
        self.changed(&[keys::STATS, keys::LIST, &keys::detail_scope(id)])
            .await;
        Ok(())
    }

    async fn enrich(&self, id: i32, run: EnrichmentRun) -> Result<BusinessDetail, RepoError> {
        let d = self.inner.enrich(id, run).await?;
        // The status it had before is not known here: every status's lists that can
        // show it. City and industry do not change.
        let mut scopes = keys::lists_showing(
            d.business.city.as_deref(),
            d.business.industry.as_deref(),
            &EnrichmentStatus::ALL,
        );
        scopes.push(keys::STATS.to_owned());
        scopes.push(keys::detail_scope(id));
        self.changed_all(&scopes).await;
        Ok(d)
    }

    async fn create_contact(
        &self,
        business_id: i32,
        new: NewContact,
    ) -> Result<Contact, RepoError> {
        let c = self.inner.create_contact(business_id, new).await?;
        self.changed(&[keys::STATS, keys::LIST, &keys::detail_scope(business_id)])
            .await;
        Ok(c)
    }

    async fn delete_contact(&self, id: i32) -> Result<Contact, RepoError> {
        let c = self.inner.delete_contact(id).await?;
        self.changed(&[keys::STATS, keys::LIST, &keys::detail_scope(c.business_id)])
            .await;
        Ok(c)
    }

    async fn create_message(
        &self,
        business_id: i32,
        new: NewMessage,
    ) -> Result<OutreachMessage, RepoError> {
        let m = self.inner.create_message(business_id, new).await?;
        self.changed(&[keys::STATS, &keys::detail_scope(business_id)])
            .await;
        Ok(m)
    }

    async fn update_message_status(
        &self,
        id: i32,
        update: MessageStatusUpdate,
    ) -> Result<OutreachMessage, RepoError> {
        let m = self.inner.update_message_status(id, update).await?;
        self.changed(&[keys::STATS, &keys::detail_scope(m.business_id)])
            .await;
        Ok(m)
    }

    async fn health(&self) -> Health {
        let (inner, cache) = tokio::join!(self.inner.health(), self.cache.health());
        Health {
            cache: cache.as_str(),
            ..inner
        }
    }
}
