//! One shard's keys: an open-addressed table of 64-byte buckets, each holding three whole
//! entries (key, `last`, `excess`), so that a decision at a million keys, when the table is far
//! larger than the caches, waits on one cache line rather than two (a Swiss table keeps its
//! probe tags apart from its entries: one miss for the tag, another for the entry).
//!
//! - The full 64-bit key is kept, not a fingerprint: two keys share state only if their hashes
//!   are equal, as before.
//! - A key's home bucket comes from its low 32 bits (multiply-shift, so the bucket count need
//!   not be a power of two and a table can be sized to its shard's cap); the limiter's shard
//!   comes from bits 32 and up, so the two are independent.
//! - A full home bucket spills into the next ones (linear probing, wrapping). Each bucket counts
//!   the entries that passed over it to a later bucket (F14's overflow count), so a lookup for
//!   an absent key stops at the first bucket whose count is zero, and a removal needs no
//!   tombstone: it decrements the counts on its entry's probe path.
//! - Eviction samples from a cursor that moves on with every eviction, so over time every
//!   region of the table is sampled, rather than the first entries of an iteration order.

/// Entries per bucket: 3 x (8 + 8 + 4) bytes + 4 bytes of metadata = one cache line.
const SLOTS: usize = 3;
/// Occupancy bits in `meta`; the overflow count sits above them.
const OCCUPIED: u32 = (1 << SLOTS) - 1;
const OVERFLOW_ONE: u32 = 1 << SLOTS;
/// The table grows when it would be fuller than this (entries / slots, in percent). At 3
/// entries per bucket and 75%, about one lookup in seven reads a second (adjacent) bucket.
const MAX_LOAD_PCT: usize = 75;
const MIN_BUCKETS: usize = 4;

/// What nginx keeps per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    pub last: u64,
    pub excess: u32,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; SLOTS],
    last: [u64; SLOTS],
    excess: [u32; SLOTS],
    /// Bits 0..SLOTS: which slots hold an entry; above: the overflow count.
    meta: u32,
}

const EMPTY: Bucket = Bucket {
    keys: [0; SLOTS],
    last: [0; SLOTS],
    excess: [0; SLOTS],
    meta: 0,
};

/// Where an entry sits: bucket and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    bucket: usize,
    slot: usize,
}

#[derive(Default)]
pub(super) struct Table {
    buckets: Box<[Bucket]>,
    len: usize,
    /// Where the next eviction sample starts.
    cursor: usize,
}

/// Buckets for `entries` at the maximum load.
fn buckets_for(entries: usize) -> usize {
    (entries * 100)
        .div_ceil(SLOTS * MAX_LOAD_PCT)
        .max(MIN_BUCKETS)
}

