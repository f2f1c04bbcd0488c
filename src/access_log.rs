//! The access log: one JSON object per request, one line, on stdout or in a file, written off
//! the request path.
//!
//! A request formats its line into a buffer its worker thread reuses and appends it to a shared
//! batch under a lock held for a copy; a writer thread writes the batch in large chunks (at
//! [`BATCH`] bytes, or when a line has waited [`FLUSH_EVERY`]), like nginx's `buffer=`/`flush=`.
//! A request never waits for the disk: when the batch is full ([`MAX_PENDING`], a stalled disk
//! or pipe) its line is dropped and counted in `seawall_access_log_dropped_total`, with one
//! warning a second. Lines are flushed when the process exits. A file is opened in append mode
//! and reopened on SIGUSR1, for logrotate.
//!
//! Diagnostics (`tracing`) go to stderr, so the two streams can be shipped apart.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use pingora::prelude::*;
use pingora::proxy::Session;
use prometheus::IntCounter;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::json_line::JsonObject;
use crate::logging::{FIELD_MAX, Throttle, cut};

/// The writer writes once this much is waiting.
pub const BATCH: usize = 64 * 1024;
/// A line waits at most this long before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Lines waiting beyond this are dropped (and counted): the disk or the pipe is stalled.
pub const MAX_PENDING: usize = 8 << 20;

/// Where access lines go: `[server] access_log = true` (stdout), `"path"` or `false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    /// Appended to; reopened on SIGUSR1.
    File(PathBuf),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Off => f.write_str("off"),
            Destination::Stdout => f.write_str("stdout"),
            Destination::File(p) => write!(f, "{}", p.display()),
        }
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    dropped: IntCounter,
    drop_log: Throttle,
}

struct Pending {
    lines: Vec<u8>,
    /// When the oldest waiting line arrived.
    since: Option<Instant>,
    dest: Destination,
    reopen: bool,
    stop: bool,
}

/// The process's access log writer. Dropping it writes what is waiting and stops the thread.
pub struct AccessLog {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Fast path for the request: whether lines are wanted at all.
    on: AtomicBool,
}

impl AccessLog {
    pub fn start(dest: Destination, dropped: IntCounter) -> AccessLog {
        let on = AtomicBool::new(dest != Destination::Off);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(BATCH * 2),
                since: None,
                dest,
                reopen: false,
                stop: false,
            }),
            wake: Condvar::new(),
            dropped,
            drop_log: Throttle::default(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("access log".into())
            .spawn(move || writer(&s))
            .ok();
        AccessLog {
            shared,
            thread: Mutex::new(thread),
            on,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A reload may switch the log on, off or to another file.
    pub fn set_destination(&self, dest: Destination) {
        self.on.store(dest != Destination::Off, Ordering::Relaxed);
        let mut p = self.pending();
        if p.dest != dest {
            p.dest = dest;
            p.reopen = true;
        }
    }

    /// Reopen the file (logrotate moved it away): SIGUSR1.
    pub fn reopen(&self) {
        self.pending().reopen = true;
        self.shared.wake.notify_one();
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Queue one line (with its newline). Never waits for I/O.
    fn push(&self, line: &[u8]) {
        let mut p = self.pending();
        if p.lines.len() + line.len() > MAX_PENDING {
            drop(p);
            self.shared.dropped.inc();
            if let Some(also) = self.shared.drop_log.allow(now_ms(), 1000) {
                tracing::warn!(
                    dropped_since_last_line = also + 1,
                    "access log lines dropped: the writer is behind (stalled disk or pipe?)"
                );
            }
            return;
        }
        let was_below = p.lines.len() < BATCH;
        p.lines.extend_from_slice(line);
        p.since.get_or_insert_with(Instant::now);
        if was_below && p.lines.len() >= BATCH {
            self.shared.wake.notify_one();
        }
    }

    /// Write what is waiting and stop the writer (the process is exiting). Lines that come
    /// after are dropped.
    pub fn flush_and_stop(&self) {
        self.pending().stop = true;
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush_and_stop();
    }
}

fn now_ms() -> u64 {
    use crate::limits::limiter::{Clock, MonotonicClock};
    MonotonicClock.now_ms()
}

enum Out {
    None,
    Stdout,
    File(std::fs::File),
}

fn open(dest: &Destination) -> Out {
    match dest {
        Destination::Off => Out::None,
        Destination::Stdout => Out::Stdout,
        Destination::File(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(path)
            {
                Ok(f) => Out::File(f),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open the access log; lines are lost until it can be");
                    Out::None
                }
            }
        }
    }
}

/// The writer thread: waits for a batch or for the oldest line to be [`FLUSH_EVERY`] old,
/// takes the batch out under the lock, writes it outside.
fn writer(s: &Shared) {
    let mut out = Out::None;
    let mut opened: Option<Destination> = None;
    let mut spare: Vec<u8> = Vec::with_capacity(BATCH * 2);
    loop {
        let (stop, dest, reopen) = {
            let mut p = s.pending.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let due = p.since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY);
                if p.stop || p.reopen || p.lines.len() >= BATCH || due {
                    break;
                }
                let wait = p
                    .since
                    .map_or(FLUSH_EVERY, |t| FLUSH_EVERY.saturating_sub(t.elapsed()));
                p = s
                    .wake
                    .wait_timeout(p, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut p.lines, &mut spare);
            p.since = None;
            let reopen = std::mem::take(&mut p.reopen);
            (p.stop, p.dest.clone(), reopen)
        };
        if reopen || opened.as_ref() != Some(&dest) {
            out = open(&dest);
            opened = Some(dest);
        }
        if !spare.is_empty() {
            // A failed write loses the batch, never the process.
            let _ = match &mut out {
                Out::None => Ok(()),
                Out::Stdout => std::io::stdout().lock().write_all(&spare),
                Out::File(f) => f.write_all(&spare),
            };
            spare.clear();
        }
        if stop {
            return;
        }
    }
}

