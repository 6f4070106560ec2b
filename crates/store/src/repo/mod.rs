//! [`PgStore`]: the repository port on PostgreSQL.
//!
//! Reads that need more than one statement run in one REPEATABLE READ, READ ONLY
//! transaction, so a page and its total (or a business and its children) come from one
//! snapshot. Every write that touches several rows runs in one transaction.
//!
//! `errors.rs` tells which failures may be retried; `queries.rs` holds the reads' SQL,
//! row types and decoding; `writes.rs` the statements of each write; `keys.rs` the key
//! every write is stored under (a client's `Idempotency-Key`, or the server's own), which
//! makes each write happen once; `reconcile.rs` the stats counters' correction.

mod errors;
mod keys;
mod queries;
mod reconcile;

pub(crate) use errors::queried;
pub(crate) use reconcile::STATS_LOCK;
mod writes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use letip_domain::RepoResult;
use letip_domain::{
    BusinessDetail, BusinessFilter, BusinessPage, BusinessWithContacts, Cause, Entity, Fetched,
    Health, ListQuery, Mutated, Mutation, Once, RepoError, Repository, Stats, WriteKey,
};

use crate::db::{PgConn, PgPool};
use crate::replicas::Replicas;
use futures_util::future::BoxFuture;

use errors::*;
use queries::*;

/// The PostgreSQL repository.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Where reads outside writes may go when they need not wait (see [`Replicas`]).
    replicas: Option<Arc<Replicas>>,
    /// How long a client's write key answers repeats.
    key_ttl: Duration,
}

/// How long a client's write key answers repeats unless told otherwise: a day, as
/// Stripe keeps them.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(86_400);

/// What a write's transaction came to.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per write, moved once, never kept in a collection"
)]
enum Step {
    Done(Mutated),
    /// Refused by what is stored (a record it names is missing): nothing was written.
    Refused(RepoError),
    /// The client's key is held by a write still running.
    Busy,
    /// The client's key was stored by an earlier write.
    Stored(keys::Stored),
}

