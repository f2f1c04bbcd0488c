//! Helpers for `load-tests/ip-spray` (not part of Seawall; run by that script).
//!
//! - `upstream`: the small fast upstream (`shared/upstream.rs`).
//! - `run`: three open-loop streams through Seawall, each from one trusted local peer
//!   (127.0.0.1) naming its client in `X-Forwarded-For`: a legitimate client (one fixed
//!   address, under its per-IP limit), an abusive one (one fixed address, over it) and a spray
//!   of many distinct addresses that starts after `before` seconds and lasts `spray_seconds`.
//!   Every second it reads Seawall's VmRSS (/proc) and `seawall_ratelimit_tracked_keys`
//!   (/metrics). Prints the report and draws the chart.
//! - `free-ports N`: prints N free 127.0.0.1 ports.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[path = "shared/chart.rs"]
mod chart;
#[path = "shared/loadgen.rs"]
mod loadgen;
#[path = "shared/upstream.rs"]
mod upstream;

use chart::{Panel, Series, Style};
use loadgen::{Sample, Schedule, summarize};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start: the size of the arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    Upstream {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    Run(RunArgs),
    FreePorts {
        n: usize,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Seawall's proxy and admin addresses, and its pid.
    #[arg(long)]
    proxy: SocketAddr,
    #[arg(long)]
    admin: SocketAddr,
    #[arg(long)]
    seawall_pid: u32,
    /// The per-IP limit configured in Seawall (for the report and the checks).
    #[arg(long)]
    limit_rate: f64,
    #[arg(long)]
    limit_burst: u64,
    #[arg(long)]
    max_keys: u64,
    #[arg(long, default_value_t = 4.0)]
    legit_rate: f64,
    #[arg(long, default_value_t = 50.0)]
    abuser_rate: f64,
    #[arg(long, default_value_t = 5000.0)]
    spray_rate: f64,
    /// Distinct spray addresses (from 198.18.0.0/15, the benchmarking range; at most 131072
    /// there, so more continue into 100.64.0.0/10).
    #[arg(long, default_value_t = 200_000)]
    spray_ips: u32,
    /// Requests each spray address sends, back to back in the schedule.
    #[arg(long, default_value_t = 1)]
    spray_per_ip: u32,
    #[arg(long, default_value_t = 5.0)]
    before: f64,
    #[arg(long, default_value_t = 10.0)]
    after: f64,
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    #[arg(long)]
    chart: PathBuf,
    #[arg(long, default_value_t = 100.0)]
    clk_tck: f64,
    #[arg(long, default_value = "")]
    describe: String,
}

const LEGIT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const ABUSER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);

fn spray_ip(n: u32) -> Ipv4Addr {
    if n < 131_072 {
        Ipv4Addr::from(0xC612_0000u32 + n) // 198.18.0.0/15
    } else {
        Ipv4Addr::from(0x6440_0000u32 + (n - 131_072)) // 100.64.0.0/10
    }
}

/// Requests in flight per stream beyond which the generator does not send (status 1): past
/// this, answers have stalled, and a bounded test does not open connections without end.
const MAX_INFLIGHT: usize = 2000;

fn main() {
    match Cli::parse().cmd {
        Cmd::Upstream { port, threads } => upstream::run(port, threads, 1000),
        Cmd::FreePorts { n } => loadgen::print_free_ports(n),
        Cmd::Run(a) => std::process::exit(run(a)),
    }
}

/// One reading of Seawall every second: (s since the start, VmRSS bytes, tracked keys).
type Reading = (f64, u64, Option<f64>);

