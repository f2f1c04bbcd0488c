//! `vs_nginx bench`: the same load, in alternation, at the upstream directly (the machine's
//! physical limit) and at each proxy given (`--target NAME=ADDR=PID`), reading each one's CPU
//! and memory from /proc: per round, for each target, a closed loop (max throughput, and CPU
//! per request at that load) then an open loop at a fixed rate (CPU per request, latency).
//! Rounds alternate the order of the proxies (ABBA), so a drift of the machine over the run hits
//! all alike. Prints the report, ratios to the first proxy given (nginx), and draws the chart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use crate::chart::{self, Panel, Series, Style};
use crate::loadgen::{self, Schedule, summarize};

/// A proxy under test: a name for the report, where it listens, its pid (its children's CPU
/// and memory count too: nginx's workers).
#[derive(Clone)]
pub struct TargetArg {
    name: String,
    addr: SocketAddr,
    pid: u32,
}

pub fn parse_target(s: &str) -> Result<TargetArg, String> {
    let mut it = s.splitn(3, '=');
    let (Some(name), Some(addr), Some(pid)) = (it.next(), it.next(), it.next()) else {
        return Err(format!("{s:?}: expected NAME=ADDR=PID"));
    };
    Ok(TargetArg {
        name: name.to_string(),
        addr: addr.parse().map_err(|e| format!("{addr:?}: {e}"))?,
        pid: pid.parse().map_err(|e| format!("{pid:?}: {e}"))?,
    })
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The upstream's address (the "no proxy" target) and pid.
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long)]
    upstream_pid: u32,
    /// A proxy to measure, NAME=ADDR=PID; repeated, in order. Ratios are to the first.
    #[arg(long = "target", value_parser = parse_target, required = true)]
    targets: Vec<TargetArg>,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Closed loop: connections, and seconds measured after `warmup` seconds.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 5.0)]
    closed_seconds: f64,
    /// Open loop: requests per second, and seconds measured after `warmup` seconds.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    open_seconds: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Each phase stops after this many requests whatever its time.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    #[arg(long)]
    chart: PathBuf,
    #[arg(long, default_value_t = 100.0)]
    clk_tck: f64,
    /// For the report's header.
    #[arg(long, default_value = "")]
    describe: String,
}

const COLORS: [chart::RGBColor; 6] = [
    chart::GREEN,
    chart::ORANGE,
    chart::PURPLE,
    chart::BLUE,
    chart::RED,
    chart::TEAL,
];

/// Target 0 is the upstream itself ("no proxy"); 1.. are the proxies, in the order given.
struct Target {
    name: String,
    addr: SocketAddr,
    /// Whose CPU and memory are this target's (none for "no proxy": the upstream is counted
    /// on its own).
    pids: Vec<u32>,
    color: chart::RGBColor,
}

/// CPU seconds by process group (the targets' pids, then the upstream, the generator, and the
/// whole machine), and when they were read.
#[derive(Clone)]
struct Cpu {
    by: Vec<f64>,
    at: Instant,
}

struct Procs {
    groups: Vec<Vec<u32>>,
    upstream: u32,
    clk: f64,
}

impl Procs {
    fn sample(&self) -> Cpu {
        let proc_cpu = |pids: &[u32]| -> f64 {
            pids.iter()
                .map(|&p| loadgen::process_cpu_seconds(p, self.clk))
                .sum()
        };
        let mut by: Vec<f64> = self.groups.iter().map(|g| proc_cpu(g)).collect();
        by.push(proc_cpu(&[self.upstream]));
        by.push(loadgen::cpu_seconds(self.clk));
        by.push(loadgen::machine_busy_seconds(self.clk));
        Cpu {
            by,
            at: Instant::now(),
        }
    }
}

/// What one measured part used: each group's CPU seconds, and the rest of the machine's
/// ("not this test").
struct Used {
    targets: Vec<f64>,
    upstream: f64,
    generator: f64,
    other: f64,
    wall: f64,
}

fn used(a: &Cpu, b: &Cpu) -> Used {
    let d: Vec<f64> = b.by.iter().zip(&a.by).map(|(x, y)| x - y).collect();
    let n = d.len();
    let ours: f64 = d[..n - 1].iter().sum();
    Used {
        targets: d[..n - 3].to_vec(),
        upstream: d[n - 3],
        generator: d[n - 2],
        other: (d[n - 1] - ours).max(0.0),
        wall: (b.at - a.at).as_secs_f64(),
    }
}

