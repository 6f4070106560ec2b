//! The HTTP layer of letip: the businesses API of `shared/API.md`, health, metrics,
//! OpenAPI and live events (`/ws` and Socket.IO), with CORS, on actix-web.
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
pub mod socketio;
mod ws;

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::http::{Method, header};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use letip_domain::Repository;
use letip_service::EventHub;
use metrics_exporter_prometheus::PrometheusHandle;
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

/// The OpenAPI document, generated from the handlers and the domain types, with the
/// answers every operation shares added by [`SharedAnswers`].
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "letip",
        description = DOC_DESCRIPTION,
    ),
    modifiers(&SharedAnswers),
    components(schemas(handlers::CacheHeader)),
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
        socketio::endpoint,
    )
)]
pub struct ApiDoc;

const DOC_DESCRIPTION: &str = "The businesses API of the Le Tip lead system, answered from \
a Redis cache kept fresh.

Every error answers the NestJS body `{\"statusCode\": 400, \"message\": \"...\", \
\"error\": \"Bad Request\"}`; a 400 names the field or parameter at fault, and a rejected \
request writes nothing. Text that PostgreSQL cannot store (a NUL character, an unpaired \
UTF-16 surrogate, bytes that are not UTF-8) is a 400 naming its field, in bodies and \
queries alike. A body sent with a `Content-Type` other than JSON is a 400 too, not a 415, as \
the NestJS backend answered (a missing `Content-Type` is read as JSON).

A method a path does not have, and a path that does not exist, answer **404** \
`Cannot PUT /api/businesses` rather than 405, exactly as the NestJS backend this service \
replaces: a deliberate choice so that clients of that backend see no difference.";

/// Adds the answers that every operation shares: 413 to each one that reads a body, and
/// 500 to each one under `/api` (they all read PostgreSQL). Stating them once here keeps
/// the handlers' annotations to what is particular to each.
#[derive(Debug)]
struct SharedAnswers;

impl utoipa::Modify for SharedAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                if op.request_body.is_some() {
                    op.responses.responses.insert(
                        "413".into(),
                        error(&format!(
                            "The body is larger than {} bytes.",
                            extract::BODY_LIMIT
                        ))
                        .into(),
                    );
                }
                if path.starts_with("/api/") {
                    op.responses.responses.insert(
                        "500".into(),
                        error("PostgreSQL failed; the cause is logged with the request id.").into(),
                    );
                }
            }
        }
    }
}

/// A resource that answers an unsupported method as NestJS does: 404 `Cannot PUT /path`,
/// labelled with its pattern in the latency metrics.
fn resource(path: &'static str) -> actix_web::Resource {
    web::resource(path)
        .app_data(observe::Route(path))
        .default_service(web::to(ops::not_found))
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
    // Every method: Engine.IO answers its own errors, never the NestJS 404.
    .service(
        web::resource("/socket.io/")
            .app_data(observe::Route("/socket.io/"))
            .route(web::route().to(socketio::endpoint)),
    )
    .service(resource("/api/docs").route(web::get().to(|| async {
        HttpResponse::PermanentRedirect()
            .insert_header(("location", "/api/docs/"))
            .finish()
    })))
    .service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/openapi.json", ApiDoc::openapi()));
}

/// What the HTTP server needs besides the handlers' state.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Origins allowed to call the API from a browser, as browsers send them
    /// (`https://dash.example.com`); empty allows every origin.
    pub cors_origins: Vec<String>,
    /// The Socket.IO endpoint's timers and bounds (its allowed origins are
    /// `cors_origins`).
    pub socketio: socketio::Options,
    /// How long idle keep-alive connections stay open (`None`: closed after each
    /// response).
    pub keep_alive: Option<std::time::Duration>,
}

/// How long a browser may reuse a preflight's answer.
const CORS_MAX_AGE_SECS: usize = 86_400;

/// CORS as the original backend's `app.enableCors()`: every origin unless `origins`
/// names some; preflights answered with the methods and request headers the API
/// accepts; the cache status and request id readable by scripts. A request from an
/// origin not allowed is served without CORS headers, so the browser withholds the
/// answer from the page, as the original did.
pub fn cors(origins: &[String]) -> Cors {
    let cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-requested-with"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-cache"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(CORS_MAX_AGE_SECS);
    if origins.is_empty() {
        cors.allow_any_origin().send_wildcard()
    } else {
        origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin))
    }
}

/// Starts the HTTP server on `listener` with `workers` threads, keeping idle connections
/// open for `options.keep_alive`. The returned server runs
/// once awaited. It does not watch signals: its owner stops it through its handle (after
/// closing the event hub, so WebSocket and Socket.IO clients are told). Must be called
/// inside a Tokio runtime (Socket.IO's event relay starts here).
pub fn server(
    state: AppState,
    listener: TcpListener,
    workers: usize,
    options: HttpOptions,
) -> std::io::Result<actix_web::dev::Server> {
    let mut socketio_options = options.socketio;
    socketio_options.allowed_origins = options.cors_origins.clone();
    let socketio = web::Data::new(socketio::SocketIo::new(&state.events, socketio_options));
    let origins = options.cors_origins;
    let keep_alive = options
        .keep_alive
        .map_or(actix_web::http::KeepAlive::Disabled, Into::into);
    let server = HttpServer::new(move || {
        // One `Data` per worker: each request takes a count of it, and a count shared by
        // the workers would pass its cache line between their cores on every request.
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(socketio.clone())
            .configure(routes)
            .default_service(web::to(ops::not_found))
            .wrap(cors(&origins))
            .wrap(from_fn(observe::observe))
    })
    .workers(workers.max(1))
    .keep_alive(keep_alive)
    .disable_signals()
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    Ok(server)
}