/// A failure that may have committed: the call's way of finding out (see
/// [`PgStore::run_settled`]).
type Settle<'a, T> = &'a (dyn Fn() -> BoxFuture<'a, RepoResult<Option<T>>> + Send + Sync);

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            replicas: None,
            key_ttl: DEFAULT_KEY_TTL,
        }
    }

    /// Serves reads outside writes from `replicas` whenever one has replayed every write
    /// answered before the read began; writes, and the reads inside them, stay on the
    /// primary.
    #[must_use]
    pub fn with_replicas(mut self, replicas: Arc<Replicas>) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// Keeps clients' write keys (`Idempotency-Key`) for `ttl`.
    #[must_use]
    pub fn with_key_ttl(mut self, ttl: Duration) -> Self {
        self.key_ttl = ttl;
        self
    }

    /// Whether this request's write `m`, stored under `record`, committed (see
    /// `keys::settle`): its answer if it did, `None` if it did not and may run again.
    fn settle_write<'a>(
        &'a self,
        m: &'a Mutation,
        record: &'a keys::Record,
    ) -> BoxFuture<'a, RepoResult<Option<Step>>> {
        Box::pin(async move {
            let answer = self
                .run(Op::Read, || async |conn| keys::settle(conn, record).await)
                .await?;
            answer
                .map(|json| Mutated::from_json(m.answer_kind(), &json).map(Step::Done))
                .transpose()
                .map_err(|e| RepoError::Internal(Cause::new(e)))
        })
    }

    /// Deletes the write keys past their lifetime; answers how many went.
    pub async fn prune_keys(&self) -> RepoResult<usize> {
        let ttl = self.key_ttl;
        self.run(Op::Read, || async |conn| keys::prune(conn, ttl).await)
            .await
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn conn(&self) -> RepoResult<PgConn> {
        self.pool
            .get()
            .await
            .map_err(|e| RepoError::Unavailable(Cause::new(e)))
    }

    /// Runs the read `make` makes on a replica that has replayed every write answered
    /// before now, or else on the primary (see [`Self::run`]). A read that fails on a
    /// replica runs again on the primary.
    async fn read<T, F, M>(&self, make: M) -> RepoResult<T>
    where
        M: Fn() -> F + Send,
        for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> QueryResult<T>
            + ConnCall<&'r mut AsyncPgConnection, QueryResult<T>, Fut: Send>
            + Send,
        T: Send,
    {
        if let Some(replicas) = &self.replicas
            && let Some(mut conn) = replicas.connection(Instant::now()).await
        {
            let call = make();
            match call(&mut conn).await {
                Ok(answer) => {
                    Replicas::served();
                    return Ok(answer);
                }
                Err(e) => {
                    if is_lost(&e) {
                        drop(PgConn::take(conn));
                    }
                    Replicas::failed(&e);
                }
            }
        }
        self.run(Op::Read, make).await
    }

    /// Runs the call `make` makes on a pooled connection (see [`Self::run_settled`]).
    async fn run<T, F, M>(&self, op: Op, make: M) -> RepoResult<T>
    where
        M: Fn() -> F + Send,
        for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> QueryResult<T>
            + ConnCall<&'r mut AsyncPgConnection, QueryResult<T>, Fut: Send>
            + Send,
        T: Send,
    {
        self.run_settled(op, make, None).await
    }

    /// Runs the call `make` makes on a pooled connection. A connection that turns out to
    /// be dead (its session was ended while it sat in the pool) is thrown away and a new
    /// call runs on a new one, when [`retryable`] allows, until every pooled connection
    /// could have been replaced. A write whose connection was lost after its COMMIT was
    /// sent may have committed or not: `settle` finds out which (the write's key, see
    /// `keys.rs`), answering what it committed, or `None` for a write that did not and
    /// runs again.
    async fn run_settled<T, F, M>(
        &self,
        op: Op,
        make: M,
        settle: Option<Settle<'_, T>>,
    ) -> RepoResult<T>
    where
        M: Fn() -> F + Send,
        for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> QueryResult<T>
            + ConnCall<&'r mut AsyncPgConnection, QueryResult<T>, Fut: Send>
            + Send,
        T: Send,
    {
        let mut attempt = 1;
        let budget = self.pool.status().max_size + EXTRA_ATTEMPTS;
        loop {
            let mut conn = match self.pool.get().await {
                Ok(conn) => conn,
                Err(e) if attempt < budget && lost_while_connecting(&e) => {
                    tracing::debug!(error = %e, "lost a new database connection; opening another");
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(RepoError::Unavailable(Cause::new(e))),
            };
            let call = make();
            // Set once the write's statements have succeeded: what fails after that
            // failed at its COMMIT.
            let committing = AtomicBool::new(false);
            let flag = &committing;
            let outcome = match op {
                Op::Read => call(&mut conn).await,
                Op::Write => {
                    conn.transaction(async move |c| {
                        let done = call(c).await;
                        AtomicBool::store(flag, done.is_ok(), AtomicOrdering::Relaxed);
                        done
                    })
                    .await
                }
            };
            let committing = AtomicBool::load(&committing, AtomicOrdering::Relaxed);
            match outcome {
                // Failed at its COMMIT: settled by its key whatever the error says (a
                // session ended at commit may have committed locally first).
                Err(e)
                    if attempt < budget
                        && op == Op::Write
                        && committing
                        && settle.is_some()
                        && (is_lost(&e) || retryable(&e, op, committing)) =>
                {
                    drop(PgConn::take(conn));
                    tracing::warn!(error = %e, "lost a database connection at COMMIT; settling the write by its key");
                    match settle {
                        Some(settle) => match settle().await {
                            Ok(Some(done)) => return Ok(done),
                            Ok(None) => attempt += 1,
                            Err(e) => return Err(unsettled(e)),
                        },
                        None => return Err(unsettled(db_error(e))),
                    }
                }
                Err(e) if attempt < budget && retryable(&e, op, committing) => {
                    tracing::debug!(error = %e, "lost a database connection; retrying on a new one");
                    drop(PgConn::take(conn));
                    attempt += 1;
                }
                // The database went away at its COMMIT and no attempt is left to settle
                // it: it may have committed.
                Err(e) if op == Op::Write && committing => return Err(unsettled(db_error(e))),
                result => return result.map_err(db_error),
            }
        }
    }
}

/// A write's failure at its COMMIT that could not be settled: an unreachable database
/// leaves it unknown whether it committed.
fn unsettled(e: RepoError) -> RepoError {
    match e {
        RepoError::Unavailable(cause) => RepoError::Unsettled(cause),
        other => other,
    }
}

#[async_trait]
impl Repository for PgStore {
    async fn stats(&self) -> RepoResult<Fetched<Stats>> {
        queried("stats", 1);
        let r: StatsRow = self
            .read(|| async |conn| diesel::sql_query(STATS_SQL).get_result(conn).await)
            .await?;
        Ok(Fetched::bypass(Stats {
            total_businesses: r.total_businesses,
            enriched_businesses: r.enriched_businesses,
            pending_enrichment: r.pending_enrichment,
            total_contacts: r.total_contacts,
            messages_sent: r.messages_sent,
            messages_pending: r.messages_pending,
        }))
    }

    async fn list_businesses(&self, query: &ListQuery) -> RepoResult<Fetched<BusinessPage>> {
        let (total, (rows, contacts, statements)) = self
            .read(|| {
                async |conn| {
                    conn.build_transaction()
                        .repeatable_read()
                        .read_only()
                        .run(async |conn| {
                            let total = count_filtered(conn, &query.filter).await?;
                            let page = load_page(conn, query, total).await?;
                            Ok::<_, DieselError>((total, page))
                        })
                        .await
                }
            })
            .await?;
        queried("list", 1 + statements);
        page_from_rows(query, total, rows, contacts)
    }

    async fn count_businesses(&self, filter: &BusinessFilter) -> RepoResult<i64> {
        queried("count", 1);
        self.read(|| async |conn| count_filtered(conn, filter).await)
            .await
    }

    async fn list_page(&self, query: &ListQuery, total: i64) -> RepoResult<Fetched<BusinessPage>> {
        let (rows, contacts, statements) = self
            .read(|| {
                async |conn| {
                    conn.build_transaction()
                        .repeatable_read()
                        .read_only()
                        .run(async |conn| load_page(conn, query, total).await)
                        .await
                }
            })
            .await?;
        queried("list", statements);
        page_from_rows(query, total, rows, contacts)
    }

    async fn page_ids(&self, query: &ListQuery, total: i64) -> RepoResult<Vec<i32>> {
        if query.offset() < total {
            queried("page_ids", 1);
        }
        self.read(|| async |conn| load_page_ids(conn, query, total).await)
            .await
    }

    async fn listed_rows(&self, ids: &[i32]) -> RepoResult<Vec<BusinessWithContacts>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        queried("rows", 1);
        self.read(|| async |conn| load_listed(conn, ids).await)
            .await
    }

    async fn business_detail(&self, id: i32) -> RepoResult<Fetched<BusinessDetail>> {
        queried("detail", 1);
        let rows = self
            .read(|| async |conn| load_detail(conn, id).await)
            .await?;
        let rows = rows.ok_or(RepoError::not_found(Entity::Business, id))?;
        Ok(Fetched::bypass(detail_from_rows(rows)))
    }

    async fn write(&self, mutation: Mutation, key: Option<&WriteKey>) -> RepoResult<Once> {
        let ttl = self.key_ttl;
        if let Some(k) = key {
            let found = self
                .run(Op::Read, || {
                    async |conn| keys::stored(conn, &k.key, ttl).await
                })
                .await?;
            if let Some(stored) = found {
                return stored.replay_for(k);
            }
        }
        let record = key.map_or_else(keys::Record::own, keys::Record::client);
        let (op, statements) = writes::counted(&mutation);
        queried(op, statements + 1);
        let (m, r) = (&mutation, &record);
        let settle = || self.settle_write(m, r);
        let step = self
            .run_settled(
                Op::Write,
                || {
                    async |conn| {
                        if r.client {
                            if !keys::lock(conn, &r.key).await? {
                                return Ok(Step::Busy);
                            }
                            if let Some(stored) = keys::stored(conn, &r.key, ttl).await? {
                                return Ok(Step::Stored(stored));
                            }
                        }
                        match writes::apply(conn, m).await? {
                            Ok(done) => {
                                let answer = done
                                    .to_json()
                                    .map_err(|e| DieselError::SerializationError(Box::new(e)))?;
                                keys::record(conn, r, &answer).await?;
                                Ok(Step::Done(done))
                            }
                            Err(refused) => Ok(Step::Refused(refused)),
                        }
                    }
                },
                Some(&settle),
            )
            .await?;
        match step {
            Step::Done(done) => Ok(Once::Done(done)),
            Step::Refused(e) => Err(e),
            Step::Busy => Err(RepoError::KeyInFlight),
            Step::Stored(stored) => match key {
                Some(k) => stored.replay_for(k),
                None => Err(RepoError::KeyReused),
            },
        }
    }

    async fn reconcile_stats(&self) -> RepoResult<u32> {
        self.run(Op::Read, || async |conn| reconcile::run(conn).await)
            .await
    }

    async fn health(&self) -> Health {
        let ping = async {
            let mut conn = self.conn().await.ok()?;
            diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
        };
        let database = tokio::time::timeout(Duration::from_secs(2), ping)
            .await
            .ok()
            .flatten()
            .is_some();
        Health {
            database,
            cache: "disabled",
            near_tier: None,
            change_feed: None,
            replicas: self
                .replicas
                .as_ref()
                .map(|r| r.health())
                .unwrap_or_default(),
        }
    }
}
