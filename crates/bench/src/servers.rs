//! The servers under test: datasets, one server per cache mode in a session of its own.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::Args;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    Redis,
    /// The near tier under leases (the default).
    Tiered,
    /// The near tier with every hit confirmed by Redis (`CACHE_NEAR_LEASE_MS=0`).
    Confirmed,
    Uncached,
    RedisDown,
}

impl Mode {
    pub(crate) const ALL: [Self; 5] = [
        Self::Redis,
        Self::Tiered,
        Self::Confirmed,
        Self::Uncached,
        Self::RedisDown,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Redis => "cache hit (Redis)",
            Self::Tiered => "cache hit (near tier, default)",
            Self::Confirmed => "cache hit (near tier, confirmed)",
            Self::Uncached => "uncached",
            Self::RedisDown => "Redis down",
        }
    }

    pub(crate) fn backend(self) -> &'static str {
        match self {
            Self::Redis | Self::RedisDown => "redis",
            Self::Tiered | Self::Confirmed => "tiered",
            Self::Uncached => "none",
        }
    }

    /// `CACHE_NEAR_LEASE_MS` of the mode.
    pub(crate) fn lease_ms(self) -> &'static str {
        if self == Self::Confirmed { "0" } else { "500" }
    }

    /// What tells the mode's cache namespace apart.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            m => m.backend(),
        }
    }
}

/// An endpoint measured: its name in the report, its cache family, its path.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) name: &'static str,
    pub(crate) family: &'static str,
    pub(crate) path: String,
    /// Connections of its load when not the run's (one: a request at a time, as one
    /// dashboard user makes them).
    pub(crate) connections: Option<u32>,
}

/// The endpoints measured, for a dataset of `size` whose business with the most
/// contacts is `largest` (the seed's 5,000; its id depends on the order the seeder's
/// batches took their ids; only names are read without it).
pub(crate) fn endpoints(size: u64, largest: Option<i64>) -> Vec<Endpoint> {
    let at = |name, family, path: String| Endpoint {
        name,
        family,
        path,
        connections: None,
    };
    vec![
        at("stats", "stats", "/api/businesses/stats".into()),
        Endpoint {
            connections: Some(1),
            ..at(
                "stats, one connection",
                "stats",
                "/api/businesses/stats".into(),
            )
        },
        at("list", "list", "/api/businesses?page=1&limit=20".into()),
        at(
            "list city+industry",
            "list",
            "/api/businesses?city=Freehold&industry=Dental&page=1".into(),
        ),
        at(
            "list status, page 3",
            "list",
            "/api/businesses?enrichment_status=enriched&page=3".into(),
        ),
        at(
            "detail",
            "detail",
            format!("/api/businesses/{}", size / 2 + 1),
        ),
        // The seed's first business: 5,000 contacts, a detail of over a megabyte.
        at(
            "detail, 5,000 contacts",
            "detail",
            format!("/api/businesses/{}", largest.unwrap_or(1)),
        ),
    ]
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) pid: u32,
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A command run in a session of its own (`setsid`), as a service manager starts a
/// service. The kernel shares the cores between sessions first (autogroup scheduling):
/// in the runner's session, a saturated server beside wrk left the Redis server runnable
/// but waiting for a core for up to 0.4 s at a time (1.2 s of waiting in 6 s of load, for
/// 24 ms of running), so lease renewals and confirmations timed out and the breaker sent
/// reads to PostgreSQL in the middle of a hit measurement.
pub(crate) fn own_session(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("setsid");
    command.arg(program);
    command
}

pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the runner has a directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it with cargo build --release",
            path.display()
        );
    }
    Ok(path)
}

pub(crate) fn db_url(args: &Args, size: u64) -> String {
    format!("{}/letip_bench_{size}", args.database.trim_end_matches('/'))
}

pub(crate) async fn seed(args: &Args, size: u64) -> anyhow::Result<()> {
    seed_at(&db_url(args, size), size).await
}

/// Seeds `size` businesses into the database at `database_url` (made if missing) unless
/// it holds some already.
pub(crate) async fn seed_at(database_url: &str, size: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let status = Command::new(sibling("letip")?)
        .args([
            "seed",
            "--businesses",
            &size.to_string(),
            "--seed",
            "42",
            "--if-empty",
        ])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .status()
        .await?;
    if !status.success() {
        bail!("seeding {size} businesses failed");
    }
    println!(
        "dataset of {size} businesses ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The id of the business with the most contacts in the dataset of `size`.
pub(crate) async fn largest_business(args: &Args, size: u64) -> anyhow::Result<i64> {
    let out = Command::new("psql")
        .arg(db_url(args, size))
        .args([
            "-qXAtc",
            "SELECT business_id FROM contact GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
        ])
        .output()
        .await
        .context("running psql")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("no business with contacts in the {size}-business dataset"))
}

/// Brings the dataset to the same state before every mode: fresh planner statistics
/// and a complete visibility map. Without it, what earlier runs wrote (the mix's
/// PATCHes) or an autovacuum that overlapped the seeding decides between index-only and
/// sequential scans, and so what the uncached modes measure.
pub(crate) async fn vacuum(args: &Args, size: u64) -> anyhow::Result<()> {
    vacuum_at(&db_url(args, size)).await
}

/// [`vacuum`] of the database at `database_url`.
pub(crate) async fn vacuum_at(database_url: &str) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .arg(database_url)
        .args(["-qXc", "VACUUM (ANALYZE)"])
        .stdout(Stdio::null())
        .status()
        .await
        .context("running psql")?;
    if !status.success() {
        bail!("VACUUM of {database_url} failed");
    }
    Ok(())
}

pub(crate) async fn start(args: &Args, size: u64, mode: Mode, run: &str) -> anyhow::Result<Server> {
    vacuum(args, size).await?;
    start_on(args, size, mode, run, &db_url(args, size), &[]).await
}

/// [`start`], reaching the dataset of `size` at `database_url` (through a link the
/// runner can cut, say; the caller has vacuumed it), with the settings `env` adds.
pub(crate) async fn start_on(
    args: &Args,
    size: u64,
    mode: Mode,
    run: &str,
    database_url: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let redis = if mode == Mode::RedisDown {
        // Nothing listens on port 1: every Redis call fails as it would with Redis down.
        "redis://127.0.0.1:1".to_owned()
    } else {
        args.redis.clone()
    };
    let child = own_session(sibling("letip")?)
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("PORT", port.to_string())
        .env("CACHE_BACKEND", mode.backend())
        .env("CACHE_NEAR_LEASE_MS", mode.lease_ms())
        .env("REDIS_URL", redis)
        .env("CACHE_NAMESPACE", namespace(run, size, mode))
        .envs(env.iter().map(|(k, v)| (k, v)))
        // The default log level, as a user who sets nothing gets it.
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("the server runs")?;
    let server = Server { child, port, pid };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(server.url("/health")).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server did not become healthy")
}

/// The cache namespace of `mode`'s server on the dataset of `size` in run `run`.
pub(crate) fn namespace(run: &str, size: u64, mode: Mode) -> String {
    format!("bench-{run}-{size}-{}:v1", mode.key())
}

pub(crate) fn rss_mib(pid: u32) -> f64 {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:").map_or(0.0, |kb| kb / 1024.0)
}

/// The kB figure of the line starting with `field` in a `/proc` file such as
/// `/proc/meminfo` (`MemTotal:     16318412 kB`).
pub(crate) fn proc_kib(path: &str, field: &str) -> Option<f64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
