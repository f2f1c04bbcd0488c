//! One window's counts per side, recorded from the proxy's logging phase with atomics only.
//!
//! Latency goes into a log-linear histogram (8 buckets per power of two of microseconds, so a
//! bucket is at most 12.5% wide, up to 2^27 µs ≈ 134 s, then one overflow bucket): 201 counters
//! per side, a fixed 1.6 KB whatever the traffic. The p99 *verdict* does not rely on the
//! histogram's resolution: each side also counts the requests slower than `max_p99`, which
//! decides exactly whether the nearest-rank p99 is above it. The histogram gives the figure
//! shown in logs and status.
//!
//! Windows alternate between two slots: requests record into the slot of the current window
//! number, and closing a window moves the number on before reading the old slot, so the ticker
//! never reads a slot that requests are still busy filling (a request that read the number just
//! before it moved may land after the read: at most a handful per window, none counted twice).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: 2^3.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Latencies from 2^MAX_EXP µs up share the overflow bucket.
const MAX_EXP: u32 = 27;
/// Buckets in the histogram, the overflow bucket last.
pub const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS) as u64 * SUB + 1) as usize;
const OVERFLOW: usize = BUCKETS - 1;

/// The bucket of a latency.
pub fn bucket_of(latency: Duration) -> usize {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if us < SUB {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    if exp >= MAX_EXP {
        return OVERFLOW;
    }
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exp - SUB_BITS) * SUB + sub) as usize
}

/// The smallest latency that no longer falls into bucket `i` (the bucket's exclusive upper
/// bound); for the overflow bucket, its lower bound.
pub fn bucket_upper(i: usize) -> Duration {
    let i = i as u64;
    if i < SUB {
        return Duration::from_micros(i + 1);
    }
    if i as usize >= OVERFLOW {
        return Duration::from_micros(1 << MAX_EXP);
    }
    let exp = (i - SUB) / SUB;
    let sub = (i - SUB) % SUB;
    Duration::from_micros((SUB + sub + 1) << exp)
}

/// The counts of one side in one window, as read when the window closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideStats {
    pub requests: u64,
    /// 5xx answers, from the upstream or Seawall's own (refused, timeout, overloaded).
    pub errors: u64,
    /// Requests slower than the spec's `max_p99` (0 when it has none).
    pub slow: u64,
    pub latency: Vec<u64>,
}

impl Default for SideStats {
    fn default() -> Self {
        SideStats {
            requests: 0,
            errors: 0,
            slow: 0,
            latency: vec![0; BUCKETS],
        }
    }
}

impl SideStats {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// Nearest-rank p99 read from the histogram: the upper bound of the bucket holding the
    /// request of rank ceil(0.99 n). `None` with no requests.
    pub fn p99(&self) -> Option<Duration> {
        let n: u64 = self.latency.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = p99_rank(n);
        let mut seen = 0;
        for (i, c) in self.latency.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_upper(i));
            }
        }
        Some(bucket_upper(OVERFLOW))
    }

    /// Add `n` requests of one latency (tests and benchmarks build windows this way).
    pub fn add(&mut self, n: u64, errors: u64, latency: Duration, max_p99: Option<Duration>) {
        self.requests += n;
        self.errors += errors;
        if max_p99.is_some_and(|m| latency > m) {
            self.slow += n;
        }
        self.latency[bucket_of(latency)] += n;
    }
}

/// Rank of the nearest-rank 99th percentile among `n` values: ceil(0.99 n), in integers.
pub fn p99_rank(n: u64) -> u64 {
    (n * 99).div_ceil(100)
}

/// One side's live counters.
pub struct SideCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    slow: AtomicU64,
    latency: Box<[AtomicU64]>,
}

