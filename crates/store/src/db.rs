//! Connecting: the pool, creating the database when it is missing, and migrations.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use futures_util::FutureExt;

/// The migrations of `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

pub type PgPool = Pool<AsyncPgConnection>;
pub type PgConn = Object<AsyncPgConnection>;
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

/// Why the database could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid DATABASE_URL: {0}")]
    Url(String),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] ConnectionError),
    #[error("database statement failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migrate(String),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// Limits of the connection pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Most connections open at once.
    pub max_size: usize,
    /// How long a request may wait for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run before PostgreSQL cancels it.
    pub statement_timeout: Duration,
    /// Set as `letip.origin` on every session, so the change announcements of this
    /// pool's writes can be told from others' (see [`crate::changes`]).
    pub origin: Option<uuid::Uuid>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            origin: None,
        }
    }
}

/// Builds a bounded pool. Connections are opened lazily, so this succeeds even when the
/// database is down; requests then fail until it is back.
pub fn pool(database_url: &str, options: PoolOptions) -> Result<PgPool, SetupError> {
    let statement_timeout_ms = options.statement_timeout.as_millis();
    // A UUID needs no quoting.
    let origin = options
        .origin
        .map(|o| format!("; SET letip.origin = '{o}'"))
        .unwrap_or_default();
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    // A connection whose socket closed is dropped by the pool; checking every checkout
    // with a round trip would double the cost of the cheapest queries.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        let origin = origin.clone();
        async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            // JIT compilation costs tens of milliseconds and pays off only for long
            // analytical queries, which this service never runs. The schema's timestamps
            // have no time zone and hold UTC: every statement writes UTC explicitly, and
            // the session's zone is UTC too, so column defaults (`CURRENT_TIMESTAMP`)
            // also store UTC whatever the server's or database's zone is.
            // Every write is answered only once its commit is on disk
            // (`synchronous_commit`, whatever the server's default), which is also what
            // makes the primary's flush position cover it for the read replicas
            // (`replicas.rs`).
            conn.batch_execute(&format!(
                "SET statement_timeout = {statement_timeout_ms}; SET jit = off; \
                 SET synchronous_commit = on; SET TIME ZONE 'UTC'{origin}"
            ))
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(options.max_size)
        .wait_timeout(Some(options.acquire_timeout))
        .create_timeout(Some(options.acquire_timeout))
        .recycle_timeout(Some(options.acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| SetupError::Pool(e.to_string()))
}

/// Splits a database URL into the URL of the `postgres` maintenance database and the
/// name of the database it names.
fn maintenance_url(database_url: &str) -> Result<(String, String), SetupError> {
    let mut url = url::Url::parse(database_url).map_err(|e| SetupError::Url(e.to_string()))?;
    let name = url.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        return Err(SetupError::Url("the URL names no database".into()));
    }
    url.set_path("/postgres");
    Ok((url.to_string(), name))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the database named in `database_url` if it does not exist. Answers whether it
/// was created.
pub async fn ensure_database(database_url: &str) -> Result<bool, SetupError> {
    // Try the database itself first: most starts find it there, and a role without access
    // to `postgres` can still run.
    if AsyncPgConnection::establish(database_url).await.is_ok() {
        return Ok(false);
    }
    let (admin_url, name) = maintenance_url(database_url)?;
    let mut conn = AsyncPgConnection::establish(&admin_url).await?;
    match diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name)))
        .execute(&mut conn)
        .await
    {
        Ok(_) => Ok(true),
        // Another process created it between our two connections.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops a database, ending its sessions first. Used by tests and tools that made it.
pub async fn drop_database(database_url: &str) -> Result<(), SetupError> {
    let (admin_url, name) = maintenance_url(database_url)?;
    let mut conn = AsyncPgConnection::establish(&admin_url).await?;
    diesel::sql_query(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(&name)
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Brings the database to the working schema, on an empty database or on one the
/// original backend made: runs the pending migrations, then builds the missing indexes
/// concurrently (see [`crate::schema_setup`]). Answers how many migrations ran.
///
/// The harness is synchronous, so it runs on a blocking thread over a connection wrapped
/// for sync use; calling it from the async runtime directly would block a worker.
pub async fn migrate(database_url: &str) -> Result<usize, SetupError> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url)?;
        crate::schema_setup::run(&mut conn)
    })
    .await
    .map_err(|e| SetupError::Migrate(e.to_string()))?
}

/// Recounts the dashboard counters from the tables (after writes made with the counting
/// triggers disabled, such as a restore with `session_replication_role = replica`).
/// Writers wait while it counts.
pub async fn recount_stats(database_url: &str) -> Result<(), SetupError> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    // Under the reconcile's lock: a reconcile's difference never lands on a recount.
    conn.transaction(async |c| {
        diesel::sql_query(format!(
            "SELECT pg_advisory_xact_lock({})",
            crate::repo::STATS_LOCK
        ))
        .execute(c)
        .await?;
        diesel::sql_query("SELECT letip_recount_stats()")
            .execute(c)
            .await
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maintenance_url_keeps_credentials_and_options() {
        let (url, name) =
            maintenance_url("postgres://u:p@db:5433/letip?sslmode=disable").expect("valid");
        assert_eq!(url, "postgres://u:p@db:5433/postgres?sslmode=disable");
        assert_eq!(name, "letip");
        assert!(maintenance_url("postgres://db:5432").is_err());
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
