//! The HTTP/1 edge as a hostile or odd client meets it, with a raw TCP client: slowloris and
//! idle connections (`header_timeout`, `keepalive_timeout`), pipelined requests, requests the
//! parser rejects (answered by Seawall, counted, logged), `max_header_bytes`, the
//! `Content-Length` list, a raw space in the target, and SIGTERM with nothing in flight.
//!
//! Most of these needed Pingora itself patched (vendor/pingora-core, vendor/pingora-proxy,
//! marked "Seawall:"; vendor/README.md).

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Kit, Seawall, TestUpstream, free_addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROUTES: &str = r#"
[upstreams.app]
servers = ["APP"]

[[routes]]
name = "all"
upstream = "app"
"#;

fn start(kit: Kit, app: &TestUpstream) -> Seawall {
    kit.start(&ROUTES.replace("APP", &app.addr.to_string()))
}

/// Everything the server sends until it closes the connection (at most 10 s). A reset after
/// the answer (the server closed with part of the request unread) ends it too.
async fn read_all(conn: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out))
        .await
        .expect("the server closes the connection within 10 s");
    String::from_utf8_lossy(&out).into_owned()
}

/// Send `request` on a new connection and read until the server closes it. Written from
/// another task: the server may answer and stop reading before the whole request is sent.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let answer = read_all(&mut rd).await;
    drop(writer.await);
    answer
}

/// Read one response whose body has a `Content-Length` (the connection stays open).
async fn read_response(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            conn.read(&mut chunk),
        )
        .await
        .expect("a response within 10 s")
        .unwrap();
        assert!(n > 0, "closed before a whole response: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Seawall's own answer, not Pingora's: its body, a request id, no `Server: Pingora`.
fn assert_seawall_answer(answer: &str, status: u16) {
    let lower = answer.to_lowercase();
    assert!(
        lower.starts_with(&format!("http/1.1 {status} ")),
        "expected {status}: {answer:?}"
    );
    assert!(lower.contains("\r\nx-request-id: "), "{answer:?}");
    assert!(lower.contains("\r\nconnection: close"), "{answer:?}");
    assert!(!lower.contains("pingora"), "{answer:?}");
    assert!(answer.contains(&format!("\r\n\r\n{status} ")), "{answer:?}");
    assert!(answer.contains("\nrequest id: "), "{answer:?}");
}

// ------------------------------------------------------------------ slowloris, idle connections

/// A client dripping its header a line at a time is cut at `header_timeout` after its first
/// byte, with a 408 (Pingora alone timed each read: the drip went on until 256 headers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_dripped_line_by_line_is_cut_at_header_timeout() {
    let app = TestUpstream::start("app").await;
    let sw = start(
        Kit::new().server("header_timeout = \"1s\"\nkeepalive_timeout = \"10s\""),
        &app,
    );
    let mut conn = TcpStream::connect(sw.listen).await.unwrap();
    let first_byte = Instant::now();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: seawall.test\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let drip = tokio::spawn(async move {
        // One header line every 200 ms for up to 8 s, or until the server closes.
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-Drip-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out))
        .await
        .expect("closed within 10 s")
        .ok();
    let cut_after = first_byte.elapsed();
    drip.abort();
    let answer = String::from_utf8_lossy(&out);
    assert_seawall_answer(&answer, 408);
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(5),
        "cut after {cut_after:?}, header_timeout is 1 s"
    );
    assert_eq!(app.hits(), 0);
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "-"), ("status", "408")],
        1.0,
    )
    .await;
}

/// An idle keep-alive connection is closed after `keepalive_timeout` (Pingora alone kept it
/// forever once it had served a request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    let app = TestUpstream::start("app").await;
    let sw = start(
        Kit::new().server("keepalive_timeout = \"1s\"\nheader_timeout = \"10s\""),
        &app,
    );
    let mut conn = TcpStream::connect(sw.listen).await.unwrap();
    for path in ["/one", "/two"] {
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: seawall.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = read_response(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&format!("app {path}")), "{answer}");
    }
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed within 10 s")
        .unwrap();
    let idle = idle_from.elapsed();
    assert_eq!(n, 0, "nothing is sent on an idle connection");
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "closed after {idle:?} idle, keepalive_timeout is 1 s"
    );
}

/// A connection that never sends a byte is closed after `header_timeout`, without an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_new_connection_is_closed_after_header_timeout() {
    let app = TestUpstream::start("app").await;
    let sw = start(
        Kit::new().server("header_timeout = \"1s\"\nkeepalive_timeout = \"10s\""),
        &app,
    );
    let mut conn = TcpStream::connect(sw.listen).await.unwrap();
    let from = Instant::now();
    let answer = read_all(&mut conn).await;
    let after = from.elapsed();
    assert_eq!(answer, "");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
}