/// One request's access line; the fields are documented in docs/operations.md.
struct Line<'a> {
    /// When the request ended.
    ts: SystemTime,
    request_id: &'a str,
    client_ip: IpAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    protocol: &'static str,
    route: &'a str,
    status: u16,
    upstream: Option<&'a str>,
    upstream_addr: Option<std::net::SocketAddr>,
    upstream_outcome: Option<&'static str>,
    /// From choosing a server to the end of its response, as nginx's `$upstream_response_time`.
    upstream_ms: Option<f64>,
    /// Set when Seawall answered itself (no route, a limit, a cap, an upstream failure).
    answered_by_seawall: bool,
    reason: Option<&'static str>,
    /// The limit that rejected the request.
    limit: Option<&'a str>,
    campaign: Option<&'a str>,
    campaign_action: Option<&'a str>,
    /// The receipt of a request a queue stored.
    receipt: Option<&'a str>,
    /// An unregistered tag as sent (cut to 64 bytes).
    tag: Option<&'a str>,
    user_agent: Option<&'a str>,
    referer: Option<&'a str>,
    duration_ms: f64,
    bytes_sent: usize,
    error: Option<&'a str>,
}

impl Line<'_> {
    /// The line as one JSON object (no newline). Optional fields are left out when absent,
    /// except `upstream` and `upstream_outcome`, which are `null`.
    fn json(&self, buf: &mut Vec<u8>) {
        let mut o = JsonObject::new(buf);
        o.time("ts", self.ts)
            .str("request_id", self.request_id)
            .ip("client_ip", self.client_ip)
            .str("method", self.method)
            .str("host", self.host)
            .str("path", self.path)
            .opt_str("query", self.query)
            .str("protocol", self.protocol)
            .str("route", self.route)
            .uint("status", u64::from(self.status))
            .str_or_null("upstream", self.upstream);
        if let Some(a) = self.upstream_addr {
            o.socket_addr("upstream_addr", a);
        }
        o.str_or_null("upstream_outcome", self.upstream_outcome)
            .opt_float("upstream_ms", self.upstream_ms)
            .bool("answered_by_seawall", self.answered_by_seawall)
            .opt_str("reason", self.reason)
            .opt_str("limit", self.limit)
            .opt_str("campaign", self.campaign)
            .opt_str("campaign_action", self.campaign_action)
            .opt_str("receipt", self.receipt)
            .opt_str("tag", self.tag)
            .opt_str("user_agent", self.user_agent)
            .opt_str("referer", self.referer)
            .float("duration_ms", self.duration_ms)
            .uint("bytes_sent", self.bytes_sent as u64)
            .opt_str("error", self.error);
        o.end();
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

thread_local! {
    /// Each worker thread formats its lines here: no allocation per line once it has grown.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// The access line of a finished request.
pub fn write(
    log: &AccessLog,
    session: &Session,
    ctx: &Ctx,
    status: Option<StatusCode>,
    elapsed: Duration,
    e: Option<&Error>,
) {
    let req = session.req_header();
    let header = |h: http::header::HeaderName| {
        req.headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(|v| cut(v, FIELD_MAX))
    };
    let (user_agent, referer) = (
        header(http::header::USER_AGENT),
        header(http::header::REFERER),
    );
    let path = cut(req.uri.path(), 2 * FIELD_MAX);
    let query = req.uri.query().map(|q| cut(q, 2 * FIELD_MAX));
    let host = cut(crate::routing::request_host(req), FIELD_MAX);
    let error = e.map(|e| e.to_string());
    let error = error.as_deref().map(|e| cut(e, 2 * FIELD_MAX));
    let line = Line {
        ts: SystemTime::now(),
        request_id: ctx.request_id_text(),
        client_ip: ctx.client.ip,
        method: req.method.as_str(),
        host: &host,
        path: &path,
        query: query.as_deref(),
        protocol: match req.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        route: ctx.route_name(),
        status: status.map_or(0, |s| s.as_u16()),
        upstream: ctx.upstream.as_ref().map(|u| &*u.name),
        upstream_addr: ctx.upstream_addr,
        upstream_outcome: ctx.disposition.outcome().map(|o| o.label()),
        upstream_ms: ctx.upstream_started.map(|t| ms(t.elapsed())),
        answered_by_seawall: ctx.disposition.reason().is_some(),
        reason: ctx.disposition.reason().map(|r| r.label()),
        limit: ctx.rejected_by.as_deref(),
        campaign: ctx.campaign.as_ref().map(|c| c.name.as_ref()),
        campaign_action: ctx.campaign.as_ref().map(|c| c.action.label()),
        receipt: ctx.receipt.as_deref(),
        tag: ctx
            .campaign
            .as_ref()
            .and_then(|c| c.unregistered_tag.as_deref()),
        user_agent: user_agent.as_deref(),
        referer: referer.as_deref(),
        duration_ms: ms(elapsed),
        bytes_sent: session.body_bytes_sent(),
        error: error.as_deref(),
    };
    log.write_with(|buf| line.json(buf));
}

impl AccessLog {
    /// Format `line` as one JSON line (in the worker's reused buffer) and queue it. For lines
    /// other than an ordinary request's (an unreadable request's, see `unreadable`).
    pub fn write_line<T: Serialize>(&self, line: &T) {
        self.write_with(|buf| {
            // A failed serialization leaves part of a line: take it out.
            if serde_json::to_writer(&mut *buf, line).is_err() {
                buf.clear();
            }
        });
    }

    /// Queue the line `format` writes into the worker's reused buffer (nothing when it writes
    /// nothing).
    fn write_with(&self, format: impl FnOnce(&mut Vec<u8>)) {
        LINE.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            format(&mut buf);
            if !buf.is_empty() {
                buf.push(b'\n');
                self.push(&buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(line: &Line<'_>) -> serde_json::Value {
        let mut buf = Vec::new();
        line.json(&mut buf);
        serde_json::from_slice(&buf).unwrap()
    }

    #[test]
    fn a_line_has_every_documented_field_and_leaves_out_the_absent_ones() {
        let ts = std::time::UNIX_EPOCH + Duration::from_micros(1_796_142_510_000_042);
        let mut line = Line {
            ts,
            request_id: "r1",
            client_ip: "203.0.113.7".parse().unwrap(),
            method: "POST",
            host: "shop.test",
            path: "/api/v1/users/register",
            query: Some("ref=\"x\""),
            protocol: "HTTP/1.1",
            route: "signup",
            status: 202,
            upstream: Some("app"),
            upstream_addr: Some("127.0.0.1:3000".parse().unwrap()),
            upstream_outcome: Some("ok"),
            upstream_ms: Some(1.25),
            answered_by_seawall: false,
            reason: Some("queued"),
            limit: Some("per-ip"),
            campaign: Some("summer-sale"),
            campaign_action: Some("queue"),
            receipt: Some("rcpt"),
            tag: Some("T\u{1}"),
            user_agent: Some("curl/8"),
            referer: Some("https://a.test/"),
            duration_ms: 2.0,
            bytes_sent: 17,
            error: Some("e"),
        };
        assert_eq!(
            json(&line),
            serde_json::json!({
                "ts": "2026-12-01T16:28:30.000042Z", "request_id": "r1",
                "client_ip": "203.0.113.7", "method": "POST", "host": "shop.test",
                "path": "/api/v1/users/register", "query": "ref=\"x\"", "protocol": "HTTP/1.1",
                "route": "signup", "status": 202, "upstream": "app",
                "upstream_addr": "127.0.0.1:3000", "upstream_outcome": "ok", "upstream_ms": 1.25,
                "answered_by_seawall": false, "reason": "queued", "limit": "per-ip",
                "campaign": "summer-sale", "campaign_action": "queue", "receipt": "rcpt",
                "tag": "T\u{1}", "user_agent": "curl/8", "referer": "https://a.test/",
                "duration_ms": 2.0, "bytes_sent": 17, "error": "e",
            })
        );
        (
            line.query,
            line.upstream,
            line.upstream_addr,
            line.upstream_outcome,
        ) = (None, None, None, None);
        (line.upstream_ms, line.reason, line.limit, line.campaign) = (None, None, None, None);
        (line.campaign_action, line.receipt, line.tag) = (None, None, None);
        (line.user_agent, line.referer, line.error) = (None, None, None);
        line.client_ip = "2001:db8::1".parse().unwrap();
        assert_eq!(
            json(&line),
            serde_json::json!({
                "ts": "2026-12-01T16:28:30.000042Z", "request_id": "r1",
                "client_ip": "2001:db8::1", "method": "POST", "host": "shop.test",
                "path": "/api/v1/users/register", "protocol": "HTTP/1.1", "route": "signup",
                "status": 202, "upstream": null, "upstream_outcome": null,
                "answered_by_seawall": false, "duration_ms": 2.0, "bytes_sent": 17,
            })
        );
    }

    fn counter() -> IntCounter {
        IntCounter::new("dropped", "test").unwrap()
    }

    #[test]
    fn lines_reach_the_file_in_order_and_are_flushed_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(Destination::File(path.clone()), counter());
        for i in 0..1000 {
            log.push(format!("{{\"n\":{i}}}\n").as_bytes());
        }
        log.flush_and_stop();
        let text = std::fs::read_to_string(&path).unwrap();
        let n: Vec<usize> = text
            .lines()
            .map(|l| l[5..l.len() - 1].parse().unwrap())
            .collect();
        assert_eq!(n, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_reopen_follows_a_file_moved_away_by_logrotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(Destination::File(path.clone()), counter());
        log.push(b"one\n");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap_or_default() != "one\n" {
            assert!(
                Instant::now() < deadline,
                "the first line was not written within 5s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.push(b"two\n");
        log.flush_and_stop();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let rotated = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
        assert_eq!(rotated, "one\n");
    }

    #[test]
    fn when_the_writer_is_behind_lines_are_dropped_and_counted_not_waited_for() {
        // A pipe nobody reads from: the writer blocks in write(2) once its buffer is full, as
        // it would behind a stalled log shipper.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader_path = fifo.clone();
        // Opening a FIFO waits for the other end: the writer's open completes this one.
        std::thread::spawn(move || tx.send(std::fs::File::open(reader_path).unwrap()));
        let dropped = counter();
        let log = AccessLog::start(Destination::File(fifo), dropped.clone());
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        // The writer opens its file when it first has a line to write.
        log.push(&line);
        let reader = rx.recv().unwrap();
        let n = 3 * MAX_PENDING / line.len();
        let started = Instant::now();
        for _ in 1..n {
            log.push(&line);
        }
        // The writer holds at most one batch it took out, and the queue at most MAX_PENDING.
        let kept = n as u64 - dropped.get();
        assert!(dropped.get() > 0);
        assert!(
            kept <= 2 * MAX_PENDING as u64 / line.len() as u64 + 1,
            "{kept} kept"
        );
        // Pushing never waited for the stalled pipe (24 MB of lines in well under a second even
        // on a loaded machine; the pipe takes none of it).
        assert!(started.elapsed() < Duration::from_secs(10));
        // Drain the pipe so the writer can finish.
        let drain = std::thread::spawn(move || {
            std::io::copy(&mut std::io::BufReader::new(reader), &mut std::io::sink()).unwrap()
        });
        log.flush_and_stop();
        drop(log);
        assert_eq!(drain.join().unwrap(), kept * line.len() as u64);
    }
}
