//! The comparison with the previous report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::HitRun;
use crate::load::Ceiling;
use crate::measure::Mix;
use crate::report::us;
use crate::servers::Mode;

/// Figures of the report of 2026-12-04 (1,000,000 businesses; the Redis mode the
/// default, glibc's allocator, every call over the shared connections, values stored as
/// they are), as (figure, value). Hits are shares of that run's ceiling.
pub(crate) const BEFORE: &[(&str, f64)] = &[
    ("stats Redis", 0.25),
    ("stats near", 0.76),
    ("list Redis", 0.13),
    ("list near", 0.77),
    ("detail Redis", 0.21),
    ("detail near", 0.75),
    ("stats NestJS near", 13.0),
    ("list NestJS near", 27.7),
    ("detail NestJS near", 13.7),
    ("mix req/s Redis", 11437.0),
    ("mix req/s near", 21540.0),
    ("mix p99 ms Redis", 27.9),
    ("mix p99 ms near", 32.2),
    ("rss MiB Redis", 58.0),
    ("rss MiB near", 85.0),
];

/// The comparison with the figures before (`BEFORE`) and the targets of this report.
pub(crate) fn compare(
    s: &mut String,
    results: &[HitRun],
    mixes: &[(Mode, Mix)],
    ceilings: &BTreeMap<&'static str, Ceiling>,
    peer: Option<&crate::peer::PeerHits>,
    largest: u64,
) {
    let before = |k: &str| {
        BEFORE
            .iter()
            .find(|(n, _)| *n == k)
            .map_or(0.0, |(_, v)| *v)
    };
    let run = |mode: Mode, name: &str| {
        results
            .iter()
            .find(|r| r.size == largest && r.mode == mode && r.endpoint == name)
            .map(|r| r.wrk)
    };
    let hit = |mode: Mode, name: &str| {
        results
            .iter()
            .find(|r| r.size == largest && r.mode == mode && r.endpoint == name)
    };
    let share = |mode: Mode, name: &str| hit(mode, name).map_or(0.0, |r| r.share(ceilings));
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    let _ = writeln!(
        s,
        "\n## Against the report before (2026-12-04)\n\n\
         The same bench at {largest} businesses, before the leased near tier became the \
         default, before each HTTP worker had a Redis connection of its own, mimalloc, \
         lookups as one `EVALSHA` built in place, and compressed values. Runs on different \
         machines differ in speed as a whole: hits are compared as shares of the \
         actix-from-memory ceiling each run measured.\n"
    );
    let _ = writeln!(s, "| figure | before | now | target |");
    let _ = writeln!(s, "|---|---:|---:|---|");
    for name in ["stats", "list", "detail"] {
        for (mode, label, target) in [
            (Mode::Tiered, "near", ">= 85% (the default)"),
            (
                Mode::Redis,
                "Redis",
                if name == "list" { ">= 30%" } else { ">= 45%" },
            ),
        ] {
            let _ = writeln!(
                s,
                "| {name} hits, {} (share of the ceiling) | {} | {} | {target} |",
                mode.label().trim_start_matches("cache hit "),
                pct(before(&format!("{name} {label}"))),
                pct(share(mode, name)),
            );
        }
    }
    // One request at a time: p50 against the ceiling's, run beside it in turns.
    let one = "stats, one connection";
    for (mode, target) in [
        (Mode::Tiered, "<= 1.2x (the default)"),
        (Mode::Redis, "<= 1.6x"),
    ] {
        if let Some(r) = hit(mode, one) {
            let (ceiling_p50, ratio) = r.paired.map_or_else(
                || {
                    let c = ceilings.get(one).map_or(0, |c| c.actix.p50_us).max(1);
                    (c, r.wrk.p50_us as f64 / c as f64)
                },
                |p| (p.ceiling.p50_us, p.p50_ratio),
            );
            let _ = writeln!(
                s,
                "| stats p50 over one connection, {} (x the ceiling's {}) | {} | {} ({ratio:.2}x) | {target} |",
                mode.label().trim_start_matches("cache hit "),
                us(ceiling_p50),
                if mode == Mode::Redis {
                    "2.66x"
                } else {
                    "1.11x"
                },
                us(r.wrk.p50_us),
            );
        }
    }
    if let Some(peer) = peer {
        for name in ["stats", "list", "detail"] {
            let nest = peer
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0.0, |(_, w)| w.rps());
            let near = run(Mode::Tiered, name).map_or(0.0, |w| w.rps());
            let _ = writeln!(
                s,
                "| {name} hits, near tier / NestJS peer | {:.1}x | {:.1}x | >= 10x |",
                before(&format!("{name} NestJS near")),
                near / nest.max(1.0),
            );
        }
    }
    for (mode, label) in [(Mode::Redis, "Redis"), (Mode::Tiered, "near")] {
        if let Some((_, m)) = mixes.iter().find(|(m, _)| *m == mode) {
            let _ = writeln!(
                s,
                "| mix req/s at saturation, {} | {:.0} | {:.0} | |",
                mode.label().trim_start_matches("cache hit "),
                before(&format!("mix req/s {label}")),
                m.wrk.rps(),
            );
            let _ = writeln!(
                s,
                "| mix p99 at saturation, {} | {:.1} ms | {} | |",
                mode.label().trim_start_matches("cache hit "),
                before(&format!("mix p99 ms {label}")),
                us(m.wrk.p99_us),
            );
        }
    }
}

