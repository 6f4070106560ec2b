//! The actix-web side of `/socket.io/`: reads a request's query, then opens a session
//! (long-polling or WebSocket), hands a poll, a post or an upgrade to its session's
//! task, or answers the Engine.IO error.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::SocketIo;
use super::actor::{self, Command};
use super::engine::{self, EngineError, Transport};
use super::session::{CloseReason, Session};

/// Engine.IO's error answer.
fn error(e: EngineError) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(e.status())
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .content_type("application/json")
    .body(e.body())
}

fn text(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=UTF-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// Socket.IO (Engine.IO 4): a long-polling handshake, poll or post, or a WebSocket
/// (with `transport=websocket`, directly or upgrading a polling `sid`).
#[utoipa::path(
    method(get, post), path = "/socket.io/", tag = "events",
    params(
        ("EIO" = String, Query, description = "Engine.IO protocol version: `4`"),
        ("transport" = String, Query, description = "`polling` or `websocket`"),
        ("sid" = Option<String>, Query, description = "the session, after the handshake"),
    ),
    responses(
        (status = 200, description = "an Engine.IO payload (`0{...}` on a handshake), or `ok` after a post", content_type = "text/plain"),
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "`{\"code\": N, \"message\": ...}`: unknown transport (0), unknown session (1), bad handshake method (2), bad request (3), unsupported protocol version (5)"),
        (status = 403, description = "`{\"code\": 4, \"message\": \"Forbidden\"}`: an origin `CORS_ORIGINS` refuses"),
        (status = 413, description = "a post over `maxPayload`"),
    )
)]
pub async fn endpoint(
    req: HttpRequest,
    payload: web::Payload,
    sio: web::Data<Arc<SocketIo>>,
) -> HttpResponse {
    let query = match engine::parse_query(req.query_string()) {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("\u{0}"));
    if !sio.origin_allowed(origin) {
        return error(EngineError::Forbidden);
    }
    let sio = sio.get_ref().clone();
    let is_get = req.method() == Method::GET;
    let is_post = req.method() == Method::POST;
    match (query.transport, query.sid) {
        (Transport::Polling, None) if is_get => open_polling(sio),
        (Transport::Polling, Some(sid)) if is_get => poll(&sio, &sid).await,
        (Transport::Polling, Some(sid)) if is_post => post(&sio, &sid, &req, payload).await,
        (Transport::WebSocket, None) if is_get => open_websocket(sio, &req, payload),
        (Transport::WebSocket, Some(sid)) if is_get => upgrade(&sio, &sid, &req, payload).await,
        (_, None) => error(EngineError::BadHandshakeMethod),
        (_, Some(sid)) => match sio.session(&sid) {
            Some(_) => error(EngineError::BadRequest),
            None => error(EngineError::SessionIdUnknown),
        },
    }
}

fn new_session(sio: &SocketIo, transport: Transport) -> Session {
    Session::new(
        uuid::Uuid::new_v4().simple().to_string(),
        transport,
        sio.options.timing,
        sio.options.max_payload,
        Instant::now(),
    )
}

fn open_polling(sio: Arc<SocketIo>) -> HttpResponse {
    let session = new_session(&sio, Transport::Polling);
    let open = session.open_packet();
    actor::spawn(sio, session, None);
    text(open)
}

/// Asks `sid`'s task something and waits for the answer.
async fn ask<T>(
    sio: &SocketIo,
    sid: &str,
    command: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Command,
) -> Result<T, EngineError> {
    let session = sio.session(sid).ok_or(EngineError::SessionIdUnknown)?;
    let (tx, rx) = oneshot::channel();
    session
        .send(command(tx))
        .await
        .map_err(|_| EngineError::SessionIdUnknown)?;
    rx.await.unwrap_or(Err(EngineError::SessionIdUnknown))
}

async fn poll(sio: &SocketIo, sid: &str) -> HttpResponse {
    match ask(sio, sid, Command::Poll).await {
        Ok(payload) => text(payload),
        Err(e) => error(e),
    }
}

async fn post(
    sio: &SocketIo,
    sid: &str,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let Some(session) = sio.session(sid) else {
        return error(EngineError::SessionIdUnknown);
    };
    let limit = sio.options.max_payload;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = BytesMut::new();
    let mut too_large = declared.is_some_and(|n| n > limit);
    while !too_large && let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return error(EngineError::BadRequest);
        };
        if body.len() + chunk.len() > limit {
            too_large = true;
        } else {
            body.extend_from_slice(&chunk);
        }
    }
    if too_large {
        // As the reference server: 413, and the session ends.
        let _ = session.send(Command::Close(CloseReason::TooLarge)).await;
        return HttpResponse::PayloadTooLarge()
            .content_type("application/json")
            .body(EngineError::BadRequest.body());
    }
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        let _ = session.send(Command::Close(CloseReason::ParseError)).await;
        return error(EngineError::BadRequest);
    };
    match ask(sio, sid, |tx| Command::Post(body, tx)).await {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/html")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body("ok"),
        Err(e) => error(e),
    }
}

fn open_websocket(sio: Arc<SocketIo>, req: &HttpRequest, payload: web::Payload) -> HttpResponse {
    let Ok((response, ws, stream)) = actix_ws::handle(req, payload) else {
        return error(EngineError::BadRequest);
    };
    let link = actor::link(ws, stream, &sio);
    let session = new_session(&sio, Transport::WebSocket);
    actor::spawn(sio, session, Some(link));
    response
}

async fn upgrade(
    sio: &SocketIo,
    sid: &str,
    req: &HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let Ok((response, ws, stream)) = actix_ws::handle(req, payload) else {
        // Not a WebSocket handshake: the session is not told.
        return match sio.session(sid) {
            Some(_) => error(EngineError::BadRequest),
            None => error(EngineError::SessionIdUnknown),
        };
    };
    if let Err(e) = ask(sio, sid, Command::BeginUpgrade).await {
        return error(e);
    }
    let link = actor::link(ws, stream, sio);
    match sio.session(sid) {
        Some(session) if session.send(Command::Probe(link)).await.is_ok() => response,
        _ => error(EngineError::SessionIdUnknown),
    }
}
