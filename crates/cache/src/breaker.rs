//! A circuit breaker: after a few consecutive failures the backend is not called at all
//! for a while (so requests do not each wait for a timeout), then one probe is let
//! through; its outcome closes the circuit or opens it again for longer. Open periods
//! grow exponentially with random jitter, so many instances do not probe in lockstep.

use std::sync::Mutex;
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go to the backend now.
    pub(crate) fn allow(&self) -> bool {
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
        for _ in 0..3 {
            b.failure();
        }
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "only one probe at a time");
        assert_eq!(b.success(), Some(Transition::Closed));
        assert!(b.allow());
        assert!(!b.is_open());
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_up_to_the_cap() {
        let b = breaker();
        for _ in 0..3 {
            b.failure();
        }
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(85));
            assert!(b.allow());
            assert_eq!(b.failure(), None, "still open: no new transition to log");
        }
        let s = *b.lock();
        assert!(matches!(s, State::Open { backoff, .. } if backoff == Duration::from_millis(80)));
    }
}
