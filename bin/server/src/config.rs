//! Configuration: environment variables with the contract's names and defaults, each
//! overridable by a command-line flag.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The Le Tip businesses API, answered from a Redis cache kept fresh.
#[derive(Debug, Parser)]
#[command(name = "letip", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Runs migrations, then serves HTTP (the default).
    Serve,
    /// Creates the database if missing and runs pending migrations.
    Migrate,
    /// Fills the database with deterministic demo data.
    Seed(SeedArgs),
    /// Recounts the dashboard's stats counters from the tables (after a load made with
    /// triggers disabled); writers wait while it counts.
    RecountStats,
}

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// How many businesses to write.
    #[arg(long, default_value_t = 1000)]
    pub businesses: u64,
    /// The same seed always writes the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write nothing when the database already holds businesses.
    #[arg(long)]
    pub if_empty: bool,
}

/// Which cache the server reads through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheBackend {
    /// Redis alone, shared by every instance: every hit is one round trip.
    Redis,
    /// The default: an in-process near tier in front of Redis, as fresh as `redis`
    /// across instances: near hits are served under a lease (writes wait for every
    /// holder to drop what they change), or confirmed by Redis one by one with
    /// `CACHE_NEAR_LEASE_MS=0`.
    Tiered,
    /// In-process memory: one instance only.
    Memory,
    /// No cache: every read goes to PostgreSQL.
    None,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL; the database is created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/letip",
        global = true
    )]
    pub database_url: String,
    /// Most PostgreSQL connections the server opens.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16, global = true)]
    pub database_pool_size: usize,
    /// Streaming replicas of that database, comma-separated URLs. Reads that fill the
    /// cache, and uncached reads, go to a replica only once it has replayed every write
    /// answered before the read began; writes stay on the primary. Each replica gets a
    /// pool of DATABASE_POOL_SIZE connections.
    #[arg(
        long,
        env = "DATABASE_REPLICA_URLS",
        value_delimiter = ',',
        global = true
    )]
    pub database_replica_urls: Vec<String>,
    /// Longest a read waits for a replica to replay the writes it must see before it
    /// reads the primary instead.
    #[arg(
        long,
        env = "DATABASE_REPLICA_WAIT_MS",
        default_value_t = 50,
        global = true
    )]
    pub database_replica_wait_ms: u64,
    /// A replica further behind the primary than this is left out until it catches up.
    #[arg(
        long,
        env = "DATABASE_REPLICA_MAX_LAG_MS",
        default_value_t = 5000,
        global = true
    )]
    pub database_replica_max_lag_ms: u64,
    /// Redis URL of the shared cache.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    /// PEM file of the authority that signed a `rediss://` server's certificate, when it
    /// is not one the system trusts.
    #[arg(long, env = "REDIS_TLS_CA_FILE", global = true)]
    pub redis_tls_ca_file: Option<std::path::PathBuf>,
    /// Which cache to use.
    #[arg(
        long,
        env = "CACHE_BACKEND",
        value_enum,
        default_value = "tiered",
        global = true
    )]
    pub cache_backend: CacheBackend,
    /// Longest a Redis call may take before the read goes to the database.
    #[arg(long, env = "CACHE_TIMEOUT_MS", default_value_t = 50, global = true)]
    pub cache_timeout_ms: u64,
    /// Longest a write waits for its cache invalidation (while Redis is not known to be
    /// down) before answering anyway.
    #[arg(
        long,
        env = "CACHE_INVALIDATE_TIMEOUT_MS",
        default_value_t = 1000,
        global = true
    )]
    pub cache_invalidate_timeout_ms: u64,
    /// Values larger than this are not cached (and counted).
    #[arg(long, env = "CACHE_MAX_VALUE_BYTES", default_value_t = 8 * 1024 * 1024, global = true)]
    pub cache_max_value_bytes: usize,
    /// Values longer than this are stored in Redis LZ4-compressed, when that saves an
    /// eighth or more; 0 stores every value as it is.
    #[arg(
        long,
        env = "CACHE_COMPRESS_ABOVE_BYTES",
        default_value_t = 512,
        global = true
    )]
    pub cache_compress_above_bytes: usize,
    /// Prefix of every Redis key; change the version to start afresh.
    #[arg(
        long,
        env = "CACHE_NAMESPACE",
        default_value = "letip:v1",
        global = true
    )]
    pub cache_namespace: String,
    /// A Redis Cluster's nodes (`host1:port1,host2:port2`); overrides `REDIS_URL`.
    #[arg(long, env = "REDIS_CLUSTER_NODES", default_value = "", global = true)]
    pub redis_cluster_nodes: String,
    /// Redis Sentinel's nodes (`host1:26379,host2:26379`). When set, the cache follows
    /// the primary they name (and after a failover, the promoted one, trusting nothing
    /// it stored before); `REDIS_URL` then gives only the password, database and TLS.
    #[arg(long, env = "REDIS_SENTINEL_NODES", default_value = "", global = true)]
    pub redis_sentinel_nodes: String,
    /// The name the sentinels monitor the primary by.
    #[arg(
        long,
        env = "REDIS_SENTINEL_MASTER",
        default_value = "mymaster",
        global = true
    )]
    pub redis_sentinel_master: String,
    /// Most bytes the near tier holds in process (`CACHE_BACKEND=tiered`).
    #[arg(long, env = "CACHE_NEAR_MAX_BYTES", default_value_t = 64 * 1024 * 1024, global = true)]
    pub cache_near_max_bytes: u64,
    /// The near tier's lease (`CACHE_BACKEND=tiered`): near copies are served without a
    /// round trip while the instance holds one, and a write waits until every other
    /// holder has dropped what it changed (at most this long for one that does not
    /// answer). 0: every near hit is confirmed by Redis, and writes do not wait.
    #[arg(long, env = "CACHE_NEAR_LEASE_MS", default_value_t = 500, global = true,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub cache_near_lease_ms: u64,
    /// Multiplexed Redis connections shared by the background tasks; each HTTP worker
    /// also has one of its own.
    #[arg(long, env = "REDIS_CONNECTIONS", default_value_t = 2, global = true)]
    pub redis_connections: usize,
    /// Most bytes the in-process cache holds (`CACHE_BACKEND=memory`).
    #[arg(long, env = "CACHE_MEMORY_MAX_BYTES", default_value_t = 256 * 1024 * 1024, global = true)]
    pub cache_memory_max_bytes: u64,
    #[arg(long, env = "HOST", default_value = "127.0.0.1", global = true)]
    pub host: String,
    /// 0 picks a free port and logs it.
    #[arg(long, env = "PORT", default_value_t = 3000, global = true)]
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    #[arg(long, env = "WORKERS", default_value_t = 0, global = true)]
    pub workers: usize,
    /// How long an idle keep-alive connection stays open; 0 closes each connection after
    /// its response. Longer than the idle timeout of any load balancer or client pool in
    /// front (AWS ALB 60 s, nginx upstream 60 s, GCP 600 s), so the server never closes a
    /// connection a client may be sending on.
    #[arg(
        long,
        env = "HTTP_KEEP_ALIVE_SECS",
        default_value_t = 620,
        global = true
    )]
    pub http_keep_alive_secs: u64,
    #[arg(
        long,
        env = "CACHE_TTL_STATS_SECS",
        default_value_t = 30,
        global = true
    )]
    pub cache_ttl_stats_secs: u64,
    #[arg(
        long,
        env = "CACHE_TTL_LIST_SECS",
        default_value_t = 300,
        global = true
    )]
    pub cache_ttl_list_secs: u64,
    /// List pages deeper than this are read from the database and not cached: deep
    /// pages are rarely read twice, and would otherwise fill the cache.
    #[arg(long, env = "CACHE_LIST_MAX_PAGE", default_value_t = 50, global = true)]
    pub cache_list_max_page: u32,
    #[arg(
        long,
        env = "CACHE_TTL_DETAIL_SECS",
        default_value_t = 600,
        global = true
    )]
    pub cache_ttl_detail_secs: u64,
    /// Fail-safe reads: while PostgreSQL is unreachable, a read whose entry's TTL ran
    /// out is answered with the value this instance last stored for it (`X-Cache:
    /// STALE`, `Age`) for up to this long past the TTL, if nothing was written to it
    /// since. 0 turns it off.
    #[arg(
        long,
        env = "CACHE_STALE_GRACE_SECS",
        default_value_t = 3600,
        global = true
    )]
    pub cache_stale_grace_secs: u64,
    /// The most bytes of values each instance keeps for fail-safe reads.
    #[arg(
        long,
        env = "CACHE_STALE_MAX_BYTES",
        default_value_t = 64 << 20,
        global = true
    )]
    pub cache_stale_max_bytes: u64,
    /// How long a client's `Idempotency-Key` answers repeats of its write with the
    /// first answer; expired keys are deleted every minute.
    #[arg(
        long,
        env = "IDEMPOTENCY_TTL_SECS",
        default_value_t = 86_400,
        global = true
    )]
    pub idempotency_ttl_secs: u64,
    /// How often the stats counters are checked against the tables' counts and
    /// corrected (writes made with triggers disabled leave them off); 0 never.
    #[arg(
        long,
        env = "STATS_RECONCILE_SECS",
        default_value_t = 300,
        global = true
    )]
    pub stats_reconcile_secs: u64,
    /// Origins allowed to call the API from a browser, comma-separated
    /// (`https://dash.example.com,http://localhost:5173`); empty allows every origin.
    #[arg(long, env = "CORS_ORIGINS", default_value = "", global = true)]
    pub cors_origins: String,
    /// Socket.IO: a ping is sent this long after the last pong.
    #[arg(
        long,
        env = "SOCKETIO_PING_INTERVAL_MS",
        default_value_t = 25_000,
        global = true
    )]
    pub socketio_ping_interval_ms: u64,
    /// Socket.IO: a client that does not answer a ping within this is dropped.
    #[arg(
        long,
        env = "SOCKETIO_PING_TIMEOUT_MS",
        default_value_t = 20_000,
        global = true
    )]
    pub socketio_ping_timeout_ms: u64,
    /// Socket.IO: the largest message (WebSocket frame or polling body) a client may send.
    #[arg(
        long,
        env = "SOCKETIO_MAX_PAYLOAD",
        default_value_t = 1_000_000,
        global = true
    )]
    pub socketio_max_payload: usize,
    /// Socket.IO: events a client may fall behind before it skips the oldest.
    #[arg(
        long,
        env = "SOCKETIO_CLIENT_BUFFER",
        default_value_t = 1024,
        global = true
    )]
    pub socketio_client_buffer: usize,
}

