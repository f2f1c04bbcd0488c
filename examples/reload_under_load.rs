//! Helpers for `load-tests/reload-under-load` (not part of Seawall; run by that script).
//!
//! - `upstream`: the small fast upstream (`shared/upstream.rs`).
//! - `run`: a steady open-loop stream through Seawall (shared/loadgen.rs) while, from `before`
//!   seconds on for `during` seconds, every `interval_ms` the live config file is replaced:
//!   alternately by valid variants A and B, either only by saving the file (Seawall's watcher
//!   reloads; in place and by rename, alternately) or by saving it and `POST /-/reload`, and
//!   every 10th time by an invalid variant (saved, then `POST /-/reload`, which must answer 422).
//!   Every 250 ms it reads `/metrics` (reload counters, generation) and Seawall's VmRSS.
//!   Prints the report and draws the chart.
//! - `free-ports N`: prints N free 127.0.0.1 ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};

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
    #[arg(long)]
    proxy: SocketAddr,
    #[arg(long)]
    admin: SocketAddr,
    #[arg(long)]
    seawall_pid: u32,
    /// The live main config file Seawall runs with (it is rewritten).
    #[arg(long)]
    config: PathBuf,
    /// The two valid variants, alternated.
    #[arg(long)]
    valid_a: PathBuf,
    #[arg(long)]
    valid_b: PathBuf,
    /// Invalid variants, used in turn.
    #[arg(long, num_args = 1..)]
    invalid: Vec<PathBuf>,
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds of steady traffic before the reloads (after 2 s of warm-up, not counted).
    #[arg(long, default_value_t = 10.0)]
    before: f64,
    #[arg(long, default_value_t = 20.0)]
    during: f64,
    #[arg(long, default_value_t = 5.0)]
    after: f64,
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    #[arg(long)]
    chart: PathBuf,
    #[arg(long, default_value_t = 100.0)]
    clk_tck: f64,
    #[arg(long, default_value = "")]
    describe: String,
}

const WARMUP: f64 = 2.0;

fn main() {
    match Cli::parse().cmd {
        Cmd::Upstream { port, threads } => upstream::run(port, threads, 1000),
        Cmd::FreePorts { n } => loadgen::print_free_ports(n),
        Cmd::Run(a) => std::process::exit(run(a)),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Saved in place (open, truncate, write); the watcher reloads.
    FileInPlace,
    /// Saved by writing a temporary file and renaming it over; the watcher reloads.
    FileRename,
    /// Saved in place, then POST /-/reload.
    Post,
    /// An invalid variant saved in place, then POST /-/reload (must be 422).
    Invalid,
}

struct Action {
    t: f64,
    kind: Kind,
    /// The POST's answer status (0: no answer), for Post and Invalid.
    status: u16,
    /// How long the POST took, ms.
    post_ms: f64,
}

/// A reading of /metrics and /proc every 250 ms.
struct Reading {
    t: f64,
    success: f64,
    failure: f64,
    generation: f64,
    rss: u64,
}

fn save(path: &Path, content: &[u8], rename: bool) {
    if rename {
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, content).expect("write temp config");
        std::fs::rename(&tmp, path).expect("rename config");
    } else {
        std::fs::write(path, content).expect("write config");
    }
}

