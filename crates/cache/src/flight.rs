//! Single-flight: concurrent loads of one key in one process share one load.
//!
//! [`SingleFlight::run`] shares whatever load of the key is under way: callers put what
//! must not be shared into the key (cache-aside keys a flight by the cache key *and* the
//! generation its lookup saw, so a read that starts after a write, and so sees a newer
//! generation, never joins a load that began before it).
//!
//! [`SingleFlight::run_fresh`] is for callers that know no generation (the cache cannot
//! be asked): a caller only joins a load that has not started yet, so every caller gets
//! a result read after it arrived. While one load runs, later arrivals gather behind it
//! and share the next one: at most two loads of a key at a time, one running and one
//! waiting.

use crate::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

/// Why a load shared by a flight gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError<E> {
    /// The load itself failed: the caller's own error, shared by every caller.
    #[error("{0}")]
    Load(E),
    /// The load's task ended without a result (it panicked, or its runtime shut down).
    #[error("the load did not finish: {0}")]
    Aborted(String),
}

type Flight<E> = Shared<BoxFuture<'static, Result<Bytes, LoadError<E>>>>;

/// The loads of one key in [`SingleFlight::run_fresh`].
struct Relay<E> {
    running: Option<(u64, Flight<E>)>,
    /// Starts when `running` is done; callers arriving meanwhile join it.
    waiting: Option<(u64, Flight<E>)>,
    next_id: u64,
}

impl<E> Default for Relay<E> {
    fn default() -> Self {
        Self {
            running: None,
            waiting: None,
            next_id: 0,
        }
    }
}

type Relays<E> = Arc<Mutex<HashMap<String, Relay<E>>>>;

pub(crate) struct SingleFlight<E> {
    inflight: Arc<Mutex<HashMap<String, Flight<E>>>>,
    relays: Relays<E>,
}

impl<E> Default for SingleFlight<E> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
            relays: Arc::default(),
        }
    }
}

impl<E> Clone for SingleFlight<E> {
    fn clone(&self) -> Self {
        Self {
            inflight: self.inflight.clone(),
            relays: self.relays.clone(),
        }
    }
}

impl<E> std::fmt::Debug for SingleFlight<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

fn shared<E: Clone + Send + Sync + 'static>(
    task: tokio::task::JoinHandle<Result<Bytes, E>>,
) -> Flight<E> {
    async move {
        match task.await {
            Ok(result) => result.map_err(LoadError::Load),
            Err(e) => Err(LoadError::Aborted(e.to_string())),
        }
    }
    .boxed()
    .shared()
}

