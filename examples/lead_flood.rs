//! Helpers for `load-tests/lead-flood` (not part of Seawall; run by that script).
//!
//! - `app`: the core app. Serves the shoppers' pages and takes the sign-ups the queue delivers,
//!   recording for each its arrival time (Unix ms), `X-Seawall-Receipt`, `Idempotency-Key` and
//!   `X-Seawall-Attempt`; `/__deliveries` lists them, one line each.
//! - `load`: ordinary shoppers (GET /product/N) at a steady rate for the whole run, and after
//!   `before` seconds the flood: `leads` tagged sign-ups (POST ?ref=SUMMERSALE20, each from its
//!   own address in X-Forwarded-For) at `flood-rate`. Both open loop (shared/loadgen.rs: each
//!   request at its scheduled time, latency counted from it). It keeps every receipt Seawall
//!   acknowledged, reads `/-/queues` every 200 ms until the queue has drained, then compares
//!   the app's deliveries with the acknowledged receipts, prints the report and draws the chart.
//! - `accept`: the accept benchmark (`load-tests/lead-flood --accept-bench`): closed-loop
//!   throughput of a queued route against a plain proxied route of the same Seawall, same run
//!   (plain, queued, plain again, to see drift), then accept latency at an open-loop rate.
//! - `free-ports N`: prints N free 127.0.0.1 ports.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

#[path = "shared/chart.rs"]
mod chart;
#[path = "shared/loadgen.rs"]
mod loadgen;

use chart::{Panel, Series, Style};
use loadgen::{Schedule, Summary, summarize};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    App {
        #[arg(long)]
        port: u16,
        /// Each delivery is answered this long after it arrived (it is recorded on arrival):
        /// a Seawall killed meanwhile dies holding it.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    Load(LoadArgs),
    Accept(AcceptArgs),
    FreePorts {
        n: usize,
    },
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Seawall's listener; several (comma-separated) for a fleet: the leads go round-robin over
    /// them, the shoppers to the first.
    #[arg(long, value_delimiter = ',', required = true)]
    proxy: Vec<SocketAddr>,
    #[arg(long)]
    admin: SocketAddr,
    #[arg(long)]
    app: SocketAddr,
    /// A file holding Seawall's pid, read at every sample (with --kill the pid changes mid-run).
    #[arg(long)]
    pid_file: PathBuf,
    #[arg(long, default_value_t = 100.0)]
    ordinary_rate: f64,
    #[arg(long, default_value_t = 2000.0)]
    flood_rate: f64,
    #[arg(long, default_value_t = 20000)]
    leads: u64,
    /// Seconds of shoppers alone before the flood, and after it.
    #[arg(long, default_value_t = 10.0)]
    before: f64,
    #[arg(long, default_value_t = 10.0)]
    after: f64,
    /// The queue's rate (r/s), for the delivery-rate target.
    #[arg(long)]
    queue_rate: f64,
    /// Longest wait for the queue to drain after the load, in seconds.
    #[arg(long, default_value_t = 240.0)]
    drain_timeout: f64,
    #[arg(long, default_value_t = 1.2)]
    p99_ratio: f64,
    /// Seawall (or, with a fleet, one instance) is killed (-9) at this second by the script:
    /// leads refused meanwhile are not acknowledged (so not counted lost), and the shoppers'
    /// latency target does not apply.
    #[arg(long)]
    kill_at: Option<f64>,
    #[arg(long)]
    chart: PathBuf,
}