// ------------------------------------------------------------------ pipelining

/// Three requests in one write are answered in order (Pingora 0.9 alone answered the first and
/// closed the connection: the other two vanished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let app = TestUpstream::start("app").await;
    let sw = start(Kit::new(), &app);
    let answer = exchange(
        sw.listen,
        b"GET /a HTTP/1.1\r\nHost: seawall.test\r\n\r\n\
          GET /b HTTP/1.1\r\nHost: seawall.test\r\n\r\n\
          GET /c HTTP/1.1\r\nHost: seawall.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
    let (a, b, c) = (
        answer.find("app /a").expect("/a answered"),
        answer.find("app /b").expect("/b answered"),
        answer.find("app /c").expect("/c answered"),
    );
    assert!(a < b && b < c, "in order: {answer}");
    assert_eq!(app.hits(), 3);
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "all"), ("status", "200")],
        3.0,
    )
    .await;
}

/// A pipelined request behind one Seawall answers itself (no route) is answered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_behind_a_seawall_answer_is_answered() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\n",
        app.addr
    ));
    let answer = exchange(
        sw.listen,
        b"GET /nowhere HTTP/1.1\r\nHost: seawall.test\r\n\r\n\
          GET /api/x HTTP/1.1\r\nHost: seawall.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (nf, ok) = (
        answer.find("HTTP/1.1 404").expect("404 first"),
        answer.find("app /api/x").expect("/api/x answered"),
    );
    assert!(nf < ok, "{answer}");
}

// ------------------------------------------------------------------ requests the parser rejects

/// Each of these is refused by Pingora's parser. Each gets Seawall's own 400 (status, reason,
/// request id), is counted under route "-", and never reaches the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_parser_rejects_get_seawall_400s_and_are_counted() {
    let app = TestUpstream::start("app").await;
    // Above the URL bound of the `http` crate (64 KiB), so that one is the parser's refusal.
    let sw = start(Kit::new().server("max_header_bytes = \"256KiB\""), &app);
    let many_headers: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_url = format!("/{}", "a".repeat(70 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "too many headers",
            format!("GET / HTTP/1.1\r\nHost: seawall.test\r\n{many_headers}\r\n").into_bytes(),
        ),
        (
            "a URL over 64 KiB",
            format!("GET {long_url} HTTP/1.1\r\nHost: seawall.test\r\n\r\n").into_bytes(),
        ),
        (
            "conflicting Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: seawall.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_vec(),
        ),
        (
            "a Content-Length list that disagrees",
            b"POST / HTTP/1.1\r\nHost: seawall.test\r\nContent-Length: 5, 6\r\n\r\nhello".to_vec(),
        ),
        (
            "an obfuscated Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: seawall.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "a bare CR",
            b"GET / HTTP/1.1\rHost: seawall.test\r\n\r\n".to_vec(),
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: seawall.test\r\nX-Folded: a\r\n b\r\n\r\n".to_vec(),
        ),
        (
            "a raw space in the path",
            b"GET /a b HTTP/1.1\r\nHost: seawall.test\r\n\r\n".to_vec(),
        ),
    ];
    for (what, request) in &cases {
        let answer = exchange(sw.listen, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 "),
            "{what}: expected 400, got {answer:?}"
        );
        assert_seawall_answer(&answer, 400);
    }
    assert_eq!(app.hits(), 0, "none of them reached the app");
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "-"), ("status", "400")],
        cases.len() as f64,
    )
    .await;
}

/// A request header over `max_header_bytes` gets 431; one under it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_over_max_header_bytes_gets_431() {
    let app = TestUpstream::start("app").await;
    let sw = start(Kit::new().server("max_header_bytes = \"8KiB\""), &app);
    let cookie = |n: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: seawall.test\r\nCookie: c={}\r\nConnection: close\r\n\r\n",
            "x".repeat(n)
        )
    };
    let big = exchange(sw.listen, cookie(9 * 1024).as_bytes()).await;
    assert_seawall_answer(&big, 431);
    // Larger than the read buffer's first 4 KiB, so it takes several reads: still bounded.
    let huge = exchange(sw.listen, cookie(200 * 1024).as_bytes()).await;
    assert_seawall_answer(&huge, 431);
    let fine = exchange(sw.listen, cookie(6 * 1024).as_bytes()).await;
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    assert_eq!(app.hits(), 1);
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "-"), ("status", "431")],
        2.0,
    )
    .await;
}

// ------------------------------------------------------------------ smaller ones

