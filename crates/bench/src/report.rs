//! `docs/benchmarks.md`: the report and its tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::compare::{WHAT_WAS_DONE, compare};
use crate::load::Ceiling;
use crate::measure::{Mix, WriteWait};
use crate::servers::{Endpoint, Mode, endpoints, proc_kib};
use crate::{Args, HitRun, Resident, peer, rate};

pub(crate) fn chrono_like_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = proc_kib("/proc/meminfo", "MemTotal:").map_or(0.0, |kb| kb / 1048576.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem:.0} GiB memory")
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn render(
    args: &Args,
    started: &str,
    results: &[HitRun],
    ceilings: &BTreeMap<&'static str, Ceiling>,
    peer: Option<&peer::PeerHits>,
    rss: &[Resident],
    mixes: &[(Mode, Mix)],
    rates: &[(Mode, rate::RateRun)],
    writes: &[WriteWait],
    memory: &str,
    footprints: &[crate::footprint::Footprint],
    perf: &str,
    largest: u64,
) -> String {
    let mut s = String::new();
    let sizes: Vec<String> = args.sizes.iter().map(u64::to_string).collect();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Measured {started} on {}, server, PostgreSQL 15, Redis 7 and the load generator \
         (wrk, 2 threads, {} connections, {} s per scenario) all on that one machine over \
         loopback. Release build, 2 HTTP workers.\n",
        machine(),
        args.connections,
        args.seconds
    );
    let _ = writeln!(
        s,
        "Command (seeds what is missing, then runs everything below and rewrites this page):\n\n\
         ```sh\nbash scripts/bench.sh --sizes {} --seconds {} --mix-seconds {} --rates {} --rate-seconds {}{}{}\n```\n",
        sizes.join(","),
        args.seconds,
        args.mix_seconds,
        args.rates
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.rate_seconds,
        args.memory_pages
            .map(|p| format!(" --memory-pages {p}"))
            .unwrap_or_default(),
        if args.profile { " --profile" } else { "" }
    );
    let _ = writeln!(s, "![latency by scenario](benchmarks-latency.svg)\n");

    for &size in &args.sizes {
        let _ = writeln!(s, "## {size} businesses\n");
        header(
            &mut s,
            "endpoint | mode | >req/s | >p50 | >p99 | >p99.9 | >non-2xx | >speedup vs uncached (req/s)",
        );
        for Endpoint { name, .. } in endpoints(size, None) {
            let uncached = results
                .iter()
                .find(|r| r.size == size && r.mode == Mode::Uncached && r.endpoint == name)
                .map(|r| r.wrk.rps());
            for mode in Mode::ALL {
                if let Some(HitRun { wrk: w, .. }) = results
                    .iter()
                    .find(|r| r.size == size && r.mode == mode && r.endpoint == name)
                {
                    let speedup = uncached
                        .filter(|u| *u > 0.0 && mode != Mode::Uncached)
                        .map_or(String::new(), |u| format!("{:.0}x", w.rps() / u));
                    let _ = writeln!(
                        s,
                        "| {name} | {} | {:.0} | {} | {} | {} | {} | {speedup} |",
                        mode.label(),
                        w.rps(),
                        us(w.p50_us),
                        us(w.p99_us),
                        us(w.p999_us),
                        w.non2xx + w.timeouts + w.socket_errors,
                    );
                }
            }
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "## The limits, measured in the same run\n");
    let _ = writeln!(
        s,
        "The ceiling of any HTTP cache hit is an actix-web handler answering the same bytes \
         from memory (`bench-ceiling`); the ceiling of a Redis read is `redis-benchmark` GET \
         of a value of the same size, {} clients. Ratios are of the {largest}-business cache hits. \
         The Redis and near-tier hits were measured in turns with the ceiling (ceiling, \
         server, ceiling, server, ... {} times, the ceiling's process running beside the \
         server's), and their share is the median of the {} ratios: a share of two runs \
         seconds apart, so a machine that slows for a while slows both. The ceiling column \
         is one run after every server; the confirmed mode's share is against it.\n",
        args.connections, args.repeats, args.repeats
    );
    header(
        &mut s,
        "endpoint | >body | >actix from memory | >Redis hit | >Redis hit / ceiling | >near-tier hit (leased) | >near / ceiling | >near-tier hit, confirmed | >confirmed / ceiling | >redis-benchmark GET | >Redis hit / redis-benchmark",
    );
    for (
        name,
        Ceiling {
            actix: w,
            redis_get_rps: rb,
        },
    ) in ceilings
    {
        let find = |mode| {
            results
                .iter()
                .find(|r| r.size == largest && r.mode == mode && r.endpoint == *name)
                .map(|r| (r.wrk.rps(), r.share(ceilings), r.body_bytes))
        };
        let (hit, hit_share, bytes) = find(Mode::Redis).unwrap_or_default();
        let (near, near_share, _) = find(Mode::Tiered).unwrap_or_default();
        let (confirmed, confirmed_share, _) = find(Mode::Confirmed).unwrap_or_default();
        let _ = writeln!(
            s,
            "| {name} | {:.1} KiB | {:.0} | {hit:.0} | {:.0}% | {near:.0} | {:.0}% | {confirmed:.0} | {:.0}% | {rb:.0} | {:.0}% |",
            bytes / 1024.0,
            w.rps(),
            hit_share * 100.0,
            near_share * 100.0,
            confirmed_share * 100.0,
            hit / rb.max(1.0) * 100.0,
        );
    }

    if let Some(peer) = peer {
        let _ = writeln!(
            s,
            "\n## Against a NestJS peer ({largest} businesses)\n\n\
             The same reads as a NestJS 11 team builds them (`bench/nest-peer`: \
             `CacheInterceptor` on cache-manager 7 with a Redis store, {} Node.js processes), \
             on the same database, Redis and load (wrk, {} connections, {} s), measured \
             after the ceilings. Its hits are whole answers from Redis; letip's are \
             letip's hits in the same run.\n",
            args.peer_workers, args.connections, args.seconds
        );
        header(
            &mut s,
            "endpoint | >NestJS hit | >NestJS p99 | >letip Redis hit | >letip near (leased) | >Redis / NestJS | >near / NestJS",
        );
        for (name, w) in peer {
            let find = |mode| {
                results
                    .iter()
                    .find(|r| r.size == largest && r.mode == mode && r.endpoint == *name)
                    .map_or(0.0, |r| r.wrk.rps())
            };
            let (redis, near) = (find(Mode::Redis), find(Mode::Tiered));
            let nest = w.rps().max(1.0);
            let _ = writeln!(
                s,
                "| {name} | {:.0} | {} | {redis:.0} | {near:.0} | {:.1}x | {:.1}x |",
                w.rps(),
                us(w.p99_us),
                redis / nest,
                near / nest
            );
        }
    }

    if !writes.is_empty() {
        let _ = writeln!(
            s,
            "\n## What a write costs on the leased near tier ({largest} businesses)\n"
        );
        let _ = writeln!(
            s,
            "PATCHes of random businesses on one instance (wrk, 20 s), alone and beside a \
             second instance holding a lease: over one connection (one write at a time, as \
             the dashboard's users make them), then over four (writes back to back, which \
             keep this machine's cores busy with PostgreSQL commits). The wait is \
             `cache_lease_wait_seconds`: from the announcement script's call to the last \
             acknowledgement (or lease end) a write waited for; the figures are the upper \
             bounds of the histogram buckets that hold them.\n"
        );
        header(
            &mut s,
            ">instances | >connections | >PATCH req/s | >PATCH p50 | >PATCH p99 | >writes waited | >wait p50 | >wait p99 | >slowest wait | >lease ends waited out",
        );
        for w in writes {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} | {:.0} | <= {:.2} ms | <= {:.2} ms | <= {:.2} ms | {:.0} |",
                w.instances,
                w.connections,
                w.patch.rps(),
                us(w.patch.p50_us),
                us(w.patch.p99_us),
                w.waits,
                w.wait_p50_s * 1e3,
                w.wait_p99_s * 1e3,
                w.wait_max_bucket_s * 1e3,
                w.expiry_waits
            );
        }
    }

    if !mixes.is_empty() {
        let title = format!(
            "Dashboard mix ({largest} businesses, {} s per mode)",
            args.mix_seconds
        );
        let intro = "Zipf-distributed reads (s = 1.1 over business ids, over filter combinations and \
             pages 1 to 10): 19% stats, 40% lists, 40% details, and 1% writes (PATCH of a \
             Zipf-chosen business's phone). A hit is a read answered whole from the cache \
             (`X-Cache: HIT`; a list page with one row fetched from PostgreSQL is a miss), \
             counted with the database statements from `/metrics` before and after. The \
             detail bound is the best detail hit rate the same number of draws allows from \
             a cold cache: a business's first read, and its first read after a write, miss \
             in any cache.";
        section(
            &mut s,
            &title,
            intro,
            "mode | >requests | >req/s | >p50 | >p99 | >non-2xx | hit rate stats / list / detail (bound) | >hit rate of all reads | >DB statements per 1,000 requests",
        );
        for (mode, m) in mixes {
            let rate = |f: &str| {
                m.hit_rate
                    .get(f)
                    .map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} | {} | {} / {} / {} ({:.1}%) | {} | {:.0} |",
                mode.label(),
                m.wrk.requests,
                m.wrk.rps(),
                us(m.wrk.p50_us),
                us(m.wrk.p99_us),
                m.wrk.non2xx,
                rate("stats"),
                rate("list"),
                rate("detail"),
                m.detail_bound * 100.0,
                rate("all"),
                m.db_queries_per_1000
            );
        }
    }

    if !rates.is_empty() {
        let title = format!(
            "Constant rate ({largest} businesses, {} s per rate and mode)",
            args.rate_seconds
        );
        let intro = "The same mix sent on a fixed schedule (an open loop on 256 kept-alive \
             connections, so at most 256 requests in flight), after the mode's hit runs: each latency is counted from when \
             its request was due, so a server that falls behind is charged for the queue \
             it causes (corrected for coordinated omission, as wrk2 does). \"failed\" counts \
             answers that were not 2xx, requests unanswered within 10 s, and requests \
             that could not be sent within 10 s of when they were due (a mode far below \
             the rate: its latencies then say only that it could not keep up).";
        section(
            &mut s,
            &title,
            intro,
            "mode | >rate asked | >answered req/s | endpoint | >requests | >p50 | >p99 | >p99.9 | >failed",
        );
        for (mode, run) in rates {
            let rows = std::iter::once(("mix", run.all))
                .chain(run.endpoints.iter().map(|(e, p)| (*e, *p)));
            for (endpoint, p) in rows {
                let (asked, answered, failed) = if endpoint == "mix" {
                    (
                        run.rate.to_string(),
                        format!("{:.0}", run.achieved),
                        run.failed.to_string(),
                    )
                } else {
                    (String::new(), String::new(), String::new())
                };
                let _ = writeln!(
                    s,
                    "| {} | {asked} | {answered} | {endpoint} | {} | {} | {} | {} | {failed} |",
                    mode.label(),
                    p.requests,
                    us(p.p50_us),
                    us(p.p99_us),
                    us(p.p999_us),
                );
            }
        }
    }

    if largest == 1_000_000 {
        compare(&mut s, results, mixes, ceilings, peer, largest);
    }

    let _ = writeln!(s, "\n## Memory\n");
    let _ = writeln!(
        s,
        "Server resident memory after each mode's mix and hit runs, the 1.5 MB detail among them at 64 connections (MiB):\n"
    );
    let _ = writeln!(
        s,
        "| businesses | {} |",
        Mode::ALL.map(Mode::label).join(" | ")
    );
    let _ = writeln!(s, "|---|{}", "---:|".repeat(Mode::ALL.len()));
    for &size in &args.sizes {
        let cells: Vec<String> = Mode::ALL
            .iter()
            .map(|m| {
                rss.iter()
                    .find(|r| r.size == size && r.mode == *m)
                    .map_or("-".into(), |r| format!("{:.0}", r.mib))
            })
            .collect();
        let _ = writeln!(s, "| {size} | {} |", cells.join(" | "));
    }
    let _ = writeln!(s, "\n{memory}");
    crate::footprint::render(&mut s, footprints, args.mix_seconds);
    let _ = writeln!(
        s,
        "Recommended Redis settings: `maxmemory` sized for the working set and \
         `maxmemory-policy volatile-lru` (or `allkeys-lru`); see the README.\n"
    );
    if !perf.is_empty() {
        let _ = writeln!(
            s,
            "## Profile of the hit path\n\n`perf record -g` of the server for 5 s under the \
             cached list page load (top symbols, self time):\n\n```\n{perf}\n```\n"
        );
    }
    let _ = writeln!(s, "{WHAT_WAS_DONE}");
    s
}

pub(crate) fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1} ms", v as f64 / 1000.0)
    } else {
        format!("{v} µs")
    }
}

/// Writes a section: its title, a paragraph, and the header of its table.
fn section(s: &mut String, title: &str, intro: &str, columns: &str) {
    let _ = writeln!(s, "\n## {title}\n\n{intro}\n");
    header(s, columns);
}

/// Writes a Markdown table's header from its columns' names, separated by ` | `, each
/// aligned right when written with a leading `>`.
fn header(s: &mut String, columns: &str) {
    let columns: Vec<&str> = columns.split(" | ").collect();
    let names: Vec<&str> = columns.iter().map(|c| c.trim_start_matches('>')).collect();
    let aligns: Vec<&str> = (columns.iter())
        .map(|c| if c.starts_with('>') { "---:" } else { "---" })
        .collect();
    let _ = writeln!(s, "| {} |", names.join(" | "));
    let _ = writeln!(s, "|{}|", aligns.join("|"));
}