#[derive(clap::Args)]
struct AcceptArgs {
    #[arg(long)]
    proxy: SocketAddr,
    #[arg(long)]
    pid_file: PathBuf,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The open-loop rate for the accept latency, and for how long.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    rate_seconds: f64,
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Accept(a) => std::process::exit(accept(a)),
        Cmd::App { port, delay_ms } => app(port, Duration::from_millis(delay_ms)),
        Cmd::FreePorts { n } => loadgen::print_free_ports(n),
        Cmd::Load(a) => std::process::exit(load(a)),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One delivery the app received.
struct Delivery {
    at_ms: u64,
    receipt: String,
    key: String,
    attempt: u32,
}

fn app(port: u16, delay: Duration) {
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    type Log = Arc<Mutex<Vec<Delivery>>>;
    let log: Log = Arc::new(Mutex::new(Vec::with_capacity(40_000)));
    let h = |m: &HeaderMap, n: &str| {
        m.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/api/v1/users/register",
            post(move |State(l): State<Log>, m: HeaderMap| async move {
                let d = Delivery {
                    at_ms: unix_ms(),
                    receipt: h(&m, "x-seawall-receipt"),
                    key: h(&m, "idempotency-key"),
                    attempt: h(&m, "x-seawall-attempt").parse().unwrap_or(0),
                };
                l.lock().unwrap().push(d);
                tokio::time::sleep(delay).await;
                (StatusCode::CREATED, "{\"created\":true}\n")
            }),
        )
        .route(
            "/__deliveries",
            get(|State(l): State<Log>| async move {
                let l = l.lock().unwrap();
                let mut out = String::with_capacity(l.len() * 90);
                for d in l.iter() {
                    out.push_str(&format!(
                        "{} {} {} {}\n",
                        d.at_ms, d.receipt, d.key, d.attempt
                    ));
                }
                out
            }),
        )
        .fallback(|| async {
            "<!doctype html><html><body><h1>product</h1><p>in stock</p></body></html>\n"
        })
        .with_state(log);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            axum::serve(l, router).await.expect("serve");
        });
}

/// One lead as the client saw it: when it was due (s from the start), status (0: transport
/// error or timeout), latency (us from its due time), the receipt of a 202.
struct LeadResult {
    due_s: f64,
    status: u16,
    latency_us: u64,
    receipt: Option<String>,
}

/// Accept latency: the latencies of the leads answered 202.
fn accept_latency(leads: &[LeadResult]) -> Summary {
    summarize(
        leads
            .iter()
            .filter(|l| l.status == 202)
            .map(|l| l.latency_us),
    )
}

/// The flood: `count` sign-ups at `rate` from `start`, open loop, each from its own address,
/// round-robin over `proxies`.
fn lead_stream(
    proxies: Vec<SocketAddr>,
    start: Instant,
    rate: f64,
    count: u64,
) -> std::thread::JoinHandle<Vec<LeadResult>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .build()
                .expect("client");
            let urls: Vec<String> = proxies
                .iter()
                .map(|p| format!("http://{p}/api/v1/users/register?ref=SUMMERSALE20"))
                .collect();
            let start = tokio::time::Instant::from_std(start);
            let inflight = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::with_capacity(count as usize);
            for i in 0..count {
                let offset = i as f64 / rate;
                let due = start + Duration::from_secs_f64(offset);
                tokio::time::sleep_until(due).await;
                // 198.18.0.0/15: one address per lead, as a real flood has.
                let ip = format!("198.{}.{}.{}", 18 + (i >> 16) % 2, (i >> 8) & 255, i & 255);
                let body = format!(
                    "{{\"email\":\"lead-{i}@example.com\",\"company_size\":\"11-50\",\"consent\":true}}"
                );
                let req = client
                    .post(&urls[i as usize % urls.len()])
                    .header("x-forwarded-for", ip)
                    .header("content-type", "application/json")
                    .body(body);
                let inflight = inflight.clone();
                tasks.push(tokio::spawn(async move {
                    if inflight.fetch_add(1, Ordering::Relaxed) >= 4000 {
                        inflight.fetch_sub(1, Ordering::Relaxed);
                        return LeadResult {
                            due_s: offset,
                            status: 1,
                            latency_us: 0,
                            receipt: None,
                        };
                    }
                    let (status, receipt) = match req.send().await {
                        Ok(r) => {
                            let receipt = r
                                .headers()
                                .get("x-seawall-receipt")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let code = r.status().as_u16();
                            (r.bytes().await.map_or(0, |_| code), receipt)
                        }
                        Err(_) => (0, None),
                    };
                    inflight.fetch_sub(1, Ordering::Relaxed);
                    LeadResult {
                        due_s: offset,
                        status,
                        latency_us: due.elapsed().as_micros() as u64,
                        receipt: if status == 202 { receipt } else { None },
                    }
                }));
            }
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                if let Ok(r) = t.await {
                    out.push(r);
                }
            }
            out
        })
    })
}

/// A reading of the queue: (s from the start, depth, bytes, Seawall's VmRSS).
type Reading = (f64, u64, u64, u64);

fn queue_reading(admin: SocketAddr) -> Option<(u64, u64)> {
    let (status, body) = loadgen::http_request(admin, "GET", "/-/queues")?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let q = v["queues"].get(0)?;
    Some((q["depth"].as_u64()?, q["bytes"].as_u64()?))
}

