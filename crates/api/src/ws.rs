//! `GET /ws`: live events as JSON text frames, and `{"event": "ping"}` answered with
//! `{"event": "pong"}`.
//!
//! Each client has its own task and reads the hub through its own bounded receiver: a
//! client that cannot keep up skips the oldest events instead of holding memory or
//! slowing anyone else.

use actix_web::{HttpRequest, HttpResponse, rt, web};
use actix_ws::{AggregatedMessage, Session};
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;

/// Largest message a client may send.
const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Upgrades to a WebSocket that receives every event.
#[utoipa::path(
    get, path = "/ws", tag = "events",
    params(
        ("Connection" = String, Header, description = "`Upgrade`"),
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's handshake key."),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        (status = 400, description = "Not a WebSocket handshake (no body)."),
    )
)]
pub async fn ws(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let events = state.events.subscribe();
    let closing = state.events.closing();
    let stream = stream
        .max_frame_size(MAX_CLIENT_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_CLIENT_FRAME);
    rt::spawn(serve_client(session, stream, events, closing));
    Ok(response)
}

fn is_ping(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("event").and_then(|e| e.as_str().map(|s| s == "ping")))
        .unwrap_or(false)
}

async fn serve_client(
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
    mut events: tokio::sync::broadcast::Receiver<letip_service::Event>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            // The server is stopping: say goodbye properly rather than drop the socket.
            _ = closing.wait_for(|c| *c) => {
                let _ = session
                    .close(Some(actix_ws::CloseReason {
                        code: actix_ws::CloseCode::Away,
                        description: Some("server shutting down".into()),
                    }))
                    .await;
                return;
            }
            event = events.recv() => match event {
                Ok(event) => {
                    if session.text(event.frame.to_string()).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "websocket client fell behind; events skipped");
                }
                Err(RecvError::Closed) => break,
            },
            msg = stream.next() => match msg {
                Some(Ok(AggregatedMessage::Text(text))) => {
                    if is_ping(&text) && session.text(r#"{"event":"pong"}"#).await.is_err() {
                        return;
                    }
                }
                Some(Ok(AggregatedMessage::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(AggregatedMessage::Close(reason))) => {
                    let _ = session.close(reason).await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    let _ = session.close(None).await;
}
