//! Delivery pacing, AIMD back-off and retry delays: plain arithmetic on times the caller
//! passes in, so tests replay hours of failures in microseconds without a runtime or a sleep.

use std::time::Duration;

use super::spec::RetrySpec;

/// Microseconds on the caller's monotonic clock.
pub type Micros = u64;

/// How far apart two halvings must be: the failures of deliveries already in flight when the
/// pace was cut are the same trouble, not new evidence.
const CUT_COOLDOWN_US: u64 = 1_000_000;
/// How often the pace climbs one step back towards `rate` while deliveries succeed.
const STEP_EVERY_US: u64 = 1_000_000;

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The first failure after a healthy spell: the pace was halved.
    BackingOff { pace_mrps: u64 },
    /// The pace is back at `rate`.
    Recovered,
}

/// Evenly spaced delivery slots at the current pace (milli-requests per second, nginx's unit),
/// halved on failures and raised step by step back to `rate` while deliveries succeed.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate_mrps: u64,
    pace_mrps: u64,
    next_us: Micros,
    backing_off: bool,
    last_cut_us: Option<Micros>,
    last_step_us: Micros,
}

impl Pacer {
    pub fn new(rate_mrps: u64) -> Pacer {
        let rate_mrps = rate_mrps.max(1);
        Pacer {
            rate_mrps,
            pace_mrps: rate_mrps,
            next_us: 0,
            backing_off: false,
            last_cut_us: None,
            last_step_us: 0,
        }
    }

    pub fn rate_mrps(&self) -> u64 {
        self.rate_mrps
    }

    pub fn pace_mrps(&self) -> u64 {
        self.pace_mrps
    }

    pub fn backing_off(&self) -> bool {
        self.backing_off
    }

    /// The lowest pace a run of failures can push it to: a 16th of `rate`, but not below one
    /// request a second unless `rate` itself is lower (so a recovering app is found quickly).
    pub fn floor_mrps(&self) -> u64 {
        (self.rate_mrps / 16).max(self.rate_mrps.min(1000)).max(1)
    }

    fn interval_us(&self) -> u64 {
        1_000_000_000 / self.pace_mrps.max(1)
    }

    /// Take the next slot: when the caller may send (`>= now`). Slots are spaced by the current
    /// interval; an idle spell does not bank slots for a burst.
    pub fn reserve(&mut self, now: Micros) -> Micros {
        let start = self.next_us.max(now);
        self.next_us = start + self.interval_us();
        start
    }

    /// Give back a slot that was not used (nothing was due), so the next due entry does not
    /// wait a whole interval behind an empty one.
    pub fn unreserve(&mut self, start: Micros) {
        if self.next_us == start + self.interval_us() {
            self.next_us = start;
        }
    }

    /// The app said when to come back (`Retry-After`): no slot before then.
    pub fn hold_until(&mut self, t: Micros) {
        self.next_us = self.next_us.max(t);
    }

    /// A retryable failure (408, 429, 5xx, timeout, refused): halve, at most once a cooldown.
    pub fn on_failure(&mut self, now: Micros) -> Option<Transition> {
        self.last_step_us = now;
        if self
            .last_cut_us
            .is_some_and(|t| now < t + CUT_COOLDOWN_US.max(self.interval_us()))
        {
            return None;
        }
        self.last_cut_us = Some(now);
        self.pace_mrps = (self.pace_mrps / 2).max(self.floor_mrps());
        let started = !self.backing_off;
        self.backing_off = true;
        started.then_some(Transition::BackingOff {
            pace_mrps: self.pace_mrps,
        })
    }

    /// A delivered entry: while backing off, one step (a tenth of `rate`) up per second.
    pub fn on_success(&mut self, now: Micros) -> Option<Transition> {
        if !self.backing_off || now < self.last_step_us + STEP_EVERY_US {
            return None;
        }
        self.last_step_us = now;
        let step = (self.rate_mrps / 10).max(1);
        self.pace_mrps = (self.pace_mrps + step).min(self.rate_mrps);
        if self.pace_mrps == self.rate_mrps {
            self.backing_off = false;
            self.last_cut_us = None;
            return Some(Transition::Recovered);
        }
        None
    }

    /// A reload changed `rate`: a backed-off pace stays where it is (below the new rate).
    pub fn set_rate(&mut self, rate_mrps: u64) {
        self.rate_mrps = rate_mrps.max(1);
        self.pace_mrps = if self.backing_off {
            self.pace_mrps.min(self.rate_mrps)
        } else {
            self.rate_mrps
        };
    }
}

/// The wait before attempt `attempts + 1`, after `attempts` failed ones: exponential from
/// `initial`, capped at `max`, with full jitter over [initial, cap] (`jitter` in [0, 1)), so a
/// thousand entries that failed together do not come back together. A `Retry-After` from the
/// app is a floor: it knows when it will be ready.
pub fn retry_delay(
    retry: RetrySpec,
    attempts: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = attempts.saturating_sub(1).min(32);
    let cap = retry
        .initial
        .saturating_mul(1u32 << exp.min(31))
        .min(retry.max)
        .max(retry.initial);
    let span = cap.saturating_sub(retry.initial);
    let d = retry.initial + span.mul_f64(jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(ra) => d.max(ra),
        None => d,
    }
}

