//! The letip server: configuration, wiring and commands. Only this crate knows every
//! other crate; it picks the implementations and hands them to the HTTP layer as trait
//! objects.

pub mod config;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use letip_api::AppState;
use letip_cache::{CacheBuilder, Caching, LeaseConfig, MemoryConfig, RedisConfig};
use letip_domain::Repository;
use letip_service::{CachedRepository, EventHub, Notifying};
use letip_store::{PgStore, PoolOptions, ReplicaOptions, Replicas};
use tokio_util::task::AbortOnDropHandle;

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
    /// The cache and its background probe of Redis; stopped with the server.
    caching: Caching,
    /// Write-key pruning and stats reconciling, stopped with the server.
    maintenance: Vec<AbortOnDropHandle<()>>,
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
        self.caching.shutdown();
        drop(self.maintenance);
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

/// How long a scope's generation lives after it was last moved: longer than every entry
/// of the scope (twice the longest TTL), and than every value kept for fail-safe reads
/// (its TTL plus the grace), since a generation made anew makes them all unusable.
fn generation_ttl(config: &Config) -> Duration {
    config.ttls().longest() * 2 + Duration::from_secs(config.cache_stale_grace_secs)
}

/// The cache `CACHE_BACKEND` names, with what keeps it running (the background probe
/// of Redis, stopped with the server). Redis being down is not an error: the server
/// starts and reads go to PostgreSQL until Redis answers, which the probe notices.
pub fn cache(config: &Config) -> anyhow::Result<Caching> {
    let tls_ca_pem = match &config.redis_tls_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading REDIS_TLS_CA_FILE {}", path.display()))?,
        ),
        None => None,
    };
    let redis = || RedisConfig {
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
        compress_above: (config.cache_compress_above_bytes > 0)
            .then_some(config.cache_compress_above_bytes),
        generation_ttl: generation_ttl(config),
        sentinel: config.sentinel(),
    };
    let builder = match config.cache_backend {
        CacheBackend::None => CacheBuilder::none(),
        CacheBackend::Memory => CacheBuilder::memory(MemoryConfig {
            max_bytes: config.cache_memory_max_bytes,
            max_value_bytes: config.cache_max_value_bytes,
            generation_ttl: generation_ttl(config),
        }),
        CacheBackend::Redis => CacheBuilder::redis(redis()),
        CacheBackend::Tiered => {
            CacheBuilder::tiered(redis()).near_max_bytes(config.cache_near_max_bytes)
        }
    };
    let lease = (config.cache_near_lease_ms > 0).then(|| LeaseConfig {
        lease: Duration::from_millis(config.cache_near_lease_ms),
        wait_for_acks: true,
    });
    builder
        .lease(lease)
        .build()
        .context("configuring the cache")
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
    let mut pg =
        PgStore::new(pool.clone()).with_key_ttl(Duration::from_secs(config.idempotency_ttl_secs));
    if let Some(replicas) = replicas(config, pool)? {
        pg = pg.with_replicas(replicas);
    }
    let pruning = tokio::spawn(prune_keys(pg.clone()));
    let store: Arc<dyn Repository> = wrap(Arc::new(pg));
    let caching = cache(config)?;
    let cache = caching.cache();
    // Events between instances, with Redis.
    let bus = caching.bus("events");
    let follows_feed = cache.is_enabled();
    let events = EventHub::new();
    // The live events read the stats they publish through the cached repository.
    let cached = Arc::new_cyclic(|me: &Weak<CachedRepository>| {
        let stats: Weak<dyn Repository> = me.clone();
        CachedRepository::new(store, cache, config.ttls())
            .with_list_max_page(config.cache_list_max_page)
            .with_stale(letip_cache::StaleConfig {
                grace: Duration::from_secs(config.cache_stale_grace_secs),
                max_bytes: config.cache_stale_max_bytes,
            })
            .with_hook(Notifying::new(stats, events.clone(), bus))
    });
    // Writes by other instances (one that cannot reach Redis, say) and by other clients
    // of the database reach this instance's cache through the change feed.
    let feed = if follows_feed {
        let changes = letip_store::changes::listen(config.database_url.clone(), Some(origin)).await;
        Some(tokio::spawn(cached.follow(changes)))
    } else {
        None
    };
    let repo: Arc<dyn Repository> = cached;
    let reconciling = (config.stats_reconcile_secs > 0).then(|| {
        tokio::spawn(reconcile_stats(
            repo.clone(),
            Duration::from_secs(config.stats_reconcile_secs),
        ))
    });
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
        caching,
        maintenance: [Some(pruning), reconciling]
            .into_iter()
            .flatten()
            .map(AbortOnDropHandle::new)
            .collect(),
    })
}

/// The read replicas of `DATABASE_REPLICA_URLS`, each with a pool of its own, and the
/// task that checks them (it ends with the store).
fn replicas(
    config: &Config,
    primary: letip_store::PgPool,
) -> anyhow::Result<Option<Arc<Replicas>>> {
    let members = config
        .replica_urls()
        .map(|url| {
            let pool = letip_store::pool(
                url,
                PoolOptions {
                    max_size: config.database_pool_size,
                    // A replica that does not answer soon is not waited for: the primary is.
                    acquire_timeout: Duration::from_secs(1),
                    ..PoolOptions::default()
                },
            )
            .with_context(|| format!("the replica {}", config::redact(url)))?;
            Ok((url.to_owned(), pool))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if members.is_empty() {
        return Ok(None);
    }
    Ok(Some(Replicas::start(
        primary,
        members,
        ReplicaOptions {
            wait: Duration::from_millis(config.database_replica_wait_ms),
            max_lag: Duration::from_millis(config.database_replica_max_lag_ms),
            ..ReplicaOptions::default()
        },
    )))
}

/// Deletes expired write keys every minute.
async fn prune_keys(store: PgStore) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match store.prune_keys().await {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "pruned expired write keys"),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "pruning write keys failed; next minute"),
        }
    }
}

/// Corrects the stats counters against the tables every `period` (the first time one
/// period after the start, so that instances started together do not all count at once).
async fn reconcile_stats(repo: Arc<dyn Repository>, period: Duration) {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = repo.reconcile_stats().await {
            tracing::warn!(error = %e, "reconciling the stats counters failed; next period");
        }
    }
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
