//! A read replica under the dashboard mix: a private PostgreSQL primary (`initdb`, with
//! `pg_stat_statements`) holding the largest dataset, a streaming replica of it
//! (`pg_basebackup -R`), and the server in the default mode on both. Measured at a
//! constant rate: the share of the reads outside writes that the replica served (from
//! the server's `letip_db_replica_reads_total`), the primary's statements per 1,000
//! requests (from `pg_stat_statements`, every statement the primary ran for the
//! dataset's database: BEGIN and COMMIT included), the same without the replica, and the
//! mix's latency while the replica replays each commit 2 s late.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use letip_testkit::PgCluster;

use crate::Args;
use crate::rate::{self, RateRun};
use crate::servers::{Mode, Server, seed_at, start_on, vacuum_at};

const DATABASE: &str = "letip_bench_replica";

/// One constant-rate run and what the primary and the routing counted over it.
#[derive(Debug)]
pub(crate) struct Phase {
    pub(crate) run: RateRun,
    /// Reads outside writes by where they went (`letip_db_replica_reads_total`).
    pub(crate) routed: BTreeMap<String, f64>,
    /// Statements the primary ran for the dataset's database.
    pub(crate) primary_statements: f64,
}

impl Phase {
    pub(crate) fn replica_share(&self) -> f64 {
        let all: f64 = self.routed.values().sum();
        self.routed.get("replica").copied().unwrap_or(0.0) / all.max(1.0)
    }

    pub(crate) fn statements_per_1000(&self) -> f64 {
        let requests: u64 = self.run.answers.values().sum();
        self.primary_statements * 1000.0 / (requests.max(1) as f64)
    }
}

#[derive(Debug)]
pub(crate) struct ReplicaRuns {
    pub(crate) size: u64,
    pub(crate) rate: u32,
    pub(crate) seconds: u64,
    pub(crate) without: Phase,
    pub(crate) with: Phase,
    pub(crate) lagging: Phase,
    pub(crate) lag: Duration,
}

fn statements(primary: &PgCluster) -> anyhow::Result<f64> {
    primary
        .psql(
            "postgres",
            &format!(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s \
                 JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{DATABASE}'"
            ),
        )
        .parse()
        .context("pg_stat_statements answers a number")
}

async fn routed(server: &Server) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = crate::measure::metrics(server).await?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("letip_db_replica_reads_total{outcome=\""))
        .filter_map(|l| {
            let (outcome, value) = l.split_once("\"} ")?;
            Some((outcome.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

/// A run of the mix at `rate` for `seconds`, with what the primary and the routing
/// counted over it.
async fn phase(
    server: &Server,
    primary: &PgCluster,
    (rate, seconds, size): (u32, u64, u64),
) -> anyhow::Result<Phase> {
    let (routed_before, before) = (routed(server).await?, statements(primary)?);
    let run = rate::run(&server.url(""), rate, seconds, size).await?;
    // The primary's sessions report their statements within a second of going idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut routed_after, after) = (routed(server).await?, statements(primary)?);
    for (outcome, n) in &mut routed_after {
        *n -= routed_before.get(outcome).copied().unwrap_or(0.0);
    }
    Ok(Phase {
        run,
        routed: routed_after,
        primary_statements: after - before,
    })
}

/// Seeds the dataset of `size` into a private primary, makes a replica of it, and runs
/// the mix without the replica, with it, and with it lagging by `lag`.
pub(crate) async fn measure(
    args: &Args,
    size: u64,
    run: &str,
    (rate, seconds, lag): (u32, u64, Duration),
) -> anyhow::Result<ReplicaRuns> {
    let primary = tokio::task::spawn_blocking(|| {
        PgCluster::start_with(
            "shared_preload_libraries = 'pg_stat_statements'\n\
             pg_stat_statements.track = all\nmax_connections = 200",
        )
    })
    .await?;
    let url = primary.url(DATABASE);
    seed_at(&url, size).await?;
    vacuum_at(&url).await?;
    primary.psql(
        "postgres",
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    );
    let primary = std::sync::Arc::new(primary);
    let p = primary.clone();
    let replica =
        tokio::task::spawn_blocking(move || PgCluster::replica_of(&p, Duration::ZERO)).await?;
    replica.caught_up_with(&primary);
    println!(
        "replica of the {size}-business dataset on port {} ready",
        replica.port()
    );
    let shape = (rate, seconds, size);

    let alone = start_on(
        args,
        size,
        Mode::Tiered,
        &format!("{run}-primary"),
        &url,
        &[],
    )
    .await?;
    rate::run(&alone.url(""), rate, seconds, size).await?;
    let without = phase(&alone, &primary, shape).await?;
    alone.stop().await;

    let replicas = [("DATABASE_REPLICA_URLS", replica.url(DATABASE))];
    let server = start_on(
        args,
        size,
        Mode::Tiered,
        &format!("{run}-replica"),
        &url,
        &replicas,
    )
    .await?;
    rate::run(&server.url(""), rate, seconds, size).await?;
    let with = phase(&server, &primary, shape).await?;
    replica.set_apply_delay(lag);
    tokio::time::sleep(lag + Duration::from_secs(1)).await;
    let lagging = phase(&server, &primary, shape).await?;
    server.stop().await;
    Ok(ReplicaRuns {
        size,
        rate,
        seconds,
        without,
        with,
        lagging,
        lag,
    })
}

/// The report's section.
pub(crate) fn section(r: &ReplicaRuns) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Read replicas\n\n\
         The dashboard mix at {} req/s for {} s (after as long a warm-up) on the default mode, \
         {} businesses on a private primary (`initdb`, `pg_stat_statements`) and one \
         streaming replica of it (`pg_basebackup -R`) on this machine. *Replica share*: the \
         reads outside writes (misses and uncached reads) served by the replica, of all \
         (`letip_db_replica_reads_total`); *primary statements*: every statement the \
         primary ran for the dataset (BEGIN and COMMIT included, the position probes and \
         the replica checks' primary side too) per 1,000 requests.\n",
        r.rate, r.seconds, r.size
    );
    out.push_str(
        "| run | requests | failed | replica share | to the primary, by reason | primary statements / 1,000 requests | p50 | p99 | p99.9 |\n\
         |---|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    let lag = format!("with the replica, replaying {} s late", r.lag.as_secs());
    for (name, p) in [
        ("without a replica", &r.without),
        ("with the replica", &r.with),
        (lag.as_str(), &r.lagging),
    ] {
        let primary: Vec<String> = p
            .routed
            .iter()
            .filter(|(k, n)| k.as_str() != "replica" && **n > 0.0)
            .map(|(k, n)| format!("{} {n:.0}", k.trim_start_matches("primary_")))
            .collect();
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
            p.run.answers.values().sum::<u64>(),
            p.run.failed,
            if p.routed.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}%", p.replica_share() * 100.0)
            },
            if primary.is_empty() {
                "-".to_owned()
            } else {
                primary.join(", ")
            },
            p.statements_per_1000(),
            p.run.all.p50_us as f64 / 1e3,
            p.run.all.p99_us as f64 / 1e3,
            p.run.all.p999_us as f64 / 1e3,
        );
    }
    let _ = writeln!(
        out,
        "\nA replica behind the position a read needs is waited for up to 50 ms \
         (`DATABASE_REPLICA_WAIT_MS`), or not at all once it is known to be further behind; \
         so a lagging replica moves reads to the primary rather than delaying them.\n"
    );
    out
}
