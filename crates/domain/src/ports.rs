//! The repository port: everything the HTTP layer asks of storage. The PostgreSQL store
//! implements it, and the cached repository implements it again by wrapping any other
//! implementation, so the two compose and tests can swap either.

use async_trait::async_trait;

use crate::{
    Business, BusinessDetail, BusinessFilter, BusinessPage, BusinessPatch, BusinessWithContacts,
    Contact, EnrichmentRun, Fetched, ListQuery, MessageStatusUpdate, Mutated, Mutation,
    NewBusiness, NewContact, NewMessage, Once, OutreachMessage, Stats, ValidationError, WriteKey,
};

/// The kinds of record a lookup can miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Business,
    Contact,
    Message,
}

impl Entity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Business => "Business",
            Self::Contact => "Contact",
            Self::Message => "Message",
        }
    }
}

/// What a repository call answers.
pub type RepoResult<T> = Result<T, RepoError>;

/// Why a repository call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepoError {
    #[error("{} with id {id} not found", .entity.name())]
    NotFound { entity: Entity, id: i32 },
    /// The input is well-formed but contradicts stored data (a contact of another business).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The write's key was used before with another request (another fingerprint):
    /// nothing was written.
    #[error("this Idempotency-Key was used with another request")]
    KeyReused,
    /// A write with the same key is still running: nothing was written; a repeat once it
    /// is done answers its answer.
    #[error("a request with this Idempotency-Key is still being processed")]
    KeyInFlight,
    /// The database could not be reached or did not answer in time; a write that
    /// fails so was not made.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The database became unreachable while a write's COMMIT was under way, and
    /// whether it committed could not be learned: it may have been made. A repeat with
    /// the write's key tells.
    #[error("database unavailable at commit, the write may have been made: {0}")]
    Unsettled(#[source] Cause),
    /// Anything else: a bug or a broken invariant. Logged, never shown to clients.
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

/// What caused a failure: the underlying error with its chain of sources, for the log.
/// Cheap to clone (one load's failure is shared by every read that joined it).
#[derive(Debug, Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// The cause `e`, whose sources the log shows after its message.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(e))
    }

    /// A cause known only by what it says.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(std::sync::Arc::from(Box::<
            dyn std::error::Error + Send + Sync,
        >::from(message.into())))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl RepoError {
    pub fn not_found(entity: Entity, id: i32) -> Self {
        Self::NotFound { entity, id }
    }
}

/// What a health check found. `cache` is `"disabled"` where no cache is configured.
/// `near_tier` (whether a near tier's invalidation subscription is in place) and
/// `change_feed` (whether the change feed is connected) are `"up"` or `"down"`, and
/// `None` where there is no such thing. `replicas` are the read replicas configured,
/// each as the last check found it (empty without replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub database: bool,
    pub cache: &'static str,
    pub near_tier: Option<&'static str>,
    pub change_feed: Option<&'static str>,
    pub replicas: Vec<ReplicaHealth>,
}

/// A read replica as the last check found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// `host:port`, without credentials.
    pub name: String,
    /// `up` (misses may read it), `lagging` (behind the primary by more than the bound:
    /// left out), `down` (unreachable, or not a standby: left out).
    pub state: &'static str,
    /// How far behind the primary it was, when it answered.
    pub lag_ms: Option<u64>,
}

