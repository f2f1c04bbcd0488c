//! Seawall and real nginx, side by side: the same `limit_req` configuration, the same timed
//! schedule of requests sent to both at the same moment, and the same accept/reject decision
//! for every single request.
//!
//! The schedule is checked offline before it runs. An independent model of nginx's integer
//! arithmetic (ref/ratelimit.md) gives each request's decision and its *margin*: how far in time
//! its send is from the nearest moment where the decision would flip. Every request must be at
//! least [`MIN_MARGIN_MS`] clear, and same-key requests at least [`MIN_GAP_MS`] apart, so no
//! scheduling jitter under half of that can change a decision (the per-key state is 1-Lipschitz
//! in the send times; a randomized jitter run of the model double-checks it). The model also
//! proves the schedule covers the cases: mutants of the formula (a charged first request,
//! charged rejects, a faster or slower drain, a charged first request after idling) must each
//! decide differently on it.
//!
//! nginx is Debian's `/usr/sbin/nginx` (package `nginx`), started as a child process on a free
//! port. Without it the test fails when `CI=true`, and is skipped with a note otherwise.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Kit, Seawall, TestUpstream, free_addr};

/// Every request's send is at least this far (ms) from a moment where its decision would flip.
const MIN_MARGIN_MS: u64 = 100;
/// Same-key requests are at least this far apart, so jitter cannot reorder them.
const MIN_GAP_MS: u64 = 100;
/// The randomized check of the model: any per-request jitter up to this leaves every decision.
const JITTER_MS: i64 = 45;
/// When the first request of the schedule is sent, after both servers are up and warm.
const LEAD_IN_MS: u64 = 500;

// ---------------------------------------------------------------------------------------------
// The limit configurations, written once for both servers.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `nodelay`: excess within the burst passes at once.
    NoDelay,
    /// `delay=N`: two-stage, the first N excess requests pass at once, the rest are delayed.
    Delay(u64),
    /// Neither: every excess request is delayed (nginx's default).
    DelayAll,
}

#[derive(Debug, Clone, Copy)]
struct Zone {
    name: &'static str,
    /// As both nginx and Seawall write it.
    rate: &'static str,
    burst: u64,
    mode: Mode,
}

impl Zone {
    fn path(&self) -> String {
        format!("/{}/x", self.name)
    }

    /// nginx's `rate`: milli-requests per second, truncated.
    fn rate_m(&self) -> u64 {
        let (n, unit) = self.rate.split_once("r/").expect("rate like 2r/s");
        let n: u64 = n.parse().expect("rate count");
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            other => panic!("unit {other} has no nginx equivalent"),
        };
        n * 1000 / scale
    }

    fn burst_m(&self) -> u64 {
        self.burst * 1000
    }

    /// Excess (milli-requests) up to which a request is not delayed.
    fn delay_m(&self) -> u64 {
        match self.mode {
            Mode::NoDelay => u64::MAX,
            Mode::Delay(n) => n * 1000,
            Mode::DelayAll => 0,
        }
    }

    fn nginx_directive(&self) -> String {
        let tail = match self.mode {
            Mode::NoDelay => " nodelay".to_string(),
            Mode::Delay(n) => format!(" delay={n}"),
            Mode::DelayAll => String::new(),
        };
        format!("limit_req zone={} burst={}{tail};", self.name, self.burst)
    }

    fn seawall_limit(&self) -> String {
        let tail = match self.mode {
            Mode::NoDelay => "nodelay = true".to_string(),
            Mode::Delay(n) => format!("nodelay = false\n  delay = {n}"),
            Mode::DelayAll => "nodelay = false".to_string(),
        };
        format!(
            "  [[routes.limits]]\n  name = \"{}\"\n  key = \"header:X-Key\"\n  rate = \"{}\"\n  burst = {}\n  {tail}\n",
            self.name, self.rate, self.burst
        )
    }
}

const ZONES: [Zone; 3] = [
    Zone {
        name: "a",
        rate: "1r/s",
        burst: 4,
        mode: Mode::NoDelay,
    },
    Zone {
        name: "b",
        rate: "2r/s",
        burst: 6,
        mode: Mode::Delay(3),
    },
    // 40r/m is 666 milli-requests per second after nginx's truncation.
    Zone {
        name: "c",
        rate: "40r/m",
        burst: 3,
        mode: Mode::DelayAll,
    },
];

