//! The fleet scenarios' helpers (load-tests/fleet, load-tests/fleet-cost); not part of Seawall.
//!
//! - `app`: the upstream (examples/shared/upstream.rs), counting what it served;
//! - `flood`: an open-loop generator that sends each request at its scheduled time, spread
//!   round-robin over several Seawall instances, and writes every answer (when it was due, which
//!   instance, status, latency from the due time, `Retry-After`) to a CSV file;
//! - `report`: what one run's answers say: status counts by phase (before / during / after a
//!   Redis outage), the statuses a fail mode allows, the latest answer, recovery;
//! - `chart`: the outage runs side by side, answers per second by status.
//!
//! Our own generator rather than wrk or oha: the scenarios need the answers one by one (which
//! instance, when, with what `Retry-After`) and a schedule that does not slow down when the
//! proxy does (wrk and oha are closed loops: a hang would show as fewer requests, not as late
//! answers).

#[path = "shared/chart.rs"]
mod chart;
#[path = "shared/loadgen.rs"]
mod loadgen;
#[path = "shared/upstream.rs"]
mod upstream;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use tokio::time::Instant;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    FreePorts {
        n: usize,
    },
    App {
        #[arg(long)]
        port: u16,
    },
    Flood(FloodArgs),
    Report(ReportArgs),
    Chart {
        /// `LABEL=SAMPLES.csv@KILL_MS@BACK_MS` (epoch ms), one per panel.
        #[arg(long = "run")]
        runs: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        title: String,
    },
}

#[derive(clap::Args)]
struct FloodArgs {
    /// Base URLs of the instances (comma-separated), used round-robin.
    #[arg(long)]
    targets: String,
    /// Path and query of every request (a POST).
    #[arg(long)]
    path: String,
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    seconds: f64,
    /// Distinct client addresses, sent in X-Forwarded-For in turn.
    #[arg(long, default_value_t = 1000)]
    clients: u32,
    /// A request not answered within this is counted as status 0 (a hang).
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ReportArgs {
    #[arg(long)]
    samples: PathBuf,
    /// When Redis was killed and when it answered again (epoch ms); without them, one phase.
    #[arg(long)]
    kill_ms: Option<f64>,
    #[arg(long)]
    back_ms: Option<f64>,
    /// The fail mode under test: local | open | closed (which statuses the outage may answer).
    #[arg(long, default_value = "local")]
    mode: String,
    /// An answer later than this is a hang.
    #[arg(long, default_value_t = 1000.0)]
    max_latency_ms: f64,
    /// After Redis is back, the store may take this long to be found up again: answers in
    /// that window may still be the fail mode's.
    #[arg(long, default_value_t = 2000.0)]
    grace_ms: f64,
    /// The `[fleet] timeout`: with `closed`, a 503 outside the outage is the mode's answer to
    /// one round trip that missed it (a late answer), so only one that came at least this late.
    #[arg(long, default_value_t = 5.0)]
    timeout_ms: f64,
}

fn main() {
    match Cli::parse().cmd {
        Cmd::FreePorts { n } => loadgen::print_free_ports(n),
        Cmd::App { port } => upstream::run(port, 1, 64),
        Cmd::Flood(a) => flood(a),
        Cmd::Report(a) => std::process::exit(report(a)),
        Cmd::Chart { runs, out, title } => chart_runs(&runs, &out, &title),
    }
}

#[derive(Clone, Copy)]
struct Answer {
    /// Seconds after the run's start that the request was due.
    t: f64,
    instance: usize,
    /// 0: no answer within the timeout or a transport error.
    status: u16,
    latency_us: u64,
    /// `Retry-After` in seconds, -1 when absent.
    retry_after: i64,
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn flood(a: FloodArgs) {
    let targets: Vec<String> = a
        .targets
        .split(',')
        .map(|t| format!("{t}{}", a.path))
        .collect();
    let count = (a.rate * a.seconds) as u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (start_ms, answers) = rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(a.timeout_ms))
            .tcp_nodelay(true)
            .build()
            .expect("client");
        let out = Arc::new(Mutex::new(Vec::with_capacity(count as usize)));
        let start = Instant::now();
        let start_ms = epoch_ms();
        let mut tasks = Vec::with_capacity(count as usize);
        for i in 0..count {
            let offset = i as f64 / a.rate;
            let due = start + Duration::from_secs_f64(offset);
            tokio::time::sleep_until(due).await;
            let instance = (i % targets.len() as u64) as usize;
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + (i % u64::from(a.clients)) as u32);
            let req = client
                .post(&targets[instance])
                .header("x-forwarded-for", ip.to_string())
                .body("{\"email\":\"a@example.com\"}");
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let (status, retry_after) = match req.send().await {
                    Ok(r) => {
                        let code = r.status().as_u16();
                        let ra = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
                            .unwrap_or(-1);
                        (r.bytes().await.map_or(0, |_| code), ra)
                    }
                    Err(_) => (0, -1),
                };
                out.lock().expect("lock").push(Answer {
                    t: offset,
                    instance,
                    status,
                    latency_us: due.elapsed().as_micros() as u64,
                    retry_after,
                });
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let v = std::mem::take(&mut *out.lock().expect("lock"));
        (start_ms, v)
    });
    let mut answers = answers;
    answers.sort_by(|x, y| x.t.total_cmp(&y.t));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&a.out).expect("create --out"));
    writeln!(f, "# start_ms={start_ms:.0}").expect("write");
    for s in &answers {
        writeln!(
            f,
            "{:.6},{},{},{},{}",
            s.t, s.instance, s.status, s.latency_us, s.retry_after
        )
        .expect("write");
    }
}

