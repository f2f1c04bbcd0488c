//! Helpers for `load-tests/vs-nginx` (not part of Seawall; run by that script).
//!
//! - `upstream`: the small fast upstream both proxies forward to (`shared/upstream.rs`).
//! - `bench`: drives the same load, in alternation, at the upstream directly (the machine's
//!   physical limit), at nginx and at Seawall, and reads each one's CPU and memory from /proc:
//!   per round, for each target, a closed loop (max throughput) then an open loop at a fixed
//!   rate (CPU per request, latency). Rounds alternate the order nginx/Seawall (ABBA), so a
//!   drift of the machine over the run hits both alike. Prints the report and draws the chart.
//! - `free-ports N`: prints N free 127.0.0.1 ports.
//! - `bare-pingora`: a Pingora proxy with nothing in its phases (one upstream, keep-alive), with
//!   the thread settings, client-connection buffers and allocator Seawall uses, for
//!   `--instructions`: what Pingora itself costs per request, before any of Seawall's work.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[path = "shared/chart.rs"]
mod chart;
#[path = "shared/loadgen.rs"]
mod loadgen;
#[path = "shared/upstream.rs"]
mod upstream;

use chart::{Panel, Series, Style};
use loadgen::{Schedule, summarize};

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
        #[arg(long, default_value_t = 1000)]
        body_bytes: usize,
    },
    Bench(BenchArgs),
    FreePorts {
        n: usize,
    },
    BarePingora {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        upstream: SocketAddr,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The upstream's address (the "no proxy" target) and pid.
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long)]
    upstream_pid: u32,
    /// nginx's address and its master's pid (its workers are found as its children).
    #[arg(long)]
    nginx: SocketAddr,
    #[arg(long)]
    nginx_pid: u32,
    #[arg(long)]
    seawall: SocketAddr,
    #[arg(long)]
    seawall_pid: u32,
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

fn main() {
    match Cli::parse().cmd {
        Cmd::Upstream {
            port,
            threads,
            body_bytes,
        } => upstream::run(port, threads, body_bytes),
        Cmd::FreePorts { n } => loadgen::print_free_ports(n),
        Cmd::Bench(a) => std::process::exit(bench(a)),
        Cmd::BarePingora { port, upstream } => bare::run(port, upstream),
    }
}

/// Seawall's allocator, so that `bare-pingora` differs from Seawall only in the proxy phases.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bare {
    use std::net::SocketAddr;

    use async_trait::async_trait;
    use pingora::proxy::{ProxyHttp, Session};
    use pingora::server::Server;
    use pingora::server::configuration::{Opt, ServerConf};
    use pingora::upstreams::peer::HttpPeer;

    struct Bare {
        upstream: SocketAddr,
    }

    #[async_trait]
    impl ProxyHttp for Bare {
        type CTX = ();
        fn new_ctx(&self) {}
        async fn upstream_peer(
            &self,
            _session: &mut Session,
            _ctx: &mut (),
        ) -> pingora::Result<Box<HttpPeer>> {
            Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
        }
    }

    /// One thread and no work stealing, as `seawall run` with `threads = 1` has.
    pub fn run(port: u16, upstream: SocketAddr) {
        let conf = ServerConf {
            threads: 1,
            work_stealing: false,
            // SIGTERM (the script's stop) ends it at once rather than after Pingora's grace.
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(1),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
        server.bootstrap();
        let mut proxy =
            pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
        // The same client-connection buffers as Seawall's, so that the difference is its features.
        proxy.add_listener(
            pingora::listeners::ListenerConfig::tcp(format!("127.0.0.1:{port}"))
                .l4_buffer(seawall::server::plain_tcp_buffers()),
        );
        server.add_service(proxy);
        server.run_forever();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Direct,
    Nginx,
    Seawall,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "no proxy",
            Target::Nginx => "nginx",
            Target::Seawall => "Seawall",
        }
    }
    fn color(self) -> chart::RGBColor {
        match self {
            Target::Direct => chart::GREY,
            Target::Nginx => chart::GREEN,
            Target::Seawall => chart::BLUE,
        }
    }
}

