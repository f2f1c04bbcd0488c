//! The cost of one rate-limit decision: `decide` on one `nodelay` limit (10r/s, burst 20), with
//! the key drawn from a table that already tracks 1,000 or 1,000,000 keys.
//!
//! Run with `cargo bench --bench limiter`. Target: under 100 ns per decision at 1M keys.
//!
//! - Keys are random 64-bit values (the limiter receives already-hashed keys); each decision
//!   takes the next key of a pre-generated pseudo-random sequence over the tracked keys, so
//!   neither RNG cost nor new-key inserts are measured: every decision is a table hit.
//! - A fake `now` advances 1 ms every [`CALLS_PER_MS`] decisions (about 128k decisions per
//!   second of fake time). At 1k keys that is ~128 requests/s per key against 10r/s, so after
//!   the first bursts most decisions are rejections (no write); at 1M keys each key sees
//!   ~0.13 r/s and every decision passes (write). State and fake time carry over from one
//!   criterion sample to the next, as in a long-running process.
//! - `1_thread`: one thread makes every decision; the figure is the time of one decision.
//! - `2_threads`: see [`two_threads`].
//! - Time is the deciding threads' own CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on
//!   the shared 2-core machine a sample's wall time counted whatever else ran meanwhile (with a
//!   dozen builds running, the thread was on a core 45% of it, and the same binary gave 350 to
//!   1,050 ns). On an idle machine the two are the same. What other processes do to the caches
//!   still counts; `benches/limiter_lines.rs` counts misses where nothing else runs.
//!
//! - `floor/dependent_load_32MiB`: what one cache miss costs on this machine at this hour; see
//!   [`bench_floor`].
//!
//! Under `cargo test --benches` (or `--all-targets`) criterion runs each benchmark once; the
//! tables are still built, which takes about a second in a debug build.

use std::sync::Barrier;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use seawall::limits::limiter::{Check, Limiter, Params, decide};

/// Seawall's allocator (src/main.rs): a decision allocates its verdicts, and a decision's cost
/// is the one Seawall pays only with the allocator Seawall runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fake milliseconds advance once per this many decisions (a power of two: a shift, not a
/// division, in the timed loop).
const CALLS_PER_MS: u64 = 128;
const MS_SHIFT: u32 = CALLS_PER_MS.trailing_zeros();

/// Length of the pre-generated key sequence (8 MiB of keys, read sequentially).
const SEQ_LEN: usize = 1 << 20;
const SEQ_MASK: u64 = SEQ_LEN as u64 - 1;

/// Fake clock at table build time; one hour in, as the real clock starts.
const T0: u64 = 3_600_000;

/// splitmix64: a fixed, cheap, well-mixed sequence standing in for hashed keys.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Setup {
    limiter: Limiter,
    /// Keys to decide on, in order: uniform picks (with repetition) among the tracked keys.
    seq: Vec<u64>,
}

fn setup(n_keys: usize) -> Setup {
    let limiter = Limiter::new(Params {
        rate_m: 10_000,
        burst_m: 20_000,
        delay_m: u64::MAX,
        // `max_keys` is split evenly over the shards and random keys do not split evenly, so
        // leave room: no shard may reach its cap (that would evict while we fill the table).
        max_keys: n_keys * 2,
    });
    let mut rng = 0x5EA_3A11_u64;
    let keys: Vec<u64> = (0..n_keys).map(|_| splitmix64(&mut rng)).collect();
    for &k in &keys {
        limiter.lookup(k, T0, true);
    }
    assert_eq!(limiter.tracked(), n_keys, "table must hold every key");
    let seq = (0..SEQ_LEN)
        .map(|_| keys[(splitmix64(&mut rng) % n_keys as u64) as usize])
        .collect();
    Setup { limiter, seq }
}