/// `Retry-After`: seconds, or an HTTP date (then relative to `now_ms`, Unix ms).
pub fn parse_retry_after(v: &str, now_ms: u64) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(Duration::from_millis(at_ms.saturating_sub(now_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn slots_are_evenly_spaced_at_rate_and_idle_time_is_not_banked() {
        let mut p = Pacer::new(20_000); // 20 r/s
        let starts: Vec<_> = (0..5).map(|_| p.reserve(10 * S)).collect();
        assert_eq!(
            starts,
            [
                10 * S,
                10 * S + 50_000,
                10 * S + 100_000,
                10 * S + 150_000,
                10 * S + 200_000
            ]
        );
        // A minute idle, then a burst: still one slot per 50 ms.
        let t = 70 * S;
        assert_eq!(p.reserve(t), t);
        assert_eq!(p.reserve(t), t + 50_000);
        // nginx's integer rate: 1r/m is 16 mr/s, one every 62.5 s.
        let mut slow = Pacer::new(16);
        slow.reserve(0);
        assert_eq!(slow.reserve(0), 62_500_000);
    }

    #[test]
    fn an_unused_slot_is_given_back() {
        let mut p = Pacer::new(10_000);
        let s = p.reserve(S);
        p.unreserve(s);
        assert_eq!(p.reserve(S), S);
    }

    #[test]
    fn failures_halve_once_per_cooldown_down_to_the_floor_then_climb_back_step_by_step() {
        let mut p = Pacer::new(200_000); // 200 r/s
        assert_eq!(
            p.on_failure(S),
            Some(Transition::BackingOff { pace_mrps: 100_000 })
        );
        // Failures of deliveries already in flight within the cooldown: no second cut.
        assert_eq!(p.on_failure(S + 500_000), None);
        assert_eq!(p.pace_mrps(), 100_000);
        for i in 2..20 {
            assert_eq!(p.on_failure(i * S), None, "only the first cut is logged");
        }
        assert_eq!(p.pace_mrps(), p.floor_mrps());
        assert_eq!(p.floor_mrps(), 12_500);
        // Slots are now spaced at the floor: 80 ms.
        let a = p.reserve(30 * S);
        assert_eq!(p.reserve(30 * S) - a, 80_000);
        // Successes: one step of rate/10 per second, not per success.
        let mut t = 40 * S;
        let mut paces = Vec::new();
        let mut recovered = None;
        while recovered.is_none() && t < 100 * S {
            for k in 0..10 {
                if let Some(tr) = p.on_success(t + k * 100_000) {
                    recovered = Some(tr);
                }
            }
            paces.push(p.pace_mrps());
            t += S;
        }
        assert_eq!(recovered, Some(Transition::Recovered));
        assert_eq!(
            paces,
            [
                32_500, 52_500, 72_500, 92_500, 112_500, 132_500, 152_500, 172_500, 192_500,
                200_000
            ]
        );
        assert!(!p.backing_off());
        // A new failure after recovery is a new episode: logged again.
        assert!(matches!(
            p.on_failure(200 * S),
            Some(Transition::BackingOff { .. })
        ));
    }

    #[test]
    fn retry_after_holds_every_slot() {
        let mut p = Pacer::new(100_000);
        p.hold_until(5 * S);
        assert_eq!(p.reserve(S), 5 * S);
    }

    #[test]
    fn reload_keeps_a_backed_off_pace_below_the_new_rate() {
        let mut p = Pacer::new(100_000);
        p.on_failure(S);
        p.set_rate(40_000);
        assert_eq!(p.pace_mrps(), 40_000);
        p.set_rate(400_000);
        assert_eq!(p.pace_mrps(), 40_000, "still backing off: climbs from here");
        let mut healthy = Pacer::new(100_000);
        healthy.set_rate(300_000);
        assert_eq!(healthy.pace_mrps(), 300_000);
    }

    #[test]
    fn retry_delays_grow_exponentially_within_initial_and_max_with_jitter() {
        let r = RetrySpec {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        };
        let lo = |a| retry_delay(r, a, None, 0.0);
        let hi = |a| retry_delay(r, a, None, 0.999_999);
        assert_eq!(lo(1), Duration::from_secs(1));
        assert_eq!(hi(1), Duration::from_secs(1));
        assert!(hi(2) > Duration::from_millis(1999) && hi(2) <= Duration::from_secs(2));
        assert!(hi(5) > Duration::from_millis(15_999) && hi(5) <= Duration::from_secs(16));
        assert!(hi(20) <= Duration::from_secs(300) && hi(20) > Duration::from_secs(299));
        assert_eq!(lo(100), Duration::from_secs(1));
        assert_eq!(retry_delay(r, 3, None, 0.5), Duration::from_millis(2500));
        // Retry-After is a floor.
        assert_eq!(
            retry_delay(r, 1, Some(Duration::from_secs(30)), 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(
            retry_delay(r, 9, Some(Duration::from_secs(1)), 0.0),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s after the epoch.
        let now = 784_111_777_000 - 30_000;
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now + 60_000),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }
}
