//! The per-key limiter, decision for decision what nginx's `limit_req` does.
//!
//! State per key is nginx's: `excess` in milli-requests and `last`, a millisecond timestamp.
//! The arithmetic is nginx's integer arithmetic (ngx_http_limit_req_module.c), including its
//! quirks, so a side-by-side run with nginx agrees request for request:
//!
//! ```text
//! lookup(key, now, account):
//!   miss:  insert {excess 0, last now}; PASS (free) if account, else AGAIN (charged later)
//!   hit:   ms = now - last (ms < -60000 -> 1, ms < 0 -> 0)
//!          e = max(0, excess - rate*ms/1000 + 1000)
//!          e > burst: REJECT, state untouched
//!          account: excess = e, last = now if ms != 0; PASS     else: AGAIN (nothing written)
//! account(key, now): the same update without the burst check (nginx's second phase)
//! delay = e <= delay_threshold ? 0 : (e - delay_threshold) * 1000 / rate      (ms)
//! ```
//!
//! Several limits on one request ([`decide`]): each is looked up in order, only the last with
//! `account`; if any rejects, nothing is charged (an earlier fresh key keeps its new empty
//! entry, as in nginx); otherwise the others are accounted and the longest delay wins.
//!
//! Keys live in a sharded table bounded by `max_keys` ([`Limiter`]), each shard an open-addressed
//! table whose 64-byte buckets hold whole entries (limiter/table.rs), so that a decision among a
//! million keys waits on one cache line. At the bound a new key replaces, among a sample of
//! entries taken from a cursor that moves through the shard, an entry that is as good as new
//! (drained so far that its next request would be treated exactly as a never-seen key's), else
//! the least-charged entry that is not being limited (its next request would pass). An entry
//! whose next request would be rejected is never evicted, so a flood of new keys cannot reset a
//! victim's limit; and a new visitor is never refused for lack of room: if every sampled entry
//! is being limited, the new key passes untracked, as a fresh key's first request would.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::LimitSpec;

mod table;

use table::{Slot, Table};

/// Milliseconds on a monotonic clock. Injected so tests replay traces without sleeping.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The process's monotonic clock, in ms since the limiter module first used it.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock;

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        // Start at 1 h so that nginx's "ms < -60000" guard never sees small timestamps wrap.
        epoch().elapsed().as_millis() as u64 + 3_600_000
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct FakeClock(pub AtomicU64);