/// What profiling and these runs led to; kept with the figures it explains.
pub(crate) const WHAT_WAS_DONE: &str = "## What the profile led to

- The first profile of the list hit path had the JSON syntax check of every hit at the \
top (about a fifth of the samples: `serde_json` `skip_to_escape`, `IgnoredAny`, \
`ignore_str`). Entries in Redis now carry a CRC-32 and the cache guarantees a hit is \
exactly what was stored, so the check is gone: 0.25 µs instead of 11 µs per 24 KB page \
(`cargo bench -p letip-service --bench hit_path`). Decoding and re-encoding the page, \
which a typed cache would do on every hit, would cost about 80 µs; hits pass the cached \
bytes through instead.
- What remains is the transfer of the value: task switches and copies in the kernel, \
allocation and `memmove` of 20 KB buffers. The near tier removes it for hot keys (one \
small Redis round trip confirms the copy), which is why its list hits are about twice \
the Redis ones.
- The first dashboard mix showed the weak spot: every write invalidated every list \
page, so with 1% writes the list family was rebuilt continually (list hit rate 11% on \
the largest dataset, where each list miss pays a `count(*)` over the filtered rows). \
List pages are now scoped by filter combination and a write invalidates only the \
combinations its business matches.
- After that, each list miss on a million businesses still paid a `count(*)` of its \
filter (about 0.1 s unfiltered) and a deep page an OFFSET through the table (page \
50,000: 2.9 s), which held the cached mix at 654 req/s and made touching every page \
impossible within a run. A filter's total is now cached under a scope of its own, which \
only writes that move a business into or out of the filter's list invalidate (the mix's \
PATCHes of phone numbers leave it alone), and a page's ids come from an index-only scan \
before its rows are fetched by id (page 50,000: 0.12 s). The mix and the walk over every \
page above are measured with these changes.
- Reading the ids through a subquery first made some uncached pages slower, not faster: \
a prepared statement's generic plan cannot see the LIMIT and joined the subquery by \
scanning the table. The ids are now a statement of their own. And the uncached figures \
of one run depended on whether an autovacuum had overlapped the seeding (an incomplete \
visibility map turns index-only counts into sequential scans), so every mode now starts \
from a vacuumed, analyzed dataset.
- The mix's PATCHes still rebuilt whole list pages, since a page embedded its rows; and \
stats counted every row (0.47 s at a million businesses) after every change of a count. \
A page is now its ids plus one row entry per listed business, so a PATCH invalidates \
that row and its detail and no page; stats read six counters that triggers keep in \
PostgreSQL. The figures of the mix and of uncached stats above, and the comparison, \
are measured with these changes.
- Rows made a page hit dearer in Redis: the first lookup script checked each row in \
three calls and ran at 70 to 97 µs a page on this machine (`INFO commandstats`), which \
held near-tier list hits at about 10,000 req/s on 10,000 businesses. The script now \
reads the rows' generations, existence and values in one call each, and the near tier \
confirms a page whose copies it all holds with plain commands (`MULTI`, `MGET`, \
`EXISTS`, `EXEC`), their key names made once per copy: about 22,000 req/s on the same \
run. A Redis-only page hit carried its rows' values through Lua (about 35 µs for 20 \
rows of 1.5 KB, against 3 µs for the same `MGET` outside a script); it now reads an \
index it has read before with plain commands in one `MULTI` (Redis time per page hit \
about 10 µs), from 7,700 to about 12,000 req/s in a probe on 10,000 businesses. What \
remains of a Redis page hit is in the server: parsing some forty Redis replies and \
assembling the page.
- Under the mix on a million businesses the near tier first fell to 4,600 req/s and \
could not hold 5,000 req/s: each write registered a moka invalidation predicate, and \
they piled up faster than moka retired them. One predicate per 100 ms still held the \
near-tier mix to 7,000 req/s (12,400 with no drops at all, in a probe): a drop is now a \
stamp in a table of epochs, and a copy older than its scope's stamp is no longer \
offered, so no drop scans the copies. The near tier now answers the mix faster than \
Redis alone.
- The mix's p99 at saturation (80 to 110 ms) was its list misses, 0.3% of requests at \
100 to 250 ms each (the server's own histogram by `cache` label, and PostgreSQL's \
`log_min_duration_statement`): a page miss stored each missing row with a Redis round \
trip of its own; the unfiltered and status totals counted up to every row (0.64 s \
under the load); and pages and counts of two facets read thousands of table rows \
(0.05 to 0.28 s). The row stores now go together, the totals the counters keep are \
read from them, and each two-facet filter has a partial index of its own (a \
city-and-status count: 0.4 ms). The mix's p99 fell to about 20 ms.
- The constant-rate runner charged the server for its own lateness: tokio's timer \
ticks in milliseconds, so cached stats showed a p50 of 1.8 ms at 1,000 req/s; and \
with reqwest's pooling client as the sender no mode held 5,000 req/s, although the \
closed-loop mix ran at 9,000. A thread now keeps the \
schedule and 256 kept-alive hyper connections send it: p50 0.4 ms, and 5,000 req/s held.
- Where a Redis-mode hit's time went (`perf record` of the server, 100,000 businesses): \
one request at a time, 65% of the samples are in the kernel, 37% in waking the \
socket's reader on the other side and switching tasks; no user-space symbol passes 0.5%. \
A Redis round trip adds two process wake-ups to the two of any HTTP answer, about 30 µs \
each on this virtual machine (`redis-benchmark -c 1` GET: p50 63 µs), so a Redis hit \
answers in about twice the ceiling's time whatever the server does. What the server \
added on top: every call went over a connection made on the main runtime, so the HTTP \
worker woke a runtime thread to send it and was woken back with the answer; each \
worker now calls over a connection of its own (`perf stat`: 2 context switches per \
request, all on the worker; the runtime's threads idle).
- Under 64 connections glibc's `malloc` and `free` took 17% of a Redis-mode hit's \
samples (`_int_malloc`, `malloc_consolidate`, `unlink_chunk`): mimalloc is the server's \
allocator (stats hits 44,000 -> 56,000 req/s in an A/B run; the ceiling and the near \
tier did not move, so the ceiling keeps the system allocator). A lookup's \
`ScriptInvocation` copied every key and argument twice before the same `EVALSHA`; it is \
built in place. A Redis page read through its memo made a tag string per row and parsed \
the root generation once per row; it compares in place (list hits 21,000 -> 25,000 \
req/s). Each lookup took the lock of pending invalidations; it reads an atomic.
- Values above 512 bytes are stored LZ4-compressed when that saves an eighth: after the \
mix on 100,000 businesses the Redis mode's namespace held 32.4 MB instead of 51.2 MB \
(-37%), with hit throughput within 2% either way (Redis list 24,700 against 25,000 \
req/s, detail 55,100 to 57,700 against 56,100 to 57,400; the near tier keeps copies \
decompressed). The 5,000-contact detail takes 262 KB in Redis instead of 1.57 MB, and \
its Redis-mode hit over one connection fell from 3.1 ms to 1.4 ms.
";