/// Storage of the lead data. Reads return [`Fetched`] so a cache can say where the answer
/// came from and hand over bytes it already holds.
#[async_trait]
pub trait Repository: Send + Sync + std::fmt::Debug + 'static {
    async fn stats(&self) -> RepoResult<Fetched<Stats>>;
    /// One page of the list, with `meta.total` counted in the same snapshot.
    async fn list_businesses(&self, query: &ListQuery) -> RepoResult<Fetched<BusinessPage>>;
    /// How many businesses `filter` selects: the `meta.total` of its list pages.
    async fn count_businesses(&self, filter: &BusinessFilter) -> RepoResult<i64>;
    /// One page of the list when its total is already known, so that walking many pages
    /// of one filter costs one count, not one per page. `total` must have been counted
    /// after every write the caller must see (a cache entry still current, say); the
    /// rows themselves are read now.
    async fn list_page(&self, query: &ListQuery, total: i64) -> RepoResult<Fetched<BusinessPage>>;
    /// The ids of one list page, in list order, when the filter's total is known (as for
    /// `list_page`). Only the ids are read: an index-only scan.
    async fn page_ids(&self, query: &ListQuery, total: i64) -> RepoResult<Vec<i32>>;
    /// The listed rows (each business with its contacts, as a list page shows it) of
    /// `ids`, in the order of `ids`, read now; an id with no business is left out.
    async fn listed_rows(&self, ids: &[i32]) -> RepoResult<Vec<BusinessWithContacts>>;
    async fn business_detail(&self, id: i32) -> RepoResult<Fetched<BusinessDetail>>;

    /// Makes one write. With `key`, at most once per key: the key and the answer are
    /// stored in the write's transaction, and a repeat answers [`Once::Replayed`] (see
    /// [`WriteKey`]). Without one, a write the repository retries after a lost
    /// connection is still made once. The named writes below call this.
    async fn write(&self, mutation: Mutation, key: Option<&WriteKey>) -> RepoResult<Once>;

    async fn create_business(&self, new: NewBusiness) -> RepoResult<Business> {
        match self.write(Mutation::CreateBusiness(new), None).await? {
            Once::Done(Mutated::Business(b)) => Ok(b),
            other => Err(unexpected(other)),
        }
    }
    async fn update_business(&self, id: i32, patch: BusinessPatch) -> RepoResult<Business> {
        match self
            .write(Mutation::UpdateBusiness { id, patch }, None)
            .await?
        {
            Once::Done(Mutated::Business(b)) => Ok(b),
            other => Err(unexpected(other)),
        }
    }
    async fn delete_business(&self, id: i32) -> RepoResult<()> {
        match self.write(Mutation::DeleteBusiness { id }, None).await? {
            Once::Done(Mutated::Deleted) => Ok(()),
            other => Err(unexpected(other)),
        }
    }
    /// Records one enrichment run in one transaction; answers the business as its detail
    /// shows it afterwards.
    async fn enrich(&self, id: i32, run: EnrichmentRun) -> RepoResult<BusinessDetail> {
        match self.write(Mutation::Enrich { id, run }, None).await? {
            Once::Done(Mutated::Detail(d)) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    async fn create_contact(&self, business_id: i32, new: NewContact) -> RepoResult<Contact> {
        match self
            .write(Mutation::CreateContact { business_id, new }, None)
            .await?
        {
            Once::Done(Mutated::Contact(c)) => Ok(c),
            other => Err(unexpected(other)),
        }
    }
    /// Deletes a contact and answers it as it was, so callers know its business.
    async fn delete_contact(&self, id: i32) -> RepoResult<Contact> {
        match self.write(Mutation::DeleteContact { id }, None).await? {
            Once::Done(Mutated::Contact(c)) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    async fn create_message(
        &self,
        business_id: i32,
        new: NewMessage,
    ) -> RepoResult<OutreachMessage> {
        match self
            .write(Mutation::CreateMessage { business_id, new }, None)
            .await?
        {
            Once::Done(Mutated::Message(m)) => Ok(m),
            other => Err(unexpected(other)),
        }
    }
    async fn update_message_status(
        &self,
        id: i32,
        update: MessageStatusUpdate,
    ) -> RepoResult<OutreachMessage> {
        match self
            .write(Mutation::UpdateMessage { id, update }, None)
            .await?
        {
            Once::Done(Mutated::Message(m)) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// Brings the stats counters back to the counts of the tables (writes made with
    /// triggers disabled leave them off) by adding the difference, and answers how many
    /// counters were off. A repository without counters has nothing to correct.
    async fn reconcile_stats(&self) -> RepoResult<u32> {
        Ok(0)
    }

    async fn health(&self) -> Health;
}

/// A write answered with what another write answers: a broken repository.
fn unexpected(once: Once) -> RepoError {
    RepoError::Internal(Cause::msg(format!("a write answered {once:?}")))
}