// ---------------------------------------------------------------------------------------------
// The schedule: simulated clients, each with its own key and pattern. Times in ms from the start.

fn burst(t0: u64, n: u64, gap: u64) -> Vec<u64> {
    (0..n).map(|i| t0 + i * gap).collect()
}

fn every(from: u64, to: u64, period: u64) -> Vec<u64> {
    (from..=to).step_by(period as usize).collect()
}

fn cat(parts: &[&[u64]]) -> Vec<u64> {
    parts.concat()
}

struct Client {
    zone: usize,
    key: &'static str,
    what: &'static str,
    times: Vec<u64>,
}

fn clients() -> Vec<Client> {
    let c = |zone, key, what, times| Client {
        zone,
        key,
        what,
        times,
    };
    vec![
        // Zone a: 1r/s, burst 4, nodelay.
        c(
            0,
            "a1",
            "fresh burst+1 then rejects (one right after a reject); passes again once one \
             request has drained (uncharged rejects); recovery at the rate; idle, then a \
             full burst+1 again",
            cat(&[
                &burst(0, 7, 100),
                &[700, 1200, 1700, 2300, 2700, 3300],
                &burst(8000, 7, 100),
            ]),
        ),
        c(
            0,
            "a2",
            "a burst of 5, then a steady 1.33 r/s (above the rate): one reject in four",
            cat(&[&burst(300, 5, 100), &every(920, 11_800, 750)]),
        ),
        c(
            0,
            "a3",
            "three requests, a 5 s idle gap, a burst of 6, a reject right after, recovery",
            cat(&[
                &burst(1000, 3, 150),
                &burst(6000, 6, 100),
                &[6700, 7700, 8400],
            ]),
        ),
        c(
            0,
            "a4",
            "a fresh key late in the run: burst+1, a reject right after a reject, recovery",
            cat(&[&burst(9000, 6, 100), &[9650, 10_700, 11_200, 11_500]]),
        ),
        c(
            0,
            "a5",
            "steady just under the rate: never limited",
            every(200, 11_800, 1050),
        ),
        // Zone b: 2r/s, burst 6, delay=3.
        c(
            1,
            "b1",
            "fresh burst+1 and a reject, a pass, a reject right after it, recovery, idle, \
             burst+1 again",
            cat(&[
                &burst(100, 9, 100),
                &[1300, 1450, 2000, 2500],
                &burst(7000, 9, 100),
                &[8250],
            ]),
        ),
        c(
            1,
            "b2",
            "a burst of 6, then twice the rate for 11 s: saturated, every other request rejected",
            cat(&[&burst(300, 6, 100), &every(920, 11_800, 250)]),
        ),
        c(
            1,
            "b3",
            "bursts of 4 every 1.5 s (1.33x the rate): the excess builds up, then one in four \
             is rejected",
            (0..8u64)
                .flat_map(|i| burst(500 + i * 1500, 4, 100))
                .collect(),
        ),
        c(
            1,
            "b4",
            "three requests, a 4.5 s idle gap, a burst of 9, recovery",
            cat(&[
                &burst(4000, 3, 150),
                &burst(9000, 9, 100),
                &[10_200, 10_700],
            ]),
        ),
        // Zone c: 40r/m (666 milli-requests/s), burst 3, every excess request delayed.
        c(
            2,
            "c1",
            "a fresh burst of 6 (150 ms apart): burst+1, then rejects, recovery",
            cat(&[&burst(50, 6, 150), &[1000, 2600, 3500]]),
        ),
        c(
            2,
            "c2",
            "a burst of 4, then a steady 1 r/s (1.5x the rate)",
            cat(&[&burst(300, 4, 100), &every(1060, 11_800, 1000)]),
        ),
        c(
            2,
            "c3",
            "pairs of requests every 2.4 s: under the rate, delayed but never rejected",
            (0..5u64)
                .flat_map(|i| burst(700 + i * 2400, 2, 200))
                .collect(),
        ),
    ]
}

/// One scheduled request.
#[derive(Debug, Clone)]
struct Req {
    at_ms: u64,
    zone: usize,
    key: &'static str,
    /// nginx's decision per the model, its margin (None: no time would flip it) and the delay.
    pass: bool,
    margin_ms: Option<u64>,
    delay_ms: u64,
}

