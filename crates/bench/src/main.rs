//! `letip-bench`: seeds datasets, starts the real server in each cache mode, drives it
//! with wrk on loopback, measures the physical ceilings in the same run (an actix-web
//! handler answering the same bytes from memory, and `redis-benchmark` GET of the same
//! value size), and writes `docs/benchmarks.md` with a latency plot.
//!
//! Every request goes to 127.0.0.1 and every load is bounded in time. Run it through
//! `scripts/bench.sh`, which installs wrk when missing and builds the release binaries.

// A command-line tool: its progress lines are its interface.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::load::{Ceiling, CeilingServer, Paired, Wrk, paired, redis_benchmark, warm_wrk};
use crate::measure::{Mix, WriteWait, mix, profile, redis_memory, write_wait};
use crate::report::{chrono_like_now, render};
use crate::servers::{Endpoint, Mode, db_url, endpoints, rss_mib, seed, start};

mod compare;
mod footprint;
mod load;
mod measure;
mod outage;
mod peer;
mod plot;
mod rate;
mod replica;
mod report;
mod servers;

/// One endpoint measured with wrk on one dataset in one cache mode.
#[derive(Debug)]
pub(crate) struct HitRun {
    pub(crate) size: u64,
    pub(crate) mode: Mode,
    pub(crate) endpoint: &'static str,
    pub(crate) wrk: Wrk,
    /// The size of the answer's body.
    pub(crate) body_bytes: f64,
    /// Measured in turns with the ceiling (the cached modes on the largest dataset).
    pub(crate) paired: Option<Paired>,
}

impl HitRun {
    /// req/s as a share of the ceiling's: the paired median when measured in turns,
    /// else against the ceiling measured once after every server.
    pub(crate) fn share(&self, ceilings: &BTreeMap<&'static str, Ceiling>) -> f64 {
        self.paired.map_or_else(
            || {
                let c = ceilings.get(self.endpoint).map_or(0.0, |c| c.actix.rps());
                self.wrk.rps() / c.max(1.0)
            },
            |p| p.share,
        )
    }
}

/// A server's resident memory after its hit runs.
#[derive(Debug)]
pub(crate) struct Resident {
    pub(crate) size: u64,
    pub(crate) mode: Mode,
    pub(crate) mib: f64,
}

/// Benchmarks of the letip server: cache hits against the uncached path and the limits.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Dataset sizes (businesses).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Seconds of the dashboard mix, per cache mode, on the largest dataset.
    #[arg(long, default_value_t = 120)]
    mix_seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// List pages (limit 20) touched to measure Redis memory on the largest dataset;
    /// every page when not given.
    #[arg(long)]
    memory_pages: Option<u64>,
    /// PostgreSQL server (a database per size is made on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    database: String,
    /// Redis for the cached modes.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Where the report goes; the plot goes beside it.
    #[arg(long, default_value = "docs/benchmarks.md")]
    report: PathBuf,
    /// Constant request rates of the mix (open loop, latency from when each request was
    /// due) run per cache mode on the largest dataset; none when empty.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    rates: Vec<u32>,
    /// Seconds of each constant-rate run.
    #[arg(long, default_value_t = 30)]
    rate_seconds: u64,
    /// Runs of each hit measured in turns with the ceiling (the cached modes on the
    /// largest dataset); the median share is reported.
    #[arg(long, default_value_t = 3)]
    repeats: u32,
    /// Profile the hit path with `perf record` once.
    #[arg(long)]
    profile: bool,
    /// Skip the NestJS peer (`scripts/nest-peer.sh`), measured beside the ceilings.
    #[arg(long)]
    no_peer: bool,
    /// Node.js processes of the NestJS peer (letip runs one HTTP worker per core).
    #[arg(long, default_value_t = 2)]
    peer_workers: u32,
    /// Seconds PostgreSQL is cut off under the mix (the default mode, the largest
    /// dataset), after as long a warm-up; none when 0.
    #[arg(long, default_value_t = 30)]
    outage_seconds: u64,
    /// Requests per second of the mix around and during the outage.
    #[arg(long, default_value_t = 1000)]
    outage_rate: u32,
    /// Seconds of each run of the mix with a read replica (the largest dataset, on a
    /// private primary and a streaming replica of it); none when 0.
    #[arg(long, default_value_t = 20)]
    replica_seconds: u64,
    /// Requests per second of the mix in the replica runs.
    #[arg(long, default_value_t = 1000)]
    replica_rate: u32,
}