impl Default for SideCounters {
    fn default() -> Self {
        SideCounters {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl SideCounters {
    fn record(&self, error: bool, latency: Duration, max_p99: Option<Duration>) {
        // Relaxed: the counts are read a window later, after the window number has moved.
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if max_p99.is_some_and(|m| latency > m) {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket_of(latency)].fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> SideStats {
        SideStats {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            slow: self.slow.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        }
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
        for c in self.latency.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Slot {
    stable: SideCounters,
    canary: SideCounters,
}

/// The two alternating window slots of one route's canary.
#[derive(Default)]
pub struct Windows {
    number: AtomicU64,
    slots: [Slot; 2],
}

impl Windows {
    pub fn record(
        &self,
        side: super::Side,
        error: bool,
        latency: Duration,
        max_p99: Option<Duration>,
    ) {
        let slot = &self.slots[(self.number.load(Ordering::Acquire) & 1) as usize];
        let c = match side {
            super::Side::Stable => &slot.stable,
            super::Side::Canary => &slot.canary,
        };
        c.record(error, latency, max_p99);
    }

    /// Close the current window: the next one starts empty, and the closed one's counts are
    /// returned as (stable, canary).
    pub fn close(&self) -> (SideStats, SideStats) {
        let n = self.number.load(Ordering::Acquire);
        let next = &self.slots[((n + 1) & 1) as usize];
        // Last used two windows ago: whatever was still landing in it has long landed.
        next.stable.reset();
        next.canary.reset();
        self.number.store(n + 1, Ordering::Release);
        let closed = &self.slots[(n & 1) as usize];
        (closed.stable.read(), closed.canary.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_narrow() {
        let mut last = 0;
        for us in (0..200_000u64).chain([1 << 26, (1 << 27) - 1, 1 << 27, u64::MAX / 2]) {
            let d = Duration::from_micros(us);
            let b = bucket_of(d);
            assert!(b >= last, "bucket order at {us}");
            last = b;
            assert!(b < BUCKETS);
            if b < OVERFLOW {
                let upper = bucket_upper(b);
                assert!(
                    d < upper,
                    "{us} µs below its bucket's upper bound {upper:?}"
                );
                // At most 12.5% above the value (exactly, from 8 µs up).
                if us >= 8 {
                    assert!(upper.as_micros() as f64 <= us as f64 * 1.125 + 1.0, "{us}");
                }
                if b > 0 {
                    assert!(
                        bucket_upper(b - 1) <= d,
                        "{us} µs above the previous bucket"
                    );
                }
            }
        }
        assert_eq!(bucket_of(Duration::from_secs(1000)), OVERFLOW);
        assert_eq!(BUCKETS, 201);
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        let mut s = SideStats::default();
        assert_eq!(s.p99(), None);
        s.add(99, 0, Duration::from_millis(10), None);
        s.add(1, 0, Duration::from_secs(2), None);
        // Rank 99 of 100 is the last fast one.
        assert!(s.p99().unwrap() <= Duration::from_micros(11_250));
        s.add(1, 0, Duration::from_secs(2), None);
        // 101 requests: rank 100 is slow.
        assert!(s.p99().unwrap() > Duration::from_secs(2));
        assert_eq!(p99_rank(1), 1);
        assert_eq!(p99_rank(100), 99);
        assert_eq!(p99_rank(101), 100);
    }

    #[test]
    fn windows_alternate_and_start_empty() {
        let w = Windows::default();
        let ms = Duration::from_millis;
        w.record(super::super::Side::Canary, true, ms(5), Some(ms(1)));
        w.record(super::super::Side::Stable, false, ms(5), Some(ms(10)));
        let (s, c) = w.close();
        assert_eq!((s.requests, s.errors, s.slow), (1, 0, 0));
        assert_eq!((c.requests, c.errors, c.slow), (1, 1, 1));
        let (s, c) = w.close();
        assert_eq!((s.requests, c.requests), (0, 0));
        w.record(super::super::Side::Stable, false, ms(5), None);
        let (s, _) = w.close();
        assert_eq!(s.requests, 1);
        let (s, _) = w.close();
        assert_eq!(s.requests, 0, "a slot is emptied before it is used again");
    }
}
