//! Observability: the Prometheus recorder, the HTTP latency middleware and request ids.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_actix_web::RequestId;

/// Latency histogram of every HTTP request, by method, route pattern, status and `cache`
/// (the answer's `X-Cache`: `HIT` when it came whole from the cache, `MISS`, `BYPASS`,
/// or `none` for answers that are never cached).
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
            handle
        })
        .clone()
}

/// Records request latency and answers the request id as `x-request-id`.
pub async fn http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let request_id = req.extensions().get::<RequestId>().copied();
    let mut res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let cache = match res
        .headers()
        .get(crate::handlers::X_CACHE)
        .map(HeaderValue::as_bytes)
    {
        Some(b"HIT") => "HIT",
        Some(b"MISS") => "MISS",
        Some(b"BYPASS") => "BYPASS",
        _ => "none",
    };
    metrics::histogram!(
        HTTP_DURATION,
        "method" => method,
        "route" => route,
        "status" => res.status().as_u16().to_string(),
        "cache" => cache,
    )
    .record(start.elapsed().as_secs_f64());
    if let Some(id) = request_id
        && let Ok(value) = HeaderValue::from_str(&id.to_string())
    {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}