impl Table {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Entries the table holds before it must grow.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * SLOTS * MAX_LOAD_PCT / 100
    }

    fn home(&self, key: u64) -> usize {
        (((key & 0xFFFF_FFFF) * self.buckets.len() as u64) >> 32) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.buckets.len() {
            0
        } else {
            i + 1
        }
    }

    pub fn find(&self, key: u64) -> Option<Pos> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut i = self.home(key);
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[i];
            let occupied = b.meta & OCCUPIED;
            for s in 0..SLOTS {
                if occupied & (1 << s) != 0 && b.keys[s] == key {
                    return Some(Pos { bucket: i, slot: s });
                }
            }
            if b.meta < OVERFLOW_ONE {
                return None;
            }
            i = self.next(i);
        }
        None
    }

    pub fn get(&self, p: Pos) -> Slot {
        let b = &self.buckets[p.bucket];
        Slot {
            last: b.last[p.slot],
            excess: b.excess[p.slot],
        }
    }

    pub fn set(&mut self, p: Pos, s: Slot) {
        let b = &mut self.buckets[p.bucket];
        b.last[p.slot] = s.last;
        b.excess[p.slot] = s.excess;
    }

    /// Adds `key`, which must be absent. Grows the table when it is at its load limit:
    /// doubling, but no further than what `cap` entries need, so a shard that fills to its
    /// cap ends sized for it.
    pub fn insert(&mut self, key: u64, s: Slot, cap: usize) -> Pos {
        if self.len + 1 > self.capacity() {
            let doubled = (self.buckets.len() * 2).max(MIN_BUCKETS);
            let wanted = doubled.min(buckets_for(cap)).max(buckets_for(self.len + 1));
            self.rebuild(wanted);
        }
        self.place(key, s)
    }

    fn place(&mut self, key: u64, s: Slot) -> Pos {
        let mut i = self.home(key);
        loop {
            let b = &mut self.buckets[i];
            let free = !b.meta & OCCUPIED;
            if free != 0 {
                let slot = free.trailing_zeros() as usize;
                b.keys[slot] = key;
                b.last[slot] = s.last;
                b.excess[slot] = s.excess;
                b.meta |= 1 << slot;
                self.len += 1;
                return Pos { bucket: i, slot };
            }
            // The load limit keeps free slots, so this ends within the table.
            b.meta += OVERFLOW_ONE;
            i = self.next(i);
        }
    }

    pub fn remove(&mut self, p: Pos) {
        let key = self.buckets[p.bucket].keys[p.slot];
        let mut i = self.home(key);
        while i != p.bucket {
            self.buckets[i].meta -= OVERFLOW_ONE;
            i = self.next(i);
        }
        self.buckets[p.bucket].meta &= !(1 << p.slot);
        self.len -= 1;
    }

    /// The entry to evict among about `max` entries from the eviction cursor on: the one with
    /// the lowest `score` (`None`: not to be evicted; the first of equal scores; a score of 0
    /// ends the sample at once). The cursor moves past the buckets read, so the next sample
    /// starts where this one ended.
    pub fn sample(&mut self, max: usize, score: impl Fn(Slot) -> Option<u64>) -> Option<Pos> {
        let n = self.buckets.len();
        let mut seen = 0;
        let mut i = if self.cursor < n { self.cursor } else { 0 };
        let mut best: Option<(Pos, u64)> = None;
        for _ in 0..n {
            let b = &self.buckets[i];
            for s in 0..SLOTS {
                if b.meta & (1 << s) == 0 {
                    continue;
                }
                seen += 1;
                let slot = Slot {
                    last: b.last[s],
                    excess: b.excess[s],
                };
                if let Some(v) = score(slot)
                    && best.is_none_or(|(_, e)| v < e)
                {
                    best = Some((Pos { bucket: i, slot: s }, v));
                    if v == 0 {
                        break;
                    }
                }
            }
            i = self.next(i);
            if seen >= max || best.is_some_and(|(_, v)| v == 0) {
                break;
            }
        }
        self.cursor = i;
        best.map(|(p, _)| p)
    }

    /// Keeps the entries `keep` says to keep.
    pub fn retain(&mut self, mut keep: impl FnMut(Slot) -> bool) {
        for bucket in 0..self.buckets.len() {
            for slot in 0..SLOTS {
                let p = Pos { bucket, slot };
                if self.buckets[bucket].meta & (1 << slot) != 0 && !keep(self.get(p)) {
                    self.remove(p);
                }
            }
        }
    }

    /// Gives memory back after a reclaim emptied most of the table: rebuilt for what it holds.
    pub fn shrink_to_fit(&mut self) {
        let wanted = buckets_for(self.len);
        if wanted < self.buckets.len() {
            self.rebuild(wanted);
        }
    }

    fn rebuild(&mut self, buckets: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; buckets].into_boxed_slice());
        self.len = 0;
        self.cursor = 0;
        for b in old.iter() {
            for s in 0..SLOTS {
                if b.meta & (1 << s) != 0 {
                    self.place(
                        b.keys[s],
                        Slot {
                            last: b.last[s],
                            excess: b.excess[s],
                        },
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u64) -> Slot {
        Slot {
            last: n,
            excess: n as u32,
        }
    }

    #[test]
    fn a_bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    /// Keys crowded into few home buckets (same low bits) exercise spilling, the overflow
    /// counts and removal along a probe path, against a HashMap doing the same.
    #[test]
    fn crowded_keys_insert_find_and_remove_like_a_map() {
        let mut t = Table::default();
        let mut model = std::collections::HashMap::new();
        let mut rng = 12345u64;
        let mut step = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..20_000u64 {
            // Low 32 bits from a handful of values: the keys share two home buckets, the first
            // and the last (whose spill wraps around to the first).
            let low = [0, 1, 0xFFFF_FFFF, 0xFFFF_FFFE][(step() % 4) as usize];
            let key = ((step() << 32) % (1 << 40)) | low;
            match (t.find(key), model.contains_key(&key)) {
                (Some(p), true) => {
                    assert_eq!(t.get(p), model[&key]);
                    if round % 3 == 0 {
                        t.remove(p);
                        model.remove(&key);
                    } else {
                        t.set(p, slot(round));
                        model.insert(key, slot(round));
                    }
                }
                (None, false) => {
                    t.insert(key, slot(round), 1 << 20);
                    model.insert(key, slot(round));
                }
                (found, present) => panic!("key {key:#x}: table {found:?}, model {present}"),
            }
            assert_eq!(t.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(t.get(t.find(*k).expect("present")), *v);
        }
        t.retain(|s| s.last % 2 == 0);
        model.retain(|_, s| s.last % 2 == 0);
        assert_eq!(t.len(), model.len());
        t.shrink_to_fit();
        for (k, v) in &model {
            assert_eq!(t.get(t.find(*k).expect("present after shrink")), *v);
        }
        // Every overflow count is back to what the remaining entries need: none stray.
        let total: u32 = t.buckets.iter().map(|b| b.meta >> SLOTS).sum();
        let needed: usize = t
            .buckets
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                (0..SLOTS)
                    .filter(move |s| b.meta & (1 << s) != 0)
                    .map(move |s| (i, b.keys[s]))
            })
            .map(|(i, k)| (i + t.buckets.len() - t.home(k)) % t.buckets.len())
            .sum();
        assert_eq!(total as usize, needed);
    }

    #[test]
    fn a_table_filled_to_its_cap_is_sized_for_it() {
        let mut t = Table::default();
        for k in 0..10_000u64 {
            t.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), slot(k), 10_000);
        }
        assert_eq!(t.buckets.len(), buckets_for(10_000));
        assert!(t.capacity() >= 10_000);
    }

    #[test]
    fn eviction_samples_move_through_the_whole_table() {
        let mut t = Table::default();
        for k in 0..3_000u64 {
            t.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), slot(k), 3_000);
        }
        // `last` tells the entries apart.
        let seen = std::cell::RefCell::new(std::collections::HashSet::new());
        for _ in 0..(3_000 / 32 + 2) {
            t.sample(32, |s| {
                seen.borrow_mut().insert(s.last);
                None
            });
        }
        assert_eq!(
            seen.borrow().len(),
            3_000,
            "every entry is sampled within one turn of the cursor"
        );
    }
}
