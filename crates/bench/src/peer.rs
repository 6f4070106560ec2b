//! The NestJS peer (`bench/nest-peer`, run by `scripts/nest-peer.sh`): the same reads as
//! a NestJS team builds them (`CacheInterceptor` on cache-manager with a Redis store),
//! measured on the same data, machine and load as letip's hits.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::Wrk;

/// The peer's hits, by endpoint name.
pub(crate) type PeerHits = Vec<(&'static str, Wrk)>;

/// Starts the peer on `database` with `workers` Node processes, warms each endpoint, and
/// measures its hits with `measure` (given the URL and the endpoint's connections); removes its Redis keys afterwards. `None` when Node.js
/// is not installed.
pub(crate) async fn measure<F, Fut>(
    database: &str,
    redis: &str,
    run: &str,
    workers: u32,
    endpoints: &[(&'static str, String, u32)],
    mut measure: F,
) -> anyhow::Result<Option<PeerHits>>
where
    F: FnMut(String, u32) -> Fut,
    Fut: Future<Output = anyhow::Result<Wrk>>,
{
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Ok(None);
    }
    let port = crate::servers::free_port()?;
    let prefix = format!("bench-{run}-nest:");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nest-peer.sh");
    let mut child = crate::servers::own_session("bash")
        .arg(script)
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database)
        .env("REDIS_URL", redis)
        .env("KEY_PREFIX", &prefix)
        .env("WORKERS", workers.to_string())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting scripts/nest-peer.sh")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    // The first start installs and compiles the peer.
    for _ in 0..1200 {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        let _ = child.kill().await;
        bail!("the NestJS peer did not become healthy");
    }
    let mut hits = Vec::new();
    for (name, path, connections) in endpoints {
        let url = format!("{base}{path}");
        for _ in 0..3 {
            let r = client.get(&url).send().await?;
            if !r.status().is_success() {
                bail!("the NestJS peer answered {} to {path}", r.status());
            }
        }
        let r = client.get(&url).send().await?;
        let cache = r
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if cache != "HIT" {
            bail!("the NestJS peer's {path} is not a cache hit (X-Cache: {cache:?})");
        }
        hits.push((*name, measure(url, *connections).await?));
    }
    let _ = child.kill().await;
    remove_keys(redis, &prefix).await?;
    Ok(Some(hits))
}

async fn remove_keys(redis: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
