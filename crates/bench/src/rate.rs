//! Constant-rate runs of the dashboard mix: requests sent on a fixed schedule (an open
//! loop), whatever the server's answers do, and each latency counted from the moment its
//! request was due rather than from when it could be sent. A server that falls behind is
//! charged for the wait it causes every request queued behind it, which a closed loop
//! like wrk's hides (coordinated omission; wrk2 and oha's `--latency-correction` count
//! the same way). Neither is packaged for this machine's Debian, so the runner drives
//! the schedule itself: a thread keeps the schedule, and a fixed set of kept-alive
//! HTTP/1.1 connections (hyper's, with nothing of a pooling client between) takes each
//! request as it falls due, so that the runner costs the machine it shares with the
//! server little more than wrk does.
//!
//! The mix is `lua/mix.lua`'s: 1% PATCHes of a Zipf-chosen business, 19% stats, 40%
//! list pages over Zipf-chosen filter combinations and pages 1 to 10, 40% details of
//! Zipf-chosen businesses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Mutex, mpsc};

/// Connections kept open, so most requests in flight at once. A request due while all
/// are busy waits for one, and that wait is part of its latency.
const CONNECTIONS: usize = 256;

/// How long one request may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);

const CITIES: [&str; 10] = [
    "Freehold",
    "Red%20Bank",
    "Asbury%20Park",
    "Long%20Branch",
    "Middletown",
    "Toms%20River",
    "Edison",
    "Princeton",
    "Hoboken",
    "Newark",
];
const INDUSTRIES: [&str; 10] = [
    "Dental",
    "Legal",
    "Real%20Estate",
    "Accounting",
    "Insurance",
    "Restaurant",
    "Automotive",
    "Fitness",
    "Salon",
    "HVAC",
];
const STATUSES: [&str; 3] = ["pending", "enriched", "failed"];

/// The cumulative distribution of a Zipf law of exponent `s` over ranks 1 to `k`.
fn zipf_cdf(k: usize, s: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(k);
    let mut total = 0.0;
    for i in 1..=k {
        total += 1.0 / (i as f64).powf(s);
        cdf.push(total);
    }
    for c in &mut cdf {
        *c /= total;
    }
    cdf
}

/// A rank (from 0) drawn from `cdf`.
fn sample(cdf: &[f64], rng: &mut StdRng) -> usize {
    let u: f64 = rng.random();
    cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
}

/// A value drawn from `values` by the ranks of `cdf`.
fn pick<'a>(values: &[&'a str], cdf: &[f64], rng: &mut StdRng) -> &'a str {
    values.get(sample(cdf, rng)).copied().unwrap_or_default()
}

/// One request of the mix.
#[derive(Debug)]
struct Request {
    endpoint: &'static str,
    method: Method,
    path: String,
    body: Option<String>,
}

/// Draws the mix's requests.
struct Mix {
    businesses: u64,
    ids: Vec<f64>,
    pages: Vec<f64>,
    tens: Vec<f64>,
    threes: Vec<f64>,
    rng: StdRng,
}

