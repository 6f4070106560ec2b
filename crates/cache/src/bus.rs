//! [`RedisBus`]: messages between instances over Redis pub/sub, for what must reach every
//! instance (invalidations of near copies, live events).
//!
//! Delivery is at most once: a message published while an instance's subscription is
//! down never reaches it. Subscribers therefore also receive [`BusEvent::Lost`] and
//! [`BusEvent::Connected`]. What a subscriber may rely on is what Redis pub/sub does
//! guarantee: messages arrive in the order Redis executed their `PUBLISH`, and are lost
//! only with the subscription's connection. The leased near tier rests on exactly that
//! (a heartbeat it received proves it received everything published before).

use crate::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::broadcast;
use tokio_util::task::AbortOnDropHandle;

use crate::RedisCache;

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum BusEvent {
    /// The subscription is (again) in place; messages published from now on arrive.
    Connected,
    /// The subscription dropped; messages published until the next `Connected` are lost.
    Lost,
    Message(Bytes),
}

/// How many messages a slow subscriber may fall behind before it misses some.
const CAPACITY: usize = 4096;

/// One pub/sub channel, shared by every instance that names it.
#[derive(Debug)]
pub struct RedisBus {
    cache: Arc<RedisCache>,
    channel: String,
    tx: broadcast::Sender<BusEvent>,
    connected: Arc<AtomicBool>,
    _subscriber: AbortOnDropHandle<()>,
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Keeps one subscription to `channel` alive, on whichever node answers, and forwards
/// what it receives. Between attempts it waits out a backoff (100 ms doubling to 5 s),
/// or less when the cache finds Redis answering again.
async fn subscribe_forever(
    cache: Arc<RedisCache>,
    channel: String,
    tx: broadcast::Sender<BusEvent>,
    connected: Arc<AtomicBool>,
) {
    let mut answering_again = cache.answering_again();
    let mut resets = cache.resets();
    let mut backoff = Duration::from_millis(100);
    let connect_timeout = cache.connect_timeout();
    for attempt in 0.. {
        // A reset from now on may find this subscription on the server it replaced.
        resets.mark_unchanged();
        let subscribed = tokio::time::timeout(connect_timeout, async {
            let client = cache.subscription_client(attempt).await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = subscribed {
            backoff = Duration::from_millis(100);
            connected.store(true, Ordering::Relaxed);
            let _ = tx.send(BusEvent::Connected);
            let mut messages = pubsub.into_on_message();
            let reset = loop {
                tokio::select! {
                    msg = messages.next() => match msg {
                        Some(msg) => {
                            let _ = tx.send(BusEvent::Message(Bytes::copy_from_slice(
                                msg.get_payload_bytes(),
                            )));
                        }
                        None => break false,
                    },
                    // The cache found a server that may have forgotten what it
                    // acknowledged: this subscription may be to the old one.
                    Ok(()) = resets.changed() => break true,
                }
            };
            drop(messages);
            connected.store(false, Ordering::Relaxed);
            let _ = tx.send(BusEvent::Lost);
            // What happened while connected is no reason to reconnect early.
            answering_again.mark_unchanged();
            if reset {
                tracing::info!(%channel, "resubscribing on the Redis the cache now uses");
                continue;
            }
            tracing::warn!(%channel, "the Redis subscription dropped; reconnecting");
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(backoff)) => {}
            Ok(()) = answering_again.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl RedisBus {
    /// Subscribes to `channel` (in the background, reconnecting by itself) and publishes
    /// through `cache`'s shared connections. Must be called inside a Tokio runtime.
    pub fn new(cache: Arc<RedisCache>, channel: &str) -> Arc<Self> {
        let (tx, _) = broadcast::channel(CAPACITY);
        let connected = Arc::new(AtomicBool::new(false));
        let subscriber = AbortOnDropHandle::new(tokio::spawn(subscribe_forever(
            cache.clone(),
            channel.to_owned(),
            tx.clone(),
            connected.clone(),
        )));
        Arc::new(Self {
            cache,
            channel: channel.to_owned(),
            tx,
            connected,
            _subscriber: subscriber,
        })
    }

    /// Whether the subscription is in place now. A subscription whose connection ended
    /// is seen as lost at once; one held by a connection that went silent (a stalled
    /// network) only when its connection fails.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Sends `payload` to every instance subscribed, this one included.
    pub async fn publish(&self, payload: &[u8]) -> Result<()> {
        self.cache.publish(&self.channel, payload).await
    }

    /// The channel's name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Everything received from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}
