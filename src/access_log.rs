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
use std::time::{Duration, Instant};

use http::StatusCode;
use pingora::prelude::*;
use pingora::proxy::Session;
use prometheus::IntCounter;
use serde::{Serialize, Serializer};

use crate::ctx::Ctx;
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

fn display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<T: std::fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(serialize_with = "display")]
    ts: jiff::Timestamp,
    request_id: &'a str,
    #[serde(serialize_with = "display")]
    client_ip: IpAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    protocol: &'static str,
    route: &'a str,
    status: u16,
    upstream: Option<&'a str>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_opt"
    )]
    upstream_addr: Option<std::net::SocketAddr>,
    upstream_outcome: Option<&'static str>,
    /// From choosing a server to the end of its response, as nginx's `$upstream_response_time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_ms: Option<f64>,
    /// Set when Seawall answered itself (no route, a limit, a cap, an upstream failure).
    answered_by_seawall: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// The limit that rejected the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_action: Option<&'a str>,
    /// The receipt of a request a queue stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<&'a str>,
    /// An unregistered tag as sent (cut to 64 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referer: Option<&'a str>,
    duration_ms: f64,
    bytes_sent: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
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
    let line = Line {
        ts: jiff::Timestamp::now(),
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
        error: e.map(|e| cut(&e.to_string(), 2 * FIELD_MAX).into_owned()),
    };
    log.write_line(&line);
}

impl AccessLog {
    /// Format `line` as one JSON line (in the worker's reused buffer) and queue it. For lines
    /// other than an ordinary request's (an unreadable request's, see `unreadable`).
    pub fn write_line<T: Serialize>(&self, line: &T) {
        LINE.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            if serde_json::to_writer(&mut *buf, line).is_ok() {
                buf.push(b'\n');
                self.push(&buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
