//! [`RedisBus`]: messages between instances over Redis pub/sub, for what must reach every
//! instance (invalidations of near copies, live events).
//!
//! Delivery is at most once: a message published while an instance's subscription is
//! down never reaches it. Subscribers therefore also receive [`BusEvent::Lost`] and
//! [`BusEvent::Connected`], and must not rely on the bus for correctness: the near tier
//! drops its copies when the subscription is lost, and validates every copy it serves.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::{CacheError, RedisCache};

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
pub struct RedisBus {
    cache: Arc<RedisCache>,
    channel: String,
    tx: broadcast::Sender<BusEvent>,
    subscriber: AbortHandle,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Keeps one subscription to `channel` alive, on whichever node answers, and forwards
/// what it receives.
async fn subscribe_forever(
    cache: Arc<RedisCache>,
    channel: String,
    tx: broadcast::Sender<BusEvent>,
) {
    let mut backoff = Duration::from_millis(100);
    let (urls, connect_timeout) = (cache.node_urls(), cache.connect_timeout());
    for url in urls.iter().cycle() {
        let Ok(client) = cache.client(url) else {
            continue;
        };
        let connected = tokio::time::timeout(connect_timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = connected {
            backoff = Duration::from_millis(100);
            let _ = tx.send(BusEvent::Connected);
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let _ = tx.send(BusEvent::Message(Bytes::copy_from_slice(
                    msg.get_payload_bytes(),
                )));
            }
            let _ = tx.send(BusEvent::Lost);
            tracing::warn!(%channel, "the Redis subscription dropped; reconnecting");
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl RedisBus {
    /// Subscribes to `channel` (in the background, reconnecting by itself) and publishes
    /// through `cache`'s shared connections. Must be called inside a Tokio runtime.
    pub fn new(cache: Arc<RedisCache>, channel: &str) -> Arc<Self> {
        let (tx, _) = broadcast::channel(CAPACITY);
        let subscriber = tokio::spawn(subscribe_forever(
            cache.clone(),
            channel.to_owned(),
            tx.clone(),
        ))
        .abort_handle();
        Arc::new(Self {
            cache,
            channel: channel.to_owned(),
            tx,
            subscriber,
        })
    }

    /// Sends `payload` to every instance subscribed, this one included.
    pub async fn publish(&self, payload: &[u8]) -> Result<(), CacheError> {
        self.cache.publish(&self.channel, payload).await
    }

    /// Everything received from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}
