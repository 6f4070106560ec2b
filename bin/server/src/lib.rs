//! The letip server: configuration, wiring and commands. Only this crate knows every
//! other crate; it picks the implementations and hands them to the HTTP layer as trait
//! objects.

pub mod config;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use letip_api::AppState;
use letip_cache::{
    AnnouncedCache, BackgroundProbe, Cache, LeaseConfig, MemoryCache, MemoryConfig, NearConfig,
    NoopCache, RedisBus, RedisCache, RedisConfig, TieredCache,
};
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
    events: EventHub,
    /// Applies other writers' change announcements to the cache, while caching is on.
    feed: Option<tokio::task::JoinHandle<()>>,
    /// Probes Redis while it is away; stopped with the server.
    probe: Option<BackgroundProbe>,
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

impl Running {
    /// Serves until SIGINT or SIGTERM, then stops gracefully.
    pub async fn serve_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        self.stop().await
    }

    /// Closes WebSocket and Socket.IO clients, stops accepting connections and waits
    /// for in-flight requests to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(feed) = &self.feed {
            feed.abort();
        }
        if let Some(probe) = self.probe {
            probe.stop();
        }
        self.events.close();
        self.handle.stop(true).await;
        self.task.await.context("server task panicked")??;
        Ok(())
    }
}

/// Creates the database if it is missing and runs pending migrations.
pub async fn migrate(config: &Config) -> anyhow::Result<usize> {
    if letip_store::ensure_database(&config.database_url).await? {
        tracing::info!("created the database");
    }
    Ok(letip_store::migrate(&config.database_url).await?)
}

/// A cache, the bus that carries events between instances, if the cache has one, and
/// the task that probes Redis in the background while it is away (stopped when dropped).
pub type CacheWiring = (
    Arc<dyn Cache>,
    Option<Arc<RedisBus>>,
    Option<BackgroundProbe>,
);

/// The cache `CACHE_BACKEND` names, and the bus that carries events between instances
/// (with a Redis backend). Redis being down is not an error: the server starts and reads
/// go to PostgreSQL until Redis answers, which a background probe notices.
pub fn cache(config: &Config) -> anyhow::Result<CacheWiring> {
    // Generations must outlive every entry of their scope.
    let generation_ttl = config.ttls().longest() * 2;
    let tls_ca_pem = match &config.redis_tls_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading REDIS_TLS_CA_FILE {}", path.display()))?,
        ),
        None => None,
    };
    let redis = || -> anyhow::Result<Arc<RedisCache>> {
        Ok(Arc::new(
            RedisCache::new(RedisConfig {
                url: config.redis(),
                tls_ca_pem: tls_ca_pem.clone(),
                namespace: config.cache_namespace.clone(),
                timeout: Duration::from_millis(config.cache_timeout_ms),
                invalidate_timeout: Duration::from_millis(config.cache_invalidate_timeout_ms),
                // Never shorter than a call may take (a TLS handshake is part of a connect).
                connect_timeout: Duration::from_millis(config.cache_timeout_ms)
                    .max(RedisConfig::default().connect_timeout),
                connections: config.redis_connections,
                max_value_bytes: config.cache_max_value_bytes,
                generation_ttl,
            })
            .context("configuring the Redis cache")?,
        ))
    };
    let events = |far: &Arc<RedisCache>| {
        RedisBus::new(far.clone(), &format!("{}:events", config.cache_namespace))
    };
    // Near tiers announce invalidations here; with leases, every writer waits for them.
    let invalidations = format!("{}:invalidations", config.cache_namespace);
    let lease = (config.cache_near_lease_ms > 0).then(|| LeaseConfig {
        lease: Duration::from_millis(config.cache_near_lease_ms),
        wait_for_acks: true,
    });
    Ok(match config.cache_backend {
        CacheBackend::None => (Arc::new(NoopCache), None, None),
        CacheBackend::Memory => (
            Arc::new(MemoryCache::new(MemoryConfig {
                max_bytes: config.cache_memory_max_bytes,
                max_value_bytes: config.cache_max_value_bytes,
                generation_ttl,
            })),
            None,
            None,
        ),
        CacheBackend::Redis => {
            let far = redis()?;
            let bus = events(&far);
            let probe = far.probe_in_background();
            // Writes wait for the leased near tiers of other instances, if any.
            let cache: Arc<dyn Cache> = match lease {
                Some(lease) => Arc::new(AnnouncedCache::new(far, &invalidations, lease)),
                None => far,
            };
            (cache, Some(bus), Some(probe))
        }
        CacheBackend::Tiered => {
            let far = redis()?;
            let bus = events(&far);
            let probe = far.probe_in_background();
            let invalidations = RedisBus::new(far.clone(), &invalidations);
            let near = NearConfig {
                max_bytes: config.cache_near_max_bytes,
                lease,
            };
            (
                Arc::new(TieredCache::new(far, near, Some(invalidations))),
                Some(bus),
                Some(probe),
            )
        }
    })
}

/// Prepares the database, wires the repository stack and starts serving.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    start_with(config, |store| store).await
}

/// [`start`], with `wrap` given the PostgreSQL repository to wrap before the cache is put
/// in front of it (tests count or pause database reads this way).
pub async fn start_with(
    config: &Config,
    wrap: impl FnOnce(Arc<dyn Repository>) -> Arc<dyn Repository>,
) -> anyhow::Result<Running> {
    // The metrics recorder first: the cache and the HTTP layer keep the handles of their
    // per-lookup metrics from their first use on, which must not precede it.
    let metrics = letip_api::observe::prometheus();
    let applied = migrate(config).await.context("preparing the database")?;
    if applied > 0 {
        tracing::info!(applied, "ran migrations");
    }
    // Tells this process's writes from others' in the change feed.
    let origin = uuid::Uuid::new_v4();
    let pool = letip_store::pool(
        &config.database_url,
        PoolOptions {
            max_size: config.database_pool_size,
            origin: Some(origin),
            ..PoolOptions::default()
        },
    )?;
    let store: Arc<dyn Repository> = wrap(Arc::new(PgStore::new(pool)));
    let (cache, bus, probe) = cache(config)?;
    let caching = cache.is_enabled();
    let cached = Arc::new(
        CachedRepository::new(store, cache, config.ttls())
            .with_list_max_page(config.cache_list_max_page),
    );
    // Writes by other instances (one that cannot reach Redis, say) and by other clients
    // of the database reach this instance's cache through the change feed.
    let feed = if caching {
        let changes = letip_store::changes::listen(config.database_url.clone(), Some(origin)).await;
        Some(tokio::spawn(cached.follow(changes)))
    } else {
        None
    };
    let cached: Arc<dyn Repository> = cached;
    let events = EventHub::new();
    let repo: Arc<dyn Repository> = Notifying::new(cached, events.clone(), bus);
    let state = AppState {
        repo,
        events: events.clone(),
        metrics,
    };

    let http = config.http_options()?;
    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        config.workers
    };
    let server = letip_api::server(state, listener, workers, http)?;
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, "listening on http://{addr}");
    Ok(Running {
        addr,
        handle,
        task,
        events,
        feed,
        probe,
    })
}

/// Migrates, then recounts the stats counters from the tables.
pub async fn recount_stats(config: &Config) -> anyhow::Result<()> {
    migrate(config).await?;
    Ok(letip_store::recount_stats(&config.database_url).await?)
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