/// `Content-Length: 5, 5` and a repeated identical `Content-Length` go upstream as one value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_content_length_list_goes_upstream_as_one_value() {
    let app = TestUpstream::start("app").await;
    let sw = start(Kit::new(), &app);
    for header in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ] {
        let answer = exchange(
            sw.listen,
            format!(
                "POST /p HTTP/1.1\r\nHost: seawall.test\r\n{header}Connection: close\r\n\r\nhello"
            )
            .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{header:?}: {answer}");
        let seen = app.last();
        let values: Vec<_> = seen.headers.get_all("content-length").iter().collect();
        assert_eq!(values, ["5"], "{header:?}");
        assert_eq!(seen.body, "hello");
    }
}

// ------------------------------------------------------------------ the binary: SIGTERM, access log

/// A child process killed (SIGKILL) when dropped, whatever happened.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &std::path::Path, listen: SocketAddr, app: &TestUpstream) -> String {
    let text = format!(
        "[server]\nlisten = [\"{listen}\"]\nadmin_listen = \"{admin}\"\nthreads = 1\n\
         grace_period = \"30s\"\nupgrade_sock = \"{sock}\"\npid_file = \"{pid}\"\n{routes}",
        admin = free_addr(),
        sock = dir.join("upgrade.sock").display(),
        pid = dir.join("seawall.pid").display(),
        routes = ROUTES.replace("APP", &app.addr.to_string()),
    );
    let path = dir.join("seawall.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The binary, its stdout (the access log) sent line by line to the receiver.
fn spawn(config: &str) -> (Proc, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(["run", "--config", config])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start seawall");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

async fn wait_until_serving(listen: SocketAddr) {
    assert_eventually!(
        Duration::from_secs(20),
        "seawall answers",
        common::client()
            .get(format!("http://{listen}/up"))
            .send()
            .await
            .is_ok()
    );
}

fn sigterm(p: &Proc) {
    let ok = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

/// Seconds until the process exits (at most `within`).
async fn exit_within(p: &mut Proc, within: Duration) -> Duration {
    let from = Instant::now();
    loop {
        if p.0.try_wait().unwrap().is_some() {
            return from.elapsed();
        }
        assert!(from.elapsed() < within, "still running after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM with nothing in flight (an idle keep-alive connection open) exits at once, not at
/// the end of the 30 s grace period; with a request in flight it exits once that is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_as_soon_as_nothing_is_in_flight() {
    let app = TestUpstream::builder("app")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let cfg = write_config(dir.path(), listen, &app);

    // Nothing in flight, one idle keep-alive connection.
    let (mut p, _log) = spawn(&cfg);
    wait_until_serving(listen).await;
    let mut idle = TcpStream::connect(listen).await.unwrap();
    idle.write_all(b"GET /k HTTP/1.1\r\nHost: seawall.test\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    sigterm(&p);
    let took = exit_within(&mut p, Duration::from_secs(20)).await;
    assert!(took < Duration::from_secs(5), "exited after {took:?}");

    // A request in flight when SIGTERM comes: answered, then the process exits.
    let (mut p, _log) = spawn(&cfg);
    wait_until_serving(listen).await;
    let slow = tokio::spawn(async move {
        exchange(
            listen,
            b"GET /slow HTTP/1.1\r\nHost: seawall.test\r\nConnection: close\r\n\r\n",
        )
        .await
    });
    let hits = app.hits();
    assert_eventually!(
        Duration::from_secs(10),
        "the slow request reached the app",
        app.hits() > hits
    );
    sigterm(&p);
    let took = exit_within(&mut p, Duration::from_secs(20)).await;
    let answer = slow.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("app /slow"), "{answer}");
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
}

/// A request the parser rejects has its line in the access log: status, route "-", request id
/// (the one in the answer), the peer, and what was read of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_has_its_access_log_line() {
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let cfg = write_config(dir.path(), listen, &app);
    let (_p, log) = spawn(&cfg);
    wait_until_serving(listen).await;
    let answer = exchange(
        listen,
        b"POST /form HTTP/1.1\r\nHost: seawall.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
    )
    .await;
    assert_seawall_answer(&answer, 400);
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("request id: "))
        .expect("a request id in the body")
        .to_string();
    let line = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = log
                .recv_timeout(left)
                .expect("an access log line within 10 s");
            if l.contains(&id) {
                break l;
            }
        }
    });
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 400, "{line}");
    assert_eq!(v["route"], "-", "{line}");
    assert_eq!(v["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(v["answered_by_seawall"], true, "{line}");
    assert!(
        v["request"].as_str().unwrap().starts_with("POST /form"),
        "{line}"
    );
}
