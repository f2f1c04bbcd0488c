//! The load-test toolkit shared by the examples behind `load-tests/*` (not part of Seawall).
//! Each example includes it with `#[path = "shared/loadgen.rs"] mod loadgen;`.
//!
//! - [`run_stream`]: the open-loop generator. Each request is sent at its scheduled time on its
//!   own task, whether or not earlier ones have finished, and its latency is counted from that
//!   scheduled time, so queueing anywhere (including in the generator) shows up as latency
//!   rather than as fewer requests (no coordinated omission).
//! - [`closed_loop`]: a closed-loop generator for "how much can it do": N keep-alive HTTP/1.1
//!   connections, each sending its next request as soon as the previous answer is complete.
//! - Per-second buckets and percentiles, CPU and memory readings from /proc, free ports.
// Every example uses a different part of this file.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// One request's result: status (0 = transport error or timeout, 1 = not sent: generator cap),
/// latency from its scheduled time, and how late it was actually sent.
#[derive(Clone, Copy)]
pub struct Sample {
    pub phase: u8,
    pub status: u16,
    pub latency_us: u64,
    pub lag_us: u64,
    /// When it was due (its scheduled send time).
    pub due: std::time::Instant,
}

/// One open-loop stream: `count` requests at `rate`/s from `start`.
pub struct Schedule {
    pub start: std::time::Instant,
    pub rate: f64,
    pub count: u64,
    pub timeout: Duration,
    pub inflight: Arc<AtomicUsize>,
    pub max_inflight: usize,
}

/// Runs a schedule on its own thread, runtime and client (own connection pool), so one stream's
/// requests never queue behind another's inside the generator. Each request is sent on its own
/// task at its due time, whether or not earlier ones have finished.
pub fn run_stream(
    s: Schedule,
    phase_of: impl Fn(f64) -> u8 + Send + 'static,
    build: impl Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + 'static,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(s.timeout)
                .tcp_nodelay(true)
                .build()
                .expect("client");
            let start = Instant::from_std(s.start);
            let out = Arc::new(Mutex::new(Vec::with_capacity(s.count as usize)));
            let mut tasks = Vec::with_capacity(s.count as usize);
            for i in 0..s.count {
                let offset = i as f64 / s.rate;
                let due = start + Duration::from_secs_f64(offset);
                tokio::time::sleep_until(due).await;
                let phase = phase_of(offset);
                let (req, out, inflight) = (build(&client, i), out.clone(), s.inflight.clone());
                let max_inflight = s.max_inflight;
                tasks.push(tokio::spawn(async move {
                    let lag_us = due.elapsed().as_micros() as u64;
                    let status = if inflight.fetch_add(1, Ordering::Relaxed) >= max_inflight {
                        1
                    } else {
                        match req.send().await {
                            // Read the whole body: the answer is complete only then.
                            Ok(r) => {
                                let code = r.status().as_u16();
                                r.bytes().await.map_or(0, |_| code)
                            }
                            Err(_) => 0,
                        }
                    };
                    inflight.fetch_sub(1, Ordering::Relaxed);
                    let latency_us = due.elapsed().as_micros() as u64;
                    out.lock().expect("lock").push(Sample {
                        phase,
                        status,
                        latency_us,
                        lag_us,
                        due: due.into_std(),
                    });
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            std::mem::take(&mut *out.lock().expect("lock"))
        })
    })
}

/// The q-quantile (0..1) of sorted microseconds, in milliseconds (nearest rank).
pub fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Latency summary of some samples, in ms.
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn summarize(latencies_us: impl IntoIterator<Item = u64>) -> Summary {
    let mut v: Vec<u64> = latencies_us.into_iter().collect();
    v.sort_unstable();
    Summary {
        n: v.len(),
        p50: pct(&v, 0.5),
        p99: pct(&v, 0.99),
        p999: pct(&v, 0.999),
        max: v.last().map_or(f64::NAN, |&x| x as f64 / 1000.0),
    }
}

/// One time bucket: its start (s since the epoch given), count, errors, p50, p99 and max (ms).
pub struct Bucket {
    pub t: f64,
    pub n: usize,
    pub errors: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Groups (time in s, latency us, ok) into buckets of `width` s, by time.
pub fn buckets(points: impl IntoIterator<Item = (f64, u64, bool)>, width: f64) -> Vec<Bucket> {
    let mut by: std::collections::BTreeMap<i64, (Vec<u64>, usize)> = Default::default();
    for (t, lat, ok) in points {
        let e = by.entry((t / width).floor() as i64).or_default();
        e.0.push(lat);
        if !ok {
            e.1 += 1;
        }
    }
    by.into_iter()
        .map(|(k, (lat, errors))| {
            let s = summarize(lat);
            Bucket {
                t: k as f64 * width,
                n: s.n,
                errors,
                p50: s.p50,
                p99: s.p99,
                max: s.max,
            }
        })
        .collect()
}

/// Fields of /proc/PID/stat after the command name (which is in parentheses and may hold
/// spaces): index 0 is the state, 1 the parent pid, 11 utime, 12 stime (in clock ticks).
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU seconds (user + system, all threads) a process has used; 0 if it is gone.
pub fn process_cpu_seconds(pid: u32, clk_tck: f64) -> f64 {
    stat_fields(&pid.to_string()).map_or(0.0, |f| {
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / clk_tck
    })
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
pub fn cpu_seconds(clk_tck: f64) -> f64 {
    process_cpu_seconds(std::process::id(), clk_tck)
}

/// A process and its children (nginx: the master and its workers), by parent pid in /proc.
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Ok(child) = name.parse::<u32>()
                && stat_fields(&name).and_then(|f| f.get(1).cloned()) == Some(pid.to_string())
            {
                out.push(child);
            }
        }
    }
    out
}

