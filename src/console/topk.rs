//! The keys a limit rejects most: space-saving (Metwally, Agrawal, El Abbadi, "Efficient
//! computation of frequent and top-k elements in data streams", 2005) over a sliding minute.
//!
//! Why space-saving: a limit under attack sees an unbounded number of distinct keys (a botnet,
//! random header values), and the console may spend only a fixed amount of memory and a few
//! nanoseconds per rejection on them. Space-saving keeps `K` counters; a key not tracked takes
//! over the counter with the smallest count and inherits that count as its possible error. So
//! any key rejected more than `N / K` times in a bucket of `N` rejections is in that bucket's
//! list, whatever order the stream comes in, and no count is ever under its true value within a
//! bucket.
//!
//! Why buckets: "the last 60 s" must forget. Six 10 s buckets, each its own summary, are merged
//! when read; a bucket older than the window is cleared by the first rejection that lands in its
//! slot again. Work happens only when a request is rejected, and the key's display text is
//! built only when the key takes a counter (not on every rejection of a tracked key), into the
//! buffer of the key it replaces.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Counters per bucket: 64 to report the top [`TOP`] with room for keys below them to rise.
pub const K: usize = 64;
/// Keys reported per limit (`GET /-/limits`).
pub const TOP: usize = 20;
pub const BUCKET_MS: u64 = 10_000;
/// Six buckets of 10 s: the window is the last 50 to 60 s.
pub const BUCKETS: usize = 6;

/// One bucket: `K` counters at most, kept as parallel arrays so that the scan for a key (the
/// work of every rejection) reads 512 contiguous bytes.
#[derive(Default)]
struct Summary {
    /// The bucket number (`now_ms / BUCKET_MS`) these counters belong to.
    epoch: u64,
    hashes: Vec<u64>,
    counts: Vec<u64>,
    /// How much of each count may belong to keys the counter held before (space-saving's
    /// overestimate); 0 for a key counted since it was first seen in this bucket.
    errors: Vec<u64>,
    texts: Vec<String>,
}

impl Summary {
    fn reset(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.hashes.clear();
        self.counts.clear();
        self.errors.clear();
        // The strings are kept, cleared, to be reused by the next keys.
        for t in &mut self.texts {
            t.clear();
        }
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }

    fn offer(&mut self, hash: u64, text: impl FnOnce(&mut String)) {
        if let Some(i) = self.hashes.iter().position(|h| *h == hash) {
            self.counts[i] += 1;
            return;
        }
        let n = self.len();
        if n < K {
            self.hashes.push(hash);
            self.counts.push(1);
            self.errors.push(0);
            if self.texts.len() <= n {
                self.texts.push(String::new());
            }
            text(&mut self.texts[n]);
            return;
        }
        // Full: the new key takes the smallest counter and its count as possible error.
        let (i, min) = self
            .counts
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, c)| *c)
            .unwrap_or((0, 0));
        self.hashes[i] = hash;
        self.errors[i] = min;
        self.counts[i] = min + 1;
        self.texts[i].clear();
        text(&mut self.texts[i]);
    }

    /// The smallest count: what a key this full summary does not hold may have had at most.
    fn floor(&self) -> u64 {
        if self.len() < K {
            0
        } else {
            self.counts.iter().copied().min().unwrap_or(0)
        }
    }
}

/// One key of a top list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopKey {
    /// The key as the limit saw it (an address, an IPv6 /64, or a value cut at 64 characters).
    pub key: String,
    /// Rejections of this key in the window, as estimated.
    pub count: u64,
    /// The true number is within `count ± error`; 0 means exact.
    pub error: u64,
}

/// A sliding minute of space-saving summaries.
#[derive(Default)]
pub struct Window {
    buckets: [Summary; BUCKETS],
}

impl Window {
    pub fn offer(&mut self, now_ms: u64, hash: u64, text: impl FnOnce(&mut String)) {
        let epoch = now_ms / BUCKET_MS;
        let b = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        if b.epoch != epoch || b.len() == 0 {
            b.reset(epoch);
        }
        b.offer(hash, text);
    }

    /// The `n` keys with the highest counts over the buckets still in the window at `now_ms`.
    pub fn top(&self, now_ms: u64, n: usize) -> Vec<TopKey> {
        let epoch = now_ms / BUCKET_MS;
        let live: Vec<&Summary> = self
            .buckets
            .iter()
            .filter(|b| b.len() > 0 && b.epoch <= epoch && b.epoch + (BUCKETS as u64) > epoch)
            .collect();
        // hash -> (text, count, error, buckets it was found in)
        let mut merged: HashMap<u64, (&str, u64, u64, u32)> = HashMap::new();
        for (bi, b) in live.iter().enumerate() {
            for i in 0..b.len() {
                let e = merged
                    .entry(b.hashes[i])
                    .or_insert((b.texts[i].as_str(), 0, 0, 0));
                e.1 += b.counts[i];
                e.2 += b.errors[i];
                e.3 |= 1 << bi;
            }
        }
        let mut out: Vec<TopKey> = merged
            .into_values()
            .map(|(text, count, error, seen_in)| {
                // In a full bucket that does not hold the key, it may still have had up to the
                // bucket's smallest count.
                let missed: u64 = live
                    .iter()
                    .enumerate()
                    .filter(|(bi, _)| seen_in & (1 << bi) == 0)
                    .map(|(_, b)| b.floor())
                    .sum();
                TopKey {
                    key: text.to_string(),
                    count,
                    error: error + missed,
                }
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        out.truncate(n);
        out
    }
}

/// The rejected keys of one limit, real rejections and dry-run ones apart. Kept across reloads
/// with the limit's state (same identity), so a reload mid-incident does not blank the list.
#[derive(Default)]
pub struct RejectedKeys {
    rejected: Mutex<Window>,
    dry_run: Mutex<Window>,
}

impl std::fmt::Debug for RejectedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RejectedKeys").finish_non_exhaustive()
    }
}

impl RejectedKeys {
    /// Count one rejection of the key hashed `hash`; `text` writes its display form and is
    /// called only when the key takes a counter.
    pub fn offer(&self, dry_run: bool, hash: u64, now_ms: u64, text: impl FnOnce(&mut String)) {
        let w = if dry_run {
            &self.dry_run
        } else {
            &self.rejected
        };
        w.lock().offer(now_ms, hash, text);
    }

    pub fn top(&self, dry_run: bool, now_ms: u64, n: usize) -> Vec<TopKey> {
        let w = if dry_run {
            &self.dry_run
        } else {
            &self.rejected
        };
        w.lock().top(now_ms, n)
    }
}

#[cfg(test)]
#[path = "topk_tests.rs"]
mod tests;
