//! Queue accept path, measured: `cargo bench --bench queue` (QUEUE_BENCH_ENTRIES sets the RAM
//! run's size, default 1,000,000; QUEUE_BENCH_DIR where the spools go, default the target dir,
//! which is on the same disk as a real spool would be, unlike a tmpfs /tmp).
//!
//! 1. accept throughput into the spool, 64 concurrent clients: group commit (window 0 and 2 ms)
//!    against one transaction + fsync per lead;
//! 2. the floor of a hand-written segment log on the same disk: write + fdatasync per lead, and
//!    per batch of 64 (what group commit would give it);
//! 3. accept latency at an open-loop 1,000 leads/s for 10 s: p50, p99, max;
//! 4. resident memory with N entries queued, and after reopening the spool.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use seawall::queue::spool::{Spool, SpoolOptions};
use seawall::queue::store::AppendLimits;
use seawall::queue::{Forwarding, Lead, Store};

fn lead(i: u64, body: usize) -> Lead {
    Lead {
        method: "POST".into(),
        path: "/api/v1/users/register".into(),
        query: Some("utm_campaign=SUMMERSALE20".into()),
        headers: vec![
            ("host".into(), Bytes::from_static(b"shop.example.com")),
            (
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ),
            (
                "user-agent".into(),
                Bytes::from_static(b"Mozilla/5.0 (X11; Linux x86_64) Chrome/120"),
            ),
            ("accept".into(), Bytes::from_static(b"*/*")),
        ],
        body: Bytes::from(vec![b'x'; body]),
        forwarding: Forwarding {
            client_ip: "203.0.113.7".into(),
            x_forwarded_for: "203.0.113.7".into(),
            x_forwarded_proto: "https".into(),
        },
        campaign: Some("summer-sale".into()),
        accepted_at_ms: 1_780_000_000_000 + i,
        idempotency_key: Some(format!("key-{i}")),
        receipt: seawall::queue::new_receipt(1_780_000_000_000 + i),
    }
}

const LIMITS: AppendLimits = AppendLimits {
    max_body: 1 << 20,
    max_bytes: u64::MAX,
    idempotency_ms: 72 * 3600 * 1000,
};

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

async fn throughput(dir: &Path, label: &str, opts: SpoolOptions, total: u64, clients: u64) {
    let path = dir.join(label);
    let _ = std::fs::remove_dir_all(&path);
    let s = Arc::new(Spool::open(&path, opts).unwrap());
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..total / clients {
                s.append(lead(c * 1_000_000 + i, 512), LIMITS)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "accept {label:<28} {total:>6} leads, {clients} clients: {:>8.0} leads/s",
        total as f64 / secs
    );
}

fn raw_log(dir: &Path, per_sync: usize, total: usize) {
    let p = dir.join(format!("raw-{per_sync}.log"));
    let mut f = std::fs::File::create(&p).unwrap();
    let rec = lead(0, 512).encode();
    let t = Instant::now();
    for i in 0..total {
        f.write_all(&(rec.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&rec).unwrap();
        if (i + 1) % per_sync == 0 {
            f.sync_data().unwrap();
        }
    }
    f.sync_data().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "segment-log floor, fdatasync per {per_sync:>3} leads: {:>8.0} leads/s",
        total as f64 / secs
    );
    let _ = std::fs::remove_file(p);
}

async fn latency_at_1000(dir: &Path, leads: u64) {
    let path = dir.join("latency");
    let _ = std::fs::remove_dir_all(&path);
    let s = Arc::new(Spool::open(&path, SpoolOptions::default()).unwrap());
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(leads as usize);
    for i in 0..leads {
        tick.tick().await;
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            s.append(lead(i, 512), LIMITS).await.unwrap();
            t.elapsed()
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.unwrap());
    }
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "accept latency at 1000 leads/s for {} s: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        leads as f64 / 1000.0,
        q(0.5),
        q(0.99),
        q(0.999),
        lat[lat.len() - 1]
    );
}

async fn memory(dir: &Path, n: u64) {
    let path = dir.join("memory");
    let _ = std::fs::remove_dir_all(&path);
    let before = rss_bytes();
    {
        let s = Arc::new(Spool::open(&path, SpoolOptions::default()).unwrap());
        let t = Instant::now();
        let clients = 64;
        let mut tasks = Vec::new();
        for c in 0..clients {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while i < n {
                    s.append(lead(i, 200), LIMITS).await.unwrap();
                    i += clients;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let after = rss_bytes();
        let st = s.stats();
        println!(
            "{} entries queued in {:.0?} ({} bytes of records): RSS {} MiB -> {} MiB, {:.1} bytes/entry",
            st.depth,
            t.elapsed(),
            st.bytes,
            before >> 20,
            after >> 20,
            after.saturating_sub(before) as f64 / n as f64
        );
    }
    let file = path.join(seawall::queue::spool::FILE_NAME);
    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
    let before = rss_bytes();
    let t = Instant::now();
    let s = Spool::open(&path, SpoolOptions::default()).unwrap();
    let opened = t.elapsed();
    let t = Instant::now();
    let leased = s.lease(u64::MAX, 1).await.unwrap();
    let lease = t.elapsed();
    let t = Instant::now();
    let dup = s.append(lead(n / 2, 200), LIMITS).await.unwrap();
    let idem = t.elapsed();
    println!(
        "reopened a {} MiB spool in {opened:.1?}: RSS +{} MiB; lease {lease:.1?} ({}), idempotency hit {idem:.1?} (duplicate: {})",
        size >> 20,
        rss_bytes().saturating_sub(before) >> 20,
        leased.len(),
        dup.duplicate
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo test --all-targets` runs this without `--bench`: a smoke run at a hundredth of the
    // sizes (the code still runs, so the bench cannot rot), not the 1M-entry measurement on a
    // debug build.
    let scale: u64 = if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        100
    };
    let dir: PathBuf = std::env::var("QUEUE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                .join("queue-bench")
        });
    std::fs::create_dir_all(&dir).unwrap();
    let n: u64 = std::env::var("QUEUE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
        / scale;
    println!("spools in {}", dir.display());
    throughput(
        &dir,
        "one fsync per lead",
        SpoolOptions {
            no_grouping: true,
            ..Default::default()
        },
        2_000 / scale,
        64,
    )
    .await;
    throughput(
        &dir,
        "group commit, window 0",
        SpoolOptions::default(),
        20_000 / scale,
        64,
    )
    .await;
    throughput(
        &dir,
        "group commit, window 2ms",
        SpoolOptions {
            commit_window: Duration::from_millis(2),
            ..Default::default()
        },
        20_000 / scale,
        64,
    )
    .await;
    raw_log(&dir, 1, 2_000 / scale as usize);
    raw_log(&dir, 64, 20_000 / scale as usize);
    latency_at_1000(&dir, 10_000 / scale).await;
    memory(&dir, n).await;
    let _ = std::fs::remove_dir_all(&dir);
}