fn read_samples(path: &Path) -> (f64, Vec<Answer>) {
    let text = std::fs::read_to_string(path).expect("read --samples");
    let mut start_ms = 0.0;
    let mut v = Vec::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("# start_ms=") {
            start_ms = s.parse().unwrap_or(0.0);
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            continue;
        }
        v.push(Answer {
            t: f[0].parse().unwrap_or(0.0),
            instance: f[1].parse().unwrap_or(0),
            status: f[2].parse().unwrap_or(0),
            latency_us: f[3].parse().unwrap_or(0),
            retry_after: f[4].parse().unwrap_or(-1),
        });
    }
    (start_ms, v)
}

/// The statuses a phase may answer: the limit's own (200, 429) while Redis decides; during an
/// outage, `local` the same, `open` 200 only (nothing is limited), `closed` 503 + Retry-After.
/// A 429 can still come from the "rejected until" cache in an outage's first milliseconds.
/// While the store comes back ("recover"), an answer may be either the mode's or Redis's.
/// Outside the outage, `closed` still answers 503 to a request whose own round trip missed the
/// timeout (src/fleet/late.rs): allowed when the answer took at least `timeout_ms`.
fn allowed(mode: &str, phase: &str, s: &Answer, timeout_ms: f64) -> bool {
    match (phase, mode) {
        ("outage" | "recover", "closed") => matches!(s.status, 200 | 429 | 503),
        (_, "closed") if s.status == 503 => late(s, timeout_ms),
        _ => s.status == 200 || s.status == 429,
    }
}

fn late(s: &Answer, timeout_ms: f64) -> bool {
    s.latency_us as f64 >= timeout_ms * 1000.0
}

