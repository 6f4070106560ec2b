//! A circuit breaker: after a few consecutive failures the backend is not called at all
//! for a while (so requests do not each wait for a timeout), then one probe is let
//! through; its outcome closes the circuit or opens it again for longer. Open periods
//! grow exponentially with random jitter, so many instances do not probe in lockstep.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failures_to_open: u32,
    /// First open period; doubled after each failed probe.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        backoff: Duration,
    },
    /// One probe is under way; everyone else waits for its outcome.
    HalfOpen {
        backoff: Duration,
    },
}

/// A change of state worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    Closed,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
    /// Set while a background task makes the probes: calls then never probe, so no
    /// user request waits on a Redis that may still be away.
    probes_in_background: AtomicBool,
}

fn jitter(d: Duration) -> Duration {
    // Between half and all of `d`.
    d.mul_f64(rand::rng().random_range(0.5..=1.0))
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
            probes_in_background: AtomicBool::new(false),
        }
    }

    /// Whether probes are left to a background task ([`Self::try_probe`]) rather than
    /// let through by [`Self::allow`].
    pub(crate) fn probe_in_background(&self, yes: bool) {
        self.probes_in_background.store(yes, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go to the backend now. While the circuit is open, the call
    /// that finds the backoff over is the probe, unless probes are made in the
    /// background.
    pub(crate) fn allow(&self) -> bool {
        let state = *self.lock();
        match state {
            State::Closed { .. } => true,
            _ if self.probes_in_background.load(Ordering::Relaxed) => false,
            _ => self.try_probe(),
        }
    }

    /// Takes the one probe, if the circuit is open and its backoff is over. Its outcome
    /// must be reported with [`Self::success`] or [`Self::failure`].
    pub(crate) fn try_probe(&self) -> bool {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => true,
            State::Open { until, backoff } if Instant::now() >= until => {
                *s = State::HalfOpen { backoff };
                true
            }
            State::Open { .. } | State::HalfOpen { .. } => false,
        }
    }

    /// How long until the next probe is due: `None` while the circuit is closed, zero
    /// when due now or a probe is under way.
    pub(crate) fn probe_due_in(&self) -> Option<Duration> {
        let state = *self.lock();
        match state {
            State::Closed { .. } => None,
            State::Open { until, .. } => Some(until.saturating_duration_since(Instant::now())),
            State::HalfOpen { .. } => Some(Duration::ZERO),
        }
    }

    /// Whether calls are currently refused.
    pub(crate) fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }

    pub(crate) fn success(&self) -> Option<Transition> {
        let mut s = self.lock();
        let was_open = !matches!(*s, State::Closed { .. });
        *s = State::Closed { failures: 0 };
        was_open.then_some(Transition::Closed)
    }

    pub(crate) fn failure(&self) -> Option<Transition> {
        let mut s = self.lock();
        let now = Instant::now();
        match *s {
            State::Closed { failures } if failures + 1 >= self.config.failures_to_open => {
                let backoff = self.config.min_backoff;
                *s = State::Open {
                    until: now + jitter(backoff),
                    backoff,
                };
                Some(Transition::Opened)
            }
            State::Closed { failures } => {
                *s = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            State::HalfOpen { backoff } | State::Open { backoff, .. } => {
                let backoff = (backoff * 2).min(self.config.max_backoff);
                *s = State::Open {
                    until: now + jitter(backoff),
                    backoff,
                };
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures_to_open: 3,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(80),
        })
    }

    /// Fails `b` as often as opens it.
    fn trip(b: &Breaker) {
        for _ in 0..3 {
            b.failure();
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker();
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), None);
        assert_eq!(b.success(), None, "a success resets the count");
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), None);
        assert!(b.allow());
        assert_eq!(b.failure(), Some(Transition::Opened));
        assert!(!b.allow());
        assert!(b.is_open());
    }

    #[test]
    fn lets_one_probe_through_after_the_backoff_and_closes_on_success() {
        let b = breaker();
        trip(&b);
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "only one probe at a time");
        assert_eq!(b.success(), Some(Transition::Closed));
        assert!(b.allow());
        assert!(!b.is_open());
    }

    #[test]
    fn with_probes_in_background_calls_never_probe_and_the_prober_does() {
        let b = breaker();
        b.probe_in_background(true);
        assert_eq!(b.probe_due_in(), None);
        trip(&b);
        assert!(b.probe_due_in().is_some_and(|d| d > Duration::ZERO));
        assert!(!b.try_probe(), "not before the backoff is over");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(b.probe_due_in(), Some(Duration::ZERO));
        assert!(!b.allow(), "a call does not probe");
        assert!(b.try_probe(), "the prober does");
        assert!(!b.try_probe(), "one probe at a time");
        assert_eq!(b.success(), Some(Transition::Closed));
        assert!(b.allow());
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_up_to_the_cap() {
        let b = breaker();
        trip(&b);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(85));
            assert!(b.allow());
            assert_eq!(b.failure(), None, "still open: no new transition to log");
        }
        let s = *b.lock();
        assert!(matches!(s, State::Open { backoff, .. } if backoff == Duration::from_millis(80)));
    }
}
