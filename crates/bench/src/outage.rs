//! A PostgreSQL outage under the dashboard mix: the server reaches PostgreSQL through a
//! TCP proxy (the test kit's) that the runner points at an address nothing listens on
//! (every connection closed, new ones closed at once) for a while, then back. The mix runs at a constant rate before (the cache warms), during
//! and after; what each request was answered during the outage is counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context;
use letip_testkit::{FaultProxy, free_port};

use crate::Args;
use crate::rate::{self, RateRun};
use crate::servers::{Mode, start_on};

/// What the outage run measured.
#[derive(Debug)]
pub(crate) struct Outage {
    pub(crate) mode: Mode,
    pub(crate) rate: u32,
    pub(crate) warm_seconds: u64,
    pub(crate) seconds: u64,
    pub(crate) during: RateRun,
    pub(crate) after: RateRun,
}

/// Counts of one endpoint's answers: by `X-Cache` for 200s, by status otherwise.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) hit: u64,
    pub(crate) stale: u64,
    pub(crate) other_ok: u64,
    pub(crate) unavailable: u64,
    pub(crate) server_errors: u64,
    pub(crate) no_answer: u64,
    pub(crate) total: u64,
}

impl Tally {
    pub(crate) fn of(run: &RateRun, endpoint: &str) -> Self {
        let mut t = Self::default();
        for (&(e, status, cache), &n) in &run.answers {
            if e != endpoint {
                continue;
            }
            t.total += n;
            match (status, cache) {
                (200..=299, "HIT") => t.hit += n,
                (200..=299, "STALE") => t.stale += n,
                (200..=299, _) => t.other_ok += n,
                (503, _) => t.unavailable += n,
                (0, _) => t.no_answer += n,
                (500..=599, _) => t.server_errors += n,
                _ => {}
            }
        }
        t
    }

    /// The share answered 2xx.
    pub(crate) fn answered(&self) -> f64 {
        (self.hit + self.stale + self.other_ok) as f64 / (self.total.max(1)) as f64
    }
}

/// The upstream address of a `postgres://user@host:port` URL.
fn postgres_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let parsed = reqwest::Url::parse(url).context("the PostgreSQL URL")?;
    let host = parsed.host_str().context("a host in the PostgreSQL URL")?;
    let port = parsed.port().unwrap_or(5432);
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{port}")
        .parse()
        .context("the PostgreSQL URL names an IP address")
}

/// Runs the mix at `rate` on a fresh server of `mode` for `warm_seconds`, then cuts its
/// link to PostgreSQL for `seconds` under the same mix, then restores it for a last
/// run as long as the outage.
pub(crate) async fn measure(
    args: &Args,
    size: u64,
    mode: Mode,
    run: &str,
    (rate, warm_seconds, seconds): (u32, u64, u64),
) -> anyhow::Result<Outage> {
    let postgres = postgres_addr(&args.database)?;
    let link = FaultProxy::start(postgres).await;
    let mut url = reqwest::Url::parse(&crate::servers::db_url(args, size))?;
    url.set_port(Some(link.addr().port()))
        .map_err(|()| anyhow::anyhow!("a PostgreSQL URL with a port"))?;
    crate::servers::vacuum(args, size).await?;
    let server = start_on(
        args,
        size,
        mode,
        &format!("{run}-outage"),
        url.as_str(),
        &[],
    )
    .await?;
    let base = server.url("");
    rate::run(&base, rate, warm_seconds, size).await?;
    // Nothing listens there: every connection is closed, new ones at once.
    link.switch_to(SocketAddr::from(([127, 0, 0, 1], free_port())));
    let during = rate::run(&base, rate, seconds, size).await;
    link.switch_to(postgres);
    let during = during?;
    let after = rate::run(&base, rate, seconds, size).await?;
    server.stop().await;
    Ok(Outage {
        mode,
        rate,
        warm_seconds,
        seconds,
        during,
        after,
    })
}

/// The report's section.
pub(crate) fn section(outage: &Outage) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let o = outage;
    let _ = writeln!(
        out,
        "## Reads answered while PostgreSQL is unreachable\n\n\
         The dashboard mix at {} req/s on a fresh server ({}), {} s to warm its cache, then \
         its link to PostgreSQL cut (every connection closed, new ones refused) for {} s \
         under the same mix, then restored for {} s. During the cut:\n",
        o.rate,
        o.mode.label(),
        o.warm_seconds,
        o.seconds,
        o.seconds
    );
    out.push_str(
        "| endpoint | requests | HIT | STALE | other 2xx | 503 | other 5xx | no answer | answered |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut reads = Tally::default();
    let endpoints: BTreeMap<&str, ()> = o.during.answers.keys().map(|k| (k.0, ())).collect();
    for &endpoint in endpoints.keys() {
        let t = Tally::of(&o.during, endpoint);
        let _ = writeln!(
            out,
            "| {endpoint} | {} | {} | {} | {} | {} | {} | {} | {:.1}% |",
            t.total,
            t.hit,
            t.stale,
            t.other_ok,
            t.unavailable,
            t.server_errors,
            t.no_answer,
            t.answered() * 100.0
        );
        if endpoint != "write" {
            reads.hit += t.hit;
            reads.stale += t.stale;
            reads.other_ok += t.other_ok;
            reads.total += t.total;
        }
    }
    let after_5xx: u64 = (o.after.answers.iter())
        .filter(|((_, s, _), _)| (500..=599).contains(s) && *s != 503)
        .map(|(_, n)| n)
        .sum();
    let after_stale: u64 = (o.after.answers.iter())
        .filter(|((_, _, c), _)| *c == "STALE")
        .map(|(_, n)| n)
        .sum();
    let _ = writeln!(
        out,
        "\n**{:.1}% of reads answered during the outage** ({} HIT, {} STALE of {} reads); \
         every write is a 503 (no write can be answered then). In the {} s after the link \
         was restored: {} requests, {} failed, {} 5xx other than 503, {} STALE answers \
         (STALE only follows a load that failed).\n",
        reads.answered() * 100.0,
        reads.hit,
        reads.stale,
        reads.total,
        o.seconds,
        o.after.answers.values().sum::<u64>(),
        o.after.failed,
        after_5xx,
        after_stale,
    );
    out
}
