//! What the bench reads off a run: metrics, write waits, the dashboard mix, memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::process::Command;

use crate::load::{Wrk, wrk, wrk_with};
use crate::servers::Server;
use crate::{Args, rate};

/// Sums of a metric's samples, by the value of one label.
pub(crate) fn metric_sums(text: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        let key = series
            .split(&[',', '{', '}'][..])
            .find_map(|kv| kv.strip_prefix(&format!("{label}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        *sums.entry(key).or_default() += value;
    }
    sums
}

pub(crate) async fn metrics(server: &Server) -> anyhow::Result<String> {
    Ok(reqwest::get(server.url("/metrics")).await?.text().await?)
}

/// What writes cost on the leased near tier: the PATCH latency, and the writer's wait for
/// the other lease holders (`cache_lease_wait_seconds`), alone and beside a second
/// instance.
#[derive(Debug)]
pub(crate) struct WriteWait {
    pub(crate) instances: usize,
    pub(crate) connections: u32,
    pub(crate) patch: Wrk,
    pub(crate) waits: f64,
    pub(crate) wait_p50_s: f64,
    pub(crate) wait_p99_s: f64,
    pub(crate) wait_max_bucket_s: f64,
    pub(crate) expiry_waits: f64,
}

/// A histogram's bucket counts (`le` -> cumulative count), from the Prometheus text.
pub(crate) fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let le = labels(series).get("le")?.clone();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The upper bound of the bucket holding quantile `q` of the observations between two
/// scrapes (`before`, `after`), and the number of observations.
pub(crate) fn quantile_bound(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> (f64, f64) {
    let count =
        |b: &[(f64, f64)], le: f64| b.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| (*le, c - count(before, *le)))
        .collect();
    let total = delta.last().map_or(0.0, |(_, c)| *c);
    let bound = delta
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map_or(0.0, |(le, _)| *le);
    (bound, total)
}

/// PATCHes on `writer` for `seconds` over `connections`, and what they waited for.
pub(crate) async fn write_wait(
    writer: &Server,
    (instances, connections): (usize, u32),
    size: u64,
    seconds: u64,
    script: &Path,
) -> anyhow::Result<WriteWait> {
    const WAIT: &str = "cache_lease_wait_seconds";
    let before = metrics(writer).await?;
    let patch = wrk_with(
        &writer.url(""),
        seconds,
        connections,
        script,
        &[("BUSINESSES", size.to_string())],
    )
    .await?;
    let after = metrics(writer).await?;
    let (b, a) = (buckets(&before, WAIT), buckets(&after, WAIT));
    let (p50, waits) = quantile_bound(&b, &a, 0.5);
    let (p99, _) = quantile_bound(&b, &a, 0.99);
    let (max, _) = quantile_bound(&b, &a, 1.0);
    let expiry = |t: &str| {
        metric_sums(t, "cache_lease_expiry_waits_total", "why")
            .values()
            .sum::<f64>()
    };
    Ok(WriteWait {
        instances,
        connections,
        patch,
        waits,
        wait_p50_s: p50,
        wait_p99_s: p99,
        wait_max_bucket_s: max,
        expiry_waits: expiry(&after) - expiry(&before),
    })
}

/// The dashboard mix on one mode: wrk's figures, and the cache and database behind them.
#[derive(Debug)]
pub(crate) struct Mix {
    pub(crate) wrk: Wrk,
    pub(crate) hit_rate: BTreeMap<String, f64>,
    /// The detail hit rate the mix's first reads allow (`rate::detail_hit_bound`).
    pub(crate) detail_bound: f64,
    pub(crate) db_queries_per_1000: f64,
}

/// The labels of a Prometheus series line's name part (`name{k="v",...}`); a value may
/// hold braces and commas (a route pattern such as `/api/businesses/{id}`).
pub(crate) fn labels(series: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(mut rest) = series
        .split_once('{')
        .map(|(_, r)| r.strip_suffix('}').unwrap_or(r))
    else {
        return out;
    };
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        out.insert(
            key.trim_start_matches(',').to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    out
}

/// GET answers with status 200 by (family, X-Cache), from the HTTP latency histogram:
/// a hit is a read answered whole from the cache.
pub(crate) fn family_counts(text: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    let prefix = "letip_http_request_duration_seconds_count{";
    for line in text.lines().filter(|l| l.starts_with(prefix)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let l = labels(series);
        let get = |k: &str| l.get(k).map_or("", String::as_str);
        if get("method") != "GET" || get("status") != "200" {
            continue;
        }
        let family = match get("route") {
            "/api/businesses/stats" => "stats",
            "/api/businesses" => "list",
            "/api/businesses/{id}" => "detail",
            _ => continue,
        };
        *out.entry((family.to_owned(), get("cache").to_ascii_lowercase()))
            .or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

pub(crate) async fn mix(
    args: &Args,
    server: &Server,
    size: u64,
    script: &Path,
) -> anyhow::Result<Mix> {
    let before = metrics(server).await?;
    // mix.lua reads BUSINESSES in its init to draw ids.
    let w = wrk_with(
        &server.url(""),
        args.mix_seconds,
        args.connections,
        script,
        &[("BUSINESSES", size.to_string())],
    )
    .await?;
    let after = metrics(server).await?;
    let (b, a) = (family_counts(&before), family_counts(&after));
    let delta =
        |k: &(String, String)| a.get(k).copied().unwrap_or(0.0) - b.get(k).copied().unwrap_or(0.0);
    let mut hit_rate = BTreeMap::new();
    let (mut hits, mut reads) = (0.0, 0.0);
    for family in ["stats", "list", "detail"] {
        let f = family.to_owned();
        let h = delta(&(f.clone(), "hit".into()));
        let all = h + delta(&(f.clone(), "miss".into())) + delta(&(f.clone(), "bypass".into()));
        if all > 0.0 {
            hit_rate.insert(f, h / all);
        }
        (hits, reads) = (hits + h, reads + all);
    }
    if reads > 0.0 {
        hit_rate.insert("all".into(), hits / reads);
    }
    let q = |t: &str| {
        metric_sums(t, "letip_db_queries_total", "op")
            .values()
            .sum::<f64>()
    };
    Ok(Mix {
        wrk: w,
        hit_rate,
        detail_bound: rate::detail_hit_bound(size, w.requests),
        db_queries_per_1000: (q(&after) - q(&before)) / (w.requests.max(1) as f64) * 1000.0,
    })
}

/// The names of the keys matching `pattern`, in the batches `SCAN` answered them.
pub(crate) async fn keys_matching(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> anyhow::Result<Vec<Vec<String>>> {
    let (mut cursor, mut batches) = (0u64, Vec::new());
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        batches.push(batch);
        cursor = next;
        if cursor == 0 {
            return Ok(batches);
        }
    }
}

/// Redis's `used_memory` (`INFO memory`), in bytes.
pub(crate) async fn used_memory(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0))
}

/// The server's default `CACHE_LIST_MAX_PAGE`: deeper pages are read through.
pub(crate) const LIST_MAX_PAGE: u64 = 50;

/// Touches list pages so their entries land in Redis, then reads what Redis holds.
pub(crate) async fn redis_memory(
    args: &Args,
    server: &Server,
    size: u64,
    run: &str,
) -> anyhow::Result<String> {
    let redis = redis::Client::open(args.redis.as_str())?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let before = used_memory(&mut conn).await?;
    let mut peak = before;
    let client = reqwest::Client::new();
    let total_pages = size.div_ceil(20);
    let pages = args.memory_pages.unwrap_or(total_pages).min(total_pages);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    // Deepest first: the walk outlasts the list TTL (5 min), so the shallow pages that
    // are stored come last and are all held when Redis is read.
    let order: Vec<u64> = (1..=pages).rev().collect();
    for (i, batch) in order.chunks(8).enumerate() {
        let requests: Vec<_> = batch
            .iter()
            .map(|p| {
                let request = client
                    .get(server.url(&format!("/api/businesses?page={p}&limit=20")))
                    .send();
                async move {
                    let sent = Instant::now();
                    let response = request.await?.error_for_status()?;
                    let body = response.bytes().await?;
                    anyhow::Ok((sent.elapsed(), body.len()))
                }
            })
            .collect();
        for r in futures_util::future::join_all(requests).await {
            let (took, len) = r?;
            if len < 100 {
                bail!("a list page came back empty");
            }
            slowest = slowest.max(took);
        }
        if i % 64 == 0 {
            peak = peak.max(used_memory(&mut conn).await?);
        }
    }
    let touching = started.elapsed();
    println!(
        "touched {pages} list pages in {:.1} s (slowest {:.0} ms)",
        touching.as_secs_f64(),
        slowest.as_secs_f64() * 1000.0
    );
    let used = used_memory(&mut conn).await?;
    peak = peak.max(used);
    let pattern = format!("bench-{run}-{size}-redis:v1*");
    let (mut keys, mut without_ttl, mut list_entries, mut totals) = (0u64, 0u64, 0u64, 0u64);
    let mut list_bytes = 0u64;
    for batch in keys_matching(&mut conn, &pattern).await? {
        for key in batch {
            keys += 1;
            if key.contains(":list:") {
                list_entries += 1;
                let usage: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                list_bytes += usage.unwrap_or(0);
            } else if key.contains(":list_total:") {
                totals += 1;
            }
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await?;
            // -1: no TTL; -2: gone since the scan (expired or invalidated). The identity
            // record is kept without one on purpose (see the README).
            if ttl == -1 && !key.ends_with(":{#near}:identity") {
                without_ttl += 1;
            }
        }
    }
    // What one stored page takes in Redis (`MEMORY USAGE` of its key and value).
    let per_page = list_bytes as f64 / list_entries.max(1) as f64;
    let mib = |b: f64| b / 1048576.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Touched every list page, {pages} of them (limit 20; {total_pages} pages make the whole \
         unfiltered list), of the {size}-business dataset, deepest first, 8 at a time, in \
         {:.0} s ({:.0} pages/s, slowest page {:.0} ms). Redis `used_memory` for the whole \
         server: {:.1} MiB before, at most {:.1} MiB during the walk, {:.1} MiB after; \
         {keys} keys of this run, {list_entries} of them list pages ({:.1} MiB by \
         `MEMORY USAGE`) and {totals} filter totals; **{without_ttl} keys without a TTL** (besides the identity record, kept on purpose).",
        touching.as_secs_f64(),
        pages as f64 / touching.as_secs_f64().max(1e-9),
        slowest.as_secs_f64() * 1000.0,
        mib(before),
        mib(peak),
        mib(used),
        mib(list_bytes as f64),
    );
    let _ = writeln!(
        s,
        "\nThe number of list entries is bounded twice: pages deeper than \
         `CACHE_LIST_MAX_PAGE` ({LIST_MAX_PAGE}) are read through and never stored, so a \
         filter combination and page size holds at most {LIST_MAX_PAGE} entries however \
         many pages clients walk; and every entry, total and generation key has a TTL \
         (5 min for lists), so what is held is what was read in the last TTL. Deep pages \
         stay cheap without being stored: their ids come from an index-only scan and their \
         total from the cached count of the filter. A stored page takes about {:.1} KiB; \
         storing all {total_pages} pages (the cap lifted) would take about {:.0} MiB.",
        per_page / 1024.0,
        mib(total_pages as f64 * per_page)
    );
    Ok(s)
}

pub(crate) async fn profile(
    server: &Server,
    script: &Path,
    out_dir: &Path,
) -> anyhow::Result<String> {
    let data = out_dir.join("perf.data");
    let load = {
        let url = server.url("/api/businesses?page=1&limit=20");
        let script = script.to_owned();
        tokio::spawn(async move { wrk(&url, 8, 64, &script).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = Command::new("perf")
        .args(["record", "-F", "499", "-g", "-o"])
        .arg(&data)
        .args(["-p", &server.pid.to_string(), "--", "sleep", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    let _ = load.await;
    if !status.success() {
        bail!("perf record failed");
    }
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "-i",
        ])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .await?;
    let _ = std::fs::remove_file(&data);
    let text = String::from_utf8_lossy(&report.stdout);
    let top: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
                && l.contains('%')
        })
        .take(15)
        // perf pads each line and ends it with two empty columns ("-      -").
        .map(|l| l.trim_end_matches(|c: char| c == '-' || c.is_whitespace()))
        .collect();
    Ok(top.join("\n"))
}