// ---------------------------------------------------------------------------------------------
// An independent model of nginx's limit_req (ngx_http_limit_req_module.c), with mutants.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Nginx,
    /// A fresh key's first request is charged a full request.
    FreshCharged,
    /// A rejected request is charged.
    RejectsCharged,
    /// The key drains at 5/4 of the rate.
    DrainFast,
    /// The key drains at 4/5 of the rate.
    DrainSlow,
    /// `e = max(0, E - drained) + 1000`: a drained, idle key's next request costs a full request
    /// (nginx clamps after adding, so it costs nothing).
    IdleCharged,
}

const MUTANTS: [Variant; 5] = [
    Variant::FreshCharged,
    Variant::RejectsCharged,
    Variant::DrainFast,
    Variant::DrainSlow,
    Variant::IdleCharged,
];

#[derive(Debug, Clone, Copy, PartialEq)]
struct Modelled {
    pass: bool,
    margin_ms: Option<u64>,
    delay_ms: u64,
}

/// One key's requests at the given times (in order), through one limit.
fn model(zone: &Zone, times: &[i64], v: Variant) -> Vec<Modelled> {
    let (rate_m, burst_m, delay_m) = (zone.rate_m() as i64, zone.burst_m() as i64, zone.delay_m());
    let drained = |ms: i64| -> i64 {
        match v {
            Variant::DrainFast => rate_m * ms * 5 / 4 / 1000,
            Variant::DrainSlow => rate_m * ms * 4 / 5 / 1000,
            _ => rate_m * ms / 1000,
        }
    };
    // (excess, last)
    let mut state: Option<(i64, i64)> = None;
    let mut out = Vec::with_capacity(times.len());
    for &now in times {
        let Some((excess, last)) = state else {
            let e = if v == Variant::FreshCharged { 1000 } else { 0 };
            state = Some((e, now));
            out.push(Modelled {
                pass: true,
                margin_ms: None,
                delay_ms: 0,
            });
            continue;
        };
        let mut ms = now - last;
        if ms < -60_000 {
            ms = 1;
        } else if ms < 0 {
            ms = 0;
        }
        let e = if v == Variant::IdleCharged {
            (excess - drained(ms)).max(0) + 1000
        } else {
            (excess - drained(ms) + 1000).max(0)
        };
        // The decision flips where floor(rate_m * ms / 1000) reaches `need`.
        let need = excess + 1000 - burst_m;
        let margin_ms = (need > 0).then(|| {
            let pass_from = last + (need * 1000 + rate_m - 1) / rate_m;
            if now >= pass_from {
                (now - pass_from) as u64
            } else {
                (pass_from - 1 - now) as u64
            }
        });
        let pass = e <= burst_m;
        if pass || v == Variant::RejectsCharged {
            state = Some((e, if ms != 0 { now } else { last }));
        }
        let e = e as u64;
        let delay_ms = if pass && e > delay_m {
            (e - delay_m) * 1000 / rate_m as u64
        } else {
            0
        };
        out.push(Modelled {
            pass,
            margin_ms,
            delay_ms,
        });
    }
    out
}

fn decisions(zone: &Zone, times: &[i64], v: Variant) -> Vec<bool> {
    model(zone, times, v).into_iter().map(|m| m.pass).collect()
}

/// A small deterministic PRNG for the jitter check (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn jitter(&mut self, max: i64) -> i64 {
        (self.next() % (2 * max as u64 + 1)) as i64 - max
    }
}