fn run(a: RunArgs) -> i32 {
    let spray_seconds = a.spray_ips as f64 * a.spray_per_ip as f64 / a.spray_rate;
    let total = a.before + spray_seconds + a.after;
    let legit_n = (a.legit_rate * total).round() as u64;
    let abuser_n = (a.abuser_rate * total).round() as u64;
    let spray_n = a.spray_ips as u64 * a.spray_per_ip as u64;
    if legit_n + abuser_n + spray_n > a.max_requests {
        eprintln!(
            "refusing: {} requests scheduled, more than --max-requests {}",
            legit_n + abuser_n + spray_n,
            a.max_requests
        );
        return 2;
    }
    let start = Instant::now() + Duration::from_millis(200);
    let schedule = |start, rate, count| Schedule {
        start,
        rate,
        count,
        timeout: Duration::from_secs(5),
        inflight: Arc::new(AtomicUsize::new(0)),
        max_inflight: MAX_INFLIGHT,
    };
    let url = format!("http://{}/api/items", a.proxy);
    let fixed = |ip: Ipv4Addr, rate: f64, n: u64| {
        let url = url.clone();
        loadgen::run_stream(
            schedule(start, rate, n),
            |_| 0,
            move |c, _| c.get(&url).header("x-forwarded-for", ip.to_string()),
        )
    };
    let legit = fixed(LEGIT, a.legit_rate, legit_n);
    let abuser = fixed(ABUSER, a.abuser_rate, abuser_n);
    let per_ip = a.spray_per_ip.max(1) as u64;
    let spray = {
        let url = url.clone();
        loadgen::run_stream(
            schedule(
                start + Duration::from_secs_f64(a.before),
                a.spray_rate,
                spray_n,
            ),
            |_| 0,
            move |c, i| {
                c.get(&url)
                    .header("x-forwarded-for", spray_ip((i / per_ip) as u32).to_string())
            },
        )
    };

    // Seawall's memory and tracked keys, every second until the streams are done (and 1 s more).
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let (pid, admin) = (a.seawall_pid, a.admin);
        std::thread::spawn(move || {
            let mut out: Vec<Reading> = Vec::new();
            let mut next = start;
            let mut extra = 2;
            loop {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                let rss = loadgen::status_bytes(pid, "VmRSS");
                let keys = loadgen::http_request(admin, "GET", "/metrics").and_then(|(_, m)| {
                    loadgen::metric(&m, "seawall_ratelimit_tracked_keys", &[r#"limit="per-ip""#])
                });
                out.push((next.duration_since(start).as_secs_f64(), rss, keys));
                next += Duration::from_secs(1);
                if done.load(Ordering::Relaxed) {
                    extra -= 1;
                    if extra == 0 {
                        break;
                    }
                }
            }
            out
        })
    };
    let legit = legit.join().expect("legit stream");
    let abuser = abuser.join().expect("abuser stream");
    let spray = spray.join().expect("spray stream");
    done.store(true, Ordering::Relaxed);
    let readings = sampler.join().expect("sampler");
    let peak_hwm = loadgen::status_bytes(a.seawall_pid, "VmHWM");
    eprintln!("cpu generator {:.2}", loadgen::cpu_seconds(a.clk_tck));

    report(
        &a,
        start,
        spray_seconds,
        &legit,
        &abuser,
        &spray,
        &readings,
        peak_hwm,
    )
}

fn t_of(s: &Sample, start: Instant) -> f64 {
    s.due.saturating_duration_since(start).as_secs_f64()
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &RunArgs,
    start: Instant,
    spray_seconds: f64,
    legit: &[Sample],
    abuser: &[Sample],
    spray: &[Sample],
    readings: &[Reading],
    peak_hwm: u64,
) -> i32 {
    let mib = |b: u64| b as f64 / 1048576.0;
    let count = |v: &[Sample], code: u16| v.iter().filter(|s| s.status == code).count();
    // Status 0: a transport error or timeout; 1: not sent, the stream had MAX_INFLIGHT in
    // flight. Counted apart: the first is a failed request, the second a stall in answering.
    let other = |v: &[Sample]| {
        v.iter()
            .filter(|s| !matches!(s.status, 200 | 429 | 1))
            .count()
    };
    let capped = |v: &[Sample]| count(v, 1);
    let line = |name: &str, v: &[Sample], rate: f64| {
        let s = summarize(v.iter().map(|s| s.latency_us));
        // Latency counts from the scheduled time; the send lag is the generator's own share.
        let lag = summarize(v.iter().map(|s| s.lag_us));
        println!(
            "  {name:<7} {:>7} due at {rate} r/s   passed {:>7}  429 {:>7}  errors {:>3}  not sent {:>4}   p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (send lag p99 {:.2} ms, max {:.2} ms)",
            v.len(),
            count(v, 200),
            count(v, 429),
            other(v),
            capped(v),
            s.p50,
            s.p99,
            s.p999,
            s.max,
            lag.p99,
            lag.max
        );
    };
    let spray_from = a.before;
    let spray_to = a.before + spray_seconds;
    println!("{}", a.describe);
    println!(
        "limit: key = \"client_ip\" rate {}r/s burst {} nodelay, max_keys {}; trusted_proxies = [\"127.0.0.1/32\"]; spray {:.0}..{:.0} s",
        a.limit_rate, a.limit_burst, a.max_keys, spray_from, spray_to
    );
    line("legit", legit, a.legit_rate);
    line("abuser", abuser, a.abuser_rate);
    line("spray", spray, a.spray_rate);
    println!(
        "  spray: {} distinct addresses x {} request(s); throughput through Seawall during the spray {:.0} r/s",
        a.spray_ips,
        a.spray_per_ip,
        (spray.len()
            + legit
                .iter()
                .chain(abuser)
                .filter(|s| (spray_from..spray_to).contains(&t_of(s, start)))
                .count()) as f64
            / spray_seconds
    );

    // The abusive client, second by second: passes per second must stay at the rate (after its
    // first burst): an eviction of its entry would hand it a fresh burst.
    let per_sec = |v: &[Sample]| {
        loadgen::buckets(v.iter().map(|s| (t_of(s, start), 0, s.status == 200)), 1.0)
    };
    let ab = per_sec(abuser);
    let allowed = a.limit_rate.ceil() as usize + 2;
    let steady: Vec<_> = ab.iter().filter(|b| b.t >= 2.0 && b.n > 0).collect();
    let worst = steady.iter().map(|b| b.n - b.errors).max().unwrap_or(0);
    let min_429 = steady
        .iter()
        .map(|b| b.errors as f64 / b.n as f64)
        .fold(f64::INFINITY, f64::min);
    let ab_passed = count(abuser, 200);
    let total = abuser.last().map_or(0.0, |s| t_of(s, start)).max(1.0);
    let expected = a.limit_burst as f64 + 1.0 + a.limit_rate * total;
    let limited = worst <= allowed;
    println!(
        "  abuser: 429 share {:.1}% overall, at least {:.1}% in every second after its first 2 s; most passes in one second {} (limit {}/s); passed {} in {:.0} s, the limit allows {:.0}",
        100.0 * count(abuser, 429) as f64 / abuser.len().max(1) as f64,
        100.0 * min_429,
        worst,
        a.limit_rate,
        ab_passed,
        total,
        expected
    );

    // Memory and keys.
    let rss0 = readings.first().map_or(0, |r| r.1);
    let before = readings
        .iter()
        .rfind(|r| r.0 <= spray_from)
        .map_or(rss0, |r| r.1);
    let peak = readings.iter().map(|r| r.1).max().unwrap_or(0);
    let end = readings.last().map_or(0, |r| r.1);
    let keys_peak = readings.iter().filter_map(|r| r.2).fold(0.0, f64::max);
    let keys_end = readings.last().and_then(|r| r.2).unwrap_or(f64::NAN);
    println!(
        "  Seawall VmRSS: {:.1} MiB at the start, {:.1} before the spray, peak {:.1} (VmHWM {:.1}), {:.1} at the end",
        mib(rss0),
        mib(before),
        mib(peak),
        mib(peak_hwm),
        mib(end)
    );
    println!(
        "  seawall_ratelimit_tracked_keys{{limit=\"per-ip\"}}: peak {keys_peak:.0} (max_keys {}), {keys_end:.0} at the end",
        a.max_keys
    );
    println!(
        "  VmRSS every 5 s (MiB): {}",
        readings
            .iter()
            .step_by(5)
            .map(|r| format!("{:.1}", mib(r.1)))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let legit_rejected = legit.iter().filter(|s| s.status != 200).count();
    let ok_legit = legit_rejected == 0;
    let ok_keys = keys_peak <= a.max_keys as f64;
    let errors = other(legit) + other(abuser) + other(spray);
    let not_sent = capped(legit) + capped(abuser) + capped(spray);
    println!(
        "TARGET legitimate client never rejected: {legit_rejected} of {} not 200  {}",
        legit.len(),
        if ok_legit { "MET" } else { "NOT MET" }
    );
    println!(
        "TARGET abusive client limited throughout: at most {worst} passes in any second (<= {allowed})  {}",
        if limited { "MET" } else { "NOT MET" }
    );
    println!(
        "TARGET tracked keys within max_keys: peak {keys_peak:.0} <= {}  {}",
        a.max_keys,
        if ok_keys { "MET" } else { "NOT MET" }
    );
    println!(
        "TARGET no transport errors or other statuses: {errors}  {}",
        if errors == 0 { "MET" } else { "NOT MET" }
    );
    println!(
        "TARGET every request sent (not sent: {MAX_INFLIGHT} of its stream already in flight): {not_sent}  {}",
        if not_sent == 0 { "MET" } else { "NOT MET" }
    );
    if let Err(e) = draw(
        a, start, spray_from, spray_to, legit, abuser, spray, readings,
    ) {
        eprintln!("chart not drawn: {e}");
        return 1;
    }
    if ok_legit && limited && ok_keys && errors == 0 && not_sent == 0 {
        0
    } else {
        3
    }
}

#[allow(clippy::too_many_arguments)]
fn draw(
    a: &RunArgs,
    start: Instant,
    spray_from: f64,
    spray_to: f64,
    legit: &[Sample],
    abuser: &[Sample],
    spray: &[Sample],
    readings: &[Reading],
) -> Result<(), String> {
    let b = |v: &[Sample]| {
        loadgen::buckets(
            v.iter()
                .map(|s| (t_of(s, start), s.latency_us, s.status == 200)),
            1.0,
        )
    };
    let (bl, ba, bs) = (b(legit), b(abuser), b(spray));
    let markers = vec![(spray_from, chart::RED), (spray_to, chart::RED)];
    let spans = vec![(spray_from, spray_to, "spray".to_string())];
    let lat = Panel {
        y_desc: "latency per 1 s, ms (log)".into(),
        log_y: true,
        series: Series::p99_p50(
            Some("spray"),
            chart::BLUE,
            bs.iter().map(|b| (b.t + 0.5, b.p50, b.p99)),
        )
        .into_iter()
        .chain([
            Series::new(
                "legit max",
                chart::GREEN,
                Style::Line,
                bl.iter().map(|b| (b.t + 0.5, b.max)).collect(),
            ),
            Series::new(
                "legit p50",
                chart::GREEN,
                Style::Dashed,
                bl.iter().map(|b| (b.t + 0.5, b.p50)).collect(),
            ),
            Series::new(
                "abuser p99",
                chart::ORANGE,
                Style::Thin,
                ba.iter().map(|b| (b.t + 0.5, b.p99)).collect(),
            ),
        ])
        .collect(),
        markers: markers.clone(),
        spans,
    };
    let share = Panel {
        y_desc: "% rejected (429) per 1 s".into(),
        series: vec![
            Series::new(
                "abuser",
                chart::ORANGE,
                Style::Line,
                ba.iter()
                    .map(|b| (b.t + 0.5, 100.0 * b.errors as f64 / b.n as f64))
                    .collect(),
            ),
            Series::new(
                "legit",
                chart::GREEN,
                Style::Line,
                bl.iter()
                    .map(|b| (b.t + 0.5, 100.0 * b.errors as f64 / b.n as f64))
                    .collect(),
            ),
            Series::new(
                "spray",
                chart::BLUE,
                Style::Dashed,
                bs.iter()
                    .map(|b| (b.t + 0.5, 100.0 * b.errors as f64 / b.n as f64))
                    .collect(),
            ),
        ],
        markers: markers.clone(),
        ..Panel::default()
    };
    let mem = Panel {
        y_desc: "Seawall VmRSS, MiB".into(),
        series: vec![Series::new(
            "VmRSS",
            chart::PURPLE,
            Style::Line,
            readings
                .iter()
                .map(|r| (r.0, r.1 as f64 / 1048576.0))
                .collect(),
        )],
        markers: markers.clone(),
        ..Panel::default()
    };
    let keys = Panel {
        y_desc: "tracked keys".into(),
        series: vec![
            Series::new(
                "seawall_ratelimit_tracked_keys",
                chart::PURPLE,
                Style::Line,
                readings.iter().filter_map(|r| Some((r.0, r.2?))).collect(),
            ),
            Series::new(
                "max_keys",
                chart::GREY,
                Style::Dashed,
                readings.iter().map(|r| (r.0, a.max_keys as f64)).collect(),
            ),
        ],
        markers,
        ..Panel::default()
    };
    let end = readings.last().map_or(spray_to + a.after, |r| r.0);
    let text = chart::draw(
        &a.chart,
        &format!(
            "ip-spray: {} addresses at {} r/s; legit {} r/s, abuser {} r/s; limit {}r/s burst {}, max_keys {}",
            a.spray_ips,
            a.spray_rate,
            a.legit_rate,
            a.abuser_rate,
            a.limit_rate,
            a.limit_burst,
            a.max_keys
        ),
        "seconds since the start",
        (0.0, end),
        1100,
        &[lat, share, mem, keys],
    )?;
    println!(
        "chart: {}{}",
        a.chart.display(),
        if text {
            ""
        } else {
            " (no font found: drawn without text)"
        }
    );
    Ok(())
}
