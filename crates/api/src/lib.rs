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
/// 500 and 503 to each one under `/api` (they all read PostgreSQL). Stating them once here keeps
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
                (&mut item.get, true),
                (&mut item.put, false),
                (&mut item.post, false),
                (&mut item.delete, false),
                (&mut item.patch, false),
            ];
            for (op, is_read) in operations {
                let Some(op) = op else { continue };
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
                if path.starts_with("/api/") && !is_read {
                    keyed(op, &error);
                }
                if path.starts_with("/api/") {
                    op.responses.responses.insert(
                        "500".into(),
                        error("A fault of the server's; the cause is logged with the request id.")
                            .into(),
                    );
                    let mut unavailable = error(
                        "PostgreSQL is unreachable and the cache does not hold the answer. \
                         A write was not made, unless the connection was lost at its COMMIT \
                         and could not be checked: repeat it with the same Idempotency-Key \
                         to learn which.",
                    );
                    unavailable.headers.insert(
                        "Retry-After".into(),
                        utoipa::openapi::HeaderBuilder::new()
                            .schema(Some(
                                utoipa::openapi::ObjectBuilder::new()
                                    .schema_type(utoipa::openapi::schema::Type::Integer),
                            ))
                            .description(Some(format!(
                                "Seconds to wait before trying again ({}).",
                                error::RETRY_AFTER_SECS
                            )))
                            .build()
                            .into(),
                    );
                    op.responses
                        .responses
                        .insert("503".into(), unavailable.into());
                }
            }
        }
    }
}

/// What every write shares: the optional `Idempotency-Key` header, the
/// `Idempotent-Replayed` header of an answer given again, 409 and 422.
fn keyed(
    op: &mut utoipa::openapi::path::Operation,
    error: &dyn Fn(&str) -> utoipa::openapi::Response,
) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{HeaderBuilder, Required};
    let text = || ObjectBuilder::new().schema_type(Type::String);
    op.parameters.get_or_insert_with(Vec::new).push(
        ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(format!(
                "Makes the write once: a repeat with the same key and the same request \
                 answers the first answer again (with `Idempotent-Replayed: true`) for \
                 `IDEMPOTENCY_TTL_SECS` (a day unless set). 1 to {} visible ASCII characters \
                 (a UUID, say).",
                letip_domain::mutation::WRITE_KEY_MAX_LEN
            )))
            .schema(Some(
                text()
                    .min_length(Some(1))
                    .max_length(Some(letip_domain::mutation::WRITE_KEY_MAX_LEN))
                    .pattern(Some("^[!-~]+$")),
            ))
            .build()
            .into(),
    );
    for (status, response) in op.responses.responses.iter_mut() {
        if let (true, utoipa::openapi::RefOr::T(r)) = (status.starts_with('2'), response) {
            r.headers.insert(
                "Idempotent-Replayed".into(),
                HeaderBuilder::new()
                    .schema(Some(text().enum_values(Some(["true"]))))
                    .description(Some(
                        "`true` when this is the answer stored with the request's \
                         Idempotency-Key, given again.",
                    ))
                    .build()
                    .into(),
            );
        }
    }
    op.responses.responses.insert(
        "409".into(),
        error("A request with the same Idempotency-Key is still being processed; nothing was written.")
            .into(),
    );
    op.responses.responses.insert(
        "422".into(),
        error("The Idempotency-Key was used with another request (another method, path or body); nothing was written.")
            .into(),
    );
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
            header::HeaderName::from_static(extract::IDEMPOTENCY_KEY),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-cache"),
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static(extract::IDEMPOTENT_REPLAYED),
            header::RETRY_AFTER,
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
