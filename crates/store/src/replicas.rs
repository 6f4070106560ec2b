//! Read replicas: where a read may go without answering older data than the primary.
//!
//! A read may be served by a streaming replica only once the replica has replayed every
//! write answered before the read began. The position of those writes is the primary's
//! WAL flush position (`pg_current_wal_flush_lsn()`) taken after the read began: every
//! write this service answered committed with `synchronous_commit = on` (set on every
//! session, `db.rs`), so its commit record was flushed before its answer. One such probe serves every
//! read that began before the probe was sent, so concurrent misses share it
//! ([`Probe`]). The replica's own position (`pg_last_wal_replay_lsn()`) is checked on the
//! very connection the read then uses (replay only moves forward while that session
//! lives); a replica behind it is waited for up to [`ReplicaOptions::wait`], and the read
//! goes to the primary after that, or at once when the replica is known to be further
//! behind than the wait.
//!
//! A background task ([`Replicas::start`]) checks every replica each
//! [`ReplicaOptions::poll`]: one down, no longer a standby, or behind the primary by more
//! than [`ReplicaOptions::max_lag`] is left out until it recovers. Any failure on a
//! replica sends the read to the primary: a replica never causes an error answer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Nullable, Text};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use letip_domain::ReplicaHealth;

use crate::db::{PgConn, PgPool};

/// How reads use the replicas.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaOptions {
    /// Longest a read waits for a replica to replay the position it needs before it
    /// reads the primary instead.
    pub wait: Duration,
    /// A replica further behind the primary than this is left out.
    pub max_lag: Duration,
    /// How often each replica's health and lag are checked.
    pub poll: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        Self {
            wait: Duration::from_millis(50),
            max_lag: Duration::from_secs(5),
            poll: Duration::from_millis(500),
        }
    }
}

/// A WAL position, as `pg_lsn` prints it (`16/B374D848`).
fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = Text)]
    lsn: String,
}

#[derive(QueryableByName)]
struct Replay {
    #[diesel(sql_type = Bool)]
    standby: bool,
    #[diesel(sql_type = Nullable<Text>)]
    lsn: Option<String>,
}

/// The primary's WAL flush position now.
async fn primary_position(pool: &PgPool) -> Result<u64, String> {
    // Here only: its `load` would shadow the atomics' below.
    use diesel_async::RunQueryDsl;
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    crate::repo::queried("position", 1);
    let p: Position = diesel::sql_query("SELECT pg_current_wal_flush_lsn()::text AS lsn")
        .get_result(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    parse_lsn(&p.lsn).ok_or_else(|| format!("unreadable WAL position {}", p.lsn))
}

/// What a replica has replayed, on `conn`: `None` when it is not a standby (promoted, or
/// a primary named by mistake).
async fn replayed(conn: &mut PgConn) -> Result<Option<u64>, String> {
    use diesel_async::RunQueryDsl;
    let r: Replay = diesel::sql_query(
        "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS lsn",
    )
    .get_result(conn)
    .await
    .map_err(|e| e.to_string())?;
    Ok(match (r.standby, r.lsn) {
        (true, Some(lsn)) => parse_lsn(&lsn),
        _ => None,
    })
}

type Probing = Shared<BoxFuture<'static, Result<u64, String>>>;

/// The primary's position, asked once for every read that began before the asking.
#[derive(Default)]
struct Probe {
    state: Mutex<ProbeState>,
}

#[derive(Default)]
struct ProbeState {
    /// The probe in flight, and when it was sent.
    running: Option<(Instant, Probing)>,
    /// The last position answered, and when its probe was sent.
    last: Option<(Instant, u64)>,
}

impl Probe {
    /// A position at or past every commit acknowledged before `since`.
    async fn after(&self, primary: &PgPool, since: Instant) -> Result<u64, String> {
        let (sent, probing) = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((sent, lsn)) = state.last
                && sent >= since
            {
                return Ok(lsn);
            }
            match &state.running {
                Some((sent, probing)) if *sent >= since => (*sent, probing.clone()),
                _ => {
                    let sent = Instant::now();
                    let pool = primary.clone();
                    let probing = async move { primary_position(&pool).await }
                        .boxed()
                        .shared();
                    state.running = Some((sent, probing.clone()));
                    (sent, probing)
                }
            }
        };
        let answer = probing.clone().await;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .running
            .as_ref()
            .is_some_and(|(_, running)| running.ptr_eq(&probing))
        {
            state.running = None;
        }
        if let Ok(lsn) = answer
            && state.last.is_none_or(|(t, _)| t < sent)
        {
            state.last = Some((sent, lsn));
        }
        answer
    }
}