/// Samples the CPU at `at` on a thread (the load runs on this one).
fn sample_at(procs: &Arc<Procs>, at: Instant) -> std::thread::JoinHandle<Cpu> {
    let procs = procs.clone();
    std::thread::spawn(move || {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        procs.sample()
    })
}

struct ClosedRun {
    target: usize,
    round: usize,
    rps: f64,
    errors: u64,
    p99: f64,
    /// Cores busy: the target, upstream, generator, not this test.
    cores: [f64; 4],
    per_second: Vec<(f64, f64, f64, f64)>, // t, r/s, p50, p99
}

struct OpenRun {
    target: usize,
    round: usize,
    sent: usize,
    errors: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    /// p50 and p99 from the actual send (without the generator's own send lag).
    sent_p50: f64,
    sent_p99: f64,
    lag_p99: f64,
    /// CPU seconds per 10,000 requests: the target, upstream, generator.
    cpu_per_10k: [f64; 3],
    other_cores: f64,
    per_second: Vec<(f64, f64, f64)>, // t, p50, p99
    /// The same from the actual send.
    per_second_sent: Vec<(f64, f64, f64)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn rss(pids: &[u32]) -> (u64, u64) {
    (
        pids.iter()
            .map(|&p| loadgen::status_bytes(p, "VmRSS"))
            .sum(),
        pids.iter().map(|&p| loadgen::pss_bytes(p)).sum(),
    )
}

pub fn run(a: BenchArgs) -> i32 {
    let mut targets = vec![Target {
        name: "no proxy".into(),
        addr: a.upstream,
        pids: Vec::new(),
        color: chart::GREY,
    }];
    for (i, t) in a.targets.iter().enumerate() {
        targets.push(Target {
            name: t.name.clone(),
            addr: t.addr,
            pids: loadgen::with_children(t.pid),
            color: COLORS[i % COLORS.len()],
        });
    }
    let procs = Arc::new(Procs {
        groups: targets.iter().map(|t| t.pids.clone()).collect(),
        upstream: a.upstream_pid,
        clk: a.clk_tck,
    });
    let warmup = Duration::from_secs_f64(a.warmup);
    let mem_before: Vec<(u64, u64)> = targets.iter().map(|t| rss(&t.pids)).collect();
    let mut closed: Vec<ClosedRun> = Vec::new();
    let mut open: Vec<OpenRun> = Vec::new();
    let run_start = Instant::now();
    for round in 0..a.rounds {
        let mut order: Vec<usize> = (1..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        order.insert(0, 0);
        for ti in order {
            let t = &targets[ti];
            eprintln!(
                "  round {} {:<13} closed loop {} s, then {} r/s for {} s",
                round + 1,
                t.name,
                a.closed_seconds,
                a.rate,
                a.open_seconds
            );
            closed.push(closed_run(&a, &procs, t, ti, round, warmup));
            std::thread::sleep(Duration::from_millis(500));
            open.push(open_run(&a, &procs, t, ti, round, warmup));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let total = run_start.elapsed().as_secs_f64();
    let mem_after: Vec<(u64, u64)> = targets
        .iter()
        .map(|t| match t.pids.first() {
            Some(&pid) => rss(&loadgen::with_children(pid)),
            None => (0, 0),
        })
        .collect();
    report(&a, &targets, &closed, &open, &mem_before, &mem_after, total);
    if let Err(e) = draw(&a, &targets, &closed, &open) {
        eprintln!("chart not drawn: {e}");
        return 1;
    }
    0
}

fn closed_run(
    a: &BenchArgs,
    procs: &Arc<Procs>,
    t: &Target,
    ti: usize,
    round: usize,
    warmup: Duration,
) -> ClosedRun {
    let t0 = Instant::now();
    let c0 = sample_at(procs, t0 + warmup);
    let r = loadgen::closed_loop(
        t.addr,
        "/",
        a.connections,
        warmup,
        Duration::from_secs_f64(a.closed_seconds),
        a.max_requests,
    );
    let c1 = procs.sample();
    let u = used(&c0.join().expect("sampler"), &c1);
    let b = loadgen::buckets(
        r.samples.iter().map(|&(t, l)| (t as f64, l as u64, true)),
        1.0,
    );
    let s = summarize(r.samples.iter().map(|&(_, l)| l as u64));
    let target_cores = if ti == 0 { 0.0 } else { u.targets[ti] / u.wall };
    ClosedRun {
        target: ti,
        round,
        rps: r.ok as f64 / a.closed_seconds,
        errors: r.errors,
        p99: s.p99,
        cores: [
            target_cores,
            u.upstream / u.wall,
            u.generator / u.wall,
            u.other / u.wall,
        ],
        per_second: b
            .iter()
            .filter(|b| b.t < a.closed_seconds)
            .map(|b| (b.t + 0.5, b.n as f64, b.p50, b.p99))
            .collect(),
    }
}

fn open_run(
    a: &BenchArgs,
    procs: &Arc<Procs>,
    t: &Target,
    ti: usize,
    round: usize,
    warmup: Duration,
) -> OpenRun {
    let count = ((a.rate * (a.warmup + a.open_seconds)).round() as u64).min(a.max_requests);
    let start = Instant::now() + Duration::from_millis(100);
    let measured_from = start + warmup;
    let measured_to = measured_from + Duration::from_secs_f64(a.open_seconds);
    let c0 = sample_at(procs, measured_from);
    // CPU of the measured requests: until the last one is sent, plus a little for the last
    // answers (at this rate they take well under a millisecond).
    let c1 = sample_at(procs, measured_to + Duration::from_millis(50));
    let url = format!("http://{}/", t.addr);
    let w = a.warmup;
    let stream = loadgen::run_stream(
        Schedule {
            start,
            rate: a.rate,
            count,
            timeout: Duration::from_secs(5),
            inflight: Arc::new(AtomicUsize::new(0)),
            max_inflight: 2000,
        },
        move |off| u8::from(off >= w),
        move |c, _| c.get(&url),
    );
    let samples = stream.join().expect("stream");
    let u = used(&c0.join().expect("sampler"), &c1.join().expect("sampler"));
    let m: Vec<_> = samples.iter().filter(|s| s.phase == 1).collect();
    let s = summarize(m.iter().map(|s| s.latency_us));
    let lag = summarize(m.iter().map(|s| s.lag_us));
    let from_send = summarize(m.iter().map(|s| s.latency_us.saturating_sub(s.lag_us)));
    let n = m.len() as f64;
    let per_second = |from_send: bool| -> Vec<(f64, f64, f64)> {
        loadgen::buckets(
            m.iter().map(|s| {
                let l = if from_send {
                    s.latency_us.saturating_sub(s.lag_us)
                } else {
                    s.latency_us
                };
                (
                    s.due.duration_since(measured_from).as_secs_f64(),
                    l,
                    s.status == 200,
                )
            }),
            1.0,
        )
        .iter()
        .map(|b| (b.t + 0.5, b.p50, b.p99))
        .collect()
    };
    let per_10k = |cpu: f64| cpu / n * 10_000.0;
    OpenRun {
        target: ti,
        round,
        sent: m.len(),
        errors: m.iter().filter(|s| s.status != 200).count(),
        p50: s.p50,
        p99: s.p99,
        p999: s.p999,
        sent_p50: from_send.p50,
        sent_p99: from_send.p99,
        lag_p99: lag.p99,
        cpu_per_10k: [
            if ti == 0 { 0.0 } else { per_10k(u.targets[ti]) },
            per_10k(u.upstream),
            per_10k(u.generator),
        ],
        other_cores: u.other / u.wall,
        per_second: per_second(false),
        per_second_sent: per_second(true),
    }
}

/// Medians over one target's runs.
struct Medians {
    rps: f64,
    /// CPU microseconds per request in the closed loop (at the target's max throughput).
    closed_us: f64,
    /// CPU seconds per 10k requests at the fixed rate.
    open_cpu: f64,
    p99: f64,
    sent_p99: f64,
}

fn medians(ti: usize, closed: &[ClosedRun], open: &[OpenRun]) -> Medians {
    let c: Vec<&ClosedRun> = closed.iter().filter(|r| r.target == ti).collect();
    let o: Vec<&OpenRun> = open.iter().filter(|r| r.target == ti).collect();
    Medians {
        rps: median(c.iter().map(|r| r.rps).collect()),
        closed_us: median(c.iter().map(|r| r.cores[0] / r.rps * 1e6).collect()),
        open_cpu: median(o.iter().map(|r| r.cpu_per_10k[0]).collect()),
        p99: median(o.iter().map(|r| r.p99).collect()),
        sent_p99: median(o.iter().map(|r| r.sent_p99).collect()),
    }
}

fn report(
    a: &BenchArgs,
    targets: &[Target],
    closed: &[ClosedRun],
    open: &[OpenRun],
    mem_before: &[(u64, u64)],
    mem_after: &[(u64, u64)],
    total: f64,
) {
    println!("{}", a.describe);
    println!(
        "(a) max throughput: closed loop, {} keep-alive connections sending back to back, {} s per run after {} s warm-up; {} rounds, order alternated",
        a.connections, a.closed_seconds, a.warmup, a.rounds
    );
    println!(
        "    {:<13} {:>24}  {:>9}  {:>8}  {:>10}  cores busy (proxy | upstream | generator | not this test)",
        "", "r/s per run", "median", "p99 ms", "CPU us/req"
    );
    let med: Vec<Medians> = (0..targets.len())
        .map(|ti| medians(ti, closed, open))
        .collect();
    for (ti, t) in targets.iter().enumerate() {
        let runs: Vec<&ClosedRun> = closed.iter().filter(|r| r.target == ti).collect();
        let cores = |k: usize| median(runs.iter().map(|r| r.cores[k]).collect());
        let errors: u64 = runs.iter().map(|r| r.errors).sum();
        println!(
            "    {:<13} {:>24}  {:>9.0}  {:>8.2}  {:>10.1}  {:.2} | {:.2} | {:.2} | {:.2}{}",
            t.name,
            runs.iter()
                .map(|r| format!("{:.0}", r.rps))
                .collect::<Vec<_>>()
                .join(" "),
            med[ti].rps,
            median(runs.iter().map(|r| r.p99).collect()),
            if ti == 0 { f64::NAN } else { med[ti].closed_us },
            cores(0),
            cores(1),
            cores(2),
            cores(3),
            if errors > 0 {
                format!("  ERRORS {errors}")
            } else {
                String::new()
            }
        );
    }
    println!(
        "(b, c) fixed rate: open loop at {} r/s, {} s per run after {} s warm-up; latency from the scheduled send time",
        a.rate, a.open_seconds, a.warmup
    );
    println!(
        "    {:<13} {:>8} {:>8} {:>8} {:>7}  {:>17}  CPU s per 10,000 requests (proxy | upstream | generator)  not this test (cores)",
        "", "p50 ms", "p99 ms", "p99.9 ms", "errors", "from send p50/p99"
    );
    for (ti, t) in targets.iter().enumerate() {
        for r in open.iter().filter(|r| r.target == ti) {
            println!(
                "    {:<13} {:>8.3} {:>8.3} {:>8.3} {:>7}  {:>8.3}/{:<8.3}  {:.2} | {:.2} | {:.2}   {:.2}   (round {}, sent {}, send lag p99 {:.2} ms)",
                t.name,
                r.p50,
                r.p99,
                r.p999,
                r.errors,
                r.sent_p50,
                r.sent_p99,
                r.cpu_per_10k[0],
                r.cpu_per_10k[1],
                r.cpu_per_10k[2],
                r.other_cores,
                r.round + 1,
                r.sent,
                r.lag_p99
            );
        }
    }
    let mb = |b: u64| b as f64 / 1048576.0;
    println!("(d) memory (sum over the proxy's processes; PSS shares pages the processes share):");
    for (ti, t) in targets.iter().enumerate().skip(1) {
        let ((r0, p0), (r1, p1)) = (mem_before[ti], mem_after[ti]);
        println!(
            "    {:<13} VmRSS {:>6.1} MiB after the run ({:.1} before)   PSS {:>6.1} MiB after ({:.1} before)",
            t.name,
            mb(r1),
            mb(r0),
            mb(p1),
            mb(p0)
        );
    }
    let base = 1;
    println!(
        "ratios to {} (medians of the runs; no proxy: {:.0} r/s, p99 {:.3} ms at {} r/s):",
        targets[base].name, med[0].rps, med[0].p99, a.rate
    );
    println!(
        "    {:<13} {:>18} {:>22} {:>22} {:>18} {:>18} {:>16}",
        "",
        "(a) max r/s",
        "(a) CPU us/req closed",
        "(b) CPU us/req at rate",
        "(c) p99 ms",
        "p99 from send",
        "(d) VmRSS MiB"
    );
    let b = &med[base];
    for (ti, t) in targets.iter().enumerate().skip(1) {
        let m = &med[ti];
        let cell = |v: f64, base: f64, digits: usize| format!("{v:.digits$} ({:.2}x)", v / base);
        println!(
            "    {:<13} {:>18} {:>22} {:>22} {:>18} {:>18} {:>16}",
            t.name,
            cell(m.rps, b.rps, 0),
            cell(m.closed_us, b.closed_us, 1),
            cell(m.open_cpu * 100.0, b.open_cpu * 100.0, 1),
            cell(m.p99, b.p99, 3),
            cell(m.sent_p99, b.sent_p99, 3),
            cell(mb(mem_after[ti].0), mb(mem_after[base].0), 1),
        );
    }
    let other = closed
        .iter()
        .map(|r| r.cores[3])
        .chain(open.iter().map(|r| r.other_cores))
        .fold(0.0, f64::max);
    println!(
        "    run took {total:.0} s; the most CPU other processes took during any measured part: {other:.2} cores{}",
        if other > 0.15 {
            "  WARNING: not a clean measurement"
        } else {
            ""
        }
    );
    for (ti, t) in targets.iter().enumerate().skip(1) {
        let m = &med[ti];
        println!(
            "RESULT {} throughput {:.3} cpu_closed {:.3} cpu {:.3} p99 {:.3} rss {:.3}",
            t.name,
            m.rps / b.rps,
            m.closed_us / b.closed_us,
            m.open_cpu / b.open_cpu,
            m.p99 / b.p99,
            mem_after[ti].0 as f64 / mem_after[base].0 as f64
        );
    }
}

fn draw(
    a: &BenchArgs,
    targets: &[Target],
    closed: &[ClosedRun],
    open: &[OpenRun],
) -> Result<(), String> {
    let mut lat = Panel {
        y_desc: format!("{} r/s: from schedule, ms (log)", a.rate),
        log_y: true,
        ..Panel::default()
    };
    let mut sent = Panel {
        y_desc: format!("{} r/s: from send, ms (log)", a.rate),
        log_y: true,
        ..Panel::default()
    };
    let mut thr = Panel {
        y_desc: "closed loop: requests/s".into(),
        ..Panel::default()
    };
    let mut cl = Panel {
        y_desc: "closed loop: latency, ms (log)".into(),
        log_y: true,
        ..Panel::default()
    };
    for (ti, t) in targets.iter().enumerate() {
        for r in open.iter().filter(|r| r.target == ti) {
            let name = (r.round == 0).then_some(t.name.as_str());
            lat.series.extend(Series::p99_p50(
                name,
                t.color,
                r.per_second.iter().map(|p| (p.0, p.1, p.2)),
            ));
            sent.series.extend(Series::p99_p50(
                name,
                t.color,
                r.per_second_sent.iter().map(|p| (p.0, p.1, p.2)),
            ));
        }
        for r in closed.iter().filter(|r| r.target == ti) {
            let name = (r.round == 0).then_some(t.name.as_str());
            thr.series.push(Series::new(
                name.unwrap_or(""),
                t.color,
                Style::Line,
                r.per_second.iter().map(|p| (p.0, p.1)).collect(),
            ));
            cl.series.extend(Series::p99_p50(
                name,
                t.color,
                r.per_second.iter().map(|p| (p.0, p.2, p.3)),
            ));
        }
    }
    let text = chart::draw(
        &a.chart,
        &format!(
            "vs-nginx: per 1 s bucket, each round one line (solid p99, dashed p50; {} rounds)",
            a.rounds
        ),
        "seconds into the measured part of the run",
        (0.0, a.open_seconds.max(a.closed_seconds)),
        1100,
        &[lat, sent, thr, cl],
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
