//! What a fleet decision costs next to a local one, on loopback Redis (issue 14's benchmark).
//!
//! Paces decisions at `--rate` per second (2,000 by default, as the issue's scenario) for
//! `--seconds`, one route with `--limits` fleet limits over 1,000 client keys, first through
//! the local limiter, then through Redis (one `EVALSHA` each), and prints per decision:
//! latency p50 / p99 / p99.9 / max, this process's CPU time, redis-server's CPU time, and the
//! `EVALSHA` count from `INFO commandstats`. It starts its own `redis-server` on a free port.
//!
//! ```text
//! cargo run --release --example fleet_round_trip -- --seconds 10
//! ```

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use seawall::config::values;
use seawall::fleet::{
    Fleet, FleetAnswer, FleetCheck, FleetKey, FleetMetrics, FleetOptions, FleetSpec, Via,
};
use seawall::limits::limiter::{Check, Clock, Limiter, MonotonicClock, Params, decide};
use seawall::limits::{LimitSpec, Scope};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Fleet limits per request (all decided in the one round trip).
    #[arg(long, default_value_t = 2)]
    limits: usize,
    /// `[fleet] timeout` (CONFIG.md's default is 5 ms; a busy shared machine misses it).
    #[arg(long, default_value_t = 5)]
    timeout_ms: u64,
}

/// CPU time (user + system) of a process, from /proc (clock ticks of 10 ms).
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: the 12th and 13th after the ')'.
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

struct Report {
    name: &'static str,
    lat: Vec<Duration>,
    cpu_self: Duration,
    cpu_redis: Duration,
    fallbacks: usize,
}

impl Report {
    fn print(&mut self) {
        self.lat.sort_unstable();
        let n = self.lat.len();
        let q = |p: f64| self.lat[((n as f64 * p) as usize).min(n - 1)];
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<6} n={n:>6}  p50 {:>7.1} us  p99 {:>7.1} us  p99.9 {:>7.1} us  max {:>8.1} us  \
             cpu {:>6.2} us/decision  redis cpu {:>6.2} us/decision  fallbacks {}",
            self.name,
            us(q(0.5)),
            us(q(0.99)),
            us(q(0.999)),
            us(self.lat[n - 1]),
            us(self.cpu_self) / n as f64,
            us(self.cpu_redis) / n as f64,
            self.fallbacks,
        );
    }
}

fn spec(i: usize) -> LimitSpec {
    LimitSpec {
        name: format!("limit-{i}").into(),
        key: values::limit_key(if i == 0 { "client_ip" } else { "global" }).expect("key"),
        rate: values::rate("100000r/s").expect("rate"),
        burst: 1000,
        nodelay: true,
        delay: 0,
        dry_run: false,
        status: http::StatusCode::TOO_MANY_REQUESTS,
        max_keys: std::num::NonZeroUsize::new(100_000).expect("non-zero"),
        exempt: Vec::new(),
        scope: Scope::Fleet,
    }
}

fn start_redis() -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server)");
    (child, port)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    // The fleet's transition lines (down, up) on stderr: a run should have none after the start.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let (mut redis, port) = start_redis();
    let mut fspec = FleetSpec::new(format!("redis://127.0.0.1:{port}/0"));
    fspec.instance = Some("bench".into());
    fspec.timeout = Duration::from_millis(cli.timeout_ms);
    let fleet = Fleet::start(fspec, FleetMetrics::new(), FleetOptions::default()).expect("fleet");
    assert!(fleet.wait_up(Duration::from_secs(10)).await, "redis up");
    let specs: Vec<LimitSpec> = (0..cli.limits).map(spec).collect();
    let fleet_limits: Vec<_> = specs.iter().map(|s| fleet.limit("bench", s)).collect();
    let locals: Vec<Limiter> = specs
        .iter()
        .map(|s| Limiter::new(Params::from_spec(s)))
        .collect();
    let keys: Vec<FleetKey> = (0..1000u32)
        .map(|i| FleetKey::client_ip(std::net::IpAddr::from(i.to_be_bytes())))
        .collect();
    let n = (cli.rate * cli.seconds) as usize;
    let gap = Duration::from_secs_f64(1.0 / cli.rate as f64);

    for pass in ["local", "fleet"] {
        // Warm up the connection and the caches, then measure.
        let mut lat = Vec::with_capacity(n);
        let mut fallbacks = 0;
        let (c0, r0) = (cpu(std::process::id()), cpu(redis.id()));
        let start = Instant::now();
        for i in 0..n {
            let due = start + gap * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let k = keys[i % keys.len()];
            let t = Instant::now();
            if pass == "local" {
                let checks: Vec<Check<'_>> = locals
                    .iter()
                    .map(|l| Check {
                        limiter: l,
                        key: Some(k.local()),
                        dry_run: false,
                    })
                    .collect();
                std::hint::black_box(decide(&checks, MonotonicClock.now_ms()));
            } else {
                let checks: Vec<FleetCheck<'_>> = fleet_limits
                    .iter()
                    .map(|l| FleetCheck {
                        limit: l,
                        key: Some(k),
                    })
                    .collect();
                match fleet.decide(&checks).await {
                    FleetAnswer::Decided {
                        via: Via::Redis { .. },
                        ..
                    } => {}
                    _ => fallbacks += 1,
                }
            }
            lat.push(t.elapsed());
        }
        Report {
            name: if pass == "local" { "local" } else { "fleet" },
            lat,
            cpu_self: cpu(std::process::id()) - c0,
            cpu_redis: cpu(redis.id()) - r0,
            fallbacks,
        }
        .print();
    }
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output();
    if let Ok(o) = out {
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            if l.starts_with("cmdstat_evalsha") {
                println!("{l}  (one per fleet decision: {n})");
            }
        }
    }
    let _ = redis.kill();
    let _ = redis.wait();
}
