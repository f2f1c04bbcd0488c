//! "Rejected until T": keys being limited are answered without a Redis round trip.
//!
//! When Redis rejects a key it also says how long the key stays rejected if nothing but time
//! changes it (`blocked_ms`: the first moment the excess drains to the burst). Nothing else
//! can shorten that: other instances only charge a key (more excess), a rejected request
//! charges nothing, and the state cannot expire before it is drained. So until then Redis would
//! reject again, and the cache answers for it. Unlike Envoy's over-limit cache, an entry ends
//! exactly when Redis would first let the key through, never at a window's edge.
//!
//! Turning Redis's time into this process's: the script read Redis's clock at some moment
//! after the request was sent (`sent`), so the block ends no earlier than `sent + blocked_ms`
//! here. Two safety margins come off that: 1 ms for `TIME` being truncated to the millisecond,
//! and 0.1 % of the block for the two clocks' rates (NTP slews a clock by at most 0.05 %).
//! A parameter change (reload) clears the cache.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const SHARDS: usize = 8;

/// How often a full shard may be swept for ended entries (the sweep walks the whole shard).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Blocked {
    /// Rejected for sure before this.
    until: Instant,
    /// When Redis would let the key through (for `Retry-After`).
    pass_at: Instant,
}

struct Shard {
    map: HashMap<u128, Blocked>,
    last_sweep: Option<Instant>,
}

pub(super) struct RejectCache {
    shards: Box<[Mutex<Shard>]>,
    cap_per_shard: usize,
}

/// The last instant at which a key Redis blocked for `blocked_ms` (as seen from a request sent
/// at `sent`) is still certainly rejected; `None` when the block is too short to be worth it.
pub fn safe_until(sent: Instant, blocked_ms: u64) -> Option<Instant> {
    let margin_ms = 1 + blocked_ms / 1000;
    let ms = blocked_ms.checked_sub(margin_ms).filter(|ms| *ms > 0)?;
    Some(sent + Duration::from_millis(ms))
}

impl RejectCache {
    pub(super) fn new(max_keys: usize) -> RejectCache {
        RejectCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        last_sweep: None,
                    })
                })
                .collect(),
            cap_per_shard: (max_keys / SHARDS).max(1),
        }
    }

    fn shard(&self, key: u128) -> &Mutex<Shard> {
        &self.shards[(key as usize) % SHARDS]
    }

    /// `Some(ms until Redis would pass it)` when `key` is certainly rejected at `now`.
    pub(super) fn get(&self, key: u128, now: Instant) -> Option<u64> {
        let mut s = self.shard(key).lock();
        let b = *s.map.get(&key)?;
        if now >= b.until {
            s.map.remove(&key);
            return None;
        }
        let left = b.pass_at.saturating_duration_since(now);
        Some((left.as_micros() as u64).div_ceil(1000).max(1))
    }

    pub(super) fn insert(&self, key: u128, sent: Instant, blocked_ms: u64) {
        let Some(until) = safe_until(sent, blocked_ms) else {
            return;
        };
        let pass_at = sent + Duration::from_millis(blocked_ms);
        let mut s = self.shard(key).lock();
        if s.map.len() >= self.cap_per_shard && !s.map.contains_key(&key) {
            let now = Instant::now();
            if s.last_sweep
                .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
            {
                s.map.retain(|_, b| b.until > now);
                s.last_sweep = Some(now);
            }
            if s.map.len() >= self.cap_per_shard {
                // Full of keys being limited: this one is simply asked of Redis each time.
                return;
            }
        }
        s.map.insert(key, Blocked { until, pass_at });
    }

    pub(super) fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().map.clear();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's excess at Redis time `t` for state (e0, l0), as the script computes it.
    fn excess_at(e0: u64, l0: u64, t: u64, rate_m: u64) -> u64 {
        (e0 + 1000).saturating_sub(rate_m * (t - l0) / 1000)
    }

    /// The script's `blocked_ms`, written again here to be checked against the arithmetic.
    fn blocked_ms(e0: u64, l0: u64, now: u64, rate_m: u64, burst_m: u64) -> u64 {
        l0 + ((e0 + 1000 - burst_m) * 1000).div_ceil(rate_m) - now
    }

    #[test]
    fn a_blocked_key_is_rejected_until_the_block_ends_and_passes_right_after() {
        // Every rate from 1r/m to 1000r/s, bursts 0..5, states over and under the burst.
        let mut checked = 0;
        for rate_m in [16, 83, 1000, 2000, 3000, 7000, 10_000, 1_000_000] {
            for burst in 0..5u64 {
                let burst_m = burst * 1000;
                for e0 in (0..=burst_m).step_by(250) {
                    for age in [0u64, 1, 7, 100, 999, 2500] {
                        let l0 = 1_000_000;
                        let now = l0 + age;
                        if excess_at(e0, l0, now, rate_m) <= burst_m {
                            continue;
                        }
                        let b = blocked_ms(e0, l0, now, rate_m, burst_m);
                        assert!(b >= 1);
                        for t in now..now + b {
                            assert!(excess_at(e0, l0, t, rate_m) > burst_m, "rejected at {t}");
                        }
                        assert!(
                            excess_at(e0, l0, now + b, rate_m) <= burst_m,
                            "passes at end"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn entries_end_before_redis_would_pass() {
        let c = RejectCache::new(100);
        let sent = Instant::now();
        c.insert(7, sent, 10_000);
        let until = safe_until(sent, 10_000).unwrap();
        assert_eq!(until, sent + Duration::from_millis(10_000 - 11));
        assert_eq!(c.get(7, sent), Some(10_000));
        assert!(c.get(7, until - Duration::from_millis(1)).is_some());
        assert_eq!(c.get(7, until), None);
        // A block of 1 ms is not worth an entry.
        c.insert(8, sent, 1);
        assert_eq!(c.get(8, sent), None);
    }

    #[test]
    fn a_full_cache_keeps_its_entries_and_refuses_new_ones() {
        let c = RejectCache::new(SHARDS);
        let sent = Instant::now();
        for k in 0..SHARDS as u128 {
            c.insert(k, sent, 60_000);
        }
        c.insert(SHARDS as u128, sent, 60_000);
        assert_eq!(c.len(), SHARDS);
        assert!(c.get(0, sent).is_some());
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