impl Config {
    /// The configuration as the defaults and the environment give it, without reading
    /// command-line flags; what tests and embedders start from.
    pub fn from_env() -> Self {
        Cli::parse_from(["letip"]).config
    }

    /// The Sentinel group of `REDIS_SENTINEL_NODES`, if any.
    pub fn sentinel(&self) -> Option<letip_cache::SentinelConfig> {
        let nodes = self.redis_sentinel_nodes.trim();
        (!nodes.is_empty())
            .then(|| letip_cache::SentinelConfig::new(nodes, &self.redis_sentinel_master))
    }

    /// The Redis URL to use: `REDIS_URL`, or the cluster `REDIS_CLUSTER_NODES` names.
    pub fn redis(&self) -> String {
        let nodes = self.redis_cluster_nodes.trim();
        if nodes.is_empty() {
            self.redis_url.clone()
        } else {
            format!("redis+cluster://{nodes}")
        }
    }

    /// `HTTP_KEEP_ALIVE_SECS`; `None` when keep-alive is off.
    pub fn keep_alive(&self) -> Option<Duration> {
        (self.http_keep_alive_secs > 0).then(|| Duration::from_secs(self.http_keep_alive_secs))
    }

    pub fn ttls(&self) -> letip_service::CacheTtls {
        letip_service::CacheTtls {
            stats: Duration::from_secs(self.cache_ttl_stats_secs),
            list: Duration::from_secs(self.cache_ttl_list_secs),
            detail: Duration::from_secs(self.cache_ttl_detail_secs),
        }
    }

