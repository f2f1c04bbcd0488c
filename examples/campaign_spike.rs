//! Helpers for `load-tests/campaign-spike` (not part of Seawall; run by that script).
//!
//! - `app`: the core app with a known, limited capacity: every request waits for one of
//!   `--concurrency` slots (FIFO) and holds it `--service-ms`, so capacity is
//!   concurrency / service time (4 / 20 ms = 200 r/s); beyond that, requests queue.
//! - `sink`: the ingestion upstream; answers 202 at once and counts what it got, per campaign.
//! - `load`: an open-loop generator. Ordinary traffic (GET /product/N) runs at a fixed rate for
//!   warm-up + before + during; the flood (POST /api/v1/users/register?ref=TAG) starts when
//!   "during" starts. Each request is sent at its scheduled time whether or not earlier ones have
//!   finished, and its latency is measured from that scheduled time, so queueing anywhere
//!   (including in the generator itself) shows up as latency rather than as fewer requests.
//! - `free-ports N`: prints N free 127.0.0.1 ports (bound to port 0, then released).
//!
//! The generator itself lives in `shared/loadgen.rs`, shared with the other load scenarios.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use clap::{Parser, Subcommand};
use tokio::sync::Semaphore;

// The open-loop generator and /proc readings, shared with the other load scenarios.
#[path = "shared/loadgen.rs"]
mod loadgen;
use loadgen::{Sample, Schedule, cpu_seconds, pct, run_stream};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    App {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 20)]
        service_ms: u64,
    },
    Sink {
        #[arg(long)]
        port: u16,
    },
    Load(LoadArgs),
    FreePorts {
        n: usize,
    },
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Seawall's proxy address, e.g. http://127.0.0.1:8080
    #[arg(long)]
    target: String,
    #[arg(long, default_value_t = 100.0)]
    ordinary_rate: f64,
    #[arg(long, default_value_t = 2000.0)]
    flood_rate: f64,
    /// Seconds of ordinary traffic sent first and not measured (connections, health checks).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long, default_value_t = 20.0)]
    before: f64,
    #[arg(long, default_value_t = 20.0)]
    during: f64,
    #[arg(long, default_value = "SPRINGPROMO")]
    tag: String,
    /// The flood comes from this many client addresses (sent as X-Forwarded-For from a trusted
    /// peer), as a real campaign comes from many people.
    #[arg(long, default_value_t = 20000)]
    flood_clients: u32,
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Requests in flight per stream beyond this are not sent and count as errors (bounds the
    /// generator's memory and sockets).
    #[arg(long, default_value_t = 2000)]
    max_inflight: usize,
    /// Refuse to start if the schedule has more requests than this.
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
    /// Target: ordinary p99 during the flood at most this times the p99 before.
    #[arg(long, default_value_t = 1.2)]
    p99_ratio: f64,
    /// Clock ticks per second of /proc/self/stat (`getconf CLK_TCK`), for the CPU report.
    #[arg(long, default_value_t = 100.0)]
    clk_tck: f64,
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Load(a) => std::process::exit(load(a)),
        Cmd::FreePorts { n } => loadgen::print_free_ports(n),
        // One worker thread each: the app's capacity comes from its slots, not from CPU, and
        // all the processes share two cores.
        cmd => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                match cmd {
                    Cmd::App {
                        port,
                        concurrency,
                        service_ms,
                    } => app(port, concurrency, service_ms).await,
                    Cmd::Sink { port } => sink(port).await,
                    Cmd::Load(_) | Cmd::FreePorts { .. } => unreachable!(),
                }
            }),
    }
}

async fn serve(port: u16, router: Router) {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(l, router).await.expect("serve");
}

#[derive(Default)]
struct AppStats {
    served: AtomicU64,
    signups: AtomicU64,
    peak_waiting: AtomicUsize,
    waiting: AtomicUsize,
}

/// The app's shared state: its slots, the service time, counters.
type AppState = Arc<(Semaphore, Duration, AppStats)>;