fn read_metrics(admin: SocketAddr, pid: u32, t: f64) -> Option<Reading> {
    let (_, m) = loadgen::http_request(admin, "GET", "/metrics")?;
    let g = |name: &str, l: &[&str]| loadgen::metric(&m, name, l).unwrap_or(0.0);
    Some(Reading {
        t,
        success: g("seawall_config_reloads_total", &[r#"result="success""#]),
        failure: g("seawall_config_reloads_total", &[r#"result="failure""#]),
        generation: g("seawall_config_generation", &[]),
        rss: loadgen::status_bytes(pid, "VmRSS"),
    })
}

fn run(a: RunArgs) -> i32 {
    let variants = [
        std::fs::read(&a.valid_a).expect("read variant A"),
        std::fs::read(&a.valid_b).expect("read variant B"),
    ];
    let invalid: Vec<Vec<u8>> = a
        .invalid
        .iter()
        .map(|p| std::fs::read(p).expect("read invalid variant"))
        .collect();
    let total = WARMUP + a.before + a.during + a.after;
    let count = (a.rate * total).round() as u64;
    let start = Instant::now() + Duration::from_millis(200);
    let url = format!("http://{}/", a.proxy);
    let stream = loadgen::run_stream(
        Schedule {
            start,
            rate: a.rate,
            count,
            timeout: Duration::from_secs(5),
            inflight: Arc::new(AtomicUsize::new(0)),
            max_inflight: 2000,
        },
        |_| 0,
        move |c, _| c.get(&url),
    );

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, admin, pid) = (done.clone(), a.admin, a.seawall_pid);
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut next = start;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                let t = next.saturating_duration_since(start).as_secs_f64();
                out.extend(read_metrics(admin, pid, t));
                next += Duration::from_millis(250);
            }
            out
        })
    };

    // The reloads, on this thread, at fixed times.
    let first = start + Duration::from_secs_f64(WARMUP + a.before);
    let n = (a.during * 1000.0 / a.interval_ms as f64).floor() as usize;
    let mut actions = Vec::with_capacity(n);
    let (mut valid_i, mut invalid_i) = (0usize, 0usize);
    for k in 0..n {
        let due = first + Duration::from_millis(k as u64 * a.interval_ms);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let t = due.duration_since(start).as_secs_f64();
        let kind = if k % 10 == 9 && !invalid.is_empty() {
            Kind::Invalid
        } else if k % 2 == 1 {
            Kind::Post
        } else if k % 4 == 0 {
            Kind::FileInPlace
        } else {
            Kind::FileRename
        };
        let (mut status, mut post_ms) = (0, 0.0);
        match kind {
            Kind::Invalid => {
                save(&a.config, &invalid[invalid_i % invalid.len()], false);
                invalid_i += 1;
            }
            _ => {
                save(&a.config, &variants[valid_i % 2], kind == Kind::FileRename);
                valid_i += 1;
            }
        }
        if matches!(kind, Kind::Post | Kind::Invalid) {
            let t0 = Instant::now();
            status = loadgen::http_request(a.admin, "POST", "/-/reload").map_or(0, |r| r.0);
            post_ms = t0.elapsed().as_secs_f64() * 1000.0;
        }
        actions.push(Action {
            t,
            kind,
            status,
            post_ms,
        });
    }
    // Leave the file valid: if the last action was an invalid one, save a valid variant (the
    // watcher reloads it) and count it as a file action.
    if actions.last().is_some_and(|x| x.kind == Kind::Invalid) {
        let t = Instant::now().duration_since(start).as_secs_f64();
        save(&a.config, &variants[valid_i % 2], false);
        valid_i += 1;
        actions.push(Action {
            t,
            kind: Kind::FileInPlace,
            status: 0,
            post_ms: 0.0,
        });
    }
    let final_content = variants[(valid_i + 1) % 2].clone();

    let samples = stream.join().expect("stream");
    // Let the watcher see the last save (it debounces 100 ms and checks every second).
    std::thread::sleep(Duration::from_millis(1500));
    done.store(true, Ordering::Relaxed);
    let readings = sampler.join().expect("sampler");
    let end = read_metrics(a.admin, a.seawall_pid, total);
    let config = loadgen::http_request(a.admin, "GET", "/-/config").map(|r| r.1);
    eprintln!("cpu generator {:.2}", loadgen::cpu_seconds(a.clk_tck));
    report(
        &a,
        start,
        &samples,
        &actions,
        &readings,
        end,
        config,
        &final_content,
    )
}

