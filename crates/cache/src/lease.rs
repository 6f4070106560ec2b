//! Leases of the near tier (Gray and Cheriton, SOSP 1989): an instance serves its near
//! copies without asking Redis only while it holds a lease, and a writer answers only
//! after every instance holding one has dropped what the write changed, or its lease
//! has run out.
//!
//! - **The table.** A sorted set in Redis of instances by the end of their lease, on
//!   the Redis clock (ms), holding the time it was made as member `#since` (so that the
//!   two are evicted or expire together; an hour after its last use). Expired members
//!   are removed by every renewal.
//! - **Renewal.** Every quarter lease an instance runs one script that renews its lease
//!   *and publishes a heartbeat* on the invalidation channel. Pub/sub delivers in order
//!   on one connection and loses messages only with the connection, so when the
//!   instance receives its own heartbeat it has received every announcement published
//!   before the renewal. Only then does the renewal count locally: the lease is valid
//!   until the instant the renewal was *asked*, plus the lease shortened by a tenth
//!   (the drift margin), on this process's monotonic clock. An instance renews in Redis
//!   only when its previous heartbeat came back (else it sends a heartbeat alone), so a
//!   subscription that went silent stops renewing within one period.
//! - **Writes.** After its generation bump, a writer runs one script that publishes the
//!   announcement and reads the table: the live holders and the end of each lease. It
//!   then waits for an acknowledgement from each (sent on the writer's own channel after
//!   the holder dropped the copies), or for that holder's lease to end, counted on the
//!   writer's clock from the script's answer and lengthened by a tenth. A table younger
//!   than one lease (Redis restarted, flushed, or evicted it) may have lost leases still
//!   running: a writer then also waits until the table is one lease old.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis::{Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::task::AbortOnDropHandle;

use crate::bus::{BusEvent, RedisBus};
use crate::{RedisCache, metrics};

/// Settings of the near tier's leases.
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    /// How long a lease lasts in Redis; renewed every quarter of it. A write waits at
    /// most this long for an instance that does not acknowledge it.
    pub lease: Duration,
    /// Whether a writer waits for the acknowledgements (always, in service; `false`
    /// only shows what the waiting prevents).
    pub wait_for_acks: bool,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_millis(500),
            wait_for_acks: true,
        }
    }
}

/// The share of a lease given up to clock drift: the holder counts a lease as a tenth
/// shorter, a writer waiting one out as a tenth longer.
const DRIFT: f64 = 0.1;

/// Nanoseconds on this process's monotonic clock.
pub(crate) fn clock() -> u64 {
    static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(BASE.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How long the table outlives its last renewal or announcement.
const TABLE_TTL_MS: u64 = 3_600_000;

/// KEYS: the table. ARGV: instance, lease (ms), '1' to renew, channel, heartbeat, the
/// table's TTL (ms). The table's making time is member `#since`, scored negated, so that
/// one key holds it and the leases: evicted or expired, they go together. Answers the
/// Redis clock (ms).
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if not redis.call('ZSCORE', KEYS[1], '#since') then
  redis.call('ZADD', KEYS[1], -now, '#since')
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return now
",
    )
});

/// KEYS: the table. ARGV: channel, announcement, the table's TTL (ms). Publishes, then
/// answers the Redis clock (ms), when the table was made, and each live holder with the
/// end of its lease, flat.
static ANNOUNCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('PUBLISH', ARGV[1], ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local since = redis.call('ZSCORE', KEYS[1], '#since')
if since then
  since = -tonumber(since)
else
  since = now
  redis.call('ZADD', KEYS[1], -now, '#since')
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local out = {now, since}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
for i = 1, #live do out[#out + 1] = live[i] end
return out
",
    )
});

/// What travels on the invalidation channel: an announcement (scopes, and with leases
/// the write's number) or a heartbeat. Instances of a version without leases read the
/// scopes and ignore the rest.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) origin: String,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) write: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) beat: Option<u64>,
}

/// An acknowledgement: `from` dropped the copies write `write` changed.
#[derive(Debug, Serialize, Deserialize)]
struct Ack {
    from: String,
    write: u64,
}

#[derive(Debug, Default)]
struct Waiter {
    acked: Mutex<HashSet<String>>,
    notify: Notify,
}

/// What a write waited for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waited {
    /// Whether the announcement was published (and the table read).
    pub announced: bool,
    /// Other instances that held a live lease.
    pub holders: usize,
    /// Of them, those that acknowledged.
    pub acked: usize,
    /// Of them, those whose lease was waited out.
    pub expired: usize,
    /// Whether the table was younger than a lease, and its first lease waited out.
    pub fenced: bool,
    /// Whether the announcement failed, and a whole lease was waited out instead.
    pub unannounced: bool,
}