/// Every app request (product page or sign-up): wait for a free slot, then "work".
async fn work(app: &AppState, signup: bool) -> (StatusCode, &'static str) {
    let (slots, service, s) = &**app;
    let w = s.waiting.fetch_add(1, Ordering::Relaxed) + 1;
    s.peak_waiting.fetch_max(w, Ordering::Relaxed);
    let _slot = slots.acquire().await.expect("semaphore");
    s.waiting.fetch_sub(1, Ordering::Relaxed);
    tokio::time::sleep(*service).await;
    s.served.fetch_add(1, Ordering::Relaxed);
    if signup {
        s.signups.fetch_add(1, Ordering::Relaxed);
        (StatusCode::CREATED, "{\"created\":true}\n")
    } else {
        (StatusCode::OK, "<h1>product</h1>\n")
    }
}

async fn app(port: u16, concurrency: usize, service_ms: u64) {
    let state: AppState = Arc::new((
        Semaphore::new(concurrency),
        Duration::from_millis(service_ms),
        AppStats::default(),
    ));
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/product/{n}",
            get(|State(a): State<AppState>| async move { work(&a, false).await }),
        )
        .route(
            "/api/v1/users/register",
            axum::routing::post(|State(a): State<AppState>| async move { work(&a, true).await }),
        )
        .route(
            "/__stats",
            get(|State(a): State<AppState>| async move {
                let s = &a.2;
                format!(
                    "{{\"served\":{},\"signups\":{},\"peak_waiting\":{}}}\n",
                    s.served.load(Ordering::Relaxed),
                    s.signups.load(Ordering::Relaxed),
                    s.peak_waiting.load(Ordering::Relaxed)
                )
            }),
        )
        .with_state(state);
    serve(port, router).await;
}

type ByCampaign = Arc<Mutex<BTreeMap<String, u64>>>;

async fn sink(port: u16) {
    let by: ByCampaign = Arc::default();
    let router = Router::new()
        .route(
            "/__stats",
            get(|State(by): State<ByCampaign>| async move {
                let m = by.lock().expect("lock").clone();
                serde_json::json!({ "received": m.values().sum::<u64>(), "by_campaign": m })
                    .to_string()
                    + "\n"
            }),
        )
        .fallback(|State(by): State<ByCampaign>, h: HeaderMap| async move {
            let c = h.get("x-seawall-campaign").and_then(|v| v.to_str().ok());
            *by.lock()
                .expect("lock")
                .entry(c.unwrap_or("(none)").to_string())
                .or_default() += 1;
            (StatusCode::ACCEPTED, "{\"queued\":true}\n")
        })
        .with_state(by);
    serve(port, router).await;
}

const WARMUP: u8 = 0;
const BEFORE: u8 = 1;
const DURING: u8 = 2;

/// Prints one phase of ordinary traffic; returns (p99 ms, errors).
fn report_ordinary(name: &str, all: &[Sample], phase: u8) -> (f64, usize) {
    let s: Vec<&Sample> = all.iter().filter(|s| s.phase == phase).collect();
    let mut lat: Vec<u64> = s.iter().map(|s| s.latency_us).collect();
    let mut lag: Vec<u64> = s.iter().map(|s| s.lag_us).collect();
    lat.sort_unstable();
    lag.sort_unstable();
    let errors = s.iter().filter(|s| s.status != 200).count();
    let p99 = pct(&lat, 0.99);
    println!(
        "  {name:<7} sent {:>6}  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms  errors {}  (send lag p99 {:.2} ms)",
        s.len(),
        pct(&lat, 0.5),
        p99,
        pct(&lat, 0.999),
        lat.last().map_or(f64::NAN, |&v| v as f64 / 1000.0),
        errors,
        pct(&lag, 0.99),
    );
    let mut kinds: BTreeMap<u16, usize> = BTreeMap::new();
    for e in s.iter().filter(|s| s.status != 200) {
        *kinds.entry(e.status).or_default() += 1;
    }
    if !kinds.is_empty() {
        println!(
            "          errors by status (0 = transport/timeout, 1 = generator cap): {kinds:?}"
        );
    }
    (p99, errors)
}

