//! What the cache costs in memory after the dashboard mix: the server's resident memory,
//! and what its namespace holds in Redis (`MEMORY USAGE` of every key, by family), at
//! each dataset size.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::servers::{Mode, Server, rss_mib};

/// One mode's memory after the mix on one dataset.
#[derive(Debug, Clone)]
pub(crate) struct Footprint {
    pub(crate) size: u64,
    pub(crate) mode: Mode,
    pub(crate) rss_mib: f64,
    /// Near-tier bytes the server reports (`cache_near_bytes`), tiered mode only.
    pub(crate) near_bytes: Option<f64>,
    /// Keys and their `MEMORY USAGE` bytes by family (`detail`, `row`, `list`,
    /// `list_total`, `stats`, `#gen` for generations, `other`).
    pub(crate) families: BTreeMap<String, (u64, u64)>,
}

impl Footprint {
    pub(crate) fn redis_bytes(&self) -> u64 {
        self.families.values().map(|(_, b)| b).sum()
    }

    /// Bytes per key of `family`, if it holds any.
    pub(crate) fn per(&self, family: &str) -> Option<f64> {
        self.families
            .get(family)
            .filter(|(n, _)| *n > 0)
            .map(|(n, b)| *b as f64 / *n as f64)
    }
}

/// The family of a key name `ns:{root}:family:name` (or `ns:{root}:#gen[:child]`).
fn family(key: &str) -> &str {
    let Some((_, rest)) = key.split_once("}:") else {
        return "other";
    };
    match rest.split(':').next() {
        Some(f) if f.starts_with('#') => "#gen",
        Some(f) if !f.is_empty() => f,
        _ => "other",
    }
}

/// Measures `server` (in `mode`, namespace `namespace`) after its mix.
pub(crate) async fn measure(
    redis_url: &str,
    server: &Server,
    size: u64,
    mode: Mode,
    namespace: &str,
    metrics: &str,
) -> anyhow::Result<Footprint> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{namespace}*");
    let mut families: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for keys in crate::measure::keys_matching(&mut conn, &pattern).await? {
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0);
            }
            let usage: Vec<Option<u64>> = pipe.query_async(&mut conn).await?;
            for (k, bytes) in keys.iter().zip(usage) {
                let e = families.entry(family(k).to_owned()).or_default();
                e.0 += 1;
                e.1 += bytes.unwrap_or(0);
            }
        }
    }
    let near_bytes = (mode == Mode::Tiered)
        .then(|| {
            metrics
                .lines()
                .find(|l| l.starts_with("cache_near_bytes"))
                .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        })
        .flatten();
    Ok(Footprint {
        size,
        mode,
        rss_mib: rss_mib(server.pid),
        near_bytes,
        families,
    })
}

/// The report's section: a table by size and mode, and the growth per business.
pub(crate) fn render(s: &mut String, all: &[Footprint], mix_seconds: u64) {
    if all.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## What the cache costs in memory\n\n\
         After {mix_seconds} s of the dashboard mix on each dataset, run first on a fresh \
         server: the server's resident memory, the near tier's own count of what it holds (`cache_near_bytes`), and what the \
         mode's namespace holds in Redis, summed from `MEMORY USAGE` of every key (so another \
         mode's keys in the same Redis are not counted). A cached business is its detail \
         entry; a list page is its entry of ids and meta, and its rows are entries of their \
         own, shared by every page that shows them.\n\n\
         ![memory by dataset size](benchmarks-memory.svg)\n"
    );
    let _ = writeln!(
        s,
        "| businesses | mode | server RSS | near tier | Redis (namespace) | keys | details | bytes per detail | rows | bytes per row | pages | bytes per page | generations |"
    );
    let _ = writeln!(
        s,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for f in all {
        let count = |fam: &str| f.families.get(fam).map_or(0, |(n, _)| *n);
        let per = |fam: &str| f.per(fam).map_or("-".into(), |b| format!("{b:.0}"));
        let keys: u64 = f.families.values().map(|(n, _)| n).sum();
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} MiB | {} | {:.1} MiB | {keys} | {} | {} | {} | {} | {} | {} | {} |",
            f.size,
            f.mode.label(),
            f.rss_mib,
            f.near_bytes
                .map_or("-".into(), |b| format!("{:.1} MiB", b / 1048576.0)),
            f.redis_bytes() as f64 / 1048576.0,
            count("detail"),
            per("detail"),
            count("row"),
            per("row"),
            count("list"),
            per("list"),
            count("#gen"),
        );
    }
    // Growth: bytes in Redis per business in the dataset, between the smallest and the
    // largest size, per mode.
    let mut modes: Vec<Mode> = all.iter().map(|f| f.mode).collect();
    modes.sort();
    modes.dedup();
    let _ = writeln!(s);
    for mode in modes {
        let of: Vec<&Footprint> = all.iter().filter(|f| f.mode == mode).collect();
        if let (Some(a), Some(b)) = (of.first(), of.last())
            && b.size > a.size
        {
            let slope =
                (b.redis_bytes() as f64 - a.redis_bytes() as f64) / (b.size - a.size) as f64;
            let rss = (b.rss_mib - a.rss_mib) * 1048576.0 / (b.size - a.size) as f64;
            let _ = writeln!(
                s,
                "- {}: from {} to {} businesses, Redis grows by {slope:.1} bytes and the server by {rss:.1} bytes per business in the dataset (what the mix cached of it).",
                mode.label(),
                a.size,
                b.size
            );
        }
    }
}
