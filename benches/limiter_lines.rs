//! Cache misses per limiter decision at 1M tracked keys, counted by valgrind's cache simulator:
//! the repeatable companion of `benches/limiter.rs`, whose nanoseconds at 1M keys depend on what
//! else the machine's memory is doing. The same decisions as its `1_thread/1M_keys` (one
//! `nodelay` limit, 10r/s burst 20, keys drawn from a pre-generated sequence, fake time), only
//! `decisions()` being counted:
//!
//! ```sh
//! cargo bench --bench limiter_lines --no-run     # prints the binary's path
//! valgrind --tool=callgrind --cache-sim=yes --LL=8388608,16,64 \
//!   --toggle-collect='*limiter_lines::decisions*' target/release/deps/limiter_lines-HASH --bench
//! callgrind_annotate callgrind.out.PID | head -20    # D1mr + D1mw and DLmr + DLmw / DECISIONS
//! ```
//!
//! The simulated last-level cache is set to 8 MiB (`--LL`), smaller than the table in either
//! layout, as the share of a busy machine's L3 a limiter can count on; by default valgrind
//! would take the host's (32 MiB here), which would hold most of a 29 MB table and none of a
//! 54 MB one, and so compare the tables' sizes rather than their layouts. Without `--bench`
//! (as under `cargo test --all-targets`) it exits at once.

use seawall::limits::limiter::{Check, Limiter, Params, decide};

/// Seawall's allocator (src/main.rs): a decision allocates its verdicts, and a decision's cost
/// is the one Seawall pays only with the allocator Seawall runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: usize = 1_000_000;
const DECISIONS: u64 = 200_000;
/// As in benches/limiter.rs: fake milliseconds advance once per 128 decisions.
const MS_SHIFT: u32 = 7;
const T0: u64 = 3_600_000;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The counted part: `DECISIONS` decisions, each on the next key of `seq`.
#[inline(never)]
fn decisions(limiter: &Limiter, seq: &[u64]) -> usize {
    let mut rejected = 0;
    for (g, &key) in seq.iter().enumerate() {
        let now = T0 + 1 + ((g as u64) >> MS_SHIFT);
        let d = decide(
            &[Check {
                limiter,
                key: Some(key),
                dry_run: false,
            }],
            now,
        );
        rejected += usize::from(d.rejected.is_some());
    }
    rejected
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let limiter = Limiter::new(Params {
        rate_m: 10_000,
        burst_m: 20_000,
        delay_m: u64::MAX,
        max_keys: KEYS * 2,
    });
    let mut rng = 0x5EA_3A11_u64;
    let keys: Vec<u64> = (0..KEYS).map(|_| splitmix64(&mut rng)).collect();
    for &k in &keys {
        limiter.lookup(k, T0, true);
    }
    assert_eq!(limiter.tracked(), KEYS, "table must hold every key");
    let seq: Vec<u64> = (0..DECISIONS)
        .map(|_| keys[(splitmix64(&mut rng) % KEYS as u64) as usize])
        .collect();
    drop(keys);
    // Natively, the time too, in this thread's CPU time as benches/limiter.rs (under valgrind
    // it means nothing).
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        t.tv_sec as f64 * 1e9 + t.tv_nsec as f64
    };
    let start = cpu();
    let rejected = decisions(&limiter, &seq);
    let ns = (cpu() - start) / DECISIONS as f64;
    println!("{DECISIONS} decisions at {KEYS} keys, {rejected} rejected, {ns:.0} ns each");
}
