//! Load with wrk and redis-benchmark, and what they report.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use tokio::process::Command;

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct Wrk {
    pub(crate) requests: u64,
    pub(crate) duration_us: u64,
    pub(crate) non2xx: u64,
    pub(crate) timeouts: u64,
    pub(crate) socket_errors: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
}

impl Wrk {
    pub(crate) fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
}

/// The limits an endpoint's body is measured against: actix-web answering it from
/// memory, and `redis-benchmark` GET of a value of its size.
#[derive(Debug)]
pub(crate) struct Ceiling {
    pub(crate) actix: Wrk,
    pub(crate) redis_get_rps: f64,
}

/// [`wrk`] after one second of the same load, not counted: a process's first second
/// under load pays for its allocator's first pages and each thread's first lookups
/// (a fresh server's stats hits measured 171,000 req/s over their first 5 s, 179,000 to
/// 189,000 over the next ones). Every measured server (letip, the ceiling, the peer)
/// gets it.
pub(crate) async fn warm_wrk(
    url: &str,
    seconds: u64,
    connections: u32,
    script: &Path,
) -> anyhow::Result<Wrk> {
    wrk(url, 1, connections, script).await?;
    wrk(url, seconds, connections, script).await
}

pub(crate) async fn wrk(
    url: &str,
    seconds: u64,
    connections: u32,
    script: &Path,
) -> anyhow::Result<Wrk> {
    wrk_with(url, seconds, connections, script, &[]).await
}

/// Runs wrk with `script` (which must print the report line) and `env` for its Lua.
pub(crate) async fn wrk_with(
    url: &str,
    seconds: u64,
    connections: u32,
    script: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<Wrk> {
    // wrk needs a connection per thread.
    let threads = connections.clamp(1, 2);
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
        ])
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .context("running wrk (scripts/bench.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("wrk printed no report: {text}"))?;
    Ok(serde_json::from_str(line)?)
}

/// Throughput of `redis-benchmark` GET with values of `bytes` bytes.
pub(crate) async fn redis_benchmark(
    redis: &str,
    bytes: usize,
    connections: u32,
) -> anyhow::Result<f64> {
    let (host, port) = redis
        .trim_start_matches("redis://")
        .split_once(':')
        .unwrap_or(("127.0.0.1", "6379"));
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            host,
            "-p",
            port.trim_end_matches('/'),
            "-t",
            "get",
            "-n",
            "200000",
        ])
        .args([
            "-c",
            &connections.to_string(),
            "-d",
            &bytes.to_string(),
            "--csv",
        ])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("\"GET\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
        .with_context(|| format!("redis-benchmark printed no GET line: {text}"))
}

/// The ceiling (`bench-ceiling`, actix-web answering `body` from memory) as a process
/// of its own, stopped when dropped.
pub(crate) struct CeilingServer {
    child: tokio::process::Child,
    pub(crate) url: String,
    file: std::path::PathBuf,
}

impl CeilingServer {
    /// Starts it on a free port with `body`, kept in a file under `dir` while it runs.
    pub(crate) async fn start(body: &[u8], dir: &Path) -> anyhow::Result<Self> {
        use crate::servers::{free_port, own_session, sibling};
        let port = free_port()?;
        let file = dir.join(format!(".ceiling-body-{port}.json"));
        std::fs::write(&file, body)?;
        let child = own_session(sibling("bench-ceiling")?)
            .arg(port.to_string())
            .arg(&file)
            .kill_on_drop(true)
            .spawn()?;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}/"),
            file,
        })
    }
}

impl Drop for CeilingServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// One endpoint measured against the ceiling in turns: ceiling, server, ceiling,
/// server, ... `repeats` times, each run after a second of the same load. A share is a
/// ratio of two runs a few seconds apart, so a machine that slows for a while (a
/// neighbour, a frequency step) slows both; the median of the ratios is reported.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paired {
    /// Median of the server's req/s over the ceiling's, run by run.
    pub(crate) share: f64,
    /// Median of the server's p50 over the ceiling's, run by run.
    pub(crate) p50_ratio: f64,
    /// The server's run whose share is the median.
    pub(crate) server: Wrk,
    /// The ceiling's run beside it.
    pub(crate) ceiling: Wrk,
}

pub(crate) async fn paired(
    url: &str,
    body: &[u8],
    (seconds, connections, repeats): (u64, u32, u32),
    script: &Path,
    dir: &Path,
) -> anyhow::Result<Paired> {
    let ceiling = CeilingServer::start(body, dir).await?;
    let mut runs = Vec::new();
    for _ in 0..repeats.max(1) {
        let c = warm_wrk(&ceiling.url, seconds, connections, script).await?;
        let s = warm_wrk(url, seconds, connections, script).await?;
        runs.push((s, c));
    }
    drop(ceiling);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let p50_ratio = median(
        runs.iter()
            .map(|(s, c)| s.p50_us as f64 / c.p50_us.max(1) as f64)
            .collect(),
    );
    runs.sort_by(|(a, ca), (b, cb)| (a.rps() / ca.rps()).total_cmp(&(b.rps() / cb.rps())));
    let (server, ceiling) = *runs
        .get(runs.len() / 2)
        .context("at least one run was made")?;
    Ok(Paired {
        share: server.rps() / ceiling.rps().max(1.0),
        p50_ratio,
        server,
        ceiling,
    })
}