/// Build the schedule and check, offline, that it is jitter-proof and covers what it claims.
/// Panics (loudly, with the offending request) if an edit broke either.
fn checked_schedule() -> Vec<Req> {
    let clients = clients();
    let mut reqs = Vec::new();
    let mut problems = Vec::new();
    for (zi, zone) in ZONES.iter().enumerate() {
        let mut mutants_seen = vec![false; MUTANTS.len()];
        let (mut zone_rejects, mut zone_delayed) = (0, 0);
        for c in clients.iter().filter(|c| c.zone == zi) {
            let times: Vec<i64> = c.times.iter().map(|&t| t as i64).collect();
            for w in c.times.windows(2) {
                if w[1] < w[0] + MIN_GAP_MS {
                    problems.push(format!(
                        "{}: requests at {} and {} ms are under {MIN_GAP_MS} ms apart",
                        c.key, w[0], w[1]
                    ));
                }
            }
            let m = model(zone, &times, Variant::Nginx);
            for (&t, r) in c.times.iter().zip(&m) {
                if let Some(margin) = r.margin_ms
                    && margin < MIN_MARGIN_MS
                {
                    problems.push(format!(
                        "{}: the request at {t} ms ({}) is only {margin} ms from a decision boundary",
                        c.key,
                        if r.pass { "pass" } else { "reject" }
                    ));
                }
                zone_rejects += usize::from(!r.pass);
                zone_delayed += usize::from(r.delay_ms > 0);
                reqs.push(Req {
                    at_ms: t,
                    zone: zi,
                    key: c.key,
                    pass: r.pass,
                    margin_ms: r.margin_ms,
                    delay_ms: r.delay_ms,
                });
            }
            let nominal: Vec<bool> = m.iter().map(|r| r.pass).collect();
            // Jitter: the worst shapes (all early, all late, alternating) and random ones.
            let mut rng = Rng(0x5EA_3A11 ^ (zi as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let shapes: Vec<Vec<i64>> = [
                vec![-JITTER_MS; times.len()],
                vec![JITTER_MS; times.len()],
                (0..times.len())
                    .map(|i| if i % 2 == 0 { JITTER_MS } else { -JITTER_MS })
                    .collect(),
                (0..times.len())
                    .map(|i| if i % 2 == 0 { -JITTER_MS } else { JITTER_MS })
                    .collect(),
            ]
            .into_iter()
            .chain((0..400).map(|_| (0..times.len()).map(|_| rng.jitter(JITTER_MS)).collect()))
            .collect();
            for shift in shapes {
                let moved: Vec<i64> = times.iter().zip(&shift).map(|(t, s)| t + s).collect();
                if decisions(zone, &moved, Variant::Nginx) != nominal {
                    problems.push(format!(
                        "{}: a jitter of at most {JITTER_MS} ms changes a decision: {shift:?}",
                        c.key
                    ));
                    break;
                }
            }
            for (i, &v) in MUTANTS.iter().enumerate() {
                mutants_seen[i] |= decisions(zone, &times, v) != nominal;
            }
        }
        for (i, seen) in mutants_seen.iter().enumerate() {
            if !seen {
                problems.push(format!(
                    "zone {}: the schedule does not tell nginx from the mutant {:?}",
                    zone.name, MUTANTS[i]
                ));
            }
        }
        if zone_rejects < 5 {
            problems.push(format!(
                "zone {}: only {zone_rejects} rejects scheduled",
                zone.name
            ));
        }
        if zone.mode != Mode::NoDelay && zone_delayed < 5 {
            problems.push(format!(
                "zone {}: only {zone_delayed} delayed requests scheduled",
                zone.name
            ));
        }
    }
    reqs.sort_by_key(|r| r.at_ms);
    let total = reqs.len();
    let span = reqs.last().map_or(0, |r| r.at_ms);
    if total < 150 {
        problems.push(format!("only {total} requests scheduled"));
    }
    if !(10_000..=15_000).contains(&span) {
        problems.push(format!("the schedule spans {span} ms, not 10-15 s"));
    }
    assert!(
        problems.is_empty(),
        "the parity schedule is not jitter-proof or does not cover its cases:\n  {}",
        problems.join("\n  ")
    );
    reqs
}

#[test]
fn the_schedule_is_jitter_proof_and_covers_the_cases() {
    let reqs = checked_schedule();
    let rejects = reqs.iter().filter(|r| !r.pass).count();
    let min_margin = reqs.iter().filter_map(|r| r.margin_ms).min().unwrap();
    println!(
        "{} requests, {rejects} rejects expected, smallest margin {min_margin} ms",
        reqs.len()
    );
    for c in clients() {
        let m = model(
            &ZONES[c.zone],
            &c.times.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            Variant::Nginx,
        );
        let seq: String = m.iter().map(|r| if r.pass { '.' } else { 'X' }).collect();
        println!("  {} {:<24} {}", c.key, seq, c.what);
    }
    // The model itself, on nginx's documented facts (ref/ratelimit.md).
    let a = &ZONES[0];
    let back_to_back: Vec<i64> = vec![0; 7];
    assert_eq!(
        decisions(a, &back_to_back, Variant::Nginx),
        [true, true, true, true, true, false, false],
        "a fresh key admits burst + 1 back to back"
    );
    let one_per_minute = Zone {
        name: "m",
        rate: "1r/m",
        burst: 0,
        mode: Mode::NoDelay,
    };
    assert_eq!(one_per_minute.rate_m(), 16);
    assert_eq!(
        decisions(&one_per_minute, &[0, 62_499, 62_500], Variant::Nginx),
        [true, false, true],
        "1r/m is one request per 62.5 s"
    );
}

// ---------------------------------------------------------------------------------------------
// nginx as a child process.

struct Nginx {
    child: Child,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn binary() -> Option<PathBuf> {
        let p = std::env::var_os("NGINX")
            .map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from);
        p.exists().then_some(p)
    }

    fn start(bin: &Path) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["tmp", "html/a", "html/b", "html/c"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        for zone in ZONES {
            std::fs::write(d.join(format!("html{}", zone.path())), "ok\n").unwrap();
        }
        std::fs::write(d.join("html/ready"), "ready\n").unwrap();
        let addr = free_addr();
        let dd = d.display();
        let mut zones = String::new();
        let mut locations = String::new();
        for z in ZONES {
            writeln!(
                zones,
                "    limit_req_zone $http_x_key zone={}:1m rate={};",
                z.name, z.rate
            )
            .unwrap();
            // Static files are served in the content phase, after limit_req (preaccess).
            writeln!(
                locations,
                "        location /{}/ {{ {} }}",
                z.name,
                z.nginx_directive()
            )
            .unwrap();
        }
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log {dd}/error.log info;
pid {dd}/nginx.pid;
lock_file {dd}/nginx.lock;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    keepalive_timeout 120s;
    keepalive_requests 100000;
    client_body_temp_path {dd}/tmp/body;
    proxy_temp_path {dd}/tmp/proxy;
    fastcgi_temp_path {dd}/tmp/fastcgi;
    uwsgi_temp_path {dd}/tmp/uwsgi;
    scgi_temp_path {dd}/tmp/scgi;
    limit_req_status 429;
{zones}    server {{
        listen {addr};
        root {dd}/html;
        location / {{ }}
{locations}    }}
}}
"#
        );
        std::fs::write(d.join("nginx.conf"), &conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-e")
            .arg(d.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        Nginx { child, addr, dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn conf(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nginx.conf")).unwrap_or_default()
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "nginx exited at start ({status})\nconfig:\n{}\nerror.log:\n{}",
                    self.conf(),
                    self.error_log()
                );
            }
            if let Ok(r) = client.get(self.url("/ready")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not ready within 10 s\nerror.log:\n{}",
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM (nginx's fast shutdown), SIGKILL if it is still there after 2 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Seawall's config for the zones; `fleet`: the limits are fleet limits on that Redis.
fn seawall_body(app: &TestUpstream, fleet: Option<&str>) -> String {
    let mut body = format!("[upstreams.app]\nservers = [\"{}\"]\n", app.addr);
    if let Some(url) = fleet {
        // A generous call budget: this machine is shared; the decisions are what is compared.
        write!(body, "\n[fleet]\nredis = \"{url}\"\ntimeout = \"500ms\"\n").unwrap();
    }
    for z in ZONES {
        let scope = if fleet.is_some() {
            "  scope = \"fleet\"\n"
        } else {
            ""
        };
        write!(
            body,
            "\n[[routes]]\nname = \"{0}\"\npath_prefix = \"/{0}/\"\nupstream = \"app\"\n{1}{scope}",
            z.name,
            z.seawall_limit()
        )
        .unwrap();
    }
    body.push_str("\n[[routes]]\nname = \"rest\"\npath_prefix = \"/\"\nupstream = \"app\"\n");
    body
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

#[derive(Debug, Clone)]
struct Outcome {
    /// How late (ms) the pair was sent after its scheduled time.
    late_ms: u64,
    nginx: Result<u16, String>,
    seawall: Result<u16, String>,
    nginx_ms: u64,
    seawall_ms: u64,
}

async fn timed_get(c: &reqwest::Client, url: &str, key: &str) -> (Result<u16, String>, u64) {
    let t = Instant::now();
    let r = c.get(url).header("X-Key", key).send().await;
    let status = match r {
        Ok(r) => {
            let s = r.status().as_u16();
            // Wait for the whole response: delayed requests are answered late.
            let _ = r.bytes().await;
            Ok(s)
        }
        Err(e) => Err(e.to_string()),
    };
    (status, t.elapsed().as_millis() as u64)
}

fn show(r: &Result<u16, String>) -> String {
    match r {
        Ok(s) => s.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

fn table(reqs: &[Req], out: &[Outcome]) -> String {
    let mut t =
        String::from("    #  at_ms late zone key  model margin delay | nginx seawall (ms taken)\n");
    for (i, (r, o)) in reqs.iter().zip(out).enumerate() {
        let differ = o.nginx != o.seawall;
        writeln!(
            t,
            "{i:5} {:6} {:4} {:>4} {:4} {:>5} {:>6} {:>5} | {:>5} {:>7} ({} / {}){}",
            r.at_ms,
            o.late_ms,
            ZONES[r.zone].name,
            r.key,
            if r.pass { "200" } else { "429" },
            r.margin_ms.map_or("inf".to_string(), |m| m.to_string()),
            r.delay_ms,
            show(&o.nginx),
            show(&o.seawall),
            o.nginx_ms,
            o.seawall_ms,
            if differ { "   <-- DIFFER" } else { "" }
        )
        .unwrap();
    }
    t
}

/// nginx, or `None` with a note (a failure under CI).
fn nginx_binary() -> Option<PathBuf> {
    let bin = Nginx::binary();
    if bin.is_none() {
        let msg =
            "nginx is not installed (/usr/sbin/nginx, Debian package `nginx`; or set NGINX=path)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}: CI must install it to run the nginx parity test");
        }
        eprintln!("note: {msg}; skipping the nginx parity test");
    }
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seawall_and_nginx_make_the_same_decision_for_every_request() {
    let Some(bin) = nginx_binary() else { return };
    let app = TestUpstream::start("app").await;
    let sw = Kit::new()
        .server(r#"trusted_proxies = ["127.0.0.1/32"]"#)
        .start(&seawall_body(&app, None));
    parity(&bin, &[sw]).await;
}

/// The same schedule sent round robin to three Seawall instances whose limits are fleet limits
/// on one Redis: together they decide as one nginx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_fleet_instances_on_one_redis_decide_as_one_nginx() {
    let Some(bin) = nginx_binary() else { return };
    let Some(redis) = common::redis::RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let body = seawall_body(&app, Some(&redis.url()));
    let sws: Vec<Seawall> = (0..3)
        .map(|_| {
            Kit::new()
                .server(r#"trusted_proxies = ["127.0.0.1/32"]"#)
                .start(&body)
        })
        .collect();
    for sw in &sws {
        let fleet = sw.state().fleet().expect("[fleet] started");
        assert!(fleet.wait_up(Duration::from_secs(10)).await, "Redis not up");
    }
    parity(&bin, &sws).await;
    for sw in &sws {
        // Decided in Redis throughout: no decision fell back to a local limiter.
        sw.expect_metric("seawall_fleet_store_up", &[], 1.0).await;
        for z in ZONES {
            let labels = [("route", z.name), ("limit", z.name)];
            let fell_back = sw
                .metric("seawall_fleet_fallback_decisions_total", &labels)
                .await;
            assert_eq!(fell_back, 0.0, "zone {}", z.name);
        }
    }
}

/// Send the checked schedule to nginx and, request `i`, to `seawalls[i % n]`; assert every
/// decision is the same.
async fn parity(bin: &Path, seawalls: &[Seawall]) {
    let reqs = checked_schedule();
    let mut nginx = Nginx::start(bin);
    let (nc, sc) = (http_client(), http_client());
    nginx.wait_ready(&nc).await;

    // Warm both: a few connections each. Without X-Key neither server limits nor counts them.
    let warm = futures::future::join_all((0..8).flat_map(|i| {
        let zone = ZONES[i % ZONES.len()];
        let (nc, sc) = (nc.clone(), sc.clone());
        let sw = &seawalls[i % seawalls.len()];
        let (nu, su) = (nginx.url(&zone.path()), sw.url(&zone.path()));
        [
            tokio::spawn(async move { nc.get(nu).send().await.map(|r| r.status().as_u16()) }),
            tokio::spawn(async move { sc.get(su).send().await.map(|r| r.status().as_u16()) }),
        ]
    }))
    .await;
    for w in warm {
        assert_eq!(w.unwrap().expect("warm-up request"), 200, "warm-up request");
    }

    let started = Instant::now();
    let t0 = tokio::time::Instant::now() + Duration::from_millis(LEAD_IN_MS);
    let tasks: Vec<_> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (nc, sc) = (nc.clone(), sc.clone());
            let path = ZONES[r.zone].path();
            let sw = &seawalls[i % seawalls.len()];
            let (nu, su) = (nginx.url(&path), sw.url(&path));
            let (key, at) = (r.key, Duration::from_millis(r.at_ms));
            tokio::spawn(async move {
                tokio::time::sleep_until(t0 + at).await;
                let late_ms = (tokio::time::Instant::now() - (t0 + at)).as_millis() as u64;
                let ((nginx, nginx_ms), (seawall, seawall_ms)) =
                    tokio::join!(timed_get(&nc, &nu, key), timed_get(&sc, &su, key));
                Outcome {
                    late_ms,
                    nginx,
                    seawall,
                    nginx_ms,
                    seawall_ms,
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(
            tokio::time::timeout(Duration::from_secs(40), t)
                .await
                .expect("a request pair did not finish within 40 s")
                .expect("request task"),
        );
    }
    let took = started.elapsed();

    let all = table(&reqs, &out);
    if std::env::var_os("PARITY_TABLE").is_some() {
        println!("{all}");
    }
    let errors = out
        .iter()
        .filter(|o| o.nginx.is_err() || o.seawall.is_err())
        .count();
    let odd = out
        .iter()
        .filter(|o| {
            [&o.nginx, &o.seawall]
                .iter()
                .any(|s| matches!(s, Ok(c) if *c != 200 && *c != 429))
        })
        .count();
    assert!(
        errors == 0 && odd == 0,
        "{errors} transport errors and {odd} statuses other than 200/429:\n{all}\nnginx error.log:\n{}",
        nginx.error_log()
    );
    let nginx_seq: Vec<u16> = out.iter().map(|o| *o.nginx.as_ref().unwrap()).collect();
    let seawall_seq: Vec<u16> = out.iter().map(|o| *o.seawall.as_ref().unwrap()).collect();
    let differ = nginx_seq
        .iter()
        .zip(&seawall_seq)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        nginx_seq == seawall_seq,
        "Seawall and nginx disagree on {differ} of {} requests:\n{all}",
        reqs.len()
    );

    // The run really exercised rejections, in every zone, on both servers alike.
    let rejected = nginx_seq.iter().filter(|&&s| s == 429).count();
    for (zi, z) in ZONES.iter().enumerate() {
        let (pass, rej) = reqs
            .iter()
            .zip(&nginx_seq)
            .filter(|(r, _)| r.zone == zi)
            .fold((0, 0), |(p, j), (_, &s)| {
                (p + usize::from(s == 200), j + usize::from(s == 429))
            });
        assert!(
            pass >= 10 && rej >= 5,
            "zone {}: only {pass} passed and {rej} rejected: the schedule did not exercise it\n{all}",
            z.name
        );
    }
    assert!(
        rejected >= 30 && rejected * 4 <= reqs.len() * 3,
        "{rejected} of {} rejected: not a meaningful mix\n{all}",
        reqs.len()
    );

    let model_differs = reqs
        .iter()
        .zip(&nginx_seq)
        .filter(|(r, s)| (**s == 200) != r.pass)
        .count();
    let max_late = out.iter().map(|o| o.late_ms).max().unwrap_or(0);
    let delayed = |ms: fn(&Outcome) -> u64| {
        reqs.iter()
            .zip(&out)
            .filter(|(r, o)| r.delay_ms >= 300 && ms(o) >= r.delay_ms.saturating_sub(50))
            .count()
    };
    let model_delayed = reqs.iter().filter(|r| r.delay_ms >= 300).count();
    println!(
        "nginx parity ({} Seawall instance(s)): {} decisions compared, all equal ({} passed, {rejected} rejected with 429) \
         in {:.1} s; sends at most {max_late} ms late; the model of nginx's formula disagreed with \
         nginx on {model_differs}; of {model_delayed} requests the model delays >= 300 ms, nginx \
         took that long on {} and Seawall on {}",
        seawalls.len(),
        reqs.len(),
        reqs.len() - rejected,
        took.as_secs_f64(),
        delayed(|o| o.nginx_ms),
        delayed(|o| o.seawall_ms),
    );
    if model_differs > 0 {
        println!("(the model disagreed with both servers alike; table:)\n{all}");
    }
}
