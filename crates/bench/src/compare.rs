//! The comparison with the previous report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::load::Ceiling;
use crate::measure::Mix;
use crate::report::us;
use crate::servers::Mode;
use crate::{HitRun, rate};

/// Figures of the report of 2026-12-01 (1,000,000 businesses; before list pages were
/// cached as ids and rows and before stats read counters), as (figure, value).
pub(crate) const BEFORE: &[(&str, f64)] = &[
    ("stats hits", 0.998),
    ("list hits", 0.663),
    ("detail hits", 0.826),
    ("all hits", 0.785),
    ("statements", 321.0),
    ("mix p99 ms", 248.7),
    ("mix req/s", 7302.0),
    ("uncached stats req/s", 9.0),
    ("stats Redis", 48792.0),
    ("stats near", 41809.0),
    ("list Redis", 16576.0),
    ("list near", 35069.0),
    ("detail Redis", 41785.0),
    ("detail near", 34418.0),
    ("stats ceiling", 186665.0),
    ("list ceiling", 120693.0),
    ("detail ceiling", 173438.0),
];

/// The comparison with the figures before (`BEFORE`) and the targets they were given.
pub(crate) fn compare(
    s: &mut String,
    results: &[HitRun],
    mixes: &[(Mode, Mix)],
    rates: &[(Mode, rate::RateRun)],
    ceilings: &BTreeMap<&'static str, Ceiling>,
) {
    let before = |k: &str| {
        BEFORE
            .iter()
            .find(|(n, _)| *n == k)
            .map_or(0.0, |(_, v)| *v)
    };
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let Some((_, m)) = mixes.iter().find(|(mode, _)| *mode == Mode::Redis) else {
        return;
    };
    let hit = |f: &str| m.hit_rate.get(f).copied().unwrap_or(0.0);
    let rps = |mode: Mode, name: &str| {
        results
            .iter()
            .find(|r| r.size == 1_000_000 && r.mode == mode && r.endpoint == name)
            .map_or(0.0, |r| r.wrk.rps())
    };
    let at_rate = |mode: Mode, r: u32| {
        rates
            .iter()
            .find(|(m, run)| *m == mode && run.rate == r)
            .map_or("-".to_owned(), |(_, run)| us(run.all.p99_us))
    };
    let _ = writeln!(
        s,
        "\n## Against the report before (2026-12-01)\n\n\
         The same bench at 1,000,000 businesses, before list pages were cached as ids and \
         rows and before stats read counters. Its hit rates counted cache lookups (a list \
         page whose rows were then read from PostgreSQL counted as a hit); the ones here \
         count answers given whole from the cache, which is stricter. Mix figures are the \
         Redis mode's. Runs on different machines differ in speed as a whole: single-endpoint \
         hits are compared as shares of the ceiling each run measured.\n"
    );
    let _ = writeln!(s, "| figure | before | now | target |");
    let _ = writeln!(s, "|---|---:|---:|---|");
    let rows: Vec<(String, String, String, String)> = vec![
        (
            "list hit rate".into(),
            pct(before("list hits")),
            pct(hit("list")),
            ">= 97%".into(),
        ),
        (
            "hit rate of all reads".into(),
            pct(before("all hits")),
            pct(hit("all")),
            ">= 90%".into(),
        ),
        (
            "stats hit rate".into(),
            pct(before("stats hits")),
            pct(hit("stats")),
            String::new(),
        ),
        (
            "detail hit rate (bound)".into(),
            pct(before("detail hits")),
            format!("{} ({})", pct(hit("detail")), pct(m.detail_bound)),
            "the bound".into(),
        ),
        (
            "DB statements per 1,000 requests".into(),
            format!("{:.0}", before("statements")),
            format!("{:.0}", m.db_queries_per_1000),
            "<= 150".into(),
        ),
        (
            "mix p99 at saturation".into(),
            format!("{:.1} ms", before("mix p99 ms")),
            us(m.wrk.p99_us),
            "<= 50 ms".into(),
        ),
        (
            "mix p99 at 1,000 req/s".into(),
            "-".into(),
            at_rate(Mode::Redis, 1000),
            "<= 5 ms".into(),
        ),
        (
            "mix req/s at saturation".into(),
            format!("{:.0}", before("mix req/s")),
            format!("{:.0}", m.wrk.rps()),
            String::new(),
        ),
        (
            "uncached stats req/s".into(),
            format!("{:.0}", before("uncached stats req/s")),
            format!(
                "{:.0} ({:.0}x)",
                rps(Mode::Uncached, "stats"),
                rps(Mode::Uncached, "stats") / before("uncached stats req/s")
            ),
            ">= 200x".into(),
        ),
    ];
    for (figure, was, now, target) in rows {
        let _ = writeln!(s, "| {figure} | {was} | {now} | {target} |");
    }
    for (name, key) in [("stats", "stats"), ("list", "list"), ("detail", "detail")] {
        for (mode, label) in [(Mode::Redis, "Redis"), (Mode::Tiered, "near")] {
            let was = before(&format!("{key} {label}"));
            let now = rps(mode, name);
            let ceiling = ceilings.get(name).map_or(0.0, |c| c.actix.rps());
            let was_ceiling = before(&format!("{key} ceiling"));
            let _ = writeln!(
                s,
                "| {name} hits, {} (req/s; share of the actix-from-memory ceiling of the same run) | {was:.0} ({:.0}%) | {now:.0} ({:.0}%) | no regression |",
                mode.label().trim_start_matches("cache hit "),
                was / was_ceiling.max(1.0) * 100.0,
                now / ceiling.max(1.0) * 100.0,
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
";
