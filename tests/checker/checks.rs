//! The run's bookkeeping and judgement: requests that got no answer, 5xx (and the 503s
//! expected while PostgreSQL is unreachable), answered writes, and stale reads.

use std::sync::atomic::Ordering;
use std::time::Instant;

use letip_tests::{Res, TestApp};

use crate::FEED_BOUND;
use crate::model::Run;

impl Run {
    /// The answer, or `None` after recording a request that got none.
    pub(crate) fn answered(
        &self,
        app: &TestApp,
        request: &str,
        res: Result<Res, reqwest::Error>,
    ) -> Option<Res> {
        self.operations.fetch_add(1, Ordering::Relaxed);
        match res {
            Ok(res) => Some(res),
            Err(e) => {
                let (slot, fault) = *self.slot.lock().unwrap_or_else(|p| p.into_inner());
                let mut source = String::new();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    source.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
                r.transport_errors.push(format!(
                    "at {:.3}s, slot {slot} ({fault:?}): {request} on {}: {e}{source}",
                    self.started.elapsed().as_secs_f64(),
                    self.name(app)
                ));
                None
            }
        }
    }

    pub(crate) fn server_error(&self, what: &str, res: &Res) -> bool {
        let down = self
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| Instant::now() <= until);
        if down {
            // Counted while the link is down only, not in the tail after it.
            let during = self.unreachable.load(Ordering::SeqCst);
            let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
            let counts = if res.status == 503 {
                &mut r.outage_refused
            } else {
                &mut r.outage_answered
            };
            if during && res.status != 500 {
                *counts.entry(what.to_owned()).or_default() += 1;
            }
            if res.status == 503 {
                return true;
            }
        }
        if res.status >= 500 {
            let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
            r.server_errors
                .push(format!("{what}: {} {}", res.status, res.text));
            return true;
        }
        false
    }

    /// Records a write answered at `done`, for violation reports.
    /// Counts a write sent at `sent` and answered (or failed) at `done`.
    pub(crate) fn wrote(&self, sent: Instant, done: Instant) {
        let fault = self.slot.lock().unwrap_or_else(|p| p.into_inner()).1;
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        report.writes += 1;
        let ms = done.duration_since(sent).as_secs_f64() * 1e3;
        report.write_ms.entry(fault).or_default().push(ms);
    }

    pub(crate) fn record_answer(&self, done: Instant, app: &TestApp, what: &str) {
        let (slot, fault) = *self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let line = format!(
            "{what} on {} at {:.3}s, slot {slot} ({fault:?})",
            self.name(app),
            done.duration_since(self.started).as_secs_f64()
        );
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(done, line);
    }

    /// Judges a read sent at `sent` that missed a write answered at `answered`.
    pub(crate) fn stale(&self, sent: Instant, answered: Instant, what: String) {
        let (slot, fault) = *self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let missed = self
            .answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&answered)
            .cloned()
            .unwrap_or_else(|| "a write".to_owned());
        let what = format!("{what} (read in slot {slot} ({fault:?}); missed {missed})");
        let staleness = sent.saturating_duration_since(answered);
        let allowed = self
            .cut_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| sent <= until);
        let mut r = self.report.lock().unwrap_or_else(|p| p.into_inner());
        if allowed && staleness <= FEED_BOUND {
            r.bounded.push(staleness.as_secs_f64() * 1000.0);
        } else {
            r.violations.push(format!(
                "at {:.3}s: {what}, {staleness:?} after the write's answer{}",
                sent.duration_since(self.started).as_secs_f64(),
                if allowed { " (beyond the bound)" } else { "" }
            ));
        }
    }
}