impl FakeClock {
    pub fn at(ms: u64) -> FakeClock {
        FakeClock(AtomicU64::new(ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// nginx's integer parameters of one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Milli-requests per second, truncated as nginx does (`1r/m` = 16).
    pub rate_m: u64,
    pub burst_m: u64,
    /// Excess (milli-requests) below which a request is not delayed; `u64::MAX` = nodelay.
    pub delay_m: u64,
    pub max_keys: usize,
}

impl Params {
    pub fn from_spec(s: &LimitSpec) -> Params {
        Params {
            rate_m: s.rate.milli_per_sec.get(),
            burst_m: u64::from(s.burst) * 1000,
            delay_m: if s.nodelay {
                u64::MAX
            } else {
                u64::from(s.delay) * 1000
            },
            max_keys: s.max_keys.get(),
        }
    }

    /// Delay in ms for a request that leaves `excess` behind.
    pub fn delay_ms(&self, excess: u64) -> u64 {
        if excess <= self.delay_m {
            0
        } else {
            (excess - self.delay_m) * 1000 / self.rate_m
        }
    }
}

/// One shard's lock on its own cache line, so two cores working on different shards do not
/// keep taking the line from each other.
#[repr(align(64))]
struct Padded(Mutex<Table>);

/// nginx forgets an entry only when it is fully drained and idle at least this long; we do the
/// same, so an entry's next request costs what it would in nginx.
pub const RECLAIM_IDLE_MS: u64 = 60_000;

/// How many entries a full shard inspects for a drained one before admitting untracked (from a
/// cursor that moves through the shard, see table.rs).
const EVICT_SCAN: usize = 32;

/// The result of nginx's lookup for one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Passed and charged (`account`), leaving `excess`.
    Pass { excess: u64 },
    /// Would pass; to be charged by [`Limiter::account`].
    Again { excess: u64 },
    /// Over the burst; nothing changed. `retry_after_ms`: when the same request would pass.
    Reject { excess: u64, retry_after_ms: u64 },
}

pub struct Limiter {
    rate_m: AtomicU64,
    burst_m: AtomicU64,
    delay_m: AtomicU64,
    shards: Box<[Padded]>,
    shard_cap: AtomicUsize,
    tracked: AtomicUsize,
    /// New keys let through untracked because every sampled entry was being limited.
    pub untracked: AtomicU64,
    /// Entries evicted at the bound to make room for a new key.
    pub evicted: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("params", &self.params())
            .field("tracked", &self.tracked())
            .finish()
    }
}

/// Shards: enough to keep lock contention low on many cores, few enough that each holds a
/// useful share of a small `max_keys`.
fn shard_count(max_keys: usize) -> usize {
    (max_keys / 64).clamp(1, 64).next_power_of_two().min(64)
}

impl Limiter {
    pub fn new(p: Params) -> Limiter {
        let n = shard_count(p.max_keys);
        Limiter {
            rate_m: AtomicU64::new(p.rate_m),
            burst_m: AtomicU64::new(p.burst_m),
            delay_m: AtomicU64::new(p.delay_m),
            shards: (0..n)
                .map(|_| Padded(Mutex::new(Table::default())))
                .collect(),
            shard_cap: AtomicUsize::new((p.max_keys / n).max(1)),
            tracked: AtomicUsize::new(0),
            untracked: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    pub fn params(&self) -> Params {
        Params {
            rate_m: self.rate_m.load(Ordering::Relaxed),
            burst_m: self.burst_m.load(Ordering::Relaxed),
            delay_m: self.delay_m.load(Ordering::Relaxed),
            max_keys: self.shard_cap.load(Ordering::Relaxed) * self.shards.len(),
        }
    }

    /// A reload re-rated this limit: new parameters, same keys. A smaller `max_keys` applies as
    /// entries drain; the shard count stays as built.
    pub fn set_params(&self, p: Params) {
        self.rate_m.store(p.rate_m, Ordering::Relaxed);
        self.burst_m.store(p.burst_m, Ordering::Relaxed);
        self.delay_m.store(p.delay_m, Ordering::Relaxed);
        self.shard_cap
            .store((p.max_keys / self.shards.len()).max(1), Ordering::Relaxed);
    }

    /// The delay for a request that leaves `excess` behind, as [`Params::delay_ms`].
    fn delay_ms(&self, excess: u64) -> u64 {
        Params {
            rate_m: self.rate_m.load(Ordering::Relaxed),
            burst_m: 0,
            delay_m: self.delay_m.load(Ordering::Relaxed),
            max_keys: 0,
        }
        .delay_ms(excess)
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// The shard comes from the key's bits 32 and up: the table places a key by its low 32
    /// bits, which therefore must not be constant within a shard.
    fn shard(&self, key: u64) -> &Mutex<Table> {
        let i = (key >> 32) as usize & (self.shards.len() - 1);
        &self.shards[i].0
    }

    /// nginx's elapsed time, with its guards against a clock that went backwards.
    fn elapsed(now: u64, last: u64) -> u64 {
        let ms = now as i128 - last as i128;
        if ms < -60_000 {
            1
        } else if ms < 0 {
            0
        } else {
            ms as u64
        }
    }

    fn excess_after(rate_m: u64, slot: Slot, now: u64) -> (u64, u64) {
        let ms = Self::elapsed(now, slot.last);
        let drained = rate_m.saturating_mul(ms) / 1000;
        let e = (u64::from(slot.excess) + 1000).saturating_sub(drained);
        (e, ms)
    }

    /// nginx's `ngx_http_limit_req_lookup`.
    pub fn lookup(&self, key: u64, now: u64, account: bool) -> Lookup {
        let rate_m = self.rate_m.load(Ordering::Relaxed);
        let burst_m = self.burst_m.load(Ordering::Relaxed);
        let mut table = self.shard(key).lock();
        if let Some(pos) = table.find(key) {
            let slot = table.get(pos);
            let (e, ms) = Self::excess_after(rate_m, slot, now);
            if e > burst_m {
                let retry_after_ms = ((e - burst_m) * 1000).div_ceil(rate_m);
                return Lookup::Reject {
                    excess: e,
                    retry_after_ms,
                };
            }
            if !account {
                return Lookup::Again { excess: e };
            }
            table.set(
                pos,
                Slot {
                    excess: e as u32,
                    last: if ms != 0 { now } else { slot.last },
                },
            );
            return Lookup::Pass { excess: e };
        }
        self.insert(&mut table, key, now, rate_m);
        if account {
            Lookup::Pass { excess: 0 }
        } else {
            Lookup::Again { excess: 0 }
        }
    }

    /// nginx's `ngx_http_limit_req_account` for one limit: charge a request that passed
    /// [`Self::lookup`] without `account`. Returns the excess it leaves.
    pub fn account(&self, key: u64, now: u64) -> u64 {
        let rate_m = self.rate_m.load(Ordering::Relaxed);
        let mut table = self.shard(key).lock();
        let pos = match table.find(key) {
            Some(p) => p,
            // Only possible if the table was full and the key went untracked.
            None => match self.insert(&mut table, key, now, rate_m) {
                Some(p) => p,
                None => return 0,
            },
        };
        let slot = table.get(pos);
        let (e, ms) = Self::excess_after(rate_m, slot, now);
        table.set(
            pos,
            Slot {
                excess: e.min(u64::from(u32::MAX)) as u32,
                last: if ms != 0 { now } else { slot.last },
            },
        );
        e
    }

    /// Insert a fresh entry `{excess 0, last now}`. A full shard makes room by evicting, among
    /// a sample of its entries, one that is as good as new (no decision changes), else the one
    /// with the least excess among those whose next request would still pass. An entry whose
    /// next request would be rejected (a key being limited) is never evicted. Returns where the
    /// entry went, or None (and counts it) when every sampled entry is being limited.
    fn insert(&self, table: &mut Table, key: u64, now: u64, rate_m: u64) -> Option<table::Pos> {
        let cap = self.shard_cap.load(Ordering::Relaxed);
        if table.len() >= cap {
            let burst_m = self.burst_m.load(Ordering::Relaxed);
            // The next request's excess ranks the entries; 0 (as good as new) ends the sample.
            let victim = table.sample(EVICT_SCAN, |s| {
                let (next, _) = Self::excess_after(rate_m, s, now);
                (next <= burst_m).then_some(next)
            });
            match victim {
                Some(p) => {
                    table.remove(p);
                    self.tracked.fetch_sub(1, Ordering::Relaxed);
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let pos = table.insert(
            key,
            Slot {
                last: now,
                excess: 0,
            },
            cap,
        );
        self.tracked.fetch_add(1, Ordering::Relaxed);
        Some(pos)
    }

    /// nginx's expiry test: the excess has drained away.
    fn drained(rate_m: u64, s: Slot, now: u64) -> bool {
        let ms = Self::elapsed(now, s.last);
        u64::from(s.excess) <= rate_m.saturating_mul(ms) / 1000
    }

    /// Forget entries that are fully drained and idle for [`RECLAIM_IDLE_MS`], as nginx's
    /// expiry does. Returns how many were removed.
    pub fn reclaim(&self, now: u64) -> usize {
        let rate_m = self.rate_m.load(Ordering::Relaxed);
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut table = shard.0.lock();
            let before = table.len();
            table.retain(|s| {
                !(Self::elapsed(now, s.last) >= RECLAIM_IDLE_MS && Self::drained(rate_m, s, now))
            });
            let shard_cap = self.shard_cap.load(Ordering::Relaxed);
            if table.capacity() > 4 * shard_cap.max(table.len()).max(16) {
                table.shrink_to_fit();
            }
            removed += before - table.len();
        }
        self.tracked.fetch_sub(removed, Ordering::Relaxed);
        removed
    }
}

/// One limit's part in a request's decision.
pub struct Check<'a> {
    pub limiter: &'a Limiter,
    /// `None`: the key is absent (header missing, say) or the client is exempt; the limit does
    /// not apply, as nginx skips an empty key.
    pub key: Option<u64>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The limit did not apply (no key, exempt).
    Skipped,
    /// Not looked at: an earlier limit rejected (nginx stops at the first).
    NotReached,
    Passed {
        excess: u64,
    },
    Delayed {
        excess: u64,
        delay_ms: u64,
    },
    Rejected {
        excess: u64,
        retry_after_ms: u64,
    },
    /// Would have rejected; dry run lets it pass uncharged.
    DryRunRejected {
        retry_after_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdicts: Vec<Verdict>,
    /// Index of the limit that rejected the request.
    pub rejected: Option<usize>,
    /// How long the request waits before it is proxied (the longest of its limits' delays).
    pub delay_ms: u64,
}

/// Decide for one request over all its limits, in order (nginx's handler + account).
pub fn decide(checks: &[Check<'_>], now: u64) -> Decision {
    match checks {
        [only] => decide_one(only, now),
        _ => decide_many(checks, now),
    }
}

fn decide_many(checks: &[Check<'_>], now: u64) -> Decision {
    let mut verdicts = vec![Verdict::Skipped; checks.len()];
    let last = checks.iter().rposition(|c| c.key.is_some());
    // Routes have a few limits: keep the lookups on the stack.
    let mut on_stack = [None; 8];
    let mut on_heap;
    let lookups: &mut [Option<Lookup>] = if checks.len() <= on_stack.len() {
        &mut on_stack[..checks.len()]
    } else {
        on_heap = vec![None; checks.len()];
        &mut on_heap
    };
    for (i, c) in checks.iter().enumerate() {
        let Some(key) = c.key else { continue };
        let l = c.limiter.lookup(key, now, Some(i) == last);
        if let Lookup::Reject {
            excess,
            retry_after_ms,
        } = l
        {
            if c.dry_run {
                verdicts[i] = Verdict::DryRunRejected { retry_after_ms };
                continue;
            }
            verdicts[i] = Verdict::Rejected {
                excess,
                retry_after_ms,
            };
            for v in verdicts.iter_mut().skip(i + 1) {
                *v = Verdict::NotReached;
            }
            // Earlier limits that passed their lookup are not charged.
            for (j, v) in verdicts.iter_mut().enumerate().take(i) {
                if lookups[j].is_some() {
                    *v = Verdict::NotReached;
                }
            }
            return Decision {
                verdicts,
                rejected: Some(i),
                delay_ms: 0,
            };
        }
        lookups[i] = Some(l);
    }
    let mut delay_ms = 0;
    for (i, c) in checks.iter().enumerate() {
        let excess = match (lookups[i], c.key) {
            (Some(Lookup::Pass { excess }), _) => excess,
            (Some(Lookup::Again { .. }), Some(key)) => c.limiter.account(key, now),
            _ => continue,
        };
        let d = c.limiter.delay_ms(excess);
        verdicts[i] = if d > 0 && !c.dry_run {
            delay_ms = delay_ms.max(d);
            Verdict::Delayed {
                excess,
                delay_ms: d,
            }
        } else {
            Verdict::Passed { excess }
        };
    }
    Decision {
        verdicts,
        rejected: None,
        delay_ms,
    }
}

/// [`decide`] for a route with one limit, the usual case, without the bookkeeping several
/// need (a decision's fixed cost is about half its time when the entry is in cache): the last
/// limit is the only one, so it is looked up with `account` and nothing else is charged.
fn decide_one(c: &Check<'_>, now: u64) -> Decision {
    let Some(key) = c.key else {
        return Decision {
            verdicts: vec![Verdict::Skipped],
            rejected: None,
            delay_ms: 0,
        };
    };
    let excess = match c.limiter.lookup(key, now, true) {
        Lookup::Reject { retry_after_ms, .. } if c.dry_run => {
            return Decision {
                verdicts: vec![Verdict::DryRunRejected { retry_after_ms }],
                rejected: None,
                delay_ms: 0,
            };
        }
        Lookup::Reject {
            excess,
            retry_after_ms,
        } => {
            return Decision {
                verdicts: vec![Verdict::Rejected {
                    excess,
                    retry_after_ms,
                }],
                rejected: Some(0),
                delay_ms: 0,
            };
        }
        Lookup::Pass { excess } => excess,
        // Not returned with `account`; charged as `decide` would.
        Lookup::Again { .. } => c.limiter.account(key, now),
    };
    let d = c.limiter.delay_ms(excess);
    let (verdict, delay_ms) = if d > 0 && !c.dry_run {
        (
            Verdict::Delayed {
                excess,
                delay_ms: d,
            },
            d,
        )
    } else {
        (Verdict::Passed { excess }, 0)
    };
    Decision {
        verdicts: vec![verdict],
        rejected: None,
        delay_ms,
    }
}

#[cfg(test)]
mod tests;
