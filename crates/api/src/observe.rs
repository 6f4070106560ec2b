//! Observability: the Prometheus recorder, the HTTP latency middleware and request ids.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest};
use foldhash::fast::FixedState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

/// Latency histogram of every HTTP request, by method, route pattern, status and `cache`
/// (the answer's `X-Cache`: `HIT` when it came whole from the cache, `MISS`, `BYPASS`,
/// `STALE` (answered past its TTL while the database was unreachable), or `none` for
/// answers that are never cached).
pub const HTTP_DURATION: &str = "letip_http_request_duration_seconds";

const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

/// A write's wait for the lease holders: fine around the millisecond, where a wait for
/// acknowledgements falls, and up to the lease, where a wait for an unanswering holder
/// does.
const LEASE_WAIT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The process-wide Prometheus recorder, installed on first use. Every server in the
/// process (tests start several) shares it, as metrics are process-wide.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // A full name takes precedence over a suffix.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("cache_lease_wait_seconds".into()),
                        LEASE_WAIT_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            keep_up(handle.clone());
            handle
        })
        .clone()
}

/// How often the histograms' pending samples are folded into their buckets.
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds the histograms' pending samples into their buckets every [`UPKEEP_EVERY`], on a
/// thread of its own. A recorder made with `build_recorder` keeps every sample of a
/// histogram until something renders or upkeeps it: without a scrape of `/metrics` the
/// server's memory grew by every request's latency sample, without bound.
fn keep_up(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histograms grow until /metrics is read");
    }
}

/// The route pattern a resource was registered under, kept as its app data so that
/// [`observe`] labels a request without matching its path again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route(pub &'static str);

/// The route label of an answered request: its resource's [`Route`], else the pattern
/// actix matched (resources registered without one), else `unmatched`.
fn route_of(req: &HttpRequest) -> Cow<'static, str> {
    if let Some(Route(route)) = req.app_data::<Route>() {
        return Cow::Borrowed(route);
    }
    req.match_pattern()
        .map_or(Cow::Borrowed("unmatched"), Cow::Owned)
}

/// The method label: the standard methods by name, any other as `other`, so that no
/// client can grow the histogram's series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// What a latency series is told apart by.
#[derive(PartialEq, Eq, Hash)]
struct Series {
    method: &'static str,
    route: Cow<'static, str>,
    status: u16,
    cache: &'static str,
}

/// Latencies of one series recorded on one thread and not yet added to the recorder's
/// histogram, whose buckets every thread shares: both HTTP workers pushing into them on
/// every request passed their cache lines between the cores. Aligned so that no two
/// threads' batches share a line.
#[repr(align(128))]
struct Samples {
    histogram: metrics::Histogram,
    pending: Mutex<Vec<f64>>,
    /// Cleared when its thread ends; the next flush, or the next batch made, adds what
    /// it holds and lets it go.
    alive: AtomicBool,
}

/// Latencies a batch adds to its histogram by itself, whether or not anyone
/// [`flush`]es.
const FLUSH_EVERY: usize = 64;

impl Samples {
    fn add_pending(&self, pending: &mut Vec<f64>) {
        for seconds in pending.drain(..) {
            self.histogram.record(seconds);
        }
    }
}

/// Every thread's batches, for [`flush`].
static SAMPLES: Mutex<Vec<Arc<Samples>>> = Mutex::new(Vec::new());

/// A thread's batches by series. When the thread ends they are marked dead, and the
/// next flush, or the next batch made on any thread, adds what they hold and lets them
/// go: threads that come and go leave nothing behind. (Nothing is recorded from the
/// thread's own teardown: the recorder reads a clock in a thread-local that may be gone
/// by then.)
struct ThreadSamples(HashMap<Series, Arc<Samples>, FixedState>);

impl Drop for ThreadSamples {
    fn drop(&mut self) {
        for samples in self.0.values() {
            samples.alive.store(false, Ordering::Release);
        }
    }
}

/// Adds what every batch holds, and lets the dead ones go.
fn flush_all(all: &mut Vec<Arc<Samples>>) {
    all.retain(|samples| {
        let alive = samples.alive.load(Ordering::Acquire);
        let mut pending = samples.pending.lock().unwrap_or_else(|p| p.into_inner());
        samples.add_pending(&mut pending);
        alive
    });
}

thread_local! {
    /// The batches this thread has recorded to, by series, each made once: registering
    /// a series in the recorder on every request (hashing its name and four labels)
    /// costs more than a cache hit itself. The recorder must be installed before the
    /// first request (the server's `start_with` installs it before it builds anything),
    /// so that no handle taken here is a no-op one.
    static HISTOGRAMS: RefCell<ThreadSamples> =
        RefCell::new(ThreadSamples(HashMap::with_hasher(FixedState::default())));
}

