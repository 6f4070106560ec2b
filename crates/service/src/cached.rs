//! The cached repository: cache-aside reads in front of any repository.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use letip_cache::Cache;
use letip_domain::{
    Business, BusinessDetail, BusinessPage, BusinessPatch, Contact, EnrichmentRun, Fetched, Health,
    ListQuery, MessageStatusUpdate, NewBusiness, NewContact, NewMessage, OutreachMessage,
    RepoError, Repository, Stats,
};

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

/// A repository that answers reads from a cache when it can.
///
/// With a cache that stores nothing ([`letip_cache::NoopCache`]) every read goes to the
/// inner repository and is reported as a bypass.
#[derive(Debug)]
pub struct CachedRepository {
    inner: Arc<dyn Repository>,
    cache: Arc<dyn Cache>,
    ttls: CacheTtls,
}

impl CachedRepository {
    pub fn new(inner: Arc<dyn Repository>, cache: Arc<dyn Cache>, ttls: CacheTtls) -> Self {
        Self { inner, cache, ttls }
    }

    pub fn ttls(&self) -> CacheTtls {
        self.ttls
    }
}

#[async_trait]
impl Repository for CachedRepository {
    async fn stats(&self) -> Result<Fetched<Stats>, RepoError> {
        self.inner.stats().await
    }

    async fn list_businesses(&self, query: &ListQuery) -> Result<Fetched<BusinessPage>, RepoError> {
        self.inner.list_businesses(query).await
    }

    async fn business_detail(&self, id: i32) -> Result<Fetched<BusinessDetail>, RepoError> {
        self.inner.business_detail(id).await
    }

    async fn create_business(&self, new: NewBusiness) -> Result<Business, RepoError> {
        self.inner.create_business(new).await
    }

    async fn update_business(&self, id: i32, patch: BusinessPatch) -> Result<Business, RepoError> {
        self.inner.update_business(id, patch).await
    }

    async fn delete_business(&self, id: i32) -> Result<(), RepoError> {
        self.inner.delete_business(id).await
    }

    async fn enrich(&self, id: i32, run: EnrichmentRun) -> Result<BusinessDetail, RepoError> {
        self.inner.enrich(id, run).await
    }

    async fn create_contact(
        &self,
        business_id: i32,
        new: NewContact,
    ) -> Result<Contact, RepoError> {
        self.inner.create_contact(business_id, new).await
    }

    async fn delete_contact(&self, id: i32) -> Result<Contact, RepoError> {
        self.inner.delete_contact(id).await
    }

    async fn create_message(
        &self,
        business_id: i32,
        new: NewMessage,
    ) -> Result<OutreachMessage, RepoError> {
        self.inner.create_message(business_id, new).await
    }

    async fn update_message_status(
        &self,
        id: i32,
        update: MessageStatusUpdate,
    ) -> Result<OutreachMessage, RepoError> {
        self.inner.update_message_status(id, update).await
    }

    async fn health(&self) -> Health {
        let (inner, cache) = tokio::join!(self.inner.health(), self.cache.health());
        Health {
            cache: cache.as_str(),
            ..inner
        }
    }
}