fn clk_tck() -> f64 {
    std::env::var("CLK_TCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0)
}

fn seawall_rss(pid_file: &PathBuf) -> u64 {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .map_or(0, |pid| loadgen::status_bytes(pid, "VmRSS"))
}

fn fetch_deliveries(app: SocketAddr) -> Option<Vec<Delivery>> {
    // A large body on a busy machine: read for up to 30 s.
    let (status, body) =
        loadgen::http_request_within(app, "GET", "/__deliveries", Duration::from_secs(30))?;
    (status == 200).then_some(())?;
    Some(
        body.lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some(Delivery {
                    at_ms: f.next()?.parse().ok()?,
                    receipt: f.next()?.to_string(),
                    key: f.next()?.to_string(),
                    attempt: f.next()?.parse().ok()?,
                })
            })
            .collect(),
    )
}

fn load(a: LoadArgs) -> i32 {
    let flood_s = a.leads as f64 / a.flood_rate;
    let total_s = a.before + flood_s + a.after;
    let shoppers_n = (a.ordinary_rate * total_s).round() as u64;
    if a.leads > 200_000 || shoppers_n > 200_000 {
        eprintln!("refusing: more than 200,000 requests in a stream");
        return 2;
    }
    let start = Instant::now() + Duration::from_millis(200);
    let start_ms = unix_ms() + 200;
    let (before, flood_end) = (a.before, a.before + flood_s);
    let url = format!("http://{}/product/", a.proxy[0]);
    let shoppers = loadgen::run_stream(
        Schedule {
            start,
            rate: a.ordinary_rate,
            count: shoppers_n,
            timeout: Duration::from_secs(5),
            inflight: Arc::new(AtomicUsize::new(0)),
            max_inflight: 2000,
        },
        move |t| {
            if t < before {
                0
            } else if t < flood_end {
                1
            } else {
                2
            }
        },
        move |c, i| c.get(format!("{url}{}", i % 500)),
    );
    let leads = lead_stream(
        a.proxy.clone(),
        start + Duration::from_secs_f64(a.before),
        a.flood_rate,
        a.leads,
    );

    // Read the queue every 200 ms through the load and until it has drained.
    let mut readings: Vec<Reading> = Vec::new();
    let load_end = start + Duration::from_secs_f64(total_s);
    let give_up = load_end + Duration::from_secs_f64(a.drain_timeout);
    // Drained: depth 0 for 2 s in a row once every request has been answered (a request still
    // being accepted after a momentary 0 would otherwise be missed).
    let (mut drained_at, mut zero_since) = (None, None);
    let (tck, cpu0) = (clk_tck(), Instant::now());
    let busy0 = loadgen::machine_busy_seconds(tck);
    while Instant::now() < give_up {
        let t = Instant::now()
            .saturating_duration_since(start)
            .as_secs_f64();
        if let Some((depth, bytes)) = queue_reading(a.admin) {
            readings.push((t, depth, bytes, seawall_rss(&a.pid_file)));
            let done = Instant::now() > load_end && shoppers.is_finished() && leads.is_finished();
            match (depth, zero_since) {
                (0, None) if done => zero_since = Some(t),
                (0, Some(z)) if t - z >= 2.0 => {
                    drained_at = Some(z);
                    break;
                }
                (0, _) => {}
                _ => zero_since = None,
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let machine_cores = (loadgen::machine_busy_seconds(tck) - busy0) / cpu0.elapsed().as_secs_f64();
    println!(
        "the whole machine was busy {machine_cores:.2} cores on average during the run and the drain ({} cores; other builds included)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let shoppers = shoppers.join().unwrap_or_default();
    let leads = leads.join().unwrap_or_default();
    // The last delivery may still be answering when depth reads 0: give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    let Some(deliveries) = fetch_deliveries(a.app) else {
        eprintln!("could not read the app's deliveries");
        return 1;
    };
    report(
        &a,
        start_ms,
        flood_s,
        &shoppers,
        &leads,
        &deliveries,
        &readings,
        drained_at,
    )
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &LoadArgs,
    start_ms: u64,
    flood_s: f64,
    shoppers: &[loadgen::Sample],
    leads: &[LeadResult],
    deliveries: &[Delivery],
    readings: &[Reading],
    drained_at: Option<f64>,
) -> i32 {
    let phase = |p: u8| {
        summarize(
            shoppers
                .iter()
                .filter(|s| s.phase == p && s.status == 200)
                .map(|s| s.latency_us),
        )
    };
    let shopper_errors = |p: u8| {
        shoppers
            .iter()
            .filter(|s| s.phase == p && s.status != 200)
            .count()
    };
    let (b, d, af) = (phase(0), phase(1), phase(2));
    println!(
        "shoppers (GET /product/N at {} r/s): before the flood p50 {:.2} ms p99 {:.2} ms ({} ok, {} errors) | during p50 {:.2} ms p99 {:.2} ms ({} ok, {} errors) | after p99 {:.2} ms",
        a.ordinary_rate,
        b.p50,
        b.p99,
        b.n,
        shopper_errors(0),
        d.p50,
        d.p99,
        d.n,
        shopper_errors(1),
        af.p99
    );
    let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
    for l in leads {
        *by_status.entry(l.status).or_default() += 1;
    }
    let acked: HashSet<&str> = leads.iter().filter_map(|l| l.receipt.as_deref()).collect();
    let accept = accept_latency(leads);
    println!(
        "leads: {} sent at {} r/s over {:.1} s; answers by status (0 = transport error, 1 = not sent): {:?}; accept latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        leads.len(),
        a.flood_rate,
        flood_s,
        by_status,
        accept.p50,
        accept.p99,
        accept.max
    );
    let received: HashSet<&str> = deliveries.iter().map(|d| d.receipt.as_str()).collect();
    let lost: Vec<&&str> = acked.iter().filter(|r| !received.contains(**r)).collect();
    let key_mismatch = deliveries
        .iter()
        .filter(|d| d.key != d.receipt || d.receipt.is_empty())
        .count();
    let redelivered = deliveries.iter().filter(|d| d.attempt > 1).count();
    let duplicates = deliveries.len() - received.len();
    let unexpected = received.iter().filter(|r| !acked.contains(**r)).count();
    println!(
        "app: {} deliveries, {} distinct receipts ({} duplicate deliveries, {} with X-Seawall-Attempt > 1); acknowledged {}; lost (acknowledged, never delivered) {}; delivered but not acknowledged to the client {}; Idempotency-Key != receipt {}",
        deliveries.len(),
        received.len(),
        duplicates,
        redelivered,
        acked.len(),
        lost.len(),
        unexpected,
        key_mismatch
    );
    for r in lost.iter().take(5) {
        println!("  lost: {r}");
    }

    // Delivery pace: per aligned second, and the most in any sliding 1 s window.
    let mut times: Vec<u64> = deliveries.iter().map(|d| d.at_ms).collect();
    times.sort_unstable();
    let mut per_s: BTreeMap<u64, u64> = BTreeMap::new();
    for &t in &times {
        *per_s.entry(t.saturating_sub(start_ms) / 1000).or_default() += 1;
    }
    let max_aligned = per_s.values().copied().max().unwrap_or(0);
    let (mut i, mut max_sliding) = (0, 0);
    for j in 0..times.len() {
        while times[j] - times[i] >= 1000 {
            i += 1;
        }
        max_sliding = max_sliding.max(j - i + 1);
    }
    let first = times
        .first()
        .map_or(0.0, |&t| t.saturating_sub(start_ms) as f64 / 1000.0);
    let last = times
        .last()
        .map_or(0.0, |&t| t.saturating_sub(start_ms) as f64 / 1000.0);
    println!(
        "delivery: queue rate {} r/s; most in one clock second {}, in any sliding 1 s window {}; first at {:.1} s, last at {:.1} s ({:.1} r/s on average in between)",
        a.queue_rate,
        max_aligned,
        max_sliding,
        first,
        last,
        if last > first {
            times.len() as f64 / (last - first)
        } else {
            0.0
        }
    );
    let peak_depth = readings.iter().map(|r| r.1).max().unwrap_or(0);
    let peak_bytes = readings.iter().map(|r| r.2).max().unwrap_or(0);
    let peak_rss = readings.iter().map(|r| r.3).max().unwrap_or(0);
    let rss_before = readings.first().map_or(0, |r| r.3);
    println!(
        "queue: peak depth {peak_depth}, peak bytes {peak_bytes} ({:.0} B a lead); Seawall VmRSS {:.1} MiB at the start, {:.1} MiB at most; drained {}",
        if peak_depth > 0 {
            peak_bytes as f64 / peak_depth as f64
        } else {
            0.0
        },
        rss_before as f64 / 1048576.0,
        peak_rss as f64 / 1048576.0,
        drained_at.map_or("NOT within the drain timeout".to_string(), |t| format!(
            "at {t:.1} s"
        ))
    );

    draw_chart(a, flood_s, leads, &per_s, readings, shoppers);

    let mut ok = true;
    let mut target = |name: String, met: bool| {
        println!("TARGET {name}: {}", if met { "met" } else { "MISSED" });
        ok &= met;
    };
    if a.kill_at.is_some() {
        target(
            format!(
                "every acknowledged lead delivered after the kill -9 ({} lost)",
                lost.len()
            ),
            lost.is_empty(),
        );
    } else {
        let all_202 = by_status.get(&202).copied().unwrap_or(0) == leads.len() as u64;
        target(
            format!("every lead answered 202 ({:?})", by_status),
            all_202,
        );
        target(
            format!("0 acknowledged leads lost ({} lost)", lost.len()),
            lost.is_empty(),
        );
        target(
            format!(
                "shoppers' p99 during the flood <= {}x before ({:.2} vs {:.2} ms)",
                a.p99_ratio, d.p99, b.p99
            ),
            d.p99 <= a.p99_ratio * b.p99,
        );
        target(
            format!(
                "no shopper errors ({} before, {} during)",
                shopper_errors(0),
                shopper_errors(1)
            ),
            shopper_errors(0) + shopper_errors(1) + shopper_errors(2) == 0,
        );
    }
    target(
        format!(
            "delivery never above the rate: at most {} in any 1 s window (rate {} + 1 for the window's edge)",
            max_sliding, a.queue_rate
        ),
        max_sliding as f64 <= a.queue_rate + 1.0,
    );
    target(
        format!("Idempotency-Key is the receipt on every delivery ({key_mismatch} not)"),
        key_mismatch == 0,
    );
    target("the queue drained".to_string(), drained_at.is_some());
    if ok { 0 } else { 3 }
}

#[allow(clippy::too_many_arguments)]
fn draw_chart(
    a: &LoadArgs,
    flood_s: f64,
    leads: &[LeadResult],
    deliveries_per_s: &BTreeMap<u64, u64>,
    readings: &[Reading],
    shoppers: &[loadgen::Sample],
) {
    let mut accepted_per_s: BTreeMap<u64, u64> = BTreeMap::new();
    for l in leads.iter().filter(|l| l.status == 202) {
        *accepted_per_s
            .entry((a.before + l.due_s + l.latency_us as f64 / 1e6) as u64)
            .or_default() += 1;
    }
    let end = readings
        .last()
        .map_or(1.0, |r| r.0)
        .max(a.before + flood_s + a.after)
        .max(
            accepted_per_s
                .keys()
                .last()
                .map_or(0.0, |&s| s as f64 + 1.0),
        )
        .max(
            deliveries_per_s
                .keys()
                .last()
                .map_or(0.0, |&s| s as f64 + 1.0),
        );
    let rate_series = |m: &BTreeMap<u64, u64>| -> Vec<(f64, f64)> {
        (0..=end as u64)
            .map(|s| (s as f64 + 0.5, *m.get(&s).unwrap_or(&0) as f64))
            .collect()
    };
    let shopper_p99: Vec<(f64, f64, f64)> = loadgen::buckets(
        shoppers.iter().filter(|s| s.status == 200).map(|s| {
            let t = s
                .due
                .saturating_duration_since(shoppers[0].due)
                .as_secs_f64();
            (t, s.latency_us, true)
        }),
        1.0,
    )
    .into_iter()
    .map(|b| (b.t + 0.5, b.p50, b.p99))
    .collect();
    let flood = (a.before, a.before + flood_s);
    let mut markers = vec![(flood.0, chart::GREY), (flood.1, chart::GREY)];
    markers.extend(a.kill_at.map(|t| (t, chart::RED)));
    let panels = [
        Panel {
            y_desc: "queue depth".into(),
            series: vec![Series::new(
                "depth (GET /-/queues)",
                chart::PURPLE,
                Style::Line,
                readings.iter().map(|r| (r.0, r.1 as f64)).collect(),
            )],
            markers: markers.clone(),
            spans: vec![(
                flood.0,
                flood.1,
                format!("{} leads at {} r/s", a.leads, a.flood_rate),
            )],
            ..Default::default()
        },
        Panel {
            y_desc: "requests / s".into(),
            series: vec![
                Series::new(
                    "leads accepted (202)",
                    chart::ORANGE,
                    Style::Line,
                    rate_series(&accepted_per_s),
                ),
                Series::new(
                    "leads delivered to the app",
                    chart::GREEN,
                    Style::Line,
                    rate_series(deliveries_per_s),
                ),
            ],
            markers: markers.clone(),
            ..Default::default()
        },
        Panel {
            y_desc: "shoppers' latency, ms".into(),
            log_y: true,
            series: Series::p99_p50(Some("GET /product/N"), chart::BLUE, shopper_p99).into(),
            markers,
            ..Default::default()
        },
    ];
    let title = format!(
        "lead-flood{}: queue rate {} r/s, shoppers {} r/s",
        if a.kill_at.is_some() { " --kill" } else { "" },
        a.queue_rate,
        a.ordinary_rate
    );
    match chart::draw(&a.chart, &title, "seconds", (0.0, end), 1100, &panels) {
        Ok(_) => println!("chart: {}", a.chart.display()),
        Err(e) => println!("chart not drawn: {e}"),
    }
}

/// Closed loop on `GET /plain/N` (proxied to the app) and `GET /queued/N` (a `queue` route:
/// stored, fsynced, answered 202), then tagged POST leads open loop at `rate`.
fn accept(a: AcceptArgs) -> i32 {
    let run = |path: &str| {
        let c = loadgen::closed_loop(
            a.proxy,
            path,
            a.connections,
            Duration::from_secs(2),
            Duration::from_secs_f64(a.seconds),
            2_000_000,
        );
        let s = summarize(c.samples.iter().map(|&(_, us)| us as u64));
        let rps = c.ok as f64 / c.seconds;
        println!(
            "{path:<10} closed loop, {} connections, {:.0} s: {:.0} r/s ({} ok, {} errors), latency p50 {:.2} ms p99 {:.2} ms",
            a.connections, c.seconds, rps, c.ok, c.errors, s.p50, s.p99
        );
        (rps, c.errors)
    };
    // Accept latency at an open-loop rate: tagged POST leads for `rate_seconds`, answered 202.
    let open_loop = |when: &str| {
        let n = (a.rate * a.rate_seconds) as u64;
        let leads = lead_stream(
            vec![a.proxy],
            Instant::now() + Duration::from_millis(200),
            a.rate,
            n,
        )
        .join()
        .unwrap_or_default();
        let s = accept_latency(&leads);
        println!(
            "tagged POST leads open loop at {} r/s for {} s, {when}: {} of {} answered 202; accept latency p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms",
            a.rate,
            a.rate_seconds,
            s.n,
            leads.len(),
            s.p50,
            s.p99,
            s.p999,
            s.max
        );
        (s, leads.len())
    };
    // First on the empty spool, then again after the closed loops left it holding their
    // entries (the queued route delivers at 1 r/s): a launch's spool is seldom empty.
    let (fresh, fresh_n) = open_loop("empty spool");
    let rss0 = seawall_rss(&a.pid_file);
    let (plain1, e1) = run("/plain/1");
    let (queued, e2) = run("/queued/1");
    let (plain2, e3) = run("/plain/1");
    let plain = (plain1 + plain2) / 2.0;
    println!(
        "queued / plain (mean of the two plain runs): {:.2}x; Seawall VmRSS {:.1} MiB before, {:.1} MiB after",
        queued / plain,
        rss0 as f64 / 1048576.0,
        seawall_rss(&a.pid_file) as f64 / 1048576.0
    );
    let (full, full_n) = open_loop("spool holding the closed loops' entries");
    let mut ok_all = true;
    let mut target = |name: String, met: bool| {
        println!("TARGET {name}: {}", if met { "met" } else { "MISSED" });
        ok_all &= met;
    };
    target(
        format!("queued throughput >= 0.5x plain ({:.2}x)", queued / plain),
        queued >= 0.5 * plain,
    );
    for (when, s) in [("empty spool", &fresh), ("full spool", &full)] {
        target(
            format!(
                "accept p99 at {} r/s <= 10 ms, {when} ({:.2} ms)",
                a.rate, s.p99
            ),
            s.p99 <= 10.0,
        );
    }
    let not_202 = (fresh_n - fresh.n) + (full_n - full.n);
    target(
        format!(
            "no errors ({} closed-loop, {not_202} open-loop not 202)",
            e1 + e2 + e3
        ),
        e1 + e2 + e3 == 0 && not_202 == 0,
    );
    if ok_all { 0 } else { 3 }
}