/// Adds every thread's pending latencies to the recorder's histograms: `/metrics` calls
/// it before rendering them.
pub fn flush() {
    flush_all(&mut SAMPLES.lock().unwrap_or_else(|p| p.into_inner()));
}

fn record(series: Series, seconds: f64) {
    HISTOGRAMS.with_borrow_mut(|ThreadSamples(histograms)| {
        let samples = match histograms.get(&series) {
            Some(s) => s,
            None => {
                let histogram = metrics::histogram!(
                    HTTP_DURATION,
                    "method" => series.method,
                    "route" => series.route.clone(),
                    "status" => series.status.to_string(),
                    "cache" => series.cache,
                );
                let samples = Arc::new(Samples {
                    histogram,
                    pending: Mutex::new(Vec::with_capacity(FLUSH_EVERY)),
                    alive: AtomicBool::new(true),
                });
                let mut all = SAMPLES.lock().unwrap_or_else(|p| p.into_inner());
                flush_all(&mut all);
                all.push(samples.clone());
                histograms.entry(series).or_insert(samples)
            }
        };
        let mut pending = samples.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.push(seconds);
        if pending.len() >= FLUSH_EVERY {
            samples.add_pending(&mut pending);
        }
    });
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id: a random UUID, hyphenated.
fn request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("hex digits and hyphens are a header value")
}

/// The outermost middleware: gives each request an id, answered as `x-request-id`,
/// logs an error answer with that id (and the cause of a server-side one), and records
/// its latency in [`HTTP_DURATION`].
///
/// The `request` span (method, path, id) that puts the id on every line logged while
/// the request is served (not on work it shares with other requests, such as a
/// single-flight load) is at debug level: formatting it for every request cost a cache
/// hit a fifth of its throughput at the default `info`.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = method_label(req.method());
    let id = request_id();
    let request_id = id.to_str().unwrap_or_default();
    let span = tracing::debug_span!("request", method, path = req.path(), request_id);
    let mut res = next.call(req).instrument(span).await?;
    if let Some(e) = res.response().error() {
        log_error_answer(&res, e, request_id);
    }
    let cache = match res
        .headers()
        .get(&crate::handlers::X_CACHE_NAME)
        .map(HeaderValue::as_bytes)
    {
        Some(b"HIT") => "HIT",
        Some(b"MISS") => "MISS",
        Some(b"BYPASS") => "BYPASS",
        Some(b"STALE") => "STALE",
        _ => "none",
    };
    let series = Series {
        method,
        route: route_of(res.request()),
        status: res.status().as_u16(),
        cache,
    };
    record(series, start.elapsed().as_secs_f64());
    res.headers_mut().insert(X_REQUEST_ID.clone(), id);
    Ok(res)
}

/// Logs an error answer with its request's id: a refusal (4xx) or an unreachable
/// database (503) as a warning, any other failure as an error, with its cause.
fn log_error_answer<B>(res: &ServiceResponse<B>, e: &Error, request_id: &str) {
    let status = res.status();
    let method = res.request().method().as_str();
    let path = res.request().path();
    let cause = e
        .as_error::<crate::error::ApiError>()
        .and_then(crate::error::ApiError::cause)
        .unwrap_or_default();
    if status.is_server_error() && status != actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(request_id, method, path, %status, error = %e, cause, "request failed");
    } else if status.is_server_error() {
        tracing::warn!(request_id, method, path, %status, error = %e, cause, "request failed");
    } else {
        tracing::warn!(request_id, method, path, %status, error = %e, "request refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use actix_web::{App, HttpResponse, middleware::from_fn, test, web};
    use tracing_subscriber::fmt::MakeWriter;

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl MakeWriter<'_> for Sink {
        type Writer = Sink;
        fn make_writer(&self) -> Sink {
            self.clone()
        }
    }

    #[actix_web::test]
    async fn an_error_answer_is_logged_at_info_with_its_request_id_and_cause() {
        let sink = Sink::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(App::new().wrap(from_fn(observe)).route(
            "/fail",
            web::get().to(|| async {
                Err::<HttpResponse, _>(
                    ApiError::internal().caused_by(&std::io::Error::other("disk on fire")),
                )
            }),
        ))
        .await;
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/fail").to_request()).await;
        assert_eq!(res.status(), 500);
        let id = res
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body = test::read_body(res).await;
        assert!(
            !String::from_utf8_lossy(&body).contains("disk on fire"),
            "the cause stays out of the answer"
        );
        let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line = log
            .lines()
            .find(|l| l.contains("request failed"))
            .unwrap_or_else(|| panic!("no line for the failed request in {log:?}"));
        assert!(line.contains("ERROR"), "{line}");
        assert!(
            line.contains(&id),
            "the line names the request id {id}: {line}"
        );
        assert!(
            line.contains("disk on fire"),
            "the line names the cause: {line}"
        );
        assert!(line.contains("/fail"), "{line}");
    }
}
