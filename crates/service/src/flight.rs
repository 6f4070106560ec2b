//! Single-flight: concurrent loads of one key in one process share one load.
//!
//! Callers put what must not be shared into the key: the cached repository keys a flight
//! by the cache key *and* the generation its lookup saw, so a read that starts after a
//! write (and so sees a newer generation) never joins a load that began before it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use letip_domain::RepoError;

type Flight = Shared<BoxFuture<'static, Result<Bytes, RepoError>>>;

#[derive(Debug, Default, Clone)]
pub(crate) struct SingleFlight {
    inflight: Arc<Mutex<HashMap<String, Flight>>>,
}

impl SingleFlight {
    /// Runs `load` unless a load of `key` is under way, in which case its result is
    /// shared. The load runs on its own task: a caller that goes away (a client that
    /// disconnected) does not cancel it for the others. Its result stays shared for
    /// `linger` after it completes, for callers that asked just too late; only keys that
    /// name what they may share (a cache generation) should linger.
    pub(crate) async fn run<F>(
        &self,
        key: String,
        linger: std::time::Duration,
        load: F,
    ) -> Result<Bytes, RepoError>
    where
        F: Future<Output = Result<Bytes, RepoError>> + Send + 'static,
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
                    if linger.is_zero() {
                        forget();
                    } else {
                        tokio::spawn(async move {
                            tokio::time::sleep(linger).await;
                            forget();
                        });
                    }
                    result
                });
                let flight = async move {
                    task.await
                        .unwrap_or_else(|e| Err(RepoError::Internal(format!("load failed: {e}"))))
                }
                .boxed()
                .shared();
                inflight.insert(key, flight.clone());
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
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_loads_of_one_key_run_once_and_all_get_the_result() {
        let flights = SingleFlight::default();
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
        let flights = SingleFlight::default();
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
            .run("e".into(), Duration::ZERO, async {
                Err(RepoError::Unavailable("down".into()))
            })
            .await;
        assert!(matches!(err, Err(RepoError::Unavailable(_))));
    }

    #[tokio::test]
    async fn a_lingering_result_is_shared_with_late_callers_then_forgotten() {
        let flights = SingleFlight::default();
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
}
