//! [`Probe`]: a repository wrapper that counts reads and can hold one detail read between
//! its database read and its return, to replay races deterministically.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use letip_domain::RepoResult;
use letip_domain::{
    BusinessDetail, BusinessFilter, BusinessPage, BusinessWithContacts, Fetched, Health, ListQuery,
    Mutation, Once, Repository, Stats, WriteKey,
};
use tokio::sync::{Mutex, oneshot};

/// A pause armed for the next detail read: it reports when its database read is done,
/// then waits to be released.
#[derive(Debug)]
struct Pause {
    read_done: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// Counts the reads that reach the database.
#[derive(Debug)]
pub struct Probe {
    inner: Arc<dyn Repository>,
    pub stats_reads: AtomicUsize,
    /// List page reads (or reads of a page's ids), whether they count their total or are
    /// given it.
    pub list_reads: AtomicUsize,
    /// Counts of a filter's total made on their own.
    pub count_reads: AtomicUsize,
    pub detail_reads: AtomicUsize,
    /// Reads of listed rows by id (a page's rows that the cache did not hold).
    pub row_reads: AtomicUsize,
    pause: Mutex<Option<Pause>>,
}

/// The two ends of an armed pause, for the test.
#[derive(Debug)]
pub struct PauseHandle {
    pub read_done: oneshot::Receiver<()>,
    pub release: oneshot::Sender<()>,
}

impl Probe {
    pub fn new(inner: Arc<dyn Repository>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            stats_reads: AtomicUsize::new(0),
            list_reads: AtomicUsize::new(0),
            count_reads: AtomicUsize::new(0),
            detail_reads: AtomicUsize::new(0),
            row_reads: AtomicUsize::new(0),
            pause: Mutex::new(None),
        })
    }

    /// Holds the next detail read after it has read the database.
    pub async fn pause_next_detail(&self) -> PauseHandle {
        let (done_tx, done_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.pause.lock().await = Some(Pause {
            read_done: done_tx,
            release: release_rx,
        });
        PauseHandle {
            read_done: done_rx,
            release: release_tx,
        }
    }

    pub fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Repository for Probe {
    async fn stats(&self) -> RepoResult<Fetched<Stats>> {
        self.stats_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.stats().await
    }

    async fn list_businesses(&self, query: &ListQuery) -> RepoResult<Fetched<BusinessPage>> {
        self.list_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.list_businesses(query).await
    }

    async fn count_businesses(&self, filter: &BusinessFilter) -> RepoResult<i64> {
        self.count_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.count_businesses(filter).await
    }

    async fn list_page(&self, query: &ListQuery, total: i64) -> RepoResult<Fetched<BusinessPage>> {
        self.list_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.list_page(query, total).await
    }

    async fn page_ids(&self, query: &ListQuery, total: i64) -> RepoResult<Vec<i32>> {
        self.list_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.page_ids(query, total).await
    }

    async fn listed_rows(&self, ids: &[i32]) -> RepoResult<Vec<BusinessWithContacts>> {
        self.row_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.listed_rows(ids).await
    }

    async fn business_detail(&self, id: i32) -> RepoResult<Fetched<BusinessDetail>> {
        self.detail_reads.fetch_add(1, Ordering::SeqCst);
        let read = self.inner.business_detail(id).await;
        let pause = self.pause.lock().await.take();
        if let Some(p) = pause {
            let _ = p.read_done.send(());
            let _ = p.release.await;
        }
        read
    }

    async fn write(&self, mutation: Mutation, key: Option<&WriteKey>) -> RepoResult<Once> {
        self.inner.write(mutation, key).await
    }

    async fn reconcile_stats(&self) -> RepoResult<u32> {
        self.inner.reconcile_stats().await
    }

    async fn health(&self) -> Health {
        self.inner.health().await
    }
}
