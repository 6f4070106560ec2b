//! Whether Redis answers: the breaker's gate, probes (one at a time, in the background
//! while the circuit is open), and the invalidations that failed and are still to be
//! applied.

use crate::Result;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self};

use super::RedisCache;
use super::connection::unavailable;
use super::wire::split_scope;
use crate::breaker::Breaker;
use crate::{CacheHealth, metrics};

/// Scopes whose invalidation failed, each with the number of its latest failure. A
/// retry that succeeds clears a scope only if it failed no more since the retry began:
/// a write whose invalidation fails while an older one's retry is in flight made a
/// change that retry cannot have covered.
#[derive(Debug, Default)]
pub(super) struct Pending {
    scopes: HashMap<String, u64>,
    failures: u64,
}

impl Pending {
    pub(super) fn failed(&mut self, scope: &str) {
        self.failures += 1;
        self.scopes.insert(scope.to_owned(), self.failures);
    }

    pub(super) fn snapshot(&self) -> Vec<(String, u64)> {
        self.scopes.iter().map(|(s, n)| (s.clone(), *n)).collect()
    }

    /// A retry of `scope`'s invalidation, begun when its latest failure was `failure`,
    /// succeeded.
    pub(super) fn applied(&mut self, scope: &str, failure: u64) {
        if self.scopes.get(scope) == Some(&failure) {
            self.scopes.remove(scope);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.scopes.len()
    }
}

/// Which calls go to Redis while the breaker holds calls off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Refused while the breaker holds calls off (or, when due, the breaker's probe).
    Breaker,
    /// The breaker's probe, already taken with [`Breaker::try_probe`].
    Probe,
    /// Tried anyway; a failure counts like any other (a write's own invalidation).
    Past,
    /// Tried anyway; a failure leaves the breaker's schedule as it is (a health check
    /// between the breaker's probes). A success closes the circuit.
    Peek,
}

/// The outcome of the last health probe, and when it started.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probed {
    started: Instant,
    health: CacheHealth,
}

/// While the circuit is open and its next probe is not due, a health check asks Redis
/// at most this often (and answers "down" in between without asking), so frequent
/// health polls never flood a Redis that is down, yet report its return within this.
pub(super) const PEEK_EVERY: Duration = Duration::from_millis(500);

/// Reports the breaker's probe as failed if dropped armed.
pub(super) struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    armed: bool,
}

impl ProbeGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.failure();
        }
    }
}

/// The background prober of [`RedisCache::probe_in_background`]; dropping it stops it.
#[derive(Debug)]
pub struct BackgroundProbe {
    task: tokio::task::AbortHandle,
    cache: Weak<RedisCache>,
}

impl BackgroundProbe {
    /// Stops probing; calls probe by themselves again.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for BackgroundProbe {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(c) = self.cache.upgrade() {
            c.breaker.probe_in_background(false);
        }
    }
}

