//! `letip_write_key`: the key every write is stored under, with its answer, in the
//! write's own transaction (migration `write_keys`).
//!
//! A client's key (`Idempotency-Key`) makes a repeat answer the first answer. Every
//! row also carries the mark of the request that stored it, and the server's own key
//! (a UUID, for a write sent without one) is one per request: either settles a write
//! whose COMMIT got no answer. Another session inserts the same key, which waits while
//! the first transaction is still running and conflicts once it has committed; the
//! row's mark says whether that commit was this request's, so the answer is known
//! rather than guessed.

use std::time::Duration;

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Bool, Double, SmallInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use letip_domain::{Once, Replay, RepoError, RepoResult, WriteKey};

/// How long the server's own keys are kept: far longer than it takes to settle a write
/// whose COMMIT got no answer (the next connection, a few seconds at most).
pub(super) const OWN_KEY_TTL: Duration = Duration::from_secs(600);

/// The key a write is stored under.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) key: String,
    pub(super) client: bool,
    /// This request's own mark on the row it stores.
    pub(super) attempt: String,
    pub(super) fingerprint: String,
    pub(super) status: i16,
}

impl Record {
    pub(super) fn client(k: &WriteKey) -> Self {
        Self {
            key: k.key.clone(),
            client: true,
            attempt: uuid::Uuid::new_v4().to_string(),
            fingerprint: k.fingerprint.clone(),
            status: i16::try_from(k.status).unwrap_or(0),
        }
    }

    /// A key of the server's own, for a write sent without one.
    pub(super) fn own() -> Self {
        Self {
            key: uuid::Uuid::new_v4().to_string(),
            client: false,
            attempt: uuid::Uuid::new_v4().to_string(),
            fingerprint: String::new(),
            status: 0,
        }
    }
}

/// A stored client key still within its lifetime.
#[derive(Debug, QueryableByName)]
pub(super) struct Stored {
    #[diesel(sql_type = Text)]
    pub(super) fingerprint: String,
    #[diesel(sql_type = SmallInt)]
    pub(super) status: i16,
    #[diesel(sql_type = Text)]
    pub(super) answer: String,
}

impl Stored {
    /// The stored answer when `key` is the same request again; refused when it is
    /// another one.
    pub(super) fn replay_for(self, key: &WriteKey) -> RepoResult<Once> {
        if self.fingerprint != key.fingerprint {
            return Err(RepoError::KeyReused);
        }
        Ok(Once::Replayed(Replay {
            status: u16::try_from(self.status).unwrap_or(200),
            json: self.answer,
        }))
    }
}

const STORED_SQL: &str = "SELECT fingerprint, status, answer FROM letip_write_key \
     WHERE key = $1 AND client AND created_at > now() - make_interval(secs => $2)";

/// The client key `key` as stored within `ttl`, if it is.
pub(super) async fn stored(
    conn: &mut AsyncPgConnection,
    key: &str,
    ttl: Duration,
) -> QueryResult<Option<Stored>> {
    diesel::sql_query(STORED_SQL)
        .bind::<Text, _>(key)
        .bind::<Double, _>(ttl.as_secs_f64())
        .get_result(conn)
        .await
        .optional()
}

/// Takes the transaction-long lock of a client key: `false` while another transaction
/// holds it (a write with the same key is running).
pub(super) async fn lock(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    let row: Locked = diesel::sql_query(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('letip_write_key:' || $1, 0)) AS locked",
    )
    .bind::<Text, _>(key)
    .get_result(conn)
    .await?;
    Ok(row.locked)
}

/// Stores `record` with `answer` in the caller's transaction, over an expired row of
/// the same key.
pub(super) async fn record(
    conn: &mut AsyncPgConnection,
    record: &Record,
    answer: &str,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO letip_write_key (key, client, attempt, fingerprint, status, answer) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client, key) DO UPDATE SET \
         attempt = EXCLUDED.attempt, fingerprint = EXCLUDED.fingerprint, \
         status = EXCLUDED.status, answer = EXCLUDED.answer, created_at = now()",
    )
    .bind::<Text, _>(&record.key)
    .bind::<Bool, _>(record.client)
    .bind::<Text, _>(&record.attempt)
    .bind::<Text, _>(&record.fingerprint)
    .bind::<SmallInt, _>(record.status)
    .bind::<Text, _>(answer)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the transaction of `record`'s attempt committed, once it has ended: its stored
/// answer if it did, `None` if it did not (it rolled back, or never reached its COMMIT).
/// The probe inserts the key itself in a transaction it rolls back: the insert waits
/// while the first transaction still holds the key, and conflicts once a row of the key
/// is committed; the row is this attempt's only if it carries its mark (an older row of
/// the key, expired or another request's, is not). It waits at most 5 s for a first
/// transaction that neither commits nor ends (a client gone in a network partition).
pub(super) async fn settle(
    conn: &mut AsyncPgConnection,
    record: &Record,
) -> QueryResult<Option<String>> {
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        attempt: String,
        #[diesel(sql_type = Text)]
        answer: String,
    }
    /// How the probe's transaction ends: always rolled back, with what it found.
    enum Probe {
        Found(Option<String>),
        Failed(DieselError),
    }
    impl From<DieselError> for Probe {
        fn from(e: DieselError) -> Self {
            Self::Failed(e)
        }
    }
    let ended = conn
        .transaction(async |c| {
            diesel::sql_query("SET LOCAL lock_timeout = '5s'")
                .execute(c)
                .await?;
            let inserted: Inserted = diesel::sql_query(
                "WITH probe AS (INSERT INTO letip_write_key \
                 (key, client, attempt, fingerprint, status, answer) \
                 VALUES ($1, $2, '', '', 0, '') \
                 ON CONFLICT (client, key) DO NOTHING RETURNING 1) \
                 SELECT count(*) AS n FROM probe",
            )
            .bind::<Text, _>(&record.key)
            .bind::<Bool, _>(record.client)
            .get_result(c)
            .await?;
            if inserted.n > 0 {
                return Err::<(), _>(Probe::Found(None));
            }
            let row: Row = diesel::sql_query(
                "SELECT attempt, answer FROM letip_write_key WHERE key = $1 AND client = $2",
            )
            .bind::<Text, _>(&record.key)
            .bind::<Bool, _>(record.client)
            .get_result(c)
            .await?;
            Err(Probe::Found(
                (row.attempt == record.attempt).then_some(row.answer),
            ))
        })
        .await;
    match ended {
        Err(Probe::Found(found)) => Ok(found),
        Err(Probe::Failed(e)) => Err(e),
        Ok(()) => Ok(None),
    }
}

/// Deletes the keys past their lifetime: clients' after `client_ttl`, the server's own
/// after [`OWN_KEY_TTL`]. Answers how many went.
pub(super) async fn prune(
    conn: &mut AsyncPgConnection,
    client_ttl: Duration,
) -> QueryResult<usize> {
    let own = diesel::sql_query(
        "DELETE FROM letip_write_key WHERE NOT client \
         AND created_at < now() - make_interval(secs => $1)",
    )
    .bind::<Double, _>(OWN_KEY_TTL.as_secs_f64())
    .execute(conn)
    .await?;
    let clients = diesel::sql_query(
        "DELETE FROM letip_write_key WHERE client \
         AND created_at < now() - make_interval(secs => $1)",
    )
    .bind::<Double, _>(client_ttl.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(own + clients)
}