const DOWN: u8 = 0;
const UP: u8 = 1;
const LAGGING: u8 = 2;

/// One replica: its pool and what the last check found.
struct Replica {
    name: String,
    pool: PgPool,
    state: AtomicU8,
    /// The last position it was seen to have replayed (a hint for routing; the read
    /// checks again on its own connection).
    replayed: AtomicU64,
    /// How far behind the primary the last check found it, in milliseconds.
    lag_ms: AtomicU64,
}

impl Replica {
    fn set_state(&self, state: u8) {
        self.state.store(state, Ordering::Relaxed);
        metrics::gauge!("letip_db_replica_up", "replica" => self.name.clone())
            .set(f64::from(u8::from(state == UP)));
    }
}

/// The primary's positions the tracker saw, to tell how long ago a replica's position
/// was the primary's.
type History = VecDeque<(Instant, u64)>;

/// The read replicas of one primary.
pub struct Replicas {
    primary: PgPool,
    members: Vec<Replica>,
    next: AtomicUsize,
    options: ReplicaOptions,
    probe: Probe,
    history: Mutex<History>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field(
                "members",
                &self.members.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .field("options", &self.options)
            .finish()
    }
}

/// `host:port` of a database URL, without its credentials.
fn name_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(
        |_| "replica".to_owned(),
        |u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or(""),
                u.port().unwrap_or(5432)
            )
        },
    )
}

/// Why a read went where it went.
fn routed(outcome: &'static str) {
    metrics::counter!("letip_db_replica_reads_total", "outcome" => outcome).increment(1);
}

impl Replicas {
    /// The replicas at `urls` (each with its own pool, made by `pool`) of the primary
    /// reached through `primary`, and the task that checks them, which ends when the
    /// answer is dropped.
    pub fn start(
        primary: PgPool,
        replicas: Vec<(String, PgPool)>,
        options: ReplicaOptions,
    ) -> Arc<Self> {
        let members = replicas
            .into_iter()
            .map(|(url, pool)| Replica {
                name: name_of(&url),
                pool,
                state: AtomicU8::new(DOWN),
                replayed: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
            })
            .collect();
        let replicas = Arc::new(Self {
            primary,
            members,
            next: AtomicUsize::new(0),
            options,
            probe: Probe::default(),
            history: Mutex::new(VecDeque::new()),
        });
        tokio::spawn(track(Arc::downgrade(&replicas)));
        replicas
    }

    /// A connection to a replica that has replayed every write acknowledged before
    /// `since`, or `None` when the read should go to the primary.
    pub(crate) async fn connection(&self, since: Instant) -> Option<PgConn> {
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(replica) = (0..count)
            .filter_map(|i| self.members.get((start + i) % count))
            .find(|r| r.state.load(Ordering::Relaxed) == UP)
        else {
            routed("primary_no_replica");
            return None;
        };
        let need = match self.probe.after(&self.primary, since).await {
            Ok(lsn) => lsn,
            Err(e) => {
                tracing::debug!(error = %e, "the primary's WAL position is unknown; reading the primary");
                routed("primary_position_unknown");
                return None;
            }
        };
        let lag = Duration::from_millis(replica.lag_ms.load(Ordering::Relaxed));
        if replica.replayed.load(Ordering::Relaxed) < need && lag > self.options.wait {
            routed("primary_replica_behind");
            return None;
        }
        match self.caught_up(replica, need).await {
            Ok(Some(conn)) => Some(conn),
            Ok(None) => {
                // Known to be behind by at least the wait until the next check says
                // how far: the reads until then go to the primary without waiting.
                let waited = u64::try_from(self.options.wait.as_millis()).unwrap_or(u64::MAX);
                replica
                    .lag_ms
                    .fetch_max(waited.saturating_add(1), Ordering::Relaxed);
                routed("primary_replica_behind");
                None
            }
            Err(e) => {
                tracing::warn!(replica = %replica.name, error = %e, "a read replica failed; left out until it answers again");
                replica.set_state(DOWN);
                routed("primary_replica_failed");
                None
            }
        }
    }

