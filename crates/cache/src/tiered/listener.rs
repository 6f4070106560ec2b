//! The invalidation channel's listener: announcements, heartbeats, and losses of the
//! subscription.

use std::sync::Arc;

use super::copies::Near;
use super::epochs::Epochs;
use crate::bus::BusEvent;
use crate::lease::{Leases, Message};

/// Applies what arrives on the invalidation channel: other instances' announcements
/// (dropping the copies they name, then acknowledging), this instance's heartbeats
/// (proving its lease), and the subscription's losses (dropping every copy). A
/// (re)subscription drops every copy too: one loaded before it may predate an
/// announcement it never received.
pub(super) async fn listen(
    mut events: tokio::sync::broadcast::Receiver<BusEvent>,
    near: Near,
    origin: String,
    epochs: Arc<Epochs>,
    leases: Option<Arc<Leases>>,
) {
    loop {
        match events.recv().await {
            Ok(BusEvent::Message(payload)) => {
                let Ok(m) = serde_json::from_slice::<Message>(&payload) else {
                    continue;
                };
                if m.origin == origin {
                    if let (Some(seq), Some(l)) = (m.beat, &leases) {
                        l.beat_received(seq);
                    }
                    continue;
                }
                if !m.scopes.is_empty() {
                    epochs.drop_scopes(m.scopes.iter().map(String::as_str));
                }
                if let (Some(write), Some(l)) = (m.write, &leases) {
                    let l = l.clone();
                    tokio::spawn(async move { l.acknowledge(&m.origin, write).await });
                }
            }
            // Announcements may have been missed: keep nothing that one might have
            // named, and serve nothing unasked until a heartbeat proves the new
            // subscription.
            Ok(BusEvent::Lost | BusEvent::Connected)
            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Some(l) = &leases {
                    l.revoke();
                }
                epochs.drop_all();
                near.invalidate_all();
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
