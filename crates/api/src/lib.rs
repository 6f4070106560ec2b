//! The HTTP layer of letip: the businesses API of `shared/API.md`, health, metrics,
//! OpenAPI and live events, on actix-web.
//!
//! Handlers are thin: they parse input into domain types, make one call on the
//! [`Repository`] trait object they are given, and map the answer. This crate never
//! talks to PostgreSQL or Redis itself and never chooses an implementation: the binary
//! wires them.

pub mod error;
pub mod extract;
mod handlers;
pub mod observe;
mod ops;
mod ws;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use letip_domain::Repository;
use letip_service::EventHub;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use handlers::X_CACHE;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub repo: Arc<dyn Repository>,
    pub events: EventHub,
    pub metrics: PrometheusHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

/// The OpenAPI document, generated from the handlers and the domain types.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "letip",
        description = "The businesses API of the Le Tip lead system, answered from a Redis cache kept fresh."
    ),
    paths(
        handlers::list_businesses,
        handlers::stats,
        handlers::business_detail,
        handlers::create_business,
        handlers::update_business,
        handlers::delete_business,
        handlers::enrich,
        handlers::create_contact,
        handlers::delete_contact,
        handlers::create_message,
        handlers::update_message,
        ops::health,
        ops::metrics,
        ws::ws,
    )
)]
pub struct ApiDoc;

/// A resource that answers an unsupported method as NestJS does: 404 `Cannot PUT /path`.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(ops::not_found))
}

/// Registers every route. `/api/businesses/stats` comes before `/api/businesses/{id}`,
/// which would otherwise take it.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/businesses")
            .route(web::get().to(handlers::list_businesses))
            .route(web::post().to(handlers::create_business)),
    )
    .service(resource("/api/businesses/stats").route(web::get().to(handlers::stats)))
    .service(
        resource("/api/businesses/{id}")
            .route(web::get().to(handlers::business_detail))
            .route(web::patch().to(handlers::update_business))
            .route(web::delete().to(handlers::delete_business)),
    )
    .service(
        resource("/api/businesses/{id}/contacts").route(web::post().to(handlers::create_contact)),
    )
    .service(
        resource("/api/businesses/{id}/messages").route(web::post().to(handlers::create_message)),
    )
    .service(resource("/api/enrich/{id}").route(web::post().to(handlers::enrich)))
    .service(resource("/api/contacts/{id}").route(web::delete().to(handlers::delete_contact)))
    .service(resource("/api/messages/{id}").route(web::patch().to(handlers::update_message)))
    .service(resource("/health").route(web::get().to(ops::health)))
    .service(resource("/metrics").route(web::get().to(ops::metrics)))
    .service(resource("/ws").route(web::get().to(ws::ws)))
    .service(resource("/api/docs").route(web::get().to(|| async {
        HttpResponse::PermanentRedirect()
            .insert_header(("location", "/api/docs/"))
            .finish()
    })))
    .service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/openapi.json", ApiDoc::openapi()));
}

/// Starts the HTTP server on `listener` with `workers` threads, keeping idle connections
/// open for `keep_alive` (`None`: closed after each response). The returned server runs
/// once awaited. It does not watch signals: its owner stops it through its handle (after
/// closing the event hub, so WebSocket clients get a close frame).
pub fn server(
    state: AppState,
    listener: TcpListener,
    workers: usize,
    keep_alive: Option<std::time::Duration>,
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(state);
    let keep_alive = keep_alive.map_or(actix_web::http::KeepAlive::Disabled, Into::into);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes)
            .default_service(web::to(ops::not_found))
            .wrap(from_fn(observe::http_metrics))
            .wrap(TracingLogger::default())
    })
    .workers(workers.max(1))
    .keep_alive(keep_alive)
    .disable_signals()
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    Ok(server)
}