fn t_of(s: &Sample, start: Instant) -> f64 {
    s.due.saturating_duration_since(start).as_secs_f64()
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &RunArgs,
    start: Instant,
    samples: &[Sample],
    actions: &[Action],
    readings: &[Reading],
    end: Option<Reading>,
    config: Option<String>,
    final_content: &[u8],
) -> i32 {
    let r_from = WARMUP + a.before;
    let r_to = r_from + a.during;
    let phase = |s: &Sample| {
        let t = t_of(s, start);
        if t < WARMUP {
            0
        } else if t < r_from {
            1
        } else if t < r_to {
            2
        } else {
            3
        }
    };
    println!("{}", a.describe);
    println!(
        "steady stream: GET / at {} r/s, open loop ({WARMUP} s warm-up not counted); latency from the scheduled send time",
        a.rate
    );
    let mut p99 = [f64::NAN; 4];
    let mut errors_total = 0;
    for (i, name) in [(1, "before"), (2, "during"), (3, "after")] {
        let v: Vec<&Sample> = samples.iter().filter(|s| phase(s) == i).collect();
        let s = summarize(v.iter().map(|s| s.latency_us));
        let errors = v.iter().filter(|s| s.status != 200).count();
        errors_total += errors;
        p99[i] = s.p99;
        println!(
            "  {name:<7} sent {:>6}  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  max {:>6.2} ms  errors {errors}",
            s.n, s.p50, s.p99, s.p999, s.max
        );
    }
    let warm_errors = samples
        .iter()
        .filter(|s| phase(s) == 0 && s.status != 200)
        .count();
    if warm_errors > 0 {
        println!("  (warm-up errors, not counted: {warm_errors})");
    }
    println!(
        "  p99 during the reloads / before: {:.2}x; throughput {:.0} r/s answered over the run",
        p99[2] / p99[1],
        samples.iter().filter(|s| s.status == 200).count() as f64
            / (WARMUP + a.before + a.during + a.after)
    );

    let of = |k: Kind| actions.iter().filter(|x| x.kind == k).count();
    let posts: Vec<&Action> = actions.iter().filter(|x| x.kind == Kind::Post).collect();
    let bad: Vec<&Action> = actions.iter().filter(|x| x.kind == Kind::Invalid).collect();
    let post_ok = posts.iter().filter(|x| x.status == 200).count();
    let bad_422 = bad.iter().filter(|x| x.status == 422).count();
    let post_ms = summarize(
        posts
            .iter()
            .chain(&bad)
            .map(|x| (x.post_ms * 1000.0) as u64),
    );
    println!(
        "reloads: {} actions, every {} ms for {} s: {} saves only (watcher; {} in place, {} by rename), {} saves + POST /-/reload ({} answered 200), {} invalid saves + POST ({} answered 422)",
        actions.len(),
        a.interval_ms,
        a.during,
        of(Kind::FileInPlace) + of(Kind::FileRename),
        of(Kind::FileInPlace),
        of(Kind::FileRename),
        posts.len(),
        post_ok,
        bad.len(),
        bad_422
    );
    println!(
        "  POST /-/reload took p50 {:.1} ms, max {:.1} ms (the reload itself, answered when done)",
        post_ms.p50, post_ms.max
    );
    let first = readings.first();
    let (mut ok_reloads, mut ok_final) = (true, false);
    if let (Some(f), Some(e)) = (first, &end) {
        println!(
            "  /metrics seawall_config_reloads_total: success +{:.0}, failure +{:.0}; seawall_config_generation {:.0} -> {:.0} (+{:.0})",
            e.success - f.success,
            e.failure - f.failure,
            f.generation,
            e.generation,
            e.generation - f.generation
        );
        println!(
            "  (each save is also seen by the watcher, so a save + POST can count twice, and an invalid save fails twice: once for the watcher, once for the POST)"
        );
        // Every valid POST must have bumped the generation; every invalid action must have
        // failed at least once; no valid save may have failed.
        ok_reloads = e.generation - f.generation >= post_ok as f64
            && e.failure - f.failure >= bad.len() as f64;
        println!(
            "  Seawall VmRSS {:.1} MiB before the reloads, {:.1} MiB at the end",
            readings
                .iter()
                .rfind(|r| r.t <= r_from)
                .map_or(0.0, |r| r.rss as f64 / 1048576.0),
            e.rss as f64 / 1048576.0
        );
    } else {
        println!("  /metrics could not be read");
    }
    if let Some(c) = &config {
        let v: serde_json::Value = serde_json::from_str(c).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(final_content));
        let live = v["files"]
            .as_array()
            .and_then(|f| f.first())
            .and_then(|f| f["sha256"].as_str())
            .unwrap_or("");
        ok_final = v["last_reload"]["ok"] == true && live == digest;
        println!(
            "  /-/config at the end: generation {}, last_reload.ok {}, the live config is the file's last valid content: {}",
            v["generation"],
            v["last_reload"]["ok"],
            if live == digest { "yes" } else { "NO" }
        );
    }
    let ok_answers = post_ok == posts.len() && bad_422 == bad.len();
    println!(
        "TARGET zero errors in the stream: {errors_total}  {}",
        if errors_total == 0 { "MET" } else { "NOT MET" }
    );
    println!(
        "TARGET every valid POST answered 200, every invalid one 422: {post_ok}/{} and {bad_422}/{}  {}",
        posts.len(),
        bad.len(),
        if ok_answers { "MET" } else { "NOT MET" }
    );
    println!(
        "TARGET counters agree (generation +>= valid POSTs, failures >= invalid saves) and the last valid config is live: {}",
        if ok_reloads && ok_final {
            "MET"
        } else {
            "NOT MET"
        }
    );
    if let Err(e) = draw(a, start, samples, actions, readings) {
        eprintln!("chart not drawn: {e}");
        return 1;
    }
    if errors_total == 0 && ok_answers && ok_reloads && ok_final {
        0
    } else {
        3
    }
}