fn load(a: LoadArgs) -> i32 {
    let ordinary_n = (a.ordinary_rate * (a.warmup + a.before + a.during)).round() as u64;
    let flood_n = (a.flood_rate * a.during).round() as u64;
    if ordinary_n + flood_n > a.max_requests {
        eprintln!(
            "refusing: {} requests scheduled, more than --max-requests {}",
            ordinary_n + flood_n,
            a.max_requests
        );
        return 2;
    }
    let start = std::time::Instant::now() + Duration::from_millis(100);
    let flood_at = a.warmup + a.before;
    let schedule = |start, rate, count| Schedule {
        start,
        rate,
        count,
        timeout: Duration::from_secs_f64(a.timeout),
        // Each stream has its own cap: a backed-up flood never stops the shoppers being sent.
        inflight: Arc::new(AtomicUsize::new(0)),
        max_inflight: a.max_inflight,
    };
    let (target, tag, clients) = (a.target.clone(), a.tag.clone(), a.flood_clients.max(1));
    let (warmup, t) = (a.warmup, target.clone());
    let ordinary = run_stream(
        schedule(start, a.ordinary_rate, ordinary_n),
        move |t| match t {
            t if t < warmup => WARMUP,
            t if t < flood_at => BEFORE,
            _ => DURING,
        },
        move |c, i| c.get(format!("{t}/product/{}", i % 1000)),
    );
    let flood = run_stream(
        schedule(
            start + Duration::from_secs_f64(flood_at),
            a.flood_rate,
            flood_n,
        ),
        |_| DURING,
        move |c, i| {
            // Client addresses from 198.18.0.0/15 (the benchmarking range).
            let ip = 0xC612_0000u32 + (i as u32 % clients);
            c.post(format!("{target}/api/v1/users/register?ref={tag}"))
                .header("x-forwarded-for", std::net::Ipv4Addr::from(ip).to_string())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("email=lead{i}%40example.com"))
        },
    );
    // The generator's own CPU at the flood's start and at the end, for the script's CPU table.
    let clk = a.clk_tck;
    let at_flood = std::thread::spawn(move || {
        let due = start + Duration::from_secs_f64(flood_at);
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        cpu_seconds(clk)
    });
    let ordinary = ordinary.join().expect("ordinary stream");
    let flood = flood.join().expect("flood stream");
    let cpu_flood = at_flood.join().expect("cpu thread");
    eprintln!("cpu generator {cpu_flood:.2} {:.2}", cpu_seconds(clk));

    println!(
        "ordinary traffic: GET /product/N at {} r/s ({} s warm-up not counted, {} s before, {} s during the flood)",
        a.ordinary_rate, a.warmup, a.before, a.during
    );
    let (p99_before, e_before) = report_ordinary("before", &ordinary, BEFORE);
    let (p99_during, e_during) = report_ordinary("during", &ordinary, DURING);
    let e_warm = ordinary
        .iter()
        .filter(|s| s.phase == WARMUP && s.status != 200)
        .count();
    if e_warm > 0 {
        println!("  (warm-up errors, not counted: {e_warm})");
    }

    let mut by: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &flood {
        *by.entry(s.status).or_default() += 1;
    }
    let n = |code| by.get(&code).copied().unwrap_or(0);
    let other: usize = by
        .iter()
        .filter(|(k, _)| ![202, 429, 503].contains(*k))
        .map(|(_, v)| v)
        .sum();
    let mut lat: Vec<u64> = flood.iter().map(|s| s.latency_us).collect();
    lat.sort_unstable();
    println!(
        "flood: POST /api/v1/users/register?ref={} at {} r/s for {} s from {} client addresses",
        a.tag, a.flood_rate, a.during, clients
    );
    println!(
        "  sent {}  diverted (202 from ingestion) {}  limited (429) {}  failed (503) {}  other {}",
        flood.len(),
        n(202),
        n(429),
        n(503),
        other
    );
    if other > 0 {
        println!("  other by status (0 = transport/timeout, 1 = generator cap): {by:?}");
    }
    println!(
        "  flood latency p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().map_or(f64::NAN, |&v| v as f64 / 1000.0)
    );

    // Lines starting with TARGET are printed last by the script.
    let ratio = p99_during / p99_before;
    let ok_lat = ratio <= a.p99_ratio;
    let ok_err = e_before + e_during == 0;
    println!(
        "TARGET ordinary p99 during <= {}x before: {:.2} ms vs {:.2} ms = {:.2}x  {}",
        a.p99_ratio,
        p99_during,
        p99_before,
        ratio,
        if ok_lat { "MET" } else { "NOT MET" }
    );
    println!(
        "TARGET zero ordinary errors: {} errors  {}",
        e_before + e_during,
        if ok_err { "MET" } else { "NOT MET" }
    );
    if ok_lat && ok_err { 0 } else { 3 }
}