    /// The origins of `CORS_ORIGINS` as browsers send them (`scheme://host[:port]`);
    /// empty (every origin) when it is empty or holds `*`.
    pub fn cors_origins(&self) -> anyhow::Result<Vec<String>> {
        let mut origins = Vec::new();
        for raw in self.cors_origins.split(',').map(str::trim) {
            if raw.is_empty() {
                continue;
            }
            if raw == "*" {
                return Ok(Vec::new());
            }
            let origin = url::Url::parse(raw)
                .ok()
                .map(|u| u.origin())
                .filter(url::Origin::is_tuple)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "CORS_ORIGINS: {raw:?} is not an origin such as https://dash.example.com"
                    )
                })?;
            origins.push(origin.ascii_serialization());
        }
        Ok(origins)
    }

    /// What the HTTP layer needs beyond the repository: CORS and Socket.IO settings.
    pub fn http_options(&self) -> anyhow::Result<letip_api::HttpOptions> {
        let defaults = letip_api::socketio::Options::default();
        Ok(letip_api::HttpOptions {
            cors_origins: self.cors_origins()?,
            socketio: letip_api::socketio::Options {
                timing: letip_api::socketio::Timing {
                    ping_interval: Duration::from_millis(self.socketio_ping_interval_ms),
                    ping_timeout: Duration::from_millis(self.socketio_ping_timeout_ms),
                    ..defaults.timing
                },
                max_payload: self.socketio_max_payload,
                client_buffer: self.socketio_client_buffer,
                allowed_origins: Vec::new(),
            },
            keep_alive: self.keep_alive(),
        })
    }

    /// The replicas' URLs, without empty entries (`DATABASE_REPLICA_URLS=""`).
    pub fn replica_urls(&self) -> impl Iterator<Item = &str> {
        self.database_replica_urls
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
    }

    /// The configuration as a log line, with passwords in URLs masked.
    pub fn describe(&self) -> String {
        format!(
            "database_url={} replicas={:?} pool_size={} redis_url={} cache_backend={:?} cache_namespace={} \
             cache_timeout_ms={} listen={}:{} workers={} keep_alive_secs={} \
             ttl_secs(stats={}, list={}, detail={}) cors_origins={:?}",
            redact(&self.database_url),
            self.replica_urls().map(redact).collect::<Vec<_>>(),
            self.database_pool_size,
            redact(&self.redis()),
            self.cache_backend,
            self.cache_namespace,
            self.cache_timeout_ms,
            self.host,
            self.port,
            self.workers,
            self.http_keep_alive_secs,
            self.cache_ttl_stats_secs,
            self.cache_ttl_list_secs,
            self.cache_ttl_detail_secs,
            self.cors_origins,
        )
    }
}