impl Mix {
    fn new(businesses: u64, seed: u64) -> Self {
        let ranks = usize::try_from(businesses.min(100_000)).unwrap_or(100_000);
        Self {
            businesses: businesses.max(1),
            ids: zipf_cdf(ranks.max(1), 1.1),
            pages: zipf_cdf(10, 1.2),
            tens: zipf_cdf(10, 1.0),
            threes: zipf_cdf(3, 1.0),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn business_id(&mut self) -> u64 {
        // Ranks scattered over the ids, so the popular businesses are not all the newest.
        let rank = sample(&self.ids, &mut self.rng) as u64 + 1;
        (rank * 7919) % self.businesses + 1
    }

    fn next(&mut self) -> Request {
        let r: u32 = self.rng.random_range(1..=1000);
        if r <= 10 {
            let phone: u32 = self.rng.random_range(0..10_000);
            return Request {
                endpoint: "write",
                method: Method::PATCH,
                path: format!("/api/businesses/{}", self.business_id()),
                body: Some(format!(r#"{{"phone": "(732) 555-{phone:04}"}}"#)),
            };
        }
        let (endpoint, path) = if r <= 200 {
            ("stats", "/api/businesses/stats".to_owned())
        } else if r <= 600 {
            let (tens, threes, rng) = (&self.tens, &self.threes, &mut self.rng);
            let mut q = format!("page={}", sample(&self.pages, rng) + 1);
            match rng.random_range(1..=6) {
                2 => q += &format!("&city={}", pick(&CITIES, tens, rng)),
                3 => q += &format!("&industry={}", pick(&INDUSTRIES, tens, rng)),
                4 => q += &format!("&enrichment_status={}", pick(&STATUSES, threes, rng)),
                5 => {
                    let (c, i) = (pick(&CITIES, tens, rng), pick(&INDUSTRIES, tens, rng));
                    q += &format!("&city={c}&industry={i}");
                }
                6 => {
                    let (c, s) = (pick(&CITIES, tens, rng), pick(&STATUSES, threes, rng));
                    q += &format!("&city={c}&enrichment_status={s}");
                }
                _ => {}
            }
            ("list", format!("/api/businesses?{q}"))
        } else {
            ("detail", format!("/api/businesses/{}", self.business_id()))
        };
        Request {
            endpoint,
            method: Method::GET,
            path,
            body: None,
        }
    }
}

/// The best detail hit rate `requests` draws of the mix allow from a cold cache: the
/// share of detail reads that are not the first read of their business since the
/// start or since its last write (the run is shorter than the detail TTL, and nothing
/// is evicted). The Zipf tail of first reads bounds any cache's detail hits.
pub fn detail_hit_bound(businesses: u64, requests: u64) -> f64 {
    let mut mix = Mix::new(businesses, 1);
    let mut cached = std::collections::HashSet::new();
    let (mut hits, mut reads) = (0u64, 0u64);
    for _ in 0..requests {
        let r = mix.next();
        let Some(id) = r.path.strip_prefix("/api/businesses/") else {
            continue;
        };
        match r.endpoint {
            "write" => {
                cached.remove(id);
            }
            "detail" => {
                reads += 1;
                if !cached.insert(id.to_owned()) {
                    hits += 1;
                }
            }
            _ => {}
        }
    }
    hits as f64 / reads.max(1) as f64
}

/// Latency percentiles of one endpoint (or of the whole mix), in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub requests: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl Percentiles {
    fn of(mut latencies: Vec<u64>) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
            latencies.get(i).copied().unwrap_or(0)
        };
        Self {
            requests: latencies.len() as u64,
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
        }
    }
}

/// What one constant-rate run measured.
#[derive(Debug, Clone, Default)]
pub struct RateRun {
    /// Requests per second asked for.
    pub rate: u32,
    /// Requests answered per second over the run, the tail included.
    pub achieved: f64,
    /// Answers that were not 2xx, requests that got no answer within the timeout, and
    /// requests that could not be sent within the timeout of when they were due.
    pub failed: u64,
    /// The whole mix, then each endpoint.
    pub all: Percentiles,
    pub endpoints: BTreeMap<&'static str, Percentiles>,
    /// How many requests of each endpoint got each answer: its status (0: none in
    /// time) and its `X-Cache` (`none` without one).
    pub answers: BTreeMap<(&'static str, u16, &'static str), u64>,
}

/// What a request was answered: its status and its `X-Cache`, or nothing in time.
type Answer = Option<(u16, &'static str)>;

fn is_2xx(answer: Answer) -> bool {
    answer.is_some_and(|(status, _)| (200..300).contains(&status))
}

/// An answer's `X-Cache`, as one of the values the server sends.
fn cache_label(value: Option<&hyper::header::HeaderValue>) -> &'static str {
    match value.map(hyper::header::HeaderValue::as_bytes) {
        Some(b"HIT") => "HIT",
        Some(b"MISS") => "MISS",
        Some(b"BYPASS") => "BYPASS",
        Some(b"STALE") => "STALE",
        Some(_) => "other",
        None => "none",
    }
}

/// A request of the schedule and when it was due.
type Due = (Instant, Request);

/// What one request came to: its endpoint, its latency from when it was due (µs), and
/// its answer.
type Outcome = (&'static str, u64, Answer);

/// Sends the mix to `base` (`http://host:port`) at `rate` requests per second for
/// `seconds`, then waits for the answers still due.
pub async fn run(base: &str, rate: u32, seconds: u64, businesses: u64) -> anyhow::Result<RateRun> {
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let total = u64::from(rate) * seconds;
    let mut mix = Mix::new(businesses, u64::from(rate));
    let (due_tx, due_rx) = mpsc::unbounded_channel::<Due>();
    let due_rx = Arc::new(Mutex::new(due_rx));
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    for _ in 0..CONNECTIONS {
        tokio::spawn(connection(addr.clone(), due_rx.clone(), tx.clone()));
    }
    drop(tx);
    let interval = 1.0 / f64::from(rate.max(1));
    // The schedule is kept by a thread of its own: tokio's timer ticks in whole
    // milliseconds, so a request due between two ticks would be sent up to a millisecond
    // late and that lateness, the runner's and not the server's, charged to its latency.
    // A thread's sleep wakes within tens of microseconds of when it was asked to.
    let pacer = std::thread::spawn(move || {
        let started = Instant::now();
        for i in 0..total {
            let due = started + Duration::from_secs_f64(i as f64 * interval);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due_tx.send((due, mix.next())).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut all = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut by_endpoint: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let mut failed = 0;
    let mut answers = BTreeMap::new();
    while let Some((endpoint, latency, answer)) = rx.recv().await {
        if !is_2xx(answer) {
            failed += 1;
        }
        let (status, cache) = answer.unwrap_or((0, "none"));
        *answers.entry((endpoint, status, cache)).or_insert(0) += 1;
        all.push(latency);
        by_endpoint.entry(endpoint).or_default().push(latency);
    }
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the request schedule's thread panicked"))?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(RateRun {
        rate,
        achieved: all.len() as f64 / elapsed.max(f64::EPSILON),
        failed,
        all: Percentiles::of(all),
        endpoints: by_endpoint
            .into_iter()
            .map(|(e, l)| (e, Percentiles::of(l)))
            .collect(),
        answers,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One kept-alive connection: takes the next request due, sends it, reads the whole
/// answer, and reports it; opens a new connection after a failure.
async fn connection(
    addr: String,
    due: Arc<Mutex<mpsc::UnboundedReceiver<Due>>>,
    out: mpsc::UnboundedSender<Outcome>,
) {
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let next = due.lock().await.recv().await;
        let Some((due, request)) = next else {
            return;
        };
        let endpoint = request.endpoint;
        // A request that could not even be sent within the timeout of when it was due
        // has failed: a server far below the rate would otherwise hold the run for as
        // long as it takes to drain the whole schedule.
        if due.elapsed() > TIMEOUT {
            let _ = out.send((endpoint, micros(due.elapsed()), None));
            continue;
        }
        let answer = match tokio::time::timeout(TIMEOUT, send(&mut sender, &addr, request)).await {
            Ok(answer) => answer,
            Err(_) => {
                // The answer may still come: this connection cannot be reused.
                sender = None;
                None
            }
        };
        let _ = out.send((endpoint, micros(due.elapsed()), answer));
    }
}

/// Sends `request` on `sender` (connecting first when there is none) and reads its
/// answer whole: its status and `X-Cache`, or `None` when none came.
async fn send(
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    addr: &str,
    request: Request,
) -> Answer {
    if sender.as_ref().is_none_or(SendRequest::is_closed) {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        *sender = Some(s);
    }
    let s = sender.as_mut()?;
    if s.ready().await.is_err() {
        *sender = None;
        return None;
    }
    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(request.path)
        .header(hyper::header::HOST, addr);
    let body = match request.body {
        Some(body) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(body))
        }
        None => Full::new(Bytes::new()),
    };
    let req = builder.body(body).ok()?;
    match s.send_request(req).await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let cache = cache_label(answer.headers().get("x-cache"));
            // Read whole either way, so that the connection can carry the next request.
            answer.into_body().collect().await.ok()?;
            Some((status, cache))
        }
        Err(_) => {
            *sender = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_its_shares_and_valid_ids() {
        let mut mix = Mix::new(1000, 7);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..100_000 {
            let r = mix.next();
            if let Some(id) = r.path.strip_prefix("/api/businesses/")
                && let Ok(id) = id.parse::<u64>()
            {
                assert!((1..=1000).contains(&id), "{id}");
            }
            *counts.entry(r.endpoint).or_default() += 1;
        }
        let share = |e: &str| f64::from(counts.get(e).copied().unwrap_or(0)) / 100_000.0;
        assert!((share("write") - 0.01).abs() < 0.002, "{counts:?}");
        assert!((share("stats") - 0.19).abs() < 0.01, "{counts:?}");
        assert!((share("list") - 0.40).abs() < 0.01, "{counts:?}");
        assert!((share("detail") - 0.40).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn the_detail_bound_counts_first_reads_as_misses() {
        // One business: every detail read after the first is a hit unless a write of it
        // came between, and writes are 1 in 40 detail reads.
        let one = detail_hit_bound(1, 100_000);
        assert!((0.96..0.985).contains(&one), "{one}");
        // Far more businesses than reads: almost every read is a first read.
        let many = detail_hit_bound(1_000_000, 200);
        let few = detail_hit_bound(1_000_000, 2_000_000);
        assert!(many < few, "{many} {few}");
    }

    #[test]
    fn percentiles_are_ranks_of_the_sorted_latencies() {
        let p = Percentiles::of((1..=1000).rev().collect());
        assert_eq!(
            (p.requests, p.p50_us, p.p99_us, p.p999_us),
            (1000, 500, 990, 999)
        );
    }
}