/// One instance's side of the leases: its own lease, and its writes' waits.
#[derive(Debug)]
pub(crate) struct Leases {
    pub(crate) origin: String,
    config: LeaseConfig,
    far: Arc<RedisCache>,
    channel: String,
    /// The end of the lease on [`clock`]; 0 for none.
    valid_until: AtomicU64,
    /// Heartbeats sent and not yet back: number, when asked, whether it renewed.
    beats: Mutex<HashMap<u64, (u64, bool)>>,
    sent: AtomicU64,
    received: AtomicU64,
    waits: Mutex<HashMap<u64, Arc<Waiter>>>,
    next_write: AtomicU64,
    was_valid: AtomicBool,
}

impl Leases {
    pub(crate) fn new(
        far: Arc<RedisCache>,
        channel: &str,
        origin: String,
        config: LeaseConfig,
    ) -> Self {
        Self {
            origin,
            config,
            far,
            channel: channel.to_owned(),
            valid_until: AtomicU64::new(0),
            beats: Mutex::default(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            waits: Mutex::default(),
            next_write: AtomicU64::new(1),
            was_valid: AtomicBool::new(false),
        }
    }

    /// The channel on which this instance receives acknowledgements of its writes.
    pub(crate) fn ack_channel(&self) -> String {
        ack_channel(&self.channel, &self.origin)
    }

    fn table_ttl_ms(&self) -> u64 {
        TABLE_TTL_MS.max(self.lease_ms().saturating_mul(10))
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.config.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether this instance holds a lease now: near copies may be served unasked.
    /// Checked before a copy is looked at, so that every announcement received before
    /// the renewal it rests on has been applied to the copies.
    pub(crate) fn valid(&self) -> bool {
        self.valid_at(clock())
    }

    /// Whether the lease is valid at `now`, a reading of [`clock`] taken just before.
    pub(crate) fn valid_at(&self, now: u64) -> bool {
        now < self.valid_until.load(Ordering::Acquire)
    }

    /// The subscription dropped or fell behind: announcements may have been missed.
    pub(crate) fn revoke(&self) {
        if self.valid_until.swap(0, Ordering::AcqRel) > clock() {
            metrics::lease_lost();
        }
        self.lock_beats().clear();
    }

    fn lock_beats(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, bool)>> {
        self.beats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_waits(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Waiter>>> {
        self.waits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This instance's heartbeat `seq` came back on its subscription: everything
    /// published before the renewal it went with has been received (and applied, as the
    /// listener applies messages in order).
    pub(crate) fn beat_received(&self, seq: u64) {
        self.received.fetch_max(seq, Ordering::AcqRel);
        let Some((asked, renewed)) = self.lock_beats().remove(&seq) else {
            return;
        };
        if renewed {
            let usable = nanos(self.config.lease.mul_f64(1.0 - DRIFT));
            self.valid_until
                .fetch_max(asked.saturating_add(usable), Ordering::AcqRel);
            metrics::lease_renewed();
        }
    }

    /// One renewal period: renews in Redis if the previous heartbeat came back (the
    /// subscription is live), and sends the next heartbeat either way.
    pub(crate) async fn renew_once(&self, subscribed: bool) {
        let now_valid = self.valid();
        if self.was_valid.swap(now_valid, Ordering::AcqRel) && !now_valid {
            metrics::lease_lost();
        }
        metrics::lease_valid(now_valid);
        let seq = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
        let renew = subscribed && self.received.load(Ordering::Acquire) + 1 >= seq;
        let asked = clock();
        {
            let mut beats = self.lock_beats();
            beats.retain(|s, _| s + 16 > seq);
            beats.insert(seq, (asked, renew));
        }
        let beat = Message {
            origin: self.origin.clone(),
            scopes: Vec::new(),
            write: None,
            beat: Some(seq),
        };
        let Ok(beat) = serde_json::to_vec(&beat) else {
            return;
        };
        let lease = self.lease_ms().to_string();
        let ttl = self.table_ttl_ms().to_string();
        let args: [&[u8]; 6] = [
            self.origin.as_bytes(),
            lease.as_bytes(),
            if renew { b"1" } else { b"0" },
            self.channel.as_bytes(),
            &beat,
            ttl.as_bytes(),
        ];
        if let Err(e) = self
            .far
            .lease_script("lease_renew", &RENEW, &args, false)
            .await
        {
            tracing::debug!(error = %e, "lease renewal failed");
        }
    }

    /// Renews for as long as the cache lives (the caller aborts the task).
    pub(crate) async fn renew_forever(self: Arc<Self>, subscribed: impl Fn() -> bool) {
        let mut every = tokio::time::interval(self.config.lease / 4);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.renew_once(subscribed()).await;
        }
    }

    /// Subscribes to this instance's acknowledgement channel and applies what arrives,
    /// in a task (aborted when the handle is dropped). Answers the bus, to be kept alive.
    pub(crate) fn receive_acks(self: &Arc<Self>) -> (Arc<RedisBus>, AbortOnDropHandle<()>) {
        let bus = RedisBus::new(self.far.clone(), &self.ack_channel());
        let mut received = bus.subscribe();
        let leases = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match received.recv().await {
                    Ok(BusEvent::Message(payload)) => leases.ack_received(&payload),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                }
            }
        });
        (bus, AbortOnDropHandle::new(task))
    }

    /// An acknowledgement arrived on this instance's channel.
    fn ack_received(&self, payload: &[u8]) {
        let Ok(ack) = serde_json::from_slice::<Ack>(payload) else {
            return;
        };
        let waiter = self.lock_waits().get(&ack.write).cloned();
        if let Some(w) = waiter {
            w.acked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ack.from);
            w.notify.notify_one();
        }
    }