    /// A connection to `replica` once it has replayed `need`, within the wait.
    async fn caught_up(&self, replica: &Replica, need: u64) -> Result<Option<PgConn>, String> {
        let deadline = Instant::now() + self.options.wait;
        let mut conn = replica.pool.get().await.map_err(|e| e.to_string())?;
        loop {
            let Some(at) = replayed(&mut conn).await? else {
                return Err("not a standby".to_owned());
            };
            replica.replayed.fetch_max(at, Ordering::Relaxed);
            if at >= need {
                return Ok(Some(conn));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(2))).await;
        }
    }

    /// A read the replica answered: counted.
    pub(crate) fn served() {
        routed("replica");
    }

    /// A read that failed on a replica and goes to the primary.
    pub(crate) fn failed(error: &dyn std::fmt::Display) {
        tracing::debug!(%error, "a read failed on a replica; reading the primary");
        routed("primary_replica_failed");
    }

    /// Each replica as the last check found it.
    pub fn health(&self) -> Vec<ReplicaHealth> {
        self.members
            .iter()
            .map(|r| {
                let state = r.state.load(Ordering::Relaxed);
                ReplicaHealth {
                    name: r.name.clone(),
                    state: match state {
                        UP => "up",
                        LAGGING => "lagging",
                        _ => "down",
                    },
                    lag_ms: (state != DOWN).then(|| r.lag_ms.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }

    /// Checks every replica once: its position, and from it its lag and state.
    async fn check(&self) {
        let limit = self.options.poll.max(Duration::from_secs(1));
        let now = Instant::now();
        if let Ok(Ok(lsn)) = tokio::time::timeout(limit, primary_position(&self.primary)).await {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            history.push_back((now, lsn));
            // Enough to tell any lag up to twice the bound.
            let keep = self.options.max_lag * 2 + self.options.poll;
            while history
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > keep)
            {
                history.pop_front();
            }
        }
        for replica in &self.members {
            let at = tokio::time::timeout(limit, async {
                let mut conn = replica.pool.get().await.map_err(|e| e.to_string())?;
                replayed(&mut conn).await
            })
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
            let at = match at {
                Ok(Some(at)) => at,
                Ok(None) | Err(_) => {
                    if replica.state.load(Ordering::Relaxed) != DOWN {
                        tracing::warn!(replica = %replica.name, "a read replica is down or no longer a standby; left out");
                    }
                    replica.set_state(DOWN);
                    continue;
                }
            };
            replica.replayed.store(at, Ordering::Relaxed);
            let lag = {
                let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
                lag_behind(&history, at, Instant::now())
            };
            replica.lag_ms.store(
                u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            metrics::gauge!("letip_db_replica_lag_seconds", "replica" => replica.name.clone())
                .set(lag.as_secs_f64());
            let state = if lag > self.options.max_lag {
                LAGGING
            } else {
                UP
            };
            let before = replica.state.load(Ordering::Relaxed);
            if before != state {
                tracing::info!(replica = %replica.name, lag_ms = lag.as_millis(), state = if state == UP { "up" } else { "lagging" }, "read replica state");
            }
            replica.set_state(state);
        }
    }
}

/// How long ago the primary was at a position past `at`: the oldest sample the replica
/// has not replayed.
fn lag_behind(history: &History, at: u64, now: Instant) -> Duration {
    history
        .iter()
        .find(|(_, lsn)| *lsn > at)
        .map_or(Duration::ZERO, |(t, _)| now.duration_since(*t))
}

/// Checks the replicas every poll while they are in use.
async fn track(replicas: Weak<Replicas>) {
    loop {
        let Some(r) = replicas.upgrade() else { return };
        r.check().await;
        let poll = r.options.poll;
        drop(r);
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_as_pg_lsn_prints_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert!(parse_lsn("16/B374D848").unwrap() > parse_lsn("15/FFFFFFFF").unwrap());
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_replayed() {
        let now = Instant::now();
        let history: History = [
            (now - Duration::from_secs(3), 10),
            (now - Duration::from_secs(2), 20),
            (now - Duration::from_secs(1), 30),
        ]
        .into();
        assert_eq!(lag_behind(&history, 30, now), Duration::ZERO);
        assert_eq!(lag_behind(&history, 25, now), Duration::from_secs(1));
        assert_eq!(lag_behind(&history, 10, now), Duration::from_secs(2));
        assert_eq!(lag_behind(&history, 0, now), Duration::from_secs(3));
    }

    #[test]
    fn a_replica_is_named_without_its_credentials() {
        assert_eq!(name_of("postgres://u:secret@db-2:5433/letip"), "db-2:5433");
        assert_eq!(name_of("postgres://db-3/letip"), "db-3:5432");
    }
}