/// Masks the password of a URL, if it has one.
pub fn redact(raw: &str) -> String {
    // A cluster URL lists several hosts, which `url` cannot parse: mask its userinfo.
    if raw.contains("+cluster://") {
        return match raw.split_once("://").zip(raw.rsplit_once('@')) {
            Some(((scheme, _), (_, hosts))) => format!("{scheme}://***@{hosts}"),
            None => raw.to_owned(),
        };
    }
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact("postgres://u:secret@db:5432/letip"),
            "postgres://u:***@db:5432/letip"
        );
        assert_eq!(redact("redis://:pw@r:6379"), "redis://:***@r:6379");
        assert_eq!(redact("redis://r:6379"), "redis://r:6379");
        assert!(!redact("not a url :secret@").contains("secret"));
        assert_eq!(
            redact("redis+cluster://:pw@h1:1,h2:2"),
            "redis+cluster://***@h1:1,h2:2"
        );
        assert_eq!(
            redact("redis+cluster://h1:1,h2:2"),
            "redis+cluster://h1:1,h2:2"
        );
    }

    #[test]
    fn cors_origins_are_read_as_browsers_send_them() {
        let with = |v: &str| Config {
            cors_origins: v.to_owned(),
            ..Config::from_env()
        };
        assert_eq!(
            with("").cors_origins().expect("valid"),
            Vec::<String>::new()
        );
        assert_eq!(
            with(" https://Dash.example.com/ , http://localhost:5173,")
                .cors_origins()
                .expect("valid"),
            vec!["https://dash.example.com", "http://localhost:5173"]
        );
        assert_eq!(
            with("https://a.example.com:443")
                .cors_origins()
                .expect("valid"),
            vec!["https://a.example.com"]
        );
        assert!(
            with("http://a.example.com,*")
                .cors_origins()
                .expect("valid")
                .is_empty()
        );
        assert!(with("dash.example.com").cors_origins().is_err());
        assert!(with("file:///tmp/x").cors_origins().is_err());
    }

    #[test]
    fn the_default_cache_is_the_leased_near_tier() {
        let cli = Cli::parse_from(["letip", "serve"]);
        assert_eq!(cli.config.cache_backend, CacheBackend::Tiered);
        assert_eq!(cli.config.cache_near_lease_ms, 500);
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::parse_from([
            "letip",
            "--port",
            "0",
            "--cache-backend",
            "none",
            "seed",
            "--businesses",
            "5",
        ]);
        assert_eq!(cli.config.port, 0);
        assert_eq!(cli.config.cache_backend, CacheBackend::None);
        assert_eq!(cli.config.http_keep_alive_secs, 620, "the default");
        assert!(matches!(
            cli.command,
            Some(Command::Seed(SeedArgs { businesses: 5, .. }))
        ));
    }
}
