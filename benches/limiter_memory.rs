//! Bytes per tracked key, measured at the process level: resident memory (VmRSS, and peak
//! VmHWM, from /proc/self/status) before and after inserting N distinct keys into one
//! `Limiter` with `max_keys` N, divided by the keys it then tracks. Whatever the allocator
//! keeps (freed tables from rehashing it did not give back, rounding) counts too.
//!
//! Run with `cargo bench --bench limiter_memory`. Target: at most 64 bytes per key (nginx's
//! `limit_req` node is 128). Each size is measured in a fresh child process, so one
//! measurement's heap does not feed the next.
//!
//! Without `--bench` among its arguments (as under `cargo test --all-targets`) it exits at once.

use std::process::Command;

use seawall::limits::limiter::{Limiter, Params};

const SIZES: [usize; 2] = [100_000, 1_000_000];

/// Fake clock; one hour in, as the real clock starts.
const T0: u64 = 3_600_000;

/// splitmix64: distinct, well-mixed keys standing in for hashed keys, generated on the fly so
/// no key list sits in memory.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A field of /proc/self/status, in bytes (the kernel reports kB).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"));
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kb * 1024
}

fn measure(n: usize) {
    let rss_before = status_bytes("VmRSS");
    let hwm_before = status_bytes("VmHWM");

    let limiter = Limiter::new(Params {
        rate_m: 10_000,
        burst_m: 20_000,
        delay_m: u64::MAX,
        max_keys: n,
    });
    // splitmix64 is a bijection of its counter: n distinct keys.
    let mut rng = 0x5EA_3A11_u64;
    for _ in 0..n {
        limiter.lookup(splitmix64(&mut rng), T0, true);
    }

    let rss_after = status_bytes("VmRSS");
    let hwm_after = status_bytes("VmHWM");
    let tracked = limiter.tracked();
    let evicted = limiter.evicted.load(std::sync::atomic::Ordering::Relaxed);
    let untracked = limiter.untracked.load(std::sync::atomic::Ordering::Relaxed);
    std::hint::black_box(&limiter);

    let rss = rss_after.saturating_sub(rss_before);
    let hwm = hwm_after.saturating_sub(hwm_before);
    println!("{n} keys inserted, max_keys {n}");
    println!("  tracked: {tracked} (evicted {evicted}, untracked {untracked})");
    println!("  resident growth: {rss} bytes (peak growth {hwm} bytes)");
    println!("  bytes per tracked key: {}", rss / tracked as u64);
    println!(
        "  peak bytes per tracked key (during growth): {}",
        hwm / tracked as u64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs this binary without `--bench`: stay out of the way.
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let n = args[i + 1].parse().expect("--child N");
        measure(n);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    for n in SIZES {
        let status = Command::new(&exe)
            .args(["--bench", "--child", &n.to_string()])
            .status()
            .expect("run child");
        assert!(status.success(), "measurement of {n} keys failed");
    }
}