fn report(a: ReportArgs) -> i32 {
    let (start_ms, answers) = read_samples(&a.samples);
    let kill = a.kill_ms.map(|k| (k - start_ms) / 1000.0);
    let back = a.back_ms.map(|b| (b - start_ms) / 1000.0);
    let grace = a.grace_ms / 1000.0;
    // By when the answer came: a request sent just before the kill and answered after it may
    // be decided by the fail mode.
    let phase_of = |t: f64| match (kill, back) {
        (Some(k), _) if t < k => "before",
        (Some(_), Some(b)) if t < b => "outage",
        (Some(_), None) => "outage",
        (Some(_), Some(b)) if t < b + grace => "recover",
        (Some(_), Some(_)) => "after",
        (None, _) => "run",
    };
    let phase = |s: &Answer| phase_of(s.t + s.latency_us as f64 / 1e6);
    let mut by_phase: BTreeMap<&str, BTreeMap<u16, u64>> = BTreeMap::new();
    let mut by_instance: BTreeMap<usize, BTreeMap<u16, u64>> = BTreeMap::new();
    let mut bad = Vec::new();
    let mut no_retry_after = 0;
    let mut lat: Vec<u64> = Vec::with_capacity(answers.len());
    for s in &answers {
        let p = phase(s);
        *by_phase.entry(p).or_default().entry(s.status).or_default() += 1;
        *by_instance
            .entry(s.instance)
            .or_default()
            .entry(s.status)
            .or_default() += 1;
        lat.push(s.latency_us);
        if !allowed(&a.mode, p, s, a.timeout_ms) && bad.len() < 5 {
            bad.push(*s);
        }
        if s.status == 503 && s.retry_after < 0 {
            no_retry_after += 1;
        }
    }
    let bad_total = answers
        .iter()
        .filter(|s| !allowed(&a.mode, phase(s), s, a.timeout_ms))
        .count();
    let late_503 = answers
        .iter()
        .filter(|s| {
            s.status == 503 && matches!(phase(s), "before" | "after") && late(s, a.timeout_ms)
        })
        .count();
    if a.mode == "closed" && late_503 > 0 {
        println!(
            "503 outside the outage to a round trip over the {} ms timeout (the mode's answer to a late answer): {late_503}",
            a.timeout_ms
        );
    }
    lat.sort_unstable();
    let sum = loadgen::summarize(lat.iter().copied());
    let dur = answers.last().map_or(0.0, |s| s.t);
    let fmt = |m: &BTreeMap<u16, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "answers: {} over {dur:.1} s; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms",
        answers.len(),
        sum.p50,
        sum.p99,
        sum.p999,
        sum.max
    );
    for p in ["run", "before", "outage", "recover", "after"] {
        let Some(m) = by_phase.get(p) else { continue };
        let (from, to) = match p {
            "before" => (0.0, kill.unwrap_or(0.0)),
            "outage" => (kill.unwrap_or(0.0), back.unwrap_or(dur)),
            "recover" => (back.unwrap_or(0.0), back.unwrap_or(0.0) + grace),
            "after" => (back.unwrap_or(0.0) + grace, dur),
            _ => (0.0, dur),
        };
        println!("  {p:<7} {from:5.2}..{to:5.2} s  status:count {}", fmt(m));
    }
    for (i, m) in &by_instance {
        println!("  instance {} status:count {}", i + 1, fmt(m));
    }
    let admitted: u64 = answers.iter().filter(|s| s.status == 200).count() as u64;
    println!("ADMITTED {admitted}");
    if let Some(b) = back {
        // The last answer after Redis is back that only the fail mode gives: a 503 (closed).
        let last_503 = answers
            .iter()
            .filter(|s| s.t >= b && s.status == 503)
            .map(|s| s.t)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        if let Some(t) = last_503 {
            println!(
                "last 503 after Redis was back: {:.0} ms after",
                (t - b) * 1000.0
            );
        }
    }
    let transport = answers.iter().filter(|s| s.status == 0).count();
    let five = answers
        .iter()
        .filter(|s| s.status >= 500 && s.status != 503)
        .count();
    let mut rc = 0;
    let mut target = |ok: bool, what: String| {
        println!("TARGET {} {what}", if ok { "met: " } else { "MISSED:" });
        if !ok {
            rc = 3;
        }
    };
    target(
        bad_total == 0,
        format!(
            "every answer is the mode's ({} mode): {bad_total} others",
            a.mode
        ),
    );
    target(five == 0, format!("no 5xx but the mode's 503: {five}"));
    target(
        transport == 0,
        format!("no hang or transport error: {transport}"),
    );
    target(
        sum.max <= a.max_latency_ms,
        format!(
            "slowest answer {:.1} ms <= {} ms",
            sum.max, a.max_latency_ms
        ),
    );
    if a.mode == "closed" {
        target(
            no_retry_after == 0,
            format!("every 503 has Retry-After: {no_retry_after} without"),
        );
    }
    for s in &bad {
        println!(
            "  e.g. t={:.3} s instance {} status {} latency {} us",
            s.t,
            s.instance + 1,
            s.status,
            s.latency_us
        );
    }
    rc
}

fn chart_runs(runs: &[String], out: &Path, title: &str) {
    let mut panels = Vec::new();
    let mut x_max: f64 = 1.0;
    for r in runs {
        let Some((label, rest)) = r.split_once('=') else {
            continue;
        };
        let parts: Vec<&str> = rest.split('@').collect();
        let (start_ms, answers) = read_samples(Path::new(parts[0]));
        let ev = |i: usize| {
            parts
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .map(|m| (m - start_ms) / 1000.0)
        };
        let secs = answers.last().map_or(0.0, |s| s.t).ceil() as usize + 1;
        x_max = x_max.max(secs as f64);
        let mut per: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for s in &answers {
            let k = match s.status {
                200..=299 => "2xx admitted",
                429 => "429 limited",
                503 => "503 closed",
                _ => "other (5xx, no answer)",
            };
            per.entry(k).or_insert_with(|| vec![0.0; secs])[s.t as usize] += 1.0;
        }
        let color = |k: &str| match k {
            "2xx admitted" => chart::GREEN,
            "429 limited" => chart::ORANGE,
            "503 closed" => chart::RED,
            _ => chart::PURPLE,
        };
        let series = per
            .iter()
            .map(|(k, v)| {
                let pts = v
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (i as f64 + 0.5, *n))
                    .collect();
                chart::Series::new(k, color(k), chart::Style::Line, pts)
            })
            .collect();
        let mut markers = Vec::new();
        let mut spans = Vec::new();
        if let (Some(k), Some(b)) = (ev(1), ev(2)) {
            markers.push((k, chart::RED));
            markers.push((b, chart::GREEN));
            spans.push((k, b, "Redis down (kill -9)".to_string()));
        }
        panels.push(chart::Panel {
            y_desc: format!("{label}: answers/s"),
            series,
            markers,
            spans,
            ..Default::default()
        });
    }
    match chart::draw(out, title, "seconds", (0.0, x_max), 1000, &panels) {
        Ok(true) => eprintln!("chart: {}", out.display()),
        Ok(false) => eprintln!("chart: {} (no font: drawn without text)", out.display()),
        Err(e) => eprintln!("chart failed: {e}"),
    }
}
