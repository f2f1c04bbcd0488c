//! A late answer is not a dead Redis.
//!
//! On a busy host a round trip misses `timeout` mostly because a thread holding the answer
//! waited for a core (docs/performance.md, "Fleet limits", measures it), not because Redis is
//! gone. Taking the store down on such a miss sent every request of the next backoff (250 ms) to
//! `on_store_error`, and on a loaded machine that flapped many times a minute. So a timeout
//! alone costs only the request that hit it; the store goes down when round trips keep timing
//! out for [`GRACE_TIMEOUTS`] timeouts with no answer in between (a hung or unreachable Redis,
//! found within that), and at once on any error (refused, reset, an error reply), as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Timeouts' worth of time without any answer before a run of timeouts takes the store down.
pub(super) const GRACE_TIMEOUTS: u32 = 4;

/// Never longer than the probe interval: with a `timeout` that long, the first miss decides.
const MAX_GRACE: Duration = Duration::from_millis(250);

const NONE: u64 = u64::MAX;

pub(super) struct LateAnswers {
    epoch: Instant,
    /// When the oldest round trip of the current run of timeouts was sent (µs since `epoch`).
    since_us: AtomicU64,
}

impl LateAnswers {
    pub(super) fn new() -> LateAnswers {
        LateAnswers {
            epoch: Instant::now(),
            since_us: AtomicU64::new(NONE),
        }
    }

    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Redis answered: it and the connection are alive, the run of timeouts (if any) is over.
    /// On every answer, so it only reads unless a run was on.
    pub(super) fn answered(&self) {
        if self.since_us.load(Ordering::Relaxed) != NONE {
            self.since_us.store(NONE, Ordering::Relaxed);
        }
    }

    /// A round trip sent at `sent` had no answer within `timeout`, seen at `now`: is Redis to be
    /// taken as down?
    pub(super) fn timed_out(&self, sent: Instant, now: Instant, timeout: Duration) -> bool {
        let sent = self.us(sent);
        let first =
            match self
                .since_us
                .compare_exchange(NONE, sent, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => sent,
                Err(earlier) => earlier.min(sent),
            };
        let grace = (timeout * GRACE_TIMEOUTS).min(MAX_GRACE);
        self.us(now).saturating_sub(first) >= grace.as_micros() as u64
    }

    /// The store is (back) up: start counting afresh.
    pub(super) fn reset(&self) {
        self.since_us.store(NONE, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(5);

    #[test]
    fn one_late_answer_is_not_an_outage_a_run_of_them_is() {
        let l = LateAnswers::new();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // A hiccup: one miss, then answers again.
        assert!(!l.timed_out(ms(0), ms(5), T));
        l.answered();
        assert!(!l.timed_out(ms(100), ms(105), T), "a new run starts at 100");
        // Sequential requests to a hung Redis: the 4th miss (20 ms after the 1st was sent).
        assert!(!l.timed_out(ms(105), ms(110), T));
        assert!(!l.timed_out(ms(110), ms(115), T));
        assert!(l.timed_out(ms(115), ms(120), T));
        l.reset();
        // Many requests in flight at once: they all miss together, down once the run is
        // older than the grace, whichever of them notices.
        assert!(!l.timed_out(ms(200), ms(205), T));
        assert!(!l.timed_out(ms(201), ms(206), T));
        assert!(l.timed_out(ms(215), ms(220), T));
    }

    #[test]
    fn with_a_timeout_of_a_probe_interval_or_more_the_first_miss_decides_as_before() {
        let l = LateAnswers::new();
        let t0 = Instant::now();
        let s = Duration::from_millis(300);
        assert!(l.timed_out(t0, t0 + s, s));
    }
}
