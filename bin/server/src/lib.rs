//! The letip server: configuration, wiring and commands. Only this crate knows every
//! other crate; it picks the implementations and hands them to the HTTP layer as trait
//! objects.

pub mod config;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context;
use letip_api::AppState;
use letip_cache::{Cache, NoopCache};
use letip_domain::Repository;
use letip_service::{CachedRepository, EventHub, Notifying};
use letip_store::{PgStore, PoolOptions};

pub use config::{CacheBackend, Cli, Command, Config, SeedArgs};

/// A server that is accepting connections.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Waits until the server stops (on SIGINT or SIGTERM, or [`Running::stop`]).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")??;
        Ok(())
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        self.wait().await
    }
}

/// Creates the database if it is missing and runs pending migrations.
pub async fn migrate(config: &Config) -> anyhow::Result<usize> {
    if letip_store::ensure_database(&config.database_url).await? {
        tracing::info!("created the database");
    }
    Ok(letip_store::migrate(&config.database_url).await?)
}

fn cache(config: &Config) -> Arc<dyn Cache> {
    match config.cache_backend {
        CacheBackend::None => Arc::new(NoopCache),
        CacheBackend::Redis | CacheBackend::Memory => {
            tracing::warn!(
                backend = ?config.cache_backend,
                "this build has no cache backend yet: every read goes to PostgreSQL"
            );
            Arc::new(NoopCache)
        }
    }
}

/// Prepares the database, wires the repository stack and starts serving.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let applied = migrate(config).await.context("preparing the database")?;
    if applied > 0 {
        tracing::info!(applied, "ran migrations");
    }
    let pool = letip_store::pool(
        &config.database_url,
        PoolOptions {
            max_size: config.database_pool_size,
            ..PoolOptions::default()
        },
    )?;
    let store: Arc<dyn Repository> = Arc::new(PgStore::new(pool));
    let cached: Arc<dyn Repository> =
        Arc::new(CachedRepository::new(store, cache(config), config.ttls()));
    let events = EventHub::new();
    let repo: Arc<dyn Repository> = Notifying::new(cached, events.clone());
    let state = AppState {
        repo,
        events,
        metrics: letip_api::observe::prometheus(),
    };

    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        config.workers
    };
    let server = letip_api::server(state, listener, workers)?;
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, "listening on http://{addr}");
    Ok(Running { addr, handle, task })
}

/// Seeds demo data, reporting progress through `progress` (businesses written so far).
pub async fn seed(
    config: &Config,
    args: &SeedArgs,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<Option<letip_store::seed::SeedReport>> {
    migrate(config).await?;
    let pool = letip_store::pool(&config.database_url, PoolOptions::default())?;
    if args.if_empty && !letip_store::seed::is_empty(&pool).await? {
        return Ok(None);
    }
    let options = letip_store::seed::SeedOptions {
        businesses: args.businesses,
        seed: args.seed,
        ..Default::default()
    };
    Ok(Some(
        letip_store::seed::seed(&pool, options, progress).await?,
    ))
}
