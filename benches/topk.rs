//! What the console adds to a rejection: one `RejectedKeys::offer` (the limit's space-saving
//! summary of rejected keys), in the two cases that matter.
//!
//! Run with `cargo bench --bench topk`.
//!
//! - `tracked_key`: the key already holds a counter (a client hammering a limit, the common
//!   case in an incident): a scan of at most 64 hashes and an increment.
//! - `new_key_full_table`: every rejection is a key never seen (a botnet of one-off addresses):
//!   the scan misses, the smallest counter is found and taken over, and the key's text (an IPv4
//!   address) is written into the evicted key's buffer.
//!
//! Measured on the shared 2-core machine (load average ~5 during the run, so upper figures):
//! `tracked_key` 27 ns, `new_key_full_table` 400 ns per offer. A rejected request costs the
//! proxy tens of microseconds besides, so even a flood of one-off keys adds about 1%.
//!
//! Time moves 1 ms per 64 offers, so buckets rotate as in a long run. Under `cargo test
//! --benches` criterion runs each benchmark once.

use std::fmt::Write;

use criterion::{Criterion, criterion_group, criterion_main};
use seawall::console::topk::{K, RejectedKeys};

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rejected_keys_offer");
    let keys = RejectedKeys::default();
    let hot: Vec<u64> = {
        let mut s = 1;
        (0..K as u64).map(|_| splitmix64(&mut s)).collect()
    };
    let mut i = 0u64;
    g.bench_function("tracked_key", |b| {
        b.iter(|| {
            i += 1;
            let h = hot[(i % 16) as usize];
            keys.offer(false, h, 3_600_000 + i / 64, |out| {
                let _ = write!(out, "192.0.2.{}", h % 250);
            });
        })
    });
    let keys = RejectedKeys::default();
    let mut s = 7u64;
    let mut i = 0u64;
    g.bench_function("new_key_full_table", |b| {
        b.iter(|| {
            i += 1;
            let h = splitmix64(&mut s);
            keys.offer(false, h, 3_600_000 + i / 64, |out| {
                let _ = write!(
                    out,
                    "{}.{}.{}.{}",
                    h >> 56,
                    (h >> 48) & 255,
                    (h >> 40) & 255,
                    (h >> 32) & 255
                );
            });
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