/// Seconds the whole machine was busy (all cores), from /proc/stat.
pub fn machine_busy_seconds(clk_tck: f64) -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().find(|l| l.starts_with("cpu ")).unwrap_or("");
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| v.get(i).copied().unwrap_or(0.0))
        .sum::<f64>()
        / clk_tck
}

/// A kB field of /proc/PID/status (VmRSS, VmHWM, ...) in bytes; 0 if absent.
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    kb_field(&format!("/proc/{pid}/status"), field)
}

/// Proportional set size (shared pages divided among the processes sharing them), in bytes.
pub fn pss_bytes(pid: u32) -> u64 {
    kb_field(&format!("/proc/{pid}/smaps_rollup"), "Pss")
}

fn kb_field(path: &str, field: &str) -> u64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    s.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == field).then(|| v.split_whitespace().next()?.parse::<u64>().ok())?
        })
        .unwrap_or(0)
        * 1024
}

/// Prints N free 127.0.0.1 ports (bound to port 0, then released).
pub fn print_free_ports(n: usize) {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    for l in &ls {
        println!("{}", l.local_addr().expect("addr").port());
    }
}

/// What a closed-loop run measured (after its warm-up).
pub struct Closed {
    pub ok: u64,
    pub errors: u64,
    pub seconds: f64,
    /// (seconds since the measured part started, latency us) of each answered request.
    pub samples: Vec<(f32, u32)>,
}

/// Closed loop: `connections` keep-alive HTTP/1.1 connections to `addr`, each sending
/// `GET path` again as soon as the previous answer is complete, for `warmup` (not counted) +
/// `duration`, on one thread (hyper's client connection directly: no pool, no timers, so the
/// generator's own cost per request is as low as we can make it). At most `max_requests`.
/// A failed request (error, not 200, or no answer within 5 s) counts one error, and its
/// connection is opened again.
pub fn closed_loop(
    addr: std::net::SocketAddr,
    path: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    max_requests: u64,
) -> Closed {
    use http_body_util::{BodyExt, Empty};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let path: Arc<str> = path.into();
    rt.block_on(async move {
        let start = Instant::now();
        let measure_from = start + warmup;
        let end = measure_from + duration;
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (path, sent) = (path.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                let mut samples: Vec<(f32, u32)> = Vec::new();
                let (mut ok, mut errors) = (0u64, 0u64);
                'conn: while Instant::now() < end {
                    let stream = match tokio::net::TcpStream::connect(addr).await {
                        Ok(s) => s,
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(io).await
                    else {
                        errors += 1;
                        continue;
                    };
                    tokio::spawn(conn);
                    loop {
                        let t0 = Instant::now();
                        if t0 >= end || sent.fetch_add(1, Ordering::Relaxed) >= max_requests {
                            break 'conn;
                        }
                        let req = http::Request::get(&*path)
                            .header("host", addr.to_string())
                            .body(Empty::<bytes::Bytes>::new())
                            .expect("request");
                        // 5 s at most per request, so a stalled answer cannot hold the run.
                        let exchange = async {
                            match send.send_request(req).await {
                                Ok(r) => {
                                    let status = r.status();
                                    r.into_body().collect().await.is_ok() && status == 200
                                }
                                Err(_) => false,
                            }
                        };
                        let good = tokio::time::timeout(Duration::from_secs(5), exchange)
                            .await
                            .unwrap_or(false);
                        let now = Instant::now();
                        if t0 >= measure_from {
                            if good {
                                ok += 1;
                                samples.push((
                                    (t0 - measure_from).as_secs_f32(),
                                    (now - t0).as_micros() as u32,
                                ));
                            } else {
                                errors += 1;
                            }
                        }
                        if !good {
                            continue 'conn;
                        }
                    }
                }
                (ok, errors, samples)
            }));
        }
        let mut out = Closed {
            ok: 0,
            errors: 0,
            seconds: 0.0,
            samples: Vec::new(),
        };
        for t in tasks {
            if let Ok((ok, errors, s)) = t.await {
                out.ok += ok;
                out.errors += errors;
                out.samples.extend(s);
            }
        }
        out.seconds = (Instant::now().min(end) - measure_from).as_secs_f64();
        out
    })
}

/// One small HTTP/1.1 request on a fresh connection (`Connection: close`), for the admin API:
/// (status, body). None if the connection or the answer failed within 5 s.
pub fn http_request(addr: std::net::SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    http_request_within(addr, method, path, Duration::from_secs(5))
}

/// [`http_request`], reading the answer for up to `read` (a large body on a busy machine).
pub fn http_request_within(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    read: Duration,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(read)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    // The admin API answers with Content-Length; a chunked answer is not expected here.
    Some((status, body.to_string()))
}

/// Sum of the values of the Prometheus samples named `name` whose labels contain every one of
/// `labels` (e.g. `route="api"`). None if there is no such sample.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let (n, lab) = series.split_once('{').unwrap_or((series, ""));
        if n == name && labels.iter().all(|want| lab.contains(want)) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    found
}