/// Decision number `g` of the stream: its key and its fake time.
#[inline(always)]
fn decide_at(limiter: &Limiter, seq: &[u64], g: u64) {
    let key = seq[(g & SEQ_MASK) as usize];
    let now = T0 + 1 + (g >> MS_SHIFT);
    let d = decide(
        &[Check {
            limiter,
            key: Some(key),
            dry_run: false,
        }],
        now,
    );
    std::hint::black_box(d);
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `iters` decisions on one thread, continuing the stream at decision `*next`.
fn one_thread(s: &Setup, next: &mut u64, iters: u64) -> Duration {
    let start = thread_cpu();
    for i in 0..iters {
        decide_at(&s.limiter, &s.seq, *next + i);
    }
    let elapsed = thread_cpu() - start;
    *next += iters;
    elapsed
}

/// `iters` decisions split between 2 threads on the same limiter: thread 0 makes decisions
/// `next, next+2, ...` and thread 1 `next+1, next+3, ...` of the same stream (keys and fake
/// time interleave as if one stream of requests were served by two workers). The returned
/// duration is the longer of the two threads' CPU times (both wait on a barrier first, so
/// thread spawning is not counted): the wall time the two would take side by side on two
/// cores of their own.
///
/// What the `2_threads` figure means: criterion divides that time by `iters`, the decisions
/// made by BOTH threads together, so it is the inverse of the aggregate throughput (ns per
/// decision with 2 threads busy). It is directly comparable with `1_thread`:
/// perfect scaling would halve it; a figure equal to `1_thread` means no gain from the second
/// thread; each thread's own latency per decision is about twice the reported figure.
fn two_threads(s: &Setup, next: &mut u64, iters: u64) -> Duration {
    let barrier = Barrier::new(2);
    let base = *next;
    let (a, b) = std::thread::scope(|scope| {
        let run = |t: u64| {
            let barrier = &barrier;
            move || {
                // Thread 0 takes the odd one out when `iters` is odd.
                let n = (iters + 1 - t) / 2;
                barrier.wait();
                let start = thread_cpu();
                for i in 0..n {
                    decide_at(&s.limiter, &s.seq, base + 2 * i + t);
                }
                thread_cpu() - start
            }
        };
        let h0 = scope.spawn(run(0));
        let h1 = scope.spawn(run(1));
        (h0.join().unwrap(), h1.join().unwrap())
    });
    *next += iters;
    a.max(b)
}

fn bench_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_nodelay");
    for (label, n_keys) in [("1k_keys", 1_000), ("1M_keys", 1_000_000)] {
        let s = setup(n_keys);
        let mut next = 0u64;
        group.bench_function(BenchmarkId::new("1_thread", label), |b| {
            b.iter_custom(|iters| one_thread(&s, &mut next, iters))
        });
        group.bench_function(BenchmarkId::new("2_threads", label), |b| {
            b.iter_custom(|iters| two_threads(&s, &mut next, iters))
        });
    }
    group.finish();
}

/// The floor under `1M_keys`: one cache miss nothing can overlap, as a decision's miss is in
/// Seawall (a request does thousands of other things between two decisions). A walk through a
/// random cycle of 32 MiB, one line per step, each step's address read from the step before;
/// in the same hour as the decisions, on the same machine, in the same CPU time. A decision at
/// 1M keys costs about this plus a decision at 1k keys.
fn bench_floor(c: &mut Criterion) {
    const LINES: usize = 32 << 20 >> 6;
    let mut next: Vec<[u64; 8]> = vec![[0; 8]; LINES];
    let mut order: Vec<usize> = (0..LINES).collect();
    let mut rng = 0xF1_00E_u64;
    for i in (1..LINES).rev() {
        order.swap(i, (splitmix64(&mut rng) % (i as u64 + 1)) as usize);
    }
    for w in 0..LINES {
        next[order[w]][0] = order[(w + 1) % LINES] as u64;
    }
    let mut at = order[0];
    c.bench_function("floor/dependent_load_32MiB", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                at = next[at][0] as usize;
            }
            std::hint::black_box(at);
            thread_cpu() - start
        })
    });
}

criterion_group!(benches, bench_decide, bench_floor);
criterion_main!(benches);
