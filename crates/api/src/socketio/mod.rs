//! Socket.IO at `/socket.io/`: Engine.IO protocol 4 carrying Socket.IO protocol 5, on
//! WebSocket and on HTTP long-polling with the upgrade to WebSocket, for the
//! dashboard's `socket.io-client`. The events are those of `/ws`, as
//! `42["name", data]` packets.
//!
//! - `engine.rs` and `packet.rs`: the two wire formats, pure parsers and encoders;
//! - `session.rs`: one session's state machine (handshake, heartbeats, upgrade,
//!   namespace, acknowledgements), fed packets and the time, doing no I/O;
//! - `actor.rs`: the task that owns a session and does its I/O (polls, posts,
//!   WebSocket frames, events, timers);
//! - `http.rs`: the actix-web handler that routes requests to sessions.
//!
//! A session lives in the process that made it (a polling client's requests must reach
//! the same instance: sticky sessions); events of every instance reach it through the
//! event hub, which the bus feeds.

mod actor;
pub mod engine;
mod http;
pub mod packet;
pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use letip_service::EventHub;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc, watch};

pub use http::{__path_endpoint, endpoint};
pub use session::Timing;

/// Open Socket.IO sessions of this process.
const SESSIONS: &str = "letip_socketio_sessions";
/// Events a slow Socket.IO client skipped.
const SKIPPED: &str = "letip_socketio_events_skipped_total";

/// How the Socket.IO endpoint behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub timing: Timing,
    /// Largest message (WebSocket frame or polling body) a client may send.
    pub max_payload: usize,
    /// Events a client may fall behind before it skips the oldest.
    pub client_buffer: usize,
    /// Origins allowed to open a session from a browser; empty allows every origin.
    pub allowed_origins: Vec<String>,
}

impl Default for Options {
    /// The reference server's defaults, and the buffer of `/ws`.
    fn default() -> Self {
        Self {
            timing: Timing::default(),
            max_payload: 1_000_000,
            client_buffer: 1024,
            allowed_origins: Vec::new(),
        }
    }
}

/// What the handler shares: the sessions, the events as Socket.IO packets, the options.
#[derive(Debug)]
pub struct SocketIo {
    options: Options,
    sessions: Mutex<HashMap<String, mpsc::Sender<actor::Command>>>,
    events: broadcast::Sender<Arc<str>>,
    closing: watch::Receiver<bool>,
}

impl SocketIo {
    /// Serves the events of `hub`. Must be called inside a Tokio runtime: it starts the
    /// task that encodes each event once, for every client, as an Engine.IO message.
    pub fn new(hub: &EventHub, options: Options) -> Arc<Self> {
        let (events, _) = broadcast::channel(options.client_buffer.max(1));
        tokio::spawn(relay(hub.subscribe(), events.clone()));
        Arc::new(Self {
            options,
            sessions: Mutex::new(HashMap::new()),
            events,
            closing: hub.closing(),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<actor::Command>>> {
        // The map holds no invariant a panic could break midway.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn session(&self, sid: &str) -> Option<mpsc::Sender<actor::Command>> {
        self.sessions().get(sid).cloned()
    }

    fn register(&self, sid: String, commands: mpsc::Sender<actor::Command>) {
        self.sessions().insert(sid, commands);
        metrics::gauge!(SESSIONS).increment(1.0);
    }

    fn unregister(&self, sid: &str) {
        if self.sessions().remove(sid).is_some() {
            metrics::gauge!(SESSIONS).decrement(1.0);
        }
    }

    fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let allowed = &self.options.allowed_origins;
        match origin {
            Some(origin) => allowed.is_empty() || allowed.iter().any(|a| a == origin),
            None => true,
        }
    }

    fn ping_timeout(&self) -> Duration {
        self.options.timing.ping_timeout
    }
}

/// Turns a `/ws` frame, `{"event": NAME, "data": PAYLOAD}`, into the Engine.IO message
/// of a Socket.IO event, its payload copied byte for byte (`null` included).
fn event_message(frame: &str) -> Option<String> {
    let fields: HashMap<&str, &RawValue> = serde_json::from_str(frame).ok()?;
    let name: String = serde_json::from_str(fields.get("event")?.get()).ok()?;
    let event = packet::encode_event(&name, fields.get("data").map(|d| d.get()));
    Some(engine::Packet::Message(&event).encode())
}

/// Encodes every event of the hub once and hands it to every session.
async fn relay(
    mut hub: broadcast::Receiver<letip_service::Event>,
    out: broadcast::Sender<Arc<str>>,
) {
    loop {
        match hub.recv().await {
            Ok(event) => {
                if let Some(message) = event_message(&event.frame) {
                    // No session is not an error: nobody is watching.
                    let _ = out.send(message.into());
                }
            }
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::warn!(skipped, "socket.io relay fell behind the event hub");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_their_payload_byte_for_byte() {
        assert_eq!(
            event_message(r#"{"event":"business:created","data":{"id":1,"name":"A, \"B\""}}"#)
                .as_deref(),
            Some(r#"42["business:created",{"id":1,"name":"A, \"B\""}]"#)
        );
        assert_eq!(
            event_message(r#"{"event":"a\"b","data":null}"#).as_deref(),
            Some(r#"42["a\"b",null]"#)
        );
        assert_eq!(
            event_message(r#"{"event":"pong"}"#).as_deref(),
            Some(r#"42["pong"]"#)
        );
        assert_eq!(event_message("not json"), None);
    }
}