    /// Acknowledges write `write` of `origin`, whose copies this instance has dropped.
    pub(crate) async fn acknowledge(&self, origin: &str, write: u64) {
        let ack = Ack {
            from: self.origin.clone(),
            write,
        };
        if let Ok(payload) = serde_json::to_vec(&ack) {
            let _ = self
                .far
                .publish(&ack_channel(&self.channel, origin), &payload)
                .await;
        }
    }

    /// Announces the invalidation of `scopes` (already bumped in Redis and dropped here)
    /// and, with `wait`, waits until every other live holder has acknowledged it or its
    /// lease has run out.
    pub(crate) async fn announce_and_wait(&self, scopes: &[&str], wait: bool) -> Waited {
        let write = self.next_write.fetch_add(1, Ordering::Relaxed);
        let waiter = Arc::new(Waiter::default());
        self.lock_waits().insert(write, waiter.clone());
        let started = Instant::now();
        let wait = wait && self.config.wait_for_acks;
        let mut waited = self.announce(write, scopes, &waiter, wait).await;
        self.lock_waits().remove(&write);
        if !wait {
            return waited;
        }
        if !waited.announced {
            // Redis did not take the announcement (nor, likely, anyone's renewal since
            // the attempt began): every lease still running then has ended one lease
            // after it, and no holder can be told sooner.
            let end = started + self.config.lease.mul_f64(1.0 + DRIFT);
            tokio::time::sleep_until(end.into()).await;
            waited.unannounced = true;
        }
        metrics::lease_wait(
            started.elapsed(),
            waited.expired,
            waited.fenced,
            waited.unannounced,
        );
        waited
    }

    async fn announce(&self, write: u64, scopes: &[&str], waiter: &Waiter, wait: bool) -> Waited {
        let message = Message {
            origin: self.origin.clone(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            write: Some(write),
            beat: None,
        };
        let Ok(payload) = serde_json::to_vec(&message) else {
            return Waited::default();
        };
        let ttl = self.table_ttl_ms().to_string();
        let args: [&[u8]; 3] = [self.channel.as_bytes(), &payload, ttl.as_bytes()];
        let answer = self
            .far
            .lease_script("lease_announce", &ANNOUNCE, &args, true)
            .await;
        let answered = Instant::now();
        let Some(Table {
            now,
            since,
            holders,
        }) = answer.ok().and_then(|v| table(&v))
        else {
            return Waited::default();
        };
        let after = |ms: i64| {
            let ms = u64::try_from(ms).unwrap_or(0);
            answered + Duration::from_millis(ms).mul_f64(1.0 + DRIFT)
        };
        let lease = i64::try_from(self.lease_ms()).unwrap_or(i64::MAX);
        let mut pending: Vec<(String, Instant)> = holders
            .into_iter()
            .filter(|(h, _)| *h != self.origin)
            .map(|(h, end)| (h, after(end - now)))
            .collect();
        let fence = (since + lease > now).then(|| after(since + lease - now));
        let mut waited = Waited {
            announced: true,
            holders: pending.len(),
            fenced: fence.is_some(),
            ..Waited::default()
        };
        if !wait {
            return waited;
        }
        loop {
            {
                let acked = waiter.acked.lock().unwrap_or_else(|p| p.into_inner());
                pending.retain(|(h, _)| {
                    let done = acked.contains(h);
                    waited.acked += usize::from(done);
                    !done
                });
            }
            let now = Instant::now();
            pending.retain(|(_, end)| {
                let over = *end <= now;
                waited.expired += usize::from(over);
                !over
            });
            let fence = fence.filter(|f| *f > now);
            let Some(next) = pending.iter().map(|(_, end)| *end).chain(fence).min() else {
                return waited;
            };
            tokio::select! {
                () = waiter.notify.notified(), if !pending.is_empty() => {}
                () = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }
}

fn ack_channel(channel: &str, origin: &str) -> String {
    format!("{channel}:ack:{origin}")
}

/// The announce script's answer: the Redis clock (ms), when the table was made, and each
/// live holder with the end of its lease.
struct Table {
    now: i64,
    since: i64,
    holders: Vec<(String, i64)>,
}

fn table(v: &Value) -> Option<Table> {
    let Value::Array(items) = v else {
        return None;
    };
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()?
            .parse::<f64>()
            .ok()
            .map(|f| f as i64),
        _ => None,
    };
    let now = int(items.first()?)?;
    let since = int(items.get(1)?)?;
    let mut holders = Vec::new();
    for pair in items.get(2..)?.chunks(2) {
        let [Value::BulkString(name), score] = pair else {
            return None;
        };
        holders.push((String::from_utf8_lossy(name).into_owned(), int(score)?));
    }
    Some(Table {
        now,
        since,
        holders,
    })
}
