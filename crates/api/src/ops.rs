//! Operations routes: health, metrics, and the NestJS-style 404 for unknown routes.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// `ok`, or `error` when PostgreSQL is unreachable.
    status: &'static str,
    /// `up`, `down` or `disabled`.
    redis: &'static str,
    /// `up` or `down`.
    database: &'static str,
    /// With a near tier (`CACHE_BACKEND=tiered`): `up` while its invalidation
    /// subscription is in place, `down` while it is not. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    near_tier: Option<&'static str>,
    /// While a cache is on: `up` while the PostgreSQL change feed is connected, `down`
    /// while it reconnects. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    change_feed: Option<&'static str>,
    /// With read replicas (`DATABASE_REPLICA_URLS`): each one, `up` while misses may read
    /// it, `lagging` or `down` while it is left out. Absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    replicas: Vec<ReplicaBody>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplicaBody {
    /// `host:port`.
    name: String,
    /// `up`, `lagging` or `down`.
    state: &'static str,
    /// How far behind the primary it was at its last check, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_ms: Option<u64>,
}

/// Whether PostgreSQL and the cache answer. 503 when PostgreSQL does not.
#[utoipa::path(
    get, path = "/health", tag = "operations",
    responses((status = 200, body = HealthBody), (status = 503, body = HealthBody))
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let h = state.repo.health().await;
    let body = HealthBody {
        status: if h.database { "ok" } else { "error" },
        redis: h.cache,
        database: if h.database { "up" } else { "down" },
        near_tier: h.near_tier,
        change_feed: h.change_feed,
        replicas: h
            .replicas
            .into_iter()
            .map(|r| ReplicaBody {
                name: r.name,
                state: r.state,
                lag_ms: r.lag_ms,
            })
            .collect(),
    };
    let status = if h.database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(body)
}

/// Prometheus text exposition of every metric of the process.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    letip_service::flush_cache_metrics();
    crate::observe::flush();
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// What NestJS answers for a route it does not have.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "Cannot {} {}",
        req.method(),
        req.path()
    )))
}