fn draw(
    a: &RunArgs,
    start: Instant,
    samples: &[Sample],
    actions: &[Action],
    readings: &[Reading],
) -> Result<(), String> {
    let b = loadgen::buckets(
        samples
            .iter()
            .map(|s| (t_of(s, start), s.latency_us, s.status == 200)),
        1.0,
    );
    let markers: Vec<(f64, chart::RGBColor)> = actions
        .iter()
        .map(|x| {
            let c = match x.kind {
                Kind::Invalid => chart::RED,
                Kind::Post => chart::TEAL,
                Kind::FileInPlace | Kind::FileRename => chart::GREEN,
            };
            (x.t, c)
        })
        .collect();
    let r_from = WARMUP + a.before;
    let spans = vec![
        (WARMUP, r_from, "before".to_string()),
        (
            r_from,
            r_from + a.during,
            "reloads (green: save, teal: save + POST, red: invalid + POST)".to_string(),
        ),
    ];
    let lat = Panel {
        y_desc: "latency, ms (log)".into(),
        log_y: true,
        series: vec![
            Series::new(
                "each request",
                chart::GREY,
                Style::Dots,
                samples
                    .iter()
                    .map(|s| (t_of(s, start), s.latency_us as f64 / 1000.0))
                    .collect(),
            ),
            Series::new(
                "p99 per 1 s",
                chart::BLUE,
                Style::Line,
                b.iter().map(|b| (b.t + 0.5, b.p99)).collect(),
            ),
            Series::new(
                "p50 per 1 s",
                chart::BLUE,
                Style::Dashed,
                b.iter().map(|b| (b.t + 0.5, b.p50)).collect(),
            ),
        ],
        markers: markers.clone(),
        spans,
    };
    let f0 = readings
        .first()
        .map_or((0.0, 0.0), |r| (r.success, r.failure));
    let counts = Panel {
        y_desc: "reloads since the start".into(),
        series: vec![
            Series::new(
                "success (/metrics)",
                chart::GREEN,
                Style::Line,
                readings.iter().map(|r| (r.t, r.success - f0.0)).collect(),
            ),
            Series::new(
                "failure (/metrics)",
                chart::RED,
                Style::Line,
                readings.iter().map(|r| (r.t, r.failure - f0.1)).collect(),
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
                .map(|r| (r.t, r.rss as f64 / 1048576.0))
                .collect(),
        )],
        markers,
        ..Panel::default()
    };
    let end = WARMUP + a.before + a.during + a.after + 1.5;
    let text = chart::draw(
        &a.chart,
        &format!(
            "reload-under-load: {} r/s steady; a reload every {} ms for {} s",
            a.rate, a.interval_ms, a.during
        ),
        "seconds since the start",
        (0.0, end),
        1100,
        &[lat, counts, mem],
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
