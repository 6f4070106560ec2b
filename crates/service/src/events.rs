//! Live events for dashboards: every mutation is announced on an [`EventHub`], and the
//! stats are recomputed after mutations, coalesced so a burst of writes costs a few
//! recomputations per second rather than one per write.

use std::sync::{Arc, Weak};
use std::time::Duration;

use letip_cache::{BusEvent, RedisBus};
use letip_domain::{Fetched, Repository};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, watch};

use crate::written::{WriteHook, Written};

/// How many events a slow subscriber may fall behind before it misses some.
const HUB_CAPACITY: usize = 1024;
/// The shortest interval between two `stats:updated` events.
const STATS_COALESCE: Duration = Duration::from_millis(250);

/// One event, already serialized as the text frame clients receive:
/// `{"event": NAME, "data": PAYLOAD}`.
#[derive(Debug, Clone)]
pub struct Event {
    pub frame: Arc<str>,
}

impl Event {
    pub fn new(name: &str, data: &impl Serialize) -> Self {
        #[derive(Serialize)]
        struct Frame<'a, T> {
            event: &'a str,
            data: &'a T,
        }
        let frame = serde_json::to_string(&Frame { event: name, data })
            .unwrap_or_else(|_| format!(r#"{{"event":"{name}","data":null}}"#));
        Self {
            frame: frame.into(),
        }
    }
}

/// Broadcasts events to every subscriber. Cloning shares the hub.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Event>,
    closing: Arc<watch::Sender<bool>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(HUB_CAPACITY).0,
            closing: Arc::new(watch::channel(false).0),
        }
    }

    /// Tells every subscriber that the server is shutting down.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` when the server is shutting down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn publish(&self, event: Event) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(event);
    }

    /// A receiver of every event published from now on. A receiver that falls more than
    /// the hub's capacity behind skips the oldest events instead of holding them.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// A mutation announced to the other instances: the event frame, if the mutation has
/// one, so their dashboards see it; and, in any case, that their stats are stale.
#[derive(Debug, Serialize, Deserialize)]
struct Remote {
    origin: String,
    frame: Option<String>,
}

/// A [`WriteHook`] that announces each write on an [`EventHub`], and, with a bus, to the
/// hubs of every other instance; and recomputes the stats after writes from `stats`.
#[derive(Debug)]
pub struct Notifying {
    stats: Weak<dyn Repository>,
    hub: EventHub,
    stats_dirty: Arc<Notify>,
    bus: Option<Arc<RedisBus>>,
    origin: String,
}

impl Notifying {
    /// Publishes `stats:updated` with what `stats` reads (the repository the hook is
    /// added to, typically). Must be called inside a Tokio runtime, where it starts the
    /// task that publishes them (and, with a bus, the one that relays other instances'
    /// events). The tasks end when the returned hook is dropped.
    pub fn new(
        stats: Weak<dyn Repository>,
        hub: EventHub,
        bus: Option<Arc<RedisBus>>,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            stats,
            hub,
            stats_dirty: Arc::new(Notify::new()),
            origin: process_origin(),
            bus,
        });
        tokio::spawn(publish_stats(
            Arc::downgrade(&this),
            this.stats_dirty.clone(),
        ));
        if let Some(bus) = &this.bus {
            tokio::spawn(relay_remote(Arc::downgrade(&this), bus.subscribe()));
        }
        this
    }

    fn changed(&self, event: Option<Event>) {
        if let Some(bus) = &self.bus {
            let remote = Remote {
                origin: self.origin.clone(),
                frame: event.as_ref().map(|e| e.frame.to_string()),
            };
            if let Ok(payload) = serde_json::to_vec(&remote) {
                let bus = bus.clone();
                // Off the request path: a slow Redis must not delay the write's answer.
                tokio::spawn(async move {
                    if let Err(e) = bus.publish(&payload).await {
                        tracing::debug!(error = %e, "could not announce a mutation to other instances");
                    }
                });
            }
        }
        if let Some(event) = event {
            self.hub.publish(event);
        }
        // Stores one permit when the publisher is busy, so a burst of writes becomes one
        // recomputation after the burst.
        self.stats_dirty.notify_one();
    }
}

/// An id unique to this repository, so an instance ignores its own announcements.
fn process_origin() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// Hands other instances' events to this instance's clients, and recomputes the stats
/// (coalesced) after their mutations.
async fn relay_remote(repo: Weak<Notifying>, mut bus: broadcast::Receiver<BusEvent>) {
    loop {
        let message = match bus.recv().await {
            Ok(BusEvent::Message(m)) => m,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(repo) = repo.upgrade() else { return };
        let Ok(remote) = serde_json::from_slice::<Remote>(&message) else {
            continue;
        };
        if remote.origin == repo.origin {
            continue;
        }
        if let Some(frame) = remote.frame {
            repo.hub.publish(Event {
                frame: frame.into(),
            });
        }
        repo.stats_dirty.notify_one();
    }
}

async fn publish_stats(repo: Weak<Notifying>, dirty: Arc<Notify>) {
    loop {
        dirty.notified().await;
        let Some(repo) = repo.upgrade() else { return };
        let Some(source) = repo.stats.upgrade() else {
            return;
        };
        match source.stats().await.map(Fetched::into_value) {
            Ok(Ok(stats)) => repo.hub.publish(Event::new("stats:updated", &stats)),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot decode stats for stats:updated"),
            Err(e) => tracing::warn!(error = %e, "cannot read stats for stats:updated"),
        }
        drop((repo, source));
        tokio::time::sleep(STATS_COALESCE).await;
    }
}

#[derive(Serialize)]
struct Deleted {
    id: i32,
}

impl WriteHook for Notifying {
    fn written(&self, write: Written<'_>) {
        self.changed(match write {
            Written::Created(b) => Some(Event::new("business:created", b)),
            Written::Updated { business, .. } => Some(Event::new("business:updated", business)),
            Written::Deleted { id } => Some(Event::new("business:deleted", &Deleted { id })),
            Written::Enriched(b) => Some(Event::new("business:enriched", b)),
            Written::Contact { .. } | Written::Message { .. } | Written::Unknown => None,
        });
    }
}