impl<E: Clone + Send + Sync + 'static> SingleFlight<E> {
    /// Runs `load` unless a load of `key` is under way, in which case its result is
    /// shared. The load runs on its own task: a caller that goes away (a client that
    /// disconnected) does not cancel it for the others. Its result stays shared for
    /// `linger` after it completes, for callers that asked just too late (a failure does
    /// not: the next caller loads again); only keys that name what they may share (a
    /// cache generation) should linger.
    pub(crate) async fn run<F>(
        &self,
        key: String,
        linger: std::time::Duration,
        load: F,
    ) -> Result<Bytes, LoadError<E>>
    where
        F: Future<Output = Result<Bytes, E>> + Send + 'static,
    {
        let flight = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(flight) = inflight.get(&key) {
                flight.clone()
            } else {
                let map = self.inflight.clone();
                let done_key = key.clone();
                // The entry is removed by the load itself, under the same lock: it cannot
                // run before the insert below, which holds the lock.
                let task = tokio::spawn(async move {
                    let result = load.await;
                    let forget = move || {
                        map.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&done_key);
                    };
                    // A failure is never shared with callers that come after it: the
                    // next one loads again (the source may answer by then).
                    if linger.is_zero() || result.is_err() {
                        forget();
                    } else {
                        tokio::spawn(async move {
                            tokio::time::sleep(linger).await;
                            forget();
                        });
                    }
                    result
                });
                let flight = shared(task);
                inflight.insert(key, flight.clone());
                flight
            }
        };
        flight.await
    }

    /// Runs `load`, or shares a load of `key` that has not started yet: the result was
    /// read after this call began. A load under way is not joined; the next one, which
    /// starts when it ends, is.
    pub(crate) async fn run_fresh<F>(&self, key: String, load: F) -> Result<Bytes, LoadError<E>>
    where
        F: Future<Output = Result<Bytes, E>> + Send + 'static,
    {
        let flight = {
            let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
            let relay = relays.entry(key.clone()).or_default();
            if let Some((_, waiting)) = &relay.waiting {
                waiting.clone()
            } else {
                let id = relay.next_id;
                relay.next_id += 1;
                let before = relay.running.as_ref().map(|(_, f)| f.clone());
                let queued = before.is_some();
                let relays_of_task = self.relays.clone();
                // The task takes the lock only after this insert, which holds it.
                let task = tokio::spawn(async move {
                    if let Some(before) = before {
                        let _ = before.await;
                        let mut relays = relays_of_task.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(r) = relays.get_mut(&key)
                            && r.waiting.as_ref().is_some_and(|(w, _)| *w == id)
                        {
                            r.running = r.waiting.take();
                        }
                    }
                    let result = load.await;
                    let mut relays = relays_of_task.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(r) = relays.get_mut(&key) {
                        if r.running.as_ref().is_some_and(|(r, _)| *r == id) {
                            r.running = None;
                        }
                        if r.running.is_none() && r.waiting.is_none() {
                            relays.remove(&key);
                        }
                    }
                    result
                });
                let flight = shared(task);
                if queued {
                    relay.waiting = Some((id, flight.clone()));
                } else {
                    relay.running = Some((id, flight.clone()));
                }
                flight
            }
        };
        flight.await
    }

    /// Stops sharing the completed loads of keys that start with `prefix` (their cache
    /// entry was found damaged and removed: the next reader must load and store again).
    pub(crate) fn forget_prefix(&self, prefix: &str) {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| !k.starts_with(prefix));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
            + self.relays.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_loads_of_one_key_run_once_and_all_get_the_result() {
        let flights = SingleFlight::<String>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let calls = (0..50).map(|_| {
            let (flights, runs) = (flights.clone(), runs.clone());
            tokio::spawn(async move {
                flights
                    .run("k".into(), Duration::ZERO, async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Bytes::from_static(b"v"))
                    })
                    .await
            })
        });
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.expect("joined").expect("loaded"), "v");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.len(), 0, "finished flights are forgotten");
    }

    #[tokio::test]
    async fn different_keys_and_later_calls_load_again_and_errors_are_shared() {
        let flights = SingleFlight::<String>::default();
        let a = flights
            .run("a".into(), Duration::ZERO, async {
                Ok(Bytes::from_static(b"a"))
            })
            .await;
        let b = flights
            .run("b".into(), Duration::ZERO, async {
                Ok(Bytes::from_static(b"b"))
            })
            .await;
        assert_eq!(
            (a.expect("a"), b.expect("b")),
            (Bytes::from_static(b"a"), Bytes::from_static(b"b"))
        );
        let again = flights
            .run("a".into(), Duration::ZERO, async {
                Ok(Bytes::from_static(b"a2"))
            })
            .await;
        assert_eq!(again.expect("a2"), "a2");
        let err = flights
            .run("e".into(), Duration::ZERO, async { Err("down".to_owned()) })
            .await;
        assert_eq!(err, Err(LoadError::Load("down".to_owned())));
    }

    #[tokio::test]
    async fn a_lingering_result_is_shared_with_late_callers_then_forgotten() {
        let flights = SingleFlight::<String>::default();
        let linger = Duration::from_millis(200);
        let first = flights
            .run("k".into(), linger, async { Ok(Bytes::from_static(b"1")) })
            .await;
        let late = flights
            .run("k".into(), linger, async { Ok(Bytes::from_static(b"2")) })
            .await;
        assert_eq!(first.expect("first"), "1");
        assert_eq!(late.expect("late"), "1", "a late caller shares the result");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fresh = flights
            .run("k".into(), linger, async { Ok(Bytes::from_static(b"3")) })
            .await;
        assert_eq!(fresh.expect("fresh"), "3");
    }

    #[tokio::test]
    async fn a_failure_does_not_linger() {
        let flights = SingleFlight::<String>::default();
        let linger = Duration::from_secs(60);
        let failed = flights
            .run("k".into(), linger, async { Err("unreachable".to_owned()) })
            .await;
        assert_eq!(failed, Err(LoadError::Load("unreachable".to_owned())));
        let next = flights
            .run("k".into(), linger, async {
                Ok(Bytes::from_static(b"back"))
            })
            .await;
        assert_eq!(next.expect("loaded again"), "back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fresh_caller_never_gets_a_load_that_began_before_it_arrived() {
        let flights = SingleFlight::<String>::default();
        // The "database": a version, read at the start of each load.
        let version = Arc::new(AtomicUsize::new(1));
        let runs = Arc::new(AtomicUsize::new(0));
        let call = |flights: &SingleFlight<String>| {
            let (flights, version, runs) = (flights.clone(), version.clone(), runs.clone());
            tokio::spawn(async move {
                flights
                    .run_fresh("k".into(), async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let seen = version.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(Bytes::from(seen.to_string()))
                    })
                    .await
            })
        };
        let early: Vec<_> = (0..20).map(|_| call(&flights)).collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        // A write is answered while the first load runs; callers arriving after it must
        // not get that load's result.
        version.store(2, Ordering::SeqCst);
        let late: Vec<_> = (0..20).map(|_| call(&flights)).collect();
        // The first early caller started a load; the others arrived while it ran and
        // share the next one, which began after the write.
        let early: Vec<Bytes> = futures_util::future::join_all(early)
            .await
            .into_iter()
            .map(|r| r.expect("joined").expect("loaded"))
            .collect();
        assert_eq!(early.iter().filter(|v| *v == "1").count(), 1);
        for r in futures_util::future::join_all(late).await {
            assert_eq!(
                r.expect("joined").expect("loaded"),
                "2",
                "a load that began later"
            );
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "the late callers shared one load"
        );
        assert_eq!(flights.len(), 0, "finished relays are forgotten");
    }
}