impl RedisCache {
    /// Probes Redis in the background while the circuit is open, on the breaker's
    /// schedule, so recovery costs no user request anything: the first request after
    /// an outage finds the circuit closed, the remembered invalidations applied, and
    /// subscriptions woken. Meanwhile calls never probe themselves. The task ends when
    /// the returned handle is dropped (or stopped), or when the cache is dropped. Must
    /// be called inside a Tokio runtime.
    pub fn probe_in_background(self: &Arc<Self>) -> BackgroundProbe {
        self.breaker.probe_in_background(true);
        let cache: Weak<Self> = Arc::downgrade(self);
        let opened = self.opened.clone();
        let task = tokio::spawn(async move {
            loop {
                let due = match cache.upgrade() {
                    Some(c) => c.breaker.probe_due_in(),
                    None => return,
                };
                match due {
                    // Wait for the circuit to open (a permit is kept if it opens before
                    // this waits), looking again now and then.
                    None => {
                        tokio::select! {
                            () = opened.notified() => {}
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                    Some(_) => {
                        let Some(c) = cache.upgrade() else { return };
                        c.probe_now(Instant::now(), "background").await;
                        drop(c);
                        // A probe under way elsewhere: look again shortly.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        BackgroundProbe {
            task: task.abort_handle(),
            cache: Arc::downgrade(self),
        }
    }

    /// Asks Redis whether it answers, as one of the breaker's probes when one is due,
    /// else (with `peek`) past the breaker at most every [`PEEK_EVERY`]. One at a time:
    /// a caller that arrived before a probe started takes that probe's outcome. A
    /// successful probe applies the remembered invalidations before it answers.
    pub(super) async fn probe(
        &self,
        arrived: Instant,
        peek: bool,
        by: &'static str,
    ) -> CacheHealth {
        let mut last = self.probe.lock().await;
        if let Some(p) = *last
            && p.started >= arrived
        {
            return p.health;
        }
        let gate = if !self.breaker.is_open() {
            Gate::Breaker
        } else if self.breaker.try_probe() {
            Gate::Probe
        } else if peek && last.is_none_or(|p| p.started.elapsed() >= PEEK_EVERY) {
            Gate::Peek
        } else {
            return CacheHealth::Down;
        };
        let started = Instant::now();
        // No user waits for a probe: it may take as long as a connection may.
        let timeout = self.config.timeout.max(self.config.connect_timeout);
        // A probe abandoned half-way (its caller gone) counts as failed, so the breaker
        // is never left waiting for an outcome that will not come.
        let abandoned = ProbeGuard {
            breaker: &self.breaker,
            armed: gate == Gate::Probe,
        };
        let ping = |gate| {
            self.call_within("ping", timeout, gate, |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
        };
        let mut pong = ping(gate).await;
        if pong.is_err() && started.elapsed() < timeout {
            // Failed at once: most often a connection that died with the last Redis
            // (its socket is closed and has just been dropped). Asking once more, on a
            // new connection and past the breaker (a failure leaves its schedule
            // alone), tells whether Redis answers now.
            pong = ping(Gate::Peek).await;
        }
        abandoned.disarm();
        let health = if pong.is_ok() {
            // The circuit is closed: apply what was missed now, not at a user's lookup.
            let _ = self.recover("").await;
            CacheHealth::Up
        } else {
            CacheHealth::Down
        };
        metrics::probe(by, health.as_str());
        *last = Some(Probed { started, health });
        health
    }

    /// [`Self::probe`] for the background prober: only the breaker's own probes.
    pub(super) async fn probe_now(&self, arrived: Instant, by: &'static str) -> CacheHealth {
        self.probe(arrived, false, by).await
    }

    pub(super) fn pending_scopes(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Like [`Self::recover`], and refuses while any invalidation is still to be applied:
    /// a lookup of many scopes serves nothing until all of them are current.
    pub(super) async fn recover_all(&self, scope: &str) -> Result<()> {
        self.recover(scope).await?;
        if self.pending_scopes().is_empty() {
            Ok(())
        } else {
            Err(unavailable("invalidations are still to be applied"))
        }
    }

    /// Applies invalidations that failed earlier. Until they succeed nothing of their
    /// scopes is served. All of them are applied at the first lookup that finds Redis
    /// again, whatever its scope, so a scope this process never reads again is not left
    /// stale for other readers of Redis.
    pub(super) async fn recover(&self, scope: &str) -> Result<()> {
        if !self.any_pending.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let (root, _) = split_scope(scope);
        let pending: Vec<(String, u64)> = {
            let pending = self.pending_scopes();
            if pending.is_empty() {
                return Ok(());
            }
            pending.snapshot()
        };
        for (s, failure) in pending {
            match self.bump(&s, false).await {
                Ok(()) => {
                    let mut pending = self.pending_scopes();
                    pending.applied(&s, failure);
                    if pending.is_empty() {
                        self.any_pending
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                    }
                    drop(pending);
                    tracing::info!(scope = %s, "applied an invalidation that had failed");
                }
                // Another scope's (on another cluster node, say) may wait for a later
                // lookup; this scope's may not.
                Err(e) if s == scope || s == root => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_clears_only_failures_it_began_after() {
        let mut p = Pending::default();
        p.failed("list");
        let retry = p.snapshot();
        // A write's invalidation fails while the retry is in flight.
        p.failed("list");
        for (scope, failure) in retry {
            p.applied(&scope, failure);
        }
        assert_eq!(p.len(), 1, "the later failure is still to be applied");
        let retry = p.snapshot();
        for (scope, failure) in retry {
            p.applied(&scope, failure);
        }
        assert!(p.is_empty());
    }
}
