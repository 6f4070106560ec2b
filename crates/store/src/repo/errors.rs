//! Which failures of a call may be retried, and how they are reported.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use letip_domain::{Cause, RepoError};

use crate::db::PoolError;

/// Counts statements sent to PostgreSQL, by operation, for `/metrics`.
pub(crate) fn queried(op: &'static str, statements: u64) {
    metrics::counter!("letip_db_queries_total", "op" => op).increment(statements);
}

/// The session was ended by the server (an administrator, a restart, a failover).
pub(super) fn is_terminated(message: &str) -> bool {
    message.starts_with("terminating connection")
        || message.contains("server closed the connection")
}

/// The server could not do it now, through no fault of the request: a statement or
/// lock timeout (overload, or a lock held by a session gone quiet), or a server that
/// only reads (a standby after a failover, or one not yet promoted).
fn is_overloaded(message: &str) -> bool {
    message.starts_with("canceling statement due to statement timeout")
        || message.starts_with("canceling statement due to lock timeout")
        || message.contains("in a read-only transaction")
}

pub(super) fn db_error(e: DieselError) -> RepoError {
    match e {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            info,
        ) => RepoError::Unavailable(Cause::msg(info.message())),
        DieselError::DatabaseError(_, ref info)
            if is_terminated(info.message()) || is_overloaded(info.message()) =>
        {
            RepoError::Unavailable(Cause::msg(info.message()))
        }
        other => RepoError::Internal(Cause::new(other)),
    }
}

/// An async closure whose future can be named, so that it can be required to be `Send`
/// for every lifetime of the connection it borrows (as diesel-async's `transaction`
/// does).
pub(super) trait ConnCall<A, R>:
    AsyncFnOnce(A) -> R + FnOnce(A) -> <Self as ConnCall<A, R>>::Fut
{
    type Fut: Future<Output = R>;
}

impl<F, A, Fut, R> ConnCall<A, R> for F
where
    F: AsyncFnOnce(A) -> R + FnOnce(A) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// What a call does: whether it may run again on a new connection, and who commits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Read,
    /// Statements that write, which [`PgStore::run`] runs in one transaction of its own.
    /// A statement outside an explicit transaction is committed only at the protocol's
    /// Sync, after its rows and its CommandComplete have been sent: a session ended in
    /// between (terminated, crashed, failed over) rolls it back after the client read a
    /// success. An explicit COMMIT is answered only once the write is committed.
    Write,
}

/// Whether `e` means the connection was lost such that the call may simply run again:
/// a read always; a write only if it cannot have committed. Before its COMMIT was sent
/// (`committing` false) nothing of it is committed, whatever reached the server. Once
/// the COMMIT was sent, only the server's own answer that it ended the session
/// (`terminating connection`, an error answer to the COMMIT: the transaction was rolled
/// back) is safe to retry. A socket that closed with no answer is ambiguous (the commit
/// may have happened: diesel-async answers every socket failure as "unable to send",
/// sent or not): the write is settled by its key instead ([`is_lost`]).
pub(super) fn retryable(e: &DieselError, op: Op, committing: bool) -> bool {
    match e {
        DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
            _,
        ) => op == Op::Read || !committing,
        DieselError::DatabaseError(_, info) if op == Op::Write && committing => {
            info.message().starts_with("terminating connection")
        }
        DieselError::DatabaseError(_, info) => is_terminated(info.message()),
        _ => false,
    }
}

/// Whether `e` is the connection failing with no answer from the server: the socket
/// closed, or a statement could not be sent. After a COMMIT was sent this is the
/// ambiguous case: the write may or may not have committed.
pub(super) fn is_lost(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
            _,
        )
    )
}

/// Whether the pool failed to hand out a connection because the new session it opened
/// was ended after the server accepted it: terminated before its setup statements ran,
/// or its socket closed during the handshake ("error communicating with the server" is
/// tokio-postgres's I/O error on an established socket). A new attempt opens another. A
/// server that refuses connections ("error connecting to server"), a timeout, or bad
/// credentials fail at once.
pub(super) fn lost_while_connecting(e: &PoolError) -> bool {
    let PoolError::Backend(e) = e else {
        return false;
    };
    let message = e.to_string();
    message.contains("terminating connection")
        || message.contains("server closed the connection")
        || message.contains("error communicating with the server")
        || message.ends_with("connection closed")
}

/// How many more times than the pool has connections a call may run when connections
/// keep turning out dead: all the idle connections of the pool go at once when the
/// server restarts, and each is found dead only when used.
pub(super) const EXTRA_ATTEMPTS: usize = 1;

pub(super) fn is_foreign_key_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    )
}