/// The processes whose CPU is counted, by group.
struct Procs {
    groups: Vec<(&'static str, Vec<u32>)>,
    clk: f64,
}

/// CPU seconds by group ("generator" = this process, "machine" = all cores), and the time.
#[derive(Clone)]
struct Cpu {
    by: BTreeMap<&'static str, f64>,
    at: Instant,
}

impl Procs {
    fn sample(&self) -> Cpu {
        let mut by = BTreeMap::new();
        for (name, pids) in &self.groups {
            let s = pids
                .iter()
                .map(|&p| loadgen::process_cpu_seconds(p, self.clk))
                .sum();
            by.insert(*name, s);
        }
        by.insert("generator", loadgen::cpu_seconds(self.clk));
        by.insert("machine", loadgen::machine_busy_seconds(self.clk));
        Cpu {
            by,
            at: Instant::now(),
        }
    }
}

/// CPU used between two samples, by group, plus "not this test" (machine minus all of ours).
fn cpu_delta(a: &Cpu, b: &Cpu) -> (BTreeMap<&'static str, f64>, f64) {
    let mut d: BTreeMap<&'static str, f64> = BTreeMap::new();
    for (k, v) in &b.by {
        d.insert(k, v - a.by.get(k).copied().unwrap_or(0.0));
    }
    let ours: f64 = d
        .iter()
        .filter(|(k, _)| **k != "machine")
        .map(|(_, v)| v)
        .sum();
    let other = (d["machine"] - ours).max(0.0);
    (d, other)
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
    target: Target,
    round: usize,
    rps: f64,
    errors: u64,
    p99: f64,
    cores: BTreeMap<&'static str, f64>,
    other_cores: f64,
    per_second: Vec<(f64, f64, f64, f64)>, // t, r/s, p50, p99
}

struct OpenRun {
    target: Target,
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
    cpu_per_10k: BTreeMap<&'static str, f64>,
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

fn bench(a: BenchArgs) -> i32 {
    let nginx_pids = loadgen::with_children(a.nginx_pid);
    let procs = Arc::new(Procs {
        groups: vec![
            ("nginx", nginx_pids.clone()),
            ("Seawall", vec![a.seawall_pid]),
            ("upstream", vec![a.upstream_pid]),
        ],
        clk: a.clk_tck,
    });
    let addr = |t: Target| match t {
        Target::Direct => a.upstream,
        Target::Nginx => a.nginx,
        Target::Seawall => a.seawall,
    };
    let warmup = Duration::from_secs_f64(a.warmup);
    let rss = |pids: &[u32]| -> (u64, u64) {
        (
            pids.iter()
                .map(|&p| loadgen::status_bytes(p, "VmRSS"))
                .sum(),
            pids.iter().map(|&p| loadgen::pss_bytes(p)).sum(),
        )
    };
    let mem_before = [
        ("nginx", rss(&nginx_pids)),
        ("Seawall", rss(&[a.seawall_pid])),
    ];
    let mut closed: Vec<ClosedRun> = Vec::new();
    let mut open: Vec<OpenRun> = Vec::new();
    let run_start = Instant::now();
    for round in 0..a.rounds {
        let order = if round % 2 == 0 {
            [Target::Direct, Target::Nginx, Target::Seawall]
        } else {
            [Target::Direct, Target::Seawall, Target::Nginx]
        };
        for t in order {
            eprintln!(
                "  round {} {:<8} closed loop {} s, then {} r/s for {} s",
                round + 1,
                t.name(),
                a.closed_seconds,
                a.rate,
                a.open_seconds
            );
            // Closed loop.
            let t0 = Instant::now();
            let c0 = sample_at(&procs, t0 + warmup);
            let r = loadgen::closed_loop(
                addr(t),
                "/",
                a.connections,
                warmup,
                Duration::from_secs_f64(a.closed_seconds),
                a.max_requests,
            );
            let c1 = procs.sample();
            let c0 = c0.join().expect("sampler");
            let wall = (c1.at - c0.at).as_secs_f64();
            let (d, other) = cpu_delta(&c0, &c1);
            let b = loadgen::buckets(
                r.samples.iter().map(|&(t, l)| (t as f64, l as u64, true)),
                1.0,
            );
            let s = summarize(r.samples.iter().map(|&(_, l)| l as u64));
            closed.push(ClosedRun {
                target: t,
                round,
                rps: r.ok as f64 / a.closed_seconds,
                errors: r.errors,
                p99: s.p99,
                cores: d.iter().map(|(k, v)| (*k, v / wall)).collect(),
                other_cores: other / wall,
                per_second: b
                    .iter()
                    .filter(|b| b.t < a.closed_seconds)
                    .map(|b| (b.t + 0.5, b.n as f64, b.p50, b.p99))
                    .collect(),
            });
            std::thread::sleep(Duration::from_millis(500));

            // Open loop at a fixed rate.
            let count = (a.rate * (a.warmup + a.open_seconds)).round() as u64;
            let count = count.min(a.max_requests);
            let start = Instant::now() + Duration::from_millis(100);
            let measured_from = start + warmup;
            let measured_to = measured_from + Duration::from_secs_f64(a.open_seconds);
            let c0 = sample_at(&procs, measured_from);
            // CPU of the measured requests: until the last one is sent, plus a little for the
            // last answers (at this rate they take well under a millisecond).
            let c1 = sample_at(&procs, measured_to + Duration::from_millis(50));
            let url = format!("http://{}/", addr(t));
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
            let (c0, c1) = (c0.join().expect("sampler"), c1.join().expect("sampler"));
            let (d, other) = cpu_delta(&c0, &c1);
            let wall = (c1.at - c0.at).as_secs_f64();
            let m: Vec<_> = samples.iter().filter(|s| s.phase == 1).collect();
            let s = summarize(m.iter().map(|s| s.latency_us));
            let lag = summarize(m.iter().map(|s| s.lag_us));
            let from_send = summarize(m.iter().map(|s| s.latency_us.saturating_sub(s.lag_us)));
            let n = m.len() as f64;
            let b = loadgen::buckets(
                m.iter().map(|s| {
                    (
                        s.due.duration_since(measured_from).as_secs_f64(),
                        s.latency_us,
                        s.status == 200,
                    )
                }),
                1.0,
            );
            let bs = loadgen::buckets(
                m.iter().map(|s| {
                    (
                        s.due.duration_since(measured_from).as_secs_f64(),
                        s.latency_us.saturating_sub(s.lag_us),
                        s.status == 200,
                    )
                }),
                1.0,
            );
            open.push(OpenRun {
                target: t,
                round,
                sent: m.len(),
                errors: m.iter().filter(|s| s.status != 200).count(),
                p50: s.p50,
                p99: s.p99,
                p999: s.p999,
                sent_p50: from_send.p50,
                sent_p99: from_send.p99,
                lag_p99: lag.p99,
                cpu_per_10k: d.iter().map(|(k, v)| (*k, v / n * 10_000.0)).collect(),
                other_cores: other / wall,
                per_second: b.iter().map(|b| (b.t + 0.5, b.p50, b.p99)).collect(),
                per_second_sent: bs.iter().map(|b| (b.t + 0.5, b.p50, b.p99)).collect(),
            });
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let total = run_start.elapsed().as_secs_f64();
    let mem_after = [
        ("nginx", rss(&loadgen::with_children(a.nginx_pid))),
        ("Seawall", rss(&[a.seawall_pid])),
    ];
    report(&a, &closed, &open, &mem_before, &mem_after, total);
    if let Err(e) = draw(&a, &closed, &open) {
        eprintln!("chart not drawn: {e}");
        return 1;
    }
    0
}

fn proxy_key(t: Target) -> Option<&'static str> {
    match t {
        Target::Direct => None,
        Target::Nginx => Some("nginx"),
        Target::Seawall => Some("Seawall"),
    }
}

fn report(
    a: &BenchArgs,
    closed: &[ClosedRun],
    open: &[OpenRun],
    mem_before: &[(&str, (u64, u64)); 2],
    mem_after: &[(&str, (u64, u64)); 2],
    total: f64,
) {
    let targets = [Target::Direct, Target::Nginx, Target::Seawall];
    println!("{}", a.describe);
    println!(
        "(a) max throughput: closed loop, {} keep-alive connections sending back to back, {} s per run after {} s warm-up; {} rounds, order alternated",
        a.connections, a.closed_seconds, a.warmup, a.rounds
    );
    println!(
        "    {:<9} {:>30}  {:>9}  {:>8}  cores busy (proxy | upstream | generator | not this test)",
        "", "r/s per run", "median", "p99 ms"
    );
    let mut med_rps = BTreeMap::new();
    for t in targets {
        let runs: Vec<&ClosedRun> = closed.iter().filter(|r| r.target == t).collect();
        let rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
        let m = median(rps.clone());
        med_rps.insert(t, m);
        let cores = |k: &str| median(runs.iter().map(|r| r.cores[k]).collect());
        let proxy = proxy_key(t).map_or(0.0, cores);
        let errors: u64 = runs.iter().map(|r| r.errors).sum();
        println!(
            "    {:<9} {:>30}  {:>9.0}  {:>8.2}  {:.2} | {:.2} | {:.2} | {:.2}{}",
            t.name(),
            rps.iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            m,
            median(runs.iter().map(|r| r.p99).collect()),
            proxy,
            cores("upstream"),
            cores("generator"),
            median(runs.iter().map(|r| r.other_cores).collect()),
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
        "    {:<9} {:>8} {:>8} {:>8} {:>7}  {:>17}  CPU s per 10,000 requests (proxy | upstream | generator)  not this test (cores)",
        "", "p50 ms", "p99 ms", "p99.9 ms", "errors", "from send p50/p99"
    );
    // (CPU s per 10k, p99 from the schedule, p99 from the send)
    let mut med_open: BTreeMap<Target, (f64, f64, f64)> = BTreeMap::new();
    for t in targets {
        let runs: Vec<&OpenRun> = open.iter().filter(|r| r.target == t).collect();
        for r in &runs {
            let c = |k: &str| r.cpu_per_10k[k];
            println!(
                "    {:<9} {:>8.3} {:>8.3} {:>8.3} {:>7}  {:>8.3}/{:<8.3}  {:.2} | {:.2} | {:.2}   {:.2}   (round {}, sent {}, send lag p99 {:.2} ms)",
                t.name(),
                r.p50,
                r.p99,
                r.p999,
                r.errors,
                r.sent_p50,
                r.sent_p99,
                proxy_key(t).map_or(0.0, c),
                c("upstream"),
                c("generator"),
                r.other_cores,
                r.round + 1,
                r.sent,
                r.lag_p99
            );
        }
        let cpu = median(
            runs.iter()
                .map(|r| proxy_key(t).map_or(0.0, |k| r.cpu_per_10k[k]))
                .collect(),
        );
        let p99 = median(runs.iter().map(|r| r.p99).collect());
        let sent_p99 = median(runs.iter().map(|r| r.sent_p99).collect());
        med_open.insert(t, (cpu, p99, sent_p99));
    }
    let mb = |b: u64| b as f64 / 1048576.0;
    println!("(d) memory (sum over the proxy's processes; PSS shares pages the processes share):");
    for ((name, (r0, p0)), (_, (r1, p1))) in mem_before.iter().zip(mem_after) {
        println!(
            "    {name:<9} VmRSS {:>6.1} MiB after the run ({:.1} before)   PSS {:>6.1} MiB after ({:.1} before)",
            mb(*r1),
            mb(*r0),
            mb(*p1),
            mb(*p0)
        );
    }
    let (sw, ng) = (&med_open[&Target::Seawall], &med_open[&Target::Nginx]);
    let dir = &med_open[&Target::Direct];
    println!("ratios Seawall/nginx (medians of the runs):");
    println!(
        "    (a) max throughput        {:.2}x   ({:.0} vs {:.0} r/s; no proxy: {:.0} r/s)",
        med_rps[&Target::Seawall] / med_rps[&Target::Nginx],
        med_rps[&Target::Seawall],
        med_rps[&Target::Nginx],
        med_rps[&Target::Direct]
    );
    println!(
        "    (b) CPU per 10k requests  {:.2}x   ({:.2} vs {:.2} CPU s)",
        sw.0 / ng.0,
        sw.0,
        ng.0
    );
    println!(
        "    (c) p99 at {} r/s      {:.2}x   ({:.3} vs {:.3} ms; no proxy: {:.3} ms)",
        a.rate,
        sw.1 / ng.1,
        sw.1,
        ng.1,
        dir.1
    );
    println!(
        "        p99 from the send      {:.2}x   ({:.3} vs {:.3} ms; no proxy: {:.3} ms; the generator's timer sends up to ~1 ms late, alike for all)",
        sw.2 / ng.2,
        sw.2,
        ng.2,
        dir.2
    );
    println!(
        "    (d) VmRSS after the run   {:.2}x   ({:.1} vs {:.1} MiB; PSS {:.2}x)",
        mem_after[1].1.0 as f64 / mem_after[0].1.0 as f64,
        mb(mem_after[1].1.0),
        mb(mem_after[0].1.0),
        mem_after[1].1.1 as f64 / mem_after[0].1.1 as f64,
    );
    let other = closed
        .iter()
        .map(|r| r.other_cores)
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
    println!(
        "RESULT throughput {:.3} cpu {:.3} p99 {:.3} rss {:.3}",
        med_rps[&Target::Seawall] / med_rps[&Target::Nginx],
        sw.0 / ng.0,
        sw.1 / ng.1,
        mem_after[1].1.0 as f64 / mem_after[0].1.0 as f64
    );
}

fn draw(a: &BenchArgs, closed: &[ClosedRun], open: &[OpenRun]) -> Result<(), String> {
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
    for t in [Target::Direct, Target::Nginx, Target::Seawall] {
        for r in open.iter().filter(|r| r.target == t) {
            let name = (r.round == 0).then(|| t.name());
            lat.series.extend(Series::p99_p50(
                name,
                t.color(),
                r.per_second.iter().map(|p| (p.0, p.1, p.2)),
            ));
            sent.series.extend(Series::p99_p50(
                name,
                t.color(),
                r.per_second_sent.iter().map(|p| (p.0, p.1, p.2)),
            ));
        }
        for r in closed.iter().filter(|r| r.target == t) {
            let name = (r.round == 0).then(|| t.name());
            thr.series.push(Series::new(
                name.unwrap_or(""),
                t.color(),
                Style::Line,
                r.per_second.iter().map(|p| (p.0, p.1)).collect(),
            ));
            cl.series.extend(Series::p99_p50(
                name,
                t.color(),
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