#[tokio::main]
pub(crate) async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = format!("{}", std::process::id());
    let out_dir = args.report.parent().unwrap_or(Path::new(".")).to_owned();
    std::fs::create_dir_all(&out_dir)?;
    let lua = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
    let report_lua = lua.join("report.lua");
    let mix_lua = out_dir.join(".mix-with-report.lua");
    std::fs::write(
        &mix_lua,
        std::fs::read_to_string(lua.join("mix.lua"))? + &std::fs::read_to_string(&report_lua)?,
    )?;
    let write_lua = out_dir.join(".write-with-report.lua");
    std::fs::write(
        &write_lua,
        std::fs::read_to_string(lua.join("write.lua"))? + &std::fs::read_to_string(&report_lua)?,
    )?;
    let mut writes: Vec<WriteWait> = Vec::new();

    let started = chrono_like_now();
    let mut results: Vec<HitRun> = Vec::new();
    let mut bodies: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let mut rss: Vec<Resident> = Vec::new();
    let mut mixes: Vec<(Mode, Mix)> = Vec::new();
    let mut rates: Vec<(Mode, rate::RateRun)> = Vec::new();
    let mut memory = String::new();
    let mut footprints: Vec<footprint::Footprint> = Vec::new();
    let mut perf = String::new();
    let mut outage_section = String::new();
    let mut replica_section = String::new();
    let largest = args.sizes.iter().copied().max().unwrap_or(0);

    let mut largest_ids = BTreeMap::new();
    for &size in &args.sizes {
        seed(&args, size).await?;
        largest_ids.insert(size, servers::largest_business(&args, size).await?);
        for mode in Mode::ALL {
            let server = start(&args, size, mode, &run).await?;
            // The mix first, on a fresh server (cold cache, nothing else in its memory yet):
            // on every dataset in the cached modes, for what they cost in memory after it;
            // in the uncached one on the largest.
            let mixed = matches!(mode, Mode::Redis | Mode::Tiered)
                || (size == largest && mode == Mode::Uncached);
            if mixed {
                let m = mix(&args, &server, size, &mix_lua).await?;
                println!(
                    "mix {size:>8} {:<22} {:>9.0} req/s hit rates {:?}",
                    mode.label(),
                    m.wrk.rps(),
                    m.hit_rate
                );
                if matches!(mode, Mode::Redis | Mode::Tiered) {
                    let f = footprint::measure(
                        &args.redis,
                        &server,
                        size,
                        mode,
                        &servers::namespace(&run, size, mode),
                        &measure::metrics(&server).await?,
                    )
                    .await?;
                    println!(
                        "memory {size:>8} {:<22} RSS {:.0} MiB, Redis {:.1} MiB in {} families",
                        mode.label(),
                        f.rss_mib,
                        f.redis_bytes() as f64 / 1048576.0,
                        f.families.len()
                    );
                    footprints.push(f);
                }
                if size == largest {
                    mixes.push((mode, m));
                }
            }
            for Endpoint {
                name,
                family,
                path,
                connections,
            } in endpoints(size, largest_ids.get(&size).copied())
            {
                let url = server.url(&path);
                // Two reads: the first fills the cache, the second proves it answers.
                let body = reqwest::get(&url).await?.bytes().await?;
                reqwest::get(&url).await?;
                if size == largest && mode == Mode::Redis {
                    bodies.entry(name).or_insert_with(|| body.to_vec());
                }
                let _ = family;
                let c = connections.unwrap_or(args.connections);
                let turns = size == largest && matches!(mode, Mode::Redis | Mode::Tiered);
                let (w, paired) = if turns {
                    let p = paired(
                        &url,
                        &body,
                        (args.seconds, c, args.repeats),
                        &report_lua,
                        &out_dir,
                    )
                    .await?;
                    (p.server, Some(p))
                } else {
                    (warm_wrk(&url, args.seconds, c, &report_lua).await?, None)
                };
                println!(
                    "{size:>8} {:<22} {name:<20} {:>9.0} req/s  p50 {:>8} µs  p99 {:>8} µs  non-2xx {}{}",
                    mode.label(),
                    w.rps(),
                    w.p50_us,
                    w.p99_us,
                    w.non2xx,
                    paired.map_or(String::new(), |p| format!(
                        "  {:.0}% of the ceiling, p50 {:.2}x (median of {})",
                        p.share * 100.0,
                        p.p50_ratio,
                        args.repeats
                    ))
                );
                results.push(HitRun {
                    size,
                    mode,
                    endpoint: name,
                    wrk: w,
                    body_bytes: body.len() as f64,
                    paired,
                });
            }
            rss.push(Resident {
                size,
                mode,
                mib: rss_mib(server.pid),
            });
            if size == largest && mode == Mode::Redis {
                memory = redis_memory(&args, &server, size, &run).await?;
                if args.profile {
                    perf = profile(&server, &report_lua, &out_dir)
                        .await
                        .unwrap_or_else(|e| format!("(profiling failed: {e})"));
                }
            }
            if size == largest && matches!(mode, Mode::Redis | Mode::Tiered | Mode::Uncached) {
                for &r in &args.rates {
                    let run = rate::run(&server.url(""), r, args.rate_seconds, size).await?;
                    println!(
                        "rate {:<22} {r:>6} req/s asked {:>8.0} answered  p50 {:>8} µs  p99 {:>8} µs  p99.9 {:>8} µs  failed {}",
                        mode.label(),
                        run.achieved,
                        run.all.p50_us,
                        run.all.p99_us,
                        run.all.p999_us,
                        run.failed
                    );
                    rates.push((mode, run));
                }
            }
            if size == largest && mode == Mode::Tiered {
                // Writes alone, then beside a second instance holding a lease.
                for instances in [1, 2] {
                    let other = if instances == 2 {
                        Some(start(&args, size, mode, &run).await?)
                    } else {
                        None
                    };
                    // Past the lease table's first lease, and the other's first renewal.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    // One writer at a time, as the dashboard's users write; then four at
                    // once, which saturate this machine's cores.
                    for connections in [1, 4] {
                        let w = write_wait(&server, (instances, connections), size, 20, &write_lua)
                            .await?;
                        println!(
                            "writes, {instances} instance(s), {connections} connection(s): {:.0} req/s  p50 {} µs  p99 {} µs; lease wait p50 <= {:.2} ms  p99 <= {:.2} ms over {:.0} writes, {:.0} lease ends waited out",
                            w.patch.rps(),
                            w.patch.p50_us,
                            w.patch.p99_us,
                            w.wait_p50_s * 1e3,
                            w.wait_p99_s * 1e3,
                            w.waits,
                            w.expiry_waits
                        );
                        writes.push(w);
                    }
                    if let Some(o) = other {
                        o.stop().await;
                    }
                }
            }
            server.stop().await;
        }
        if size == largest && args.outage_seconds > 0 {
            let o = outage::measure(
                &args,
                size,
                Mode::Tiered,
                &run,
                (args.outage_rate, args.outage_seconds, args.outage_seconds),
            )
            .await?;
            let t = outage::Tally::of(&o.during, "detail");
            println!(
                "outage {} s at {} req/s: details answered {:.1}% ({} HIT, {} STALE, {} 503, {} other 5xx)",
                o.seconds,
                o.rate,
                t.answered() * 100.0,
                t.hit,
                t.stale,
                t.unavailable,
                t.server_errors
            );
            outage_section = outage::section(&o);
        }
        if size == largest && args.replica_seconds > 0 {
            let r = replica::measure(
                &args,
                size,
                &run,
                (
                    args.replica_rate,
                    args.replica_seconds,
                    Duration::from_secs(2),
                ),
            )
            .await?;
            println!(
                "replica: {:.1}% of reads outside writes served by the replica; primary statements per 1,000 requests {:.0} (without a replica {:.0}); p99 {} µs, lagging 2 s {} µs",
                r.with.replica_share() * 100.0,
                r.with.statements_per_1000(),
                r.without.statements_per_1000(),
                r.with.run.all.p99_us,
                r.lagging.run.all.p99_us
            );
            replica_section = replica::section(&r);
        }
    }

    // The ceilings, measured with the bodies of the largest dataset.
    let mut ceilings: BTreeMap<&'static str, Ceiling> = BTreeMap::new();
    for (name, body) in &bodies {
        let connections = endpoints(largest, None)
            .iter()
            .find(|e| e.name == *name)
            .and_then(|e| e.connections)
            .unwrap_or(args.connections);
        let ceiling = CeilingServer::start(body, &out_dir).await?;
        let w = warm_wrk(&ceiling.url, args.seconds, connections, &report_lua).await?;
        drop(ceiling);
        let r = redis_benchmark(&args.redis, body.len(), connections).await?;
        println!(
            "ceiling {name:<20} actix from memory {:>9.0} req/s   redis-benchmark GET {:>9.0} req/s",
            w.rps(),
            r
        );
        ceilings.insert(
            name,
            Ceiling {
                actix: w,
                redis_get_rps: r,
            },
        );
    }
    let peer = if args.no_peer {
        None
    } else {
        let paths: Vec<(&'static str, String, u32)> =
            endpoints(largest, largest_ids.get(&largest).copied())
                .into_iter()
                .map(|e| (e.name, e.path, e.connections.unwrap_or(args.connections)))
                .collect();
        let (seconds, lua) = (args.seconds, report_lua.clone());
        match peer::measure(
            &db_url(&args, largest),
            &args.redis,
            &run,
            args.peer_workers,
            &paths,
            |url, connections| {
                let lua = lua.clone();
                async move { warm_wrk(&url, seconds, connections, &lua).await }
            },
        )
        .await
        {
            Ok(None) => {
                println!("NestJS peer: node is not installed; skipped");
                None
            }
            Ok(Some(hits)) => {
                for (name, w) in &hits {
                    println!(
                        "nestjs {name:<20} hit {:>9.0} req/s  p50 {} µs  p99 {} µs",
                        w.rps(),
                        w.p50_us,
                        w.p99_us
                    );
                }
                Some(hits)
            }
            Err(e) => {
                println!("NestJS peer: {e:#}; skipped");
                None
            }
        }
    };
    let _ = std::fs::remove_file(&mix_lua);
    let _ = std::fs::remove_file(&write_lua);

    let plot_path = out_dir.join("benchmarks-latency.svg");
    plot::latency(&plot_path, largest, &results)?;
    plot::memory(&out_dir.join("benchmarks-memory.svg"), &footprints)?;
    let report = render(
        &args,
        &started,
        &results,
        &ceilings,
        peer.as_ref(),
        &rss,
        &mixes,
        &rates,
        &writes,
        &memory,
        &footprints,
        &perf,
        largest,
    );
    std::fs::write(&args.report, report + &outage_section + &replica_section)?;
    println!(
        "wrote {} and {}",
        args.report.display(),
        plot_path.display()
    );
    Ok(())
}
